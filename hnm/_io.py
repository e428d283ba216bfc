"""One home for writing files: every file hnm writes appears complete or not at all.

A file is written under a temporary name in its final directory, flushed and
fsynced, renamed over the final name (``os.replace``, atomic on POSIX and
Windows) and the directory is fsynced, so a crash, ``kill -9`` or power loss
leaves either the previous file or the new one, never a truncated file under
the final name. Consequences worth knowing:

- An output may also be an input: a memory map of the old file keeps reading
  the old inode, which the rename leaves alive until it is unmapped.
- A failed write (disk full, no permission, ``RLIMIT_FSIZE``) raises
  :class:`WriteError` naming the path; the temporary is removed and the
  previous file is untouched.
- Temporaries are named ``.<name>.hnm-tmp-<host>.<pid>.<token>``; one left by
  a killed process is ignored by every reader (:func:`is_temporary`) and removed
  by the next write into the same directory once its process is gone.
- Ctrl-C is answered within a fraction of a second while writing: data goes out
  in chunks of at most ``CHUNK_BYTES`` from Python, and the final fsync (which
  can take seconds for a large file) runs in a helper thread that the main
  thread waits on in short steps.

Users of this module: the ``hnm`` command's outputs, the checkpoints of
:mod:`hnm._checkpoint`, and any writer of the Python API (for example an
embedding cache) via :func:`atomic_open` or the ``save_*`` functions.
"""
from contextlib import contextmanager
import errno
import json
import os
import socket
import stat
import threading
import time
import uuid

import numpy as np

from ._progress import progress_bar

__all__ = [
    "WriteError",
    "atomic_open",
    "save_npy",
    "save_npz",
    "save_csv",
    "write_text",
    "is_temporary",
    "remove_stale_temporaries",
    "format_column",
]

TEMP_TAG = ".hnm-tmp-"
# Bytes per write call: small enough that a signal handler (Ctrl-C) runs within
# a few milliseconds, large enough that the syscalls cost nothing.
CHUNK_BYTES = 16 << 20
# CSV rows formatted per step (also the progress bar's step).
CSV_CHUNK_ROWS = 1 << 16
# A temporary from another host cannot be checked for a live process: it is
# removed once it has not been touched for this long.
FOREIGN_TEMP_AGE = 24 * 3600.0
_HOST = "".join(c if c.isalnum() or c in "-_" else "_" for c in socket.gethostname()) or "host"


class WriteError(OSError):
    """Writing ``path`` failed; the previous file at ``path`` (if any) is unchanged."""


def is_temporary(name):
    """True if ``name`` (a file name or path) is one of hnm's write temporaries."""
    return TEMP_TAG in os.path.basename(os.fspath(name))


def _temp_name(base):
    return f".{base}{TEMP_TAG}{_HOST}.{os.getpid()}.{uuid.uuid4().hex[:12]}"


def _owner(name):
    """(host, pid) encoded in a temporary's name, or None if it is not one of ours."""
    tail = name.split(TEMP_TAG, 1)[1]
    parts = tail.rsplit(".", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1])


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # another user's process, or a platform that cannot tell
    return True


def remove_stale_temporaries(directory, base=None):
    """Remove temporaries in ``directory`` whose writing process is gone.

    Only temporaries of ``base`` (a final file name) if given. A temporary from
    this host is stale when its process no longer exists; one from another host
    (a shared file system) when it is older than a day. Returns the number
    removed; errors (a file removed meanwhile, no permission) are ignored.
    """
    removed = 0
    try:
        names = os.listdir(directory)
    except OSError:
        return 0
    prefix = None if base is None else f".{base}{TEMP_TAG}"
    now = time.time()
    for name in names:
        if TEMP_TAG not in name or (prefix is not None and not name.startswith(prefix)):
            continue
        owner = _owner(name)
        if owner is None:
            continue
        host, pid = owner
        path = os.path.join(directory, name)
        try:
            if host == _HOST:
                if pid == os.getpid() or _pid_alive(pid):
                    continue
            elif now - os.stat(path).st_mtime < FOREIGN_TEMP_AGE:
                continue
            os.unlink(path)
            removed += 1
        except OSError:
            pass
    return removed


def _error(path, exc):
    if isinstance(exc, WriteError):
        return exc
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.errno == errno.EFBIG:
        reason += " (the file size limit, ulimit -f, was reached)"
    elif exc.errno == errno.ENOSPC:
        reason += " (the disk is full)"
    err = WriteError(exc.errno, f"cannot write {path}: {reason}; "
                                f"any previous {os.path.basename(path)} is unchanged")
    err.filename = os.fspath(path)
    return err


def _wait_interruptibly(func, *args):
    """Run ``func(*args)`` in a helper thread; the main thread waits in short
    steps, so Ctrl-C is answered while a long fsync goes on (a fsync cannot be
    interrupted; the helper finishes it in the background)."""
    outcome = {}

    def run():
        try:
            func(*args)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="hnm-fsync", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.05)
    if "error" in outcome:
        raise outcome["error"]


def _fsync_directory(directory):
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # e.g. Windows, where directories cannot be opened
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF, errno.EACCES):
            raise
    finally:
        os.close(fd)


def _final_path(path):
    path = os.fspath(path)
    if os.path.islink(path):
        path = os.path.realpath(path)  # replace the target, keep the link
    return path


@contextmanager
def atomic_open(path, mode="wb", *, encoding="utf-8"):
    """Open ``path`` for writing so that it appears complete or not at all.

    Yields a file object on a temporary in the same directory. When the block
    ends normally the data are flushed and fsynced, the temporary is renamed
    over ``path`` and the directory is fsynced; when it raises (including
    ``KeyboardInterrupt``) the temporary is removed and ``path`` is untouched.

    Parameters
    ----------
    path : str or os.PathLike
        The final file name. A symbolic link is followed (its target is replaced).
    mode : {"wb", "w"}, default="wb"
    encoding : str, default="utf-8"
        For text mode.

    Raises
    ------
    WriteError
        An ``OSError`` naming ``path`` when the file cannot be created, written
        or renamed (disk full, no permission, file size limit, ...).

    Examples
    --------
    >>> import os, tempfile
    >>> from hnm._io import atomic_open
    >>> path = os.path.join(tempfile.mkdtemp(), "out.txt")
    >>> with atomic_open(path, "w") as f:
    ...     _ = f.write("complete")
    >>> open(path).read()
    'complete'

    See Also
    --------
    save_npy, save_npz, save_csv, write_text
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}.")
    final = _final_path(path)
    directory = os.path.dirname(final) or "."
    base = os.path.basename(final)
    if os.path.isdir(final):
        raise _error(final, IsADirectoryError(errno.EISDIR, "it is a directory"))
    existing = None
    try:
        existing = os.stat(final)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise _error(final, exc) from None
    if existing is not None and not os.access(final, os.W_OK):
        # rename would replace a read-only file; refuse as open(path, "w") would
        raise _error(final, PermissionError(errno.EACCES, "permission denied"))
    remove_stale_temporaries(directory, base)
    tmp = os.path.join(directory, _temp_name(base))
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    flags |= getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(tmp, flags, 0o666)  # the umask applies, as for open()
    except OSError as exc:
        raise _error(final, exc) from None
    renamed = False
    try:
        if existing is not None:
            try:
                os.chmod(tmp, stat.S_IMODE(existing.st_mode))
            except OSError:
                pass
        if mode == "wb":
            f = os.fdopen(fd, "wb", buffering=1 << 20)
        else:
            f = os.fdopen(fd, "w", encoding=encoding, newline="", buffering=1 << 20)
        with f:
            yield f
            f.flush()
            _wait_interruptibly(os.fsync, f.fileno())
        os.replace(tmp, final)
        renamed = True
        _fsync_directory(directory)
    except OSError as exc:
        raise _error(final, exc) from None
    finally:
        if not renamed:
            try:
                os.unlink(tmp)
            except OSError:
                pass


class _CountingWriter:
    """A file proxy that writes in chunks and counts bytes for a progress bar.

    Not an ``io`` object, so numpy writes arrays to it in 16 MiB pieces from
    Python (a real file would get one long C call that Ctrl-C cannot stop)."""

    def __init__(self, f, bar):
        self._f = f
        self._bar = bar

    def write(self, data):
        view = memoryview(data).cast("B")
        for s in range(0, view.nbytes, CHUNK_BYTES):
            piece = view[s:s + CHUNK_BYTES]
            self._f.write(piece)
            self._bar.update(piece.nbytes)
        return view.nbytes

    def __getattr__(self, name):
        return getattr(self._f, name)


def _npy_bytes(a):
    a = np.asanyarray(a)
    header = 128  # an upper bound is all a progress bar needs
    return a.nbytes + header


def save_npy(path, array, *, progress=False):
    """Write one array as ``.npy``, atomically (see :func:`atomic_open`).

    ``progress=True`` shows a bar over the bytes written. ``allow_pickle`` is
    off: object arrays raise ``ValueError``.

    See Also
    --------
    atomic_open, save_npz
    """
    array = np.asanyarray(array)
    with progress_bar(progress, _npy_bytes(array), f"writing {os.path.basename(path)}",
                      "B") as bar, atomic_open(path, "wb") as f:
        np.lib.format.write_array(_CountingWriter(f, bar), array, allow_pickle=False)


def save_npz(path, arrays, *, progress=False):
    """Write a dict of named arrays as an uncompressed ``.npz``, atomically.

    See Also
    --------
    atomic_open, save_npy
    """
    arrays = {name: np.asanyarray(a) for name, a in arrays.items()}
    total = sum(_npy_bytes(a) for a in arrays.values())
    with progress_bar(progress, total, f"writing {os.path.basename(path)}", "B") as bar, \
            atomic_open(path, "wb") as f:
        np.savez(_CountingWriter(f, bar), **arrays)


def write_text(path, text):
    """Write a string (UTF-8), atomically: manifests and small files."""
    with atomic_open(path, "w") as f:
        f.write(text)


def write_json(path, obj):
    """Write ``obj`` as indented, key-sorted JSON, atomically."""
    write_text(path, json.dumps(obj, indent=1, sort_keys=True) + "\n")


FLOAT_FORMAT = "%.9g"


def format_column(values):
    """The text of a 1-D column, one string per value: integers exactly, floats
    with 9 significant digits (every float32 exactly; the CSV and the terminal
    use this one rule). Use ``.npy``/``.npz`` for float64 to the last bit."""
    values = np.asarray(values)
    if values.dtype.kind == "f":
        return list(map(FLOAT_FORMAT.__mod__, values.tolist()))
    if values.dtype.kind == "b":
        values = values.astype(np.int8)
    return list(map(str, values.tolist()))


def _csv_columns(columns):
    """Flatten named 1-D / 2-D columns into (header names, list of 1-D arrays)."""
    names, arrays = [], []
    n_rows = None
    for name, a in columns.items():
        a = np.asarray(a)
        if a.ndim not in (1, 2):
            raise ValueError(f"column {name} must be 1-D or 2-D, got {a.ndim}-D.")
        if n_rows is None:
            n_rows = a.shape[0]
        elif a.shape[0] != n_rows:
            raise ValueError(f"column {name} has {a.shape[0]} rows, the others {n_rows}.")
        if a.ndim == 1:
            names.append(name)
            arrays.append(a)
        elif a.shape[1] == 1:
            names.append(name)
            arrays.append(a[:, 0])
        else:
            names += [f"{name}_{j}" for j in range(a.shape[1])]
            arrays += [a[:, j] for j in range(a.shape[1])]
    return names, arrays, (n_rows or 0)


def iter_delimited(columns, delimiter=",", chunk_rows=CSV_CHUNK_ROWS):
    """Yield (n_rows, text) chunks of delimited lines for named columns."""
    _, arrays, n_rows = _csv_columns(columns)
    for s in range(0, n_rows, chunk_rows):
        cells = [format_column(a[s:s + chunk_rows]) for a in arrays]
        lines = map(delimiter.join, zip(*cells))
        yield min(chunk_rows, n_rows - s), "\n".join(lines) + "\n"


def save_csv(path, columns, *, progress=False):
    """Write named columns (1-D, or 2-D as ``name_0, name_1, ...``) as CSV with a
    header line, atomically; values formatted by :func:`format_column`.

    See Also
    --------
    atomic_open, save_npz
    """
    names, _, n_rows = _csv_columns(columns)
    with progress_bar(progress, n_rows, f"writing {os.path.basename(path)}", "rows") as bar, \
            atomic_open(path, "w") as f:
        f.write(",".join(names) + "\n")
        for n, text in iter_delimited(columns):
            f.write(text)
            bar.update(n)
