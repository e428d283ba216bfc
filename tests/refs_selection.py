"""The plain numpy references of hnm.selection and of the resampler's hardest-only
selection, shared by the unit, hostile and invariance suites (one reference per
behaviour). Each one takes the keywords of the function it checks, computes on a
float64 copy, and ranks with one rule: larger key first, then smaller index
(``np.lexsort``), NaN never selected.
"""
import math

import numpy as np


def _f64(x):
    return np.array(x, dtype=np.float64)


def ranking(d, largest=True):
    """Indices of the non-NaN ``d`` (flattened), hardest (largest) first, ties by
    the smaller index."""
    a = _f64(d).reshape(-1)
    ok = np.flatnonzero(~np.isnan(a))
    key = a[ok] if largest else -a[ok]
    return ok[np.lexsort((ok, -key))]


def topk(x, k=None, *, largest=True, axis=None, band=None, at_most=False, nan_policy="raise",
         chunk_size=None, n_jobs=None, progress=False):
    """``(values, indices)`` as float64 and intp: the ranks of ``k`` or ``band``,
    padded with (NaN, -1) where fewer non-NaN scores exist. ``nan_policy``,
    ``chunk_size``, ``n_jobs`` and ``progress`` change nothing here."""
    a = _f64(x)
    if axis is not None and a.ndim == 2:
        rows, flat = (a.T if axis % 2 == 0 else a), False
    else:
        rows, flat = a.reshape(1, -1), True
    n = rows.shape[1]
    if k is not None:
        start, stop = 0, (min(k, n) if at_most else k)
    else:
        start, stop = band[0], n if band[1] is None else band[1]
        if at_most:
            stop = min(stop, n)
            start = min(start, stop)
    vals = np.full((rows.shape[0], stop - start), np.nan)
    idx = np.full((rows.shape[0], stop - start), -1, dtype=np.intp)
    for r, row in enumerate(rows):
        order = ranking(row, largest)[start:stop]
        vals[r, :order.size] = row[order]
        idx[r, :order.size] = order
    return (vals[0], idx[0]) if flat else (vals, idx)


def select_hardest(d, k=None, *, fraction=None, band=None, min_keep=1, noise_fraction=0.0,
                   at_most=False):
    """Ranks counted after the noise guard's ``floor(noise_fraction * n)``."""
    n = _f64(d).size
    guard = int(noise_fraction * n)
    left = n - guard
    if fraction is not None:
        start, stop = 0, min(max(math.ceil(fraction * n), min_keep), left)
    elif k is not None:
        start, stop = 0, min(k, left) if at_most else k
    else:
        start, stop = band[0], left if band[1] is None else band[1]
        if at_most:
            stop = min(stop, left)
    return ranking(d)[guard + start:guard + stop]


def sample_by_difficulty(d, k, *, temperature=1.0, noise_fraction=0.0, random_state=None,
                         at_most=False):
    """Gumbel-top-k: the top ``k`` of ``d / T + Gumbel`` (one draw per example, in
    index order), the noise guard's hardest set to -inf."""
    a = _f64(d)
    n = a.size
    guard = int(noise_fraction * n)
    keys = a / temperature + np.random.RandomState(random_state).gumbel(size=n)
    keys[ranking(a)[:guard]] = -np.inf
    return ranking(keys)[:min(k, n - guard) if at_most else k]


def select_semi_hard(m, margin, *, k=None, at_most=False):
    """Margins in ``(0, margin]``, smallest first, ties by the smaller index."""
    a = _f64(m)
    idx = np.flatnonzero((a > 0) & (a <= margin))
    return idx[ranking(-a[idx])][:k]


def select_quantile_window(d, low, high):
    """Easiest first; ranks ``ceil(low * n) .. ceil(high * n) - 1``."""
    n = _f64(d).size
    start, stop = (math.ceil(round(q * n, 9)) for q in (low, high))
    return ranking(d, largest=False)[start:stop]


def difficulty_weights(d, *, method="power", gamma=2.0, temperature=1.0, min_weight=0.0):
    """Mean-1 weights, ``(d / max) ** gamma`` or a softmax, floored at ``min_weight``."""
    a = _f64(d)
    if a.size == 0:
        return a
    if method == "power":  # scaled first: the normalised weights are scale-free
        top = a.max()
        w = (a / top) ** gamma if top > 0 else a ** gamma
    else:
        w = np.exp((a - a.max()) / temperature)
    if w.mean() == 0:
        return np.ones_like(a)
    w = w / w.mean()
    if min_weight:
        w = np.maximum(w, min_weight)
        w = w / w.mean()
    return w


def curriculum_window(round_index, n_rounds, *, pacing="linear", start_fraction=0.25,
                      width=None):
    """``(low, high)`` quantiles of the pacing function at progress ``t``."""
    s = float(start_fraction)
    t = round_index / (n_rounds - 1) if n_rounds > 1 else 1.0
    g = {"linear": lambda: s + (1 - s) * t, "root": lambda: s + (1 - s) * math.sqrt(t),
         "geometric": lambda: s ** (1 - t)}
    high = min(1.0, float(pacing(t)) if callable(pacing) else g[pacing]())
    return (0.0, high) if width is None else (max(0.0, high - width), high)


def blend_easy(hard_indices, n_samples, k, *, at_most=False, random_state=None):
    """``(indices, is_hard)``: the hard ones, then ``k`` drawn from the rest in index
    order by ``RandomState.choice`` without replacement."""
    hard = np.asarray(hard_indices, dtype=np.intp).reshape(-1)
    rest = np.setdiff1d(np.arange(n_samples), hard)
    k = min(k, rest.size) if at_most else k
    easy = np.random.RandomState(random_state).choice(rest, size=k, replace=False)
    indices = np.concatenate([hard, easy.astype(np.intp)])
    return indices, np.arange(indices.size) < hard.size


def resample_indices(y, d, *, noise_fraction=0.0, band=(0, None), target=None):
    """HardNegativeResampler's hardest-only selection (``easy_ratio=0``, fixed
    ``noise_fraction``): every minority sample (the classes kept whole: all but
    the under-sampled ones), then per under-sampled class the ranks ``band``
    after its guard, cut to the class's target (default: the minority count)."""
    ys = np.asarray(y)
    classes, counts = np.unique(ys, return_counts=True)
    minority = classes[np.argmin(counts)]
    target = counts.min() if target is None else target
    parts = []
    for c in classes:
        members = np.flatnonzero(ys == c)
        if c == minority:
            parts.append(members)
            continue
        n_keep = min(target, members.size)
        guard = min(int(noise_fraction * members.size), members.size - n_keep)
        start = guard + band[0]
        parts.append(members[ranking(_f64(d)[members])[start:start + n_keep]])
    return np.concatenate(parts)
