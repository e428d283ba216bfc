"""pytorch-metric-learning's miners on numpy arrays, in bounded memory.

Every function is named after one of pytorch-metric-learning's (PML 2.x)
miners, takes its parameter names and defaults, and returns the index tuple its
``forward`` returns: ``(anchor, positive, negative)`` for triplet miners,
``(anchor_p, positive, anchor_n, negative)`` for pair miners, as int64 arrays
(``torch.from_numpy`` turns them into PML's tensors). On the same inputs the
*sets* of tuples are PML's, with these differences, all stated per function:

* distances are computed once per pair as ``s = (x . y) / (|x| |y|)`` and, for
  the default distance, ``d = sqrt(max(|x^|^2 + |y^|^2 - 2 s, 0))`` (PML's
  ``LpDistance(normalize_embeddings=True, p=2, power=1)``: Euclidean on unit
  rows). PML sums in another order, so a pair whose margin lies within float
  rounding of a bound can fall on the other side of it, and a near-tie between
  two candidates can be broken the other way (exact ties go to the smaller
  index, as ``torch.min``/``torch.max`` do);
* PML's random draws (``distance_weighted``, ``uniform_histogram``) cannot be
  reproduced: the same distribution is drawn, seeded by ``random_state``;
* tuples come sorted by anchor, then positive or negative index (PML's order
  for every deterministic miner except ``multi_similarity``, which PML orders by
  similarity within each anchor).

Nothing holds the ``n_anchors x n_refs`` distance matrix, let alone the
``n^3`` triplet tensors PML builds: distances are computed tile by tile (a block
of anchors against a block of references), per-anchor extremes (hardest and
easiest positive and negative) come from hnm's exact blocked search, and the
combinatorial sets are streamed, or sampled uniformly and exactly with
``max_triplets`` / ``max_pairs``. Memory is bounded by the tile sizes and the
size of the result, so ``ref_embeddings`` (and ``embeddings``) can be an
``np.memmap`` of any size.

``distance``: ``"euclidean"`` (PML's default ``LpDistance``) or ``"cosine"``
(PML's ``CosineSimilarity``: larger is closer, margins in similarity units,
inverted as PML inverts them). ``ref_embeddings=None`` mines within
``embeddings`` and never pairs a row with itself, as PML does when ``ref_emb``
is not given; with ``ref_embeddings`` every anchor-reference pair counts.
"""
import contextlib
import functools
import math
import numbers
import threading

import numpy as np
from sklearn.utils import check_random_state

from . import _miners
from ._threads import resolve_n_jobs, single_threaded_blas
from ._validation import as_working, check_int, check_option, check_real, check_real_array

__all__ = [
    "triplet_margin",
    "batch_hard",
    "batch_easy_hard",
    "multi_similarity",
    "pair_margin",
    "distance_weighted",
    "hdc",
    "angular",
    "uniform_histogram",
]

_DISTANCES = ("euclidean", "cosine")
# Values per distance tile (anchors x references): 2**22 float32 are 16 MiB.
_TILE_VALUES = 1 << 22
# Values per block of full anchor rows (miners that need every reference of an
# anchor at once: sorting its negatives, normalising its weights).
_ROW_VALUES = 1 << 23
# Query rows per call of the exact search (bounds the copies the search makes).
_SEARCH_ROWS = 1 << 16
DEFAULT_BLOCK_SIZE = 4096
# Mine within one set (no ref_embeddings) with the symmetric kernel: each
# unordered pair's dot product computed once (tests turn it off to compare)
_SYMMETRIC = True
_EMPTY = np.empty(0, dtype=np.int64)


# ---------------------------------------------------------------------------
# inputs


_call = threading.local()  # the running miner's ExitStack, per Python thread
# below this many multiply-adds a miner runs its kernels on one thread and leaves
# BLAS as it is (a thread team's start and threadpoolctl's limit cost milliseconds)
_SMALL_WORK = 1 << 24


def _kernel_threads(miner):
    """Give ``miner`` a place to hold BLAS single-threaded for the whole call
    (see ``_Ctx``): the kernels run their GEMMs inside their own ``n_jobs``
    threads, and the limit is set once per call, not once per tile."""
    @functools.wraps(miner)
    def run(*args, **kwargs):
        with contextlib.ExitStack() as stack:
            outer = getattr(_call, "stack", None)
            _call.stack = stack
            try:
                return miner(*args, **kwargs)
            finally:
                _call.stack = outer
    return run


def _as_array(x, name, ndim):
    if x is not None and hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu()  # a torch tensor: np.asarray reads it without a copy
    if ndim == 1:
        try:
            arr = np.asarray(x)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name} must be array-like; {exc}") from None
        if arr.ndim != 1:
            raise ValueError(f"{name} must be 1-D, got a {arr.ndim}-D array.")
        return arr
    return check_real_array(x, name, min_ndim=2, max_ndim=2)


class _Ctx:
    """Validated inputs: anchors ``E`` and references ``R`` (views, never
    copied whole), label codes, per-row inverse norms and the working dtype."""

    def __init__(self, embeddings, labels, ref_embeddings, ref_labels, distance,
                 block_size, n_jobs, allowed=_DISTANCES):
        self.distance = check_option(distance, "distance", allowed)
        self.n_jobs = check_int(n_jobs, "n_jobs", min_value=1, allow_none=True)
        E = _as_array(embeddings, "embeddings", 2)
        la = _as_array(labels, "labels", 1)
        if la.shape[0] != E.shape[0]:
            raise ValueError(f"labels must have one entry per row of embeddings "
                             f"({E.shape[0]}), got {la.shape[0]}.")
        self.self_mode = ref_embeddings is None
        if self.self_mode:
            if ref_labels is not None:
                raise ValueError("ref_labels needs ref_embeddings.")
            R, lr = E, la
        else:
            if ref_labels is None:
                raise ValueError("ref_embeddings needs ref_labels.")
            R = _as_array(ref_embeddings, "ref_embeddings", 2)
            lr = _as_array(ref_labels, "ref_labels", 1)
            if lr.shape[0] != R.shape[0]:
                raise ValueError(f"ref_labels must have one entry per row of "
                                 f"ref_embeddings ({R.shape[0]}), got {lr.shape[0]}.")
            if R.shape[1] != E.shape[1]:
                raise ValueError(f"embeddings have dimension {E.shape[1]} but "
                                 f"ref_embeddings have {R.shape[1]}.")
        if E.shape[1] == 0:
            raise ValueError("embeddings need at least one dimension.")
        self.E, self.R = E, R
        self.n_a, self.n_r, self.dim = E.shape[0], R.shape[0], E.shape[1]
        self.dtype = np.result_type(np.float32, *(a.dtype for a in (E, R)
                                                  if a.dtype.kind == "f"))
        if self.dtype.kind != "f":
            self.dtype = np.dtype(np.float64)
        try:
            if self.self_mode:
                uniq, codes = np.unique(la, return_inverse=True)
                self.la = self.lr = codes.astype(np.intp).ravel()
            else:
                uniq, codes = np.unique(np.concatenate([la, lr]), return_inverse=True)
                codes = codes.astype(np.intp).ravel()
                self.la, self.lr = codes[:self.n_a], codes[self.n_a:]
        except TypeError as exc:
            raise TypeError(f"labels and ref_labels must hold labels of one comparable "
                            f"type; {exc}") from None
        self.n_labels = uniq.size
        # the kernel's copies (fewer than 2**31 labels: at most one per row)
        self.la32 = self.la.astype(np.int32)
        self.lr32 = self.la32 if self.self_mode else self.lr.astype(np.int32)
        bs = check_int(block_size, "block_size", min_value=1, allow_none=True)
        self.block = bs or DEFAULT_BLOCK_SIZE
        self.inv_a, self.sq_a, self.zero_a = self._norms(E, "embeddings")
        if self.self_mode:
            self.inv_r, self.sq_r, self.zero_r = self.inv_a, self.sq_a, self.zero_a
        else:
            self.inv_r, self.sq_r, self.zero_r = self._norms(R, "ref_embeddings")
        if self.n_a * self.n_r * self.dim < _SMALL_WORK:
            self.n_threads = 1
        else:
            self.n_threads = resolve_n_jobs(self.n_jobs)
            _call.stack.enter_context(single_threaded_blas())

    def _norms(self, X, name):
        """Per row: 1 / max(|x|, 1e-12) (torch's normalize), the squared norm of
        the normalised row, and whether any row is (numerically) zero."""
        inv = np.empty(X.shape[0], dtype=self.dtype)
        sq = np.empty(X.shape[0], dtype=self.dtype)
        step = max(1, _TILE_VALUES // max(1, X.shape[1]))
        for s in range(0, X.shape[0], step):
            x = as_working(X[s:s + step], self.dtype, name)
            if not np.isfinite(x).all():
                raise ValueError(f"{name} contain NaN or infinity.")
            with np.errstate(over="ignore"):
                n = np.sqrt(np.einsum("ij,ij->i", x, x))
                big = np.minimum(n * self.dtype.type(1e12), 1)
            if not np.isfinite(n).all():
                raise ValueError(f"{name} have norms that overflow {self.dtype}; scale "
                                 "them down or pass float64.")
            inv[s:s + step] = 1 / np.maximum(n, self.dtype.type(1e-12))
            sq[s:s + step] = big ** 2
        return inv, sq, bool((sq < 1).any())

    # -- distance keys: larger is farther, for both distances -----------------
    # cosine keys are -s: PML's inverted comparisons become the Euclidean ones
    # exactly (negation is exact), e.g. s_ap - eps < s_an  <=>  k_ap + eps > k_an.

    def key_bound(self, value, name):
        """A similarity/distance bound of the user, as a bound on keys."""
        v = self.dtype.type(check_real(value, name))
        return -v if self.distance == "cosine" else v

    def rows(self, r0, r1):
        return as_working(self.E[r0:r1], self.dtype, "embeddings")

    def refs(self, c0, c1):
        return as_working(self.R[c0:c1], self.dtype, "ref_embeddings")

    def keys(self, A, r0, r1, Rc, c0, c1):
        """Keys of a tile, by the fused kernel (``n_jobs`` threads): cosine
        ``-s``, Euclidean ``sqrt(max(|x^|^2 + |y^|^2 - 2 s, 0))`` (torch.cdist's
        matrix form), ``s = (x . y) * inv_x * inv_y``."""
        K = np.empty((r1 - r0, c1 - c0), dtype=self.dtype)
        _miners.keys_tile(A, self.inv_a[r0:r1], self.sq_a[r0:r1], Rc, self.inv_r[c0:c1],
                          self.sq_r[c0:c1], self.distance == "cosine", K, self.n_threads)
        return K

    def ref_chunks(self):
        """Yield ``(c0, Rc)``: the references in C-contiguous working-dtype
        pieces; the array itself (a memmap too) when it already is one."""
        R = self.R
        if isinstance(R, np.ndarray) and R.dtype == self.dtype and R.flags.c_contiguous:
            yield 0, R
            return
        step = max(1, _ROW_VALUES // self.dim)
        for c0 in range(0, self.n_r, step):
            yield c0, self.refs(c0, min(c0 + step, self.n_r))

    def tiles(self, anchors=None):
        """Yield ``(r0, r1, c0, c1, K, same)``: keys of a tile of anchors x
        references and a mask of same-label pairs (self pairs removed)."""
        bc = min(self.block, max(self.n_r, 1))
        br = max(1, min(self.n_a, _TILE_VALUES // bc))
        single = self.n_r <= bc
        Rc_all = self.refs(0, self.n_r) if single else None
        ranges = anchors if anchors is not None else (
            (r0, min(r0 + br, self.n_a)) for r0 in range(0, self.n_a, br))
        for r0, r1 in ranges:
            A = self.rows(r0, r1)
            for c0 in range(0, self.n_r, bc):
                c1 = min(c0 + bc, self.n_r)
                Rc = Rc_all if single else self.refs(c0, c1)
                K = self.keys(A, r0, r1, Rc, c0, c1)
                same = self.la[r0:r1, None] == self.lr[None, c0:c1]
                if self.self_mode:
                    self._drop_self(same, r0, r1, c0, c1)
                yield r0, r1, c0, c1, K, same

    @staticmethod
    def _drop_self(mask, r0, r1, c0, c1):
        lo, hi = max(r0, c0), min(r1, c1)
        if lo < hi:
            i = np.arange(lo, hi)
            mask[i - r0, i - c0] = False

    def row_blocks(self):
        """Yield ``(r0, r1, K, same, diff)`` with full rows: every reference of
        a block of anchors (the block holds at most ``_ROW_VALUES`` keys)."""
        br = max(1, min(self.n_a, _ROW_VALUES // max(self.n_r, 1)))
        for r0 in range(0, self.n_a, br):
            r1 = min(r0 + br, self.n_a)
            yield (r0, r1, *self._full_rows(r0, r1))

    def _full_rows(self, r0, r1):
        if self.n_r <= self.block:  # one tile holds the rows: no copy
            _, _, _, _, K, same = next(self.tiles([(r0, r1)]))
        else:
            K = np.empty((r1 - r0, self.n_r), dtype=self.dtype)
            same = np.empty((r1 - r0, self.n_r), dtype=bool)
            for _, _, c0, c1, k, s in self.tiles([(r0, r1)]):
                K[:, c0:c1] = k
                same[:, c0:c1] = s
        return K, same, self.la[r0:r1, None] != self.lr[None, :]

    def pair_key(self, a, j):
        """Keys of given pairs, computed as the tiles compute them."""
        out = np.empty(a.size, dtype=self.dtype)
        step = max(1, _TILE_VALUES // self.dim)
        for s in range(0, a.size, step):
            aa, jj = a[s:s + step], j[s:s + step]
            x = as_working(self.E[aa], self.dtype, "embeddings")
            y = as_working(self.R[jj], self.dtype, "ref_embeddings")
            S = np.einsum("ij,ij->i", x, y) * self.inv_a[aa] * self.inv_r[jj]
            if self.distance == "cosine":
                out[s:s + step] = -S
            else:
                d2 = np.maximum(self.sq_a[aa] + self.sq_r[jj] - 2 * S, 0)
                out[s:s + step] = np.sqrt(d2)
        return out


# ---------------------------------------------------------------------------
# per-anchor extremes


def _best_tiles(ctx, specs):
    """Per anchor, the best reference under each spec, exactly, in one pass over
    the tiles. A spec is ``(same, largest, thr, vrange)``: same-label (self
    excluded) or different-label references, the largest or smallest key, only
    keys strictly below (largest) / above (smallest) ``thr`` (per anchor), and
    within ``vrange`` (inclusive). Returns a list of ``(index, key)``; ``index``
    is -1 where no reference qualifies; ties go to the smaller index."""
    out = []
    for same, largest, thr, vr in specs:
        fill = -np.inf if largest else np.inf
        out.append((np.full(ctx.n_a, -1, dtype=np.int64),
                    np.full(ctx.n_a, fill, dtype=ctx.dtype)))
    for r0, r1, c0, c1, K, same_mask in ctx.tiles():
        for (same, largest, thr, vr), (idx, best) in zip(specs, out):
            ok = same_mask if same else ctx.la[r0:r1, None] != ctx.lr[None, c0:c1]
            if thr is not None:
                t = thr[r0:r1, None]
                ok = ok & ((K < t) if largest else (K > t))
            if vr is not None:
                ok = ok & (K >= vr[0]) & (K <= vr[1])
            fill = -np.inf if largest else np.inf
            V = np.where(ok, K, fill)
            j = V.argmax(axis=1) if largest else V.argmin(axis=1)
            v = V[np.arange(r1 - r0), j]
            hit = ok[np.arange(r1 - r0), j]
            # strictly better: on a tie the earlier tile (smaller index) stays
            better = hit & ((v > best[r0:r1]) if largest else (v < best[r0:r1]))
            best[r0:r1][better] = v[better]
            idx[r0:r1][better] = j[better] + c0
    return out


def _best_search(ctx, same, nearest, cap=None):
    """Per anchor, the nearest or farthest same-label (self excluded) or
    different-label reference, with hnm's exact blocked searches (ties by the
    smaller index), in cosine order, which is the Euclidean order on unit rows.
    The nearest different-label reference is ``search_hard_pairs``'s label
    filter (``cap``: only similarities <= cap, per anchor); the others are
    ``search_farthest`` (the nearest is the farthest from the negated query:
    negation is exact, ties stay ties). Returns ``(index, similarity)`` with
    the search's similarities; index -1 where there is none."""
    from ._farthest import search_farthest
    from .pairs import search_hard_pairs

    idx = np.full(ctx.n_a, -1, dtype=np.int64)
    sim = np.full(ctx.n_a, np.nan, dtype=ctx.dtype)
    if ctx.n_r == 0 or ctx.n_a == 0:
        return idx, sim
    for q0 in range(0, ctx.n_a, _SEARCH_ROWS):
        q1 = min(q0 + _SEARCH_ROWS, ctx.n_a)
        common = dict(metric="cosine", query_labels=ctx.la[q0:q1], candidate_labels=ctx.lr,
                      n_jobs=ctx.n_jobs, block_size=ctx.block)
        if nearest and not same:
            res = search_hard_pairs(ctx.E[q0:q1], ctx.R, 1, max_score=None if cap is None
                                    else cap[q0:q1], **common)
            s = res.scores[:, 0]
        else:
            Q = ctx.E[q0:q1] if not nearest else -ctx.rows(q0, q1)
            exclude = np.arange(q0, q1, dtype=np.intp) if ctx.self_mode and same else None
            res = search_farthest(Q, ctx.R, 1, exclude=exclude, same_label=same, **common)
            s = res.scores[:, 0] if not nearest else -res.scores[:, 0]
        idx[q0:q1] = res.indices[:, 0]
        sim[q0:q1] = s
    return idx, sim


def _extremes(ctx, specs):
    """Per-anchor extremes: the exact search where it applies (no threshold, no
    range, no zero rows: cosine order is then the Euclidean order), the tiles
    otherwise. Returns ``(index, key)`` per spec (keys recomputed per pair)."""
    if _searchable(ctx, specs):
        out = []
        for same, largest, _, _ in specs:
            idx, _ = _best_search(ctx, same, nearest=not largest)
            key = np.full(ctx.n_a, -np.inf if largest else np.inf, dtype=ctx.dtype)
            hit = np.flatnonzero(idx >= 0)
            key[hit] = ctx.pair_key(hit, idx[hit])
            out.append((idx, key))
        return out
    return _best_tiles(ctx, specs)


def _searchable(ctx, specs):
    return (all(t is None and v is None for _, _, t, v in specs)
            and not (ctx.zero_a or ctx.zero_r))


# ---------------------------------------------------------------------------
# sampling without replacement


def _choose(rng, total, k):
    """``k`` distinct integers drawn uniformly from ``[0, total)``, sorted."""
    if k >= total:
        return np.arange(total, dtype=np.int64)
    if 2 * k >= total:
        return np.sort(rng.permutation(total)[:k]).astype(np.int64)
    # draws with replacement, keeping distinct ones in draw order: symmetric in
    # the values, so every k-subset is equally likely
    got = np.empty(0, dtype=np.int64)
    while got.size < k:
        new = rng.randint(0, total, size=2 * (k - got.size) + 16, dtype=np.int64)
        cat = np.concatenate([got, new])
        _, first = np.unique(cat, return_index=True)
        got = cat[np.sort(first)][:k]
    return np.sort(got)


def _check_max(value, name):
    return check_int(value, name, min_value=0, allow_none=True)


def _lexsorted(*cols):
    if cols[0].size == 0:
        return tuple(_EMPTY.copy() for _ in cols)
    order = np.lexsort(cols[::-1])
    return tuple(np.ascontiguousarray(c[order], dtype=np.int64) for c in cols)


# ---------------------------------------------------------------------------
# pairs: a rule per kind, tested by the fused kernel as each key is computed


def _scan(ctx, mode, rules, state=(), rows=None, symmetric=True):
    """One pass of ``hnm._miners.scan`` over the anchors (``rows``: sorted
    anchor ids, default all) against every reference; within one set by the
    symmetric kernel when it applies and ``symmetric`` (a count that a
    "select" pass follows is not: it must see the keys that pass sees).

    ``rules``: per kind (same label, different label) None or ``(op, off,
    thr)``: keep ``fl(key + off) op thr[anchor]`` (op ">" or "<", ``thr`` one
    per anchor). ``state``: arrays of one entry per anchor of ``rows`` (see the
    kernel), updated in place. For "emit" and "select" returns per kind
    ``(anchor ids, reference ids)`` sorted by anchor, then reference."""
    n = ctx.n_a if rows is None else rows.size
    step = max(64, _TILE_VALUES // ctx.dim)
    cosine = ctx.distance == "cosine"
    emit = mode in ("emit", "select")
    X = _symmetric_rows(ctx) if symmetric and rows is None and mode != "select" else None
    if X is not None:
        # within one set: each unordered pair's dot product once (half the
        # GEMM), both of its ordered pairs tested, in the same order as below
        ids = np.arange(ctx.n_a, dtype=np.intp)
        kinds = [(False, 0, 0.0, None) if r is None else
                 (True, _miners.OPS[r[0]], float(r[1]),
                  None if r[2] is None else np.ascontiguousarray(r[2], dtype=ctx.dtype))
                 for r in rules]
        res = _miners.scan(X, X, (ids, ctx.la32, ctx.inv_a, ctx.sq_a),
                           (0, ctx.lr32, ctx.inv_r, ctx.sq_r, True, cosine, True), kinds,
                           _miners.MODES[mode], tuple(state), ctx.n_threads)
        return list(res) if emit else None
    got = ([], [])
    for s in range(0, n, step):
        e = min(s + step, n)
        if rows is None:
            ids = np.arange(s, e, dtype=np.intp)
            A = ctx.rows(s, e)
        else:
            ids = rows[s:e]
            A = as_working(ctx.E[ids], ctx.dtype, "embeddings")
        anchors = (ids, ctx.la32[ids], ctx.inv_a[ids], ctx.sq_a[ids])
        kinds = [(False, 0, 0.0, None) if r is None else
                 (True, _miners.OPS[r[0]], float(r[1]),
                  None if r[2] is None else np.ascontiguousarray(r[2][ids], dtype=ctx.dtype))
                 for r in rules]
        if mode == "select":
            st = tuple(None if x is None else (x[0][s:e], x[1], x[2][s:e], x[3][s:e])
                       for x in state)
        else:
            st = tuple(x[s:e] for x in state)
        parts = ([], [])
        for c0, Rc in ctx.ref_chunks():
            c1 = c0 + Rc.shape[0]
            refs = (c0, ctx.lr32[c0:c1], ctx.inv_r[c0:c1], ctx.sq_r[c0:c1], ctx.self_mode, cosine)
            res = _miners.scan(A, Rc, anchors, refs, kinds, _miners.MODES[mode], st,
                               ctx.n_threads)
            if emit:
                for kind in (0, 1):
                    parts[kind].append(res[kind])
        if emit:
            for kind in (0, 1):
                if len(parts[kind]) == 1:
                    got[kind].append(parts[kind][0])
                    continue
                a = np.concatenate([p[0] for p in parts[kind]])
                j = np.concatenate([p[1] for p in parts[kind]])
                order = np.argsort(a, kind="stable")  # reference pieces: anchor order
                got[kind].append((a[order], j[order]))
    if not emit:
        return None
    out = []
    for kind in (0, 1):
        pieces = got[kind]
        out.append(pieces[0] if len(pieces) == 1 else
                   (np.concatenate([p[0] for p in pieces]) if pieces else _EMPTY.copy(),
                    np.concatenate([p[1] for p in pieces]) if pieces else _EMPTY.copy()))
    return out


def _symmetric_rows(ctx):
    """The anchors as one C-contiguous working-dtype array when the miner mines
    within one set and the symmetric kernel applies (``_SYMMETRIC``), else None.
    A copy only when it is small (at most ``_ROW_VALUES`` values)."""
    if not (_SYMMETRIC and ctx.self_mode) or ctx.n_a < 2:
        return None
    E = ctx.E
    if isinstance(E, np.ndarray) and E.dtype == ctx.dtype and E.flags.c_contiguous:
        return E
    if ctx.n_a * ctx.dim > _ROW_VALUES:
        return None
    return np.ascontiguousarray(as_working(E, ctx.dtype, "embeddings"))


def _threshold(ctx, value):
    return np.full(ctx.n_a, value, dtype=ctx.dtype)


def _mine_pairs(ctx, rules, max_pairs, random_state, counts=None):
    """Positive and negative pairs passing ``rules`` (see ``_scan``; None: no
    pair of that kind). With ``max_pairs`` (one count, or one per kind), at
    most that many of each kind, uniformly without replacement (two passes:
    count per anchor, unless ``counts`` has them, then keep the chosen ranks).
    Returns ``(anchor_p, positive, anchor_n, negative)``."""
    if max_pairs is None:
        (a1, p), (a2, n) = _scan(ctx, "emit", rules)
        return a1, p, a2, n
    if isinstance(max_pairs, numbers.Integral):
        max_pairs = (max_pairs, max_pairs)
    if counts is None:
        counts = (np.zeros(ctx.n_a, dtype=np.int64), np.zeros(ctx.n_a, dtype=np.int64))
        _scan(ctx, "count", rules, counts, symmetric=False)
    rng = check_random_state(random_state)
    plans, need = [], []
    for kind in (0, 1):
        starts = np.concatenate([[0], np.cumsum(counts[kind])])
        chosen = _choose(rng, int(starts[-1]), max_pairs[kind])
        owner = np.searchsorted(starts, chosen, side="right") - 1
        plans.append((starts, chosen - starts[owner], owner))
        need.append(owner)
    rows = np.unique(np.concatenate(need)).astype(np.intp)
    state = []
    for kind, (starts, ranks, owner) in enumerate(plans):
        if rules[kind] is None:
            state.append(None)
            continue
        lo = np.searchsorted(owner, rows, side="left").astype(np.int64)
        hi = np.searchsorted(owner, rows, side="right").astype(np.int64)
        state.append((np.zeros(rows.size, dtype=np.int64),
                      np.ascontiguousarray(ranks, dtype=np.int64), lo, hi))
    (a1, p), (a2, n) = _scan(ctx, "select", rules, tuple(state), rows=rows)
    return a1, p, a2, n


# ---------------------------------------------------------------------------
# public miners


@_kernel_threads
def pair_margin(embeddings, labels, ref_embeddings=None, ref_labels=None, *,
                pos_margin=0.2, neg_margin=0.8, distance="euclidean", max_pairs=None,
                random_state=None, block_size=None, n_jobs=None):
    """Positive pairs farther than ``pos_margin``, negative pairs closer than
    ``neg_margin`` (PML's ``PairMarginMiner``).

    Parameters
    ----------
    embeddings : array-like of shape (n, dim)
        Anchors (a torch tensor is read through ``np.asarray``).
    labels : array-like of shape (n,)
    ref_embeddings, ref_labels : array-like, optional
        Mine against these instead of ``embeddings`` itself (PML's ``ref_emb``).
    pos_margin, neg_margin : float, default=0.2, 0.8
        Keep positives with ``d > pos_margin`` and negatives with ``d <
        neg_margin``; for ``distance="cosine"`` the similarity ``s <
        pos_margin`` and ``s > neg_margin``, as PML inverts them.
    distance : {"euclidean", "cosine"}, default="euclidean"
    max_pairs : int, optional
        At most this many positive and this many negative pairs, drawn uniformly
        without replacement from the full sets (exact size ``min(max_pairs,
        n_pairs)``).
    random_state : int, RandomState instance or None
        Seeds the draw of ``max_pairs``.
    block_size : int, optional
        References per distance tile (default 4096).
    n_jobs : int, optional
        Threads of the kernels (OpenMP, BLAS single-threaded inside them);
        default: OpenMP's count. Every miner takes it.

    Returns
    -------
    anchor_p, positive, anchor_n, negative : ndarray of int64
        Sorted by anchor, then reference index. A pair within float rounding of
        a margin can differ from PML's.

    See Also
    --------
    multi_similarity, hdc, triplet_margin

    Examples
    --------
    >>> import numpy as np
    >>> from hnm import miners
    >>> x = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1], [-1.0, 0.0]])
    >>> a1, p, a2, n = miners.pair_margin(x, [0, 0, 1, 1])
    >>> list(zip(a1.tolist(), p.tolist()))
    [(0, 1), (1, 0), (2, 3), (3, 2)]
    >>> list(zip(a2.tolist(), n.tolist()))
    [(0, 2), (2, 0)]
    """
    ctx = _Ctx(embeddings, labels, ref_embeddings, ref_labels, distance, block_size, n_jobs)
    pos_t = ctx.key_bound(pos_margin, "pos_margin")
    neg_t = ctx.key_bound(neg_margin, "neg_margin")
    max_pairs = _check_max(max_pairs, "max_pairs")
    # on cosine keys (-s) PML's s < pos_margin is -s > -pos_margin, and so on
    rules = ((">", 0, _threshold(ctx, pos_t)), ("<", 0, _threshold(ctx, neg_t)))
    return _mine_pairs(ctx, rules, max_pairs, random_state)


@_kernel_threads
def multi_similarity(embeddings, labels, ref_embeddings=None, ref_labels=None, *,
                     epsilon=0.1, distance="cosine", max_pairs=None, random_state=None,
                     block_size=None, n_jobs=None):
    """Pairs that violate the multi-similarity rule (PML's ``MultiSimilarityMiner``).

    With cosine similarity (PML's default for this miner): positives with
    ``s_ap - epsilon < max_n s_an`` and negatives with ``s_an + epsilon >
    min_p s_ap`` of the same anchor; with Euclidean distance the mirrored rule
    (``d_ap + epsilon > min d_an``, ``d_an - epsilon < max d_ap``).

    Parameters
    ----------
    embeddings, labels, ref_embeddings, ref_labels, block_size, n_jobs
        As in :func:`pair_margin`.
    epsilon : float, default=0.1
    distance : {"cosine", "euclidean"}, default="cosine"
    max_pairs : int, optional
        At most this many pairs of each kind, uniformly without replacement.
    random_state : int, RandomState instance or None

    Returns
    -------
    anchor_p, positive, anchor_n, negative : ndarray of int64
        The same sets as PML; PML lists each anchor's pairs in order of
        similarity, hnm by reference index.

    See Also
    --------
    pair_margin, batch_hard

    Examples
    --------
    >>> from hnm.miners import multi_similarity
    >>> pairs = multi_similarity([[1, 0], [.6, .8], [.8, .6], [0, 1]], [0, 0, 1, 1])
    >>> [(int(a), int(n)) for a, n in zip(*pairs[2:])]
    [(0, 2), (1, 2), (1, 3), (2, 0), (2, 1), (3, 1)]
    """
    ctx = _Ctx(embeddings, labels, ref_embeddings, ref_labels, distance, block_size, n_jobs)
    eps = ctx.dtype.type(check_real(epsilon, "epsilon"))
    max_pairs = _check_max(max_pairs, "max_pairs")
    # farthest positive and closest negative of every anchor, exactly, by the
    # kernel that then tests the pairs (the bounds are the keys it compares)
    far_pos, near_neg = _threshold(ctx, -np.inf), _threshold(ctx, np.inf)
    _scan(ctx, "bounds", ((">", 0, None), ("<", 0, None)), (far_pos, near_neg))
    # s_ap - eps < max s_an and s_an + eps > min s_ap, on keys (larger is farther)
    rules = ((">", eps, near_neg), ("<", -eps, far_pos))
    return _mine_pairs(ctx, rules, max_pairs, random_state)


def _margin_counts(Dn, Dp, t):
    """For each positive key, how many sorted negative keys give
    ``fl(Dn - Dp) <= t`` (a prefix: rounding is monotone)."""
    N = Dn.size
    if N == 0 or Dp.size == 0:
        return np.zeros(Dp.size, dtype=np.int64)
    idx = np.searchsorted(Dn, Dp + t, side="right").astype(np.int64)
    while True:  # fix the rounding of Dp + t: move right while the rule holds
        m = idx < N
        move = np.zeros(idx.size, dtype=bool)
        move[m] = (Dn[idx[m]] - Dp[m]) <= t
        if not move.any():
            break
        idx[move] += 1
    while True:  # and left while it fails
        m = idx > 0
        move = np.zeros(idx.size, dtype=bool)
        move[m] = ~((Dn[idx[m] - 1] - Dp[m]) <= t)
        if not move.any():
            break
        idx[move] -= 1
    return idx


_TRIPLET_TYPES = ("all", "hard", "semihard", "easy")


@_kernel_threads
def triplet_margin(embeddings, labels, ref_embeddings=None, ref_labels=None, *,
                   margin=0.2, type_of_triplets="all", distance="euclidean",
                   max_triplets=None, random_state=None, block_size=None, n_jobs=None):
    """Triplets by their margin ``m = d(a, n) - d(a, p)`` (PML's ``TripletMarginMiner``).

    "all": ``m <= margin``; "hard": ``m <= margin`` and ``m <= 0``; "semihard":
    ``0 < m <= margin``; "easy": ``m > margin``. With ``distance="cosine"``,
    ``m = s(a, p) - s(a, n)``, as PML inverts it.

    The triplets are never formed one by one: per anchor the negatives' keys are
    sorted once and each positive's valid negatives are a contiguous run of
    them, found by binary search on the exact float rule. Counting is
    ``O(n_refs log n_refs)`` per anchor, memory a block of anchor rows.

    Parameters
    ----------
    embeddings, labels, ref_embeddings, ref_labels, block_size, n_jobs
        As in :func:`pair_margin`.
    margin : float, default=0.2
    type_of_triplets : {"all", "hard", "semihard", "easy"}, default="all"
    distance : {"euclidean", "cosine"}, default="euclidean"
    max_triplets : int, optional
        At most this many triplets, drawn uniformly without replacement from the
        full set (exact size ``min(max_triplets, n_triplets)``), seeded by
        ``random_state``. Without it the whole set is returned (``n^3``).
    random_state : int, RandomState instance or None

    Returns
    -------
    anchor, positive, negative : ndarray of int64
        Sorted lexicographically, PML's order. A triplet whose margin is within
        float rounding of a bound can differ from PML's.

    See Also
    --------
    batch_hard, batch_easy_hard, angular

    Examples
    --------
    Two anchors have a negative closer than their positive:

    >>> import numpy as np
    >>> from hnm import miners
    >>> x = np.array([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0]])
    >>> np.stack(miners.triplet_margin(x, [0, 0, 1, 1], type_of_triplets="hard"), axis=1)
    array([[1, 0, 2],
           [2, 3, 1]])
    """
    ctx = _Ctx(embeddings, labels, ref_embeddings, ref_labels, distance, block_size, n_jobs)
    t = ctx.dtype.type(check_real(margin, "margin"))
    kind = check_option(type_of_triplets, "type_of_triplets", _TRIPLET_TYPES)
    max_triplets = _check_max(max_triplets, "max_triplets")
    zero = ctx.dtype.type(0)

    def per_anchor(K, same, diff, i):
        """Positive ids, sorted-negative order and each positive's run [lo, hi)."""
        p = np.flatnonzero(same[i])
        neg = np.flatnonzero(diff[i])
        order = neg[np.argsort(K[i, neg], kind="stable")]
        Dn = K[i, order]
        Dp = K[i, p]
        cm = _margin_counts(Dn, Dp, t)
        if kind == "all":
            lo, hi = np.zeros_like(cm), cm
        elif kind == "easy":
            lo, hi = cm, np.full_like(cm, Dn.size)
        else:
            c0 = _margin_counts(Dn, Dp, zero)
            if kind == "hard":
                lo, hi = np.zeros_like(cm), np.minimum(cm, c0)
            else:
                lo, hi = c0, np.maximum(cm, c0)
        return p, order, lo, hi

    def emit(a, p, order, lo, hi, ranks=None):
        lengths = hi - lo
        if ranks is None:
            rep = np.repeat(np.arange(p.size), lengths)
            within = np.arange(rep.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        else:
            ends = np.cumsum(lengths)
            rep = np.searchsorted(ends, ranks, side="right")
            within = ranks - (ends[rep] - lengths[rep])
        return (np.full(rep.size, a, dtype=np.int64), p[rep].astype(np.int64),
                order[lo[rep] + within].astype(np.int64))

    A, P, N = [], [], []
    if max_triplets is None:
        for r0, r1, K, same, diff in ctx.row_blocks():
            for i in range(r1 - r0):
                p, order, lo, hi = per_anchor(K, same, diff, i)
                if p.size and order.size:
                    for lst, v in zip((A, P, N), emit(r0 + i, p, order, lo, hi)):
                        lst.append(v)
    else:
        totals = np.zeros(ctx.n_a, dtype=np.int64)
        for r0, r1, K, same, diff in ctx.row_blocks():
            for i in range(r1 - r0):
                p, order, lo, hi = per_anchor(K, same, diff, i)
                totals[r0 + i] = int((hi - lo).sum()) if p.size else 0
        starts = np.concatenate([[0], np.cumsum(totals)])
        chosen = _choose(check_random_state(random_state), int(starts[-1]), max_triplets)
        owner = np.searchsorted(starts, chosen, side="right") - 1
        need = np.unique(owner)
        for r0, r1, K, same, diff in _needed_row_blocks(ctx, need):
            for a in need[(need >= r0) & (need < r1)]:
                p, order, lo, hi = per_anchor(K, same, diff, a - r0)
                ranks = chosen[owner == a] - starts[a]
                for lst, v in zip((A, P, N), emit(a, p, order, lo, hi, ranks)):
                    lst.append(v)
    if not A:
        return _EMPTY.copy(), _EMPTY.copy(), _EMPTY.copy()
    return _lexsorted(np.concatenate(A), np.concatenate(P), np.concatenate(N))


def _needed_row_blocks(ctx, need):
    """Full-row blocks covering only the anchors in ``need`` (sorted)."""
    br = max(1, min(ctx.n_a, _ROW_VALUES // max(ctx.n_r, 1)))
    i = 0
    while i < need.size:
        r0 = int(need[i])
        r1 = min(r0 + br, ctx.n_a)
        yield (r0, r1, *ctx._full_rows(r0, r1))
        i = int(np.searchsorted(need, r1))


_STRATEGIES = ("hard", "semihard", "easy", "all")


def _check_range(value, name, ctx):
    if value is None:
        return None
    try:
        lo, hi = value
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a (low, high) pair, got {value!r}.") from None
    lo = ctx.dtype.type(check_real(lo, f"{name} low"))
    hi = ctx.dtype.type(check_real(hi, f"{name} high"))
    # PML masks values outside [low, high]; on cosine keys (-s) that is [-high, -low]
    return (-hi, -lo) if ctx.distance == "cosine" else (lo, hi)


@_kernel_threads
def batch_easy_hard(embeddings, labels, ref_embeddings=None, ref_labels=None, *,
                    pos_strategy="easy", neg_strategy="semihard", allowed_pos_range=None,
                    allowed_neg_range=None, distance="euclidean", max_pairs=None,
                    random_state=None, block_size=None, n_jobs=None):
    """One positive and one negative per anchor by strategy (PML's ``BatchEasyHardMiner``).

    Positives: "hard" the farthest, "easy" the closest, "semihard" the farthest
    still closer than the anchor's chosen negative; negatives: "hard" the
    closest, "easy" the farthest, "semihard" the closest still farther than the
    anchor's chosen positive; "all" keeps every pair of that kind. Only values
    within ``allowed_pos_range`` / ``allowed_neg_range`` (inclusive, in the
    distance's units) are candidates. An anchor is returned when both of its
    choices exist.

    Without ranges and "semihard", the choices come from hnm's exact blocked
    search (``hnm.search_hard_pairs``; per label for positives), so an
    ``np.memmap`` of millions of references costs memory for its blocks only.

    Parameters
    ----------
    embeddings, labels, ref_embeddings, ref_labels, n_jobs
        As in :func:`pair_margin`.
    pos_strategy, neg_strategy : {"hard", "semihard", "easy", "all"}
        Default "easy" and "semihard", PML's; not both "semihard", and
        "semihard" not with "all".
    allowed_pos_range, allowed_neg_range : (float, float), optional
    distance : {"euclidean", "cosine"}, default="euclidean"
    max_pairs : int, optional
        With an "all" strategy: at most this many pairs of that kind, uniformly
        without replacement.
    random_state : int, RandomState instance or None
    block_size : int, optional
        References per distance tile or search block.

    Returns
    -------
    anchor_p, positive, anchor_n, negative : ndarray of int64
        Sorted by anchor. Ties go to the smaller index (as ``torch.min``).

    See Also
    --------
    batch_hard, triplet_margin

    Examples
    --------
    PML's default: the closest positive, and the closest negative farther
    than it.

    >>> from hnm import miners
    >>> x = [[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0]]
    >>> anchors, positives, _, negatives = miners.batch_easy_hard(x, [0, 0, 1, 1])
    >>> print(anchors, positives, negatives)
    [0 1 2 3] [1 0 3 2] [2 3 0 1]
    """
    ctx = _Ctx(embeddings, labels, ref_embeddings, ref_labels, distance, block_size, n_jobs)
    pos_s = check_option(pos_strategy, "pos_strategy", _STRATEGIES)
    neg_s = check_option(neg_strategy, "neg_strategy", _STRATEGIES)
    if pos_s == neg_s == "semihard":
        raise ValueError('pos_strategy and neg_strategy cannot both be "semihard".')
    if "all" in (pos_s, neg_s) and "semihard" in (pos_s, neg_s):
        raise ValueError('"semihard" cannot be used in combination with "all".')
    pr = _check_range(allowed_pos_range, "allowed_pos_range", ctx)
    nr = _check_range(allowed_neg_range, "allowed_neg_range", ctx)
    max_pairs = _check_max(max_pairs, "max_pairs")
    # on keys (larger is farther): hard/semihard positive = max, easy = min;
    # hard/semihard negative = min, easy = max
    pos_largest = pos_s in ("hard", "semihard")
    neg_largest = neg_s == "easy"
    pos = neg = None
    # semihard compares with the other side's chosen key: both from the tiles,
    # so that the threshold is the key the comparison sees
    if pos_s == "semihard":
        (neg,) = _best_tiles(ctx, [(False, neg_largest, None, nr)])
        (pos,) = _best_tiles(ctx, [(True, True, neg[1], pr)])
    elif neg_s == "semihard" and _searchable(ctx, [(True, pos_largest, None, pr),
                                                   (False, False, None, nr)]):
        # the closest negative farther than the positive: the search with a cap
        # just below the positive's similarity (the search keeps scores <= cap)
        p_idx, p_sim = _best_search(ctx, True, nearest=not pos_largest)
        cap = np.where(p_idx >= 0, np.nextafter(p_sim, -np.inf), -np.inf).astype(ctx.dtype)
        n_idx, _ = _best_search(ctx, False, nearest=True, cap=cap)
        pos, neg = (p_idx, None), (n_idx, None)
    elif neg_s == "semihard":
        (pos,) = _best_tiles(ctx, [(True, pos_largest, None, pr)])
        (neg,) = _best_tiles(ctx, [(False, False, pos[1], nr)])
    else:
        specs = []
        if pos_s != "all":
            specs.append((True, pos_largest, None, pr))
        if neg_s != "all":
            specs.append((False, neg_largest, None, nr))
        got = _extremes(ctx, specs) if specs else []
        if pos_s != "all":
            pos = got.pop(0)
        if neg_s != "all":
            neg = got.pop(0)
    if pos is not None and neg is not None:
        keep = np.flatnonzero((pos[0] >= 0) & (neg[0] >= 0)).astype(np.int64)
        return keep, pos[0][keep], keep.copy(), neg[0][keep]

    every = (">", 0, _threshold(ctx, -np.inf))  # every finite key
    a1, p, a2, n = _mine_pairs(ctx, (every if pos is None else None,
                                     every if neg is None else None), max_pairs, random_state)
    if pos is not None:
        a1 = np.flatnonzero(pos[0] >= 0).astype(np.int64)
        p = pos[0][a1]
    if neg is not None:
        a2 = np.flatnonzero(neg[0] >= 0).astype(np.int64)
        n = neg[0][a2]
    return a1, p, a2, n


@_kernel_threads
def batch_hard(embeddings, labels, ref_embeddings=None, ref_labels=None, *,
               distance="euclidean", block_size=None, n_jobs=None):
    """The farthest positive and the closest negative of every anchor (PML's
    ``BatchHardMiner``), exactly, with hnm's blocked search.

    Parameters
    ----------
    embeddings, labels, ref_embeddings, ref_labels
        As in :func:`pair_margin`; ``embeddings`` and ``ref_embeddings`` may be
        ``np.memmap`` arrays of any size.
    distance : {"euclidean", "cosine"}, default="euclidean"
        The same choices for both on rows of non-zero norm (Euclidean distance
        on unit rows is monotone in the cosine).
    block_size : int, optional
        Candidates per search block.
    n_jobs : int, optional
        Threads of the search (as in :func:`pair_margin`).

    Returns
    -------
    anchor, positive, negative : ndarray of int64
        Anchors that have a positive and a negative, ascending. Ties go to the
        smaller index, as ``torch.max``/``torch.min``; a near-tie within float
        rounding can go the other way.

    See Also
    --------
    batch_easy_hard, hnm.search_hard_pairs

    Examples
    --------
    >>> import torch  # doctest: +SKIP
    >>> from hnm.miners import batch_hard
    >>> emb = [[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0]]
    >>> triplets = batch_hard(emb, [0, 0, 1, 1])
    >>> triplets[1].tolist(), triplets[2].tolist()  # hardest positive, negative
    ([1, 0, 3, 2], [2, 2, 1, 1])
    >>> indices_tuple = tuple(map(torch.from_numpy, triplets))  # doctest: +SKIP
    """
    a, p, _, n = batch_easy_hard(embeddings, labels, ref_embeddings, ref_labels,
                                 pos_strategy="hard", neg_strategy="hard",
                                 distance=distance, block_size=block_size, n_jobs=n_jobs)
    return a, p, n


@_kernel_threads
def hdc(embeddings, labels, ref_embeddings=None, ref_labels=None, *,
        filter_percentage=0.5, distance="euclidean", max_pairs=None, random_state=None,
        block_size=None, n_jobs=None):
    """The hardest fraction of all positive and of all negative pairs (PML's ``HDCMiner``).

    Keeps the ``ceil(filter_percentage * n_pos)`` farthest positive pairs and
    the ``ceil(filter_percentage * n_neg)`` closest negative pairs of the whole
    set (similarity reversed for cosine). The cut value is found by an exact
    radix selection over the float keys in a few passes over the tiles, never
    holding all pairs.

    Parameters
    ----------
    embeddings, labels, ref_embeddings, ref_labels, block_size, n_jobs
        As in :func:`pair_margin`.
    filter_percentage : float, default=0.5
        In (0, 1].
    distance : {"euclidean", "cosine"}, default="euclidean"
    max_pairs : int, optional
        At most this many of the selected pairs of each kind, uniformly without
        replacement, seeded by ``random_state``.
    random_state : int, RandomState instance or None

    Returns
    -------
    anchor_p, positive, anchor_n, negative : ndarray of int64
        Sorted by anchor, then index. Pairs tied at the cut value are taken in
        that order; ``torch.topk`` takes an unspecified subset of such ties.

    See Also
    --------
    pair_margin, multi_similarity

    Examples
    --------
    The farthest quarter of the 4 positive pairs, the closest quarter of the 8
    negative pairs:

    >>> import numpy as np
    >>> from hnm import miners
    >>> got = miners.hdc(np.array([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0]]),
    ...                  np.array([0, 0, 1, 1]), filter_percentage=0.25)
    >>> [list(zip(got[k].tolist(), got[k + 1].tolist())) for k in (0, 2)]
    [[(0, 1)], [(1, 2), (2, 1)]]
    """
    ctx = _Ctx(embeddings, labels, ref_embeddings, ref_labels, distance, block_size, n_jobs)
    fp = check_real(filter_percentage, "filter_percentage")
    if not 0 < fp <= 1:
        raise ValueError(f"filter_percentage must be in (0, 1], got {filter_percentage!r}.")
    max_pairs = _check_max(max_pairs, "max_pairs")
    n_pos = n_neg = 0
    cnt_a = np.bincount(ctx.la, minlength=ctx.n_labels).astype(np.int64)
    cnt_r = np.bincount(ctx.lr, minlength=ctx.n_labels).astype(np.int64)
    n_pos = int((cnt_a * cnt_r).sum()) - (ctx.n_a if ctx.self_mode else 0)
    n_neg = ctx.n_a * ctx.n_r - int((cnt_a * cnt_r).sum())
    k_pos = int(math.ceil(fp * n_pos))
    k_neg = int(math.ceil(fp * n_neg))
    # positives: the k largest keys = the k smallest of -key
    sel = _radix_select(ctx, [(True, -1, k_pos), (False, 1, k_neg)])
    # the pairs strictly beyond each cut (-key < cut is key > -cut: negation is
    # exact), then the ties taken at the cut, by flat id
    rules = tuple(None if cut is None else (op, 0, _threshold(ctx, cut * sign))
                  for (cut, _, _), op, sign in zip(sel, (">", "<"), (-1, 1)))
    ties = [_EMPTY if cut is None else t for cut, _, t in sel]
    counts = None
    if max_pairs is not None:
        # a uniform draw from strict pairs and ties: how many of each, then which
        counts = (np.zeros(ctx.n_a, dtype=np.int64), np.zeros(ctx.n_a, dtype=np.int64))
        _scan(ctx, "count", rules, counts, symmetric=False)
        random_state = check_random_state(random_state)
        per_kind = []
        for kind in (0, 1):
            n_strict = int(counts[kind].sum())
            chosen = _choose(random_state, n_strict + ties[kind].size, max_pairs)
            ties[kind] = ties[kind][chosen[chosen >= n_strict] - n_strict]
            per_kind.append(int((chosen < n_strict).sum()))
        max_pairs = tuple(per_kind)
    out = _mine_pairs(ctx, rules, max_pairs, random_state, counts)
    res = []
    for kind in (0, 1):
        a, j = out[2 * kind], out[2 * kind + 1]
        if ties[kind].size:
            flat = a.astype(np.int64) * ctx.n_r + j
            at = np.searchsorted(flat, ties[kind])
            a = np.insert(a, at, ties[kind] // ctx.n_r)
            j = np.insert(j, at, ties[kind] % ctx.n_r)
        res += [a.astype(np.intp, copy=False), j.astype(np.intp, copy=False)]
    return tuple(res)


def _sortable(V):
    """Float keys mapped to unsigned integers of the same order."""
    u = np.dtype(f"u{V.dtype.itemsize}")
    bits = (V + V.dtype.type(0)).view(u)  # -0.0 -> +0.0: equal values, one code
    top = u.type(1 << (8 * V.dtype.itemsize - 1))
    return np.where(bits & top, ~bits, bits | top)


def _radix_select(ctx, specs):
    """For each ``(same, sign, k)``: the k-th smallest of ``sign * key`` over
    the pairs of that kind, exactly, by 16-bit radix passes over the tiles.
    Returns ``(cut, n_ties_to_take, tie_ids)`` per spec: every pair below
    ``cut`` and the first ``n_ties_to_take`` pairs equal to it (by flat id
    ``anchor * n_refs + ref``) make the selection."""
    bits = 8 * ctx.dtype.itemsize
    udt = np.dtype(f"u{ctx.dtype.itemsize}")
    state = []
    for same, sign, k in specs:
        state.append({"prefix": 0, "need": k, "done": k == 0})
    for shift in range(bits - 16, -1, -16):
        hists = [np.zeros(1 << 16, dtype=np.int64) for _ in specs]
        for r0, r1, c0, c1, K, same_m in ctx.tiles():
            for (same, sign, k), st, h in zip(specs, state, hists):
                if st["done"]:
                    continue
                m = same_m if same else (ctx.la[r0:r1, None] != ctx.lr[None, c0:c1])
                u = _sortable(K[m] * ctx.dtype.type(sign))
                if shift + 16 < bits:
                    u = u[(u >> udt.type(shift + 16)) == udt.type(st["prefix"])]
                h += np.bincount(((u >> udt.type(shift)) & udt.type(0xFFFF)).astype(np.intp),
                                 minlength=1 << 16)
        for st, h in zip(state, hists):
            if st["done"]:
                continue
            c = np.cumsum(h)
            digit = int(np.searchsorted(c, st["need"]))  # first digit reaching need
            st["need"] -= int(c[digit - 1]) if digit else 0
            st["prefix"] = (st["prefix"] << 16) | digit
    out = []
    for (same, sign, k), st in zip(specs, state):
        if st["done"]:
            out.append((None, 0, None))
            continue
        u = np.array(st["prefix"], dtype=udt)
        top = udt.type(1 << (bits - 1))
        raw = u ^ top if u & top else ~u
        cut = np.array([raw], dtype=udt).view(ctx.dtype)[0]
        out.append([cut, st["need"], None])
    # the ties at each cut: the smallest flat ids, as many as needed
    ties = [[] for _ in specs]
    for r0, r1, c0, c1, K, same_m in ctx.tiles():
        for (same, sign, k), o, tl in zip(specs, out, ties):
            if o[0] is None:
                continue
            m = same_m if same else (ctx.la[r0:r1, None] != ctx.lr[None, c0:c1])
            eq = np.nonzero(m & (K * ctx.dtype.type(sign) == o[0]))
            tl.append((eq[0] + r0).astype(np.int64) * ctx.n_r + eq[1] + c0)
    res = []
    for o, tl in zip(out, ties):
        if o[0] is None:
            res.append((None, 0, None))
            continue
        flat = np.sort(np.concatenate(tl))[:o[1]] if tl else _EMPTY
        res.append((o[0], o[1], flat))
    return res


@_kernel_threads
def distance_weighted(embeddings, labels, ref_embeddings=None, ref_labels=None, *,
                      cutoff=0.5, nonzero_loss_cutoff=1.4, random_state=None,
                      block_size=None, n_jobs=None):
    """Negatives drawn by inverse density of distances (PML's ``DistanceWeightedMiner``).

    Weights ``w(d) = d^(2-D) (1 - d^2/4)^((3-D)/2)`` (D the dimension) with
    ``d`` clamped at ``cutoff``, zero for ``d >= nonzero_loss_cutoff``, for
    same-label pairs and for weights that overflow; each anchor's weights are
    normalised over its references. As PML: for every anchor label (in sorted
    order), each of its anchors gets as many triplets as the label has
    references, a positive drawn uniformly (never itself) and a negative drawn
    from its weights; labels with too few positives or no negative, and anchors
    whose weights are all zero, are skipped. Euclidean distance only (PML
    asserts the same).

    Parameters
    ----------
    embeddings, labels, ref_embeddings, ref_labels, block_size, n_jobs
        As in :func:`pair_margin`.
    cutoff, nonzero_loss_cutoff : float, default=0.5, 1.4
    random_state : int, RandomState instance or None
        Seeds the draws (PML draws with torch's generator: the anchors are
        PML's, the positives and negatives follow the same distribution).

    Returns
    -------
    anchor, positive, negative : ndarray of int64
        In PML's order: by anchor label, then anchor.

    See Also
    --------
    triplet_margin, uniform_histogram

    Examples
    --------
    Each anchor gets as many triplets as its label has rows; the negatives
    are random:

    >>> from hnm.miners import distance_weighted
    >>> a, p, n = distance_weighted([[1, 0], [.8, .6], [.6, .8], [0, 1]], [0, 0, 1, 1],
    ...                             random_state=0)
    >>> a
    array([0, 0, 1, 1, 2, 2, 3, 3])
    >>> p
    array([1, 1, 0, 0, 3, 3, 2, 2])
    """
    ctx = _Ctx(embeddings, labels, ref_embeddings, ref_labels, "euclidean", block_size, n_jobs)
    lo = ctx.dtype.type(check_real(cutoff, "cutoff"))
    hi = ctx.dtype.type(check_real(nonzero_loss_cutoff, "nonzero_loss_cutoff"))
    rng = check_random_state(random_state)
    D = ctx.dtype.type(float(ctx.dim))
    two, three, quarter, one = (ctx.dtype.type(v) for v in (2, 3, 0.25, 1))

    def log_w(K):
        m = np.maximum(K, lo)
        with np.errstate(divide="ignore", invalid="ignore"):
            lw = (two - D) * np.log(m) - ((D - three) / two) * np.log(one - quarter * m ** two)
        bad = ~np.isfinite(lw)
        return lw, bad, m

    # pass 1: PML subtracts the largest finite log-weight of the whole matrix
    # (same-label entries count as 0): it decides which rows underflow
    gmax = -np.inf
    for r0, r1, c0, c1, K, same in ctx.tiles():
        lw, bad, _ = log_w(K)
        same_lab = ctx.la[r0:r1, None] == ctx.lr[None, c0:c1]
        lw[same_lab] *= 0
        if (~bad).any():
            gmax = max(gmax, float(lw[~bad].max()))
    gmax = ctx.dtype.type(gmax)

    # which anchors take part, and how many triplets each gets (PML's loop)
    cnt_r = np.bincount(ctx.lr, minlength=ctx.n_labels)
    n_neg = ctx.n_r - cnt_r
    need_p = 2 if ctx.self_mode else 1
    ok_label = (cnt_r >= need_p) & (n_neg >= 1)
    per_anchor = np.where(ok_label[ctx.la], cnt_r[ctx.la], 0).astype(np.int64)
    # written in place in PML's order (by anchor label, then anchor): no lists
    # of pieces and no final sort, whose copies would triple the result's size
    pml = np.argsort(ctx.la, kind="stable")
    start = np.empty(ctx.n_a, dtype=np.int64)
    start[pml] = np.cumsum(per_anchor[pml]) - per_anchor[pml]
    P = np.empty(int(per_anchor.sum()), dtype=np.intp)
    N = np.empty_like(P)
    used = np.zeros(ctx.n_a, dtype=bool)
    order_r = np.argsort(ctx.lr, kind="stable")
    bounds_r = np.searchsorted(ctx.lr[order_r], np.arange(ctx.n_labels + 1))
    for r0, r1, K, same, diff in ctx.row_blocks():
        lw, bad, m = log_w(K)
        lw[~diff] *= 0
        with np.errstate(over="ignore", under="ignore", invalid="ignore"):
            w = np.exp(lw - gmax)
            w *= diff
            w *= m < hi  # PML compares the clamped distances
        w[bad] = 0
        sums = w.sum(axis=1, dtype=ctx.dtype)
        for i in range(r1 - r0):
            a = r0 + i
            k = int(per_anchor[a])
            if k == 0 or not sums[i] > 0:
                continue
            lab = ctx.la[a]
            members = order_r[bounds_r[lab]:bounds_r[lab + 1]]
            if ctx.self_mode:
                members = members[members != a]
            p = members[rng.randint(0, members.size, size=k)]
            cdf = np.cumsum(w[i] / sums[i], dtype=np.float64)
            u = rng.random_sample(k) * cdf[-1]
            n = np.minimum(np.searchsorted(cdf, u, side="right"), ctx.n_r - 1)
            # never a zero-weight reference (u can land on a flat step's edge)
            zero = w[i, n] == 0
            while zero.any():
                u2 = rng.random_sample(int(zero.sum())) * cdf[-1]
                n[zero] = np.minimum(np.searchsorted(cdf, u2, side="right"), ctx.n_r - 1)
                zero = w[i, n] == 0
            P[start[a]:start[a] + k] = p
            N[start[a]:start[a] + k] = n
            used[a] = True
    A = np.repeat(pml, np.where(used, per_anchor, 0)[pml]).astype(np.intp)
    if A.size < P.size:  # anchors whose weights are all zero: drop their slots
        keep = np.repeat(used[pml], per_anchor[pml])
        P, N = P[keep], N[keep]
    return A, P, N


@_kernel_threads
def angular(embeddings, labels, ref_embeddings=None, ref_labels=None, *, angle=20,
            max_triplets=None, random_state=None, block_size=None, n_jobs=None):
    """Triplets whose angle at the negative exceeds ``angle`` degrees (PML's ``AngularMiner``).

    The angle is ``atan(|a - p| / (2 |n - (a + p)/2|))`` on the embeddings as
    given (PML's ``pairwise_distance`` does not normalise them, and adds 1e-6
    to each difference, as here). The work is cubic: per anchor, every
    (positive, negative) pair is evaluated, in bounded tiles.

    Parameters
    ----------
    embeddings, labels, ref_embeddings, ref_labels
        As in :func:`pair_margin`.
    angle : float, default=20
        Degrees.
    max_triplets : int, optional
        At most this many triplets, uniformly without replacement.
    random_state : int, RandomState instance or None
    block_size : int, optional
        Negatives per tile.
    n_jobs : int, optional
        Threads, each evaluating one anchor at a time (numpy releases the GIL).

    Returns
    -------
    anchor, positive, negative : ndarray of int64
        Sorted lexicographically (PML's order).

    See Also
    --------
    triplet_margin

    Examples
    --------
    >>> from hnm import miners
    >>> for t in zip(*miners.angular([[1, 0], [.8, .6], [.6, .8], [0, 1]], [0, 0, 1, 1])):
    ...     print(*map(int, t))
    0 1 2
    1 0 2
    2 3 1
    3 2 1
    """
    ctx = _Ctx(embeddings, labels, ref_embeddings, ref_labels, "euclidean", block_size, n_jobs)
    thr = ctx.dtype.type(np.radians(check_real(angle, "angle")))
    max_triplets = _check_max(max_triplets, "max_triplets")
    eps = ctx.dtype.type(1e-6)
    two = ctx.dtype.type(2)
    order_r = np.argsort(ctx.lr, kind="stable")
    bounds_r = np.searchsorted(ctx.lr[order_r], np.arange(ctx.n_labels + 1))

    def anchor_masks(a):
        """Yield (positives, negatives, mask) tiles of anchor ``a``."""
        lab = ctx.la[a]
        pos = order_r[bounds_r[lab]:bounds_r[lab + 1]]
        if ctx.self_mode:
            pos = pos[pos != a]
        if pos.size == 0:
            return
        neg = np.flatnonzero(ctx.lr != lab)
        if neg.size == 0:
            return
        x = as_working(ctx.E[a:a + 1], ctx.dtype, "embeddings")[0]
        bn = max(1, min(ctx.block, neg.size))
        bp = max(1, _TILE_VALUES // (bn * ctx.dim))
        for p0 in range(0, pos.size, bp):
            pp = pos[p0:p0 + bp]
            Y = as_working(ctx.R[pp], ctx.dtype, "ref_embeddings")
            ap = np.sqrt(((x - Y + eps) ** 2).sum(axis=1))
            centers = (x + Y) / two
            for n0 in range(0, neg.size, bn):
                nn = neg[n0:n0 + bn]
                Z = as_working(ctx.R[nn], ctx.dtype, "ref_embeddings")
                nc = np.sqrt(((Z[None, :, :] - centers[:, None, :] + eps) ** 2).sum(axis=2))
                with np.errstate(divide="ignore", invalid="ignore"):
                    ang = np.arctan(ap[:, None] / (two * nc))
                yield pp, nn, ang > thr

    def triplets(a, ranks=None):
        """Anchor ``a``'s triplets (those of the given ranks among them)."""
        out, seen = [], 0
        for pp, nn, m in anchor_masks(a):
            i, j = np.nonzero(m)
            if ranks is not None:
                sel = ranks[(ranks >= seen) & (ranks < seen + i.size)] - seen
                seen += i.size
                i, j = i[sel], j[sel]
            out.append((np.full(i.size, a, dtype=np.int64), pp[i], nn[j]))
        return out

    if max_triplets is None:
        parts = _per_anchor(ctx, triplets, range(ctx.n_a))
    else:
        totals = np.array(_per_anchor(ctx, lambda a: sum(
            int(np.count_nonzero(m)) for _, _, m in anchor_masks(a)), range(ctx.n_a)),
            dtype=np.int64).reshape(-1)
        starts = np.concatenate([[0], np.cumsum(totals)])
        chosen = _choose(check_random_state(random_state), int(starts[-1]), max_triplets)
        owner = np.searchsorted(starts, chosen, side="right") - 1
        parts = _per_anchor(ctx, lambda a: triplets(a, chosen[owner == a] - starts[a]),
                            [int(a) for a in np.unique(owner)])
    parts = [t for per in parts for t in per]
    A, P, N = ([t[c] for t in parts] for c in range(3))
    if not A:
        return _EMPTY.copy(), _EMPTY.copy(), _EMPTY.copy()
    return _lexsorted(np.concatenate(A), np.concatenate(P).astype(np.int64),
                      np.concatenate(N).astype(np.int64))


def _per_anchor(ctx, f, anchors):
    """``[f(a) for a in anchors]``, on ``n_jobs`` threads (numpy's elementwise
    work releases the GIL)."""
    anchors = list(anchors)
    if ctx.n_threads <= 1 or len(anchors) < 2:
        return [f(a) for a in anchors]
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(min(ctx.n_threads, len(anchors))) as pool:
        return list(pool.map(f, anchors))


@_kernel_threads
def uniform_histogram(embeddings, labels, ref_embeddings=None, ref_labels=None, *,
                      num_bins=100, pos_per_bin=10, neg_per_bin=10, distance="euclidean",
                      random_state=None, block_size=None, n_jobs=None):
    """Pairs drawn evenly across a histogram of their distances (PML's
    ``UniformHistogramMiner``).

    Positive pairs' values are split into ``num_bins`` equal bins between their
    minimum and maximum (each bin ``[s, e)``, the last ``[s, e]``); from every
    non-empty bin ``pos_per_bin`` pairs are drawn uniformly with replacement.
    The same for negative pairs with ``neg_per_bin``. Three passes over
    blocks of anchor rows (range, counts, draws), never holding all pairs.

    Parameters
    ----------
    embeddings, labels, ref_embeddings, ref_labels, block_size, n_jobs
        As in :func:`pair_margin`.
    num_bins, pos_per_bin, neg_per_bin : int, default=100, 10, 10
    distance : {"euclidean", "cosine"}, default="euclidean"
    random_state : int, RandomState instance or None
        Seeds the draws (PML uses torch's generator: the bins and the counts per
        bin are PML's, the pairs drawn follow the same distribution).

    Returns
    -------
    anchor_p, positive, anchor_n, negative : ndarray of int64
        Bin by bin, as PML. The bin edges are computed as ``torch.linspace``
        does, up to rounding: a pair on an edge can fall in the neighbouring bin.

    See Also
    --------
    distance_weighted, pair_margin

    Examples
    --------
    The positive distances (all near 0.1) fill one bin of 2: 3 draws; the
    negative ones both bins: 1 draw each.

    >>> import numpy as np
    >>> from hnm import miners
    >>> a1, p, a2, n = miners.uniform_histogram(
    ...     np.eye(2)[[0, 0, 1, 1]] + [[0, 0], [0, .1], [0, 0], [.1, 0]], [0, 0, 1, 1],
    ...     num_bins=2, pos_per_bin=3, neg_per_bin=1, random_state=0)
    >>> len(a1), len(a2)
    (3, 2)
    """
    ctx = _Ctx(embeddings, labels, ref_embeddings, ref_labels, distance, block_size, n_jobs)
    num_bins = check_int(num_bins, "num_bins", min_value=1)
    per_bin = (check_int(pos_per_bin, "pos_per_bin", min_value=1),
               check_int(neg_per_bin, "neg_per_bin", min_value=1))
    rng = check_random_state(random_state)
    sign = ctx.dtype.type(-1 if ctx.distance == "cosine" else 1)  # raw values from keys

    def kinds(same, diff):
        yield 0, same
        yield 1, diff

    lo = [np.inf, np.inf]
    hi = [-np.inf, -np.inf]
    for r0, r1, K, same, diff in ctx.row_blocks():
        V = K * sign
        for kind, m in kinds(same, diff):
            if m.any():
                lo[kind] = min(lo[kind], V[m].min())
                hi[kind] = max(hi[kind], V[m].max())
    edges = [None if lo[k] > hi[k] else _linspace(lo[k], hi[k], num_bins + 1, ctx.dtype)
             for k in (0, 1)]

    def bins(V, kind):
        b = np.searchsorted(edges[kind], V, side="right") - 1
        return np.minimum(b, num_bins - 1)

    counts = [np.zeros(num_bins, dtype=np.int64) for _ in (0, 1)]
    tile_counts = [[], []]
    for r0, r1, K, same, diff in ctx.row_blocks():
        V = K * sign
        for kind, m in kinds(same, diff):
            if edges[kind] is None:
                tile_counts[kind].append(np.zeros(num_bins, dtype=np.int64))
                continue
            h = np.bincount(bins(V[m], kind), minlength=num_bins)
            tile_counts[kind].append(h)
            counts[kind] += h
    # draws: per non-empty bin, per_bin ranks with replacement (order of draw kept)
    draws = []
    for kind in (0, 1):
        bins_of, ranks = [], []
        for b in np.flatnonzero(counts[kind]):
            bins_of.append(np.full(per_bin[kind], b))
            ranks.append(rng.randint(0, counts[kind][b], size=per_bin[kind]))
        draws.append((np.concatenate(bins_of) if bins_of else _EMPTY,
                      np.concatenate(ranks) if ranks else _EMPTY))
    got = [(np.full(draws[k][0].size, -1, np.int64), np.full(draws[k][0].size, -1, np.int64))
           for k in (0, 1)]
    seen = [np.zeros(num_bins, dtype=np.int64) for _ in (0, 1)]
    for t, (r0, r1, K, same, diff) in enumerate(ctx.row_blocks()):
        V = K * sign
        for kind, m in kinds(same, diff):
            h = tile_counts[kind][t]
            if not h.any():
                continue
            bsel, rsel = draws[kind]
            local = rsel - seen[kind][bsel]
            want = np.flatnonzero((local >= 0) & (local < h[bsel]))
            if want.size:
                a, j = np.nonzero(m)
                bb = bins(V[a, j], kind)
                order = np.argsort(bb, kind="stable")
                start = np.concatenate([[0], np.cumsum(h)])
                pos = order[start[bsel[want]] + local[want]]
                got[kind][0][want] = a[pos] + r0
                got[kind][1][want] = j[pos]
            seen[kind] += h
    return got[0][0], got[0][1], got[1][0], got[1][1]


def _linspace(start, stop, steps, dtype):
    """``torch.linspace(start, stop, steps)`` in ``dtype``: from the start for
    the first half, from the stop for the second (torch's symmetric formula)."""
    start, stop = dtype.type(start), dtype.type(stop)
    if steps == 1:
        return np.array([start], dtype=dtype)
    step = (stop - start) / dtype.type(steps - 1)
    i = np.arange(steps)
    half = steps // 2
    out = np.where(i < half, start + step * i.astype(dtype),
                   stop - step * (steps - 1 - i).astype(dtype))
    return out.astype(dtype)
