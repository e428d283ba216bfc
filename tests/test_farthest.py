import numpy as np
import pytest
from hypothesis import given, strategies as st

from hnm._exact_l2 import farthest_l2_float64
from hnm._farthest import search_farthest

import refs_pairs


def reference(Q, C, k, metric, **filters):
    """Per query the k least close eligible candidates, ties by the smaller index."""
    return refs_pairs.reference(Q, C, 0, k, metric, farthest=True, **filters)


def expected_scores(S, ids, metric):
    """Scores as search_farthest reports them, padded with the value ranked last."""
    pad = -np.inf if metric == "l2" else np.inf
    vals = np.take_along_axis(S, np.maximum(ids, 0), axis=1)
    vals = -vals if metric == "l2" else vals
    return np.where(ids >= 0, vals, pad)


@st.composite
def problems(draw):
    n_c = draw(st.integers(1, 40))
    n_q = draw(st.integers(0, 12))
    dim = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    # small integers: every score is exact in float32, so ties are exact ties
    C = rng.integers(-3, 4, size=(n_c, dim))
    Q = rng.integers(-3, 4, size=(n_q, dim))
    if draw(st.booleans()) and n_c > 1:
        C[rng.integers(0, n_c, n_c // 2)] = C[0]  # duplicated rows
    return dict(
        Q=Q, C=C, k=draw(st.integers(1, n_c)),
        metric=draw(st.sampled_from(["ip", "l2", "cosine"])),
        dtype=draw(st.sampled_from([np.float32, np.float64])),
        block_size=draw(st.integers(1, 50)),
        exclude_self=draw(st.booleans()) and n_q <= n_c,
        exclude=[rng.choice(n_c, rng.integers(0, min(n_c, 4) + 1), replace=False)
                 for _ in range(n_q)] if draw(st.booleans()) else None,
        labels=draw(st.sampled_from([None, "same", "different"])),
        label_seed=seed,
    )


@given(problems())
def test_farthest_matches_brute_force_including_ties(p):
    Q, C = p["Q"].astype(p["dtype"]), p["C"].astype(p["dtype"])
    if p["exclude_self"]:
        Q = C[:Q.shape[0]]
    kwargs = dict(exclude=p["exclude"], exclude_self=p["exclude_self"])
    if p["labels"]:
        rng = np.random.default_rng(p["label_seed"] + 1)
        c_labels = rng.integers(0, 3, C.shape[0])
        q_labels = rng.integers(0, 3, Q.shape[0])
        if p["exclude_self"]:
            q_labels = c_labels[:Q.shape[0]]
        kwargs.update(query_labels=q_labels, candidate_labels=c_labels,
                      same_label=p["labels"] == "same")
    ids, S = reference(Q, C, p["k"], p["metric"], q_labels=kwargs.get("query_labels"),
                       c_labels=kwargs.get("candidate_labels"),
                       same_label=kwargs.get("same_label", False), exclude=p["exclude"],
                       exclude_self=p["exclude_self"])
    got = search_farthest(Q, C, p["k"], metric=p["metric"], block_size=p["block_size"],
                          **kwargs)
    assert got.indices.shape == got.scores.shape == (Q.shape[0], p["k"])
    assert got.scores.dtype == p["dtype"]
    want = expected_scores(S, ids, p["metric"])
    if p["metric"] == "cosine":  # 1 / norm rounds: equal cosines may differ in the last bit
        np.testing.assert_array_equal(got.indices < 0, ids < 0)
        np.testing.assert_allclose(got.scores, want, rtol=1e-5, atol=1e-6)
    else:
        np.testing.assert_array_equal(got.indices, ids)
        np.testing.assert_array_equal(got.scores, want)


@pytest.mark.parametrize("metric", ["ip", "l2", "cosine"])
def test_continuous_memmap_candidates_and_thread_block_invariance(metric, as_memmap):
    rng = np.random.default_rng(1)
    C = rng.standard_normal((3000, 17))
    Q = rng.standard_normal((70, 17))
    ids, S = reference(Q, C, 5, metric)
    results = [search_farthest(Q, as_memmap(C), 5, metric=metric, block_size=b, n_jobs=j)
               for b, j in ((7, 1), (2048, 2), (100, 2))]
    for got in results:
        np.testing.assert_array_equal(got.indices, ids)
        np.testing.assert_allclose(got.scores, expected_scores(S, ids, metric), rtol=1e-10,
                                   atol=1e-10)


def test_float32_and_integer_inputs_choose_the_dtype():
    rng = np.random.default_rng(2)
    C = rng.standard_normal((200, 5)).astype(np.float32)
    assert search_farthest(C[:3], C, 2, metric="l2").scores.dtype == np.float32
    got = search_farthest(C[:3], C.astype(np.float64), 2, metric="l2")
    assert got.scores.dtype == np.float64
    ints = rng.integers(-5, 5, size=(50, 3))
    ids, _ = reference(ints, ints, 4, "l2")
    np.testing.assert_array_equal(search_farthest(ints, ints, 4, metric="l2").indices, ids)


def test_same_label_with_many_labels_and_labels_without_candidates():
    rng = np.random.default_rng(3)
    C = rng.integers(-4, 5, size=(500, 4)).astype(np.float64)
    c_labels = rng.integers(0, 40, 500)
    Q = rng.integers(-4, 5, size=(60, 4)).astype(np.float64)
    q_labels = rng.integers(0, 45, 60)  # labels 40..44 have no candidate
    ids, _ = reference(Q, C, 3, "l2", q_labels=q_labels, c_labels=c_labels, same_label=True)
    got = search_farthest(Q, C, 3, metric="l2", query_labels=q_labels,
                          candidate_labels=c_labels, same_label=True, block_size=16)
    np.testing.assert_array_equal(got.indices, ids)
    assert (got.indices[q_labels >= 40] == -1).all()
    assert np.isneginf(got.scores[q_labels >= 40]).all()


def test_string_labels_and_exclusions_as_csr():
    X = np.array([[0.0], [1.0], [5.0], [9.0], [2.0]])
    labels = np.array(["a", "a", "b", "a", "b"])
    exclude = (np.array([0, 1, 1, 1, 1, 1]), np.array([3]))  # query 0 never returns 3
    got = search_farthest(X, X, 2, metric="l2", exclude=exclude, query_labels=labels,
                          candidate_labels=labels, same_label=True)
    np.testing.assert_array_equal(got.indices, [[1, 0], [3, 0], [4, 2], [0, 1], [2, 4]])


def test_inputs_are_not_modified():
    rng = np.random.default_rng(4)
    Q = rng.standard_normal((10, 3))
    C = rng.standard_normal((30, 3))
    q0, c0 = Q.copy(), C.copy()
    for metric in ("ip", "l2", "cosine"):
        search_farthest(Q, C, 3, metric=metric)
    np.testing.assert_array_equal(Q, q0)
    np.testing.assert_array_equal(C, c0)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(k=11), ValueError, "k=11"),
    (dict(k=0), ValueError, "k"),
    (dict(k=2.5), TypeError, "k"),
    (dict(k=2, metric="manhattan"), ValueError, "metric"),
    (dict(k=2, same_label=True), ValueError, "same_label"),
    (dict(k=2, same_label=1), TypeError, "same_label"),
    (dict(k=2, exclude_self="yes"), TypeError, "exclude_self"),
    (dict(k=2, n_jobs=0), ValueError, "n_jobs"),
    (dict(k=2, block_size=0), ValueError, "block_size"),
    (dict(k=2, query_labels=[0, 1]), ValueError, "candidate_labels"),
])
def test_bad_arguments_raise_naming_them(kwargs, error, match):
    X = np.arange(20.0).reshape(10, 2)
    k = kwargs.pop("k")
    with pytest.raises(error, match=match):
        search_farthest(X[:2], X, k, **kwargs)


def test_bad_arrays_raise_naming_them():
    X = np.arange(20.0).reshape(10, 2)
    with pytest.raises(ValueError, match="dimension"):
        search_farthest(X, X[:, :1], 1)
    with pytest.raises(ValueError, match="queries contain NaN"):
        search_farthest(np.array([[np.nan, 0.0]]), X, 1, metric="l2")
    with pytest.raises(ValueError, match="candidates contain NaN"):
        search_farthest(X, np.vstack([X, [[np.inf, 0.0]]]), 1, metric="ip")
    with pytest.raises(TypeError, match="candidates"):
        search_farthest(X, X.astype(complex), 1)
    with pytest.raises(ValueError, match="exclude_self"):
        search_farthest(np.vstack([X, X]), X, 1, exclude_self=True)


def exact_farthest(Q, C, k):
    """float64 distances from the differences summed in dimension order, farthest
    first, ties by smaller index."""
    D = np.zeros((Q.shape[0], C.shape[0]))
    for j in range(Q.shape[1]):
        D += (Q[:, None, j] - C[None, :, j]) ** 2
    ids = np.argsort(-D, axis=1, kind="stable")[:, :k]
    return np.sqrt(np.take_along_axis(D, ids, axis=1)), ids


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("k", [1, 3, 8])
def test_farthest_l2_float64_is_exact_at_ties_and_near_ties(seed, k):
    rng = np.random.default_rng(seed)
    C = rng.integers(0, 3, size=(300, 6)).astype(np.float64)  # many exact ties
    C[150:190] = C[:40]  # duplicated rows
    Q = rng.integers(0, 3, size=(80, 6)).astype(np.float64)
    # near-ties below float32 resolution: dyadic offsets, exact in float64
    C[200:210] = C[:10] + 2.0**-30
    for Q_, C_ in ((Q, C), (rng.standard_normal((50, 9)) * 1e3, rng.standard_normal((400, 9)))):
        dist, ids = farthest_l2_float64(Q_, C_, k)
        ref_dist, ref_ids = exact_farthest(Q_, C_, k)
        np.testing.assert_array_equal(ids, ref_ids)
        np.testing.assert_array_equal(dist, ref_dist)


def test_farthest_l2_float64_with_k_near_the_number_of_candidates():
    rng = np.random.default_rng(5)
    C = rng.integers(0, 2, size=(6, 3)).astype(np.float64)
    Q = rng.integers(0, 2, size=(20, 3)).astype(np.float64)
    for k in (4, 5, 6):
        dist, ids = farthest_l2_float64(Q, C, k, chunk_rows=7)
        ref_dist, ref_ids = exact_farthest(Q, C, k)
        np.testing.assert_array_equal(ids, ref_ids)
        np.testing.assert_array_equal(dist, ref_dist)
