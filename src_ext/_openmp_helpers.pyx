"""What the OpenMP runtime offers the kernels, for the numpy layer to plan with."""
from _openmp cimport HNM_HAVE_OPENMP, omp_get_max_threads


def openmp_enabled():
    """Return True if the kernels were built with OpenMP."""
    return bool(HNM_HAVE_OPENMP)


def openmp_max_threads():
    """Threads an OpenMP region would use now.

    Honours ``OMP_NUM_THREADS`` and ``threadpoolctl.threadpool_limits(..., "openmp")``;
    1 when built without OpenMP.
    """
    return max(1, omp_get_max_threads())
