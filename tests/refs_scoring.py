"""The plain numpy reference of hnm.difficulty, shared by the unit, hostile and
invariance suites (one reference per behaviour): scores copied to float64, labels
mapped to columns through Python objects (exact for any label type)."""
import numpy as np


def _xlogx(p):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)


def difficulty(y_true, y_score, measure="margin", labels=None, chunk_size=None, n_jobs=None):
    """float64 difficulty; log-loss clipped with the epsilon of the scores' dtype.

    ``labels`` as in hnm.difficulty (default: the sorted distinct labels);
    ``chunk_size`` and ``n_jobs`` change nothing and are accepted so that a test
    can pass the same keywords to both.
    """
    S = np.array(y_score, dtype=np.float64)
    src = np.asarray(y_score).dtype
    eps = float(np.finfo(src if src.kind == "f" else np.float64).eps)
    n = S.shape[0]
    if y_true is None:
        col = np.zeros(n, dtype=np.intp)
    else:
        ys = np.asarray(y_true).tolist()  # Python objects: exact ints, str, ...
        labs = sorted(set(ys)) if labels is None else np.asarray(labels).tolist()
        pos = {v: j for j, v in enumerate(labs)}
        col = np.array([pos[v] for v in ys], dtype=np.intp)
    r = np.arange(n)
    if S.ndim == 2:
        true = S[r, col]
        if measure in ("margin", "hinge"):
            others = S.copy()
            others[r, col] = -np.inf
            m = true - others.max(axis=1, initial=-np.inf)
            return -m if measure == "margin" else np.where(m < 1, 1 - m, 0.0)
        if measure == "log_loss":
            return -np.log(np.clip(true, eps, 1 - eps))
        if measure == "confidence":
            return 1 - true
        return -_xlogx(S).sum(axis=1)
    sgn = np.where(col == 1, 1.0, -1.0)
    p = np.where(col == 1, S, 1 - S)  # the true class's probability
    if measure == "margin":
        return -sgn * S
    if measure == "hinge":
        return np.where(sgn * S < 1, 1 - sgn * S, 0.0)
    if measure == "log_loss":
        return -np.log(np.clip(p, eps, 1 - eps))
    if measure == "confidence":
        return 1 - p
    return -(_xlogx(S) + _xlogx(1 - S))
