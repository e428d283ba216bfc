"""Plots of difficulty, mined sets and mining rounds (needs matplotlib: ``pip install
matplotlib``, or ``pip install ".[plot]"`` in the hnm checkout).

Every function draws on a given matplotlib ``Axes`` (or a new figure) and
returns the ``Axes``; none needs a display, so they work on headless machines
with the non-interactive "Agg" backend.
"""
import numpy as np

from ._validation import check_finite_1d, check_indices, check_label_present

__all__ = ["plot_difficulty", "plot_score_distributions", "plot_history"]


def _axes(ax):
    if ax is not None:
        return ax
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - exercised without the extra
        raise ImportError("hnm.plotting needs matplotlib: pip install matplotlib (or "
                          "pip install '.[plot]' in the hnm checkout)") from exc
    # a Figure not managed by pyplot: no GUI backend, nothing left open
    return Figure(figsize=(6.4, 4.0), layout="constrained").add_subplot()


def _legend_above_data(ax, handles=None, labels=None, *, data_axes=None):
    """A legend in a band of headroom above the data, so no line or bar runs
    under it: the data axes' y-limits are raised by a third, and the legend is
    drawn on ``ax`` (the topmost axes when twinned, so nothing is drawn over it)."""
    for a in data_axes or [ax]:
        lo, hi = a.get_ylim()
        a.set_ylim(lo, lo + (hi - lo) * 1.35)
    if handles is None:
        handles, labels = ax.get_legend_handles_labels()
    return ax.legend(handles, labels, loc="upper center", ncol=min(len(handles), 3),
                     fontsize="small", framealpha=0.9)


def plot_difficulty(difficulty, hard_indices=None, *, bins=50, ax=None):
    """Histogram of difficulty with the hard examples' region shaded.

    Parameters
    ----------
    difficulty : array-like of shape (n,)
        Higher is harder.
    hard_indices : array-like of int, optional
        Indices of the hard examples (e.g. from
        :func:`hnm.selection.select_hardest`); their histogram is overlaid and
        the span from their easiest to their hardest is shaded.
    bins : int or sequence of float, default=50
        Histogram bins of the difficulty axis, as for ``np.histogram_bin_edges``.
    ax : matplotlib Axes, optional
        Drawn on; default: a new figure's axes.

    Returns
    -------
    ax : matplotlib Axes
        The axes drawn on.

    See Also
    --------
    plot_score_distributions : Scores of positives, negatives and mined negatives.
    hnm.selection.select_hardest : Selected indices to overlay.

    Examples
    --------
    >>> import numpy as np
    >>> from hnm.plotting import plot_difficulty
    >>> d = np.random.default_rng(0).gamma(2.0, size=1000)
    >>> ax = plot_difficulty(d, hard_indices=np.argsort(-d)[50:200])
    >>> ax.get_xlabel()
    'difficulty (higher is harder)'
    """
    d = check_finite_1d(difficulty, "difficulty")
    ax = _axes(ax)
    edges = np.histogram_bin_edges(d, bins=bins)
    ax.hist(d, bins=edges, color="0.7", label=f"all ({d.size})")
    if hard_indices is not None:
        hard = check_indices(hard_indices, d.size, "hard_indices")
        if hard.size:
            ax.hist(d[hard], bins=edges, color="C3", alpha=0.8, label=f"hard ({hard.size})")
            ax.axvspan(d[hard].min(), d[hard].max(), color="C3", alpha=0.1)
    ax.set_xlabel("difficulty (higher is harder)")
    ax.set_ylabel("examples")
    _legend_above_data(ax)
    return ax


def plot_score_distributions(y_true, y_score, hard_indices=None, *, pos_label=1, bins=50,
                             ax=None):
    """Score distributions of positives, negatives and mined negatives.

    Mined hard negatives should sit where the positives are: the overlap is
    what the model has to learn to separate.

    Parameters
    ----------
    y_true : array-like of shape (n,)
        True labels.
    y_score : array-like of shape (n,)
        Model score for the positive class.
    hard_indices : array-like of int, optional
        Indices of the mined (hard) negatives, drawn as a third histogram.
    pos_label : default=1
        The positive class; must be a label of ``y_true`` (as for
        :func:`hnm.metrics.hard_case_report`).
    bins : int or sequence of float, default=50
        Bins of the score axis, shared by the histograms.
    ax : matplotlib Axes, optional
        The axes to draw on (a new figure's when None).

    Returns
    -------
    ax : matplotlib Axes
        The same axes, with three histograms and a legend.

    See Also
    --------
    plot_difficulty : The difficulty histogram with a selection shaded.
    hnm.metrics.hard_case_report : The same overlap, as numbers.

    Examples
    --------
    >>> import numpy as np
    >>> from hnm.plotting import plot_score_distributions
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 500)
    >>> s = rng.normal(y, 0.7)
    >>> ax = plot_score_distributions(y, s, hard_indices=np.flatnonzero((y == 0) & (s > 0.5)))
    >>> len(ax.get_legend().get_texts())
    3
    """
    s = check_finite_1d(y_score, "y_score")
    y = np.asarray(y_true)
    if y.shape != s.shape:
        raise ValueError(f"y_true must have the shape of y_score {s.shape}, got {y.shape}.")
    try:
        present = np.unique(y)
    except TypeError as exc:  # mixed types, None among strings, ...
        raise TypeError(f"y_true must hold labels of one comparable type; {exc}") from None
    check_label_present(pos_label, present, "pos_label")
    ax = _axes(ax)
    edges = np.histogram_bin_edges(s, bins=bins)
    pos = y == pos_label
    ax.hist(s[pos], bins=edges, alpha=0.6, color="C0", density=True,
            label=f"positives ({pos.sum()})")
    ax.hist(s[~pos], bins=edges, alpha=0.6, color="0.6", density=True,
            label=f"negatives ({(~pos).sum()})")
    if hard_indices is not None:
        mined = check_indices(hard_indices, s.size, "hard_indices")
        ax.hist(s[mined], bins=edges, histtype="step", linewidth=2, color="C3", density=True,
                label=f"mined negatives ({mined.size})")
    ax.set_xlabel("score")
    ax.set_ylabel("density")
    _legend_above_data(ax)
    return ax


def plot_history(history, *, ax=None):
    """Per-round curves of a :class:`hnm.HardMiningClassifier`'s ``history_``.

    Cache size and negatives added per round on the left axis, the held-out
    validation score (when recorded) on a right axis.

    Parameters
    ----------
    history : list of dict
        ``HardMiningClassifier.history_`` (or the fitted estimator itself).
    ax : matplotlib Axes, optional

    Returns
    -------
    ax : matplotlib Axes

    See Also
    --------
    hnm.HardMiningClassifier : Whose ``history_`` this draws.
    plot_difficulty : The difficulty of one round's pool.

    Examples
    --------
    >>> from hnm.plotting import plot_history
    >>> history = [{"round": 0, "n_negatives": 50, "n_added": 50, "validation_score": 0.61},
    ...            {"round": 1, "n_negatives": 75, "n_added": 25, "validation_score": 0.68}]
    >>> ax = plot_history(history)
    >>> ax.get_xlabel()
    'round'
    """
    history = getattr(history, "history_", history)
    if not history or not all(isinstance(h, dict) and "round" in h for h in history):
        raise ValueError("history must be a non-empty list of per-round dicts "
                         "(HardMiningClassifier.history_).")
    ax = _axes(ax)
    rounds = [h["round"] for h in history]
    ax.plot(rounds, [h["n_negatives"] for h in history], "o-", label="negatives trained on")
    ax.bar(rounds, [h["n_added"] for h in history], alpha=0.3, label="added this round")
    ax.set_xlabel("round")
    ax.set_ylabel("negatives")
    ax.set_xticks(rounds)
    handles, labels = ax.get_legend_handles_labels()
    scores = [h.get("validation_score") for h in history]
    top, data_axes = ax, [ax]
    if any(v is not None for v in scores):
        right = ax.twinx()
        right.plot(rounds, [np.nan if v is None else v for v in scores], "s--", color="C2",
                   label="validation score")
        right.set_ylabel("validation score")
        h2, l2 = right.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
        top, data_axes = right, [ax, right]  # the twin is drawn last: legend on it
    _legend_above_data(top, handles, labels, data_axes=data_axes)
    return ax
