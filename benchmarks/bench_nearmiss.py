"""hnm.NearMiss against imbalanced-learn's NearMiss, same run, identical selections.

- NearMiss-1 on make_classification(200,000, 50, weights=[0.95]) (about 10,000
  minority samples): target >= 4x faster. Also hnm on the same data + 100 (features
  far from the origin, where an uncentred float32 screen could not certify rows).
- NearMiss-2 on the same data: imbalanced-learn's ``kneighbors`` over every
  minority sample needs the 190,000 x 10,000 distance and index matrices (about
  30 GB), more than this machine has; it is timed on the first
  ``HNM_BENCH_NM2_ROWS`` (default 10,000) majority samples with all minority
  samples, hnm on the same subset (same-size ratio) and on the full data (the
  ratio against imbalanced-learn's time scaled linearly in the majority rows, its
  cost being linear in them). Target >= 10x faster, < 1 GiB extra memory.
- NearMiss-2 on a float32 memmap of ``HNM_BENCH_NM2_MEMMAP_N`` x 128 (default
  200,000; the issue's size is 2,000,000) with 1% minority: extra anonymous
  memory, which must stay bounded (the file's pages are not counted). The file
  is written in ``HNM_BENCH_NM2_MEMMAP_DIR`` (default: pytest's temporary
  directory) and deleted afterwards.

The machine may be busy: beside the wall-clock medians (the ratios), each timed
function's median ``time.process_time()`` (CPU seconds of every thread) and its
ratio are reported. Reported, never asserted.
"""
import os
import shutil
import tempfile
import time

import numpy as np
import pytest
from imblearn.under_sampling import NearMiss as ImblearnNearMiss
from sklearn.datasets import make_classification

from benchutils import peak_extra_memory, rss_anon_bytes
from hnm import NearMiss

NM2_ROWS = int(float(os.environ.get("HNM_BENCH_NM2_ROWS", 10_000)))
MEMMAP_N = int(float(os.environ.get("HNM_BENCH_NM2_MEMMAP_N", 200_000)))
GROUP1 = "NearMiss-1 fit_resample 200,000 x 50 (5% minority)"
GROUP2 = "NearMiss-2 fit_resample 200,000 x 50 (5% minority)"
MEMMAP_DIR = os.environ.get("HNM_BENCH_NM2_MEMMAP_DIR")
GIB = 2.0**30
CPU = {}  # name -> process_time of each round


def timed(name, func):
    """func, recording the process_time of each call under name."""
    def run():
        c = time.process_time()
        func()
        CPU.setdefault(name, []).append(time.process_time() - c)
    return run


def note_cpu(ratios, slow, fast):
    """Note the process_time medians of two timed functions and their ratio."""
    if slow in CPU and fast in CPU:
        a, b = np.median(CPU[slow]), np.median(CPU[fast])
        ratios.note(f"process_time medians: {slow} {a:.3g} s, {fast} {b:.3g} s -> {a / b:.2f}x")


@pytest.fixture(scope="module")
def big():
    return make_classification(200_000, n_features=50, weights=[0.95], random_state=0)


@pytest.fixture(scope="module")
def subset(big):
    """The first NM2_ROWS majority samples and every minority sample."""
    X, y = big
    rows = np.sort(np.concatenate([np.flatnonzero(y == 0)[:NM2_ROWS], np.flatnonzero(y == 1)]))
    return X[rows], y[rows]


@pytest.fixture(scope="module", autouse=True)
def declare(ratios):
    ratios.compare("imblearn NearMiss-1", "hnm NearMiss-1", ">= 4 (speed-up)")
    ratios.compare("imblearn NearMiss-1", "hnm NearMiss-1 (features + 100)",
                   ">= 4 (speed-up, features offset by 100)")
    ratios.compare("imblearn NearMiss-2 (subset)", "hnm NearMiss-2 (subset)",
                   ">= 10 (speed-up, same subset)")


@pytest.mark.parametrize("name", ["hnm NearMiss-1", "imblearn NearMiss-1"])
def test_nearmiss1(benchmark, big, ratios, name):
    X, y = big
    cls = NearMiss if name.startswith("hnm") else ImblearnNearMiss
    benchmark.group = GROUP1
    benchmark.pedantic(timed(name, lambda: cls(version=1).fit_resample(X, y)), rounds=3,
                       iterations=1)
    ratios.record(benchmark, name)
    if name.startswith("imblearn"):
        note_cpu(ratios, "imblearn NearMiss-1", "hnm NearMiss-1")
        ours, ref = NearMiss(version=1), ImblearnNearMiss(version=1)
        ours.fit_resample(X, y)
        ref.fit_resample(X, y)
        same = np.array_equal(ours.sample_indices_, ref.sample_indices_)
        ratios.note(f"NearMiss-1 sample_indices_ identical to imblearn's on 200,000 x 50: {same}")


def test_nearmiss1_offset(benchmark, big, ratios):
    """The same data moved 100 away from the origin (unscaled features): the
    float32 screen runs on centred rows, so no row needs the float64 search."""
    X, y = big
    X = X + 100
    benchmark.group = GROUP1
    name = "hnm NearMiss-1 (features + 100)"
    benchmark.pedantic(timed(name, lambda: NearMiss(version=1).fit_resample(X, y)), rounds=3,
                       iterations=1)
    ratios.record(benchmark, name)
    note_cpu(ratios, "imblearn NearMiss-1", name)
    ours, ref = NearMiss(version=1), ImblearnNearMiss(version=1)
    ours.fit_resample(X, y)
    ref.fit_resample(X, y)
    same = np.array_equal(ours.sample_indices_, ref.sample_indices_)
    ratios.note(f"NearMiss-1 on 200,000 x 50 + 100: sample_indices_ identical to imblearn's: "
                f"{same}")


@pytest.mark.parametrize("name", ["hnm NearMiss-2 (subset)", "imblearn NearMiss-2 (subset)"])
def test_nearmiss2_subset(benchmark, subset, ratios, name):
    X, y = subset
    cls = NearMiss if name.startswith("hnm") else ImblearnNearMiss
    benchmark.group = f"NearMiss-2 fit_resample {NM2_ROWS} majority + {(y == 1).sum()} minority"
    benchmark.pedantic(timed(name, lambda: cls(version=2).fit_resample(X, y)), rounds=3,
                       iterations=1)
    ratios.record(benchmark, name)
    if name.startswith("imblearn"):
        note_cpu(ratios, "imblearn NearMiss-2 (subset)", "hnm NearMiss-2 (subset)")
    mem = peak_extra_memory(lambda: cls(version=2).fit_resample(X, y))
    benchmark.extra_info["peak_extra_MiB"] = mem / 2**20
    ratios.note(f"{name}: peak extra memory {mem / 2**20:.0f} MiB")
    if name.startswith("imblearn"):
        ours, ref = NearMiss(version=2), ImblearnNearMiss(version=2)
        ours.fit_resample(X, y)
        ref.fit_resample(X, y)
        same = np.array_equal(ours.sample_indices_, ref.sample_indices_)
        ratios.note(f"NearMiss-2 sample_indices_ identical to imblearn's on the subset: {same}")


def test_nearmiss2_full(benchmark, big, ratios):
    X, y = big
    benchmark.group = GROUP2
    benchmark.pedantic(timed("hnm NearMiss-2", lambda: NearMiss(version=2).fit_resample(X, y)),
                       rounds=3, iterations=1)
    ratios.record(benchmark, "hnm NearMiss-2")
    mem = peak_extra_memory(lambda: NearMiss(version=2).fit_resample(X, y))
    benchmark.extra_info["peak_extra_MiB"] = mem / 2**20
    n_maj = (y == 0).sum()
    sub = ratios.medians.get("imblearn NearMiss-2 (subset)")
    if sub is not None:
        scaled = sub * n_maj / NM2_ROWS
        ratios.note(f"NearMiss-2 at 200,000 x 50: hnm {ratios.medians['hnm NearMiss-2']:.3g} s, "
                    f"{mem / 2**20:.0f} MiB extra (target < 1024); imblearn scaled from "
                    f"{NM2_ROWS} rows {scaled:.3g} s -> "
                    f"{scaled / ratios.medians['hnm NearMiss-2']:.1f}x "
                    f"(target >= 10); imblearn would hold {n_maj * (y == 1).sum() * 16 / GIB:.0f} "
                    "GiB of kneighbors output")
    if "imblearn NearMiss-2 (subset)" in CPU:
        scaled = np.median(CPU["imblearn NearMiss-2 (subset)"]) * n_maj / NM2_ROWS
        ours = np.median(CPU["hnm NearMiss-2"])
        ratios.note(f"NearMiss-2 at 200,000 x 50, process_time: hnm {ours:.3g} s, imblearn "
                    f"scaled {scaled:.3g} s -> {scaled / ours:.1f}x")


@pytest.fixture
def memmap_dir(tmp_path):
    """Where the memmap is written: HNM_BENCH_NM2_MEMMAP_DIR or pytest's tmp_path;
    deleted afterwards either way."""
    if MEMMAP_DIR is None:
        yield tmp_path
        return
    os.makedirs(MEMMAP_DIR, exist_ok=True)
    where = tempfile.mkdtemp(prefix="bench_nearmiss_", dir=MEMMAP_DIR)
    try:
        yield where
    finally:
        shutil.rmtree(where, ignore_errors=True)


def test_nearmiss2_memmap(benchmark, memmap_dir, ratios):
    rng = np.random.default_rng(0)
    path = os.path.join(memmap_dir, "X.f32")
    mm = np.memmap(path, dtype=np.float32, mode="w+", shape=(MEMMAP_N, 128))
    for s in range(0, MEMMAP_N, 100_000):
        mm[s:s + 100_000] = rng.standard_normal((min(100_000, MEMMAP_N - s), 128),
                                                dtype=np.float32)
    mm.flush()
    del mm
    X = np.memmap(path, dtype=np.float32, mode="r", shape=(MEMMAP_N, 128))
    y = (rng.random(MEMMAP_N) < 0.01).astype(np.int8)
    benchmark.group = f"NearMiss-2 on a {MEMMAP_N} x 128 float32 memmap (1% minority)"
    result = {}

    def run():
        result["base"] = rss_anon_bytes()
        c = time.process_time()
        result["mem"] = peak_extra_memory(lambda: NearMiss(version=2).fit_resample(X, y))
        result["cpu"] = time.process_time() - c

    benchmark.pedantic(run, rounds=1, iterations=1)
    ratios.record(benchmark, "hnm NearMiss-2 memmap")
    data_mib = X.nbytes / 2**20
    out_mib = 2 * (y == 1).sum() * 128 * 4 / 2**20
    benchmark.extra_info["peak_extra_MiB"] = result["mem"] / 2**20
    ratios.note(f"NearMiss-2 on a {MEMMAP_N} x 128 memmap ({data_mib:.0f} MiB file, "
                f"{(y == 1).sum()} minority): {ratios.medians['hnm NearMiss-2 memmap']:.3g} s "
                f"wall, {result['cpu']:.3g} s process_time; peak extra anonymous memory "
                f"{result['mem'] / 2**20:.0f} MiB (peak anonymous RSS "
                f"{(result['base'] + result['mem']) / 2**20:.0f} MiB; output {out_mib:.0f} MiB)")
