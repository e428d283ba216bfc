"""How hard is each example for the current model? One fused pass per row."""
import math
import warnings

import numpy as np

from . import _scoring
from ._threads import resolve_n_jobs
from ._validation import as_working, check_chunk_size, check_option, check_real_array
from ._validation import is_native, working_dtype

__all__ = ["difficulty", "MEASURES"]

MEASURES = ("margin", "log_loss", "hinge", "confidence", "entropy")
# Values (array elements) per kernel call: bounds the memory of converted
# chunks, lets Ctrl-C in.
DEFAULT_CHUNK_SIZE = 2**20
# Integer labels spanning at most this many values are mapped with a lookup
# table inside the kernel (no sort of y); others are encoded with np.unique.
_MAX_TABLE = 2**20


def difficulty(y_true, y_score, *, measure="margin", labels=None, chunk_size=None,
               n_jobs=None):
    """Difficulty of every example, higher is harder, in one pass over each row.

    Parameters
    ----------
    y_true : array-like of shape (n,) or None
        True labels (any hashable dtype: ints, strings, ...). May be None for
        ``measure="entropy"``, which needs no label.
    y_score : array-like of shape (n, n_classes) or (n,)
        Model output. The rule that tells probabilities from decision values
        is the measure, never the values:

        - ``"margin"`` and ``"hinge"`` accept any scores. For an (n, n_classes)
          matrix (probabilities or decision values alike) the margin is the
          true class's score minus the best other class's; for an (n,) vector
          the scores are **binary decision values** centred on 0 (as from
          ``decision_function``), margin ``y+- * f(x)`` with ``y+- = +1`` for the
          second label. For positive-class probabilities pass the (n, 2)
          matrix ``predict_proba`` returns instead (or, from a vector ``p``,
          ``np.column_stack([1 - p, p])``); a vector whose values all lie in
          [0, 1] warns that it looks like probabilities.
        - ``"log_loss"``, ``"confidence"`` and ``"entropy"`` need
          **probabilities**: values in [0, 1] and, for a matrix, rows summing to
          1 (within 1e-3), else ``ValueError``. An (n,) vector is the
          probability of the second label.
    measure : {"margin", "log_loss", "hinge", "confidence", "entropy"}
        - "margin": ``-(score of the true class - best other score)``;
          positive when misclassified.
        - "log_loss": ``-log p_true``, with p clipped to ``[eps, 1 - eps]``,
          ``eps`` the machine epsilon of the scores' dtype, like
          ``sklearn.metrics.log_loss``.
        - "hinge": ``max(0, 1 - margin)``, as ``sklearn.metrics.hinge_loss``
          (Crammer-Singer for several classes).
        - "confidence": ``1 - p_true``.
        - "entropy": ``-sum p log p`` of the predicted distribution
          (label-free uncertainty).
    labels : array-like of shape (n_classes,), optional
        The class of each column of ``y_score``, like an estimator's
        ``classes_`` (for a vector: the negative then the positive class).
        Default: the sorted distinct values of ``y_true``, which must then
        number ``n_classes`` (2 for a vector). A label of ``y_true`` not in
        ``labels`` raises ``ValueError``.
    chunk_size : int, optional
        Values (array elements) per unit of work, default 2**20: a chunk is
        ``max(1, chunk_size // n_classes)`` rows. Inputs that need a conversion
        (other dtypes, non-contiguous layouts) are copied one chunk at a time,
        so a memmap of any size is read in bounded memory. It changes speed and
        memory only, never the result.
    n_jobs : int, optional
        Number of OpenMP threads, at most; default: OpenMP's count
        (``OMP_NUM_THREADS``, threadpoolctl limits). Fewer run when the load
        average says the cores are busy (OpenMP's dynamic adjustment, unless
        ``OMP_DYNAMIC`` is set). The result does not depend on it.

    Returns
    -------
    difficulty : ndarray of shape (n,)
        float32 for float32 scores, float64 otherwise.

    See Also
    --------
    hnm.topk : The hardest examples of a difficulty vector.
    hnm.selection.select_hardest : OHEM-style selection with noise guards.
    hnm.metrics.hard_case_report : Model quality on the hard cases.

    Examples
    --------
    >>> import numpy as np
    >>> from hnm import difficulty
    >>> proba = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8]])
    >>> y = np.array(["cat", "cat", "dog"])
    >>> difficulty(y, proba)                    # margin: > 0 when misclassified
    array([-0.8,  0.2, -0.6])
    >>> difficulty(y, proba, measure="log_loss").round(3)
    array([0.105, 0.916, 0.223])
    >>> difficulty([0, 1, 1], np.array([-2.0, 0.5, -0.1]), measure="hinge")
    array([0. , 0.5, 1.1])

    Positive-class probabilities ``p`` (``predict_proba(X)[:, 1]``) as a
    vector are read as probabilities by the probability measures; for the
    margin, give both columns:

    >>> p = np.array([0.1, 0.6, 0.8])
    >>> difficulty(y, p, measure="confidence").round(3)
    array([0.1, 0.6, 0.2])
    >>> difficulty(y, np.column_stack([1 - p, p]))
    array([-0.8,  0.2, -0.6])
    """
    measure = check_option(measure, "measure", MEASURES)
    S = check_real_array(y_score, "y_score", max_ndim=2)
    n = S.shape[0]
    chunk_size = check_chunk_size(chunk_size, DEFAULT_CHUNK_SIZE)
    n_threads = resolve_n_jobs(n_jobs)
    n_columns = S.shape[1] if S.ndim == 2 else 2
    if S.ndim == 2 and n_columns < (1 if measure == "entropy" else 2):
        raise ValueError(f"y_score needs at least {1 if measure == 'entropy' else 2} "
                         f"column(s) for measure={measure!r}, got {n_columns}.")
    y, y_min, table, check_seen = _encode(y_true, labels, n, n_columns, measure, S.ndim == 2)
    if S.ndim == 1 and measure in ("margin", "hinge"):
        _warn_if_probabilities(S, measure, chunk_size)

    wdt = working_dtype(S.dtype)
    out = np.empty(n, dtype=wdt if S.dtype == wdt else np.float64)
    # fault the pages in here, in one thread: first touches from the kernel's
    # OpenMP threads were measured 10x slower (page-fault contention)
    out.fill(0)
    code = _scoring.MEASURES[measure]
    bad, seen_all = _score(S, y, y_min, table, code, out, check_seen, chunk_size, n_threads)
    if check_seen and bad[0]:
        # the labels are not 0..n_columns-1 after all: encode them and score again
        y, y_min, table, check_seen = _encode(y_true, labels, n, n_columns, measure,
                                              S.ndim == 2, exact=True)
        bad, seen_all = _score(S, y, y_min, table, code, out, check_seen, chunk_size,
                               n_threads)
    if bad[0]:
        raise ValueError(f"y_true has {bad[0]} label(s) not in labels.")
    if check_seen and n and seen_all != (1 << n_columns) - 1:
        _check_n_labels(np.flatnonzero([(seen_all >> j) & 1 for j in range(n_columns)]),
                        n_columns)
    if bad[1]:
        raise ValueError("y_score contains NaN or infinity.")
    if bad[2]:
        raise ValueError(
            f"y_score must hold probabilities for measure={measure!r}: values in [0, 1]"
            + (" with rows summing to 1" if S.ndim == 2 else "")
            + "; use measure='margin' or 'hinge' for decision values.")
    return out


def _warn_if_probabilities(s, measure, chunk_size):
    """Warn when a score vector read as decision values holds only values in
    [0, 1]: most likely ``predict_proba(X)[:, 1]``, whose margin would be read
    against 0 instead of 0.5 (every positive with p < 0.5 would count as right).
    Decision values leave [0, 1] in the first chunk, so this rarely reads all."""
    if s.size == 0:
        return
    for r0 in range(0, s.shape[0], chunk_size):
        block = s[r0:r0 + chunk_size]
        if not (block.min() >= 0 and block.max() <= 1):  # NaN counts as outside
            return
    warnings.warn(
        f"y_score is a vector whose values all lie in [0, 1], like positive-class "
        f"probabilities, but measure={measure!r} reads a vector as decision values "
        "centred on 0. For probabilities p pass np.column_stack([1 - p, p]) (what "
        "predict_proba returns) or use measure='log_loss' or 'confidence'; if these "
        "really are decision values, ignore this warning.",
        UserWarning, stacklevel=3)


def _score(S, y, y_min, table, code, out, check_seen, chunk_size, n_threads):
    """Run the kernel over row chunks of S into out; stop at the first chunk with
    invalid input. Returns the invalid counts and the bit set of columns seen."""
    n = S.shape[0]
    n_columns = S.shape[1] if S.ndim == 2 else 2
    wdt = out.dtype  # float32 only for float32 input; everything else in float64
    eps = float(np.finfo(S.dtype if S.dtype.kind == "f" else np.float64).eps)
    bad = np.zeros(3, dtype=np.longlong)
    native = is_native(S) and S.flags.c_contiguous and S.dtype == wdt
    rows = max(1, chunk_size // n_columns)
    if native:
        rows *= 8  # read in place: larger calls, still interruptible
    seen_all = 0
    for r0 in range(0, n, rows):
        block = S[r0:r0 + rows] if native else as_working(S[r0:r0 + rows], wdt, "y_score")
        threads = max(1, min(n_threads, math.ceil(block.shape[0] / 4096)))
        if S.ndim == 2:
            seen = np.zeros(-(-block.shape[0] // _scoring.BLOCK_ROWS), dtype=np.uint64) \
                if check_seen else None
            _scoring.difficulty_rows(block, y[r0:r0 + rows], y_min, table, code, eps,
                                     1e-3, out[r0:r0 + rows], bad, threads, seen)
            if check_seen:
                seen_all |= int(np.bitwise_or.reduce(seen)) if seen.size else 0
        else:
            _scoring.difficulty_binary(block, y[r0:r0 + rows], y_min, table, code, eps,
                                       out[r0:r0 + rows], bad, threads)
        if bad.any():
            break
    return bad, seen_all


def _encode(y_true, labels, n, n_columns, measure, matrix, exact=False):
    """Labels as int64 values, a lookup table value -> column (-1: unknown), and
    whether the table is a guess (labels 0..n_columns-1) that the kernel must
    confirm: every column's label occurs and no other label does. ``exact``
    makes no guess.

    Integer labels are looked up inside the kernel (no sort of y); other labels
    are first encoded to their index in ``labels``.
    """
    empty_table = np.full(1, -1, dtype=np.intp)  # kernels read table[0]
    if y_true is None:
        if measure != "entropy":
            raise ValueError(f"y_true is required for measure={measure!r}.")
        # no labels (entropy): every row is label 0, known, in column 0
        return np.zeros(n, dtype=np.int64), 0, np.zeros(1, dtype=np.intp), False
    y = np.asarray(y_true)
    if y.ndim != 1 or y.shape[0] != n:
        hint = ""
        if matrix and y.ndim == 1 and y.shape[0] == n_columns:
            hint = (f" y_score has shape ({n}, {n_columns}): if its rows are the classes and "
                    f"its columns the {n_columns} examples, pass y_score.T.")
        raise ValueError(f"y_true must have shape ({n},) to match y_score, got "
                         f"{y.shape}.{hint}")
    if _has_missing(y):
        raise ValueError("y_true contains missing labels (NaN, None, NaT or pd.NA); "
                         "every example needs its true label.")
    if labels is not None:
        labels = np.asarray(labels)
        if labels.ndim != 1 or labels.size != n_columns:
            raise ValueError(f"labels must have {n_columns} entries, one per column of "
                             f"y_score, got shape {labels.shape}.")
        if _unique(labels, "labels").size != labels.size:
            raise ValueError("labels must be distinct.")
    if _fits_int64(y) and (labels is None or _fits_int64(labels)):
        y = np.ascontiguousarray(y, dtype=np.int64)  # the kernels read y[::1]
        if n == 0:
            return y, 0, empty_table, False
        if labels is None and matrix and n_columns <= 64 and not exact:
            # Most likely labels 0..n_columns-1, each its own column: the kernel
            # counts any other label as unknown (the caller then encodes again,
            # exactly) and reports the columns it saw, so this needs no pass over y.
            return y, 0, np.arange(n_columns, dtype=np.intp), True
        if labels is None:
            lo, hi = int(y.min()), int(y.max())
        else:  # labels outside the table's range are unknown to the kernel anyway
            labels = labels.astype(np.int64)
            lo, hi = int(labels.min()), int(labels.max())
        if 0 <= lo and hi < _MAX_TABLE:
            lo = 0  # index the table by the label itself: no shifted copy of y
        if hi - lo < _MAX_TABLE:
            if labels is None:
                labels = np.flatnonzero(np.bincount(y if lo == 0 else y - lo)) + lo
                _check_n_labels(labels, n_columns)
            table = np.full(hi - lo + 1, -1, dtype=np.intp)
            table[labels - lo] = np.arange(labels.size)
            return y, lo, table, False
    # general labels: encode by position in `labels`
    if labels is None:
        labels = _unique(y, "y_true")
        _check_n_labels(labels, n_columns)
    try:
        order = np.argsort(labels, kind="stable")
        sorted_labels = labels[order]
        pos = np.searchsorted(sorted_labels, y)
        pos = np.minimum(pos, sorted_labels.size - 1)
        found = sorted_labels[pos] == y
    except TypeError as exc:  # labels and y_true of types that do not compare
        raise TypeError("y_true and labels must hold labels of one comparable type; "
                        f"{exc}") from None
    codes = np.where(found, order[pos], -1).astype(np.int64)
    # codes are already columns; an identity table (-1 stays unknown via offset)
    return codes + 1, 0, np.arange(-1, labels.size, dtype=np.intp), False


def _has_missing(y):
    """NaN, None, NaT or pd.NA among labels (otherwise counted as one more label)."""
    if y.dtype.kind == "f":
        return bool(np.isnan(y).any())
    if y.dtype.kind in "mM":
        return bool(np.isnat(y).any())
    if y.dtype.kind == "O":
        return any(v is None or (isinstance(v, float) and v != v)
                   or type(v).__name__ in ("NAType", "NaTType") for v in y.tolist())
    return False


def _fits_int64(a):
    """Integer or bool labels that int64 holds exactly (uint64 may not)."""
    if a.dtype.kind in "ib":
        return True
    return a.dtype.kind == "u" and (a.dtype.itemsize < 8 or a.size == 0
                                    or int(a.max()) < 2**63)


def _unique(a, name):
    try:
        return np.unique(a)
    except TypeError as exc:  # mixed types, None among strings, ...
        raise TypeError(f"{name} must hold labels of one comparable type; {exc}") from None


def _check_n_labels(labels, n_columns):
    if labels.size != n_columns:
        raise ValueError(
            f"y_true has {labels.size} distinct labels but y_score has {n_columns} "
            "columns; pass labels (e.g. the estimator's classes_) to map them.")
