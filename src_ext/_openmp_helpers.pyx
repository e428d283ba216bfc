"""What the OpenMP runtime offers the kernels, for the numpy layer to plan with."""
from _openmp cimport HNM_HAVE_OPENMP, hnm_openmp_pause, omp_get_max_threads


def openmp_enabled():
    """Return True if the kernels were built with OpenMP."""
    return bool(HNM_HAVE_OPENMP)


def openmp_max_threads():
    """Threads an OpenMP region would use now.

    Honours ``OMP_NUM_THREADS`` and ``threadpoolctl.threadpool_limits(..., "openmp")``;
    1 when built without OpenMP.
    """
    return max(1, omp_get_max_threads())


def openmp_pause():
    """Release the calling thread's pool of OpenMP threads (``omp_pause_resource_all``).

    The threads exit; the next parallel region starts new ones. Called before a
    fork, so the child does not inherit a pool whose threads it does not have (GNU
    libgomp would wait for them forever). Returns 0 on success (also when built
    without OpenMP), nonzero if the runtime cannot release it (e.g. called inside a
    parallel region, or a runtime without OpenMP 5.0's pause).
    """
    cdef int status
    with nogil:
        status = hnm_openmp_pause()
    return status
