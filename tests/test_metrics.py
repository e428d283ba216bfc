import numpy as np
import pytest
from hypothesis import given, strategies as st
from sklearn.metrics import average_precision_score, precision_score, recall_score

import refs_metrics
from hnm.metrics import feature_diagnosis, hard_case_report


@pytest.fixture
def binary(rng):
    y = rng.integers(0, 2, 500)
    s = np.clip(0.5 * y + 0.25 + 0.3 * rng.standard_normal(500), 0, 1)
    return y, s


def test_segments_match_sklearn_metrics(binary):
    y, s = binary
    report = hard_case_report(y, s, threshold=0.5, near_threshold=0.1, hard_fraction=0.2)
    by = {r["segment"]: r for r in report}
    assert by["all"]["precision"] == pytest.approx(precision_score(y, s >= 0.5))
    assert by["all"]["recall"] == pytest.approx(recall_score(y, s >= 0.5))
    assert by["all"]["average_precision"] == pytest.approx(average_precision_score(y, s))
    near = np.abs(s - 0.5) <= 0.1
    assert by["near threshold"]["n"] == near.sum()
    assert by["near threshold"]["recall"] == pytest.approx(recall_score(y[near], s[near] >= 0.5))
    assert by["far from threshold"]["n"] == (~near).sum()
    assert by["hard"]["n"] == 100 and by["rest"]["n"] == 400
    fp = np.sum((s >= 0.5) & (y == 0))
    assert by["all"]["fpr"] == pytest.approx(fp / np.sum(y == 0))
    # the default hard cases are the ones on the wrong side, by distance from the threshold
    assert by["hard"]["accuracy"] < by["rest"]["accuracy"]


def test_hard_segment_from_difficulty_or_indices(binary):
    y, s = binary
    d = np.arange(y.size, dtype=float)
    r1 = hard_case_report(y, s, difficulty=d, hard_fraction=0.1)
    r2 = hard_case_report(y, s, hard_indices=np.arange(450, 500))
    assert r1[1] == r2[1]
    assert "segment" in str(r1) and "near threshold" in str(r1)


def test_undefined_metrics_are_none():
    report = hard_case_report([0, 0, 1], [0.1, 0.2, 0.9], hard_indices=[0])
    hard = report[1]
    assert hard["recall"] is None and hard["average_precision"] is None
    assert "-" in str(report)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(y_true=[0, 1, 2], y_score=[0.1, 0.2, 0.3]), ValueError, "binary"),
    (dict(y_true=[0, 1], y_score=[0.1, 0.2, 0.3]), ValueError, "length of y_score"),
    (dict(y_true=[0, 1], y_score=[0.1, np.nan]), ValueError, "y_score contains NaN"),
    (dict(y_true=[0, 1], y_score=[0.1, 0.2], near_threshold=0), ValueError,
     "near_threshold must be a finite number > 0"),
    (dict(y_true=[0, 1], y_score=[0.1, 0.2], hard_indices=[2]), ValueError, "must lie in"),
    (dict(y_true=[0, 1], y_score=[0.1, 0.2], hard_indices=[0], difficulty=[1, 2]),
     ValueError, "at most one"),
    (dict(y_true=[0, 1], y_score=[0.1, 0.2], hard_fraction=0), ValueError, "hard_fraction"),
])
def test_report_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        hard_case_report(**kwargs)


def test_feature_diagnosis_finds_the_confusing_feature(rng, as_memmap):
    y = np.r_[np.zeros(600, int), np.ones(200, int)]
    X = rng.standard_normal((800, 4))
    X[y == 1, 2] += 4.0        # feature 2 separates the classes
    X[y == 1, 0] += 4.0        # and so does feature 0...
    X[:50, 2] += 4.0           # ...but the 50 hard negatives look positive on feature 2
    report = feature_diagnosis(as_memmap(X), y, np.arange(50), feature_names=list("abcd"))
    assert report[0]["feature"] == "c"
    assert abs(report[0]["smd_hard_vs_pos"]) < 0.5 < abs(report[0]["smd_hard_vs_easy"])
    ref = (X[:50, 2].mean() - X[50:600, 2].mean()) / np.sqrt(
        (X[:50, 2].var() + X[50:600, 2].var()) / 2)
    assert report[0]["smd_hard_vs_easy"] == pytest.approx(ref)
    assert len(feature_diagnosis(X, y, np.arange(50), k=2)) == 2
    assert len(feature_diagnosis(X, y, np.arange(50), k=9)) == 4  # k beyond the features


@pytest.mark.parametrize("hard, kwargs, match", [
    ([], {}, "non-empty"),
    ([700], {}, "examples labelled negative_label"),
    ([900], {}, "must lie in"),
    ([0], dict(feature_names=["a"]), "feature_names must have 4"),
])
def test_feature_diagnosis_bad_arguments(rng, hard, kwargs, match):
    y = np.r_[np.zeros(600, int), np.ones(200, int)]
    with pytest.raises(ValueError, match=match):
        feature_diagnosis(rng.standard_normal((800, 4)), y, np.array(hard, dtype=int), **kwargs)


def test_string_labels_with_the_default_pos_label_raise(binary):
    y, s = binary
    y_str = np.where(y == 1, "yes", "no")
    with pytest.raises(ValueError, match=r"pos_label=1 is not a label of y_true "
                                         r"\(labels present: 'no', 'yes'\)"):
        hard_case_report(y_str, s)
    # with the right pos_label the report equals the integer one
    assert hard_case_report(y_str, s, pos_label="yes") == hard_case_report(y, s)


@pytest.mark.parametrize("y, pos_label", [(["no", "no"], 1), ([0, 1], "1")])
def test_pos_label_of_another_kind_raises(y, pos_label):
    with pytest.raises(ValueError, match="pos_label="):
        hard_case_report(np.array(y), np.array([0.2, 0.7]), pos_label=pos_label)


def test_one_class_subset_without_positives_is_allowed():
    report = hard_case_report(np.array([0, 0, 0]), np.array([0.2, 0.7, 0.1]))
    assert report[0]["n_pos"] == 0 and report[0]["fpr"] == pytest.approx(1 / 3)


def test_feature_diagnosis_string_labels_name_negative_label(rng):
    y = np.r_[np.full(600, "neg"), np.full(200, "pos")]
    X = rng.standard_normal((800, 3))
    with pytest.raises(ValueError, match=r"negative_label=0; y has labels 'neg', 'pos', "
                                         r"without 0: pass negative_label"):
        feature_diagnosis(X, y, np.arange(10))
    ints = feature_diagnosis(X, (y == "pos").astype(int), np.arange(10))
    assert feature_diagnosis(X, y, np.arange(10), negative_label="neg") == ints


def test_feature_diagnosis_uses_dataframe_column_names(rng):
    pd = pytest.importorskip("pandas")
    y = np.r_[np.zeros(300, int), np.ones(100, int)]
    X = rng.standard_normal((400, 3))
    X[y == 1, 1] += 3
    X[:20, 1] += 3
    df = pd.DataFrame(X, columns=["age", "income", "tenure"])
    report = feature_diagnosis(df, y, np.arange(20))
    assert report[0]["feature"] == "income"
    assert sorted(r["feature"] for r in report) == ["age", "income", "tenure"]
    # explicit names still win
    assert feature_diagnosis(df, y, np.arange(20), feature_names=list("abc"))[0]["feature"] == "b"


@given(n=st.integers(1, 120), seed=st.integers(0, 2**16), hard=st.sampled_from(
    ["margin", "difficulty", "indices"]), near=st.sampled_from([0.05, 0.25, 1.0]))
def test_report_matches_the_numpy_reference(n, seed, hard, near):
    rng = np.random.default_rng(seed)
    s = np.round(rng.random(n) * 8) / 8          # ties on the threshold and the band edges
    y = (rng.random(n) < s).astype(int)
    kw = {"difficulty": dict(difficulty=rng.integers(-3, 4, n).astype(float)),
          "indices": dict(hard_indices=rng.choice(n, size=(n + 1) // 2, replace=False)),
          "margin": {}}[hard]
    got = hard_case_report(y, s, near_threshold=near, hard_fraction=0.3, **kw)
    expected = refs_metrics.hard_case_report(y, s, near_threshold=near, hard_fraction=0.3, **kw)
    assert [r.keys() for r in got] == [e.keys() for e in expected]
    for g, e in zip(got, expected):
        for key, ev in e.items():
            assert g[key] == (ev if ev is None or isinstance(ev, str) else pytest.approx(ev))


@given(seed=st.integers(0, 2**16), k=st.sampled_from([None, 1, 3, 10]))
def test_feature_diagnosis_matches_the_numpy_reference(seed, k):
    rng = np.random.default_rng(seed)
    y = (rng.random(90) < 0.3).astype(int)
    y[:2] = [1, 0]
    X = rng.standard_normal((90, 5)) * rng.choice([1e-3, 1.0, 1e6], 5) + 1e3
    negatives = np.flatnonzero(y == 0)
    hard = rng.choice(negatives[1:], size=min(10, negatives.size - 1), replace=False)
    got = feature_diagnosis(X, y, hard, k=k)
    expected = refs_metrics.feature_diagnosis(X, y, hard, k=k)
    assert len(got) == len(expected)
    by_name = {r["feature"]: r for r in got}
    for e in expected:
        for key in ("smd_hard_vs_pos", "smd_hard_vs_easy", "smd_easy_vs_pos", "confusability"):
            assert by_name[e["feature"]][key] == pytest.approx(e[key], rel=1e-6, abs=1e-9)
