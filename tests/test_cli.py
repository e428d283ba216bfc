import numpy as np
import pytest

from hnm.cli import main


def test_demo_lists_the_hardest_examples(capsys):
    assert main(["demo", "--top", "5"]) == 0
    out = capsys.readouterr().out
    assert "breast_cancer" in out and "the 5 hardest" in out
    rows = [line for line in out.splitlines() if line.strip()[:1].isdigit()]
    losses = [float(line.split()[-1]) for line in rows]
    assert len(losses) == 5 and losses == sorted(losses, reverse=True)


def test_topk_reads_a_npy_file(tmp_path, capsys):
    scores = np.array([0.3, 5.0, -1.0, 5.0, 2.0])
    path = tmp_path / "scores.npy"
    np.save(path, scores)
    assert main(["topk", str(path), "-k", "3"]) == 0
    lines = capsys.readouterr().out.split()
    assert lines[::2] == ["1", "3", "4"]
    out = tmp_path / "out.npz"
    assert main(["topk", str(path), "--band", "1", "3", "--smallest", "-o", str(out)]) == 0
    saved = np.load(out)
    np.testing.assert_array_equal(saved["indices"], [0, 4])


def test_errors_are_reported_not_raised(tmp_path, capsys):
    path = tmp_path / "scores.npy"
    np.save(path, np.arange(3.0))
    assert main(["topk", str(path), "-k", "10"]) == 2
    assert "k=10 is larger" in capsys.readouterr().err
    assert main(["topk", str(tmp_path / "missing.npy")]) == 2
    with pytest.raises(SystemExit):
        main(["demo", "--dataset", "nope"])
