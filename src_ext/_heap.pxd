# Header-only bounded heap over (key, index) pairs, keeping the k *best* pairs.
#
# "Better" is a total order: a larger key wins, and an equal key wins with the
# smaller index. Every kernel selects with this order, so a result never depends
# on how the input was chunked or split between threads. Callers that want the
# smallest values pass negated keys (negation is exact in IEEE arithmetic).
#
# The heap is a min-heap in that order: the root is the worst of the kept pairs,
# the one a newcomer has to beat. NaN keys must never be pushed.
from _typedefs cimport intp_t, floating


cdef inline bint heap_better(floating a, intp_t ia, floating b, intp_t ib) noexcept nogil:
    return a > b or (a == b and ia < ib)


cdef inline void heap_sift_down(floating* keys, intp_t* idx, intp_t size,
                                intp_t pos) noexcept nogil:
    cdef floating key = keys[pos]
    cdef intp_t ix = idx[pos]
    cdef intp_t child
    while True:
        child = 2 * pos + 1
        if child >= size:
            break
        # pick the worse child
        if child + 1 < size and heap_better(keys[child], idx[child],
                                            keys[child + 1], idx[child + 1]):
            child += 1
        if heap_better(key, ix, keys[child], idx[child]):
            keys[pos] = keys[child]
            idx[pos] = idx[child]
            pos = child
        else:
            break
    keys[pos] = key
    idx[pos] = ix


cdef inline void heap_push(floating* keys, intp_t* idx, intp_t* size, intp_t k,
                           floating key, intp_t ix) noexcept nogil:
    """Offer (key, ix) to a heap holding at most k pairs."""
    cdef intp_t pos, parent
    if size[0] < k:
        pos = size[0]
        size[0] += 1
        # sift up: move worse parents down
        while pos > 0:
            parent = (pos - 1) >> 1
            if heap_better(keys[parent], idx[parent], key, ix):
                keys[pos] = keys[parent]
                idx[pos] = idx[parent]
                pos = parent
            else:
                break
        keys[pos] = key
        idx[pos] = ix
    elif heap_better(key, ix, keys[0], idx[0]):
        keys[0] = key
        idx[0] = ix
        heap_sift_down(keys, idx, k, 0)


cdef inline void heap_sort(floating* keys, intp_t* idx, intp_t size) noexcept nogil:
    """Sort a heap in place, best first."""
    cdef floating tk
    cdef intp_t ti, end
    end = size - 1
    while end > 0:
        tk = keys[0]; keys[0] = keys[end]; keys[end] = tk
        ti = idx[0]; idx[0] = idx[end]; idx[end] = ti
        heap_sift_down(keys, idx, end, 0)
        end -= 1
