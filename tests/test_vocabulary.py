"""One vocabulary, one error rule (issue #13, V5 and V7).

Every real-valued scalar parameter of every public function and estimator is
found from ``inspect.signature`` (a float default) and the numpydoc type line
(``name : float ...``), so a new function or parameter is tested without
editing this file: a NaN must raise ``ValueError`` and a string ``TypeError``
(or ``ValueError`` where the parameter also takes option strings), with a message
naming the parameter. A public callable with such a parameter and no base call
below fails, rather than being skipped.
"""
import importlib
import inspect
import re

import numpy as np
import pytest

import hnm

_rng = np.random.default_rng(0)
X = _rng.standard_normal((60, 4))
Y = (np.arange(60) % 3 == 0).astype(int)           # 20 positives, 40 negatives
P = np.clip(0.5 * Y + 0.25 + 0.2 * _rng.standard_normal(60), 0, 1)
D = _rng.standard_normal(60)
E = X / np.linalg.norm(X, axis=1, keepdims=True)    # unit embeddings
L4 = np.arange(60) % 4                              # four classes of 15 for the miners


def _miner(name):
    def call(**kw):
        return getattr(importlib.import_module("hnm.miners"), name)(E, L4, **kw)
    return call


def _fit(make, method="fit"):
    def call(**kw):
        return getattr(make(**kw), method)(X, Y)
    return call


def _classifier(**kw):
    from sklearn.linear_model import LogisticRegression
    from hnm.mining import HardMiningClassifier
    return HardMiningClassifier(LogisticRegression(), n_rounds=2, **kw)


def _resampler(**kw):
    from hnm.resampling import HardNegativeResampler
    return HardNegativeResampler(difficulty="nearmiss", **kw)


def _nearmiss(**kw):
    from hnm.nearmiss import NearMiss
    return NearMiss(**kw)


def _dask_mine(**kw):
    da = pytest.importorskip("dask.array")
    return hnm.dask.mine_hard_negatives(E[:10], np.arange(10), da.from_array(E, chunks=20),
                                        **kw)


def _st_mine(**kw):
    datasets = pytest.importorskip("datasets")
    from hnm.sentence_transformers import mine_hard_negatives

    class Encoder:
        def encode(self, texts, batch_size=32):
            return np.array([[len(t), t.count("a") + 1.0, t.count("b") + 1.0] for t in texts],
                            dtype=np.float32)

    words = ["a b", "a a b", "b b", "a", "b a b", "a b b a", "bb", "aab"]
    pairs = datasets.Dataset.from_dict({"anchor": words[:4], "positive": words[4:]})
    return mine_hard_negatives(pairs, Encoder(), verbose=False, **kw)


def _sel(name, *args):
    def call(**kw):
        return getattr(hnm.selection, name)(*args, **kw)
    return call


# One valid call of each public callable that has real-valued parameters; the
# parameter under test is passed as a keyword and overrides these.
BASE_CALLS = {
    "hnm.dask.mine_hard_negatives": _dask_mine,
    "hnm.metrics.hard_case_report": lambda **kw: hnm.metrics.hard_case_report(Y, P, **kw),
    "hnm.miners.triplet_margin": _miner("triplet_margin"),
    "hnm.miners.multi_similarity": _miner("multi_similarity"),
    "hnm.miners.pair_margin": _miner("pair_margin"),
    "hnm.miners.distance_weighted": _miner("distance_weighted"),
    "hnm.miners.hdc": _miner("hdc"),
    "hnm.miners.angular": _miner("angular"),
    "hnm.mining.HardMiningClassifier": _fit(_classifier),
    "hnm.nearmiss.NearMiss": _fit(_nearmiss, "fit_resample"),
    "hnm.pairs.search_hard_pairs": lambda **kw: hnm.search_hard_pairs(E[:5], E, 3, **kw),
    "hnm.resampling.HardNegativeResampler": _fit(_resampler, "fit_resample"),
    "hnm.retrieval.mine_hard_negatives":
        lambda **kw: hnm.mine_hard_negatives(E[:10], np.arange(10), E, **kw),
    "hnm.selection.select_hardest": lambda **kw: hnm.selection.select_hardest(D, **(
        {"k": 5} if "fraction" not in kw else {}), **kw),
    "hnm.selection.sample_by_difficulty": _sel("sample_by_difficulty", D, 5),
    "hnm.selection.importance_sample": _sel("importance_sample", np.abs(D), 5),
    "hnm.selection.select_semi_hard": lambda **kw: hnm.selection.select_semi_hard(
        D, **{"margin": 0.5, **kw}),
    "hnm.selection.curriculum_window": _sel("curriculum_window", 1, 4),
    "hnm.selection.select_quantile_window": lambda **kw: hnm.selection.select_quantile_window(
        D, **{"low": 0.2, "high": 0.8, **kw}),
    "hnm.selection.difficulty_weights": lambda **kw: hnm.selection.difficulty_weights(
        D, **{"method": "softmax", **kw}),
    "hnm.sentence_transformers.mine_hard_negatives": _st_mine,
}


def _doc_types(obj):
    """``{parameter: type text}`` from a numpydoc Parameters section."""
    doc = inspect.getdoc(obj) or ""
    section = re.search(r"^Parameters\n-+\n(.*?)(?=^\w[\w ]*\n-+\n|\Z)", doc, re.S | re.M)
    types = {}
    for line in (section.group(1).splitlines() if section else []):
        m = re.match(r"^(\w+(?:\s*,\s*\w+)*)\s*:\s*(.*)$", line)
        if m:
            for name in m.group(1).split(","):
                types[name.strip()] = m.group(2)
    return types


def _real_kind(param, type_text):
    """None if not a real-valued scalar; else whether it also accepts strings."""
    if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
        return None
    text = re.split(r",\s*(?:default|optional)\b", type_text or "")[0]
    if text.startswith("("):
        return None  # a tuple of numbers, not a scalar
    alternatives = [a.strip() for a in re.split(r",|\bor\b", text)]
    documented = any(re.match(r"(float|real)\b", a) for a in alternatives)
    default = param.default
    if not documented and not (isinstance(default, float) and not isinstance(default, bool)):
        return None
    takes_strings = any(re.match(r"[\"']|str\b", a) for a in alternatives) or \
        isinstance(default, str)
    return "strings too" if takes_strings else "numbers only"


def _public_callables():
    for module_name in hnm._submodules():
        module = importlib.import_module(f"hnm.{module_name}")
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and \
                    obj.__module__ == module.__name__:
                yield f"hnm.{module_name}.{name}", obj


def _cases():
    cases = []
    for qualname, obj in _public_callables():
        try:
            sig = inspect.signature(obj)
        except (TypeError, ValueError):
            continue
        types = _doc_types(obj)
        for param in sig.parameters.values():
            kind = _real_kind(param, types.get(param.name))
            if kind is not None:
                cases.append(pytest.param(qualname, param.name, kind,
                                          id=f"{qualname}.{param.name}"))
    return cases


CASES = _cases()


def test_the_parameters_are_found():
    # the discovery itself: known real parameters of the numpy API and an estimator
    found = {c.values[:2] for c in CASES}
    for case in [("hnm.metrics.hard_case_report", "near_threshold"),
                 ("hnm.retrieval.mine_hard_negatives", "max_score"),
                 ("hnm.selection.select_semi_hard", "margin"),
                 ("hnm.mining.HardMiningClassifier", "temperature")]:
        assert case in found
    assert ("hnm.plotting.plot_difficulty", "bins") not in found  # int or a sequence
    assert len(CASES) >= 40


@pytest.mark.parametrize("qualname", sorted({c.values[0] for c in CASES}))
def test_every_callable_with_real_parameters_has_a_base_call(qualname):
    assert qualname in BASE_CALLS, f"add a valid call of {qualname} to BASE_CALLS"
    BASE_CALLS[qualname]()  # and it is valid as it stands


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("qualname, name, kind", CASES)
def test_nan_raises_value_error(qualname, name, kind):
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        BASE_CALLS[qualname](**{name: float("nan")})


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("qualname, name, kind", CASES)
def test_a_string_raises_type_error(qualname, name, kind):
    # a string among the options of a parameter that takes some: a bad option
    expected = ValueError if kind == "strings too" else TypeError
    with pytest.raises(expected, match=rf"\b{name}\b"):
        BASE_CALLS[qualname](**{name: "0.5x"})


@pytest.mark.parametrize("qualname, make", [
    ("topk", lambda n: hnm.topk(D, 7, n_jobs=n)),
    ("topk rows", lambda n: hnm.topk(X, 2, axis=1, n_jobs=n)),
    ("difficulty", lambda n: hnm.difficulty(Y, np.column_stack([1 - P, P]), n_jobs=n)),
])
def test_n_jobs_is_the_thread_count_and_changes_nothing(qualname, make):
    ref = make(1)
    for n in (2, 3, None):
        got = make(n)
        for a, b in zip(np.atleast_1d(ref), np.atleast_1d(got)):
            np.testing.assert_array_equal(a, b, err_msg=f"{qualname} n_jobs={n}")
    with pytest.raises(ValueError, match="n_jobs must be >= 1"):
        make(0)
    with pytest.raises(TypeError, match="n_jobs must be an integer"):
        make(2.0)


def test_the_measure_list_has_one_home():
    from hnm import cli, dask, mining, resampling, scoring

    assert isinstance(scoring.MEASURES, tuple)
    assert mining.MEASURES is scoring.MEASURES and resampling.MEASURES is scoring.MEASURES
    assert dask._scoring.MEASURES is scoring.MEASURES
    score = cli.build_parser()._subparsers._group_actions[0].choices["score"]
    (measure,) = [a for a in score._actions if a.dest == "measure"]
    assert tuple(measure.choices) == scoring.MEASURES
