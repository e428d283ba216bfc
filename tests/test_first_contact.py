"""What a newcomer meets first: imports, messages for common mistakes, packaging.

Each test pins one finding of the first-contact review (a misleading message, a
missing attribute, a build warning) so that it cannot come back.
"""
import os
import pathlib
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import hnm

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _run_python(code, cwd):
    """Run ``code`` in a fresh interpreter started in ``cwd``, with site-packages
    on the path but without its .pth hooks: an editable install's finder would
    otherwise supply the extensions of the checkout it points at."""
    import numpy

    site = os.path.dirname(os.path.dirname(numpy.__file__))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [sys.executable, "-S", "-c", f"import sys; sys.path.append({site!r}); {code}"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _copy_package(dest, with_extensions):
    src = pathlib.Path(hnm.__file__).parent
    pkg = dest / "hnm"
    shutil.copytree(src, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    ext_dir = pathlib.Path(hnm._topk.__file__).parent  # where this build put them
    for so in list(pkg.glob("*.so")) + list(pkg.glob("*.pyd")):
        so.unlink()
    if with_extensions:
        for so in list(ext_dir.glob("*.so")) + list(ext_dir.glob("*.pyd")):
            shutil.copy2(so, pkg / so.name)
    return pkg


@pytest.mark.parametrize("in_checkout", [False, True])
def test_import_without_built_extensions_says_so(tmp_path, in_checkout):
    _copy_package(tmp_path, with_extensions=False)
    if in_checkout:
        (tmp_path / "setup.py").write_text("# a source checkout\n")
    run = _run_python("import hnm", tmp_path)
    assert run.returncode != 0
    assert "ImportError: hnm's compiled extensions (hnm._topk, ...) are not built" in run.stderr
    assert "pip install ." in run.stderr and "pip install -e ." in run.stderr
    assert "circular import" not in run.stderr
    assert ("source checkout" in run.stderr) == in_checkout


def test_import_with_built_extensions_works_the_same_way(tmp_path):
    # the control for the test above: same copy, same interpreter flags, extensions present
    _copy_package(tmp_path, with_extensions=True)
    run = _run_python("import hnm; print(hnm.__file__)", tmp_path)
    assert run.returncode == 0, run.stderr
    assert str(tmp_path) in run.stdout


def test_submodules_are_attributes_imported_on_first_use():
    code = ("import sys, hnm; "
            "assert not {'matplotlib', 'dask', 'distributed'} & set(sys.modules), 'eager'; "
            "print(hnm.metrics.hard_case_report.__name__, hnm.plotting.__name__, "
            "hnm.selection.blend_easy.__name__, hnm.cli.main.__name__); "
            "print('metrics' in dir(hnm), 'dask' in dir(hnm))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, cwd=os.path.dirname(os.path.dirname(hnm.__file__)))
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["hard_case_report", "hnm.plotting", "blend_easy", "main",
                                  "True", "True"]
    pytest.importorskip("dask")
    assert hnm.dask.topk is not None
    with pytest.raises(AttributeError, match="module 'hnm' has no attribute 'metricz'"):
        hnm.metricz


def test_help_opens_with_how_to_use_the_package():
    doc = hnm.__doc__
    assert doc.index("hnm.difficulty(") < doc.index("Design:") < doc.index("Cython kernels")


@pytest.mark.parametrize("call", [
    lambda S: hnm.topk(S, 3),
    lambda S: hnm.search_hard_pairs(np.ones((2, 4)), S, 3),
    lambda S: hnm.search_hard_pairs(S, np.ones((10, 4)), 3),
    lambda S: hnm.difficulty(np.zeros(10, int), S, labels=[0, 1, 2, 3]),
])
def test_sparse_input_says_sparse_is_not_supported(call):
    sparse = pytest.importorskip("scipy.sparse")
    S = sparse.random(10, 4, density=0.5, format="csr", random_state=0)
    with pytest.raises(TypeError, match=r"is a scipy sparse csr_matrix, which is not supported "
                                        r"here: pass a dense array \(\w+\.toarray\(\)\)"):
        call(S)
    call(S.toarray())  # the advice works


def test_search_k_larger_than_corpus_counts_candidates():
    with pytest.raises(ValueError, match=r"k=5 is larger than the number of candidates \(4\)"):
        hnm.search_hard_pairs(np.ones((2, 3)), np.ones((4, 3)), 5)
    with pytest.raises(ValueError, match=r"band stop=9 is larger than the number of "
                                         r"candidates \(4\)"):
        hnm.search_hard_pairs(np.ones((2, 3)), np.ones((4, 3)), band=(1, 9))
    with pytest.raises(ValueError, match=r"number of scores \(4\)"):
        hnm.topk(np.ones(4), 5)


def test_dask_search_k_larger_than_corpus_counts_candidates():
    pytest.importorskip("dask.array")
    import dask.array as da

    with pytest.raises(ValueError, match=r"number of candidates \(4\)"):
        hnm.dask.search_hard_pairs(np.ones((2, 3)), da.ones((4, 3), chunks=2), 5)


def test_license_is_an_spdx_expression_and_the_build_can_read_it():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["license"] == "BSD-3-Clause"
    # SPDX strings need setuptools >= 77 (older ones refuse them)
    requires = meta["build-system"]["requires"]
    assert "setuptools>=77" in requires


def test_demo_figure_is_ignored_by_git():
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout")
    run = subprocess.run(["git", "check-ignore", "-q", "hnm_demo.png"], cwd=ROOT)
    assert run.returncode == 0, "hnm_demo.png (written by `hnm demo`) is not in .gitignore"


def test_install_hints_name_what_an_index_serves():
    # "hnm" is not on any package index: hints must install from the checkout
    # (pip install ".[plot]") or name the real packages
    package = pathlib.Path(hnm.__file__).parent
    offenders = [f"{path.name}:{n}" for path in sorted(package.glob("*.py"))
                 for n, line in enumerate(path.read_text().splitlines(), 1)
                 if re.search(r"pip install ['\"]?hnm\[", line)]
    assert not offenders
