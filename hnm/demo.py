"""``hnm demo``: random negatives vs hard negative mining at the same budget.

Uses the handwritten digits that ship with scikit-learn (no download): "8" is the
positive class, every other digit is a negative, and the mining models may train
on as many negatives as there are positives. Every model is trained on one half
of the digits (choosing its rounds on a split of that half) and compared on the
other, held-out half:

- everything (average precision, precision, recall at 0.5);
- the hard cases: the 10% of the held-out digits that a *reference* model, fit
  by cross-validation on the held-out half itself, finds hardest (log-loss).
  No compared model chose them, so no method's accuracy there is 0 by
  construction, and every method is measured on the same digits;
- near the threshold: the held-out digits whose reference score lies within
  0.15 of 0.5, again the same digits for every method.
"""
import os
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from .metrics import Report, hard_case_report
from .mining import HardMiningClassifier
from .scoring import difficulty
from .selection import select_hardest

__all__ = ["run_demo"]

FIGURE_NAME = "hnm_demo.png"
_NEAR_THRESHOLD = 0.15


def _model():
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))


def _methods(rounds, random_state):
    mine = dict(n_rounds=rounds, random_state=random_state)
    return {
        "random negatives": HardMiningClassifier(_model(), n_rounds=0, initial_fraction=1.0,
                                                 random_state=random_state),
        "hard negatives (defaults)": HardMiningClassifier(_model(), **mine),
        "hardest-first cache": HardMiningClassifier(_model(), selection="hardest", **mine),
        "hard + easy blend": HardMiningClassifier(_model(), selection="hardest",
                                                  easy_ratio=1.0, **mine),
        "all negatives (reference)": HardMiningClassifier(_model(), n_rounds=0,
                                                          max_negatives=1.0,
                                                          initial_fraction=1.0,
                                                          random_state=random_state),
    }


def run_demo(out_dir=".", quick=False, random_state=0, verbose=True):
    """Run the demo; return the comparison as a :class:`hnm.metrics.Report`.

    Parameters
    ----------
    out_dir : str, default="."
        Where to write ``hnm_demo.png`` (skipped, with a message saying how to
        get it, without matplotlib).
    quick : bool, default=False
        One mining round instead of four.
    random_state : int, default=0
    verbose : bool, default=True
        Print the table, what its columns mean and the figure's path.

    Returns
    -------
    Report
        One record per method: negatives trained on, the round kept, average
        precision, precision and recall overall, accuracy on the hard cases and
        on the digits near the threshold (the same held-out digits for every method).
        ``report.figure`` is the figure's path (None when skipped).

    See Also
    --------
    hnm.HardMiningClassifier : The mining meta-estimator compared here.
    hnm.metrics.hard_case_report : The per-segment metrics of the table.
    hnm.plotting.plot_history : The right panel of the figure.

    Examples
    --------
    >>> from hnm.demo import run_demo
    >>> report = run_demo(out_dir=None, quick=True, verbose=False)  # no figure
    >>> [r["method"] for r in report][:2]
    ['random negatives', 'hard negatives (defaults)']
    >>> len({r["near threshold: n"] for r in report})  # the same digits for all
    1
    """
    t0 = time.perf_counter()
    X, digit = load_digits(return_X_y=True)
    y = (digit == 8).astype(int)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.5, stratify=y,
                                              random_state=random_state)
    rounds = 1 if quick else 4
    fitted = {name: clf.fit(X_tr, y_tr)
              for name, clf in _methods(rounds, random_state).items()}

    # The hard cases and the digits near the threshold, chosen once for every method by a
    # reference model that none of the compared models is: scored out of fold on
    # the held-out half itself.
    folds = StratifiedKFold(5, shuffle=True, random_state=random_state)
    ref = cross_val_predict(_model(), X_te, y_te, cv=folds, method="predict_proba")
    hard = select_hardest(difficulty(y_te, ref, measure="log_loss"), fraction=0.1)
    near = np.flatnonzero(np.abs(ref[:, 1] - 0.5) <= _NEAR_THRESHOLD)

    records = []
    for name, clf in fitted.items():
        p = clf.predict_proba(X_te)[:, 1]
        on_hard = hard_case_report(y_te, p, hard_indices=hard)
        on_near = hard_case_report(y_te, p, hard_indices=near)
        records.append({
            "method": name,
            "negatives": int(clf.negative_indices_.size),
            "kept round": getattr(clf, "best_round_", clf.history_[-1]["round"]),
            "AP": on_hard[0]["average_precision"],
            "precision": on_hard[0]["precision"],
            "recall": on_hard[0]["recall"],
            "hard: accuracy": on_hard[1]["accuracy"],
            "near threshold: n": int(near.size),
            "near threshold: accuracy": on_near[1]["accuracy"],
        })
    report = Report(records, list(records[0]),
                    title=f"digits 8-vs-rest: {y_tr.sum()} positives to train on, "
                          f"held-out half ({y_te.size} digits, {hard.size} hard cases, "
                          f"{near.size} near the threshold)")
    report.figure, skipped = (None, None) if out_dir is None else _figure(
        fitted, X_tr, y_tr, out_dir)
    if verbose:
        print(report)
        print(_legend(rounds, hard.size, near.size))
        print(f"({time.perf_counter() - t0:.1f} s)")
        if report.figure:
            print(f"figure: {report.figure}")
        elif skipped:
            print(skipped)
    return report


def _legend(rounds, n_hard, n_near):
    return (
        "\nnegatives: negatives in the final training set (all models keep every positive).\n"
        f"kept round: the round (0..{rounds}; 0 = the random draw) whose model is evaluated, "
        "as HardMiningClassifier chose it (best_round_; its history_ says why).\n"
        "AP, precision, recall: on the whole held-out half, predicting 8 when p >= 0.5.\n"
        f"hard: accuracy on the {n_hard} held-out digits hardest for a reference model "
        "cross-validated on the held-out half (the same digits for every method).\n"
        f"near threshold: accuracy on the {n_near} held-out digits whose reference score is "
        f"within {_NEAR_THRESHOLD:g} of 0.5 (the same digits for every method)."
    )


def _figure(fitted, X, y, out_dir):
    """Write the figure: ``(path, None)``, or ``(None, why it was skipped)``."""
    try:
        fig = _build_figure(fitted, X, y)
    except ImportError:
        return None, ("figure skipped: it needs matplotlib (pip install matplotlib, or "
                      "pip install \".[plot]\" in the hnm checkout), then run hnm demo "
                      "again.")
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.abspath(os.path.join(out_dir, FIGURE_NAME))
    fig.savefig(path, dpi=100)
    return path, None


def _build_figure(fitted, X, y):
    """Left: one mining round from the random-negatives model, with the scores
    that made the mined negatives hard. Right: the default miner's rounds."""
    from matplotlib.figure import Figure  # ImportError: the caller says how to get it

    from .plotting import plot_history, plot_score_distributions

    fig = Figure(figsize=(12, 4.8), layout="constrained")
    left, right = fig.subplots(1, 2)
    start = fitted["random negatives"]
    p = start.predict_proba(X)[:, 1]
    negatives = np.flatnonzero(y == 0)
    budget = int(start.negative_indices_.size)
    # what a hardest-first round mines: the negatives this model scores as most
    # positive-like, shown at those very scores (the scores that made them hard)
    mined = negatives[select_hardest(p[negatives], budget)]
    plot_score_distributions(y, p, hard_indices=mined, ax=left)
    left.set_title(f"Hardest-first mining, one round: the {budget} negatives\n"
                   "the random-negatives model scores highest, at those scores",
                   fontsize=10)
    left.set_xlabel("score of the random-negatives model (training half)")
    # most negatives pile up at 0 and positives at 1: a log scale keeps the
    # mined negatives in between visible (headroom for the legend kept)
    top = max(patch.get_height() for patch in left.patches if hasattr(patch, "get_height"))
    left.set_yscale("log")
    left.set_ylim(0.05, top * 12)
    left.set_ylabel("density (log scale)")
    default = fitted["hard negatives (defaults)"]
    plot_history(default, ax=right)
    kept = getattr(default, "best_round_", None)
    right.set_title("HardMiningClassifier() rounds (\"hard negatives (defaults)\")"
                    + ("" if kept is None else f": round {kept} kept"), fontsize=10)
    return fig
