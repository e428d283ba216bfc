"""Do mined negatives train a better retriever than random ones? Measured by training.

A small retriever is trained without torch: a linear adapter ``W`` (embedding =
``x W`` scaled to unit norm, cosine scores), InfoNCE at temperature 0.05 over the
batch's positives and every query's 5 explicit negatives, with hand-written numpy
gradients and Adam. Protocol, paired over seeds (each seed draws new data):

1. warm-up: from a PCA start, a few epochs with random negatives give the
   "previous model" that mines (shared by every strategy of a seed);
2. each strategy mines 5 negatives per training query with that model
   (``random``: 5 uniform corpus documents that are not positives), then trains
   on them from the warm model for the same number of epochs;
3. recall@1 and recall@10 on held-out queries against the whole corpus, where
   recall@k = |relevant in top k| / min(k, |relevant|); and the mined
   false-negative rate: negatives that are relevant but unlabelled;
4. printed: each strategy's mean recall, its paired differences to random
   negatives and to the defaults (mean +/- standard deviation over seeds),
   and for mined strategies the median rank of the negatives among the
   guards' survivors and the share scoring above the query's positive (under
   the mining model).

Datasets (all generated here or shipped with scikit-learn, nothing downloaded):
``topics`` (documents from latent topics seen through a random linear map with
nuisance directions and noise; queries are noisy views of one document),
``topics+duplicates`` (the same, 30% of documents with an unlabelled
near-duplicate, relevant too: the false negatives of real corpora),
``multi-positive`` (items of 3 documents, every query labelled with all 3),
``easy-tail`` (topics plus four times as many far-away documents no query wants),
``digits`` and ``digits-pca20`` (scikit-learn's handwritten digits, standardised
64 pixels or a 20-dimensional PCA embedding, with half as many nuisance
dimensions of large variance mixed in by a random rotation, which the adapter
must learn to ignore; 800 training and 300 test queries against the other 697
images; same-class retrieval, the labelled positive a random same-class
document, so every other same-class document mined is a known false negative).

``defaults`` are ``hnm.mine_hard_negatives``'s own; every other strategy starts
from all guards off (``OFF``) and adds one setting. Bands follow issue #13's one
meaning: ``band=(start, stop)`` are ranks ``start .. stop-1`` and ``stop=None``
runs to the end (it used to mean ``start + k``), so ``sampling="top"`` with
``(0, None)`` is still the ``k`` closest, and the random and SimANS strategies
name a finite window (random draws from all of it).

Default size (3 seeds) runs in about 5 minutes on 2 busy cores;
``HNM_BENCH_FULL=1`` uses 10 seeds and twice the topic data
(``HNM_BENCH_SEEDS`` overrides the number of seeds, ``HNM_BENCH_SCALE`` the
size of the topic data: 4 is four times the default's, about 1 minute a seed). Run as ``pytest benchmarks/bench_retrieval_quality.py
--benchmark-only`` or ``python benchmarks/bench_retrieval_quality.py``; quality
is printed, never asserted.
"""
import os
import time

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA

from threadpoolctl import threadpool_limits

import hnm

FULL = os.environ.get("HNM_BENCH_FULL", "") not in ("", "0")
SEEDS = range(int(os.environ.get("HNM_BENCH_SEEDS", 10 if FULL else 3)))
SCALE = int(os.environ.get("HNM_BENCH_SCALE", 2 if FULL else 1))  # topic data sizes
NUM_NEGATIVES = 5
TAU = 0.05
IN_BATCH = False

# every guard off: the baseline each strategy adds its one setting to
OFF = dict(absolute_margin=None, relative_margin=None, duplicate_threshold=None,
           lower_margin=None, sampling="top", band=(0, None))
STRATEGIES = {
    "random": None,
    "defaults": {},
    "top, no guard": OFF,
    "relative_margin=0.05": {**OFF, "relative_margin": 0.05},
    "absolute_margin=0.05": {**OFF, "absolute_margin": 0.05},
    "band=(30,100) random": {**OFF, "band": (30, 100), "sampling": "random"},
    "random (0,50) + duplicates": {"band": (0, 50), "sampling": "random"},
    "band=(20,None) + duplicates": {"band": (20, None)},
    "duplicate_threshold=0.9": {**OFF, "duplicate_threshold": 0.9},
    "simans (0,100)": {**OFF, "band": (0, 100), "sampling": "simans"},
    "random (0,100), lower_margin=0.2": {**OFF, "band": (0, 100), "sampling": "random",
                                         "lower_margin": 0.2},
    "relative_margin=0.05 + duplicates": {"relative_margin": 0.05},
}


# ------------------------------------------------------------------ data
QUERY_NOISE, NUISANCE, NOISE = 0.8, 2.0, 0.5
DIGITS_NUISANCE = 3.0
DIGITS_TRAIN, DIGITS_TEST = 800, 300


def _observe(z, rng, A, B, nuisance_scale=None, noise=None):
    nuisance_scale = NUISANCE if nuisance_scale is None else nuisance_scale
    noise = NOISE if noise is None else noise
    u = nuisance_scale * rng.standard_normal((z.shape[0], B.shape[0]))
    return z @ A + u @ B + noise * rng.standard_normal((z.shape[0], A.shape[1])), u


def _topics(rng, n_docs, n_train, n_test, *, duplicates=0.0, tail=0, items=1):
    """Latent-topic corpus. Returns a dict: corpus, train/test query features,
    train positives (list of id arrays), test relevant sets, train unlabelled
    relevant sets (the known false negatives)."""
    L, D, n_topics = 16, 48, 40
    A = rng.standard_normal((L, D)) / np.sqrt(L)
    B = rng.standard_normal((8, D)) / np.sqrt(8)
    centers = rng.standard_normal((n_topics, L))
    n_items = n_docs // items
    item_z = centers[rng.integers(n_topics, size=n_items)] + 0.8 * rng.standard_normal(
        (n_items, L))
    # each item: `items` documents around it
    z = np.repeat(item_z, items, axis=0) + (0.25 if items > 1 else 0.0) * \
        rng.standard_normal((n_items * items, L))
    docs, u = _observe(z, rng, A, B)
    item_of = np.repeat(np.arange(n_items), items)
    relevant = [list(np.flatnonzero(item_of == i)) for i in range(n_items)]
    n_dup = int(round(duplicates * docs.shape[0]))
    if n_dup:  # a near-identical copy: same content, same nuisance, a little noise
        src = rng.choice(docs.shape[0], n_dup, replace=False)
        copies = docs[src] + 0.1 * rng.standard_normal((n_dup, D))
        new = docs.shape[0] + np.arange(n_dup)
        docs = np.vstack([docs, copies])
        for s, n in zip(src, new):
            relevant[item_of[s]].append(n)
    if tail:  # far from every query: easy negatives nobody needs
        zt = rng.standard_normal((tail, L)) + 4.0 * np.ones(L) / np.sqrt(L) * 3
        docs = np.vstack([docs, _observe(zt, rng, A, B)[0]])
    q_items = rng.choice(n_items, n_train + n_test, replace=False)
    zq = item_z[q_items] + QUERY_NOISE * rng.standard_normal((q_items.size, L))
    queries, _ = _observe(zq, rng, A, B)
    # labelled positives: all documents of the item, except the duplicates
    labelled = [np.array([d for d in relevant[i] if d < n_items * items]) for i in q_items]
    rel = [np.array(relevant[i]) for i in q_items]
    unlabelled = [np.setdiff1d(r, p) for r, p in zip(rel, labelled)]
    return dict(corpus=docs, q_train=queries[:n_train], q_test=queries[n_train:],
                pos_train=labelled[:n_train], rel_test=rel[n_train:],
                fn_train=unlabelled[:n_train] if n_dup else None)


def _digits(rng, n_components=None):
    X, y = load_digits(return_X_y=True)
    X = (X - X.mean(0)) / (X.std(0) + 1e-9)
    if n_components:
        X = PCA(n_components, random_state=0).fit_transform(X)
        X /= X[:, :1].std()
    # nuisance directions of large variance, mixed in by a random rotation: the
    # start model (PCA) is dominated by them and training has to learn to ignore them
    nuisance = DIGITS_NUISANCE * rng.standard_normal((X.shape[0], X.shape[1] // 2))
    X = np.hstack([X, nuisance]) @ np.linalg.qr(
        rng.standard_normal((X.shape[1] * 3 // 2,) * 2))[0]
    order = rng.permutation(y.size)
    n_q = DIGITS_TRAIN + DIGITS_TEST
    q, c = order[:n_q], order[n_q:]
    corpus, yc = X[c], y[c]
    pos = [np.array([rng.choice(np.flatnonzero(yc == y[i]))]) for i in q[:DIGITS_TRAIN]]
    same = [np.flatnonzero(yc == y[i]) for i in q]
    return dict(corpus=corpus, q_train=X[q[:DIGITS_TRAIN]], q_test=X[q[DIGITS_TRAIN:]],
                pos_train=pos, rel_test=same[DIGITS_TRAIN:],
                fn_train=[np.setdiff1d(s, p) for s, p in zip(same[:DIGITS_TRAIN], pos)])


DATASETS = {
    "topics": lambda rng: _topics(rng, 2000 * SCALE, 1000 * SCALE, 400),
    "topics+duplicates": lambda rng: _topics(rng, 2000 * SCALE, 1000 * SCALE, 400,
                                             duplicates=0.3),
    "multi-positive": lambda rng: _topics(rng, 3000 * SCALE, 600 * SCALE, 300, items=3),
    "easy-tail": lambda rng: _topics(rng, 2000 * SCALE, 1000 * SCALE, 400,
                                     tail=8000 * SCALE),
    "digits": lambda rng: _digits(rng),
    "digits-pca20": lambda rng: _digits(rng, 20),
}


# ------------------------------------------------------------------ model
def embed(X, W):
    U = X @ W
    return U / np.linalg.norm(U, axis=1, keepdims=True)


def train(W, data, negatives, epochs, rng, lr=3e-3, batch=64):
    """InfoNCE of each query against its positive and its negatives (with
    ``IN_BATCH``, against every document of the batch); Adam; returns new W."""
    # tiny GEMMs: BLAS threads only wait on each other (13x slower on 2 busy cores)
    with threadpool_limits(1, user_api="blas"):
        return _train(W, data, negatives, epochs, rng, lr, batch)


def _train(W, data, negatives, epochs, rng, lr, batch):
    W = W.copy()
    Xc, Xq, pos = data["corpus"], data["q_train"], data["pos_train"]
    m, v = np.zeros_like(W), np.zeros_like(W)
    step = 0
    n = Xq.shape[0]
    width = max(p.size for p in pos)
    posmat = np.full((n, width), -1, dtype=np.intp)
    for i, p in enumerate(pos):
        posmat[i, :p.size] = p
    counts = np.array([p.size for p in pos])
    for _ in range(epochs):
        for b in np.array_split(rng.permutation(n), max(1, n // batch)):
            pick = (rng.random(b.size) * counts[b]).astype(np.intp)
            target = posmat[b, pick]
            doc_ids = np.concatenate([target, negatives[b].ravel()])
            q, d = Xq[b], Xc[doc_ids]
            Uq, Ud = q @ W, d @ W
            nq = np.linalg.norm(Uq, axis=1, keepdims=True)
            nd = np.linalg.norm(Ud, axis=1, keepdims=True)
            Qh, Dh = Uq / nq, Ud / nd
            S = Qh @ Dh.T / TAU
            # a labelled positive of the query is never one of its negatives
            other = (doc_ids[None, None, :] == posmat[b][:, :, None]).any(axis=1)
            other[np.arange(b.size), np.arange(b.size)] = False
            if not IN_BATCH:  # each query against its own positive and negatives only
                col = np.arange(doc_ids.size)
                owner = np.where(col < b.size, col, (col - b.size) // NUM_NEGATIVES)
                other |= owner[None, :] != np.arange(b.size)[:, None]
            S[other] = -np.inf
            S -= S.max(axis=1, keepdims=True)
            P = np.exp(S)
            P /= P.sum(axis=1, keepdims=True)
            P[np.arange(b.size), np.arange(b.size)] -= 1.0
            G = P / (b.size * TAU)
            dQ, dD = G @ Dh, G.T @ Qh
            dUq = (dQ - np.sum(dQ * Qh, axis=1, keepdims=True) * Qh) / nq
            dUd = (dD - np.sum(dD * Dh, axis=1, keepdims=True) * Dh) / nd
            grad = q.T @ dUq + d.T @ dUd
            step += 1
            m = 0.9 * m + 0.1 * grad
            v = 0.999 * v + 0.001 * grad**2
            W -= lr * (m / (1 - 0.9**step)) / (np.sqrt(v / (1 - 0.999**step)) + 1e-8)
    return W


def random_negatives(data, rng):
    n_c = data["corpus"].shape[0]
    out = np.empty((len(data["pos_train"]), NUM_NEGATIVES), dtype=np.intp)
    for i, p in enumerate(data["pos_train"]):
        pool = rng.choice(n_c, NUM_NEGATIVES + p.size + 8, replace=False)
        out[i] = pool[~np.isin(pool, p)][:NUM_NEGATIVES]
    return out


def mined_negatives(data, W, kwargs, seed, rng):
    """5 mined negatives per training query; a query the guards leave short is
    topped up with random ones (counted)."""
    C = embed(data["corpus"], W)
    Q = embed(data["q_train"], W)
    mined = hnm.mine_hard_negatives(Q, data["pos_train"], C, k=NUM_NEGATIVES,
                                    output="ntuple", random_state=seed, **kwargs)
    out = random_negatives(data, rng)
    first = np.unique(mined.query, return_index=True)[1]  # one row per query
    out[mined.query[first]] = mined.negative[first]
    # what was mined, under the mining model: median rank among the guards'
    # survivors, share of negatives scoring above the query's positive
    rank = float(np.median(mined.rank[first])) if first.size else None
    above = float(np.mean(mined.score[first] > mined.positive_score[first, None])) \
        if first.size else None
    return out, mined.summary["n_skipped"], rank, above


def recall(data, W, ks=(1, 10)):
    C = embed(data["corpus"], W)
    Q = embed(data["q_test"], W)
    S = Q @ C.T
    kmax = max(ks)
    top = np.argpartition(-S, kmax, axis=1)[:, :kmax]
    top = np.take_along_axis(top, np.argsort(-np.take_along_axis(S, top, axis=1), axis=1),
                             axis=1)
    out = {}
    for k in ks:
        hits = [np.isin(top[i, :k], r).sum() / min(k, r.size)
                for i, r in enumerate(data["rel_test"])]
        out[k] = float(np.mean(hits))
    return out


def false_negative_rate(data, negatives):
    if data["fn_train"] is None:
        return None
    return float(np.mean([np.isin(n, f).mean() for n, f in zip(negatives, data["fn_train"])]))


def run_seed(dataset, seed, strategies=STRATEGIES, warm_epochs=3, epochs=6):
    """{strategy: (recall@1, recall@10, false-negative rate, short queries, median
    rank of the mined negatives, share of them scoring above the positive)}; the
    last two are None for random negatives."""
    rng = np.random.default_rng(seed)
    data = DATASETS[dataset](rng)
    d_out = min(32, data["corpus"].shape[1])
    W0 = PCA(d_out, random_state=seed).fit(data["corpus"]).components_.T
    W1 = train(W0, data, random_negatives(data, rng), warm_epochs, np.random.default_rng(seed))
    out = {}
    for name, kwargs in strategies.items():
        r = np.random.default_rng([seed, 1])  # same batches and top-ups for every strategy
        if kwargs is None:
            negs, short, rank, above = random_negatives(data, r), 0, None, None
        else:
            negs, short, rank, above = mined_negatives(data, W1, kwargs, seed, r)
        W = train(W1, data, negs, epochs, np.random.default_rng([seed, 2]))
        rec = recall(data, W)
        out[name] = (rec[1], rec[10], false_negative_rate(data, negs), short, rank, above)
    return out


def _paired(a, b):
    """Mean and standard deviation over seeds of the paired difference a - b."""
    d = np.asarray(a) - np.asarray(b)
    return d.mean(), d.std(ddof=1) if d.size > 1 else 0.0


def summarise(dataset, per_seed):
    """Lines of the table: mean recall and the paired differences (mean +/- sd
    over seeds) to random negatives and to the defaults."""
    names = list(per_seed[0])
    lines = []
    rand1 = [s["random"][0] for s in per_seed]
    def1 = [s["defaults"][0] for s in per_seed] if "defaults" in names else None
    for name in names:
        r1 = np.array([s[name][0] for s in per_seed])
        r10 = np.array([s[name][1] for s in per_seed])
        d_rand = _paired(r1, rand1)
        vs = f"vs random {d_rand[0]:+.3f} +/- {d_rand[1]:.3f}"
        if def1 is not None and name not in ("random", "defaults"):
            d_def = _paired(r1, def1)
            vs += f", vs defaults {d_def[0]:+.3f} +/- {d_def[1]:.3f}"
        fn = [s[name][2] for s in per_seed]
        short = np.mean([s[name][3] for s in per_seed])
        fn_txt = "" if fn[0] is None else f", false negatives {100 * np.mean(fn):.1f}%"
        if per_seed[0][name][4] is not None:
            fn_txt += (f", median rank {np.mean([s[name][4] for s in per_seed]):.0f}, "
                       f"above the positive {100 * np.mean([s[name][5] for s in per_seed]):.0f}%")
        lines.append(f"[{dataset}] {name:>34}: recall@1 {r1.mean():.3f} ({vs}), "
                     f"recall@10 {r10.mean():.3f}{fn_txt}"
                     + (f", short queries {short:.0f}" if short else ""))
    return lines


@pytest.mark.parametrize("dataset", list(DATASETS))
def test_retrieval_quality(benchmark, ratios, dataset):
    benchmark.group = "retrieval quality"
    per_seed = []
    for seed in SEEDS:
        if seed == SEEDS[0]:
            per_seed.append(benchmark.pedantic(run_seed, args=(dataset, seed), rounds=1,
                                               iterations=1))
        else:
            per_seed.append(run_seed(dataset, seed))
    for line in summarise(dataset, per_seed):
        ratios.note(line)
    benchmark.extra_info["recall@1"] = {
        name: float(np.mean([s[name][0] for s in per_seed])) for name in per_seed[0]}


if __name__ == "__main__":
    import sys

    chosen = sys.argv[1:] or list(DATASETS)
    for dataset in chosen:
        t = time.perf_counter()
        per_seed = [run_seed(dataset, seed) for seed in SEEDS]
        print("\n".join(summarise(dataset, per_seed)), f"({time.perf_counter() - t:.0f} s)",
              flush=True)
