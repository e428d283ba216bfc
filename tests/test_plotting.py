import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

from hnm.plotting import plot_difficulty, plot_history, plot_score_distributions  # noqa: E402


def test_difficulty_plot_is_written_to_a_file(tmp_path, rng):
    d = rng.gamma(2.0, size=2000)
    ax = plot_difficulty(d, hard_indices=np.argsort(-d)[:100])
    patches = [p for p in ax.patches if p.get_facecolor()[3] > 0]
    assert len(patches) > 50  # two histograms and a span
    out = tmp_path / "difficulty.png"
    ax.figure.savefig(out)
    assert out.stat().st_size > 1000


def test_score_distributions_and_history_plots(tmp_path, rng):
    y = rng.integers(0, 2, 300)
    s = rng.normal(y, 0.5)
    ax = plot_score_distributions(y, s, hard_indices=np.flatnonzero((y == 0) & (s > 0.3)))
    assert [t.get_text().split(" (")[0] for t in ax.get_legend().get_texts()] == [
        "positives", "negatives", "mined negatives"]
    history = [{"round": r, "n_negatives": 10 * (r + 1), "n_added": 10,
                "validation_score": 0.5 + 0.1 * r} for r in range(3)]
    ax = plot_history(history)
    assert len(ax.figure.axes) == 2  # right axis for the validation score
    ax.figure.savefig(tmp_path / "history.png")
    no_val = [dict(h, validation_score=None) for h in history]
    assert len(plot_history(no_val).figure.axes) == 1


def test_plots_draw_on_given_axes():
    from matplotlib.figure import Figure
    ax = Figure().add_subplot()
    assert plot_difficulty([1.0, 2.0, 3.0], ax=ax) is ax


def test_plot_bad_arguments():
    with pytest.raises(ValueError, match="difficulty contains NaN"):
        plot_difficulty([1.0, np.nan])
    with pytest.raises(ValueError, match="y_true must have the shape"):
        plot_score_distributions([0], [0.1, 0.2])
    with pytest.raises(TypeError, match="hard_indices must be a 1-D array of integers"):
        plot_score_distributions([0, 1], [0.1, 0.2], hard_indices=[0.5])
    with pytest.raises(ValueError, match=r"hard_indices must lie in \[0, 3\)"):
        plot_difficulty([1.0, 2.0, 3.0], hard_indices=[3])
    with pytest.raises(ValueError, match="history must be"):
        plot_history([])


def test_score_distributions_refuse_a_pos_label_not_in_y(rng):
    y = np.where(rng.integers(0, 2, 100) == 1, "yes", "no")
    with pytest.raises(ValueError, match="pos_label=1 is not a label of y_true"):
        plot_score_distributions(y, rng.random(100))
    ax = plot_score_distributions(y, rng.random(100), pos_label="yes")
    assert len(ax.get_legend().get_texts()) == 2


def _data_points_under_legend(ax_with_legend, axes):
    """Display-space data points (line vertices, histogram bar tops and step
    outlines) inside the legend's box."""
    ax_with_legend.figure.canvas.draw()
    box = ax_with_legend.get_legend().get_window_extent()
    display = []
    for a in axes:
        display += [a.transData.transform(line.get_xydata()) for line in a.get_lines()]
        for p in a.patches:
            if p.get_data_transform() != a.transData:
                continue  # a shaded span over the full height (axvspan), not data
            xy = p.get_transform().transform(p.get_path().vertices)
            display.append(np.vstack([xy, (xy[:-1] + xy[1:]) / 2]))  # edges' midpoints too
    hits = [(x, yv) for xy in display for x, yv in xy if box.contains(x, yv)]
    return hits, sum(len(xy) for xy in display)


def _figure_axes():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), layout="constrained")
    FigureCanvasAgg(fig)
    return fig.add_subplot()


def test_history_legend_is_on_top_and_clear_of_the_curves():
    # a validation curve that climbs to the top left, where the legend used to sit
    history = [{"round": r, "n_negatives": 50 + 10 * r, "n_added": 10,
                "validation_score": 0.9 - 0.05 * r} for r in range(5)]
    ax = _figure_axes()
    plot_history(history, ax=ax)
    right = [a for a in ax.figure.axes if a is not ax][0]
    assert right.get_legend() is not None and ax.get_legend() is None  # drawn last
    assert [t.get_text() for t in right.get_legend().get_texts()] == [
        "negatives trained on", "added this round", "validation score"]
    hits, n_points = _data_points_under_legend(right, [ax, right])
    assert n_points > 20 and not hits


def test_distribution_and_difficulty_legends_are_clear_of_the_bars(rng):
    y = rng.integers(0, 2, 2000)
    s = rng.normal(y, 0.3)
    ax = _figure_axes()
    plot_score_distributions(y, s, hard_indices=np.flatnonzero((y == 0) & (s > 0.4)), ax=ax)
    hits, n_points = _data_points_under_legend(ax, [ax])
    assert n_points > 300 and not hits
    ax = _figure_axes()
    d = rng.gamma(2.0, size=2000)
    plot_difficulty(d, hard_indices=np.argsort(-d)[:100], ax=ax)
    hits, n_points = _data_points_under_legend(ax, [ax])
    assert n_points > 300 and not hits


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from hnm.demo import run_demo

    out = tmp_path_factory.mktemp("demo")
    return run_demo(out_dir=out, quick=True, verbose=False), out


@pytest.fixture(scope="module")
def demo_models():
    from sklearn.datasets import load_digits

    from hnm.demo import _methods

    X, digit = load_digits(return_X_y=True)
    X, y = X[::2], (digit[::2] == 8).astype(int)
    return {name: clf.fit(X, y) for name, clf in _methods(1, 0).items()}, X, y


def test_demo_measures_every_method_on_the_same_digits(demo):
    report, out = demo
    names = [r["method"] for r in report]
    assert names[0] == "random negatives" and "all negatives (reference)" in names
    near = {r["near threshold: n"] for r in report}
    assert len(near) == 1 and near.pop() > 0
    # hard cases are chosen by a reference model no method is: none is 0 by construction
    assert all(0 < r["hard: accuracy"] < 1 for r in report)
    assert report.figure == str(out / "hnm_demo.png") and (out / "hnm_demo.png").exists()


def test_demo_figure_says_what_it_shows_at_mining_time_scores(demo_models):
    from hnm.demo import _build_figure

    fitted, X, y = demo_models
    fig = _build_figure(fitted, X, y)
    left, right = fig.axes[:2]
    assert left.get_title().startswith("Hardest-first mining, one round")
    assert "random-negatives model" in left.get_xlabel()
    assert "hard negatives (defaults)" in right.get_title()
    # the mined negatives are drawn at the scores of the model that mined them: the
    # step histogram's mass sits on the highest-scored negatives, not at score 0
    start = fitted["random negatives"]
    p = start.predict_proba(X)[:, 1]
    neg = np.flatnonzero(y == 0)
    budget = start.negative_indices_.size
    mined_scores = np.sort(p[neg])[-budget:]
    assert f"mined negatives ({budget})" in [t.get_text() for t in left.get_legend().get_texts()]
    (step,) = [patch for patch in left.patches if patch.get_label().startswith("mined")]
    outline = step.get_xy()
    with_mass = outline[outline[:, 1] > 0, 0]
    assert with_mass.min() >= mined_scores.min() - 0.05  # no mined mass below them
    assert mined_scores.min() > 0.01  # well above score 0, where the easy negatives sit


def test_demo_without_matplotlib_says_the_figure_was_skipped(demo_models, monkeypatch,
                                                              tmp_path):
    import sys

    from hnm.demo import _figure

    fitted, X, y = demo_models
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import raises ImportError
    path, skipped = _figure(fitted, X, y, tmp_path)
    assert path is None and not (tmp_path / "hnm_demo.png").exists()
    assert skipped.startswith("figure skipped: it needs matplotlib (pip install matplotlib")
    assert 'pip install ".[plot]"' in skipped
