"""HardNegativeResampler: speed against imbalanced-learn, and quality at an equal budget.

Speed, same run, on make_classification(200_000, 50, weights=[0.95]):
``difficulty="nearmiss"`` vs ``NearMiss(version=1)`` (target >= 2.5x faster),
the default (out-of-fold model) vs ``InstanceHardnessThreshold(LogisticRegression)``,
and ``RandomUnderSampler`` for scale.

Quality: negatives under-sampled to as many as positives by random under-sampling
or by hnm (hardest, band, blend, the defaults), then LogisticRegression and
HistGradientBoosting, average precision on a held-out split; clean labels and 3%
flipped labels. Reported, not asserted.
"""
import numpy as np
import pytest
from imblearn.under_sampling import InstanceHardnessThreshold, NearMiss, RandomUnderSampler
from sklearn.datasets import make_classification
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from bench_mining_quality import hard_tail
from hnm import HardNegativeResampler

SPEED_GROUP = "fit_resample 200,000 x 50 (5% minority)"


@pytest.fixture(scope="module")
def big():
    return make_classification(200_000, n_features=50, weights=[0.95], random_state=0)


@pytest.fixture(scope="module", autouse=True)
def declare(ratios):
    ratios.compare("imblearn NearMiss(version=1)", "hnm nearmiss", ">= 2.5 (speed-up)")
    ratios.compare("imblearn InstanceHardnessThreshold(LR)", "hnm default (out-of-fold LR)",
                   "for scale")
    ratios.compare("hnm nearmiss", "imblearn RandomUnderSampler", "for scale")


SAMPLERS = {
    "hnm nearmiss": lambda: HardNegativeResampler(difficulty="nearmiss"),
    "hnm default (out-of-fold LR)": lambda: HardNegativeResampler(random_state=0),
    "imblearn NearMiss(version=1)": lambda: NearMiss(version=1),
    "imblearn InstanceHardnessThreshold(LR)": lambda: InstanceHardnessThreshold(
        estimator=LogisticRegression(), random_state=0),
    "imblearn RandomUnderSampler": lambda: RandomUnderSampler(random_state=0),
}


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_speed(benchmark, big, ratios, name):
    X, y = big
    benchmark.group = SPEED_GROUP
    rounds = 1 if name.startswith("imblearn N") else 3
    benchmark.pedantic(lambda: SAMPLERS[name]().fit_resample(X, y), rounds=rounds,
                       iterations=1)
    ratios.record(benchmark, name)
    if name == "hnm nearmiss":
        ours = HardNegativeResampler(difficulty="nearmiss", noise_fraction=0.0, easy_ratio=0.0)
        ours.fit_resample(X, y)
        ref = NearMiss(version=1)
        ref.fit_resample(X, y)
        same = np.array_equal(ours.sample_indices_, ref.sample_indices_)
        ratios.note(f"NearMiss-1 selection identical to imblearn's on 200,000 x 50: {same}")


def _quality_data(flip):
    X, y = hard_tail(flip, seed=1)
    return train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)


METHODS = {
    "random under-sampling": lambda seed: RandomUnderSampler(random_state=seed),
    "hnm hardest only": lambda seed: HardNegativeResampler(noise_fraction=0.0, easy_ratio=0.0,
                                                           random_state=seed),
    "hnm band (skip 5%)": lambda seed: HardNegativeResampler(noise_fraction=0.05,
                                                             easy_ratio=0.0, random_state=seed),
    "hnm hard+easy blend": lambda seed: HardNegativeResampler(noise_fraction=0.0,
                                                              easy_ratio=1.0, random_state=seed),
    "hnm defaults": lambda seed: HardNegativeResampler(random_state=seed),
    "hnm nearmiss": lambda seed: HardNegativeResampler(difficulty="nearmiss",
                                                       random_state=seed),
}
MODELS = {
    "LR": lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
    "HGB": lambda: HistGradientBoostingClassifier(random_state=0),
}


@pytest.mark.parametrize("flip", [0.0, 0.03])
@pytest.mark.parametrize("method", list(METHODS))
def test_quality(benchmark, ratios, method, flip):
    X_tr, X_te, y_tr, y_te = _quality_data(flip)
    benchmark.group = f"resampling quality, {flip:.0%} flipped labels"
    results = {m: [] for m in MODELS}

    def run(seed):
        X_res, y_res = METHODS[method](seed).fit_resample(X_tr, y_tr)
        for m, make in MODELS.items():
            p = make().fit(X_res, y_res).predict_proba(X_te)[:, 1]
            results[m].append(average_precision_score(y_te, p))

    benchmark.pedantic(run, args=(0,), rounds=1, iterations=1)
    for seed in (1, 2):
        run(seed)
    summary = {m: (float(np.mean(v)), float(np.std(v))) for m, v in results.items()}
    benchmark.extra_info.update({f"AP {m}": v[0] for m, v in summary.items()})
    ratios.note(f"[{flip:.0%} flipped] {method:>22}: " + ", ".join(
        f"AP {m} {mean:.4f} (+/- {std:.4f})" for m, (mean, std) in summary.items()))
