"""The numpy reference of hnm.mine_hard_negatives (sampling="top", no easy
negatives), shared by the unit, hostile and invariance suites: the full score
matrix, every guard as a mask, a stable ranking, the band, the first k."""
import numpy as np

from refs_pairs import id_lists, score_matrix, unit_rows


def guard_cap(p, absolute_margin=None, relative_margin=None, max_score=None):
    """Upper guard on negative scores for positive score(s) p (inf: none)."""
    cap = np.full(np.shape(p), np.inf)
    if absolute_margin is not None:
        cap = np.minimum(cap, p - absolute_margin)
    if relative_margin is not None:
        cap = np.minimum(cap, p - relative_margin * np.abs(p))
    if max_score is not None:
        cap = np.minimum(cap, max_score)
    return cap


def reference_mine(Q, positives, C, *, k=3, at_most=False, band=(0, None), absolute_margin=None,
                   relative_margin=None, max_score=None, min_score=None, lower_margin=None,
                   duplicate_threshold=None, exclude=None, output="triplets",
                   metric="cosine", tol=None):
    """Rows (query, positive, negative, score, positive_score, rank) as a dict of
    arrays. With ``tol``, asserts that no score lies within ``2 tol`` of a guard
    or of another score (data whose order rounding could change)."""
    S = score_matrix(Q, C, metric)
    n_q, n_c = S.shape
    if isinstance(positives, np.ndarray) and positives.ndim == 2 and \
            positives.dtype.kind == "f":
        pos_lists = [[i] for i in range(n_q)]
        pos_key = np.diag(score_matrix(Q, positives, metric)).reshape(n_q, 1).tolist()
        pos_unit = [unit_rows(positives[i:i + 1]) for i in range(n_q)]
        excluded = [set() for _ in range(n_q)]
    else:
        pos_lists = id_lists(positives, n_q)
        pos_key = [[S[i, p] for p in pos_lists[i]] for i in range(n_q)]
        pos_unit = [unit_rows(np.asarray(C)[p]) for p in pos_lists]
        excluded = [set(p) for p in pos_lists]
    if exclude is not None:
        for i, ex in enumerate(id_lists(exclude, n_q)):
            excluded[i] |= set(ex)
    start, stop = band
    width = max((n_c if stop is None else stop) - start, 0)  # ranks in the band
    if k > width:
        if not at_most:
            raise ValueError(f"k={k} is larger than the number of ranks in band {band}")
        k = width
    rows = []
    for i in range(n_q):
        p = min(pos_key[i])
        cap = guard_cap(p, absolute_margin, relative_margin, max_score)
        floor = -np.inf if min_score is None else min_score
        if lower_margin is not None:
            floor = max(floor, p - lower_margin)
        ids = np.array([j for j in range(n_c) if j not in excluded[i]], dtype=np.intp)
        if duplicate_threshold is not None:
            near = (unit_rows(np.asarray(C)[ids]) @ pos_unit[i].T).max(axis=1, initial=-np.inf)
            ids = ids[near <= duplicate_threshold]
        kv = S[i, ids]
        if tol is not None:
            for bound in (cap, floor):
                if np.isfinite(bound):
                    assert not np.any(np.abs(kv - bound) <= 2 * tol), "precondition: boundary tie"
        ids, kv = ids[kv <= cap], kv[kv <= cap]
        if tol is not None:
            assert not np.any(np.diff(np.sort(kv)) <= 2 * tol), "precondition: near-tied scores"
        order = np.lexsort((ids, -kv))[start:stop]
        window = [(ids[o], kv[o], start + r) for r, o in enumerate(order) if kv[o] >= floor]
        negs = window[:k]
        for pi, pos in enumerate(pos_lists[i]):
            rows.append((i, pos, negs, pos_key[i][pi]))
    if output == "ntuple":
        rows = [r for r in rows if len(r[2]) == k]
        return {"query": np.array([r[0] for r in rows], dtype=np.intp),
                "positive": np.array([r[1] for r in rows], dtype=np.intp),
                "negative": np.array([[w[0] for w in r[2]] for r in rows],
                                     dtype=np.intp).reshape(len(rows), k),
                "rank": np.array([[w[2] for w in r[2]] for r in rows],
                                 dtype=np.intp).reshape(len(rows), k),
                "score": np.array([[w[1] for w in r[2]] for r in rows]).reshape(len(rows), k),
                "positive_score": np.array([r[3] for r in rows])}
    flat = [(r[0], r[1], w, r[3]) for r in rows for w in r[2]]
    return {"query": np.array([f[0] for f in flat], dtype=np.intp),
            "positive": np.array([f[1] for f in flat], dtype=np.intp),
            "negative": np.array([f[2][0] for f in flat], dtype=np.intp),
            "rank": np.array([f[2][2] for f in flat], dtype=np.intp),
            "score": np.array([f[2][1] for f in flat]),
            "positive_score": np.array([f[3] for f in flat])}


def negatives_per_query(mined, n_q):
    """Each query's distinct negatives in order, from a MinedNegatives or a
    ``reference_mine`` result."""
    get = mined.get if isinstance(mined, dict) else lambda name: getattr(mined, name)
    negative = np.asarray(get("negative"))
    query = np.repeat(get("query"), negative[0].size if negative.ndim == 2 else 1)
    out = [[] for _ in range(n_q)]
    for q, n in zip(query, negative.ravel()):
        if n >= 0 and n not in out[q]:
            out[q].append(int(n))
    return out


def reference_negatives(Q, positives, C, **kw):
    """``reference_mine``'s negatives, per query."""
    return negatives_per_query(reference_mine(Q, positives, C, **kw), Q.shape[0])
