"""The quickstart of an installed Lockgate (as pip and the Docker image install it) has the
sample policies: they ship inside the package, not beside a source checkout.

setuptools' `build_py` lays out exactly the files a wheel of this pure-Python project holds
(the packages and their package data, read from pyproject.toml), without needing `wheel`.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import SAMPLE_POLICIES

pytest.importorskip("setuptools")
REPOSITORY = Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "README.md", "gateway", "providers")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package as installed, built from a copy of the sources (the checkout stays untouched)."""
    root = tmp_path_factory.mktemp("install")
    source = root / "source"
    source.mkdir()
    for name in SOURCES:
        origin = REPOSITORY / name
        if origin.is_dir():
            shutil.copytree(origin, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(origin, source / name)
    built = subprocess.run([sys.executable, "-c", "import setuptools; setuptools.setup()", "--quiet", "build_py",
                            "--build-lib", str(root / "site-packages")],
                           cwd=source, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    return root / "site-packages"


def test_the_package_carries_every_sample_policy(site: Path) -> None:
    samples = sorted(path.relative_to(SAMPLE_POLICIES) for path in SAMPLE_POLICIES.rglob("*.yaml"))
    shipped = sorted(path.relative_to(site / "gateway" / "sample_policies")
                     for path in (site / "gateway" / "sample_policies").rglob("*.yaml"))
    assert Path("default.yaml") in samples and shipped == samples


def test_check_on_the_installed_quickstart_reports_the_sample_policies(site: Path, tmp_path: Path) -> None:
    workdir = tmp_path / "var-lib-lockgate"  # like the Docker image: no policies/ in the working directory
    workdir.mkdir()

    def lockgate(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=60, cwd=workdir,
                              env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site)})

    where = lockgate("-c", "from gateway.config import quickstart_config; print(quickstart_config().policies_dir)")
    assert where.stdout.strip() == str(site / "gateway" / "sample_policies"), where.stderr
    checked = lockgate("-m", "gateway", "check")
    assert checked.returncode == 0, checked.stderr
    assert "the bundled quickstart config" in checked.stdout, checked.stdout
    assert " 1 policies; version " in checked.stdout, checked.stdout
