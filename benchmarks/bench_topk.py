"""hnm.topk vs numpy on float32 scores, k=1000, in memory and as a memmap.

Peers in the same run: ``np.argpartition`` + sorting the k (the numpy way) and one
``np.max`` pass over the same data (the memory-bandwidth floor).
Targets: >= 20x faster than argpartition+sort, within 1.2x of the floor in quiet
and busy runs, extra anonymous memory O(k + chunk) over the memmap.

Size: ``HNM_BENCH_TOPK_N`` (default 5e7). On a busy machine the separate
benchmarks run under different loads, so ``test_interleaved`` also times topk
and ``np.max`` alternately, call by call, and notes the ratio of their medians in
wall time and in process time (CPU seconds of all threads).
"""
import os

import numpy as np
import pytest

import hnm
from benchutils import interleaved_medians, peak_extra_memory

N = int(float(os.environ.get("HNM_BENCH_TOPK_N", 5e7)))
K = 1000
ROUNDS = 15
WHERE = ["memory", "memmap"]


@pytest.fixture(scope="module")
def scores(tmp_path_factory):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(N, dtype=np.float32)
    path = tmp_path_factory.mktemp("topk") / "scores.f32"
    x.tofile(path)
    mm = np.memmap(path, dtype=np.float32, mode="r", shape=(N,))
    return {"memory": x, "memmap": mm}


def numpy_topk(x, k):
    idx = np.argpartition(x, x.size - k)[x.size - k:]
    return idx[np.lexsort((idx, -x[idx]))]


@pytest.fixture(scope="module", autouse=True)
def declare(ratios):
    for where in WHERE:
        ratios.compare(f"numpy argpartition+sort [{where}]", f"hnm.topk [{where}]",
                       ">= 20 (speed-up)")
        ratios.compare(f"hnm.topk [{where}]", f"np.max pass [{where}]", "<= 1.2")


def _extra_memory(ratios, name, func, x):
    extra = peak_extra_memory(func, x, K)
    ratios.note(f"{name} peak extra anonymous memory: {extra / 2**20:.2f} MiB "
                f"(input {x.nbytes / 2**20:.0f} MiB)")
    return extra


@pytest.mark.parametrize("where", WHERE)
def test_hnm_topk(benchmark, scores, ratios, where):
    x = scores[where]
    benchmark.group = f"topk {N:.0e} float32 k={K} [{where}]"
    result = benchmark(hnm.topk, x, K)
    ratios.record(benchmark, f"hnm.topk [{where}]")
    np.testing.assert_array_equal(result.indices, numpy_topk(np.asarray(scores["memory"]), K))
    benchmark.extra_info["peak_extra_anon_bytes"] = _extra_memory(
        ratios, f"hnm.topk [{where}]", hnm.topk, x)


@pytest.mark.parametrize("where", WHERE)
def test_numpy_argpartition(benchmark, scores, ratios, where):
    x = scores[where]
    benchmark.group = f"topk {N:.0e} float32 k={K} [{where}]"
    benchmark.pedantic(numpy_topk, args=(x, K), rounds=3, iterations=1)
    ratios.record(benchmark, f"numpy argpartition+sort [{where}]")
    _extra_memory(ratios, f"numpy argpartition+sort [{where}]", numpy_topk, x)


@pytest.mark.parametrize("where", WHERE)
def test_max_pass_floor(benchmark, scores, ratios, where):
    x = scores[where]
    benchmark.group = f"topk {N:.0e} float32 k={K} [{where}]"
    benchmark(np.max, x)
    ratios.record(benchmark, f"np.max pass [{where}]")


@pytest.mark.parametrize("where", WHERE)
def test_interleaved(scores, ratios, where):
    """topk and np.max alternately: medians of wall and CPU time."""
    x = scores[where]
    timed = {"topk": lambda: hnm.topk(x, K), "max": lambda: np.max(x)}
    w, c = interleaved_medians(timed, ROUNDS)
    ratios.note(f"interleaved topk {N:.0e} float32 [{where}], {ROUNDS} rounds, load "
                f"{os.getloadavg()[0]:.1f}: wall {w['topk'] * 1e3:.2f} / {w['max'] * 1e3:.2f} ms "
                f"= {w['topk'] / w['max']:.2f}x, process_time {c['topk'] * 1e3:.2f} / "
                f"{c['max'] * 1e3:.2f} ms = {c['topk'] / c['max']:.2f}x (target <= 1.2)")
