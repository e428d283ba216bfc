"""A drop-in for ``sentence_transformers.util.mine_hard_negatives``: texts in, datasets out.

:func:`mine_hard_negatives` takes the arguments of sentence-transformers 6.x
(same names, order and defaults) and returns the same ``datasets.Dataset``, but
ranks the candidates that survive the filters over the *whole* corpus, exactly,
with :func:`hnm.search_hard_pairs` (bounded memory, any corpus size).
sentence-transformers ranks only its top ``range_max + max_positives`` raw
candidates and filters afterwards, so with margins or ``max_score`` it silently
returns fewer (and other) negatives.

:func:`to_dataset` and :func:`to_pandas` turn an :class:`hnm.MinedNegatives`
plus texts into the same column layouts.

Neither torch nor sentence-transformers is imported here: a model or cross
encoder of theirs is only called. ``datasets`` (for the output) and ``pandas``
(for a DataFrame input or output) are optional: ``pip install datasets pandas``
(or ``pip install ".[st]"`` in the hnm checkout).
"""
from collections import Counter
import hashlib
import inspect
import json
import os
import warnings

import numpy as np

from ._progress import progress_bar
from ._ranking import best_first
from ._validation import check_int, check_option, check_real
from .pairs import search_hard_pairs

__all__ = ["mine_hard_negatives", "to_dataset", "to_pandas"]

OUTPUT_FORMATS = ("triplet", "n-tuple", "labeled-pair", "labeled-list")
# Filters in sentence-transformers' order (the first one that applies is counted),
# then hnm's near-duplicate guard; min_score is applied to the rank window.
_KEEP, _INVALID, _POSITIVE, _ABSOLUTE, _RELATIVE, _MAX, _DUPLICATE = range(7)
FILTERS = ("positives", "absolute_margin", "relative_margin", "max_score", "near_duplicate",
           "min_score")
# Float32 GEMM scores can differ from the exact float64 ones by ~1e-6 for unit
# vectors: the kernel's cap is loosened by this much and every decision is made
# again on the exact scores.
_CAP_SLACK = 1e-4
# Texts encoded per call of the model (and per progress/cache step).
_ENCODE_CHUNK = 4096
# float64 values gathered per block of queries when rescoring (32 MiB).
_RESCORE_BUDGET = 1 << 22

RECOMMENDATION = (
    "hnm recommends the near-duplicate guard duplicate_threshold=0.95 (hnm.mine_hard_negatives' "
    "default): the closest candidates (sentence-transformers' defaults) include unlabelled "
    "near-copies of the positive. In hnm's retriever-training benchmark "
    "(bench_retrieval_quality.py, six datasets) the guard removed every mined near-duplicate "
    "(about 2% of the closest negatives) for at most 0.002 recall@1, and the closest "
    "negatives with the guard beat random negatives by +0.07 to +0.19 recall@1. "
    "relative_margin=0.05 (NV-Retriever's TopK-PercPos) gained up to +0.12 on topic data but "
    "lost 0.04 to 0.21 to random negatives on digits: measure margins before relying on "
    "them.")


# --------------------------------------------------------------------------- inputs

def _read_dataset(dataset):
    """(column names, function column name -> list of values, number of rows)."""
    module = type(dataset).__module__ or ""
    if isinstance(dataset, dict):
        columns = list(dataset)
        lengths = {len(v) for v in dataset.values()} if columns else {0}
        if len(lengths) > 1:
            raise ValueError("dataset given as a dict must have lists of one length, got "
                             f"lengths {sorted(lengths)}.")
        return columns, lambda c: list(dataset[c]), lengths.pop()
    if module.startswith("pandas") and hasattr(dataset, "columns"):
        columns = list(dataset.columns)
        return columns, lambda c: dataset[c].tolist(), len(dataset)
    if module.startswith("datasets"):
        if not hasattr(dataset, "column_names") or isinstance(dataset.column_names, dict):
            raise TypeError("dataset must be a datasets.Dataset, not a "
                            f"{type(dataset).__name__}: pass one split, e.g. dataset['train'].")
        if not hasattr(dataset, "__len__"):
            raise TypeError("dataset must be a datasets.Dataset with a length, not an "
                            f"{type(dataset).__name__}.")
        return list(dataset.column_names), lambda c: list(dataset[c]), len(dataset)
    raise TypeError("dataset must be a datasets.Dataset, a pandas DataFrame or a dict of "
                    f"lists, got {type(dataset).__name__}.")


def _check_texts(values, name):
    for i, v in enumerate(values):
        if not isinstance(v, str):
            raise TypeError(f"{name} must hold strings; row {i} is {v!r} "
                            f"({type(v).__name__}).")
    return values


def _check_optional_real(value, name):
    """None, or a finite real number (``check_real``: TypeError, NaN/inf ValueError)."""
    return None if value is None else check_real(value, name)


def _check_bool(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}.")
    return bool(value)


def _rng(random_state):
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(0, 2**32, dtype=np.uint64))
    if isinstance(random_state, (bool, np.bool_)):
        raise TypeError(f"random_state must be None, an int or a numpy Generator, got "
                        f"{random_state!r}.")
    try:
        return np.random.default_rng(random_state)
    except (TypeError, ValueError):
        raise TypeError("random_state must be None, an int, a numpy RandomState or "
                        f"Generator, got {random_state!r}.") from None


# --------------------------------------------------------------------------- encoding

def _is_sentence_transformers(obj):
    return (type(obj).__module__ or "").startswith("sentence_transformers")


def _model_name(model):
    """The name in the cache key: sentence-transformers' own (so both share a cache
    folder), else a name attribute or the type."""
    card = getattr(model, "model_card_data", None)
    if card is not None and _is_sentence_transformers(model):
        return getattr(card, "base_model", None) or ""
    for attr in ("name_or_path", "model_name", "name", "__name__"):
        value = getattr(model, attr, None)
        if isinstance(value, str) and value:
            return value
    return f"{type(model).__module__}.{type(model).__qualname__}"


def _accepts(func, name):
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _encoder(model, kind, prompt, prompt_name, batch_size):
    """A function texts -> float array for ``kind`` "query" or "document"."""
    if _is_sentence_transformers(model) and hasattr(model, "encode_query"):
        method = model.encode_query if kind == "query" else model.encode_document

        def encode(texts):
            return method(texts, batch_size=batch_size, normalize_embeddings=True,
                          convert_to_numpy=True, show_progress_bar=False,
                          prompt_name=prompt_name, prompt=prompt)
        return encode
    if prompt is None and prompt_name is not None:
        prompts = getattr(model, "prompts", None)
        if not isinstance(prompts, dict) or prompt_name not in prompts:
            raise ValueError(f"{kind} prompt_name={prompt_name!r} is not a key of the model's "
                             f"prompts ({sorted(prompts) if isinstance(prompts, dict) else None}).")
        prompt = prompts[prompt_name]
    if hasattr(model, "encode") and callable(model.encode):
        func = model.encode
        kwargs = {"batch_size": batch_size} if _accepts(func, "batch_size") else {}
    elif callable(model):
        func, kwargs = model, {}
    else:
        raise TypeError("model must be a SentenceTransformer, an object with an "
                        "encode(texts) method or a callable texts -> array, got "
                        f"{type(model).__name__}.")

    def encode(texts):
        if prompt:
            texts = [prompt + t for t in texts]
        return func(texts, **kwargs)
    return encode


def _as_embeddings(out, n, name):
    if hasattr(out, "detach") and hasattr(out, "cpu"):  # a torch tensor
        out = out.detach().cpu().numpy()
    arr = np.asarray(out)
    if arr.ndim != 2 or arr.shape[0] != n or arr.dtype.kind not in "biuf":
        raise ValueError(f"the model must return a real array of shape ({n}, dim) for {n} "
                         f"{name} texts, got {arr.dtype} of shape {arr.shape}.")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"the model returned NaN or infinity for {name} texts.")
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    # unit rows, as sentence-transformers' normalize_embeddings; a zero row stays zero
    return (arr / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def _fsync_dir(directory):
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_json(path, obj):
    """Atomically: hnm's writer if present, else temp + fsync + os.replace."""
    try:
        from ._io import write_json
    except ImportError:
        tmp = f"{path}.tmp-{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(os.path.dirname(path) or ".")
    else:
        write_json(path, obj)


def _embed(model, texts, kind, prompt, prompt_name, batch_size, cache_folder, verbose):
    """Unit float32 embeddings of ``texts``: an ndarray, or with ``cache_folder`` a
    read-only memmap of ``{kind}_embeddings_{hash}.npy`` (sentence-transformers'
    file name and hash, so either library reuses the other's cache)."""
    encode = _encoder(model, kind, prompt, prompt_name, batch_size)
    n = len(texts)
    label = "query" if kind == "query" else "corpus"
    desc = f"Encoding {label} texts"
    if cache_folder is None:
        out = None
        with progress_bar(verbose, n, desc, "texts") as bar:
            for s in range(0, n, _ENCODE_CHUNK):
                chunk = texts[s:s + _ENCODE_CHUNK]
                emb = _as_embeddings(encode(chunk), len(chunk), label)
                if out is None:
                    out = np.empty((n, emb.shape[1]), dtype=np.float32)
                out[s:s + len(chunk)] = emb
                bar.update(len(chunk))
        return out

    os.makedirs(cache_folder, exist_ok=True)
    key = hashlib.sha256(repr((_model_name(model), prompt, prompt_name, texts)).encode())
    digest = key.hexdigest()
    final = os.path.join(cache_folder, f"{label}_embeddings_{digest}.npy")
    partial = os.path.join(cache_folder, f"{label}_embeddings_{digest}.partial.npy")
    marker = os.path.join(cache_folder, f"{label}_embeddings_{digest}.partial.json")
    probe = texts[:2]
    if os.path.exists(final):
        mm = np.load(final, mmap_mode="r")
        if (mm.ndim == 2 and mm.shape[0] == n and mm.dtype.kind == "f"
                and _agrees(encode, probe, mm, label)):
            if verbose:
                print(f"[Cache] Loaded {label} embeddings from {final} (shape={mm.shape})")
            return mm
        warnings.warn(f"the cached {label} embeddings in {final} do not match what the model "
                      "returns for the same texts (another model under the same name?); "
                      "encoding again.", RuntimeWarning, stacklevel=3)
        del mm
    done, mm = 0, None
    if os.path.exists(partial) and os.path.exists(marker):
        try:
            with open(marker) as f:
                state = json.load(f)
            mm = np.lib.format.open_memmap(partial, mode="r+")
            done = int(state["done"])
            if (mm.shape[0] != n or state.get("n") != n or not 0 <= done <= n
                    or (done and not _agrees(encode, probe, mm, label))):
                mm, done = None, 0
        except (OSError, ValueError, KeyError, TypeError):
            mm, done = None, 0
        if verbose and done:
            print(f"[Cache] Resuming {label} embeddings at {done:,} of {n:,} texts")
    with progress_bar(verbose, n, desc, "texts") as bar:
        bar.update(done)
        for s in range(done, n, _ENCODE_CHUNK):
            chunk = texts[s:s + _ENCODE_CHUNK]
            emb = _as_embeddings(encode(chunk), len(chunk), label)
            if mm is None:
                mm = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float32,
                                               shape=(n, emb.shape[1]))
            elif emb.shape[1] != mm.shape[1]:
                raise ValueError(f"the model returned {emb.shape[1]}-dimensional {label} "
                                 f"embeddings, earlier ones were {mm.shape[1]}-dimensional.")
            mm[s:s + len(chunk)] = emb
            mm.flush()  # the rows reach the file before the marker says they did
            _write_json(marker, {"done": s + len(chunk), "n": n})
            bar.update(len(chunk))
    if mm is None:  # n == 0 cannot happen (the dataset is not empty); keep the shape
        raise ValueError(f"no {label} texts to encode.")
    mm.flush()
    del mm
    with open(partial, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(partial, final)  # complete or absent under the final name
    _fsync_dir(cache_folder)
    try:
        os.remove(marker)
    except OSError:
        pass
    if verbose:
        print(f"[Cache] Saved {label} embeddings to {final}")
    return np.load(final, mmap_mode="r")


def _agrees(encode, probe, mm, label):
    """Do the cached rows for the first texts match the model's embeddings?"""
    fresh = _as_embeddings(encode(probe), len(probe), label)
    if fresh.shape[1] != mm.shape[1]:
        return False
    return bool(np.allclose(fresh, np.asarray(mm[:len(probe)]), atol=1e-4))


# --------------------------------------------------------------------------- scoring

def _gather(C, ids):
    """C[ids] as float64 for ids >= 0 of any shape, each distinct row read once."""
    flat = ids.ravel()
    uniq, inv = np.unique(flat, return_inverse=True)
    rows = np.asarray(C[uniq], dtype=np.float64) if uniq.size else np.empty((0, C.shape[1]))
    return rows[inv].reshape(ids.shape + (C.shape[1],))


def _rescore(Q, C, rows, ids):
    """Exact float64 inner products of Q[rows[i]] and C[ids[i, j]], -inf where ids < 0."""
    out = np.full(ids.shape, -np.inf)
    if ids.size == 0:
        return out
    step = max(1, _RESCORE_BUDGET // max(ids.shape[1] * C.shape[1], 1))
    for s in range(0, ids.shape[0], step):
        block = ids[s:s + step]
        ok = block >= 0
        V = _gather(C, np.where(ok, block, 0))
        q = np.asarray(Q[rows[s:s + step]], dtype=np.float64)
        out[s:s + step] = np.where(ok, np.einsum("rkd,rd->rk", V, q), -np.inf)
    return out


def _max_positive_cosine(C, ptr, pos, rows, ids):
    """Per candidate ids[i, j]: its largest inner product with a positive of rows[i]
    (the embeddings are unit rows: cosine similarity); -inf where ids < 0."""
    best = np.full(ids.shape, -np.inf)
    step = max(1, _RESCORE_BUDGET // max(ids.shape[1] * C.shape[1], 1))
    for s in range(0, ids.shape[0], step):
        block = ids[s:s + step]
        ok = block >= 0
        V = _gather(C, np.where(ok, block, 0))
        r = rows[s:s + step]
        counts = ptr[r + 1] - ptr[r]
        for j in range(int(counts.max()) if counts.size else 0):
            sel = np.flatnonzero(counts > j)
            P = _gather(C, pos[ptr[r[sel]] + j])
            c = np.einsum("rkd,rd->rk", V[sel], P)
            best[s + sel] = np.maximum(best[s + sel], c)
        best[s:s + step] = np.where(ok, best[s:s + step], -np.inf)
    return best


class _Rules:
    """The filters of one call, per query (all arrays over unique queries)."""

    def __init__(self, ptr, pos, min_pos, absolute_margin, relative_margin, max_score,
                 min_score, duplicate_threshold, include_positives, C):
        self.ptr, self.pos, self.min_pos = ptr, pos, min_pos
        self.absolute_margin, self.relative_margin = absolute_margin, relative_margin
        self.max_score, self.min_score = max_score, min_score
        self.duplicate_threshold = duplicate_threshold
        self.include_positives, self.C = include_positives, C
        cap = np.full(min_pos.shape, np.inf)
        if absolute_margin is not None:
            cap = np.minimum(cap, min_pos - absolute_margin)
        if relative_margin is not None:
            cap = np.minimum(cap, min_pos - np.abs(min_pos) * relative_margin)
        if max_score is not None:
            cap = np.minimum(cap, max_score)
        self.cap = cap  # for the search kernel only (loosened); decisions below
        counts = np.diff(ptr)
        width = int(counts.max()) if counts.size else 0
        self.positive_matrix = np.full((counts.size, width), -1, dtype=np.intp)
        self.positive_matrix[np.repeat(np.arange(counts.size), counts),
                             np.arange(pos.size) - np.repeat(ptr[:-1], counts)] = pos

    def codes(self, rows, ids, s):
        """Why each candidate is dropped (first filter in sentence-transformers' order),
        _KEEP if it is not; min_score is left to the rank window."""
        code = np.full(ids.shape, _KEEP, dtype=np.int8)
        code[ids < 0] = _INVALID
        if not self.include_positives:
            code[_member(ids, self.positive_matrix[rows]) & (code == _KEEP)] = _POSITIVE
        p = self.min_pos[rows][:, None]
        if self.absolute_margin is not None:  # written as sentence-transformers writes it
            code[(code == _KEEP) & (s + self.absolute_margin > p)] = _ABSOLUTE
        if self.relative_margin is not None:
            code[(code == _KEEP) & (s > p - np.abs(p) * self.relative_margin)] = _RELATIVE
        if self.max_score is not None:
            code[(code == _KEEP) & (s > self.max_score)] = _MAX
        if self.duplicate_threshold is not None and np.any(code == _KEEP):
            dup = _max_positive_cosine(self.C, self.ptr, self.pos, rows,
                                       np.where(code == _KEEP, ids, -1))
            code[(code == _KEEP) & (dup > self.duplicate_threshold)] = _DUPLICATE
        return code


def _member(ids, sets):
    """ids[i, j] in sets[i] (rows padded with -1; ids < 0 are never members)."""
    out = np.zeros(ids.shape, dtype=bool)
    step = max(1, (1 << 22) // max(ids.shape[1] * max(sets.shape[1], 1), 1))
    for s in range(0, ids.shape[0], step):
        a, b = ids[s:s + step], sets[s:s + step]
        out[s:s + step] = (a[:, :, None] == b[:, None, :]).any(axis=2) & (a >= 0)
    return out


def _ranked(ids, s, keep, width):
    """Kept candidates closest first (ties by the smaller id), the first ``width``."""
    big = np.iinfo(np.intp).max  # the dropped rank after every kept candidate
    order = best_first(np.where(keep, s, -np.inf), np.where(keep, ids, big), axis=1)
    order = order[:, :width]
    kept = np.take_along_axis(keep, order, axis=1)
    out_ids = np.where(kept, np.take_along_axis(ids, order, axis=1), -1)
    out_s = np.where(kept, np.take_along_axis(s, order, axis=1), -np.inf)
    if out_ids.shape[1] < width:
        pad = width - out_ids.shape[1]
        out_ids = np.pad(out_ids, ((0, 0), (0, pad)), constant_values=-1)
        out_s = np.pad(out_s, ((0, 0), (0, pad)), constant_values=-np.inf)
    return out_ids, out_s


def _count(counts, code, s, min_score):
    for name, c in (("positives", _POSITIVE), ("absolute_margin", _ABSOLUTE),
                    ("relative_margin", _RELATIVE), ("max_score", _MAX),
                    ("near_duplicate", _DUPLICATE)):
        counts[name] += int(np.sum(code == c))
    if min_score is not None:
        counts["min_score"] += int(np.sum((code == _KEEP) & (s < min_score)))


def _survivors_exact(Q, C, rules, pool_ids, range_max, n_jobs, counts, verbose):
    """The first ``range_max`` survivors of every query over the whole corpus, exactly.

    ``pool_ids`` is each query's raw top ``range_max + max_positives`` (the pool
    sentence-transformers ranks): the counts are taken there, and a query whose pool
    holds enough survivors is done. The others are searched again with the caps
    and exclusions inside the kernel, deeper each time, until they have
    ``range_max`` survivors or the corpus runs out."""
    n_q, n_c = Q.shape[0], C.shape[0]
    surv_ids = np.full((n_q, range_max), -1, dtype=np.intp)
    surv_s = np.full((n_q, range_max), -np.inf)
    short = []
    all_rows = np.arange(n_q)
    k = pool_ids.shape[1]
    step = max(1, _RESCORE_BUDGET // max(k * C.shape[1], 1))
    for s0 in range(0, n_q, step):
        rows = all_rows[s0:s0 + step]
        ids = pool_ids[rows]
        s = _rescore(Q, C, rows, ids)
        code = rules.codes(rows, ids, s)
        _count(counts, code, s, rules.min_score)
        keep = code == _KEEP
        got_ids, got_s = _ranked(ids, s, keep, range_max)
        surv_ids[rows], surv_s[rows] = got_ids, got_s
        if k < n_c:
            short.append(rows[keep.sum(axis=1) < range_max])
    rows = np.concatenate(short) if short else np.empty(0, dtype=np.intp)
    counts["n_anchors_beyond_pool"] = int(rows.size)
    kcap = rules.cap + _CAP_SLACK * np.maximum(1.0, np.abs(rules.cap))
    k = min(n_c, max(2 * k, range_max + 8))
    while rows.size:
        exclude = None
        if not rules.include_positives:
            lo, hi = rules.ptr[rows], rules.ptr[rows + 1]
            sub_ptr = np.concatenate([[0], np.cumsum(hi - lo)])
            sub_ids = (np.concatenate([rules.pos[a:b] for a, b in zip(lo, hi)])
                       if rows.size else np.empty(0, dtype=np.intp))
            exclude = (sub_ptr, sub_ids)
        cap = kcap[rows]
        finite = np.isfinite(cap)
        result = search_hard_pairs(Q[rows], C, k, metric="ip", exclude=exclude,
                                   max_score=np.where(finite, cap, np.finfo(np.float32).max),
                                   n_jobs=n_jobs, progress=verbose)
        ids = result.indices
        s = _rescore(Q, C, rows, ids)
        keep = rules.codes(rows, ids, s) == _KEEP
        done = (keep.sum(axis=1) >= range_max) | (ids[:, -1] < 0) | (k >= n_c)
        got_ids, got_s = _ranked(ids[done], s[done], keep[done], range_max)
        surv_ids[rows[done]], surv_s[rows[done]] = got_ids, got_s
        rows = rows[~done]
        k = min(n_c, 2 * k)
    return surv_ids, surv_s


def _cross_scores(cross_encoder, pairs, batch_size):
    if not pairs:
        return np.empty(0)
    if hasattr(cross_encoder, "predict") and callable(cross_encoder.predict):
        if _is_sentence_transformers(cross_encoder):
            out = cross_encoder.predict(pairs, batch_size=batch_size, convert_to_numpy=True,
                                        show_progress_bar=False)
        else:
            out = cross_encoder.predict(pairs)
    elif callable(cross_encoder):
        out = cross_encoder(pairs)
    else:
        raise TypeError("cross_encoder must be a CrossEncoder, an object with a "
                        "predict(pairs) method or a callable scoring (query, document) "
                        f"pairs, got {type(cross_encoder).__name__}.")
    if hasattr(out, "detach") and hasattr(out, "cpu"):
        out = out.detach().cpu().numpy()
    arr = np.asarray(out, dtype=np.float64)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.shape != (len(pairs),):
        raise ValueError(f"cross_encoder must return one score per pair ({len(pairs)}), got "
                         f"an array of shape {arr.shape}.")
    if not np.isfinite(arr).all():
        raise ValueError("cross_encoder returned NaN or infinity.")
    return arr


def _survivors_cross_encoder(Q, C, rules, pool_ids, range_max, ce, queries, corpus,
                             batch_size, counts, verbose):
    """sentence-transformers' cross-encoder path: the raw pool rescored by the cross
    encoder, the filters on those scores, the survivors ranked by them."""
    n_q = Q.shape[0]
    surv_ids = np.full((n_q, range_max), -1, dtype=np.intp)
    surv_s = np.full((n_q, range_max), -np.inf)
    step = max(1, 8192 // max(pool_ids.shape[1], 1))
    with progress_bar(verbose, n_q, "Rescoring with the cross encoder", "queries") as bar:
        for s0 in range(0, n_q, step):
            rows = np.arange(s0, min(n_q, s0 + step))
            ids = pool_ids[rows]
            r, c = np.nonzero(ids >= 0)
            pairs = [(queries[rows[i]], corpus[ids[i, j]]) for i, j in zip(r, c)]
            s = np.full(ids.shape, -np.inf)
            s[r, c] = _cross_scores(ce, pairs, batch_size)
            code = rules.codes(rows, ids, s)
            _count(counts, code, s, rules.min_score)
            surv_ids[rows], surv_s[rows] = _ranked(ids, s, code == _KEEP, range_max)
            bar.update(rows.size)
    counts["n_anchors_beyond_pool"] = 0
    return surv_ids, surv_s


def _choose(surv_ids, surv_s, range_min, num_negatives, min_score, sampling, rng):
    """Window [range_min, range_max) of the survivors, min_score, then num_negatives
    closest ("top") or uniformly drawn ("random"), presented closest first."""
    ids, s = surv_ids[:, range_min:], surv_s[:, range_min:]
    if min_score is not None:
        ids = np.where(s < min_score, -1, ids)
    valid = ids >= 0
    if sampling == "top":
        key = np.where(valid, np.arange(ids.shape[1])[None, :], ids.shape[1])
    else:
        key = np.where(valid, rng.random(ids.shape), 2.0)
    order = np.argsort(key, axis=1, kind="stable")[:, :num_negatives]
    order = np.sort(order, axis=1)  # survivors are ranked: index order is closest first
    chosen = np.take_along_axis(valid, order, axis=1)
    neg_ids = np.where(chosen, np.take_along_axis(ids, order, axis=1), -1)
    neg_s = np.where(chosen, np.take_along_axis(s, order, axis=1), -np.inf)
    # valid entries first (a short window leaves -1 at the end)
    pack = np.argsort(~chosen, axis=1, kind="stable")
    return np.take_along_axis(neg_ids, pack, axis=1), np.take_along_axis(neg_s, pack, axis=1)


def _top_up(neg_ids, neg_s, num_negatives, rules, score, n_c, rng):
    """Fill short rows with distinct random candidates that pass every false-negative
    guard (exclusions, margins, max_score, near-duplicates); the rank window and
    min_score are relaxed. ``score(rows, ids)`` scores candidates as the filters do."""
    n_have = (neg_ids >= 0).sum(axis=1)
    rows = np.flatnonzero(n_have < num_negatives)
    added = np.zeros(neg_ids.shape[0], dtype=np.intp)
    tried = np.zeros(neg_ids.shape[0], dtype=np.intp)
    for _ in range(64):
        if rows.size == 0:
            break
        need = num_negatives - n_have[rows]
        n_draw = int(min(n_c, 4 * need.max() + 16 + tried[rows].max()))
        draws = rng.integers(0, n_c, size=(rows.size, n_draw))
        tried[rows] += n_draw
        # distinct within the row, and not chosen yet
        fresh = np.zeros(draws.shape, dtype=bool)
        for i, r in enumerate(rows):
            _, first = np.unique(draws[i], return_index=True)
            fresh[i, first] = True
            fresh[i] &= ~np.isin(draws[i], neg_ids[r][neg_ids[r] >= 0])
        ids = np.where(fresh, draws, -1)
        s = score(rows, ids)
        ok = rules.codes(rows, ids, s) == _KEEP
        for i, r in enumerate(rows):
            take = np.flatnonzero(ok[i])[:need[i]]
            slots = np.arange(n_have[r], n_have[r] + take.size)
            neg_ids[r, slots], neg_s[r, slots] = ids[i, take], s[i, take]
            n_have[r] += take.size
            added[r] += take.size
        exhausted = tried[rows] >= 8 * n_c  # every id drawn many times over
        rows = rows[(n_have[rows] < num_negatives) & ~exhausted]
    return int(added.sum())


# --------------------------------------------------------------------------- output

def _columns(output_format, output_scores, anchor_col, positive_col, anchors, positives,
             pos_scores, negatives, neg_scores, groups, num_negatives):
    """sentence-transformers' column layouts from (anchor, positive) pairs.

    ``negatives[i]`` / ``neg_scores[i]``: the negatives of pair i, closest first;
    ``groups[i]``: the pair's unique anchor (for "labeled-pair", which lists each
    anchor's positives, then its negatives once)."""
    if output_format == "triplet":
        data = {anchor_col: [], positive_col: [], "negative": []}
        if output_scores:
            data["scores"] = []
        for a, p, ps, ns, nss in zip(anchors, positives, pos_scores, negatives, neg_scores):
            for n, sc in zip(ns, nss):
                data[anchor_col].append(a)
                data[positive_col].append(p)
                data["negative"].append(n)
                if output_scores:
                    data["scores"].append([float(ps), float(sc)])
        return data
    if output_format == "n-tuple":
        full = [len(ns) >= num_negatives for ns in negatives]
        data = {anchor_col: [a for a, f in zip(anchors, full) if f],
                positive_col: [p for p, f in zip(positives, full) if f]}
        for j in range(num_negatives):
            data[f"negative_{j + 1}"] = [ns[j] for ns, f in zip(negatives, full) if f]
        if output_scores:
            data["scores"] = [[float(ps)] + [float(x) for x in nss[:num_negatives]]
                              for ps, nss, f in zip(pos_scores, neg_scores, full) if f]
        return data
    if output_format == "labeled-pair":
        value = "score" if output_scores else "label"
        data = {anchor_col: [], positive_col: [], value: []}
        i, n = 0, len(anchors)
        while i < n:
            j = i
            while j < n and groups[j] == groups[i]:
                data[anchor_col].append(anchors[j])
                data[positive_col].append(positives[j])
                data[value].append(float(pos_scores[j]) if output_scores else 1)
                j += 1
            for neg, sc in zip(negatives[i], neg_scores[i]):
                data[anchor_col].append(anchors[i])
                data[positive_col].append(neg)
                data[value].append(float(sc) if output_scores else 0)
            i = j
        return data
    # labeled-list
    keep = [len(ns) > 0 for ns in negatives]
    data = {anchor_col: [a for a, k in zip(anchors, keep) if k],
            positive_col: [[p] + list(ns) for p, ns, k in zip(positives, negatives, keep) if k]}
    if output_scores:
        data["scores"] = [[float(ps)] + [float(x) for x in nss]
                          for ps, nss, k in zip(pos_scores, neg_scores, keep) if k]
    else:
        data["labels"] = [[1] + [0] * len(ns) for ns, k in zip(negatives, keep) if k]
    return data


def _dataset_class():
    try:
        from datasets import Dataset
    except ImportError:
        raise ImportError("hnm.sentence_transformers returns a datasets.Dataset: install "
                          "datasets (pip install datasets, or pip install '.[st]' in the "
                          "hnm checkout).") from None
    return Dataset


def _stats_table(pos, neg, diff):
    def fmt(x):
        return f"{x:.4f}"
    row = "{:<6} {:>14} {:>14} {:>14}"
    lines = [row.format("Metric", "Positive", "Negative", "Difference"),
             row.format("Count", f"{pos.size:,}", f"{neg.size:,}", "")]
    for name, func in (("Mean", np.mean), ("Median", np.median),
                       ("Std", lambda x: np.std(x, ddof=1) if x.size > 1 else np.nan),
                       ("Min", np.min), ("25%", lambda x: np.quantile(x, 0.25)),
                       ("50%", lambda x: np.quantile(x, 0.5)),
                       ("75%", lambda x: np.quantile(x, 0.75)), ("Max", np.max)):
        lines.append(row.format(name, *(fmt(func(v)) if v.size else "-"
                                        for v in (pos, neg, diff))))
    return "\n".join(lines)


# --------------------------------------------------------------------------- main API

def mine_hard_negatives(dataset, model, anchor_column_name=None, positive_column_name=None,
                        corpus=None, cross_encoder=None, range_min=0, range_max=None,
                        max_score=None, min_score=None, absolute_margin=None,
                        relative_margin=None, num_negatives=3, sampling_strategy="top",
                        query_prompt_name=None, query_prompt=None, corpus_prompt_name=None,
                        corpus_prompt=None, include_positives=False, output_format="triplet",
                        output_scores=False, batch_size=32, faiss_batch_size=16384,
                        use_faiss=False, use_multi_process=False, verbose=True,
                        cache_folder=None, as_triplets=None, margin=None, *,
                        random_state=None, duplicate_threshold=None, top_up=False,
                        return_counts=False, n_jobs=None):
    """Add hard negatives to (anchor, positive) pairs: sentence-transformers' function, exact.

    The arguments, defaults and output of ``sentence_transformers.util.
    mine_hard_negatives`` (sentence-transformers 6.x), in the same order. The
    same rules, in the same order: the corpus is the ``corpus`` texts plus the
    positives, de-duplicated by text (first occurrence wins, as the ids of the
    output refer to it); duplicate anchors are one query with several positives;
    embeddings are normalised and compared by cosine similarity; a query's
    positives are never its negatives (unless ``include_positives``); candidates
    are dropped by ``absolute_margin`` (``score + absolute_margin >
    positive_score``), ``relative_margin`` (``score > positive_score -
    |positive_score| * relative_margin``) — both against the *smallest* score of
    the query's positives — then ``max_score`` and ``min_score``; the survivors
    ranked ``range_min .. range_max - 1`` form the window, from which
    ``num_negatives`` are taken, the closest (``sampling_strategy="top"``) or at
    random (``"random"``), and listed closest first.

    Where it differs, and why:

    - **Exact.** sentence-transformers ranks only each query's top ``range_max +
      max_positives`` raw candidates and filters afterwards, so with margins or
      ``max_score`` it runs short (and returns fewer rows) whenever the filters
      empty that pool. hnm searches the queries left short again, with the
      filters inside its exact streaming search (:func:`hnm.search_hard_pairs`),
      until the window is full or the corpus has no more survivors. Where the
      pool was enough, both return the same negatives (up to the order of exactly
      tied scores; hnm breaks ties by the earlier corpus text). Scores are exact
      float64 inner products of the float32 embeddings.
    - With ``cross_encoder`` (and a margin or score bound), the candidates are
      sentence-transformers' pool rescored by the cross encoder, exactly as it
      does: a cross encoder cannot rank the whole corpus.
    - ``random_state`` seeds ``sampling_strategy="random"`` and ``top_up``
      (sentence-transformers draws with Python's unseeded ``random``).
    - An ``anchor_column_name`` or ``positive_column_name`` that is not a column
      raises ``ValueError`` (sentence-transformers silently takes the first or
      second column instead); non-string values raise ``TypeError``.
    - ``use_faiss``, ``faiss_batch_size`` and ``use_multi_process`` tune
      sentence-transformers' own search and encoding: accepted, checked, no
      effect (hnm's search is exact, streams the corpus in bounded memory and
      uses ``n_jobs`` threads).
    - With ``cache_folder``, embeddings are written to a memory-mapped ``.npy``
      file, batch by batch: an interrupted run resumes encoding where it stopped,
      and the file appears under its final name (sentence-transformers' name and
      hash, so either library reuses the other's cache) only when complete. A
      cached file is checked against the model on its first texts and encoded
      again if they disagree.

    hnm recommends the near-duplicate guard ``duplicate_threshold=0.95`` (the
    default of :func:`hnm.mine_hard_negatives`), as sentence-transformers'
    defaults (the closest candidates) mine unlabelled near-copies of the
    positive. In hnm's retriever-training benchmark (``bench_retrieval_quality.py``,
    six datasets) the guard removed every mined near-duplicate for at most 0.002
    recall@1, and the guarded closest negatives beat random negatives by +0.07 to
    +0.19 recall@1; ``relative_margin=0.05`` (NV-Retriever's TopK-PercPos) gained
    up to +0.12 on topic data but lost 0.04 to 0.21 to random negatives on digits.

    Parameters
    ----------
    dataset : datasets.Dataset, pandas.DataFrame or dict of lists
        (anchor, positive) pairs as text columns; other columns are ignored.
    model : SentenceTransformer, object with ``encode(texts)``, or callable
        A SentenceTransformer is called as sentence-transformers calls it
        (``encode_query`` / ``encode_document``, normalised, with the prompts);
        another object's ``encode(list_of_texts)`` (given ``batch_size`` if it
        takes one) or a callable ``texts -> array of shape (len(texts), dim)``
        gets the prompt prepended to each text. Called on chunks of texts, with
        a progress bar when ``verbose``.
    anchor_column_name, positive_column_name : str, optional
        Default: the first and second column.
    corpus : list of str, optional
        More candidate texts, besides the positives.
    cross_encoder : CrossEncoder, object with ``predict(pairs)``, or callable, optional
        Scores a list of (query, document) pairs; used as sentence-transformers
        uses it: when a margin, ``max_score`` or ``min_score`` is given, the
        candidate pool and the positives are rescored with it, and the filters,
        ranking and output scores use its scores. Ignored otherwise (with a
        warning).
    range_min : int, default=0
        Survivors ranked before it are skipped.
    range_max : int, optional
        End of the rank window. Default: ``range_min + num_negatives +
        max_positives``, with ``10 * num_negatives`` if a margin or ``max_score``
        is given (or a cross encoder with ``min_score``); ``max_positives`` is the
        largest number of rows of one anchor.
    max_score, min_score : float, optional
        Drop candidates scoring above / below.
    absolute_margin, relative_margin : float, optional
        The false-negative guards above.
    num_negatives : int, default=3
        Negatives per anchor; at most ``range_max - range_min``.
    sampling_strategy : {"top", "random"}, default="top"
    query_prompt_name, query_prompt, corpus_prompt_name, corpus_prompt : str, optional
        Prompts for the anchors and the corpus (``query_prompt`` wins over
        ``query_prompt_name``, a key of ``model.prompts``).
    include_positives : bool, default=False
        Let positives be negatives (a full ranking, for reranking evaluation
        sets); forces ``output_format="n-tuple"`` with a warning.
    output_format : {"triplet", "n-tuple", "labeled-pair", "labeled-list"}, default="triplet"
        "triplet": columns (anchor, positive, negative), one row per negative;
        "n-tuple": (anchor, positive, negative_1, ..., negative_n), anchors short
        of ``num_negatives`` left out; "labeled-pair": (anchor, positive, label)
        with each anchor's positives (label 1) then its negatives (label 0);
        "labeled-list": (anchor, positive, labels) with the positive column a list
        [positive, negatives...] and labels [1, 0, ...].
    output_scores : bool, default=False
        "triplet"/"n-tuple": add a ``scores`` column [positive score, negative
        scores...]; "labeled-pair": a ``score`` column instead of ``label``;
        "labeled-list": ``scores`` instead of ``labels``.
    batch_size : int, default=32
        Passed to the model's ``encode`` and the cross encoder.
    faiss_batch_size : int, default=16384
        No effect (checked to be >= 1).
    use_faiss : bool, default=False
        No effect: the search is exact, without faiss.
    use_multi_process : bool or list of str, default=False
        No effect.
    verbose : bool, default=True
        Progress bars, the statistics sentence-transformers prints, what each
        filter dropped and hnm's recommended guard.
    cache_folder : str, optional
        Directory for the embedding cache (see above).
    as_triplets : bool, optional
        Deprecated in sentence-transformers: True is ``output_format="triplet"``,
        False ``"n-tuple"``.
    margin : float, optional
        Deprecated in sentence-transformers: ``absolute_margin``.
    random_state : int, numpy Generator or RandomState, optional
        Seeds every draw (hnm only).
    duplicate_threshold : float, optional
        hnm's near-duplicate guard (hnm only): drop candidates whose cosine
        similarity to one of the anchor's positives exceeds it (checked after
        ``max_score``). They are the commonest unlabelled positives.
    top_up : bool, default=False
        hnm only: fill anchors left short of ``num_negatives`` with distinct
        random candidates that pass every false-negative guard (positives,
        margins, ``max_score``, near-duplicates); the rank window and
        ``min_score`` are relaxed for them. They follow the mined negatives.
    return_counts : bool, default=False
        hnm only: also return the counts below.
    n_jobs : int, optional
        Threads of the search (hnm only).

    Returns
    -------
    dataset : datasets.Dataset
        In ``output_format``'s layout, anchors in their first order, each
        anchor's positives in their first order, negatives closest first.
    counts : dict
        Only with ``return_counts``. ``n_anchors`` (unique), ``n_pairs``,
        ``n_corpus`` (unique texts), ``range_max``, ``pool_size`` (the raw
        candidates per anchor sentence-transformers ranks), ``dropped`` (per
        filter, how many of those pool candidates it dropped, the first filter
        in the order above counting), ``n_anchors_beyond_pool`` (anchors whose
        window needed candidates beyond the pool: sentence-transformers runs
        short there), ``n_negatives_beyond_pool``, ``n_negatives`` (mined, per
        unique anchor), ``n_topped_up``, ``n_short_anchors`` (still short of
        ``num_negatives``) and ``n_rows``.

    See Also
    --------
    hnm.mine_hard_negatives : the same mining on embeddings, with more guards.
    to_dataset : an :class:`hnm.MinedNegatives` as such a dataset.

    Examples
    --------
    >>> import numpy as np
    >>> from hnm.sentence_transformers import mine_hard_negatives
    >>> vocab = {"cat": [1, 0, 0], "dog": [0.9, 0.4, 0], "car": [0, 1, 0],
    ...          "bus": [0.1, 0.9, 0.3], "sun": [0, 0, 1], "sky": [0.2, 0.1, 0.9]}
    >>> def encode(texts):
    ...     return np.array([np.sum([vocab[w] for w in t.split()], axis=0) for t in texts])
    >>> pairs = {"query": ["cat", "car", "sun"], "answer": ["cat dog", "car bus", "sun sky"]}
    >>> mined, counts = mine_hard_negatives(pairs, encode, corpus=["dog", "bus", "sky"],
    ...                                     num_negatives=2, relative_margin=0.05,
    ...                                     verbose=False, return_counts=True)
    >>> mined.column_names
    ['query', 'answer', 'negative']
    >>> mined[0]
    {'query': 'cat', 'answer': 'cat dog', 'negative': 'dog'}
    >>> counts["dropped"]["positives"], counts["n_short_anchors"]
    (3, 0)
    """
    # ---- arguments, as sentence-transformers checks them
    Dataset = _dataset_class()  # before any work: the output needs datasets
    columns, column, n_rows = _read_dataset(dataset)
    if n_rows == 0:
        raise ValueError("The dataset is empty. Please provide a non-empty dataset.")
    faiss_batch_size = check_int(faiss_batch_size, "faiss_batch_size", min_value=1)
    batch_size = check_int(batch_size, "batch_size", min_value=1)
    _check_bool(use_faiss, "use_faiss")
    if not isinstance(use_multi_process, (bool, list, tuple)):
        raise TypeError(f"use_multi_process must be a bool or a list of devices, got "
                        f"{use_multi_process!r}.")
    include_positives = _check_bool(include_positives, "include_positives")
    output_scores = _check_bool(output_scores, "output_scores")
    verbose = _check_bool(verbose, "verbose")
    top_up = _check_bool(top_up, "top_up")
    return_counts = _check_bool(return_counts, "return_counts")
    for name, value in (("anchor_column_name", anchor_column_name),
                        ("positive_column_name", positive_column_name)):
        if value is not None and value not in columns:
            raise ValueError(f"{name}={value!r} is not a column of dataset (columns: "
                             f"{columns}).")
    anchor_col = anchor_column_name if anchor_column_name is not None else columns[0]
    if positive_column_name is None:
        if len(columns) < 2:
            raise ValueError("Dataset must contain at least two columns to select the "
                             "positive column automatically.")
        positive_column_name = columns[1]
    positive_col = positive_column_name
    if as_triplets is not None:
        output_format = "triplet" if as_triplets else "n-tuple"
        warnings.warn("as_triplets is deprecated in sentence-transformers: use "
                      f"output_format={output_format!r}.", FutureWarning, stacklevel=2)
    if output_format == "n-tuple-scores":
        warnings.warn('output_format="n-tuple-scores" is deprecated in sentence-transformers: '
                      'use output_format="n-tuple" with output_scores=True.', FutureWarning,
                      stacklevel=2)
        output_format, output_scores = "n-tuple", True
    if include_positives and output_format != "n-tuple":
        warnings.warn('include_positives=True sets output_format="n-tuple", so that the '
                      "ranking order is preserved.", UserWarning, stacklevel=2)
        output_format = "n-tuple"
    output_format = check_option(output_format, "output_format", OUTPUT_FORMATS)
    if margin is not None:
        warnings.warn("margin is deprecated in sentence-transformers: use absolute_margin.",
                      FutureWarning, stacklevel=2)
        absolute_margin = _check_optional_real(margin, "margin")
    absolute_margin = _check_optional_real(absolute_margin, "absolute_margin")
    relative_margin = _check_optional_real(relative_margin, "relative_margin")
    max_score = _check_optional_real(max_score, "max_score")
    min_score = _check_optional_real(min_score, "min_score")
    if duplicate_threshold is not None:
        duplicate_threshold = _check_optional_real(duplicate_threshold, "duplicate_threshold")
        if not -1.0 <= duplicate_threshold <= 1.0:
            raise ValueError(f"duplicate_threshold must be in [-1, 1], got "
                             f"{duplicate_threshold!r}.")
    sampling_strategy = check_option(sampling_strategy, "sampling_strategy", ("top", "random"))
    num_negatives = check_int(num_negatives, "num_negatives", min_value=1)
    range_min = check_int(range_min, "range_min", min_value=0)
    range_max = check_int(range_max, "range_max", allow_none=True)
    for name, value in (("query_prompt_name", query_prompt_name), ("query_prompt", query_prompt),
                        ("corpus_prompt_name", corpus_prompt_name),
                        ("corpus_prompt", corpus_prompt), ("cache_folder", cache_folder)):
        if value is not None and not isinstance(value, (str, os.PathLike)):
            raise TypeError(f"{name} must be a string or None, got {value!r}.")
    rng = _rng(random_state)

    anchors = _check_texts(column(anchor_col), f"column {anchor_col!r}")
    positive_texts = _check_texts(column(positive_col), f"column {positive_col!r}")
    max_positives = max(Counter(anchors).values())
    any_cap = absolute_margin is not None or relative_margin is not None or max_score is not None
    use_ce = cross_encoder is not None and (any_cap or min_score is not None)
    if cross_encoder is not None and not use_ce:
        warnings.warn("cross_encoder is only used with a margin, max_score or min_score (as in "
                      "sentence-transformers); it is ignored here.", UserWarning, stacklevel=2)
    if range_max is None:
        if any_cap or (cross_encoder is not None and min_score is not None):
            range_max = range_min + num_negatives * 10 + max_positives
        else:
            range_max = range_min + num_negatives + max_positives
        if verbose:
            print(f"Setting range_max to {range_max} based on the provided parameters.")
    if range_min >= range_max:
        raise ValueError(f"range_min must be smaller than range_max, got range_min={range_min} "
                         f"and range_max={range_max}.")
    if num_negatives > range_max - range_min:
        raise ValueError(f"Cannot mine {num_negatives} negatives per query: only "
                         f"{range_max - range_min} candidates remain after skipping the first "
                         f"range_min={range_min} of range_max={range_max}.")

    # ---- texts: de-duplicated corpus and queries, positives as ids
    if corpus is None:
        corpus_texts = positive_texts
    else:
        if isinstance(corpus, str) or not hasattr(corpus, "__iter__"):
            raise TypeError(f"corpus must be a list of strings, got {type(corpus).__name__}.")
        corpus_texts = _check_texts(list(corpus), "corpus")
    corpus_texts = list(dict.fromkeys(corpus_texts + positive_texts))
    corpus_idx = {t: i for i, t in enumerate(corpus_texts)}
    queries = list(dict.fromkeys(anchors))
    queries_idx = {t: i for i, t in enumerate(queries)}
    n_q, n_c = len(queries), len(corpus_texts)
    positive_lists = [[] for _ in range(n_q)]
    seen = set()
    for a, p in zip(anchors, positive_texts):
        key = (queries_idx[a], corpus_idx[p])
        if key not in seen:
            seen.add(key)
            positive_lists[key[0]].append(key[1])
    n_pos = np.array([len(p) for p in positive_lists], dtype=np.intp)
    ptr = np.concatenate([[0], np.cumsum(n_pos)]).astype(np.intp)
    pos = np.array([i for p in positive_lists for i in p], dtype=np.intp)
    pair_q = np.repeat(np.arange(n_q), n_pos)
    if verbose and n_q != len(anchors):
        print(f"Found {n_q} unique queries out of {len(anchors)} total queries.")
    if verbose and max_positives > 1:
        print(f"Found an average of {np.mean(list(Counter(anchors).values())):.3f} positives "
              "per query.")

    fn = getattr(model, "similarity_fn_name", None)
    if fn not in (None, "cosine", "dot"):
        raise ValueError(f"model.similarity_fn_name={fn!r} is not supported: hnm mines with "
                         "cosine similarity of normalised embeddings ('cosine' or 'dot').")
    C = _embed(model, corpus_texts, "document", corpus_prompt, corpus_prompt_name, batch_size,
               cache_folder, verbose)
    Q = _embed(model, queries, "query", query_prompt, query_prompt_name, batch_size,
               cache_folder, verbose)
    if Q.shape[1] != C.shape[1]:
        raise ValueError(f"the model returned {Q.shape[1]}-dimensional query embeddings and "
                         f"{C.shape[1]}-dimensional corpus embeddings.")

    # ---- scores of the positives, the filters
    pos_scores = _rescore(Q, C, pair_q, pos[:, None])[:, 0]
    if use_ce:
        pos_scores = _cross_scores(cross_encoder, [(queries[q], corpus_texts[p])
                                                   for q, p in zip(pair_q, pos)], batch_size)
    min_pos = np.full(n_q, np.inf)
    np.minimum.at(min_pos, pair_q, pos_scores)
    rules = _Rules(ptr, pos, min_pos, absolute_margin, relative_margin, max_score, min_score,
                   duplicate_threshold, include_positives, C)
    counts = {"n_anchors": n_q, "n_pairs": int(pair_q.size), "n_corpus": n_c,
              "range_max": range_max, "pool_size": range_max + max_positives,
              "dropped": dict.fromkeys(FILTERS, 0)}

    # ---- the raw pool sentence-transformers ranks (counts), then the exact survivors
    k_pool = min(range_max + max_positives, n_c)
    pool = search_hard_pairs(Q, C, k_pool, metric="ip", n_jobs=n_jobs, progress=verbose)
    pool_ids = pool.indices
    del pool
    dropped = counts["dropped"]
    if use_ce:
        surv_ids, surv_s = _survivors_cross_encoder(
            Q, C, rules, pool_ids, range_max, cross_encoder, queries, corpus_texts,
            batch_size, dropped, verbose)
    else:
        surv_ids, surv_s = _survivors_exact(Q, C, rules, pool_ids, range_max, n_jobs, dropped,
                                            verbose)
    counts["n_anchors_beyond_pool"] = dropped.pop("n_anchors_beyond_pool")
    neg_ids, neg_s = _choose(surv_ids, surv_s, range_min, num_negatives, min_score,
                             sampling_strategy, rng)
    in_pool = _member(neg_ids, pool_ids)
    counts["n_negatives_beyond_pool"] = int(np.sum((neg_ids >= 0) & ~in_pool))
    counts["n_negatives"] = int(np.sum(neg_ids >= 0))
    del pool_ids, surv_ids, surv_s
    counts["n_topped_up"] = 0
    if top_up:
        if use_ce:
            def score(rows, ids):
                r, c = np.nonzero(ids >= 0)
                s = np.full(ids.shape, -np.inf)
                s[r, c] = _cross_scores(cross_encoder, [(queries[rows[i]], corpus_texts[ids[i, j]])
                                                        for i, j in zip(r, c)], batch_size)
                return s
        else:
            def score(rows, ids):
                return _rescore(Q, C, rows, ids)
        counts["n_topped_up"] = _top_up(neg_ids, neg_s, num_negatives, rules, score, n_c, rng)
    n_have = (neg_ids >= 0).sum(axis=1)
    counts["n_short_anchors"] = int(np.sum(n_have < num_negatives))

    # ---- the dataset
    neg_lists = [[corpus_texts[i] for i in row[row >= 0]] for row in neg_ids]
    neg_score_lists = [row[ids >= 0] for row, ids in zip(neg_s, neg_ids)]
    data = _columns(output_format, output_scores, anchor_col, positive_col,
                    [queries[q] for q in pair_q], [corpus_texts[p] for p in pos], pos_scores,
                    [neg_lists[q] for q in pair_q], [neg_score_lists[q] for q in pair_q],
                    pair_q, num_negatives)
    out = Dataset.from_dict(data)
    counts["n_rows"] = len(out)
    if verbose:
        _report(counts, pos_scores, neg_s, neg_ids, pair_q, min_pos, num_negatives, any_cap,
                duplicate_threshold, absolute_margin, relative_margin, max_score, min_score)
    return (out, counts) if return_counts else out


def _report(counts, pos_scores, neg_s, neg_ids, pair_q, min_pos, num_negatives, any_cap,
            duplicate_threshold, absolute_margin, relative_margin, max_score, min_score):
    valid = neg_ids[pair_q] >= 0
    neg = neg_s[pair_q][valid]
    diff = np.repeat(pos_scores, valid.sum(axis=1)) - neg
    print(_stats_table(pos_scores, neg, diff))
    pool = counts["pool_size"]
    values = {"absolute_margin": absolute_margin, "relative_margin": relative_margin,
              "max_score": max_score, "min_score": min_score,
              "near_duplicate": duplicate_threshold}
    total = counts["n_anchors"] * min(pool, counts["n_corpus"])
    print(f"Of the top {pool} candidates of each anchor ({total:,}), dropped:")
    for name, n in counts["dropped"].items():
        if n:
            extra = "" if name == "positives" else f" (of {values[name]})"
            print(f"  {name:<16} {n:>12,} ({n / max(total, 1):.2%}){extra}")
    if counts["n_anchors_beyond_pool"]:
        print(f"{counts['n_anchors_beyond_pool']:,} anchors had too few survivors among them "
              f"and were ranked over the whole corpus, which gave "
              f"{counts['n_negatives_beyond_pool']:,} negatives that sentence-transformers' "
              "pool would have missed.")
    line = f"Mined {counts['n_negatives']:,} negatives for {counts['n_anchors']:,} anchors"
    if counts["n_topped_up"]:
        line += f", topped up with {counts['n_topped_up']:,} random guarded negatives"
    print(line + f"; {counts['n_rows']:,} rows.")
    if counts["n_short_anchors"]:
        print(f"{counts['n_short_anchors']:,} anchors have fewer than num_negatives="
              f"{num_negatives} negatives: the whole corpus has no more candidates passing "
              "the filters in the rank window (top_up=True fills them with random guarded "
              "negatives).")
    if not any_cap and duplicate_threshold is None:
        print(RECOMMENDATION)


# --------------------------------------------------------------------------- MinedNegatives

def _mined_pairs(mined, queries, corpus, positives):
    """(anchors, positives, positive scores, negatives, negative scores, groups) per
    (query, positive) pair of an hnm.MinedNegatives, in order of first appearance."""
    def text(values, i, name):
        if values is None:
            return int(i)
        try:
            return values[int(i)]
        except IndexError:
            raise ValueError(f"{name} has {len(values)} texts but the result refers to id "
                             f"{int(i)}.") from None

    q = np.asarray(mined.query)
    p = np.asarray(mined.positive)
    neg = np.asarray(mined.negative)
    sc = np.asarray(mined.score, dtype=np.float64)
    ps = np.asarray(mined.positive_score, dtype=np.float64)
    pos_source, pos_name = (positives, "positives") if positives is not None else \
        (corpus, "corpus")
    anchors, pos_out, pos_sc, negs, neg_sc, groups = [], [], [], [], [], []
    if neg.ndim == 2:  # output="ntuple": one row per pair
        for i in range(q.size):
            ok = neg[i] >= 0
            anchors.append(text(queries, q[i], "queries"))
            pos_out.append(text(pos_source, p[i], pos_name))
            pos_sc.append(ps[i])
            negs.append([text(corpus, j, "corpus") for j in neg[i][ok]])
            neg_sc.append(sc[i][ok])
            groups.append(int(q[i]))
        return anchors, pos_out, pos_sc, negs, neg_sc, groups
    index = {}
    for i in range(q.size):
        key = (int(q[i]), int(p[i]))
        if key not in index:
            index[key] = len(anchors)
            anchors.append(text(queries, q[i], "queries"))
            pos_out.append(text(pos_source, p[i], pos_name))
            pos_sc.append(ps[i])
            negs.append([])
            neg_sc.append([])
            groups.append(key[0])
        j = index[key]
        negs[j].append(text(corpus, neg[i], "corpus"))
        neg_sc[j].append(sc[i])
    # pairs of one query together (labeled-pair lists a query's positives together)
    order = sorted(range(len(anchors)), key=lambda i: (groups[i], i))
    return tuple([x[i] for i in order] for x in (anchors, pos_out, pos_sc, negs, neg_sc,
                                                 groups))


def _mined_columns(mined, queries, corpus, positives, output_format, output_scores,
                   anchor_column_name, positive_column_name, num_negatives):
    from .retrieval import MinedNegatives

    if not isinstance(mined, MinedNegatives):
        raise TypeError(f"mined must be an hnm.MinedNegatives, got {type(mined).__name__}.")
    output_format = check_option(output_format, "output_format", OUTPUT_FORMATS)
    output_scores = _check_bool(output_scores, "output_scores")
    anchors, pos_out, pos_sc, negs, neg_sc, groups = _mined_pairs(mined, queries, corpus,
                                                                  positives)
    if num_negatives is None:
        num_negatives = max((len(n) for n in negs), default=0)
    num_negatives = check_int(num_negatives, "num_negatives", min_value=0)
    return _columns(output_format, output_scores, anchor_column_name, positive_column_name,
                    anchors, pos_out, pos_sc, negs, neg_sc, groups, num_negatives)


def to_dataset(mined, queries=None, corpus=None, *, positives=None, output_format="triplet",
               output_scores=False, anchor_column_name="anchor", positive_column_name="positive",
               num_negatives=None):
    """An :class:`hnm.MinedNegatives` as a ``datasets.Dataset`` in sentence-transformers' layout.

    Parameters
    ----------
    mined : hnm.MinedNegatives
        From :func:`hnm.mine_hard_negatives` (``output="triplets"`` or ``"ntuple"``).
    queries : sequence, optional
        The query texts, indexed by ``mined.query``; without them, the ids.
    corpus : sequence, optional
        The candidate texts, indexed by ``mined.negative`` (and ``mined.positive``
        unless ``positives`` is given); without them, the ids.
    positives : sequence, optional
        Texts indexed by ``mined.positive`` when positives were given as
        embeddings of their own (``mined.positive`` is then the query's row).
    output_format : {"triplet", "n-tuple", "labeled-pair", "labeled-list"}, default="triplet"
        As :func:`mine_hard_negatives`.
    output_scores : bool, default=False
    anchor_column_name, positive_column_name : str, default="anchor", "positive"
    num_negatives : int, optional
        Negatives per "n-tuple" row (pairs with fewer are left out); default the
        largest number any pair has.

    Returns
    -------
    datasets.Dataset

    See Also
    --------
    to_pandas, mine_hard_negatives, hnm.mine_hard_negatives

    Examples
    --------
    >>> import numpy as np
    >>> import hnm
    >>> from hnm.sentence_transformers import to_dataset
    >>> corpus = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.6, 0.5]])
    >>> mined = hnm.mine_hard_negatives(corpus[:1], np.array([0]), corpus, k=2,
    ...                                 duplicate_threshold=None)  # b is a near-copy of a
    >>> ds = to_dataset(mined, ["q"], ["a", "b", "c", "d"], output_format="n-tuple")
    >>> ds[0]
    {'anchor': 'q', 'positive': 'a', 'negative_1': 'b', 'negative_2': 'd'}
    """
    data = _mined_columns(mined, queries, corpus, positives, output_format, output_scores,
                          anchor_column_name, positive_column_name, num_negatives)
    return _dataset_class().from_dict(data)


def to_pandas(mined, queries=None, corpus=None, *, positives=None, output_format="triplet",
              output_scores=False, anchor_column_name="anchor", positive_column_name="positive",
              num_negatives=None):
    """An :class:`hnm.MinedNegatives` as a pandas DataFrame in sentence-transformers' layout.

    The same arguments and columns as :func:`to_dataset`, without needing the
    ``datasets`` package.

    See Also
    --------
    to_dataset : the same columns as a ``datasets.Dataset``.
    hnm.MinedNegatives.to_pandas : this function as a method of the result.

    Examples
    --------
    Two negatives of one query, with their scores (the near-copy "b" of the
    positive "a" is left out by hnm's default near-duplicate guard):

    >>> import numpy as np
    >>> import hnm.sentence_transformers
    >>> corpus = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.6, 0.5]])
    >>> mined = hnm.mine_hard_negatives(corpus[:1], np.array([0]), corpus, k=2)
    >>> frame = hnm.sentence_transformers.to_pandas(mined, ["q"], ["a", "b", "c", "d"],
    ...                                             output_scores=True)
    >>> frame.columns.tolist(), frame["negative"].tolist()
    (['anchor', 'positive', 'negative', 'scores'], ['d', 'c'])
    """
    import pandas as pd

    data = _mined_columns(mined, queries, corpus, positives, output_format, output_scores,
                          anchor_column_name, positive_column_name, num_negatives)
    return pd.DataFrame(data)
