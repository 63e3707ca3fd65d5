"""Faults, tried as a user would: kill -9 and Ctrl-C at seeded random points, and concurrent runs.

After every kill: each published version verifies, no partial version is visible, ``latest``
names a complete version, ``emin publish gc`` removes every leftover the product made, and a
re-run completes. Two concurrent curations to one ``--out`` each report a version holding
their own content.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from scenes import TinyScene

from pipeline.publishing.contract import validate_store
from pipeline.publishing.registry import verify_dataset
from pipeline.publishing.versions import VERSION_RE, gc, list_versions, publish_dataset, read_latest
from pipeline.publishing.zarr_io import open_store

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TEMPORARY = re.compile(r"\.tmp-[0-9a-f]{12}$")


def _env(root: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "EMIN_DATA_ROOT": str(root),
        "EMIN_STATE_DIR": str(root.parent / "state"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }


def _emin(*args: str) -> list[str]:
    return [sys.executable, "-m", "flows.cli.main", *args]


def _hsi_args(scene: TinyScene, out: Path, *extra: str) -> list[str]:
    return _emin(
        "curate", "hsi", "--no-prefect", "--polygons", str(scene.polygons), "--class-column", "class_name",
        "--raster", f"VNIR1={scene.rasters['VNIR1']}", "--sensor", "VNIR1=VNIR",
        "--raster", f"SWIR1={scene.rasters['SWIR1']}", "--sensor", "SWIR1=SWIR",
        "--transmission", str(scene.transmission), "--out", str(out),
        "--param", "max_points_per_class=200", *extra,
    )  # fmt: skip


def _kill_after(cmd: list[str], root: Path, delay: float, sig: int = signal.SIGKILL) -> int:
    proc = subprocess.Popen(cmd, env=_env(root), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        proc.send_signal(sig)
    return proc.wait(timeout=30)


def _assert_interrupt_reported(returncode: int, stderr: str) -> None:
    """A Ctrl-C'd run exits 130 with the product's message (or finished first: 0, or died by the
    signal while Python shut down: -SIGINT); never another error or a library's traceback."""
    assert returncode in (0, 130, -signal.SIGINT), stderr[-3000:]
    if returncode == 130:
        assert "interrupted: the run stopped" in stderr, stderr[-3000:]
    assert "Traceback" not in stderr or stderr.rstrip().endswith("KeyboardInterrupt"), stderr[-3000:]


def _leftovers(*folders: Path) -> list[Path]:
    found: list[Path] = []
    for folder in folders:
        if folder.exists():
            found += [p for p in folder.rglob("*") if TEMPORARY.search(p.name)]
    return found


def _assert_root_sound(root: Path) -> None:
    """Every version verifies; every version-like folder is complete; ``latest`` is complete."""
    if not root.exists():
        return
    for ds_folder in (p for p in root.iterdir() if p.is_dir()):
        name = ds_folder.name
        versions = list_versions(name, root=root)
        for entry in ds_folder.iterdir():
            if VERSION_RE.match(entry.name):
                assert entry.name in versions, f"partial version {entry}"
        for v in versions:
            verify_dataset(name, v, root=root)
        latest = read_latest(name, root=root)
        assert latest is None or latest in versions


def _gc_everything(root: Path, *beside: Path) -> None:
    saved = os.environ.get("EMIN_STATE_DIR")
    os.environ["EMIN_STATE_DIR"] = str(root.parent / "state")  # the registry the subprocesses wrote
    try:
        gc(root=root, min_age_s=3600.0)  # owners are dead: removed whatever their age
    finally:
        os.environ.pop("EMIN_STATE_DIR")
        if saved is not None:
            os.environ["EMIN_STATE_DIR"] = saved
    assert _leftovers(root, *beside) == []


def test_kill_9_during_publish_leaves_only_complete_versions(tmp_path: Path) -> None:
    root = tmp_path / "root"
    script = (
        "import sys, numpy as np, xarray as xr\n"
        "from pipeline.publishing.versions import publish_dataset\n"
        "for i in range(int(sys.argv[2]), 100000):\n"
        "    ds = xr.Dataset({'v': ('sample', np.arange(200000.0) + i)}, attrs={'emin_kind': 'test'})\n"
        "    rej = xr.Dataset({'reason': ('reject', np.array([], dtype=object))})\n"
        "    publish_dataset(ds, name='f', root=sys.argv[1], groups={'rejects': rej})\n"
        "    print('published', flush=True)\n"  # the kill comes during a later publish
    )
    rng = random.Random(16)
    kills = 12
    for k in range(kills):
        proc = subprocess.Popen([sys.executable, "-c", script, str(root), str(1000 * k)], env=_env(root),
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # fmt: skip
        assert proc.stdout is not None and proc.stdout.readline().strip() == "published"
        time.sleep(rng.uniform(0.0, 0.8))
        proc.kill()
        proc.wait(timeout=30)
        _assert_root_sound(root)
    assert len(list_versions("f", root=root)) >= kills  # at least one complete publish per process
    _gc_everything(root)
    _assert_root_sound(root)
    import numpy as np
    import xarray as xr

    again = publish_dataset(xr.Dataset({"v": ("sample", np.arange(5.0))}, attrs={"emin_kind": "test"}),
                            name="f", root=root)  # fmt: skip
    assert again.created and read_latest("f", root=root) == again.version
    verify_dataset("f", root=root)


def test_kill_9_and_ctrl_c_during_hsi_curation(tiny_scene: TinyScene, tmp_path: Path) -> None:
    root, work = tmp_path / "root", tmp_path / "work"
    work.mkdir()
    out = work / "o.zarr"
    rng = random.Random(7)
    start = time.perf_counter()
    done = subprocess.run(_hsi_args(tiny_scene, out, "--publish", "tiny"), env=_env(root),
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    full = time.perf_counter() - start
    assert done.returncode == 0, done.stderr[-3000:]
    first = Path(done.stdout.strip().splitlines()[-1])
    for _ in range(3):  # kill -9 anywhere in a run (imports, extraction, write, publish)
        _kill_after(_hsi_args(tiny_scene, out, "--publish", "tiny", "--overwrite", "--seed", "3"),
                    root, rng.uniform(0.5, full))  # fmt: skip
        assert validate_store(out) == []  # the previous complete store, or the new complete one
        _assert_root_sound(root)
        _gc_everything(root, work)
    for _ in range(2):  # Ctrl-C: stops within seconds, cleans up after itself, nothing half-written
        proc = subprocess.Popen(_hsi_args(tiny_scene, out, "--overwrite", "--seed", "4"), env=_env(root),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
        time.sleep(rng.uniform(1.0, full * 0.8))
        proc.send_signal(signal.SIGINT)
        t0 = time.perf_counter()
        _, stderr = proc.communicate(timeout=20)
        assert time.perf_counter() - t0 < 10
        _assert_interrupt_reported(proc.returncode, stderr)
        assert validate_store(out) == []
        assert _leftovers(root, work) == []
    again = subprocess.run(_hsi_args(tiny_scene, out, "--publish", "tiny", "--overwrite"), env=_env(root),
                           capture_output=True, text=True, timeout=300)  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    assert Path(again.stdout.strip().splitlines()[-1]) == first  # same content, same version
    _assert_root_sound(root)


def test_two_concurrent_curations_to_one_target_each_report_their_own_content(
    tiny_scene: TinyScene, tmp_path: Path
) -> None:
    root, out = tmp_path / "root", tmp_path / "o.zarr"
    procs = {
        seed: subprocess.Popen(_hsi_args(tiny_scene, out, "--publish", "same", "--overwrite", "--seed", str(seed)),
                               env=_env(root), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for seed in (11, 12)
    }  # fmt: skip
    reported = {}
    for seed, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr[-3000:]
        reported[seed] = Path(stdout.strip().splitlines()[-1])
    assert reported[11] != reported[12]
    for seed, store in reported.items():
        assert open_store(store).attrs["parameters"]["seed"] == seed
    _assert_root_sound(root)
    assert _leftovers(root, tmp_path) == []


def test_kill_9_during_seismic_curation(tmp_path: Path) -> None:
    from pipeline.synthetic.seismic_network import generate_seismic_network

    net = generate_seismic_network(tmp_path / "net", seed=3, n_stations=8, n_events=4)
    root, work = tmp_path / "root", tmp_path / "work"
    work.mkdir()
    out = work / "s.zarr"
    args = _emin("curate", "seismic", "--no-prefect", "--waveforms", str(net.waveform_glob),
                 "--inventory", str(net.inventory), "--events", str(net.events), "--picks", str(net.picks),
                 "--out", str(out), "--keep-all-errors", "--unit-mb", "0.5", "--publish", "seis")  # fmt: skip
    rng = random.Random(5)
    for _ in range(3):
        _kill_after(args, root, rng.uniform(0.5, 8.0))
        if out.exists():
            assert validate_store(out) == []
        _assert_root_sound(root)
        _gc_everything(root, work)
    done = subprocess.run(args, env=_env(root), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert validate_store(out) == []
    _assert_root_sound(root)
    assert list_versions("seis", root=root)


def test_ctrl_c_with_prefect_stops_within_seconds_and_writes_nothing(
    tiny_scene: TinyScene, tmp_path: Path
) -> None:
    """Prefect on: a Ctrl-C while the flow starts (or runs) is honoured, not swallowed."""
    root, out, log = tmp_path / "root", tmp_path / "p.zarr", tmp_path / "stderr.txt"
    rng = random.Random(21)
    args = [a for a in _hsi_args(tiny_scene, out) if a != "--no-prefect"]
    with open(log, "w") as err:
        proc = subprocess.Popen(args, env=_env(root), stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + 120
        while "Starting temporary server" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(rng.uniform(0.0, 1.5))
        proc.send_signal(signal.SIGINT)
        t0 = time.perf_counter()
        code = proc.wait(timeout=30)
    assert time.perf_counter() - t0 < 10
    assert code != 0, "the run was not interrupted: it finished before the signal (make the delay shorter)"
    assert not out.exists() and _leftovers(tmp_path) == []
    assert "Traceback" not in log.read_text()


def _descendants_of(owner: int) -> dict[int, str]:
    """Processes whose environment names ``owner`` as their emin owner (read from /proc directly)."""
    found = {}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            env = (proc / "environ").read_bytes().split(b"\0")
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if f"EMIN_OWNER_PID={owner}".encode() in env and (proc / "stat").read_text().split(") ")[1][0] != "Z":
            found[int(proc.name)] = cmd
    return found


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="orphan tracking reads /proc (Linux)")
def test_kill_9_with_prefect_orphans_the_server_and_gc_stops_it(
    tiny_scene: TinyScene, tmp_path: Path
) -> None:
    """kill -9 skips Prefect's atexit, so its temporary server outlives the run; gc stops it."""
    root, out, log = tmp_path / "root", tmp_path / "p.zarr", tmp_path / "stderr.txt"
    args = [a for a in _hsi_args(tiny_scene, out) if a != "--no-prefect"]
    with open(log, "w") as err:
        proc = subprocess.Popen(args, env=_env(root), stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + 120
        servers: dict[int, str] = {}
        while not servers and time.monotonic() < deadline and proc.poll() is None:
            servers = {p: c for p, c in _descendants_of(proc.pid).items() if "prefect.server.api.server" in c}
            time.sleep(0.2)
        assert servers, f"no Prefect server seen: {log.read_text()[-2000:]}"
        proc.kill()
        proc.wait(timeout=30)
    time.sleep(1.0)
    assert set(servers) <= set(_descendants_of(proc.pid)), "the server died with the run: nothing to test"
    done = subprocess.run(_emin("publish", "gc", "--root", str(root)), env=_env(root), capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert not set(servers) & set(_descendants_of(proc.pid)), done.stdout
    assert "orphaned helper process" in done.stdout and str(next(iter(servers))) in done.stdout


def test_kill_9_between_a_pointer_write_and_its_rename_is_cleaned_by_gc(tmp_path: Path) -> None:
    """The exact point the seeded publish kills once hit: the temp file of ``latest`` written,
    not yet renamed. The process dies there (SIGKILL from inside os.replace); gc removes it."""
    root = tmp_path / "root"
    (root / "f").mkdir(parents=True)
    (root / "f" / "latest").write_text('{"version": "v1-000000000000"}')
    script = (
        "import os, signal, fsspec\n"
        "from pipeline.publishing.versions import write_small_file\n"
        "os.replace = lambda a, b: os.kill(os.getpid(), signal.SIGKILL)\n"
        f"write_small_file(fsspec.filesystem('file'), {str(root / 'f' / 'latest')!r}, b'new')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], env=_env(root), timeout=120)
    assert done.returncode == -signal.SIGKILL
    assert len(_leftovers(root)) == 1
    _gc_everything(root)
    assert (root / "f" / "latest").read_text() == '{"version": "v1-000000000000"}'


def test_gc_rewriting_the_registry_never_loses_a_line_a_run_appends(tmp_path: Path) -> None:
    """``emin publish gc`` rewrites the temporaries registry while runs register new temporaries."""
    state, work = tmp_path / "state", tmp_path / "work"
    work.mkdir()
    n = 400
    script = (
        "import sys, uuid\n"
        "from pathlib import Path\n"
        "from pipeline.publishing.zarr_io import mark_temporary\n"
        f"for i in range({n}):\n"
        "    mark_temporary(Path(sys.argv[1]) / f'.t{i}.tmp-{uuid.uuid4().hex[:12]}')\n"
        "print('registered', flush=True)\n"
        "sys.stdin.readline()\n"  # stays alive: its temporaries are in use, gc must keep them
    )
    env = {**_env(tmp_path / "root"), "EMIN_STATE_DIR": str(state)}
    proc = subprocess.Popen([sys.executable, "-c", script, str(work)], env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    saved = os.environ.get("EMIN_STATE_DIR")
    os.environ["EMIN_STATE_DIR"] = str(state)
    try:
        assert proc.stdout is not None
        while proc.poll() is None and not select_ready(proc.stdout):
            gc(root=tmp_path / "root", min_age_s=3600.0)  # rewrites the registry, again and again
        assert proc.stdout.readline().strip() == "registered"
        registered = {json.loads(line)["path"] for line in (state / "temporaries").read_text().splitlines()}
        made = {str(p) for p in work.iterdir()}
        assert len(made) == n and made <= registered, f"{len(made - registered)} registrations lost"
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        proc.wait(timeout=30)
        os.environ.pop("EMIN_STATE_DIR")
        if saved is not None:
            os.environ["EMIN_STATE_DIR"] = saved
    _gc_everything(tmp_path / "root", work)  # the owner is gone now: every one is removed


def select_ready(stream: Any) -> bool:
    """Whether ``stream`` has a line to read now."""
    import select

    return bool(select.select([stream], [], [], 0)[0])


def test_ctrl_c_during_a_zarr_write_leaves_no_temporary(tmp_path: Path) -> None:
    """zarr writes on its own I/O thread: a Ctrl-C ends the wait, not the write, which must not
    go on re-creating the temporary that the interrupted run removes."""
    script = (
        "import sys, numpy as np, xarray as xr\n"
        "from pipeline import interrupt\n"
        "from pipeline.publishing.zarr_io import write_atomically, write_zarr\n"
        "interrupt.install()\n"
        "ds = xr.Dataset({f'v{i}': (('a', 'b'), np.random.default_rng(i).random((2000, 2000), np.float32))\n"
        "                 for i in range(6)}, attrs={'emin_kind': 'test'})\n"
        "print('writing', flush=True)\n"
        "with write_atomically(sys.argv[1], kind='test') as tmp:\n"
        "    write_zarr(ds, tmp, chunks={'a': 50, 'b': 50})\n"
    )
    rng = random.Random(9)
    out = tmp_path / "o.zarr"
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, "-c", script, str(out)], env=_env(tmp_path / "root"),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
        deadline = time.monotonic() + 60
        while not any(tmp_path.glob(".o.zarr.tmp-*/v*/c")) and time.monotonic() < deadline:
            time.sleep(0.01)  # until chunks are being written
        time.sleep(rng.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
        assert proc.returncode != 0, "the write finished before the signal (make the arrays bigger)"
        time.sleep(1.0)  # a write still in flight would re-create the folder by now
        assert _leftovers(tmp_path) == [], stderr[-2000:]
        assert not out.exists()
