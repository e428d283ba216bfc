import numpy as np
import pytest
from hypothesis import assume, given, strategies as st

import hnm
from hnm.retrieval import mine_hard_negatives

from refs_pairs import score_matrix, unit_rows
from refs_retrieval import guard_cap, negatives_per_query, reference_negatives


def quasi_equal_rows(got, expected, S, rtol=1e-5):
    """Same ids except swaps between candidates whose scores tie within rounding."""
    for i, (g, e) in enumerate(zip(got, expected)):
        assert len(g) == len(e)
        if g != e:
            np.testing.assert_allclose(np.sort(S[i, g]), np.sort(S[i, e]), rtol=rtol, atol=1e-6)


@given(
    n_c=st.integers(5, 60), dim=st.integers(1, 6), n_q=st.integers(1, 8),
    metric=st.sampled_from(["cosine", "ip", "l2"]), data=st.data(),
)
def test_matches_brute_force(n_c, dim, n_q, metric, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    C = rng.standard_normal((n_c, dim))
    Q = rng.standard_normal((n_q, dim))
    pos = rng.integers(0, n_c, size=n_q)
    num = data.draw(st.integers(1, 5))
    start = data.draw(st.integers(0, 5))
    stop = data.draw(st.none() | st.integers(start + num, start + num + 6))
    kwargs = dict(
        k=num, band=(start, stop), metric=metric, duplicate_threshold=None,
        absolute_margin=data.draw(st.none() | st.floats(0, 1)),
        relative_margin=data.draw(st.none() | st.floats(0, 0.5)),
        max_score=data.draw(st.none() | st.floats(-1, 1)),
        min_score=data.draw(st.none() | st.floats(-2, 0)),
        at_most=True,  # a band beyond the corpus takes what there is
    )
    S = score_matrix(Q, C, metric)
    # a score within rounding of a guard's threshold is on either side of it, in
    # float32 or float64 (dim=1 cosines are all exactly +-1, ties with the positive)
    caps = guard_cap(S[np.arange(n_q), pos], kwargs["absolute_margin"],
                     kwargs["relative_margin"], kwargs["max_score"])
    gap = np.abs(S - caps[:, None])
    gap[np.arange(n_q), pos] = np.inf  # the positive itself is never a negative
    assume(np.all(gap > 1e-5))
    if kwargs["min_score"] is not None:
        assume(np.all(np.abs(S - kwargs["min_score"]) > 1e-5))
    mined = mine_hard_negatives(Q, pos, C, **kwargs)
    expected = reference_negatives(Q, pos, C, **kwargs)
    got = negatives_per_query(mined, n_q)
    quasi_equal_rows(got, expected, S)
    k = min(num, max((n_c if stop is None else stop) - start, 0))
    assert mined.summary["n_short_queries"] == sum(len(e) < k for e in expected)
    np.testing.assert_array_equal(mined.positive, pos[mined.query])
    assert np.all(mined.is_hard)


def test_relative_margin_is_a_guard_for_negative_positive_scores():
    # one query whose positive scores -0.5: 5% margin keeps candidates <= -0.525
    C = np.array([[1.0, 0.0], [-0.5, 0.8660254], [-0.52, 0.8542], [-0.6, 0.8], [-1.0, 0.0]])
    Q = np.array([[1.0, 0.0]])
    mined = mine_hard_negatives(Q, np.array([1]), C, k=2, relative_margin=0.05,
                                metric="ip", duplicate_threshold=None)  # 3 is a near-copy of 1
    scores = score_matrix(Q, C, "ip")[0]
    assert set(mined.negative) == {3, 4}
    assert np.all(scores[mined.negative] <= -0.5 - 0.05 * 0.5)


def test_multiple_positives_use_the_smallest_and_are_all_excluded(rng):
    C = rng.standard_normal((200, 8))
    Q = C[:3] + 0.01
    pos = [np.array([0, 10, 20]), np.array([1]), (2, 5)]
    mined = mine_hard_negatives(Q, pos, C, k=4, absolute_margin=0.0)
    S = score_matrix(Q, C, "cosine")
    for q in range(3):
        negs = mined.negative[mined.query == q]
        assert not set(negs) & set(np.atleast_1d(pos[q]))
        assert np.all(S[q, negs] <= S[q, np.atleast_1d(pos[q])].min() + 1e-9)
    # triplets: every positive of query 0 is paired with each of its negatives
    assert np.sum(mined.query == 0) == 3 * 4
    csr = (np.array([0, 3, 4, 6]), np.array([0, 10, 20, 1, 2, 5]))
    again = mine_hard_negatives(Q, csr, C, k=4, absolute_margin=0.0)
    np.testing.assert_array_equal(again.negative, mined.negative)


def test_positive_embeddings_and_exclude(rng):
    C = rng.standard_normal((100, 4))
    Q = rng.standard_normal((5, 4))
    P = Q + 0.05 * rng.standard_normal((5, 4))
    top = mine_hard_negatives(Q, P, C, k=3)
    np.testing.assert_array_equal(top.positive, top.query)
    excl = [top.negative[top.query == q][:1] for q in range(5)]
    mined = mine_hard_negatives(Q, P, C, k=3, exclude=excl)
    for q in range(5):
        assert excl[q][0] not in mined.negative[mined.query == q]


def test_random_sampling_and_easy_blend(rng):
    C = rng.standard_normal((500, 6))
    Q = rng.standard_normal((20, 6))
    pos = rng.integers(0, 500, size=20)
    band = (10, 30)
    mined = mine_hard_negatives(Q, pos, C, k=5, band=band, sampling="random",
                                easy_ratio=2.0, random_state=0, output="ntuple")
    assert mined.negative.shape == (20, 15)
    assert mined.is_hard[:, :5].all() and not mined.is_hard[:, 5:].any()
    assert np.all((mined.rank[:, :5] >= 10) & (mined.rank[:, :5] < 30))
    assert np.all(np.diff(mined.rank[:, :5], axis=1) > 0)
    for row, q in enumerate(mined.query):
        negs = mined.negative[row]
        assert np.unique(negs).size == 15 and pos[q] not in negs
    again = mine_hard_negatives(Q, pos, C, k=5, band=band, sampling="random",
                                easy_ratio=2.0, random_state=0, output="ntuple")
    np.testing.assert_array_equal(again.negative, mined.negative)
    assert mined.summary["n_easy"] == 200 and mined.summary["n_hard"] == 100


def test_short_results_are_counted_not_padded(rng):
    C = rng.standard_normal((6, 3))
    Q = C[:2].copy()
    mined = mine_hard_negatives(Q, np.array([0, 1]), C, k=3, band=(3, 10),
                                duplicate_threshold=None)  # (guard off: 6 candidates only)
    assert mined.summary["n_short_queries"] == 2
    assert np.all(mined.negative >= 0) and len(mined) == 4
    nt = mine_hard_negatives(Q, np.array([0, 1]), C, k=3, band=(3, 10),
                             output="ntuple", duplicate_threshold=None)
    assert len(nt) == 0 and nt.summary["n_skipped"] == 2


def test_memmap_corpus(as_memmap, rng):
    C = rng.standard_normal((3000, 16)).astype(np.float32)
    Q = C[:50] + 0.1
    mm = as_memmap(C)
    a = mine_hard_negatives(Q, np.arange(50), mm, k=5, relative_margin=0.05,
                            block_size=256)
    b = mine_hard_negatives(Q, np.arange(50), C, k=5, relative_margin=0.05)
    np.testing.assert_array_equal(a.negative, b.negative)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(k=0), ValueError, "k must be >= 1"),
    (dict(k=5, band=(0, 3)), ValueError, "larger than the number of ranks in band"),
    (dict(k=3, at_most="yes"), TypeError, "at_most must be a bool"),
    (dict(sampling="random"), ValueError, "pass a finite stop"),
    (dict(sampling="simans", band=(3, None)), ValueError, "pass a finite stop"),
    (dict(max_score=np.nan), ValueError, "max_score must be a finite"),
    (dict(min_score=np.inf), ValueError, "min_score must be a finite"),
    (dict(band=(4, 2)), ValueError, "start < stop"),
    (dict(sampling="hardest"), ValueError, "sampling must be one of"),
    (dict(output="pairs"), ValueError, "output must be one of"),
    (dict(metric="dot"), ValueError, "metric must be one of"),
    (dict(relative_margin=1.5), ValueError, "relative_margin must be in"),
    (dict(absolute_margin=-1), ValueError, "absolute_margin"),
    (dict(easy_ratio=-1), ValueError, "easy_ratio"),
    (dict(max_score="high"), TypeError, "max_score must be a real number"),
])
def test_bad_arguments(kwargs, exc, match, rng):
    C = rng.standard_normal((20, 3))
    with pytest.raises(exc, match=match):
        mine_hard_negatives(C[:2], np.array([0, 1]), C, **kwargs)


@pytest.mark.parametrize("positives, exc, match", [
    (np.array([0, 25]), ValueError, "ids must lie in \\[0, 20\\)"),
    (np.array([0]), ValueError, "one id per query"),
    ([[0], []], ValueError, "at least one positive"),
    ([[0.5], [1.0]], TypeError, "integer candidate ids"),
    (np.zeros((2, 4)), ValueError, "positive embeddings must have the shape"),
])
def test_bad_positives(positives, exc, match, rng):
    C = rng.standard_normal((20, 3))
    with pytest.raises(exc, match=match):
        mine_hard_negatives(C[:2], positives, C)


def test_dimension_mismatch(rng):
    with pytest.raises(ValueError, match="dimension 3 but candidates have 4"):
        mine_hard_negatives(rng.standard_normal((2, 3)), np.array([0, 1]),
                            rng.standard_normal((10, 4)))


def test_top_level_name():
    assert hnm.mine_hard_negatives is mine_hard_negatives


# ----------------------------------------------------- near-duplicate guard
OFF = dict(absolute_margin=None, relative_margin=None, duplicate_threshold=None,
           lower_margin=None, sampling="top", band=(0, None))


def corpus_with_duplicates(rng, n=300, dim=8, n_dup=60, copies=1, noise=0.02):
    C = rng.standard_normal((n, dim))
    src = np.repeat(np.arange(n_dup), copies)
    D = C[src] + noise * rng.standard_normal((src.size, dim))
    Q = C[:n_dup] + 0.4 * rng.standard_normal((n_dup, dim))
    return Q, np.vstack([C, D]), src, n + np.arange(src.size)


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_duplicate_guard_matches_brute_force(rng, metric):
    Q, C, src, dup_ids = corpus_with_duplicates(rng)
    pos = np.arange(Q.shape[0])
    kw = dict(k=4, band=(2, 10))
    mined = mine_hard_negatives(Q, pos, C, **{**OFF, **kw, "duplicate_threshold": 0.9},
                                metric=metric)
    expected = reference_negatives(Q, pos, C, duplicate_threshold=0.9, metric=metric, **kw)
    assert negatives_per_query(mined, Q.shape[0]) == expected
    own_duplicate = dup_ids[mined.query]  # the near-copy of the query's own positive
    assert not np.any(mined.negative == own_duplicate)
    # without the guard the duplicates are among the closest
    unguarded = mine_hard_negatives(Q, pos, C, **{**OFF, "k": 4}, metric=metric)
    assert np.sum(unguarded.negative == dup_ids[unguarded.query]) > 0.5 * Q.shape[0]


def test_duplicate_guard_searches_deeper_when_many_duplicates(rng):
    # 40 near-copies of every positive: more than the first search holds
    Q, C, src, dup_ids = corpus_with_duplicates(rng, n=400, dim=6, n_dup=5, copies=40)
    pos = np.arange(5)
    mined = mine_hard_negatives(Q, pos, C, **{**OFF, "k": 5,
                                              "duplicate_threshold": 0.95}, output="ntuple")
    assert mined.summary["n_short_queries"] == 0 and len(mined) == 5
    for q in range(5):
        assert not np.isin(mined.negative[q], dup_ids[src == q]).any()
    # counted: the near-duplicates ranked before each query's last negative
    S = score_matrix(Q, C, "cosine")
    near = unit_rows(C) @ unit_rows(C[:5]).T > 0.95
    count = 0
    for q in range(5):
        order = [j for j in np.argsort(-S[q], kind="stable") if j != q]
        last = order.index(mined.negative[q, -1])
        count += int(near[order[:last], q].sum())
    assert mined.summary["n_near_duplicates"] == count > 5 * 5
    expected = reference_negatives(Q, pos, C, k=5, duplicate_threshold=0.95)
    assert mined.negative.tolist() == expected


def test_duplicate_guard_several_positives_and_embeddings(rng):
    Q, C, src, dup_ids = corpus_with_duplicates(rng, n=200, n_dup=30)
    pos = [np.array([i, (i + 100) % 200]) for i in range(30)]
    mined = mine_hard_negatives(Q, pos, C, **{**OFF, "k": 3,
                                              "duplicate_threshold": 0.8,
                                              "relative_margin": 0.05})
    expected = reference_negatives(Q, pos, C, k=3, duplicate_threshold=0.8,
                               relative_margin=0.05)
    assert negatives_per_query(mined, 30) == expected
    P = C[:30] + 0.01
    emb = mine_hard_negatives(Q, P, C, **{**OFF, "k": 3,
                                          "duplicate_threshold": 0.9})
    assert negatives_per_query(emb, 30) == reference_negatives(Q, P, C, k=3,
                                                               duplicate_threshold=0.9)


def test_duplicate_guard_memmap_and_blocks(rng, as_memmap):
    Q, C, _, _ = corpus_with_duplicates(rng, n=2000, dim=16, n_dup=80)
    C = C.astype(np.float32)
    kw = {**OFF, "k": 5, "band": (0, 30), "sampling": "random",
          "duplicate_threshold": 0.9, "random_state": 4}
    a = mine_hard_negatives(Q, np.arange(80), as_memmap(C), block_size=128, **kw)
    b = mine_hard_negatives(Q, np.arange(80), C, **kw)
    for name in ("query", "negative", "score", "rank"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


# ----------------------------------------------------- lower bound, SimANS
def test_lower_margin_keeps_only_negatives_close_to_the_positive(rng):
    C = rng.standard_normal((400, 6))
    Q = C[:20] + 0.3 * rng.standard_normal((20, 6))
    pos = np.arange(20)
    S = score_matrix(Q, C, "cosine")
    p = S[pos, pos]
    kw = {**OFF, "k": 3, "band": (0, 50), "relative_margin": 0.05}
    mined = mine_hard_negatives(Q, pos, C, **{**kw, "lower_margin": 0.3})
    assert np.all(mined.score >= p[mined.query] - 0.3 - 1e-12)
    assert negatives_per_query(mined, 20) == reference_negatives(
        Q, pos, C, k=3, band=(0, 50), relative_margin=0.05, lower_margin=0.3)


def simans_probabilities(s, p, a, b):
    w = np.exp(-a * (s - p - b) ** 2)
    return w / w.sum()


def test_simans_draws_follow_the_simans_distribution():
    # one query repeated: every copy draws with its own stream; 1 negative each
    C = np.array([[np.cos(t), np.sin(t)] for t in np.linspace(0.2, 1.4, 8)])
    pos_vec = np.array([[1.0, 0.0]])
    n = 4000
    Q = np.repeat(np.array([[1.0, 0.0]]), n, axis=0)
    a, b = 20.0, -0.3
    kw = {**OFF, "band": (0, 8), "sampling": "simans", "simans": (a, b), "random_state": 0}
    mined = mine_hard_negatives(Q, np.repeat(pos_vec, n, axis=0), C, k=1, **kw)
    s = C @ pos_vec[0]
    expected = simans_probabilities(s, 1.0, a, b)
    freq = np.bincount(mined.negative, minlength=8) / n
    assert np.all(np.abs(freq - expected) <= 4 * np.sqrt(expected * (1 - expected) / n) + 1e-3)
    # without replacement, closest first
    three = mine_hard_negatives(Q[:50], np.repeat(pos_vec, 50, axis=0), C, k=3,
                                output="ntuple", **kw)
    assert all(np.unique(r).size == 3 for r in three.negative)
    assert np.all(np.diff(three.rank, axis=1) > 0)


def test_simans_is_positive_aware(rng):
    # a sharp peak at the positive's score minus b picks the candidate nearest it
    C = rng.standard_normal((300, 5))
    Q = C[:10] + 0.5 * rng.standard_normal((10, 5))
    pos = np.arange(10)
    S = score_matrix(Q, C, "cosine")
    mined = mine_hard_negatives(Q, pos, C, k=1, **{
        **OFF, "band": (0, 100), "sampling": "simans", "simans": (1e12, -0.2),
        "random_state": 1})
    for i in range(10):
        cand = np.argsort(-np.where(np.arange(300) == i, -np.inf, S[i]), kind="stable")[:100]
        best = cand[np.argmin(np.abs(S[i, cand] - (S[i, i] - 0.2)))]
        assert mined.negative[i] == best


# ----------------------------------------------------- block independence
@pytest.mark.parametrize("kw", [
    dict(sampling="random", band=(3, 40), easy_ratio=1.0),
    dict(sampling="simans", band=(0, 50), simans=(30.0, -0.1), relative_margin=0.05),
    dict(sampling="random", band=(0, 20), duplicate_threshold=0.9, easy_ratio=0.5,
         lower_margin=0.8, output="ntuple"),
    dict(),  # the defaults
])
def test_blocks_of_queries_reproduce_one_run_byte_for_byte(rng, kw):
    Q, C, _, _ = corpus_with_duplicates(rng, n=1500, dim=12, n_dup=40)
    Q = Q.astype(np.float32)
    C = C.astype(np.float32)
    pos = [np.array([i]) if i % 3 else np.array([i, i + 200]) for i in range(40)]
    whole = mine_hard_negatives(Q, pos, C, k=4, random_state=7, **kw)
    for size in (1, 16):
        parts = [mine_hard_negatives(Q[s:s + size], pos[s:s + size], C, k=4,
                                     random_state=7, query_offset=s, **kw)
                 for s in range(0, 40, size)]
        for name in ("query", "positive", "negative", "score", "positive_score",
                     "is_hard", "rank"):
            got = np.concatenate([getattr(p, name) for p in parts])
            assert got.tobytes() == getattr(whole, name).tobytes(), (size, name)
    again = mine_hard_negatives(Q, pos, C, k=4, random_state=7, block_size=100,
                                **kw)
    assert again.negative.tobytes() == whole.negative.tobytes()


def test_random_state_forms(rng):
    C = rng.standard_normal((200, 4))
    kw = dict(k=2, band=(0, 30), sampling="random")
    a = mine_hard_negatives(C[:5], np.arange(5), C, random_state=3, **kw)
    b = mine_hard_negatives(C[:5], np.arange(5), C, random_state=3, **kw)
    np.testing.assert_array_equal(a.negative, b.negative)
    for state in (np.random.RandomState(0), np.random.default_rng(0), None):
        assert len(mine_hard_negatives(C[:5], np.arange(5), C, random_state=state, **kw)) == 10


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(duplicate_threshold=1.5), ValueError, "duplicate_threshold must be in"),
    (dict(duplicate_threshold="0.9"), TypeError, "duplicate_threshold"),
    (dict(lower_margin=-0.1), ValueError, "lower_margin"),
    (dict(lower_margin=np.inf), ValueError, "lower_margin"),
    (dict(sampling="simans", simans=(0.0, 0.0)), ValueError, "simans a"),
    (dict(sampling="simans", simans=(1.0, np.nan)), ValueError, "simans b"),
    (dict(sampling="simans", simans=3.0), TypeError, "simans must be an"),
    (dict(query_offset=-1), ValueError, "query_offset"),
    (dict(query_offset=1.5), TypeError, "query_offset"),
    (dict(random_state=-3), ValueError, "random_state"),
    (dict(random_state="seed"), TypeError, "random_state"),
])
def test_bad_new_arguments(kwargs, exc, match, rng):
    C = rng.standard_normal((20, 3))
    with pytest.raises(exc, match=match):
        mine_hard_negatives(C[:2], np.array([0, 1]), C, **kwargs)


def test_inputs_are_not_modified(rng):
    C = rng.standard_normal((100, 4))
    Q = C[:5] + 0.1
    P = [np.array([0, 1]), np.array([1]), np.array([2]), np.array([3]), np.array([4])]
    copies = [C.copy(), Q.copy(), [p.copy() for p in P]]
    mine_hard_negatives(Q, P, C, k=2, sampling="simans", band=(0, 20),
                        duplicate_threshold=0.9, easy_ratio=1.0, random_state=0)
    np.testing.assert_array_equal(C, copies[0])
    np.testing.assert_array_equal(Q, copies[1])
    for p, c in zip(P, copies[2]):
        np.testing.assert_array_equal(p, c)


def test_defaults_are_the_closest_minus_near_duplicates_of_the_positive(rng):
    # the defaults changed (issue 16): duplicate_threshold=0.95, no margin, top 3
    Q, C, src, dup_ids = corpus_with_duplicates(rng, n=500, dim=8, n_dup=40, noise=0.05)
    pos = np.arange(40)
    mined = mine_hard_negatives(Q, pos, C)
    assert negatives_per_query(mined, 40) == reference_negatives(Q, pos, C, k=3,
                                                                 duplicate_threshold=0.95)
    assert not np.any(mined.negative == dup_ids[mined.query])
    assert mined.summary["n_near_duplicates"] > 0


def test_band_stop_none_runs_to_the_end_and_at_most_takes_the_whole_band(rng):
    C = rng.standard_normal((60, 4))
    Q = C[:3] + 0.1
    kw = dict(duplicate_threshold=None, band=(50, None))
    tail = mine_hard_negatives(Q, np.arange(3), C, k=5, **kw)
    assert negatives_per_query(tail, 3) == reference_negatives(Q, np.arange(3), C, k=5, **kw)
    with pytest.raises(ValueError, match="pass at_most=True"):
        mine_hard_negatives(Q, np.arange(3), C, k=11, **kw)
    # 59 candidates survive (the positive is never a negative): ranks 50..58
    whole = mine_hard_negatives(Q, np.arange(3), C, k=11, at_most=True, **kw)
    assert whole.summary["n_short_queries"] == 3
    assert sorted(set(whole.rank.tolist())) == list(range(50, 59))
    for n_jobs in (1, 2):
        again = mine_hard_negatives(Q, np.arange(3), C, k=11, at_most=True, n_jobs=n_jobs,
                                    **kw)
        assert again.negative.tobytes() == whole.negative.tobytes()


def test_the_fronts_pass_every_option_of_the_pipeline():
    import inspect

    from hnm._negatives import MINE_OPTIONS, mine
    assert tuple(inspect.signature(mine).parameters)[4:] == MINE_OPTIONS
    assert set(MINE_OPTIONS) <= set(inspect.signature(mine_hard_negatives).parameters)
