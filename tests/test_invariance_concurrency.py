"""Invariance and concurrency (issue #9, "Hardening").

(a) Results do not depend on the thread count (``threadpoolctl`` limits of the
    OpenMP runtime hnm plans with, ``n_jobs``), on chunk and block sizes, on
    memmap vs in-memory input, and (up to scores tied within float32 error) on
    float32 vs float64.
(b) Python threads calling topk / difficulty / search_hard_pairs /
    mine_hard_negatives at once get the sequential results, and leave the
    process's thread-pool settings as they found them.
"""
import random
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_info, threadpool_limits

import hnm
import refs_scoring
import refs_selection
from hnm import _nearest
from hnm._openmp_helpers import openmp_enabled, openmp_max_threads

THREADS = (1, 2, 3)  # 3: more threads than the 2 cores CI has
CHUNKS = (1, 2, 3, 5, 8, 13, 64, 1000, None)
BLOCKS = (1, 2, 3, 7, 16, 64, 700, None)

needs_openmp = pytest.mark.skipif(not openmp_enabled(), reason="kernels built without OpenMP")


def omp_threads(n):
    """Limit the OpenMP runtime hnm plans its threads with (and check that it took)."""
    limit = threadpool_limits(n, user_api="openmp")
    if openmp_enabled():
        assert openmp_max_threads() == n, "threadpoolctl did not reach hnm's OpenMP runtime"
    return limit


def blas_threads():
    return sorted((i["filepath"], i["num_threads"]) for i in threadpool_info()
                  if i["user_api"] == "blas")


def memmap_of(a, tmp_path, name):
    path = tmp_path / f"{name}.npy"
    np.save(path, a)
    return np.load(path, mmap_mode="r")


def assert_same(a, b, what=""):
    """Bitwise-identical results (namedtuples / dataclasses / arrays)."""
    if hasattr(a, "_fields"):
        for f in a._fields:
            assert_same(getattr(a, f), getattr(b, f), f"{what}.{f}")
        return
    if isinstance(a, hnm.MinedNegatives):
        for f in ("query", "positive", "negative", "score", "positive_score", "is_hard",
                  "rank"):
            assert_same(getattr(a, f), getattr(b, f), f"{what}.{f}")
        return
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape, (what, a.dtype, b.dtype, a.shape, b.shape)
    np.testing.assert_array_equal(a, b, err_msg=what, strict=True)


rng = np.random.default_rng(7)
# integer-valued scores: many exact ties, broken by the smaller index
SCORES = rng.integers(-40, 40, size=(23, 31)).astype(np.float64)
SCORES_NAN = SCORES.copy()
SCORES_NAN[rng.random(SCORES.shape) < 0.15] = np.nan
SCORES_NAN[4] = np.nan  # a row with nothing to select

TOPK_CFGS = {
    "flat_k": (SCORES, dict(k=25)),
    "flat_band_smallest": (SCORES, dict(band=(100, 300), largest=False)),
    "rows_k": (SCORES, dict(k=9, axis=-1)),
    "cols_k_smallest": (SCORES, dict(k=7, axis=0, largest=False)),
    "flat_omit_padded": (SCORES_NAN, dict(band=(10, 700), nan_policy="omit")),
    "rows_omit": (SCORES_NAN, dict(k=30, axis=1, nan_policy="omit", largest=False)),
}


# ============================================================== (a) invariance
@needs_openmp
@pytest.mark.parametrize("cfg", TOPK_CFGS)
@pytest.mark.parametrize("layout", ["c", "strided_f32"])
def test_topk_threads_and_chunks(cfg, layout):
    x, kw = TOPK_CFGS[cfg]
    if layout == "strided_f32":  # the converting (non-native) path
        wide = np.full((x.shape[0], 2 * x.shape[1]), np.inf, dtype=np.float32)
        wide[:, ::2] = x
        x = wide[:, ::2]
    with omp_threads(1):
        ref = hnm.topk(x, **kw)
    exp_values, exp_indices = refs_selection.topk(x, **kw)
    np.testing.assert_array_equal(ref.indices, exp_indices)
    np.testing.assert_array_equal(ref.values.astype(np.float64), exp_values)
    for n in THREADS:
        with omp_threads(n):
            for cs in CHUNKS:
                assert_same(hnm.topk(x, chunk_size=cs, **kw), ref, f"threads={n} chunk={cs}")


@needs_openmp
def test_selection_strategies_threads():
    """The strategies built on topk give the reference's indices at every thread count."""
    d = SCORES.ravel()
    cases = [(hnm.selection.select_hardest, refs_selection.select_hardest, (),
              dict(band=(5, 300), noise_fraction=0.1)),
             (hnm.selection.select_hardest, refs_selection.select_hardest, (),
              dict(fraction=0.4, noise_fraction=0.05)),
             (hnm.selection.sample_by_difficulty, refs_selection.sample_by_difficulty, (60,),
              dict(temperature=3.0, noise_fraction=0.1, random_state=5)),
             (hnm.selection.select_semi_hard, refs_selection.select_semi_hard, (20.0,),
              dict(k=50)),
             (hnm.selection.select_quantile_window, refs_selection.select_quantile_window,
              (0.2, 0.7), {})]
    for n in THREADS:
        with omp_threads(n):
            for fn, ref, args, kw in cases:
                np.testing.assert_array_equal(fn(d, *args, **kw), ref(d, *args, **kw),
                                              err_msg=f"{fn.__name__} threads={n}")


@needs_openmp
@pytest.mark.parametrize("threads", [1, 2])
def test_topk_every_chunk_size(threads):
    """Every chunk size from 1 to past the input size, flat and per row."""
    x = SCORES[:7, :23]  # 161 values, many ties
    with omp_threads(1):
        ref_flat = hnm.topk(x, 40)
        ref_rows = hnm.topk(x, band=(3, 17), axis=1, largest=False)
    with omp_threads(threads):
        for cs in range(1, x.size + 3):
            assert_same(hnm.topk(x, 40, chunk_size=cs), ref_flat, f"chunk={cs}")
            assert_same(hnm.topk(x, band=(3, 17), axis=1, largest=False, chunk_size=cs),
                        ref_rows, f"rows chunk={cs}")


def test_topk_threadpool_limits_1_vs_default():
    x = rng.standard_normal(300_000)  # several default-size chunks per thread
    ref = hnm.topk(x, 1000, chunk_size=4096)
    with threadpool_limits(1):
        one = hnm.topk(x, 1000, chunk_size=4096)
    assert_same(one, ref)
    np.testing.assert_array_equal(ref.indices, np.lexsort((np.arange(x.size), -x))[:1000])


PROBA = rng.dirichlet(np.ones(5), size=1500)
LABELS = rng.integers(0, 5, size=1500)
MEASURES = hnm.scoring.MEASURES


@needs_openmp
@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("layout", ["c_f64", "c_f32", "fortran_f64", "binary"])
def test_difficulty_threads_and_chunks(measure, layout):
    S = {"c_f64": PROBA, "c_f32": PROBA.astype(np.float32),
         "fortran_f64": np.asfortranarray(PROBA),
         "binary": PROBA[:, 0]}[layout]
    y = (LABELS % 2) if layout == "binary" else LABELS
    labels = [0, 1] if layout == "binary" else None
    with omp_threads(1):
        ref = hnm.difficulty(y, S, measure=measure, labels=labels)
    tol = 2e-6 if S.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(ref, refs_scoring.difficulty(y, S, measure, labels=labels),
                               rtol=tol, atol=tol)
    for n in THREADS:
        assert_same(hnm.difficulty(y, S, measure=measure, labels=labels, n_jobs=n), ref,
                    f"n_jobs={n}")
        with omp_threads(n):
            for cs in (1, 2, 3, 7, 64, 65, 320, 4096, None):
                assert_same(hnm.difficulty(y, S, measure=measure, labels=labels,
                                           chunk_size=cs), ref, f"threads={n} chunk={cs}")


# integer-valued embeddings: ip and l2 scores are exact whatever the summation
# order, so even the many exact ties must come out identically
PQ_INT = rng.integers(-2, 3, size=(270, 6)).astype(np.float64)  # two query blocks
PC_INT = rng.integers(-2, 3, size=(150, 6)).astype(np.float64)
PQ = rng.standard_normal((300, 12))
PC = rng.standard_normal((1500, 12))


def _pairs_configs():
    return {
        "k": dict(k=10),
        "band": dict(band=(5, 30)),
        "self": dict(k=6, exclude_self=True, exclude=[np.arange(i % 5) for i in range(150)]),
        "filters": dict(k=8, max_score=3.5,
                        query_labels=np.arange(270) % 4, candidate_labels=np.arange(150) % 3,
                        exclude=[np.arange(i % 7) for i in range(270)]),
    }


@needs_openmp
@pytest.mark.parametrize("metric", ["ip", "l2"])
@pytest.mark.parametrize("cfg", ["k", "band", "filters", "self"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_pairs_exact_ties_identical_for_every_block_and_thread_count(metric, cfg, dtype):
    kw = _pairs_configs()[cfg]
    k = kw.pop("k", None)
    Q, C = PQ_INT.astype(dtype), PC_INT.astype(dtype)
    if cfg == "self":
        Q = C
    with threadpool_limits(1):
        ref = hnm.search_hard_pairs(Q, C, k, metric=metric, n_jobs=1, **kw)
    for limit in (None, 1):
        with threadpool_limits(limit):
            for n_jobs in (1, 2, 3, None):
                for bs in BLOCKS:
                    got = hnm.search_hard_pairs(Q, C, k, metric=metric, n_jobs=n_jobs,
                                                block_size=bs, **kw)
                    assert_same(got, ref, f"limit={limit} n_jobs={n_jobs} block={bs}")


def _no_near_ties(keys, tol):
    s = np.sort(keys, axis=1)
    return np.all(np.diff(s, axis=1) > tol)


@needs_openmp
@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_pairs_ids_identical_for_every_block_and_thread_count(metric):
    """Continuous data: the same candidates in the same order, scores equal up to
    float64 rounding (see the strict test below for bitwise scores)."""
    with threadpool_limits(1):
        ref = hnm.search_hard_pairs(PQ, PC, 10, metric=metric, n_jobs=1)
    for n in THREADS:
        with omp_threads(n):
            for n_jobs in (1, 2, 4, None):
                for bs in (13, 64, 700, None):  # (tiny blocks: the integer test above)
                    got = hnm.search_hard_pairs(PQ, PC, 10, metric=metric, n_jobs=n_jobs,
                                                block_size=bs)
                    np.testing.assert_array_equal(got.indices, ref.indices,
                                                  err_msg=f"threads={n} jobs={n_jobs} bs={bs}")
                    np.testing.assert_allclose(got.scores, ref.scores, rtol=1e-13,
                                               atol=1e-13)


@needs_openmp
def test_pairs_ids_identical_scores_to_rounding_for_every_block_and_thread_count():
    """The docstring: the same ids for every block size and thread count; scores
    equal up to the last bits (BLAS's summation order follows the block shape)."""
    ref = hnm.search_hard_pairs(PQ, PC, 10, metric="cosine")
    diffs = {}
    for n_jobs in (1, 2, None):
        for bs in (16, 700, None):
            got = hnm.search_hard_pairs(PQ, PC, 10, metric="cosine", n_jobs=n_jobs,
                                        block_size=bs)
            np.testing.assert_array_equal(got.indices, ref.indices)
            d = np.abs(got.scores - ref.scores).max()
            if d > 8 * np.finfo(ref.scores.dtype).eps:
                diffs[(n_jobs, bs)] = d
    assert not diffs, f"scores differ from the default call's by up to {diffs}"


@needs_openmp
def test_mine_hard_negatives_threads_and_blocks():
    C = rng.standard_normal((800, 10))
    Q = C[:60] + 0.2 * rng.standard_normal((60, 10))
    kw = dict(k=4, band=(2, 12), relative_margin=0.05, sampling="random",
              easy_ratio=1.0, random_state=3)
    with threadpool_limits(1):
        ref = hnm.mine_hard_negatives(Q, np.arange(60), C, **kw)
    assert len(ref) > 0
    for n in THREADS:
        with omp_threads(n):
            for bs in BLOCKS:
                got = hnm.mine_hard_negatives(Q, np.arange(60), C, block_size=bs, **kw)
                np.testing.assert_array_equal(got.negative, ref.negative,
                                              err_msg=f"threads={n} block={bs}")
                np.testing.assert_array_equal(got.rank, ref.rank)
                np.testing.assert_array_equal(got.query, ref.query)
                np.testing.assert_allclose(got.score, ref.score, rtol=1e-13, atol=1e-13)


def test_memmap_vs_in_memory(tmp_path):
    Pm = memmap_of(PROBA, tmp_path, "proba")
    Sm = memmap_of(SCORES_NAN, tmp_path, "scores")
    Qm, Cm = memmap_of(PQ_INT, tmp_path, "q"), memmap_of(PC_INT, tmp_path, "c")
    Ctm = memmap_of(np.ascontiguousarray(PC_INT.T), tmp_path, "ct")
    assert_same(hnm.topk(Sm, band=(3, 600), nan_policy="omit", chunk_size=7),
                hnm.topk(SCORES_NAN, band=(3, 600), nan_policy="omit", chunk_size=7))
    assert_same(hnm.topk(Sm.T, 5, axis=0, nan_policy="omit"),
                hnm.topk(SCORES_NAN.T, 5, axis=0, nan_policy="omit"))
    for measure in MEASURES:
        assert_same(hnm.difficulty(LABELS, Pm, measure=measure, chunk_size=100),
                    hnm.difficulty(LABELS, PROBA, measure=measure, chunk_size=100))
    for metric in ("ip", "l2", "cosine"):
        assert_same(hnm.search_hard_pairs(Qm, Cm, 7, metric=metric, block_size=50),
                    hnm.search_hard_pairs(PQ_INT, PC_INT, 7, metric=metric, block_size=50))
        # a transposed (Fortran-order) memmap: converted block by block
        assert_same(hnm.search_hard_pairs(PQ_INT, Ctm.T, 7, metric=metric, block_size=50),
                    hnm.search_hard_pairs(PQ_INT, PC_INT, 7, metric=metric, block_size=50))
    Cf = rng.standard_normal((300, 8))
    Qf = Cf[:20] + 0.1
    Cfm = memmap_of(Cf, tmp_path, "cf")
    assert_same(hnm.mine_hard_negatives(Qf, np.arange(20), Cfm, k=3, block_size=64),
                hnm.mine_hard_negatives(Qf, np.arange(20), Cf, k=3, block_size=64))


def test_float32_vs_float64():
    # topk: values exactly representable in float32 -> the very same selection
    x = rng.standard_normal(5000).astype(np.float32).astype(np.float64)
    r64, r32 = hnm.topk(x, 300, largest=False), hnm.topk(x.astype(np.float32), 300,
                                                         largest=False)
    np.testing.assert_array_equal(r32.indices, r64.indices)
    np.testing.assert_array_equal(r32.values.astype(np.float64), r64.values)
    assert r32.values.dtype == np.float32
    # difficulty: the same values to float32 precision
    for measure in MEASURES:
        d64 = hnm.difficulty(LABELS, PROBA, measure=measure)
        d32 = hnm.difficulty(LABELS, PROBA.astype(np.float32), measure=measure)
        assert d32.dtype == np.float32
        np.testing.assert_allclose(d32, d64, rtol=2e-6, atol=2e-6, err_msg=measure)


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_pairs_float32_vs_float64_ids(metric):
    """float32 and float64 return the same candidates, except where the float64
    scores of two ranks are within float32 rounding of each other."""
    r64 = hnm.search_hard_pairs(PQ, PC, 12, metric=metric)
    r32 = hnm.search_hard_pairs(PQ.astype(np.float32), PC.astype(np.float32), 12,
                                metric=metric)
    q = PQ
    scale = {"cosine": np.ones(len(q)), "ip": np.abs(q).max(1) * np.abs(PC).max(),
             "l2": (np.abs(q).max(1) + np.abs(PC).max()) ** 2}[metric]
    tol = 64 * q.shape[1] * np.finfo(np.float32).eps * scale
    # exact float64 scores of every returned candidate, "higher is closer"
    def keys(ids):
        c = PC[ids]
        if metric == "ip":
            return np.einsum("qd,qkd->qk", q, c)
        if metric == "cosine":
            return np.einsum("qd,qkd->qk", q, c) / (
                np.linalg.norm(q, axis=1)[:, None] * np.linalg.norm(c, axis=2))
        return -((q[:, None, :] - c) ** 2).sum(axis=2)
    k64, k32 = keys(r64.indices), keys(r32.indices)
    # every position holds the same candidate, or one tied with it within tol
    same = r32.indices == r64.indices
    assert np.all(same | (np.abs(k32 - k64) <= tol[:, None]))
    # a swap is only allowed between near-tied neighbours
    gaps = np.diff(k64, axis=1)  # <= 0: best first
    clear = np.ones_like(same)
    clear[:, :-1] &= -gaps > tol[:, None]
    clear[:, 1:] &= -gaps > tol[:, None]
    assert np.all(same[clear])
    assert same.mean() > 0.95
    np.testing.assert_allclose(r32.scores.astype(np.float64)[same], r64.scores[same],
                               rtol=0, atol=float(tol.max()))


@needs_openmp
def test_estimators_n_jobs_and_chunk_size():
    X = rng.standard_normal((400, 6))
    y = (rng.random(400) < 0.25).astype(int)
    for difficulty in ("nearmiss", "distance"):
        ests = []
        for j in (1, 2, None):
            est = hnm.HardNegativeResampler(difficulty=difficulty, n_jobs=j, random_state=0,
                                            expand_neighbors=1)
            est.fit_resample(X, y)
            ests.append(est)
        for est in ests[1:]:
            np.testing.assert_array_equal(est.sample_indices_, ests[0].sample_indices_)
            np.testing.assert_array_equal(est.reason_, ests[0].reason_)
    clfs = []
    for cs in (1, 7, 64, None):
        with threadpool_limits(1 if cs == 7 else None):
            clfs.append(hnm.HardMiningClassifier(LogisticRegression(), n_rounds=2, batch_size=cs,
                                                 random_state=0).fit(X, y))
    for clf in clfs[1:]:
        np.testing.assert_array_equal(clf.negative_indices_, clfs[0].negative_indices_)
        assert [h["n_negatives"] for h in clf.history_] == \
            [h["n_negatives"] for h in clfs[0].history_]


# ============================================================= (b) concurrency
def _tasks(seed, n_each=16):
    r = np.random.default_rng(seed)
    tasks = []
    for i in range(n_each):
        x = r.integers(-30, 30, size=(int(r.integers(50, 400)), 40)).astype(
            np.float64 if i % 2 else np.float32)
        tasks.append(("topk", hnm.topk, (x,), dict(k=int(r.integers(1, 41)),
                                                   axis=None if i % 3 else -1,
                                                   chunk_size=int(r.integers(64, 5000)))))
        P = r.dirichlet(np.ones(4), size=int(r.integers(100, 3000)))
        yy = r.integers(0, 4, size=P.shape[0])
        tasks.append(("difficulty", hnm.difficulty, (yy, P if i % 2 else np.asfortranarray(P)),
                      dict(measure=MEASURES[i % 5], labels=[0, 1, 2, 3], chunk_size=257)))
        Q = r.integers(-2, 3, size=(int(r.integers(260, 600)), 8)).astype(np.float64)
        C = r.integers(-2, 3, size=(int(r.integers(100, 2000)), 8)).astype(np.float64)
        tasks.append(("search_hard_pairs", hnm.search_hard_pairs, (Q, C, 9),
                      dict(metric=("ip", "l2")[i % 2], block_size=int(r.integers(16, 700)))))
        Cm = r.standard_normal((int(r.integers(200, 800)), 8))
        Qm = Cm[:40] + 0.2 * r.standard_normal((40, 8))
        tasks.append(("mine_hard_negatives", hnm.mine_hard_negatives, (Qm, np.arange(40), Cm),
                      dict(k=3, band=(1, 9), sampling="random", random_state=i,
                           relative_margin=0.05)))
    return tasks


@pytest.fixture
def restore_thread_pools():
    """Put every thread pool back as it was (concurrent calls may not: see
    test_overlapping_calls_restore_blas_threads)."""
    with threadpool_limits():
        yield


@needs_openmp
def test_concurrent_calls_match_sequential(restore_thread_pools):
    tasks = _tasks(11)
    assert len(tasks) >= 50
    expected = [fn(*args, **kw) for _, fn, args, kw in tasks]
    order = list(range(len(tasks))) * 2  # every call twice, in a shuffled order
    random.Random(5).shuffle(order)
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [(i, pool.submit(tasks[i][1], *tasks[i][2], **tasks[i][3])) for i in order]
        results = [(i, f.result(timeout=300)) for i, f in futures]
    assert len(results) >= 100
    for i, got in results:
        name = tasks[i][0]
        exp = expected[i]
        if name == "mine_hard_negatives":
            # float GEMMs: the same negatives; scores to float64 rounding, as BLAS may
            # run with another thread count under concurrent calls (see below)
            for f in ("query", "positive", "negative", "rank", "is_hard"):
                assert_same(getattr(got, f), getattr(exp, f), f"{name} #{i} {f}")
            np.testing.assert_allclose(got.score, exp.score, rtol=1e-13, atol=1e-13)
            np.testing.assert_allclose(got.positive_score, exp.positive_score, rtol=0, atol=0)
        else:  # (search_hard_pairs gets integer inputs: exact whatever BLAS does)
            assert_same(got, exp, f"{name} #{i}")


@needs_openmp
def test_concurrent_calls_on_one_shared_readonly_input(tmp_path, restore_thread_pools):
    """8 threads read the same read-only memmap at once."""
    x = memmap_of(rng.standard_normal(200_000), tmp_path, "shared")
    P = memmap_of(PROBA, tmp_path, "shared_p")
    ref_t = hnm.topk(x, 500, chunk_size=1 << 12)
    ref_d = hnm.difficulty(LABELS, P, measure="log_loss", chunk_size=128)
    with ThreadPoolExecutor(max_workers=8) as pool:
        ft = [pool.submit(hnm.topk, x, 500, chunk_size=1 << 12) for _ in range(32)]
        fd = [pool.submit(hnm.difficulty, LABELS, P, measure="log_loss", chunk_size=128)
              for _ in range(32)]
        for f in ft:
            assert_same(f.result(timeout=300), ref_t)
        for f in fd:
            assert_same(f.result(timeout=300), ref_d)


@pytest.mark.skipif(not openmp_enabled() or openmp_max_threads() < 2,
                    reason="search_hard_pairs limits BLAS only when it runs >1 thread")
def test_overlapping_calls_restore_blas_threads(monkeypatch, restore_thread_pools):
    """Two calls whose kernels overlap (A starts, B starts, A ends, B ends) must
    leave BLAS with the thread count it had before either.

    search_hard_pairs wraps its kernel in ``threadpool_limits(1, "blas")``, which
    sets and later restores a process-wide setting: B saves A's temporary limit
    and restores it after A has restored the original."""
    real = _nearest._pairs
    inside = {"A": threading.Event(), "B": threading.Event()}
    release = {"A": threading.Event(), "B": threading.Event()}
    during_b = {}
    local = threading.local()

    class Gate:
        METRICS = real.METRICS
        candidate_scales = staticmethod(real.candidate_scales)

        @staticmethod
        def search_update(*args):
            name = getattr(local, "name", None)
            if name is not None and not inside[name].is_set():
                inside[name].set()
                assert release[name].wait(60)
                if name == "B":
                    during_b["blas"] = blas_threads()
            return real.search_update(*args)

    monkeypatch.setattr(_nearest, "_pairs", Gate)
    Q = rng.standard_normal((600, 8))
    C = rng.standard_normal((300, 8))
    before = blas_threads()
    results = {}

    def call(name):
        local.name = name
        results[name] = hnm.search_hard_pairs(Q, C, 5, n_jobs=2)

    ta = threading.Thread(target=call, args=("A",))
    tb = threading.Thread(target=call, args=("B",))
    ta.start()
    assert inside["A"].wait(60)
    tb.start()
    assert inside["B"].wait(60)
    release["A"].set()
    ta.join(60)
    release["B"].set()
    tb.join(60)
    monkeypatch.setattr(_nearest, "_pairs", real)
    ref = hnm.search_hard_pairs(Q, C, 5, n_jobs=2)
    assert_same(results["A"], ref)
    np.testing.assert_array_equal(results["B"].indices, ref.indices)
    after = blas_threads()
    assert after == before, (f"BLAS threads before {before}, after two overlapping calls "
                             f"{after} (during B's kernel: {during_b.get('blas')})")
