"""Exact k=10 cosine search: 10,000 x 128 queries vs a 1,000,000 x 128 float32 memmap.

Same run: hnm.search_hard_pairs, scikit-learn NearestNeighbors(algorithm="brute",
metric="cosine"), faiss IndexFlatIP on normalised copies (skipped without
faiss-cpu), and the GEMMs alone (the compute floor: every query-candidate dot
product, in blocks, into a preallocated buffer).
Also hnm with ``screen="exact"`` (the fp32 GEMM path): the default screens in
bfloat16 where the CPU has AVX-512 BF16 and rescores the survivors exactly.
Targets: hnm / faiss <= 0.4, hnm / hnm exact <= 1 / 1.3, scikit-learn / hnm >= 2,
extra anonymous memory < 1 GiB and independent of the number of candidates.

test_cold_page_cache: where the time of a memmap search goes when the file is not
in the page cache (evicted with posix_fadvise before each call, as for a corpus
larger than RAM): hnm warm vs cold, against reading the file alone through the
page cache and with O_DIRECT (the disk's own rate), wall and CPU medians; and hnm
cold with its candidate spans read by O_DIRECT (``HNM_DIRECT_IO=1``, hnm/_direct_read.py;
"hnm cold page cache" forces ``HNM_DIRECT_IO=0``, the mapping).

Sizes: HNM_BENCH_PAIRS_NQ / HNM_BENCH_PAIRS_NC. This machine sets
OPENBLAS_CORETYPE; run with ``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE`` to let
OpenBLAS pick its best kernel (the BLAS in use is recorded in extra_info).
"""
import mmap
import os
import time

import numpy as np
import pytest
from threadpoolctl import threadpool_info

import hnm
from benchutils import interleaved_medians, peak_extra_memory

N_Q = int(float(os.environ.get("HNM_BENCH_PAIRS_NQ", 10_000)))
N_C = int(float(os.environ.get("HNM_BENCH_PAIRS_NC", 1_000_000)))
DIM, K = 128, 10
GROUP = f"exact k=10 cosine, {N_Q} x {N_C} x {DIM} float32 (memmap)"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("pairs") / "candidates.f32"
    mm = np.memmap(path, dtype=np.float32, mode="w+", shape=(N_C, DIM))
    for s in range(0, N_C, 100_000):
        mm[s:s + 100_000] = rng.standard_normal((min(100_000, N_C - s), DIM), dtype=np.float32)
    mm.flush()
    del mm
    C = np.memmap(path, dtype=np.float32, mode="r", shape=(N_C, DIM))
    Q = rng.standard_normal((N_Q, DIM), dtype=np.float32)
    return Q, C


def _evict(C):
    """Drop the memmap's clean pages from the page cache (a cold read follows):
    unmapped from this process first (the page cache keeps mapped pages)."""
    C._mmap.madvise(mmap.MADV_DONTNEED)
    fd = os.open(C.filename, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _read_direct(path, chunk=16 << 20):
    """Read the whole file with O_DIRECT in chunk-byte requests (no page cache)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    buf = mmap.mmap(-1, chunk)  # page aligned, as O_DIRECT needs
    try:
        offset = 0
        while True:
            n = os.preadv(fd, [buf], offset)
            if n <= 0:
                return offset
            offset += n
    finally:
        os.close(fd)
        buf.close()


@pytest.fixture(scope="module")
def hnm_result(data):
    Q, C = data
    return hnm.search_hard_pairs(Q, C, K)


@pytest.fixture(scope="module", autouse=True)
def declare(ratios):
    ratios.compare("hnm.search_hard_pairs", "faiss IndexFlatIP", "<= 0.4")
    ratios.compare("hnm.search_hard_pairs", "hnm screen='exact'", "<= 0.77 (1.3x faster)")
    ratios.compare("hnm screen='exact'", "GEMMs alone", "<= 1.2")
    ratios.note(f"bfloat16 screen available: {hnm._pairs.bf16_supported()}")
    ratios.compare("sklearn NearestNeighbors brute", "hnm.search_hard_pairs", ">= 2")
    ratios.note("BLAS: " + ", ".join(f"{i['internal_api']} {i.get('version')} "
                                     f"{i.get('architecture')} x{i['num_threads']}"
                                     for i in threadpool_info()
                                     if i["user_api"] == "blas"))


def test_hnm(benchmark, data, ratios, hnm_result):
    Q, C = data
    benchmark.group = GROUP
    result = benchmark.pedantic(hnm.search_hard_pairs, args=(Q, C, K), rounds=2, iterations=1)
    ratios.record(benchmark, "hnm.search_hard_pairs")
    np.testing.assert_array_equal(result.indices, hnm_result.indices)
    extra = peak_extra_memory(hnm.search_hard_pairs, Q, C[: N_C // 4], K)
    extra_full = peak_extra_memory(hnm.search_hard_pairs, Q, C, K)
    benchmark.extra_info["peak_extra_anon_bytes"] = extra_full
    ratios.note(f"hnm.search_hard_pairs peak extra anonymous memory: {extra_full / 2**20:.0f} "
                f"MiB for {N_C} candidates, {extra / 2**20:.0f} MiB for {N_C // 4} "
                f"(candidates: {C.nbytes / 2**20:.0f} MiB memmap)")


def test_hnm_exact_screen(benchmark, data, ratios, hnm_result):
    Q, C = data
    benchmark.group = GROUP
    result = benchmark.pedantic(hnm.search_hard_pairs, args=(Q, C, K),
                                kwargs={"screen": "exact"}, rounds=2, iterations=1)
    ratios.record(benchmark, "hnm screen='exact'")
    agreement = float((result.indices == hnm_result.indices).mean())
    ratios.note(f"screen='exact' ids equal to the default's: {agreement:.4%} "
                "(rest: float32 near-ties, which the default's rescore orders in double)")


def test_cold_page_cache(benchmark, data, ratios, hnm_result):
    Q, C = data
    path = C.filename
    if (not hasattr(os, "posix_fadvise") or not hasattr(os, "O_DIRECT")
            or not hasattr(mmap, "MADV_DONTNEED") or getattr(C, "_mmap", None) is None):
        pytest.skip("needs posix_fadvise, madvise and O_DIRECT")
    try:
        _read_direct(path)
    except OSError as exc:  # e.g. tmpfs: no O_DIRECT
        pytest.skip(f"O_DIRECT reads fail here: {exc}")
    results = []

    def cold_search(direct="0"):  # HNM_DIRECT_IO: "0" the mapping, "1" O_DIRECT spans
        _evict(C)
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("HNM_DIRECT_IO", direct)
            results.append(hnm.search_hard_pairs(Q, C, K).indices)

    def cold_read():
        _evict(C)
        np.asarray(C).view(np.uint8)[::4096].sum()  # one byte per page, in order

    timed = {"hnm warm": lambda: hnm.search_hard_pairs(Q, C, K),
             "hnm cold page cache": cold_search,
             "hnm cold, O_DIRECT spans": lambda: cold_search("1"),
             "file read, cold page cache": cold_read,
             "file read, O_DIRECT": lambda: _read_direct(path)}
    benchmark.group = GROUP
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)  # the timings are below
    wall, cpu = interleaved_medians(timed, rounds=2)
    for r in results:
        np.testing.assert_array_equal(r, hnm_result.indices)
    size = C.nbytes / 1e6
    for name in timed:
        rate = f", {size / wall[name]:.0f} MB/s" if name.startswith("file") else ""
        ratios.note(f"{name}: wall median {wall[name]:.3f} s, CPU median {cpu[name]:.3f} s{rate}")
        benchmark.extra_info[f"{name} wall"] = wall[name]
        benchmark.extra_info[f"{name} cpu"] = cpu[name]
    ratios.note(f"hnm cold / warm: wall {wall['hnm cold page cache'] / wall['hnm warm']:.3f}, "
                f"CPU {cpu['hnm cold page cache'] / cpu['hnm warm']:.3f} (the CPU difference: "
                "faulting the file in through the page cache)")
    ratios.note(f"hnm cold O_DIRECT spans / cold page cache: wall "
                f"{wall['hnm cold, O_DIRECT spans'] / wall['hnm cold page cache']:.3f}, CPU "
                f"{cpu['hnm cold, O_DIRECT spans'] / cpu['hnm cold page cache']:.3f}; / warm: "
                f"wall {wall['hnm cold, O_DIRECT spans'] / wall['hnm warm']:.3f}")
    # the evictions leave the file out of the cache: warm it again for later tests
    np.asarray(C).view(np.uint8)[::4096].sum()


def test_gemm_floor(benchmark, data, ratios):
    Q, C = data
    block = 8192
    out = np.empty((N_Q, block), dtype=np.float32)

    def gemms():
        for s in range(0, N_C, block):
            c = C[s:s + block]
            np.matmul(Q, c.T, out=out[:, : c.shape[0]])

    benchmark.group = GROUP
    benchmark.pedantic(gemms, rounds=2, iterations=1)
    ratios.record(benchmark, "GEMMs alone")


def test_faiss(benchmark, data, ratios, hnm_result):
    faiss = pytest.importorskip("faiss", reason="faiss-cpu is not installed ([bench] extra)")
    Q, C = data

    def run():
        Cn = np.asarray(C) / np.linalg.norm(C, axis=1, keepdims=True)
        index = faiss.IndexFlatIP(DIM)
        index.add(Cn)
        return index.search(Q / np.linalg.norm(Q, axis=1, keepdims=True), K)

    benchmark.group = GROUP
    _, ids = benchmark.pedantic(run, rounds=1, iterations=1)
    ratios.record(benchmark, "faiss IndexFlatIP")
    agreement = float((ids == hnm_result.indices).mean())
    benchmark.extra_info["id_agreement_with_hnm"] = agreement
    ratios.note(f"faiss ids equal to hnm's: {agreement:.4%} (rest: float32 near-ties)")


def test_sklearn(benchmark, data, ratios, hnm_result):
    from sklearn.neighbors import NearestNeighbors
    Q, C = data

    def run():
        return NearestNeighbors(n_neighbors=K, algorithm="brute", metric="cosine").fit(
            C).kneighbors(Q)

    benchmark.group = GROUP
    _, ids = benchmark.pedantic(run, rounds=1, iterations=1)
    ratios.record(benchmark, "sklearn NearestNeighbors brute")
    benchmark.extra_info["id_agreement_with_hnm"] = float((ids == hnm_result.indices).mean())
