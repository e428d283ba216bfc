import pickle

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from hnm import HardMiningClassifier

FITS = []  # rows each RowRecorder was trained on, in order
# The cache selections, as every test of the cache mechanics uses them (the
# defaults changed to importance sampling with a held-out check, tested below).
CACHE = dict(selection="hardest", validation_fraction=None)


class RowRecorder(ClassifierMixin, BaseEstimator):
    """A stand-in model whose scores are known: column 0 of X is p(class 1).

    Column 1 holds the row id, so the test can see which rows every round
    trained on.
    """

    def fit(self, X, y, sample_weight=None):
        self.classes_ = np.unique(y)
        FITS.append((np.asarray(X)[:, 1].astype(int), sample_weight))
        return self

    def predict_proba(self, X):
        p = np.asarray(X)[:, 0]
        return np.column_stack([1 - p, p])

    def predict(self, X):
        return (np.asarray(X)[:, 0] > 0.5).astype(int)


@pytest.fixture
def known():
    """400 negatives with p(positive) = a permutation of a grid, 40 positives."""
    rng = np.random.default_rng(1)
    n_neg, n_pos = 400, 40
    p = np.concatenate([rng.permutation(np.linspace(0.0, 0.99, n_neg)), np.full(n_pos, 0.9)])
    y = np.r_[np.zeros(n_neg, int), np.ones(n_pos, int)]
    X = np.column_stack([p, np.arange(p.size)])
    FITS.clear()
    return X, y, p


def test_each_round_adds_the_hardest_uncached_negatives(known):
    X, y, p = known
    clf = HardMiningClassifier(RowRecorder(), n_rounds=2, initial_fraction=0.5,
                               noise_fraction=0.0, random_state=0, **CACHE).fit(X, y)
    assert [h["n_negatives"] for h in clf.history_] == [20, 30, 40]
    assert [h["n_added"] for h in clf.history_] == [20, 10, 10]
    cached = set(FITS[0][0][y[FITS[0][0]] == 0])
    for r in (1, 2):
        rows = FITS[r][0]
        assert set(np.flatnonzero(y == 1)) <= set(rows)
        added = set(rows[y[rows] == 0]) - cached
        remaining = np.array(sorted(set(np.flatnonzero(y == 0)) - cached))
        expected = remaining[np.argsort(-p[remaining], kind="stable")[:10]]
        assert added == set(expected)
        cached |= added
    np.testing.assert_array_equal(np.sort(clf.negative_indices_), sorted(cached))


def test_noise_guard_and_band_skip_the_very_hardest(known):
    X, y, p = known
    clf = HardMiningClassifier(RowRecorder(), n_rounds=1, initial_fraction=0.5,
                               noise_fraction=0.1, band=(5, None), random_state=0, **CACHE).fit(X, y)
    initial = set(FITS[0][0][y[FITS[0][0]] == 0])
    rows = FITS[1][0]
    added = np.array(sorted(set(rows[y[rows] == 0]) - initial))
    remaining = np.array(sorted(set(np.flatnonzero(y == 0)) - initial))
    ranked = remaining[np.argsort(-p[remaining], kind="stable")]
    n_noise = int(0.1 * remaining.size)
    assert set(added) == set(ranked[n_noise + 5:n_noise + 5 + 20])
    assert clf.history_[1]["n_added"] == 20


def test_cache_is_bounded_and_evicts_the_easiest(known):
    X, y, p = known
    clf = HardMiningClassifier(RowRecorder(), n_rounds=3, max_negatives=30,
                               initial_fraction=1.0, noise_fraction=0.02, random_state=0,
                               **CACHE).fit(X, y)
    assert all(h["n_negatives"] == 30 for h in clf.history_)
    assert [h["n_evicted"] for h in clf.history_[1:]] == [1, 1, 1]
    # the 30 kept negatives end up at least as hard as the initial random ones
    initial = FITS[0][0][y[FITS[0][0]] == 0]
    assert p[clf.negative_indices_].mean() > p[initial].mean()


def test_hard_threshold_stops_when_nothing_is_hard(known):
    X, y, p = known
    clf = HardMiningClassifier(RowRecorder(), n_rounds=5, max_negatives=200,
                               hard_threshold=10.0, random_state=0, **CACHE).fit(X, y)
    assert len(clf.history_) == 2 and clf.history_[-1]["n_added"] == 0


def test_easy_blend_shares_the_round_budget(known):
    X, y, p = known
    clf = HardMiningClassifier(RowRecorder(), n_rounds=1, easy_ratio=1.0, initial_fraction=0.5,
                               noise_fraction=0.0, random_state=0, **CACHE).fit(X, y)
    assert clf.history_[1]["n_added"] == 20
    initial = set(FITS[0][0][y[FITS[0][0]] == 0])
    rows = FITS[1][0]
    added = np.array(sorted(set(rows[y[rows] == 0]) - initial))
    remaining = np.array(sorted(set(np.flatnonzero(y == 0)) - initial))
    top10 = remaining[np.argsort(-p[remaining], kind="stable")[:10]]
    assert set(top10) <= set(added)
    assert p[np.setdiff1d(added, top10)].mean() < p[top10].min()


def test_semi_hard_takes_correct_examples_within_the_margin(known):
    X, y, p = known
    HardMiningClassifier(RowRecorder(), n_rounds=1, selection="semi_hard",
                         semi_hard_margin=0.2, validation_fraction=None,
                         random_state=0).fit(X, y)
    initial = set(FITS[0][0][y[FITS[0][0]] == 0])
    rows = FITS[1][0]
    added = np.array(sorted(set(rows[y[rows] == 0]) - initial))
    margins = (1 - p[added]) - p[added]
    assert added.size and np.all((margins > 0) & (margins <= 0.2 + 1e-12))


def test_curriculum_starts_easy(known):
    X, y, p = known
    HardMiningClassifier(RowRecorder(), n_rounds=3, schedule="curriculum",
                         random_state=0, **CACHE).fit(X, y)
    initial = set(FITS[0][0][y[FITS[0][0]] == 0])
    rows = FITS[1][0]
    added = np.array(sorted(set(rows[y[rows] == 0]) - initial))
    assert p[added].max() < 0.5  # round 1 draws from the easiest quarter's top


def test_weighting_keeps_everything_and_upweights_hard_negatives(known):
    X, y, p = known
    clf = HardMiningClassifier(RowRecorder(), n_rounds=2, weighting="power",
                               measure="confidence", gamma=2.0,
                               validation_fraction=None).fit(X, y)
    assert all(rows.size == y.size for rows, _ in FITS)
    w = clf.sample_weight_
    neg = y == 0
    assert w[neg].mean() == pytest.approx(1.0)
    np.testing.assert_allclose(w[neg], p[neg] ** 2 / np.mean(p[neg] ** 2))
    np.testing.assert_array_equal(w[~neg], 1.0)


def test_n_rounds_zero_is_the_random_negatives_baseline(known):
    X, y, _ = known
    clf = HardMiningClassifier(RowRecorder(), n_rounds=0, initial_fraction=1.0,
                               random_state=0, **CACHE).fit(X, y)
    assert len(FITS) == 1 and clf.history_[0]["n_negatives"] == 40


def test_real_model_history_and_validation():
    X, y = make_classification(3000, n_features=10, weights=[0.9], flip_y=0.0, random_state=0)
    clf = HardMiningClassifier(LogisticRegression(), n_rounds=3, validation_fraction=0.25,
                               n_iter_no_change=None, random_state=0).fit(X, y)
    assert len(clf.history_) == 4
    assert all(0 <= h["validation_score"] <= 1 for h in clf.history_)
    assert clf.history_[1]["n_misclassified"] >= 0
    assert clf.history_[1]["difficulty_max"] >= clf.history_[1]["difficulty_median"]
    np.testing.assert_array_equal(clf.classes_, [0, 1])
    assert clf.predict_proba(X[:5]).shape == (5, 2)
    assert clf.score(X, y) > 0.8


def test_multiclass_and_string_labels():
    X, y = make_classification(1500, n_features=8, n_informative=5, n_classes=3,
                               weights=[0.7, 0.2, 0.1], random_state=0)
    labels = np.array(["bird", "cat", "dog"])[y]
    clf = HardMiningClassifier(LogisticRegression(max_iter=500), n_rounds=2,
                               random_state=0).fit(X, labels)
    np.testing.assert_array_equal(clf.negative_classes_, ["bird"])
    assert set(clf.predict(X)) <= set(labels)
    clf2 = HardMiningClassifier(LogisticRegression(max_iter=500), n_rounds=1,
                                negative_classes=["bird", "cat"], random_state=0).fit(X, labels)
    assert set(labels[clf2.negative_indices_]) == {"bird", "cat"}


def test_decision_function_only_estimator():
    X, y = make_classification(800, weights=[0.85], random_state=0)
    clf = HardMiningClassifier(LinearSVC(), n_rounds=2, measure="hinge", random_state=0)
    clf.fit(X, y)
    assert not hasattr(clf, "predict_proba")
    assert clf.decision_function(X[:4]).shape == (4,)


def test_reproducible_with_random_state():
    X, y = make_classification(1000, weights=[0.9], random_state=0)
    a = HardMiningClassifier(n_rounds=2, selection="sample", random_state=3).fit(X, y)
    b = HardMiningClassifier(n_rounds=2, selection="sample", random_state=3).fit(X, y)
    np.testing.assert_array_equal(a.negative_indices_, b.negative_indices_)


def test_memmap_input_and_sample_weight(tmp_path):
    X, y = make_classification(1000, weights=[0.9], random_state=0)
    path = tmp_path / "X.npy"
    np.save(path, X)
    Xm = np.load(path, mmap_mode="r")
    sw = np.random.default_rng(0).uniform(0.5, 2, size=y.size)
    clf = HardMiningClassifier(n_rounds=2, batch_size=97, random_state=0)
    clf.fit(Xm, y, sample_weight=sw)
    ref = HardMiningClassifier(n_rounds=2, random_state=0).fit(X, y, sample_weight=sw)
    np.testing.assert_array_equal(clf.negative_indices_, ref.negative_indices_)


def test_in_pipeline_grid_search_cross_val_and_pickle():
    X, y = make_classification(1200, weights=[0.9], random_state=0)
    pipe = make_pipeline(StandardScaler(), HardMiningClassifier(n_rounds=1, random_state=0))
    grid = GridSearchCV(pipe, {"hardminingclassifier__selection": ["hardest", "sample"]},
                        cv=3, scoring="average_precision").fit(X, y)
    assert grid.best_params_["hardminingclassifier__selection"] in ("hardest", "sample")
    scores = cross_val_score(HardMiningClassifier(n_rounds=1, random_state=0), X, y, cv=3)
    assert scores.shape == (3,)
    clf = pickle.loads(pickle.dumps(grid.best_estimator_))
    np.testing.assert_array_equal(clf.predict(X), grid.best_estimator_.predict(X))


def test_progress_bar(capsys):
    X, y = make_classification(500, weights=[0.9], random_state=0)
    HardMiningClassifier(n_rounds=2, progress=True, random_state=0).fit(X, y)
    assert "hard mining" in capsys.readouterr().err


@pytest.mark.parametrize("kwargs, fit_kwargs, exc, match", [
    (dict(negative_classes=[7]), {}, ValueError, "negative_classes \\[7\\] are not classes"),
    (dict(negative_classes=[0, 1]), {}, ValueError, "at least one positive"),
    (dict(selection="semi_hard", measure="log_loss"), {}, ValueError, "needs measure='margin'"),
    (dict(weighting="power"), {}, ValueError, "weighting='power' needs non-negative"),
    (dict(estimator=SGDClassifier(), weighting="softmax"), {}, None, None),
    (dict(n_rounds=-1), {}, ValueError, "n_rounds"),
    (dict(selection="top"), {}, ValueError, "selection"),
    (dict(max_negatives=0), {}, ValueError, "max_negatives"),
    (dict(max_negatives=1.5), {}, ValueError, "max_negatives"),
    (dict(temperature=0), {}, ValueError, "temperature"),
])
def test_bad_parameters(kwargs, fit_kwargs, exc, match):
    X, y = make_classification(300, weights=[0.8], random_state=0)
    clf = HardMiningClassifier(**kwargs)
    if exc is None:
        clf.fit(X, y, **fit_kwargs)
        return
    with pytest.raises(exc, match=match):
        clf.fit(X, y, **fit_kwargs)


def test_single_class_and_estimator_without_sample_weight():
    X = np.random.default_rng(0).standard_normal((20, 3))
    with pytest.raises(ValueError, match="only one class"):
        HardMiningClassifier().fit(X, np.zeros(20))

    class NoWeights(ClassifierMixin, BaseEstimator):
        def fit(self, X, y):
            self.classes_ = np.unique(y)
            return self

        def predict_proba(self, X):
            return np.full((len(X), 2), 0.5)

    y = np.r_[np.zeros(15), np.ones(5)]
    with pytest.raises(ValueError, match="does not accept sample_weight"):
        HardMiningClassifier(NoWeights(), weighting="softmax").fit(X, y)
    with pytest.raises(ValueError, match="does not accept sample_weight"):
        HardMiningClassifier(NoWeights(), selection="hardest").fit(
            X, y, sample_weight=np.ones(20))


# ------------------------------------------------- importance sampling (defaults)
from hnm.mining import importance_sample  # noqa: E402


def test_importance_sample_has_exact_inclusion_probabilities_and_size():
    rng = np.random.default_rng(0)
    d = rng.exponential(size=60)
    k, mix = 12, 0.4
    q = mix / d.size + (1 - mix) * d / d.sum()
    pi = k * q  # no example reaches 1 here: the plain formula
    assert pi.max() < 1
    counts = np.zeros(d.size)
    n_draws = 1500
    for seed in range(n_draws):
        idx, w = importance_sample(d, k, uniform_mix=mix, random_state=seed)
        assert idx.size == k and np.unique(idx).size == k
        np.testing.assert_allclose(w, 1 / pi[idx])
        counts[idx] += 1
    # each frequency within 4.5 binomial standard errors of its probability
    se = np.sqrt(pi * (1 - pi) / n_draws)
    assert np.all(np.abs(counts / n_draws - pi) < 4.5 * se + 1e-3)


def test_importance_weights_make_sums_unbiased_and_cap_at_one():
    d = np.r_[np.full(95, 0.01), np.full(5, 50.0)]   # five examples certain to be drawn
    f = np.random.default_rng(1).normal(size=d.size)
    totals = []
    for seed in range(800):
        idx, w = importance_sample(d, 10, random_state=seed)
        assert np.isin(np.arange(95, 100), idx).all()
        totals.append((w * f[idx]).sum())
    assert abs(np.mean(totals) - f.sum()) < 4 * np.std(totals) / np.sqrt(len(totals))
    with pytest.raises(ValueError, match="non-negative"):
        importance_sample(-d, 3)
    with pytest.raises(ValueError, match="k must be"):
        importance_sample(d, 0)


def test_defaults_draw_weighted_negatives_every_round_and_keep_the_best(known):
    X, y, p = known
    clf = HardMiningClassifier(RowRecorder(), n_rounds=2, max_negatives=40,
                               weight_exponent=1.0, n_iter_no_change=None,
                               random_state=0).fit(X, y)
    # 20% held out (stratified): every round draws the whole budget of 40 from the
    # 320 training negatives
    assert [h["n_negatives"] for h in clf.history_] == [40, 40, 40]
    assert all(h["weights"] == "importance" for h in clf.history_)
    rows0, w0 = FITS[0]
    np.testing.assert_allclose(w0[y[rows0] == 0], 320 / 40)      # round 0: uniform
    np.testing.assert_allclose(w0[y[rows0] == 1], 1.0)
    rows1, w1 = FITS[1]                                          # round 1, by difficulty
    assert w1[y[rows1] == 0].max() <= 320 / (40 * 0.2) + 1e-9  # the uniform share bounds them
    # every mining round also fits a uniform draw; the better on held-out data is the round's
    assert len(FITS) == 1 + 2 * 2 + 1
    assert [h["draw"] for h in clf.history_][0] == "uniform"
    for h in clf.history_[1:]:
        s = h["draw_scores"]
        assert set(s) == {"difficulty", "uniform"}
        assert h["validation_score"] == s[h["draw"]]
        if h["draw"] == "uniform":  # it replaces the difficulty draw only by scoring higher
            assert s["uniform"] > s["difficulty"]
    scores = [h["validation_score"] for h in clf.history_]
    assert clf.best_round_ == int(np.argmax(scores))
    assert [h["kept"] for h in clf.history_].count(True) == 1
    assert clf.history_[clf.best_round_]["kept"]
    assert "best held-out average_precision" in clf.history_[clf.best_round_]["reason"]
    assert "refit on its 40 negatives" in clf.history_[clf.best_round_]["reason"]
    # the refit: every positive and the kept round's very negatives, now weighted
    # for all 400 negatives (the held-out ones included)
    rows, w = FITS[-1]
    assert set(np.flatnonzero(y == 1)) <= set(rows)
    neg = y[rows] == 0
    kept = [(r, wr) for r, wr in FITS[:-1]
            if np.array_equal(r[y[r] == 0], rows[neg])]
    assert kept, "the refit trains on the negatives of a validated fit"
    np.testing.assert_allclose(w[neg], kept[0][1][y[kept[0][0]] == 0] * 400 / 320)
    np.testing.assert_array_equal(np.flatnonzero(clf.sample_weight_), np.sort(rows))
    np.testing.assert_allclose(clf.sample_weight_[np.sort(rows)], w)
    np.testing.assert_array_equal(clf.negative_indices_, np.sort(rows[neg]))


def falling_scorer():
    """A scoring callable under which every fit scores worse than the one before,
    and the list of its calls (clear it to start again)."""
    calls = []

    def falling(estimator, X_val, y_val):
        calls.append(1)
        return -float(len(calls))
    return falling, calls


def test_a_round_worse_on_held_out_data_is_never_kept(known):
    X, y, _ = known
    falling, calls = falling_scorer()

    clf = HardMiningClassifier(RowRecorder(), n_rounds=3, scoring=falling,
                               random_state=0).fit(X, y)
    assert clf.best_round_ == 0 and clf.history_[0]["kept"]
    # round 0 refit: its draw plus the 8 held-out positives (its negatives stand for the
    # 80 held-out ones too)
    assert FITS[-1][0].size == FITS[0][0].size + 8
    assert set(FITS[0][0]) < set(FITS[-1][0])
    assert (y[FITS[-1][0]] == 0).sum() == (y[FITS[0][0]] == 0).sum()

    clf = HardMiningClassifier(RowRecorder(), n_rounds=2, validation_fraction=None,
                               random_state=0).fit(X, y)
    assert clf.best_round_ == 2 and "no held-out data" in clf.history_[2]["reason"]


def test_noise_guard_estimates_the_flipped_labels():
    X, y = make_classification(6000, n_features=10, weights=[0.9], flip_y=0.0, random_state=1)
    rng = np.random.default_rng(1)
    flipped = (y == 1) & (rng.random(y.size) < 0.15)  # positives labelled negative
    y_noisy = np.where(flipped, 0, y)
    clf = HardMiningClassifier(LogisticRegression(), max_negatives=0.1, random_state=0)
    clf.fit(X, y_noisy)
    assert clf.noise_indices_.size > 0
    assert clf.history_[-1]["n_guarded"] > 0
    assert np.isin(clf.noise_indices_, np.flatnonzero(flipped)).mean() > 0.5
    assert np.all(y_noisy[clf.noise_indices_] == 0)
    fixed = HardMiningClassifier(LogisticRegression(), max_negatives=0.1, noise_fraction=0.0,
                                 random_state=0).fit(X, y_noisy)
    assert fixed.noise_indices_.size == 0


def test_weights_reach_a_pipeline_step_and_estimators_without_them_resample(known):
    X, y, _ = known
    clf = HardMiningClassifier(make_pipeline(StandardScaler(), RowRecorder()), n_rounds=1,
                               validation_fraction=None, random_state=0)
    with pytest.raises(Exception):
        clf.fit(X, y)  # the scaler changes column 1: RowRecorder reads scaled ids
    FITS.clear()

    class NoWeights(ClassifierMixin, BaseEstimator):
        def fit(self, X, y):
            FITS.append((np.asarray(X)[:, 1].astype(int), None))
            self.classes_ = np.unique(y)
            return self

        def predict_proba(self, X):
            p = np.asarray(X)[:, 0]
            return np.column_stack([1 - p, p])

    clf = HardMiningClassifier(NoWeights(), n_rounds=1, max_negatives=40,
                               weight_exponent=1.0, random_state=0).fit(X, y)
    assert all(h["weights"] == "resampled" for h in clf.history_)
    rows = FITS[0][0]
    # costing: rows redrawn with replacement in proportion to their weights, so the
    # negatives (weight 8) outnumber the positives (weight 1) about 320 : 32
    assert rows.size == 32 + 40 and (y[rows] == 0).mean() > 0.75


def test_pipeline_receives_the_weights_in_its_last_step():
    X, y = make_classification(1500, weights=[0.95], random_state=0)
    seen = []

    class Spy(LogisticRegression):
        def fit(self, X, y, sample_weight=None):
            seen.append(sample_weight)
            return super().fit(X, y, sample_weight=sample_weight)

    HardMiningClassifier(make_pipeline(StandardScaler(), Spy()), n_rounds=1,
                         weight_exponent=1.0, random_state=0).fit(X, y)
    assert seen and all(w is not None and w.max() > 1 for w in seen)


def test_decision_function_only_defaults_use_hinge_and_platt_scaling():
    X, y = make_classification(3000, weights=[0.9], flip_y=0.05, random_state=0)
    clf = HardMiningClassifier(LinearSVC(), max_negatives=0.2, random_state=0).fit(X, y)
    assert clf._measure_ == "hinge"
    assert all(h["validation_score"] is not None for h in clf.history_)
    assert clf.history_[1]["n_guarded"] >= 0
    assert clf.decision_function(X[:3]).shape == (3,)


def test_dataframe_columns_reach_a_column_transformer():
    pd = pytest.importorskip("pandas")
    from sklearn.compose import ColumnTransformer
    import warnings
    X, y = make_classification(1200, n_features=4, weights=[0.9], random_state=0)
    df = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    df["colour"] = np.where(X[:, 0] > 0, "red", "blue")
    pre = ColumnTransformer([("num", StandardScaler(), ["a", "b", "c", "d"])])
    clf = HardMiningClassifier(make_pipeline(pre, LogisticRegression()), n_rounds=1,
                               random_state=0).fit(df, y)
    np.testing.assert_array_equal(clf.feature_names_in_, df.columns)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert clf.predict_proba(df).shape == (1200, 2)


def test_round_one_draws_in_proportion_to_difficulty_mixed_with_uniform(known):
    X, y, p = known
    HardMiningClassifier(RowRecorder(), n_rounds=1, max_negatives=40, uniform_mix=0.5,
                         validation_fraction=None, random_state=0).fit(X, y)
    neg = y == 0
    d = p[neg]                                   # 1 - p_true of a negative is p
    pi = 40 * (0.5 / d.size + 0.5 * d / d.sum())
    rows1, w1 = FITS[1]
    drawn = rows1[y[rows1] == 0]
    np.testing.assert_allclose(w1[y[rows1] == 0], 1 / pi[drawn])
    assert np.all(w1[y[rows1] == 1] == 1.0)


def test_band_is_the_window_of_ranks_importance_draws_from(known):
    X, y, p = known
    clf = HardMiningClassifier(RowRecorder(), n_rounds=2, band=(40, 200),
                               validation_fraction=None, random_state=0).fit(X, y)
    neg = np.flatnonzero(y == 0)
    ranked = neg[np.argsort(-p[neg], kind="stable")]  # confidence = p for a negative
    window = set(ranked[40:200])
    for rows, _ in FITS[1:]:
        drawn = rows[y[rows] == 0]
        assert drawn.size == 40 and set(drawn) <= window
    assert not set(FITS[0][0][y[FITS[0][0]] == 0]) <= window  # round 0: uniform over all
    assert clf.history_[-1]["n_negatives"] == 40


@pytest.mark.parametrize("kwargs, match", [
    (dict(band=(0, 30)), r"band=\(0, 30\) holds 30 of the 400 negatives but each round draws 40"),
    (dict(band=(390, None)), "holds 10 of the 400"),
    (dict(band=(0, 3), selection="hardest"), "each round adds up to 4"),
    (dict(band=(1, None), selection="semi_hard", measure="margin"), "semi_hard"),
])
def test_a_band_too_small_for_the_budget_raises(known, kwargs, match):
    X, y, _ = known
    with pytest.raises(ValueError, match=match):
        HardMiningClassifier(RowRecorder(), validation_fraction=None, **kwargs).fit(X, y)


def test_weight_exponent_auto_keeps_the_better_correction_and_recalibrates(known):
    X, y, p = known
    clf = HardMiningClassifier(RowRecorder(), n_rounds=0, max_negatives=40,
                               random_state=0).fit(X, y)
    # round 0 fits the same draw twice: full correction (weights 320 / 40), then none
    (rows_a, w_a), (rows_b, w_b) = FITS[0], FITS[1]
    np.testing.assert_array_equal(rows_a, rows_b)
    np.testing.assert_allclose(w_a[y[rows_a] == 0], 8.0)
    np.testing.assert_allclose(w_b, 1.0)
    scores = clf.history_[0]["weight_exponent_scores"]
    assert set(scores) == {1.0, 0.0}
    assert clf.weight_exponent_ == max(scores, key=lambda lam: (scores[lam], lam))
    # the prior-shift correction: p(negative) times 1 / rate ** (1 - exponent), renormalised
    lam = 0.0
    clf = HardMiningClassifier(RowRecorder(), n_rounds=0, max_negatives=40,
                               weight_exponent=lam, random_state=0).fit(X, y)
    raw = clf.estimator_.predict_proba(X)
    shifted = raw * np.array([10.0 ** (1 - lam), 1.0])
    shifted /= shifted.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(clf.predict_proba(X), shifted)
    np.testing.assert_array_equal(clf.predict(X), shifted.argmax(axis=1))
    np.testing.assert_allclose(FITS[-1][1], 1.0)  # the refit is unweighted too
    # full correction: predictions are the model's own
    clf = HardMiningClassifier(RowRecorder(), n_rounds=0, weight_exponent=1.0,
                               random_state=0).fit(X, y)
    np.testing.assert_array_equal(clf.predict_proba(X), clf.estimator_.predict_proba(X))


def test_weight_exponent_auto_without_held_out_data_or_probabilities_is_one(known):
    X, y, _ = known
    clf = HardMiningClassifier(RowRecorder(), n_rounds=1, validation_fraction=None,
                               random_state=0).fit(X, y)
    assert clf.weight_exponent_ == 1.0 and len(FITS) == 2
    Xs, ys = make_classification(600, weights=[0.85], random_state=0)
    svc = HardMiningClassifier(LinearSVC(), n_rounds=1, random_state=0).fit(Xs, ys)
    assert svc.weight_exponent_ == 1.0 and "weight_exponent_scores" not in svc.history_[0]


def test_rounds_stop_after_n_iter_no_change_rounds_without_improvement(known):
    X, y, _ = known
    falling, calls = falling_scorer()

    kw = dict(n_rounds=5, scoring=falling, weight_exponent=1.0, random_state=0)
    clf = HardMiningClassifier(RowRecorder(), n_iter_no_change=2, **kw).fit(X, y)
    assert [h["round"] for h in clf.history_] == [0, 1, 2] and clf.best_round_ == 0
    calls.clear()
    clf = HardMiningClassifier(RowRecorder(), n_iter_no_change=None, **kw).fit(X, y)
    assert len(clf.history_) == 6


@pytest.mark.parametrize("measure", ["confidence", "log_loss"])
def test_probability_measures_of_a_decision_function_model_are_platt_scaled(measure):
    # LinearSVC has no predict_proba: its decision values are never read as
    # probabilities; they are Platt-scaled on the held-out rows
    X, y = make_classification(2000, weights=[0.9], random_state=0)
    clf = HardMiningClassifier(LinearSVC(), measure=measure, max_negatives=0.2, n_rounds=1,
                               random_state=0).fit(X, y)
    h = clf.history_[1]
    assert h["difficulty_max"] > 0
    if measure == "confidence":
        assert h["difficulty_max"] <= 1.0
    assert not hasattr(clf, "predict_proba")


def test_bootstrap_average_precision_and_the_uniform_draw_needs_a_clear_win():
    from sklearn.metrics import average_precision_score
    from hnm.mining import _bootstrap_ap
    rng = np.random.default_rng(0)
    y = (rng.random(4000) < 0.1).astype(float)
    s = y + rng.standard_normal(y.size)
    boot = _bootstrap_ap(y, np.column_stack([s, s]), np.random.default_rng(1), 300)
    assert abs(boot[:, 0].mean() - average_precision_score(y, s)) < 0.02
    np.testing.assert_array_equal(boot[:, 0], boot[:, 1])  # paired: the same weights

    # the uniform draw of a round wins only by more than the paired standard error
    X, yy = make_classification(3000, weights=[0.9], random_state=0)
    clf = HardMiningClassifier(LogisticRegression(), max_negatives=0.1, random_state=0)
    clf.fit(X, yy)
    c = dict(X_val=X[:600], y_val=yy[:600], rng=np.random.default_rng(0))
    a = LogisticRegression().fit(X[:1500], yy[:1500])
    b = LogisticRegression().fit(X[1500:], yy[1500:])
    tried = [(0.50, 1.0, a, None, None, None, None, 0.2),
             (0.50 + 1e-9, 1.0, b, None, None, None, None, 1.0)]
    assert clf._compete(tried, c)[0][2] is a        # higher by a hair: difficulty stays
    tried[1] = (0.9, *tried[1][1:])
    assert clf._compete(tried, c)[0][2] is b        # far higher: uniform wins
    tried[1] = (0.4, *tried[1][1:])
    assert clf._compete(tried, c)[0][2] is a
