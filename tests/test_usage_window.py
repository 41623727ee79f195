"""A usage window Lockgate cannot represent is a 400 over HTTP and an error line from the CLI,
never a 500 or a traceback: here the far future, whose UTC time is past year 9999."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from tests.harness import ADMIN_KEY, TENANT_KEY, Gateway

FAR_FUTURE = "9999-12-31T23:59:59-14:00"  # 10000-01-01T13:59:59Z
SAID = f"until={FAR_FUTURE!r} is after 9999-12-31T23:59:59Z"


@pytest.mark.parametrize(("path", "key"), [("/v1/usage", TENANT_KEY), ("/admin/usage", ADMIN_KEY)])
def test_a_far_future_until_is_a_400_naming_it(gateway: Gateway, path: str, key: str) -> None:
    answer = httpx.get(f"{gateway.url}{path}", params={"until": FAR_FUTURE},
                       headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error" and SAID in error["message"]


def test_the_cli_prints_a_far_future_until_and_exits_1(gateway: Gateway) -> None:
    done = subprocess.run([sys.executable, "-m", "gateway", "usage", "--config", str(gateway.config_path),
                           "--until", FAR_FUTURE], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"error: {SAID}"), done.stderr
