"""hnm.sentence_transformers against a plain numpy reference of sentence-transformers' rules
(exact over the whole corpus), with a deterministic fake encoder and no torch."""
from collections import Counter
import hashlib
import os

import numpy as np
import pytest

datasets = pytest.importorskip("datasets")

import hnm  # noqa: E402
from hnm.sentence_transformers import mine_hard_negatives, to_dataset, to_pandas  # noqa: E402

DIM = 16


def word_vector(word):
    seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:8], "little")
    return np.random.default_rng(seed).standard_normal(DIM)


class FakeEncoder:
    """Sum of per-word vectors seeded by the word: deterministic across processes."""

    def __init__(self, fail_after=None):
        self.calls, self.texts_seen, self.fail_after = 0, 0, fail_after
        self.name_or_path = "fake-encoder"

    def encode(self, texts, batch_size=32):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt
        self.calls += 1
        self.texts_seen += len(texts)
        return np.array([np.sum([word_vector(w) for w in t.split()], axis=0) for t in texts],
                        dtype=np.float32)


def make_pairs(n_anchors=60, n_topics=8, n_extra=150, seed=0):
    """Anchors with 1-3 positives from their topic; extra corpus texts, some repeated."""
    rng = np.random.default_rng(seed)
    words = [[f"t{t}w{j}" for j in range(12)] for t in range(n_topics)]

    def text(t, n):
        return " ".join(rng.choice(words[t], size=n)) + " " + " ".join(
            f"c{j}" for j in rng.integers(0, 30, size=2))

    anchors, positives = [], []
    for i in range(n_anchors):
        t = int(rng.integers(n_topics))
        a = text(t, 3)
        for _ in range(1 if rng.random() < 0.7 else int(rng.integers(2, 4))):
            anchors.append(a)
            positives.append(a + " " + text(t, 2))
    corpus = [text(int(rng.integers(n_topics)), 4) for _ in range(n_extra)]
    corpus += corpus[:10] + positives[:5]  # duplicates: de-duplicated by text
    return anchors, positives, corpus


def unit_embeddings(texts):
    E = FakeEncoder().encode(texts).astype(np.float64)
    n = np.linalg.norm(E, axis=1, keepdims=True)
    return (E / np.where(n > 0, n, 1)).astype(np.float32).astype(np.float64)


def reference(anchors, positives, corpus=None, *, range_min=0, range_max=None, max_score=None,
              min_score=None, absolute_margin=None, relative_margin=None, num_negatives=3,
              include_positives=False, duplicate_threshold=None, output_format=None):
    """sentence-transformers' rules, exact over the whole corpus, on the full score matrix.
    Returns (per unique query: [(negative text, score)], per query pool counts)."""
    corpus_texts = list(dict.fromkeys((positives if corpus is None else list(corpus))
                                      + positives))
    queries = list(dict.fromkeys(anchors))
    cidx = {t: i for i, t in enumerate(corpus_texts)}
    pos = {q: [] for q in queries}
    for a, p in zip(anchors, positives):
        if cidx[p] not in pos[a]:
            pos[a].append(cidx[p])
    max_positives = max(Counter(anchors).values())
    if range_max is None:
        factor = 10 if (absolute_margin is not None or relative_margin is not None
                        or max_score is not None) else 1
        range_max = range_min + num_negatives * factor + max_positives
    C = unit_embeddings(corpus_texts)
    Q = unit_embeddings(queries)
    S = Q @ C.T
    out, dropped = {}, Counter()
    k_pool = min(range_max + max_positives, len(corpus_texts))
    for qi, q in enumerate(queries):
        s = S[qi]
        p = min(s[j] for j in pos[q])
        code = np.zeros(len(corpus_texts), dtype=int)
        if not include_positives:
            code[pos[q]] = 1
        if absolute_margin is not None:
            code[(code == 0) & (s + absolute_margin > p)] = 2
        if relative_margin is not None:
            code[(code == 0) & (s > p - abs(p) * relative_margin)] = 3
        if max_score is not None:
            code[(code == 0) & (s > max_score)] = 4
        if duplicate_threshold is not None:
            dup = np.max(C @ C[pos[q]].T, axis=1)
            code[(code == 0) & (dup > duplicate_threshold)] = 5
        order = np.lexsort((np.arange(s.size), -s))
        for c in code[order[:k_pool]]:
            if c:
                dropped[c] += 1
        if min_score is not None:
            dropped[6] += int(np.sum((code[order[:k_pool]] == 0) & (s[order[:k_pool]] < min_score)))
        surv = [j for j in order if code[j] == 0][range_min:range_max]
        if min_score is not None:
            surv = [j for j in surv if s[j] >= min_score]
        out[q] = [(corpus_texts[j], s[j]) for j in surv[:num_negatives]]
    names = {1: "positives", 2: "absolute_margin", 3: "relative_margin", 4: "max_score",
             5: "near_duplicate", 6: "min_score"}
    return out, {names[c]: n for c, n in dropped.items() if n}, queries, pos, corpus_texts, S


def by_query(ds, anchor="query", negative="negative"):
    got = {}
    for row in ds:
        got.setdefault(row[anchor], [])
        if row[negative] not in got[row[anchor]]:
            got[row[anchor]].append(row[negative])
    return got


@pytest.fixture(scope="module")
def pairs():
    return make_pairs()


def run(pairs, **kw):
    anchors, positives, corpus = pairs
    kw.setdefault("verbose", False)
    return mine_hard_negatives({"query": anchors, "answer": positives}, FakeEncoder(),
                               corpus=corpus, return_counts=True, **kw)


SETTINGS = [
    dict(),
    dict(num_negatives=5, relative_margin=0.05),
    dict(num_negatives=4, absolute_margin=0.02, max_score=0.9, range_min=2),
    dict(num_negatives=3, min_score=0.3, range_max=12),
    dict(num_negatives=2, relative_margin=0.3, range_max=6),  # ST's pool runs short
    dict(num_negatives=3, max_score=0.5, duplicate_threshold=0.9),
    dict(num_negatives=3, include_positives=True, output_format="n-tuple"),
]


@pytest.mark.parametrize("kw", SETTINGS)
def test_negatives_equal_the_exact_reference(pairs, kw):
    ds, counts = run(pairs, **kw)
    ref, dropped, queries, pos, corpus_texts, S = reference(*pairs, **kw)
    anchor_col = "query"
    if kw.get("include_positives"):
        got = {}
        for row in ds:
            got.setdefault(row[anchor_col], [row[f"negative_{j + 1}"] for j in range(3)])
        assert got == {q: [t for t, _ in v] for q, v in ref.items() if len(v) == 3}
        return
    assert by_query(ds) == {q: [t for t, _ in v] for q, v in ref.items() if v}
    assert {k: v for k, v in counts["dropped"].items() if v} == dropped
    assert counts["n_negatives"] == sum(len(v) for v in ref.values())
    assert counts["n_short_anchors"] == sum(len(v) < kw.get("num_negatives", 3)
                                            for v in ref.values())


def test_pool_truncation_is_what_hnm_recovers(pairs):
    # relative_margin=0.3 with a small window: most of ST's raw pool is filtered out
    _, counts = run(pairs, num_negatives=2, relative_margin=0.3, range_max=6)
    assert counts["n_anchors_beyond_pool"] > 0
    assert counts["n_negatives_beyond_pool"] > 0
    assert counts["pool_size"] == 6 + max(Counter(pairs[0]).values())


@pytest.mark.parametrize("output_scores", [False, True])
def test_every_output_format_has_st_columns_and_rows(pairs, output_scores):
    kw = dict(num_negatives=3, relative_margin=0.2, range_max=8, output_scores=output_scores)
    ref, _, queries, pos, corpus_texts, S = reference(*pairs, num_negatives=3,
                                                      relative_margin=0.2, range_max=8)
    qidx = {q: i for i, q in enumerate(queries)}
    cidx = {t: i for i, t in enumerate(corpus_texts)}
    pair_list = [(q, corpus_texts[p]) for q in queries for p in pos[q]]

    tri, _ = run(pairs, output_format="triplet", **kw)
    assert tri.column_names == ["query", "answer", "negative"] + (["scores"] if output_scores
                                                                  else [])
    want = [(q, p, n) for q, p in pair_list for n, _ in ref[q]]
    assert [(r["query"], r["answer"], r["negative"]) for r in tri] == want
    if output_scores:
        for r in tri:
            ps, ns = r["scores"]
            assert ps == pytest.approx(S[qidx[r["query"]], cidx[r["answer"]]], abs=1e-9)
            assert ns == pytest.approx(S[qidx[r["query"]], cidx[r["negative"]]], abs=1e-9)

    tup, _ = run(pairs, output_format="n-tuple", **kw)
    assert tup.column_names == ["query", "answer", "negative_1", "negative_2", "negative_3"] + (
        ["scores"] if output_scores else [])
    full = [(q, p) for q, p in pair_list if len(ref[q]) == 3]
    assert [(r["query"], r["answer"]) for r in tup] == full
    assert all([r[f"negative_{j + 1}"] for j in range(3)] == [t for t, _ in ref[r["query"]]]
               for r in tup)
    if output_scores:
        assert all(len(r["scores"]) == 4 for r in tup)

    lp, _ = run(pairs, output_format="labeled-pair", **kw)
    value = "score" if output_scores else "label"
    assert lp.column_names == ["query", "answer", value]
    want = []
    for q in queries:
        want += [(q, corpus_texts[p], 1) for p in pos[q]] + [(q, n, 0) for n, _ in ref[q]]
    if output_scores:
        assert [(r["query"], r["answer"]) for r in lp] == [w[:2] for w in want]
        assert [r["score"] for r in lp] == pytest.approx(
            [S[qidx[q], cidx[t]] for q, t, _ in want], abs=1e-9)
    else:
        assert [(r["query"], r["answer"], r["label"]) for r in lp] == want

    ll, _ = run(pairs, output_format="labeled-list", **kw)
    value = "scores" if output_scores else "labels"
    assert ll.column_names == ["query", "answer", value]
    want = [(q, [p] + [n for n, _ in ref[q]]) for q, p in pair_list if ref[q]]
    assert [(r["query"], r["answer"]) for r in ll] == want
    if not output_scores:
        assert all(r["labels"] == [1] + [0] * (len(r["answer"]) - 1) for r in ll)
    else:
        assert all(len(r["scores"]) == len(r["answer"]) for r in ll)


def test_corpus_is_deduplicated_by_text_and_duplicate_rows_collapse():
    anchors = ["a b", "a b", "a b", "c d"]
    positives = ["a b x", "a b y", "a b x", "c d z"]  # the repeated (anchor, positive) is one pair
    corpus = ["a q", "a q", "c q", "a b x", "w v", "c d z"]
    ds, counts = mine_hard_negatives({"q": anchors, "p": positives}, FakeEncoder(),
                                     corpus=corpus, num_negatives=2, verbose=False,
                                     return_counts=True)
    assert counts["n_corpus"] == 6  # a q, c q, a b x, w v, c d z, a b y
    assert counts["n_pairs"] == 3 and counts["n_anchors"] == 2
    rows = [(r["q"], r["p"]) for r in ds]
    assert rows.count(("a b", "a b x")) == 2 and rows.count(("a b", "a b y")) == 2
    # positives are never negatives, and each anchor's negatives are distinct texts
    for q, negs in by_query(ds, "q").items():
        assert len(negs) == 2 and not set(negs) & {"a b x", "a b y", "c d z"}
    # range_max's default counts the anchor's rows, as sentence-transformers' groupby does
    assert counts["range_max"] == 0 + 2 + 3


def test_margins_use_the_smallest_positive_score():
    anchors = ["k1 k2"] * 2
    positives = ["k1 k2 k3", "k9 k8 k7"]  # one close, one far positive
    corpus = [f"k1 k{j}" for j in range(10, 40)] + [f"k{j} k{j + 1}" for j in range(40, 80)]
    ds, _ = mine_hard_negatives({"q": anchors, "p": positives}, FakeEncoder(), corpus=corpus,
                                num_negatives=3, absolute_margin=0.0, output_scores=True,
                                verbose=False, return_counts=True)
    min_pos = min(r["scores"][0] for r in ds)
    assert all(r["scores"][1] <= min_pos for r in ds)
    assert len(ds) == 6  # three negatives for each of the two positives


def test_random_sampling_is_seeded_and_stays_in_the_window(pairs):
    a, _ = run(pairs, sampling_strategy="random", range_max=15, random_state=3)
    b, _ = run(pairs, sampling_strategy="random", range_max=15, random_state=3)
    c, _ = run(pairs, sampling_strategy="random", range_max=15, random_state=4)
    assert a.to_dict() == b.to_dict() and a.to_dict() != c.to_dict()
    ref, *_ = reference(*pairs, range_max=15, num_negatives=15)
    for q, negs in by_query(a).items():
        window = [t for t, _ in ref[q]]
        assert len(negs) == 3 and set(negs) <= set(window)
        assert negs == sorted(negs, key=window.index)  # closest first


def test_top_up_fills_short_anchors_with_guarded_negatives(pairs):
    kw = dict(num_negatives=3, max_score=0.4, min_score=0.35, range_max=5, output_scores=True)
    short, counts = run(pairs, **kw)
    assert counts["n_short_anchors"] > 0
    full, counts2 = run(pairs, top_up=True, random_state=0, **kw)
    assert counts2["n_topped_up"] > 0
    assert counts2["n_short_anchors"] < counts["n_short_anchors"]
    assert counts2["n_negatives"] == counts["n_negatives"]
    _, _, queries, pos, corpus_texts, S = reference(*pairs)
    pos_text = {q: {corpus_texts[p] for p in pos[q]} for q in queries}
    for q, negs in by_query(full).items():
        assert not set(negs) & pos_text[q]
        assert len(negs) == len(set(negs))
    assert max(r["scores"][1] for r in full) <= 0.4
    # the mined ones come first, unchanged
    assert by_query(short).items() <= {q: v[:len(by_query(short).get(q, []))]
                                       for q, v in by_query(full).items()}.items()


def test_near_duplicate_guard_drops_candidates_close_to_a_positive():
    anchors, positives = ["m1 m2 m3 m4 m5"], ["m1 m2 m3 m4 m5 m6"]
    near = [positives[0] + f" e{j}" for j in range(6)]  # the positive plus one word
    corpus = near + [f"m1 z{j}" for j in range(20)] + [f"m2 z{j}" for j in range(20)]
    E = unit_embeddings(corpus + positives)
    cos = E[:-1] @ E[-1]
    dups = {t for t, c in zip(corpus, cos) if c > 0.9}
    assert dups
    common = dict(corpus=corpus, num_negatives=3, verbose=False, return_counts=True)
    plain, _ = mine_hard_negatives({"q": anchors, "p": positives}, FakeEncoder(), **common)
    assert set(by_query(plain, "q")["m1 m2 m3 m4 m5"]) & dups
    guarded, counts = mine_hard_negatives({"q": anchors, "p": positives}, FakeEncoder(),
                                          duplicate_threshold=0.9, **common)
    got = by_query(guarded, "q")["m1 m2 m3 m4 m5"]
    assert len(got) == 3 and not set(got) & dups
    ref, dropped, *_ = reference(anchors, positives, corpus, num_negatives=3,
                                 duplicate_threshold=0.9)
    assert got == [t for t, _ in ref["m1 m2 m3 m4 m5"]]
    assert counts["dropped"]["near_duplicate"] == dropped["near_duplicate"] > 0


def test_dataset_dataframe_and_dict_give_the_same_result(pairs):
    pd = pytest.importorskip("pandas")
    anchors, positives, corpus = pairs
    data = {"query": anchors, "answer": positives, "other": list(range(len(anchors)))}
    kw = dict(corpus=corpus, verbose=False, relative_margin=0.1)
    a = mine_hard_negatives(data, FakeEncoder(), **kw)
    b = mine_hard_negatives(pd.DataFrame(data), FakeEncoder(), **kw)
    c = mine_hard_negatives(datasets.Dataset.from_dict(data), FakeEncoder(), **kw)
    d = mine_hard_negatives(data, lambda texts: FakeEncoder().encode(texts), **kw)
    assert a.to_dict() == b.to_dict() == c.to_dict() == d.to_dict()
    e = mine_hard_negatives({"answer": positives, "query": anchors}, FakeEncoder(),
                            anchor_column_name="query", positive_column_name="answer", **kw)
    assert e.to_dict() == a.to_dict()


def test_prompts_are_prepended_for_plain_encoders(pairs):
    anchors, positives, corpus = pairs
    seen = []

    def encode(texts):
        seen.extend(texts)
        return FakeEncoder().encode(texts)
    mine_hard_negatives({"q": anchors[:5], "p": positives[:5]}, encode, query_prompt="query: ",
                        corpus_prompt="doc: ", verbose=False)
    assert all(t.startswith(("query: ", "doc: ")) for t in seen)
    assert sum(t.startswith("query: ") for t in seen) == len(set(anchors[:5]))


def test_cross_encoder_rescores_st_pool(pairs):
    anchors, positives, corpus = pairs
    calls = []

    def cross_encoder(pair_list):  # a different, deterministic score: word overlap
        calls.append(len(pair_list))
        return np.array([len(set(q.split()) & set(d.split())) / 10 + 1e-4 * len(d)
                         for q, d in pair_list])
    kw = dict(num_negatives=3, absolute_margin=0.0, range_max=10, output_scores=True)
    ds, counts = run(pairs, cross_encoder=cross_encoder, **kw)
    assert calls
    _, _, queries, pos, corpus_texts, S = reference(*pairs)
    max_pos = max(Counter(anchors).values())
    k = 10 + max_pos
    for q, negs in by_query(ds).items():
        qi = queries.index(q)
        order = np.lexsort((np.arange(S.shape[1]), -S[qi]))[:k]  # the bi-encoder pool
        ce = {corpus_texts[j]: cross_encoder([(q, corpus_texts[j])])[0] for j in order}
        p = min(cross_encoder([(q, corpus_texts[j])])[0] for j in pos[q])
        cands = sorted((t for j, t in ((j, corpus_texts[j]) for j in order)
                        if j not in pos[q] and ce[t] + 0.0 <= p),
                       key=lambda t: (-ce[t], corpus_texts.index(t)))
        assert negs == cands[:3]
    with pytest.warns(UserWarning, match="cross_encoder is only used"):
        run(pairs, cross_encoder=cross_encoder)


def test_cache_resumes_an_interrupted_encoding(tmp_path, pairs, monkeypatch):
    import hnm.sentence_transformers as st

    monkeypatch.setattr(st, "_ENCODE_CHUNK", 16)
    anchors, positives, corpus = pairs
    data = {"q": anchors, "p": positives}
    kw = dict(corpus=corpus, verbose=False, cache_folder=str(tmp_path))
    with pytest.raises(KeyboardInterrupt):
        mine_hard_negatives(data, FakeEncoder(fail_after=5), **kw)
    files = os.listdir(tmp_path)
    assert not [f for f in files if f.endswith(".npy") and ".partial" not in f]
    assert any(f.endswith(".partial.json") for f in files)
    encoder = FakeEncoder()
    resumed = mine_hard_negatives(data, encoder, **kw)
    n_corpus = len(dict.fromkeys(corpus + positives))
    # 5 chunks of 16 corpus texts were kept; the probes of the resumed file cost 2 texts
    assert encoder.texts_seen == n_corpus - 5 * 16 + 2 + len(set(anchors))
    final = sorted(f for f in os.listdir(tmp_path) if f.endswith(".npy"))
    assert len(final) == 2 and not any(".partial" in f for f in os.listdir(tmp_path))
    again = FakeEncoder()
    cached = mine_hard_negatives(data, again, **kw)
    assert again.texts_seen == 4  # two probe texts per file, nothing re-encoded
    plain = mine_hard_negatives(data, FakeEncoder(), corpus=corpus, verbose=False)
    assert resumed.to_dict() == cached.to_dict() == plain.to_dict()
    E = np.load(os.path.join(tmp_path, final[0]), mmap_mode="r")
    assert E.dtype == np.float32 and np.allclose(np.linalg.norm(E, axis=1), 1, atol=1e-5)


def test_a_stale_cache_is_detected_and_encoded_again(tmp_path, pairs):
    anchors, positives, corpus = pairs
    data = {"q": anchors[:20], "p": positives[:20]}
    mine_hard_negatives(data, FakeEncoder(), verbose=False, cache_folder=str(tmp_path))

    class Other(FakeEncoder):  # same name, other embeddings
        def encode(self, texts, batch_size=32):
            return -super().encode(texts) + 1.0
    with pytest.warns(RuntimeWarning, match="do not match"):
        mine_hard_negatives(data, Other(), verbose=False, cache_folder=str(tmp_path))


def test_verbose_reports_counts_and_the_recommended_guard(pairs, capsys):
    run(pairs, verbose=True)
    out = capsys.readouterr().out
    assert "Setting range_max to" in out and "positives" in out
    assert "duplicate_threshold=0.95" in out and "bench_retrieval_quality.py" in out
    run(pairs, verbose=True, relative_margin=0.3, range_max=6, num_negatives=2)
    out = capsys.readouterr().out
    assert "ranked over the whole corpus" in out and "relative_margin" in out
    assert "hnm recommends" not in out


def test_inputs_are_not_modified(pairs):
    anchors, positives, corpus = pairs
    data = {"q": list(anchors), "p": list(positives)}
    copy = {k: list(v) for k, v in data.items()}
    corpus_copy = list(corpus)
    mine_hard_negatives(data, FakeEncoder(), corpus=corpus, verbose=False)
    assert data == copy and corpus == corpus_copy


BAD = [
    (dict(dataset={"q": [], "p": []}), ValueError, "empty"),
    (dict(dataset=[("a", "b")]), TypeError, "dataset must be"),
    (dict(dataset={"q": ["a"]}), ValueError, "at least two columns"),
    (dict(dataset={"q": ["a", "b"], "p": ["c"]}), ValueError, "one length"),
    (dict(dataset={"q": ["a", None], "p": ["c", "d"]}), TypeError, "row 1"),
    (dict(anchor_column_name="nope"), ValueError, "anchor_column_name='nope'"),
    (dict(num_negatives=0), ValueError, "num_negatives"),
    (dict(range_min=-1), ValueError, "range_min"),
    (dict(range_min=5, range_max=5), ValueError, "range_min must be smaller"),
    (dict(num_negatives=4, range_max=3), ValueError, "Cannot mine 4 negatives"),
    (dict(sampling_strategy="best"), ValueError, "sampling_strategy"),
    (dict(output_format="pairs"), ValueError, "output_format"),
    (dict(max_score="0.5"), TypeError, "max_score"),
    (dict(relative_margin=float("nan")), ValueError, "relative_margin"),
    (dict(duplicate_threshold=1.5), ValueError, "duplicate_threshold"),
    (dict(faiss_batch_size=0), ValueError, "faiss_batch_size"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(verbose="yes"), TypeError, "verbose"),
    (dict(random_state="x"), TypeError, "random_state"),
    (dict(corpus="one text"), TypeError, "corpus"),
    (dict(corpus=["ok", 3]), TypeError, "corpus"),
    (dict(model=42), TypeError, "model must be"),
    (dict(model=lambda texts: np.ones((len(texts) + 1, 3))), ValueError, "shape"),
    (dict(model=lambda texts: np.full((len(texts), 3), np.nan)), ValueError, "NaN"),
    (dict(query_prompt_name="missing"), ValueError, "prompt_name"),
    (dict(cross_encoder=lambda pairs: np.ones(2), max_score=0.9), ValueError, "one score"),
]


@pytest.mark.parametrize("kw, error, match", BAD)
def test_bad_inputs_raise_naming_the_argument(kw, error, match):
    args = dict(dataset={"q": ["a b", "c d", "e f"], "p": ["a x", "c y", "e z"]},
                model=FakeEncoder(), verbose=False)
    args.update(kw)
    with pytest.raises(error, match=match):
        mine_hard_negatives(**args)


def test_deprecated_arguments_map_as_in_sentence_transformers(pairs):
    with pytest.warns(FutureWarning, match="margin"):
        a, _ = run(pairs, margin=0.05)
    b, _ = run(pairs, absolute_margin=0.05)
    assert a.to_dict() == b.to_dict()
    with pytest.warns(FutureWarning, match="as_triplets"):
        c, _ = run(pairs, as_triplets=False)
    assert "negative_1" in c.column_names
    with pytest.warns(UserWarning, match="include_positives"):
        d, _ = run(pairs, include_positives=True)
    assert "negative_1" in d.column_names


def test_no_effect_arguments_change_nothing(pairs):
    a, _ = run(pairs)
    b, _ = run(pairs, use_faiss=True, faiss_batch_size=7, use_multi_process=True)
    assert a.to_dict() == b.to_dict()


def test_mined_negatives_convert_to_st_layouts():
    rng = np.random.default_rng(0)
    C = rng.standard_normal((50, 8))
    Q = C[:6] + 0.1 * rng.standard_normal((6, 8))
    positives = [np.array([i]) if i % 2 else np.array([i, i + 10]) for i in range(6)]
    mined = hnm.mine_hard_negatives(Q, positives, C, k=3)
    queries = [f"q{i}" for i in range(6)]
    corpus = [f"d{j}" for j in range(50)]
    tri = to_dataset(mined, queries, corpus, output_scores=True)
    assert tri.column_names == ["anchor", "positive", "negative", "scores"]
    assert len(tri) == len(mined)
    rows = {(r["anchor"], r["positive"], r["negative"]) for r in tri}
    assert rows == {(queries[q], corpus[p], corpus[n])
                    for q, p, n in zip(mined.query, mined.positive, mined.negative)}
    tup = to_dataset(mined, queries, corpus, output_format="n-tuple")
    assert len(tup) == 9 and tup.column_names[2:] == ["negative_1", "negative_2", "negative_3"]
    lp = to_pandas(mined, queries, corpus, output_format="labeled-pair")
    assert list(lp.columns) == ["anchor", "positive", "label"]
    assert int(lp["label"].sum()) == 9 and int((lp["label"] == 0).sum()) == 18
    ll = to_dataset(mined, queries, corpus, output_format="labeled-list", output_scores=True)
    assert all(len(r["positive"]) == 4 and len(r["scores"]) == 4 for r in ll)
    ids = to_pandas(mined)  # no texts: ids
    assert ids["negative"].tolist() == mined.negative.tolist()
    nt = hnm.mine_hard_negatives(Q, positives, C, k=3, output="ntuple")
    assert to_dataset(nt, queries, corpus, output_format="n-tuple").to_dict() == tup.to_dict()
    with pytest.raises(TypeError, match="MinedNegatives"):
        to_dataset({"query": []})
    with pytest.raises(ValueError, match="corpus has 3 texts"):
        to_dataset(mined, queries, corpus[:3])


# ---------------------------------------------------------------- real sentence-transformers

def static_model(vocab, dim=32, seed=0):
    from sentence_transformers import SentenceTransformer
    try:
        from sentence_transformers.sentence_transformer.modules import StaticEmbedding
    except ImportError:  # before 6.x
        from sentence_transformers.models import StaticEmbedding
    from tokenizers import Tokenizer, models, pre_tokenizers

    ids = {w: i for i, w in enumerate(sorted(vocab))}
    ids["[UNK]"] = len(ids)
    tok = Tokenizer(models.WordLevel(ids, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    W = np.random.default_rng(seed).standard_normal((len(ids), dim)).astype(np.float32)
    return SentenceTransformer(modules=[StaticEmbedding(tok, embedding_weights=W)], device="cpu")


def explain_differences(st_rows, hnm_rows, S, queries, corpus_texts, pool_size, thresholds,
                        tol=1e-5):
    """Per (anchor, negative) in one output only: "pool" when hnm's negative lies beyond
    sentence-transformers' raw top ``pool_size`` (its candidate-pool truncation),
    "tie" when its exact score is within ``tol`` of another candidate's or of one of
    the anchor's thresholds (float32 and float64 then order it differently), else
    "other". ``S``: exact query x corpus scores; ``thresholds[q]``: the anchor's."""
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


def st_thresholds(S, queries, corpus_texts, positives_of, absolute_margin=None,
                  relative_margin=None, max_score=None, min_score=None, **_):
    cidx = {t: i for i, t in enumerate(corpus_texts)}
    out = {}
    for qi, q in enumerate(queries):
        p = min(S[qi, cidx[t]] for t in positives_of[q])
        out[q] = [x for x in (p if absolute_margin is not None else None,
                              p - absolute_margin if absolute_margin is not None else None,
                              p - abs(p) * relative_margin if relative_margin is not None
                              else None, max_score, min_score) if x is not None]
    return out


def test_matches_real_sentence_transformers():
    pytest.importorskip("torch")
    st_util = pytest.importorskip("sentence_transformers.util")
    anchors, positives, corpus = make_pairs(n_anchors=100, n_extra=300, seed=1)
    vocab = {w for t in anchors + positives + corpus for w in t.split()}
    model = static_model(vocab)
    ds = datasets.Dataset.from_dict({"query": anchors, "answer": positives})
    queries = list(dict.fromkeys(anchors))
    corpus_texts = list(dict.fromkeys(corpus + positives))
    positives_of = {}
    for a, p in zip(anchors, positives):
        positives_of.setdefault(a, set()).add(p)
    E = model.encode(corpus_texts, normalize_embeddings=True, convert_to_numpy=True)
    Qe = model.encode(queries, normalize_embeddings=True, convert_to_numpy=True)
    S = Qe.astype(np.float64) @ E.astype(np.float64).T
    for kw in (dict(), dict(relative_margin=0.05, num_negatives=5),
               dict(absolute_margin=0.05, max_score=0.95, range_min=1, num_negatives=4)):
        theirs = st_util.mine_hard_negatives(ds, model, corpus=corpus, verbose=False, **kw)
        ours, counts = mine_hard_negatives(ds, model, corpus=corpus, verbose=False,
                                           return_counts=True, **kw)
        assert theirs.column_names == ours.column_names
        a = {(r["query"], r["negative"]) for r in theirs}
        b = {(r["query"], r["negative"]) for r in ours}
        why = explain_differences(a, b, S, queries, corpus_texts, counts["pool_size"],
                                  st_thresholds(S, queries, corpus_texts, positives_of, **kw))
        assert why["other"] == 0, why
        if not kw:
            assert a == b
