"""What the benchmark measures: the fake upstream, and each system put in front of it.

    direct       the fake upstream itself (every overhead is measured against it)
    passthrough  bench/passthrough.py, the floor any Python gateway stands on
    lockgate     `python -m gateway serve --config bench/lockgate.yaml` from this tree
    litellm      LiteLLM's proxy, only when a `litellm` executable is found (LITELLM_BIN,
                 PATH, or /tmp/litellm-venv/bin/litellm); skipped otherwise

Ports are fixed (bench/lockgate.yaml names the upstreams'), and checked free first.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from procs import Proc, Processes, port_free

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PYTHON = sys.executable
LOCKGATE_CONFIG = BENCH / "lockgate.yaml"
BODIES = BENCH / "bodies"
CHAT_PATH = "/v1/chat/completions"
UPSTREAM_PORT, BACKUP_PORT = 19000, 19001  # as in bench/lockgate.yaml
PASSTHROUGH_PORT, LOCKGATE_PORT, LITELLM_PORT = 19100, 19110, 19120
BENCH_KEY = "sk-bench-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
HEADERS = {"Content-Type": "application/json", "Authorization": f"Bearer {BENCH_KEY}"}


@dataclass(slots=True)
class Target:
    name: str
    port: int
    proc: Proc
    """The process tree whose CPU and memory count (for direct: the upstream)."""
    startup_s: float = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{CHAT_PATH}"


def _claim(port: int, what: str) -> None:
    if not port_free(port):
        raise RuntimeError(f"port {port} ({what}) is in use: is another benchmark running?")


def _ready(target: Target) -> Target:
    target.startup_s = target.proc.wait_ready(target.url, (BODIES / "chat.json").read_bytes(), HEADERS)
    return target


def start_upstream(procs: Processes, cpus: str | None, *, port: int = UPSTREAM_PORT, name: str = "direct",
                   chunk_interval_ms: float = 5.0, options: tuple[str, ...] = ()) -> Target:
    """The fake upstream. Stream chunks are 5 ms apart by default, so that a relay that
    coalesces them is seen; JSON answers are immediate."""
    _claim(port, name)
    argv = [PYTHON, str(BENCH / "fake_upstream.py"), "--port", str(port),
            "--chunk-interval-ms", f"{chunk_interval_ms:g}", *options]
    return _ready(Target(name, port, procs.start(name, argv, cpus=cpus)))


def start_passthrough(procs: Processes, cpus: str | None) -> Target:
    _claim(PASSTHROUGH_PORT, "passthrough")
    argv = [PYTHON, str(BENCH / "passthrough.py"), "--port", str(PASSTHROUGH_PORT),
            "--upstream", f"http://127.0.0.1:{UPSTREAM_PORT}"]
    return _ready(Target("passthrough", PASSTHROUGH_PORT, procs.start("passthrough", argv, cpus=cpus)))


def start_lockgate(procs: Processes, cpus: str | None, scratch: Path, *, workers: int = 1,
                   name: str = "lockgate", port: int = LOCKGATE_PORT, config: Path = LOCKGATE_CONFIG,
                   launcher: tuple[str, ...] = ("-m", "gateway")) -> Target:
    """Lockgate from this tree; its SQLite ledger lands in `scratch` (its working directory).
    `launcher`: what runs `serve` (bench/variant_serve.py for the `--stages` variants)."""
    _claim(port, name)
    scratch.mkdir(parents=True, exist_ok=True)
    argv = [PYTHON, *launcher, "serve", "--config", str(config), "--port", str(port),
            "--workers", str(workers)]
    env = {"PYTHONPATH": str(ROOT)}
    return _ready(Target(name, port, procs.start(name, argv, cpus=cpus, cwd=scratch, env=env)))


def litellm_executable() -> str | None:
    for candidate in (os.environ.get("LITELLM_BIN"), shutil.which("litellm"), "/tmp/litellm-venv/bin/litellm"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


LITELLM_CONFIG = f"""model_list:
  - model_name: gpt-4o-mini
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: http://127.0.0.1:{UPSTREAM_PORT}/v1
      api_key: sk-fake-upstream
"""


def start_litellm(procs: Processes, cpus: str | None, scratch: Path) -> Target | None:
    """LiteLLM's proxy with its defaults (one worker, no database), if it is installed."""
    executable = litellm_executable()
    if executable is None:
        return None
    _claim(LITELLM_PORT, "litellm")
    scratch.mkdir(parents=True, exist_ok=True)
    (scratch / "litellm.yaml").write_text(LITELLM_CONFIG)
    # Nothing fetched from the internet: the bundled cost map, remote lookups pointed at a closed port.
    env = {"LITELLM_MASTER_KEY": BENCH_KEY, "LITELLM_LOCAL_MODEL_COST_MAP": "True",
           **{name: "http://127.0.0.1:9/disabled" for name in (
               "LITELLM_MODEL_COST_MAP_URL", "LITELLM_BLOG_POSTS_URL", "LITELLM_ANTHROPIC_BETA_HEADERS_URL",
               "LITELLM_AUTOROUTER_PRESETS_URL")}}
    argv = [executable, "--config", str(scratch / "litellm.yaml"), "--host", "127.0.0.1",
            "--port", str(LITELLM_PORT)]
    proc = procs.start("litellm", argv, cpus=cpus, cwd=scratch, env=env)
    target = Target("litellm", LITELLM_PORT, proc)
    target.startup_s = proc.wait_ready(target.url, (BODIES / "chat.json").read_bytes(), HEADERS, timeout=180)
    return target
