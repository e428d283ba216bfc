"""Which labels are wrong? hnm's estimates against cleanlab on injected flips.

Labels are flipped at random (2-5% of all rows, to another class) in data whose
clean labels are known; out-of-fold probabilities come from a 5-fold
LogisticRegression (behind a StandardScaler). Reported for
:func:`hnm.noise.find_label_issues` (confident learning, prune by noise rate),
cleanlab's ``find_label_issues(filter_by="prune_by_noise_rate")`` on the same
probabilities, and :func:`hnm.noise.find_label_issues_knn` (edited nearest
neighbours, no model): precision and recall on the flipped rows, the estimated
number of issues against the number flipped, the agreement with cleanlab
(Jaccard) and the time. Also what the estimate flags on the same data without
flips (every flag there is a false alarm).

Small by default (8,000 rows, 2 seeds); ``HNM_BENCH_FULL=1``: 30,000 rows, 5 seeds.
``python benchmarks/bench_noise.py`` prints the table. Reported, never asserted.
"""
import os
import time

import numpy as np
import pytest
from sklearn.datasets import load_digits, make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from hnm.noise import find_label_issues, find_label_issues_knn

FULL = os.environ.get("HNM_BENCH_FULL", "") not in ("", "0")
N_ROWS = 30_000 if FULL else 8_000
SEEDS = tuple(range(5)) if FULL else (0, 1)


def binary_imbalanced(seed):
    return make_classification(N_ROWS, n_features=20, n_informative=8, weights=[0.95],
                               class_sep=1.0, random_state=seed)


def binary_overlapping(seed):
    return make_classification(N_ROWS, n_features=20, n_informative=8, weights=[0.8],
                               class_sep=0.6, random_state=seed)


def three_classes(seed):
    return make_classification(N_ROWS, n_features=20, n_informative=10, n_classes=3,
                               weights=[0.6, 0.3, 0.1], class_sep=1.2, random_state=seed)


def digits(seed):
    return load_digits(return_X_y=True)


DATASETS = {
    "binary 5% positives, 2% flipped": (binary_imbalanced, 0.02),
    "binary 5% positives, 5% flipped": (binary_imbalanced, 0.05),
    "binary overlapping, 3% flipped": (binary_overlapping, 0.03),
    "3 classes, 3% flipped": (three_classes, 0.03),
    "digits (10 classes), 5% flipped": (digits, 0.05),
}


def flipped_data(name, seed):
    make, rate = DATASETS[name]
    X, y_clean = make(seed)
    rng = np.random.default_rng(seed + 100)
    n_classes = np.unique(y_clean).size
    flip = rng.random(y_clean.size) < rate
    y = np.where(flip, (y_clean + rng.integers(1, n_classes, y_clean.size)) % n_classes,
                 y_clean)
    return X, y_clean, y, flip


def oof_proba(X, y):
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    return cross_val_predict(model, X, y, cv=5, method="predict_proba")


def prf(found, flip):
    found = np.asarray(found, dtype=np.intp)
    hit = flip[found].sum()
    return (hit / max(found.size, 1), hit / max(flip.sum(), 1))


def run(name, seeds=SEEDS):
    rows = []
    try:
        from cleanlab.filter import find_label_issues as cleanlab_find
    except ImportError:  # cleanlab is only the reference here
        cleanlab_find = None
    for seed in seeds:
        X, y_clean, y, flip = flipped_data(name, seed)
        Xs = StandardScaler().fit_transform(X)
        proba = oof_proba(X, y)
        t = time.perf_counter()
        ours = find_label_issues(y, proba)
        t_ours = time.perf_counter() - t
        t = time.perf_counter()
        knn = find_label_issues_knn(Xs, y, n_neighbors=5)
        t_knn = time.perf_counter() - t
        rec = dict(seed=seed, n_flipped=int(flip.sum()), hnm=prf(ours.indices, flip),
                   hnm_count=int(ours.counts.sum()), hnm_s=t_ours, knn=prf(knn.indices, flip),
                   knn_count=int(knn.counts.sum()), knn_s=t_knn)
        clean = find_label_issues(y_clean, oof_proba(X, y_clean))
        rec["false_alarms_clean"] = int(clean.indices.size)
        if cleanlab_find is not None:
            t = time.perf_counter()
            mask = cleanlab_find(y, proba, filter_by="prune_by_noise_rate")
            rec["cleanlab_s"] = time.perf_counter() - t
            ref = np.flatnonzero(mask)
            rec["cleanlab"] = prf(ref, flip)
            union = np.union1d(ref, ours.indices).size
            rec["jaccard"] = np.intersect1d(ref, ours.indices).size / max(union, 1)
        rows.append(rec)
    return rows


def summarise(name, rows):
    def mean(key, i=None):
        vals = [r[key] if i is None else r[key][i] for r in rows if key in r]
        return float(np.mean(vals)) if vals else float("nan")
    text = (f"[{name}] flipped {mean('n_flipped'):.0f}: hnm confident learning precision "
            f"{mean('hnm', 0):.3f} recall {mean('hnm', 1):.3f} (estimated {mean('hnm_count'):.0f}"
            f" issues, {mean('hnm_s') * 1e3:.1f} ms)")
    if "cleanlab" in rows[0]:
        text += (f"; cleanlab precision {mean('cleanlab', 0):.3f} recall "
                 f"{mean('cleanlab', 1):.3f} ({mean('cleanlab_s') * 1e3:.1f} ms), Jaccard "
                 f"{mean('jaccard'):.3f}")
    text += (f"; hnm kNN precision {mean('knn', 0):.3f} recall {mean('knn', 1):.3f} "
             f"({mean('knn_s') * 1e3:.0f} ms); flags on the clean labels "
             f"{mean('false_alarms_clean'):.0f}")
    return text


@pytest.mark.parametrize("name", list(DATASETS))
def test_noise_detection(benchmark, ratios, name):
    benchmark.group = "label-noise detection"
    rows = benchmark.pedantic(run, args=(name,), rounds=1, iterations=1)
    ratios.note(summarise(name, rows))


if __name__ == "__main__":
    for dataset in DATASETS:
        print(summarise(dataset, run(dataset)), flush=True)
