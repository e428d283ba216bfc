# OpenMP shim: a build without OpenMP (HNM_NO_OPENMP=1 or a compiler without it)
# still compiles, and the kernels then run on one thread.
cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define HNM_HAVE_OPENMP 1
    #if defined(__GNUC__) && !defined(_WIN32) && !defined(__APPLE__)
    /* weak: a runtime older than OpenMP 5.0's pause leaves the symbol NULL */
    #pragma weak omp_pause_resource_all
    #define HNM_HAVE_PAUSE (omp_pause_resource_all != 0)
    #else
    #define HNM_HAVE_PAUSE 1
    #endif
    /* Release this thread's pool of OpenMP threads (they exit; the next parallel
       region starts new ones): 0 on success, -2 if the runtime cannot. */
    static int hnm_openmp_pause(void) {
        return HNM_HAVE_PAUSE ? omp_pause_resource_all(omp_pause_soft) : -2;
    }
    #else
    #define HNM_HAVE_OPENMP 0
    static int omp_get_max_threads(void) { return 1; }
    static int hnm_openmp_pause(void) { return 0; }  /* no runtime, no pool */
    #endif
    """
    bint HNM_HAVE_OPENMP
    int omp_get_max_threads() noexcept nogil
    int hnm_openmp_pause() noexcept nogil
