"""hnm.difficulty on (1e7, 10) float32 probabilities with integer labels.

Same run: the straightforward numpy margin (fancy-index the true class, copy and
mask it, max of the rest) and one flat read pass over the matrix
(``P.ravel().max()``, the memory-bandwidth floor).
Targets: >= 10x faster than numpy, within 3x of the floor.
"""
import os

import numpy as np
import pytest

import hnm

N = int(float(os.environ.get("HNM_BENCH_SCORING_N", 1e7)))
C = 10
GROUP = f"difficulty margin ({N}, {C}) float32"


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    P = rng.random((N, C), dtype=np.float32)
    P /= P.sum(axis=1, keepdims=True)
    y = rng.integers(0, C, N)
    return P, y


def numpy_margin(P, y):
    rows = np.arange(y.size)
    true = P[rows, y]
    other = P.copy()
    other[rows, y] = -np.inf
    return other.max(axis=1) - true


@pytest.fixture(scope="module", autouse=True)
def declare(ratios):
    ratios.compare("numpy margin", "hnm.difficulty margin", ">= 10 (speed-up)")
    ratios.compare("hnm.difficulty margin", "flat read pass", "<= 3")
    ratios.compare("hnm.difficulty margin, labels given", "flat read pass", "<= 3")
    ratios.compare("hnm.difficulty log_loss", "flat read pass", "<= 3")


def test_hnm_margin(benchmark, data, ratios):
    P, y = data
    benchmark.group = GROUP
    d = benchmark(hnm.difficulty, y, P)
    ratios.record(benchmark, "hnm.difficulty margin")
    np.testing.assert_allclose(d[:1000], numpy_margin(P[:1000], y[:1000]), rtol=1e-6)


def test_hnm_margin_with_labels(benchmark, data, ratios):
    P, y = data
    benchmark.group = GROUP
    benchmark(hnm.difficulty, y, P, labels=np.arange(C))
    ratios.record(benchmark, "hnm.difficulty margin, labels given")


def test_hnm_log_loss(benchmark, data, ratios):
    P, y = data
    benchmark.group = GROUP
    benchmark(hnm.difficulty, y, P, measure="log_loss", labels=np.arange(C))
    ratios.record(benchmark, "hnm.difficulty log_loss")


def test_numpy_margin(benchmark, data, ratios):
    P, y = data
    benchmark.group = GROUP
    benchmark.pedantic(numpy_margin, args=(P, y), rounds=3, iterations=1)
    ratios.record(benchmark, "numpy margin")


def test_flat_read_floor(benchmark, data, ratios):
    P, _ = data
    benchmark.group = GROUP
    benchmark(lambda: P.ravel().max())
    ratios.record(benchmark, "flat read pass")
