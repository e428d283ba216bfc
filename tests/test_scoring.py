import warnings

import numpy as np
import pytest
from hypothesis import given, strategies as st
from sklearn.metrics import hinge_loss, log_loss
from threadpoolctl import threadpool_limits

import hnm
import refs_scoring
from hnm import difficulty


@pytest.fixture(params=["avx512", "16-byte vectors"])
def kernel_path(request):
    """Both margin kernels: AVX-512 (where the CPU has it) and the portable one."""
    from hnm import _scoring

    if request.param == "avx512" and not _scoring.AVX512_SUPPORTED:
        pytest.skip("this CPU has no AVX-512")
    before = _scoring.use_avx512(request.param == "avx512")
    yield request.param
    _scoring.use_avx512(before)


def probabilities(n, C, dtype, seed):
    rng = np.random.default_rng(seed)
    P = rng.random((n, C)) ** 3
    P /= P.sum(axis=1, keepdims=True)
    return P.astype(dtype)


@given(n=st.integers(0, 300), C=st.integers(2, 40),
       dtype=st.sampled_from([np.float32, np.float64]),
       measure=st.sampled_from(hnm.scoring.MEASURES), data=st.data())
def test_matrix_scores_match_reference(n, C, dtype, measure, data, kernel_path):
    seed = data.draw(st.integers(0, 2**16))
    P = probabilities(n, C, dtype, seed)
    if data.draw(st.booleans()):
        P[: n // 3] = P[: n // 3].round(1)  # ties between columns
        P[: n // 3] /= P[: n // 3].sum(axis=1, keepdims=True)
    y = np.random.default_rng(seed).integers(0, C, n)
    chunk = data.draw(st.integers(1, 500))
    threads = data.draw(st.sampled_from([1, 2]))
    n_jobs = data.draw(st.sampled_from([None, 1, 3]))
    with threadpool_limits(threads, user_api="openmp"):
        got = difficulty(y, P, measure=measure, labels=np.arange(C), chunk_size=chunk,
                         n_jobs=n_jobs)
    assert got.dtype == dtype and got.shape == (n,)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, refs_scoring.difficulty(y, P, measure, labels=np.arange(C)),
                               rtol=tol, atol=tol)


@given(n=st.integers(1, 200), C=st.integers(2, 40),
       dtype=st.sampled_from([np.float32, np.float64]),
       measure=st.sampled_from(["margin", "hinge"]), data=st.data())
def test_margins_of_decision_values_any_width(n, C, dtype, measure, data, kernel_path):
    # every width the vectorised row scan handles differently: fewer columns than
    # lanes, exact multiples, an overlapping last vector; ties; one bad value anywhere
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    D = (rng.standard_normal((n, C)) * 3).round(data.draw(st.sampled_from([0, 1, 6])))
    D = D.astype(dtype)
    y = rng.integers(0, C, n)
    bad = data.draw(st.sampled_from([None, np.nan, np.inf, -np.inf]))
    if bad is not None:
        i, j = rng.integers(n), rng.integers(C)
        D[i, j] = bad
        with pytest.raises(ValueError, match="NaN or infinity"):
            difficulty(y, D, measure=measure, labels=np.arange(C))
        # the row with the bad value has an unknown label: that is what is reported
        y_unknown = y.copy()
        y_unknown[i] = C
        with pytest.raises(ValueError, match="1 label"):
            difficulty(y_unknown, D, measure=measure, labels=np.arange(C))
        return
    got = difficulty(y, D, measure=measure, labels=np.arange(C))
    tol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, refs_scoring.difficulty(y, D, measure, labels=np.arange(C)),
                               rtol=tol, atol=tol)


@given(n=st.integers(1, 200), C=st.integers(2, 40),
       dtype=st.sampled_from([np.float32, np.float64]),
       measure=st.sampled_from(["log_loss", "confidence", "entropy"]),
       bad=st.sampled_from(["negative", "above one", "sum", "nan", "inf"]), data=st.data())
def test_one_invalid_probability_anywhere_is_caught(n, C, dtype, measure, bad, data,
                                                    kernel_path):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    P = probabilities(n, C, dtype, rng.integers(2**16))
    i, j = rng.integers(n), rng.integers(C)
    if bad == "sum":
        P[i] *= 1.01
    else:
        P[i, j] = {"negative": -1e-3, "above one": 1.5, "nan": np.nan, "inf": np.inf}[bad]
    match = "NaN or infinity" if bad in ("nan", "inf") else "probabilities"
    with pytest.raises(ValueError, match=match):
        difficulty(rng.integers(0, C, n), P, measure=measure, labels=np.arange(C))


# small random decision vectors can fall inside [0, 1] and warn (they look like
# probabilities); that warning has its own test
@pytest.mark.filterwarnings("ignore:y_score is a vector whose values all lie in")
@given(n=st.integers(1, 200), measure=st.sampled_from(hnm.scoring.MEASURES), data=st.data())
def test_binary_vectors(n, measure, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    y = rng.integers(0, 2, n)
    if measure in ("margin", "hinge"):
        f = rng.standard_normal(n) * 3
    else:
        f = rng.random(n)
    got = difficulty(y, f, measure=measure, labels=[0, 1])
    np.testing.assert_allclose(got, refs_scoring.difficulty(y, f, measure, labels=[0, 1]),
                               rtol=1e-12, atol=1e-12)


def test_log_loss_sums_to_sklearn(rng):
    P = probabilities(500, 4, np.float64, 1)
    y = rng.integers(0, 4, 500)
    P[0, y[0]] = 0.0  # clipped, as scikit-learn clips
    P[0] /= P[0].sum()
    d = difficulty(y, P, measure="log_loss")
    assert d.sum() == pytest.approx(log_loss(y, P, normalize=False), rel=1e-12)


def test_hinge_matches_sklearn(rng):
    f = rng.standard_normal(300)
    y = rng.integers(0, 2, 300)
    assert difficulty(y, f, measure="hinge").mean() == pytest.approx(hinge_loss(y, f))
    D = rng.standard_normal((300, 3))
    y3 = rng.integers(0, 3, 300)
    assert difficulty(y3, D, measure="hinge").mean() == pytest.approx(hinge_loss(y3, D))


def test_string_labels_and_label_order(rng):
    P = probabilities(100, 3, np.float64, 2)
    names = np.array(["ant", "bee", "cat"])
    y = rng.integers(0, 3, 100)
    expected = refs_scoring.difficulty(y, P, "margin", labels=range(3))
    np.testing.assert_allclose(difficulty(names[y], P), expected)
    # labels in column order, not sorted
    perm = np.array([2, 0, 1])
    np.testing.assert_allclose(difficulty(names[y], P[:, perm], labels=names[perm]), expected)
    np.testing.assert_allclose(difficulty(y + 10, P[:, perm], labels=perm + 10), expected)
    np.testing.assert_allclose(difficulty(y * 10**9, P), expected)  # sparse int labels


def test_entropy_needs_no_labels(rng):
    P = probabilities(50, 5, np.float64, 3)
    np.testing.assert_allclose(difficulty(None, P, measure="entropy"),
                               refs_scoring.difficulty(None, P, "entropy"))


@pytest.mark.parametrize("make", [
    lambda P: np.asfortranarray(P),
    lambda P: P.astype(np.float16).astype(np.float16),
    lambda P: P.astype(">f8"),
    lambda P: np.repeat(P, 2, axis=1)[:, ::2],
])
def test_layouts_and_dtypes(make, rng):
    P = probabilities(1000, 4, np.float64, 4).round(3)
    P[:, -1] = 1 - P[:, :-1].sum(axis=1)
    P = np.clip(P, 0, 1)
    X = make(P)
    y = rng.integers(0, 4, 1000)
    got = difficulty(y, X, measure="margin", chunk_size=77)
    np.testing.assert_allclose(got, refs_scoring.difficulty(y, np.asarray(X, np.float64)),
                               rtol=1e-6, atol=1e-6)


def test_memmap_is_read_in_place(as_memmap, rng):
    P = probabilities(5000, 6, np.float32, 5)
    y = rng.integers(0, 6, 5000)
    mm = as_memmap(P)
    np.testing.assert_array_equal(difficulty(y, mm, measure="log_loss", chunk_size=600),
                                  difficulty(y, P, measure="log_loss"))
    np.testing.assert_array_equal(np.asarray(mm), P)


def test_inputs_are_not_modified(rng):
    P = probabilities(200, 3, np.float64, 6)
    y = rng.integers(0, 3, 200)
    P0, y0 = P.copy(), y.copy()
    for m in hnm.scoring.MEASURES:
        difficulty(y, P, measure=m)
    np.testing.assert_array_equal(P, P0)
    np.testing.assert_array_equal(y, y0)


@pytest.mark.parametrize("y, S, kwargs, exc, match", [
    ([0, 1], [[0.5, 0.5], [0.2, 0.8]], dict(measure="f1"), ValueError, "measure must be one"),
    ([0, 3], [[0.5, 0.5], [0.2, 0.8]], dict(labels=[0, 1]), ValueError, "not in labels"),
    (["a", "z"], [[0.5, 0.5], [0.2, 0.8]], dict(labels=["a", "b"]), ValueError,
     "not in labels"),
    ([0, 1, 2], [[0.5, 0.5], [0.2, 0.8], [1.0, 0.0]], {}, ValueError, "3 distinct labels"),
    ([0, 1], [[0.5, 0.5]], {}, ValueError, "y_true must have shape \\(1,\\)"),
    ([0, 1], [[0.5, np.nan], [0.2, 0.8]], {}, ValueError, "NaN or infinity"),
    ([0, 1], [[0.5, np.inf], [0.2, 0.8]], {}, ValueError, "NaN or infinity"),
    ([0, 1], [[1.5, -0.5], [0.2, 0.8]], dict(measure="log_loss"), ValueError,
     "probabilities"),
    ([0, 1], [[0.6, 0.6], [0.2, 0.8]], dict(measure="confidence"), ValueError,
     "summing to 1"),
    ([0, 1], [1.5, 0.2], dict(measure="log_loss"), ValueError, "probabilities"),
    ([0, 1], [[0.5, 0.5], [0.2, 0.8]], dict(labels=[0, 1, 2]), ValueError,
     "labels must have 2"),
    ([0, 1], [[0.5, 0.5], [0.2, 0.8]], dict(labels=[0, 0]), ValueError, "distinct"),
    (None, [[0.5, 0.5]], {}, ValueError, "y_true is required"),
    ([0, 1], [[1j, 0], [0, 1]], {}, TypeError, "real"),
    ([0, 1], np.ones((2, 2, 2)), {}, ValueError, "at most 2-D"),
    ([0], [[1.0]], {}, ValueError, "at least 2 column"),
    (None, np.zeros((3, 0)), dict(measure="entropy"), ValueError, "at least 1 column"),
    ([0, 1], [[0.5, 0.5], [0.2, 0.8]], dict(chunk_size=0), ValueError, "chunk_size"),
    ([0, 1], [[0.5, 0.5], [0.2, 0.8]], dict(n_jobs=0), ValueError, "n_jobs must be >= 1"),
    ([0, 1], [[0.5, 0.5], [0.2, 0.8]], dict(n_jobs=2.0), TypeError, "n_jobs must be an int"),
])
def test_bad_input_names_the_argument(y, S, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        difficulty(y, np.asarray(S), **kwargs)


def test_single_label_needs_labels():
    with pytest.raises(ValueError, match="distinct labels"):
        difficulty([1, 1], np.array([0.3, -0.2]))
    np.testing.assert_allclose(difficulty([1, 1], np.array([0.3, -0.2]), labels=[0, 1]),
                               [-0.3, 0.2])


def test_default_labels_must_all_occur_for_integer_labels(rng):
    P = probabilities(300, 4, np.float64, 7)
    y = rng.integers(0, 4, 300)
    np.testing.assert_allclose(difficulty(y, P), refs_scoring.difficulty(y, P))
    y_missing = np.where(y == 2, 1, y)  # labels 0, 1, 3 for 4 columns: ambiguous
    with pytest.raises(ValueError, match="3 distinct labels but y_score has 4 columns"):
        difficulty(y_missing, P)
    np.testing.assert_allclose(difficulty(y_missing, P, labels=np.arange(4)),
                               refs_scoring.difficulty(y_missing, P, labels=np.arange(4)))


@pytest.mark.parametrize("values", [[5, 7, 9], [-1, 0, 1], [1, 2, 3], [0, 1, 2**40]])
def test_integer_labels_other_than_column_indices(values, rng):
    # sorted distinct labels map to columns in order, as with an estimator's classes_
    P = probabilities(500, 3, np.float64, 0)
    codes = rng.integers(0, 3, 500)
    y = np.asarray(values)[codes]
    expected = refs_scoring.difficulty(y, P, labels=values)
    np.testing.assert_allclose(difficulty(y, P), expected)
    np.testing.assert_allclose(difficulty(y, P, labels=values), expected)
    with pytest.raises(ValueError, match="not in labels"):
        difficulty(np.r_[y[:-1], 4], P, labels=values)


@pytest.mark.parametrize("measure", ["margin", "hinge"])
def test_probability_vector_read_as_decision_values_warns(measure, rng):
    # predict_proba(X)[:, 1] under a decision-value measure: the commonest mistake
    y = rng.integers(0, 2, 400)
    p = np.clip(rng.normal(0.3 + 0.4 * y, 0.2), 0, 1)
    with pytest.warns(UserWarning, match=r"y_score is a vector whose values all lie in \[0, 1\]"
                      r".*np\.column_stack\(\[1 - p, p\]\)"):
        difficulty(y, p, measure=measure)
    # the advice in the warning gives the probability margin: misclassified iff > 0
    d = difficulty(y, np.column_stack([1 - p, p]), measure=measure)
    if measure == "margin":
        np.testing.assert_array_equal(d > 0, (p >= 0.5) != (y == 1))


def test_decision_values_and_probability_measures_do_not_warn(rng, recwarn):
    y = rng.integers(0, 2, 400)
    difficulty(y, rng.standard_normal(400))                        # decision values
    difficulty(y, rng.random(400), measure="log_loss")             # a probability vector
    difficulty(y, rng.random(400), measure="confidence")
    difficulty(y, np.column_stack([1 - (p := rng.random(400)), p]))  # a probability matrix
    difficulty([], np.empty(0), labels=[0, 1])
    assert not [w for w in recwarn if issubclass(w.category, UserWarning)]


def test_probability_vector_check_reads_every_chunk():
    # only the last chunk leaves [0, 1]: decision values after all, no warning
    y = np.tile([0, 1], 50)
    f = np.full(100, 0.5)
    f[-1] = -0.5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        difficulty(y, f, chunk_size=10)
    with pytest.warns(UserWarning, match="all lie in"):
        difficulty(y, np.abs(f), chunk_size=10)


def test_transposed_probabilities_suggest_the_transpose(rng):
    P = probabilities(5, 2, np.float64, 0)
    y = rng.integers(0, 2, 5)
    with pytest.raises(ValueError, match=r"y_score has shape \(2, 5\).*pass y_score\.T"):
        difficulty(y, P.T)
    np.testing.assert_allclose(difficulty(y, P.T.T), refs_scoring.difficulty(y, P, labels=[0, 1]))
    with pytest.raises(ValueError, match=r"must have shape \(5,\)") as info:
        difficulty(np.zeros(3, int), P)   # a plain length mismatch: no transpose hint
    assert "y_score.T" not in str(info.value)
