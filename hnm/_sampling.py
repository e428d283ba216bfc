"""Private helpers of the weighted draws: the exact inclusion probabilities of a
difficulty-proportional draw mixed with uniform, and the fit parameter that
carries the resulting weights to an estimator.

Used by :mod:`hnm.selection` (``importance_sample``), :mod:`hnm.resampling` and
:mod:`hnm.mining`.
"""
import numpy as np
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import has_fit_parameter


def sample_weight_key(estimator):
    """The fit parameter that carries sample weights to ``estimator``, or None.

    A Pipeline routes them to its last step as ``<step>__sample_weight``."""
    if isinstance(estimator, Pipeline):
        name, last = estimator.steps[-1]
        if last is None or last == "passthrough":
            return None
        key = sample_weight_key(last)
        return None if key is None else f"{name}__{key}"
    return "sample_weight" if has_fit_parameter(estimator, "sample_weight") else None


def inclusion_probabilities(difficulty, k, *, uniform_mix=0.5):
    """Inclusion probabilities of a difficulty-proportional draw mixed with uniform.

    ``pi_i = min(1, c * q_i)`` with ``q_i = uniform_mix / n + (1 - uniform_mix) *
    d_i / sum(d)`` and ``c`` such that ``sum(pi) = k`` (examples capped at 1 are
    taken for sure and the rest rescaled).
    """
    d = np.asarray(difficulty, dtype=np.float64)
    n = d.size
    if k >= n:
        return np.ones(n)
    total = d.sum()
    q = np.full(n, 1.0 / n)
    if total > 0:
        q = uniform_mix * q + (1.0 - uniform_mix) * d / total
    pi = np.zeros(n)
    free = np.ones(n, dtype=bool)
    need = float(k)
    for _ in range(n):  # each pass fixes at least one example at 1, usually none
        scaled = q[free] * (need / q[free].sum())
        over = scaled >= 1.0
        if not over.any():
            pi[free] = scaled
            break
        idx = np.flatnonzero(free)[over]
        pi[idx] = 1.0
        free[idx] = False
        need = k - (n - free.sum())
        if need <= 0 or not free.any():
            break
    return pi
