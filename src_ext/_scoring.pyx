"""Fused difficulty scores: one pass over each row, rows in parallel.

The kernels map labels to columns, compute the measure and validate the scores
in the same pass, so validation costs no second read of the data. They write
into an output the caller allocated and return counts of invalid input:
``bad[0]`` rows with a label outside the table, ``bad[1]`` rows with NaN/inf,
``bad[2]`` rows with probabilities outside [0, 1] or not summing to 1 (only for
the probability measures).
"""
from cython.parallel cimport prange
from libc.math cimport log, fabs, INFINITY

from libc.stdint cimport int64_t, uint64_t

from _typedefs cimport intp_t, floating

cdef enum:
    MARGIN = 0
    LOG_LOSS = 1
    HINGE = 2
    CONFIDENCE = 3
    ENTROPY = 4

MEASURES = {"margin": MARGIN, "log_loss": LOG_LOSS, "hinge": HINGE,
            "confidence": CONFIDENCE, "entropy": ENTROPY}


cdef inline double _xlogx(double p) noexcept nogil:
    return p * log(p) if p > 0 else 0.0


cdef inline intp_t _column(int64_t label, long long y_min, const intp_t* table,
                           intp_t n_table) noexcept nogil:
    """Column of a label, -1 if unknown. Unsigned arithmetic: a label below
    y_min wraps to a huge offset instead of overflowing."""
    cdef uint64_t t = <uint64_t> label - <uint64_t> y_min
    return table[t] if t < <uint64_t> n_table else -1


cdef enum:
    # Rows scored together: the column loop runs over a block of rows, so the
    # per-row reductions (max, sum) are independent chains the CPU overlaps,
    # instead of one serial chain of dependent max operations per row.
    ROWS = 64

BLOCK_ROWS = ROWS  # for callers sizing the ``seen`` buffer


cdef inline long long _block(const floating* S, intp_t C, intp_t n_rows,
                             const int64_t* y, long long y_min, const intp_t* table,
                             intp_t n_table, int measure, double eps,
                             double sum_tol, floating* out) noexcept nogil:
    """Score ``n_rows`` (<= ROWS) consecutive rows. Returns the invalid rows,
    packed: unknown labels + (NaN/inf rows << 20) + (bad probability rows << 40).
    Inlined with a constant ``measure``, so each loop specialises."""
    cdef double z[ROWS]
    cdef double total[ROWS]
    cdef double lo[ROWS]
    cdef double hi[ROWS]
    cdef double acc[ROWS]
    cdef intp_t col[ROWS]
    cdef intp_t i, j
    cdef double x, v
    cdef long long packed = 0
    cdef bint proba = measure == LOG_LOSS or measure == CONFIDENCE or measure == ENTROPY
    for i in range(n_rows):
        col[i] = _column(y[i], y_min, table, n_table)  # entropy too: labels are checked
        z[i] = 0.0
        total[i] = 0.0
        lo[i] = 0.0
        hi[i] = 1.0
        acc[i] = 0.0
    for j in range(C):
        for i in range(n_rows):
            x = S[i * C + j]
            z[i] += x - x          # NaN unless every value is finite
            if proba:
                total[i] += x
                lo[i] = x if x < lo[i] else lo[i]
                hi[i] = x if x > hi[i] else hi[i]
            if measure == ENTROPY:
                acc[i] -= _xlogx(x)
    for i in range(n_rows):
        if col[i] < 0:
            packed += 1
            out[i] = 0
            continue
        if z[i] != 0:
            packed += 1LL << 20
            out[i] = 0
            continue
        if proba and (lo[i] < 0 or hi[i] > 1 or not fabs(total[i] - 1.0) <= sum_tol):
            packed += 1LL << 40
            out[i] = 0
            continue
        v = S[i * C + col[i]]
        if measure == CONFIDENCE:
            out[i] = <floating> (1.0 - v)
        elif measure == LOG_LOSS:
            v = eps if v < eps else v
            v = 1.0 - eps if v > 1.0 - eps else v
            out[i] = <floating> (-log(v))
        else:
            out[i] = <floating> acc[i]
    return packed


cdef inline long long _margin_row(const floating* r, intp_t C, intp_t c, bint hinge,
                                  floating* out) noexcept nogil:
    """Margin (or hinge) of one row whose true column is c; 1 << 20 if not finite.
    The scalar path, for blocks holding a NaN or infinity (counted row by row)."""
    cdef intp_t j
    cdef floating x0, x1, b0 = -INFINITY, b1 = -INFINITY, z0 = 0, z1 = 0, best, v
    j = 0
    while j + 2 <= C:
        x0 = r[j]
        x1 = r[j + 1]
        z0 += x0 - x0       # NaN unless every value is finite
        z1 += x1 - x1
        b0 = x0 if x0 > b0 else b0
        b1 = x1 if x1 > b1 else b1
        j += 2
    if j < C:
        x0 = r[j]
        z0 += x0 - x0
        b0 = x0 if x0 > b0 else b0
    if z0 + z1 != 0:
        out[0] = 0
        return 1LL << 20
    best = b0 if b0 > b1 else b1
    v = r[c]
    if not v < best:  # the true class holds the maximum: max over the others
        b0 = -INFINITY
        b1 = -INFINITY
        for j in range(c):
            x0 = r[j]
            b0 = x0 if x0 > b0 else b0
        for j in range(c + 1, C):
            x1 = r[j]
            b1 = x1 if x1 > b1 else b1
        best = b0 if b0 > b1 else b1
    v = v - best
    if hinge:
        out[0] = <floating> (1.0 - v if v < 1.0 else 0.0)
    else:
        out[0] = <floating> (-v)
    return 0


cdef extern from "_rowmax.h" nogil:
    int hnm_dynamic_begin()
    void hnm_dynamic_end(int before)
    int hnm_rowmax_avx512
    int hnm_rowmax_init()
    int hnm_margin_block_f32(const float* S, intp_t C, intp_t n_rows, const intp_t* cols,
                             float* out)
    int hnm_margin_block_f64(const double* S, intp_t C, intp_t n_rows, const intp_t* cols,
                             double* out)
    int hnm_proba_block_f32(const float* S, intp_t C, intp_t n_rows, const intp_t* cols,
                            double tol, float* out)
    int hnm_proba_block_f64(const double* S, intp_t C, intp_t n_rows, const intp_t* cols,
                            double tol, double* out)


AVX512_SUPPORTED = hnm_rowmax_init() != 0


def use_avx512(on=None):
    """Whether the AVX-512 margin kernels run: ``None`` only reports it; True
    turns them on where the CPU has AVX-512 (off elsewhere), False off (the
    16-byte vector path; for tests of both paths). Returns the previous state."""
    global hnm_rowmax_avx512
    before = hnm_rowmax_avx512 != 0
    if on is not None:
        hnm_rowmax_avx512 = 1 if (on and AVX512_SUPPORTED) else 0
    return before


cdef inline long long _columns(const int64_t* y, intp_t n_rows, long long y_min,
                               const intp_t* table, intp_t n_table, intp_t* cols,
                               uint64_t* seen) noexcept nogil:
    """cols[i] = column of y[i] (-1: unknown) for n_rows <= ROWS labels; returns the
    unknown count. With ``seen``, stores the bit set of the columns (< 64) found:
    one pass over the labels serves both. ``table=NULL``: the identity table of
    ``n_table`` entries (labels 0..n_table-1 are their own columns, no lookup)."""
    cdef intp_t i, c
    cdef long long unknown = 0
    cdef uint64_t bits = 0
    cdef uint64_t t
    for i in range(n_rows):
        if table == NULL:
            t = <uint64_t> y[i] - <uint64_t> y_min
            c = <intp_t> t if t < <uint64_t> n_table else -1
        else:
            c = _column(y[i], y_min, table, n_table)
        cols[i] = c
        unknown += c < 0
        if 0 <= c < 64:
            bits |= (<uint64_t> 1) << c
    if seen != NULL:
        seen[0] = bits
    return unknown


cdef long long _margin_rows(const floating* S, intp_t C, intp_t n_rows, const int64_t* y,
                            long long y_min, const intp_t* table, intp_t n_table,
                            bint hinge, floating* out, uint64_t* seen,
                            const intp_t* lookup) noexcept nogil:
    """Margins (or hinges) of n_rows <= ROWS rows, in vectors (_rowmax.h); a block
    holding a NaN or infinity is rescanned row by row to count those rows."""
    cdef intp_t cols[ROWS]
    cdef intp_t i
    cdef long long packed = _columns(y, n_rows, y_min, lookup, n_table, cols, seen)
    cdef int nonfinite
    if floating is float:
        nonfinite = hnm_margin_block_f32(S, C, n_rows, cols, out)
    else:
        nonfinite = hnm_margin_block_f64(S, C, n_rows, cols, out)
    if nonfinite:
        for i in range(n_rows):
            if cols[i] >= 0:
                packed += _margin_row(&S[i * C], C, cols[i], hinge, &out[i])
    elif hinge:
        for i in range(n_rows):
            if cols[i] >= 0:  # out holds -margin
                out[i] = <floating> (1.0 + out[i] if out[i] > -1.0 else 0.0)
    return packed


cdef long long _proba_rows(const floating* S, intp_t C, intp_t n_rows, const int64_t* y,
                           long long y_min, const intp_t* table, intp_t n_table,
                           int measure, double eps, double sum_tol,
                           floating* out, uint64_t* seen,
                           const intp_t* lookup) noexcept nogil:
    """log_loss or confidence of n_rows <= ROWS rows: validated and read in vectors
    (_rowmax.h); a block with an invalid row is rescanned by _block to count."""
    cdef intp_t cols[ROWS]
    cdef intp_t i
    cdef long long packed = _columns(y, n_rows, y_min, lookup, n_table, cols, seen)
    cdef int invalid
    cdef double v
    if floating is float:
        invalid = hnm_proba_block_f32(S, C, n_rows, cols, sum_tol, out)
    else:
        invalid = hnm_proba_block_f64(S, C, n_rows, cols, sum_tol, out)
    if invalid:
        return _block(S, C, n_rows, y, y_min, table, n_table, measure, eps, sum_tol, out)
    for i in range(n_rows):
        if cols[i] < 0:
            continue
        v = out[i]  # the true class's probability
        if measure == CONFIDENCE:
            out[i] = <floating> (1.0 - v)
        else:
            v = eps if v < eps else v
            v = 1.0 - eps if v > 1.0 - eps else v
            out[i] = <floating> (-log(v))
    return packed


cdef uint64_t _seen_bits(const int64_t* y, intp_t n_rows, long long y_min,
                         const intp_t* table, intp_t n_table) noexcept nogil:
    """Bit set of the columns (< 64) that the labels y[:n_rows] map to."""
    cdef uint64_t bits = 0
    cdef intp_t i, c
    for i in range(n_rows):
        c = _column(y[i], y_min, table, n_table)
        if 0 <= c < 64:
            bits |= (<uint64_t> 1) << c
    return bits


cdef void _rows_measure(const floating[:, ::1] S, const int64_t[::1] y, long long y_min,
                        const intp_t[::1] table, int measure, double eps, double sum_tol,
                        floating[::1] out, long long* counts, uint64_t* seen,
                        int n_threads) noexcept nogil:
    cdef intp_t n = S.shape[0]
    cdef intp_t C = S.shape[1]
    cdef intp_t n_table = table.shape[0]
    cdef intp_t n_blocks = (n + ROWS - 1) // ROWS
    cdef intp_t b, start, stop
    cdef long long n_label = 0, n_fin = 0, n_prob = 0, packed
    cdef uint64_t* seen_b
    # labels that are their own columns (the usual 0..C-1): no table lookup per row
    cdef const intp_t* lookup = NULL
    cdef intp_t j
    for j in range(n_table):
        if table[j] != j or n_table > 4096:
            lookup = &table[0]
            break
    # dynamic: a thread the OS preempts on a busy machine leaves its blocks to the
    # others instead of holding up the whole call (results do not depend on it)
    for b in prange(n_blocks, schedule="dynamic", chunksize=64, num_threads=n_threads):
        start = b * ROWS
        stop = start + ROWS if start + ROWS < n else n
        seen_b = &seen[b] if seen != NULL else NULL
        if measure == MARGIN or measure == HINGE:
            packed = _margin_rows(&S[start, 0], C, stop - start, &y[start], y_min, &table[0],
                                  n_table, measure == HINGE, &out[start], seen_b, lookup)
        elif measure == LOG_LOSS:
            packed = _proba_rows(&S[start, 0], C, stop - start, &y[start], y_min, &table[0],
                                 n_table, LOG_LOSS, eps, sum_tol, &out[start], seen_b,
                                 lookup)
        elif measure == CONFIDENCE:
            packed = _proba_rows(&S[start, 0], C, stop - start, &y[start], y_min, &table[0],
                                 n_table, CONFIDENCE, eps, sum_tol, &out[start], seen_b,
                                 lookup)
        else:
            packed = _block(&S[start, 0], C, stop - start, &y[start], y_min, &table[0],
                            n_table, ENTROPY, eps, sum_tol, &out[start])
            if seen_b != NULL:
                seen_b[0] = _seen_bits(&y[start], stop - start, y_min, &table[0], n_table)
        n_label += packed & 0xFFFFF
        n_fin += (packed >> 20) & 0xFFFFF
        n_prob += packed >> 40
    counts[0] += n_label
    counts[1] += n_fin
    counts[2] += n_prob


def difficulty_rows(const floating[:, ::1] S, const int64_t[::1] y, long long y_min,
                    const intp_t[::1] table, int measure, double eps, double sum_tol,
                    floating[::1] out, long long[::1] bad, int n_threads,
                    uint64_t[::1] seen=None):
    """Difficulty of every row of ``S`` (n, C); the column of row i's label is
    ``table[y[i] - y_min]`` (-1: unknown); entropy does not use the column but
    counts unknown labels like the other measures. If ``seen`` (one entry per block of ROWS
    rows) is given, ``seen[b]`` gets the bit set of columns < 64 that block b's
    labels map to, so the caller learns which labels occur without another pass."""
    if S.shape[0] == 0 or S.shape[1] == 0:
        return
    cdef uint64_t* seen_ptr = NULL
    if seen is not None:
        if seen.shape[0] < (S.shape[0] + ROWS - 1) // ROWS:
            raise ValueError("seen needs one entry per block of rows")
        seen_ptr = &seen[0]
    cdef int dyn = hnm_dynamic_begin()
    with nogil:
        _rows_measure(S, y, y_min, table, measure, eps, sum_tol, out, &bad[0], seen_ptr,
                      n_threads)
    hnm_dynamic_end(dyn)


def difficulty_binary(const floating[::1] f, const int64_t[::1] y, long long y_min,
                      const intp_t[::1] table, int measure, double eps,
                      floating[::1] out, long long[::1] bad, int n_threads):
    """Binary scores, shape (n,): decision values for margin and hinge
    (y+- = +1 for column 1), positive-class probabilities for the others."""
    cdef intp_t n = f.shape[0]
    cdef intp_t n_table = table.shape[0]
    cdef intp_t i, c
    cdef double v, sgn, p
    cdef long long n_label = 0, n_fin = 0, n_prob = 0
    cdef bint proba = measure == LOG_LOSS or measure == CONFIDENCE or measure == ENTROPY
    if n == 0:
        return
    cdef int dyn = hnm_dynamic_begin()
    with nogil:
        for i in prange(n, schedule="dynamic", chunksize=4096, num_threads=n_threads):
            c = _column(y[i], y_min, &table[0], n_table)  # entropy too: labels are checked
            if c < 0:
                n_label += 1
                out[i] = 0
                continue
            v = f[i]
            if not (v - v == 0):
                n_fin += 1
                out[i] = 0
                continue
            if proba and not (v >= 0 and v <= 1):
                n_prob += 1
                out[i] = 0
                continue
            sgn = 1.0 if c == 1 else -1.0
            if measure == MARGIN:
                out[i] = <floating> (-sgn * v)
            elif measure == HINGE:
                out[i] = <floating> (1.0 - sgn * v if sgn * v < 1.0 else 0.0)
            else:
                p = v if c == 1 else 1.0 - v  # probability of the true class
                if measure == LOG_LOSS:
                    if p < eps:
                        p = eps
                    if p > 1.0 - eps:
                        p = 1.0 - eps
                    out[i] = <floating> (-log(p))
                elif measure == CONFIDENCE:
                    out[i] = <floating> (1.0 - p)
                else:
                    out[i] = <floating> (-_xlogx(v) - _xlogx(1.0 - v))
    hnm_dynamic_end(dyn)
    bad[0] += n_label
    bad[1] += n_fin
    bad[2] += n_prob
