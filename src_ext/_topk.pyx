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

cdef enum:
    # Values are screened in blocks: one vectorisable pass decides whether any
    # value of the block can enter the heap; only then is the block walked
    # element by element. Once the heap is full almost every block is skipped.
    BLOCK = 64


cdef intp_t _scan(const floating* x, intp_t n, intp_t offset, floating sign,
                  floating* keys, intp_t* idx, intp_t* size, intp_t k) noexcept nogil:
    """Offer sign * x[0:n] (global indices offset + i) to a heap; return the NaN count."""
    cdef intp_t i = 0, j, end, n_nan = 0
    cdef floating v, thr
    cdef int hit
    while i < n and size[0] < k:
        v = sign * x[i]
        if v != v:
            n_nan += 1
        else:
            heap_push(keys, idx, size, k, v, offset + i)
        i += 1
    while i < n:
        end = i + BLOCK if i + BLOCK <= n else n
        thr = keys[0]
        hit = 0
        for j in range(i, end):
            # true for NaN too (unordered compare), and for ties with the root,
            # which may still win on a smaller index
            hit |= not (sign * x[j] < thr)
        if hit:
            for j in range(i, end):
                v = sign * x[j]
                if v >= thr:
                    if heap_better(v, offset + j, keys[0], idx[0]):
                        heap_push(keys, idx, size, k, v, offset + j)
                        thr = keys[0]
                elif v != v:
                    n_nan += 1
        i = end
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
    with nogil:
        for c in prange(n_chunks, schedule="static", num_threads=n_threads):
            tid = threadid()
            start = c * chunk_size
            stop = start + chunk_size
            if stop > n:
                stop = n
            n_nan += _scan(&x[start], stop - start, offset + start, sign,
                           &keys[tid, 0], &idx[tid, 0], &sizes[tid], k)
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
    with nogil:
        for r in prange(n_rows, schedule="static", num_threads=n_threads):
            counts[r] = 0
            n_nan += _scan(&x[r, 0], n_cols, 0, sign, &keys[r, 0], &idx[r, 0],
                           &counts[r], k)
            heap_sort(&keys[r, 0], &idx[r, 0], counts[r])
    return n_nan

