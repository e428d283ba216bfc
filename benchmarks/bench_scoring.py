"""hnm.difficulty on (n, 10) float32 probabilities with integer labels.

Same run: the straightforward numpy margin (fancy-index the true class, copy and
mask it, max of the rest) and one flat read pass over the matrix
(``P.ravel().max()``, the memory-bandwidth floor).
Targets: >= 10x faster than numpy, within 3x of the floor at every size.

Sizes: ``HNM_BENCH_SCORING_N``, a comma-separated list (default ``2e6,1e7``).
On a busy machine the separate benchmarks run minutes apart under other loads,
so ``test_interleaved`` also times hnm and the floor alternately, call by call,
and notes the ratio of their medians in wall time and in process time (CPU
seconds of all threads).
"""
import os

import numpy as np
import pytest

import hnm
from benchutils import interleaved_medians

SIZES = [int(float(v)) for v in os.environ.get("HNM_BENCH_SCORING_N", "2e6,1e7").split(",")]
C = 10
ROUNDS = 15


@pytest.fixture(scope="module", params=SIZES, ids=lambda n: f"n={n:.0e}")
def data(request):
    n = request.param
    rng = np.random.default_rng(0)
    P = rng.random((n, C), dtype=np.float32)
    P /= P.sum(axis=1, keepdims=True)
    return n, P, rng.integers(0, C, n)


def numpy_margin(P, y):
    rows = np.arange(y.size)
    true = P[rows, y]
    other = P.copy()
    other[rows, y] = -np.inf
    return other.max(axis=1) - true


def flat_read(P):
    return P.ravel().max()


CALLS = {
    "hnm.difficulty margin": lambda P, y: hnm.difficulty(y, P),
    "hnm.difficulty margin, labels given":
        lambda P, y: hnm.difficulty(y, P, labels=np.arange(C)),
    "hnm.difficulty log_loss": lambda P, y: hnm.difficulty(y, P, measure="log_loss",
                                                           labels=np.arange(C)),
    "flat read pass": lambda P, y: flat_read(P),
}


@pytest.fixture(scope="module", autouse=True)
def declare(ratios):
    for n in SIZES:
        ratios.compare(f"numpy margin [{n:.0e}]", f"hnm.difficulty margin [{n:.0e}]",
                       ">= 10 (speed-up)")
        for name in CALLS:
            if name != "flat read pass":
                ratios.compare(f"{name} [{n:.0e}]", f"flat read pass [{n:.0e}]", "<= 3")


@pytest.mark.parametrize("name", list(CALLS))
def test_call(benchmark, data, ratios, name):
    n, P, y = data
    benchmark.group = f"difficulty ({n}, {C}) float32"
    d = benchmark(CALLS[name], P, y)
    ratios.record(benchmark, f"{name} [{n:.0e}]")
    if name == "hnm.difficulty margin":
        np.testing.assert_allclose(d[:1000], numpy_margin(P[:1000], y[:1000]), rtol=1e-6)


def test_numpy_margin(benchmark, data, ratios):
    n, P, y = data
    benchmark.group = f"difficulty ({n}, {C}) float32"
    benchmark.pedantic(numpy_margin, args=(P, y), rounds=3, iterations=1)
    ratios.record(benchmark, f"numpy margin [{n:.0e}]")


@pytest.mark.parametrize("n_jobs", [None, 1])
def test_interleaved(data, ratios, n_jobs):
    """hnm margin and the flat read alternately: medians of wall and CPU time."""
    n, P, y = data
    timed = {"hnm": lambda: hnm.difficulty(y, P, n_jobs=n_jobs), "floor": lambda: flat_read(P)}
    w, c = interleaved_medians(timed, ROUNDS)
    ratios.note(f"interleaved ({n}, {C}) float32 margin, n_jobs={n_jobs}, {ROUNDS} rounds: "
                f"wall {w['hnm'] * 1e3:.2f} / {w['floor'] * 1e3:.2f} ms = "
                f"{w['hnm'] / w['floor']:.2f}x, process_time {c['hnm'] * 1e3:.2f} / "
                f"{c['floor'] * 1e3:.2f} ms = {c['hnm'] / c['floor']:.2f}x (target <= 3)")
