"""Candidate spans of a file-backed memmap read with O_DIRECT on a reader thread.

A memmap that is not in the page cache is read through page faults (about
125 MB/s here) or the kernel's read-ahead (about 260 MB/s); O_DIRECT reads of
large aligned requests run at the disk's own rate (0.75-1.1 GB/s here) and
skip the page cache. :func:`candidate_spans` yields the same row spans as
slicing the array, ``C[c0:c0 + span]``, with the same bytes: when the array is
a read-only shared mapping of a file and the search is large (see
:func:`use_direct`), a reader thread reads the 4096-aligned superset of a few
spans at a time into one of three page-aligned buffers, ahead of the consumer,
and the spans are views into it. Whenever O_DIRECT is refused or a read fails
(tmpfs, some overlays, a truncated file, no /proc) the spans come from the
mapping instead, silently: the result is the same either way.

The environment variable ``HNM_DIRECT_IO`` decides: "0" never, "1" whenever
the array allows it, unset or "auto": when the array is larger than the memory
available for the page cache (``MemAvailable``) or most of its pages are not
resident (``mincore``).
"""
import ctypes
import os
import queue
import threading

import numpy as np

_ALIGN = 4096
# Bytes per O_DIRECT request, at least (whole spans; requests of 16-64 MiB run at
# the disk's rate) and buffers (one being consumed, two being read ahead).
_READ_BYTES = 32 << 20
_N_BUFFERS = 3
# Smaller arrays are read from the mapping in "auto" mode: too small to pay for a thread.
_AUTO_MIN_BYTES = 64 << 20
# "auto" reads directly when fewer than this fraction of the pages are resident.
_AUTO_RESIDENT = 0.5


def candidate_spans(C, span):
    """Yield ``(c0, C[c0:c0 + span])`` for ``c0`` in ``range(0, len(C), span)``.

    The spans are equal to the slices, byte for byte; read with O_DIRECT (see
    the module docstring) each one is a read-only view into a reused buffer,
    valid until the next one is asked for.
    """
    source = _direct_source(C) if use_direct(C) else None
    if source is None:
        for c0 in range(0, C.shape[0], span):
            yield c0, C[c0:c0 + span]
        return
    yield from _read_ahead(C, span, *source)


def use_direct(C):
    """Whether :func:`candidate_spans` tries O_DIRECT for ``C`` (``HNM_DIRECT_IO``)."""
    env = os.environ.get("HNM_DIRECT_IO", "auto").strip().lower()
    if env not in ("auto", "", "0", "1"):
        raise ValueError(f"the environment variable HNM_DIRECT_IO must be '0', '1' or "
                         f"'auto', got {env!r}.")
    if env == "0" or not hasattr(os, "O_DIRECT") or not isinstance(C, np.ndarray):
        return False
    if env == "1":
        return True
    if C.nbytes < _AUTO_MIN_BYTES:
        return False
    available = _mem_available()
    if available is not None and C.nbytes > available:
        return True
    resident = _resident_fraction(C)
    return resident is not None and resident < _AUTO_RESIDENT


def _direct_source(C):
    """``(fd, file offset of C[0])`` for an O_DIRECT read of ``C``, or None.

    ``C`` must be a C-contiguous native-order array with rows, lying in one
    read-only shared mapping of a regular file that is still the file at its
    path (same device and inode); its file offset comes from /proc/self/maps
    (a slice of a memmap keeps the base's ``offset`` attribute).
    """
    if (C.ndim != 2 or C.size == 0 or not C.flags.c_contiguous or not C.dtype.isnative
            or C.dtype.kind not in "fiu"):
        return None
    ptr = C.__array_interface__["data"][0]
    vma = _mapping_of(ptr)
    if vma is None:
        return None
    start, end, perms, offset, dev, inode, path = vma
    if ptr + C.nbytes > end or perms[0] != "r" or "w" in perms or perms[3] != "s":
        return None  # split mapping, writable (dirty pages) or private (copy-on-write)
    path = getattr(C, "filename", None) or path
    if not path:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT | getattr(os, "O_CLOEXEC", 0))
    except (OSError, ValueError, TypeError):  # EINVAL: tmpfs, some overlays
        return None
    try:
        st = os.fstat(fd)
        if st.st_ino != inode or f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}" != dev:
            raise OSError("not the mapped file")
    except OSError:
        os.close(fd)
        return None
    return fd, offset + (ptr - start)


def _read_ahead(C, span, fd, base):
    """The spans of ``C`` read into reused buffers by a reader thread (fd is closed)."""
    n = C.shape[0]
    row = C.strides[0]
    spans_per_read = max(1, _READ_BYTES // max(1, span * row))
    rows_per_read = span * spans_per_read
    size = min(rows_per_read, n) * row + 2 * _ALIGN
    raw = [np.empty(size + _ALIGN, dtype=np.uint8) for _ in range(_N_BUFFERS)]
    buffers = [r[-r.ctypes.data % _ALIGN:][:size] for r in raw]
    free, ready = queue.Queue(), queue.Queue()
    for b in range(_N_BUFFERS):
        free.put(b)
    stop = threading.Event()

    def reader():
        try:
            for r0 in range(0, n, rows_per_read):
                b = free.get()
                if stop.is_set():
                    return
                r1 = min(n, r0 + rows_per_read)
                lo, hi = base + r0 * row, base + r1 * row
                a0 = lo - lo % _ALIGN
                need = hi - a0
                view = memoryview(buffers[b])[:need + (-need) % _ALIGN]
                got = 0
                while got < need:
                    m = os.preadv(fd, [view[got:]], a0 + got)
                    if m <= 0:
                        raise OSError("short read")
                    got += m
                ready.put((r0, r1, b, lo - a0))
        except BaseException as exc:  # told to the consumer, which reads the mapping
            ready.put(exc)

    thread = threading.Thread(target=reader, name="hnm-direct-read", daemon=True)
    thread.start()
    try:
        for r0 in range(0, n, rows_per_read):
            item = ready.get()
            if isinstance(item, BaseException):  # the rest from the mapping, same bytes
                for c0 in range(r0, n, span):
                    yield c0, C[c0:c0 + span]
                return
            _, r1, b, skip = item
            rows = np.frombuffer(buffers[b], dtype=C.dtype, count=(r1 - r0) * C.shape[1],
                                 offset=skip).reshape(r1 - r0, C.shape[1])
            rows.flags.writeable = False
            for c0 in range(r0, r1, span):
                yield c0, rows[c0 - r0:c0 - r0 + span]
            del rows
            free.put(b)
    finally:
        stop.set()
        free.put(None)  # wakes a reader waiting for a buffer
        thread.join()
        os.close(fd)


def _mapping_of(ptr):
    """(start, end, perms, file offset, "maj:min", inode, path) of the mapping holding ptr."""
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                fields = line.split(None, 5)
                lo, hi = (int(x, 16) for x in fields[0].split("-"))
                if lo <= ptr < hi:
                    path = fields[5].rstrip("\n") if len(fields) > 5 else ""
                    return (lo, hi, fields[1], int(fields[2], 16), fields[3],
                            int(fields[4]), path)
    except (OSError, ValueError, IndexError):
        return None
    return None


def _mem_available():
    """MemAvailable of /proc/meminfo in bytes, or None."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _resident_fraction(C, chunk_pages=1 << 18):
    """The fraction of the pages of ``C`` in memory (mincore), or None."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        mincore = libc.mincore
    except (OSError, AttributeError):
        return None
    mincore.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)
    page = os.sysconf("SC_PAGE_SIZE")
    ptr = C.__array_interface__["data"][0]
    lo, hi = ptr - ptr % page, ptr + C.nbytes
    vec = np.empty(chunk_pages, dtype=np.uint8)
    resident = total = 0
    for a in range(lo, hi, chunk_pages * page):
        length = min(chunk_pages * page, hi - a)
        if mincore(a, length, vec.ctypes.data) != 0:
            return None
        pages = -(-length // page)
        resident += int(np.count_nonzero(vec[:pages] & 1))
        total += pages
    return resident / max(1, total)
