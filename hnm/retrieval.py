"""Hard negatives for embedding retrieval: (query, positive, negative) triplets.

The exact streamed search of :func:`hnm.search_hard_pairs` (``hnm._nearest``)
reads the corpus in blocks, so the query x corpus score matrix is never
materialised and a memory-mapped corpus of any size works; the pipeline of
guards, windows and draws is ``hnm._negatives.mine``, shared with
:func:`hnm.dask.mine_hard_negatives`.
"""
from dataclasses import dataclass, field

import numpy as np

from ._negatives import MINE_OPTIONS, mine
from ._nearest import _use_bf16, nearest
from ._search_inputs import DEFAULT_CANDIDATE_BLOCK, _check_search, _kernel_csr
from ._threads import resolve_n_jobs
from ._validation import check_int

__all__ = ["MinedNegatives", "mine_hard_negatives"]


@dataclass
class MinedNegatives:
    """Result of :func:`mine_hard_negatives`.

    With ``output="triplets"`` every attribute below is an array with one
    entry per (query, positive, negative) row; with ``output="ntuple"``,
    ``negative``, ``score``, ``is_hard`` and ``rank`` have one column per
    negative (shape (n_rows, k)).

    Attributes
    ----------
    query : ndarray of int
        Query row.
    positive : ndarray of int
        Candidate id of the positive (the query's row when positives were given
        as embeddings).
    negative : ndarray of int
        Candidate id of the negative.
    score : ndarray of float
        Query-negative similarity (for ``metric="l2"``: minus the squared
        distance, so that higher is always closer).
    positive_score : ndarray of float
        Query-positive similarity of the row's positive.
    is_hard : ndarray of bool
        True for mined negatives, False for the random ones of ``easy_ratio``.
    rank : ndarray of int
        Rank of a hard negative among the query's surviving candidates
        (0 = closest), -1 for random ones.
    summary : dict
        Counts and score statistics, for logging.

    See Also
    --------
    mine_hard_negatives : what returns it.
    hnm.sentence_transformers.to_dataset : a ``datasets.Dataset`` in
        sentence-transformers' column layout.

    Examples
    --------
    >>> import numpy as np
    >>> import hnm
    >>> corpus = np.eye(4) + 0.1
    >>> mined = hnm.mine_hard_negatives(corpus[:2], np.array([0, 1]), corpus, k=2,
    ...                                 output="ntuple")
    >>> mined.negative.shape, len(mined)
    ((2, 2), 2)
    >>> mined.summary["n_hard"]
    4
    """

    query: np.ndarray
    positive: np.ndarray
    negative: np.ndarray
    score: np.ndarray
    positive_score: np.ndarray
    is_hard: np.ndarray
    rank: np.ndarray
    summary: dict = field(default_factory=dict)

    def __len__(self):
        return int(self.query.shape[0])

    def to_dataset(self, queries=None, corpus=None, **kwargs):
        """A ``datasets.Dataset`` in sentence-transformers' column layout: texts
        when ``queries`` and ``corpus`` are given, ids otherwise (see
        :func:`hnm.sentence_transformers.to_dataset` for the options).

        Examples
        --------
        >>> import numpy as np
        >>> import hnm
        >>> corpus = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.5]])
        >>> mined = hnm.mine_hard_negatives(corpus[:1], np.array([0]), corpus, k=1)
        >>> mined.to_dataset(["q"], ["a", "b", "c"])[0]
        {'anchor': 'q', 'positive': 'a', 'negative': 'c'}
        """
        from .sentence_transformers import to_dataset
        return to_dataset(self, queries, corpus, **kwargs)

    def to_pandas(self, queries=None, corpus=None, **kwargs):
        """A pandas DataFrame in sentence-transformers' column layout (see
        :func:`hnm.sentence_transformers.to_pandas` for the options).

        Examples
        --------
        Without texts the columns hold ids, one row per triplet:

        >>> import numpy as np
        >>> import hnm
        >>> mined = hnm.mine_hard_negatives(np.eye(3)[:1], np.array([0]), np.eye(3) + 0.1, k=2)
        >>> frame = mined.to_pandas()
        >>> frame.columns.tolist(), frame.values.tolist()
        (['anchor', 'positive', 'negative'], [[0, 0, 1], [0, 0, 2]])
        """
        from .sentence_transformers import to_pandas
        return to_pandas(self, queries, corpus, **kwargs)


def mine_hard_negatives(queries, positives, candidates, *, k=3, at_most=False, band=(0, None),
                        absolute_margin=None, relative_margin=None, duplicate_threshold=0.95,
                        lower_margin=None, max_score=None, min_score=None, sampling="top",
                        simans=(100.0, -0.1), easy_ratio=0.0, exclude=None, output="triplets",
                        metric="cosine", random_state=None, query_offset=0, n_jobs=None,
                        block_size=None, progress=False, checkpoint=None):
    """Mine hard negatives for retrieval training, exactly, in bounded memory.

    For every query, the candidates closest to it are the negatives that teach
    most, minus the false negatives among them (unlabelled positives). The
    pipeline, as in sentence-transformers' ``mine_hard_negatives`` and
    NV-Retriever's positive-aware mining (Moreira et al., 2024), plus a guard
    against near-duplicates of the positive that neither has:

    1. the query's positives (and ``exclude``) are never negatives;
    2. false-negative guards, relative to the query's positive score ``p`` (the
       *smallest* score among its positives): drop candidates scoring above
       ``p - absolute_margin`` or above ``p - relative_margin * |p|``
       (``relative_margin=0.05`` is NV-Retriever's "TopK-PercPos": drop
       negatives above 95% of the positive's score; written with ``|p|`` so it
       stays a guard when ``p`` is negative), or above ``max_score``;
    3. near-duplicate guard: drop candidates whose cosine similarity to one of
       the query's *positives* (not to the query) exceeds
       ``duplicate_threshold``: a copy or near-copy of a labelled positive is
       the commonest unlabelled positive of real corpora;
    4. rank the survivors (closest first, ties by smaller id) and keep the rank
       window ``band = (start, stop)`` (in Meta's embedding-based retrieval,
       Huang et al. 2020, negatives from ranks 101-500 did best);
       candidates below ``min_score`` or below ``p - lower_margin`` are dropped
       (the multi-similarity rule, Wang et al. 2019: a negative is informative
       if it scores above the hardest positive minus a margin);
    5. take ``k`` from the window: the closest (``sampling="top"``),
       uniformly at random from the whole window (``"random"``), or by SimANS
       (``"simans"``, Zhou et al. 2022): without replacement with probability
       proportional to ``exp(-a (s - p - b)**2)``, ``(a, b) = simans``, i.e. most often the
       candidates scoring about ``p + b``: ambiguous, neither too easy nor
       likely false negatives;
    6. add ``round(easy_ratio * n_hard)`` random negatives per query, drawn
       from the whole corpus under the same exclusions and guards.

    Steps 1-4 apply before ranking, so a filtered candidate never takes a place
    in the window. The search streams the corpus (:func:`hnm.search_hard_pairs`);
    the near-duplicate guard gathers only the searched candidates' rows (about
    ``2 * stop + 8`` per query) and searches deeper, for the queries it left
    short only, so memory stays bounded for a memory-mapped corpus of any size.

    Defaults. The closest 3 negatives, minus near-duplicates of the positive
    (``duplicate_threshold=0.95``), no margin. Chosen by training a retriever
    on the mined negatives (``benchmarks/bench_retrieval_quality.py``: a linear
    adapter trained with InfoNCE on 5 negatives per query, recall@1 on held-out
    queries, paired over 10 seeds, six kinds of data): the defaults gained
    +0.14 to +0.19 recall@1 over random negatives on latent-topic data (with
    and without 30% unlabelled near-duplicates, several positives per query, a
    long easy tail) and on digits embeddings (same-class retrieval), the best
    setting tried on each (within 0.001); with twice the topic data +0.07 to
    +0.12, within 0.006 of the best except on the data with near-duplicates,
    where 5 random negatives of the 50 closest did 0.014 +/- 0.011 (sd) better
    (0.015 worse at the smaller size, 0.04 on digits). That gap is not false
    negatives (the defaults mine none; unguarded, 2.3% train as well), nor
    repeats among the negatives (5 that are no near-copies of each other:
    +0.000), nor negatives closer to the query than its positive in the data's
    latent space (removing those, which only the generator knows: -0.001),
    nor hub documents; it is the closest negatives themselves: ranks 20-24 do
    as well as the random 5 of 50, 3 closest plus 2 random of 50 gain nothing
    (+0.001), and it halves with half the training (3 epochs: +0.006) and
    grows with the data: at four times the size (``HNM_BENCH_SCALE=4``, 4
    seeds) the defaults gained only +0.006 over random negatives (+0.018
    without near-duplicates, +0.014 with several positives per query, +0.07
    with the easy tail), every other setting of the benchmark did better, and
    ``relative_margin=0.05`` best or nearly (by 0.024 to 0.051), while four
    times the corpus alone or 1.6 times the queries alone left the defaults
    within 0.005 of the best: on large training sets measure a margin or a
    later window (``band=(20, None)``) before relying on the defaults. Every
    rule tried that narrows it costs digits, where the closest negatives
    teach most although a quarter of them are same-class (the positive is one
    random same-class image): a cap at the positive's score + 0.05 (+0.009
    there, -0.11 on digits), a wider window (-0.011 to -0.05), so the defaults
    stay the closest.
    Every margin tried cost recall: ``relative_margin=0.05`` gained -0.01 to
    +0.12 on topic data and lost 0.03 to 0.20 to random negatives on digits,
    where the positive is one same-class image among many; SimANS gained +0.02
    to +0.15. The near-duplicate guard removed every mined near-duplicate (1.8
    to 2.3% of the closest negatives where 30% of the documents had one) for at
    most 0.002 recall@1, and changed nothing where there were none (under the
    mining model a copy's cosine similarity to its positive was 0.995 or more,
    the closest other document's at most 0.92, 0.94 at twice the size). Margins,
    bands and SimANS stay available; measure before relying on them.

    Random draws (``"random"``, ``"simans"``, ``easy_ratio``) are keyed by the
    seed and the query's index (``query_offset + i``), never by the other
    queries, blocks or threads: mining blocks of queries with their offsets and
    concatenating gives, byte for byte, the result of one call over all of them
    (chosen negatives are rescored exactly, in float64, query by query).

    Parameters
    ----------
    queries : array-like of shape (n_queries, dim)
    positives : array-like
        For each query its positive(s): an int array of shape (n_queries,), a
        list of int arrays, or an ``(indptr, indices)`` pair, as ids into
        ``candidates``; or a float array of shape (n_queries, dim) of positive
        embeddings that are not in the corpus.
    candidates : array-like of shape (n_candidates, dim)
        The corpus; may be an ``np.memmap`` of any size.
    k : int, default=3
        Hard negatives per query. More than the window holds (``stop -
        start``, or the candidates from ``start`` on) raises ``ValueError`` up
        front, unless ``at_most=True``; a query with fewer surviving candidates
        gets fewer (counted in ``summary["n_short_queries"]``).
    at_most : bool, default=False
        With ``k`` larger than the window: take the whole window instead of
        raising.
    band : (int, int or None), default=(0, None)
        Rank window ``start .. stop-1`` among the surviving candidates, closest
        first; ``stop=None`` means "to the end". ``sampling="top"`` takes its
        first ``k``; ``"random"`` and ``"simans"`` draw from all of it, so they
        need a finite ``stop`` (the ranks to the end of the corpus are not
        kept in bounded memory; ``ValueError`` asks for one).
    absolute_margin, relative_margin : float >= 0, optional
        False-negative guards, see above (``relative_margin`` in [0, 1]).
    duplicate_threshold : float in [-1, 1] or None, default=0.95
        Drop candidates whose cosine similarity to one of the query's positives
        is above it (whatever ``metric``); ``None`` turns the guard off. The
        number dropped ahead of each query's last negative is
        ``summary["n_near_duplicates"]``.
    lower_margin : float >= 0, optional
        Drop candidates scoring below ``p - lower_margin`` (too easy).
    max_score, min_score : float, optional
        Drop candidates scoring above ``max_score`` or below ``min_score``
        (finite numbers: NaN or infinity raise ``ValueError``).
    sampling : {"top", "random", "simans"}, default="top"
    simans : (float, float), default=(100.0, -0.1)
        SimANS's ``(a, b)``, ``a > 0``, on the scale of the scores: the default
        peaks 0.1 below the positive's cosine similarity with a width of about
        0.1 (for "ip" or "l2" scores, scale ``b`` with them and ``a`` with their
        inverse square).
    easy_ratio : float >= 0, default=0.0
        Random negatives per hard one (Meta's embedding-based retrieval,
        Huang et al. 2020, blends random negatives in).
    exclude : optional
        Further candidate ids per query that are never negatives, in any form
        ``positives`` accepts for ids.
    output : {"triplets", "ntuple"}, default="triplets"
        One row per (query, positive, negative), or one row per (query,
        positive) with ``k`` negatives (queries short of negatives
        are then skipped and counted in ``summary["n_skipped"]``).
    metric : {"cosine", "ip", "l2"}, default="cosine"
        Scores are similarities; for "l2" minus the squared distance.
    random_state : int, RandomState, Generator or None
        Seeds every draw (an int reproduces them; None draws fresh entropy).
    query_offset : int, default=0
        Index of the first query in a larger run: draws are keyed by
        ``query_offset + i`` and ``MinedNegatives.query`` (and ``positive``
        when positives are embeddings) count from it.
    n_jobs : int, optional
        Threads of the search (default: all OpenMP threads).
    block_size : int, optional
        Candidates per block, as for :func:`hnm.search_hard_pairs`.
    progress : bool, default=False
        Show a progress bar over the candidates of each search.
    checkpoint : str or os.PathLike, optional
        A directory where each finished block of queries is saved: the same call
        again computes only the blocks still missing (after Ctrl-C, a kill or a
        crash), with a result identical to an uninterrupted call's; a call with
        other inputs or parameters raises ``ValueError`` naming what changed.
        Needs ``random_state`` to be an int or None.

    Returns
    -------
    MinedNegatives

    See Also
    --------
    hnm.search_hard_pairs : the exact streamed search underneath.
    hnm.dask.mine_hard_negatives : the same with the corpus as a dask array.
    hnm.sentence_transformers.mine_hard_negatives : texts in, datasets out, with
        sentence-transformers' arguments and defaults.

    Examples
    --------
    >>> import numpy as np
    >>> import hnm
    >>> rng = np.random.default_rng(0)
    >>> corpus = rng.standard_normal((1000, 16)).astype(np.float32)
    >>> queries = corpus[:5] + 0.1 * rng.standard_normal((5, 16)).astype(np.float32)
    >>> mined = hnm.mine_hard_negatives(queries, np.arange(5), corpus, k=2,
    ...                                 relative_margin=0.05)
    >>> len(mined), mined.summary["n_short_queries"]
    (10, 0)
    >>> bool(np.all(mined.score <= mined.positive_score * 0.95 + 1e-6))
    True

    The defaults drop near-copies of the positives, which the closest negatives
    would otherwise be:

    >>> with_copies = np.vstack([corpus, corpus[:5] + 1e-3])  # ids 1000-1004
    >>> mined = hnm.mine_hard_negatives(queries, np.arange(5), with_copies)
    >>> bool(np.isin(mined.negative, 1000 + np.arange(5)).any())
    False
    >>> mined.summary["n_near_duplicates"]
    5
    >>> unguarded = hnm.mine_hard_negatives(queries, np.arange(5), with_copies,
    ...                                     duplicate_threshold=None)
    >>> int(unguarded.negative[unguarded.query == 0][0])  # the copy of positive 0
    1000
    """
    if checkpoint is not None:
        from ._checkpoint import run_checkpointed

        return run_checkpointed(mine_hard_negatives, checkpoint, locals())
    metric, Q, C = _check_search(metric, queries, candidates)
    n_threads = resolve_n_jobs(n_jobs)
    c_block = check_int(block_size, "block_size", min_value=1, allow_none=True)
    c_block = c_block or DEFAULT_CANDIDATE_BLOCK
    bf16 = _use_bf16("auto", np.result_type(np.float32, Q.dtype, C.dtype), C.shape[0])

    def search(rows, stop, cap, exclusions):
        return nearest(Q[rows], C, stop, metric, cap, _kernel_csr(*exclusions),
                       n_threads=n_threads, block_size=c_block, bf16=bf16,
                       progress=progress, name="mine_hard_negatives")

    given = locals()  # the pipeline's options, as given (metric checked)
    return mine(Q, positives, C, search, **{name: given[name] for name in MINE_OPTIONS})
