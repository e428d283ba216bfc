"""Fused kernels of :mod:`hnm.miners`: distance tiles by BLAS GEMM inside OpenMP
threads (BLAS single-threaded inside: the caller limits it), each key tested
as it is computed, and only the qualifying (anchor, reference) pairs kept.

Keys are "larger is farther": ``-s`` for cosine, ``sqrt(max(|x^|^2 + |y^|^2 -
2 s, 0))`` for Euclidean, with ``s = (x . y) * inv_x * inv_y``: the operations,
in the order, of ``hnm.miners``' tiles, so a key is the same wherever it is
computed (up to the GEMM's shape).

:func:`scan` walks anchor blocks (one thread each) through every reference
block of ``R``. Same-label pairs (kind 0) and different-label pairs (kind 1)
each have a rule ``fl(key + off) > thr[i]`` or ``fl(key + off) < thr[i]``; the
self pair (same global id) is never of either kind in self mode. Modes:

* BOUNDS: per anchor, the largest same-label key and the smallest
  different-label key (in place, running over calls);
* COUNT: per anchor, how many pairs of each kind pass (added in place);
* EMIT: the passing pairs, as ``(anchor id, reference id)`` arrays sorted by
  anchor (in ``A``'s order), then reference;
* SELECT: as EMIT, keeping only the pairs whose rank among their anchor's
  passing pairs (counted in ``seen``, running over calls) is the next of the
  anchor's sorted chosen ranks ``chosen[ptr[i]:end[i]]`` (``ptr`` advances).
"""
from cython.parallel cimport prange, threadid
from libc.math cimport sqrt, sqrtf, INFINITY
from libc.stdlib cimport malloc, realloc, free, calloc
from libc.string cimport memcpy
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t
from _gemm cimport gemm_bt

import numpy as np

from _typedefs cimport intp_t, float32_t, floating

cdef enum:
    BOUNDS = 0
    COUNT = 1
    EMIT = 2
    SELECT = 3

cdef enum:
    OP_GT = 0
    OP_LT = 1

MODES = {"bounds": BOUNDS, "count": COUNT, "emit": EMIT, "select": SELECT}
OPS = {">": OP_GT, "<": OP_LT}

cdef enum:
    BM = 64     # anchors per thread task
    BN = 1024   # references per GEMM tile


cdef extern from *:
    """
    /* the key loops vectorise only if sqrt need not set errno (its argument is
       never negative there) */
    #if defined(__GNUC__) && !defined(__clang__)
    #pragma GCC optimize ("no-math-errno")
    #endif
    """


cdef inline void _row_keys(floating* row, intp_t nb, floating ia, floating qa,
                           const floating* ir, const floating* qr, bint cosine) noexcept nogil:
    """A row of dot products becomes a row of keys, as :func:`_key` computes them."""
    cdef intp_t j
    cdef floating s, t
    if cosine:
        for j in range(nb):
            s = row[j] * ia
            row[j] = -(s * ir[j])
        return
    for j in range(nb):
        s = row[j] * ia
        s = s * ir[j]
        t = s * <floating> -2.0
        t = t + qa
        t = t + qr[j]
        t = t if t > 0 else <floating> 0
        if floating is float32_t:
            row[j] = sqrtf(t)
        else:
            row[j] = sqrt(t)


cdef inline floating _sq(floating dot, floating ia, floating qa, floating ir,
                         floating qr) noexcept nogil:
    """The squared distance before its root, as :func:`_row_keys` computes it."""
    cdef floating s = dot * ia
    cdef floating t
    s = s * ir
    t = s * <floating> -2.0
    t = t + qa
    t = t + qr
    return t if t > 0 else <floating> 0


cdef inline bint _root_passes(floating t, int op, floating off, floating thr) noexcept nogil:
    cdef floating key
    if floating is float32_t:
        key = sqrtf(t)
    else:
        key = sqrt(t)
    key = key + off
    return key > thr if op == OP_GT else key < thr


cdef inline floating _of_bits(int64_t b, floating like) noexcept nogil:
    cdef uint32_t u32
    cdef uint64_t u64
    cdef float f
    cdef double g
    if floating is float32_t:
        u32 = <uint32_t> b
        memcpy(&f, &u32, 4)
        return f
    else:
        u64 = <uint64_t> b
        memcpy(&g, &u64, 8)
        return g


cdef inline floating _squared_bound(int op, floating off, floating thr) noexcept nogil:
    """The Euclidean rule ``fl(sqrt(t)) + off op thr`` on the squared distance
    ``t >= 0``, exactly: fl(sqrt) and the sum are monotone, so the passing t
    are those >= the returned bound (op ">"; +inf: none) or <= it (op "<";
    -inf: none). Found by bisection on the float's bits (non-negative floats
    are ordered as their bits)."""
    cdef int64_t lo = -1, mid
    cdef int64_t hi = 0x7F800000 if floating is float32_t else 0x7FF0000000000000
    cdef int64_t top = hi
    cdef bint up = op == OP_GT  # the passing t: an upper set (">") or a lower one
    # bisect [0, top) for the edge: smallest passing bits (">"; hi = top: none)
    # or largest passing bits ("<"; lo = -1: none)
    while hi - lo > 1:
        mid = lo + (hi - lo) // 2
        if _root_passes(_of_bits(mid, off), op, off, thr) == up:
            hi = mid
        else:
            lo = mid
    if up:
        return <floating> INFINITY if hi == top else _of_bits(hi, off)
    return -<floating> INFINITY if lo == -1 else _of_bits(lo, off)


cdef inline void _flags_l2(const floating* row, intp_t nb, floating ia, floating qa,
                           const floating* ir, const floating* qr, const int32_t* lr,
                           int32_t lab, floating g0, floating b0, floating g1, floating b1,
                           unsigned char* flags) noexcept nogil:
    """flags[j] = g * t >= b for the pair's kind (t the squared distance)."""
    cdef intp_t j
    cdef floating t
    cdef bint same
    for j in range(nb):
        t = _sq(row[j], ia, qa, ir[j], qr[j])
        same = lr[j] == lab
        flags[j] = t * (g0 if same else g1) >= (b0 if same else b1)


cdef inline void _flags_cos(const floating* row, intp_t nb, floating ia, const floating* ir,
                            const int32_t* lr, int32_t lab, floating s0, floating o0,
                            floating t0, floating s1, floating o1, floating t1,
                            unsigned char* flags) noexcept nogil:
    """flags[j] = sgn * (key + off) > sgn * thr for the pair's kind (key = -s)."""
    cdef intp_t j
    cdef floating v, s
    cdef bint same
    for j in range(nb):
        s = row[j] * ia
        s = s * ir[j]
        same = lr[j] == lab
        v = -s + (o0 if same else o1)
        v = v * (s0 if same else s1)
        flags[j] = v > (t0 if same else t1)


cdef inline void _row_bounds(const floating* row, intp_t nb, floating ia, floating qa,
                             const floating* ir, const floating* qr, bint cosine,
                             const int32_t* lr, int32_t lab, intp_t me, floating* bmax,
                             floating* bmin) noexcept nogil:
    """The largest same-label key (``me``, the anchor itself, left out) and the
    smallest different-label key of a row of dot products, into the running
    bounds (Euclidean: over squared distances, rooted once: the root is monotone)."""
    cdef intp_t j
    cdef floating hi = -<floating> INFINITY, lo = <floating> INFINITY, v
    for j in range(nb):
        if cosine:
            v = row[j] * ia
            v = -(v * ir[j])
        else:
            v = _sq(row[j], ia, qa, ir[j], qr[j])
        if lr[j] == lab:
            if j != me and v > hi:
                hi = v
        elif v < lo:
            lo = v
    if not cosine:
        if floating is float32_t:
            hi = sqrtf(hi) if hi >= 0 else hi
            lo = sqrtf(lo)
        else:
            hi = sqrt(hi) if hi >= 0 else hi
            lo = sqrt(lo)
    if hi > bmax[0]:
        bmax[0] = hi
    if lo < bmin[0]:
        bmin[0] = lo


def squared_bound(op, off, thr, dtype):
    """:func:`_squared_bound` in ``dtype`` (float32 or float64), for tests."""
    if np.dtype(dtype) == np.float32:
        return float(_squared_bound[float32_t](op, <float32_t> off, <float32_t> thr))
    return float(_squared_bound[double](op, <double> off, <double> thr))


def keys_tile(const floating[:, ::1] A, const floating[::1] inv_a, const floating[::1] sq_a,
              const floating[:, ::1] R, const floating[::1] inv_r, const floating[::1] sq_r,
              bint cosine, floating[:, ::1] out, int n_threads):
    """``out`` (len(A) x len(R)) = the keys of every pair, rows in parallel."""
    cdef intp_t m = A.shape[0], n = R.shape[0], i, b
    cdef int d = <int> A.shape[1]
    cdef intp_t n_blocks = (m + BM - 1) // BM
    cdef intp_t i0, i1
    if m == 0 or n == 0:
        return
    if out.shape[0] != m or out.shape[1] != n or R.shape[1] != d:
        raise ValueError("keys_tile: shapes do not match")
    with nogil:
        for b in prange(n_blocks, schedule="dynamic", num_threads=n_threads):
            i0 = b * BM
            i1 = i0 + BM if i0 + BM < m else m
            gemm_bt(&R[0, 0], &A[i0, 0], &out[i0, 0], <int> n, <int> (i1 - i0), d)
            for i in range(i0, i1):
                _row_keys(&out[i, 0], n, inv_a[i], sq_a[i], &inv_r[0], &sq_r[0], cosine)


cdef struct Buf:
    int32_t* row
    int32_t* col
    intp_t size
    intp_t cap


cdef inline int _push(Buf* b, int32_t r, int32_t c) noexcept nogil:
    cdef intp_t cap
    cdef int32_t* p
    if b.size == b.cap:
        cap = 2 * b.cap if b.cap else 4096
        p = <int32_t*> realloc(b.row, cap * sizeof(int32_t))
        if p == NULL:
            return -1
        b.row = p
        p = <int32_t*> realloc(b.col, cap * sizeof(int32_t))
        if p == NULL:
            return -1
        b.col = p
        b.cap = cap
    b.row[b.size] = r
    b.col[b.size] = c
    b.size += 1
    return 0


cdef struct Rule:
    bint on
    int op
    double off
    const void* thr


cdef struct Select:
    int64_t* seen
    const int64_t* chosen
    int64_t* ptr
    const int64_t* end


def scan(const floating[:, ::1] A, const floating[:, ::1] R, anchors, refs, rules,
         int mode, state, int n_threads):
    """One pass of the rule over ``A x R`` (see the module docstring).

    anchors: ``(ids, labels, inv, sq)`` per row of ``A`` (ids: global, intp);
    refs: ``(offset, labels, inv, sq, self_mode, cosine)`` (``R`` holds the
    references ``offset .. offset + len(R) - 1``); rules: per kind ``(on, op,
    off, thr)`` (``thr`` per anchor, the working dtype); state: BOUNDS
    ``(max_same, min_diff)``; COUNT ``(count_same, count_diff)``; SELECT per kind
    ``(seen, chosen, ptr, end)``. Returns per kind ``(anchor ids, reference
    ids)`` for EMIT and SELECT, else None.
    """
    cdef const intp_t[::1] aid = anchors[0]
    cdef const int32_t[::1] la = anchors[1]
    cdef const floating[::1] inv_a = anchors[2]
    cdef const floating[::1] sq_a = anchors[3]
    cdef intp_t c0 = refs[0]
    cdef const int32_t[::1] lr = refs[1]
    cdef const floating[::1] inv_r = refs[2]
    cdef const floating[::1] sq_r = refs[3]
    cdef bint self_mode = refs[4]
    cdef bint cosine = refs[5]
    cdef intp_t m = A.shape[0], n = R.shape[0]
    cdef int d = <int> A.shape[1]
    cdef intp_t n_blocks = (m + BM - 1) // BM
    cdef intp_t n_tiles = (n + BN - 1) // BN
    cdef Rule rule[2]
    cdef Select sel[2]
    cdef const floating[::1] thr0, thr1
    cdef floating[::1] bmax, bmin
    cdef int64_t[::1] cnt0, cnt1
    cdef int64_t[::1] s_seen, s_ptr
    cdef const int64_t[::1] s_chosen, s_end
    cdef int k
    if (A.shape[0] != aid.shape[0] or la.shape[0] != m or inv_a.shape[0] != m
            or sq_a.shape[0] != m or lr.shape[0] != n or inv_r.shape[0] != n
            or sq_r.shape[0] != n or (n and R.shape[1] != d)):
        raise ValueError("scan: shapes do not match")
    if n >= 2**31 - 1:
        raise ValueError("scan: at most 2**31 - 2 references per call")
    for k in range(2):
        on, op, off, thr = rules[k]
        rule[k].on = on
        rule[k].op = op
        rule[k].off = off
        rule[k].thr = NULL
        if on and mode != BOUNDS:
            if k == 0:
                thr0 = thr
                if thr0.shape[0] != m:
                    raise ValueError("scan: a threshold per anchor")
                rule[k].thr = &thr0[0] if m else NULL
            else:
                thr1 = thr
                if thr1.shape[0] != m:
                    raise ValueError("scan: a threshold per anchor")
                rule[k].thr = &thr1[0] if m else NULL
    cdef floating* p_max = NULL
    cdef floating* p_min = NULL
    cdef int64_t* p_cnt[2]
    p_cnt[0] = NULL
    p_cnt[1] = NULL
    if mode == BOUNDS:
        bmax, bmin = state
        if bmax.shape[0] != m or bmin.shape[0] != m:
            raise ValueError("scan: a bound per anchor")
        if m:
            p_max, p_min = &bmax[0], &bmin[0]
    elif mode == COUNT:
        cnt0, cnt1 = state
        if cnt0.shape[0] != m or cnt1.shape[0] != m:
            raise ValueError("scan: a count per anchor")
        if m:
            p_cnt[0], p_cnt[1] = &cnt0[0], &cnt1[0]
    elif mode == SELECT:
        for k in range(2):
            sel[k].seen = NULL
            if not rule[k].on:
                continue
            s_seen, s_chosen, s_ptr, s_end = state[k]
            if s_seen.shape[0] != m or s_ptr.shape[0] != m or s_end.shape[0] != m:
                raise ValueError("scan: selection state per anchor")
            if m:
                sel[k].seen = &s_seen[0]
                sel[k].ptr = &s_ptr[0]
                sel[k].end = &s_end[0]
                sel[k].chosen = &s_chosen[0] if s_chosen.shape[0] else NULL
    elif mode != EMIT:
        raise ValueError(f"scan: unknown mode {mode}")
    cdef bint emit = mode == EMIT or mode == SELECT
    if m == 0 or n == 0:
        if emit:
            e = np.empty(0, dtype=np.intp)
            return (e, e.copy()), (e.copy(), e.copy())
        return None

    # per block and kind: the passing pairs' reference offsets (row-sorted) and
    # the count per row
    cdef int32_t** blk_col = NULL
    cdef int32_t* blk_rows = NULL
    cdef intp_t* blk_n = NULL
    cdef floating* work = <floating*> malloc(n_threads * BM * BN * sizeof(floating))
    cdef unsigned char* flag_work = <unsigned char*> malloc(n_threads * BN)
    cdef floating* bnd_work = <floating*> malloc(n_threads * 2 * BM * sizeof(floating))
    cdef floating* bnd
    cdef unsigned char* flags
    cdef uint64_t word
    cdef floating sg[2]
    cdef floating of[2]
    cdef floating st[2]
    cdef Buf* bufs = <Buf*> calloc(2 * n_threads, sizeof(Buf))
    cdef int fail_flag = 0
    cdef int* failed = &fail_flag  # shared by the threads (a plain int would be private)
    if emit:
        blk_col = <int32_t**> calloc(2 * n_blocks, sizeof(int32_t*))
        blk_rows = <int32_t*> calloc(2 * n_blocks * BM, sizeof(int32_t))
        blk_n = <intp_t*> calloc(2 * n_blocks, sizeof(intp_t))
        if blk_col == NULL or blk_rows == NULL or blk_n == NULL:
            failed[0] = 1
    if work == NULL or bufs == NULL or flag_work == NULL or bnd_work == NULL:
        failed[0] = 1
    cdef intp_t b, i0, i1, ii, jb, j0, j1, nb, jj, gi, t, r
    cdef int tid
    cdef floating* T
    cdef floating* row
    cdef floating key, v, ia, qa, th, best_max, best_min
    cdef int32_t lab
    cdef intp_t me, gj
    cdef bint same, hit
    cdef Buf* buf
    cdef int32_t* outc
    cdef int32_t* rows_of
    cdef int64_t rk, pp
    cdef intp_t* total
    cdef object res = None
    if not failed[0]:
        with nogil:
            for b in prange(n_blocks, schedule="dynamic", num_threads=n_threads):
                tid = threadid()
                T = work + tid * BM * BN
                flags = flag_work + tid * BN
                bnd = bnd_work + tid * 2 * BM
                i0 = b * BM
                i1 = i0 + BM if i0 + BM < m else m
                for jb in range(n_tiles):
                    if failed[0]:
                        break
                    j0 = jb * BN
                    j1 = j0 + BN if j0 + BN < n else n
                    nb = j1 - j0
                    gemm_bt(&R[j0, 0], &A[i0, 0], T, <int> nb, <int> (i1 - i0), d)
                    for ii in range(i1 - i0):
                        gi = i0 + ii
                        lab = la[gi]
                        me = aid[gi] - c0  # the anchor's own id among R's rows
                        row = T + ii * nb
                        if mode == BOUNDS:
                            _row_bounds(row, nb, inv_a[gi], sq_a[gi], &inv_r[j0], &sq_r[j0],
                                        cosine, &lr[j0], lab, me - j0 if self_mode else -1,
                                        &p_max[gi], &p_min[gi])
                            continue
                        if cosine:
                            # per kind: keep sgn * (key + off) > sgn * thr (sgn -1 for
                            # "<": negation is exact); a kind that is off never passes
                            for k in range(2):
                                sg[k] = 1 if rule[k].op == OP_GT else -1
                                of[k] = <floating> rule[k].off
                                st[k] = sg[k] * (<const floating*> rule[k].thr)[gi] \
                                    if rule[k].on else <floating> INFINITY
                            _flags_cos(row, nb, inv_a[gi], &inv_r[j0], &lr[j0], lab, sg[0],
                                       of[0], st[0], sg[1], of[1], st[1], flags)
                        else:
                            # the rule as a bound on the squared distance, per anchor
                            if jb == 0:
                                for k in range(2):
                                    sg[k] = 1 if rule[k].op == OP_GT else -1
                                    st[k] = <floating> INFINITY
                                    if rule[k].on:
                                        st[k] = sg[k] * _squared_bound(
                                            rule[k].op, <floating> rule[k].off,
                                            (<const floating*> rule[k].thr)[gi])
                                    bnd[2 * ii + k] = st[k]
                            _flags_l2(row, nb, inv_a[gi], sq_a[gi], &inv_r[j0], &sq_r[j0],
                                      &lr[j0], lab, 1 if rule[0].op == OP_GT else -1,
                                      bnd[2 * ii], 1 if rule[1].op == OP_GT else -1,
                                      bnd[2 * ii + 1], flags)
                        jj = 0
                        while jj < nb:
                            if jj + 8 <= nb:
                                memcpy(&word, flags + jj, 8)
                                if word == 0:
                                    jj = jj + 8
                                    continue
                            if not flags[jj]:
                                jj = jj + 1
                                continue
                            gj = j0 + jj
                            jj = jj + 1
                            same = lr[gj] == lab
                            if same and self_mode and gj == me:
                                continue
                            k = 0 if same else 1
                            if mode == COUNT:
                                p_cnt[k][gi] += 1
                                continue
                            if mode == SELECT:
                                rk = sel[k].seen[gi]
                                sel[k].seen[gi] = rk + 1
                                pp = sel[k].ptr[gi]
                                if pp >= sel[k].end[gi] or sel[k].chosen[pp] != rk:
                                    continue
                                sel[k].ptr[gi] = pp + 1
                            if _push(&bufs[2 * tid + k], <int32_t> ii, <int32_t> gj) != 0:
                                failed[0] = 1
                if emit and not failed[0]:
                    # counting sort of the block's pairs by row (stable: columns
                    # stay ascending within a row)
                    for k in range(2):
                        buf = &bufs[2 * tid + k]
                        rows_of = blk_rows + (2 * b + k) * BM
                        for t in range(buf.size):
                            rows_of[buf.row[t]] += 1
                        outc = <int32_t*> malloc((buf.size if buf.size else 1) * sizeof(int32_t))
                        if outc == NULL:
                            failed[0] = 1
                            buf.size = 0
                            continue
                        # row starts, then place
                        pp = 0
                        for r in range(BM):
                            rk = rows_of[r]
                            rows_of[r] = <int32_t> pp  # start, restored below
                            pp = pp + rk
                        for t in range(buf.size):
                            r = buf.row[t]
                            outc[rows_of[r]] = buf.col[t]
                            rows_of[r] += 1
                        # rows_of[r] is now the end of row r: back to counts
                        for r in range(BM - 1, 0, -1):
                            rows_of[r] = rows_of[r] - rows_of[r - 1]
                        blk_col[2 * b + k] = outc
                        blk_n[2 * b + k] = buf.size
                        buf.size = 0
        if emit and not failed[0]:
            res = _gather(blk_col, blk_rows, blk_n, n_blocks, aid, c0, n_threads)
    if bufs != NULL:
        for t in range(2 * n_threads):
            free(bufs[t].row)
            free(bufs[t].col)
    if emit and blk_col != NULL:
        for t in range(2 * n_blocks):
            free(blk_col[t])
    free(blk_col)
    free(blk_rows)
    free(blk_n)
    free(bufs)
    free(work)
    free(flag_work)
    free(bnd_work)
    if failed[0]:
        raise MemoryError("hnm.miners: out of memory for the mined pairs")
    return res


cdef object _gather(int32_t** blk_col, int32_t* blk_rows, intp_t* blk_n, intp_t n_blocks,
                    const intp_t[::1] aid, intp_t c0, int n_threads):
    """Concatenate the blocks' pairs, per kind, into (anchor id, reference id)."""
    cdef intp_t b, k, r, t, o, c, total
    cdef intp_t* start = <intp_t*> malloc((n_blocks + 1) * sizeof(intp_t))
    cdef intp_t[::1] ai, rj
    cdef int32_t* col
    cdef int32_t* rows_of
    if start == NULL:
        raise MemoryError()
    out = []
    try:
        for k in range(2):
            start[0] = 0
            for b in range(n_blocks):
                start[b + 1] = start[b] + blk_n[2 * b + k]
            total = start[n_blocks]
            a_arr = np.empty(total, dtype=np.intp)
            j_arr = np.empty(total, dtype=np.intp)
            ai = a_arr
            rj = j_arr
            if total:
                with nogil:
                    for b in prange(n_blocks, schedule="static", num_threads=n_threads):
                        col = blk_col[2 * b + k]
                        rows_of = blk_rows + (2 * b + k) * BM
                        o = start[b]
                        t = 0
                        for r in range(BM):
                            for c in range(rows_of[r]):
                                ai[o] = aid[b * BM + r]
                                rj[o] = col[t] + c0
                                o = o + 1
                                t = t + 1
                        free(blk_col[2 * b + k])
                        blk_col[2 * b + k] = NULL
            out.append((a_arr, j_arr))
    finally:
        free(start)
    return tuple(out)
