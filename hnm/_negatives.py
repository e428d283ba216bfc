"""The mining pipeline of :func:`hnm.mine_hard_negatives` on checked inputs,
for any search backend: the numpy search of :mod:`hnm.retrieval` or the dask
one of :mod:`hnm.dask` (``mine(Q, positives, C, search, ...)``).
"""
import numbers

import numpy as np

from ._ranking import check_band, check_k
from ._search_inputs import _union_csr, _unit_rows
from ._validation import (
    as_csr,
    check_fraction,
    check_int,
    check_option,
    check_positive_real,
    check_real,
)


def _similarity(queries, vectors, metric):
    """Row-wise similarity of queries[i] and vectors[i] (higher is closer)."""
    q = queries.astype(np.float64)
    v = vectors.astype(np.float64)
    if metric == "ip":
        return np.einsum("ij,ij->i", q, v)
    if metric == "cosine":  # unit rows, as the search scales extreme ones; NaN stays NaN
        return np.einsum("ij,ij->i", _unit_rows(q), _unit_rows(v))
    return -np.einsum("ij,ij->i", q - v, q - v)  # l2: minus the squared distance

# the keyword options of mine(), which hnm.mine_hard_negatives and its dask twin pass on
MINE_OPTIONS = ("k", "at_most", "band", "absolute_margin", "relative_margin",
                "duplicate_threshold", "lower_margin", "max_score", "min_score", "sampling",
                "simans", "easy_ratio", "exclude", "output", "metric", "random_state",
                "query_offset")


def mine(Q, positives, C, search, *, k, at_most, band, absolute_margin, relative_margin,
          duplicate_threshold, lower_margin, max_score, min_score, sampling, simans,
          easy_ratio, exclude, output, metric, random_state, query_offset):
    """mine_hard_negatives for checked ``metric``, queries ``Q`` and candidates
    ``C`` (an ndarray or, from hnm.dask, a dask array: only rows it indexes are
    read) and a ``search(rows, stop, cap, exclusions)`` that returns the
    ``stop`` nearest candidates ``(scores, ids)`` of the queries ``Q[rows]``
    (ids padded with -1), skipping those whose similarity (for "l2" minus the
    squared distance) is above ``cap`` and the ``exclusions`` (a CSR
    ``(indptr, ids)``)."""
    sampling = check_option(sampling, "sampling", ("top", "random", "simans"))
    output = check_option(output, "output", ("triplets", "ntuple"))
    easy_ratio = check_positive_real(easy_ratio, "easy_ratio", allow_zero=True)
    if absolute_margin is not None:
        absolute_margin = check_positive_real(absolute_margin, "absolute_margin",
                                              allow_zero=True)
    if relative_margin is not None:
        relative_margin = check_fraction(relative_margin, "relative_margin", low_open=False)
    if lower_margin is not None:
        lower_margin = check_positive_real(lower_margin, "lower_margin", allow_zero=True)
    if duplicate_threshold is not None:
        duplicate_threshold = check_fraction(duplicate_threshold, "duplicate_threshold",
                                             low=-1.0, low_open=False)
    simans_a, simans_b = _check_simans(simans)
    if max_score is not None:
        max_score = check_real(max_score, "max_score")
    if min_score is not None:
        min_score = check_real(min_score, "min_score")
    query_offset = check_int(query_offset, "query_offset", min_value=0)
    n_q, n_c = Q.shape[0], C.shape[0]
    start, stop = check_band(band)  # stop=None: to the end of the ranked candidates
    key = _random_key(random_state)

    # positives: ids into the corpus, or embeddings of their own
    pos_arr = positives if isinstance(positives, np.ndarray) else None
    if pos_arr is not None and pos_arr.ndim == 2 and pos_arr.dtype.kind == "f":
        if pos_arr.shape != Q.shape:
            raise ValueError(f"positive embeddings must have the shape of queries {Q.shape}, "
                             f"got {pos_arr.shape}.")
        pos_ptr, pos_ids = np.arange(n_q + 1), np.full(n_q, -1, dtype=np.intp)
        pos_scores = _similarity(Q, pos_arr, metric)
        row_positive = np.arange(n_q)
        pos_vectors = pos_arr
    else:
        pos_ptr, pos_ids = as_csr(positives, n_q, n_c, "positives")
        if np.any(np.diff(pos_ptr) == 0):
            raise ValueError("every query needs at least one positive.")
        owner = np.repeat(np.arange(n_q), np.diff(pos_ptr))
        pos_scores = _similarity(Q[owner], np.asarray(C[pos_ids]), metric)
        row_positive = None
        pos_vectors = None  # rows of C, gathered when needed
    if not np.all(np.isfinite(pos_scores)):
        raise ValueError("queries or positives contain NaN or infinity.")
    owner = np.repeat(np.arange(n_q), np.diff(pos_ptr))
    min_pos = np.full(n_q, np.inf)
    np.minimum.at(min_pos, owner, pos_scores)

    # the cap every negative's score must not exceed (false-negative guards)
    cap = np.full(n_q, np.inf)
    if absolute_margin is not None:
        cap = np.minimum(cap, min_pos - absolute_margin)
    if relative_margin is not None:
        cap = np.minimum(cap, min_pos - relative_margin * np.abs(min_pos))
    if max_score is not None:
        cap = np.minimum(cap, float(max_score))
    # ... and the floor it must reach (too easy to teach anything)
    floor = np.full(n_q, -np.inf)
    if min_score is not None:
        floor = np.maximum(floor, float(min_score))
    if lower_margin is not None:
        floor = np.maximum(floor, min_pos - lower_margin)

    # never negatives: the positives given as ids, and `exclude`
    ex_ptr, ex_ids = pos_ptr, pos_ids
    if row_positive is not None:
        ex_ptr, ex_ids = np.zeros(n_q + 1, dtype=np.intp), np.empty(0, dtype=np.intp)
    if exclude is not None:
        x_ptr, x_ids = as_csr(exclude, n_q, n_c, "exclude")
        ex_ptr, ex_ids = _union_csr(ex_ptr, ex_ids, x_ptr, x_ids)

    if stop is None and sampling != "top":
        raise ValueError(
            f"sampling={sampling!r} draws from the whole band, and band=({start}, None) "
            "runs to the end of the ranked corpus, which is not kept in bounded memory: "
            f"pass a finite stop, e.g. band=({start}, {start + 100}).")
    width = max((n_c if stop is None else stop) - start, 0)
    k = check_k(k, width, at_most=at_most, what=f"ranks in band ({start}, {stop})")
    # the ranks searched: "top" takes the window's first k (a floor drops only the
    # tail of a ranked window, so no later rank could stand in), else all of it
    stop = min(n_c, start + k if sampling == "top" else stop)

    positives_of = _Positives(C, pos_ptr, pos_ids, pos_vectors)
    n_dup = np.zeros(n_q, dtype=np.intp)
    if start >= stop:
        hard_ids = np.full((n_q, 0), -1, dtype=np.intp)
        hard_sim = np.empty((n_q, 0))
    elif duplicate_threshold is None:
        hard_ids, hard_sim = _search(search, slice(None), stop, metric, (ex_ptr, ex_ids),
                                     cap)
        hard_ids, hard_sim = hard_ids[:, start:], hard_sim[:, start:]
    else:
        hard_ids, hard_sim, n_dup = _search_without_duplicates(
            search, Q, C, stop, metric, (ex_ptr, ex_ids), cap, positives_of,
            duplicate_threshold)
        hard_ids, hard_sim = hard_ids[:, start:], hard_sim[:, start:]
    exact = duplicate_threshold is not None  # hard_sim already rescored exactly
    if sampling == "simans" and not exact and hard_ids.size:
        hard_sim = _rescore(Q, C, hard_ids, metric)[0]
        exact = True
    hard_ids = np.where(hard_sim < floor[:, None], -1, hard_ids)
    valid = hard_ids >= 0
    width = hard_ids.shape[1]
    ranks = np.broadcast_to(np.arange(start, start + width), hard_ids.shape)
    gq = np.arange(n_q, dtype=np.uint64) + np.uint64(query_offset)  # global query ids

    # choose k per query among the valid entries of its window
    if sampling == "top":
        keys = np.where(valid, ranks, np.iinfo(np.intp).max)
    else:
        u = _uniform(key, gq, _STREAM_WINDOW, width)
        if sampling == "random":
            keys = np.where(valid, u, np.inf)
        else:  # SimANS: Gumbel-top-k draws without replacement, p ~ exp(-a (s - p - b)^2)
            logw = -simans_a * (hard_sim - min_pos[:, None] - simans_b) ** 2
            gumbel = -np.log(-np.log(np.clip(u, 1e-300, 1.0)))
            keys = np.where(valid, -(logw + gumbel), np.inf)
    order = np.argsort(keys, axis=1, kind="stable")[:, :k]
    chosen_valid = np.take_along_axis(valid, order, axis=1)
    if sampling != "top":  # present sampled negatives closest first
        sub = np.take_along_axis(ranks, order, axis=1)
        re = np.argsort(np.where(chosen_valid, sub, np.iinfo(np.intp).max), axis=1,
                        kind="stable")
        order = np.take_along_axis(order, re, axis=1)
        chosen_valid = np.take_along_axis(valid, order, axis=1)
    neg_ids = np.where(chosen_valid, np.take_along_axis(hard_ids, order, axis=1), -1)
    neg_sim = np.take_along_axis(hard_sim, order, axis=1)
    neg_rank = np.where(chosen_valid, np.take_along_axis(ranks, order, axis=1), -1)
    if not exact and neg_ids.size:
        # scores of the chosen, exactly and per query (the search's can differ in the
        # last bits with the number of queries searched together)
        neg_sim = np.where(chosen_valid, _rescore(Q, C, neg_ids, metric)[0], neg_sim)
    n_hard = chosen_valid.sum(axis=1)

    # easy negatives: random corpus ids under the same exclusions and guards
    n_easy = np.rint(easy_ratio * n_hard).astype(np.intp)
    if n_easy.any():
        e_ids, e_sim = _random_negatives(Q, C, n_easy, neg_ids, (ex_ptr, ex_ids), cap,
                                         floor, metric, key, gq, positives_of,
                                         duplicate_threshold)
        neg_ids = np.concatenate([neg_ids, e_ids], axis=1)
        neg_sim = np.concatenate([neg_sim, e_sim], axis=1)
        neg_rank = np.concatenate([neg_rank, np.full(e_ids.shape, -1)], axis=1)
    is_hard = np.zeros(neg_ids.shape, dtype=bool)
    is_hard[:, :k] = neg_ids[:, :k] >= 0

    n_short = int(np.sum(n_hard < k))
    result = _package(output, neg_ids, neg_sim, neg_rank, is_hard, pos_ptr, pos_ids,
                      pos_scores, row_positive, n_q, k, easy_ratio, n_short)
    result.summary["n_near_duplicates"] = int(n_dup.sum())
    if query_offset:
        result.query = result.query + query_offset
        if row_positive is not None:
            result.positive = result.positive + query_offset
    return result


def _search(search, rows, stop, metric, exclusions, cap):
    """Survivors of the guards among the queries ``rows``, closest first: (ids,
    similarities), padded with -1."""
    scores, ids = search(rows, stop, cap, exclusions)  # cap: on similarities, as keys are
    if metric == "l2":  # the kernel reports squared distances; similarity is their negation
        return ids, -scores.astype(np.float64)
    return ids, scores.astype(np.float64)


def _check_simans(simans):
    try:
        a, b = simans
    except (TypeError, ValueError):
        raise TypeError(f"simans must be an (a, b) pair of real numbers, got {simans!r}.") \
            from None
    a = check_positive_real(a, "simans a")
    b = check_real(b, "simans b")
    return a, b


# Counter-based random draws (SplitMix64 over (key, query, stream, counter)): every
# query's draws depend only on the seed and its global index, never on which other
# queries are mined in the same call, on blocks or on threads.
_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_STREAM_WINDOW, _STREAM_EASY = 1, 2


def _mix64(z):
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _random_key(random_state):
    """One 64-bit key from ``random_state`` (None: fresh entropy)."""
    if random_state is None:
        return np.uint64(np.random.SeedSequence().generate_state(1, np.uint64)[0])
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        if random_state < 0:
            raise ValueError(f"random_state must be >= 0, got {random_state}.")
        return np.uint64(np.random.SeedSequence(int(random_state))
                         .generate_state(1, np.uint64)[0])
    if isinstance(random_state, np.random.RandomState):
        return np.uint64(random_state.randint(0, 2**63, dtype=np.int64))
    if isinstance(random_state, np.random.Generator):
        return np.uint64(random_state.integers(0, 2**63))
    raise TypeError("random_state must be None, an int, a numpy RandomState or Generator, "
                    f"got {random_state!r}.")


def _uniform(key, gq, stream, width, first=None):
    """Uniform draws in (0, 1) of shape (len(gq), width): draw ``first[i] + j`` of
    query ``gq[i]``'s stream ``stream``."""
    base = _mix64(key ^ _mix64(np.asarray(gq, dtype=np.uint64) * np.uint64(8)
                               + np.uint64(stream) + _GAMMA))
    counter = np.arange(1, width + 1, dtype=np.uint64)[None, :]
    if first is not None:
        counter = counter + np.asarray(first, dtype=np.uint64)[:, None]
    z = _mix64(base[:, None] + _GAMMA * counter)
    return ((z >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53


def _gather(C, ids):
    """C[ids] as float64 (ids >= 0, any shape), reading each distinct row once in
    increasing order (kind to memmaps and dask arrays)."""
    flat = ids.ravel()
    uniq, inv = np.unique(flat, return_inverse=True)
    rows = np.asarray(C[uniq], dtype=np.float64) if uniq.size else \
        np.empty((0, C.shape[1]))
    return rows[inv].reshape(ids.shape + (C.shape[1],))


class _Positives:
    """The positives of a subset of queries, as unit vectors, gathered on demand."""

    def __init__(self, C, ptr, ids, vectors):
        self.C, self.ptr, self.ids, self.vectors = C, ptr, ids, vectors

    def unit(self, rows):
        """(counts per row, unit vectors of the rows' positives, row by row)."""
        if self.vectors is not None:
            v = np.asarray(self.vectors[rows], dtype=np.float64)
            return np.ones(rows.size, dtype=np.intp), _unit_rows(v)
        counts = np.diff(self.ptr)[rows]
        first = np.concatenate([[0], np.cumsum(counts)])[:-1]
        idx = np.repeat(self.ptr[rows] - first, counts) + np.arange(counts.sum())
        return counts, _unit_rows(_gather(self.C, self.ids[idx]))


def _rescore(Q, C, ids, metric, positives=None, rows=None, threshold=None):
    """Exact float64 similarities of ``Q[i]`` and ``C[ids[i, j]]`` (-inf where
    ``ids < 0``), computed query by query so they never depend on how queries are
    grouped; with ``threshold``, also a mask of candidates whose cosine similarity
    to one of the query's positives (``positives.unit(rows[i])``) exceeds it."""
    n, k = ids.shape
    dim = max(Q.shape[1], 1)
    sim = np.full((n, k), -np.inf)
    dup = np.zeros((n, k), dtype=bool)
    step = max(1, (1 << 21) // max(k * dim, 1))  # 16 MiB of gathered float64 rows
    for s in range(0, n, step):
        block = ids[s:s + step]
        ok = block >= 0
        V = _gather(C, np.where(ok, block, 0))
        q = np.asarray(Q[s:s + step], dtype=np.float64)
        if metric == "ip":
            got = np.einsum("rkd,rd->rk", V, q)
        elif metric == "cosine":
            Vu = _unit_rows(V.reshape(-1, C.shape[1])).reshape(V.shape)
            got = np.einsum("rkd,rd->rk", Vu, _unit_rows(q))
        else:
            diff = V - q[:, None, :]
            got = -np.einsum("rkd,rkd->rk", diff, diff)
        sim[s:s + step] = np.where(ok, got, -np.inf)
        if threshold is not None:
            if metric != "cosine":
                Vu = _unit_rows(V.reshape(-1, C.shape[1])).reshape(V.shape)
            counts, P = positives.unit(rows[s:s + step])
            first = np.concatenate([[0], np.cumsum(counts)])[:-1]
            best = np.full(block.shape, -np.inf)
            for j in range(int(counts.max()) if counts.size else 0):
                sel = np.flatnonzero(counts > j)
                c = np.einsum("rkd,rd->rk", Vu[sel], P[first[sel] + j])
                best[sel] = np.maximum(best[sel], c)
            dup[s:s + step] = ok & (best > threshold)
    return sim, dup


def _csr_rows(ptr, ids, rows):
    counts = np.diff(ptr)[rows]
    first = np.concatenate([[0], np.cumsum(counts)])
    idx = np.repeat(ptr[rows] - first[:-1], counts) + np.arange(first[-1])
    return first, ids[idx]


def _search_without_duplicates(search, Q, C, stop, metric, exclude, cap, positives,
                               threshold):
    """The first ``stop`` candidates per query that pass the cap and are no
    near-duplicate of one of its positives, closest first, with exact scores and
    the number of near-duplicates passed over. Searches ``2 stop + 8`` candidates,
    checks them, and searches deeper (twice as far each time) only for the queries
    left short, so memory stays bounded by the rank window, not the corpus."""
    n_q, n_c = Q.shape[0], C.shape[0]
    out_ids = np.full((n_q, stop), -1, dtype=np.intp)
    out_sim = np.full((n_q, stop), -np.inf)
    n_dup = np.zeros(n_q, dtype=np.intp)
    rows = np.arange(n_q)
    k = min(n_c, 2 * stop + 8)
    ex_ptr, ex_ids = exclude
    while rows.size:
        ids, _ = _search(search, rows, k, metric, _csr_rows(ex_ptr, ex_ids, rows),
                         cap[rows])
        sim, dup = _rescore(Q[rows], C, ids, metric, positives, rows, threshold)
        keep = (ids >= 0) & ~dup & (sim <= cap[rows, None])
        n_keep = keep.sum(axis=1)
        done = (n_keep >= stop) | (ids[:, -1] < 0) | (k >= n_c)
        d = np.flatnonzero(done)
        order = np.argsort(~keep[d], axis=1, kind="stable")[:, :stop]
        got = np.take_along_axis(keep[d], order, axis=1)
        out_ids[rows[d]] = np.where(got, np.take_along_axis(ids[d], order, axis=1), -1)
        out_sim[rows[d]] = np.where(got, np.take_along_axis(sim[d], order, axis=1), -np.inf)
        # near-duplicates ranked before the last survivor taken
        last = np.where(n_keep[d] >= stop, order[:, -1], k - 1)
        before = np.arange(k)[None, :] <= last[:, None]
        n_dup[rows[d]] = np.sum(dup[d] & before, axis=1)
        rows = rows[~done]
        k = min(n_c, 2 * k)
    return out_ids, out_sim, n_dup


def _random_negatives(Q, C, n_easy, hard_ids, exclude, cap, floor, metric, key, gq,
                      positives, threshold):
    """Per query, ``n_easy[i]`` distinct random ids that are neither excluded, hard,
    above the query's cap, below its floor nor near-duplicates of its positives
    (padded with -1 if the corpus runs out). Query ``i`` uses only its own stream of
    draws, so the result does not depend on the other queries."""
    n_q, n_c = Q.shape[0], C.shape[0]
    width = int(n_easy.max())
    out_ids = np.full((n_q, width), -1, dtype=np.intp)
    out_sim = np.full((n_q, width), np.nan)
    ex_ptr, ex_ids = exclude
    forbidden = np.concatenate([
        np.repeat(np.arange(n_q), np.diff(ex_ptr)) * n_c + ex_ids,
        (np.repeat(np.arange(n_q), hard_ids.shape[1]) * n_c + hard_ids.ravel())[
            hard_ids.ravel() >= 0],
    ])
    forbidden = np.unique(forbidden)
    filled = np.zeros(n_q, dtype=np.intp)
    used = np.zeros(n_q, dtype=np.intp)  # draws consumed per query
    for _ in range(20):  # rejection sampling; each pass draws twice what is missing
        need = n_easy - filled
        rows = np.flatnonzero(need > 0)
        if rows.size == 0:
            break
        n_draw = 2 * need[rows] + 4
        u = _uniform(key, gq[rows], _STREAM_EASY, int(n_draw.max()), first=used[rows])
        used[rows] += n_draw
        drawn = np.arange(u.shape[1])[None, :] < n_draw[:, None]
        ids = np.minimum((u * n_c).astype(np.intp), n_c - 1)
        keys = rows[:, None] * n_c + ids
        ok = drawn & ~np.isin(keys, forbidden)
        flat = np.flatnonzero(ok.ravel())  # the first draw of an id counts (row order)
        _, first = np.unique(keys.ravel()[flat], return_index=True)
        distinct = np.zeros(ok.size, dtype=bool)
        distinct[flat[first]] = True
        ok &= distinct.reshape(ok.shape)
        sim, dup = _rescore(Q[rows], C, np.where(ok, ids, -1), metric, positives, rows,
                            threshold)
        ok &= (sim <= cap[rows, None]) & (sim >= floor[rows, None]) & ~dup
        rank = np.cumsum(ok, axis=1)
        take = ok & (rank <= need[rows, None])
        r, c = np.nonzero(take)
        q = rows[r]
        slot = filled[q] + rank[r, c] - 1
        out_ids[q, slot] = ids[r, c]
        out_sim[q, slot] = sim[r, c]
        filled[rows] += take.sum(axis=1)
        forbidden = np.union1d(forbidden, q * n_c + ids[r, c])
    return out_ids, out_sim


def _package(output, neg_ids, neg_sim, neg_rank, is_hard, pos_ptr, pos_ids, pos_scores,
             row_positive, n_q, k, easy_ratio, n_short):
    from .retrieval import MinedNegatives  # (the public result type; imported late: a cycle)

    n_pos = np.diff(pos_ptr)
    pair_query = np.repeat(np.arange(n_q), n_pos)  # one (query, positive) pair per positive
    pair_positive = row_positive[pair_query] if row_positive is not None else pos_ids
    valid = neg_ids >= 0
    summary = {
        "n_queries": n_q,
        "n_short_queries": n_short,
        "n_hard": int(is_hard.sum()),
        "n_easy": int((valid & ~is_hard).sum()),
        "negative_score_mean": float(neg_sim[valid].mean()) if valid.any() else None,
        "negative_score_max": float(neg_sim[valid].max()) if valid.any() else None,
        "positive_score_mean": float(pos_scores.mean()) if pos_scores.size else None,
    }
    if output == "ntuple":
        width = neg_ids.shape[1]
        full = valid.sum(axis=1) == width
        keep = full[pair_query]
        summary["n_skipped"] = int(np.sum(~full))
        pq = pair_query[keep]
        result = MinedNegatives(pq, pair_positive[keep], neg_ids[pq], neg_sim[pq],
                                pos_scores[keep], is_hard[pq], neg_rank[pq], summary)
    else:
        # rows: every pair x every valid negative of its query
        counts = valid.sum(axis=1)
        pair_rows = np.repeat(np.arange(pair_query.size), counts[pair_query])
        q = pair_query[pair_rows]
        # the j-th valid negative of each query, in order
        flat_valid = np.flatnonzero(valid.ravel())
        starts = np.concatenate([[0], np.cumsum(counts)])[:-1]
        j = np.arange(pair_rows.size) - np.repeat(
            np.concatenate([[0], np.cumsum(counts[pair_query])])[:-1], counts[pair_query])
        cell = flat_valid[starts[q] + j]
        result = MinedNegatives(q, pair_positive[pair_rows], neg_ids.ravel()[cell],
                                neg_sim.ravel()[cell], pos_scores[pair_rows],
                                is_hard.ravel()[cell], neg_rank.ravel()[cell], summary)
    summary["n_rows"] = len(result)
    return result
