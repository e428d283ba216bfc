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
from libc.math cimport sqrt, INFINITY
from libc.stdlib cimport malloc, realloc, free, calloc
from libc.string cimport memcpy
from libc.stdint cimport int32_t, int64_t
from scipy.linalg.cython_blas cimport sgemm, dgemm

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


cdef inline void _gemm(const floating* A, const floating* B, floating* T, int m, int n,
                       int d) noexcept nogil:
    """T (n x m, row-major) = B (n x d, row-major) . A (m x d, row-major)^T."""
    cdef char ta = b"T"
    cdef char tb = b"N"
    cdef floating one = 1.0
    cdef floating zero = 0.0
    if floating is float32_t:
        sgemm(&ta, &tb, &m, &n, &d, &one, <float*> A, &d, <float*> B, &d, &zero, T, &m)
    else:
        dgemm(&ta, &tb, &m, &n, &d, &one, <double*> A, &d, <double*> B, &d, &zero, T, &m)


cdef inline floating _key(floating dot, floating ia, floating qa, floating ir, floating qr,
                          bint cosine) noexcept nogil:
    cdef floating s = dot * ia
    cdef floating t
    s = s * ir
    if cosine:
        return -s
    t = s * <floating> -2.0
    t = t + qa
    t = t + qr
    if not (t > 0):
        t = 0
    return sqrt(t)


def keys_tile(const floating[:, ::1] A, const floating[::1] inv_a, const floating[::1] sq_a,
              const floating[:, ::1] R, const floating[::1] inv_r, const floating[::1] sq_r,
              bint cosine, floating[:, ::1] out, int n_threads):
    """``out`` (len(A) x len(R)) = the keys of every pair, rows in parallel."""
    cdef intp_t m = A.shape[0], n = R.shape[0], i, j, b
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
            _gemm(&R[0, 0], &A[i0, 0], &out[i0, 0], <int> n, <int> (i1 - i0), d)
            for i in range(i0, i1):
                for j in range(n):
                    out[i, j] = _key(out[i, j], inv_a[i], sq_a[i], inv_r[j], sq_r[j], cosine)


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
    cdef const intp_t[::1] la = anchors[1]
    cdef const floating[::1] inv_a = anchors[2]
    cdef const floating[::1] sq_a = anchors[3]
    cdef intp_t c0 = refs[0]
    cdef const intp_t[::1] lr = refs[1]
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
    cdef Buf* bufs = <Buf*> calloc(2 * n_threads, sizeof(Buf))
    cdef int fail_flag = 0
    cdef int* failed = &fail_flag  # shared by the threads (a plain int would be private)
    if emit:
        blk_col = <int32_t**> calloc(2 * n_blocks, sizeof(int32_t*))
        blk_rows = <int32_t*> calloc(2 * n_blocks * BM, sizeof(int32_t))
        blk_n = <intp_t*> calloc(2 * n_blocks, sizeof(intp_t))
        if blk_col == NULL or blk_rows == NULL or blk_n == NULL:
            failed[0] = 1
    if work == NULL or bufs == NULL:
        failed[0] = 1
    cdef intp_t b, i0, i1, ii, jb, j0, j1, nb, jj, gi, t, r
    cdef int tid
    cdef floating* T
    cdef floating* row
    cdef floating key, v, ia, qa, th, best_max, best_min
    cdef intp_t lab, me, gj
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
                i0 = b * BM
                i1 = i0 + BM if i0 + BM < m else m
                for jb in range(n_tiles):
                    if failed[0]:
                        break
                    j0 = jb * BN
                    j1 = j0 + BN if j0 + BN < n else n
                    nb = j1 - j0
                    _gemm(&R[j0, 0], &A[i0, 0], T, <int> nb, <int> (i1 - i0), d)
                    for ii in range(i1 - i0):
                        gi = i0 + ii
                        lab = la[gi]
                        ia = inv_a[gi]
                        qa = sq_a[gi]
                        me = aid[gi] - c0  # the anchor's own id among R's rows
                        row = T + ii * nb
                        if mode == BOUNDS:
                            best_max = p_max[gi]
                            best_min = p_min[gi]
                        for jj in range(nb):
                            gj = j0 + jj
                            same = lr[gj] == lab
                            if same and self_mode and gj == me:
                                continue
                            k = 0 if same else 1
                            if not rule[k].on:
                                continue
                            key = _key(row[jj], ia, qa, inv_r[gj], sq_r[gj], cosine)
                            if mode == BOUNDS:
                                if same:
                                    if key > best_max:
                                        best_max = key
                                elif key < best_min:
                                    best_min = key
                                continue
                            v = key + <floating> rule[k].off
                            th = (<const floating*> rule[k].thr)[gi]
                            hit = (v > th) if rule[k].op == OP_GT else (v < th)
                            if not hit:
                                continue
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
                        if mode == BOUNDS:
                            p_max[gi] = best_max
                            p_min[gi] = best_min
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
