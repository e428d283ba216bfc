"""``hnm demo``: random negatives vs hard negative mining at the same budget.

Uses the handwritten digits that ship with scikit-learn (no download): "8" is the
positive class, every other digit is a negative, and the models may train on as
many negatives as there are positives. The table compares, on a held-out half:
everything, the hard cases (the 10% the random-negatives model finds hardest)
and the threshold region (scores within 0.15 of 0.5).
"""
import os
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from .metrics import Report, hard_case_report
from .mining import HardMiningClassifier
from .scoring import difficulty

__all__ = ["run_demo"]


def _model():
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))


def run_demo(out_dir=".", quick=False, random_state=0, verbose=True):
    """Run the demo; return the comparison as a :class:`hnm.metrics.Report`.

    Parameters
    ----------
    out_dir : str, default="."
        Where to write ``hnm_demo.png`` (skipped without matplotlib).
    quick : bool, default=False
        One mining round instead of four.
    random_state : int, default=0
    verbose : bool, default=True
        Print the table and the figure's path.

    Returns
    -------
    Report
        One record per method: average precision, precision and recall overall,
        on the hard cases and in the threshold region.
    """
    t0 = time.perf_counter()
    X, digit = load_digits(return_X_y=True)
    y = (digit == 8).astype(int)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.5, stratify=y,
                                              random_state=random_state)
    rounds = 1 if quick else 4
    methods = {
        "random negatives": HardMiningClassifier(_model(), n_rounds=0, initial_fraction=1.0,
                                                 random_state=random_state),
        "hard negatives": HardMiningClassifier(_model(), n_rounds=rounds,
                                               random_state=random_state),
        "hard + easy blend": HardMiningClassifier(_model(), n_rounds=rounds, easy_ratio=1.0,
                                                  random_state=random_state),
        "all negatives (reference)": HardMiningClassifier(_model(), n_rounds=0,
                                                          max_negatives=1.0,
                                                          initial_fraction=1.0),
    }
    fitted = {name: clf.fit(X_tr, y_tr, validation_data=(X_te, y_te))
              for name, clf in methods.items()}
    # the hard cases: hardest 10% of the test set for the random-negatives model
    base = fitted["random negatives"].predict_proba(X_te)
    hard = np.argsort(-difficulty(y_te, base, measure="log_loss"), kind="stable")[
        : max(1, y_te.size // 10)]
    records = []
    for name, clf in fitted.items():
        p = clf.predict_proba(X_te)[:, 1]
        seg = {r["segment"]: r for r in hard_case_report(y_te, p, hard_indices=hard,
                                                          threshold=0.5, band=0.15)}
        records.append({
            "method": name,
            "negatives": clf.history_[-1]["n_negatives"],
            "AP": seg["all"]["average_precision"],
            "precision": seg["all"]["precision"],
            "recall": seg["all"]["recall"],
            "hard: accuracy": seg["hard"]["accuracy"],
            "band: n": seg["threshold band"]["n"],
            "band: accuracy": seg["threshold band"]["accuracy"],
        })
    report = Report(records, list(records[0]),
                    title=f"digits 8-vs-rest: {y_tr.sum()} positives to train on, "
                          f"held-out half ({y_te.size} digits, {hard.size} hard cases)")
    path = _figure(fitted["hard negatives"], X_tr, y_tr, out_dir)
    if verbose:
        print(report)
        print(f"({time.perf_counter() - t0:.1f} s)")
        if path:
            print(f"figure: {path}")
    return report


def _figure(clf, X, y, out_dir):
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return None
    from .plotting import plot_history, plot_score_distributions

    fig = Figure(figsize=(11, 4), layout="constrained")
    left, right = fig.subplots(1, 2)
    p = clf.predict_proba(X)[:, 1]
    plot_score_distributions(p, y, mined_indices=clf.negative_indices_, ax=left)
    left.set_title("training scores under the final model")
    plot_history(clf, ax=right)
    right.set_title("hard mining rounds")
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.abspath(os.path.join(out_dir, "hnm_demo.png"))
    fig.savefig(path, dpi=100)
    return path
