"""hnm.sentence_transformers.mine_hard_negatives against sentence-transformers' own, same run.

1. Agreement (needs sentence-transformers and torch, skipped otherwise): ~3,300
   synthetic (anchor, positive) pairs, an offline StaticEmbedding model (WordLevel
   tokenizer, seeded random matrix), three settings; every (anchor, negative) found in
   one output only is classified: "pool" (hnm's negative lies beyond the raw top
   ``range_max + max_positives`` that sentence-transformers ranks), "tie" (its exact
   score is within 1e-5 of another candidate's or of a threshold) or "other" (target 0).
2. Memory and time: N_Q queries x N_C corpus texts with 384-dim embeddings, given by a
   lookup "model" (text -> precomputed unit row), each contender in a fresh
   subprocess: hnm; sentence-transformers exact (torch, default faiss_batch_size);
   sentence-transformers with use_faiss=True (if faiss is installed). Peak resident
   memory above the loaded data (VmHWM - VmRSS before the call). Targets: hnm at most a
   tenth of the exact path's and below the faiss path's.

Sizes: 2,000 x 20,000 by default; HNM_BENCH_ST_FULL=1 for 20,000 x 200,000.
Run: ``pytest benchmarks/bench_sentence_transformers.py -s`` or ``python
benchmarks/bench_sentence_transformers.py`` (prints the same report).
"""
from collections import Counter
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest

FULL = os.environ.get("HNM_BENCH_ST_FULL", "") not in ("", "0")
N_Q, N_C = (20_000, 200_000) if FULL else (2_000, 20_000)
DIM = 384
SETTINGS = [dict(), dict(relative_margin=0.05, num_negatives=5),
            dict(absolute_margin=0.05, max_score=0.95, range_min=1, num_negatives=4)]
MEMORY_SETTING = dict(relative_margin=0.05, num_negatives=5)


def _have(*names):
    import importlib.util
    return all(importlib.util.find_spec(n) is not None for n in names)


# --------------------------------------------------------------------------- agreement

def make_pairs(n_pairs=3300, n_topics=80, n_extra=3000, seed=0):
    rng = np.random.default_rng(seed)
    words = [[f"t{t}w{j}" for j in range(15)] for t in range(n_topics)]

    def text(t, n):
        return " ".join(rng.choice(words[t], size=n)) + " " + " ".join(
            f"c{j}" for j in rng.integers(0, 40, size=2))

    anchors, positives = [], []
    while len(anchors) < n_pairs:
        t = int(rng.integers(n_topics))
        a = text(t, 3)
        for _ in range(1 if rng.random() < 0.75 else int(rng.integers(2, 4))):
            anchors.append(a)
            # half the positives repeat the anchor's words, half only share its topic
            positives.append(a + " " + text(t, 2) if rng.random() < 0.5 else text(t, 5))
    anchors, positives = anchors[:n_pairs], positives[:n_pairs]
    corpus = [text(int(rng.integers(n_topics)), 4) for _ in range(n_extra)]
    return anchors, positives, corpus


def static_model(vocab, dim=64, seed=0):
    from sentence_transformers import SentenceTransformer
    try:
        from sentence_transformers.sentence_transformer.modules import StaticEmbedding
    except ImportError:
        from sentence_transformers.models import StaticEmbedding
    from tokenizers import Tokenizer, models, pre_tokenizers

    ids = {w: i for i, w in enumerate(sorted(vocab))}
    ids["[UNK]"] = len(ids)
    tok = Tokenizer(models.WordLevel(ids, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    W = np.random.default_rng(seed).standard_normal((len(ids), dim)).astype(np.float32)
    return SentenceTransformer(modules=[StaticEmbedding(tok, embedding_weights=W)], device="cpu")


def classify(st_rows, hnm_rows, S, queries, corpus_texts, pool_size, thresholds, tol=1e-5):
    cidx = {t: i for i, t in enumerate(corpus_texts)}
    qidx = {q: i for i, q in enumerate(queries)}
    st_by, hnm_by = {}, {}
    for rows, by in ((st_rows, st_by), (hnm_rows, hnm_by)):
        for q, n in rows:
            by.setdefault(q, set()).add(n)
    out = Counter()
    for q in set(st_by) | set(hnm_by):
        a, b = st_by.get(q, set()), hnm_by.get(q, set())
        out["same"] += len(a & b)
        out["anchors_identical"] += a == b
        out["anchors"] += 1
        s = S[qidx[q]]
        pool = set(np.argsort(-s, kind="stable")[:pool_size].tolist())
        for t in a ^ b:
            j = cidx[t]
            near = np.abs(s - s[j]) <= tol
            near[j] = False
            if t in b and j not in pool:
                out["pool"] += 1
            elif near.any() or any(abs(s[j] - x) <= tol for x in thresholds[q]):
                out["tie"] += 1
            else:
                out["other"] += 1
    return out


def agreement():
    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives as st_mine

    from hnm.sentence_transformers import mine_hard_negatives

    anchors, positives, corpus = make_pairs()
    model = static_model({w for t in anchors + positives + corpus for w in t.split()})
    ds = Dataset.from_dict({"query": anchors, "answer": positives})
    queries = list(dict.fromkeys(anchors))
    corpus_texts = list(dict.fromkeys(corpus + positives))
    cidx = {t: i for i, t in enumerate(corpus_texts)}
    E = model.encode(corpus_texts, normalize_embeddings=True, convert_to_numpy=True)
    Qe = model.encode(queries, normalize_embeddings=True, convert_to_numpy=True)
    S = Qe.astype(np.float64) @ E.astype(np.float64).T
    positives_of = {}
    for a, p in zip(anchors, positives):
        positives_of.setdefault(a, set()).add(cidx[p])
    lines, total = [], Counter()
    for kw in SETTINGS:
        t0 = time.perf_counter()
        theirs = st_mine(ds, model, corpus=corpus, verbose=False, **kw)
        t1 = time.perf_counter()
        ours, counts = mine_hard_negatives(ds, model, corpus=corpus, verbose=False,
                                           return_counts=True, **kw)
        t2 = time.perf_counter()
        thresholds = {}
        for qi, q in enumerate(queries):
            p = min(S[qi, j] for j in positives_of[q])
            thresholds[q] = [x for x in (
                p, p - kw["absolute_margin"] if "absolute_margin" in kw else None,
                p - abs(p) * kw["relative_margin"] if "relative_margin" in kw else None,
                kw.get("max_score")) if x is not None]
        why = classify({(r["query"], r["negative"]) for r in theirs},
                       {(r["query"], r["negative"]) for r in ours}, S, queries, corpus_texts,
                       counts["pool_size"], thresholds)
        total.update(why)
        lines.append(f"{kw or 'defaults'}: rows ST {len(theirs):,} / hnm {len(ours):,}; "
                     f"anchors identical {why['anchors_identical']}/{why['anchors']}; "
                     f"(anchor, negative) in both {why['same']:,}, differing: pool "
                     f"{why['pool']:,}, ties {why['tie']:,}, other {why['other']:,}; "
                     f"ST {t1 - t0:.1f} s, hnm {t2 - t1:.1f} s")
    lines.append(f"all settings ({len(anchors):,} pairs, {len(queries):,} anchors each): "
                 f"anchors identical {total['anchors_identical']}/{total['anchors']} "
                 f"({total['anchors_identical'] / total['anchors']:.1%}); differing pairs: "
                 f"pool truncation {total['pool']:,}, ties {total['tie']:,}, "
                 f"other {total['other']:,}")
    return lines, total


# --------------------------------------------------------------------------- memory

def make_embeddings(directory, n_q=N_Q, n_c=N_C, dim=DIM, seed=0):
    """Clustered unit corpus rows; query i is a noisy copy of corpus row i (its positive)."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((max(n_c // 100, 1), dim)).astype(np.float32)
    C = np.lib.format.open_memmap(os.path.join(directory, "corpus.npy"), mode="w+",
                                  dtype=np.float32, shape=(n_c, dim))
    for s in range(0, n_c, 50_000):
        n = min(50_000, n_c - s)
        x = centers[rng.integers(0, centers.shape[0], n)] + 0.8 * rng.standard_normal(
            (n, dim), dtype=np.float32)
        C[s:s + n] = x / np.linalg.norm(x, axis=1, keepdims=True)
    q = np.asarray(C[:n_q]) + 0.06 * rng.standard_normal((n_q, dim), dtype=np.float32)
    np.save(os.path.join(directory, "queries.npy"),
            (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32))
    C.flush()


class LookupModel:
    """Texts "q<i>" / "d<j>" -> precomputed unit rows; the methods both libraries call."""

    similarity_fn_name = "cosine"

    def __init__(self, Q, C):
        from types import SimpleNamespace
        self.Q, self.C = Q, C
        self.model_card_data = SimpleNamespace(base_model=None)

    def _rows(self, texts):
        idx = np.array([int(t[1:]) for t in texts], dtype=np.intp)
        is_query = np.array([t[0] == "q" for t in texts])
        out = np.empty((len(texts), self.C.shape[1]), dtype=np.float32)
        out[is_query] = self.Q[idx[is_query]]
        out[~is_query] = self.C[idx[~is_query]]
        return out

    def encode(self, texts, **kw):
        return np.concatenate([self._rows(texts[s:s + 8192]) for s in range(0, len(texts), 8192)])

    encode_query = encode_document = encode

    # sentence-transformers' search calls these
    @property
    def device(self):
        import torch
        return torch.device("cpu")

    def similarity(self, a, b):
        from sentence_transformers.util import cos_sim
        return cos_sim(a, b)

    def similarity_pairwise(self, a, b):
        from sentence_transformers.util import pairwise_cos_sim
        return pairwise_cos_sim(a, b)

    def get_embedding_dimension(self):
        return self.C.shape[1]


def _status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def worker(which, directory):
    Q = np.load(os.path.join(directory, "queries.npy"))
    C = np.load(os.path.join(directory, "corpus.npy"), mmap_mode="r")
    if which == "hnm":
        from hnm.sentence_transformers import mine_hard_negatives
    else:
        from sentence_transformers.util import mine_hard_negatives
        import torch  # noqa: F401  (imported before the baseline, as hnm's imports are)
    import datasets
    model = LookupModel(Q, C)
    data = datasets.Dataset.from_dict({"query": [f"q{i}" for i in range(Q.shape[0])],
                                       "answer": [f"d{i}" for i in range(Q.shape[0])]})
    corpus = [f"d{j}" for j in range(C.shape[0])]
    kw = dict(MEMORY_SETTING, corpus=corpus, verbose=False, batch_size=1024)
    if which == "st-faiss":
        kw["use_faiss"] = True
    base = _status("VmRSS")
    t0 = time.perf_counter()
    out = mine_hard_negatives(data, model, **kw)
    seconds = time.perf_counter() - t0
    print(json.dumps({"seconds": seconds, "peak": _status("VmHWM"), "base": base,
                      "rows": len(out)}))


def run_worker(which, directory):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), env.get("PYTHONPATH", "")]))
    res = subprocess.run([sys.executable, os.path.abspath(__file__), "worker", which, directory],
                         capture_output=True, text=True, env=env)
    if res.returncode != 0:
        return {"error": res.stderr.strip().splitlines()[-1] if res.stderr.strip() else
                f"exit {res.returncode}"}
    return json.loads(res.stdout.strip().splitlines()[-1])


def memory():
    contenders = ["hnm"]
    if _have("torch", "sentence_transformers"):
        contenders.append("st-exact")
        if _have("faiss"):
            contenders.append("st-faiss")
    with tempfile.TemporaryDirectory() as d:
        make_embeddings(d)
        got = {w: run_worker(w, d) for w in contenders}
    lines = [f"{N_Q:,} queries x {N_C:,} corpus x {DIM}, {MEMORY_SETTING}:"]
    for w, r in got.items():
        if "error" in r:
            lines.append(f"  {w}: failed ({r['error']})")
        else:
            lines.append(f"  {w}: {r['seconds']:.1f} s, peak {r['peak'] / 2**30:.2f} GiB, "
                         f"{(r['peak'] - r['base']) / 2**30:.2f} GiB above the loaded data, "
                         f"{r['rows']:,} rows")
    h = got["hnm"]
    for w in ("st-exact", "st-faiss"):
        r = got.get(w)
        if r and "error" not in r and "error" not in h:
            lines.append(f"  hnm / {w}: memory above data "
                         f"{(h['peak'] - h['base']) / max(r['peak'] - r['base'], 1):.3f}, "
                         f"time {h['seconds'] / r['seconds']:.2f}")
    return lines, got


@pytest.mark.skipif(not _have("torch", "sentence_transformers", "datasets"),
                    reason="needs sentence-transformers and torch")
def test_agreement_with_sentence_transformers(ratios):
    lines, total = agreement()
    for line in lines:
        print(line)
        ratios.note("st agreement: " + line)


@pytest.mark.skipif(not _have("datasets"), reason="needs datasets")
def test_memory_and_time(ratios):
    lines, _ = memory()
    for line in lines:
        print(line)
        ratios.note("st memory: " + line)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "worker":
        worker(sys.argv[2], sys.argv[3])
    else:
        if _have("torch", "sentence_transformers"):
            print("\n".join(agreement()[0]))
        print("\n".join(memory()[0]))
