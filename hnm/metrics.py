"""Measuring a model where it matters: on the hard cases and near its threshold.

Practitioners' advice for hard example mining is to "at the very least, measure
how the model performs on the difficult cases", and to measure in the score
region where the model makes its decisions. Both functions return plain records
(a list of dicts, ready for ``pandas.DataFrame``) and print as a table.
"""
import numpy as np
from sklearn.metrics import average_precision_score

from ._ranking import best_first
from ._validation import (
    check_finite_1d,
    check_label_present,
    check_fraction,
    check_indices,
    check_int,
    check_positive_real,
    check_real,
    check_real_array,
    describe_labels,
)
from .selection import select_hardest

__all__ = ["Report", "hard_case_report", "feature_diagnosis"]

# Rows per chunk when feature statistics stream over X (which may be a memmap).
_ROWS_PER_CHUNK = 65_536


class Report(list):
    """A list of records (dicts) that prints as an aligned table.

    Parameters
    ----------
    records : iterable of dict
    columns : sequence of str
        The keys shown, in order; a missing key or None prints as "-".
    title : str, default=""
        A first line above the table.

    See Also
    --------
    hard_case_report, feature_diagnosis : The functions that return one.

    Examples
    --------
    >>> from hnm.metrics import Report
    >>> print(Report([{"a": 1, "b": 0.5}, {"a": 22}], ["a", "b"], title="t"))
    t
     a       b
     1  0.5000
    22       -
    """

    def __init__(self, records, columns, title=""):
        super().__init__(records)
        self.columns = list(columns)
        self.title = title

    def __str__(self):
        def fmt(v):
            if v is None:
                return "-"
            if isinstance(v, float):
                return "nan" if np.isnan(v) else f"{v:.4f}"
            return str(v)

        cells = [[fmt(r.get(c)) for c in self.columns] for r in self]
        widths = [max([len(c)] + [len(row[i]) for row in cells])
                  for i, c in enumerate(self.columns)]
        lines = [self.title] if self.title else []
        lines.append("  ".join(c.rjust(w) for c, w in zip(self.columns, widths)))
        lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in cells]
        return "\n".join(lines)

    __repr__ = __str__


def _segment_metrics(name, y, s, threshold):
    pred = s >= threshold
    tp = int(np.sum(pred & y))
    fp = int(np.sum(pred & ~y))
    fn = int(np.sum(~pred & y))
    tn = int(np.sum(~pred & ~y))
    n_pos, n_neg = tp + fn, fp + tn
    return {
        "segment": name,
        "n": int(y.size),
        "n_pos": n_pos,
        "n_neg": n_neg,
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / n_pos if n_pos else None,
        "fpr": fp / n_neg if n_neg else None,
        "accuracy": (tp + tn) / y.size if y.size else None,
        # undefined unless both classes are present
        "average_precision": (float(average_precision_score(y, s))
                              if n_pos and n_neg else None),
    }


def hard_case_report(y_true, y_score, *, difficulty=None, hard_indices=None,
                     hard_fraction=0.1, threshold=0.5, near_threshold=0.1,
                     pos_label=1):
    """Binary classification quality on the hard cases and near the threshold.

    Segments: everything; the hard cases and the rest; the examples whose score
    lies within ``near_threshold`` of ``threshold`` (where decisions are made)
    and the rest.
    For each: counts, precision, recall, false-positive rate, accuracy and
    average precision (None where undefined, e.g. a segment with one class).

    Parameters
    ----------
    y_true : array-like of shape (n,)
        True labels; ``pos_label`` is the positive class.
    y_score : array-like of shape (n,)
        Scores for the positive class (probabilities or decision values);
        predicted positive when ``y_score >= threshold``.
    difficulty : array-like of shape (n,), optional
        Difficulty per example (higher is harder, e.g. from
        :func:`hnm.difficulty`); the hardest ``hard_fraction`` form the hard
        segment.
    hard_indices : array-like of int, optional
        The hard segment given directly (e.g. a mined index set). If neither is
        given, the hard cases are those with the smallest margin
        ``|y_score - threshold|`` on the wrong side first, i.e. difficulty
        ``-(y_score - threshold) * (+1 if positive else -1)``.
    hard_fraction : float in (0, 1], default=0.1
    threshold : float, default=0.5
        Use 0 for decision values.
    near_threshold : float > 0, default=0.1
        Half-width of the threshold region: the examples with
        ``|y_score - threshold| <= near_threshold``.
    pos_label : int, str or bool, default=1
        The positive class. A ``pos_label`` that is not a label of ``y_true``
        raises ``ValueError`` when ``y_true`` has two labels (e.g. the default
        1 with labels ``"no"``/``"yes"``) or labels of another kind (strings
        for a number); with one label of its kind, it means no positives.

    Returns
    -------
    Report
        A list of dicts, one per segment; ``print(report)`` shows a table.

    See Also
    --------
    feature_diagnosis : Which features make the hard negatives look positive.
    hnm.difficulty : Difficulty scores for the ``difficulty`` argument.
    hnm.plotting.plot_score_distributions : The same segments, drawn.

    Examples
    --------
    >>> import numpy as np
    >>> from hnm.metrics import hard_case_report
    >>> y = np.array([0, 0, 1, 1, 0, 1, 0, 0])
    >>> s = np.array([0.1, 0.4, 0.35, 0.8, 0.55, 0.9, 0.2, 0.05])
    >>> report = hard_case_report(y, s, hard_fraction=0.25)
    >>> [(r["segment"], r["n"]) for r in report]
    [('all', 8), ('hard', 2), ('rest', 6), ('near threshold', 2), ('far from threshold', 6)]
    >>> report[1]["accuracy"]
    0.0
    """
    y_true = np.asarray(y_true)
    s = check_finite_1d(y_score, "y_score").astype(np.float64)
    if y_true.ndim != 1 or y_true.shape[0] != s.shape[0]:
        raise ValueError(f"y_true must be 1-D with the length of y_score ({s.shape[0]}), "
                         f"got shape {y_true.shape}.")
    try:
        present = np.unique(y_true)
    except TypeError as exc:  # mixed types, None among strings, ...
        raise TypeError(f"y_true must hold labels of one comparable type; {exc}") from None
    n_classes = present.size
    if n_classes > 2:
        raise ValueError("hard_case_report is for binary problems: y_true has "
                         f"{n_classes} classes.")
    # else y_true == pos_label is all False: a table of zeros, silently
    check_label_present(pos_label, present, "pos_label")
    y = y_true == pos_label
    threshold = check_real(threshold, "threshold")
    near_threshold = check_positive_real(near_threshold, "near_threshold")
    n = s.size
    if hard_indices is not None and difficulty is not None:
        raise ValueError("Pass at most one of difficulty and hard_indices.")
    if hard_indices is not None:
        hard = check_indices(hard_indices, n, "hard_indices")
    else:
        fraction = check_fraction(hard_fraction, "hard_fraction")
        if difficulty is None:
            d = -(s - threshold) * np.where(y, 1.0, -1.0)
        else:
            d = check_finite_1d(difficulty, "difficulty")
            if d.shape[0] != n:
                raise ValueError(f"difficulty must have the length of y_score ({n}).")
        hard = select_hardest(d, fraction=fraction) if n else np.empty(0, np.intp)
    is_hard = np.zeros(n, dtype=bool)
    is_hard[hard] = True
    near = np.abs(s - threshold) <= near_threshold
    records = [
        _segment_metrics("all", y, s, threshold),
        _segment_metrics("hard", y[is_hard], s[is_hard], threshold),
        _segment_metrics("rest", y[~is_hard], s[~is_hard], threshold),
        _segment_metrics("near threshold", y[near], s[near], threshold),
        _segment_metrics("far from threshold", y[~near], s[~near], threshold),
    ]
    columns = ["segment", "n", "n_pos", "n_neg", "precision", "recall", "fpr", "accuracy",
               "average_precision"]
    return Report(records, columns,
                  title=f"threshold {threshold:g}, near_threshold +/-{near_threshold:g}, "
                        f"{is_hard.sum()} hard cases")


def _feature_scale(X):
    """Largest magnitude of each feature (1 where all zero), streamed; NaN/inf raise."""
    scale = np.zeros(X.shape[1])
    for start in range(0, X.shape[0], _ROWS_PER_CHUNK):
        block = np.abs(np.asarray(X[start:start + _ROWS_PER_CHUNK], dtype=np.float64))
        if not np.isfinite(block).all():
            raise ValueError("X contains NaN or infinity.")
        np.maximum(scale, block.max(axis=0, initial=0.0), out=scale)
    scale[scale == 0] = 1.0
    return scale


def _moments(X, rows, scale):
    """Mean and variance of ``X[rows] / scale`` per feature, streamed in row chunks
    (float64): each chunk's centred moments merged into the running ones (Chan et
    al.), so a large offset does not cancel, and the scale keeps squares finite."""
    d = X.shape[1]
    n, mean, m2 = 0, np.zeros(d), np.zeros(d)
    for start in range(0, rows.size, _ROWS_PER_CHUNK):
        block = np.asarray(X[rows[start:start + _ROWS_PER_CHUNK]], dtype=np.float64) / scale
        nb = block.shape[0]
        mb = block.mean(axis=0)
        delta = mb - mean
        total = n + nb
        mean = mean + delta * (nb / total)
        m2 = m2 + ((block - mb) ** 2).sum(axis=0) + delta**2 * (n * nb / total)
        n = total
    return mean, m2 / max(n, 1)


def _smd(m1, v1, m2, v2):
    pooled = np.sqrt((v1 + v2) / 2.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(pooled > 0, (m1 - m2) / pooled, 0.0)


def feature_diagnosis(X, y, hard_indices, *, negative_label=0, feature_names=None, k=None):
    """Which features make the hard negatives look like positives?

    For every feature, standardised mean differences (SMD: difference of means
    over the pooled standard deviation) between the mined hard negatives and
    the positives, and between the hard negatives and the other ("easy")
    negatives. A feature on which easy negatives differ from positives but hard
    negatives do not is one the model cannot yet use to tell them apart:
    ``confusability = |SMD(easy, positives)| - |SMD(hard, positives)|``, and the
    features are ranked by it, highest first ("revise the features").

    Parameters
    ----------
    X : array-like or pandas DataFrame of shape (n, n_features)
        Dense features; may be an ``np.memmap`` (read in row chunks).
    y : array-like of shape (n,)
    hard_indices : array-like of int
        Rows of ``X`` mined as hard negatives (their label must be
        ``negative_label``).
    negative_label : default=0
        Every other label counts as positive.
    feature_names : sequence of str, optional
        Default: a DataFrame's column names, else ``x0, x1, ...``.
    k : int, optional
        Keep only the ``k`` highest-ranked features (all of them if ``k`` is
        larger than their number).

    Returns
    -------
    Report
        One record per feature: ``feature``, ``smd_hard_vs_pos``,
        ``smd_hard_vs_easy``, ``smd_easy_vs_pos``, ``confusability``.

    See Also
    --------
    hard_case_report : Model quality on the hard cases.
    hnm.selection.select_hardest : One way to get ``hard_indices``.

    Examples
    --------
    >>> import numpy as np
    >>> from hnm.metrics import feature_diagnosis
    >>> rng = np.random.default_rng(0)
    >>> y = np.r_[np.zeros(300, int), np.ones(100, int)]
    >>> X = rng.standard_normal((400, 2))
    >>> X[y == 1, 0] += 3          # feature 0 separates the classes...
    >>> X[:30, 0] += 3             # ...except for 30 hard negatives
    >>> report = feature_diagnosis(X, y, np.arange(30), feature_names=["f0", "f1"])
    >>> report[0]["feature"]
    'f0'
    """
    if feature_names is None and hasattr(X, "columns") and hasattr(X, "iloc"):
        feature_names = [str(c) for c in X.columns]  # a pandas DataFrame's own names
    X = check_real_array(X, "X", min_ndim=2, max_ndim=2)
    y = np.asarray(y)
    n, n_features = X.shape
    if y.shape != (n,):
        raise ValueError(f"y must have shape ({n},), got {y.shape}.")
    hard = np.unique(check_indices(hard_indices, n, "hard_indices"))
    if hard.size == 0:
        raise ValueError("hard_indices must be a non-empty array of integers.")
    is_neg = y == negative_label
    if not is_neg[hard].all():
        try:
            present = describe_labels(np.unique(y))
        except TypeError:  # labels of mixed types
            present = describe_labels(dict.fromkeys(y.tolist()))
        raise ValueError(
            "hard_indices must point at examples labelled "
            f"negative_label={negative_label!r}; y has labels {present}"
            + ("" if negative_label in y.tolist() else
               f", without {negative_label!r}: pass negative_label as one of them")
            + ".")
    is_easy = is_neg.copy()
    is_easy[hard] = False
    pos, easy = np.flatnonzero(~is_neg), np.flatnonzero(is_easy)
    if pos.size == 0 or easy.size == 0:
        raise ValueError("feature_diagnosis needs positives and easy negatives besides the "
                         "hard ones.")
    if feature_names is None:
        feature_names = [f"x{j}" for j in range(n_features)]
    elif len(feature_names) != n_features:
        raise ValueError(f"feature_names must have {n_features} names.")
    k = check_int(k, "k", min_value=1, allow_none=True)
    # SMDs do not change with a feature's scale: divide by it, so squares stay finite
    scale = _feature_scale(X)
    mh, vh = _moments(X, hard, scale)
    mp, vp = _moments(X, pos, scale)
    me, ve = _moments(X, easy, scale)
    hard_pos, hard_easy, easy_pos = _smd(mh, vh, mp, vp), _smd(mh, vh, me, ve), _smd(me, ve, mp, vp)
    confusability = np.abs(easy_pos) - np.abs(hard_pos)
    order = best_first(confusability, np.arange(n_features))[:k]
    records = [{"feature": str(feature_names[j]),
                "smd_hard_vs_pos": float(hard_pos[j]),
                "smd_hard_vs_easy": float(hard_easy[j]),
                "smd_easy_vs_pos": float(easy_pos[j]),
                "confusability": float(confusability[j])} for j in order]
    return Report(records, ["feature", "smd_hard_vs_pos", "smd_hard_vs_easy",
                            "smd_easy_vs_pos", "confusability"],
                  title=f"{hard.size} hard negatives vs {pos.size} positives and "
                        f"{easy.size} easy negatives")

