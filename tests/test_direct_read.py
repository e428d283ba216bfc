"""O_DIRECT candidate spans (hnm/_direct_read.py): the same bytes and the same search
results as the mapping, the fallback whenever O_DIRECT is refused, and no thread or
file descriptor left behind."""
import errno
import os
import threading
import time

import numpy as np
import pytest

import hnm
from hnm import _direct_read, _pairs
from hnm._farthest import search_farthest

pytestmark = pytest.mark.skipif(not hasattr(os, "O_DIRECT"), reason="no O_DIRECT here")


def _memmap(tmp_path, shape, dtype, header=100, seed=0, mode="r"):
    """A memmap after a header of ``header`` bytes (not a multiple of 4096)."""
    rng = np.random.default_rng(seed)
    data = rng.standard_normal(shape).astype(dtype)
    path = tmp_path / f"c_{np.dtype(dtype).name}_{shape[1]}.bin"
    with open(path, "wb") as f:
        f.write(b"h" * header)
        f.write(data.tobytes())
    return np.memmap(path, dtype=dtype, mode=mode, offset=header, shape=shape), data


def _direct_ok(path):
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_DIRECT))
        return True
    except OSError:
        return False


@pytest.fixture
def small_reads(monkeypatch):
    """Reads of ~64 KiB: many reads per search, each of the three buffers reused."""
    monkeypatch.setattr(_direct_read, "_READ_BYTES", 1 << 16)


@pytest.fixture
def preadv_calls(monkeypatch):
    calls = []
    real = os.preadv

    def counted(*args):
        calls.append(args[2])
        return real(*args)

    monkeypatch.setattr(os, "preadv", counted)
    return calls


def _open_fds():
    return set(os.listdir("/proc/self/fd"))


def _readers():
    return [t for t in threading.enumerate() if t.name == "hnm-direct-read"]


def _search(monkeypatch, direct, func, *args, **kwargs):
    monkeypatch.setenv("HNM_DIRECT_IO", direct)
    return func(*args, **kwargs)


def _same(a, b):
    assert a.indices.tobytes() == b.indices.tobytes()
    assert a.scores.dtype == b.scores.dtype and a.scores.tobytes() == b.scores.tobytes()


@pytest.mark.parametrize("shape, dtype", [((5001, 7), np.float64), ((3001, 128), np.float32)])
@pytest.mark.parametrize("span", [1, 333, 4096, 10_000])
def test_spans_are_the_slices(tmp_path, monkeypatch, small_reads, preadv_calls, shape,
                              dtype, span):
    C, data = _memmap(tmp_path, shape, dtype)
    monkeypatch.setenv("HNM_DIRECT_IO", "1")
    for view in (C, C[3:], C[1:-2]):  # first rows at offsets not aligned to 4096
        got = [(c0, np.array(b)) for c0, b in _direct_read.candidate_spans(view, span)]
        ref = np.asarray(view)
        assert [c0 for c0, _ in got] == list(range(0, len(ref), span))
        for c0, b in got:
            assert b.dtype == ref.dtype and b.tobytes() == ref[c0:c0 + span].tobytes()
    if _direct_ok(C.filename):
        assert preadv_calls, "the direct path was not taken"
        assert all(off % 4096 == 0 for off in preadv_calls)


@pytest.mark.parametrize("shape, dtype", [((20_011, 7), np.float64), ((9_001, 128), np.float32)])
@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_search_forced_on_equals_off(tmp_path, monkeypatch, small_reads, preadv_calls, shape,
                                     dtype, metric):
    C, _ = _memmap(tmp_path, shape, dtype)
    Q = np.random.default_rng(1).standard_normal((37, shape[1])).astype(dtype)
    kw = dict(metric=metric, block_size=300)
    used = 0
    for view in (C, C[5:]):
        preadv_calls.clear()
        off = _search(monkeypatch, "0", hnm.search_hard_pairs, Q, view, 7, **kw)
        assert not preadv_calls
        on = _search(monkeypatch, "1", hnm.search_hard_pairs, Q, view, 7, **kw)
        _same(on, off)
        far_off = _search(monkeypatch, "0", search_farthest, Q, view, 4, **kw)
        far_on = _search(monkeypatch, "1", search_farthest, Q, view, 4, **kw)
        _same(far_on, far_off)
        used += len(preadv_calls)
    if _direct_ok(C.filename):
        assert used


def test_refused_open_falls_back_silently(tmp_path, monkeypatch, preadv_calls):
    C, _ = _memmap(tmp_path, (4000, 128), np.float32)
    Q = np.random.default_rng(2).standard_normal((20, 128)).astype(np.float32)
    ref = _search(monkeypatch, "0", hnm.search_hard_pairs, Q, C, 5, block_size=512)
    real_open = os.open

    def refusing(path, flags, *args, **kwargs):  # as tmpfs answers O_DIRECT
        if flags & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing)
    _same(_search(monkeypatch, "1", hnm.search_hard_pairs, Q, C, 5, block_size=512), ref)
    assert not preadv_calls


def test_failing_read_falls_back_to_the_mapping(tmp_path, monkeypatch, small_reads):
    C, _ = _memmap(tmp_path, (6000, 7), np.float64)
    if not _direct_ok(C.filename):
        pytest.skip("O_DIRECT is refused on this filesystem")
    Q = np.random.default_rng(3).standard_normal((15, 7))
    ref = _search(monkeypatch, "0", hnm.search_hard_pairs, Q, C, 6, metric="l2", block_size=50)
    real, calls = os.preadv, []

    def failing(*args):  # the second read fails, as on a filesystem with larger blocks
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(*args)

    monkeypatch.setattr(os, "preadv", failing)
    fds = _open_fds()
    got = _search(monkeypatch, "1", hnm.search_hard_pairs, Q, C, 6, metric="l2", block_size=50)
    _same(got, ref)
    assert len(calls) == 2 and not _readers() and _open_fds() == fds


def test_mapping_when_the_file_is_not_the_array(tmp_path, monkeypatch, preadv_calls):
    """Copy-on-write and writable memmaps, arrays in memory and strided views are read
    from memory: the file may not hold what the array holds."""
    C, data = _memmap(tmp_path, (3000, 16), np.float32, mode="c")
    C[10] = 100.0  # private change, not in the file
    Q = np.ones((4, 16), dtype=np.float32)
    got = _search(monkeypatch, "1", hnm.search_hard_pairs, Q, C, 1, metric="ip")
    assert (got.indices == 10).all()
    W, _ = _memmap(tmp_path, (3000, 16), np.float32, mode="r+", header=64)
    for arr in (W, data, np.asarray(C)[:, ::2]):
        ref = _search(monkeypatch, "0", hnm.search_hard_pairs, Q[:, :arr.shape[1]], arr, 3)
        _same(_search(monkeypatch, "1", hnm.search_hard_pairs, Q[:, :arr.shape[1]], arr, 3), ref)
    assert not preadv_calls


@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_interrupted_consumer_leaves_nothing(tmp_path, monkeypatch, small_reads, error):
    C, _ = _memmap(tmp_path, (20_000, 128), np.float32)
    Q = np.random.default_rng(4).standard_normal((10, 128)).astype(np.float32)
    monkeypatch.setenv("HNM_DIRECT_IO", "1")
    fds = _open_fds()
    real, calls = _pairs.search_update, []

    def interrupted(*args):
        calls.append(1)
        if len(calls) == 3:
            raise error("interrupted")
        return real(*args)

    monkeypatch.setattr(_pairs, "search_update", interrupted)
    with pytest.raises(error):
        hnm.search_hard_pairs(Q, C, 5, block_size=256)
    assert not _readers() and _open_fds() == fds
    spans = _direct_read.candidate_spans(C, 100)  # a consumer that stops early
    next(spans)
    spans.close()
    assert not _readers() and _open_fds() == fds


def test_environment_and_auto(tmp_path, monkeypatch):
    C, _ = _memmap(tmp_path, (1000, 8), np.float32)
    monkeypatch.setenv("HNM_DIRECT_IO", "yes")
    with pytest.raises(ValueError, match="HNM_DIRECT_IO"):
        hnm.search_hard_pairs(C[:2], C, 1)
    monkeypatch.delenv("HNM_DIRECT_IO")
    assert not _direct_read.use_direct(C)  # small: the mapping
    monkeypatch.setattr(_direct_read, "_AUTO_MIN_BYTES", 0)
    np.asarray(C).sum()
    assert _direct_read._resident_fraction(C) == 1.0
    assert not _direct_read.use_direct(C)  # in the page cache and fits in memory
    monkeypatch.setattr(_direct_read, "_mem_available", lambda: C.nbytes - 1)
    assert _direct_read.use_direct(C)  # larger than the memory available
    monkeypatch.setattr(_direct_read, "_mem_available", lambda: None)
    monkeypatch.setattr(_direct_read, "_resident_fraction", lambda C: 0.1)
    assert _direct_read.use_direct(C)  # mostly not resident
    monkeypatch.setenv("HNM_DIRECT_IO", "0")
    assert not _direct_read.use_direct(C)


def test_fork_child_reads_directly(tmp_path, monkeypatch, small_reads):
    """A child forked after a direct search in the parent searches directly too, with
    the parent's result (no reader thread or descriptor is inherited)."""
    C, _ = _memmap(tmp_path, (8000, 32), np.float32)
    Q = np.random.default_rng(5).standard_normal((9, 32)).astype(np.float32)
    ref = _search(monkeypatch, "1", hnm.search_hard_pairs, Q, C, 4, n_jobs=1)
    out = tmp_path / "child.npy"
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        try:
            np.save(out, hnm.search_hard_pairs(Q, C, 4, n_jobs=1).indices)
        finally:
            os._exit(0)
    deadline = time.monotonic() + 60
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung")
        time.sleep(0.05)
    np.testing.assert_array_equal(np.load(out), ref.indices)
