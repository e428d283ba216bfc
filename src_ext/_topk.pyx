"""Streaming top-k selection kernels.

Both kernels offer values to bounded heaps (see ``_heap.pxd``) and read every
value exactly once. They select the *largest* keys; the caller passes
``sign=-1`` to select the smallest (keys are ``sign * value``). NaN values are
never selected, only counted, so the numpy layer can raise or omit them without
a second pass over the data.
"""
from cython.parallel cimport prange, threadid

from _typedefs cimport intp_t, floating
from _heap cimport heap_better, heap_push, heap_sort

cdef extern from "_rowmax.h" nogil:
    int hnm_dynamic_begin()
    void hnm_dynamic_end(int before)
    int hnm_rowmax_avx512
    int hnm_rowmax_init()
    intp_t hnm_first_hit_f32(const float* x, intp_t n, float thr, int largest)
    intp_t hnm_first_hit_f64(const double* x, intp_t n, double thr, int largest)

AVX512_SUPPORTED = hnm_rowmax_init() != 0


def use_avx512(on=None):
    """Whether the AVX-512 screen runs: ``None`` only reports it; True turns it
    on where the CPU has AVX-512, False off (the portable screen; for tests of
    both paths). Returns the previous state."""
    global hnm_rowmax_avx512
    before = hnm_rowmax_avx512 != 0
    if on is not None:
        hnm_rowmax_avx512 = 1 if (on and AVX512_SUPPORTED) else 0
    return before


cdef inline intp_t _first_hit(const floating* x, intp_t n, floating thr,
                              floating sign) noexcept nogil:
    """First i < n whose key sign * x[i] is >= thr or NaN (n if none): the screen
    (_rowmax.h), one vectorised read while nothing can enter the heap."""
    if floating is float:
        return hnm_first_hit_f32(x, n, thr, sign > 0)
    else:
        return hnm_first_hit_f64(x, n, thr, sign > 0)


cdef intp_t _scan(const floating* x, intp_t n, intp_t offset, floating sign,
                  floating* keys, intp_t* idx, intp_t* size, intp_t k) noexcept nogil:
    """Offer sign * x[0:n] (global indices offset + i) to a heap; return the NaN count."""
    cdef intp_t i = 0, n_nan = 0
    cdef floating v, thr
    while i < n and size[0] < k:
        v = sign * x[i]
        if v != v:
            n_nan += 1
        else:
            heap_push(keys, idx, size, k, v, offset + i)
        i += 1
    while i < n:
        # the next value that passes the screen: NaN (unordered compare) or a key
        # >= the root, ties included (they may still win on a smaller index)
        thr = keys[0]
        i += _first_hit(&x[i], n - i, thr, sign)
        if i >= n:
            break
        v = sign * x[i]
        if v >= thr:
            if heap_better(v, offset + i, keys[0], idx[0]):
                heap_push(keys, idx, size, k, v, offset + i)
        else:
            n_nan += 1
        i += 1
    return n_nan


def topk_flat_update(const floating[::1] x, intp_t offset, floating sign,
                     intp_t chunk_size, floating[:, ::1] keys, intp_t[:, ::1] idx,
                     intp_t[::1] sizes):
    """Offer ``x`` (global indices ``offset + i``) to per-thread heaps.

    Row ``t`` of ``keys``/``idx`` is the heap of thread ``t`` and ``sizes[t]`` its
    fill; heaps persist across calls, so the caller can stream an array chunk by
    chunk. ``x`` is split into chunks of ``chunk_size`` values shared among
    ``keys.shape[0]`` threads. Returns the number of NaN values seen.
    """
    cdef intp_t n = x.shape[0]
    cdef intp_t k = keys.shape[1]
    cdef int n_threads = <int> keys.shape[0]
    cdef intp_t n_chunks, c, start, stop
    cdef intp_t n_nan = 0
    cdef int tid
    if n == 0 or k == 0:
        return 0
    n_chunks = (n + chunk_size - 1) // chunk_size
    cdef int dyn = hnm_dynamic_begin()
    with nogil:
        # dynamic: a thread the OS preempts on a busy machine leaves its chunks to
        # the others (the merged result does not depend on who scanned what)
        for c in prange(n_chunks, schedule="dynamic", num_threads=n_threads):
            tid = threadid()
            start = c * chunk_size
            stop = start + chunk_size
            if stop > n:
                stop = n
            n_nan += _scan(&x[start], stop - start, offset + start, sign,
                           &keys[tid, 0], &idx[tid, 0], &sizes[tid], k)
    hnm_dynamic_end(dyn)
    return n_nan


def topk_rows(const floating[:, ::1] x, floating sign, floating[:, ::1] keys,
              intp_t[:, ::1] idx, intp_t[::1] counts, int n_threads):
    """Top ``keys.shape[1]`` keys of every row of ``x``, rows in parallel.

    On return ``keys[r, :counts[r]]`` and ``idx[r, :counts[r]]`` hold row ``r``'s
    best keys, best first (``counts[r]`` is short only when the row has NaNs).
    Returns the number of NaN values seen.
    """
    cdef intp_t n_rows = x.shape[0]
    cdef intp_t n_cols = x.shape[1]
    cdef intp_t k = keys.shape[1]
    cdef intp_t r
    cdef intp_t n_nan = 0
    if n_rows == 0 or n_cols == 0 or k == 0:
        return 0
    cdef int dyn = hnm_dynamic_begin()
    with nogil:
        for r in prange(n_rows, schedule="dynamic", num_threads=n_threads):
            counts[r] = 0
            n_nan += _scan(&x[r, 0], n_cols, 0, sign, &keys[r, 0], &idx[r, 0],
                           &counts[r], k)
            heap_sort(&keys[r, 0], &idx[r, 0], counts[r])
    hnm_dynamic_end(dyn)
    return n_nan

