import warnings

import numpy as np
import pytest
from imblearn.under_sampling import NearMiss as ImblearnNearMiss
from scipy import sparse
from sklearn.datasets import make_classification
from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors

from hnm import NearMiss
from hnm._exact_l2 import farthest_l2_float64, nearest_l2_float64


def both(X, y, **params):
    """(hnm's, imbalanced-learn's) fitted samplers and their outputs."""
    ours, ref = NearMiss(**params), ImblearnNearMiss(**params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        out = ours.fit_resample(X, y)
        out_ref = ref.fit_resample(X, y)
    return ours, ref, out, out_ref


def assert_same(X, y, **params):
    ours, ref, (X_res, y_res), (X_ref, y_ref) = both(X, y, **params)
    np.testing.assert_array_equal(ours.sample_indices_, ref.sample_indices_)
    np.testing.assert_array_equal(X_res, X_ref)
    np.testing.assert_array_equal(y_res, y_ref)
    assert ours.sample_indices_.dtype == ref.sample_indices_.dtype
    assert ours.sampling_strategy_ == ref.sampling_strategy_


def classes3(seed, n_features):
    return make_classification(450, n_features=n_features, n_informative=3, n_redundant=0,
                               n_classes=3, weights=[0.6, 0.3, 0.1], random_state=seed)


# n_features 5: scikit-learn's KD-tree (exact distances); 20: its brute GEMM path
@pytest.mark.parametrize("n_features", [5, 20])
@pytest.mark.parametrize("version", [1, 2, 3])
@pytest.mark.parametrize("strategy", ["auto", "all", "majority", "not minority",
                                      "not majority", {0: 60, 1: 50}])
def test_multiclass_every_strategy_identical_to_imblearn(n_features, version, strategy):
    X, y = classes3(n_features, n_features)
    for k in (1, 3):
        assert_same(X, y, version=version, n_neighbors=k, sampling_strategy=strategy)


@pytest.mark.parametrize("version", [1, 2, 3])
@pytest.mark.parametrize("strategy", [0.5, 1.0, "majority",
                                      lambda y: {0: int((y == 1).sum() * 1.5)}])
def test_binary_float_and_callable_strategies_identical(version, strategy):
    X, y = make_classification(400, n_features=8, weights=[0.8], random_state=version)
    assert_same(X, y, version=version, n_neighbors=3, n_neighbors_ver3=4,
                sampling_strategy=strategy)


def tied_data(data, n_features, seed):
    """300 rows of 3 classes with many exact distance ties: integer grid points, or
    normal rows of which 60 are duplicated (also across classes)."""
    rng = np.random.default_rng(seed)
    y = rng.choice(3, 300, p=[0.6, 0.3, 0.1])
    if data == "grid":
        X = rng.integers(0, 3, size=(300, n_features)).astype(float)
    else:
        X = rng.standard_normal((300, n_features))
        X[200:260] = X[:60]
    return X, y


@pytest.mark.parametrize("n_features", [3, 20])
@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("data", ["grid", "duplicates"])
def test_ties_on_a_grid_and_duplicated_rows_identical(n_features, version, data):
    X, y = tied_data(data, n_features, seed=n_features)
    # "all": the minority too, where each sample's nearest is itself (distance 0)
    for k, strategy in ((1, "all"), (2, "all"), (1, "auto"), (3, "auto")):
        assert_same(X, y, version=version, n_neighbors=k, sampling_strategy=strategy)


def test_version3_on_duplicated_majority_rows_identical():
    # duplicates short-listed together tie in the final ranking: smaller index first
    X, y = make_classification(400, n_features=6, weights=[0.85], random_state=3)
    maj = np.flatnonzero(y == 0)
    X[maj[200:260]] = X[maj[:60]]
    assert_same(X, y, version=3, n_neighbors=3, n_neighbors_ver3=3)


# n_features 3: scikit-learn's KD-tree; 20: its brute GEMM path. Either picks its
# own sample where NearMiss-3's n_neighbors_ver3-th nearest ties with the next
@pytest.mark.parametrize("n_features", [3, 20])
@pytest.mark.parametrize("data", ["grid", "duplicates"])
def test_version3_short_list_ties_identical(n_features, data):
    X, y = tied_data(data, n_features, seed=n_features + 1)
    for k, k3, strategy in ((1, 1, "auto"), (3, 3, "all"), (2, 10, "auto")):
        assert_same(X, y, version=3, n_neighbors=k, n_neighbors_ver3=k3,
                    sampling_strategy=strategy)


def near_ties(n_features, seed, offset):
    """Majority samples whose nearest minority samples are equidistant up to
    ~1e-9 relative: below float32's resolution (all the more so after a large
    common offset), above float64's."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((40, n_features)) * 4
    X_min = np.repeat(centres, 2, axis=0)
    X_min[1::2] += rng.standard_normal((40, n_features)) * 1e-9  # near-duplicates
    X_maj = centres[rng.integers(0, 40, 600)] + rng.standard_normal((600, n_features))
    X = np.vstack([X_maj, X_min]) + offset
    y = np.r_[np.zeros(600, int), np.ones(80, int)]
    perm = rng.permutation(y.size)
    return X[perm], y[perm]


@pytest.mark.parametrize("offset", [0.0, 1e3])
@pytest.mark.parametrize("version", [1, 2, 3])
def test_near_ties_below_float32_resolution_identical(version, offset):
    # 10 features: scikit-learn's KD-tree computes the distances exactly as hnm
    # does, so even ties to 1e-9 must come out in the same order
    X, y = near_ties(10, version, offset)
    for k in (1, 2, 3):
        assert_same(X, y, version=version, n_neighbors=k, n_neighbors_ver3=3)


@pytest.mark.parametrize("offset", [0.0, 1e3])
def test_certified_float32_search_exact_at_near_ties(offset):
    # the nearest neighbours and their float64 distances equal a float64 brute
    # force, though float32 cannot tell the near-duplicates apart
    X, y = near_ties(20, 7, offset)
    Q, C = X[y == 0], X[y == 1]
    D = ((Q[:, None, :] - C[None, :, :]) ** 2).sum(-1)
    for k in (1, 2, 5):
        dist, idx = nearest_l2_float64(Q, C, k)
        ref = np.lexsort((np.broadcast_to(np.arange(C.shape[0]), D.shape), D), axis=1)[:, :k]
        np.testing.assert_array_equal(idx, ref)
        np.testing.assert_allclose(dist, np.sqrt(np.take_along_axis(D, ref, axis=1)),
                                   rtol=1e-15, atol=0)
        dist, idx = farthest_l2_float64(Q, C, k)
        ref = np.lexsort((np.broadcast_to(np.arange(C.shape[0]), D.shape), -D), axis=1)[:, :k]
        np.testing.assert_array_equal(idx, ref)
        np.testing.assert_allclose(dist, np.sqrt(np.take_along_axis(D, ref, axis=1)),
                                   rtol=1e-15, atol=0)


def test_float32_and_memmap_input_identical(as_memmap):
    X, y = classes3(7, 20)
    X32 = X.astype(np.float32)
    for version in (1, 2):
        assert_same(X32, y, version=version)
        assert_same(as_memmap(X32), y, version=version)
        assert_same(as_memmap(X), y, version=version)


def test_minority_class_is_the_first_seen_among_equal_counts():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 4))
    y = np.array([2] * 50 + [0] * 50 + [1] * 200)
    for version in (1, 2, 3):
        assert_same(X, y, version=version)


def test_version2_with_more_neighbours_than_minority_samples():
    X, y = make_classification(200, n_features=4, n_informative=2, n_redundant=0,
                               weights=[0.97], flip_y=0, random_state=0)
    assert (y == 1).sum() < 8
    assert_same(X, y, version=2, n_neighbors=8)


def test_version3_warns_like_imblearn_when_fewer_samples_are_returned():
    X, y = make_classification(300, n_features=5, weights=[0.9], random_state=1)
    with pytest.warns(UserWarning, match="larger than the number of samples available"):
        NearMiss(version=3, n_neighbors_ver3=1).fit_resample(X, y)
    with pytest.warns(UserWarning, match="larger than the number of samples available"):
        ImblearnNearMiss(version=3, n_neighbors_ver3=1).fit_resample(X, y)
    assert_same(X, y, version=3, n_neighbors_ver3=1)


def test_neighbours_estimators_are_read_for_their_count():
    X, y = classes3(1, 20)
    base = NearMiss(version=1, n_neighbors=2).fit_resample(X, y)
    for est in (NearestNeighbors(n_neighbors=2), KNeighborsClassifier(n_neighbors=2),
                NearestNeighbors(n_neighbors=2, metric="euclidean", algorithm="kd_tree")):
        got = NearMiss(version=1, n_neighbors=est).fit_resample(X, y)
        np.testing.assert_array_equal(got[0], base[0])
    assert_same(X, y, version=3, n_neighbors=NearestNeighbors(n_neighbors=2),
                n_neighbors_ver3=NearestNeighbors(n_neighbors=4))


@pytest.mark.parametrize("est", [NearestNeighbors(metric="manhattan"),
                                 NearestNeighbors(p=1),
                                 NearestNeighbors(metric="cosine")])
def test_neighbours_estimators_with_another_metric_are_refused(est):
    X, y = classes3(0, 5)
    with pytest.raises(ValueError, match="n_neighbors is a neighbours estimator"):
        NearMiss(n_neighbors=est).fit_resample(X, y)
    with pytest.raises(ValueError, match="n_neighbors_ver3 is a neighbours estimator"):
        NearMiss(version=3, n_neighbors_ver3=est).fit_resample(X, y)


@pytest.mark.parametrize("params, match", [
    (dict(version=4), "version"),
    (dict(version=1.0), "version"),
    (dict(n_neighbors=0), "n_neighbors"),
    (dict(n_neighbors="3"), "n_neighbors"),
    (dict(n_neighbors_ver3=0), "n_neighbors_ver3"),
    (dict(n_jobs=0), "n_jobs"),
    (dict(sampling_strategy="most"), "sampling_strategy"),
])
def test_bad_parameters_raise_naming_them(params, match):
    X, y = classes3(0, 5)
    with pytest.raises(ValueError, match=match):
        NearMiss(**params).fit_resample(X, y)


def test_bad_inputs_raise():
    X, y = classes3(0, 5)
    n_min = (y == 2).sum()
    with pytest.raises(ValueError, match=f"n_neighbors={n_min + 1} .* minority class"):
        NearMiss(n_neighbors=n_min + 1).fit_resample(X, y)
    with pytest.raises(ValueError, match="n_neighbors_ver3=1000 .* class"):
        NearMiss(version=3, n_neighbors_ver3=1000).fit_resample(X, y)
    with pytest.raises(TypeError, match="dense X"):
        NearMiss().fit_resample(sparse.csr_matrix(X), y)
    Xn = X.copy()
    Xn[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        NearMiss().fit_resample(Xn, y)
    with pytest.raises(ValueError, match="continuous"):
        NearMiss().fit_resample(X, np.linspace(0, 1, y.size))


def test_inputs_are_not_modified_and_pandas_round_trips():
    pd = pytest.importorskip("pandas")
    X, y = classes3(2, 6)
    X0, y0 = X.copy(), y.copy()
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(6)])
    X_res, y_res = NearMiss(version=2).fit_resample(df, pd.Series(y, name="t"))
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(y, y0)
    assert list(X_res.columns) == list(df.columns) and y_res.name == "t"
    ref = ImblearnNearMiss(version=2)
    ref.fit_resample(X, y)
    np.testing.assert_array_equal(X_res.to_numpy(), X[ref.sample_indices_])
