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
    assert "hard: accuracy" in run.stdout and "near threshold: accuracy" in run.stdout
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
              "-k", 2, "--relative-margin", 0.05, "-o", tmp_path / "t.csv")
    assert run.returncode == 0, run.stderr
    rows = np.loadtxt(tmp_path / "t.csv", delimiter=",", skiprows=1)
    assert rows.shape == (40, 7)
    assert np.all(rows[:, 1] == rows[:, 0]) and np.all(rows[:, 2] != rows[:, 0])
    assert "n_short_queries=0" in run.stderr
    np.save(tmp_path / "bad.npy", np.ones((20, 3), dtype=np.float32))
    run = hnm("mine", tmp_path / "bad.npy", tmp_path / "p.npy", tmp_path / "c.npy",
              "-o", tmp_path / "t.csv")
    assert run.returncode == 2 and "dimension 3 but candidates have 8" in run.stderr


# ---------------------------------------------------------------- in process (fast)
from hnm import cli as _cli  # noqa: E402


def main(*args):
    return _cli.main([str(a) for a in args])


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main("--version")
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"hnm {_hnm.__version__}"


def test_k_and_band_together_are_refused_like_the_python_api(tmp_path, capsys):
    np.save(tmp_path / "s.npy", np.arange(10.0))
    assert main("topk", tmp_path / "s.npy", "-k", 5, "--band", 0, 5) == 2
    assert "give -k or --band, not both" in capsys.readouterr().err
    assert main("topk", tmp_path / "s.npy", "--band", 0, 5) == 0  # either alone works
    assert main("topk", tmp_path / "s.npy") == 0  # default: k=10
    assert len(capsys.readouterr().out.splitlines()) == 5 + 10


def test_stdout_has_the_precision_of_the_csv(tmp_path, capsys):
    values = np.array([12.604599952697754, 1 / 3, -2e-12, 7.0])
    np.save(tmp_path / "s.npy", values)
    assert main("topk", tmp_path / "s.npy", "-k", 4, "-o", tmp_path / "o.csv") == 0
    assert main("topk", tmp_path / "s.npy", "-k", 4) == 0
    printed = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    written = [line.split(",") for line in (tmp_path / "o.csv").read_text().splitlines()[1:]]
    assert printed == written
    assert printed[0] == ["0", "12.6046"]


@pytest.mark.parametrize("content, message", [
    (b"1.0\n2.0\n", "is not a .npy file"),
    (b"PK\x03\x04rest", "is a .npz archive"),
])
def test_a_file_that_is_not_npy_gets_a_message_about_npy(tmp_path, capsys, content, message):
    (tmp_path / "file.txt").write_bytes(content)
    assert main("topk", tmp_path / "file.txt") == 2
    err = capsys.readouterr().err
    assert message in err and "pickle" not in err


def test_mine_warns_when_the_corpus_cannot_give_k(tmp_path, capsys):
    rng = np.random.default_rng(0)
    corpus = rng.standard_normal((50, 4)).astype(np.float32)
    np.save(tmp_path / "c.npy", corpus)
    np.save(tmp_path / "q.npy", corpus[:3])
    np.save(tmp_path / "p.npy", np.arange(3))
    base = ["mine", tmp_path / "q.npy", tmp_path / "p.npy", tmp_path / "c.npy",
            "--duplicate-threshold", "none", "-o", tmp_path / "t.npz"]
    assert main(*base, "-k", 100) == 2  # more than the band (to the end) holds
    assert "k=100 is larger than the number of ranks" in capsys.readouterr().err
    assert main(*base, "-k", 100, "--at-most") == 0
    err = capsys.readouterr().err
    assert "hnm mine: warning: -k 100" in err and "at most 49" in err
    with np.load(tmp_path / "t.npz") as z:
        assert z["negative"].size == 3 * 49
    assert main(*base, "-k", 5, "--band", 40, "none") == 0
    assert "warning" not in capsys.readouterr().err
    with np.load(tmp_path / "t.npz") as z:
        assert z["rank"].tolist() == list(range(40, 45)) * 3
    assert main(*base, "-k", 5) == 0
    assert "warning" not in capsys.readouterr().err


def test_every_mine_option_has_help_and_its_default():
    parser = _cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, command in sub.choices.items():
        for action in command._actions:
            if action.dest == "help":
                continue
            assert action.help, f"hnm {name} {action.option_strings or action.dest}"
            if action.option_strings and action.default not in (None, False) \
                    and name != "demo":
                assert "default" in action.help, f"hnm {name} {action.option_strings}"
    mine = sub.choices["mine"]
    assert all("default" in a.help for a in mine._actions
               if a.option_strings and a.dest not in ("help", "output", "progress"))


def test_output_onto_its_own_memory_mapped_input(tmp_path):
    P = np.array([[0.9, 0.1], [0.3, 0.7], [0.5, 0.5]])
    np.save(tmp_path / "y.npy", np.array([0, 0, 1]))
    np.save(tmp_path / "p.npy", P)
    assert main("score", tmp_path / "y.npy", tmp_path / "p.npy", "--labels", 0, 1,
                "-o", tmp_path / "p.npy") == 0
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), [-0.8, 0.4, 0.0])


def test_progress_covers_writing_the_output(tmp_path, capsys):
    np.save(tmp_path / "s.npy", np.arange(1000.0))
    assert main("topk", tmp_path / "s.npy", "-k", 500, "--progress",
                "-o", tmp_path / "o.csv") == 0
    assert "writing o.csv" in capsys.readouterr().err


def test_ctrl_c_while_writing_exits_130_and_keeps_the_previous_output(tmp_path, capsys,
                                                                       monkeypatch):
    np.save(tmp_path / "s.npy", np.arange(100.0))
    (tmp_path / "o.csv").write_text("previous")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(_cli._io, "iter_delimited", interrupted)
    assert main("topk", tmp_path / "s.npy", "-o", tmp_path / "o.csv") == 130
    assert "interrupted, no output written" in capsys.readouterr().err
    assert (tmp_path / "o.csv").read_text() == "previous"
    assert sorted(os.listdir(tmp_path)) == ["o.csv", "s.npy"]  # no temporary left


def test_mine_checkpoint_resumes_with_the_same_output(tmp_path, capsys):
    rng = np.random.default_rng(0)
    corpus = rng.standard_normal((400, 8)).astype(np.float32)
    np.save(tmp_path / "c.npy", corpus)
    np.save(tmp_path / "q.npy", corpus[:30] + 0.05)
    np.save(tmp_path / "p.npy", np.arange(30))
    base = ["mine", tmp_path / "q.npy", tmp_path / "p.npy", tmp_path / "c.npy",
            "-k", 3, "--band", 2, 20, "--sampling", "random", "--seed", 4]
    assert main(*base, "-o", tmp_path / "ref.csv") == 0
    assert main(*base, "--checkpoint", tmp_path / "ck", "-o", tmp_path / "a.csv") == 0
    assert main(*base, "--checkpoint", tmp_path / "ck", "-o", tmp_path / "b.csv") == 0
    assert "1 finished block(s) resumed" in capsys.readouterr().err
    ref = (tmp_path / "ref.csv").read_bytes()
    assert (tmp_path / "a.csv").read_bytes() == ref == (tmp_path / "b.csv").read_bytes()
    assert main(*base[:-1], 5, "--checkpoint", tmp_path / "ck", "-o", tmp_path / "c.csv") == 2
    err = capsys.readouterr().err
    assert "--seed 4 -> 5" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "c.csv").exists()


def test_mine_duplicate_guard_can_be_turned_off(tmp_path, capsys):
    corpus = np.array([[1.0, 0.0], [0.999, 0.04], [0.0, 1.0], [-1.0, 0.1]], dtype=np.float32)
    np.save(tmp_path / "c.npy", corpus)
    np.save(tmp_path / "q.npy", corpus[:1])
    np.save(tmp_path / "p.npy", np.array([0]))
    base = ["mine", tmp_path / "q.npy", tmp_path / "p.npy", tmp_path / "c.npy",
            "-k", 1]
    assert main(*base, "-o", tmp_path / "a.npz") == 0  # default 0.95: row 1 is a duplicate
    assert main(*base, "--duplicate-threshold", "none", "-o", tmp_path / "b.npz") == 0
    with np.load(tmp_path / "a.npz") as a, np.load(tmp_path / "b.npz") as b:
        assert a["negative"].tolist() == [2] and b["negative"].tolist() == [1]
    with pytest.raises(SystemExit) as exit_:
        main(*base, "--duplicate-threshold", "x", "-o", tmp_path / "c.npz")
    assert exit_.value.code == 2
    assert "expected a number or 'none'" in capsys.readouterr().err
