"""A local Prefect stack for the deployments in ``prefect.yaml``: server, work pool, deployments, worker.

:func:`local_stack` starts a Prefect server on loopback, creates the process work
pool, registers every deployment (``prefect --no-prompt deploy --all`` from the
repository root) and starts a worker; on exit it stops the worker and the server
(whole process groups). ``emin serve`` (flows/cli_serve.py) and the end-to-end
test both use it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.errors import StackError

REPO = Path(__file__).resolve().parents[1]
POOL = "emin-process"
PREFECT = [sys.executable, "-m", "prefect"]

QUIET_ENV = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_in_use(host: str, port: int) -> bool:
    """Whether something already listens on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


@dataclass
class Stack:
    """A running local stack: its URLs, environment, log folder and processes."""

    host: str
    port: int
    home: Path
    env: dict[str, str]
    logs: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def log_tail(self, name: str, chars: int = 3000) -> str:
        """The end of a process's log file (for error messages)."""
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def prefect(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """Run a ``prefect`` CLI command against this stack from the repository root."""
        return subprocess.run(
            [*PREFECT, *args], cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout
        )


def stack_env(
    home: Path, host: str, port: int, *, poll_seconds: float | None = None, database: Path | None = None
) -> dict[str, str]:
    """Environment for every process of the stack: its PREFECT_HOME, SQLite file and API URL."""
    db = database or home / "prefect.db"
    env = {
        **os.environ,
        **QUIET_ENV,
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": f"http://{host}:{port}/api",
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{db}",
        "PREFECT_UI_URL": f"http://{host}:{port}",
        "PREFECT_SERVER_API_HOST": host,
        "PREFECT_SERVER_API_PORT": str(port),
    }
    if poll_seconds is not None:
        env["PREFECT_WORKER_QUERY_SECONDS"] = str(poll_seconds)
    env.pop("PREFECT_PROFILE", None)
    return env


def _spawn(stack: Stack, name: str, args: list[str]) -> subprocess.Popen[bytes]:
    """Start a process in its own session (so the whole group can be stopped), logging to a file."""
    log = open(stack.logs / f"{name}.log", "wb")  # noqa: SIM115 - closed by the child's exit
    proc = subprocess.Popen(
        args, cwd=REPO, env=stack.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    log.close()
    stack.procs[name] = proc
    return proc


def wait_healthy(stack: Stack, timeout: float = 90.0) -> None:
    """Poll ``/api/health`` until the server answers (or its process dies)."""
    deadline = time.monotonic() + timeout
    server = stack.procs["server"]
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise StackError(f"prefect server exited ({server.returncode}):\n{stack.log_tail('server')}")
        try:
            with urllib.request.urlopen(f"{stack.api_url}/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise StackError(f"prefect server not healthy after {timeout:.0f} s:\n{stack.log_tail('server')}")


def stop_process(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM the process group, then SIGKILL what is left after ``grace`` seconds."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=grace)


def deploy_all(stack: Stack, pool: str = POOL, names: Sequence[str] | None = None) -> str:
    """Create the process work pool (if missing) and register prefect.yaml's deployments (``names``: only those)."""
    created = stack.prefect("work-pool", "create", pool, "--type", "process")
    if created.returncode != 0 and "already exists" not in created.stdout + created.stderr:
        raise StackError(f"work pool {pool!r} not created:\n{created.stdout}\n{created.stderr}")
    which = ["--all"] if not names else [a for n in names for a in ("--name", n)]
    done = stack.prefect("--no-prompt", "deploy", *which, timeout=300)
    if done.returncode != 0:
        raise StackError(f"`prefect deploy --all` failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout


@contextlib.contextmanager
def local_stack(
    home: Path,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    pool: str = POOL,
    poll_seconds: float | None = None,
    worker: bool = True,
    deploy: bool = True,
    on_server: Callable[[Stack], None] | None = None,
    deployments: Sequence[str] | None = None,
) -> Iterator[Stack]:
    """Server (+ work pool, deployments, worker) for the ``with`` block; everything stopped after.

    ``on_server(stack)`` is called as soon as the server answers (before deploying), e.g. to
    print the UI's URL. ``deployments``: register only these (prefect.yaml names), not all.
    """
    port = port or free_port(host)
    if port_in_use(host, port):
        raise StackError(f"{host}:{port} is in use (another Prefect server?); pick another with --port")
    home.mkdir(parents=True, exist_ok=True)
    logs = home / "logs"
    logs.mkdir(exist_ok=True)
    stack = Stack(host, port, home, stack_env(home, host, port, poll_seconds=poll_seconds), logs)
    try:
        _spawn(stack, "server", [*PREFECT, "server", "start", "--host", host, "--port", str(port)])
        wait_healthy(stack)
        if on_server is not None:
            on_server(stack)
        if deploy:
            deploy_all(stack, pool, deployments)
        if worker:
            _spawn(stack, "worker", [*PREFECT, "worker", "start", "--pool", pool, "--type", "process"])
        yield stack
    finally:
        for name in ("worker", "server"):
            if name in stack.procs:
                stop_process(stack.procs[name])


class Stopped(BaseException):
    """Raised in the main thread by :func:`stop_on_signals` (a BaseException, like KeyboardInterrupt)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def stop_on_signals(signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGHUP)) -> Iterator[None]:
    """Turn SIGTERM/SIGHUP into :class:`Stopped` in the ``with`` block, so ``finally`` clauses tear down.

    (SIGINT already raises KeyboardInterrupt.) Previous handlers are restored on exit.
    """

    def handler(signum: int, _frame: object) -> None:
        raise Stopped(signum)

    previous = {s: signal.signal(s, handler) for s in signals}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
