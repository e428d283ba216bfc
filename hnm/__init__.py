"""hnm: hard negative and hard example mining.

Find the examples a model gets wrong or barely gets right, and put them back in
front of it::

    import hnm
    d = hnm.difficulty(y, model.predict_proba(X))      # higher is harder
    hardest = hnm.topk(d, 1000).indices                # the 1000 hardest
    pairs = hnm.search_hard_pairs(queries, corpus, 10) # exact nearest candidates
    mined = hnm.mine_hard_negatives(queries, positive_ids, corpus, k=5)
    hnm.HardNegativeResampler()    # an imbalanced-learn sampler keeping hard negatives
    hnm.HardMiningClassifier(LogisticRegression())     # iterative mining, a meta-estimator

More in the submodules, imported on first use (``hnm.selection``,
``hnm.metrics``, ``hnm.plotting``, ``hnm.dask``, ...); ``hnm demo`` on the
command line compares random with hard negatives on a bundled dataset.

Design: three layers, each built only on the one below it:

1. ``src_ext/`` Cython kernels (``hnm._topk``, ...): compute on validated,
   C-contiguous float32/float64 buffers, release the GIL, parallelise with
   OpenMP and write into arrays the caller allocated. They never validate.
2. The numpy API (``hnm.topk``, ...): validates arguments, chooses dtypes, chunk
   sizes and thread counts, streams memmaps and non-contiguous inputs through
   the kernels in bounded memory, and packages the results.
3. scikit-learn compatible estimators, which only compose the numpy API.
"""
import importlib as _importlib
from importlib.util import find_spec as _find_spec
import os as _os
import pkgutil as _pkgutil


def _not_built_message():
    here = _os.path.dirname(_os.path.abspath(__file__))
    root = _os.path.dirname(here)
    in_checkout = _os.path.exists(_os.path.join(root, "setup.py"))
    where = (f"You are importing hnm from its source checkout ({root}), probably because "
             "Python was started there (the current directory comes first on sys.path). "
             if in_checkout else "")
    return (
        f"hnm's compiled extensions (hnm._topk, ...) are not built in {here}. {where}"
        "Either install hnm (`pip install .`) and run Python from another directory, "
        "or install it in editable mode (`pip install -e .`), which builds the "
        "extensions in place; `python setup.py build_ext --inplace` rebuilds them "
        "after a change to src_ext/."
    )


# Without this, a missing extension surfaces as "cannot import name '_topk' from
# partially initialized module 'hnm' (most likely due to a circular import)".
if _find_spec(__name__ + "._topk") is None:
    raise ImportError(_not_built_message())

from .selection import TopK, topk
from .scoring import difficulty
from .mining import HardMiningClassifier
from .resampling import HardNegativeResampler
from .nearmiss import NearMiss
from .pairs import PairResult, search_hard_pairs
from .retrieval import MinedNegatives, mine_hard_negatives

__version__ = "0.1.0.dev0"

__all__ = [
    "TopK",
    "topk",
    "difficulty",
    "HardMiningClassifier",
    "HardNegativeResampler",
    "NearMiss",
    "PairResult",
    "search_hard_pairs",
    "MinedNegatives",
    "mine_hard_negatives",
]


def _submodules():
    return sorted(m.name for m in _pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def __getattr__(name):
    # hnm.metrics, hnm.dask, ... on first use: `import hnm` stays light (no
    # matplotlib, dask or pandas) and optional extras are only needed when used
    if name in _submodules():
        return _importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_submodules()))
