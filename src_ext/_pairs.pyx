"""Exact blocked hard-pair search: BLAS GEMM on blocks + per-query bounded heaps.

For each block of candidates, query blocks are scored in parallel (one thread
per query block, BLAS single-threaded inside: the caller limits it), and every
score is screened against its query's heap root: only a score that can enter
the heap (or a NaN) leaves the screen. Keys are "larger is better": the inner
product, the cosine, or minus the squared Euclidean distance (clamped at 0).
"""
from cython.parallel cimport prange, threadid
from libc.math cimport sqrt, fabs, INFINITY
from libc.stdlib cimport calloc, free
from libc.stdint cimport uint32_t, uint64_t
from _gemm cimport gemm_bt

from _typedefs cimport intp_t, float32_t, floating
from _heap cimport heap_better, heap_push

cdef extern from "_bf16.h" nogil:
    int hnm_bf16_supported() noexcept
    void hnm_bf16_pack_rows(const float* x, Py_ssize_t ldx, Py_ssize_t n, Py_ssize_t d,
                            uint32_t* W, Py_ssize_t ldw, double* err,
                            double* tnorm) noexcept
    void hnm_bf16_pack_block(const float* c, Py_ssize_t ldc, Py_ssize_t n, Py_ssize_t d,
                             uint32_t* Bp, Py_ssize_t stride, Py_ssize_t j0,
                             uint32_t* stage, Py_ssize_t ldw, double* err,
                             double* tnorm) noexcept
    void hnm_bf16_gemm_screen(const uint32_t* A, const uint32_t* Bp, Py_ssize_t stride,
                              float* T, Py_ssize_t ldt, Py_ssize_t m, Py_ssize_t n,
                              Py_ssize_t dp, int metric, const float* cs, const float* thr,
                              uint32_t* masks) noexcept
    int __builtin_ctz(unsigned int x) noexcept

# (scores rescored, scores screened in bfloat16) by the last search_update call of
# this process, for tests and benchmarks
_last_screen = (0, 0)

cdef enum:
    IP = 0
    COSINE = 1
    L2 = 2

METRICS = {"ip": IP, "cosine": COSINE, "l2": L2}


cdef inline bint _excluded(intp_t j, const intp_t* ex, intp_t lo, intp_t end) noexcept nogil:
    """Is candidate j among the sorted ids ex[lo:end]?"""
    cdef intp_t mid, hi = end
    while lo < hi:
        mid = (lo + hi) >> 1
        if ex[mid] < j:
            lo = mid + 1
        else:
            hi = mid
    return lo < end and ex[lo] == j


cdef enum:
    # Scores are screened in blocks: one vectorisable pass over a cheap form of
    # the key decides whether any score of the block can enter the heap. A block
    # that passes is flagged score by score in a second vectorised pass, and only
    # flagged scores are offered to the heap (a full heap of k still takes about
    # k log(n/k) entries per query: walking whole blocks for them cost more than
    # the screen itself).
    SCREEN = 64
    SCREEN_WORDS = 8  # SCREEN flags as uint64 words


cdef inline floating _screen_threshold(int metric, floating thr, floating qs,
                                       floating cs_max) noexcept nogil:
    """The screen's threshold for heap root thr, lowered by a bound on the
    rounding difference between the screened form and the key."""
    cdef floating eps = 1.2e-7 if floating is float32_t else 2.3e-16
    cdef floating t
    if metric == IP:
        return thr
    if metric == COSINE:
        t = thr / qs
        return t - 16 * eps * ((t if t > 0 else -t) + 1 / qs)
    # l2 scales are half squared norms: the key is -2 (qs + cs - dot), screened as
    # dot - cs against thr / 2 + qs
    return (thr * 0.5 + qs) - 8 * eps * ((thr if thr > 0 else -thr) + 4 * (qs + cs_max))


cdef inline int _screen_hit(const floating* dots, const floating* cs, intp_t j, intp_t end,
                            int metric, floating t) noexcept nogil:
    """Can any score in [j, end) reach threshold t (NaN counts as a hit)?
    ip compares dot with t; cosine dot * cs; l2 dot - cs (cs: half squared norms).
    Accumulating "every score is below t" takes a compare and an and per value."""
    cdef intp_t jj
    cdef int below = 1
    if metric == IP:
        for jj in range(j, end):
            below &= dots[jj] < t
    elif metric == COSINE:
        for jj in range(j, end):
            below &= dots[jj] * cs[jj] < t
    else:
        for jj in range(j, end):
            below &= dots[jj] - cs[jj] < t
    return not below


cdef inline void _screen_flags(const floating* dots, const floating* cs, intp_t j,
                               intp_t end, int metric, floating t,
                               unsigned char* flags) noexcept nogil:
    """flags[0:SCREEN]: 1 where the score j + i may reach t (NaN included), else 0."""
    cdef intp_t i, n = end - j
    if metric == IP:
        for i in range(n):
            flags[i] = not (dots[j + i] < t)
    elif metric == COSINE:
        for i in range(n):
            flags[i] = not (dots[j + i] * cs[j + i] < t)
    else:
        for i in range(n):
            flags[i] = not (dots[j + i] - cs[j + i] < t)
    for i in range(n, SCREEN):
        flags[i] = 0


cdef struct Block:
    # one block of candidates, as each query of a tile meets it
    int metric
    intp_t c0              # global id of its first candidate
    intp_t nb              # its number of candidates
    const void* scale      # its candidate scales (floating*)
    double scale_max       # their largest (a floating value: exact in double)
    const intp_t* labels   # its candidate labels, NULL: no label filter
    const void* rows       # its first candidate row, row-major (the rescore's input)
    intp_t d


cdef struct Filters:
    # what one query may not take; every filter is checked in _dropped (ids) or
    # _walk (keys), so that a new one touches this struct, _query and that check
    double cap             # keys above it are dropped (max_score; a floating value)
    intp_t self_id         # the query's own id (exclude_self), -1: none
    const intp_t* ex       # sorted excluded ids ex[ex_lo:ex_hi]
    intp_t ex_lo
    intp_t ex_hi
    intp_t label           # the query's label, -1: no label filter


cdef struct Heap:
    # one query's bounded heap of its k best (key, id) pairs (see _heap.pxd)
    void* keys             # floating*
    intp_t* idx
    intp_t* size
    intp_t k


cdef struct Query:
    # one query's state against a block
    double scale           # its scale (a floating value: exact in double)
    const void* row        # its row (the rescore's input)
    double delta           # bfloat16 screen: bound on |approximate - true dot|
    intp_t* rescored       # bfloat16 screen: this thread's count of rescored scores
    Filters f
    Heap h


cdef inline Block _block(int metric, intp_t c0, intp_t nb, const void* scale,
                         double scale_max, const intp_t* labels, const void* rows,
                         intp_t d) noexcept nogil:
    # built by value: prange privatises assigned variables, not assigned fields
    cdef Block b
    b.metric = metric
    b.c0 = c0
    b.nb = nb
    b.scale = scale
    b.scale_max = scale_max
    b.labels = labels
    b.rows = rows
    b.d = d
    return b


cdef inline Query _query(double scale, const void* row, double delta, intp_t* rescored,
                         double cap, intp_t self_id, const intp_t* ex, intp_t ex_lo,
                         intp_t ex_hi, intp_t label, void* keys, intp_t* idx, intp_t* size,
                         intp_t k) noexcept nogil:
    cdef Query q
    q.scale = scale
    q.row = row
    q.delta = delta
    q.rescored = rescored
    q.f.cap = cap
    q.f.self_id = self_id
    q.f.ex = ex
    q.f.ex_lo = ex_lo
    q.f.ex_hi = ex_hi
    q.f.label = label
    q.h.keys = keys
    q.h.idx = idx
    q.h.size = size
    q.h.k = k
    return q


cdef inline double _delta(const double[:, ::1] q_bounds, intp_t i, double ec_max,
                          double ct_max, double gamma, double tiny) noexcept nogil:
    """Bound on |q.c - approximate q.c| for query i and the block's candidates:
    |q.c - q'.c'| <= |q| |c - c'| + |q - q'| |c'|, plus the accumulation and
    the denormals flushed by vdpbf16ps."""
    return (q_bounds[i, 0] * ec_max + q_bounds[i, 1] * ct_max
            + gamma * q_bounds[i, 2] * ct_max
            + tiny * (1 + q_bounds[i, 2] + ct_max)) * (1 + 1e-6)


cdef inline double _form_delta(int metric, double delta, double cs_max) noexcept nogil:
    """The bound in the units of the screened form (cosine screens dot * cs)."""
    return delta * cs_max if metric == COSINE else delta


cdef inline bint _screens(const Block* b, const Query* q) noexcept nogil:
    """Is the query's heap full, so that its root can screen scores? (A zero
    cosine query scores 0 everywhere: its screened form says nothing.)"""
    return q.h.size[0] == q.h.k and not (b.metric == COSINE and q.scale == 0)


cdef inline void _rescore(floating* dots, intp_t jj, const Block* b, const Query* q) noexcept nogil:
    """dots[jj] = the exact dot product, summed in double."""
    cdef const floating* x = <const floating*> q.row
    cdef const floating* c = <const floating*> b.rows + jj * b.d
    cdef intp_t t = 0, d = b.d
    cdef double s0 = 0, s1 = 0, s2 = 0, s3 = 0
    q.rescored[0] += 1
    # the products are exact in double; four sums, not one chain of d dependent
    # adds (NearMiss-1's search at dim 50: the rescores were a fifth of its time)
    while t + 4 <= d:
        s0 = s0 + <double> x[t] * <double> c[t]
        s1 = s1 + <double> x[t + 1] * <double> c[t + 1]
        s2 = s2 + <double> x[t + 2] * <double> c[t + 2]
        s3 = s3 + <double> x[t + 3] * <double> c[t + 3]
        t = t + 4
    while t < d:
        s0 = s0 + <double> x[t] * <double> c[t]
        t = t + 1
    dots[jj] = <floating> ((s0 + s1) + (s2 + s3))


cdef inline bint _dropped(const Block* b, const Filters* f, intp_t jj, intp_t gj) noexcept nogil:
    """Is candidate jj of the block (global id gj) one the query may not take:
    itself, an excluded id, or one of its label?"""
    if gj == f.self_id:
        return True
    if f.ex_hi > f.ex_lo and _excluded(gj, f.ex, f.ex_lo, f.ex_hi):
        return True
    return f.label >= 0 and b.labels[jj] == f.label


cdef inline intp_t _screen_row(floating* dots, const Block* b, Query* q) noexcept nogil:
    """Offer one query's scores against the block's candidates to its heap;
    return the number of NaN scores.

    Once the heap is full, scores are only walked where the screen lets one
    through. The screened forms differ from the keys only by rounding, and the
    screen threshold is lowered by a bound on it: the screen never drops a score
    that could enter (it is conservative, not exact). A threshold computed from
    an older heap root stays conservative: the root only rises.
    """
    cdef intp_t j, end, w, bit, nb = b.nb
    cdef intp_t n_nan = 0
    cdef int metric = b.metric
    cdef const floating* cs = <const floating*> b.scale
    cdef floating t
    cdef uint64_t words[SCREEN_WORDS]
    cdef unsigned char* flags = <unsigned char*> words
    j = 0
    while j < nb:
        end = j + SCREEN if j + SCREEN < nb else nb
        if _screens(b, q):
            t = _screen_threshold(metric, (<floating*> q.h.keys)[0], <floating> q.scale,
                                  <floating> b.scale_max)
            if not _screen_hit(dots, cs, j, end, metric, t):
                j = end
                continue
            _screen_flags(dots, cs, j, end, metric, t, flags)
            for w in range(SCREEN_WORDS):
                if words[w] == 0:
                    continue
                for bit in range(w * 8, w * 8 + 8):
                    if flags[bit]:
                        n_nan += _walk(dots, j + bit, j + bit + 1, b, q)
        else:
            n_nan += _walk(dots, j, end, b, q)
        j = end
    return n_nan


cdef inline intp_t _screen_masked(floating* dots, const uint32_t* masks, const Block* b,
                                  Query* q) noexcept nogil:
    """As _screen_row for approximate dots already screened by the micro-kernel:
    only the candidates whose bit is set in ``masks`` (one word per 32) are
    screened again against the current heap root, and rescored and walked if
    they pass. Returns the number of NaN scores."""
    cdef intp_t g, jj, ng = (b.nb + 31) // 32
    cdef intp_t n_nan = 0
    cdef int metric = b.metric
    cdef const floating* cs = <const floating*> b.scale
    cdef uint32_t w
    cdef floating t, f
    for g in range(ng):
        w = masks[g]
        while w:
            jj = g * 32 + __builtin_ctz(w)
            w = w & (w - 1)
            if _screens(b, q):
                t = _screen_threshold(metric, (<floating*> q.h.keys)[0], <floating> q.scale,
                                      <floating> b.scale_max)
                t = t - <floating> _form_delta(metric, q.delta, <floating> b.scale_max)
                if metric == IP:
                    f = dots[jj]
                elif metric == COSINE:
                    f = dots[jj] * cs[jj]
                else:
                    f = dots[jj] - cs[jj]
                if f < t:
                    continue
            # the filters before the rescore (a labelled search meets many
            # same-label neighbours above the root of its different-label heap)
            if _dropped(b, &q.f, jj, b.c0 + jj):
                continue
            _rescore(dots, jj, b, q)
            n_nan += _walk(dots, jj, jj + 1, b, q)
    return n_nan


cdef inline intp_t _walk(const floating* dots, intp_t j, intp_t end, const Block* b,
                         Query* q) noexcept nogil:
    """Offer the scores [j, end) one by one; return the number of NaN scores."""
    cdef intp_t jj, gj
    cdef intp_t n_nan = 0
    cdef int metric = b.metric
    cdef const floating* cs = <const floating*> b.scale
    cdef floating qs = <floating> q.scale
    cdef floating cap = <floating> q.f.cap
    cdef floating* keys = <floating*> q.h.keys
    cdef floating key, d
    for jj in range(j, end):
        if metric == IP:
            key = dots[jj]
        elif metric == COSINE:
            key = dots[jj] * qs * cs[jj]
        else:
            d = (qs + cs[jj]) - dots[jj]
            d = d + d  # twice the half norms: the squared distance
            key = -d if not (d <= 0) else 0  # clamped at 0; NaN stays NaN
        if key != key:
            n_nan += 1
            continue
        if key > cap:
            continue
        gj = b.c0 + jj
        if q.h.size[0] == q.h.k and not heap_better(key, gj, keys[0], q.h.idx[0]):
            continue
        if _dropped(b, &q.f, jj, gj):
            continue
        heap_push(keys, q.h.idx, q.h.size, q.h.k, key, gj)
    return n_nan


def candidate_scales(const floating[:, ::1] C, int metric, floating[::1] out):
    """Per row: 1/norm (cosine; 0 for a zero vector) or half the squared norm (l2:
    the search works with |q|^2 / 2 + |c|^2 / 2 - q.c, doubled exactly).

    Returns 0 if a value is NaN or infinite; else 2 if a squared norm lies where
    scores are not safe in the dtype (above 2**120 for float32, 2**1000 for
    float64: a dot product or distance could overflow; for cosine also a nonzero
    one below 2**-100 / 2**-900, whose 1 / norm could overflow); else 1."""
    cdef intp_t i, j, n = C.shape[0], d = C.shape[1]
    cdef double s, x, z, a
    cdef double hi = 2.0**120 if floating is float32_t else 2.0**1000
    cdef double lo = 2.0**-100 if floating is float32_t else 2.0**-900
    cdef int status = 1
    with nogil:
        for i in range(n):
            s = 0
            z = 0
            a = 0
            for j in range(d):
                x = C[i, j]
                z += x - x  # NaN unless every value is finite
                s += x * x
                a += fabs(x)  # nonzero even where the squares underflow
            if z != 0:
                status = 0
            elif status == 1 and (s > hi or (metric == COSINE and s < lo and a > 0)):
                status = 2
            if metric == COSINE:
                out[i] = <floating> (1.0 / sqrt(s) if s > 0 else 0.0)
            else:
                out[i] = <floating> (0.5 * s)
    return status


def search_update(const floating[:, ::1] Q, const floating[::1] q_scale,
                  const floating[:, ::1] C, const floating[::1] c_scale, intp_t c_offset,
                  int metric, const floating[::1] cap,
                  const intp_t[::1] ex_ptr, const intp_t[::1] ex_idx, bint exclude_self,
                  const intp_t[::1] q_labels, const intp_t[::1] c_labels,
                  floating[:, ::1] keys, intp_t[:, ::1] idx, intp_t[::1] sizes,
                  intp_t q_block, intp_t c_block, floating[:, ::1] work, int n_threads,
                  const uint32_t[:, ::1] q_packed=None, const double[:, ::1] q_bounds=None,
                  uint32_t[::1] c_packed=None, double[:, ::1] c_bounds=None,
                  uint32_t[:, ::1] c_stage=None):
    """Offer every (query, candidate) pair of Q x C to the queries' heaps.

    ``C`` holds candidates ``c_offset .. c_offset + len(C) - 1``. ``work`` has one
    row of at least ``q_block * c_block`` scores per thread. Labels are used when
    ``c_labels`` has one entry per candidate of ``C``; then a candidate whose label
    equals its query's (``q_labels``, -1 for none) is skipped. ``ex_idx`` must
    hold at least one element. Returns the number of NaN scores.

    Reduced-precision screening (float32 only): ``q_packed`` holds the queries
    packed by :func:`bf16_pack`, ``q_bounds`` their (norm, residual norm, packed
    norm); ``c_packed`` (ceil(d / 2) * round_up(c_block, 32) words per block of
    C), ``c_bounds`` (2 x len(C)) and ``c_stage`` (n_threads x 16 * ceil(d / 2))
    are scratch for the candidates, packed once per call. Scores are
    then approximated by the bfloat16 micro-kernel, screened with the rounding
    bound, and rescored exactly where they pass.
    """
    cdef intp_t n_q = Q.shape[0]
    cdef intp_t n_c = C.shape[0]
    cdef int d = <int> Q.shape[1]
    cdef intp_t k = keys.shape[1]
    cdef intp_t n_qb = (n_q + q_block - 1) // q_block
    cdef intp_t cb, qb, q0, q1, c1, nb, i
    cdef intp_t n_nan = 0
    cdef int tid
    cdef floating* tile
    cdef floating cs_max
    cdef bint use_labels = c_labels.shape[0] == n_c
    cdef bint approx = False
    cdef intp_t dp = (d + 1) // 2
    cdef intp_t stride = 0, ch, r, r1
    cdef double ec_max = 0, ct_max = 0, delta = 0
    # vdpbf16ps sums in fp32 with two roundings per pair; the rescore in double
    cdef double gamma = d * (2.0**-24 + 2.0**-50)
    cdef double tiny = d * 2.0**-124
    cdef Block blk
    cdef Query qu
    cdef floating* thr
    cdef uint32_t* masks
    if floating is float32_t:
        approx = q_packed is not None
    cdef intp_t panel = dp * ((min(c_block, n_c) + 31) // 32 * 32)
    cdef intp_t chunks_per_block = (c_block + 15) // 16
    cdef intp_t n_chunks = (n_c + c_block - 1) // c_block * chunks_per_block
    cdef uint32_t* packed = NULL
    cdef intp_t* rescored
    cdef intp_t n_screened = 0, total_rescored = 0, n_blocks, bi
    cdef intp_t* total
    cdef intp_t* screened
    cdef double* blk_ec
    cdef double* blk_ct
    cdef double* blk_cs
    cdef bint use_approx
    if approx and (q_packed.shape[0] != n_q or q_packed.shape[1] != dp
                   or q_bounds.shape[0] != n_q or c_bounds.shape[1] < n_c
                   or c_packed.shape[0] < panel * ((n_c + c_block - 1) // c_block)
                   or c_stage.shape[0] < n_threads or c_stage.shape[1] < 16 * dp
                   or work.shape[1] < q_block * c_block + q_block
                   + q_block * ((c_block + 31) // 32)):
        raise ValueError("bf16 screening buffers do not match the blocks")
    if n_q == 0 or n_c == 0 or k == 0:
        return 0
    n_blocks = (n_c + c_block - 1) // c_block
    # per thread: rescored in this block, in all, and scores screened; then per
    # block: the largest candidate scale and bfloat16 error terms
    rescored = <intp_t*> calloc(3 * n_threads, sizeof(intp_t))
    blk_ec = <double*> calloc(3 * n_blocks, sizeof(double))
    if rescored == NULL or blk_ec == NULL:
        free(rescored)
        free(blk_ec)
        raise MemoryError()
    total = rescored + n_threads
    screened = rescored + 2 * n_threads
    blk_ct = blk_ec + n_blocks
    blk_cs = blk_ct + n_blocks
    with nogil:
        if floating is float32_t:
            if approx:
                # pack every block of this call at once (one parallel region, not
                # one per block: each region's join waits for the slowest thread),
                # 16 candidates per task so that no two threads write the same
                # cache line of the transposed pairs; block b at b * panel
                for ch in prange(n_chunks, schedule="static", num_threads=n_threads):
                    cb = (ch // chunks_per_block) * c_block
                    r = cb + (ch % chunks_per_block) * 16
                    c1 = cb + c_block if cb + c_block < n_c else n_c
                    if r < c1:
                        r1 = 16 if r + 16 < c1 else c1 - r
                        hnm_bf16_pack_block(&C[r, 0], d, r1, d,
                                            &c_packed[(cb // c_block) * panel],
                                            (c1 - cb + 31) // 32 * 32, r - cb,
                                            &c_stage[threadid(), 0], dp, &c_bounds[0, r],
                                            &c_bounds[1, r])
        # per block: the largest candidate scale and bfloat16 error terms
        for bi in range(n_blocks):
            cb = bi * c_block
            c1 = cb + c_block if cb + c_block < n_c else n_c
            blk_cs[bi] = 0
            for i in range(cb, c1):
                blk_cs[bi] = c_scale[i] if c_scale[i] > blk_cs[bi] else blk_cs[bi]
            blk_ec[bi] = 0
            blk_ct[bi] = 0
            if approx:
                for r in range(cb, c1):
                    blk_ec[bi] = c_bounds[0, r] if c_bounds[0, r] > blk_ec[bi] else blk_ec[bi]
                    blk_ct[bi] = c_bounds[1, r] if c_bounds[1, r] > blk_ct[bi] else blk_ct[bi]
        # each thread takes a tile of queries through every block of the call: one
        # join per call (a join per block waits for the slowest thread each time)
        for qb in prange(n_qb, schedule="dynamic", num_threads=n_threads):
            tid = threadid()
            tile = &work[tid, 0]
            q0 = qb * q_block
            q1 = q0 + q_block if q0 + q_block < n_q else n_q
            use_approx = approx
            for bi in range(n_blocks):
                cb = bi * c_block
                c1 = cb + c_block if cb + c_block < n_c else n_c
                nb = c1 - cb
                cs_max = <floating> blk_cs[bi]
                ec_max = blk_ec[bi]
                ct_max = blk_ct[bi]
                if floating is float32_t:
                    if use_approx:
                        stride = (nb + 31) // 32 * 32
                        thr = tile + q_block * c_block
                        masks = <uint32_t*> (thr + q_block)
                        for i in range(q0, q1):
                            thr[i - q0] = -INFINITY
                            if sizes[i] == k and not (metric == COSINE and q_scale[i] == 0):
                                thr[i - q0] = _screen_threshold(metric, keys[i, 0], q_scale[i],
                                                                cs_max) - _form_delta(
                                    metric, _delta(q_bounds, i, ec_max, ct_max, gamma, tiny),
                                    cs_max)
                        hnm_bf16_gemm_screen(&q_packed[q0, 0], &c_packed[bi * panel], stride,
                                             tile, nb, q1 - q0, nb, dp, metric, &c_scale[cb],
                                             thr, masks)
                    else:
                        gemm_bt(&C[cb, 0], &Q[q0, 0], tile, <int> nb, <int> (q1 - q0), d)
                else:
                    gemm_bt(&C[cb, 0], &Q[q0, 0], tile, <int> nb, <int> (q1 - q0), d)
                blk = _block(metric, c_offset + cb, nb, &c_scale[cb], blk_cs[bi],
                             &c_labels[cb] if use_labels else NULL, &C[cb, 0], d)
                for i in range(q0, q1):
                    qu = _query(q_scale[i], &Q[i, 0],
                                _delta(q_bounds, i, ec_max, ct_max, gamma, tiny)
                                if use_approx else 0, &rescored[tid], cap[i],
                                i if exclude_self else -1, &ex_idx[0], ex_ptr[i],
                                ex_ptr[i + 1], q_labels[i] if use_labels else -1,
                                &keys[i, 0], &idx[i, 0], &sizes[i], k)
                    if use_approx:
                        n_nan += _screen_masked(tile + (i - q0) * nb,
                                                masks + (i - q0) * ((nb + 31) // 32), &blk, &qu)
                    else:
                        n_nan += _screen_row(tile + (i - q0) * nb, &blk, &qu)
                if use_approx:
                    # counted, not acted on: switching a tile to the fp32 GEMM mid-search
                    # would make its scores (fp32 GEMM instead of exact rescores) depend
                    # on how the queries and candidates were split into calls
                    screened[tid] += (q1 - q0) * nb
                    total[tid] += rescored[tid]
                    rescored[tid] = 0
    for r in range(n_threads):
        total_rescored += total[r]
        n_screened += screened[r]
    free(rescored)
    free(blk_ec)
    global _last_screen
    _last_screen = (total_rescored, n_screened)
    return n_nan


def bf16_supported():
    """Whether this CPU runs the bfloat16 screening micro-kernel (AVX-512 BF16)."""
    return bool(hnm_bf16_supported())


def bf16_pack(const float32_t[:, ::1] X, uint32_t[:, ::1] out, double[:, ::1] bounds,
              int n_threads):
    """Pack rows of X into bfloat16 pairs (out: n x ceil(d / 2)) and write
    bounds[i] = (|x|, |x - x'|, |x'|), each rounded up."""
    cdef intp_t n = X.shape[0], d = X.shape[1], i, t
    cdef double s
    if n == 0:
        return
    with nogil:
        for i in prange(n, schedule="static", num_threads=n_threads):
            hnm_bf16_pack_rows(&X[i, 0], d, 1, d, &out[i, 0], out.shape[1], &bounds[i, 1],
                               &bounds[i, 2])
            s = 0
            for t in range(d):
                s = s + <double> X[i, t] * <double> X[i, t]
            bounds[i, 0] = sqrt(s) * (1 + 1e-6)


def squared_l2_at(const double[:, ::1] Q, const double[:, ::1] C, const intp_t[:, ::1] ids,
                  double[:, ::1] out, int n_threads):
    """out[i, t] = |Q[i] - C[ids[i, t]]|^2 in float64, from the differences (no
    cancellation); +inf where ids[i, t] < 0. Rows in parallel, no temporaries."""
    cdef intp_t n = ids.shape[0], m = ids.shape[1], dim = Q.shape[1]
    cdef intp_t i, t, j, d
    cdef double s, x
    if n == 0 or m == 0:
        return
    with nogil:
        for i in prange(n, schedule="static", num_threads=n_threads):
            for t in range(m):
                j = ids[i, t]
                if j < 0:
                    out[i, t] = INFINITY
                    continue
                s = 0
                for d in range(dim):
                    x = Q[i, d] - C[j, d]
                    s = s + x * x
                out[i, t] = s
