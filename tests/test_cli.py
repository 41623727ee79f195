"""The README's first command: `lockgate serve` on the quickstart config, used with the printed key.
Then keys minted, used and revoked against the running server, and a clean SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from openai import OpenAI

from gateway import workers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def lockgate(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=60)


@pytest.fixture
def quickstart(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str, str]]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--port", str(port)], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    output = ""
    deadline = time.monotonic() + 30
    assert process.stdout is not None
    while "starting on" not in output and time.monotonic() < deadline:
        output += process.stdout.readline()
    key = re.search(r"OPENAI_API_KEY=(\S+)", output)
    base = re.search(r"OPENAI_BASE_URL=(\S+)", output)
    assert key and base, output
    _wait_ready(port)
    yield process, base.group(1), key.group(1)
    if process.poll() is None:
        process.kill()
        process.wait()


def _wait_ready(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("the gateway did not start listening")


def test_quickstart_serves_the_openai_sdk_with_the_printed_key(quickstart, tmp_path: Path) -> None:
    process, base_url, key = quickstart
    client = OpenAI(base_url=base_url, api_key=key, max_retries=0)
    completion = client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "hello"}])
    assert "hello" in (completion.choices[0].message.content or "")
    chunks = list(client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "hi"}],
                                                 stream=True))
    assert len(chunks) > 3
    tools = [{"type": "function", "function": {"name": "weather_tool", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    called = client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "weather?"}],
                                            tools=tools)
    assert called.choices[0].message.tool_calls[0].function.name == "weather_tool"
    assert client.responses.create(model="demo", input="hi").output_text
    assert client.embeddings.create(model="text-embedding-3-small", input="x").data

    # A minted key works on the running server at once; a revoked one stops working.
    minted = lockgate("keys", "create", "--tenant", "demo", "--name", "ci", cwd=tmp_path)
    assert minted.returncode == 0, minted.stderr
    new_key = minted.stdout.strip()
    assert new_key.startswith("lg-") and new_key not in (tmp_path / "lockgate.db").read_bytes().decode("latin-1")
    assert OpenAI(base_url=base_url, api_key=new_key).models.list().data
    key_id = re.search(r"key id (\w+)", minted.stderr).group(1)  # type: ignore[union-attr]
    listing = lockgate("keys", "list", cwd=tmp_path)
    assert key_id in listing.stdout and "active" in listing.stdout
    assert lockgate("keys", "revoke", key_id, cwd=tmp_path).returncode == 0
    time.sleep(5.5)  # the server refreshes stored keys every 5 s
    with pytest.raises(openai.AuthenticationError):
        OpenAI(base_url=base_url, api_key=new_key, max_retries=0).models.list()

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0


def test_keys_create_refuses_unknown_tenant(tmp_path: Path) -> None:
    result = lockgate("keys", "create", "--tenant", "nobody", cwd=tmp_path)
    assert result.returncode == 1 and "unknown tenant 'nobody'" in result.stderr


def test_an_unreachable_store_is_a_clear_startup_error(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text("storage: {url: 'postgresql://lockgate@127.0.0.1:9/lockgate'}\n"
                      "providers: {mock: {type: mock}}\nmodels: {m: {targets: [{provider: mock, model: mock-1}]}}\n")
    result = lockgate("serve", "--config", str(config), "--port", str(free_port()), cwd=tmp_path)
    assert result.returncode == 1
    assert "cannot start" in result.stderr and "storage.url" in result.stderr, result.stderr
    assert "cannot listen" not in result.stderr and "Traceback" not in result.stderr


def test_a_sighup_while_starting_does_not_end_the_server(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--port", str(port)], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if "starting on" in line:
                break
        process.send_signal(signal.SIGHUP)  # the server is not listening yet
        _wait_ready(port)
        assert process.poll() is None
        assert OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="lg-demo-key").models.list().data
    finally:
        process.terminate()
        process.wait(30)


def test_workers_that_cannot_start_make_the_supervisor_give_up(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text("storage: {url: 'postgresql://lockgate@127.0.0.1:9/lockgate'}\n"
                      "providers: {mock: {type: mock}}\nmodels: {m: {targets: [{provider: mock, model: mock-1}]}}\n")
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "gateway", "serve", "--workers", "2", "--config", str(config),
                             "--port", str(free_port())], capture_output=True, text=True, cwd=tmp_path, timeout=90)
    assert result.returncode == 1
    assert "giving up" in result.stderr + result.stdout
    assert time.monotonic() - started < 60


@pytest.mark.parametrize(("exit_code", "reported"), [
    (0, 0), (None, 0),
    (-signal.SIGTERM, 0), (-signal.SIGINT, 0),  # stopped by the signal it was sent, before its handler
    (1, 1), (-signal.SIGKILL, 1),  # an error; the OOM killer
])
def test_how_the_supervisor_reports_a_stopped_worker(exit_code: int | None, reported: int) -> None:
    assert workers._exit_code(exit_code) == reported
