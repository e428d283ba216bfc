"""The bfloat16 screen of search_hard_pairs: as exact as the fp32 path.

Scores are approximated in bfloat16, every approximation within the proven
bound of a heap root is rescored exactly, and the rest are dropped; so the ids
must match the float64 brute force (up to swaps between scores tied within
float32 rounding) for every metric, filter, band, block size and thread count.
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from threadpoolctl import threadpool_limits

import hnm
from hnm import _pairs, search_hard_pairs
from hnm.pairs import _use_bf16

from refs_pairs import (assert_quasi_equal, draw_filtered_search, make_data, reference,
                        score_matrix)

needs_bf16 = pytest.mark.skipif(not _pairs.bf16_supported(),
                                reason="this CPU has no AVX-512 BF16")


@needs_bf16
@settings(max_examples=60)
@given(n_q=st.integers(1, 150), n_c=st.integers(1, 400), dim=st.integers(1, 70),
       metric=st.sampled_from(["ip", "cosine", "l2"]), dup=st.booleans(), data=st.data())
def test_bf16_matches_brute_force_for_any_blocks_and_threads(n_q, n_c, dim, metric, dup,
                                                             data):
    Q, C = make_data(data.draw(st.integers(0, 2**16)), n_q, n_c, dim, np.float32, dup)
    stop = data.draw(st.integers(1, min(n_c, 40)))
    start = data.draw(st.integers(0, stop - 1))
    block = data.draw(st.integers(1, 300))
    threads = data.draw(st.sampled_from([1, 2]))
    with threadpool_limits(threads, user_api="openmp"):
        got = search_hard_pairs(Q, C, band=(start, stop), metric=metric, block_size=block,
                                screen="bf16")
    ref, S = reference(Q, C, start, stop, metric)
    assert_quasi_equal(got, ref, S, rtol=1e-4, atol=1e-4)
    exact = search_hard_pairs(Q, C, band=(start, stop), metric=metric, block_size=block,
                              screen="exact")
    valid = got.indices >= 0
    np.testing.assert_array_equal(valid, exact.indices >= 0)
    # rescored scores are the true ones to float32 rounding
    expected = S[np.arange(n_q)[:, None], np.maximum(got.indices, 0)]
    if metric == "l2":
        expected = -expected
    np.testing.assert_allclose(got.scores[valid], expected[valid], rtol=1e-5,
                               atol=1e-5 * (1 + np.abs(expected).max()))


@needs_bf16
@settings(max_examples=60)
@given(n_c=st.integers(2, 200), metric=st.sampled_from(["ip", "cosine", "l2"]), data=st.data())
def test_bf16_exclusions_labels_and_cap(n_c, metric, data):
    Q, C, kw, ref_kw = draw_filtered_search(data, n_c, metric, dim=5, dtype=np.float32,
                                            max_block=100)
    got = search_hard_pairs(Q, C, **kw, screen="bf16")
    ref, S = reference(Q, C, 0, kw["k"], metric, **ref_kw)
    assert_quasi_equal(got, ref, S, rtol=1e-4, atol=1e-4)


@needs_bf16
@pytest.mark.parametrize("metric", ["ip", "cosine", "l2"])
def test_bf16_orders_near_ties_below_bfloat16_resolution_exactly(metric):
    # candidates that bfloat16 cannot tell apart (relative steps of 2**-14, far
    # below its 2**-8) but float32 can: the rescore must order them exactly
    rng = np.random.default_rng(3)
    base = rng.standard_normal(64).astype(np.float32)
    Q = np.tile(base, (80, 1)) + rng.standard_normal((80, 64)).astype(np.float32) * 0.01
    steps = (1 + 2.0 ** -14 * rng.permutation(300)).astype(np.float32)
    C = (base[None, :] * steps[:, None]).astype(np.float32)
    C = np.concatenate([C, rng.standard_normal((5000, 64)).astype(np.float32)])
    got = search_hard_pairs(Q, C, 20, metric=metric, screen="bf16")
    ref, S = reference(Q, C, 0, 20, metric)
    # l2 keys are |q|^2 / 2 + |c|^2 / 2 - q.c in float32 on either path: ties
    # within the rounding of the norms (not of the dot product) may swap
    atol = 0 if metric != "l2" else 8 * 2.0**-24 * 2 * (base @ base)
    assert_quasi_equal(got, ref, S, rtol=1e-7, atol=atol)


@needs_bf16
def test_bf16_rescores_few_scores_on_embeddings_and_stays_exact_on_dense_ones():
    rng = np.random.default_rng(1)
    C = rng.standard_normal((70000, 64)).astype(np.float32)
    Q = rng.standard_normal((100, 64)).astype(np.float32)
    search_hard_pairs(Q, C, 10, screen="bf16")
    rescored, screened = _pairs._last_screen
    assert 0 < rescored < 0.001 * screened
    # a dense neighbourhood: many scores within the bound of the roots, all rescored
    Cd = (np.ones((20000, 64)) + 1e-4 * rng.standard_normal((20000, 64))).astype(np.float32)
    got = search_hard_pairs(Q, Cd, 10, screen="bf16", block_size=4096)
    assert _pairs._last_screen[0] > 0.01 * _pairs._last_screen[1]
    ref, S = reference(Q, Cd, 0, 10, "cosine")
    assert_quasi_equal(got, ref, S, rtol=1e-6, atol=1e-6)


def test_bf16_results_do_not_depend_on_how_queries_are_split():
    if not _pairs.bf16_supported():
        pytest.skip("this CPU has no AVX-512 BF16")
    rng = np.random.default_rng(2)
    C = rng.standard_normal((70000, 32)).astype(np.float32)
    Q = rng.standard_normal((600, 32)).astype(np.float32)
    whole = search_hard_pairs(Q, C, 5)
    parts = [search_hard_pairs(Q[s:s + n], C, 5) for s, n in ((0, 512), (512, 30), (542, 58))]
    np.testing.assert_array_equal(whole.indices, np.concatenate([p.indices for p in parts]))
    np.testing.assert_array_equal(whole.scores, np.concatenate([p.scores for p in parts]))


@needs_bf16
def test_bf16_equals_exact_path_on_embeddings(as_memmap):
    rng = np.random.default_rng(0)
    C = rng.standard_normal((20000, 96)).astype(np.float32)
    C /= np.linalg.norm(C, axis=1, keepdims=True)
    Q = C[rng.choice(20000, 300, replace=False)] + 0.05 * rng.standard_normal((300, 96),
                                                                             dtype=np.float32)
    for metric in ("ip", "cosine", "l2"):
        a = search_hard_pairs(Q, as_memmap(C), 10, metric=metric, screen="bf16")
        b = search_hard_pairs(Q, C, 10, metric=metric, screen="exact")
        S = score_matrix(Q, C, metric)
        assert_quasi_equal(a, b.indices, S, rtol=1e-6, atol=1e-6)


def test_auto_screen_follows_the_cpu_and_the_environment(monkeypatch):
    monkeypatch.delenv("HNM_SCREEN", raising=False)
    supported = _pairs.bf16_supported()
    assert _use_bf16("auto", np.float32, 10**6) == supported
    assert not _use_bf16("auto", np.float32, 5000)  # heaps too loose for the bound
    # few neighbours per query: their roots tighten within the first block
    assert _use_bf16("auto", np.float32, 8192, 10) == supported
    assert not _use_bf16("auto", np.float32, 8192, 11)
    assert not _use_bf16("auto", np.float32, 8191, 5)
    assert not _use_bf16("auto", np.float32, 20000)  # k varies between searches
    assert not _use_bf16("auto", np.float64, 8192, 5)
    assert not _use_bf16("auto", np.float64, 10**6)
    assert not _use_bf16("exact", np.float32, 10**6)
    monkeypatch.setenv("HNM_SCREEN", "exact")
    assert not _use_bf16("auto", np.float32, 10**6)
    monkeypatch.setenv("HNM_SCREEN", "fast")
    with pytest.raises(ValueError, match="HNM_SCREEN"):
        _use_bf16("auto", np.float32, 10**6)


def test_screen_argument_is_checked(monkeypatch):
    Q = np.ones((3, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="screen"):
        search_hard_pairs(Q, Q, 1, screen="fast")
    with pytest.raises(ValueError, match="float32"):
        search_hard_pairs(Q.astype(np.float64), Q, 1, screen="bf16")
    monkeypatch.setattr(_pairs, "bf16_supported", lambda: False)
    with pytest.raises(ValueError, match="AVX-512 BF16"):
        search_hard_pairs(Q, Q, 1, screen="bf16")
    # auto falls back to the exact path silently
    assert search_hard_pairs(np.ones((100, 4), np.float32), Q, 1).indices.shape == (100, 1)
    assert hnm.search_hard_pairs is search_hard_pairs
