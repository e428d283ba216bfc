"""The numpy reference of the exact searches (search_hard_pairs, its farthest
mirror, the dask twin and the bfloat16 screen), shared by the unit, screen,
farthest and hostile suites: float64 brute force, every filter as a mask, ties
by the smaller index."""
import numpy as np
from hypothesis import strategies as st


def unit_rows(a):
    """Rows scaled to unit norm without overflow or underflow (zero rows stay 0)."""
    a = np.array(a, dtype=np.float64)
    m = np.abs(a).max(axis=1, keepdims=True) if a.shape[1] else np.ones((a.shape[0], 1))
    m[m == 0] = 1
    b = a / m
    nrm = np.sqrt((b * b).sum(axis=1, keepdims=True))
    nrm[nrm == 0] = 1
    return b / nrm


def score_matrix(Q, C, metric):
    """float64 scores, larger is closer: inner products, cosines (a zero vector has
    cosine 0 with everything), or minus the squared distances ("l2")."""
    q, c = np.array(Q, dtype=np.float64), np.array(C, dtype=np.float64)
    if metric == "ip":
        return q @ c.T
    if metric == "cosine":
        return unit_rows(q) @ unit_rows(c).T
    diff = q[:, None, :] - c[None, :, :]
    return -(diff * diff).sum(axis=-1)


def id_lists(ids, n_q):
    """Per query a list of ids, from any form the API takes: an (indptr, indices)
    pair, one id per query, or one sequence per query."""
    if isinstance(ids, tuple):
        indptr, indices = (np.asarray(p) for p in ids)
        return [indices[indptr[i]:indptr[i + 1]].tolist() for i in range(n_q)]
    if isinstance(ids, np.ndarray) and ids.ndim == 1:
        return [[int(v)] for v in ids]
    return [np.atleast_1d(np.asarray(p, dtype=np.int64)).tolist() for p in ids]


def eligible(n_q, n_c, exclude=None, exclude_self=False, q_labels=None, c_labels=None,
             same_label=False):
    """(n_q, n_c) mask of the candidates a search may return for each query:
    ``exclude`` is one id list per query; labels keep the other labels' candidates
    (``same_label``: the query's own)."""
    ok = np.ones((n_q, n_c), dtype=bool)
    if exclude is not None:
        for i, ids in enumerate(exclude):
            ok[i, np.asarray(ids, dtype=np.intp)] = False
    if exclude_self:
        ok[np.arange(n_q), np.arange(n_q)] = False
    if q_labels is not None:
        same = np.asarray(q_labels)[:, None] == np.asarray(c_labels)[None, :]
        ok &= same if same_label else ~same
    return ok


def reference(Q, C, start, stop, metric, exclude=None, exclude_self=False, cap=None,
              q_labels=None, c_labels=None, same_label=False, farthest=False):
    """Ranks ``start .. stop-1`` of every query's eligible candidates, closest first
    (``farthest``: least close first), ties by the smaller index, padded with -1;
    ``cap`` (per query, on the larger-is-closer scores) drops those above it.
    Returns (ids of shape (n_q, stop - start), score matrix)."""
    S = score_matrix(Q, C, metric)
    ok = eligible(*S.shape, exclude, exclude_self, q_labels, c_labels, same_label)
    if cap is not None:
        ok &= S <= np.asarray(cap, dtype=np.float64)[:, None]
    ids = np.full((S.shape[0], stop), -1)
    for i in range(S.shape[0]):
        cand = np.flatnonzero(ok[i])
        cand = cand[np.lexsort((cand, S[i, cand] if farthest else -S[i, cand]))][:stop]
        ids[i, :cand.size] = cand
    return ids[:, start:], S


def assert_quasi_equal(got, ref_ids, S, rtol=1e-4, atol=1e-5):
    """Same ids, except swaps between candidates whose scores tie within rounding."""
    np.testing.assert_array_equal(got.indices < 0, ref_ids < 0)
    for i in range(ref_ids.shape[0]):
        g, r = got.indices[i], ref_ids[i]
        if not np.array_equal(g, r):
            g, r = g[g >= 0], r[r >= 0]
            np.testing.assert_allclose(S[i, g], S[i, r], rtol=rtol, atol=atol)


def make_data(seed, n_q, n_c, dim, dtype, dup):
    rng = np.random.default_rng(seed)
    C = rng.standard_normal((n_c, dim)).astype(dtype)
    if dup and n_c > 2:
        C[1::3] = C[0]  # exact ties
    Q = rng.standard_normal((n_q, dim)).astype(dtype)
    return Q, C


def draw_filtered_search(data, n_c, metric, dim, dtype, max_block):
    """A search with every filter drawn by hypothesis: queries near candidates,
    exclusions, exclude_self, labels and (half the time) a cap halfway between two
    scores, so that rounding cannot move one across it. Returns (Q, C, keyword
    arguments of search_hard_pairs, keyword arguments of ``reference``)."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    C = rng.standard_normal((n_c, dim)).astype(dtype)
    n_q = data.draw(st.integers(1, n_c))
    Q = (C[:n_q] + 0.01 * rng.standard_normal((n_q, dim))).astype(dtype)
    exclude = [rng.choice(n_c, size=rng.integers(0, n_c), replace=False) for _ in range(n_q)]
    exclude_self = data.draw(st.booleans())
    cap = None
    if data.draw(st.booleans()):
        srt = np.sort(score_matrix(Q, C, metric), axis=1)
        j = int(0.7 * (n_c - 1))
        cap = (srt[:, j] + srt[:, min(j + 1, n_c - 1)]) / 2
    labels = data.draw(st.booleans())
    q_lab = rng.integers(0, 3, n_q) if labels else None
    c_lab = rng.integers(0, 3, n_c) if labels else None
    kw = dict(k=data.draw(st.integers(1, n_c)), metric=metric, exclude=exclude,
              exclude_self=exclude_self, query_labels=q_lab, candidate_labels=c_lab,
              max_score=None if cap is None else (-cap if metric == "l2" else cap),
              block_size=data.draw(st.integers(1, max_block)))
    ref_kw = dict(exclude=exclude, exclude_self=exclude_self, cap=cap, q_labels=q_lab,
                  c_labels=c_lab)
    return Q, C, kw, ref_kw
