"""Plain numpy references for hnm.metrics, shared by the unit, hostile and
invariance suites (one reference per behaviour): every input is first copied to
float64, then computed the obvious way."""
import math

import numpy as np
from sklearn.metrics import average_precision_score


def _float64(x):
    return np.array(x, dtype=np.float64)


def segment(name, y, s, threshold):
    """One record of hard_case_report: counts and metrics of a boolean-label segment."""
    pred = s >= threshold
    tp, fp = int(np.sum(pred & y)), int(np.sum(pred & ~y))
    fn, tn = int(np.sum(~pred & y)), int(np.sum(~pred & ~y))
    n_pos, n_neg = tp + fn, fp + tn
    return {"segment": name, "n": int(y.size), "n_pos": n_pos, "n_neg": n_neg,
            "precision": tp / (tp + fp) if tp + fp else None,
            "recall": tp / n_pos if n_pos else None,
            "fpr": fp / n_neg if n_neg else None,
            "accuracy": (tp + tn) / y.size if y.size else None,
            "average_precision": float(average_precision_score(y, s))
            if n_pos and n_neg else None}


def hard_case_report(y_true, y_score, *, difficulty=None, hard_indices=None,
                     hard_fraction=0.1, threshold=0.5, near_threshold=0.1, pos_label=1):
    """The five segments' records: all, hard, rest, near threshold, far from it."""
    s = _float64(y_score)
    y = np.asarray(y_true) == pos_label
    n = s.size
    if hard_indices is not None:
        hard = np.asarray(hard_indices).astype(np.intp)
    else:
        d = -(s - threshold) * np.where(y, 1.0, -1.0) if difficulty is None else \
            _float64(difficulty)
        k = min(max(math.ceil(hard_fraction * n), 1), n)
        hard = np.lexsort((np.arange(n), -d))[:k]
    is_hard = np.zeros(n, dtype=bool)
    is_hard[hard] = True
    near = np.abs(s - threshold) <= near_threshold
    return [segment("all", y, s, threshold),
            segment("hard", y[is_hard], s[is_hard], threshold),
            segment("rest", y[~is_hard], s[~is_hard], threshold),
            segment("near threshold", y[near], s[near], threshold),
            segment("far from threshold", y[~near], s[~near], threshold)]


def feature_diagnosis(X, y, hard, *, negative_label=0, feature_names=None, k=None):
    """Records ranked by confusability, highest first (ties: smaller feature index)."""
    A = _float64(X)
    scale = np.abs(A).max(axis=0) if A.size else np.ones(A.shape[1])
    scale[~(scale > 0) | ~np.isfinite(scale)] = 1
    A = A / scale  # SMDs are scale-free; this keeps squares from overflowing
    ys = np.asarray(y)
    hard = np.unique(np.asarray(hard))
    is_neg = ys == negative_label
    easy = is_neg.copy()
    easy[hard] = False

    def mean_var(rows):
        B = A[rows]
        return B.mean(axis=0), B.var(axis=0)

    def smd(m1, v1, m2, v2):
        pooled = np.sqrt((v1 + v2) / 2)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(pooled > 0, (m1 - m2) / pooled,
                            np.where(np.isnan(pooled), np.nan, 0.0))

    (mh, vh), (mp, vp), (me, ve) = mean_var(hard), mean_var(~is_neg), mean_var(easy)
    hp, he, ep = smd(mh, vh, mp, vp), smd(mh, vh, me, ve), smd(me, ve, mp, vp)
    conf = np.abs(ep) - np.abs(hp)
    names = [f"x{j}" for j in range(A.shape[1])] if feature_names is None else feature_names
    order = np.lexsort((np.arange(A.shape[1]), -conf))[:k]
    return [{"feature": str(names[j]), "smd_hard_vs_pos": hp[j], "smd_hard_vs_easy": he[j],
             "smd_easy_vs_pos": ep[j], "confusability": conf[j]} for j in order]
