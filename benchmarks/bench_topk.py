"""hnm.topk vs numpy on 1e8 float32 scores, k=1000, in memory and as a memmap.

Peers in the same run: ``np.argpartition`` + sorting the k (the numpy way) and one
``np.max`` pass over the same data (the memory-bandwidth floor).
Targets: >= 20x faster than argpartition+sort, within 1.5x of the floor, extra
anonymous memory O(k + chunk) over the memmap.
"""
import os

import numpy as np
import pytest

import hnm
from benchutils import peak_extra_memory

N = int(float(os.environ.get("HNM_BENCH_TOPK_N", 1e8)))
K = 1000


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
    for where in ("memory", "memmap"):
        ratios.compare(f"numpy argpartition+sort [{where}]", f"hnm.topk [{where}]",
                       ">= 20 (speed-up)")
        ratios.compare(f"hnm.topk [{where}]", f"np.max pass [{where}]", "<= 1.5")


@pytest.mark.parametrize("where", ["memory", "memmap"])
def test_hnm_topk(benchmark, scores, ratios, where):
    x = scores[where]
    benchmark.group = f"topk 1e8 float32 k=1000 [{where}]"
    result = benchmark(hnm.topk, x, K)
    ratios.record(benchmark, f"hnm.topk [{where}]")
    np.testing.assert_array_equal(result.indices, numpy_topk(np.asarray(scores["memory"]), K))
    extra = peak_extra_memory(hnm.topk, x, K)
    benchmark.extra_info["peak_extra_anon_bytes"] = extra
    ratios.note(f"hnm.topk [{where}] peak extra anonymous memory: {extra / 2**20:.2f} MiB "
                f"(input {x.nbytes / 2**20:.0f} MiB)")


@pytest.mark.parametrize("where", ["memory", "memmap"])
def test_numpy_argpartition(benchmark, scores, ratios, where):
    x = scores[where]
    benchmark.group = f"topk 1e8 float32 k=1000 [{where}]"
    benchmark.pedantic(numpy_topk, args=(x, K), rounds=3, iterations=1)
    ratios.record(benchmark, f"numpy argpartition+sort [{where}]")
    extra = peak_extra_memory(numpy_topk, x, K)
    ratios.note(f"numpy argpartition+sort [{where}] peak extra anonymous memory: "
                f"{extra / 2**20:.0f} MiB")


@pytest.mark.parametrize("where", ["memory", "memmap"])
def test_max_pass_floor(benchmark, scores, ratios, where):
    x = scores[where]
    benchmark.group = f"topk 1e8 float32 k=1000 [{where}]"
    benchmark(np.max, x)
    ratios.record(benchmark, f"np.max pass [{where}]")
