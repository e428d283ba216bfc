# Header-only GEMM of the blocked kernels (search and miners): one call shape,
# so a key is computed the same way wherever a kernel tiles its blocks.
from scipy.linalg.cython_blas cimport sgemm, dgemm

from _typedefs cimport float32_t, floating


cdef inline void gemm_bt(const floating* A, const floating* B, floating* T, int m, int n,
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
