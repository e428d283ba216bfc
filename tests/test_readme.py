"""Every ```python block of README.md runs, and the README's claims hold as written.

How it works, so that README edits keep passing without touching this file:

- Each block runs in a fresh namespace holding the imports of the blocks
  before it (a reader going through the README in order has made them; names
  a block *uses* before any block imports them fail, as they would for the
  reader) and the data a reader is assumed to have: ``X, y`` (a binary, imbalanced
  problem with 3,000 rows), ``X_test, y_test``, a fitted ``model``, its ``proba``
  on ``X_test`` and their margin difficulty ``d_test``, retrieval data
  (``queries``, ``positive_ids``, ``positives``, ``corpus.npy``), and
  ``hard_indices``, ``losses.npy``, ``y_dask``/``proba_dask`` for the
  Dask block. See :func:`namespace`. No other names are provided.
- The working directory is a fresh temporary directory holding the ``.npy``
  files; whatever a block writes stays there.
- ``SUBSTITUTIONS`` is the one place where a block's text is changed before it
  runs: a line that needs infrastructure a test cannot have (a Dask scheduler at
  ``tcp://scheduler:8786``) is replaced by a local equivalent. Each entry says
  why; a substitution that no longer matches anything fails the test, so the
  table cannot go stale.
- A block that imports an optional package (dask, distributed, matplotlib,
  pandas, torch, ...) is skipped when it is missing.
- After a block runs, the names of ``INDEX_RESULTS`` it defined must be 1-D
  integer index arrays (a snippet that uses a result as indices must get
  indices, not a named tuple).
- Claims written in a snippet's comments are checked where a test can check
  them (``test_readme_nearmiss_claim_holds``).
- ``KNOWN_README_DEFECTS`` lists defects found in the README that its owner has
  not fixed yet, as strict expected failures: once the README is fixed the test
  passes unexpectedly and fails the run, so the entry must then be removed.
"""
import ast
import os
import pathlib
import re
import warnings

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

# regex on a block's text -> (replacement, why). Applied before the block runs.
SUBSTITUTIONS = {
    r'Client\("tcp://scheduler:8786"\)': (
        'Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None)',
        "a test has no scheduler at tcp://scheduler:8786: an in-process cluster "
        "runs the same calls",
    ),
}

# substring of a block (or a claim test's name) -> the README defect it still has
KNOWN_README_DEFECTS = {}

# Names that README snippets use as index arrays: when a block defines one, it
# must be a 1-D integer ndarray.
INDEX_RESULTS = ("hard", "band", "drawn", "mixed", "hardest_indices", "kept")

# Top-level packages a block may import that are optional for hnm's tests.
OPTIONAL = ("dask", "distributed", "matplotlib", "pandas", "torch", "faiss",
            "sentence_transformers", "pytorch_metric_learning", "cleanlab", "dask_jobqueue")


def python_blocks(text):
    """(first line number, code) of every ```python fenced block."""
    blocks = []
    for match in re.finditer(r"^```python[ \t]*\n(.*?)^```", text, re.S | re.M):
        line = text.count("\n", 0, match.start()) + 2
        blocks.append((line, match.group(1)))
    return blocks


BLOCKS = python_blocks(README.read_text(encoding="utf-8")) if README.exists() else []


def _block_id(block):
    line, code = block
    first = next((s.strip() for s in code.splitlines() if s.strip()), "")
    return f"line{line}:{first[:40]}"


def _substitute(code):
    used = []
    for pattern, (replacement, _why) in SUBSTITUTIONS.items():
        code, n = re.subn(pattern, replacement, code)
        if n:
            used.append(pattern)
    return code, used


def _imports(code):
    """The import statements of ``code``, as source."""
    return [ast.unparse(node) for node in ast.walk(ast.parse(code))
            if isinstance(node, (ast.Import, ast.ImportFrom))]


def _known_defect(key, request):
    for marker, why in KNOWN_README_DEFECTS.items():
        if marker in key:
            request.applymarker(pytest.mark.xfail(
                strict=True, reason=f"README defect: {why} (remove the KNOWN_README_DEFECTS "
                                    "entry once README.md is fixed)"))


def _imported_packages(code):
    found = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return found


def namespace(tmp_path):
    """The data README snippets assume a reader has; .npy files in ``tmp_path``."""
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    import hnm

    X_all, y_all = make_classification(4000, n_features=20, n_informative=8,
                                       weights=[0.9], flip_y=0.01, random_state=0)
    X, X_test, y, y_test = train_test_split(X_all, y_all, test_size=1000, stratify=y_all,
                                            random_state=0)
    model = LogisticRegression(max_iter=1000).fit(X, y)
    proba = model.predict_proba(X_test)
    d_test = hnm.difficulty(y_test, proba, labels=model.classes_)
    d_train = hnm.difficulty(y, model.predict_proba(X), labels=model.classes_)
    negatives = np.flatnonzero(y == 0)
    hard_indices = negatives[np.argsort(-d_train[negatives], kind="stable")[:60]]

    rng = np.random.default_rng(0)
    corpus = rng.standard_normal((3000, 32)).astype(np.float32)
    positive_ids = rng.choice(corpus.shape[0], 40, replace=False)
    queries = corpus[positive_ids] + 0.3 * rng.standard_normal((40, 32)).astype(np.float32)
    positives = [np.array([p]) for p in positive_ids]
    np.save(tmp_path / "corpus.npy", corpus)
    losses = rng.gamma(2.0, size=20_000)
    np.save(tmp_path / "losses.npy", losses)
    ns = dict(X=X, y=y, X_test=X_test, y_test=y_test, model=model, proba=proba,
              d_test=d_test, queries=queries, positive_ids=positive_ids,
              positives=positives, hard_indices=hard_indices,
              losses=losses)
    try:
        import dask.array as da
    except ImportError:
        pass
    else:
        ns.update(y_dask=da.from_array(y_test, chunks=250),
                  proba_dask=da.from_array(proba, chunks=(250, 2)))
    return ns


@pytest.fixture
def readme_namespace(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return namespace(tmp_path)


def test_readme_has_python_blocks():
    assert README.exists(), "README.md not found next to tests/"
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=[_block_id(b) for b in BLOCKS])
def test_readme_block_runs(index, readme_namespace, request):
    line, code = BLOCKS[index]
    _known_defect(code, request)
    code, _ = _substitute(code)
    for package in sorted(_imported_packages(code) & set(OPTIONAL)):
        pytest.importorskip(package)
    earlier = [imp for _, c in BLOCKS[:index] for imp in _imports(_substitute(c)[0])]
    earlier = [imp for imp in earlier if not _imported_packages(imp) & set(OPTIONAL)]
    ns = dict(readme_namespace)
    exec("\n".join(earlier), ns)
    try:
        with warnings.catch_warnings():
            # a snippet may print a warning for the reader; it must still run
            warnings.simplefilter("ignore")
            exec(compile(code, f"README.md, block at line {line}", "exec"), ns)
    finally:
        for value in list(ns.values()):  # never leave a Dask cluster running
            if type(value).__name__ == "Client" and hasattr(value, "close"):
                value.close()
    for name in INDEX_RESULTS:
        if name in ns and name not in readme_namespace:
            value = ns[name]
            assert isinstance(value, np.ndarray) and value.ndim == 1 and (
                value.dtype.kind in "iu"), (
                f"README block at line {line}: {name} is used as indices but is "
                f"{type(value).__name__}")


def test_every_substitution_still_matches():
    text = "\n".join(code for _, code in BLOCKS)
    for pattern, (_, why) in SUBSTITUTIONS.items():
        assert re.search(pattern, text), (
            f"SUBSTITUTIONS entry {pattern!r} ({why}) matches no README block: remove it")


def _claimed_expression(marker):
    """The expression on the README line (in a python block) that carries a
    claim ``marker`` in its comment, e.g. the resampler said to be NearMiss-1."""
    for _, code in BLOCKS:
        for source_line in code.splitlines():
            if marker in source_line and "#" in source_line:
                expr = source_line.split("#", 1)[0].strip()
                if expr:
                    return expr.split("=", 1)[1].strip() if re.match(r"^\w+\s*=", expr) \
                        else expr
    return None


def test_readme_nearmiss_claim_holds(request):
    """Whatever README line says it gives NearMiss-1's selection does, exactly."""
    _known_defect(request.node.name, request)
    imblearn = pytest.importorskip("imblearn.under_sampling")
    expr = _claimed_expression("NearMiss-1")
    if expr is None:
        pytest.skip("the README makes no NearMiss-1 claim")
    import hnm

    from sklearn.datasets import make_classification

    X, y = make_classification(2000, n_features=10, weights=[0.9], random_state=1)
    sampler = eval(expr, {"hnm": hnm})
    sampler.fit_resample(X, y)
    reference = imblearn.NearMiss(version=1).fit(X, y)
    reference.fit_resample(X, y)
    got, want = np.sort(sampler.sample_indices_), np.sort(reference.sample_indices_)
    assert got.size == want.size and np.array_equal(got, want), (
        f"README claims `{expr}` selects exactly as NearMiss(version=1): "
        f"{np.intersect1d(got, want).size} of {want.size} samples agree")
