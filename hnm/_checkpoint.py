"""Resumable runs: ``checkpoint=DIR`` for the functions that loop over queries.

A checkpointed call is the same public function run on consecutive blocks of
queries, each finished block saved atomically (:mod:`hnm._io`) in ``DIR``, and
the blocks concatenated. ``DIR/manifest.json`` records the inputs (shapes,
dtypes, a fingerprint: a hash of the whole array up to ``FULL_HASH_BYTES``,
else of its size and ``SAMPLE_ROWS`` evenly spaced rows), every parameter and
the block layout. Calling again with the same arguments computes only the
blocks that are missing; with other inputs or parameters it raises
``ValueError`` naming what changed, and never mixes results.

Why the result is identical, byte for byte, to an uninterrupted call:

- Queries are independent in both functions: a query's neighbours, negatives
  and random draws (keyed by the seed and the query's global index,
  ``query_offset``) do not depend on the other queries of the call.
- The search scores a query inside a GEMM tile of ``DEFAULT_QUERY_BLOCK``
  queries, and BLAS's rounding depends on the tile's shape. Blocks therefore
  start at multiples of the tile and hold at least ``tile * max(8, threads)``
  queries, so every block is tiled exactly as the whole call would be (a call
  too small for that is one block).
- ``random_state=None`` draws one seed when the checkpoint is created and
  records it, so the resumed blocks draw as the first ones did.

Summary statistics that are means (``negative_score_mean``, ...) are merged
from the blocks' figures weighted by their counts: equal to an uninterrupted
call's to within rounding; counts are exact.
"""
import dataclasses
import hashlib
import inspect
import json
import math
import numbers
import os

import numpy as np

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; a second run is not detected
    fcntl = None

from ._io import is_temporary, remove_stale_temporaries, save_npz, write_json
from ._threads import resolve_n_jobs
from ._progress import progress_bar
from ._validation import as_csr, check_real_array

__all__ = ["run_checkpointed", "fingerprint", "query_blocks"]

FORMAT = 1
MANIFEST = "manifest.json"
LOCK = ".lock"
# Whole arrays up to this size are hashed (about 30 ms at 32 MiB); larger ones
# by shape, dtype and evenly spaced rows: cheap on a memmap of any size.
FULL_HASH_BYTES = 32 << 20
SAMPLE_ROWS = 1024
# Block layout: about TARGET_BLOCKS blocks (a run killed at two thirds redoes at
# most 1/TARGET_BLOCKS of it), each at least MIN_TILES_PER_BLOCK query tiles
# (whole tiles for up to that many threads, so resuming on a machine with more
# cores still tiles as an uninterrupted run). Not more blocks: every search call
# streams the whole corpus and synchronises its threads once per candidate
# block, which costs little on idle cores but more on a loaded machine
# (bench_checkpoint.py).
TARGET_BLOCKS = 12
MIN_TILES_PER_BLOCK = 8

# Per function: arguments with one entry per query (split by block), and those
# that are the corpus (fingerprinted, passed whole). Everything else is a
# parameter recorded in the manifest.
_PER_QUERY = {
    "mine_hard_negatives": ("queries", "positives", "exclude"),
    "search_hard_pairs": ("queries", "exclude", "max_score", "query_labels"),
}
_CORPUS = {
    "mine_hard_negatives": ("candidates",),
    "search_hard_pairs": ("candidates", "candidate_labels"),
}
# not part of the result: never compared
_IGNORED = ("checkpoint", "progress", "n_jobs")


# ---------------------------------------------------------------- fingerprints

def _hash_array(a):
    a = np.asarray(a)
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{a.shape}|{a.dtype.str}".encode())
    if a.nbytes <= FULL_HASH_BYTES or a.ndim == 0:
        if a.flags.c_contiguous:
            h.update(memoryview(a).cast("B") if a.size else b"")
        else:
            h.update(np.ascontiguousarray(a).tobytes())
        kind = "full"
    else:
        rows = np.unique(np.linspace(0, a.shape[0] - 1, SAMPLE_ROWS).astype(np.intp))
        h.update(np.ascontiguousarray(a[rows]).tobytes())
        kind = f"{rows.size} rows"
    return {"shape": list(a.shape), "dtype": a.dtype.str, "hash": h.hexdigest(),
            "hashed": kind}


def fingerprint(value, name, n_rows=None, n_cols=None):
    """A JSON-able description of an input: arrays by shape, dtype and hash; id
    sets (``positives``, ``exclude``) in CSR form, whatever form they came in."""
    if value is None:
        return None
    if name in ("positives", "exclude") and not (
            name == "positives" and isinstance(value, np.ndarray) and value.ndim == 2
            and value.dtype.kind == "f"):
        indptr, ids = as_csr(value, n_rows, n_cols, name)
        return {"csr": [_hash_array(indptr), _hash_array(ids)]}
    if isinstance(value, (numbers.Number, np.generic, str)) and np.ndim(value) == 0:
        return _canonical(value, name)
    return _hash_array(value)


def _canonical(value, name):
    """A parameter as JSON: numbers, strings, None and (nested) pairs of them."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (tuple, list)) and len(value) <= 16:
        return [_canonical(v, name) for v in value]
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return _canonical(value.item(), name)
    raise ValueError(f"checkpoint= cannot record {name}={type(value).__name__}: pass it "
                     "as a number, string or tuple, or run without a checkpoint.")


# ---------------------------------------------------------------- block layout

def query_blocks(n_queries, n_threads, tile, *, target_blocks=None, min_tiles=None):
    """Block boundaries ``[(start, stop), ...]`` covering ``n_queries``.

    ``tile`` is the search's query tile (``DEFAULT_QUERY_BLOCK``). A run whose
    queries do not fill ``n_threads`` whole tiles is one block (the search tiles
    it finer); otherwise blocks start at multiples of ``tile`` and hold at least
    ``tile * max(min_tiles, n_threads)`` queries, the last one included.
    """
    target_blocks = TARGET_BLOCKS if target_blocks is None else target_blocks
    min_tiles = MIN_TILES_PER_BLOCK if min_tiles is None else min_tiles
    if n_queries < tile * n_threads:
        return [(0, n_queries)]
    smallest = tile * max(min_tiles, n_threads)
    rows = max(smallest, tile * math.ceil(n_queries / (target_blocks * tile)))
    starts = list(range(0, n_queries, rows))
    if len(starts) > 1 and n_queries - starts[-1] < smallest:
        starts.pop()  # the last block joins the one before
    return [(s, e) for s, e in zip(starts, starts[1:] + [n_queries])]


# ---------------------------------------------------------------- splitting

def _csr_block(indptr, ids, s, e):
    lo, hi = indptr[s], indptr[e]
    return (indptr[s:e + 1] - lo, ids[lo:hi])


def _with_self(indptr, ids, s, e):
    """Exclusions of rows s..e-1 plus each row's own id (exclude_self, in global ids)."""
    n = e - s
    rows = np.concatenate([np.repeat(np.arange(n), np.diff(indptr)), np.arange(n)])
    allids = np.concatenate([ids, np.arange(s, e, dtype=np.intp)])
    order = np.lexsort((allids, rows))
    counts = np.bincount(rows, minlength=n)
    return (np.concatenate([[0], np.cumsum(counts)]).astype(np.intp), allids[order])


class _Splitter:
    """Turns the arguments of one call into the arguments of each block."""

    def __init__(self, func_name, args):
        self.name = func_name
        self.args = args
        Q = check_real_array(args["queries"], "queries", min_ndim=2, max_ndim=2)
        C = check_real_array(args["candidates"], "candidates", min_ndim=2, max_ndim=2)
        self.n_q, self.n_c = Q.shape[0], C.shape[0]
        self.Q = Q
        self.csr = {}
        for name in ("positives", "exclude"):
            v = args.get(name)
            if v is None or name not in _PER_QUERY[func_name]:
                continue
            if name == "positives" and isinstance(v, np.ndarray) and v.ndim == 2 \
                    and v.dtype.kind == "f":
                continue  # embeddings: split by rows
            self.csr[name] = as_csr(v, self.n_q, self.n_c, name)
        self.exclude_self = bool(args.get("exclude_self", False))
        if func_name == "search_hard_pairs":
            es = args.get("exclude_self", False)
            if not isinstance(es, (bool, np.bool_)):
                raise TypeError(f"exclude_self must be a bool, got {es!r}.")
            if es and self.n_q > self.n_c:
                raise ValueError("exclude_self needs queries to be (a prefix of) the "
                                 "candidates.")

    def block(self, s, e, extra):
        out = dict(self.args)
        out.update(extra)
        out["queries"] = self.Q[s:e]
        for name in _PER_QUERY[self.name][1:]:
            v = self.args.get(name)
            if name in self.csr:
                out[name] = _csr_block(*self.csr[name], s, e)
            elif v is not None and not (isinstance(v, numbers.Number) and np.ndim(v) == 0):
                out[name] = np.asarray(v)[s:e]
        if self.name == "search_hard_pairs" and self.exclude_self:
            indptr, ids = out["exclude"] if out.get("exclude") is not None else (
                np.zeros(e - s + 1, dtype=np.intp), np.empty(0, dtype=np.intp))
            out["exclude"] = _with_self(indptr, ids, s, e)
            out["exclude_self"] = False
        return out


# ---------------------------------------------------------------- manifest

def _describe(func_name, args, splitter):
    inputs, params = {}, {}
    per_query, corpus = _PER_QUERY[func_name], _CORPUS[func_name]
    for name, value in args.items():
        if name in _IGNORED or name == "query_offset":
            continue
        if name in per_query or name in corpus:
            inputs[name] = fingerprint(value, name, splitter.n_q, splitter.n_c)
        elif name == "random_state":
            if value is not None and not (isinstance(value, numbers.Integral)
                                          and not isinstance(value, bool)):
                raise ValueError(
                    "checkpoint= needs random_state to be an int or None (the state of "
                    f"a {type(value).__name__} cannot be recorded for the resumed blocks).")
            params[name] = None if value is None else int(value)
        elif isinstance(value, np.ndarray) and value.ndim > 0:
            raise ValueError(f"checkpoint= cannot split {name} by blocks of queries; "
                             "run without a checkpoint.")
        else:
            params[name] = _canonical(value, name)
    return inputs, params


def _differences(old, new):
    """Human-readable list of what differs between two manifests."""
    out = []
    for section in ("function", "hnm_version"):
        if old.get(section) != new.get(section):
            out.append(f"{section} {old.get(section)!r} -> {new.get(section)!r}")
    for section in ("inputs", "parameters"):
        a, b = old.get(section, {}), new.get(section, {})
        for name in sorted(set(a) | set(b)):
            if a.get(name) == b.get(name):
                continue
            va, vb = a.get(name), b.get(name)
            if section == "inputs" and isinstance(va, dict) and isinstance(vb, dict) \
                    and "shape" in va and "shape" in vb:
                if va["shape"] != vb["shape"]:
                    out.append(f"{name} shape {tuple(va['shape'])} -> {tuple(vb['shape'])}")
                elif va["dtype"] != vb["dtype"]:
                    out.append(f"{name} dtype {va['dtype']} -> {vb['dtype']}")
                else:
                    out.append(f"{name} contents (fingerprint {va['hash'][:8]} -> "
                               f"{vb['hash'][:8]})")
            elif section == "inputs":
                out.append(f"{name} contents")
            else:
                out.append(f"{name}={va!r} -> {vb!r}")
    return out


def _read_manifest(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as exc:
        raise ValueError(f"checkpoint manifest {path} cannot be read ({exc}); use another "
                         "directory or delete this one.") from None


def _block_path(directory, i, s, e):
    return os.path.join(directory, f"block-{i:06d}-{s}-{e}.npz")


class _Lock:
    """An exclusive lock on the directory: two runs never share a checkpoint.
    Released by the kernel when the process dies, however it dies."""

    def __init__(self, directory):
        self.path = os.path.join(directory, LOCK)

    def __enter__(self):
        self.fd = None
        if fcntl is None:
            return self
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self.fd)
            raise ValueError(f"checkpoint directory {os.path.dirname(self.path)} is in use "
                             "by another run.") from None
        return self

    def __exit__(self, *exc):
        if self.fd is None:
            return False
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        return False


# ---------------------------------------------------------------- the run

def run_checkpointed(func, checkpoint, args):
    """Run ``func(**args)`` (``mine_hard_negatives`` or ``search_hard_pairs``) on
    blocks of queries saved in the directory ``checkpoint``; see the module
    docstring. ``args`` are the call's arguments by name (``locals()`` at the top
    of the function), ``checkpoint`` among them."""
    name = func.__name__
    if name not in _PER_QUERY:
        raise ValueError(f"checkpoint= is not supported by {name}.")
    if not isinstance(checkpoint, (str, os.PathLike)):
        raise TypeError(f"checkpoint must be a directory path, got {checkpoint!r}.")
    directory = os.fspath(checkpoint)
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise ValueError(f"checkpoint={directory!r} exists and is not a directory.")
    params_of = inspect.signature(func).parameters
    args = {k: v for k, v in args.items() if k in params_of}  # locals() holds more
    progress = bool(args.get("progress", False))
    splitter = _Splitter(name, args)
    inputs, params = _describe(name, args, splitter)
    n_threads = resolve_n_jobs(args.get("n_jobs"))  # as the search will count them
    from . import __version__
    from ._search_inputs import DEFAULT_QUERY_BLOCK

    manifest = {"format": FORMAT, "function": name, "hnm_version": __version__,
                "inputs": inputs, "parameters": params}
    os.makedirs(directory, exist_ok=True)
    manifest_path = os.path.join(directory, MANIFEST)
    with _Lock(directory):
        remove_stale_temporaries(directory)
        if os.path.exists(manifest_path):
            old = _read_manifest(manifest_path)
            if old.get("format") != FORMAT:
                raise ValueError(f"checkpoint {directory} has format {old.get('format')}, "
                                 f"this hnm writes {FORMAT}; use another directory.")
            changed = _differences(old, manifest)
            if changed:
                raise ValueError(
                    f"checkpoint {directory} was made by another call: "
                    + "; ".join(changed)
                    + ". Use another directory, or delete this one to start over.")
            manifest = old
            written = True
        else:
            stray = [f for f in os.listdir(directory) if f.startswith("block-")]
            if stray:
                raise ValueError(f"checkpoint {directory} holds block files but no "
                                 f"{MANIFEST}; use another directory or delete them.")
            manifest["blocks"] = query_blocks(splitter.n_q, n_threads, DEFAULT_QUERY_BLOCK)
            if "random_state" in args and args["random_state"] is None:
                manifest["seed"] = int(np.random.SeedSequence().generate_state(1)[0])
            written = False
        blocks = [tuple(b) for b in manifest["blocks"]]
        extra = {"checkpoint": None, "progress": False}
        if "random_state" in args:
            rs = args["random_state"]
            extra["random_state"] = manifest["seed"] if rs is None else int(rs)
        base_offset = int(args.get("query_offset", 0) or 0)

        results = [None] * len(blocks)
        files = set(f for f in os.listdir(directory) if not is_temporary(f))
        done_rows = 0
        for i, (s, e) in enumerate(blocks):
            if os.path.basename(_block_path(directory, i, s, e)) in files:
                results[i] = "saved"
                done_rows += e - s
        with progress_bar(progress, splitter.n_q, f"{name} (checkpoint)", "queries") as bar:
            bar.update(done_rows)
            for i, (s, e) in enumerate(blocks):
                if results[i] is not None:
                    continue
                block_args = splitter.block(s, e, extra)
                if "query_offset" in args:
                    block_args["query_offset"] = base_offset + s
                result = func(**block_args)
                arrays = _to_arrays(name, result, s, "query_offset" in args, args,
                                    splitter)
                if not written:
                    write_json(manifest_path, manifest)
                    written = True
                save_npz(_block_path(directory, i, s, e), arrays)
                results[i] = arrays
                bar.update(e - s)
        for i, (s, e) in enumerate(blocks):
            if results[i] == "saved":
                results[i] = _load_block(_block_path(directory, i, s, e), name)
    return _merge(name, results, args, splitter)


# ---------------------------------------------------------------- blocks <-> results

def _mined_fields():
    from .retrieval import MinedNegatives

    return tuple(f.name for f in dataclasses.fields(MinedNegatives) if f.name != "summary")


def _n_pairs(args, splitter, s, e):
    if "positives" in splitter.csr:
        indptr = splitter.csr["positives"][0]
        return int(indptr[e] - indptr[s])
    return e - s


def _to_arrays(name, result, s, offset_applied, args, splitter):
    if name == "search_hard_pairs":
        return {"scores": result.scores, "indices": result.indices}
    arrays = {f: np.asarray(getattr(result, f)) for f in _mined_fields()}
    if not offset_applied:  # a mine_hard_negatives without query_offset: offset here
        arrays["query"] = arrays["query"] + s
        if "positives" not in splitter.csr:
            arrays["positive"] = arrays["positive"] + s
    summary = dict(result.summary)
    e = s + int(summary.get("n_queries", 0))
    summary["_n_pairs"] = _n_pairs(args, splitter, s, e)
    arrays["summary"] = np.array(json.dumps(summary))
    return arrays


def _load_block(path, name):
    keys = ("scores", "indices") if name == "search_hard_pairs" else \
        _mined_fields() + ("summary",)
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in keys}
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"checkpoint block {path} cannot be read ({exc}); delete it to "
                         "have it computed again.") from None


def _merge(name, blocks, args, splitter):
    if name == "search_hard_pairs":
        from .pairs import PairResult

        return PairResult(np.concatenate([b["scores"] for b in blocks]),
                          np.concatenate([b["indices"] for b in blocks]))
    from .retrieval import MinedNegatives

    summaries = [json.loads(str(b["summary"])) for b in blocks]
    keep = [True] * len(blocks)
    extra_skipped = 0
    if args.get("output") == "ntuple":
        # a query is kept when it has as many negatives as the widest query of the
        # whole call: blocks narrower than the widest block keep none
        widths = [b["negative"].shape[1] for b in blocks]
        width = max(widths)
        for i, b in enumerate(blocks):
            if widths[i] < width:
                keep[i] = False
                extra_skipped += int(np.unique(b["query"]).size)
    fields = {f: np.concatenate([b[f] for b, k in zip(blocks, keep) if k])
              for f in _mined_fields()}  # the widest block is always kept
    fields["is_hard"] = fields["is_hard"].astype(bool, copy=False)
    summary = _merge_summaries(summaries)
    if args.get("output") == "ntuple":
        summary["n_skipped"] = summary.get("n_skipped", 0) + extra_skipped
    summary["n_rows"] = int(fields["query"].shape[0])
    return MinedNegatives(**fields, summary=summary)


def _merge_summaries(summaries):
    """Counts summed, maxima and minima exact, means weighted by their counts."""
    weights = {"negative_score_mean": lambda s: s.get("n_hard", 0) + s.get("n_easy", 0),
               "positive_score_mean": lambda s: s.get("_n_pairs", 0)}
    out = {}
    keys = [k for k in summaries[0] if not k.startswith("_")]
    for k in keys:
        values = [s.get(k) for s in summaries]
        present = [v for v in values if v is not None]
        if not present:
            out[k] = None
        elif all(isinstance(v, int) and not isinstance(v, bool) for v in present):
            out[k] = int(sum(present))
        elif k.endswith("_max"):
            out[k] = float(max(present))
        elif k.endswith("_min"):
            out[k] = float(min(present))
        else:
            w = np.array([weights.get(k, lambda s: s.get("n_queries", 0))(s)
                          for s, v in zip(summaries, values) if v is not None], dtype=float)
            v = np.array(present, dtype=float)
            out[k] = float(np.sum(w * v) / np.sum(w)) if np.sum(w) > 0 else float(v.mean())
    return out
