import numpy as np
import pytest
from hypothesis import given, strategies as st
from threadpoolctl import threadpool_limits

import hnm
from hnm import search_hard_pairs

from refs_pairs import assert_quasi_equal, draw_filtered_search, make_data, reference


@given(n_q=st.integers(1, 30), n_c=st.integers(1, 120), dim=st.integers(1, 9),
       dtype=st.sampled_from([np.float32, np.float64]),
       metric=st.sampled_from(["ip", "cosine", "l2"]), dup=st.booleans(), data=st.data())
def test_matches_brute_force_for_any_blocks_and_threads(n_q, n_c, dim, dtype, metric, dup,
                                                        data):
    Q, C = make_data(data.draw(st.integers(0, 2**16)), n_q, n_c, dim, dtype, dup)
    stop = data.draw(st.integers(1, n_c))
    start = data.draw(st.integers(0, stop - 1))
    block = data.draw(st.integers(1, 64))
    threads = data.draw(st.sampled_from([1, 2]))
    with threadpool_limits(threads, user_api="openmp"):
        got = search_hard_pairs(Q, C, band=(start, stop), metric=metric, block_size=block)
    ref, S = reference(Q, C, start, stop, metric)
    rtol = 1e-4 if dtype == np.float32 else 1e-9
    assert_quasi_equal(got, ref, S, rtol=rtol, atol=rtol)
    assert got.scores.dtype == dtype and got.indices.shape == (n_q, stop - start)
    valid = got.indices >= 0
    expected_scores = S[np.arange(n_q)[:, None], np.maximum(got.indices, 0)]
    if metric == "l2":
        expected_scores = -expected_scores
    np.testing.assert_allclose(got.scores[valid], expected_scores[valid], rtol=rtol,
                               atol=10 * rtol * (1 + np.abs(expected_scores[valid]).max()
                                                 if valid.any() else 1))


@given(n_c=st.integers(2, 60), metric=st.sampled_from(["ip", "cosine", "l2"]), data=st.data())
def test_exclusions_labels_and_cap(n_c, metric, data):
    Q, C, kw, ref_kw = draw_filtered_search(data, n_c, metric, dim=4, dtype=np.float64,
                                            max_block=20)
    got = search_hard_pairs(Q, C, **kw)
    ref, S = reference(Q, C, 0, kw["k"], metric, **ref_kw)
    assert_quasi_equal(got, ref, S, rtol=1e-9, atol=1e-9)
    pad = got.indices < 0
    assert np.all(got.scores[pad] == (np.inf if metric == "l2" else -np.inf))


def test_exclude_as_csr_pair_equals_list(rng):
    C = rng.standard_normal((50, 5))
    lists = [np.array([3, 1]), np.array([], dtype=int), np.array([7])]
    csr = (np.array([0, 2, 2, 3]), np.array([3, 1, 7]))
    a = search_hard_pairs(C[:3], C, 5, exclude=lists)
    b = search_hard_pairs(C[:3], C, 5, exclude=csr)
    np.testing.assert_array_equal(a.indices, b.indices)


def test_memmap_and_mixed_dtypes(as_memmap, rng):
    C = rng.standard_normal((5000, 24)).astype(np.float32)
    Q = rng.standard_normal((40, 24)).astype(np.float32)
    mm = as_memmap(C)
    a = search_hard_pairs(Q, mm, 10, block_size=300)
    b = search_hard_pairs(Q, C, 10, block_size=300)  # same blocks: bit-identical
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.scores, b.scores)
    c = search_hard_pairs(Q.astype(np.float64), mm, 10)  # computed in float64
    assert c.scores.dtype == np.float64
    ref, S = reference(Q, C, 0, 10, "cosine")
    assert_quasi_equal(c, ref, S, rtol=1e-9)
    F = np.asfortranarray(C[:500].astype(np.float16))
    d = search_hard_pairs(Q, F, 3)
    ref, S = reference(Q, F, 0, 3, "cosine")
    assert_quasi_equal(d, ref, S)


def test_zero_vectors_have_cosine_zero():
    C = np.array([[0.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])
    r = search_hard_pairs(np.array([[-1.0, 0.0]]), C, 3)
    np.testing.assert_array_equal(r.indices, [[2, 0, 1]])
    np.testing.assert_allclose(r.scores, [[1.0, 0.0, -1.0]])


def test_inputs_are_not_modified(rng):
    C = rng.standard_normal((100, 3))
    Q = rng.standard_normal((5, 3))
    C0, Q0 = C.copy(), Q.copy()
    search_hard_pairs(Q, C, 4, metric="cosine")
    np.testing.assert_array_equal(C, C0)
    np.testing.assert_array_equal(Q, Q0)


def test_progress_and_n_jobs(capsys, rng):
    C = rng.standard_normal((3000, 8))
    a = search_hard_pairs(C[:20], C, 5, progress=True, n_jobs=1)
    b = search_hard_pairs(C[:20], C, 5, n_jobs=2)
    np.testing.assert_array_equal(a.indices, b.indices)
    assert "search_hard_pairs" in capsys.readouterr().err


@pytest.mark.parametrize("Q, C, kwargs, exc, match", [
    (np.ones((2, 3)), np.ones((5, 4)), dict(k=1), ValueError, "dimension 3 but candidates"),
    (np.ones((2, 3)), np.ones((5, 3)), dict(k=6), ValueError, "k=6 is larger"),
    (np.ones((2, 3)), np.ones((5, 3)), dict(k=0), ValueError, "k must be >= 1"),
    (np.ones(3), np.ones((5, 3)), dict(k=1), ValueError, "queries must be at least 2-D"),
    (np.ones((2, 3)), np.ones((5, 3)), dict(k=1, metric="dot"), ValueError, "metric"),
    (np.ones((2, 3)), np.ones((5, 3)), dict(k=1, exclude=[[1]]), ValueError,
     "one entry per query"),
    (np.ones((2, 3)), np.ones((5, 3)), dict(k=1, exclude=[[1], [9]]), ValueError,
     "must lie in \\[0, 5\\)"),
    (np.ones((2, 3)), np.ones((5, 3)), dict(k=1, query_labels=[0, 1]), ValueError,
     "both query_labels and candidate_labels"),
    (np.ones((2, 3)), np.ones((5, 3)), dict(k=1, max_score=np.ones(3)), ValueError,
     "max_score must be"),
    (np.ones((2, 3)), np.ones((5, 3)), dict(k=1, block_size=0), ValueError, "block_size"),
    (np.ones((2, 3)), np.ones((5, 3)), dict(k=1, n_jobs=0), ValueError, "n_jobs"),
    (np.ones((6, 3)), np.ones((5, 3)), dict(k=1, exclude_self=True), ValueError,
     "exclude_self"),
    (np.full((2, 3), np.nan), np.ones((5, 3)), dict(k=1), ValueError, "queries contain NaN"),
    (np.ones((2, 3)), np.array([[1, 1, np.inf]] * 5), dict(k=1), ValueError,
     "candidates contain NaN"),
    (np.ones((2, 3), dtype=complex), np.ones((5, 3)), dict(k=1), TypeError, "real"),
])
def test_bad_input_names_the_argument(Q, C, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        search_hard_pairs(Q, C, **kwargs)


def test_top_level_names():
    assert hnm.search_hard_pairs is search_hard_pairs


@given(n_q=st.integers(1, 40), n_c=st.integers(2, 300), dim=st.integers(1, 20),
       k=st.integers(1, 6), grid=st.sampled_from([None, 1.0, 0.25]),
       exclude_self=st.booleans(), seed=st.integers(0, 2**16))
def test_nearest_l2_float64_is_exact(n_q, n_c, dim, k, grid, exclude_self, seed):
    # float32 search + float64 refinement == float64 brute force, ties by the smaller
    # index; integer grids tie often, so rows go through the re-search as well
    from hnm._exact_l2 import nearest_l2_float64
    rng = np.random.default_rng(seed)
    C = rng.standard_normal((n_c, dim)) * 10
    if grid is not None:
        C = (C / 10).round() * grid
        # a near-tie float32 cannot resolve but float64 computes exactly (every value
        # and distance is a short dyadic fraction), so the reference order is exact
        C[rng.integers(n_c), rng.integers(dim)] += 2.0**-14
    Q = C[:min(n_q, n_c)] if exclude_self else rng.standard_normal((n_q, dim)) * 10
    k = min(k, n_c - int(exclude_self))
    dist, idx = nearest_l2_float64(Q, C, k, exclude_self=exclude_self)
    D = ((Q[:, None, :] - C[None, :, :]) ** 2).sum(axis=2)
    if exclude_self:
        D[np.arange(Q.shape[0]), np.arange(Q.shape[0])] = np.inf
    ref = np.lexsort((np.broadcast_to(np.arange(n_c), D.shape), D), axis=1)[:, :k]
    np.testing.assert_array_equal(idx, ref)
    np.testing.assert_allclose(dist, np.sqrt(np.take_along_axis(D, ref, axis=1)),
                               rtol=1e-12, atol=1e-12)
