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
from sklearn.metrics import average_precision_score, get_scorer, make_scorer
from sklearn.model_selection import train_test_split
from sklearn.utils import _safe_indexing, check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import (
    _check_sample_weight,
    check_is_fitted,
    validate_data,
)

from ._ranking import check_band, n_noise
from ._sampling import sample_weight_key
from .noise import find_label_issues
from .scoring import MEASURES, difficulty
from .selection import (
    blend_easy,
    curriculum_window,
    difficulty_weights,
    importance_sample,
    sample_by_difficulty,
    select_hardest,
    select_quantile_window,
    select_semi_hard,
)

__all__ = ["HardMiningClassifier"]

# Rows scored per predict_proba call while scanning the negative pool: bounds the
# memory of the scores to one batch whatever the size of X (which may be a memmap).
DEFAULT_BATCH_SIZE = 65_536


def _bootstrap_ap(y, scores, rng, n_boot):
    """Average precision of each score column under ``n_boot`` Poisson-bootstrap
    weightings of the rows (the same weights for every column): shape
    ``(n_boot, n_columns)``. Ties are broken by row order (an estimate of the
    spread, not the score)."""
    W = rng.poisson(1.0, size=(n_boot, y.size)).astype(np.float64)
    out = np.empty((n_boot, scores.shape[1]))
    for j in range(scores.shape[1]):
        order = np.argsort(-scores[:, j], kind="stable")
        yo, Wo = y[order], W[:, order]
        tp = np.cumsum(Wo * yo, axis=1)
        seen = np.cumsum(Wo, axis=1)
        prec = np.divide(tp, seen, out=np.zeros_like(tp), where=seen > 0)
        out[:, j] = np.divide((Wo * yo * prec).sum(axis=1), tp[:, -1],
                              out=np.zeros(n_boot), where=tp[:, -1] > 0)
    return out


def _estimator_has(attr):
    def check(self):
        if hasattr(self, "estimator_"):
            return hasattr(self.estimator_, attr)
        return hasattr(self.estimator if self.estimator is not None else LogisticRegression(),
                       attr)
    return check


class _PriorShifted(ClassifierMixin, BaseEstimator):
    """A fitted classifier trained at a drawn class balance, predicting at the full
    data's: its probabilities of class ``c`` are multiplied by ``factor[c]`` and
    renormalised (the prior-shift correction of Elkan, 2001, and Saerens et al.,
    2002; the recalibration of negative down-sampling in ads ranking, He et al.,
    2014). ``decision_function`` is the model's own (its ranking is unchanged)."""

    def __init__(self, estimator, factor):
        self.estimator = estimator
        self.factor = factor  # per class of estimator.classes_
        self.classes_ = estimator.classes_

    def predict_proba(self, X):
        P = np.asarray(self.estimator.predict_proba(X), dtype=np.float64) * self.factor
        return P / P.sum(axis=1, keepdims=True)

    def predict_log_proba(self, X):
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X):
        return self.estimator.classes_[np.argmax(self.predict_proba(X), axis=1)]

    @available_if(lambda self: hasattr(self.estimator, "decision_function"))
    def decision_function(self, X):
        return self.estimator.decision_function(X)


def _delegate(name, doc):
    """A method that calls the final model's ``name`` (present only if it has it)."""
    def method(self, X):
        check_is_fitted(self)
        return getattr(self._predictor_, name)(X)
    method.__name__ = method.__qualname__ = name
    method.__doc__ = doc
    return available_if(_estimator_has(name))(method)


class HardMiningClassifier(MetaEstimatorMixin, ClassifierMixin, BaseEstimator):
    """Train a classifier on a budget of negatives chosen by hard example mining.

    The positives (the classes that are not mined) are always kept; of the
    negatives (the mined classes) only a budget is trained on. By default
    (``selection="importance"``), every round:

    1. round 0: a uniform random draw of the budget, each drawn negative
       weighted by ``1 / its probability of being drawn`` (the down-sampling
       correction of ads ranking), so the model targets the full-data loss;
       with ``weight_exponent="auto"`` the same draw is also fit without the
       class-rate part of the weights (the draw's own class balance,
       predictions recalibrated to the full data's) and the better of the two
       on held-out data is kept for every round;
    2. each round after: the model of the previous round scores every
       negative, in batches; a fresh draw of the budget with inclusion
       probabilities proportional to a mix of difficulty and uniform
       (importance sampling, Katharopoulos & Fleuret, 2018) is weighted the
       same way (:func:`importance_sample`) and trained on; with held-out
       data, a uniform draw of the same size (systematic along the
       difficulty order, so stratified by it) is trained too and the better
       of the two on held-out data is the round's (``history_[r]["draw"]``);
       the suspected label errors (:func:`hnm.noise.find_label_issues` on the
       previous model's probabilities) are estimated and exposed
       (``noise_indices_``);
    3. every round is scored on held-out data (a stratified
       ``validation_fraction`` of the data, or ``validation_data``); the best
       round is kept (round 0 included, ties to the earlier round: mining never
       replaces a better random draw) and, after a split, refit on the very
       negatives it was validated with and every positive (the held-out
       positives added; the drawn negatives, drawn from the training part at
       the budget's full size, are weighted to stand for all negatives, the
       held-out ones included). ``history_`` says which round was kept and
       why. The rounds stop after ``n_iter_no_change`` rounds that did not
       improve the held-out score.

    Other selections keep a bounded cache of negatives instead, as classic
    detectors do (Dalal & Triggs, 2005; DPM's hard-negative cache,
    Felzenszwalb et al., 2010): ``"hardest"``, ``"sample"`` or ``"semi_hard"``
    new negatives are added each round and the easiest cached ones evicted.
    ``weighting`` keeps every example and up-weights the hard negatives.

    Parameters
    ----------
    estimator : classifier, default=None
        Any scikit-learn classifier (or Pipeline) with ``predict_proba`` or
        ``decision_function``; None means ``LogisticRegression(max_iter=1000)``.
        Weights reach a Pipeline's last step as ``<step>__sample_weight``.
        **Without sample_weight support** the weights are applied by
        resampling instead (costing, Zadrozny et al., 2003): the training rows
        are redrawn with replacement in proportion to their weights, as many as
        there were; ``history_`` records ``"weights": "resampled"``.
    n_rounds : int, default=5
        Mining rounds after round 0 (0 trains on the random draw only: the
        weighted-random baseline at the same budget). Each round is one fit
        on the budget and one pass of predictions over the negatives. 5
        rather than 3: on the six synthetic datasets of
        ``benchmarks/bench_mining_quality.py`` (30,000 rows, 2% budget, 3
        seeds, LogisticRegression and LinearSVC) the worst mean was 98.1% of
        the full-data AP with 5 rounds and uniform_mix=0.2, 97.2-97.6% with
        3 or 5 rounds at uniform_mix=0.5; later rounds score the negatives
        with better models. A maximum: with held-out data the rounds stop
        after ``n_iter_no_change`` rounds without improvement (the kept
        round was 0-5 in that matrix, 3-6 rounds run). These figures predate
        the uniform competitor of each round and the refit on the validated
        negatives; with them (5 seeds, all three budgets) the kept round was
        again 0-5.
    negative_classes : "majority" or array-like, default="majority"
        The classes whose examples are mined. The others are always kept.
    max_negatives : "balanced", int or float, default="balanced"
        The budget of negatives: "balanced" as many as there are positives,
        an int, or a float in (0, 1] as a fraction of the negatives. Capped at
        the number of negatives. Counted over all of ``X``: with a validation
        split every round draws the whole budget from the training negatives
        (per mined class), and those very negatives are the final model's.
    initial_fraction : float in (0, 1], default=0.5
        Cache selections only: fraction of the cache filled with random
        negatives in round 0. Each mining round adds ``ceil((1 -
        initial_fraction) * max_negatives / n_rounds)`` (at least one).
    selection : {"importance", "hardest", "sample", "semi_hard"}, default="importance"
        "importance": the weighted draws above. Cache selections: the
        hardest of the ``band`` (after the noise guard); sampled with probability
        ``~ exp(difficulty / temperature)``; or the hardest semi-hard ones,
        correctly classified with a margin in ``(0, semi_hard_margin]``
        (requires ``measure="margin"``). "importance" is the default because
        it is the only one that keeps the full-data objective: hardest-first
        caches collapsed to 19-25% of the full-data AP with 2-3% flipped
        labels, and unweighted random negatives lose through the class-weight
        shift (``benchmarks/bench_mining_quality.py`` reports all three).
    measure : str, default="auto"
        Difficulty measure, see :func:`hnm.difficulty`. "auto": for
        ``selection="importance"``, ``"confidence"`` (``1 - p_true``, the norm
        of the log-loss gradient in the logit) with ``predict_proba`` and
        ``"hinge"`` (the hinge loss, whose gradient is non-zero exactly where
        it is) with ``decision_function`` only; ``"margin"`` for the cache
        selections. Importance sampling needs a non-negative measure. The
        probability measures (``"confidence"``, ``"log_loss"``, ``"entropy"``)
        of a model without ``predict_proba`` read its decision function
        Platt-scaled on the held-out rows (binary; without them, on the
        training positives and the pool's negatives) or soft-maxed (several
        classes), never the raw decision values.
    uniform_mix : float in [0, 1], default=0.2
        ``selection="importance"``: share of the uniform component of the
        draw; every weight is then at most ``1 / uniform_mix`` times the
        uniform one, which bounds the variance a poor model can add. 0.2 is
        what the benchmark above supports (0.5 spent too much of the budget
        on easy negatives, which carry little of the gradient). Below 1, with
        held-out data, every mining round also fits a uniform draw of the
        same size and keeps it instead when its held-out average precision
        is higher by more than the paired bootstrap standard error of the
        difference (with a ``scoring`` of your own: when higher). Why: a
        model trained on a few dozen negatives ranks the others poorly, and
        its difficulty-proportional draw, weighted, can be worse than a
        fresh random one; on digits 8-vs-rest (30 seeds of
        ``benchmarks/bench_mining_quality.py``) LinearSVC reached 57.0% of
        the full-data AP at a 2% budget without the uniform competitor
        (random negatives 61.3%) and 67.9% with it, LogisticRegression at
        0.5% 52.9% and 59.5% (random 38.5%). On its six 30,000-row sets (5
        seeds, 3 budgets, both linear models) the kept round was a
        difficulty draw 114 times, a uniform competitor 30 times and round 0
        36 times of 180.
    noise_fraction : "auto" or float in [0, 1), default="auto"
        The noise guard. "auto": estimated each round by confident learning
        (:func:`hnm.noise.find_label_issues`) on the previous model's
        probabilities of the held-out rows and the negatives (a
        ``decision_function``-only model is Platt-scaled on the held-out rows,
        or, without them, on the training positives and the negatives). A
        float: the hardest fraction of the candidates each round, as before. The cache selections never
        add the suspects. With ``"importance"`` they are only estimated and
        exposed: they are drawn like every other negative, as their
        inverse-probability weights already make them count as much as in
        the full data; taking their difficulty boost away lowered the
        benchmark's worst mean from 98.1% to 97.3% of the full-data AP (the
        estimate, from a model trained on a budget, also flags true hard
        negatives of a hard tail; measured before the uniform competitor of
        each round).
    band : (start, stop), default=(0, None)
        The window of difficulty ranks (hardest first, ranks counted after the
        noise guard; ``stop=None``: to the end) that each round's negatives
        are chosen from: ``"hardest"`` takes the first ones of the window,
        ``"sample"`` and ``"importance"`` draw from it (``"importance"``
        excludes nobody as noise, so its ranks count from the hardest
        negative; its round 0 is uniform over every negative, as no ranking
        exists yet; its weights are then relative to the window). Like the
        ranks 101-500 that did best in Meta's embedding-based retrieval
        (Huang et al., 2020): ``band=(100, 500)``. A window smaller than a
        round needs raises ``ValueError``. Not with ``"semi_hard"``, whose
        window is the margin.
    temperature : float > 0, default=1.0
        For ``selection="sample"`` and ``weighting="softmax"``.
    semi_hard_margin : float > 0, default=0.5
        Upper margin bound for ``selection="semi_hard"``.
    easy_ratio : float >= 0, default=0.0
        Cache selections: random easy negatives per hard one within each
        round's additions.
    hard_threshold : float, optional
        Cache selections: only candidates with difficulty >= this count as
        hard; a round that finds none stops the loop, and cached negatives
        below it are evicted (DPM evicts easy examples, margin > 1).
    schedule : {"hard", "curriculum"}, default="hard"
        Cache selections: "curriculum" restricts each round's hard candidates
        to the easiest quantile window of
        :func:`hnm.selection.curriculum_window` (self-paced learning).
    pacing : str or callable, default="linear"
        Pacing function of the curriculum.
    weighting : {None, "power", "softmax"}, default=None
        Instead of a budget, keep every example and each round set the
        negatives' weights with :func:`hnm.selection.difficulty_weights`
        (``"power"`` with ``measure="confidence"`` and ``gamma=2`` is the focal
        loss factor). The estimator must accept ``sample_weight``.
    gamma : float >= 0, default=2.0
        Exponent for ``weighting="power"``.
    weight_exponent : "auto" or float in [0, 1], default="auto"
        ``selection="importance"``: the exponent ``lam`` of the class-rate part
        of each drawn negative's weight, ``(1 / rate) ** lam`` times the
        within-class correction of the difficulty-proportional draw (which is
        always applied): 1 is the Horvitz-Thompson weight ``1 / pi`` (unbiased
        for the full-data loss), 0 trains at the draw's class balance, the
        flattening of importance weights of Shimodaira (2000). Below 1,
        ``predict_proba`` and ``predict`` are recalibrated to the full data's
        class balance (probabilities of the mined classes times ``(1 / rate)
        ** (1 - lam)``, renormalised: the prior-shift correction of Elkan,
        2001, and of negative down-sampling in ads ranking, He et al., 2014);
        ``decision_function`` and ``estimator_`` are the model's own. "auto":
        round 0 fits its draw with 1 and with 0, both scored on the held-out
        data as they predict, and the better (ties: 1) is used in every round
        (``weight_exponent_``, ``history_[0]["weight_exponent_scores"]``); 1
        without held-out data or without ``predict_proba`` (nothing to
        recalibrate). Why: the weights stand for negatives that were not
        drawn; on few drawn negatives (digits 8-vs-rest at 2%: 23 negatives
        for 64 features) or with trees, their variance cost more than the
        bias they remove: 1 alone reached 74.3% of the full-data AP with
        LogisticRegression, "auto" 81.2% (30 seeds of
        ``benchmarks/bench_mining_quality.py``, ``HNM_BENCH_SEEDS=30``); with
        HistGradientBoosting on its three 30,000-row sets with 2-5% flipped
        labels at budgets of 0.5% and 2% (2 seeds, measured before the
        uniform competitor of each round), 1 alone reached 27-91%, "auto"
        40-94%, against 31-92% for unweighted random negatives. Where the full correction
        is better (the linear models on those sets), it wins the held-out
        check and is kept.
    n_iter_no_change : int >= 1 or None, default=2
        ``selection="importance"`` with held-out data: stop after this many
        consecutive rounds that did not beat the best held-out score so far
        (None: run all ``n_rounds``). Each round costs a fit and a pass over
        the negatives, but the held-out score is noisy and later rounds were
        often the best: at a 2% budget on the seven 30,000-row and breast
        cancer sets of ``benchmarks/bench_mining_quality.py`` with
        LogisticRegression and LinearSVC (2 seeds), the worst mean was 97.1%
        of the full-data AP with 1, 97.9% with 2 and 97.0% with None, and 2
        took 0.6-0.7x the time of None (measured before the uniform
        competitor of each round; each mining round now fits twice).
    validation_fraction : float in (0, 1) or None, default=0.2
        Hold out this stratified fraction of the data to score every round
        and keep the best; None trains every round on all of ``X`` and keeps
        the last round (unless ``validation_data`` is given).
    refit : bool, default=True
        After a ``validation_fraction`` split, retrain the kept round with the
        held-out positives added, on the same negatives (the ones it was
        validated with), their weights now standing for every negative of
        their class, the held-out ones included. Drawing the held-out
        negatives afresh instead changed the 20-odd negatives of a 2% budget
        of digits enough to undo the held-out check (see ``uniform_mix``).
    scoring : str or callable, optional
        Scorer of the held-out check: default ``"average_precision"`` for
        binary problems, ``"balanced_accuracy"`` otherwise.
    batch_size : int, optional
        Rows per ``predict_proba`` / ``decision_function`` call when scoring
        the pool (default 65536).
    n_jobs : int, optional
        Threads of hnm's own kernels (:func:`hnm.difficulty`); None: OpenMP's
        count. The estimator's own threads are its business (e.g.
        ``HistGradientBoostingClassifier`` uses OpenMP's count).
    progress : bool, default=False
        Show a progress bar over rounds (tqdm).
    random_state : int, RandomState instance or None
        Seeds the draws, the split and the fallback resampling.

    Attributes
    ----------
    estimator_ : classifier
        The kept (and refit) model; predictions delegate to it.
    classes_ : ndarray of shape (n_classes,)
    negative_classes_ : ndarray
        The mined classes.
    negative_indices_ : ndarray of int
        Rows of ``X`` of the negatives ``estimator_`` was trained on (all
        negatives with ``weighting``).
    sample_weight_ : ndarray of shape (n_samples,) or None
        ``"importance"`` and ``weighting``: the weight of every row of ``X`` in
        the final fit (0 for rows not trained on); None for the cache.
    noise_indices_ : ndarray of int
        Rows of ``X`` the noise guard suspected in the last mining round, most
        suspect first (empty with ``n_rounds=0`` or ``noise_fraction=0``):
        worth a look, they are probably mislabeled.
    best_round_ : int
        The round ``estimator_`` comes from.
    weight_exponent_ : float
        ``"importance"``: the class-rate exponent the rounds used (see
        ``weight_exponent``); None for the other selections.
    history_ : list of dict
        One record per round: ``round``, ``n_negatives`` (trained on),
        ``n_misclassified`` (pool negatives the previous model got wrong),
        ``n_added``, ``n_evicted``, ``n_guarded``, ``difficulty_mean`` /
        ``_median`` / ``_max`` over the pool, ``validation_score`` (or None),
        ``weights`` ("importance", "resampled", "given" or None), ``kept``
        (True for the kept round) and, for the kept round, ``reason``.
        ``"importance"`` adds ``weight_exponent`` (round 0 with "auto" also
        ``weight_exponent_scores``), ``draw`` ("uniform" or "difficulty": the
        draw the round kept) and, for rounds that fit both, ``draw_scores``.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        With a pandas DataFrame, which is passed on to the estimator as is
        (column names reach a ColumnTransformer).

    See Also
    --------
    importance_sample : The weighted draw of each round.
    hnm.noise.find_label_issues : The default noise guard.
    hnm.HardNegativeResampler : One-shot selection for imbalanced-learn pipelines.

    Examples
    --------
    >>> from sklearn.datasets import make_classification
    >>> from sklearn.linear_model import LogisticRegression
    >>> from hnm import HardMiningClassifier
    >>> X, y = make_classification(4000, weights=[0.95], random_state=0)
    >>> clf = HardMiningClassifier(LogisticRegression(), max_negatives=0.05,
    ...                            random_state=0).fit(X, y)
    >>> [h["n_negatives"] for h in clf.history_]  # two rounds without improvement: stop
    [189, 189, 189, 189]
    >>> [h["draw"] for h in clf.history_]  # each mining round kept its difficulty draw
    ['uniform', 'difficulty', 'difficulty', 'difficulty']
    >>> clf.best_round_, clf.negative_indices_.size  # the refit keeps round 1's negatives
    (1, 189)
    >>> clf.weight_exponent_  # the full inverse-probability correction did better
    1.0
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
        "selection": [StrOptions({"importance", "hardest", "sample", "semi_hard"})],
        "measure": [StrOptions({"auto", *MEASURES})],
        "uniform_mix": [Interval(Real, 0, 1, closed="both")],
        "noise_fraction": [StrOptions({"auto"}), Interval(Real, 0, 1, closed="left")],
        "band": [tuple, list],
        "temperature": [Interval(Real, 0, None, closed="neither")],
        "semi_hard_margin": [Interval(Real, 0, None, closed="neither")],
        "easy_ratio": [Interval(Real, 0, None, closed="left")],
        "hard_threshold": [Interval(Real, None, None, closed="neither"), None],  # not NaN
        "schedule": [StrOptions({"hard", "curriculum"})],
        "pacing": [StrOptions({"linear", "root", "geometric"}), callable],
        "weighting": [StrOptions({"power", "softmax"}), None],
        "gamma": [Interval(Real, 0, None, closed="left")],
        "weight_exponent": [StrOptions({"auto"}), Interval(Real, 0, 1, closed="both")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left"), None],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither"), None],
        "refit": ["boolean"],
        "scoring": [str, callable, None],
        "batch_size": [Interval(Integral, 1, None, closed="left"), None],
        "n_jobs": [Interval(Integral, 1, None, closed="left"), None],
        "progress": ["boolean"],
        "random_state": ["random_state"],
    }

    def __init__(self, estimator=None, *, n_rounds=5, negative_classes="majority",
                 max_negatives="balanced", initial_fraction=0.5, selection="importance",
                 measure="auto", uniform_mix=0.2, noise_fraction="auto", band=(0, None),
                 temperature=1.0, semi_hard_margin=0.5, easy_ratio=0.0, hard_threshold=None,
                 schedule="hard", pacing="linear", weighting=None, gamma=2.0,
                 weight_exponent="auto", n_iter_no_change=2, validation_fraction=0.2,
                 refit=True, scoring=None, batch_size=None, n_jobs=None, progress=False,
                 random_state=None):
        self.estimator = estimator
        self.n_rounds = n_rounds
        self.negative_classes = negative_classes
        self.max_negatives = max_negatives
        self.initial_fraction = initial_fraction
        self.selection = selection
        self.measure = measure
        self.uniform_mix = uniform_mix
        self.noise_fraction = noise_fraction
        self.band = band
        self.temperature = temperature
        self.semi_hard_margin = semi_hard_margin
        self.easy_ratio = easy_ratio
        self.hard_threshold = hard_threshold
        self.schedule = schedule
        self.pacing = pacing
        self.weighting = weighting
        self.gamma = gamma
        self.weight_exponent = weight_exponent
        self.n_iter_no_change = n_iter_no_change
        self.validation_fraction = validation_fraction
        self.refit = refit
        self.scoring = scoring
        self.batch_size = batch_size
        self.n_jobs = n_jobs
        self.progress = progress
        self.random_state = random_state

    # ------------------------------------------------------------------ fit
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, sample_weight=None, validation_data=None):
        """Fit by hard negative mining.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
            May be an ``np.memmap``: the pool is scored batch by batch. A
            DataFrame is passed to the estimator as is.
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), optional
            Multiplied with the mining weights and passed to the estimator.
        validation_data : tuple (X_val, y_val), optional
            Held-out data scored after every round, instead of a
            ``validation_fraction`` split (then nothing is refit).

        Returns
        -------
        self
        """
        if hasattr(X, "iloc"):  # a DataFrame reaches the estimator with its columns
            validate_data(self, X, skip_check_array=True)
            y = np.asarray(y)
            if y.ndim != 1 or y.shape[0] != X.shape[0]:
                raise ValueError(f"y must have shape ({X.shape[0]},), got {y.shape}.")
        else:
            X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], dtype=None,
                                 ensure_all_finite=False)
        check_classification_targets(y)
        self.classes_, y_enc = np.unique(y, return_inverse=True)
        if self.classes_.size < 2:
            raise ValueError("y contains only one class; HardMiningClassifier needs at "
                             "least two (negatives to mine and positives to keep).")
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, np.empty((y.shape[0], 0)))
        base = LogisticRegression(max_iter=1000) if self.estimator is None else self.estimator
        if not (hasattr(base, "predict_proba") or hasattr(base, "decision_function")):
            raise TypeError("estimator must have predict_proba or decision_function to "
                            "score the negatives.")
        self._weight_key = sample_weight_key(base)
        if self.weighting is not None and self._weight_key is None:
            raise ValueError(f"{type(base).__name__} does not accept sample_weight, which "
                             "weighting needs.")
        if (sample_weight is not None and self._weight_key is None
                and self.selection != "importance"):
            raise ValueError(f"{type(base).__name__} does not accept sample_weight, which "
                             "sample_weight needs with the cache selections.")
        measure = self._measure(base)
        if self.selection == "semi_hard" and measure != "margin":
            raise ValueError("selection='semi_hard' needs measure='margin'.")
        if self.weighting == "power" and measure == "margin":
            raise ValueError("weighting='power' needs non-negative difficulties: use "
                             "measure='confidence' (focal), 'log_loss' or 'hinge', or "
                             "weighting='softmax'.")
        if (self.selection == "importance" and self.weighting is None
                and measure == "margin"):
            raise ValueError("selection='importance' needs a non-negative measure: "
                             "'confidence', 'log_loss', 'hinge' or 'entropy', not 'margin'.")
        self._measure_ = measure
        self._band_ = check_band(self.band)
        if self.selection == "semi_hard" and self._band_ != (0, None):
            raise ValueError(f"band={self.band!r} is not used by selection='semi_hard' (its "
                             "window is semi_hard_margin): leave band=(0, None).")
        rng = check_random_state(self.random_state)

        neg_codes = self._negative_codes(y_enc)
        is_neg = np.isin(y_enc, neg_codes)
        train = np.arange(y.shape[0])
        X_val = y_val = None
        val = np.empty(0, dtype=np.intp)
        if validation_data is not None:
            X_val, y_val = validation_data
        elif self.validation_fraction is not None:
            counts = np.bincount(y_enc)
            if counts.min() * self.validation_fraction >= 1 and \
                    counts.min() * (1 - self.validation_fraction) >= 1:
                train, val = train_test_split(train, test_size=self.validation_fraction,
                                              stratify=y_enc, random_state=rng)
                train.sort()
                val.sort()
                X_val, y_val = _safe_indexing(X, val), y[val]
        pos = train[~is_neg[train]]
        pool = train[is_neg[train]]
        if pos.size == 0 or pool.size == 0:
            raise ValueError("Every class is mined or none is: negative_classes must leave "
                             "at least one positive and one negative example to train on.")
        scorer = None
        if X_val is not None:
            if self.scoring is not None:
                scorer = get_scorer(self.scoring)
            elif self.classes_.size == 2:  # the kept class is the positive one
                pos_label = self.classes_[~np.isin(np.arange(2), neg_codes)][0]
                scorer = make_scorer(average_precision_score,
                                     response_method=("decision_function", "predict_proba"),
                                     pos_label=pos_label)
                self._ap_positive = pos_label
            else:
                scorer = get_scorer("balanced_accuracy")

        if scorer is None or self.scoring is not None or self.classes_.size != 2:
            self._ap_positive = None
        self.negative_classes_ = self.classes_[neg_codes]
        self.noise_indices_ = np.empty(0, dtype=np.intp)
        self.history_ = []
        ctx = dict(base=base, X=X, y=y, y_enc=y_enc, pos=pos, pool=pool, sw=sample_weight,
                   rng=rng, scorer=scorer, X_val=X_val, y_val=y_val, val=val, is_neg=is_neg,
                   n_pos_all=int((~is_neg).sum()), n_neg_all=int(is_neg.sum()))
        if self.weighting is not None:
            self._fit_weighted(ctx)
        elif self.selection == "importance":
            self._fit_importance(ctx)
        else:
            self._fit_cache(ctx)
        return self

    def _measure(self, base):
        if self.measure != "auto":
            return self.measure
        if self.selection == "importance" and self.weighting is None:
            return "confidence" if hasattr(base, "predict_proba") else "hinge"
        return "margin"

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
        return min(n_pool, max(1, math.ceil(m * n_pool)))

    # ------------------------------------------------------------ importance
    def _fit_importance(self, c):
        pool, y_enc, rng, sw = c["pool"], c["y_enc"], c["rng"], c["sw"]
        rate = self._budget(c["n_pos_all"], c["n_neg_all"]) / c["n_neg_all"]
        # per mined class: its negatives in the pool and in all of X, and the draw size
        # (the whole budget comes from the pool: the held-out negatives are stood for by
        # the drawn ones, so the refit trains on the very negatives that were validated)
        codes = np.unique(y_enc[pool])
        n_pool = np.array([np.count_nonzero(y_enc[pool] == k) for k in codes])
        n_all = np.array([np.count_nonzero(y_enc[c["is_neg"]] == k) for k in codes])
        k_draw = np.minimum(n_pool, np.maximum(1, np.rint(rate * n_all).astype(int)))
        c["draw"] = dict(codes=codes, k=k_draw, n_pool=n_pool, n_all=n_all)
        rounds = []  # per round: (estimator, drawn pool positions, within-class factors)
        d = guarded = window = None
        est = None
        banded = self._band_ != (0, None)
        if banded and self.n_rounds:
            self._check_window(pool.size, int(k_draw.sum()), "each round draws")
        exponents = self._exponent_candidates(c)
        best_score, stale = -np.inf, 0
        for r in [0, *self._rounds()]:
            n_wrong = None
            if r > 0:
                proba_pool, d, n_wrong = self._score_pool(est, c, pool)
                guarded, self.noise_indices_, _ = self._guard(est, c, proba_pool, d, pool)
                if banded:  # the window of ranks drawn from
                    window = np.zeros(pool.size, dtype=bool)
                    window[select_hardest(d, band=self._band_, at_most=True,
                                          n_jobs=self.n_jobs)] = True
            # the suspects are drawn like every other negative: their weights already
            # make them count as in the full data (taking their boost away cost up to
            # 0.8 points of AP in bench_mining_quality.py)
            tried = []  # round 0 with weight_exponent="auto": both exponents compete
            mixes = (self.uniform_mix,)
            if r > 0 and c["scorer"] is not None and self.uniform_mix < 1:
                mixes = (self.uniform_mix, 1.0)
            for mix in mixes:
                drawn, g = self._draw(d, y_enc[pool], c["draw"], rng, window, mix)
                rows = np.concatenate([c["pos"], pool[drawn]])
                for lam in (exponents if r == 0 else (self.weight_exponent_,)):
                    w = self._weights(g, y_enc[pool[drawn]], c["draw"], lam, "n_pool")
                    fitted, how = self._fit_on(c, rows,
                                               np.concatenate([np.ones(c["pos"].size), w]))
                    tried.append((self._val_score(fitted, c, lam), lam, fitted, w, how,
                                  drawn, g, mix))
            candidates = tried
            if len(mixes) > 1:
                tried = self._compete(tried, c)
            # max keeps the first of equal scores: ties go to the full correction
            score, self.weight_exponent_, est, w, how, drawn, g, mix = max(
                tried, key=lambda t: (-np.inf if t[0] is None else t[0]))
            rounds.append((est, drawn, g))
            self._record(r, drawn.size, n_wrong, drawn.size, 0, d, est, c, how,
                         n_guarded=0 if guarded is None else int(guarded.sum()), score=score)
            self.history_[-1]["weight_exponent"] = self.weight_exponent_
            if r == 0 and len(tried) > 1:
                self.history_[-1]["weight_exponent_scores"] = {t[1]: t[0] for t in tried}
            self.history_[-1]["draw"] = ("uniform" if r == 0 or mix == 1.0 else
                                         "difficulty")
            if len(mixes) > 1:
                self.history_[-1]["draw_scores"] = {
                    "difficulty" if t[7] < 1.0 else "uniform": t[0] for t in candidates}
            if score is not None and self.n_iter_no_change is not None:
                best_score, stale = (score, 0) if score > best_score else (best_score, stale + 1)
                if stale >= self.n_iter_no_change:
                    break
        best = self._keep_best(c)
        est, drawn, g = rounds[best]
        lam = self.weight_exponent_
        rows = np.concatenate([c["pos"], pool[drawn]])
        refit = self.refit and c["val"].size > 0
        # after a split the drawn negatives stand for all of them, held-out ones included
        w = self._weights(g, y_enc[pool[drawn]], c["draw"], lam, "n_all" if refit else "n_pool")
        weights = np.concatenate([np.ones(c["pos"].size), w])
        if refit:
            val_pos = c["val"][~c["is_neg"][c["val"]]]
            rows = np.concatenate([c["pos"], val_pos, pool[drawn]])
            weights = np.concatenate([np.ones(c["pos"].size + val_pos.size), w])
            est, _ = self._fit_on(c, rows, weights)
            self.history_[best]["reason"] += (
                f"; refit on its {drawn.size} negatives and all {c['n_pos_all']} positives "
                "(the held-out positives added, the negatives weighted for all negatives)")
        self.estimator_ = est
        self._predictor_ = self._shifted(est, c["draw"], lam, "n_all" if refit else "n_pool")
        self.best_round_ = best
        order = np.argsort(rows, kind="stable")
        self.negative_indices_ = np.sort(rows[c["is_neg"][rows]])
        self.sample_weight_ = np.zeros(c["y"].shape[0])
        self.sample_weight_[rows[order]] = weights[order] * (
            1.0 if sw is None else sw[rows[order]])

    def _compete(self, tried, c):
        """The difficulty draw and the uniform one of a round: the uniform one
        wins only if its held-out score is higher by more than the paired
        bootstrap standard error of the difference (default average-precision
        scorer; other scorers: the higher score). Returns the winner alone."""
        (s_d, *rest_d), (s_u, *rest_u) = tried
        if s_u <= s_d:
            return tried[:1]
        if self._ap_positive is None:
            return tried[1:]
        y = (np.asarray(c["y_val"]) == self._ap_positive).astype(np.float64)
        S = np.column_stack([self._positive_scores(t[2], c["X_val"]) for t in tried])
        n_boot = int(max(20, min(200, 4_000_000 // max(y.size, 1))))
        ap = _bootstrap_ap(y, S, c["rng"], n_boot)
        se = float(np.std(ap[:, 1] - ap[:, 0]))
        return tried[1:] if s_u - s_d > se else tried[:1]

    def _positive_scores(self, est, X):
        """Scores of the kept (positive) class, higher is more positive."""
        pos = self._ap_positive
        if hasattr(est, "decision_function"):
            f = np.asarray(est.decision_function(X), dtype=np.float64)
            return f if pos == est.classes_[1] else -f
        P = np.asarray(est.predict_proba(X), dtype=np.float64)
        return P[:, np.searchsorted(est.classes_, pos)]

    def _exponent_candidates(self, c):
        """The weight exponents round 0 tries, best-supported first."""
        if self.weight_exponent != "auto":
            return (float(self.weight_exponent),)
        if c["scorer"] is None or not hasattr(c["base"], "predict_proba"):
            return (1.0,)  # nothing to choose with, or no probabilities to recalibrate
        return (1.0, 0.0)

    @staticmethod
    def _weights(g, codes, draw, lam, stand_for):
        """Weights of drawn negatives: their within-class factors ``g`` (the
        difficulty correction, about 1 on average) times the class-rate part
        ``(n / k) ** lam``, with ``n`` the negatives of the class they stand for
        (``draw[stand_for]``: the pool's, or all of X's after a refit) and ``k``
        the draw's size: ``lam=1`` is the Horvitz-Thompson weight ``1 / pi``."""
        at = np.searchsorted(draw["codes"], codes)
        return g if lam == 0.0 else g * (draw[stand_for][at] / draw["k"][at]) ** lam

    def _shifted(self, est, draw, lam, stand_for):
        """``est``, or its prior-shift recalibration when ``lam < 1`` left the
        mined classes under-weighted by ``(k / n) ** (1 - lam)``."""
        if lam == 1.0 or not hasattr(est, "predict_proba"):
            return est
        factor = np.ones(self.classes_.size)
        factor[draw["codes"]] = (draw[stand_for] / draw["k"]) ** (1.0 - lam)
        return _PriorShifted(est, factor[np.searchsorted(self.classes_, est.classes_)])

    def _val_score(self, est, c, lam):
        """Held-out score of ``est`` (recalibrated as it would predict), or None."""
        if c["scorer"] is None:
            return None
        return float(c["scorer"](self._shifted(est, c["draw"], lam, "n_pool"), c["X_val"],
                                 c["y_val"]))

    def _draw(self, d, codes, draw, rng, eligible=None, mix=None):
        """Positions drawn from the pool (``draw["k"]`` of each mined class) and
        their within-class factors ``k / (n_pool * pi)`` (1 for a uniform draw);
        uniform when ``d`` is None. Only the ``eligible`` ones (the band's
        window) are drawn: too few of them raise."""
        drawn, factors = [], []
        for code, k, n in zip(draw["codes"], draw["k"], draw["n_pool"]):
            members = np.flatnonzero(codes == code)
            if eligible is not None:
                members = members[eligible[members]]
                if members.size < k:
                    raise ValueError(
                        f"band={self.band!r} holds {members.size} negatives of class "
                        f"{self.classes_[code]!r} but each round draws {k} of them: widen "
                        "band or lower max_negatives.")
            dm = np.zeros(members.size) if d is None else d[members]
            idx, w = importance_sample(dm, int(k), uniform_mix=1.0 if d is None else mix,
                                       random_state=rng)
            drawn.append(members[idx])
            factors.append(w * (k / n))
        drawn, factors = np.concatenate(drawn), np.concatenate(factors)
        order = np.argsort(drawn)
        return drawn[order], factors[order]

    def _guard(self, est, c, proba_pool, d, pool):
        """Suspected label errors among ``pool``: a mask over it, their rows of X
        (most suspect first), and the mask over the held-out rows (or None)."""
        if self.noise_fraction == "auto":
            mask, order, ref_mask = self._confident_guard(est, c, proba_pool, pool)
            return mask, pool[order], ref_mask
        return self._top_fraction(d) + (None,)

    def _top_fraction(self, d):
        """The fixed guard: the hardest ``floor(noise_fraction * n)``."""
        mask = np.zeros(d.size, dtype=bool)
        n = n_noise(self.noise_fraction, d.size)
        order = select_hardest(d, n, n_jobs=self.n_jobs) if n else np.empty(0, dtype=np.intp)
        mask[order] = True
        return mask, order

    def _confident_guard(self, est, c, proba_pool, pool):
        """Confident learning over reference rows (the held-out ones: out of sample
        for every class) and the pool negatives; the pool's flags are returned."""
        X_ref, y_ref = self._reference(c)
        platt = None if hasattr(est, "predict_proba") else self._fit_platt(est, c)
        if proba_pool is None:
            proba_pool = self._proba_rows(est, c["X"], pool, platt)
        P = np.vstack([self._proba(est, X_ref, platt), proba_pool])
        yy = np.concatenate([y_ref, c["y_enc"][pool]])
        present = np.unique(yy)
        mask = np.zeros(pool.size, dtype=bool)
        ref_mask = np.zeros(y_ref.size, dtype=bool)
        if present.size < 2:
            return mask, np.empty(0, dtype=np.intp), ref_mask
        P = P[:, present]
        P = P / np.maximum(P.sum(axis=1, keepdims=True), np.finfo(float).tiny)
        issues = find_label_issues(yy, P, labels=present)
        at = issues.indices[issues.indices >= y_ref.size] - y_ref.size
        mask[at] = True
        ref_mask[issues.indices[issues.indices < y_ref.size]] = True
        return mask, at, ref_mask

    def _reference(self, c):
        """Rows whose probabilities set the confident-learning thresholds."""
        if c["val"].size:
            return _safe_indexing(c["X"], c["val"]), c["y_enc"][c["val"]]
        if c["X_val"] is not None:
            y_val = np.asarray(c["y_val"])
            known = np.flatnonzero(np.isin(y_val, self.classes_))
            return (_safe_indexing(c["X_val"], known),
                    np.searchsorted(self.classes_, y_val[known]))
        # without held-out rows: the training positives (in sample, so their
        # threshold is high and the guard conservative)
        return _safe_indexing(c["X"], c["pos"]), c["y_enc"][c["pos"]]

    # Rows of each class a Platt fit without held-out data reads (a stride of the pool).
    _PLATT_ROWS = 20_000

    def _fit_platt(self, est, c):
        """Platt scaling of a binary decision function: on the held-out rows, or,
        without them, on the training positives and a stride of the pool's
        negatives (mostly not trained on)."""
        if self.classes_.size != 2:
            return None
        if c["val"].size or c["X_val"] is not None:
            X_ref, y_ref = self._reference(c)
        else:
            pos, pool = c["pos"], c["pool"]
            pool = pool[::max(1, pool.size // self._PLATT_ROWS)]
            rows = np.sort(np.concatenate([pos[::max(1, pos.size // self._PLATT_ROWS)], pool]))
            X_ref, y_ref = _safe_indexing(c["X"], rows), c["y_enc"][rows]
        f = np.asarray(est.decision_function(X_ref), dtype=np.float64).reshape(-1, 1)
        if np.unique(y_ref).size < 2:
            return (1.0, 0.0)
        lr = LogisticRegression(C=1e4).fit(f, y_ref)
        return (float(lr.coef_[0, 0]), float(lr.intercept_[0]))

    def _proba(self, est, Xs, platt=None):
        """Probabilities in the columns of ``classes_``: predict_proba, or the
        decision function Platt-scaled (binary) or soft-maxed (several classes)."""
        if hasattr(est, "predict_proba"):
            P = np.asarray(est.predict_proba(Xs), dtype=np.float64)
        else:
            f = np.asarray(est.decision_function(Xs), dtype=np.float64)
            if f.ndim == 1:
                a, b = platt if platt is not None else (1.0, 0.0)
                p = 1.0 / (1.0 + np.exp(-np.clip(a * f + b, -500, 500)))
                P = np.column_stack([1.0 - p, p])
            else:
                e = np.exp(f - f.max(axis=1, keepdims=True))
                P = e / e.sum(axis=1, keepdims=True)
        full = np.zeros((P.shape[0], self.classes_.size))
        full[:, np.searchsorted(self.classes_, est.classes_)] = P
        return full

    def _proba_rows(self, est, X, rows, platt=None):
        batch = self.batch_size or DEFAULT_BATCH_SIZE
        if rows.size == 0:
            return np.zeros((0, self.classes_.size))
        return np.vstack([self._proba(est, _safe_indexing(X, rows[s:s + batch]), platt)
                          for s in range(0, rows.size, batch)])

    def _keep_best(self, c):
        """Index of the kept round, with the reason written into its record."""
        scores = [h["validation_score"] for h in self.history_]
        for h in self.history_:
            h["kept"] = False
        if c["scorer"] is None:
            best = len(self.history_) - 1
            reason = "no held-out data (validation_fraction=None): the last round"
        else:
            best = int(np.argmax(scores))  # first maximum: ties keep the earlier round
            name = self.scoring if isinstance(self.scoring, str) else (
                "held-out score" if self.scoring else
                "average_precision" if self.classes_.size == 2 else "balanced_accuracy")
            others = ", ".join(f"round {h['round']}: {h['validation_score']:.4f}"
                               for h in self.history_ if h["round"] != best)
            reason = (f"best held-out {name} {scores[best]:.4f}"
                      + (f" (others: {others})" if others else ""))
        self.history_[best]["kept"] = True
        self.history_[best]["reason"] = reason
        return best
    # ----------------------------------------------------------------- cache
    def _fit_cache(self, c):
        pos, pool, y_enc, rng = c["pos"], c["pool"], c["y_enc"], c["rng"]
        budget = self._budget(pos.size, pool.size)
        n0 = max(1, round(self.initial_fraction * budget))
        per_round = max(1, math.ceil((budget - n0) / self.n_rounds)) if self.n_rounds else 0
        if per_round and self.selection != "semi_hard":
            self._check_window(pool.size, min(self._n_hard(per_round), pool.size),
                               "each round adds up to")
        cached = np.zeros(pool.size, dtype=bool)  # over positions in pool
        cached[self._initial_subset(y_enc[pool], n0, rng)] = True
        est, how = self._fit_on(c, np.concatenate([pos, pool[cached]]), None)
        self._record(0, int(cached.sum()), None, n0, 0, None, est, c, how)
        for r in self._rounds():
            proba_pool, d, n_wrong = self._score_pool(est, c, pool)
            candidates = np.flatnonzero(~cached)
            n_guarded = 0
            if self.noise_fraction == "auto":
                suspect, self.noise_indices_, _ = self._guard(est, c, proba_pool, d, pool)
                n_guarded = int(suspect[candidates].sum())
                candidates = candidates[~suspect[candidates]]
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
                    est, how = self._fit_on(c, np.concatenate([pos, pool[cached]]), None)
                self._record(r, int(cached.sum()), n_wrong, 0, evicted, d, est, c, how,
                             n_guarded)
                break
            overflow = int(cached.sum()) + new.size - budget
            if overflow > 0:  # evict the cached negatives that became easiest
                old = np.flatnonzero(cached)
                drop = old[select_hardest(-d[old], overflow, n_jobs=self.n_jobs)]
                cached[drop] = False
                evicted += overflow
            cached[new] = True
            est, how = self._fit_on(c, np.concatenate([pos, pool[cached]]), None)
            self._record(r, int(cached.sum()), n_wrong, new.size, evicted, d, est, c, how,
                         n_guarded)
        self.best_round_ = self.history_[-1]["round"]
        for h in self.history_:
            h["kept"] = h["round"] == self.best_round_
        self.history_[-1]["reason"] = ("cache selections keep the last round; the "
                                       "validation_score of each round is for reading")
        self.estimator_ = self._predictor_ = est
        self.weight_exponent_ = None
        self.negative_indices_ = pool[cached]
        self.sample_weight_ = None

    def _fit_weighted(self, c):
        pos, pool = c["pos"], c["pool"]
        sw = c["sw"]
        rows = np.concatenate([pos, pool])
        weights = np.ones(rows.size)
        est, how = self._fit_on(c, rows, weights)
        self._record(0, pool.size, None, pool.size, 0, None, est, c, how)
        for r in self._rounds():
            _, d, n_wrong = self._score_pool(est, c, pool)
            weights[pos.size:] = difficulty_weights(d, method=self.weighting, gamma=self.gamma,
                                                    temperature=self.temperature)
            est, how = self._fit_on(c, rows, weights)
            self._record(r, pool.size, n_wrong, 0, 0, d, est, c, how)
        self.best_round_ = self.history_[-1]["round"]
        for h in self.history_:
            h["kept"] = h["round"] == self.best_round_
        self.history_[-1]["reason"] = "weighting keeps the last round"
        self.estimator_ = self._predictor_ = est
        self.weight_exponent_ = None
        self.negative_indices_ = pool
        self.sample_weight_ = np.zeros(c["y"].shape[0])
        self.sample_weight_[rows] = weights if sw is None else weights * sw[rows]

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

    def _n_hard(self, n_new):
        """Hard negatives among a round's ``n_new`` additions (the rest are easy)."""
        return max(1, round(n_new / (1.0 + self.easy_ratio)))

    def _check_window(self, n, need, what):
        """Raise if ``band`` leaves fewer than ``need`` of ``n`` ranks."""
        start, stop = self._band_
        size = (n if stop is None else min(stop, n)) - start
        if size < need:
            raise ValueError(f"band={self.band!r} holds {max(size, 0)} of the {n} negatives "
                             f"but {what} {need}: widen band or lower max_negatives.")

    def _select(self, d, candidates, n_new, round_index, rng):
        """Positions in the pool of this round's new negatives (cache selections)."""
        if candidates.size == 0 or n_new == 0:
            return candidates[:0]
        noise_fraction = 0.0 if self.noise_fraction == "auto" else self.noise_fraction
        n_hard = min(candidates.size, self._n_hard(n_new))
        dc = d[candidates]
        hard_pool = candidates
        if self.schedule == "curriculum":
            _, high = curriculum_window(round_index - 1, max(self.n_rounds, 1),
                                        pacing=self.pacing)
            # the hardest candidates allowed this round: the easiest `high` quantile
            allowed = np.sort(select_quantile_window(dc, 0.0, high))
            hard_pool, dc = candidates[allowed], dc[allowed]
        start, stop = self._band_
        if self.selection == "hardest":  # the first n_hard ranks of the window
            end = start + n_hard if stop is None else min(stop, start + n_hard)
            picked = select_hardest(dc, band=(start, end), at_most=True,
                                    noise_fraction=noise_fraction, n_jobs=self.n_jobs)
        elif self.selection == "sample":  # drawn from the window
            window = select_hardest(dc, band=(start, stop), at_most=True,
                                    noise_fraction=noise_fraction, n_jobs=self.n_jobs)
            picked = window[sample_by_difficulty(dc[window], n_hard, temperature=self.temperature,
                                                 random_state=rng, at_most=True,
                                                 n_jobs=self.n_jobs)
                            ] if window.size else window
        else:  # semi_hard: margin = -difficulty
            picked = select_semi_hard(-dc, self.semi_hard_margin, k=n_hard, at_most=True)
        hard = hard_pool[picked]
        n_easy = min(n_new - n_hard, candidates.size - hard.size) if self.easy_ratio else 0
        if n_easy <= 0:
            return hard
        if hard.size == 0:
            return rng.choice(candidates, size=n_easy, replace=False)
        # candidates are sorted, so positions in it map back with searchsorted
        local = np.searchsorted(candidates, hard)
        blend = blend_easy(local, candidates.size, n_easy, random_state=rng)
        return candidates[blend.indices]

    # ------------------------------------------------------- shared helpers
    def _score_pool(self, est, c, pool):
        """Probabilities (or None), difficulty and the number misclassified of the
        pool under ``est``, one batch at a time. A probability measure of a model
        without ``predict_proba`` reads its decision function Platt-scaled on the
        reference rows (binary) or soft-maxed (several classes), as the noise
        guard does: decision values are never read as probabilities."""
        X, y_enc = c["X"], c["y_enc"]
        batch = self.batch_size or DEFAULT_BATCH_SIZE
        measure = self._measure_
        d = np.empty(pool.size, dtype=np.float64)
        n_wrong = 0
        has_proba = hasattr(est, "predict_proba")
        use_proba = has_proba or measure in ("log_loss", "confidence", "entropy")
        platt = None
        if use_proba and not has_proba:
            platt = self._fit_platt(est, c)
        proba = np.empty((pool.size, self.classes_.size)) if use_proba else None
        labels = np.arange(self.classes_.size)
        est_codes = np.searchsorted(self.classes_, est.classes_)
        for s in range(0, pool.size, batch):
            rows = pool[s:s + batch]
            Xc = _safe_indexing(X, rows)
            if use_proba and not has_proba:  # already in the columns of classes_
                scores = self._proba(est, Xc, platt)
            else:
                scores = np.asarray(est.predict_proba(Xc) if use_proba
                                    else est.decision_function(Xc))
            if scores.ndim == 2 and scores.shape[1] != self.classes_.size:
                full = np.full((scores.shape[0], self.classes_.size),
                               0.0 if use_proba else -np.inf)
                full[:, est_codes] = scores
                scores = full
            if use_proba:
                proba[s:s + batch] = scores
            d[s:s + batch] = difficulty(y_enc[rows], scores, measure=measure, labels=labels,
                                        n_jobs=self.n_jobs)
            if scores.ndim == 2:
                predicted = scores.argmax(axis=1)
            else:
                predicted = (scores > 0).astype(np.intp)
            n_wrong += int((predicted != y_enc[rows]).sum())
        if not hasattr(est, "predict_proba"):
            proba = None  # probabilities of decision values come from Platt scaling
        return proba, d, n_wrong

    def _fit_on(self, c, rows, weights):
        """A clone of the estimator fit on ``rows`` with ``weights`` (times the
        user's sample_weight); returns it and how the weights were applied."""
        order = np.argsort(rows, kind="stable")
        rows = rows[order]
        w = None if weights is None else np.asarray(weights, dtype=np.float64)[order]
        if c["sw"] is not None:
            w = c["sw"][rows] if w is None else w * c["sw"][rows]
        how = None
        if w is not None:
            how = "given" if weights is None else (
                "importance" if self.selection == "importance" else "weighting")
        est = clone(c["base"])
        fit_params = {}
        if w is not None and self._weight_key is not None:
            fit_params[self._weight_key] = w
        elif w is not None and not np.allclose(w, w[0]):
            # costing: redraw the rows with replacement in proportion to the weights
            rows = c["rng"].choice(rows, size=rows.size, replace=True, p=w / w.sum())
            rows.sort()
            how = "resampled"
        return est.fit(_safe_indexing(c["X"], rows), c["y"][rows], **fit_params), how

    def _record(self, r, n_neg, n_wrong, n_added, n_evicted, d, est, c, how, n_guarded=0,
                score=False):
        if score is False:  # not scored by the caller
            score = None if c["scorer"] is None else float(c["scorer"](est, c["X_val"],
                                                                        c["y_val"]))
        self.history_.append({
            "round": r,
            "n_negatives": n_neg,
            "n_misclassified": n_wrong,
            "n_added": n_added,
            "n_evicted": n_evicted,
            "n_guarded": n_guarded,
            "difficulty_mean": None if d is None else float(d.mean()),
            "difficulty_median": None if d is None else float(np.median(d)),
            "difficulty_max": None if d is None else float(d.max()),
            "validation_score": score,
            "weights": how,
        })

    # -------------------------------------------------------------- predict
    predict = _delegate("predict", "Predict class labels with the final model.")
    predict_proba = _delegate("predict_proba", "Class probabilities of the final model.")
    predict_log_proba = _delegate("predict_log_proba",
                                  "Class log-probabilities of the final model.")
    decision_function = _delegate("decision_function", "Decision function of the final model.")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        base = LogisticRegression() if self.estimator is None else self.estimator
        base_tags = base.__sklearn_tags__()
        tags.input_tags.sparse = base_tags.input_tags.sparse
        tags.input_tags.allow_nan = base_tags.input_tags.allow_nan
        return tags
