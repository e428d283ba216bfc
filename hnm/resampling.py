"""HardNegativeResampler: keep the hard negatives when under-sampling."""
from numbers import Integral, Real

import numpy as np
from imblearn.under_sampling.base import BaseUnderSampler
from imblearn.utils import check_target_type
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import check_cv, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import _safe_indexing, check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, Options, StrOptions
from scipy import sparse

import warnings

from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin
from sklearn.utils.metaestimators import available_if
from sklearn.utils import get_tags
from sklearn.utils.validation import check_is_fitted, validate_data

from ._sampling import inclusion_probabilities, sample_weight_key
from .noise import find_label_issues, find_label_issues_knn
from ._exact_l2 import nearest_l2_float64
from .pairs import search_hard_pairs
from .scoring import MEASURES, difficulty as _difficulty
from ._validation import check_finite_1d
from ._ranking import check_band, n_noise
from .selection import (
    blend_easy,
    importance_sample,
    sample_by_difficulty,
    select_hardest,
    topk,
)

__all__ = ["HardNegativeResampler", "ResampledClassifier"]

REASONS = ("kept class", "hard", "easy", "expansion", "drawn")


class HardNegativeResampler(BaseUnderSampler):
    """Under-sample the negatives by keeping the hard ones, not a random subset.

    Classes that are not under-sampled are kept whole. Of each under-sampled
    class (the negatives), the examples most confused with the other classes
    are kept, with guards against the known failure of hard-only selection:
    the hardest "negatives" are disproportionately mislabeled positives.

    Where difficulty comes from (``difficulty``):

    - ``"model"`` (default): an estimator's predicted probabilities, **out of
      fold** (``cross_val_predict`` with ``cv``, as imbalanced-learn's
      InstanceHardnessThreshold), so no example is scored by a model that saw
      it; ``measure`` as in :func:`hnm.difficulty`.
    - ``"nearmiss"``: NearMiss-1: closeness to the ``n_neighbors`` nearest
      samples of the minority class (smallest mean distance is hardest);
      selects exactly what ``imblearn.under_sampling.NearMiss(version=1)``
      selects with the same ``n_neighbors`` and ``sampling_strategy`` when
      ``selection="hardest"`` and no guard or blend is set, through an exact
      blocked search (:func:`hnm.search_hard_pairs`). :class:`hnm.NearMiss` is
      the exact drop-in for imbalanced-learn's NearMiss (versions 1, 2 and 3).
    - ``"distance"``: closeness to the ``n_neighbors`` nearest samples of *any*
      other class.
    - precomputed: ``fit_resample(X, y, sample_difficulty=d)`` (e.g. from a
      production model), higher is harder.

    Parameters
    ----------
    sampling_strategy : float, str, dict or callable, default="auto"
        As imbalanced-learn's under-samplers: which classes are under-sampled
        and to how many samples.
    difficulty : {"model", "nearmiss", "distance"}, default="model"
    estimator : classifier, default=None
        For ``difficulty="model"``; None is a StandardScaler + LogisticRegression
        pipeline (fast, calibrated enough to rank).
    cv : int or cross-validation generator, default=5
        Folds of the out-of-fold scoring (stratified for an int).
    measure : str, default="margin"
        Difficulty measure for ``difficulty="model"``.
    n_neighbors : int, default=3
        Neighbours for the distance-based difficulties.
    selection : {"hardest", "sample", "importance"}, default="hardest"
        Keep the hardest of the ``band`` blended with random ones
        (``easy_ratio``); sample from the ``band`` with probability ``~
        exp(difficulty / temperature)``, blended the same way; or
        "importance": draw the whole target from the ``band`` with inclusion
        probabilities proportional to difficulty (shifted to start at 0)
        mixed with uniform (``uniform_mix``), exactly
        (:func:`hnm.selection.importance_sample`).
    noise_fraction : "auto" or float in [0, 1), default="auto"
        Noise guard: the suspected label errors of each under-sampled class
        are never kept, neither as hard, easy nor expansion examples, unless
        the class's target count needs more than the rest of the class (then
        only the hardest that the target allows are left out). "auto"
        estimates them: confident learning on the out-of-fold probabilities
        (:func:`hnm.noise.find_label_issues`) with ``difficulty="model"``;
        edited nearest neighbours (:func:`hnm.noise.find_label_issues_knn`,
        ``max(n_neighbors, 3)`` neighbours) on dense X otherwise; a warning
        and no guard where neither applies (a precomputed difficulty with
        sparse or non-numeric X). A float: the hardest ``floor(noise_fraction
        * n)`` of each under-sampled class, as before.
    uniform_mix : float in [0, 1], default=0.2
        For ``selection="importance"``: share of the uniform component.
    band : tuple of (int, int or None), default=(0, None)
        ``(start, stop)``: the window of difficulty ranks of each
        under-sampled class (hardest first, counted after the noise guard,
        ``stop=None`` to the end of the class) from which the hard examples
        are chosen: the first ones of the window with ``selection="hardest"``,
        drawn from it with ``"sample"``; with ``"importance"`` the whole
        target is drawn from it. ``band=(100, None)`` leaves the 100 hardest
        out of the hard part (they may still be drawn as easy ones). A
        ``stop`` beyond a class's size is cut there; a window with fewer
        examples than the class's budget needs raises ``ValueError``.
    temperature : float > 0, default=1.0
        For ``selection="sample"``.
    easy_ratio : float >= 0, default=9.0
        Random ("easy") examples per hard one within each class's budget:
        with 9.0 a tenth of the kept negatives are hard and the rest random
        (Meta's embedding-based retrieval, Huang et al. 2020, found easy:hard
        blends up to 100:1 best).
    expand_neighbors : int, default=0
        Follow every hard example with its nearest same-class neighbours
        ("find similar examples and emphasise them"), within the hard part of
        the budget: the class still ends at its ``sampling_strategy`` count.
    random_state : int, RandomState instance or None
    n_jobs : int, optional
        OpenMP threads of the distance searches, the noise guard's neighbour
        search and the difficulty scores; None: OpenMP's count.
    n_processes : int, optional
        Worker processes (joblib) of the out-of-fold scoring's
        ``cross_val_predict``, -1 for one per core; None: one process.

    Notes
    -----
    Sparse X is accepted with ``difficulty="model"`` (the default estimator
    does not centre, so it reads sparse rows as they are) and with a
    precomputed ``sample_difficulty``. The distance-based difficulties and
    ``expand_neighbors`` search exact distances on dense rows and refuse sparse
    X with a ``TypeError`` (their ``input_tags.sparse`` is False).

    The defaults (``noise_fraction="auto"``, ``easy_ratio=9.0``: the estimated
    label errors left out, then a tenth hardest and the rest random) are what
    the quality benchmark ``benchmarks/bench_resampling.py`` supports: against
    random under-sampling, paired over 4 seeds on its six datasets, the
    estimated guard gained +0.011 to +0.025 AP with LogisticRegression on five
    (-0.001 +/- 0.002 on the hard tail with 3% flipped labels) and +0.003 to
    +0.009 with HistGradientBoosting on all six, where the former fixed 1%
    guard ranged from -0.016 to +0.003. The figures of that former default
    follow. Held-out average
    precision at the budget of random under-sampling, LogisticRegression /
    HistGradientBoosting, difference to random paired over 4 seeds, on six
    datasets (no hard tail, 5% or 1% of the negatives next to the positives;
    clean or 3% flipped labels): the defaults gained +0.005 to +0.023 for the
    linear model on all six (significantly on four) and stayed within seed
    noise for boosting on all six (-0.016 +/- 0.013 to +0.003). Without the
    guard the linear model lost 0.011 on the hard tail with flipped labels; a
    5% guard cost boosting about 0.01 on five of six (it leaves the negatives
    nearest the positives out entirely). Hardest-only selection collapses (AP
    0.04-0.18 vs 0.41-0.91 random). Measure on your data.

    Attributes
    ----------
    sampling_strategy_ : dict
        Number of samples kept per under-sampled class (from the base class).
    sample_indices_ : ndarray of shape (n_new_samples,)
        Indices of the kept samples in ``X``.
    difficulty_ : ndarray of shape (n_new_samples,)
        Difficulty of each kept sample (NaN for classes kept whole).
    reason_ : ndarray of str, shape (n_new_samples,)
        Why each sample was kept: "kept class", "hard", "easy" or "expansion".
    sample_difficulty_ : ndarray of shape (n_samples,)
        Difficulty of every sample of the under-sampled classes (NaN elsewhere).
    noise_indices_ : ndarray of shape (n_guarded,)
        Indices in ``X`` of the samples the noise guard left out (suspected
        label noise, worth a look), hardest first within each class.
    sample_weight_ : ndarray of shape (n_new_samples,)
        Weight of each kept sample: 1 / its probability of being kept, so a
        model fit with them targets the loss over the whole class (less the
        guarded samples). 1 for the classes kept whole and for the hard and
        expansion samples (kept for sure); ``(n_class - n_hard - n_guarded) /
        n_easy`` for the easy ones (a uniform draw); exact ``1 / pi`` with
        ``selection="importance"``; with ``selection="sample"`` the hard
        ones' weights use the Poisson approximation of successive sampling.
        Fit with them through :class:`ResampledClassifier` (an imbalanced-learn
        Pipeline drops them), or ``est.fit(X_res, y_res,
        sample_weight=sampler.sample_weight_)``.

    Examples
    --------
    >>> from collections import Counter
    >>> from sklearn.datasets import make_classification
    >>> from hnm import HardNegativeResampler
    >>> X, y = make_classification(2000, weights=[0.9], random_state=0)
    >>> X_res, y_res = HardNegativeResampler(random_state=0).fit_resample(X, y)
    >>> sorted(Counter(y_res).items())
    [(np.int64(0), 208), (np.int64(1), 208)]
    >>> sampler = HardNegativeResampler(difficulty="nearmiss")
    >>> _ = sampler.fit_resample(X, y)
    >>> sorted((str(k), v) for k, v in Counter(sampler.reason_).items())
    [('easy', 187), ('hard', 21), ('kept class', 208)]

    See Also
    --------
    ResampledClassifier : Fits a classifier with ``sample_weight_``.
    hnm.noise.find_label_issues : The default noise guard.
    hnm.HardMiningClassifier : Iterative mining with a held-out check.
    """

    _parameter_constraints = {
        **BaseUnderSampler._parameter_constraints,
        "difficulty": [StrOptions({"model", "nearmiss", "distance"})],
        "estimator": [HasMethods(["fit", "predict_proba"]), None],
        "cv": ["cv_object"],
        "measure": [StrOptions(set(MEASURES))],
        "n_neighbors": [Interval(Integral, 1, None, closed="left")],
        "selection": [StrOptions({"hardest", "sample", "importance"})],
        "noise_fraction": [StrOptions({"auto"}), Interval(Real, 0, 1, closed="left")],
        "uniform_mix": [Interval(Real, 0, 1, closed="both")],
        "band": [tuple],
        "temperature": [Interval(Real, 0, None, closed="neither")],
        "easy_ratio": [Interval(Real, 0, None, closed="left")],
        "expand_neighbors": [Interval(Integral, 0, None, closed="left")],
        "random_state": ["random_state"],
        "n_jobs": [Interval(Integral, 1, None, closed="left"), None],
        "n_processes": [Interval(Integral, 1, None, closed="left"), Options(Integral, {-1}),
                        None],
    }

    def __init__(self, *, sampling_strategy="auto", difficulty="model", estimator=None, cv=5,
                 measure="margin", n_neighbors=3, selection="hardest", noise_fraction="auto",
                 uniform_mix=0.2, band=(0, None), temperature=1.0, easy_ratio=9.0,
                 expand_neighbors=0, random_state=None, n_jobs=None, n_processes=None):
        super().__init__(sampling_strategy=sampling_strategy)
        self.difficulty = difficulty
        self.estimator = estimator
        self.cv = cv
        self.measure = measure
        self.n_neighbors = n_neighbors
        self.selection = selection
        self.noise_fraction = noise_fraction
        self.uniform_mix = uniform_mix
        self.band = band
        self.temperature = temperature
        self.easy_ratio = easy_ratio
        self.expand_neighbors = expand_neighbors
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.n_processes = n_processes

    def fit_resample(self, X, y, *, sample_difficulty=None):
        """Resample the dataset.

        Parameters
        ----------
        X : {array-like, dataframe, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        sample_difficulty : array-like of shape (n_samples,), optional
            Precomputed difficulty (higher is harder, finite), used instead of
            ``difficulty``, e.g. the losses of a production model. Inside an
            imbalanced-learn Pipeline it arrives only through metadata routing
            (``sklearn.set_config(enable_metadata_routing=True)`` and
            ``set_fit_resample_request(sample_difficulty=True)``); without it
            the Pipeline drops fit_resample parameters.

        Returns
        -------
        X_resampled, y_resampled
            In the types of ``X`` and ``y`` (pandas in, pandas out).
        """
        self._validate_params()
        check_band(self.band)  # before any scoring; each class's size is checked later
        return super().fit_resample(X, y, sample_difficulty=sample_difficulty)

    def _fit_resample(self, X, y, sample_difficulty=None):
        rng = check_random_state(self.random_state)
        classes, counts = np.unique(y, return_counts=True)
        targets = self.sampling_strategy_
        d_all, proba = self._sample_difficulty(X, y, classes, counts, sample_difficulty)
        suspect = self._suspects(X, y, classes, d_all, proba)
        parts, diffs, reasons, guarded, weights = [], [], [], [], []
        for c in classes:
            members = np.flatnonzero(y == c)
            if c not in targets:
                parts.append(members)
                diffs.append(np.full(members.size, np.nan))
                reasons.append(np.full(members.size, "kept class"))
                weights.append(np.ones(members.size))
                continue
            keep, why, noise, w = self._select(X, c, members, d_all[members],
                                               min(targets[c], members.size), rng,
                                               None if suspect is None else suspect[members])
            parts.append(members[keep])
            guarded.append(members[noise])
            diffs.append(d_all[members[keep]])
            reasons.append(why)
            weights.append(w)
        self.sample_indices_ = np.concatenate(parts)
        self.difficulty_ = np.concatenate(diffs)
        self.reason_ = np.concatenate(reasons)
        self.sample_weight_ = np.concatenate(weights)
        self.sample_difficulty_ = d_all
        self.noise_indices_ = (np.concatenate(guarded) if guarded
                               else np.empty(0, dtype=np.intp))
        return (_safe_indexing(X, self.sample_indices_),
                _safe_indexing(y, self.sample_indices_))

    # ------------------------------------------------------------ difficulty
    def _sample_difficulty(self, X, y, classes, counts, given):
        """Difficulty of every sample of the under-sampled classes (NaN elsewhere) and
        the out-of-fold probabilities when a model gave them (else None)."""
        n = y.shape[0]
        under = np.isin(y, list(self.sampling_strategy_))
        if given is not None:
            d = check_finite_1d(given, "sample_difficulty")
            if d.shape != (n,):
                raise ValueError(f"sample_difficulty must have shape ({n},), got {d.shape}.")
            return np.where(under, d, np.nan), None
        if self.difficulty == "model":
            d, proba = self._model_difficulty(X, y, classes)
            return np.where(under, d, np.nan), proba
        X = np.asarray(X)
        d = np.full(n, np.nan)
        for c in self.sampling_strategy_:
            members = np.flatnonzero(y == c)
            if self.difficulty == "nearmiss":
                # NearMiss-1: distances to the minority class (ties: first minority)
                minority = classes[np.argmin(counts)]
                if c == minority:
                    # each sample is its own nearest neighbour, at distance exactly 0
                    d[members] = -self._sum_distances(X[members], X[members],
                                                      self.n_neighbors - 1, True)
                    continue
                others = X[y == minority]
            else:
                others = X[y != c]
            # rank by the sum of Euclidean distances, as NearMiss (mean: same order)
            d[members] = -self._sum_distances(X[members], others, self.n_neighbors, False)
        return d, None

    def _suspects(self, X, y, classes, d_all, proba):
        """The noise guard's estimate (``noise_fraction="auto"``): a mask of the
        suspected label errors, or None for a fixed fraction."""
        if self.noise_fraction != "auto":
            return None
        if proba is not None:
            issues = find_label_issues(y, proba, labels=classes)
        elif not sparse.issparse(X) and _numeric_2d(X):
            Xa = np.asarray(X, dtype=np.float64)
            if not np.isfinite(Xa).all():
                warnings.warn("noise_fraction='auto' found NaN or infinity in X, which the "
                              "neighbour search cannot read: no noise guard.", UserWarning)
                return np.zeros(y.shape[0], dtype=bool)
            k = min(max(self.n_neighbors, 3), y.shape[0] - 1)
            issues = find_label_issues_knn(Xa, y, n_neighbors=k, n_jobs=self.n_jobs)
        else:
            warnings.warn("noise_fraction='auto' needs out-of-fold probabilities "
                          "(difficulty='model') or dense numeric X for the neighbour "
                          "estimate: no noise guard; pass a float noise_fraction.",
                          UserWarning)
            return np.zeros(y.shape[0], dtype=bool)
        mask = np.zeros(y.shape[0], dtype=bool)
        mask[issues.indices] = True
        return mask

    def _sum_distances(self, queries, candidates, k, exclude_self):
        """Sum of the Euclidean distances to the k nearest candidates (exact)."""
        k = min(k, candidates.shape[0] - int(exclude_self))
        if k < 1:
            return np.zeros(queries.shape[0])
        dist, _ = nearest_l2_float64(queries, candidates, k, exclude_self=exclude_self,
                                     n_jobs=self.n_jobs)
        return dist.sum(axis=1)

    def _model_difficulty(self, X, y, classes):
        # no centring: the same model for dense and sparse X (an unpenalised
        # intercept absorbs the mean)
        estimator = (make_pipeline(StandardScaler(with_mean=False),
                                   LogisticRegression(max_iter=1000))
                     if self.estimator is None else clone(self.estimator))
        cv = check_cv(self.cv, y, classifier=True)
        labels, counts = np.unique(y, return_counts=True)
        if counts.min() < 2:  # the fold holding it would train without its class
            raise ValueError(
                f"class {labels[counts.argmin()].item()!r} has a single sample: difficulty="
                f"'model' scores every sample out of fold (cv), which needs at least 2 "
                "per class; pass sample_difficulty to fit_resample, or "
                "difficulty='nearmiss'.")
        proba = cross_val_predict(estimator, X, y, cv=cv, method="predict_proba",
                                  n_jobs=self.n_processes)
        d = _difficulty(y, proba, measure=self.measure, labels=classes,
                        n_jobs=self.n_jobs).astype(np.float64)
        return d, np.asarray(proba, dtype=np.float64)

    # ------------------------------------------------------------- selection
    def _select(self, X, label, members, d, n_keep, rng, suspect=None):
        """Positions (within the class) to keep, why, the noise-guarded ones, and the
        inverse-probability weight of each kept one."""
        n = d.size
        noise = self._guarded(d, n_keep, suspect)
        pool = np.delete(np.arange(n), noise)  # positions outside the guard, sorted
        if n_keep == 0:
            return pool[:0], np.empty(0, dtype="<U10"), noise, np.empty(0)
        if self.selection == "importance":
            window = self._window(label, d, pool, n_keep)
            boost = np.maximum(d[window] - d[window].min(), 0.0)
            idx, w = importance_sample(boost, n_keep, uniform_mix=self.uniform_mix,
                                       random_state=rng)
            return window[idx], np.full(idx.size, "drawn"), noise, w
        n_hard = max(1, round(n_keep / (1.0 + self.easy_ratio)))
        window = self._window(label, d, pool, n_hard)
        if self.selection == "hardest":
            hard = window  # the first n_hard of the band, hardest first
            w_hard = np.ones(hard.size)
        else:
            hard = window[sample_by_difficulty(d[window], n_hard, temperature=self.temperature,
                                               random_state=rng, n_jobs=self.n_jobs)]
            # successive sampling has no closed-form inclusion probabilities: the
            # Poisson approximation min(1, c * exp(d / T)) with sum = n_hard
            z = d[window] / self.temperature
            pi = inclusion_probabilities(np.exp(z - z.max()), n_hard, uniform_mix=0.0)
            w_hard = 1.0 / np.maximum(pi[np.searchsorted(window, hard)], 1e-300)
        why = np.full(hard.size, "hard")
        if self.expand_neighbors:
            hard, why = self._expand(X, members, pool, hard)
            w_hard = np.ones(hard.size)
        n_easy = n_keep - hard.size
        if n_easy <= 0:
            return hard, why, noise, w_hard
        # the guarded examples go in as already taken, so no easy draw is one of them
        taken = np.concatenate([hard, noise])
        easy = blend_easy(taken, n, n_easy, random_state=rng).indices[taken.size:]
        # the easy ones are a uniform draw from what the hard ones and the guard left
        w_easy = np.full(easy.size, (n - taken.size) / easy.size)
        return (np.concatenate([hard, easy]), np.concatenate([why, np.full(easy.size, "easy")]),
                noise, np.concatenate([w_hard, w_easy]))

    def _guarded(self, d, n_keep, suspect):
        """The noise guard's positions, hardest first (ties by the smaller position):
        the suspected label errors (or the hardest ``noise_fraction``), never kept,
        as hard, easy or expansion, unless the class's target count needs them
        (then the least suspect of them are kept)."""
        n = d.size
        if suspect is None:
            candidates = np.arange(n)
            n_guard = min(n_noise(self.noise_fraction, n), n - n_keep)
        else:
            candidates = np.flatnonzero(suspect)
            n_guard = min(candidates.size, n - n_keep)
        if n_guard == 0:
            return np.empty(0, dtype=np.intp)
        return candidates[topk(d[candidates], n_guard).indices]

    def _window(self, label, d, pool, need):
        """The pool's positions in the ``band`` of difficulty ranks (ValueError naming
        ``band`` if it holds fewer than ``need``): with ``selection="hardest"`` its
        first ``need``, hardest first; otherwise all of them, sorted, to draw from."""
        start, stop = check_band(self.band, pool.size, at_most=True)
        if stop - start < need:
            first, last = self.band
            raise ValueError(
                f"band=({first}, {last}) holds {stop - start} of the {pool.size} examples of "
                f"class {np.asarray(label).item()!r} left after the noise guard, but its budget needs {need}; "
                "widen the band or lower sampling_strategy.")
        if self.selection == "hardest":
            return pool[select_hardest(d[pool], band=(start, start + need),
                                       n_jobs=self.n_jobs)]
        if start == 0 and stop == pool.size:
            return pool  # the whole pool: nothing to rank
        return np.sort(pool[select_hardest(d[pool], band=(start, stop), n_jobs=self.n_jobs)])

    def _expand(self, X, members, pool, hard):
        """Each hard example followed by its nearest same-class neighbours outside
        the noise guard, first occurrences only, cut to the hard budget: similar
        examples are emphasised within the budget, so the class still ends at its
        target count."""
        k = min(self.expand_neighbors, pool.size - 1)
        if k < 1:
            return hard, np.full(hard.size, "hard")
        Xp = np.asarray(_safe_indexing(X, members[pool]))
        at = np.searchsorted(pool, hard)  # the hard examples' rows in Xp
        # each hard example's k nearest others (itself excluded: one id per query)
        near = search_hard_pairs(Xp[at], Xp, k, metric="l2", exclude=at,
                                 n_jobs=self.n_jobs).indices
        seq = np.column_stack([at, near]).ravel()
        seq = seq[seq >= 0]
        _, first = np.unique(seq, return_index=True)
        seq = pool[seq[np.sort(first)][: hard.size]]
        return seq, np.where(np.isin(seq, hard), "hard", "expansion")

    def _dense_only(self):
        """What in the configuration needs dense X (exact distance searches), or ''."""
        if self.difficulty != "model":
            return f"difficulty={self.difficulty!r}"
        return "expand_neighbors" if self.expand_neighbors else ""

    def _check_X_y(self, X, y, accept_sparse=None):
        # refuse sparse X at validation, before any scoring, where the configuration
        # searches distances: densifying sparse rows would not be bounded in memory
        needs = self._dense_only()
        if needs:
            if sparse.issparse(X):
                raise TypeError(f"{needs} needs dense X, got a sparse matrix; use "
                                "difficulty='model' (without expand_neighbors) for sparse data.")
            accept_sparse = False
            return super()._check_X_y(X, y, accept_sparse=accept_sparse)
        # difficulty="model": the estimator decides about X. A DataFrame reaches it
        # with its column names (a ColumnTransformer selects by name), and NaN is
        # its business (HistGradientBoosting reads it).
        y, binarize_y = check_target_type(y, indicate_one_vs_all=True)
        if hasattr(X, "iloc"):
            validate_data(self, X, skip_check_array=True)
            y = np.asarray(y)
            if y.shape[0] != X.shape[0]:
                raise ValueError(f"X has {X.shape[0]} rows but y has {y.shape[0]}.")
            return X, y, binarize_y
        X, y = validate_data(self, X=X, y=y, reset=True, accept_sparse=["csr", "csc"],
                             ensure_all_finite=not self._estimator_allows_nan())
        return X, y, binarize_y

    def _estimator_allows_nan(self):
        if self.estimator is None:  # StandardScaler + LogisticRegression
            return False
        return get_tags(self.estimator).input_tags.allow_nan

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = not self._dense_only()
        tags.input_tags.allow_nan = not self._dense_only() and self._estimator_allows_nan()
        tags.sampler_tags.sample_indices = True
        return tags


def _numeric_2d(X):
    """Whether X reads as a dense 2-D real array (the neighbour search needs one)."""
    try:
        arr = np.asarray(X)
    except (TypeError, ValueError):
        return False
    return arr.ndim == 2 and arr.dtype.kind in "biuf"


class ResampledClassifier(MetaEstimatorMixin, ClassifierMixin, BaseEstimator):
    """Resample, then fit the classifier with the resampler's weights.

    An imbalanced-learn Pipeline hands a sampler's output rows to the next step
    but not their weights; this meta-estimator does both: ``fit`` calls
    ``sampler.fit_resample(X, y)`` and fits ``estimator`` on the kept rows with
    ``sample_weight=sampler.sample_weight_`` (each kept negative weighted by 1 /
    its probability of being kept, so the model targets the loss over all the
    negatives the noise guard let through). A Pipeline estimator receives them
    in its last step. It is an ordinary scikit-learn classifier: it goes in a
    scikit-learn ``Pipeline``, ``GridSearchCV`` or ``cross_val_score``, and
    predictions use all rows (no resampling at predict time).

    Parameters
    ----------
    sampler : HardNegativeResampler or sampler with ``sample_weight_``, default=None
        None means ``HardNegativeResampler()``. A sampler without
        ``sample_weight_`` (e.g. ``RandomUnderSampler``) is used unweighted.
    estimator : classifier, default=None
        None means ``LogisticRegression(max_iter=1000)``.
    use_weights : bool, default=True
        False fits without the weights (what an imbalanced-learn Pipeline does).

    Attributes
    ----------
    sampler_ : fitted sampler
    estimator_ : fitted classifier
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int

    See Also
    --------
    HardNegativeResampler : The sampler and its ``sample_weight_``.
    hnm.HardMiningClassifier : Iterative mining with weights and a held-out check.

    Examples
    --------
    >>> from sklearn.datasets import make_classification
    >>> from sklearn.ensemble import HistGradientBoostingClassifier
    >>> from hnm import HardNegativeResampler
    >>> from hnm.resampling import ResampledClassifier
    >>> X, y = make_classification(3000, weights=[0.95], random_state=0)
    >>> clf = ResampledClassifier(HardNegativeResampler(sampling_strategy=0.2, random_state=0),
    ...                           HistGradientBoostingClassifier()).fit(X, y)
    >>> int((clf.sampler_.sample_weight_ > 1).sum()) > 0, clf.predict(X[:2]).shape
    (True, (2,))
    """

    _parameter_constraints = {
        "sampler": [HasMethods(["fit_resample"]), None],
        "estimator": [HasMethods(["fit"]), None],
        "use_weights": ["boolean"],
    }

    def __init__(self, sampler=None, estimator=None, *, use_weights=True):
        self.sampler = sampler
        self.estimator = estimator
        self.use_weights = use_weights

    def fit(self, X, y):
        """Resample ``X, y`` and fit the estimator on the kept rows with their weights.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        self
        """
        self._validate_params()
        if hasattr(X, "iloc"):
            validate_data(self, X, skip_check_array=True)
        else:
            X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"],
                                 ensure_all_finite=False, dtype=None, reset=True)
        self.sampler_ = clone(self.sampler if self.sampler is not None
                              else HardNegativeResampler())
        self.estimator_ = clone(self.estimator if self.estimator is not None
                                else LogisticRegression(max_iter=1000))
        X_res, y_res = self.sampler_.fit_resample(X, y)
        params = {}
        w = getattr(self.sampler_, "sample_weight_", None)
        key = sample_weight_key(self.estimator_)
        if self.use_weights and w is not None:
            if key is None:
                raise ValueError(f"{type(self.estimator_).__name__} does not accept "
                                 "sample_weight: pass use_weights=False.")
            params[key] = w
        self.estimator_.fit(X_res, y_res, **params)
        self.classes_ = self.estimator_.classes_
        return self

    @available_if(lambda self: hasattr(self._est(), "predict"))
    def predict(self, X):
        """Predict with the fitted estimator."""
        check_is_fitted(self)
        return self.estimator_.predict(X)

    @available_if(lambda self: hasattr(self._est(), "predict_proba"))
    def predict_proba(self, X):
        """Class probabilities of the fitted estimator."""
        check_is_fitted(self)
        return self.estimator_.predict_proba(X)

    @available_if(lambda self: hasattr(self._est(), "decision_function"))
    def decision_function(self, X):
        """Decision function of the fitted estimator."""
        check_is_fitted(self)
        return self.estimator_.decision_function(X)

    def _est(self):
        if hasattr(self, "estimator_"):
            return self.estimator_
        return self.estimator if self.estimator is not None else LogisticRegression()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        sampler = self.sampler if self.sampler is not None else HardNegativeResampler()
        sampler_tags = get_tags(sampler)
        tags.input_tags.sparse = sampler_tags.input_tags.sparse
        tags.input_tags.allow_nan = sampler_tags.input_tags.allow_nan and get_tags(
            self._est()).input_tags.allow_nan
        return tags
