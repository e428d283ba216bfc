import pickle
from collections import Counter

import numpy as np
import pytest
import sklearn
from imblearn.pipeline import make_pipeline
from imblearn.under_sampling import NearMiss
from scipy import sparse
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_predict
from sklearn.base import clone

import refs_selection as refs
from hnm import HardNegativeResampler, difficulty


@pytest.fixture
def imbalanced():
    return make_classification(3000, n_features=10, weights=[0.9], flip_y=0.0, random_state=0)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("strategy", ["auto", "all", "majority", 0.5, {0: 300}])
@pytest.mark.parametrize("n_neighbors", [1, 3, 7])
def test_nearmiss_selects_exactly_what_imblearn_selects(seed, strategy, n_neighbors):
    n_classes = 2 if isinstance(strategy, float) or strategy == {0: 300} else 3
    X, y = make_classification(1500, n_features=12, n_informative=6, n_classes=n_classes,
                               weights=[0.7, 0.3] if n_classes == 2 else [0.6, 0.3, 0.1],
                               random_state=seed)
    ref = NearMiss(version=1, n_neighbors=n_neighbors, sampling_strategy=strategy)
    ref.fit_resample(X, y)
    ours = HardNegativeResampler(difficulty="nearmiss", n_neighbors=n_neighbors,
                                 sampling_strategy=strategy, noise_fraction=0.0,
                                 easy_ratio=0.0)
    X_res, y_res = ours.fit_resample(X, y)
    np.testing.assert_array_equal(ours.sample_indices_, ref.sample_indices_)
    np.testing.assert_array_equal(X_res, X[ref.sample_indices_])


@pytest.mark.parametrize("n_features", [3, 40])  # imblearn's kd-tree and brute paths
@pytest.mark.parametrize("n_neighbors", [1, 3])
def test_nearmiss_matches_imblearn_on_tied_and_duplicated_points(n_features, n_neighbors):
    rng = np.random.default_rng(n_features)
    X = rng.integers(0, 3, size=(600, n_features)).astype(float)  # many exact ties
    X[300:340] = X[:40]  # duplicated rows
    y = (rng.random(600) < 0.2).astype(int)
    ref = NearMiss(version=1, n_neighbors=n_neighbors).fit(X, y)
    ref.fit_resample(X, y)
    ours = HardNegativeResampler(difficulty="nearmiss", n_neighbors=n_neighbors,
                                 noise_fraction=0.0, easy_ratio=0.0)
    ours.fit_resample(X, y)
    np.testing.assert_array_equal(ours.sample_indices_, ref.sample_indices_)


def test_model_difficulty_is_out_of_fold_and_keeps_the_hardest(imbalanced):
    X, y = imbalanced
    sampler = HardNegativeResampler(noise_fraction=0.0, easy_ratio=0.0, cv=5)
    X_res, y_res = sampler.fit_resample(X, y)
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline as sk_pipeline
    from sklearn.preprocessing import StandardScaler
    proba = cross_val_predict(sk_pipeline(StandardScaler(with_mean=False),
                                          LogisticRegression(max_iter=1000)),
                              X, y, cv=StratifiedKFold(5), method="predict_proba")
    d = difficulty(y, proba)
    neg = np.flatnonzero(y == 0)
    np.testing.assert_array_equal(sampler.sample_indices_, refs.resample_indices(y, d))
    np.testing.assert_allclose(sampler.sample_difficulty_[neg], d[neg])
    assert Counter(y_res) == {0: (y == 1).sum(), 1: (y == 1).sum()}
    assert set(sampler.reason_[y_res == 1]) == {"kept class"}
    assert np.isnan(sampler.difficulty_[y_res == 1]).all()


def test_guards_and_blend(imbalanced):
    X, y = imbalanced
    d = np.random.default_rng(0).random(y.size)
    n_pos = (y == 1).sum()
    sampler = HardNegativeResampler(noise_fraction=0.1, band=(5, None), easy_ratio=1.0,
                                    random_state=0)
    sampler.fit_resample(X, y, sample_difficulty=d)
    neg = np.flatnonzero(y == 0)
    ranked = neg[refs.ranking(d[neg])]
    n_noise = int(0.1 * neg.size)
    hard = sampler.sample_indices_[sampler.reason_ == "hard"]
    easy = sampler.sample_indices_[sampler.reason_ == "easy"]
    n_hard = round(n_pos / 2)
    np.testing.assert_array_equal(hard, ranked[n_noise + 5:n_noise + 5 + n_hard])
    assert easy.size == n_pos - n_hard and not np.isin(easy, hard).any()
    np.testing.assert_allclose(sampler.difficulty_[sampler.reason_ == "hard"], d[hard])


@pytest.mark.parametrize("noise_fraction, band", [(0.0, (0, None)), (0.1, (5, None)),
                                                  (0.02, (30, 400)), (0.3, (0, 10**6))])
def test_hardest_only_is_the_reference_band(imbalanced, noise_fraction, band):
    X, y = imbalanced
    d = np.random.default_rng(7).integers(0, 50, y.size).astype(float)  # many ties
    sampler = HardNegativeResampler(noise_fraction=noise_fraction, band=band, easy_ratio=0.0)
    sampler.fit_resample(X, y, sample_difficulty=d)
    np.testing.assert_array_equal(
        sampler.sample_indices_, refs.resample_indices(y, d, noise_fraction=noise_fraction,
                                                       band=band))


@pytest.mark.parametrize("selection", ["hardest", "sample", "importance"])
def test_band_is_the_window_of_ranks_the_negatives_come_from(imbalanced, selection):
    X, y = imbalanced
    d = np.random.default_rng(6).random(y.size)
    neg = np.flatnonzero(y == 0)
    ranked = neg[refs.ranking(d[neg])]
    n_noise = int(0.05 * neg.size)
    n_keep = (y == 1).sum()
    n_hard = n_keep if selection == "importance" else round(n_keep / 4)
    band = (40, 40 + 3 * n_keep)
    sampler = HardNegativeResampler(noise_fraction=0.05, band=band, easy_ratio=3.0,
                                    selection=selection, random_state=0)
    sampler.fit_resample(X, y, sample_difficulty=d)
    window = ranked[n_noise + band[0]:n_noise + band[1]]
    chosen = sampler.sample_indices_[np.isin(sampler.reason_, ["hard", "drawn"])]
    assert chosen.size == n_hard and np.isin(chosen, window).all()
    if selection == "hardest":
        np.testing.assert_array_equal(chosen, window[:n_hard])
    kept_neg = sampler.sample_indices_[y[sampler.sample_indices_] == 0]
    assert kept_neg.size == n_keep and np.unique(kept_neg).size == n_keep
    # a stop beyond the class is cut there; a window smaller than the need raises
    wide = HardNegativeResampler(noise_fraction=0.05, band=(0, 10**9), selection=selection,
                                 random_state=0)
    wide.fit_resample(X, y, sample_difficulty=d)
    whole = clone(wide).set_params(band=(0, None))
    whole.fit_resample(X, y, sample_difficulty=d)
    np.testing.assert_array_equal(wide.sample_indices_, whole.sample_indices_)
    late = neg.size - n_noise - n_hard + 1
    with pytest.raises(ValueError, match=rf"band=\({late}, None\) holds {n_hard - 1} of the "
                                         rf"{neg.size - n_noise} examples of class 0 .* "
                                         rf"needs {n_hard}"):
        clone(sampler).set_params(band=(late, None)).fit_resample(X, y, sample_difficulty=d)


@pytest.mark.parametrize("band, exc, match", [
    ((-1, None), ValueError, "band start must be >= 0"),
    ((5, 5), ValueError, "band must have start < stop"),
    ((0, 2.5), TypeError, "band stop must be an integer"),
    ([0, None], ValueError, "'band' parameter"),
    ((1, 2, 3), TypeError, "band must be a \\(start, stop\\) pair"),
])
def test_bad_band_is_refused_before_any_scoring(imbalanced, band, exc, match, monkeypatch):
    import hnm.resampling
    X, y = imbalanced

    def no_scoring(*args, **kwargs):
        raise AssertionError("scored before validating band")

    monkeypatch.setattr(hnm.resampling, "cross_val_predict", no_scoring)
    with pytest.raises(exc, match=match):
        HardNegativeResampler(band=band).fit_resample(X, y)


def test_n_jobs_is_threads_and_n_processes_the_cross_val_predict_workers(imbalanced,
                                                                         monkeypatch):
    import hnm.resampling
    X, y = imbalanced
    seen = {}
    real_cvp, real_difficulty = hnm.resampling.cross_val_predict, hnm.resampling._difficulty

    def cvp(*args, n_jobs=None, **kwargs):
        seen["processes"] = n_jobs
        return real_cvp(*args, **kwargs)

    def scored(*args, n_jobs=None, **kwargs):
        seen["threads"] = n_jobs
        return real_difficulty(*args, n_jobs=n_jobs, **kwargs)

    monkeypatch.setattr(hnm.resampling, "cross_val_predict", cvp)
    monkeypatch.setattr(hnm.resampling, "_difficulty", scored)
    a = HardNegativeResampler(n_jobs=1, n_processes=3, random_state=0)
    a.fit_resample(X, y)
    assert seen == {"processes": 3, "threads": 1}
    b = HardNegativeResampler(n_jobs=2, random_state=0)
    b.fit_resample(X, y)
    assert seen == {"processes": None, "threads": 2}
    np.testing.assert_array_equal(a.sample_indices_, b.sample_indices_)
    with pytest.raises(ValueError, match="n_processes"):
        HardNegativeResampler(n_processes=0).fit_resample(X, y)


def test_noise_guarded_examples_are_never_kept_even_as_easy(imbalanced):
    X, y = imbalanced
    d = np.random.default_rng(1).random(y.size)
    neg = np.flatnonzero(y == 0)
    guarded = neg[refs.ranking(d[neg])][: int(0.3 * neg.size)]
    for kwargs in (dict(easy_ratio=50.0), dict(selection="sample", easy_ratio=3.0),
                   dict(expand_neighbors=3, easy_ratio=1.0)):
        sampler = HardNegativeResampler(noise_fraction=0.3, random_state=0, **kwargs)
        _, y_res = sampler.fit_resample(X, y, sample_difficulty=d)
        assert not np.isin(guarded, sampler.sample_indices_).any(), kwargs
        np.testing.assert_array_equal(sampler.noise_indices_, guarded)
        assert (y_res == 0).sum() == (y == 1).sum()


def test_a_target_above_the_guard_takes_the_least_hard_guarded_examples(imbalanced):
    X, y = imbalanced
    d = np.random.default_rng(2).random(y.size)
    neg = np.flatnonzero(y == 0)
    ranked = neg[refs.ranking(d[neg])]
    n_keep = neg.size - 10
    sampler = HardNegativeResampler(sampling_strategy={0: n_keep}, noise_fraction=0.2,
                                    easy_ratio=1.0, random_state=0)
    _, y_res = sampler.fit_resample(X, y, sample_difficulty=d)
    assert (y_res == 0).sum() == n_keep
    # only the 10 hardest (the guard shrunk to what the target allows) are left out
    np.testing.assert_array_equal(np.setdiff1d(neg, sampler.sample_indices_),
                                  np.sort(ranked[:10]))
    np.testing.assert_array_equal(sampler.noise_indices_, ranked[:10])


def test_precomputed_difficulty_overrides_the_difficulty_source(imbalanced):
    X, y = imbalanced
    d = np.arange(y.size, dtype=float)  # later rows are harder
    sampler = HardNegativeResampler(difficulty="nearmiss", noise_fraction=0.0,
                                    easy_ratio=0.0)
    sampler.fit_resample(X, y, sample_difficulty=d)
    neg = np.flatnonzero(y == 0)
    np.testing.assert_array_equal(sampler.sample_indices_[y[sampler.sample_indices_] == 0],
                                  neg[::-1][: (y == 1).sum()])
    # difficulty is reported for the under-sampled class only
    assert np.isnan(sampler.sample_difficulty_[y == 1]).all()
    np.testing.assert_array_equal(sampler.sample_difficulty_[neg], d[neg])
    with pytest.raises(TypeError, match="sample_difficulty"):
        sampler.fit_resample(X, y, sample_difficulty=np.array(["a"] * y.size))


def test_precomputed_difficulty_through_an_imblearn_pipeline(imbalanced):
    X, y = imbalanced
    d = np.random.default_rng(3).random(y.size)
    # imblearn's Pipeline passes fit_resample parameters only through metadata routing
    with sklearn.config_context(enable_metadata_routing=True):
        sampler = HardNegativeResampler(random_state=0).set_fit_resample_request(
            sample_difficulty=True)
        pipe = make_pipeline(sampler, LogisticRegression()).fit(X, y, sample_difficulty=d)
    alone = HardNegativeResampler(random_state=0)
    alone.fit_resample(X, y, sample_difficulty=d)
    np.testing.assert_array_equal(pipe[0].sample_indices_, alone.sample_indices_)


def test_sampling_selection_is_reproducible(imbalanced):
    X, y = imbalanced
    a = HardNegativeResampler(selection="sample", temperature=0.5, random_state=1)
    b = clone(a)
    a.fit_resample(X, y)
    b.fit_resample(X, y)
    np.testing.assert_array_equal(a.sample_indices_, b.sample_indices_)


def test_distance_difficulty_and_expansion(imbalanced):
    X, y = imbalanced
    sampler = HardNegativeResampler(difficulty="distance", n_neighbors=2, expand_neighbors=2,
                                    easy_ratio=1.0, noise_fraction=0.0, random_state=0)
    X_res, y_res = sampler.fit_resample(X, y)
    neg = np.flatnonzero(y == 0)
    pos = X[y == 1]
    dist = np.sqrt(((X[neg][:, None, :] - pos[None]) ** 2).sum(-1))
    closeness = -np.sort(dist, axis=1)[:, :2].sum(axis=1)
    np.testing.assert_allclose(sampler.sample_difficulty_[neg], closeness, rtol=1e-9)
    # the budget holds: expansions share the hard half
    assert Counter(y_res) == {0: (y == 1).sum(), 1: (y == 1).sum()}
    reasons = Counter(sampler.reason_[y_res == 0])
    assert reasons["expansion"] > 0 and reasons["hard"] + reasons["expansion"] == round(
        (y == 1).sum() / 2)
    # each expansion is one of the 2 nearest negatives of a kept hard example
    hard = sampler.sample_indices_[sampler.reason_ == "hard"]
    D = ((X[hard][:, None, :] - X[neg][None]) ** 2).sum(-1)
    D[np.arange(hard.size), np.searchsorted(neg, hard)] = np.inf  # not itself
    two_nearest = neg[np.argsort(D, axis=1, kind="stable")[:, :2]]
    for e in sampler.sample_indices_[sampler.reason_ == "expansion"]:
        assert (two_nearest == e).any()
    assert np.unique(sampler.sample_indices_).size == sampler.sample_indices_.size


def test_pandas_in_pandas_out_and_sparse(imbalanced):
    pd = pytest.importorskip("pandas")
    X, y = imbalanced
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    s = pd.Series(y, name="target")
    X_res, y_res = HardNegativeResampler(random_state=0).fit_resample(df, s)
    assert isinstance(X_res, pd.DataFrame) and list(X_res.columns) == list(df.columns)
    assert isinstance(y_res, pd.Series) and y_res.name == "target"
    Xs, ys = HardNegativeResampler(random_state=0).fit_resample(sparse.csr_matrix(X), y)
    assert sparse.issparse(Xs) and Xs.shape[0] == ys.shape[0]
    for kwargs in (dict(difficulty="nearmiss"), dict(difficulty="distance"),
                   dict(expand_neighbors=2)):
        sampler = HardNegativeResampler(**kwargs)
        assert not sampler.__sklearn_tags__().input_tags.sparse
        with pytest.raises(TypeError, match="needs dense X"):
            sampler.fit_resample(sparse.csr_matrix(X), y)
    assert HardNegativeResampler().__sklearn_tags__().input_tags.sparse


def test_in_imblearn_pipeline_grid_search_and_pickle(imbalanced):
    X, y = imbalanced
    pipe = make_pipeline(HardNegativeResampler(random_state=0), LogisticRegression())
    grid = GridSearchCV(pipe, {"hardnegativeresampler__easy_ratio": [0.0, 1.0]}, cv=3,
                        scoring="average_precision").fit(X, y)
    assert grid.best_score_ > 0.5
    again = pickle.loads(pickle.dumps(grid.best_estimator_))
    np.testing.assert_array_equal(again.predict(X), grid.best_estimator_.predict(X))


def test_dtypes_preserved_and_input_untouched(imbalanced):
    X, y = imbalanced
    X32 = X.astype(np.float32)
    X0 = X32.copy()
    X_res, _ = HardNegativeResampler(difficulty="nearmiss").fit_resample(X32, y)
    assert X_res.dtype == np.float32
    np.testing.assert_array_equal(X32, X0)


@pytest.mark.parametrize("kwargs, fit_kwargs, exc, match", [
    (dict(difficulty="knn"), {}, ValueError, "difficulty"),
    (dict(noise_fraction=1.0), {}, ValueError, "noise_fraction"),
    (dict(easy_ratio=-1), {}, ValueError, "easy_ratio"),
    (dict(n_neighbors=0), {}, ValueError, "n_neighbors"),
    (dict(), dict(sample_difficulty=np.ones(5)), ValueError, "sample_difficulty must have"),
    (dict(), dict(sample_difficulty=np.full(3000, np.nan)), ValueError, "NaN"),
])
def test_bad_arguments(imbalanced, kwargs, fit_kwargs, exc, match):
    X, y = imbalanced
    with pytest.raises(exc, match=match):
        HardNegativeResampler(**kwargs).fit_resample(X, y, **fit_kwargs)


def test_single_class_and_continuous_targets_are_refused():
    X = np.random.default_rng(0).standard_normal((20, 2))
    with pytest.raises(ValueError):
        HardNegativeResampler().fit_resample(X, np.zeros(20))
    with pytest.raises(ValueError, match="continuous|Unknown label type"):
        HardNegativeResampler().fit_resample(X, np.linspace(0, 1, 20))


# ------------------------------------------------ estimated guard and weights
from hnm.noise import find_label_issues, find_label_issues_knn  # noqa: E402
from hnm.resampling import ResampledClassifier  # noqa: E402


def test_auto_guard_is_confident_learning_on_the_out_of_fold_probabilities(imbalanced):
    X, y = imbalanced
    rng = np.random.default_rng(0)
    y = np.where(rng.random(y.size) < 0.05, 1 - y, y)
    sampler = HardNegativeResampler(random_state=0, cv=5)
    sampler.fit_resample(X, y)
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline as sk_pipeline
    from sklearn.preprocessing import StandardScaler
    proba = cross_val_predict(sk_pipeline(StandardScaler(with_mean=False),
                                          LogisticRegression(max_iter=1000)),
                              X, y, cv=StratifiedKFold(5), method="predict_proba")
    issues = find_label_issues(y, proba)
    expected = issues.indices[y[issues.indices] == 0]
    assert expected.size > 0
    np.testing.assert_array_equal(np.sort(sampler.noise_indices_), np.sort(expected))
    assert not np.isin(expected, sampler.sample_indices_).any()


def test_auto_guard_uses_neighbours_without_a_model(imbalanced):
    X, y = imbalanced
    sampler = HardNegativeResampler(difficulty="nearmiss", random_state=0)
    sampler.fit_resample(X, y)
    knn = find_label_issues_knn(X, y, n_neighbors=3)
    np.testing.assert_array_equal(np.sort(sampler.noise_indices_),
                                  np.sort(knn.indices[y[knn.indices] == 0]))
    d = np.random.default_rng(0).random(y.size)
    with pytest.warns(UserWarning, match="no noise guard"):
        s = HardNegativeResampler(random_state=0)
        s.fit_resample(sparse.csr_matrix(X), y, sample_difficulty=d)
    assert s.noise_indices_.size == 0


@pytest.mark.parametrize("kwargs", [dict(), dict(noise_fraction=0.05, easy_ratio=3.0),
                                    dict(expand_neighbors=2, noise_fraction=0.0)])
def test_sample_weight_is_the_inverse_probability_of_being_kept(imbalanced, kwargs):
    X, y = imbalanced
    d = np.random.default_rng(4).random(y.size)
    sampler = HardNegativeResampler(random_state=0, **kwargs)
    sampler.fit_resample(X, y, sample_difficulty=d)
    w, why = sampler.sample_weight_, sampler.reason_
    assert w.shape == sampler.sample_indices_.shape
    np.testing.assert_array_equal(w[why != "easy"], 1.0)
    n_neg = (y == 0).sum()
    n_taken = (why == "hard").sum() + (why == "expansion").sum() + sampler.noise_indices_.size
    np.testing.assert_allclose(w[why == "easy"], (n_neg - n_taken) / (why == "easy").sum())
    # the kept negatives stand for every negative the guard let through
    neg = y[sampler.sample_indices_] == 0
    assert w[neg].sum() == pytest.approx(n_neg - sampler.noise_indices_.size)


def test_importance_selection_weights_are_exact(imbalanced):
    X, y = imbalanced
    d = np.random.default_rng(5).random(y.size)
    sampler = HardNegativeResampler(selection="importance", noise_fraction=0.0,
                                    random_state=0)
    sampler.fit_resample(X, y, sample_difficulty=d)
    neg = np.flatnonzero(y == 0)
    k = (y == 1).sum()
    boost = d[neg] - d[neg].min()
    pi = k * (0.2 / neg.size + 0.8 * boost / boost.sum())
    assert pi.max() < 1
    kept = y[sampler.sample_indices_] == 0
    at = np.searchsorted(neg, sampler.sample_indices_[kept])
    np.testing.assert_allclose(sampler.sample_weight_[kept], 1 / pi[at])
    assert set(sampler.reason_[kept]) == {"drawn"}


def test_resampled_classifier_fits_with_the_weights_in_sklearn_pipelines(imbalanced):
    X, y = imbalanced
    seen = []

    class Spy(LogisticRegression):
        def fit(self, X, y, sample_weight=None):
            seen.append(sample_weight)
            return super().fit(X, y, sample_weight=sample_weight)

    from sklearn.pipeline import make_pipeline as sk_pipeline
    from sklearn.preprocessing import StandardScaler
    sampler = HardNegativeResampler(random_state=0)
    clf = sk_pipeline(StandardScaler(), ResampledClassifier(sampler, Spy()))
    clf.fit(X, y)
    fitted = clf[-1]
    np.testing.assert_array_equal(seen[-1], fitted.sampler_.sample_weight_)
    assert seen[-1].max() > 1
    grid = GridSearchCV(ResampledClassifier(sampler, LogisticRegression()),
                        {"use_weights": [True, False]}, cv=3,
                        scoring="average_precision").fit(X, y)
    assert grid.best_score_ > 0.5
    from imblearn.under_sampling import RandomUnderSampler
    ResampledClassifier(RandomUnderSampler(random_state=0), LogisticRegression()).fit(X, y)

    class NoWeights(LogisticRegression):
        def fit(self, X, y):
            return super().fit(X, y)

    with pytest.raises(ValueError, match="use_weights=False"):
        ResampledClassifier(sampler, NoWeights()).fit(X, y)


def test_dataframe_columns_and_nan_reach_the_estimator(imbalanced):
    pd = pytest.importorskip("pandas")
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import make_pipeline as sk_pipeline
    from sklearn.preprocessing import StandardScaler
    X, y = imbalanced
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    pre = ColumnTransformer([("num", StandardScaler(), ["f0", "f1", "f2", "f3"])])
    sampler = HardNegativeResampler(estimator=sk_pipeline(pre, LogisticRegression()),
                                    random_state=0)
    X_res, _ = sampler.fit_resample(df, y)
    assert list(X_res.columns) == list(df.columns)
    X_nan = X.copy()
    X_nan[::7, 2] = np.nan
    sampler = HardNegativeResampler(estimator=HistGradientBoostingClassifier(max_iter=20),
                                    random_state=0)
    X_res, y_res = sampler.fit_resample(X_nan, y)
    assert np.isnan(X_res).any() and (y_res == 0).sum() == (y == 1).sum()
    with pytest.raises(ValueError, match="NaN"):
        HardNegativeResampler(difficulty="nearmiss").fit_resample(X_nan, y)
