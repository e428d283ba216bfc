"""hnm.miners against pytorch-metric-learning's miners, and at corpus scale.

Same run: each hnm miner and PML's (skipped when ``pytorch_metric_learning`` is
not importable) on N x 128 float32 embeddings of 50 classes (cluster centres plus
noise, so that the mined sets have realistic sizes), with the peak extra
anonymous memory of each. Targets: PML / hnm >= 10, hnm's extra memory < 1 GiB
wherever the result itself is smaller than that. PML runs only the miners that fit
this machine at N (``PML_SKIP``: at 20,000 its MultiSimilarityMiner needs > 19 GB,
its semihard TripletMarginMiner 3.4 TiB of indices). The sets are compared.

Corpus scale: anchors mined against an ``np.memmap`` of references (the cross-batch
memory use of ``ref_emb``) by every miner, combinatorial ones sampled with
``max_triplets`` / ``max_pairs``; the extra memory is recorded. ``angular`` does
``n_pos x n_neg`` work per anchor (PML's rule has no bound to prune with), so it
runs HNM_BENCH_MINERS_ANGULAR anchors (5) against the first 20,000 rows of the
memmap.

Memory: "peak extra" is the peak anonymous RSS (or tracemalloc's peak) above the
start of the call, which includes the returned arrays (intp, as PML's int64
tensors); "without the result" subtracts their bytes.

CPU time: each timed call's ``time.process_time`` (all threads) is recorded too,
and the PML / hnm ratio of its medians noted next to the wall-clock one.

Sizes: HNM_BENCH_MINERS_N (20,000), HNM_BENCH_MINERS_REF (100,000; 1e6 for the
full run), HNM_BENCH_MINERS_ANCHORS (1,000), HNM_BENCH_MINERS_ROUNDS (timed
rounds of the 20,000-row cases, 1); HNM_BENCH_MINERS_DIR: where the memmap
is written (default: pytest's tmp_path). Only the memmap cases:
``pytest benchmarks/bench_miners.py -k memmap``. Against PML: run this file with
/work/venv-pml/bin/python -m pytest, with hnm on PYTHONPATH.
"""
import os
import time
from pathlib import Path

import numpy as np
import pytest

from hnm import miners
from benchutils import peak_extra_memory

N = int(float(os.environ.get("HNM_BENCH_MINERS_N", 20_000)))
N_REF = int(float(os.environ.get("HNM_BENCH_MINERS_REF", 100_000)))
N_ANCHORS = int(float(os.environ.get("HNM_BENCH_MINERS_ANCHORS", 1_000)))
N_ANGULAR = int(float(os.environ.get("HNM_BENCH_MINERS_ANGULAR", 5)))
ROUNDS = int(os.environ.get("HNM_BENCH_MINERS_ROUNDS", 1))
MM_DIR = os.environ.get("HNM_BENCH_MINERS_DIR")
DIM, N_LABELS = 128, 50
GROUP = f"miners, {N} x {DIM} float32, {N_LABELS} labels"
GROUP_MM = f"miners, {N_ANCHORS} anchors vs a {N_REF} x {DIM} memmap"


def _clustered(rng, n):
    centres = np.random.default_rng(123).standard_normal((N_LABELS, DIM))
    y = rng.integers(0, N_LABELS, n)
    return (centres[y] + 1.2 * rng.standard_normal((n, DIM))).astype(np.float32), y


@pytest.fixture(scope="module")
def batch():
    return _clustered(np.random.default_rng(0), N)


# name -> (hnm call, PML constructor, kind); PML's defaults everywhere
CASES = {
    "batch_hard": (lambda X, y: miners.batch_hard(X, y),
                   lambda M: M.BatchHardMiner(), 3),
    "batch_easy_hard": (lambda X, y: miners.batch_easy_hard(X, y),
                        lambda M: M.BatchEasyHardMiner(), 4),
    "pair_margin": (lambda X, y: miners.pair_margin(X, y),
                    lambda M: M.PairMarginMiner(), 4),
    "multi_similarity": (lambda X, y: miners.multi_similarity(X, y),
                         lambda M: M.MultiSimilarityMiner(), 4),
    "hdc": (lambda X, y: miners.hdc(X, y, max_pairs=1_000_000, random_state=0),
            None, 4),
    "triplet_margin semihard, 1e6 sampled": (
        lambda X, y: miners.triplet_margin(X, y, type_of_triplets="semihard",
                                           max_triplets=1_000_000, random_state=0),
        None, 3),
}
# at 20,000 these exhaust this 24 GiB machine in PML (measured: > 19 GB)
PML_SKIP = {"multi_similarity"} if N > 12_000 else set()


def _sets(t):
    if len(t) == 3:
        return set(zip(*(np.asarray(x).tolist() for x in t)))
    return (set(zip(np.asarray(t[0]).tolist(), np.asarray(t[1]).tolist())),
            set(zip(np.asarray(t[2]).tolist(), np.asarray(t[3]).tolist())))


_results = {}
_cpu = {}  # name -> process_time of each timed call


def _timed(f, name):
    """``f`` recording its process time (every thread's CPU) under ``name``."""
    times = _cpu.setdefault(name, [])

    def run(*args):
        c = time.process_time()
        try:
            return f(*args)
        finally:
            times.append(time.process_time() - c)
    return run


def _cpu_median(name):
    return float(np.median(_cpu[name])) if _cpu.get(name) else None


@pytest.fixture(scope="module", autouse=True)
def declare(ratios):
    for name, (_, pml, _) in CASES.items():
        if pml is not None and name not in PML_SKIP:
            ratios.compare(f"PML {name}", f"hnm {name}", ">= 10 (hnm faster)")


@pytest.mark.parametrize("name", list(CASES))
def test_hnm(benchmark, batch, ratios, name):
    X, y = batch
    f = CASES[name][0]
    benchmark.group = GROUP
    result = benchmark.pedantic(_timed(f, f"hnm {name}"), args=(X, y), rounds=ROUNDS,
                                iterations=1)
    ratios.record(benchmark, f"hnm {name}")
    benchmark.extra_info["cpu_s_median"] = _cpu_median(f"hnm {name}")
    _results[name] = result
    extra = peak_extra_memory(f, X, y)
    out = sum(np.asarray(t).nbytes for t in result)
    benchmark.extra_info["peak_extra_anon_bytes"] = extra
    ratios.note(f"hnm {name}: {len(result[0])} tuples, peak extra memory "
                f"{extra / 2**20:.0f} MiB, without the result {(extra - out) / 2**20:.0f} MiB "
                f"(the result itself: {out / 2**20:.0f} MiB)")


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if c[1] is not None])
def test_pml(benchmark, batch, ratios, name):
    torch = pytest.importorskip("torch")
    M = pytest.importorskip("pytorch_metric_learning.miners")
    if name in PML_SKIP:
        pytest.skip(f"PML {name} does not fit this machine at {N} rows")
    X, y = batch
    miner = CASES[name][1](M)
    tx, ty = torch.from_numpy(X), torch.from_numpy(y)

    def run():
        return tuple(t.numpy() for t in miner(tx, ty))

    benchmark.group = GROUP
    result = benchmark.pedantic(_timed(run, f"PML {name}"), rounds=ROUNDS, iterations=1)
    ratios.record(benchmark, f"PML {name}")
    cpu, cpu_hnm = _cpu_median(f"PML {name}"), _cpu_median(f"hnm {name}")
    benchmark.extra_info["cpu_s_median"] = cpu
    if cpu_hnm:
        ratios.note(f"PML {name} / hnm {name} in CPU time: {cpu / cpu_hnm:.3f}  (medians "
                    f"{cpu:.4g} s / {cpu_hnm:.4g} s of process_time)")
    extra = peak_extra_memory(run)
    benchmark.extra_info["peak_extra_anon_bytes"] = extra
    ratios.note(f"PML {name}: peak extra memory {extra / 2**20:.0f} MiB")
    if name in _results:
        mine, theirs = _sets(_results[name]), _sets(result)
        if len(result) == 3:
            agree = len(mine & theirs) / max(len(theirs), 1)
        else:
            agree = (len(mine[0] & theirs[0]) + len(mine[1] & theirs[1])) / max(
                len(theirs[0]) + len(theirs[1]), 1)
        benchmark.extra_info["agreement_with_hnm"] = agree
        ratios.note(f"PML {name}: {agree:.4%} of its tuples are hnm's (rest: float32 "
                    "near-ties at a bound)")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    rng = np.random.default_rng(1)
    folder = tmp_path_factory.mktemp("miners") if MM_DIR is None else Path(MM_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "refs.f32"
    mm = np.memmap(path, dtype=np.float32, mode="w+", shape=(N_REF, DIM))
    labels = np.empty(N_REF, dtype=np.int64)
    for s in range(0, N_REF, 100_000):
        X, y = _clustered(rng, min(100_000, N_REF - s))
        mm[s:s + len(X)] = X
        labels[s:s + len(X)] = y
    mm.flush()
    del mm
    R = np.memmap(path, dtype=np.float32, mode="r", shape=(N_REF, DIM))
    A, ya = _clustered(rng, N_ANCHORS)
    yield A, ya, R, labels
    del R
    path.unlink()


MM_CASES = {
    "batch_hard": lambda A, ya, R, yr: miners.batch_hard(A, ya, R, yr),
    "batch_easy_hard": lambda A, ya, R, yr: miners.batch_easy_hard(A, ya, R, yr),
    "multi_similarity, 1e6 sampled": lambda A, ya, R, yr: miners.multi_similarity(
        A, ya, R, yr, max_pairs=1_000_000, random_state=0),
    "pair_margin, 1e6 sampled": lambda A, ya, R, yr: miners.pair_margin(
        A, ya, R, yr, max_pairs=1_000_000, random_state=0),
    "triplet_margin semihard, 1e6 sampled": lambda A, ya, R, yr: miners.triplet_margin(
        A, ya, R, yr, type_of_triplets="semihard", max_triplets=1_000_000, random_state=0),
    "hdc, 1e6 sampled": lambda A, ya, R, yr: miners.hdc(
        A, ya, R, yr, max_pairs=1_000_000, random_state=0),
    "distance_weighted": lambda A, ya, R, yr: miners.distance_weighted(
        A, ya, R, yr, random_state=0),
    "uniform_histogram": lambda A, ya, R, yr: miners.uniform_histogram(
        A, ya, R, yr, random_state=0),
    f"angular, {N_ANGULAR} anchors vs 20,000 memmap rows, 1e5 sampled":
        lambda A, ya, R, yr: miners.angular(A[:N_ANGULAR], ya[:N_ANGULAR], R[:20_000],
                                            yr[:20_000], max_triplets=100_000,
                                            random_state=0),
}


@pytest.mark.parametrize("name", list(MM_CASES))
def test_memmap_bounded(benchmark, corpus, ratios, name):
    f = MM_CASES[name]
    benchmark.group = GROUP_MM
    result = benchmark.pedantic(f, args=corpus, rounds=1, iterations=1)
    out = sum(np.asarray(t).nbytes for t in result)
    del result
    extra = peak_extra_memory(f, *corpus)
    benchmark.extra_info["peak_extra_anon_bytes"] = extra
    ratios.note(f"memmap {name}: {benchmark.stats.stats.median:.1f} s, peak extra memory "
                f"{extra / 2**20:.0f} MiB, without the result {(extra - out) / 2**20:.0f} MiB "
                f"(references: {corpus[2].nbytes / 2**20:.0f} MiB)")
