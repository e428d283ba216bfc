# OpenMP shim: a build without OpenMP (HNM_NO_OPENMP=1 or a compiler without it)
# still compiles, and the kernels then run on one thread.
cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define HNM_HAVE_OPENMP 1
    #else
    #define HNM_HAVE_OPENMP 0
    static int omp_get_max_threads(void) { return 1; }
    #endif
    """
    bint HNM_HAVE_OPENMP
    int omp_get_max_threads() noexcept nogil
