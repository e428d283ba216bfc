"""The one home of thread counts: how many OpenMP threads a kernel gets, the BLAS
limit around GEMMs that run inside those threads, and what both become across
``fork()``.

Fork safety
-----------
GNU libgomp keeps, per thread that opened a parallel region, a pool of worker
threads that wait for the next region. ``fork()`` copies the pool's bookkeeping
into the child but not its threads, so the child's first parallel region waits
for them forever (scikit-learn's OpenMP estimators hang the same way). hnm
therefore releases the forking thread's pools just before every ``os.fork()``
(``omp_pause_resource_all``, OpenMP 5.0): their threads exit, the child starts
new ones of its own on first use and keeps full speed, and the parent restarts
its threads on its next region (tens of microseconds). The same is done for the
other copies of libgomp loaded in the process (scikit-learn's wheels vendor
one), so their estimators survive the fork too.

If a runtime cannot release its pool (a libgomp without OpenMP 5.0's pause),
the fork child runs every hnm kernel on one thread, which cannot hang, and warns
once how to get the threads back: start worker processes with the "spawn" or
"forkserver" method. Processes started that way, and ones forked without a
failed release, keep their threads; ``threadpoolctl.threadpool_limits`` and
``OMP_NUM_THREADS`` apply as everywhere.

The BLAS limiter's state (see ``single_threaded_blas``) is made consistent
around the fork and reset in the child, where no search is running.
"""
from contextlib import contextmanager
import ctypes
import os
import sys
import threading
import warnings

from threadpoolctl import threadpool_limits

from . import _openmp_helpers
from ._validation import check_int

# True in a fork child whose parent could not release its OpenMP pool: every
# kernel then runs on one thread (a parallel region of one thread never touches
# the pool; checked against libgomp's gomp_team_start and by tests/test_fork.py)
_serial = False
_warned = False
# status of the last release before a fork (0: released or nothing to release)
_pause_status = 0
# other libgomp copies: path -> ctypes function, or None once a release failed
# (a pool that could not be released must never be waited on again)
_foreign_pause = {}


def openmp_max_threads():
    """Threads an OpenMP region of hnm would use now.

    ``omp_get_max_threads()`` (``OMP_NUM_THREADS``, threadpoolctl limits), or 1 in
    a fork child whose parent's OpenMP threads could not be released.
    """
    if _serial:
        _warn_serial()
        return 1
    return _openmp_helpers.openmp_max_threads()


def resolve_n_jobs(n_jobs):
    """Threads for a kernel from a user's ``n_jobs`` (None: OpenMP's count).

    Raises TypeError/ValueError naming ``n_jobs`` unless it is None or an int >= 1;
    1 in a fork child that must run serially (see the module docstring).
    """
    if n_jobs is None:
        return openmp_max_threads()
    n_jobs = check_int(n_jobs, "n_jobs", min_value=1)
    if _serial:
        _warn_serial()
        return 1
    return n_jobs


def _warn_serial():
    global _warned
    if not _warned:
        _warned = True
        warnings.warn(
            "hnm runs its kernels on 1 thread in this process: it was forked after "
            "OpenMP threads ran in its parent, and this OpenMP runtime cannot release "
            "them before a fork (a child that used them would hang). To keep the "
            "threads, start worker processes with the 'spawn' or 'forkserver' method, "
            "e.g. multiprocessing.get_context('forkserver').",
            RuntimeWarning, stacklevel=3)


_blas_lock = threading.Lock()
_blas_users = 0
_blas_limiter = None


@contextmanager
def single_threaded_blas():
    """BLAS at one thread while any search runs in our threads (each would
    otherwise start its own BLAS threads). threadpoolctl's limits are process-wide,
    so overlapping calls from several Python threads share one limit, set by the
    first to enter and restored by the last to leave."""
    global _blas_users, _blas_limiter
    with _blas_lock:
        if _blas_users == 0:
            _blas_limiter = threadpool_limits(1, user_api="blas")
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0:
                _blas_limiter.restore_original_limits()
                _blas_limiter = None


def _loaded_libgomps():
    """Paths of the libgomp copies mapped into this process (Linux; else none)."""
    try:
        with open("/proc/self/maps") as f:
            return {line.split(None, 5)[5].strip() for line in f
                    if "libgomp" in line and len(line.split(None, 5)) == 6}
    except OSError:
        return set()


def _release_foreign_pools():
    for path in _loaded_libgomps():
        if path not in _foreign_pause:
            try:
                fn = ctypes.CDLL(path).omp_pause_resource_all
                fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_int
            except (OSError, AttributeError):
                fn = None
            _foreign_pause[path] = fn
        fn = _foreign_pause[path]
        if fn is not None and fn(1) != 0:  # 1: omp_pause_soft
            _foreign_pause[path] = None


def _before_fork():
    global _pause_status
    # a consistent limiter state for the child (no Python thread is half-way
    # through setting or restoring the BLAS limit when the process is copied)
    _blas_lock.acquire()
    if _serial:
        return  # this process's pool is a dead copy: releasing it would wait forever
    try:
        _pause_status = _openmp_helpers.openmp_pause()
        if sys.platform.startswith("linux"):
            _release_foreign_pools()
    except Exception:  # never let a fork fail because of hnm
        _pause_status = -1


def _after_fork_parent():
    _blas_lock.release()


def _after_fork_child():
    global _serial, _warned, _blas_lock, _blas_users, _blas_limiter
    if _pause_status != 0 and _openmp_helpers.openmp_enabled():
        _serial = True
        _warned = False  # warn once in every such child
    if _blas_limiter is not None:
        # a search was running in another thread of the parent: none runs here, so
        # the child gets the user's BLAS threads back
        try:
            _blas_limiter.restore_original_limits()
        except Exception:
            pass
    _blas_lock, _blas_users, _blas_limiter = threading.Lock(), 0, None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_parent,
                        after_in_child=_after_fork_child)
