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
    BM = 64     # anchors per thread task of keys_tile
    SR = 128    # references per GEMM tile of scan: the GEMM's small side (the
                # operand BLAS packs transposed: 1.8x the rate of 1024 x 64 tiles)
    SA = 512    # at most this many anchors per task of scan (a multiple of SR)


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


cdef inline int _reserve(Buf* b, intp_t need) noexcept nogil:
    cdef intp_t cap
    cdef int32_t* p
    if need <= b.cap:
        return 0
    cap = 2 * b.cap if b.cap else 4096
    if cap < need:
        cap = need
    p = <int32_t*> realloc(b.row, cap * sizeof(int32_t))
    if p == NULL:
        return -1
    b.row = p
    p = <int32_t*> realloc(b.col, cap * sizeof(int32_t))
    if p == NULL:
        return -1
    b.col = p
    b.cap = cap
    return 0


cdef inline int _push(Buf* b, int32_t r, int32_t c) noexcept nogil:
    if b.size == b.cap and _reserve(b, b.size + 1) != 0:
        return -1
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


cdef struct Job:
    # what every task reads (shared, never written but for the failure flag)
    int mode
    bint cosine
    bint self_mode
    bint sym            # A is R: each unordered pair's tile is computed once
    intp_t m
    intp_t n
    intp_t d
    intp_t sa           # anchors per task
    intp_t n_tiles      # reference tiles (of SR)
    intp_t c0
    const intp_t* aid
    const int32_t* la
    const int32_t* lr
    const void* inv_a
    const void* sq_a
    const void* inv_r
    const void* sq_r
    double g[2]         # +1: rule ">", -1: rule "<"
    double off[2]
    const void* pb[2]   # per anchor and kind: the bound of the flag test (+inf: never)
    void* bmax          # BOUNDS: per anchor (not sym)
    void* bmin
    int64_t* cnt[2]     # COUNT: per anchor (not sym)
    Select sel[2]
    int* failed


cdef struct Work:
    # one thread's buffers
    void* T             # sa x SR dot products
    unsigned char* flags
    void* colmax        # SR: a tile's transposed bounds (sym BOUNDS)
    void* colmin
    int32_t* tcount     # SR: counting sort of a tile's transposed pairs
    void* bmax          # m: the thread's bounds (sym BOUNDS)
    void* bmin
    int64_t* cnt[2]     # m: the thread's counts (sym COUNT)
    Buf dbuf[2]         # the task's direct pairs (row in the block, reference)
    Buf tbuf[2]         # the tile's transposed pairs (anchor in the tile, reference)


cdef inline void _flags_l2_t(const floating* row, intp_t nb, const floating* ia,
                             const floating* qa, floating ir, floating qr, const int32_t* la_,
                             int32_t lab, floating g0, const floating* b0, floating g1,
                             const floating* b1, unsigned char* flags) noexcept nogil:
    """:func:`_flags_l2` down a column: the anchors are the tile's references
    (their inverse norms, squared norms and bounds per entry), the reference is
    the row's anchor; the same operations as the direct key of the pair (both
    bounds loaded, no branch: the loop vectorises)."""
    cdef intp_t j
    cdef floating t, c0, c1
    cdef bint same
    for j in range(nb):
        t = _sq(row[j], ia[j], qa[j], ir, qr)
        c0 = b0[j]
        c1 = b1[j]
        same = la_[j] == lab
        flags[j] = t * (g0 if same else g1) >= (c0 if same else c1)


cdef inline void _flags_cos_t(const floating* row, intp_t nb, const floating* ia, floating ir,
                              const int32_t* la_, int32_t lab, floating s0, floating o0,
                              const floating* t0, floating s1, floating o1,
                              const floating* t1, unsigned char* flags) noexcept nogil:
    """:func:`_flags_cos` down a column (see :func:`_flags_l2_t`)."""
    cdef intp_t j
    cdef floating v, s, c0, c1
    cdef bint same
    for j in range(nb):
        s = row[j] * ia[j]
        s = s * ir
        c0 = t0[j]
        c1 = t1[j]
        same = la_[j] == lab
        v = -s + (o0 if same else o1)
        v = v * (s0 if same else s1)
        flags[j] = v > (c0 if same else c1)


cdef inline void _col_bounds(const floating* row, intp_t nb, const floating* ia,
                             const floating* qa, floating ir, floating qr, bint cosine,
                             const int32_t* la_, int32_t lab, floating* cmax,
                             floating* cmin) noexcept nogil:
    """:func:`_row_bounds` down a column, into per-anchor running bounds
    (squared distances for Euclidean: rooted when the tile is done)."""
    cdef intp_t j
    cdef floating v, hi, lo
    cdef bint same
    for j in range(nb):
        if cosine:
            v = row[j] * ia[j]
            v = -(v * ir)
        else:
            v = _sq(row[j], ia[j], qa[j], ir, qr)
        same = la_[j] == lab
        hi = cmax[j]
        lo = cmin[j]
        cmax[j] = v if (same and v > hi) else hi
        cmin[j] = v if (not same and v < lo) else lo


cdef extern from *:
    """
    static inline int hnm_ctz64(unsigned long long x) { return __builtin_ctzll(x); }
    """
    int hnm_ctz64(unsigned long long x) noexcept nogil


cdef inline uint64_t _bits(const unsigned char* f, intp_t n) noexcept nogil:
    """Bit j set where ``f[j]`` (each 0 or 1), ``j < n <= 64``: eight flags a
    multiply (byte j's bit lands on bit j of the top byte)."""
    cdef uint64_t m = 0, w
    cdef intp_t q = 0
    while q + 8 <= n:
        memcpy(&w, f + q, 8)
        m = m | (((w * <uint64_t> 0x0102040810204080ULL) >> 56) << q)
        q = q + 8
    while q < n:
        m = m | ((<uint64_t> f[q]) << q)
        q = q + 1
    return m


cdef inline floating _root(floating v, bint cosine) noexcept nogil:
    if cosine or not v >= 0:
        return v
    if floating is float32_t:
        return sqrtf(v)
    return sqrt(v)


cdef int _task(Job* J, Work* W, const floating* A, const floating* R, intp_t b,
               int32_t* blk_rows, int32_t** blk_col, intp_t* blk_n,
               int32_t** blk_T) noexcept nogil:
    """Anchor block ``b`` against its reference tiles (sym: from its own first
    row on, the pairs of a row above a tile's first reference also read down
    the tile's columns, kept per tile: ``blk_T[(2 b + kind) n_tiles + tile]``
    holds SR + 1 starts per anchor of the tile, then the references). Returns
    -1 when out of memory."""
    cdef intp_t m = J.m, n = J.n, d = J.d, sa = J.sa
    cdef intp_t i0 = b * sa
    cdef intp_t i1 = i0 + sa if i0 + sa < m else m
    cdef intp_t j0, j1, nb, rows, above, ii, gi, jj, gj, me, t, r, pos, c
    cdef int mode = J.mode, k
    cdef bint cosine = J.cosine, self_mode = J.self_mode, sym = J.sym, same
    cdef const intp_t* aid = J.aid
    cdef const int32_t* la = J.la
    cdef const int32_t* lr = J.lr
    cdef const floating* inv_a = <const floating*> J.inv_a
    cdef const floating* sq_a = <const floating*> J.sq_a
    cdef const floating* inv_r = <const floating*> J.inv_r
    cdef const floating* sq_r = <const floating*> J.sq_r
    cdef const floating* pb0 = <const floating*> J.pb[0]
    cdef const floating* pb1 = <const floating*> J.pb[1]
    cdef floating g0 = <floating> J.g[0], g1 = <floating> J.g[1]
    cdef floating o0 = <floating> J.off[0], o1 = <floating> J.off[1]
    cdef floating* T = <floating*> W.T
    cdef floating* row
    cdef floating* cmax = <floating*> W.colmax
    cdef floating* cmin = <floating*> W.colmin
    cdef floating* bmax = <floating*> (W.bmax if sym else J.bmax)
    cdef floating* bmin = <floating*> (W.bmin if sym else J.bmin)
    cdef int64_t* cnt0 = W.cnt[0] if sym else J.cnt[0]
    cdef int64_t* cnt1 = W.cnt[1] if sym else J.cnt[1]
    cdef unsigned char* flags = W.flags
    cdef int32_t* tcount = W.tcount
    cdef int32_t lab
    cdef int32_t* rows_of
    cdef int32_t* outc
    cdef uint64_t word
    cdef int64_t rk, pp
    cdef floating v
    cdef Buf* buf
    cdef int32_t* chunk
    j0 = i0 if sym else 0
    while j0 < n:
        if J.failed[0]:
            return 0
        j1 = j0 + SR if j0 + SR < n else n
        nb = j1 - j0
        if sym:
            # rows below the tile's last reference are another task's
            rows = (i1 if i1 < j1 else j1) - i0
            above = (i1 if i1 < j0 else j0) - i0
        else:
            rows = i1 - i0
            above = 0
        gemm_bt(&R[j0 * d], &A[i0 * d], T, <int> nb, <int> rows, <int> d)
        if mode == BOUNDS and above > 0:
            for jj in range(nb):
                cmax[jj] = -<floating> INFINITY
                cmin[jj] = <floating> INFINITY
        for ii in range(rows):
            gi = i0 + ii
            lab = la[gi]
            me = aid[gi] - J.c0  # the anchor's own id among R's rows
            row = T + ii * nb
            if mode == BOUNDS:
                _row_bounds(row, nb, inv_a[gi], sq_a[gi], &inv_r[j0], &sq_r[j0], cosine,
                            &lr[j0], lab, me - j0 if self_mode else -1, &bmax[gi], &bmin[gi])
                if ii < above:
                    _col_bounds(row, nb, &inv_r[j0], &sq_r[j0], inv_a[gi], sq_a[gi], cosine,
                                &lr[j0], lab, cmax, cmin)
                continue
            if cosine:
                _flags_cos(row, nb, inv_a[gi], &inv_r[j0], &lr[j0], lab, g0, o0, pb0[gi],
                           g1, o1, pb1[gi], flags)
            else:
                _flags_l2(row, nb, inv_a[gi], sq_a[gi], &inv_r[j0], &sq_r[j0], &lr[j0], lab,
                          g0, pb0[gi], g1, pb1[gi], flags)
            for c in range(0, nb, 64):
                word = _bits(flags + c, nb - c if nb - c < 64 else 64)
                while word:
                    gj = j0 + c + hnm_ctz64(word)
                    word = word & (word - 1)
                    same = lr[gj] == lab
                    if same and self_mode and gj == me:
                        continue
                    k = 0 if same else 1
                    if mode == COUNT:
                        if k == 0:
                            cnt0[gi] += 1
                        else:
                            cnt1[gi] += 1
                        continue
                    if mode == SELECT:
                        rk = J.sel[k].seen[gi]
                        J.sel[k].seen[gi] = rk + 1
                        pp = J.sel[k].ptr[gi]
                        if pp >= J.sel[k].end[gi] or J.sel[k].chosen[pp] != rk:
                            continue
                        J.sel[k].ptr[gi] = pp + 1
                    if _push(&W.dbuf[k], <int32_t> ii, <int32_t> gj) != 0:
                        return -1
            if ii >= above:
                continue
            # the transposed pairs: the tile's references as anchors, this row's
            # anchor as their reference (sym: A is R, anchor ids are row ids)
            if cosine:
                _flags_cos_t(row, nb, &inv_r[j0], inv_a[gi], &lr[j0], lab, g0, o0, &pb0[j0],
                             g1, o1, &pb1[j0], flags)
            else:
                _flags_l2_t(row, nb, &inv_r[j0], &sq_r[j0], inv_a[gi], sq_a[gi], &lr[j0],
                            lab, g0, &pb0[j0], g1, &pb1[j0], flags)
            for c in range(0, nb, 64):
                word = _bits(flags + c, nb - c if nb - c < 64 else 64)
                while word:
                    jj = c + hnm_ctz64(word)
                    word = word & (word - 1)
                    gj = j0 + jj
                    k = 0 if lr[gj] == lab else 1
                    if mode == COUNT:
                        if k == 0:
                            cnt0[gj] += 1
                        else:
                            cnt1[gj] += 1
                    elif _push(&W.tbuf[k], <int32_t> jj, <int32_t> gi) != 0:
                        return -1
        if above > 0 and mode == BOUNDS:
            for jj in range(nb):
                v = _root(cmax[jj], cosine)
                if v > bmax[j0 + jj]:
                    bmax[j0 + jj] = v
                v = _root(cmin[jj], cosine)
                if v < bmin[j0 + jj]:
                    bmin[j0 + jj] = v
        elif above > 0 and mode == EMIT:
            # the tile's transposed pairs by anchor (counting sort, stable: the
            # references stay ascending), in a chunk of their own (freed as
            # soon as the anchors' block is gathered)
            for k in range(2):
                buf = &W.tbuf[k]
                if buf.size == 0:
                    continue
                chunk = <int32_t*> malloc((SR + 1 + buf.size) * sizeof(int32_t))
                if chunk == NULL:
                    return -1
                blk_T[(2 * b + k) * J.n_tiles + j0 // SR] = chunk
                for jj in range(SR + 1):
                    chunk[jj] = 0
                for t in range(buf.size):
                    chunk[buf.row[t] + 1] += 1
                for jj in range(SR):
                    chunk[jj + 1] += chunk[jj]
                for jj in range(SR):
                    tcount[jj] = chunk[jj]
                for t in range(buf.size):
                    r = buf.row[t]
                    chunk[SR + 1 + tcount[r]] = buf.col[t]
                    tcount[r] += 1
                buf.size = 0
        j0 = j0 + SR
    if mode == EMIT or mode == SELECT:
        # counting sort of the block's direct pairs by row (stable: references
        # stay ascending within a row)
        for k in range(2):
            buf = &W.dbuf[k]
            rows_of = blk_rows + (2 * b + k) * sa
            for t in range(buf.size):
                rows_of[buf.row[t]] += 1
            outc = <int32_t*> malloc((buf.size if buf.size else 1) * sizeof(int32_t))
            if outc == NULL:
                buf.size = 0
                return -1
            pp = 0
            for r in range(sa):
                rk = rows_of[r]
                rows_of[r] = <int32_t> pp  # start, restored below
                pp = pp + rk
            for t in range(buf.size):
                r = buf.row[t]
                outc[rows_of[r]] = buf.col[t]
                rows_of[r] += 1
            # rows_of[r] is now the end of row r: back to counts
            for r in range(sa - 1, 0, -1):
                rows_of[r] = rows_of[r] - rows_of[r - 1]
            blk_col[2 * b + k] = outc
            blk_n[2 * b + k] = buf.size
            buf.size = 0
    return 0


cdef void _bounds_per_anchor(Job* J, const floating* thr0, const floating* thr1,
                             floating* pb0, floating* pb1, int n_threads) noexcept nogil:
    """Per anchor and kind, the bound the flag test compares with: Euclidean
    ``g * t >= g * t*`` with ``t*`` the exact bound on the squared distance,
    cosine ``g * (key + off) > g * thr``; +inf for a kind that is off."""
    cdef intp_t i
    cdef int k
    cdef floating v
    cdef const floating* thr
    cdef floating* pb
    for i in prange(J.m, schedule="static", num_threads=n_threads):
        for k in range(2):
            thr = thr0 if k == 0 else thr1
            pb = pb0 if k == 0 else pb1
            if thr == NULL:
                v = <floating> INFINITY
            elif J.cosine:
                v = (<floating> J.g[k]) * thr[i]
            else:
                v = (<floating> J.g[k]) * _squared_bound(OP_GT if J.g[k] > 0 else OP_LT,
                                                         <floating> J.off[k], thr[i])
            pb[i] = v


def scan(const floating[:, ::1] A, const floating[:, ::1] R, anchors, refs, rules,
         int mode, state, int n_threads):
    """One pass of the rule over ``A x R`` (see the module docstring).

    anchors: ``(ids, labels, inv, sq)`` per row of ``A`` (ids: global, intp);
    refs: ``(offset, labels, inv, sq, self_mode, cosine[, symmetric])`` (``R``
    holds the references ``offset .. offset + len(R) - 1``; symmetric: ``A`` is
    ``R``, anchor ids ``0 .. len(A) - 1``, offset 0, and the same labels, norms,
    so each unordered pair's dot product is computed once: not for SELECT);
    rules: per kind ``(on, op, off, thr)`` (``thr`` per anchor, the working
    dtype); state: BOUNDS ``(max_same, min_diff)``; COUNT ``(count_same,
    count_diff)``; SELECT per kind ``(seen, chosen, ptr, end)``. Returns per kind
    ``(anchor ids, reference ids)`` for EMIT and SELECT, else None.
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
    cdef bint sym = len(refs) > 6 and refs[6]
    cdef intp_t m = A.shape[0], n = R.shape[0]
    cdef int d = <int> A.shape[1]
    cdef Job job
    cdef const floating[::1] thr0, thr1
    cdef const floating* p_thr[2]
    cdef floating[::1] bmax, bmin
    cdef int64_t[::1] cnt0, cnt1
    cdef int64_t[::1] s_seen, s_ptr
    cdef const int64_t[::1] s_chosen, s_end
    cdef int k
    if (A.shape[0] != aid.shape[0] or la.shape[0] != m or inv_a.shape[0] != m
            or sq_a.shape[0] != m or lr.shape[0] != n or inv_r.shape[0] != n
            or sq_r.shape[0] != n or (n and R.shape[1] != d)):
        raise ValueError("scan: shapes do not match")
    if n >= 2**31 - 1 or m >= 2**31 - 1:
        raise ValueError("scan: at most 2**31 - 2 anchors and references per call")
    if sym and (mode == SELECT or m != n or c0 != 0 or not self_mode
                or (m and (aid[0] != 0 or aid[m - 1] != m - 1))):
        raise ValueError("scan: symmetric needs A is R, ids 0 .. len(A) - 1 and no SELECT")
    job.mode = mode
    job.cosine = cosine
    job.self_mode = self_mode
    job.sym = sym
    job.m = m
    job.n = n
    job.d = d
    job.c0 = c0
    job.bmax = job.bmin = NULL
    for k in range(2):
        on, op, off, thr = rules[k]
        job.g[k] = 1 if op == OP_GT else -1
        job.off[k] = off
        job.cnt[k] = NULL
        job.sel[k].seen = NULL
        p_thr[k] = NULL
        if on and mode != BOUNDS:
            if k == 0:
                thr0 = thr
                if thr0.shape[0] != m:
                    raise ValueError("scan: a threshold per anchor")
                p_thr[k] = &thr0[0] if m else NULL
            else:
                thr1 = thr
                if thr1.shape[0] != m:
                    raise ValueError("scan: a threshold per anchor")
                p_thr[k] = &thr1[0] if m else NULL
    if mode == BOUNDS:
        bmax, bmin = state
        if bmax.shape[0] != m or bmin.shape[0] != m:
            raise ValueError("scan: a bound per anchor")
        if m:
            job.bmax, job.bmin = &bmax[0], &bmin[0]
    elif mode == COUNT:
        cnt0, cnt1 = state
        if cnt0.shape[0] != m or cnt1.shape[0] != m:
            raise ValueError("scan: a count per anchor")
        if m:
            job.cnt[0], job.cnt[1] = &cnt0[0], &cnt1[0]
    elif mode == SELECT:
        for k in range(2):
            if p_thr[k] == NULL:
                continue
            s_seen, s_chosen, s_ptr, s_end = state[k]
            if s_seen.shape[0] != m or s_ptr.shape[0] != m or s_end.shape[0] != m:
                raise ValueError("scan: selection state per anchor")
            job.sel[k].seen = &s_seen[0]
            job.sel[k].ptr = &s_ptr[0]
            job.sel[k].end = &s_end[0]
            job.sel[k].chosen = &s_chosen[0] if s_chosen.shape[0] else NULL
    elif mode != EMIT:
        raise ValueError(f"scan: unknown mode {mode}")
    cdef bint emit = mode == EMIT or mode == SELECT
    if m == 0 or n == 0:
        if emit:
            e = np.empty(0, dtype=np.intp)
            return (e, e.copy()), (e.copy(), e.copy())
        return None

    # anchors per task: a multiple of SR, from the sizes only (never the thread
    # count: the tiles, hence every dot product, are the same for any n_jobs)
    cdef intp_t sa = (m // 8 + SR - 1) // SR * SR
    sa = SA if sa > SA else (SR if sa < SR else sa)
    job.sa = sa
    cdef intp_t n_blocks = (m + sa - 1) // sa
    cdef intp_t n_tiles = (n + SR - 1) // SR
    job.n_tiles = n_tiles
    job.aid = &aid[0]
    job.la = &la[0]
    job.lr = &lr[0]
    job.inv_a = &inv_a[0]
    job.sq_a = &sq_a[0]
    job.inv_r = &inv_r[0]
    job.sq_r = &sq_r[0]
    cdef int fail_flag = 0
    job.failed = &fail_flag  # shared by the threads (a plain int would be private)

    cdef Work* works = <Work*> calloc(n_threads, sizeof(Work))
    cdef floating* pb = NULL
    cdef int32_t** blk_col = NULL
    cdef int32_t* blk_rows = NULL
    cdef intp_t* blk_n = NULL
    cdef int32_t** blk_T = NULL
    cdef intp_t b, i, t
    cdef int tid
    cdef floating v
    cdef object res = None
    if works == NULL:
        raise MemoryError()
    try:
        for t in range(n_threads):
            works[t].T = malloc(sa * SR * sizeof(floating))
            works[t].flags = <unsigned char*> malloc(SR)
            works[t].colmax = malloc(SR * sizeof(floating))
            works[t].colmin = malloc(SR * sizeof(floating))
            works[t].tcount = <int32_t*> malloc(SR * sizeof(int32_t))
            if (works[t].T == NULL or works[t].flags == NULL or works[t].colmax == NULL
                    or works[t].colmin == NULL or works[t].tcount == NULL):
                raise MemoryError()
            if sym and mode == BOUNDS:
                works[t].bmax = malloc(m * sizeof(floating))
                works[t].bmin = malloc(m * sizeof(floating))
                if works[t].bmax == NULL or works[t].bmin == NULL:
                    raise MemoryError()
                for i in range(m):
                    (<floating*> works[t].bmax)[i] = -<floating> INFINITY
                    (<floating*> works[t].bmin)[i] = <floating> INFINITY
            if sym and mode == COUNT:
                works[t].cnt[0] = <int64_t*> calloc(m, sizeof(int64_t))
                works[t].cnt[1] = <int64_t*> calloc(m, sizeof(int64_t))
                if works[t].cnt[0] == NULL or works[t].cnt[1] == NULL:
                    raise MemoryError()
        if mode != BOUNDS:
            pb = <floating*> malloc(2 * m * sizeof(floating))
            if pb == NULL:
                raise MemoryError()
            job.pb[0] = pb
            job.pb[1] = pb + m
            with nogil:
                _bounds_per_anchor(&job, <const floating*> p_thr[0], <const floating*> p_thr[1],
                                   pb, pb + m, n_threads)
        else:
            job.pb[0] = job.pb[1] = NULL
        if emit:
            blk_col = <int32_t**> calloc(2 * n_blocks, sizeof(int32_t*))
            blk_rows = <int32_t*> calloc(2 * n_blocks * sa, sizeof(int32_t))
            blk_n = <intp_t*> calloc(2 * n_blocks, sizeof(intp_t))
            blk_T = <int32_t**> calloc(2 * n_blocks * n_tiles if sym else 1, sizeof(int32_t*))
            if blk_col == NULL or blk_rows == NULL or blk_n == NULL or blk_T == NULL:
                raise MemoryError()
        with nogil:
            for b in prange(n_blocks, schedule="dynamic", num_threads=n_threads):
                tid = threadid()
                if _task(&job, &works[tid], &A[0, 0], &R[0, 0], b, blk_rows, blk_col,
                         blk_n, blk_T) != 0:
                    job.failed[0] = 1
        if fail_flag:
            raise MemoryError("hnm.miners: out of memory for the mined pairs")
        if sym and mode == BOUNDS:
            for t in range(n_threads):
                for i in range(m):
                    v = (<floating*> works[t].bmax)[i]
                    if v > bmax[i]:
                        bmax[i] = v
                    v = (<floating*> works[t].bmin)[i]
                    if v < bmin[i]:
                        bmin[i] = v
        elif sym and mode == COUNT:
            for t in range(n_threads):
                for i in range(m):
                    cnt0[i] += works[t].cnt[0][i]
                    cnt1[i] += works[t].cnt[1][i]
        elif emit:
            res = _gather(blk_col, blk_rows, blk_n, blk_T if sym else NULL, n_blocks, n_tiles,
                          sa, m, aid, c0, n_threads)
    finally:
        for t in range(n_threads):
            free(works[t].T)
            free(works[t].flags)
            free(works[t].colmax)
            free(works[t].colmin)
            free(works[t].tcount)
            free(works[t].bmax)
            free(works[t].bmin)
            free(works[t].cnt[0])
            free(works[t].cnt[1])
            for k in range(2):
                free(works[t].dbuf[k].row)
                free(works[t].dbuf[k].col)
                free(works[t].tbuf[k].row)
                free(works[t].tbuf[k].col)
        free(works)
        free(pb)
        if blk_col != NULL:
            for t in range(2 * n_blocks):
                free(blk_col[t])
        if blk_T != NULL and sym:
            for t in range(2 * n_blocks * n_tiles):
                free(blk_T[t])
        free(blk_col)
        free(blk_rows)
        free(blk_n)
        free(blk_T)
    return res


cdef object _gather(int32_t** blk_col, int32_t* blk_rows, intp_t* blk_n, int32_t** blk_T,
                    intp_t n_blocks, intp_t n_tiles, intp_t sa, intp_t m,
                    const intp_t[::1] aid, intp_t c0, int n_threads):
    """Concatenate the blocks' pairs, per kind, into (anchor id, reference id).
    With ``blk_T`` (symmetric), an anchor of block c takes, in reference order,
    its transposed pairs from blocks 0 .. c (per tile of anchors: see
    :func:`_task`), then its block's direct pairs."""
    cdef intp_t b, c, k, r, t, o, cc, total, g, p, nrow, jt, jt0, jt1
    cdef intp_t per = sa // SR
    cdef intp_t* start = <intp_t*> malloc((n_blocks + 1) * sizeof(intp_t))
    cdef intp_t[::1] ai, rj
    cdef int32_t* col
    cdef int32_t* rows_of
    cdef int32_t* ch
    cdef int32_t** tk
    if start == NULL:
        raise MemoryError()
    out = []
    try:
        for k in range(2):
            start[0] = 0
            for c in range(n_blocks):
                total = blk_n[2 * c + k]
                if blk_T != NULL:
                    jt1 = (c + 1) * per if (c + 1) * per < n_tiles else n_tiles
                    for b in range(c + 1):
                        for jt in range(c * per, jt1):
                            ch = blk_T[(2 * b + k) * n_tiles + jt]
                            if ch != NULL:
                                total = total + ch[SR]
                start[c + 1] = start[c] + total
            total = start[n_blocks]
            a_arr = np.empty(total, dtype=np.intp)
            j_arr = np.empty(total, dtype=np.intp)
            ai = a_arr
            rj = j_arr
            if total:
                with nogil:
                    for c in prange(n_blocks, schedule="dynamic", num_threads=n_threads):
                        col = blk_col[2 * c + k]
                        rows_of = blk_rows + (2 * c + k) * sa
                        o = start[c]
                        t = 0
                        nrow = sa if (c + 1) * sa <= m else m - c * sa
                        for r in range(nrow):
                            g = c * sa + r
                            if blk_T != NULL:
                                jt = g // SR
                                for b in range(c + 1):
                                    ch = blk_T[(2 * b + k) * n_tiles + jt]
                                    if ch == NULL:
                                        continue
                                    for p in range(ch[g - jt * SR], ch[g - jt * SR + 1]):
                                        ai[o] = aid[g]
                                        rj[o] = ch[SR + 1 + p] + c0
                                        o = o + 1
                            for cc in range(rows_of[r]):
                                ai[o] = aid[g]
                                rj[o] = col[t] + c0
                                o = o + 1
                                t = t + 1
                        free(blk_col[2 * c + k])
                        blk_col[2 * c + k] = NULL
                        if blk_T != NULL:
                            jt0 = c * per
                            jt1 = (c + 1) * per if (c + 1) * per < n_tiles else n_tiles
                            for b in range(c + 1):
                                tk = blk_T + (2 * b + k) * n_tiles
                                for jt in range(jt0, jt1):
                                    free(tk[jt])
                                    tk[jt] = NULL
            out.append((a_arr, j_arr))
    finally:
        free(start)
    return tuple(out)
