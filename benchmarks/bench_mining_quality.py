"""Does mining on a negative budget match training on all the data? The quality matrix.

For every dataset x model x budget (0.5%, 2%, 5% of the negatives; every
positive kept), held-out average precision as a percentage of the same model
trained on all the training data, for:

- ``defaults``: ``HardMiningClassifier(model, max_negatives=budget)`` with every
  other argument at its default;
- ``random``: a uniform draw of the budget, trained unweighted;
- ``weighted``: the same draw, each negative weighted by 1 / its probability of
  being drawn (the baseline a knowledgeable user would write);

paired by seed (the same split, the same flips, the same seed for every
method), and the fit time of ``defaults`` (all its rounds) and of one fit on
its final rows against the full fit, with how many times fewer rows that fit
has (every positive is kept, so at 5% positives a 2% budget trains on 14.5x
fewer rows, not 50x; scikit-learn's fixed cost per fit, tens of
milliseconds, weighs on the ratio at 21,000 training rows), the rounds run
and kept (and the draw each kept round used: ``u`` uniform, ``d`` by
difficulty), and the weight exponent the defaults chose (1:
inverse-probability weights, 0: the draw's class balance, recalibrated).

Run it with ``OMP_NUM_THREADS=1`` on a shared machine: HistGradientBoosting's
OpenMP threads spin when the cores are oversubscribed.

Datasets (each generator is seeded; the flips are applied before the split, so
the held-out labels are as noisy as the training ones): overlapping classes,
a hard tail of negatives next to the positives, multi-modal negatives (one mode
next to the positives), each clean and with 2-5% flipped labels, plus
scikit-learn's digits (8 vs rest) and breast cancer, which ship offline.
Models: LogisticRegression and LinearSVC (decision_function only) behind a
StandardScaler, HistGradientBoostingClassifier.

Small by default (10,000 rows, 2 seeds); ``HNM_BENCH_FULL=1`` runs 30,000 rows
and 5 seeds (``HNM_BENCH_SEEDS=n`` sets the number of seeds). ``python benchmarks/bench_mining_quality.py`` prints the matrix;
under ``pytest benchmarks/bench_mining_quality.py --benchmark-only`` every
(dataset, model) cell is a benchmark whose lines are printed at the end.
Reported, never asserted.
"""
import os
import time

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_digits, make_classification
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from hnm import HardMiningClassifier

FULL = os.environ.get("HNM_BENCH_FULL", "") not in ("", "0")
N_ROWS = 30_000 if FULL else 10_000
SEEDS = tuple(range(int(os.environ.get("HNM_BENCH_SEEDS", 5 if FULL else 2))))
BUDGETS = (0.005, 0.02, 0.05)
POSITIVE_SHARE = 0.05


def _flip(y, rate, rng):
    flip = rng.random(y.size) < rate
    return np.where(flip, 1 - y, y)


def overlapping(seed, flip):
    """Two classes whose distributions overlap (class_sep 0.6): no clean boundary."""
    X, y = make_classification(N_ROWS, n_features=20, n_informative=8,
                               weights=[1 - POSITIVE_SHARE], class_sep=0.6, flip_y=0.0,
                               random_state=seed)
    return X, _flip(y, flip, np.random.default_rng(seed + 1000))


def hard_tail(seed, flip):
    """Easy background plus a thin tail (5% of the negatives) pulled next to the positives."""
    X, y = make_classification(N_ROWS, n_features=20, n_informative=8,
                               weights=[1 - POSITIVE_SHARE], class_sep=1.0, flip_y=0.0,
                               random_state=seed)
    rng = np.random.default_rng(seed)
    neg = np.flatnonzero(y == 0)
    tail = rng.choice(neg, size=neg.size // 20, replace=False)
    pos_mean = X[y == 1].mean(axis=0)
    X[tail] = 0.3 * X[tail] + 0.7 * pos_mean + 0.5 * rng.standard_normal((tail.size, 20))
    return X, _flip(y, flip, np.random.default_rng(seed + 1000))


def multimodal(seed, flip):
    """Negatives from six Gaussian modes (one next to the positives), positives from two."""
    rng = np.random.default_rng(seed)
    dim = 12
    n_pos = int(N_ROWS * POSITIVE_SHARE)
    n_neg = N_ROWS - n_pos
    pos_centres = rng.normal(0, 3, size=(2, dim))
    neg_centres = rng.normal(0, 3, size=(6, dim))
    neg_centres[0] = pos_centres[0] + rng.normal(0, 0.8, size=dim)  # the confusable mode
    share = np.array([0.04, 0.3, 0.2, 0.2, 0.16, 0.1])
    modes = rng.choice(6, size=n_neg, p=share)
    X_neg = neg_centres[modes] + rng.standard_normal((n_neg, dim)) * rng.uniform(
        0.6, 1.4, size=6)[modes, None]
    X_pos = pos_centres[rng.integers(0, 2, n_pos)] + rng.standard_normal((n_pos, dim))
    X = np.vstack([X_neg, X_pos])
    y = np.r_[np.zeros(n_neg, int), np.ones(n_pos, int)]
    order = rng.permutation(y.size)
    return X[order], _flip(y[order], flip, np.random.default_rng(seed + 1000))


def digits(seed, flip):
    X, y = load_digits(return_X_y=True)
    return X, (y == 8).astype(int)  # 8 is the digit most confused with the others


def breast_cancer(seed, flip):
    X, y = load_breast_cancer(return_X_y=True)
    return X, y  # 357 benign (1) are the majority: they are the mined class


DATASETS = {
    "overlap clean": (overlapping, 0.0),
    "overlap 3% flipped": (overlapping, 0.03),
    "hard tail clean": (hard_tail, 0.0),
    "hard tail 2% flipped": (hard_tail, 0.02),
    "multimodal clean": (multimodal, 0.0),
    "multimodal 5% flipped": (multimodal, 0.05),
    "digits 8-vs-rest": (digits, 0.0),
    "breast cancer": (breast_cancer, 0.0),
}

MODELS = {
    "LR": lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
    "LinearSVC": lambda: make_pipeline(StandardScaler(), LinearSVC()),
    "HGB": lambda: HistGradientBoostingClassifier(random_state=0),
}


def scores(model, X):
    return (model.decision_function(X) if hasattr(model, "decision_function")
            else model.predict_proba(X)[:, 1])


def weight_key(model):
    return (f"{model.steps[-1][0]}__sample_weight" if hasattr(model, "steps")
            else "sample_weight")


def split(dataset, seed):
    make, flip = DATASETS[dataset]
    X, y = make(seed, flip)
    return train_test_split(X, y, test_size=0.3, stratify=y, random_state=seed)


def run_cell(dataset, model_name, seeds=SEEDS, budgets=BUDGETS):
    """Records of one (dataset, model) cell over every seed and budget."""
    make_model = MODELS[model_name]
    records = []
    for seed in seeds:
        X_tr, X_te, y_tr, y_te = split(dataset, seed)
        majority = np.argmax(np.bincount(y_tr))
        neg, pos = np.flatnonzero(y_tr == majority), np.flatnonzero(y_tr != majority)
        t = time.perf_counter()
        full = make_model().fit(X_tr, y_tr)
        t_full = time.perf_counter() - t
        ap_full = average_precision_score(y_te != majority, scores(full, X_te)
                                          * (1 if majority == 0 else -1))

        def ap(model):
            return 100 * average_precision_score(
                y_te != majority, scores(model, X_te) * (1 if majority == 0 else -1)) / ap_full

        for budget in budgets:
            m = min(neg.size, max(1, int(np.ceil(budget * neg.size))))
            draw = np.random.default_rng(seed).choice(neg, size=m, replace=False)
            rows = np.sort(np.concatenate([pos, draw]))
            random_ = make_model().fit(X_tr[rows], y_tr[rows])
            w = np.where(y_tr[rows] == majority, neg.size / m, 1.0)
            weighted = make_model().fit(X_tr[rows], y_tr[rows], **{weight_key(random_): w})
            t = time.perf_counter()
            clf = HardMiningClassifier(make_model(), max_negatives=budget,
                                       random_state=seed).fit(X_tr, y_tr)
            t_mining = time.perf_counter() - t
            kept = np.flatnonzero(clf.sample_weight_ > 0)
            t = time.perf_counter()
            make_model().fit(X_tr[kept], y_tr[kept],
                             **{weight_key(random_): clf.sample_weight_[kept]})
            t_budget = time.perf_counter() - t
            records.append(dict(
                dataset=dataset, model=model_name, budget=budget, seed=seed,
                defaults=ap(clf), random=ap(random_), weighted=ap(weighted),
                best_round=clf.best_round_, ap_full=ap_full, n_rounds_run=len(clf.history_),
                weight_exponent=clf.weight_exponent_,
                speedup_all_rounds=t_full / t_mining, speedup_budget_fit=t_full / t_budget,
                rows_ratio=y_tr.size / kept.size,
                kept_draw=clf.history_[clf.best_round_].get("draw", "?")))
    return records


def summarise(records):
    """One line per (dataset, model, budget): means over seeds, and the worst seed."""
    lines = []
    keys = sorted({(r["dataset"], r["model"], r["budget"]) for r in records},
                  key=lambda k: (list(DATASETS).index(k[0]), list(MODELS).index(k[1]), k[2]))
    for key in keys:
        rs = [r for r in records if (r["dataset"], r["model"], r["budget"]) == key]
        mean = {f: float(np.mean([r[f] for r in rs])) for f in
                ("defaults", "random", "weighted", "speedup_all_rounds", "speedup_budget_fit",
                 "rows_ratio")}
        gap = mean["defaults"] - max(mean["random"], mean["weighted"])
        worst = min(r["defaults"] for r in rs)
        rounds = [r["best_round"] for r in rs]
        run = [r["n_rounds_run"] for r in rs]
        exponents = [r["weight_exponent"] for r in rs]
        lines.append(
            f"[{key[0]:>22} | {key[1]:>9} | {100 * key[2]:>4.1f}%] defaults "
            f"{mean['defaults']:6.1f}% (worst seed {worst:5.1f}), random {mean['random']:6.1f}%, "
            f"weighted {mean['weighted']:6.1f}%, vs better baseline {gap:+5.1f}; "
            f"faster than full: {mean['speedup_budget_fit']:5.1f}x one fit "
            f"({mean['rows_ratio']:4.1f}x fewer rows), "
            f"{mean['speedup_all_rounds']:5.1f}x all rounds; kept rounds {rounds} of {run} "
            f"run ({''.join(r['kept_draw'][0] for r in rs)}), weight exponents {exponents}")
    return lines


@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize("dataset", list(DATASETS))
def test_mining_quality(benchmark, ratios, dataset, model):
    benchmark.group = f"mining quality: {model}"
    records = benchmark.pedantic(run_cell, args=(dataset, model), rounds=1, iterations=1)
    for line in summarise(records):
        ratios.note(line)


if __name__ == "__main__":
    import sys
    chosen_models = sys.argv[1].split(",") if len(sys.argv) > 1 else list(MODELS)
    chosen_data = sys.argv[2].split(",") if len(sys.argv) > 2 else list(DATASETS)
    all_records = []
    for d in chosen_data:
        for mname in chosen_models:
            recs = run_cell(d, mname)
            all_records += recs
            for line in summarise(recs):
                print(line, flush=True)
