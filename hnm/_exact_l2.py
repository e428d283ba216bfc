"""Exact float64 Euclidean nearest and farthest neighbours, searched in float32.

Both run the blocked search (:func:`hnm.search_hard_pairs` for the nearest,
:func:`hnm._farthest.search_farthest` for the farthest) in float32, on the rows
less the candidates' mean (distances do not change, the rounding bound shrinks
with the norms), for a few spare candidates, recompute those distances from the
float64 differences, and prove row by row, from a bound on the search's
rounding error, that no other candidate can rank before the k-th; rows without
that proof are searched again in float64, then compared with every candidate
directly. Inputs are not validated here: the callers (:class:`hnm.NearMiss`,
the resamplers) have.
"""
import numpy as np

from . import _pairs
from ._farthest import search_farthest
from ._ranking import best_first
from ._threads import resolve_n_jobs
from .pairs import search_hard_pairs

__all__ = ["nearest_l2_float64", "farthest_l2_float64"]


def nearest_l2_float64(queries, candidates, k, *, exclude_self=False, n_jobs=None,
                       chunk_rows=8192):
    """Exact float64 Euclidean k nearest neighbours, searched in float32.

    The blocked search runs in float32 (twice the GEMM speed) for ``k + 2``
    candidates; their distances are then computed from the float64 differences
    (no cancellation) and a rigorous bound on the search's rounding error proves,
    row by row, that no candidate outside them can be nearer than the k-th. Rows
    without that proof are searched again in float64 the same way; rows still
    without one (ties, or near-ties below float64 resolution of the GEMM form) are
    compared with every candidate directly. Returns (distances, indices) of shape
    (n_queries, k): Euclidean (not squared) distances, nearest first, ties by the
    smaller index.
    """
    return _exact_l2(queries, candidates, k, False, exclude_self, n_jobs, chunk_rows)


def farthest_l2_float64(queries, candidates, k, *, n_jobs=None, chunk_rows=8192):
    """Exact float64 Euclidean k farthest candidates, searched in float32.

    The mirror image of :func:`nearest_l2_float64`: the blocked search
    runs in float32 for ``k + 2`` candidates; their distances are computed from
    the float64 differences, and a bound on the search's rounding error proves,
    row by row, that no other candidate can be farther than the k-th. Rows
    without that proof (ties, near-ties) are searched again in float64, and rows
    still without one are compared with every candidate directly. Returns
    (distances, indices) of shape (n_queries, k): Euclidean (not squared)
    distances, farthest first, ties by the smaller index.
    """
    return _exact_l2(queries, candidates, k, True, False, n_jobs, chunk_rows)


def _exact_l2(queries, candidates, k, farthest, exclude_self, n_jobs, chunk_rows):
    Q = np.ascontiguousarray(queries, dtype=np.float64)
    C = np.ascontiguousarray(candidates, dtype=np.float64)
    n_q, dim = Q.shape
    n_c = C.shape[0]
    n_avail = n_c - int(exclude_self)
    # two spare candidates: with more, the float32 heaps take more entries (on
    # 200,000 x 50, k=3: k + 8 took 1.78 s, k + 2 1.43 s, k + 1 re-searched 336 rows)
    k2 = min(k + 2, n_avail)
    n_threads = resolve_n_jobs(n_jobs)
    # searched about the candidates' mean: the distances do not move, the norms
    # shrink, and with them the GEMM form's cancellation and the rounding bound
    # (far from the origin, e.g. unscaled features, rows would fail it)
    centre = C.mean(axis=0) if n_c else np.zeros(dim)
    C32, c_norm = _centred(C, centre, np.float32)
    c_norm_max = c_norm.max() if n_c else 0.0
    dist = np.empty((n_q, k))
    idx = np.empty((n_q, k), dtype=np.intp)
    rows = np.arange(n_q)
    for dtype, unit in ((np.float32, 2.0**-24), (np.float64, 2.0**-53)):
        Qr = Q if rows.size == n_q else Q[rows]
        Qd, q_norm = _centred(Qr, centre, dtype)
        Cd = C32 if dtype == np.float32 else _centred(C, centre, dtype)[0]
        # |squared distance searched - exact| <= (dim + 4) unit (|q| + |c|)^2 (norms
        # of the centred rows), from rounding the inputs, the two norms and the dot
        # product; doubled for margin (farthest: the extra column of the turned
        # search adds one term; quadrupled)
        if farthest:
            found = search_farthest(Qd, Cd, k2, metric="l2", n_jobs=n_jobs)
            err = 4 * (dim + 5) * unit * (q_norm + c_norm_max) ** 2
        else:
            found = search_hard_pairs(Qd, Cd, k2, metric="l2", n_jobs=n_jobs,
                                      exclude=rows if exclude_self else None)
            err = 2 * (dim + 4) * unit * (q_norm + c_norm_max) ** 2
        unproven = []
        for s in range(0, rows.size, chunk_rows):
            r = rows[s:s + chunk_rows]
            ids = found.indices[s:s + chunk_rows]
            exact = np.empty(ids.shape)
            _pairs.squared_l2_at(Qr[s:s + chunk_rows], C, ids, exact, n_threads)
            order = best_first(exact if farthest else -exact, ids, axis=1)
            exact = np.take_along_axis(exact, order, axis=1)
            dist[r] = np.sqrt(exact[:, :k])
            idx[r] = np.take_along_axis(ids, order, axis=1)[:, :k]
            if k2 < n_avail:
                # an outside candidate is at most (farthest) or at least (nearest)
                # the k2-th distance searched, give or take err
                last = found.scores[s:s + chunk_rows, -1]
                if farthest:
                    proven = last + err[s:s + chunk_rows] < exact[:, k - 1]
                else:
                    proven = last - err[s:s + chunk_rows] > exact[:, k - 1]
                unproven.append(r[~proven])
        rows = np.concatenate(unproven) if unproven else rows[:0]
        if not rows.size:
            return dist, idx
    # every candidate, compared directly: bounded chunks of rows
    step = max(1, 2**22 // max(n_c, 1))
    all_ids = np.arange(n_c)
    for s in range(0, rows.size, step):
        r = rows[s:s + step]
        ids = np.tile(all_ids, (r.size, 1))
        exact = np.empty(ids.shape)
        _pairs.squared_l2_at(Q[r], C, ids, exact, n_threads)
        if exclude_self:
            exact[np.arange(r.size), r] = np.inf
        # ties: smaller index
        order = np.argsort(-exact if farthest else exact, axis=1, kind="stable")[:, :k]
        dist[r] = np.sqrt(np.take_along_axis(exact, order, axis=1))
        idx[r] = order
    return dist, idx


def _centred(X, centre, dtype, chunk_rows=65536):
    """(X - centre in dtype, the float64 norms of the rows of X - centre), a
    chunk of rows at a time (no float64 copy of X)."""
    out = np.empty(X.shape, dtype=dtype)
    norms = np.empty(X.shape[0])
    for s in range(0, X.shape[0], chunk_rows):
        d = X[s:s + chunk_rows] - centre
        norms[s:s + chunk_rows] = np.sqrt(np.einsum("ij,ij->i", d, d))
        out[s:s + chunk_rows] = d
    return out, norms
