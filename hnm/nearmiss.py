"""NearMiss: imbalanced-learn's NearMiss-1, -2 and -3, exact and in bounded memory."""
import numbers
import warnings
from collections import Counter

import numpy as np
from imblearn.under_sampling.base import BaseUnderSampler
from scipy import sparse
from sklearn.utils import _safe_indexing
from sklearn.utils._param_validation import HasMethods, Interval

from ._exact_l2 import farthest_l2_float64, nearest_l2_float64

__all__ = ["NearMiss"]

# Rows of the under-sampled class searched per call: bounds the float64 copy of
# the queries (and, for a memmap, what is read at once) whatever the class size.
_QUERY_ROWS = 65536


class NearMiss(BaseUnderSampler):
    """NearMiss under-sampling, selecting exactly what imbalanced-learn's selects.

    A drop-in for ``imblearn.under_sampling.NearMiss`` with the same parameters,
    the same ``sample_indices_`` (ties included: equal mean distances keep the
    order of the samples, smaller index first) and the same warning when
    NearMiss-3 returns fewer samples than asked. Each under-sampled class keeps
    the samples that are nearest to the minority class, in the sense of the
    version:

    - ``version=1``: smallest mean distance to their ``n_neighbors`` nearest
      minority samples;
    - ``version=2``: smallest mean distance to their ``n_neighbors`` *farthest*
      minority samples;
    - ``version=3``: each minority sample first short-lists its
      ``n_neighbors_ver3`` nearest samples of the class; of those, the ones with
      the *largest* mean distance to their ``n_neighbors`` nearest minority
      samples are kept (there may be fewer than asked).

    Distances are Euclidean, computed exactly: a blocked float32 search (BLAS
    GEMM, or the bfloat16 screen on CPUs with AVX-512 BF16; bounded heaps; see
    :func:`hnm.search_hard_pairs`) on the rows less the
    mean of the searched samples proposes the neighbours, and the float64
    distances from the differences are certified against its rounding error,
    with a float64 and then a direct fallback for rows it cannot certify.
    NearMiss-2 never forms the class x minority matrix that imbalanced-learn
    builds (``kneighbors`` over every minority sample: more than 500 GB reported
    on 2.4M x 804), so it runs on an ``np.memmap`` of any size in memory
    proportional to the minority class.

    Parameters
    ----------
    sampling_strategy : float, str, dict or callable, default="auto"
        As imbalanced-learn's under-samplers: which classes are under-sampled
        and to how many samples.
    version : {1, 2, 3}, default=1
        Version of NearMiss.
    n_neighbors : int or estimator, default=3
        Minority neighbours whose distances are averaged. A k-neighbours
        estimator (e.g. ``NearestNeighbors(n_neighbors=5)``) is read for its
        ``n_neighbors`` and must use the Euclidean metric; hnm computes the
        distances itself.
    n_neighbors_ver3 : int or estimator, default=3
        For ``version=3``: the samples each minority sample short-lists.
    n_jobs : int, optional
        Threads of the distance search (default: all OpenMP threads).

    Attributes
    ----------
    sampling_strategy_ : dict
        Number of samples kept per under-sampled class.
    sample_indices_ : ndarray of shape (n_new_samples,)
        Indices of the kept samples in ``X``, class by class (classes sorted).
    n_features_in_ : int
        Number of features seen in ``fit_resample``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Feature names, when ``X`` has string column names.

    See Also
    --------
    hnm.HardNegativeResampler : ``difficulty="nearmiss"`` ranks like NearMiss-1
        and adds a noise guard and a blend of random samples (the defaults).
    imblearn.under_sampling.NearMiss : The reference implementation.
    hnm.search_hard_pairs : The exact blocked search underneath.

    Notes
    -----
    Where it differs from imbalanced-learn:

    - no ``nn_`` / ``nn_ver3_`` attributes (no scikit-learn neighbours object is
      fitted); a neighbours estimator passed as ``n_neighbors`` with another
      metric than Euclidean raises ``ValueError`` instead of being used;
    - sparse ``X`` raises ``TypeError`` (an exact search on densified rows would
      not be bounded in memory);
    - imbalanced-learn's distances come from scikit-learn's KD-tree (up to 15
      features) or from the GEMM expansion (above), whose rounding could order
      two mean distances that differ by less than it; hnm's are exact. Exact
      ties (duplicated rows, points on a grid) are ordered identically;
    - NearMiss-3's short-list: where a minority sample's ``n_neighbors_ver3``-th
      nearest sample ties exactly with the next one, which of them scikit-learn
      short-lists depends on its KD-tree or its GEMM rounding, not on the
      distances: for those minority samples only, hnm asks scikit-learn's
      neighbours estimator (the one imbalanced-learn would fit), so the
      short-list is imbalanced-learn's; this fits it on the class (a float64
      copy of it).

    The minority class is the least frequent one, the first seen in ``y`` if
    several tie, as in imbalanced-learn.

    Examples
    --------
    >>> from collections import Counter
    >>> from sklearn.datasets import make_classification
    >>> from hnm import NearMiss
    >>> X, y = make_classification(n_classes=2, class_sep=2, weights=[0.1, 0.9],
    ...                            n_informative=3, n_redundant=1, flip_y=0, n_features=20,
    ...                            n_clusters_per_class=1, n_samples=1000, random_state=10)
    >>> sorted(Counter(y).items())
    [(np.int64(0), 100), (np.int64(1), 900)]
    >>> nm = NearMiss(version=2)
    >>> X_res, y_res = nm.fit_resample(X, y)
    >>> sorted(Counter(y_res).items())
    [(np.int64(0), 100), (np.int64(1), 100)]
    >>> from imblearn.under_sampling import NearMiss as ImblearnNearMiss
    >>> ref = ImblearnNearMiss(version=2).fit(X, y)
    >>> _ = ref.fit_resample(X, y)
    >>> bool((nm.sample_indices_ == ref.sample_indices_).all())
    True
    """

    _parameter_constraints: dict = {
        **BaseUnderSampler._parameter_constraints,
        "version": [Interval(numbers.Integral, 1, 3, closed="both")],
        "n_neighbors": [
            Interval(numbers.Integral, 1, None, closed="left"),
            HasMethods(["kneighbors", "kneighbors_graph"]),
        ],
        "n_neighbors_ver3": [
            Interval(numbers.Integral, 1, None, closed="left"),
            HasMethods(["kneighbors", "kneighbors_graph"]),
        ],
        "n_jobs": [Interval(numbers.Integral, 1, None, closed="left"), None],
    }

    def __init__(self, *, sampling_strategy="auto", version=1, n_neighbors=3,
                 n_neighbors_ver3=3, n_jobs=None):
        super().__init__(sampling_strategy=sampling_strategy)
        self.version = version
        self.n_neighbors = n_neighbors
        self.n_neighbors_ver3 = n_neighbors_ver3
        self.n_jobs = n_jobs

    def _fit_resample(self, X, y):
        k, algorithm = _neighbors_count(self.n_neighbors, "n_neighbors")
        k3 = _neighbors_count(self.n_neighbors_ver3, "n_neighbors_ver3")[0] \
            if self.version == 3 else None
        counts = Counter(y)
        minority = min(counts, key=counts.get)  # first seen among equal counts
        self._minority_rows = np.flatnonzero(y == minority)
        X_min = np.asarray(_safe_indexing(X, self._minority_rows), dtype=np.float64)
        n_min = X_min.shape[0]
        # where scikit-learn's exact ties come out of its GEMM expansion, in which
        # they are rounded apart; imbalanced-learn's order follows that rounding
        self._gemm_ties = algorithm == "brute" or (
            algorithm == "auto" and (X.shape[1] > 15 or k >= n_min // 2))
        if self.version != 2 and k > n_min:
            raise ValueError(f"n_neighbors={k} is larger than the number of samples of the "
                             f"minority class {minority!r} ({n_min}).")
        parts = []
        for c in np.unique(y):
            members = np.flatnonzero(y == c)
            if c not in self.sampling_strategy_:
                parts.append(members)
                continue
            n_keep = self.sampling_strategy_[c]
            if self.version == 1:
                score = self._sum_distances(X, members, X_min, k, farthest=False)
                keep = np.argsort(score, kind="stable")[:n_keep]
            elif self.version == 2:
                score = self._sum_distances(X, members, X_min, min(k, n_min), farthest=True)
                keep = np.argsort(score, kind="stable")[:n_keep]
            else:
                keep = self._version3(X, members, X_min, k, k3, n_keep, c)
            parts.append(members[keep])
        self.sample_indices_ = np.concatenate(parts).astype(np.int64, copy=False)
        return _safe_indexing(X, self.sample_indices_), _safe_indexing(y, self.sample_indices_)

    def _sum_distances(self, X, rows, X_min, k, farthest):
        """Per row of X[rows]: the sum of its Euclidean distances to its k nearest
        (or farthest) minority samples, summed nearest first as imbalanced-learn
        sums the distances scikit-learn returns (so equal sets give equal sums)."""
        out = np.empty(rows.size)
        ids = np.empty((rows.size, k), dtype=np.intp)
        for s in range(0, rows.size, _QUERY_ROWS):
            Xq = np.asarray(_safe_indexing(X, rows[s:s + _QUERY_ROWS]), dtype=np.float64)
            if farthest:
                dist, near = farthest_l2_float64(Xq, X_min, k, n_jobs=self.n_jobs)
                dist, near = dist[:, ::-1], near[:, ::-1]
            else:
                dist, near = nearest_l2_float64(Xq, X_min, k, n_jobs=self.n_jobs)
            out[s:s + _QUERY_ROWS] = np.sum(dist, axis=1)
            ids[s:s + _QUERY_ROWS] = near
        if self._gemm_ties:
            _as_gemm_rounds_ties(out, X, rows, ids, X_min)
        return out

    def _version3(self, X, members, X_min, k, k3, n_keep, c):
        if k3 > members.size:
            raise ValueError(f"n_neighbors_ver3={k3} is larger than the number of samples of "
                             f"class {c!r} ({members.size}).")
        X_class = np.asarray(_safe_indexing(X, members), dtype=np.float64)
        # one spare neighbour: where the k3-th nearest ties with the next, which of
        # them scikit-learn short-lists depends on its tree or its GEMM rounding
        k3n = min(k3 + 1, members.size)
        dist, near = nearest_l2_float64(X_min, X_class, k3n, n_jobs=self.n_jobs)
        near = near[:, :k3]
        if k3n > k3:
            tied = np.flatnonzero(dist[:, k3 - 1] == dist[:, k3])
            if tied.size:
                near[tied] = self._sklearn_short_list(X, members, tied, k3)
        short = np.unique(near)  # positions in the class, sorted
        score = self._sum_distances(X_class, short, X_min, k, farthest=False)
        if short.size < n_keep:
            warnings.warn("The number of the samples to be selected is larger than the "
                          "number of samples available. The balancing ratio cannot be "
                          "ensure and all samples will be returned.")
        # largest first; a stable sort keeps equal sums in sample order, as
        # imbalanced-learn's sorted(..., reverse=True)
        return short[np.argsort(-score, kind="stable")[:n_keep]]

    def _sklearn_short_list(self, X, members, tied, k3):
        """The short-lists scikit-learn makes for the minority samples ``tied``
        (positions among them), with the neighbours estimator imbalanced-learn
        fits on the class: its choice among equidistant samples depends on its
        KD-tree's traversal or its GEMM rounding, not on the distances alone. A
        query's neighbours do not depend on the other queries, so only the tied
        minority samples are searched again."""
        est = _imblearn_neighbors(self.n_neighbors_ver3).set_params(n_jobs=self.n_jobs)
        est.fit(_safe_indexing(X, members))
        X_tied = _safe_indexing(X, self._minority_rows[tied])
        return est.kneighbors(X_tied, n_neighbors=k3, return_distance=False)

    def _check_X_y(self, X, y, accept_sparse=None):
        # refuse sparse X at validation: densifying it for the exact search would
        # not be bounded in memory
        if sparse.issparse(X):
            raise TypeError("NearMiss needs dense X, got a sparse matrix; convert it with "
                            "X.toarray() if it fits in memory.")
        return super()._check_X_y(X, y, accept_sparse=False)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        tags.sampler_tags.sample_indices = True
        return tags


def _as_gemm_rounds_ties(sums, X, rows, ids, X_min):
    """Where sums tie exactly, recompute them as scikit-learn's brute search does.

    scikit-learn's brute-force Euclidean k-neighbours (``ArgKmin``) computes
    ``sqrt(max(0, (|x|^2 + (-2 x.c)) + |c|^2))``: BLAS ``ddot`` norms and a
    ``dgemm`` per pair of 256-row chunks of the queries and the fitted samples,
    BLAS on one thread. Distances that are exactly equal (a sample and itself,
    the two directions of a pair) come out of it rounded apart, and
    imbalanced-learn orders such tied samples by that rounding. Untied sums are
    farther apart than the rounding and keep their exact values; tied ones are
    recomputed with the same BLAS calls on the same chunks, so they order as
    imbalanced-learn's (identical rows still get identical sums).
    """
    from scipy.linalg.blas import ddot, dgemm
    from sklearn import get_config
    from sklearn.utils.parallel import _get_threadpool_controller  # cached, as ArgKmin's

    _, inverse, counts = np.unique(sums, return_inverse=True, return_counts=True)
    tied = np.flatnonzero(counts[inverse] > 1)  # positions among the queries
    if tied.size == 0:
        return
    chunk = max(20, get_config().get("pairwise_dist_chunk_size", 256))
    n_q = rows.size
    c_norm = {}
    with _get_threadpool_controller().limit(limits=1, user_api="blas"):
        for xc in np.unique(tied // chunk):
            t = tied[tied // chunk == xc]
            x0 = xc * chunk
            Xc = np.asarray(_safe_indexing(X, rows[x0:min(x0 + chunk, n_q)]),
                            dtype=np.float64)  # scikit-learn's query chunk
            near = ids[t]
            mid = np.empty(near.shape)
            for yc in np.unique(near // chunk):
                y0 = yc * chunk
                Yc = X_min[y0:y0 + chunk]
                # the call ArgKmin makes: C (Yc rows x Xc rows) = -2 Yc . Xc^T
                middle = dgemm(-2.0, Yc.T, Xc.T, trans_a=1)
                here = near // chunk == yc
                r, _ = np.nonzero(here)
                mid[here] = middle[near[here] - y0, (t - x0)[r]]
            q_norm = np.array([ddot(Xc[p], Xc[p]) for p in t - x0])
            for j in np.unique(near):
                if j not in c_norm:
                    c_norm[j] = ddot(X_min[j], X_min[j])
            cn = np.vectorize(c_norm.__getitem__, otypes=[np.float64])(near)
            dist = np.sqrt(np.maximum((q_norm[:, None] + mid) + cn, 0))
            sums[t] = np.sum(np.sort(dist, axis=1), axis=1)


_EUCLIDEAN = ("euclidean", "l2")


def _imblearn_neighbors(value):
    """A fresh copy of the neighbours estimator imbalanced-learn builds from an
    int or a k-neighbours estimator (``check_neighbors_object``)."""
    from sklearn.base import clone
    from sklearn.neighbors import NearestNeighbors

    if isinstance(value, numbers.Integral):
        return NearestNeighbors(n_neighbors=int(value))
    return clone(value)


def _neighbors_count(value, name):
    """(number of neighbours, scikit-learn algorithm) an int or a k-neighbours
    estimator asks for; estimators with another metric than Euclidean are refused."""
    if isinstance(value, numbers.Integral):
        return int(value), "auto"
    params = value.get_params() if hasattr(value, "get_params") else {}
    metric = params.get("metric", "minkowski")
    p = params.get("p", 2)
    metric_params = params.get("metric_params") or {}
    euclidean = (metric in _EUCLIDEAN or (metric == "minkowski" and p == 2)) and (
        not metric_params or set(metric_params) == {"p"} and metric_params["p"] == 2)
    if not euclidean:
        raise ValueError(f"{name} is a neighbours estimator with metric={metric!r}"
                         + (f", p={p!r}" if metric == "minkowski" else "")
                         + (f", metric_params={metric_params!r}" if metric_params else "")
                         + "; hnm.NearMiss computes exact Euclidean distances only. Pass an "
                         "int, or use imblearn.under_sampling.NearMiss for other metrics.")
    k = getattr(value, "n_neighbors", None)
    if not isinstance(k, numbers.Integral) or isinstance(k, bool) or k < 1:
        raise ValueError(f"{name} is a neighbours estimator without a positive integer "
                         f"n_neighbors (got {k!r}).")
    return int(k), params.get("algorithm", "auto")
