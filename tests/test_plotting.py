import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

from hnm.plotting import plot_difficulty, plot_history, plot_score_distributions  # noqa: E402


def test_difficulty_plot_is_written_to_a_file(tmp_path, rng):
    d = rng.gamma(2.0, size=2000)
    sel = np.argsort(-d)[:100]
    ax = plot_difficulty(d, sel)
    patches = [p for p in ax.patches if p.get_facecolor()[3] > 0]
    assert len(patches) > 50  # two histograms and a span
    out = tmp_path / "difficulty.png"
    ax.figure.savefig(out)
    assert out.stat().st_size > 1000


def test_score_distributions_and_history_plots(tmp_path, rng):
    y = rng.integers(0, 2, 300)
    s = rng.normal(y, 0.5)
    ax = plot_score_distributions(s, y, mined_indices=np.flatnonzero((y == 0) & (s > 0.3)))
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
        plot_score_distributions([0.1, 0.2], [0])
    with pytest.raises(ValueError, match="history must be"):
        plot_history([])


def test_score_distributions_refuse_a_pos_label_not_in_y(rng):
    y = np.where(rng.integers(0, 2, 100) == 1, "yes", "no")
    with pytest.raises(ValueError, match="pos_label=1 is not a label of y_true"):
        plot_score_distributions(rng.random(100), y)
    ax = plot_score_distributions(rng.random(100), y, pos_label="yes")
    assert len(ax.get_legend().get_texts()) == 2
