"""The hnm command end to end, in a subprocess, as a user runs it."""
import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest

import hnm as _hnm

# the hnm that the tests import, wherever it is (installed, or a source tree)
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(_hnm.__file__)))


def hnm(*args, cwd=None):
    # never the repository root: `python -m` puts the working directory first on
    # sys.path, where an unbuilt source tree would shadow the installed package
    env = dict(os.environ, PYTHONWARNINGS="ignore", PYTHONPATH=PACKAGE_PARENT)
    return subprocess.run([sys.executable, "-m", "hnm", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd or tempfile.gettempdir(), env=env, timeout=300)


def test_demo_prints_the_comparison_and_writes_a_figure(tmp_path):
    run = hnm("demo", "--quick", "--out", tmp_path)
    assert run.returncode == 0, run.stderr
    for method in ("random negatives", "hard negatives", "hard + easy blend"):
        assert method in run.stdout
    assert "hard: accuracy" in run.stdout and "band: accuracy" in run.stdout
    assert (tmp_path / "hnm_demo.png").stat().st_size > 10_000
    assert str(tmp_path / "hnm_demo.png") in run.stdout


def test_topk_on_a_npy_file(tmp_path):
    scores = np.array([0.3, 5.0, -1.0, 5.0, 2.0])
    np.save(tmp_path / "s.npy", scores)
    run = hnm("topk", tmp_path / "s.npy", "-k", 3)
    assert run.returncode == 0, run.stderr
    assert [line.split("\t")[0] for line in run.stdout.split("\n") if line] == ["1", "3", "4"]
    run = hnm("topk", tmp_path / "s.npy", "--band", 1, 3, "--smallest", "-o", tmp_path / "o.csv")
    assert run.returncode == 0, run.stderr
    rows = np.loadtxt(tmp_path / "o.csv", delimiter=",", skiprows=1)
    np.testing.assert_array_equal(rows[:, 0], [0, 4])
    assert open(tmp_path / "o.csv").readline().strip() == "index,value"


def test_score_writes_difficulty(tmp_path):
    P = np.array([[0.9, 0.1], [0.3, 0.7]])
    np.save(tmp_path / "y.npy", np.array([0, 0]))
    np.save(tmp_path / "p.npy", P)
    run = hnm("score", tmp_path / "y.npy", tmp_path / "p.npy", "--labels", 0, 1,
              "-o", tmp_path / "d.npy")
    assert run.returncode == 0, run.stderr
    np.testing.assert_allclose(np.load(tmp_path / "d.npy"), [-0.8, 0.4])


@pytest.mark.parametrize("args, message", [
    (["topk", "missing.npy"], "no such file"),
    (["topk", "bad.npy"], "is not a .npy file"),
    (["topk", "s.npy", "-k", 10], "k=10 is larger"),
    (["topk", "c.npy"], "real"),
    (["topk", "s.npy", "-k", 2, "-o", "out.txt"], "must end in .npy, .npz or .csv"),
    (["score", "y.npy", "s.npy"], "y_true must have shape"),
])
def test_user_errors_are_one_line_without_traceback(tmp_path, args, message):
    np.save(tmp_path / "s.npy", np.arange(3.0))
    np.save(tmp_path / "c.npy", np.array([1j, 2j]))
    np.save(tmp_path / "y.npy", np.arange(5))
    (tmp_path / "bad.npy").write_text("not numpy")
    run = hnm(*args, cwd=tmp_path)
    assert run.returncode == 2
    assert message in run.stderr and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


def test_help_has_an_example_for_every_command():
    for command in ("demo", "topk", "score", "mine"):
        run = hnm(command, "--help")
        assert run.returncode == 0 and f"hnm {command}" in run.stdout.split("example:")[1]


def test_mine_writes_triplets(tmp_path):
    rng = np.random.default_rng(0)
    corpus = rng.standard_normal((500, 8)).astype(np.float32)
    np.save(tmp_path / "c.npy", corpus)
    np.save(tmp_path / "q.npy", corpus[:20] + 0.05)
    np.save(tmp_path / "p.npy", np.arange(20))
    run = hnm("mine", tmp_path / "q.npy", tmp_path / "p.npy", tmp_path / "c.npy",
              "--num-negatives", 2, "--relative-margin", 0.05, "-o", tmp_path / "t.csv")
    assert run.returncode == 0, run.stderr
    rows = np.loadtxt(tmp_path / "t.csv", delimiter=",", skiprows=1)
    assert rows.shape == (40, 7)
    assert np.all(rows[:, 1] == rows[:, 0]) and np.all(rows[:, 2] != rows[:, 0])
    assert "n_short_queries=0" in run.stderr
    np.save(tmp_path / "bad.npy", np.ones((20, 3), dtype=np.float32))
    run = hnm("mine", tmp_path / "bad.npy", tmp_path / "p.npy", tmp_path / "c.npy",
              "-o", tmp_path / "t.csv")
    assert run.returncode == 2 and "dimension 3 but candidates have 8" in run.stderr
