import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_predict

from hnm.noise import find_label_issues, find_label_issues_knn


def noisy(n=3000, n_classes=2, weights=(0.9,), flip=0.05, seed=0):
    X, y0 = make_classification(n, n_features=10, n_informative=6, n_classes=n_classes,
                                weights=list(weights), random_state=seed)
    rng = np.random.default_rng(seed)
    flipped = rng.random(n) < flip
    y = np.where(flipped, (y0 + rng.integers(1, n_classes, n)) % n_classes, y0)
    proba = cross_val_predict(LogisticRegression(max_iter=1000), X, y, cv=5,
                              method="predict_proba")
    return X, y, proba, flipped


def reference_confident_learning(y, P):
    """Confident learning written out example by example (Northcutt et al., 2021)."""
    n, K = P.shape
    t = np.array([P[y == j, j].mean() for j in range(K)])
    C = np.zeros((K, K))
    for i in range(n):
        above = [j for j in range(K) if P[i, j] >= t[j] - 1e-6]
        if above:
            C[y[i], max(above, key=lambda j: P[i, j])] += 1
    n_k = np.bincount(y, minlength=K)
    C = C / C.sum(axis=1, keepdims=True) * n_k[:, None]
    prune = np.rint(C).astype(int)
    flagged = set()
    for i in range(K):
        members = np.flatnonzero(y == i)
        for j in range(K):
            if i != j and prune[i, j]:
                margin = P[members, j] - P[members, i]
                order = sorted(range(members.size), key=lambda m: (-margin[m], members[m]))
                flagged |= set(members[order[:prune[i, j]]].tolist())
    flagged = {i for i in flagged if P[i].argmax() != y[i]}
    counts = prune.sum(axis=1) - np.diag(prune)
    return flagged, counts


@pytest.mark.parametrize("n_classes, weights", [(2, (0.9,)), (3, (0.6, 0.3))])
def test_confident_learning_matches_the_written_out_reference(n_classes, weights):
    _, y, P, _ = noisy(1500, n_classes, weights)
    issues = find_label_issues(y, P)
    flagged, counts = reference_confident_learning(y, P)
    assert set(issues.indices.tolist()) == flagged
    np.testing.assert_array_equal(issues.counts, counts)
    np.testing.assert_array_equal(issues.labels, np.arange(n_classes))
    # most suspect first: the scores never increase
    assert np.all(np.diff(issues.scores) <= 0)


def test_confident_learning_finds_injected_flips():
    _, y, P, flipped = noisy(4000, flip=0.05, seed=1)
    issues = find_label_issues(y, P)
    hit = np.isin(issues.indices, np.flatnonzero(flipped))
    assert hit.mean() > 0.5                      # precision
    assert hit.sum() / flipped.sum() > 0.5       # recall
    # the estimated count is of the order of the injected flips
    assert 0.5 * flipped.sum() < issues.counts.sum() < 2.0 * flipped.sum()


def test_matches_cleanlab_prune_by_noise_rate():
    cleanlab = pytest.importorskip("cleanlab.filter")
    for n_classes, weights in ((2, (0.9,)), (3, (0.5, 0.3))):
        _, y, P, _ = noisy(2000, n_classes, weights, seed=2)
        ref = cleanlab.find_label_issues(y, P, filter_by="prune_by_noise_rate")
        ours = find_label_issues(y, P).indices
        union = np.union1d(ours, np.flatnonzero(ref)).size
        assert np.intersect1d(ours, np.flatnonzero(ref)).size >= 0.95 * union


def test_string_labels_and_explicit_column_order():
    _, y, P, _ = noisy(1000, seed=3)
    names = np.array(["neg", "pos"])[y]
    a = find_label_issues(names, P)
    np.testing.assert_array_equal(a.labels, ["neg", "pos"])
    b = find_label_issues(names, P[:, ::-1], labels=["pos", "neg"])
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.counts, b.counts[::-1])


def test_inputs_are_not_modified_and_clean_confident_data_has_no_issues():
    y = np.r_[np.zeros(50, int), np.ones(50, int)]
    P = np.where(y[:, None] == np.arange(2), 0.9, 0.1)
    P0 = P.copy()
    issues = find_label_issues(y, P)
    assert issues.indices.size == 0 and issues.counts.tolist() == [0, 0]
    np.testing.assert_array_equal(P, P0)


@pytest.mark.parametrize("y_proba, kwargs, exc, match", [
    (np.full((4, 3), 1 / 3), {}, ValueError, "3 columns but there are 2 labels"),
    (np.full((4, 2), np.nan), {}, ValueError, "NaN"),
    (np.full(4, 0.5), {}, ValueError, "at least 2-D"),
    (np.full((4, 2), 0.5), dict(labels=[0, 7]), ValueError, "not in labels"),
    (np.array([["a", "b"]] * 4), {}, TypeError, "y_proba"),
])
def test_bad_arguments(y_proba, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        find_label_issues(np.array([0, 1, 0, 1]), y_proba, **kwargs)


def reference_enn(X, y, k, kind_sel):
    D = ((X[:, None, :] - X[None]) ** 2).sum(-1)
    np.fill_diagonal(D, np.inf)
    near = np.argsort(D, axis=1, kind="stable")[:, :k]
    out = []
    for i in range(len(y)):
        votes = np.bincount(y[near[i]], minlength=y.max() + 1)
        own = votes[y[i]]
        votes[y[i]] = -1
        if (kind_sel == "all" and own < k) or (kind_sel == "mode" and votes.max() > own):
            out.append(i)
    return set(out)


@pytest.mark.parametrize("kind_sel", ["mode", "all"])
@pytest.mark.parametrize("k", [1, 3, 6])
def test_knn_disagreement_matches_brute_force(kind_sel, k):
    X, y, _, _ = noisy(400, n_classes=3, weights=(0.5, 0.3), seed=4)
    issues = find_label_issues_knn(X, y, n_neighbors=k, kind_sel=kind_sel)
    assert set(issues.indices.tolist()) == reference_enn(X, y, k, kind_sel)
    np.testing.assert_array_equal(issues.counts,
                                  np.bincount(y[issues.indices], minlength=3))
    assert np.all((issues.scores > 0) & (issues.scores <= 1))


def test_knn_finds_injected_flips():
    X, y, _, flipped = noisy(3000, flip=0.03, seed=5)
    issues = find_label_issues_knn(X, y, n_neighbors=7)
    assert np.isin(np.flatnonzero(flipped), issues.indices).mean() > 0.6


def test_knn_bad_arguments():
    X = np.zeros((5, 2))
    y = np.array([0, 1, 0, 1, 0])
    with pytest.raises(ValueError, match="n_neighbors=5 needs at least 6"):
        find_label_issues_knn(X, y, n_neighbors=5)
    with pytest.raises(ValueError, match="kind_sel"):
        find_label_issues_knn(X, y, kind_sel="any")
    with pytest.raises(ValueError, match="y_true must have shape"):
        find_label_issues_knn(X, y[:3])
