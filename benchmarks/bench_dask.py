"""What Dask costs on one 2-core machine: in-process vs threaded dask vs 2 worker processes.

Same run, same work: exact k=10 cosine search of 2,000 x 64 queries against
400,000 x 64 candidates (a memmap, 8 blocks), and top-1000 of 5e7 float32 scores
(8 blocks). On one machine Dask can only add overhead; the ratios say how much,
so you know what a cluster has to win back.
"""
import logging

import numpy as np
import pytest

import hnm

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
import dask  # noqa: E402
import hnm.dask  # noqa: E402

GROUP_PAIRS = "search 2000 x 400000 x 64, k=10"
GROUP_TOPK = "topk 5e7 float32, k=1000"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("dask") / "c.npy"
    np.save(path, rng.standard_normal((400_000, 64), dtype=np.float32))
    C = np.load(path, mmap_mode="r")
    Q = rng.standard_normal((2000, 64), dtype=np.float32)
    s_path = path.with_name("s.npy")
    np.save(s_path, rng.standard_normal(50_000_000, dtype=np.float32))
    return Q, (C, path), (np.load(s_path, mmap_mode="r"), s_path)


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None, silence_logs=logging.ERROR)
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


@pytest.fixture(scope="module", autouse=True)
def declare(ratios):
    for g in ("pairs", "topk"):
        ratios.compare(f"dask threaded [{g}]", f"in-process [{g}]", "overhead")
        ratios.compare(f"dask 2 workers [{g}]", f"in-process [{g}]", "overhead")


def run_pairs(Q, C, kind):
    if kind == "in-process":
        return hnm.search_hard_pairs(Q, C[0], 10)
    # workers open the file and read only their blocks
    return hnm.dask.search_hard_pairs(Q, hnm.dask.from_npy(C[1], 50_000), 10)


def run_topk(s, kind):
    if kind == "in-process":
        return hnm.topk(s[0], 1000)
    return hnm.dask.topk(hnm.dask.from_npy(s[1], len(s[0]) // 8), 1000)


def scheduler(kind, request):
    if kind == "dask 2 workers":
        return dask.config.set(scheduler=request.getfixturevalue("client"))
    return dask.config.set(scheduler="threads")  # in-process ignores it


KINDS = ["in-process", "dask threaded", "dask 2 workers"]


@pytest.mark.parametrize("kind", KINDS)
def test_pairs_overhead(benchmark, data, ratios, kind, request):
    Q, C, _ = data
    benchmark.group = GROUP_PAIRS
    with scheduler(kind, request):
        benchmark.pedantic(run_pairs, args=(Q, C, kind), rounds=3, iterations=1)
    ratios.record(benchmark, f"{kind} [pairs]")


@pytest.mark.parametrize("kind", KINDS)
def test_topk_overhead(benchmark, data, ratios, kind, request):
    _, _, s = data
    benchmark.group = GROUP_TOPK
    with scheduler(kind, request):
        benchmark.pedantic(run_topk, args=(s, kind), rounds=3, iterations=1)
    ratios.record(benchmark, f"{kind} [topk]")
