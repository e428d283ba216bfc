"""The exact nearest-candidate search on inputs already checked.

:func:`hnm.search_hard_pairs` checks its arguments and calls :func:`nearest`;
so do the searches that run it many times with the same checked inputs (the
miners of :mod:`hnm.retrieval`, each block of :mod:`hnm.dask`), which then
validate each input once, not once per search.
"""
from contextlib import nullcontext
import math
import os

import numpy as np

from . import _pairs
from ._threads import single_threaded_blas
from ._progress import progress_bar
from ._ranking import sort_heaps
from ._validation import check_option
from ._direct_read import candidate_spans
from ._search_inputs import DEFAULT_QUERY_BLOCK, call_span, _NO_LABELS, _scaled

# Below this many candidates the heaps' roots stay loose for much of the stream
# and many scores fall within the bfloat16 bound: for many neighbours per query
# the rescores cost more than the faster GEMM saves; packing, once per candidate
# per call, is then small next to the search even for a few queries.
_BF16_MIN_CANDIDATES = 65536
# ... or this many for at most _BF16_FEW_K neighbours, whose roots tighten within
# the first block: CPU time of the fp32 GEMMs / the bfloat16 screen at k=5 on
# Gaussian rows (l2), 8,192 candidates: 1.45 (dim 20), 1.42 (50), 1.33 (128),
# 1.20 (768); 4,096: 0.91-1.19; k=10 at 16,384 x 768: 1.15 (ip); k=50 loses up to
# 65,536 candidates (0.78-1.00).
_BF16_FEW_MIN_CANDIDATES = 8192
_BF16_FEW_K = 10
# Candidates per bfloat16-screened block at most: the micro-kernel screens a block
# against its queries' heap roots as they stood before it, so the first block
# of a search (loose roots: every score is walked) and then every block pays for
# stale roots; refreshed every 256 candidates, NearMiss-1's search (190,000 x
# 10,800 x 50, k=5) took 2.5 CPU-s instead of 4.7 with blocks of 2048, and
# 2,000 x 300,000 x 128 (k=10) 1.13-1.19 instead of 1.38 (128: the same).
_BF16_BLOCK = 256
# Memory for the candidates of one kernel call packed to bfloat16 (16 MiB: 65,536
# candidates at dim 128).
_BF16_PACK_BYTES = 16 << 20


def nearest(Q, C, stop, metric, cap, exclusions, labels=(None, None), *, exclude_self=False,
            n_threads, block_size, bf16=False, progress=False, name="search_hard_pairs"):
    """The ``stop`` nearest candidates of every query, best first.

    Parameters
    ----------
    Q, C : checked real 2-D arrays of one dimension (``C`` may be a memmap).
    stop : int
        Candidates per query (``0 <= stop <= len(C)``).
    metric : {"cosine", "ip", "l2"}
    cap : ndarray of shape (n_queries,)
        Per query, skip candidates whose key is above it: the similarity, for
        "l2" minus the squared distance (the kernel's "larger is closer" keys);
        ``inf``: none.
    exclusions : (indptr, ids)
        Per query the candidate ids never returned, in the kernel's form
        (``_search_inputs._kernel_csr``: sorted per row, then a dummy id).
    labels : (query codes, candidate codes) or (None, None)
        Integer label codes (see ``_search_inputs._labels``); candidates of
        the query's label are skipped.
    n_threads, block_size : int
    bf16 : bool
        Screen in bfloat16 (the caller decided it, see ``pairs._use_bf16``).

    Returns
    -------
    scores, indices : ndarrays of shape (n_queries, stop)
        Closest first, ties by the smaller index, padded with index -1 and
        score -inf ("ip", "cosine") or +inf ("l2").
    """
    n_q, n_c = Q.shape[0], C.shape[0]
    dtype = np.result_type(np.float32, *(a.dtype for a in (Q, C) if a.dtype.kind == "f"))
    metric_code = _pairs.METRICS[metric]
    Qw, q_scale = _scaled(np.ascontiguousarray(Q, dtype=dtype), metric, metric_code,
                          "queries")
    cap = np.ascontiguousarray(cap, dtype=dtype)
    ex_ptr, ex_idx = exclusions
    q_lab, c_lab = labels
    if q_lab is None:
        q_lab = np.full(n_q, -1, dtype=np.intp)
    c_block = min(block_size, _BF16_BLOCK) if bf16 else block_size

    keys = np.empty((n_q, stop), dtype=dtype)
    idx = np.empty((n_q, stop), dtype=np.intp)
    sizes = np.zeros(n_q, dtype=np.intp)
    if stop == 0:  # (k=0 from at_most with no candidates: nothing to scan)
        return _results(keys, idx, sizes, metric)
    q_block = max(1, min(DEFAULT_QUERY_BLOCK, math.ceil(n_q / n_threads)))
    threads = max(1, min(n_threads, math.ceil(n_q / q_block)))
    work = np.empty((threads, q_block * c_block), dtype=dtype)
    # calls as large as with the caller's blocks (fewer packings, joins and reads)
    span = call_span(block_size, n_q, Qw.shape[1]) // c_block * c_block or c_block
    native = C.dtype == dtype and C.flags.c_contiguous
    if bf16:
        q_packed = np.empty((n_q, (Qw.shape[1] + 1) // 2), dtype=np.uint32)
        q_bounds = np.empty((n_q, 3), dtype=np.float64)
        _pairs.bf16_pack(Qw, q_packed, q_bounds, threads)
        # candidates are packed once per kernel call: at most _BF16_PACK_BYTES
        c_rows = min(c_block, n_c)
        panel = q_packed.shape[1] * ((c_rows + 31) // 32 * 32)
        span = min(span, c_block * max(1, _BF16_PACK_BYTES // (4 * panel)))
        c_packed = np.zeros(panel * math.ceil(min(span, n_c) / c_block), dtype=np.uint32)
        c_bounds = np.empty((2, min(span, n_c)), dtype=np.float64)
        c_stage = np.zeros((threads, 16 * q_packed.shape[1]), dtype=np.uint32)
        # each thread's row: the tile, then per query its threshold and masks
        work = np.empty((threads, q_block * c_block + q_block
                         + q_block * ((c_block + 31) // 32)), dtype=dtype)
        bf16_args = (q_packed, q_bounds, c_packed, c_bounds, c_stage)
    else:
        bf16_args = ()
    n_nan = 0
    # BLAS runs inside our threads: one BLAS thread each, or they oversubscribe.
    # With a single thread of ours, BLAS may parallelise the GEMMs itself.
    blas_limit = single_threaded_blas() if threads > 1 else nullcontext()
    with blas_limit, progress_bar(progress, n_c, name, "candidates") as bar:
        for c0, block in candidate_spans(C, span):
            if not native:
                block = np.ascontiguousarray(block, dtype=dtype)
            block, c_scale = _scaled(block, metric, metric_code, "candidates")
            c_labels = c_lab[c0:c0 + span] if c_lab is not None else _NO_LABELS
            n_nan += _pairs.search_update(
                Qw, q_scale, block, c_scale, c0, metric_code, cap, ex_ptr, ex_idx,
                bool(exclude_self), q_lab, c_labels, keys, idx, sizes, q_block, c_block,
                work, threads, *bf16_args)
            bar.update(block.shape[0])
    if n_nan:
        raise ValueError("candidates or queries produce NaN scores (NaN or infinity in "
                         "the embeddings, or values too large for the dtype).")
    return _results(keys, idx, sizes, metric)


def _results(keys, idx, sizes, metric):
    keys, idx = sort_heaps(keys, idx, sizes)  # best first, ties by smaller index, padded
    return (-keys if metric == "l2" else keys), idx


def _use_bf16(screen, dtype, n_c, k=None):
    """Whether this search screens in bfloat16 (see ``screen`` of search_hard_pairs);
    ``k``: the neighbours per query, None where it varies between searches."""
    screen = check_option(screen, "screen", ("auto", "bf16", "exact"))
    if screen == "exact":
        return False
    if screen == "bf16":
        if dtype != np.float32:
            raise ValueError("screen='bf16' needs float32 queries and candidates; "
                             f"these are computed in {np.dtype(dtype).name}.")
        if not _pairs.bf16_supported():
            raise ValueError("screen='bf16' needs a CPU with AVX-512 BF16; this one has "
                             "none (use screen='auto' or 'exact').")
        return True
    env = os.environ.get("HNM_SCREEN", "auto").strip().lower()
    if env not in ("auto", "exact", ""):
        raise ValueError(f"the environment variable HNM_SCREEN must be 'auto' or 'exact', "
                         f"got {env!r}.")
    few = k is not None and k <= _BF16_FEW_K and n_c >= _BF16_FEW_MIN_CANDIDATES
    return (env != "exact" and dtype == np.float32
            and (n_c >= _BF16_MIN_CANDIDATES or few) and _pairs.bf16_supported())
