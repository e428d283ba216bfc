"""Fork safety: a child forked after hnm's OpenMP kernels ran in the parent gets the
parent's results, without hanging, from every kernel and estimator.

GNU libgomp keeps a pool of worker threads per thread that opened a parallel
region; a fork copies the pool's bookkeeping but not its threads, and the child's
next parallel region used to wait for them forever. Each check therefore runs in a
fresh Python (this file run as a script, with two OpenMP threads so the pool
exists even on one core), and every child under its own timeout: a hang fails one
case in seconds, never the suite. The parent computes each result first, on its
threads, then forks a child that computes it again.
"""
import json
import multiprocessing as mp
import os
import select
import subprocess
import sys
import threading
import time
import warnings

import numpy as np

CHILD_TIMEOUT = 60  # seconds for one child: generous on a loaded 2-core machine
ENV = dict(os.environ, OMP_NUM_THREADS="2", OPENBLAS_NUM_THREADS="2",
           PYTHONWARNINGS="default")


# ----------------------------------------------------------------------------------
# The cases: each returns a tuple of numpy arrays (so results compare exactly)


def _data():
    rng = np.random.default_rng(0)
    d = {}
    d["x"] = rng.standard_normal(600_000).astype(np.float32)
    d["rows"] = rng.standard_normal((3000, 200))
    y = rng.integers(0, 4, 20_000)
    p = rng.random((20_000, 4))
    d["y"], d["proba"] = y, p / p.sum(1, keepdims=True)
    d["Q"] = rng.standard_normal((300, 24)).astype(np.float32)
    d["C"] = rng.standard_normal((4000, 24)).astype(np.float32)
    # > 4096 rows, so that difficulty() inside the estimators runs 2 threads
    X = rng.standard_normal((9000, 6))
    d["X"], d["Xy"] = X, (X[:, 0] + 0.5 * rng.standard_normal(9000) > 1.2).astype(int)
    return d


D = None


def _d():
    global D
    if D is None:
        D = _data()
    return D


def case_topk_flat():
    t = __import__("hnm").topk(_d()["x"], 50, chunk_size=1 << 14)
    return t.values, t.indices


def case_topk_rows():
    t = __import__("hnm").topk(_d()["rows"], axis=1, band=(2, 9))
    return t.values, t.indices


def case_difficulty():
    import hnm
    d = _d()
    return (hnm.difficulty(d["y"], d["proba"], measure="margin"),
            hnm.difficulty(d["y"], d["proba"], measure="log_loss"),
            hnm.difficulty(d["y"], d["proba"], measure="entropy"))


def case_search_hard_pairs():
    import hnm
    d = _d()
    a = hnm.search_hard_pairs(d["Q"], d["C"], 10)
    b = hnm.search_hard_pairs(d["Q"].astype(np.float64), d["C"], 5, metric="l2", n_jobs=2)
    c = hnm.search_hard_pairs(d["Q"], d["C"], 5, metric="ip", screen="exact",
                              exclude=[np.arange(3)] * len(d["Q"]))
    return a.scores, a.indices, b.scores, b.indices, c.scores, c.indices


def case_mine_hard_negatives():
    import hnm
    d = _d()
    m = hnm.mine_hard_negatives(d["Q"], np.arange(len(d["Q"])), d["C"], k=3,
                                band=(2, 40), relative_margin=0.05, sampling="random",
                                random_state=0)
    return m.query, m.positive, m.negative, m.score


def case_resampler():
    import hnm
    d = _d()
    Xr, yr = hnm.HardNegativeResampler(random_state=0).fit_resample(d["X"], d["Xy"])
    Xn, yn = hnm.HardNegativeResampler(difficulty="nearmiss", random_state=0).fit_resample(
        d["X"], d["Xy"])
    return Xr, yr, Xn, yn


def case_mining_classifier():
    import hnm
    from sklearn.linear_model import LogisticRegression
    d = _d()
    clf = hnm.HardMiningClassifier(LogisticRegression(), n_rounds=2, random_state=0)
    clf.fit(d["X"], d["Xy"])
    return (clf.predict_proba(d["X"]),)


def case_mining_classifier_openmp_estimator():
    """scikit-learn's own OpenMP (its wheels vendor another libgomp) in the same
    fork: its pool is released before the fork too."""
    import hnm
    from sklearn.ensemble import HistGradientBoostingClassifier
    d = _d()
    clf = hnm.HardMiningClassifier(HistGradientBoostingClassifier(max_iter=5, random_state=0),
                                   n_rounds=2, random_state=0)
    clf.fit(d["X"], d["Xy"])
    return (clf.predict_proba(d["X"]),)


CASES = {name[5:]: fn for name, fn in list(globals().items()) if name.startswith("case_")}


def _same(a, b, exact=True):
    """Same arrays; with exact=False float arrays to float32 rounding (a search on
    another number of threads sums its dot products in another order: the same ids,
    scores that can differ in the last bits, as search_hard_pairs documents)."""
    def one(u, v):
        u, v = np.asarray(u), np.asarray(v)
        if u.shape != v.shape or u.dtype != v.dtype:
            return False
        if exact or u.dtype.kind != "f":
            return np.array_equal(u, v, equal_nan=True)
        return np.allclose(u, v, rtol=1e-5, atol=1e-6, equal_nan=True)
    return len(a) == len(b) and all(one(u, v) for u, v in zip(a, b))


def _warm():
    """Two OpenMP threads in the parent's main thread right before a fork (each fork
    releases the pool, so without this only the first fork would inherit one)."""
    __import__("hnm").topk(_d()["x"], 5, chunk_size=1 << 14)


# ----------------------------------------------------------------------------------
# The parent (this file run as a script)


def _child(fn, conn):
    """Compute fn() and send back (result, warnings, serial?, OpenMP threads)."""
    from hnm import _threads
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out = ("ok", fn())
        except BaseException as exc:  # report, do not hang the parent
            out = ("error", repr(exc))
    conn.send(out + ([str(w.message) for w in caught], _threads._serial,
                     _threads.openmp_max_threads()))
    conn.close()


def _in_child(fn, method="fork"):
    ctx = mp.get_context(method)
    r, w = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_child, args=(fn, w))
    start = time.monotonic()
    p.start()
    w.close()
    got = r.recv() if r.poll(CHILD_TIMEOUT) else None
    p.join(10)
    if p.is_alive():
        p.kill()
        p.join()
    if got is None:
        return {"status": f"hung (no answer in {CHILD_TIMEOUT} s)"}
    status, value, caught, serial, threads = got
    return {"status": status, "value": value, "warnings": caught, "serial": serial,
            "threads": threads, "seconds": time.monotonic() - start}


def _report(expected, got, exact=True):
    out = {k: v for k, v in got.items() if k != "value"}
    if got["status"] == "ok":
        out["same"] = _same(expected, got["value"], exact)
    return out


def run_fork_cases(expected):
    from hnm._threads import openmp_max_threads
    report = {"parent_threads": openmp_max_threads()}
    for name, fn in CASES.items():
        if name == "mining_classifier_openmp_estimator":
            fn()  # scikit-learn's OpenMP pool in the parent right before the fork
        _warm()
        report[name] = _report(expected[name], _in_child(fn))
    # os.fork itself, twice in a row (the second fork after the parent used threads again)
    for attempt in range(2):
        _warm()
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(r)
                ok = _same(expected["topk_flat"], case_topk_flat())
                os.write(w, b"1" if ok else b"0")
            finally:
                os._exit(0)
        os.close(w)
        ready = select.select([r], [], [], CHILD_TIMEOUT)[0]
        data = os.read(r, 1) if ready else b""
        os.close(r)
        if not data:
            os.kill(pid, 9)
        os.waitpid(pid, 0)
        report[f"os_fork_{attempt}"] = {"status": "ok" if data else "hung", "same": data == b"1"}
    return report


def _pool_task(name):
    return CASES[name]()


def run_fork_pool(expected):
    _warm()
    names = [name for name in CASES if name != "mining_classifier_openmp_estimator"]
    with mp.get_context("fork").Pool(4) as pool:
        try:
            got = pool.map_async(_pool_task, names).get(4 * CHILD_TIMEOUT)
        except mp.TimeoutError:
            pool.terminate()
            return {"status": "hung"}
    return {"status": "ok", "same": all(_same(expected[n], g) for n, g in zip(names, got))}


def run_fallback(expected):
    """A runtime that cannot release its pool: the child must run serially (1 thread,
    one warning), not hang, and still get the parent's results."""
    from hnm import _openmp_helpers
    real = _openmp_helpers.openmp_pause
    _openmp_helpers.openmp_pause = lambda: -2
    try:
        report = {}
        for name in ("topk_flat", "difficulty", "search_hard_pairs", "resampler"):
            _warm()
            report[name] = _report(expected[name], _in_child(CASES[name]), exact=False)
        return report
    finally:
        _openmp_helpers.openmp_pause = real


def _thread_counts():
    from threadpoolctl import threadpool_info
    from hnm import _threads
    return {"openmp": _threads.openmp_max_threads(), "serial": _threads._serial,
            "blas": sorted({i["num_threads"] for i in threadpool_info()
                            if i["user_api"] == "blas"}),
            "blas_users": _threads._blas_users}


def _counts_child(conn):
    conn.send(_thread_counts())
    conn.close()


def _counts_in(method, setup=None):
    ctx = mp.get_context(method)
    r, w = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_counts_child, args=(w,))
    p.start()
    w.close()
    got = r.recv() if r.poll(3 * CHILD_TIMEOUT) else {"status": "hung"}
    p.join(10)
    if p.is_alive():
        p.kill()
    return got


def run_thread_counts(expected):
    """Children keep their threads (fork, spawn, forkserver); threadpoolctl limits
    set in the parent reach fork children; a fork taken while a search holds the
    BLAS limit in another thread gives the child the user's BLAS threads back."""
    from threadpoolctl import threadpool_limits
    from hnm import _threads
    report = {"parent": _thread_counts()}
    for method in ("fork", "spawn", "forkserver"):
        _warm()
        report[method] = _counts_in(method)
    with threadpool_limits(1, user_api="openmp"):
        _warm()
        report["fork_limited"] = _counts_in("fork")
    entered, leave = threading.Event(), threading.Event()

    def hold():
        with _threads.single_threaded_blas():
            entered.set()
            leave.wait(3 * CHILD_TIMEOUT)

    t = threading.Thread(target=hold)
    t.start()
    entered.wait(CHILD_TIMEOUT)
    report["parent_during_search"] = _thread_counts()
    _warm()
    report["fork_during_search"] = _counts_in("fork")
    report["fork_during_search_result"] = _report(expected["search_hard_pairs"],
                                                  _in_child(case_search_hard_pairs))
    leave.set()
    t.join()
    report["parent_after_search"] = _thread_counts()
    return report


def run_dask(expected):
    """hnm.dask on dask's multiprocessing scheduler with forked workers, after the
    parent used hnm's threads."""
    import dask
    import dask.array as da
    import hnm.dask
    d = _d()
    _warm()
    expected = (expected["topk_flat"], expected["difficulty"][:1],
                expected["search_hard_pairs"][:2])
    result = {}

    def compute():
        t = hnm.dask.topk(da.from_array(d["x"], chunks=100_000), 50)
        diff = hnm.dask.difficulty(da.from_array(d["y"], chunks=5000),
                                   da.from_array(d["proba"], chunks=(5000, 4))).compute()
        s = hnm.dask.search_hard_pairs(d["Q"], da.from_array(d["C"], chunks=(1000, 24)), 10)
        result["got"] = ((t.values, t.indices), (diff,), (s.scores, s.indices))

    with dask.config.set(scheduler="processes", num_workers=2,
                         **{"multiprocessing.context": "fork"}):
        th = threading.Thread(target=compute, daemon=True)
        th.start()
        th.join(4 * CHILD_TIMEOUT)
    if "got" not in result:
        return {"status": "hung"}
    got = result["got"]
    # the search's scores to float32 rounding: dask's blocks of 1,000 candidates
    # are other GEMM shapes than the parent's 2,048 (ids identical, as documented)
    return {"status": "ok", "same": [_same(e, g, exact=i < 2)
                                     for i, (e, g) in enumerate(zip(expected, got))]}


# ----------------------------------------------------------------------------------
# The tests (pytest side): one fresh parent process per group of checks


def _run(timeout=900):
    proc = subprocess.run([sys.executable, os.path.abspath(__file__)], env=ENV,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _needs_openmp():
    import pytest
    from hnm._openmp_helpers import openmp_enabled
    if not openmp_enabled():
        pytest.skip("built without OpenMP: kernels are serial, nothing to hang")
    if not hasattr(os, "fork"):
        pytest.skip("no fork on this platform")


_cache = {}


def _report_of(group):
    if "all" not in _cache:
        _cache["all"] = _run()
    return _cache["all"][group]


def _assert_ok(entry, name):
    assert entry["status"] == "ok", f"{name}: {entry}"
    assert entry["same"], f"{name}: the fork child's result differs from the parent's"


def test_fork_child_gets_parents_results_from_every_kernel_and_estimator():
    _needs_openmp()
    report = _report_of("cases")
    assert report["parent_threads"] == 2  # the parent really ran 2 OpenMP threads
    for name in list(CASES) + ["os_fork_0", "os_fork_1"]:
        _assert_ok(report[name], name)
    for name in CASES:
        # the pool was released before the fork: the child keeps its threads, quietly
        assert report[name]["threads"] == 2 and not report[name]["serial"], name
        assert not [w for w in report[name]["warnings"] if "1 thread" in w], name


def test_fork_pool_of_several_workers():
    _needs_openmp()
    _assert_ok(_report_of("pool"), "fork Pool")


def test_runtime_that_cannot_release_runs_child_serially_with_one_warning():
    _needs_openmp()
    report = _report_of("fallback")
    for name, entry in report.items():
        _assert_ok(entry, name)
        assert entry["serial"] and entry["threads"] == 1, name
        ours = [w for w in entry["warnings"] if "1 thread" in w]
        assert len(ours) == 1, (name, entry["warnings"])
        assert "spawn" in ours[0] and "forkserver" in ours[0]


def test_children_keep_threads_and_threadpoolctl_limits_apply():
    _needs_openmp()
    report = _report_of("threads")
    parent = report["parent"]
    assert parent["openmp"] == 2
    for method in ("fork", "spawn", "forkserver"):
        assert report[method]["openmp"] == 2 and not report[method]["serial"], method
        assert report[method]["blas"] == parent["blas"], method
    assert report["fork_limited"]["openmp"] == 1  # threadpoolctl's limit was inherited
    # forked while another thread's search held BLAS at 1 thread: no search runs in
    # the child, so it has the user's BLAS threads and a fresh limiter
    assert report["parent_during_search"]["blas"] == [1]
    assert report["fork_during_search"]["blas"] == parent["blas"]
    assert report["fork_during_search"]["blas_users"] == 0
    _assert_ok(report["fork_during_search_result"], "search forked during a search")
    assert report["parent_after_search"]["blas"] == parent["blas"]


def test_dask_with_forked_worker_processes():
    _needs_openmp()
    import pytest
    pytest.importorskip("dask")
    report = _report_of("dask")
    assert report["status"] == "ok", report
    assert all(report["same"]), report


def run_all():
    """Every group in one parent (one import of hnm), each group's failure its own."""
    import hnm  # noqa: F401  (registers the fork hooks, as any use of hnm does)
    expected = {name: fn() for name, fn in CASES.items()}  # on the parent's threads
    report = {}
    # the fallback group goes last: it fakes a runtime that cannot release its pool
    for group, run in (("cases", run_fork_cases), ("pool", run_fork_pool),
                       ("threads", run_thread_counts), ("dask", run_dask),
                       ("fallback", run_fallback)):
        try:
            report[group] = run(expected)
        except BaseException as exc:
            report[group] = {"status": f"error: {exc!r}"}
    return report


if __name__ == "__main__":
    print(json.dumps(run_all(), default=str))
    sys.stdout.flush()
    os._exit(0)  # do not wait for stray threads of a hung case
