"""Exact nearest-candidate search for hard pairs, streaming the candidates."""
from collections import namedtuple
from contextlib import nullcontext
import math
import os

import numpy as np

from . import _pairs
from ._threads import resolve_n_jobs, single_threaded_blas as _single_threaded_blas
from ._progress import progress_bar
from ._validation import check_int, check_option
from ._ranking import check_k_band, sort_heaps
from ._search_inputs import (DEFAULT_CANDIDATE_BLOCK, DEFAULT_QUERY_BLOCK, call_span,
                             _NO_LABELS, _check_search, _exclusions, _labels, _per_query,
                             _scaled)

__all__ = ["PairResult", "search_hard_pairs"]

PairResult = namedtuple("PairResult", ["scores", "indices"])
PairResult.__doc__ = """Result of :func:`search_hard_pairs`: ``scores`` and candidate
``indices`` of shape (n_queries, k), best first.

See Also
--------
search_hard_pairs : what returns it.

Examples
--------
>>> import numpy as np
>>> import hnm
>>> scores, indices = hnm.search_hard_pairs(np.eye(2), np.eye(2), 1)
>>> indices.ravel()
array([0, 1])
"""



def search_hard_pairs(queries, candidates, k=None, *, metric="cosine", exclude=None,
                      exclude_self=False, band=None, max_score=None, query_labels=None,
                      candidate_labels=None, n_jobs=None, block_size=None, progress=False,
                      screen="auto", checkpoint=None):
    """For every query, the ``k`` closest candidates, exactly, in bounded memory.

    Candidates are streamed in blocks: each block is scored against blocks of
    queries with one BLAS GEMM, and a bounded heap per query keeps the best
    ``k`` (ties by the smaller candidate index), screening out almost every
    score with one comparison. Memory depends on the block sizes and ``k``, not
    on the number of candidates, so ``candidates`` can be an ``np.memmap`` of
    any size. The selected ids are the same for every block size and thread
    count, except where two scores are equal within floating-point rounding; the
    scores themselves can differ in the last bits, as BLAS sums a dot product in
    an order that depends on the shape of the blocks.

    Parameters
    ----------
    queries : array-like of shape (n_queries, dim)
    candidates : array-like of shape (n_candidates, dim)
        float32 and float64 C-contiguous arrays are read in place; other real
        dtypes and layouts are converted one block at a time. If the two dtypes
        differ, both are computed in the wider one.
    k : int, optional
        Candidates per query, ``1 <= k <= n_candidates``; or give ``band``.
    metric : {"cosine", "ip", "l2"}, default="cosine"
        "ip": inner product, larger is closer. "cosine": cosine similarity,
        computed from norms without normalising or copying the candidates (a
        zero vector has similarity 0 with everything). "l2": squared Euclidean
        distance via norms and the GEMM, clamped at 0, smaller is closer.
    exclude : list of array-like or (indptr, indices), optional
        Per query, candidate ids never to return (e.g. its known positives).
    exclude_self : bool, default=False
        Query ``i`` never returns candidate ``i`` (queries are the candidates).
    band : (int, int or None), optional
        Ranks ``start .. stop-1`` instead of the top ``k``, as :func:`hnm.topk`.
    max_score : float or array-like of shape (n_queries,), optional
        Skip candidates closer than this (per query if an array): similarity
        above it for "ip"/"cosine", squared distance *below* it for "l2". The
        false-negative guard of hard negative mining.
    query_labels, candidate_labels : array-like, optional
        If both are given, only candidates whose label differs from the
        query's are returned.
    n_jobs : int, optional
        Threads (default: all OpenMP threads).
    block_size : int, optional
        Candidates per GEMM (default 2048).
    progress : bool, default=False
        Show a progress bar over the candidates.
    screen : {"auto", "bf16", "exact"}, default="auto"
        How scores are screened before the heaps. "bf16": float32 dot products
        are first approximated in bfloat16 by an AVX-512 BF16 micro-kernel (twice
        the fp32 rate), every approximation within a proven bound of the heap's
        root is rescored exactly (summed in double), and the rest are dropped;
        the result is as exact as the "exact" path. "exact": fp32/fp64 GEMMs.
        "auto" (the default) uses "bf16" for float32 inputs with at least
        65,536 candidates where the CPU has AVX-512 BF16, unless the environment
        variable ``HNM_SCREEN=exact`` is set; else "exact" (with fewer candidates
        the heaps stay loose and too many scores need a rescore). The choice
        depends on the candidates only, so splitting the queries (checkpoints,
        Dask) never changes a result. float64 inputs always take the exact path.
    checkpoint : str or os.PathLike, optional
        A directory where each finished block of queries is saved: the same call
        again computes only the blocks still missing (after Ctrl-C, a kill or a
        crash), with a result identical to an uninterrupted call's; a call with
        other inputs or parameters raises ``ValueError`` naming what changed.
        ``progress`` then counts queries, the blocks finished earlier as done.

    Returns
    -------
    PairResult
        ``(scores, indices)``, each of shape (n_queries, k), closest first.
        A query with fewer than ``k`` eligible candidates is padded with index
        -1 and score -inf ("ip", "cosine") or +inf ("l2").

    Examples
    --------
    >>> import numpy as np
    >>> import hnm
    >>> corpus = np.array([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7], [-1.0, 0.0]])
    >>> result = hnm.search_hard_pairs(np.array([[1.0, 0.1]]), corpus, 2)
    >>> result.indices
    array([[0, 2]])
    >>> hnm.search_hard_pairs(corpus, corpus, 1, metric="l2", exclude_self=True).indices.ravel()
    array([2, 2, 0, 1])
    """
    if checkpoint is not None:
        from ._checkpoint import run_checkpointed

        return run_checkpointed(search_hard_pairs, checkpoint, locals())
    metric, Q, C = _check_search(metric, queries, candidates)
    n_q, n_c = Q.shape[0], C.shape[0]
    start, stop = check_k_band(k, band, n_c, "candidates")
    if not isinstance(exclude_self, (bool, np.bool_)):
        raise TypeError(f"exclude_self must be a bool, got {exclude_self!r}.")
    if exclude_self and n_q > n_c:
        raise ValueError("exclude_self needs queries to be (a prefix of) the candidates.")
    n_threads = resolve_n_jobs(n_jobs)
    c_block = check_int(block_size, "block_size", min_value=1, allow_none=True)
    c_block = c_block or DEFAULT_CANDIDATE_BLOCK

    dtype = np.result_type(np.float32, *(a.dtype for a in (Q, C) if a.dtype.kind == "f"))
    Qw = np.ascontiguousarray(Q, dtype=dtype)
    metric_code = _pairs.METRICS[metric]
    Qw, q_scale = _scaled(Qw, metric, metric_code, "queries")
    cap = _per_query(max_score, n_q, dtype)
    if metric == "l2" and max_score is not None:
        cap = -cap  # keys are minus distances: "closer than d" is "key above -d"
    ex_ptr, ex_idx = _exclusions(exclude, n_q, n_c)
    q_lab, c_lab = _labels(query_labels, candidate_labels, n_q, n_c)

    keys = np.empty((n_q, stop), dtype=dtype)
    idx = np.empty((n_q, stop), dtype=np.intp)
    sizes = np.zeros(n_q, dtype=np.intp)
    q_block = max(1, min(DEFAULT_QUERY_BLOCK, math.ceil(n_q / n_threads)))
    threads = max(1, min(n_threads, math.ceil(n_q / q_block)))
    work = np.empty((threads, q_block * c_block), dtype=dtype)
    span = call_span(c_block, n_q, Qw.shape[1])
    native = C.dtype == dtype and C.flags.c_contiguous
    bf16 = _use_bf16(screen, dtype, n_c)
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
    blas_limit = _single_threaded_blas() if threads > 1 else nullcontext()
    with blas_limit, progress_bar(progress, n_c, "search_hard_pairs", "candidates") as bar:
        for c0 in range(0, n_c, span):
            block = C[c0:c0 + span]
            if not native:
                block = np.ascontiguousarray(block, dtype=dtype)
            block, c_scale = _scaled(block, metric, metric_code, "candidates")
            labels = c_lab[c0:c0 + span] if c_lab is not None else _NO_LABELS
            n_nan += _pairs.search_update(
                Qw, q_scale, block, c_scale, c0, metric_code, cap, ex_ptr, ex_idx,
                bool(exclude_self), q_lab, labels, keys, idx, sizes, q_block, c_block, work,
                threads, *bf16_args)
            bar.update(block.shape[0])
    if n_nan:
        raise ValueError("candidates or queries produce NaN scores (NaN or infinity in "
                         "the embeddings, or values too large for the dtype).")
    keys, idx = sort_heaps(keys, idx, sizes)  # best first, ties by smaller index, padded
    keys, idx = keys[:, start:], idx[:, start:]
    scores = -keys if metric == "l2" else keys
    return PairResult(scores, idx)



# Below this many candidates the heaps' roots stay loose for much of the stream
# and many scores fall within the bfloat16 bound: the rescores cost more than the
# faster GEMM saves (NearMiss-1 at 190,000 x 10,800 x 50: 1.7% rescored); packing, once per
# candidate per call, is then small next to the search even for a few queries.
_BF16_MIN_CANDIDATES = 65536
# Memory for the candidates of one kernel call packed to bfloat16 (16 MiB: 32
# blocks of 2048 candidates at dim 128).
_BF16_PACK_BYTES = 16 << 20


def _use_bf16(screen, dtype, n_c):
    """Whether this search screens in bfloat16 (see ``screen`` of search_hard_pairs)."""
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
    return (env != "exact" and dtype == np.float32 and n_c >= _BF16_MIN_CANDIDATES
            and _pairs.bf16_supported())
