"""Helper processes a killed run leaves behind (Prefect's temporary server, Dask workers), found and stopped.

Prefect starts its temporary API server as a child process and stops it at exit; a run killed
with ``kill -9`` (or a second Ctrl-C, which exits at once) never gets there, and the server
keeps running, reparented to init. Every ``emin`` process therefore writes its pid into
:data:`OWNER_ENV` of its environment, which every process it starts inherits; a process whose
owner is no longer alive and whose command line is one the product starts (the Prefect server,
a Prefect worker, a Dask worker/nanny/scheduler) is an orphan of ours. ``emin publish gc``
stops them; a process not carrying the marker is never touched. Linux only (``/proc``);
elsewhere nothing is found.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

#: Environment variable holding the pid of the ``emin`` process a helper process descends from.
OWNER_ENV = "EMIN_OWNER_PID"
#: Command-line fragments of the helper processes the product starts.
HELPER_MARKERS = ("prefect.server.api.server", "prefect server", "prefect worker", "distributed", "dask")


@dataclass(frozen=True)
class Orphan:
    """A helper process whose owning ``emin`` process is gone."""

    pid: int
    owner_pid: int
    command: str


def mark_owner() -> None:
    """Make this process the owner of every process it starts from now on."""
    os.environ[OWNER_ENV] = str(os.getpid())


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: trust kill(0)
    return stat[stat.rfind(")") + 2 :][:1] != "Z"


def _owner_of(proc: Path) -> int | None:
    try:
        environ = (proc / "environ").read_bytes().split(b"\0")
    except OSError:  # gone, or not ours to read
        return None
    prefix = OWNER_ENV.encode() + b"="
    for item in environ:
        if item.startswith(prefix):
            value = item[len(prefix) :]
            return int(value) if value.isdigit() else None
    return None


def find_orphans(proc_root: Path = Path("/proc")) -> list[Orphan]:
    """Helper processes carrying :data:`OWNER_ENV` of an owner that is no longer alive."""
    found = []
    me = os.getpid()
    for proc in proc_root.glob("[0-9]*"):
        pid = int(proc.name)
        owner = _owner_of(proc)
        if owner is None or pid == me or owner == pid or _alive(owner):
            continue
        try:
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if any(m in command for m in HELPER_MARKERS):
            found.append(Orphan(pid, owner, command))
    return sorted(found, key=lambda o: o.pid)


def stop_orphans(orphans: list[Orphan], *, grace_s: float = 5.0) -> list[Orphan]:
    """SIGTERM each orphan, SIGKILL what is left after ``grace_s``; returns those stopped."""
    stopped = []
    for o in orphans:
        try:
            os.kill(o.pid, signal.SIGTERM)
            stopped.append(o)
        except ProcessLookupError:
            continue
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(_alive(o.pid) for o in stopped):
        time.sleep(0.1)
    for o in stopped:
        if _alive(o.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(o.pid, signal.SIGKILL)
    return stopped
