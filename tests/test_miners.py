"""hnm.miners against plain numpy references of pytorch-metric-learning's rules."""
import itertools
import math

import numpy as np
import pytest

from hnm import miners
from hnm.miners import _choose


# ---------------------------------------------------------------------------
# references: PML's rules on the full matrix (keys: larger is farther; cosine
# keys are -s, which turns PML's inverted comparisons into the Euclidean ones)


def ref_keys(X, R, distance):
    X = np.asarray(X, dtype=np.float64)
    R = np.asarray(R, dtype=np.float64)
    ix = 1 / np.maximum(np.sqrt((X * X).sum(1)), 1e-12)
    ir = 1 / np.maximum(np.sqrt((R * R).sum(1)), 1e-12)
    S = (X @ R.T) * ix[:, None] * ir[None, :]
    if distance == "cosine":
        return -S
    return np.sqrt(np.maximum(2 - 2 * S, 0))


def ref_masks(y, yr, self_mode):
    same = y[:, None] == yr[None, :]
    diff = ~same
    if self_mode:
        np.fill_diagonal(same, False)
    return same, diff


def setup(X, y, R=None, yr=None, distance="euclidean"):
    self_mode = R is None
    R, yr = (X, y) if self_mode else (R, yr)
    K = ref_keys(X, R, distance)
    same, diff = ref_masks(np.asarray(y), np.asarray(yr), self_mode)
    return K, same, diff


def ref_triplet_margin(K, same, diff, margin, kind):
    a, p, n = np.nonzero(same[:, :, None] & diff[:, None, :])
    m = K[a, n] - K[a, p]
    if kind == "easy":
        keep = m > margin
    else:
        keep = m <= margin
        if kind == "hard":
            keep &= m <= 0
        elif kind == "semihard":
            keep &= m > 0
    return a[keep], p[keep], n[keep]


def ref_best(K, mask, largest, thr=None, vrange=None):
    V = np.where(mask, K, -np.inf if largest else np.inf)
    if thr is not None:
        V = np.where((K < thr[:, None]) if largest else (K > thr[:, None]), V,
                     -np.inf if largest else np.inf)
    if vrange is not None:
        V = np.where((K >= vrange[0]) & (K <= vrange[1]), V, -np.inf if largest else np.inf)
    j = V.argmax(1) if largest else V.argmin(1)
    v = V[np.arange(len(V)), j]
    return np.where(np.isfinite(v), j, -1), v


def ref_batch_easy_hard(K, same, diff, ps, ns, pr=None, nr=None):
    pos_largest = ps in ("hard", "semihard")
    neg_largest = ns == "easy"
    if ps == "semihard":
        n, nv = ref_best(K, diff, neg_largest, vrange=nr)
        p, pv = ref_best(K, same, True, thr=nv, vrange=pr)
    elif ns == "semihard":
        p, pv = ref_best(K, same, pos_largest, vrange=pr)
        n, nv = ref_best(K, diff, False, thr=pv, vrange=nr)
    else:
        p = ref_best(K, same, pos_largest, vrange=pr)[0] if ps != "all" else None
        n = ref_best(K, diff, neg_largest, vrange=nr)[0] if ns != "all" else None
    if p is not None and n is not None:
        keep = np.flatnonzero((p >= 0) & (n >= 0))
        return keep, p[keep], keep, n[keep]
    a1, pp = np.nonzero(same) if p is None else (np.flatnonzero(p >= 0), p[p >= 0])
    a2, nn = np.nonzero(diff) if n is None else (np.flatnonzero(n >= 0), n[n >= 0])
    return a1, pp, a2, nn


def ref_multi_similarity(K, same, diff, eps):
    far_pos = np.where(same, K, -np.inf).max(1)
    near_neg = np.where(diff, K, np.inf).min(1)
    pos = same & (K + eps > near_neg[:, None])
    neg = diff & (K - eps < far_pos[:, None])
    return (*np.nonzero(pos), *np.nonzero(neg))


def ref_pair_margin(K, same, diff, pos_t, neg_t):
    return (*np.nonzero(same & (K > pos_t)), *np.nonzero(diff & (K < neg_t)))


def ref_hdc(K, same, diff, fp):
    out = []
    for mask, sign in ((same, -1), (diff, 1)):
        a, j = np.nonzero(mask)
        k = int(math.ceil(fp * a.size))
        order = np.lexsort((a * K.shape[1] + j, sign * K[a, j]))[:k]
        sel = np.sort(order)
        out += [a[sel], j[sel]]
    return tuple(out)


def ref_angular(X, y, R, yr, angle):
    self_mode = R is None
    R, yr = (X, y) if self_mode else (R, yr)
    same, diff = ref_masks(np.asarray(y), np.asarray(yr), self_mode)
    a, p, n = np.nonzero(same[:, :, None] & diff[:, None, :])
    A, P, N = X[a], R[p], R[n]
    c = (A + P) / 2
    ap = np.sqrt(((A - P + 1e-6) ** 2).sum(1))
    nc = np.sqrt(((N - c + 1e-6) ** 2).sum(1))
    keep = np.arctan(ap / (2 * nc)) > np.radians(angle)
    return a[keep], p[keep], n[keep]


def as_set(t):
    if len(t) == 3:
        return set(zip(*(np.asarray(x).tolist() for x in t)))
    return (set(zip(np.asarray(t[0]).tolist(), np.asarray(t[1]).tolist())),
            set(zip(np.asarray(t[2]).tolist(), np.asarray(t[3]).tolist())))


def same_tuples(got, want):
    assert len(got) == len(want)
    for g in got:
        assert g.dtype == np.int64
    assert as_set(got) == as_set(want)
    for g, w in zip(got, want):
        assert len(g) == len(w)


def data(n=30, dim=6, n_labels=4, seed=0, n_ref=None, integer=False):
    rng = np.random.default_rng(seed)
    if integer:
        X = rng.integers(-1, 2, (n, dim)).astype(np.float64)
        X[(X == 0).all(1), 0] = 1
    else:
        X = rng.standard_normal((n, dim))
    y = rng.integers(0, n_labels, n)
    if n_ref is None:
        return X, y, None, None
    R = rng.integers(-1, 2, (n_ref, dim)).astype(np.float64) if integer else \
        rng.standard_normal((n_ref, dim))
    if integer:
        R[(R == 0).all(1), 0] = 1
    return X, y, R, rng.integers(0, n_labels, n_ref)


CASES = [dict(n=30), dict(n=25, n_ref=33), dict(n=40, dim=3, n_labels=2, seed=1),
         dict(n=20, integer=True, seed=2), dict(n=18, n_ref=21, integer=True, seed=3)]
DISTANCES = ["euclidean", "cosine"]


def kw(R, yr):
    return {} if R is None else dict(ref_embeddings=R, ref_labels=yr)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("distance", DISTANCES)
def test_triplet_margin_matches_reference(case, distance):
    X, y, R, yr = data(**case)
    K, same, diff = setup(X, y, R, yr, distance)
    for kind, margin in itertools.product(("all", "hard", "semihard", "easy"), (0.2, 0.05)):
        got = miners.triplet_margin(X, y, **kw(R, yr), margin=margin, type_of_triplets=kind,
                                    distance=distance)
        same_tuples(got, ref_triplet_margin(K, same, diff, margin, kind))
        # PML's order: lexicographic
        flat = np.stack(got, 1)
        assert (np.lexsort(flat.T[::-1]) == np.arange(len(flat))).all()


STRATS = [(p, n) for p, n in itertools.product(("hard", "semihard", "easy", "all"), repeat=2)
          if not (p == n == "semihard" or ("all" in (p, n) and "semihard" in (p, n)))]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("distance", DISTANCES)
def test_batch_easy_hard_matches_reference(case, distance):
    X, y, R, yr = data(**case)
    K, same, diff = setup(X, y, R, yr, distance)
    rng = (0.4, 1.3) if distance == "euclidean" else (-0.6, 0.5)
    key_rng = rng if distance == "euclidean" else (-rng[1], -rng[0])
    for (ps, ns), use_range in itertools.product(STRATS, (False, True)):
        r = rng if use_range else None
        kr = key_rng if use_range else None
        got = miners.batch_easy_hard(X, y, **kw(R, yr), pos_strategy=ps, neg_strategy=ns,
                                     allowed_pos_range=r, allowed_neg_range=r,
                                     distance=distance)
        want = ref_batch_easy_hard(K, same, diff, ps, ns, kr, kr)
        if "all" not in (ps, ns):  # one choice per anchor: compare as arrays
            for g, w in zip(got, want):
                np.testing.assert_array_equal(g, w)
        else:
            same_tuples(got, want)
    a, p, n = miners.batch_hard(X, y, **kw(R, yr), distance=distance)
    want = ref_batch_easy_hard(K, same, diff, "hard", "hard")
    for g, w in zip((a, p, n), (want[0], want[1], want[3])):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("distance", DISTANCES)
def test_pair_miners_match_reference(case, distance):
    X, y, R, yr = data(**case)
    K, same, diff = setup(X, y, R, yr, distance)
    for eps in (0.1, 0.3):
        same_tuples(miners.multi_similarity(X, y, **kw(R, yr), epsilon=eps, distance=distance),
                    ref_multi_similarity(K, same, diff, eps))
    pm, nm = (0.9, 1.2) if distance == "euclidean" else (0.3, 0.1)
    kp, kn = (pm, nm) if distance == "euclidean" else (-pm, -nm)
    same_tuples(miners.pair_margin(X, y, **kw(R, yr), pos_margin=pm, neg_margin=nm,
                                   distance=distance),
                ref_pair_margin(K, same, diff, kp, kn))
    for fp in (0.5, 0.13, 1.0):
        got = miners.hdc(X, y, **kw(R, yr), filter_percentage=fp, distance=distance)
        same_tuples(got, ref_hdc(K, same, diff, fp))


@pytest.mark.parametrize("case", CASES[:2] + CASES[3:4])
def test_angular_matches_reference(case):
    X, y, R, yr = data(**case)
    for angle in (20, 40):
        same_tuples(miners.angular(X, y, **kw(R, yr), angle=angle),
                    ref_angular(X, y, R, yr, angle))


def test_ties_go_to_the_smaller_index():
    # duplicated rows: exact ties in every distance
    X = np.array([[1.0, 0], [1, 0], [0, 1], [0, 1], [1, 0], [0, 1]])
    y = np.array([0, 1, 1, 0, 0, 1])
    a, p, n = miners.batch_hard(X, y)
    # anchor 0: positives 3 (far) 4 (same point); negatives 1 (same point), 2, 5
    assert (a[0], p[0], n[0]) == (0, 3, 1)
    # anchor 2: negatives 0, 3, 4 -> 3 is the same point; positives 1 and 5: both
    # tie at... 1 is orthogonal (far), 5 identical
    assert (p[2], n[2]) == (1, 3)
    a1, p1, a2, n2 = miners.batch_easy_hard(X, y, pos_strategy="easy", neg_strategy="easy")
    assert p1[0] == 4 and n2[0] == 2  # easiest negative: farthest, smaller of 2 and 5


def test_blocked_equals_full(monkeypatch):
    X, y, R, yr = data(n=23, n_ref=29, integer=True, seed=5)
    calls = {
        "tm": lambda **k: miners.triplet_margin(X, y, type_of_triplets="semihard", **k),
        "tm_sampled": lambda **k: miners.triplet_margin(X, y, max_triplets=40,
                                                        random_state=3, **k),
        "beh": lambda **k: miners.batch_easy_hard(X, y, allowed_neg_range=(0.5, 1.5), **k),
        "ms": lambda **k: miners.multi_similarity(X, y, **k),
        "ms_sampled": lambda **k: miners.multi_similarity(X, y, max_pairs=15,
                                                          random_state=1, **k),
        "hdc": lambda **k: miners.hdc(X, y, filter_percentage=0.3, **k),
        "uh": lambda **k: miners.uniform_histogram(X, y, num_bins=7, random_state=0, **k),
        "dw": lambda **k: miners.distance_weighted(X, y, random_state=0, **k),
        "ang": lambda **k: miners.angular(X, y, max_triplets=30, random_state=2, **k),
    }
    for ref in ({}, dict(ref_embeddings=R, ref_labels=yr)):
        full = {name: f(**ref) for name, f in calls.items()}
        with monkeypatch.context() as m:
            m.setattr(miners, "_TILE_VALUES", 12)
            m.setattr(miners, "_ROW_VALUES", 40)
            for name, f in calls.items():
                got = f(block_size=4, **ref)
                for g, w in zip(got, full[name]):
                    np.testing.assert_array_equal(g, w, err_msg=name)


def test_memmap_and_torch_like_inputs(tmp_path):
    X, y, R, yr = data(n=20, n_ref=30, seed=7)
    path = tmp_path / "ref.f32"
    mm = np.memmap(path, dtype=np.float32, mode="w+", shape=R.shape)
    mm[:] = R
    mm.flush()
    ro = np.memmap(path, dtype=np.float32, mode="r", shape=R.shape)
    R32 = R.astype(np.float32)
    for f in (miners.batch_hard, miners.batch_easy_hard, miners.multi_similarity):
        for g, w in zip(f(X.astype(np.float32), y, ro, yr),
                        f(X.astype(np.float32), y, R32, yr)):
            np.testing.assert_array_equal(g, w)

    class Tensorish:  # what a torch tensor that requires grad offers
        def __init__(self, a):
            self.a = a

        def detach(self):
            return self

        def cpu(self):
            return self.a
    Xc = X.copy()
    got = miners.batch_hard(Tensorish(X), Tensorish(y))
    for g, w in zip(got, miners.batch_hard(X, y)):
        np.testing.assert_array_equal(g, w)
    np.testing.assert_array_equal(X, Xc)  # inputs untouched


def test_sampling_exact_size_subset_and_uniform():
    X, y, _, _ = data(n=9, dim=3, n_labels=2, seed=11)
    full = miners.triplet_margin(X, y, type_of_triplets="all")
    full_set = sorted(as_set(full))
    T, k, reps = len(full_set), 7, 400
    assert T > 3 * k
    counts = dict.fromkeys(full_set, 0)
    for seed in range(reps):
        got = miners.triplet_margin(X, y, max_triplets=k, random_state=seed)
        s = as_set(got)
        assert len(got[0]) == k and len(s) == k and s <= set(full_set)
        for t in s:
            counts[t] += 1
    c = np.array(list(counts.values()), dtype=float)
    expected = reps * k / T
    chi2 = ((c - expected) ** 2 / expected).sum()
    # dof = T - 1; a uniform draw exceeds dof + 5 sqrt(2 dof) with negligible probability
    assert chi2 < (T - 1) + 5 * math.sqrt(2 * (T - 1)), chi2
    # more than the set: the whole set, in order
    got = miners.triplet_margin(X, y, max_triplets=10 * T, random_state=0)
    for g, w in zip(got, full):
        np.testing.assert_array_equal(g, w)
    a1, p, a2, n = miners.pair_margin(X, y, pos_margin=0.0, neg_margin=3.0, max_pairs=5,
                                      random_state=0)
    assert len(a1) == 5 and len(a2) == 5


def test_choose_is_exact_and_distinct_at_huge_totals():
    rng = np.random.RandomState(0)
    got = _choose(rng, 10**12, 1000)
    assert got.size == 1000 and np.unique(got).size == 1000
    assert got.min() >= 0 and got.max() < 10**12
    assert (np.diff(got) > 0).all()
    np.testing.assert_array_equal(_choose(rng, 5, 9), np.arange(5))
    assert _choose(rng, 10, 6).size == 6


def ref_dw_weights(X, y, R, yr, cutoff=0.5, nz=1.4):
    self_mode = R is None
    R, yr = (X, y) if self_mode else (R, yr)
    d = X.shape[1]
    mat = np.maximum(ref_keys(X, R, "euclidean"), cutoff)
    with np.errstate(divide="ignore", invalid="ignore"):
        lw = (2 - d) * np.log(mat) - ((d - 3) / 2) * np.log(1 - 0.25 * mat ** 2)
    bad = ~np.isfinite(lw)
    diff = y[:, None] != yr[None, :]
    lw = lw * diff
    w = np.exp(lw - lw[~bad].max()) * diff * (mat < nz)
    w[bad] = 0
    with np.errstate(invalid="ignore"):
        return w / w.sum(1, keepdims=True)


@pytest.mark.parametrize("with_ref", [False, True])
def test_distance_weighted_anchors_and_distribution(with_ref):
    X, y, R, yr = data(n=14, dim=5, n_labels=3, seed=4, n_ref=17 if with_ref else None)
    yr_ = y if R is None else yr
    W = ref_dw_weights(X, y, R, yr)
    # PML's deterministic part: per anchor label (sorted), its anchors, each
    # repeated once per reference of the label
    want_a = []
    for lab in np.unique(y):
        n_p = (yr_ == lab).sum()
        if n_p < (2 if R is None else 1) or (yr_ != lab).sum() == 0:
            continue
        for a in np.flatnonzero(y == lab):
            if np.nansum(W[a]) > 0:
                want_a += [a] * n_p
    freq = np.zeros_like(W)
    for seed in range(150):
        a, p, n = miners.distance_weighted(X, y, **kw(R, yr), random_state=seed)
        np.testing.assert_array_equal(a, want_a)
        assert (yr_[p] == y[a]).all() and (yr_[n] != y[a]).all()
        if R is None:
            assert (p != a).all()
        np.add.at(freq, (a, n), 1)
    rows = np.unique(want_a)
    emp = freq[rows] / freq[rows].sum(1, keepdims=True)
    tv = 0.5 * np.abs(emp - np.nan_to_num(W[rows])).sum(1)
    assert tv.max() < 0.12, tv


def test_uniform_histogram_bins_and_counts():
    X, y, R, yr = data(n=25, dim=4, n_labels=3, seed=9)
    K, same, diff = setup(X, y)
    a1, p, a2, n = miners.uniform_histogram(X, y, num_bins=5, pos_per_bin=4, neg_per_bin=3,
                                            random_state=0)
    for (aa, jj), mask, per in (((a1, p), same, 4), ((a2, n), diff, 3)):
        vals = K[mask]
        edges = np.linspace(vals.min(), vals.max(), 6)
        b_all = np.minimum(np.searchsorted(edges, vals, side="right") - 1, 4)
        nonempty = np.unique(b_all)
        assert len(aa) == per * nonempty.size
        assert mask[aa, jj].all()
        b = np.minimum(np.searchsorted(edges, K[aa, jj], side="right") - 1, 4)
        np.testing.assert_array_equal(b, np.repeat(nonempty, per))


def test_bad_inputs_are_named():
    X, y, R, yr = data(n=10, n_ref=12)
    with pytest.raises(ValueError, match="labels"):
        miners.batch_hard(X, y[:-1])
    with pytest.raises(ValueError, match="ref_labels"):
        miners.batch_hard(X, y, R)
    with pytest.raises(ValueError, match="ref_labels"):
        miners.batch_hard(X, y, R, yr[:-1])
    with pytest.raises(ValueError, match="ref_embeddings"):
        miners.batch_hard(X, y, R[:, :2], yr)
    with pytest.raises(ValueError, match="ref_labels needs"):
        miners.pair_margin(X, y, ref_labels=yr)
    with pytest.raises(ValueError, match="distance"):
        miners.batch_hard(X, y, distance="manhattan")
    with pytest.raises(ValueError, match="type_of_triplets"):
        miners.triplet_margin(X, y, type_of_triplets="medium")
    with pytest.raises(ValueError, match="both"):
        miners.batch_easy_hard(X, y, pos_strategy="semihard", neg_strategy="semihard")
    with pytest.raises(ValueError, match="all"):
        miners.batch_easy_hard(X, y, pos_strategy="all", neg_strategy="semihard")
    with pytest.raises(TypeError, match="allowed_pos_range"):
        miners.batch_easy_hard(X, y, allowed_pos_range=0.5)
    with pytest.raises(ValueError, match="filter_percentage"):
        miners.hdc(X, y, filter_percentage=0)
    with pytest.raises(ValueError, match="max_triplets"):
        miners.triplet_margin(X, y, max_triplets=-1)
    with pytest.raises(TypeError, match="margin"):
        miners.triplet_margin(X, y, margin="0.2")
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="embeddings contain NaN"):
        miners.multi_similarity(bad, y)
    with pytest.raises(TypeError, match="embeddings"):
        miners.pair_margin(np.array([["a", "b"]]), [0])


def test_empty_results_and_single_label():
    X, _, _, _ = data(n=6)
    y = np.zeros(6, dtype=int)
    for f in (miners.batch_hard, miners.triplet_margin, miners.angular,
              miners.distance_weighted):
        assert all(len(t) == 0 and t.dtype == np.int64 for t in f(X, y))
    a1, p, a2, n = miners.multi_similarity(X, y)
    assert len(a1) == len(a2) == 0
    a1, p, a2, n = miners.hdc(X, y)
    assert len(a1) == 15 and len(a2) == 0   # ceil(0.5 * 30) positive pairs


# ---------------------------------------------------------------------------
# optional: the real pytorch-metric-learning


def test_same_sets_as_pytorch_metric_learning():
    torch = pytest.importorskip("torch")
    pml = pytest.importorskip("pytorch_metric_learning")
    from pytorch_metric_learning import distances as D, miners as M

    rng = np.random.default_rng(0)
    for n, dim, n_labels, with_ref in ((64, 16, 5, False), (50, 8, 4, True)):
        X = rng.standard_normal((n, dim))  # float64: rounding far below the margins
        y = rng.integers(0, n_labels, n)
        R = rng.standard_normal((n + 9, dim))
        yr = rng.integers(0, n_labels, n + 9)
        ref = dict(ref_embeddings=R, ref_labels=yr) if with_ref else {}
        targs = (torch.from_numpy(R), torch.from_numpy(yr)) if with_ref else ()
        tx, ty = torch.from_numpy(X), torch.from_numpy(y)
        for distance in DISTANCES:
            pd = D.LpDistance() if distance == "euclidean" else D.CosineSimilarity()

            def pml_run(miner):
                return tuple(t.numpy().astype(np.int64) for t in miner(tx, ty, *targs))
            for kind in ("all", "hard", "semihard", "easy"):
                same_tuples(miners.triplet_margin(X, y, **ref, type_of_triplets=kind,
                                                  distance=distance),
                            pml_run(M.TripletMarginMiner(type_of_triplets=kind, distance=pd)))
            for g, w in zip(miners.batch_hard(X, y, **ref, distance=distance),
                            pml_run(M.BatchHardMiner(distance=pd))):
                np.testing.assert_array_equal(g, w)
            for ps, ns in STRATS:
                same_tuples(miners.batch_easy_hard(X, y, **ref, pos_strategy=ps,
                                                   neg_strategy=ns, distance=distance),
                            pml_run(M.BatchEasyHardMiner(pos_strategy=ps, neg_strategy=ns,
                                                         distance=pd)))
            same_tuples(miners.multi_similarity(X, y, **ref, distance=distance),
                        pml_run(M.MultiSimilarityMiner(distance=pd)))
            pm, nm = (1.3, 1.2) if distance == "euclidean" else (0.2, 0.1)
            same_tuples(miners.pair_margin(X, y, **ref, pos_margin=pm, neg_margin=nm,
                                           distance=distance),
                        pml_run(M.PairMarginMiner(pm, nm, distance=pd)))
            if with_ref:  # within one set, d(a, p) = d(p, a) ties at the cut
                same_tuples(miners.hdc(X, y, **ref, distance=distance),
                            pml_run(M.HDCMiner(distance=pd)))
        same_tuples(miners.angular(X, y, **ref, angle=30), pml_run(M.AngularMiner(angle=30)))
        # random miners: PML's anchors, and the pairs PML can draw
        a, p, n = miners.distance_weighted(X, y, **ref, random_state=0)
        pa, pp, pn = pml_run(M.DistanceWeightedMiner())
        np.testing.assert_array_equal(a, pa)
        a1, p1, a2, n2 = miners.uniform_histogram(X, y, **ref, random_state=0)
        q1, _, q2, _ = pml_run(M.UniformHistogramMiner())
        assert len(a1) == len(q1) and len(a2) == len(q2)


# ---------------------------------------------------------------------------
# the fused kernel: threads, reference pieces, the exact squared-distance bound

ALL_MINERS = {
    "triplet_margin": lambda X, y, **k: miners.triplet_margin(X, y, type_of_triplets="semihard",
                                                              **k),
    "batch_hard": lambda X, y, **k: miners.batch_hard(X, y, **k),
    "batch_easy_hard": lambda X, y, **k: miners.batch_easy_hard(X, y, pos_strategy="all",
                                                                neg_strategy="hard", **k),
    "multi_similarity": lambda X, y, **k: miners.multi_similarity(X, y, **k),
    "pair_margin": lambda X, y, **k: miners.pair_margin(X, y, **k),
    "pair_margin_sampled": lambda X, y, **k: miners.pair_margin(X, y, max_pairs=20,
                                                                random_state=0, **k),
    "distance_weighted": lambda X, y, **k: miners.distance_weighted(X, y, random_state=0, **k),
    "hdc": lambda X, y, **k: miners.hdc(X, y, filter_percentage=0.3, **k),
    "hdc_sampled": lambda X, y, **k: miners.hdc(X, y, max_pairs=9, random_state=1, **k),
    "angular": lambda X, y, **k: miners.angular(X, y, **k),
    "uniform_histogram": lambda X, y, **k: miners.uniform_histogram(X, y, random_state=0, **k),
}


def test_every_miner_takes_n_jobs_and_threads_change_nothing(monkeypatch):
    X, y, R, yr = data(n=150, dim=5, n_labels=3, seed=12)
    monkeypatch.setattr(miners, "_SMALL_WORK", 0)  # threads even on small inputs
    for name, f in ALL_MINERS.items():
        one = f(X, y, n_jobs=1)
        for g, w in zip(f(X, y, n_jobs=2), one):
            np.testing.assert_array_equal(g, w, err_msg=name)
        with pytest.raises(ValueError, match="n_jobs"):
            f(X, y, n_jobs=0)
        with pytest.raises(TypeError, match="n_jobs"):
            f(X, y, n_jobs=1.5)


def test_reference_pieces_equal_one_array(monkeypatch):
    # references that are not C-contiguous in the working dtype are read in
    # pieces: the pairs, their order and the sampled ranks must not change
    X, y, R, yr = data(n=70, dim=4, n_labels=3, seed=13, n_ref=90)
    calls = {
        "pm": lambda R_: miners.pair_margin(X, y, R_, yr, pos_margin=0.5, neg_margin=1.2),
        "pm_sampled": lambda R_: miners.pair_margin(X, y, R_, yr, max_pairs=25, random_state=4),
        "ms": lambda R_: miners.multi_similarity(X, y, R_, yr),
        "ms_sampled": lambda R_: miners.multi_similarity(X, y, R_, yr, max_pairs=30,
                                                         random_state=5),
        "hdc": lambda R_: miners.hdc(X, y, R_, yr, filter_percentage=0.2),
    }
    full = {name: f(R) for name, f in calls.items()}
    monkeypatch.setattr(miners, "_ROW_VALUES", 4 * 7)  # 7 references a piece
    Rf = np.asfortranarray(R)
    for name, f in calls.items():
        for g, w in zip(f(Rf), full[name]):
            np.testing.assert_array_equal(g, w, err_msg=name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_squared_distance_bound_is_exact(dtype):
    # the Euclidean rule fl(sqrt(t)) + off op thr is tested on t against one
    # bound per anchor: check it against the rule itself on many t, including
    # the floats right around the bound
    from hnm import _miners
    rng = np.random.default_rng(3)
    for _ in range(200):
        op = int(rng.integers(0, 2))
        off = dtype(rng.choice([0.0, 0.1, -0.1, rng.uniform(-1, 1)]))
        thr = dtype(rng.uniform(-0.5, 2.5))
        b = dtype(_miners.squared_bound(op, float(off), float(thr), dtype))
        t = rng.uniform(0, 6, 200).astype(dtype)
        if np.isfinite(b):
            near = np.nextafter(b, np.array([0, np.inf], dtype=dtype))
            t = np.concatenate([t, [b], near, [dtype(0)]]).astype(dtype)
        key = np.sqrt(t) + off
        want = key > thr if op == 0 else key < thr
        got = t >= b if op == 0 else t <= b
        np.testing.assert_array_equal(got, want)


def test_hdc_sampled_is_an_exact_size_subset():
    X, y, _, _ = data(n=20, dim=3, n_labels=2, seed=14, integer=True)  # ties at the cut
    full = as_set(miners.hdc(X, y, filter_percentage=0.4))
    for seed in range(5):
        got = miners.hdc(X, y, filter_percentage=0.4, max_pairs=7, random_state=seed)
        s = as_set(got)
        assert len(got[0]) == len(s[0]) == min(7, len(full[0])) and s[0] <= full[0]
        assert len(got[2]) == len(s[1]) == min(7, len(full[1])) and s[1] <= full[1]
        for a, j in ((got[0], got[1]), (got[2], got[3])):
            assert (np.diff(a * 20 + j) > 0).all()  # sorted by anchor, then index


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_same_tuples_as_pytorch_metric_learning_at_2000_x_64(dtype):
    torch = pytest.importorskip("torch")
    pytest.importorskip("pytorch_metric_learning")
    from pytorch_metric_learning import distances as D, miners as M

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((20, 64))
    y = rng.integers(0, 20, 2000)
    X = (centres[y] + 1.2 * rng.standard_normal((2000, 64))).astype(dtype)
    tx, ty = torch.from_numpy(X), torch.from_numpy(y)
    for distance in DISTANCES:
        pd = D.LpDistance() if distance == "euclidean" else D.CosineSimilarity()
        pm, nm = (1.3, 1.2) if distance == "euclidean" else (0.2, 0.1)
        for mine, pml in (
                (miners.pair_margin(X, y, pos_margin=pm, neg_margin=nm, distance=distance),
                 M.PairMarginMiner(pm, nm, distance=pd)),
                (miners.multi_similarity(X, y, distance=distance),
                 M.MultiSimilarityMiner(distance=pd)),
                (miners.batch_hard(X, y, distance=distance), M.BatchHardMiner(distance=pd)),
                (miners.batch_easy_hard(X, y, distance=distance),
                 M.BatchEasyHardMiner(distance=pd))):
            same_tuples(mine, tuple(t.numpy().astype(np.int64) for t in pml(tx, ty)))


# ---------------------------------------------------------------------------
# the symmetric kernel: within one set each unordered pair's dot product is
# computed once and both ordered pairs are tested from it


SYM_CALLS = {
    "pm": lambda X, y, d, **k: miners.pair_margin(
        X, y, pos_margin=1.0 if d == "euclidean" else 0.5,
        neg_margin=np.sqrt(2.0) if d == "euclidean" else 0.0, distance=d, **k),
    "ms": lambda X, y, d, **k: miners.multi_similarity(X, y, epsilon=0.1, distance=d, **k),
    "ms_eps0": lambda X, y, d, **k: miners.multi_similarity(X, y, epsilon=0.0, distance=d,
                                                            **k),
    "hdc": lambda X, y, d, **k: miners.hdc(X, y, filter_percentage=0.3, distance=d, **k),
    "pm_sampled": lambda X, y, d, **k: miners.pair_margin(X, y, distance=d, max_pairs=50,
                                                          random_state=0, **k),
}


@pytest.mark.parametrize("n", [1, 2, 3, 127, 128, 129, 257, 300, 1100])
@pytest.mark.parametrize("distance", DISTANCES)
def test_symmetric_kernel_equals_the_full_one(monkeypatch, n, distance):
    # integer rows: every dot product is exact, whatever the tiles, so the two
    # kernels must agree exactly; many pairs tie (equal keys), and the margins
    # above sit exactly on keys (orthogonal rows: s = 0, d = sqrt(2)). Sizes
    # around the 128-reference tiles and the anchor blocks (1100: 5 blocks)
    X, y, _, _ = data(n=n, dim=4, n_labels=3, seed=20 + n, integer=True)
    monkeypatch.setattr(miners, "_SMALL_WORK", 0)  # threads even on small inputs
    sym = {name: f(X, y, distance) for name, f in SYM_CALLS.items()}
    with monkeypatch.context() as m:
        m.setattr(miners, "_SYMMETRIC", False)
        full = {name: f(X, y, distance) for name, f in SYM_CALLS.items()}
    for name in SYM_CALLS:
        for g, w in zip(sym[name], full[name]):
            assert g.dtype == np.int64
            np.testing.assert_array_equal(g, w, err_msg=name)
    # one thread and two: the same tuples (the tiles never depend on n_jobs)
    for name, f in SYM_CALLS.items():
        for g, w in zip(f(X, y, distance, n_jobs=1), sym[name]):
            np.testing.assert_array_equal(g, w, err_msg=name)


@pytest.mark.parametrize("n", [129, 300])
@pytest.mark.parametrize("distance", DISTANCES)
def test_symmetric_kernel_matches_reference(monkeypatch, n, distance):
    # float rows past one tile, so that pairs are read down the tiles' columns
    X, y, _, _ = data(n=n, dim=5, n_labels=4, seed=n)
    monkeypatch.setattr(miners, "_SMALL_WORK", 0)
    K, same, diff = setup(X, y, None, None, distance)
    for eps in (0.1, 0.3):
        got = miners.multi_similarity(X, y, epsilon=eps, distance=distance)
        want = ref_multi_similarity(K, same, diff, eps)
        for g, w in zip(got, want):  # sorted by anchor, then reference
            np.testing.assert_array_equal(g, w)
    pm, nm = (0.9, 1.2) if distance == "euclidean" else (0.3, 0.1)
    kp, kn = (pm, nm) if distance == "euclidean" else (-pm, -nm)
    got = miners.pair_margin(X, y, pos_margin=pm, neg_margin=nm, distance=distance)
    for g, w in zip(got, ref_pair_margin(K, same, diff, kp, kn)):
        np.testing.assert_array_equal(g, w)
    for fp in (0.5, 0.13):
        for g, w in zip(miners.hdc(X, y, filter_percentage=fp, distance=distance),
                        ref_hdc(K, same, diff, fp)):
            np.testing.assert_array_equal(g, w)


def test_symmetric_kernel_on_copies_and_memmaps(tmp_path, monkeypatch):
    # Fortran-ordered and memmapped float32 anchors: the same tuples as the
    # C-contiguous array (a copy is made only when small; the memmap is read)
    X, y, _, _ = data(n=260, dim=6, n_labels=3, seed=31, integer=True)
    X32 = X.astype(np.float32)
    path = tmp_path / "x.f32"
    mm = np.memmap(path, dtype=np.float32, mode="w+", shape=X32.shape)
    mm[:] = X32
    mm.flush()
    ro = np.memmap(path, dtype=np.float32, mode="r", shape=X32.shape)
    for name, f in SYM_CALLS.items():
        want = f(X32, y, "euclidean")
        for Xin in (np.asfortranarray(X32), ro):
            for g, w in zip(f(Xin, y, "euclidean"), want):
                np.testing.assert_array_equal(g, w, err_msg=name)
    with monkeypatch.context() as m:  # too large to copy: the full kernel
        m.setattr(miners, "_ROW_VALUES", 8)
        for g, w in zip(SYM_CALLS["ms"](np.asfortranarray(X32), y, "euclidean"),
                        SYM_CALLS["ms"](X32, y, "euclidean")):
            np.testing.assert_array_equal(g, w)
    Xc = X.copy()
    SYM_CALLS["pm"](X, y, "cosine")
    np.testing.assert_array_equal(X, Xc)  # inputs never modified
