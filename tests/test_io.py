"""hnm._io: every file appears complete under its final name, or not at all."""
import multiprocessing
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from hnm import _io
from hnm._io import atomic_open, is_temporary, save_csv, save_npy, save_npz

def _temporaries(directory):
    return [f for f in os.listdir(directory) if is_temporary(f)]


def test_atomic_open_replaces_the_file_only_when_complete(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"previous")
    with pytest.raises(RuntimeError):
        with atomic_open(path) as f:
            f.write(b"half")
            raise RuntimeError("stop")
    assert path.read_bytes() == b"previous"
    assert _temporaries(tmp_path) == []
    with atomic_open(path) as f:
        f.write(b"new")
        assert path.read_bytes() == b"previous"  # not visible before the end
    assert path.read_bytes() == b"new"
    assert _temporaries(tmp_path) == []


def test_keyboard_interrupt_while_writing_leaves_the_previous_file(tmp_path):
    path = tmp_path / "out.npy"
    np.save(path, np.arange(3))
    with pytest.raises(KeyboardInterrupt):
        with atomic_open(path) as f:
            f.write(b"x" * 1000)
            raise KeyboardInterrupt
    np.testing.assert_array_equal(np.load(path), np.arange(3))
    assert _temporaries(tmp_path) == []


def test_writers_round_trip(tmp_path):
    a = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    save_npy(tmp_path / "a.npy", a)
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), a)
    save_npz(tmp_path / "b.npz", {"x": a, "i": np.arange(3)})
    with np.load(tmp_path / "b.npz") as z:
        np.testing.assert_array_equal(z["x"], a)
        np.testing.assert_array_equal(z["i"], np.arange(3))
    save_csv(tmp_path / "c.csv", {"i": np.array([1, 2, 3]), "v": a[:, :2],
                                  "b": np.array([True, False, True])})
    lines = (tmp_path / "c.csv").read_text().splitlines()
    assert lines[0] == "i,v_0,v_1,b"
    rows = np.loadtxt(tmp_path / "c.csv", delimiter=",", skiprows=1)
    np.testing.assert_array_equal(rows[:, 0], [1, 2, 3])
    np.testing.assert_array_equal(rows[:, 1:3].astype(np.float32), a[:, :2])  # 9 digits
    np.testing.assert_array_equal(rows[:, 3], [1, 0, 1])
    assert _temporaries(tmp_path) == []


def test_csv_of_many_rows_matches_savetxt(tmp_path):
    rng = np.random.default_rng(0)
    n = _io.CSV_CHUNK_ROWS + 123  # more than one chunk
    ids = rng.integers(-5, 10**12, n)
    vals = rng.standard_normal(n)
    save_csv(tmp_path / "c.csv", {"id": ids, "v": vals})
    ref = tmp_path / "ref.csv"
    np.savetxt(ref, np.column_stack([ids.astype(object), vals]), fmt=["%d", "%.9g"],
               delimiter=",", header="id,v", comments="")
    assert (tmp_path / "c.csv").read_bytes() == ref.read_bytes()


def test_output_may_be_its_own_memory_mapped_input(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.arange(1000.0))
    mm = np.load(path, mmap_mode="r")
    save_npy(path, mm[::-1] * 2)  # reads the old file while writing the new one
    np.testing.assert_array_equal(mm, np.arange(1000.0))  # the old inode stays valid
    np.testing.assert_array_equal(np.load(path), np.arange(1000.0)[::-1] * 2)


def test_a_symlink_is_followed_and_kept(tmp_path):
    target = tmp_path / "real.npy"
    np.save(target, np.zeros(2))
    link = tmp_path / "link.npy"
    link.symlink_to(target)
    save_npy(link, np.ones(2))
    assert link.is_symlink()
    np.testing.assert_array_equal(np.load(target), np.ones(2))


def test_mode_of_a_replaced_file_is_kept_and_read_only_files_refused(tmp_path):
    path = tmp_path / "o.bin"
    path.write_bytes(b"a")
    os.chmod(path, 0o640)
    with atomic_open(path) as f:
        f.write(b"b")
    assert (os.stat(path).st_mode & 0o777) == 0o640
    if os.geteuid() != 0:  # root may write anything
        os.chmod(path, 0o440)
        with pytest.raises(_io.WriteError, match="o.bin"):
            with atomic_open(path) as f:
                f.write(b"c")
        assert path.read_bytes() == b"b"


def test_unwritable_directory_names_the_path(tmp_path):
    missing = tmp_path / "no" / "such" / "dir" / "out.csv"
    with pytest.raises(_io.WriteError, match="cannot write .*out.csv"):
        save_csv(missing, {"a": np.arange(3)})
    with pytest.raises(_io.WriteError, match="directory"):
        save_npy(tmp_path, np.arange(3))


def test_stale_temporaries_are_ignored_and_removed(tmp_path):
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True)
    dead = int(done.stdout)  # a process that has exited
    host = _io._HOST
    stale = tmp_path / f".out.csv{_io.TEMP_TAG}{host}.{dead}.abc"
    alive = tmp_path / f".out.csv{_io.TEMP_TAG}{host}.{os.getpid()}.def"
    other = tmp_path / f".other.csv{_io.TEMP_TAG}{host}.{dead}.ghi"
    foreign = tmp_path / f".out.csv{_io.TEMP_TAG}elsewhere.{dead}.jkl"
    for p in (stale, alive, other, foreign):
        p.write_text("partial")
    assert all(is_temporary(p) for p in (stale, alive, other, foreign))
    assert not is_temporary(tmp_path / "out.csv")
    save_csv(tmp_path / "out.csv", {"a": np.arange(3)})
    left = set(os.listdir(tmp_path))
    assert stale.name not in left  # its process is gone
    assert {alive.name, other.name, foreign.name} <= left  # live, other file, other host
    assert _io.remove_stale_temporaries(tmp_path) == 1  # now the other file's
    os.utime(foreign, (0, 0))  # a day old: removed although its host cannot be asked
    assert _io.remove_stale_temporaries(tmp_path) == 1
    assert set(os.listdir(tmp_path)) == {"out.csv", alive.name}


def _forkserver():
    """Children forked from a server that has imported hnm: they start in
    milliseconds, and no OpenMP thread of this process is forked."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["hnm", "hnm.cli"])
    return ctx


def _write_under_a_size_limit(path, limit):
    """Child: write 8 MB to ``path`` under RLIMIT_FSIZE=limit; exit 3 on WriteError."""
    import resource

    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    try:
        save_npy(path, np.arange(10**6, dtype=np.float64))
    except _io.WriteError as exc:
        with open(path + ".message", "w") as f:  # beside it, below the limit
            f.write(str(exc))
        sys.exit(3)


def test_a_write_beyond_the_file_size_limit_fails_cleanly(tmp_path):
    path = tmp_path / "out.npy"
    np.save(path, np.arange(5))
    previous = path.read_bytes()
    p = _forkserver().Process(target=_write_under_a_size_limit, args=(str(path), 1 << 20))
    p.start()
    p.join(120)
    assert p.exitcode == 3
    message = (tmp_path / "out.npy.message").read_text()
    assert "cannot write" in message and "out.npy" in message
    assert "file size limit" in message and "unchanged" in message
    assert path.read_bytes() == previous
    assert _temporaries(tmp_path) == []


def _write_forever(path):
    """Child: rewrite ``path`` (about 24 MB each time) until killed."""
    rng = np.random.default_rng(os.getpid())
    while True:
        save_npz(path, {"a": rng.standard_normal(3 * 10**6), "n": np.arange(10)})


def test_kill_9_during_writes_never_leaves_a_partial_file(tmp_path):
    path = tmp_path / "out.npz"
    save_npz(path, {"a": np.zeros(3 * 10**6), "n": np.arange(10)})
    ctx = _forkserver()
    rng = np.random.default_rng(1)
    for delay in rng.uniform(0.05, 1.5, 6):
        p = ctx.Process(target=_write_forever, args=(str(path),))
        p.start()
        time.sleep(delay)
        os.kill(p.pid, signal.SIGKILL)
        p.join()
        with np.load(path) as z:  # always a complete archive
            assert z["a"].shape == (3 * 10**6,)
            np.testing.assert_array_equal(z["n"], np.arange(10))
    save_npz(path, {"a": np.ones(3), "n": np.arange(10)})  # cleans up after the kills
    assert _temporaries(tmp_path) == []
