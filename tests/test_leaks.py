"""Thousands of kernel calls keep the resident set flat (issue #9, "Hardening").

Each test warms up, reads VmRSS from /proc/self/status, makes N calls on fresh
small inputs, and asserts that RSS grew by less than a generous bound. Inputs
and outputs are sized so that leaking a single input or output array per call
(e.g. a reference count lost in a kernel's buffer handling) would exceed the
bound by a wide margin; ``test_rss_probe_sees_a_leak_of_that_size`` checks that
the probe does see such a leak.
"""
import gc
import sys

import numpy as np
import pytest

import hnm

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="reads VmRSS from /proc/self/status")

MiB = 1 << 20
N_CALLS = 2000
BOUND = 20 * MiB  # growth allowed over N_CALLS kernel calls
N_FIT = 300
FIT_BOUND = 8 * MiB  # growth allowed over N_FIT fit_resample calls


def rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def growth(call, n_calls, warmup=200):
    for i in range(warmup):
        call(i)
    gc.collect()
    before = rss()
    for i in range(n_calls):
        call(i)
    gc.collect()
    return rss() - before


def check(call, n_calls, bound, leak_per_call, what):
    """``leak_per_call``: bytes that one leaked array per call would add; it must
    be large enough for such a leak to break the bound (so the test can fail)."""
    assert leak_per_call * n_calls > 2 * bound, "test too weak to see a per-call leak"
    grew = growth(call, n_calls)
    assert grew < bound, (f"{what}: RSS grew by {grew / MiB:.1f} MiB over {n_calls} calls "
                          f"(bound {bound / MiB:.0f} MiB; one leaked array per call would "
                          f"add {leak_per_call * n_calls / MiB:.0f} MiB)")


rng = np.random.default_rng(3)
X1 = rng.standard_normal(8192)                       # 64 KiB
X2 = rng.standard_normal((128, 128))                 # 128 KiB
PROBA = rng.dirichlet(np.ones(2), size=4096)         # 64 KiB
PROBA3 = rng.dirichlet(np.ones(3), size=4096)
Y = rng.integers(0, 2, size=4096)
Y3 = rng.integers(0, 3, size=4096)
Q = rng.standard_normal((128, 16))                   # 16 KiB
C = rng.standard_normal((384, 16))                   # 48 KiB


def test_topk_calls_keep_rss_flat():
    def call(i):
        x = X1 + i  # a fresh 64 KiB input every call
        if i % 4 == 0:
            r = hnm.topk(x, 4096)  # read in place; 4096 values + 4096 indices: 2 x 32 KiB
        elif i % 4 == 1:
            r = hnm.topk(x[::-1], band=(100, 4196), largest=False,
                         chunk_size=512)  # converted chunk by chunk
        elif i % 4 == 2:
            r = hnm.topk(X2 + i, 32, axis=1)  # rows: 128 x 32 values + indices: 2 x 32 KiB
        else:
            x[::7] = np.nan
            r = hnm.topk(x, 4096, nan_policy="omit", chunk_size=1000)
        assert r.indices.shape[-1] in (32, 4096)
    check(call, N_CALLS, BOUND, 32 * 1024, "topk")


def test_difficulty_calls_keep_rss_flat():
    measures = ("margin", "log_loss", "hinge", "confidence", "entropy")

    def call(i):
        m = measures[i % 5]
        if i % 3 == 0:
            out = hnm.difficulty(Y, PROBA + 0.0, measure=m)  # 32 KiB out, 64 KiB in
        elif i % 3 == 1:
            out = hnm.difficulty(Y3, np.asfortranarray(PROBA3), measure=m, chunk_size=999)
        else:
            out = hnm.difficulty(np.array(["a", "b"])[Y], PROBA[:, 1] + 0.0, measure=m)
        assert out.shape == (4096,)
    check(call, N_CALLS, BOUND, 32 * 1024, "difficulty")


def test_search_hard_pairs_calls_keep_rss_flat():
    metrics = ("cosine", "ip", "l2")

    def call(i):
        q = Q + i * 1e-3  # fresh queries every call
        kw = dict(metric=metrics[i % 3])
        if i % 4 == 1:
            kw.update(exclude=[np.arange(i % 5) for _ in range(128)], max_score=0.5)
        elif i % 4 == 2:
            kw.update(block_size=100, n_jobs=1)
        elif i % 4 == 3:
            kw.update(query_labels=np.arange(128) % 3, candidate_labels=np.arange(384) % 3)
        r = hnm.search_hard_pairs(q, C if i % 2 else C.astype(np.float32), 32, **kw)
        assert r.indices.shape == (128, 32)  # scores + indices: 2 x 32 KiB
    check(call, N_CALLS, BOUND, 32 * 1024, "search_hard_pairs")


def test_mine_hard_negatives_calls_keep_rss_flat():
    corpus = rng.standard_normal((600, 16))

    def call(i):
        q = corpus[:500] + 0.1 + i * 1e-4
        m = hnm.mine_hard_negatives(q, np.arange(500), corpus, k=5,
                                    relative_margin=0.05, easy_ratio=1.0, random_state=i)
        assert len(m) >= 4800  # ~5000 rows: 40 KiB per int64/float64 field
    check(call, 400, 6 * MiB, 40 * 1000, "mine_hard_negatives")


def test_fit_resample_calls_keep_rss_flat():
    X = rng.standard_normal((1200, 8))
    y = np.r_[np.zeros(700, int), np.ones(500, int)]
    d = rng.standard_normal(1200)

    def call(i):
        if i % 2:
            est = hnm.HardNegativeResampler(difficulty="nearmiss", random_state=i)
            Xr, yr = est.fit_resample(X, y)
        else:
            est = hnm.HardNegativeResampler(random_state=i, expand_neighbors=1)
            Xr, yr = est.fit_resample(X, y, sample_difficulty=d)
        assert Xr.shape == (1000, 8)  # 64 KiB of output per call
    check(call, N_FIT, FIT_BOUND, 64 * 1024, "HardNegativeResampler.fit_resample")


def test_rss_probe_sees_a_leak_of_that_size():
    """The probe is sensitive enough: keeping every topk output alive (a leak of
    one 64 KiB result per call) breaks the bound the tests above assert."""
    kept = []

    def call(i):
        kept.append(hnm.topk(X1 + i, 4096))

    grew = growth(call, N_CALLS, warmup=0)
    assert grew > BOUND, f"a deliberate leak grew RSS by only {grew / MiB:.1f} MiB"
    kept.clear()
