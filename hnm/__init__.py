"""hnm: hard negative and hard example mining.

The package has three layers, each built only on the one below it:

1. ``src_ext/`` Cython kernels (``hnm._topk``, ...): compute on validated,
   C-contiguous float32/float64 buffers, release the GIL, parallelise with
   OpenMP and write into arrays the caller allocated. They never validate.
2. The numpy API (``hnm.topk``, ...): validates arguments, chooses dtypes, chunk
   sizes and thread counts, streams memmaps and non-contiguous inputs through
   the kernels in bounded memory, and packages the results.
3. scikit-learn compatible estimators, which only compose the numpy API.
"""
from .selection import TopK, topk
from .scoring import difficulty
from .mining import HardMiningClassifier
from .resampling import HardNegativeResampler
from .pairs import PairResult, search_hard_pairs
from .retrieval import MinedNegatives, mine_hard_negatives

__version__ = "0.1.0.dev0"

__all__ = [
    "TopK",
    "topk",
    "difficulty",
    "HardMiningClassifier",
    "HardNegativeResampler",
    "PairResult",
    "search_hard_pairs",
    "MinedNegatives",
    "mine_hard_negatives",
]
