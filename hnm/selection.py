"""Selecting the hardest examples from difficulty scores.

``topk`` is the streaming selection every other strategy builds on: it reads each
score once, keeps bounded heaps, and breaks ties by the smaller index so that a
result never depends on chunk sizes or thread counts.

The strategies below are what a training loop calls per batch or per mining
round: difficulty scores in ("higher is harder", as :func:`hnm.difficulty`
returns), indices or sample weights out, vectorised, reproducible with
``random_state``.
"""
from collections import namedtuple
import math

import numpy as np

from . import _topk
from ._threads import resolve_n_jobs
from ._progress import progress_bar
from ._sampling import inclusion_probabilities
from ._ranking import check_k, check_k_band, merge_knn_results, n_noise
from sklearn.utils import check_random_state

from ._validation import (
    as_working,
    check_chunk_size,
    check_finite_1d,
    check_fraction,
    check_positive_real,
    check_int,
    check_option,
    check_real_array,
    is_native,
    working_dtype,
)

__all__ = [
    "TopK",
    "topk",
    "select_hardest",
    "sample_by_difficulty",
    "importance_sample",
    "blend_easy",
    "select_semi_hard",
    "curriculum_window",
    "select_quantile_window",
    "difficulty_weights",
]

TopK = namedtuple("TopK", ["values", "indices"])
TopK.__doc__ = """Result of :func:`topk`: ``values`` and their ``indices``, hardest first.

See Also
--------
topk : what returns it.

Examples
--------
>>> import numpy as np
>>> import hnm
>>> values, indices = hnm.topk(np.array([0.1, 0.9, 0.5]), 2)
>>> indices
array([1, 2])
"""

# Values per chunk: the unit in which threads share the work and in which inputs
# that need a conversion (other dtypes, non-contiguous layouts) are copied.
# 2**20 float64 values are 8 MiB, small next to RAM and large next to the heaps.
DEFAULT_CHUNK_SIZE = 2**20
# Chunks per thread handed to one kernel call when the input is read in place.
_CHUNKS_PER_CALL = 8


def topk(scores, k=None, *, largest=True, axis=None, band=None, chunk_size=None,
         nan_policy="raise", progress=False, at_most=False, n_jobs=None):
    """Select the ``k`` largest (or smallest) scores, streaming, ties by smaller index.

    Every score is read exactly once and the extra memory is O(k + chunk_size)
    (per thread), never O(n), so ``scores`` can be an ``np.memmap`` much larger
    than RAM.

    Parameters
    ----------
    scores : array-like
        Difficulty scores. With ``axis=None`` any shape, read in C order
        (returned indices are then flat indices, as for ``np.ravel``). With
        ``axis=-1`` (or 1) a 2-D array whose rows are searched separately, in
        parallel; ``axis=0`` searches the columns. float32 and float64 are read
        without copying; float16 is converted to float32 and bool and integer
        dtypes to float64, one chunk at a time (integers beyond +/-2**53, which
        float64 would round, raise ``ValueError``). Complex, object and string
        dtypes raise ``TypeError``.
    k : int, optional
        How many scores to select, ``1 <= k <= n`` where ``n`` is the number of
        scores searched (per row with an axis); a larger ``k`` raises
        ``ValueError`` unless ``at_most=True``. Exactly one of ``k`` and
        ``band`` must be given.
    largest : bool, default=True
        Select the largest scores (hardest first for "higher is harder" scores);
        False selects the smallest, smallest first.
    axis : {None, -1, 0, 1}, default=None
        None flattens; an integer selects along that axis of a 1-D or 2-D input.
    band : tuple of (int, int or None), optional
        ``(start, stop)``: return ranks ``start .. stop-1`` (0-based, hardest is
        rank 0) instead of the top ``k``, e.g. ``band=(100, 500)`` for the "ranks
        101-500" negatives of Meta's embedding-based retrieval. ``stop=None``
        means ``n``. Memory is O(stop).
    chunk_size : int, optional
        Number of values per unit of work (default 2**20). It changes speed and
        memory only, never the result.
    nan_policy : {"raise", "omit"}, default="raise"
        NaN scores are found in the same pass. "raise" raises ``ValueError``;
        "omit" never selects them. If fewer than ``stop`` non-NaN scores remain,
        the missing places are padded with value NaN and index -1.
    progress : bool, default=False
        Show a progress bar (tqdm, on stderr) over the scores read.
    at_most : bool, default=False
        Take ``min(k, n)`` scores instead of raising when ``k > n``; a
        ``band`` whose ``stop`` exceeds ``n`` is cut at ``n`` (possibly empty).
    n_jobs : int, optional
        Number of OpenMP threads, at most; default: OpenMP's count
        (``OMP_NUM_THREADS``, threadpoolctl limits). Fewer run when the load
        average says the cores are busy (OpenMP's dynamic adjustment, unless
        ``OMP_DYNAMIC`` is set). It changes speed only, never the result.

    Returns
    -------
    TopK
        Named tuple ``(values, indices)``: with ``axis=None`` arrays of shape
        (k,); with an axis, of shape (n_rows, k). ``values`` has the dtype of
        ``scores`` (float64 for bool/integer scores only when padding needs NaN),
        ``indices`` is ``np.intp``. Ordered hardest first: by value (descending
        if ``largest`` else ascending), then by smaller index.

    Examples
    --------
    >>> import numpy as np
    >>> import hnm
    >>> losses = np.array([0.1, 2.0, 0.5, 2.0, 0.05])
    >>> hnm.topk(losses, 2)
    TopK(values=array([2., 2.]), indices=array([1, 3]))
    >>> hnm.topk(losses, band=(1, 3)).indices
    array([3, 2])
    >>> hnm.topk(losses, 10, at_most=True).indices
    array([1, 3, 2, 0, 4])
    >>> hnm.topk([[3, 1, 2], [0, 5, 4]], 1, axis=-1, largest=False).indices
    array([[1],
           [0]])
    """
    x = check_real_array(scores, "scores")
    if not isinstance(largest, (bool, np.bool_)):
        raise TypeError(f"largest must be a bool, got {largest!r}.")
    nan_policy = check_option(nan_policy, "nan_policy", ("raise", "omit"))
    chunk_size = check_chunk_size(chunk_size, DEFAULT_CHUNK_SIZE)
    n_jobs = resolve_n_jobs(n_jobs)
    if axis is not None:
        if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (int, np.integer)):
            raise TypeError(f"axis must be None or an integer, got {axis!r}.")
        if x.ndim > 2:
            raise ValueError(
                f"axis must be None for a {x.ndim}-D scores array; "
                "an integer axis needs a 1-D or 2-D array."
            )
        if not -x.ndim <= axis < x.ndim:
            raise ValueError(f"axis {axis} is out of bounds for a {x.ndim}-D scores array.")
        axis = int(axis) % x.ndim
        if x.ndim == 1:
            axis = None
        elif axis == 0:
            x = x.T
    n = x.size if axis is None else x.shape[1]
    start, stop = check_k_band(k, band, n, at_most=at_most)

    wdt = working_dtype(x.dtype)
    sign = wdt.type(1 if largest else -1)
    if axis is None:
        with progress_bar(progress, x.size, "topk", "scores") as bar:
            keys, idx, n_nan = _topk_flat(x, stop, sign, wdt, chunk_size, nan_policy, bar,
                                          n_jobs)
    else:
        with progress_bar(progress, x.shape[0], "topk", "rows") as bar:
            keys, idx, n_nan = _topk_rows(x, stop, sign, wdt, chunk_size, nan_policy, bar,
                                          n_jobs)
    if n_nan and nan_policy == "raise":
        raise ValueError(
            "scores contains NaN; pass nan_policy='omit' to never select NaN scores."
        )
    keys, idx = keys[..., start:], idx[..., start:]
    if not largest:
        # a new array: in-place np.negative on this strided view drops elements
        # in numpy 2.4 (seen with float64 (n, 1) column views)
        keys = np.negative(keys)
    padded = idx < 0
    if x.dtype != wdt and not (x.dtype.kind in "biu" and padded.any()):
        keys = keys.astype(x.dtype)  # exact: the conversion was exact
    return TopK(keys, idx)


def _n_threads(n_jobs, n_units):
    return max(1, min(n_jobs, n_units))


def _topk_flat(x, k, sign, wdt, chunk_size, nan_policy, bar, n_jobs):
    n_threads = _n_threads(n_jobs, math.ceil(x.size / chunk_size))
    keys = np.empty((n_threads, k), dtype=wdt)
    idx = np.empty((n_threads, k), dtype=np.intp)
    sizes = np.zeros(n_threads, dtype=np.intp)
    n_nan = 0
    if is_native(x) and x.flags.c_contiguous:
        # read in place (a memmap streams through the page cache), a few chunks
        # per thread per call so that Ctrl-C and the progress bar get a turn
        flat = x.reshape(-1)
        span = chunk_size * n_threads * _CHUNKS_PER_CALL
        for s in range(0, flat.size, span):
            part = flat[s:s + span]
            n_nan += _topk.topk_flat_update(part, s, sign, chunk_size, keys, idx, sizes)
            bar.update(part.size)
            if n_nan and nan_policy == "raise":
                break
    else:
        # copy a bounded block of leading-axis slices at a time
        row_size = x.size // x.shape[0] if x.shape[0] else 1
        rows = max(1, chunk_size // max(row_size, 1))
        sub = max(1, math.ceil(rows * row_size / n_threads))
        for r0 in range(0, x.shape[0], rows):
            block = as_working(x[r0:r0 + rows], wdt, "scores").reshape(-1)
            n_nan += _topk.topk_flat_update(block, r0 * row_size, sign, sub, keys, idx, sizes)
            bar.update(block.size)
            if n_nan and nan_policy == "raise":
                break
    # merge the per-thread heaps: best key first, then smaller index
    keys, idx = merge_knn_results([(keys[t, :sizes[t]], idx[t, :sizes[t]])
                                   for t in range(n_threads)], k)
    return keys, idx, n_nan


def _topk_rows(x, k, sign, wdt, chunk_size, nan_policy, bar, n_jobs):
    n_rows, n_cols = x.shape
    keys = np.empty((n_rows, k), dtype=wdt)
    idx = np.empty((n_rows, k), dtype=np.intp)
    counts = np.empty(n_rows, dtype=np.intp)
    n_nan = 0
    native = is_native(x) and x.flags.c_contiguous
    n_threads = _n_threads(n_jobs, n_rows)
    rows = max(1, chunk_size // max(n_cols, 1))
    if native:  # no copy, so larger calls: a few chunks per thread
        rows *= n_threads * _CHUNKS_PER_CALL
    for r0 in range(0, n_rows, rows):
        block = x[r0:r0 + rows] if native else as_working(x[r0:r0 + rows], wdt, "scores")
        n_nan += _topk.topk_rows(block, sign, keys[r0:r0 + rows], idx[r0:r0 + rows],
                                 counts[r0:r0 + rows], _n_threads(n_jobs, block.shape[0]))
        bar.update(block.shape[0])
        if n_nan and nan_policy == "raise":
            break
    if n_nan and nan_policy == "omit":
        short = np.arange(k) >= counts[:, None]
        if short.any():
            keys = keys.astype(np.result_type(keys.dtype, np.float32), copy=False)
            keys[short] = np.nan
            idx[short] = -1
    return keys, idx, n_nan


def select_hardest(difficulty, k=None, *, fraction=None, band=None, min_keep=1,
                   noise_fraction=0.0, at_most=False, n_jobs=None):
    """Indices of the hardest examples (OHEM), optionally a rank band past a noise guard.

    Online hard example mining (Shrivastava et al., 2016) keeps the top-k losses of
    each batch. Because the very hardest examples are disproportionately label
    noise or false negatives, ranks can be skipped first: ``noise_fraction``
    drops the hardest ``floor(noise_fraction * n)`` (suspected label errors), and
    ``band=(start, stop)`` selects ranks ``start .. stop-1`` of what is left, so
    ``band=(100, 500)`` selects ranks 101-500 (1-based), the band Meta's
    embedding-based retrieval found best (Huang et al., 2020).

    Parameters
    ----------
    difficulty : array-like of shape (n,)
        Higher is harder. NaN raises ``ValueError``. May be an ``np.memmap``.
    k : int, optional
        How many to select: the ``k`` hardest left after the noise guard.
        Exactly one of ``k``, ``fraction`` and ``band``.
    fraction : float in (0, 1], optional
        Select ``ceil(fraction * n)`` examples (at least ``min_keep``), capped at
        the number left after the noise guard.
    band : tuple of (int, int or None), optional
        ``(start, stop)``: the ranks ``start .. stop-1`` (0-based, hardest
        first) counted after the noise guard; ``stop=None`` means to the end.
    min_keep : int, default=1
        Lower bound on the number selected with ``fraction``.
    noise_fraction : float in [0, 1), default=0.0
        Drop the hardest ``floor(noise_fraction * n)`` examples as suspected
        label noise before selecting. A fraction of all ``n`` examples, not of
        ``k``: with ``n=100_000``, ``noise_fraction=0.01`` skips the 1000
        hardest whatever ``k`` is, and ``k`` are then taken from rank 1001 on.
    at_most : bool, default=False
        Take what is left when fewer than ``k`` examples (or than a band's
        ``stop``) remain after the noise guard, instead of raising
        ``ValueError``; the result may then be shorter, or empty.
    n_jobs : int, optional
        Threads of the selection (as for :func:`topk`).

    Returns
    -------
    indices : ndarray of shape (n_selected,)
        Hardest first; ties by smaller index.

    See Also
    --------
    topk : The streaming selection underneath.
    sample_by_difficulty : A random draw favouring hard examples instead.

    Examples
    --------
    >>> import numpy as np
    >>> from hnm.selection import select_hardest
    >>> losses = np.array([0.2, 9.0, 1.5, 0.1, 3.0, 2.5])
    >>> select_hardest(losses, 2)
    array([1, 4])
    >>> select_hardest(losses, band=(1, 3))       # ranks 1-2: skip the hardest
    array([4, 5])
    >>> select_hardest(losses, fraction=0.5, noise_fraction=0.2)  # floor(0.2 * 6) = 1 dropped
    array([4, 5, 2])
    >>> select_hardest(losses, band=(4, 10), at_most=True)
    array([0, 3])
    """
    d = check_real_array(difficulty, "difficulty", max_ndim=1)
    n = d.shape[0]
    guard = n_noise(noise_fraction, n)
    available = n - guard
    if sum(arg is not None for arg in (k, fraction, band)) != 1:
        raise ValueError("Pass exactly one of k, fraction and band.")
    what = f"examples left after the noise guard dropped {guard} of {n}"
    if fraction is not None:
        fraction = check_fraction(fraction, "fraction")
        min_keep = check_int(min_keep, "min_keep", min_value=0)
        start, stop = 0, min(max(math.ceil(fraction * n), min_keep), available)
    else:
        start, stop = check_k_band(k, band, available, what, at_most=at_most)
    if start >= stop:
        return np.empty(0, dtype=np.intp)
    return _top_difficulty(d, (guard + start, guard + stop), n_jobs=n_jobs)


def sample_by_difficulty(difficulty, k, *, temperature=1.0, noise_fraction=0.0,
                         random_state=None, at_most=False, n_jobs=None):
    """Sample ``k`` examples without replacement, favouring hard ones.

    Each example is drawn with probability proportional to
    ``exp(difficulty / temperature)`` (successive draws without replacement),
    the importance-sampling view of hard mining (Katharopoulos & Fleuret, 2018;
    Selective-Backprop): every example keeps a chance, hard ones more.
    ``temperature -> 0`` tends to the top-k, ``temperature -> inf`` to uniform
    sampling. To sample in proportion to a non-negative loss itself
    (``p ~ loss ** (1 / temperature)``), pass ``np.log(loss)``.

    Implemented with the Gumbel-top-k trick (Kool et al., 2019): perturb
    ``difficulty / temperature`` with Gumbel noise and take the top k, one
    vectorised pass.

    Parameters
    ----------
    difficulty : array-like of shape (n,)
        Higher is harder; must be finite.
    k : int
        Number of examples to draw, ``1 <= k <= n`` minus the noise guard.
    temperature : float > 0, default=1.0
    noise_fraction : float in [0, 1), default=0.0
        Drop the hardest ``floor(noise_fraction * n)`` before sampling (a
        fraction of all ``n`` examples, not of ``k``).
    random_state : int, RandomState instance or None
        Seed for reproducible draws.
    at_most : bool, default=False
        Draw all that are left when fewer than ``k`` are, instead of raising
        ``ValueError``.
    n_jobs : int, optional
        Threads of the selection (as for :func:`topk`).

    Returns
    -------
    indices : ndarray of shape (k,)
        In the order drawn.

    Examples
    --------
    >>> import numpy as np
    >>> from hnm.selection import sample_by_difficulty
    >>> losses = np.array([0.1, 5.0, 0.2, 4.0, 0.3])
    >>> sorted(sample_by_difficulty(losses, 2, temperature=0.01, random_state=0).tolist())
    [1, 3]
    >>> len(sample_by_difficulty(losses, 3, temperature=10.0, random_state=0))
    3
    """
    d = check_finite_1d(difficulty, "difficulty")
    n = d.shape[0]
    temperature = check_positive_real(temperature, "temperature")
    guard = n_noise(noise_fraction, n)
    k = check_k(k, n - guard, at_most=at_most,
                what=f"examples left after the noise guard dropped {guard} of {n}")
    if k == 0:
        return np.empty(0, dtype=np.intp)
    rng = check_random_state(random_state)
    keys = d.astype(np.float64) / temperature + rng.gumbel(size=n)
    if guard:
        keys[topk(d, guard, n_jobs=n_jobs).indices] = -np.inf
    return topk(keys, k, n_jobs=n_jobs).indices


Blend = namedtuple("Blend", ["indices", "is_hard"])
Blend.__doc__ = """Result of :func:`blend_easy`: the indices and whether each was mined as hard."""


def importance_sample(difficulty, k, *, uniform_mix=0.5, stratify=True, random_state=None,
                      at_most=False):
    """Draw exactly ``k`` examples with difficulty-proportional inclusion probabilities.

    Importance sampling by difficulty (Katharopoulos & Fleuret, 2018) mixed with
    uniform sampling (defensive importance sampling, Hesterberg, 1995), drawn
    by systematic sampling in a random order (Madow, 1949), so that every
    example's probability of being drawn is exactly ``pi_i`` and the draw has
    exactly ``k`` examples. Weighting each drawn example by ``1 / pi_i`` (the
    Horvitz-Thompson weight; the down-sampling correction of ads ranking)
    makes any sum over the draw an unbiased estimate of the sum over all
    examples, so a model fit with these weights targets the full-data loss.

    Parameters
    ----------
    difficulty : array-like of shape (n,)
        Non-negative, higher is harder (e.g. ``1 - p_true``, an upper bound of
        the log-loss gradient's norm in the logit).
    k : int
        How many to draw, ``1 <= k <= n``; a larger ``k`` raises ``ValueError``
        unless ``at_most=True``, which takes all ``n`` (weight 1 each).
    uniform_mix : float in [0, 1], default=0.5
        Share of the uniform component: each weight is at most
        ``n / (k * uniform_mix)``.
    stratify : bool, default=True
        Line the examples up by difficulty (ties in random order) instead of
        a random order.
    random_state : int, RandomState instance or None
    at_most : bool, default=False
        Cap ``k`` at ``n`` instead of raising.

    Returns
    -------
    indices : ndarray of shape (k,)
        Sorted.
    weights : ndarray of shape (k,)
        ``1 / pi`` of each drawn example (they sum to about ``n``).

    See Also
    --------
    sample_by_difficulty : Successive sampling, without exact weights.
    hnm.HardMiningClassifier : Uses it each round (``selection="importance"``).

    Examples
    --------
    >>> import numpy as np
    >>> from hnm.selection import importance_sample
    >>> d = np.r_[np.full(98, 0.01), 5.0, 5.0]
    >>> idx, w = importance_sample(d, 10, random_state=0)
    >>> bool(np.isin([98, 99], idx).all()), round(float(w.sum()))
    (True, 100)
    """
    d = np.asarray(difficulty, dtype=np.float64)
    if d.ndim != 1:
        raise ValueError(f"difficulty must be 1-D, got shape {d.shape}.")
    if not np.isfinite(d).all() or (d < 0).any():
        raise ValueError("difficulty must be finite and non-negative for importance "
                         "sampling.")
    n = d.size
    k = check_k(k, n, at_most=at_most, what="examples")
    uniform_mix = check_fraction(uniform_mix, "uniform_mix", low_open=False)
    if k == 0:
        return np.empty(0, dtype=np.intp), np.empty(0)
    rng = check_random_state(random_state)
    pi = inclusion_probabilities(d, int(k), uniform_mix=uniform_mix)
    order = rng.permutation(n)
    if stratify:
        order = order[np.argsort(d[order], kind="stable")]
    cum = np.cumsum(pi[order])
    cum *= k / cum[-1]  # sum(pi) is k up to rounding; make the grid land exactly
    points = rng.uniform() + np.arange(k)
    picked = order[np.minimum(np.searchsorted(cum, points, side="right"), n - 1)]
    picked = np.unique(picked)
    if picked.size < k:  # rounding at a boundary: top up with the most probable left
        rest = np.setdiff1d(np.arange(n), picked)
        extra = rest[np.argsort(-pi[rest], kind="stable")[: k - picked.size]]
        picked = np.sort(np.concatenate([picked, extra]))
    return picked, 1.0 / pi[picked]


def blend_easy(hard_indices, n_samples, k, *, at_most=False, random_state=None):
    """Add ``k`` random other ("easy") examples to the hard ones.

    Hard-only training can hurt: Meta's embedding-based retrieval found that
    blending random ("easy") negatives with hard ones beat either alone, with
    recall saturating around easy:hard = 100:1 (Huang et al., 2020): for a
    ratio, pass ``k=round(ratio * len(hard_indices))``.

    Parameters
    ----------
    hard_indices : array-like of int, shape (n_hard,)
        Distinct indices in ``[0, n_samples)``, e.g. from :func:`select_hardest`.
    n_samples : int
        Size of the pool the indices refer to.
    k : int >= 0
        How many easy examples to add, drawn uniformly without replacement
        from the examples not in ``hard_indices`` (0 adds none). More than
        there are raises ``ValueError`` unless ``at_most=True``.
    at_most : bool, default=False
        Add all the other examples when fewer than ``k`` are left.
    random_state : int, RandomState instance or None

    Returns
    -------
    Blend
        ``(indices, is_hard)``: the hard indices in their order, then the easy
        ones; ``is_hard`` is a boolean mask over ``indices``.

    Examples
    --------
    >>> from hnm.selection import blend_easy
    >>> blend = blend_easy([7, 2], 10, 3, random_state=0)
    >>> blend.indices[:2], blend.is_hard.tolist()
    (array([7, 2]), [True, True, False, False, False])

    See Also
    --------
    select_hardest : The hard indices.
    hnm.HardNegativeResampler : Blends easy negatives per class (``easy_ratio``).
    """
    n_samples = check_int(n_samples, "n_samples", min_value=0)
    hard = np.asarray(hard_indices)
    if hard.ndim != 1 or (hard.size and hard.dtype.kind not in "iu"):
        raise TypeError("hard_indices must be a 1-D array of integers.")
    hard = hard.astype(np.intp, copy=False)
    if hard.size and (hard.min() < 0 or hard.max() >= n_samples):
        raise ValueError(f"hard_indices must lie in [0, {n_samples}).")
    is_pool = np.ones(n_samples, dtype=bool)
    is_pool[hard] = False
    if n_samples - int(is_pool.sum()) != hard.size:
        raise ValueError("hard_indices contains duplicates.")
    pool = np.flatnonzero(is_pool)
    # k=0 is a blend without easy examples; any other count follows the k rule
    if check_int(k, "k", min_value=0):
        k = check_k(k, pool.size, at_most=at_most, what="examples not in hard_indices")
    easy = check_random_state(random_state).choice(pool, size=k, replace=False)
    indices = np.concatenate([hard, easy.astype(np.intp)])
    is_hard = np.zeros(indices.size, dtype=bool)
    is_hard[: hard.size] = True
    return Blend(indices, is_hard)


def select_semi_hard(margins, margin, *, k=None, at_most=False):
    """Indices of semi-hard examples: correct, but inside the margin.

    FaceNet (Schroff et al., 2015) trains on semi-hard negatives, those with
    ``0 < d(a, n) - d(a, p) <= margin``: the hardest negatives early in training
    collapsed its models. The same rule applies to classification margins (true
    class score minus the best other, ``-hnm.difficulty(..., measure="margin")``):
    correctly classified with a margin of at most ``margin``.

    Parameters
    ----------
    margins : array-like of shape (n,)
        Signed margins, positive when correct (higher is *easier*).
    margin : float > 0
        Upper bound of the semi-hard interval ``(0, margin]``.
    k : int, optional
        Return the ``k`` hardest (smallest-margin) semi-hard examples, fewer if
        fewer margins are in ``(0, margin]`` (a data-dependent shortfall).
        ``k`` larger than the number of margins raises ``ValueError`` unless
        ``at_most=True``.
    at_most : bool, default=False
        Cap ``k`` at the number of margins instead of raising.

    Returns
    -------
    indices : ndarray of shape (n_selected,)
        Smallest margin (hardest) first, ties by smaller index; may be empty.

    Examples
    --------
    >>> from hnm.selection import select_semi_hard
    >>> select_semi_hard([-0.5, 0.3, 2.0, 0.1, 0.0, 0.3], margin=0.5)
    array([3, 1, 5])
    """
    m = check_real_array(margins, "margins", max_ndim=1)
    margin = check_positive_real(margin, "margin")
    if m.dtype.kind == "f" and np.isnan(m).any():
        raise ValueError("margins contains NaN.")
    if k is not None:
        k = check_k(k, m.shape[0], at_most=at_most, what="margins")
    idx = np.flatnonzero((m > 0) & (m <= margin))
    if k is not None and k < idx.size:
        return idx[topk(m[idx], k, largest=False).indices]
    return idx[np.argsort(m[idx], kind="stable")]


_PACING = {
    "linear": lambda s, t: s + (1.0 - s) * t,
    "root": lambda s, t: s + (1.0 - s) * math.sqrt(t),
    "geometric": lambda s, t: s ** (1.0 - t),
}


def curriculum_window(round_index, n_rounds, *, pacing="linear", start_fraction=0.25,
                      width=None):
    """Difficulty-quantile window to train on in a curriculum round (easy to hard).

    Curriculum and self-paced learning (Bengio et al., 2009; Kumar et al., 2010;
    Hacohen & Weinshall, 2019) start with the easiest examples and let harder
    ones in as training goes on, the opposite pressure to hard mining. A pacing
    function ``g`` grows the upper quantile from ``start_fraction`` in round 0 to
    1 in the last round; the window is ``(0, g)`` (cumulative) or, with
    ``width``, ``(g - width, g)`` sliding towards the hardest examples.

    Parameters
    ----------
    round_index : int
        The round, ``0 <= round_index < n_rounds``.
    n_rounds : int
        Total number of rounds, >= 1 (one round: the whole range).
    pacing : {"linear", "root", "geometric"} or callable, default="linear"
        ``g(t)`` for progress ``t = round_index / (n_rounds - 1)`` in [0, 1]:
        linear ``s + (1 - s) t``, root ``s + (1 - s) sqrt(t)`` (fast start),
        geometric ``s ** (1 - t)`` (slow start). A callable receives ``t`` and
        returns the upper quantile in (0, 1].
    start_fraction : float in (0, 1], default=0.25
        ``s``: the easiest fraction available in round 0.
    width : float in (0, 1], optional
        Window width for a sliding window; None for cumulative.

    Returns
    -------
    (low, high) : tuple of float
        Quantiles of the difficulty ranking (0 = easiest); pass them to
        :func:`select_quantile_window`.

    Examples
    --------
    >>> from hnm.selection import curriculum_window
    >>> [curriculum_window(r, 4, start_fraction=0.4) for r in range(4)]
    [(0.0, 0.4), (0.0, 0.6), (0.0, 0.8), (0.0, 1.0)]
    >>> curriculum_window(1, 3, start_fraction=0.5, width=0.25)
    (0.5, 0.75)
    """
    n_rounds = check_int(n_rounds, "n_rounds", min_value=1)
    round_index = check_int(round_index, "round_index", min_value=0, max_value=n_rounds - 1)
    s = check_fraction(start_fraction, "start_fraction")
    t = round_index / (n_rounds - 1) if n_rounds > 1 else 1.0
    if callable(pacing):
        high = pacing(t)
        try:
            high = check_fraction(high, "pacing(t)")
        except TypeError:
            raise TypeError(f"pacing must return a real number, got {high!r}.") from None
    else:
        high = _PACING[check_option(pacing, "pacing", tuple(_PACING))](s, t)
    high = min(1.0, round(high, 12))
    if width is None:
        return 0.0, high
    width = check_fraction(width, "width")
    return max(0.0, round(high - width, 12)), high


def select_quantile_window(difficulty, low, high):
    """Indices whose difficulty rank lies in the quantile window ``[low, high)``.

    Ranks are counted from the easiest (quantile 0) to the hardest (quantile 1),
    ties by smaller index; the window covers ranks ``ceil(low * n)`` to
    ``ceil(high * n) - 1``, so adjacent windows partition the examples.

    Parameters
    ----------
    difficulty : array-like of shape (n,)
        Higher is harder. NaN raises ``ValueError``.
    low, high : float
        ``0 <= low < high <= 1``, e.g. from :func:`curriculum_window`.

    Returns
    -------
    indices : ndarray
        Easiest first.

    Examples
    --------
    >>> from hnm.selection import select_quantile_window
    >>> select_quantile_window([5.0, 1.0, 3.0, 2.0], 0.0, 0.5)
    array([1, 3])
    """
    d = check_real_array(difficulty, "difficulty", max_ndim=1)
    low = check_fraction(low, "low", low_open=False, high_open=True)
    high = check_fraction(high, "high")
    if low >= high:
        raise ValueError(f"low must be < high, got low={low!r}, high={high!r}.")
    n = d.shape[0]
    # rounding first keeps 0.3 * 10 at rank 3, not 4
    start, stop = (math.ceil(round(q * n, 9)) for q in (low, high))
    if start >= stop:
        return np.empty(0, dtype=np.intp)
    return _top_difficulty(d, (start, stop), largest=False)


def _top_difficulty(d, band, largest=True, n_jobs=None):
    """topk's indices for a band of a difficulty array, NaN named as difficulty."""
    try:
        return topk(d, band=band, largest=largest, n_jobs=n_jobs).indices
    except ValueError as exc:
        if str(exc).startswith("scores contains NaN"):
            raise ValueError("difficulty contains NaN.") from None
        raise


def difficulty_weights(difficulty, *, method="power", gamma=2.0, temperature=1.0,
                       min_weight=0.0):
    """Sample weights that up-weight hard examples instead of resampling them.

    Every example stays in training; hard ones count more. The weights have mean
    1, so the total weight (and a learning rate tuned for unweighted data) is
    unchanged. Pass them as ``sample_weight``.

    Parameters
    ----------
    difficulty : array-like of shape (n,)
        Higher is harder; finite.
    method : {"power", "softmax"}, default="power"
        "power": ``w ~ difficulty ** gamma`` (difficulty must be >= 0). With
        ``difficulty = 1 - p_true`` (``measure="confidence"``) this is the focal
        loss modulating factor ``(1 - p_t) ** gamma`` (Lin et al., 2017; gamma=2).
        "softmax": ``w ~ exp(difficulty / temperature)``, for difficulties of
        any sign such as margins.
    gamma : float >= 0, default=2.0
    temperature : float > 0, default=1.0
    min_weight : float in [0, 1), default=0.0
        Floor for every weight before normalising, relative to the mean, so easy
        examples never vanish entirely.

    Returns
    -------
    weights : ndarray of shape (n,), float64
        Non-negative, mean 1 (all ones if every raw weight is 0).

    Examples
    --------
    >>> from hnm.selection import difficulty_weights
    >>> difficulty_weights([0.0, 0.5, 1.0])
    array([0. , 0.6, 2.4])
    >>> difficulty_weights([0.0, 0.5, 1.0], min_weight=0.5).round(3)
    array([0.429, 0.514, 2.057])
    """
    d = check_finite_1d(difficulty, "difficulty").astype(np.float64)
    method = check_option(method, "method", ("power", "softmax"))
    min_weight = check_fraction(min_weight, "min_weight", low_open=False, high_open=True)
    # both checked whatever the method: the same bad input, the same error
    gamma = check_positive_real(gamma, "gamma", allow_zero=True)
    temperature = check_positive_real(temperature, "temperature")
    if method == "power":
        if d.size and d.min() < 0:
            raise ValueError("difficulty must be >= 0 for method='power'; "
                             "use method='softmax' for signed difficulties.")
        top = d.max(initial=0.0)
        # scaled by the largest first (the weights are relative): no overflow
        w = (d / top) ** gamma if top > 0 else d ** gamma
    else:
        # shifted by the largest: exp never overflows, and the largest weighs 1
        w = np.exp((d - d.max()) / temperature) if d.size else d
    mean = w.mean() if w.size else 0.0
    if mean == 0:
        return np.ones_like(d)
    w = w / mean
    if min_weight:
        np.maximum(w, min_weight, out=w)
        w /= w.mean()
    return w
