"""Does hard negative mining help? HardMiningClassifier at an equal negative budget.

Random negatives vs hard mining vs hard mining with a noise guard vs a hard+easy
blend, all with the same number of negatives (as many as positives) and the same
LogisticRegression, scored on a held-out split: average precision (per round) and
precision / recall at the 0.5 threshold. Datasets: generated data with a hard tail
of negatives lying next to the positives (clean, and with 3% flipped labels), and
digits one-vs-rest (a dataset scikit-learn ships).

Quality is recorded in ``extra_info`` and printed at the end of the run; it is a
measurement to report, not a target asserted anywhere.
"""
import numpy as np
import pytest
from sklearn.datasets import load_digits, make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, precision_score, recall_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from hnm import HardMiningClassifier


def hard_tail(flip_y, seed=0):
    """Imbalanced data whose negatives include a small cluster close to the positives."""
    X, y = make_classification(30_000, n_features=20, n_informative=8, weights=[0.95],
                               class_sep=1.0, flip_y=0.0, random_state=seed)
    rng = np.random.default_rng(seed)
    neg = np.flatnonzero(y == 0)
    tail = rng.choice(neg, size=neg.size // 20, replace=False)
    pos_mean = X[y == 1].mean(axis=0)
    X[tail] = 0.3 * X[tail] + 0.7 * pos_mean + 0.5 * rng.standard_normal((tail.size, X.shape[1]))
    flip = rng.random(y.size) < flip_y
    y = np.where(flip, 1 - y, y)
    return X, y


def digits_one_vs_rest():
    X, y = load_digits(return_X_y=True)
    return X, (y == 8).astype(int)  # 8 is the digit most confused with others


DATASETS = {
    "hard-tail clean": lambda: hard_tail(0.0),
    "hard-tail 3% flipped": lambda: hard_tail(0.03),
    "digits 8-vs-rest": digits_one_vs_rest,
}

METHODS = {
    "random": dict(n_rounds=0, initial_fraction=1.0),
    "hardest, no guard": dict(n_rounds=3, noise_fraction=0.0),
    "defaults (2% guard)": dict(n_rounds=3),
    "hard+easy blend": dict(n_rounds=3, easy_ratio=1.0),
    "sample T=0.5": dict(n_rounds=3, selection="sample", temperature=0.5),
}


@pytest.fixture(scope="module")
def splits():
    out = {}
    for name, make in DATASETS.items():
        X, y = make()
        out[name] = train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)
    return out


@pytest.mark.parametrize("dataset", list(DATASETS))
@pytest.mark.parametrize("method", list(METHODS))
def test_quality_at_equal_budget(benchmark, splits, ratios, dataset, method):
    X_train, X_test, y_train, y_test = splits[dataset]
    benchmark.group = f"mining quality: {dataset}"
    aps, precisions, recalls = [], [], []

    def fit():
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        return HardMiningClassifier(model, random_state=seed, **METHODS[method]).fit(
            X_train, y_train, validation_data=(X_test, y_test))

    for seed in range(3):
        clf = benchmark.pedantic(fit, rounds=1, iterations=1) if seed == 0 else fit()
        p = clf.predict_proba(X_test)[:, 1]
        aps.append(average_precision_score(y_test, p))
        precisions.append(precision_score(y_test, p > 0.5, zero_division=0))
        recalls.append(recall_score(y_test, p > 0.5))
        per_round = [round(h["validation_score"], 4) for h in clf.history_]
    info = {"average_precision": float(np.mean(aps)), "ap_std": float(np.std(aps)),
            "precision@0.5": float(np.mean(precisions)), "recall@0.5": float(np.mean(recalls)),
            "ap_per_round_seed2": per_round}
    benchmark.extra_info.update(info)
    ratios.note(f"[{dataset}] {method:>20}: AP {info['average_precision']:.4f} "
                f"(+/- {info['ap_std']:.4f}), precision@0.5 {info['precision@0.5']:.3f}, "
                f"recall@0.5 {info['recall@0.5']:.3f}, AP per round {per_round}")
