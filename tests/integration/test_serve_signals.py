"""``emin serve`` prints the UI's URL as soon as the server answers and tears everything down on signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from flows.serve import REPO, free_port, port_in_use

pytestmark = pytest.mark.integration


def _wait_for(proc: subprocess.Popen[str], needle: str, timeout: float, seen: list[str]) -> None:
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line:
            seen.append(line)
            if needle in line:
                return
        elif proc.poll() is not None:
            break
        else:
            time.sleep(0.2)
    raise AssertionError(f"{needle!r} not printed within {timeout:.0f} s:\n{''.join(seen)}")


@pytest.mark.timeout(200)
@pytest.mark.parametrize("signum", [signal.SIGTERM])
def test_serve_stops_server_and_worker_on_signal(tmp_path: Path, signum: int) -> None:
    port = free_port()
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
           "COLUMNS": "200", "PYTHONPATH": str(REPO)}  # fmt: skip
    cmd = [sys.executable, "-c", "from flows.cli.main import app; app()", "serve", "--port", str(port),
           "--home", str(tmp_path / "home"), "--poll", "1"]  # fmt: skip
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    seen: list[str] = []
    try:
        _wait_for(proc, f"http://127.0.0.1:{port}", 90, seen)  # the URL, before deploying
        assert not any("deployed" in line for line in seen)
        _wait_for(proc, "deployed, worker started", 150, seen)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 2  # server and worker (and their own children)
        proc.send_signal(signum)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = "".join(seen) + (proc.stdout.read() if proc.stdout else "")
    assert "worker and server shut down" in out, out
    _gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, f"still running after {signal.Signals(signum).name}: {alive}"
    assert not port_in_use("127.0.0.1", port)
