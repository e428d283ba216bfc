"""Iterative hard negative mining as a scikit-learn meta-estimator."""
import math
from numbers import Integral, Real

import numpy as np
from sklearn.base import (
    BaseEstimator,
    ClassifierMixin,
    MetaEstimatorMixin,
    _fit_context,
    clone,
)
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import get_scorer
from sklearn.model_selection import train_test_split
from sklearn.utils import _safe_indexing, check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import (
    _check_sample_weight,
    check_is_fitted,
    has_fit_parameter,
    validate_data,
)

from .scoring import difficulty
from .selection import (
    blend_easy,
    curriculum_window,
    difficulty_weights,
    sample_by_difficulty,
    select_hardest,
    select_semi_hard,
)

__all__ = ["HardMiningClassifier"]

# Rows scored per predict_proba call while scanning the negative pool: bounds the
# memory of the scores to one chunk whatever the size of X (which may be a memmap).
DEFAULT_CHUNK_SIZE = 65_536


def _estimator_has(attr):
    def check(self):
        if hasattr(self, "estimator_"):
            return hasattr(self.estimator_, attr)
        return hasattr(self.estimator if self.estimator is not None else LogisticRegression(),
                       attr)
    return check


class HardMiningClassifier(MetaEstimatorMixin, ClassifierMixin, BaseEstimator):
    """Train a classifier with iterative hard negative mining (bootstrapping).

    Offline hard negative mining, as classic detectors do it (Dalal & Triggs,
    2005; DPM's hard-negative cache, Felzenszwalb et al., 2010) and as retrieval
    systems re-mine with each new model (Huang et al., 2020):

    1. round 0: train on every positive (the classes that are not mined) and a
       random subset of the negatives (the mined classes);
    2. each round: score the whole negative pool with the current model, in
       chunks; select new negatives with hnm's selection strategies; add them
       to a bounded cache, evicting the cached negatives that became easiest;
       retrain;
    3. stop after ``n_rounds`` or when a round finds no new negatives.

    Alternatively (``weighting``), every example is kept and hard negatives are
    up-weighted through ``sample_weight`` each round. ``history_`` records every
    round, with a held-out score when ``validation_fraction`` or
    ``validation_data`` is given, so you can see whether mining helps.

    Parameters
    ----------
    estimator : classifier, default=None
        Any scikit-learn classifier (or Pipeline) with ``predict_proba`` or
        ``decision_function``; None means ``LogisticRegression(max_iter=1000)``.
    n_rounds : int, default=3
        Mining rounds after round 0 (0 trains on random negatives only: the
        baseline at the same budget).
    negative_classes : "majority" or array-like, default="majority"
        The classes whose examples are mined. The others are always kept.
    max_negatives : "balanced", int or float, default="balanced"
        Size of the negative cache: "balanced" as many as there are positives,
        an int, or a float in (0, 1] as a fraction of the negatives. Capped at
        the number of negatives.
    initial_fraction : float in (0, 1], default=0.5
        Fraction of the cache filled with random negatives in round 0. Each
        mining round adds ``ceil((1 - initial_fraction) * max_negatives /
        n_rounds)`` new negatives (at least one).
    selection : {"hardest", "sample", "semi_hard"}, default="hardest"
        How new negatives are chosen from those not cached: the hardest (after
        ``noise_fraction`` and ``skip``); sampled with probability
        ``~ exp(difficulty / temperature)``; or the hardest semi-hard ones,
        correctly classified with a margin in ``(0, semi_hard_margin]``
        (requires ``measure="margin"``).
    measure : str, default="margin"
        Difficulty measure, see :func:`hnm.difficulty`.
    noise_fraction : float in [0, 1), default=0.02
        Noise guard: ignore the hardest fraction of the candidates each round
        (often mislabeled positives). The default is what our quality
        benchmark (``benchmarks/bench_mining_quality.py``) supports: with 3%
        flipped labels plain hardest-first mining lost to random negatives
        (average precision 0.468 vs 0.475) while the 2% guard tied them
        (0.475) and on clean data it gained most (0.696 vs 0.656 random, 0.679
        unguarded). Set 0 when labels are clean.
    skip : int, default=0
        Rank band: skip this many of the hardest candidates after the noise
        guard ("hardest"), like Meta EBR's ranks 101-500.
    temperature : float > 0, default=1.0
        For ``selection="sample"`` and ``weighting="softmax"``.
    semi_hard_margin : float > 0, default=0.5
        Upper margin bound for ``selection="semi_hard"``.
    easy_ratio : float >= 0, default=0.0
        Random easy negatives per hard one within each round's additions
        (Meta EBR found blending easy negatives essential); the round's budget
        is shared, so the totals stay comparable.
    hard_threshold : float, optional
        If given, only candidates with difficulty >= this count as hard: a
        round that finds none stops the loop, and cached negatives below it are
        evicted (DPM evicts easy examples, margin > 1).
    schedule : {"hard", "curriculum"}, default="hard"
        "curriculum" restricts each round's hard candidates to the easiest
        quantile window of :func:`hnm.selection.curriculum_window` (easy to
        hard over rounds, self-paced learning).
    pacing : str or callable, default="linear"
        Pacing function of the curriculum.
    weighting : {None, "power", "softmax"}, default=None
        Instead of a cache, keep every example and each round set the
        negatives' weights with :func:`hnm.selection.difficulty_weights`
        (``"power"`` with ``measure="confidence"`` and ``gamma=2`` is the focal
        loss factor). The estimator must accept ``sample_weight``.
    gamma : float >= 0, default=2.0
        Exponent for ``weighting="power"``.
    validation_fraction : float in (0, 1), optional
        Hold out this stratified fraction of the data to score each round.
    scoring : str or callable, optional
        Scorer for the held-out score: default ``"average_precision"`` for
        binary problems, ``"balanced_accuracy"`` otherwise.
    chunk_size : int, optional
        Rows per ``predict_proba`` call when scoring the pool (default 65536).
    progress : bool, default=False
        Show a progress bar over rounds (tqdm).
    random_state : int, RandomState instance or None
        Seeds the initial subset, sampling, blending and the validation split.

    Attributes
    ----------
    estimator_ : classifier
        The model of the last round; predictions delegate to it.
    classes_ : ndarray of shape (n_classes,)
    negative_classes_ : ndarray
        The mined classes.
    negative_indices_ : ndarray of int
        Rows of ``X`` in the final negative cache (all negatives with
        ``weighting``).
    sample_weight_ : ndarray or None
        With ``weighting``: the final weights of every row of ``X`` used to train.
    history_ : list of dict
        One record per round: ``round``, ``n_negatives`` (cache size),
        ``n_misclassified`` (pool negatives the previous model got wrong),
        ``n_added``, ``n_evicted``, ``difficulty_mean`` / ``_median`` / ``_max``
        over the pool, and ``validation_score`` (or None).
    n_features_in_ : int

    Examples
    --------
    >>> from sklearn.datasets import make_classification
    >>> from sklearn.linear_model import LogisticRegression
    >>> from hnm import HardMiningClassifier
    >>> X, y = make_classification(2000, weights=[0.9], random_state=0)
    >>> clf = HardMiningClassifier(LogisticRegression(), n_rounds=2,
    ...                            random_state=0).fit(X, y)
    >>> [h["n_negatives"] for h in clf.history_]
    [104, 156, 208]
    >>> clf.predict(X[:3]).shape
    (3,)
    """

    _parameter_constraints = {
        "estimator": [HasMethods(["fit"]), None],
        "n_rounds": [Interval(Integral, 0, None, closed="left")],
        "negative_classes": [StrOptions({"majority"}), "array-like"],
        "max_negatives": [StrOptions({"balanced"}), Interval(Integral, 1, None, closed="left"),
                          Interval(Real, 0, 1, closed="right")],
        "initial_fraction": [Interval(Real, 0, 1, closed="right")],
        "selection": [StrOptions({"hardest", "sample", "semi_hard"})],
        "measure": [StrOptions({"margin", "log_loss", "hinge", "confidence", "entropy"})],
        "noise_fraction": [Interval(Real, 0, 1, closed="left")],
        "skip": [Interval(Integral, 0, None, closed="left")],
        "temperature": [Interval(Real, 0, None, closed="neither")],
        "semi_hard_margin": [Interval(Real, 0, None, closed="neither")],
        "easy_ratio": [Interval(Real, 0, None, closed="left")],
        "hard_threshold": [Real, None],
        "schedule": [StrOptions({"hard", "curriculum"})],
        "pacing": [StrOptions({"linear", "root", "geometric"}), callable],
        "weighting": [StrOptions({"power", "softmax"}), None],
        "gamma": [Interval(Real, 0, None, closed="left")],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither"), None],
        "scoring": [str, callable, None],
        "chunk_size": [Interval(Integral, 1, None, closed="left"), None],
        "progress": ["boolean"],
        "random_state": ["random_state"],
    }

    def __init__(self, estimator=None, *, n_rounds=3, negative_classes="majority",
                 max_negatives="balanced", initial_fraction=0.5, selection="hardest",
                 measure="margin", noise_fraction=0.02, skip=0, temperature=1.0,
                 semi_hard_margin=0.5, easy_ratio=0.0, hard_threshold=None,
                 schedule="hard", pacing="linear", weighting=None, gamma=2.0,
                 validation_fraction=None, scoring=None, chunk_size=None,
                 progress=False, random_state=None):
        self.estimator = estimator
        self.n_rounds = n_rounds
        self.negative_classes = negative_classes
        self.max_negatives = max_negatives
        self.initial_fraction = initial_fraction
        self.selection = selection
        self.measure = measure
        self.noise_fraction = noise_fraction
        self.skip = skip
        self.temperature = temperature
        self.semi_hard_margin = semi_hard_margin
        self.easy_ratio = easy_ratio
        self.hard_threshold = hard_threshold
        self.schedule = schedule
        self.pacing = pacing
        self.weighting = weighting
        self.gamma = gamma
        self.validation_fraction = validation_fraction
        self.scoring = scoring
        self.chunk_size = chunk_size
        self.progress = progress
        self.random_state = random_state

    # ------------------------------------------------------------------ fit
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, sample_weight=None, validation_data=None):
        """Fit by iterative hard negative mining.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            May be an ``np.memmap``: the pool is scored chunk by chunk.
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), optional
            Passed to the estimator's ``fit`` (multiplied by the mining weights
            with ``weighting``).
        validation_data : tuple (X_val, y_val), optional
            Held-out data scored after every round (instead of
            ``validation_fraction``).

        Returns
        -------
        self
        """
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], dtype=None,
                             ensure_all_finite=False)
        check_classification_targets(y)
        self.classes_, y_enc = np.unique(y, return_inverse=True)
        if self.classes_.size < 2:
            raise ValueError("y contains only one class; HardMiningClassifier needs at "
                             "least two (negatives to mine and positives to keep).")
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X)
        base = LogisticRegression(max_iter=1000) if self.estimator is None else self.estimator
        if not (hasattr(base, "predict_proba") or hasattr(base, "decision_function")):
            raise TypeError("estimator must have predict_proba or decision_function to "
                            "score the negatives.")
        needs_weights = sample_weight is not None or self.weighting is not None
        if needs_weights and not has_fit_parameter(base, "sample_weight"):
            raise ValueError(f"{type(base).__name__} does not accept sample_weight, which "
                             "sample_weight / weighting need.")
        if self.selection == "semi_hard" and self.measure != "margin":
            raise ValueError("selection='semi_hard' needs measure='margin'.")
        if self.weighting == "power" and self.measure == "margin":
            raise ValueError("weighting='power' needs non-negative difficulties: use "
                             "measure='confidence' (focal), 'log_loss' or 'hinge', or "
                             "weighting='softmax'.")
        rng = check_random_state(self.random_state)

        neg_codes = self._negative_codes(y_enc)
        is_neg = np.isin(y_enc, neg_codes)
        train = np.arange(X.shape[0])
        X_val = y_val = None
        if validation_data is not None:
            X_val, y_val = validation_data
        elif self.validation_fraction is not None:
            train, val = train_test_split(train, test_size=self.validation_fraction,
                                          stratify=y_enc, random_state=rng)
            train.sort()
            X_val, y_val = _safe_indexing(X, val), y[val]
        pos = train[~is_neg[train]]
        pool = train[is_neg[train]]
        if pos.size == 0 or pool.size == 0:
            raise ValueError("Every class is mined or none is: negative_classes must leave "
                             "at least one positive and one negative example to train on.")
        scorer = None
        if X_val is not None:
            default = "average_precision" if self.classes_.size == 2 else "balanced_accuracy"
            scorer = get_scorer(self.scoring or default)

        self.negative_classes_ = self.classes_[neg_codes]
        self.history_ = []
        run = self._fit_weighted if self.weighting is not None else self._fit_cache
        run(base, X, y, y_enc, pos, pool, sample_weight, rng, scorer, X_val, y_val)
        return self

    def _negative_codes(self, y_enc):
        if isinstance(self.negative_classes, str):  # "majority"
            return np.array([np.argmax(np.bincount(y_enc))])
        wanted = np.unique(np.asarray(self.negative_classes, dtype=self.classes_.dtype))
        unknown = wanted[~np.isin(wanted, self.classes_)]
        if unknown.size:
            raise ValueError(f"negative_classes {unknown.tolist()} are not classes of y "
                             f"{self.classes_.tolist()}.")
        return np.searchsorted(self.classes_, wanted)

    def _budget(self, n_pos, n_pool):
        m = self.max_negatives
        if isinstance(m, str):  # "balanced"
            return min(n_pool, n_pos)
        if isinstance(m, Integral):
            return min(n_pool, int(m))
        return max(1, math.ceil(m * n_pool))

    def _fit_cache(self, base, X, y, y_enc, pos, pool, sw, rng, scorer, X_val, y_val):
        budget = self._budget(pos.size, pool.size)
        n0 = max(1, round(self.initial_fraction * budget))
        per_round = max(1, math.ceil((budget - n0) / self.n_rounds)) if self.n_rounds else 0
        cached = np.zeros(pool.size, dtype=bool)  # over positions in pool
        cached[self._initial_subset(y_enc[pool], n0, rng)] = True
        est = self._fit_on(base, X, y, np.concatenate([pos, pool[cached]]), sw)
        self._record(0, int(cached.sum()), None, n0, 0, None, est, scorer, X_val, y_val)
        for r in self._rounds():
            d, n_wrong = self._score_pool(est, X, y_enc, pool)
            candidates = np.flatnonzero(~cached)
            if self.hard_threshold is not None:
                candidates = candidates[d[candidates] >= self.hard_threshold]
            new = self._select(d, candidates, min(per_round, budget), r, rng)
            evicted = 0
            if self.hard_threshold is not None:
                easy = cached & (d < self.hard_threshold)
                evicted = int(easy.sum())
                cached &= ~easy
            if new.size == 0:
                if evicted:
                    est = self._fit_on(base, X, y, np.concatenate([pos, pool[cached]]), sw)
                self._record(r, int(cached.sum()), n_wrong, 0, evicted, d, est, scorer,
                             X_val, y_val)
                break
            overflow = int(cached.sum()) + new.size - budget
            if overflow > 0:  # evict the cached negatives that became easiest
                old = np.flatnonzero(cached)
                drop = old[select_hardest(-d[old], overflow)]
                cached[drop] = False
                evicted += overflow
            cached[new] = True
            est = self._fit_on(base, X, y, np.concatenate([pos, pool[cached]]), sw)
            self._record(r, int(cached.sum()), n_wrong, new.size, evicted, d, est, scorer,
                         X_val, y_val)
        self.estimator_ = est
        self.negative_indices_ = pool[cached]
        self.sample_weight_ = None

    def _fit_weighted(self, base, X, y, y_enc, pos, pool, sw, rng, scorer, X_val, y_val):
        rows = np.concatenate([pos, pool])
        weights = np.ones(rows.size) if sw is None else sw[rows].astype(np.float64)
        est = self._fit_on(base, X, y, rows, weights, weighted=True)
        self._record(0, pool.size, None, pool.size, 0, None, est, scorer, X_val, y_val)
        for r in self._rounds():
            d, n_wrong = self._score_pool(est, X, y_enc, pool)
            w = difficulty_weights(d, method=self.weighting, gamma=self.gamma,
                                   temperature=self.temperature)
            weights[pos.size:] = w if sw is None else w * sw[pool]
            est = self._fit_on(base, X, y, rows, weights, weighted=True)
            self._record(r, pool.size, n_wrong, 0, 0, d, est, scorer, X_val, y_val)
        self.estimator_ = est
        self.negative_indices_ = pool
        self.sample_weight_ = np.zeros(X.shape[0])
        self.sample_weight_[rows] = weights

    def _rounds(self):
        rounds = range(1, self.n_rounds + 1)
        if self.progress:
            from tqdm.auto import tqdm
            return tqdm(rounds, desc="hard mining", unit="round")
        return rounds

    def _initial_subset(self, pool_codes, n0, rng):
        """Random positions in the pool, with at least one of every mined class."""
        order = rng.permutation(pool_codes.size)
        _, first = np.unique(pool_codes[order], return_index=True)
        must = order[first]
        rest = np.setdiff1d(order, must, assume_unique=True)
        rest = rest[rng.permutation(rest.size)][: max(0, n0 - must.size)]
        return np.concatenate([must, rest])

    def _select(self, d, candidates, n_new, round_index, rng):
        """Positions in the pool of this round's new negatives."""
        if candidates.size == 0 or n_new == 0:
            return candidates[:0]
        n_hard = min(candidates.size, max(1, round(n_new / (1.0 + self.easy_ratio))))
        dc = d[candidates]
        hard_pool = candidates
        if self.schedule == "curriculum":
            low, high = curriculum_window(round_index - 1, max(self.n_rounds, 1),
                                          pacing=self.pacing)
            # the hardest candidates allowed this round: below the window's top quantile
            allowed = dc <= np.quantile(dc, high)
            hard_pool, dc = candidates[allowed], dc[allowed]
        if self.selection == "hardest":
            picked = select_hardest(dc, fraction=1.0, min_keep=0, skip=self.skip,
                                    noise_fraction=self.noise_fraction)[:n_hard]
        elif self.selection == "sample":
            left = dc.size - int(self.noise_fraction * dc.size)
            picked = (sample_by_difficulty(dc, min(n_hard, left), temperature=self.temperature,
                                           noise_fraction=self.noise_fraction,
                                           random_state=rng) if left else dc[:0])
        else:  # semi_hard: margin = -difficulty
            picked = select_semi_hard(-dc, self.semi_hard_margin, k=n_hard)
        hard = hard_pool[picked]
        n_easy = min(n_new - n_hard, candidates.size - hard.size) if self.easy_ratio else 0
        if n_easy <= 0:
            return hard
        if hard.size == 0:
            return rng.choice(candidates, size=n_easy, replace=False)
        # candidates are sorted, so positions in it map back with searchsorted
        local = np.searchsorted(candidates, hard)
        blend = blend_easy(local, candidates.size, n_easy / hard.size, random_state=rng)
        return candidates[blend.indices]

    def _score_pool(self, est, X, y_enc, pool):
        """Difficulty of every pool negative under ``est``, one chunk at a time."""
        chunk = self.chunk_size or DEFAULT_CHUNK_SIZE
        d = np.empty(pool.size, dtype=np.float64)
        n_wrong = 0
        use_proba = hasattr(est, "predict_proba") or self.measure in (
            "log_loss", "confidence", "entropy")
        labels = np.arange(self.classes_.size)
        est_codes = np.searchsorted(self.classes_, est.classes_)
        for s in range(0, pool.size, chunk):
            rows = pool[s:s + chunk]
            Xc = _safe_indexing(X, rows)
            scores = est.predict_proba(Xc) if use_proba else est.decision_function(Xc)
            scores = np.asarray(scores)
            if scores.ndim == 2 and est.classes_.size != self.classes_.size:
                full = np.full((scores.shape[0], self.classes_.size),
                               0.0 if use_proba else -np.inf)
                full[:, est_codes] = scores
                scores = full
            d[s:s + chunk] = difficulty(y_enc[rows], scores, measure=self.measure,
                                        labels=labels)
            if scores.ndim == 2:
                predicted = scores.argmax(axis=1)
            else:
                predicted = (scores > 0).astype(np.intp)
            n_wrong += int((predicted != y_enc[rows]).sum())
        return d, n_wrong

    def _fit_on(self, base, X, y, rows, sw, weighted=False):
        rows = np.sort(rows) if not weighted else rows
        est = clone(base)
        fit_params = {}
        if weighted:
            fit_params["sample_weight"] = sw
        elif sw is not None:
            fit_params["sample_weight"] = sw[rows]
        return est.fit(_safe_indexing(X, rows), y[rows], **fit_params)

    def _record(self, r, n_neg, n_wrong, n_added, n_evicted, d, est, scorer, X_val, y_val):
        self.history_.append({
            "round": r,
            "n_negatives": n_neg,
            "n_misclassified": n_wrong,
            "n_added": n_added,
            "n_evicted": n_evicted,
            "difficulty_mean": None if d is None else float(d.mean()),
            "difficulty_median": None if d is None else float(np.median(d)),
            "difficulty_max": None if d is None else float(d.max()),
            "validation_score": None if scorer is None else float(scorer(est, X_val, y_val)),
        })

    # -------------------------------------------------------------- predict
    @available_if(_estimator_has("predict"))
    def predict(self, X):
        """Predict class labels with the final model."""
        check_is_fitted(self)
        return self.estimator_.predict(X)

    @available_if(_estimator_has("predict_proba"))
    def predict_proba(self, X):
        """Class probabilities of the final model."""
        check_is_fitted(self)
        return self.estimator_.predict_proba(X)

    @available_if(_estimator_has("predict_log_proba"))
    def predict_log_proba(self, X):
        """Class log-probabilities of the final model."""
        check_is_fitted(self)
        return self.estimator_.predict_log_proba(X)

    @available_if(_estimator_has("decision_function"))
    def decision_function(self, X):
        """Decision function of the final model."""
        check_is_fitted(self)
        return self.estimator_.decision_function(X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        base = LogisticRegression() if self.estimator is None else self.estimator
        base_tags = base.__sklearn_tags__()
        tags.input_tags.sparse = base_tags.input_tags.sparse
        tags.input_tags.allow_nan = base_tags.input_tags.allow_nan
        return tags
