"""Hostile inputs for every public function of hnm (issue #9, "Hardening").

Every case either raises the documented ``ValueError``/``TypeError`` whose message
names the offending argument, or returns what a plain-numpy reference computes on
a clean float64 copy of the input. No call may modify an input array.

Inputs: NaN/inf, empty, 0-d, 3-d, int/bool/object/complex/float16/big-endian
dtypes, non-contiguous, negative strides, Fortran order, read-only arrays,
read-only (and big-endian, strided) memmaps, lists, bad ``k``/``band``, mismatched
lengths, single-class and string/object labels.

The cases whose inputs reach the compiled kernels (``CASES`` with ``kernel=True``)
are also swept once in a subprocess (``test_kernel_cases_in_subprocess``), so a
segfault fails that test and the crashing case instead of killing the run.
"""
import itertools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from imblearn.under_sampling import NearMiss
from sklearn.linear_model import LogisticRegression

import hnm
import refs_metrics
import refs_scoring
import refs_selection as rsel
from refs_pairs import id_lists, score_matrix
from refs_retrieval import reference_mine
from hnm import metrics as hmetrics
from hnm import selection as sel

TESTS_DIR = Path(__file__).resolve().parent
_file_ids = itertools.count()
MEASURES = hnm.scoring.MEASURES


# =============================================================== helpers
def _arrays_and_lists(obj, arrays, lists):
    if isinstance(obj, np.ndarray):
        arrays.append(obj)
    elif isinstance(obj, (list, tuple)):
        if isinstance(obj, list):
            lists.append(obj)
        for o in obj:
            _arrays_and_lists(o, arrays, lists)
    elif isinstance(obj, dict):
        for o in obj.values():
            _arrays_and_lists(o, arrays, lists)


class Unmodified:
    """Snapshot every array (and list) reachable from the arguments; ``check()``
    asserts that none was modified (values, dtype, shape, writeable flag)."""

    def __init__(self, *objs):
        self.arrays, lists = [], []
        _arrays_and_lists(objs, self.arrays, lists)
        self.copies = [np.array(a, copy=True) for a in self.arrays]
        self.writeable = [a.flags.writeable for a in self.arrays]
        self.lists = [(lst, repr(lst)) for lst in lists]

    def check(self):
        for a, c, w in zip(self.arrays, self.copies, self.writeable):
            assert a.dtype == c.dtype and a.shape == c.shape, "input array reshaped/retyped"
            assert a.flags.writeable == w, "input array's writeable flag changed"
            if a.dtype.kind in "fcmM":  # NaN / NaT equal themselves here
                assert np.array_equal(a, c, equal_nan=True), "input array was modified"
            else:
                assert np.array_equal(a, c), "input array was modified"
        for lst, r in self.lists:
            assert repr(lst) == r, "input list was modified"


def _call(fn, args, kwargs, allow_error=None):
    """Call fn; return (result, None), or (None, exc) for an allowed clear error.

    ``allow_error``: regex that a ValueError/TypeError message must match to be an
    acceptable outcome instead of a result (None: any exception fails).
    """
    guard = Unmodified(args, kwargs)
    try:
        result = fn(*args, **kwargs)
    except (ValueError, TypeError) as exc:
        guard.check()
        if allow_error is not None and re.search(allow_error, str(exc)):
            return None, exc
        raise
    guard.check()
    return result, None


def _reverse_view(a):
    """A view with negative strides on every axis whose values equal ``a``."""
    sl = (slice(None, None, -1),) * a.ndim
    return np.ascontiguousarray(a[sl])[sl]


def _wide_view(a, dtype=None, fill=None):
    """A stride-2 view (last axis) of a copy of ``a``; the gaps hold garbage (NaN)
    that a kernel reading the wrong elements would trip over."""
    a = np.asarray(a)
    dtype = np.dtype(dtype or a.dtype)
    wide = np.empty(a.shape[:-1] + (2 * a.shape[-1],), dtype=dtype)
    wide[...] = (np.nan if dtype.kind == "f" else 99) if fill is None else fill
    wide[..., ::2] = a
    return wide[..., ::2]


def _memmap(a, tmp):
    path = Path(tmp) / f"hostile_{os.getpid()}_{next(_file_ids)}.npy"
    np.save(path, np.asarray(a))
    return np.load(path, mmap_mode="r")


def _readonly(a):
    a = np.array(a, copy=True)
    a.setflags(write=False)
    return a


FLOAT_VARIANTS = ("f64", "f32", "f16", "be_f4", "be_f8", "noncontig", "negstride", "fortran",
                  "readonly", "memmap", "memmap_f32", "memmap_be_noncontig",
                  "memmap_negstride", "f32_fortran_noncontig", "list")
INT_VARIANTS = ("i64", "i32", "u8", "bool", "be_i8", "i64_noncontig", "i64_memmap")
ALL_VARIANTS = FLOAT_VARIANTS + INT_VARIANTS


def variant(name, fbase, ibase, tmp):
    """The hostile form ``name`` of an input: float forms from ``fbase``, integer
    and bool forms from ``ibase``."""
    f = np.asarray(fbase, dtype=np.float64)
    i = np.asarray(ibase, dtype=np.int64) if name in INT_VARIANTS else None
    if name == "f64":
        return f.copy()
    if name == "f32":
        return f.astype(np.float32)
    if name == "f16":
        return f.astype(np.float16)
    if name == "be_f4":
        return f.astype(">f4")
    if name == "be_f8":
        return f.astype(">f8")
    if name == "noncontig":
        return _wide_view(f)
    if name == "negstride":
        return _reverse_view(f)
    if name == "fortran":
        return np.asfortranarray(f)
    if name == "readonly":
        return _readonly(f)
    if name == "memmap":
        return _memmap(f, tmp)
    if name == "memmap_f32":
        return _memmap(f.astype(np.float32), tmp)
    if name == "memmap_be_noncontig":
        wide = np.full(f.shape[:-1] + (2 * f.shape[-1],), np.nan, dtype=">f8")
        wide[..., ::2] = f
        return _memmap(wide, tmp)[..., ::2]
    if name == "memmap_negstride":
        sl = (slice(None, None, -1),) * f.ndim
        return _memmap(np.ascontiguousarray(f[sl]), tmp)[sl]
    if name == "f32_fortran_noncontig":
        if f.ndim < 2:
            return _wide_view(f, np.float32)
        wide = np.full((2 * f.shape[0],) + f.shape[1:], np.nan, dtype=np.float32, order="F")
        wide[::2] = f
        return wide[::2]
    if name == "list":
        return f.tolist()
    if name == "i64":
        return i.copy()
    if name == "i32":
        return i.astype(np.int32)
    if name == "u8":
        return (i - min(int(i.min(initial=0)), 0)).astype(np.uint8)
    if name == "bool":
        return i > 0
    if name == "be_i8":
        return i.astype(">i8")
    if name == "i64_noncontig":
        return _wide_view(i)
    if name == "i64_memmap":
        return _memmap(i, tmp)
    raise KeyError(name)


def clean64(x):
    """The plain float64 C-contiguous copy every reference is computed on."""
    return np.array(x, dtype=np.float64)


# ============================================================ references
def check_topk(x, allow_error=None, **kw):
    res, err = _call(hnm.topk, (x,), kw, allow_error)
    if err is not None:
        return
    ref_v, ref_i = rsel.topk(x, **kw)
    assert isinstance(res, hnm.TopK)
    assert res.indices.dtype == np.intp
    np.testing.assert_array_equal(res.indices, ref_i)
    np.testing.assert_array_equal(np.asarray(res.values, dtype=np.float64), ref_v)
    src = np.asarray(x).dtype
    if not (src.kind in "biu" and (ref_i < 0).any()):
        assert res.values.dtype == src, f"values dtype {res.values.dtype} != scores dtype {src}"


def check_difficulty(y_true, y_score, allow_error=None, **kw):
    res, err = _call(hnm.difficulty, (y_true, y_score), kw, allow_error)
    if err is not None:
        return
    with np.errstate(over="ignore", invalid="ignore"):
        ref = refs_scoring.difficulty(y_true, y_score, **kw)
    src = np.asarray(y_score).dtype
    if src == np.float32 and src.isnative:
        assert res.dtype == np.float32
    elif not (src.kind == "f" and src.itemsize == 4):  # '>f4': documented either way
        assert res.dtype == np.float64
    assert res.shape == ref.shape
    with np.errstate(over="ignore"):
        ref = ref.astype(res.dtype)  # correctly rounded to the documented output dtype
    if res.dtype == np.float32:
        np.testing.assert_allclose(res, ref, rtol=2e-6, atol=2e-6)
    else:
        np.testing.assert_allclose(res, ref, rtol=1e-12, atol=1e-12)


def _compute_dtype(*arrays):
    floats = [np.asarray(a).dtype for a in arrays if np.asarray(a).dtype.kind == "f"]
    return np.result_type(np.float32, *floats)


def _pair_tolerance(Q, C, metric):
    q, c = np.abs(clean64(Q)), np.abs(clean64(C))
    dim = max(q.shape[1], 1)
    fin = np.finfo(_compute_dtype(Q, C))
    qm = q.max(axis=1) if q.size else np.zeros(q.shape[0])
    cm = c.max() if c.size else 0.0
    if metric == "cosine":
        scale = np.full(q.shape[0], 1.0)
    elif metric == "ip":
        scale = qm * cm
    else:
        scale = (qm + cm) ** 2
    return (32 * dim * float(fin.eps)) * scale + 8 * dim * float(fin.smallest_normal)


def check_pairs(Q, C, k=None, *, allow_error=None, exact=False, **kw):
    """search_hard_pairs vs a float64 reference. Positions whose reference scores are
    within the rounding tolerance of each other may swap, unless ``exact``."""
    res, err = _call(hnm.search_hard_pairs, (Q, C, k), kw, allow_error)
    if err is not None:
        return
    metric = kw.get("metric", "cosine")
    key = score_matrix(Q, C, metric)
    n_q, n_c = key.shape
    tol = _pair_tolerance(Q, C, metric)
    elig = np.ones((n_q, n_c), dtype=bool)
    if kw.get("exclude_self"):
        elig[np.arange(n_q), np.arange(n_q)] = False
    exclude = kw.get("exclude")
    for i, ex in enumerate(id_lists([[]] * n_q if exclude is None else exclude, n_q)):
        elig[i, ex] = False
    if kw.get("query_labels") is not None:
        ql = np.asarray(kw["query_labels"]).tolist()
        cl = np.asarray(kw["candidate_labels"]).tolist()
        elig &= np.array([[a != b for b in cl] for a in ql], dtype=bool).reshape(n_q, n_c)
    cap = kw.get("max_score")
    if cap is not None:
        capv = np.broadcast_to(clean64(cap), (n_q,))[:, None]
        keyed_cap = -capv if metric == "l2" else capv
        near = np.abs(key - keyed_cap) <= 2 * tol[:, None]
        assert not near.any(), "test precondition: a score lies at the max_score boundary"
        elig &= key <= keyed_cap
    band = kw.get("band")
    start, stop = (0, k) if k is not None else (band[0], n_c if band[1] is None else band[1])
    assert res.indices.shape == (n_q, stop - start) == res.scores.shape
    assert res.indices.dtype == np.intp
    got_key = np.asarray(res.scores, dtype=np.float64)
    if metric == "l2":
        got_key = -got_key
    for i in range(n_q):
        ids = np.flatnonzero(elig[i])
        order = ids[np.lexsort((ids, -key[i, ids]))][start:stop]
        exp_ids = np.full(stop - start, -1)
        exp_ids[:order.size] = order
        got = res.indices[i]
        pad = exp_ids < 0
        np.testing.assert_array_equal(got[pad], -1, err_msg=f"query {i}: padding")
        assert np.all(got_key[i, pad] == -np.inf), f"query {i}: padded scores"
        if exact:
            np.testing.assert_array_equal(got, exp_ids, err_msg=f"query {i}")
        real = got[~pad]
        assert np.all(real >= 0) and np.all(real < n_c), f"query {i}: ids {got}"
        assert np.unique(real).size == real.size, f"query {i}: duplicate ids {got}"
        assert elig[i, real].all(), f"query {i}: an ineligible candidate was returned {got}"
        exp_key = key[i, order]
        np.testing.assert_allclose(key[i, real], exp_key, rtol=0, atol=tol[i],
                                   err_msg=f"query {i}: wrong candidates {got} vs {exp_ids}")
        np.testing.assert_allclose(got_key[i, ~pad], exp_key, rtol=0, atol=tol[i],
                                   err_msg=f"query {i}: wrong scores")


def check_mine(Q, positives, C, allow_error=None, **kw):
    kw = {"duplicate_threshold": None, **kw}  # (the data have no near-duplicates)
    res, err = _call(hnm.mine_hard_negatives, (Q, positives, C), kw, allow_error)
    if err is not None:
        return
    metric = kw.get("metric", "cosine")
    tol = float(np.max(_pair_tolerance(Q, C, metric), initial=0.0))
    ref_kw = {k: v for k, v in kw.items()
              if k not in ("block_size", "random_state")}
    ref = reference_mine(Q, positives, C, tol=tol, **ref_kw)
    for name in ("query", "positive", "negative", "rank"):
        np.testing.assert_array_equal(getattr(res, name), ref[name], err_msg=name)
    np.testing.assert_allclose(res.score, ref["score"], rtol=0, atol=4 * tol + 1e-12)
    np.testing.assert_allclose(res.positive_score, ref["positive_score"], rtol=0,
                               atol=4 * tol + 1e-12)
    assert np.all(res.is_hard)
    assert len(res) == ref["query"].size


# ================================================================ cases
CASES = {}  # case id -> (function of a tmp dir, reaches the compiled kernels)


def add_case(cid, fn, kernel=True):
    assert cid not in CASES, cid
    CASES[cid] = (fn, kernel)


_rng = np.random.default_rng(20240609)

# ---------------------------------------------------------------- topk
TOPK_BASE = _rng.integers(-6, 7, size=(6, 8)).astype(np.float64)  # many ties
TOPK_SPECIAL = TOPK_BASE.copy()
TOPK_SPECIAL[0, 1] = np.nan
TOPK_SPECIAL[1, 3] = np.inf
TOPK_SPECIAL[2, 2] = -np.inf
TOPK_SPECIAL[3, 0] = -0.0
TOPK_SPECIAL[3, 1] = 0.0
TOPK_SPECIAL[4, :] = np.nan  # a row with nothing to select: padding
TOPK_SPECIAL[5, 5] = np.nan
TOPK_3D = _rng.integers(-9, 10, size=(2, 3, 8)).astype(np.float64)

TOPK_CFGS = {
    "k3": dict(k=3),
    "k3_smallest": dict(k=3, largest=False),
    "band": dict(band=(5, 17)),
    "band_open": dict(band=(40, None)),
    "k_all": dict(k=48),
    "rows_k3": dict(k=3, axis=-1),
    "cols_k2_smallest": dict(k=2, axis=0, largest=False),
    "chunk1_k5": dict(k=5, chunk_size=1),
    "rows_chunk7_smallest": dict(k=4, axis=1, chunk_size=7, largest=False),
}
TOPK_OMIT_CFGS = {
    "omit_k10": dict(k=10, nan_policy="omit"),
    "omit_band_padded": dict(band=(2, 45), largest=False, nan_policy="omit", chunk_size=5),
    "omit_rows_k8": dict(k=8, axis=-1, nan_policy="omit"),
    "omit_cols_k6": dict(k=6, axis=0, nan_policy="omit", largest=False),
}


def _topk_case(vname, base, cfg):
    return lambda tmp: check_topk(variant(vname, base, base, tmp), **cfg)


for _v in ALL_VARIANTS:
    for _c, _cfg in TOPK_CFGS.items():
        add_case(f"topk/{_v}/{_c}", _topk_case(_v, TOPK_BASE, _cfg))
for _v in FLOAT_VARIANTS:
    for _c, _cfg in TOPK_OMIT_CFGS.items():
        add_case(f"topk/special_{_v}/{_c}", _topk_case(_v, TOPK_SPECIAL, _cfg))
for _v in ("noncontig", "negstride", "fortran", "memmap_be_noncontig", "f16", "i64_noncontig",
           "list", "memmap_negstride"):
    for _c, _cfg in (("k3", dict(k=3)), ("band", dict(band=(7, 30), largest=False)),
                     ("chunk1", dict(k=6, chunk_size=1))):
        add_case(f"topk/3d_{_v}/{_c}", _topk_case(_v, TOPK_3D, _cfg))

# ------------------------------------------------------------ difficulty
_PROBA_ROWS = np.array([[.5, .25, .25], [.125, .75, .125], [1, 0, 0], [0, .625, .375],
                        [.25, .25, .5], [.375, .5, .125]])
PROBA = np.vstack([_PROBA_ROWS, _PROBA_ROWS[::-1]])  # (12, 3), exact in float16
ONEHOT = (PROBA >= 0.5).astype(np.int64)  # valid probabilities in integer dtypes
Y3 = np.arange(12) % 3
DEC = _rng.integers(-8, 9, size=(12, 3)) / 2.0
DEC_INT = np.rint(DEC * 2).astype(np.int64)
BIN = np.array([0, .125, .25, .375, .5, .625, .75, .875, 1, .5, .25, 1.0])
BIN_INT = (BIN >= 0.5).astype(np.int64)
Y2 = np.array([0, 1, 1, 0, 1, 0, 1, 1, 0, 0, 1, 1])


def _diff_case(vname, fbase, ibase, y, **kw):
    return lambda tmp: check_difficulty(y, variant(vname, fbase, ibase, tmp), **kw)


for _v in ALL_VARIANTS:
    for _m in MEASURES:
        add_case(f"difficulty/proba_{_v}/{_m}", _diff_case(_v, PROBA, ONEHOT, Y3, measure=_m))
    for _m in ("margin", "hinge"):
        add_case(f"difficulty/decision_{_v}/{_m}", _diff_case(_v, DEC, DEC_INT, Y3, measure=_m))
for _v in ("f64", "f32", "f16", "be_f8", "be_f4", "noncontig", "negstride", "readonly",
           "memmap_be_noncontig", "i64", "bool", "u8", "i64_noncontig", "list"):
    for _m in MEASURES:
        add_case(f"difficulty/binary_{_v}/{_m}", _diff_case(_v, BIN, BIN_INT, Y2, measure=_m))
for _v in ("f64", "noncontig", "be_f4", "memmap_negstride", "f32_fortran_noncontig"):
    add_case(f"difficulty/entropy_no_labels_{_v}",
             _diff_case(_v, PROBA, ONEHOT, None, measure="entropy"))
    for _cs in (1, 2, 5):
        add_case(f"difficulty/chunk{_cs}_{_v}",
                 _diff_case(_v, PROBA, ONEHOT, Y3, measure="log_loss", chunk_size=_cs))
        add_case(f"difficulty/binary_chunk{_cs}_{_v}",
                 _diff_case(_v, BIN, BIN_INT, Y2, measure="hinge", chunk_size=_cs))

_ABC = np.array(["a", "b", "c"])
Y_VARIANTS = {
    "i32": lambda tmp: Y3.astype(np.int32),
    "u8": lambda tmp: Y3.astype(np.uint8),
    "negative_ints": lambda tmp: Y3 - 7,
    "big_int_range": lambda tmp: np.where(Y3 == 2, 10**12, Y3),
    "int64_extremes": lambda tmp: np.array([-2**63, 0, 2**63 - 1])[Y3],
    "uint64_beyond_int64": lambda tmp: np.array([1, 2**63 + 5, 2**64 - 1], np.uint64)[Y3],
    "str": lambda tmp: _ABC[Y3],
    "object_str": lambda tmp: _ABC[Y3].astype(object),
    "object_int": lambda tmp: Y3.astype(object),
    "float_labels": lambda tmp: Y3.astype(np.float64) / 2,
    "list_int": lambda tmp: Y3.tolist(),
    "list_str": lambda tmp: _ABC[Y3].tolist(),
    "noncontig_int64": lambda tmp: _wide_view(Y3),
    "negstride_int64": lambda tmp: _reverse_view(Y3),
    "negstride_int32": lambda tmp: _reverse_view(Y3.astype(np.int32)),
    "readonly_int64": lambda tmp: _readonly(Y3),
    "memmap_int64": lambda tmp: _memmap(Y3, tmp),
    "memmap_noncontig_int64": lambda tmp: _memmap(_wide_view(Y3).base, tmp)[::2],
    "big_endian_int64": lambda tmp: Y3.astype(">i8"),
}
for _name, _make in Y_VARIANTS.items():
    add_case(f"difficulty/y_{_name}/matrix_margin",
             (lambda make: lambda tmp: check_difficulty(make(tmp), PROBA, measure="margin"))(_make))
    add_case(f"difficulty/y_{_name}/matrix_log_loss",
             (lambda make: lambda tmp: check_difficulty(make(tmp), PROBA.astype(np.float32),
                                                        measure="log_loss"))(_make))
add_case("difficulty/y_str/custom_label_order",
         lambda tmp: check_difficulty(_ABC[Y3], PROBA, labels=np.array(["c", "a", "b"])))
add_case("difficulty/y_int/custom_label_order",
         lambda tmp: check_difficulty(Y3, PROBA, labels=[2, 0, 1], measure="confidence"))
add_case("difficulty/y_int/labels_noncontig",
         lambda tmp: check_difficulty(Y3 + 5, PROBA, labels=_wide_view(np.array([5, 6, 7]))))
add_case("difficulty/y_bool/binary_hinge",
         lambda tmp: check_difficulty(Y2.astype(bool), BIN - 0.5, measure="hinge"))
add_case("difficulty/y_str/binary_log_loss",
         lambda tmp: check_difficulty(np.array(["neg", "pos"])[Y2], BIN, measure="log_loss"))
add_case("difficulty/y_single_class_with_labels/margin",
         lambda tmp: check_difficulty(np.zeros(12, int), PROBA, labels=[0, 1, 2]))
add_case("difficulty/y_noncontig/binary_margin",
         lambda tmp: check_difficulty(_wide_view(Y2), BIN - 0.5))
# (n, 1) and (n, 0) matrices with the label-free measure
add_case("difficulty/one_column_entropy",
         lambda tmp: check_difficulty(None, np.ones((4, 1)), measure="entropy"))
add_case("difficulty/zero_columns_entropy",
         lambda tmp: check_difficulty(None, np.zeros((4, 0)), measure="entropy",
                                      allow_error="y_score"))
add_case("difficulty/zero_rows_zero_columns_entropy",
         lambda tmp: check_difficulty(None, np.zeros((0, 0)), measure="entropy",
                                      allow_error="y_score"))
add_case("difficulty/empty_rows_int_labels",
         lambda tmp: check_difficulty(np.zeros(0, int), np.zeros((0, 3)), labels=[0, 1, 2]))
add_case("difficulty/float32_extremes_margin",
         lambda tmp: check_difficulty(np.array([0, 1, 0]), np.array(
             [[3e38, -3e38], [1e-45, -1e-45], [-0.0, 0.0]], np.float32), measure="margin"))
add_case("difficulty/float64_extremes_hinge",
         lambda tmp: check_difficulty(np.array([0, 1, 0]), np.array(
             [[1.7e308, -1.7e308], [5e-324, -5e-324], [-0.0, 0.0]]), measure="hinge"))

# --------------------------------------------------------- search_hard_pairs
PAIR_C = _rng.integers(-3, 4, size=(16, 5)).astype(np.float64)
PAIR_Q = _rng.integers(-3, 4, size=(5, 5)).astype(np.float64)
PAIR_CF = _rng.standard_normal((40, 7))
PAIR_QF = _rng.standard_normal((6, 7))


def _pairs_case(vname, qbase, cbase, k=None, exact_metrics=("ip", "l2"), **kw):
    def run(tmp):
        Q = variant(vname, qbase, qbase, tmp)
        C = variant(vname, cbase, cbase, tmp)
        check_pairs(Q, C, k, exact=kw.get("metric") in exact_metrics, **kw)
    return run


for _v in ALL_VARIANTS:
    for _m in ("cosine", "ip", "l2"):
        add_case(f"pairs/{_v}/{_m}/k3", _pairs_case(_v, PAIR_Q, PAIR_C, 3, metric=_m))
        add_case(f"pairs/float_{_v}/{_m}/k5",
                 _pairs_case(_v, PAIR_QF, PAIR_CF, 5, exact_metrics=(), metric=_m))
_CAPS = {"cosine": 0.33, "ip": 2.5, "l2": 10.5}
for _v in ("f64", "f32", "noncontig", "memmap_be_noncontig", "i64_noncontig", "f16"):
    for _m in ("cosine", "ip", "l2"):
        _pre = f"pairs/{_v}/{_m}"
        add_case(f"{_pre}/band", _pairs_case(_v, PAIR_Q, PAIR_C, band=(2, 9), metric=_m))
        add_case(f"{_pre}/band_to_end", _pairs_case(_v, PAIR_Q, PAIR_C, band=(10, None),
                                                    metric=_m))
        add_case(f"{_pre}/exclude_self",
                 _pairs_case(_v, PAIR_C[:5], PAIR_C, 4, metric=_m, exclude_self=True))
        add_case(f"{_pre}/exclude_lists", _pairs_case(
            _v, PAIR_Q, PAIR_C, 4, metric=_m, exclude=[[0, 1], [], [2, 3, 4, 5], [15], [7, 7]]))
        add_case(f"{_pre}/exclude_csr_noncontig", _pairs_case(
            _v, PAIR_Q, PAIR_C, 4, metric=_m,
            exclude=(np.array([0, 2, 2, 5, 6, 6]), _wide_view(np.array([3, 1, 9, 0, 4, 8])))))
        add_case(f"{_pre}/exclude_one_id_each", _pairs_case(
            _v, PAIR_Q, PAIR_C, 3, metric=_m, exclude=_reverse_view(np.array([1, 2, 3, 4, 5]))))
        add_case(f"{_pre}/exclude_all_but_two_padded", _pairs_case(
            _v, PAIR_Q, PAIR_C, 4, metric=_m, exclude=[list(range(2, 16))] * 5))
        add_case(f"{_pre}/max_score", _pairs_case(_v, PAIR_Q, PAIR_C, 4, metric=_m,
                                                  max_score=_CAPS[_m]))
        add_case(f"{_pre}/max_score_array_readonly", _pairs_case(
            _v, PAIR_Q, PAIR_C, 4, metric=_m,
            max_score=_readonly(np.array([1.5, -0.5, 3.5, 20.5, 0.5]) * (
                0.3 if _m == "cosine" else 1) + (0.01 if _m == "cosine" else 0))))
        add_case(f"{_pre}/labels_str", _pairs_case(
            _v, PAIR_Q, PAIR_C, 3, metric=_m, query_labels=np.array(list("abcab")),
            candidate_labels=np.array(list("aabbccaabbccaabb"), dtype=object)))
        add_case(f"{_pre}/labels_int_noncontig", _pairs_case(
            _v, PAIR_Q, PAIR_C, 3, metric=_m, query_labels=_wide_view(np.arange(5) % 2),
            candidate_labels=_reverse_view(np.arange(16) % 3)))
        add_case(f"{_pre}/block3_jobs1", _pairs_case(_v, PAIR_Q, PAIR_C, 6, metric=_m,
                                                     block_size=3, n_jobs=1))
        add_case(f"{_pre}/block1_jobs2", _pairs_case(_v, PAIR_Q, PAIR_C, 6, metric=_m,
                                                     block_size=1, n_jobs=2))
        add_case(f"{_pre}/k_all", _pairs_case(_v, PAIR_Q, PAIR_C, 16, metric=_m))
        add_case(f"{_pre}/no_queries", _pairs_case(_v, PAIR_Q[:0], PAIR_C, 2, metric=_m))

# overflow / underflow of intermediate values: a clear ValueError or the right answer
_BIG32 = np.array([[1e30, 1e30, 0]], np.float32)
add_case("pairs/float32_huge/cosine", lambda tmp: check_pairs(
    _BIG32, np.array([[1e30, 1e30, 0], [1, 0, 0]], np.float32), 2, metric="cosine",
    allow_error="queries|candidates"))
add_case("pairs/float32_huge/l2", lambda tmp: check_pairs(
    np.array([[1e30, 0]], np.float32), np.array([[3e30, 0], [1e30, 0]], np.float32), 1,
    metric="l2", allow_error="queries|candidates"))
add_case("pairs/float64_huge_query/cosine", lambda tmp: check_pairs(
    np.array([[1e200, 1e200]]), np.array([[1.0, 0], [1, 1]]), 2, metric="cosine",
    allow_error="queries|candidates"))
add_case("pairs/float64_tiny_query/cosine", lambda tmp: check_pairs(
    np.array([[1e-200, 1e-200]]), np.array([[1.0, 0], [1, 1]]), 2, metric="cosine"))
add_case("pairs/float64_tiny_candidates/cosine", lambda tmp: check_pairs(
    np.array([[1.0, 1.0]]), np.array([[1e-200, 0], [1e-200, 1e-200]]), 2, metric="cosine"))
add_case("pairs/float32_denormal_query/cosine", lambda tmp: check_pairs(
    np.array([[1e-40, 1e-40]], np.float32), np.array([[1, 0], [1, 1]], np.float32), 2,
    metric="cosine"))
add_case("pairs/zero_vectors/cosine", lambda tmp: check_pairs(
    np.zeros((2, 3)), np.vstack([np.zeros(3), np.ones(3), -np.ones(3)]), 3, metric="cosine"))
add_case("pairs/int64_large/ip", lambda tmp: check_pairs(
    np.array([[2**40, 1]]), np.array([[1, 0], [0, 1], [3, -2]]), 3, metric="ip"))

# ----------------------------------------------------------- mine_hard_negatives
MINE_C = _rng.standard_normal((30, 8))
MINE_Q = MINE_C[:4] + 0.3 * _rng.standard_normal((4, 8))
MINE_C_INT = np.rint(MINE_C * 4)
MINE_Q_INT = np.rint(MINE_Q * 4)


def _mine_case(vname, positives=None, **kw):
    def run(tmp):
        Q = variant(vname, MINE_Q, MINE_Q_INT, tmp)
        C = variant(vname, MINE_C, MINE_C_INT, tmp)
        P = np.arange(4) if positives is None else positives(Q)
        check_mine(Q, P, C, **kw)
    return run


for _v in ALL_VARIANTS:
    if _v not in ("u8", "bool"):  # (their data are all near-ties: covered by pairs/)
        add_case(f"mine/{_v}/default", _mine_case(_v, k=3))
for _v in ("f64", "f32", "f16", "noncontig", "memmap_be_noncontig", "i64_noncontig"):
    if _v == "i64_noncontig":  # small integers tie exactly in ip and l2: cosine only
        add_case(f"mine/{_v}/relative_margin_ntuple", _mine_case(
            _v, k=3, relative_margin=0.05, output="ntuple"))
        continue
    add_case(f"mine/{_v}/relative_margin", _mine_case(_v, k=3,
                                                      relative_margin=0.05))
    add_case(f"mine/{_v}/absolute_margin", _mine_case(_v, k=2,
                                                      absolute_margin=0.1))
    add_case(f"mine/{_v}/max_score", _mine_case(_v, k=3, max_score=0.43))
    add_case(f"mine/{_v}/band", _mine_case(_v, k=3, band=(2, 6)))
    add_case(f"mine/{_v}/band_min_score", _mine_case(_v, k=4, band=(20, 26),
                                                     min_score=-0.3))
    add_case(f"mine/{_v}/ip", _mine_case(_v, k=3, metric="ip"))
    add_case(f"mine/{_v}/l2", _mine_case(_v, k=3, metric="l2",
                                         relative_margin=0.5))
    add_case(f"mine/{_v}/exclude", _mine_case(_v, k=3,
                                              exclude=[[5, 6], [7], [], [8, 9]]))
    add_case(f"mine/{_v}/several_positives", _mine_case(
        _v, k=2, positives=lambda Q: [[0, 10], [1], [2, 11, 12], [3]]))
    add_case(f"mine/{_v}/positives_csr_noncontig", _mine_case(
        _v, k=2,
        positives=lambda Q: (np.array([0, 2, 3, 6, 7]), _wide_view([0, 10, 1, 2, 11, 12, 3]))))
    add_case(f"mine/{_v}/positive_embeddings_f32", _mine_case(
        _v, k=3, positives=lambda Q: (clean64(Q) + 0.05).astype(np.float32)))
    add_case(f"mine/{_v}/ntuple", _mine_case(_v, k=3, output="ntuple",
                                             band=(0, 5), block_size=4))
    add_case(f"mine/{_v}/more_than_corpus", _mine_case(_v, k=40, at_most=True))

# ---------------------------------------------------------------- selection
SEL_D = _rng.integers(-5, 6, size=20).astype(np.float64)
SEL_D_SPECIAL = SEL_D.copy()
SEL_D_SPECIAL[[2, 9]] = np.inf
SEL_D_SPECIAL[[4, 11]] = -np.inf
SEL_D_SPECIAL[13] = -0.0


def _sel_check(fn, ref, d, *args, exact=True, **kw):
    res, _ = _call(fn, (d,) + args, kw)
    expected = ref(d, *args, **kw)
    if exact:
        assert np.asarray(res).dtype.kind in "iu"
        np.testing.assert_array_equal(res, expected)
    else:
        assert res.dtype == np.float64
        np.testing.assert_allclose(res, expected, rtol=1e-12, atol=1e-14)


SEL_FUNCS = {
    "select_hardest_k5": (sel.select_hardest, rsel.select_hardest, (5,), {}),
    "select_hardest_fraction": (sel.select_hardest, rsel.select_hardest, (),
                                dict(fraction=0.3, noise_fraction=0.1)),
    "select_hardest_band": (sel.select_hardest, rsel.select_hardest, (),
                            dict(band=(1, 7), noise_fraction=0.1)),
    "sample_by_difficulty": (sel.sample_by_difficulty, rsel.sample_by_difficulty, (5,),
                             dict(temperature=2.0, random_state=0)),
    "sample_by_difficulty_noise": (sel.sample_by_difficulty, rsel.sample_by_difficulty, (4,),
                                   dict(noise_fraction=0.2, random_state=3)),
    "select_semi_hard": (sel.select_semi_hard, rsel.select_semi_hard, (2.0,), {}),
    "select_semi_hard_k3": (sel.select_semi_hard, rsel.select_semi_hard, (2.0,), dict(k=3)),
    "quantile_window": (sel.select_quantile_window, rsel.select_quantile_window, (0.25, 0.75), {}),
    "quantile_window_top": (sel.select_quantile_window, rsel.select_quantile_window, (0.9, 1.0),
                            {}),
    "weights_softmax": (sel.difficulty_weights, rsel.difficulty_weights, (),
                        dict(method="softmax", temperature=3.0)),
    "weights_power_floor": (sel.difficulty_weights, rsel.difficulty_weights, (),
                            dict(min_weight=0.3)),
}


def _sel_case(vname, fname, base):
    fn, ref, args, kw = SEL_FUNCS[fname]

    def run(tmp):
        b = np.abs(base) if fname.startswith("weights_power") else base
        _sel_check(fn, ref, variant(vname, b, b, tmp), *args,
                   exact=not fname.startswith("weights"), **kw)
    return run


for _v in ALL_VARIANTS:
    for _f in SEL_FUNCS:
        add_case(f"selection/{_f}/{_v}", _sel_case(_v, _f, SEL_D))
for _v in FLOAT_VARIANTS:
    for _f in ("select_hardest_k5", "select_hardest_fraction", "select_semi_hard",
               "quantile_window"):
        add_case(f"selection/{_f}/special_{_v}", _sel_case(_v, _f, SEL_D_SPECIAL))


def _blend_case(vname):
    def run(tmp):
        hard = variant(vname, np.array([3, 17, 0, 9]), np.array([3, 17, 0, 9]), tmp)
        res, _ = _call(sel.blend_easy, (hard, 20, 8), dict(random_state=0))
        indices, is_hard = rsel.blend_easy(hard, 20, 8, random_state=0)
        np.testing.assert_array_equal(res.indices, indices)
        np.testing.assert_array_equal(res.is_hard, is_hard)
    return run


for _v in ("i64", "i32", "u8", "be_i8", "i64_noncontig", "i64_memmap"):
    add_case(f"selection/blend_easy/{_v}", _blend_case(_v))
add_case("selection/blend_easy/list", lambda tmp: np.testing.assert_array_equal(
    sel.blend_easy([3, 17, 0, 9], 20, 2, random_state=1).indices[:4], [3, 17, 0, 9]))
add_case("selection/blend_easy/negstride", lambda tmp: (lambda h: np.testing.assert_array_equal(
    sel.blend_easy(h, 20, 0).indices, [3, 17, 0, 9]))(_reverse_view(np.array([3, 17, 0, 9]))))
add_case("selection/blend_easy/empty_hard", lambda tmp: np.testing.assert_array_equal(
    sel.blend_easy([], 5, 3, random_state=0).indices.size, 3))
# numerically extreme difficulties: the weights are scale/shift invariant
add_case("selection/weights_softmax/very_negative", lambda tmp: _sel_check(
    sel.difficulty_weights, rsel.difficulty_weights, np.array([-1000.0, -1001.0, -1002.0]),
    exact=False, method="softmax"))
add_case("selection/weights_power/huge", lambda tmp: _sel_check(
    sel.difficulty_weights, rsel.difficulty_weights, np.array([1e200, 1.0, 3e199]), exact=False))
add_case("selection/weights_power/denormal", lambda tmp: _sel_check(
    sel.difficulty_weights, rsel.difficulty_weights, np.array([5e-324, 0.0, 1e-320]), exact=False,
    gamma=1.0))
add_case("selection/weights/empty", lambda tmp: _sel_check(
    sel.difficulty_weights, rsel.difficulty_weights, np.zeros(0), exact=False))
add_case("selection/select_hardest/empty_fraction", lambda tmp: np.testing.assert_array_equal(
    sel.select_hardest(np.zeros(0), fraction=0.5), np.empty(0, np.intp)), kernel=False)
add_case("selection/semi_hard/empty", lambda tmp: np.testing.assert_array_equal(
    sel.select_semi_hard(np.zeros(0), 1.0), np.empty(0, np.intp)))


for _i, (_args, _kw) in enumerate([
        ((0, 4), {}), ((3, 4), {}), ((np.int64(2), np.int32(5)), dict(pacing="root")),
        ((1, 3), dict(pacing="geometric", start_fraction=np.float32(0.5))),
        ((0, 1), {}), ((2, 3), dict(width=0.25)), ((0, 3), dict(width=1.0)),
        ((1, 5), dict(pacing=lambda t: 0.5 + t / 2)),
        ((4, 5), dict(pacing=lambda t: np.float64(1.0))),
        ((np.uint8(1), 2), dict(start_fraction=1)), ((5, 10**9), dict(pacing="root"))]):
    add_case(f"selection/curriculum_window/{_i}", (lambda a, k: lambda tmp: np.testing.
                                                   assert_allclose(sel.curriculum_window(*a, **k),
                                                                   rsel.curriculum_window(*a, **k),
                                                                   rtol=0, atol=1e-11))(
        _args, _kw), kernel=False)

# ----------------------------------------------------------------- estimators
RS_X = _rng.standard_normal((40, 3))
RS_Y = (np.arange(40) % 4 == 0).astype(np.int64)  # 10 positives, 30 negatives
RS_D = _rng.integers(-5, 6, size=40).astype(np.float64)  # ties


def check_resampler_precomputed(X, y, d, noise_fraction=0.1):
    est = hnm.HardNegativeResampler(noise_fraction=noise_fraction, easy_ratio=0.0,
                                    random_state=0)
    (Xr, yr), _ = _call(est.fit_resample, (X, y), dict(sample_difficulty=d))
    ref = rsel.resample_indices(y, d, noise_fraction=noise_fraction)
    np.testing.assert_array_equal(est.sample_indices_, ref)
    np.testing.assert_array_equal(clean64(Xr), clean64(X)[ref])
    np.testing.assert_array_equal(np.asarray(yr), np.asarray(y)[ref])


def check_resampler_nearmiss(X, y):
    est = hnm.HardNegativeResampler(difficulty="nearmiss", noise_fraction=0.0, easy_ratio=0.0,
                                    random_state=0)
    (Xr, yr), _ = _call(est.fit_resample, (X, y), {})
    nm = NearMiss(version=1)
    nm.fit_resample(clean64(X), np.asarray(y))
    np.testing.assert_array_equal(np.sort(est.sample_indices_), np.sort(nm.sample_indices_))


for _v in ALL_VARIANTS:
    add_case(f"resampler/precomputed_X_{_v}", (lambda v: lambda tmp: check_resampler_precomputed(
        variant(v, RS_X, np.rint(RS_X * 3), tmp), RS_Y, RS_D))(_v), kernel=False)
    add_case(f"resampler/difficulty_{_v}", (lambda v: lambda tmp: check_resampler_precomputed(
        RS_X, RS_Y, variant(v, RS_D, RS_D, tmp)))(_v), kernel=False)
for _v in ("f64", "f32", "be_f8", "noncontig", "negstride", "fortran", "memmap_be_noncontig",
           "f32_fortran_noncontig", "list", "i64_noncontig"):
    add_case(f"resampler/nearmiss_X_{_v}", (lambda v: lambda tmp: check_resampler_nearmiss(
        variant(v, RS_X, np.rint(RS_X * 3), tmp), RS_Y))(_v), kernel=False)
LABEL_VARIANTS = {
    "str": lambda y: np.array(["neg", "pos"])[y],
    "object_str": lambda y: np.array(["neg", "pos"], dtype=object)[y],
    "negative_ints": lambda y: y * 5 - 3,
    "float": lambda y: y * 2.0 - 1,
    "bool": lambda y: y.astype(bool),
    "list_str": lambda y: np.array(["neg", "pos"])[y].tolist(),
    "noncontig_int": lambda y: _wide_view(y),
}
for _name, _lab in LABEL_VARIANTS.items():
    add_case(f"resampler/labels_{_name}", (lambda lab: lambda tmp: check_resampler_precomputed(
        RS_X, lab(RS_Y), RS_D))(_lab), kernel=False)
    add_case(f"resampler/nearmiss_labels_{_name}", (lambda lab: lambda tmp:
                                                    check_resampler_nearmiss(
                                                        RS_X, lab(RS_Y)))(_lab), kernel=False)

HMC_X = _rng.standard_normal((80, 4))
HMC_Y = (HMC_X[:, 0] + 0.5 * HMC_X[:, 1] + 0.3 * _rng.standard_normal(80) > 0.8).astype(int)
HMC_X_INT = np.rint(HMC_X * 3)


def _hmc():
    return hnm.HardMiningClassifier(LogisticRegression(), n_rounds=2, random_state=0)


def check_classifier(X, y, X_clean=None, y_codes=None):
    """Fit on hostile X / labels; the reference is the same fit on the clean float64
    copy with integer labels."""
    clf = _hmc()
    _call(clf.fit, (X, y), {})
    X_clean = clean64(X) if X_clean is None else X_clean
    y_codes = np.asarray(y) if y_codes is None else y_codes
    ref = _hmc().fit(X_clean, y_codes)
    np.testing.assert_array_equal(clf.negative_indices_, ref.negative_indices_)
    np.testing.assert_allclose(clf.estimator_.coef_, ref.estimator_.coef_, rtol=1e-6,
                               atol=1e-9)
    got, _ = _call(clf.predict, (X,), {})
    exp = np.asarray(clf.classes_)[np.searchsorted(ref.classes_, ref.predict(X_clean))]
    np.testing.assert_array_equal(np.asarray(got), exp)


for _v in ALL_VARIANTS:
    if _v in ("f32", "memmap_f32", "f32_fortran_noncontig", "be_f4"):
        continue  # a float32 X is fitted in float32 by scikit-learn: not hnm's to match
    add_case(f"classifier/X_{_v}", (lambda v: lambda tmp: check_classifier(
        variant(v, HMC_X, HMC_X_INT, tmp), HMC_Y))(_v), kernel=False)
for _name, _lab in LABEL_VARIANTS.items():
    add_case(f"classifier/labels_{_name}", (lambda lab: lambda tmp: check_classifier(
        HMC_X, lab(HMC_Y), HMC_X, HMC_Y))(_lab), kernel=False)

# -------------------------------------------------------------------- metrics
HCR_S = np.round(_rng.random(40) * 16) / 16
HCR_Y = (_rng.random(40) < HCR_S).astype(np.int64)
HCR_S_INT = np.rint((HCR_S - 0.5) * 8).astype(np.int64)  # decision values, threshold 0
HCR_D = _rng.integers(-4, 5, size=40).astype(np.float64)


def _assert_records(got, expected, rtol=1e-12):
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert set(g) == set(e), (g, e)
        for key, ev in e.items():
            gv = g[key]
            if ev is None or isinstance(ev, str):
                assert gv == ev, (key, gv, ev)
            else:
                assert gv is not None, (key, gv, ev)
                np.testing.assert_allclose(gv, ev, rtol=rtol, atol=1e-12, err_msg=key)


def check_hcr(y_true, y_score, **kw):
    res, _ = _call(hmetrics.hard_case_report, (y_true, y_score), kw)
    _assert_records(res, refs_metrics.hard_case_report(y_true, y_score, **kw))


for _v in ALL_VARIANTS:
    _thr = 0 if _v in INT_VARIANTS else 0.5
    add_case(f"hard_case_report/y_score_{_v}", (lambda v, t: lambda tmp: check_hcr(
        HCR_Y, variant(v, HCR_S, HCR_S_INT, tmp), threshold=t, hard_fraction=0.2))(_v, _thr),
        kernel=False)
    add_case(f"hard_case_report/difficulty_{_v}", (lambda v: lambda tmp: check_hcr(
        HCR_Y, HCR_S, difficulty=variant(v, HCR_D, HCR_D, tmp), hard_fraction=0.25))(_v),
        kernel=False)
for _v in ("i64", "i32", "u8", "be_i8", "i64_noncontig", "i64_memmap"):
    add_case(f"hard_case_report/hard_indices_{_v}", (lambda v: lambda tmp: check_hcr(
        HCR_Y, HCR_S, hard_indices=variant(v, [4, 0, 33, 7], [4, 0, 33, 7], tmp)))(_v),
        kernel=False)
add_case("hard_case_report/labels_str", lambda tmp: check_hcr(
    np.array(["n", "p"])[HCR_Y], HCR_S, pos_label="p"), kernel=False)
add_case("hard_case_report/labels_bool", lambda tmp: check_hcr(
    HCR_Y.astype(bool), HCR_S, pos_label=True), kernel=False)
add_case("hard_case_report/labels_object", lambda tmp: check_hcr(
    np.array(["n", "p"], dtype=object)[HCR_Y], HCR_S, pos_label="p", near_threshold=0.3),
    kernel=False)
add_case("hard_case_report/single_class", lambda tmp: check_hcr(
    np.ones(40, int), HCR_S), kernel=False)
add_case("hard_case_report/decision_values", lambda tmp: check_hcr(
    HCR_Y, HCR_S * 8 - 4, threshold=0.0, near_threshold=1.0, hard_fraction=1.0), kernel=False)

FD_X = _rng.standard_normal((60, 3))
FD_Y = (np.arange(60) % 3 == 0).astype(np.int64)  # 20 positives
FD_HARD = np.flatnonzero(FD_Y == 0)[:8]
FD_X[FD_HARD, 0] += 2.0


def check_feature_diagnosis(X, y, hard, allow_error=None, **kw):
    res, err = _call(hmetrics.feature_diagnosis, (X, y, hard), kw, allow_error)
    if err is not None:
        return
    ref = refs_metrics.feature_diagnosis(X, y, hard, **kw)
    by_name = {r["feature"]: r for r in res}
    assert sorted(by_name) == sorted(r["feature"] for r in ref)
    for e in ref:
        g = by_name[e["feature"]]
        for key in ("smd_hard_vs_pos", "smd_hard_vs_easy", "smd_easy_vs_pos", "confusability"):
            np.testing.assert_allclose(g[key], e[key], rtol=1e-6, atol=1e-9,
                                       err_msg=f"{e['feature']} {key}")
    if not any(np.isnan(e["confusability"]) for e in ref):
        assert [r["feature"] for r in res] == [r["feature"] for r in ref]


for _v in ALL_VARIANTS:
    add_case(f"feature_diagnosis/X_{_v}", (lambda v: lambda tmp: check_feature_diagnosis(
        variant(v, FD_X, np.rint(FD_X * 3), tmp), FD_Y, FD_HARD))(_v), kernel=False)
for _v in ("i64", "i32", "u8", "be_i8", "i64_noncontig", "i64_memmap"):
    add_case(f"feature_diagnosis/hard_indices_{_v}", (lambda v: lambda tmp:
                                                      check_feature_diagnosis(
                                                          FD_X, FD_Y,
                                                          variant(v, FD_HARD, FD_HARD, tmp)))(_v),
             kernel=False)
add_case("feature_diagnosis/labels_str", lambda tmp: check_feature_diagnosis(
    FD_X, np.array(["neg", "pos"])[FD_Y], FD_HARD.tolist(), negative_label="neg",
    feature_names=("a", "b", "c"), k=2), kernel=False)
add_case("feature_diagnosis/large_offset", lambda tmp: check_feature_diagnosis(
    FD_X + 1e8, FD_Y, FD_HARD), kernel=False)
add_case("feature_diagnosis/huge_values", lambda tmp: check_feature_diagnosis(
    FD_X * 1e200, FD_Y, FD_HARD), kernel=False)
add_case("feature_diagnosis/nan_in_X", lambda tmp: check_feature_diagnosis(
    np.where(np.arange(180).reshape(60, 3) == 4, np.nan, FD_X), FD_Y, FD_HARD,
    allow_error=r"\bX\b"), kernel=False)
add_case("feature_diagnosis/inf_in_X", lambda tmp: check_feature_diagnosis(
    np.where(np.arange(180).reshape(60, 3) == 7, np.inf, FD_X), FD_Y, FD_HARD,
    allow_error=r"\bX\b"), kernel=False)

KERNEL_IDS = [cid for cid, (_, kernel) in CASES.items() if kernel]
OTHER_IDS = [cid for cid, (_, kernel) in CASES.items() if not kernel]


# =================================================== the subprocess sweep
def _sweep(ids, tmp):
    """Run kernel cases in this process, reporting each (used by the subprocess)."""
    tmp = Path(tmp)
    for cid in ids:
        sys.stdout.write(f"START {cid}\n")
        sys.stdout.flush()
        try:
            CASES[cid][0](tmp)
            status = "ok"
        except BaseException as exc:  # noqa: BLE001 - report, keep going
            status = f"fail {type(exc).__name__}"
        sys.stdout.write(f"DONE {cid} {status}\n")
        sys.stdout.flush()


def _run_sweep(ids, tmp):
    """Sweep ``ids`` in subprocesses; after a crash, resume after the crashing case."""
    remaining, statuses, crashed = list(ids), {}, {}
    env = dict(os.environ)
    # the hnm this run imported (installed, or built in place), not the source tree
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(hnm.__file__).resolve().parents[1])]
        + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    for attempt in range(100):
        if not remaining:
            break
        id_file = tmp / f"ids{attempt}.json"
        id_file.write_text(json.dumps(remaining))
        code = (f"import sys, json\nsys.path.insert(0, {str(TESTS_DIR)!r})\n"
                f"import test_hostile as T\n"
                f"T._sweep(json.loads(open({str(id_file)!r}).read()), {str(tmp)!r})\n")
        try:
            proc = subprocess.run([sys.executable, "-c", code], cwd=tmp, env=env,
                                  capture_output=True, text=True, timeout=600)
            out, err, rc = proc.stdout, proc.stderr, proc.returncode
        except subprocess.TimeoutExpired as exc:
            dec = (lambda b: b.decode() if isinstance(b, bytes) else (b or ""))
            out, err, rc = dec(exc.stdout), dec(exc.stderr), "timeout"
        started = None
        for line in out.splitlines():
            if line.startswith("START "):
                started = line[6:]
            elif line.startswith("DONE "):
                cid, status = line[5:].split(" ", 1)
                statuses[cid] = status
                started = None
        if rc == 0:
            break
        where = started if started is not None else "<outside any case>"
        crashed[where] = f"exit status {rc}; stderr tail: {err[-800:]}"
        if started is None:
            break
        remaining = remaining[remaining.index(started) + 1:]
    return {"statuses": statuses, "crashed": crashed}


@pytest.fixture(scope="module")
def kernel_sweep(tmp_path_factory):
    return _run_sweep(KERNEL_IDS, tmp_path_factory.mktemp("kernel_sweep"))


def test_kernel_cases_in_subprocess(kernel_sweep):
    """Every kernel case ran in a subprocess without crashing the interpreter."""
    statuses, crashed = kernel_sweep["statuses"], kernel_sweep["crashed"]
    n_ok = sum(s == "ok" for s in statuses.values())
    print(f"subprocess sweep: {len(statuses)} of {len(KERNEL_IDS)} kernel cases ran, "
          f"{n_ok} passed, {len(crashed)} crashed")
    assert not crashed, f"cases crashed the interpreter: {crashed}"
    assert len(statuses) == len(KERNEL_IDS)
    assert set(statuses) == set(KERNEL_IDS)


@pytest.mark.parametrize("cid", KERNEL_IDS)
def test_kernel_case(cid, tmp_path, kernel_sweep):
    if cid in kernel_sweep["crashed"]:
        pytest.fail(f"crashed the interpreter in the subprocess sweep: "
                    f"{kernel_sweep['crashed'][cid]}")
    CASES[cid][0](tmp_path)


@pytest.mark.parametrize("cid", OTHER_IDS)
def test_case(cid, tmp_path):
    CASES[cid][0](tmp_path)


# ============================================================ documented errors
ERRORS = []


def E(cid, exc, match, fn, *args, **kwargs):
    ERRORS.append(pytest.param(exc, match, fn, args, kwargs, id=cid))


_x = np.arange(10.0)
_x2 = np.arange(12.0).reshape(3, 4)
_nan = np.array([1.0, np.nan, 3.0])
# topk
E("topk/complex", TypeError, "scores", hnm.topk, _x.astype(complex), 2)
E("topk/object", TypeError, "scores", hnm.topk, _x.astype(object), 2)
E("topk/str", TypeError, "scores", hnm.topk, np.array(["a", "b"]), 1)
E("topk/datetime", TypeError, "scores", hnm.topk, np.array([1, 2], "M8[s]"), 1)
E("topk/longdouble", TypeError, "scores", hnm.topk, _x.astype(np.longdouble), 2)
E("topk/ragged", TypeError, "scores", hnm.topk, [[1, 2], [3]], 1)
E("topk/none", TypeError, "scores", hnm.topk, None, 1)
E("topk/0d", ValueError, "scores", hnm.topk, np.float64(3.0), 1)
E("topk/empty_k1", ValueError, "k", hnm.topk, np.zeros(0), 1)
E("topk/empty_band", ValueError, "band", hnm.topk, np.zeros(0), band=(0, None))
E("topk/empty_2d_axis0", ValueError, "k", hnm.topk, np.zeros((0, 3)), 1, axis=0)
for _k, _exc in ((0, ValueError), (-1, ValueError), (11, ValueError), (2**62, ValueError),
                 (10**30, ValueError), (True, TypeError), (np.bool_(True), TypeError),
                 (2.0, TypeError), (np.float64(2), TypeError), ("2", TypeError),
                 ([2], TypeError)):
    E(f"topk/k={_k!r}", _exc, "k", hnm.topk, _x, _k)
E("topk/rows_k_too_big", ValueError, "k", hnm.topk, _x2, 5, axis=1)
E("topk/cols_k_too_big", ValueError, "k", hnm.topk, _x2, 4, axis=0)
E("topk/no_k_no_band", ValueError, "k", hnm.topk, _x)
E("topk/k_and_band", ValueError, "band", hnm.topk, _x, 2, band=(0, 2))
for _b, _exc in (((-1, 3), ValueError), ((3, 3), ValueError), ((5, 2), ValueError),
                 ((0, 11), ValueError), ((0, 0), ValueError), ((0, 10**20), ValueError),
                 ((0.5, 2), TypeError), ((0, 2.0), TypeError), ((True, 2), TypeError),
                 (3, TypeError), ((0, 1, 2), TypeError), ("ab", TypeError),
                 ((None, 2), TypeError)):
    E(f"topk/band={_b!r}", _exc, "band", hnm.topk, _x, band=_b)
for _l in (1, 0, "yes", None, np.array([True])):
    E(f"topk/largest={_l!r}", TypeError, "largest", hnm.topk, _x, 2, largest=_l)
E("topk/axis_2", ValueError, "axis", hnm.topk, _x2, 1, axis=2)
E("topk/axis_-3", ValueError, "axis", hnm.topk, _x2, 1, axis=-3)
E("topk/axis_float", TypeError, "axis", hnm.topk, _x2, 1, axis=1.0)
E("topk/axis_bool", TypeError, "axis", hnm.topk, _x2, 1, axis=True)
E("topk/axis_tuple", TypeError, "axis", hnm.topk, _x2, 1, axis=(0, 1))
E("topk/axis_on_3d", ValueError, "axis", hnm.topk, np.zeros((2, 2, 2)), 1, axis=-1)
for _p in ("propagate", None, "RAISE"):
    E(f"topk/nan_policy={_p!r}", ValueError, "nan_policy", hnm.topk, _x, 2, nan_policy=_p)
for _cs, _exc in ((0, ValueError), (-4, ValueError), (True, TypeError), (1.5, TypeError),
                  ("8", TypeError)):
    E(f"topk/chunk_size={_cs!r}", _exc, "chunk_size", hnm.topk, _x, 2, chunk_size=_cs)
E("topk/nan", ValueError, "scores", hnm.topk, _nan, 1)
E("topk/nan_f16", ValueError, "scores", hnm.topk, _nan.astype(np.float16), 1)
E("topk/nan_rows", ValueError, "scores", hnm.topk, np.array([[1, np.nan], [2, 3]]), 1, axis=1)
E("topk/nan_noncontig", ValueError, "scores", hnm.topk, _wide_view(_nan), 1, chunk_size=1)
E("topk/int64_beyond_2**53", ValueError, "scores", hnm.topk,
  np.array([2**53 + 1, 0], dtype=np.int64), 1)
E("topk/uint64_beyond_2**53", ValueError, "scores", hnm.topk, np.array([2**63, 1], np.uint64), 1)
E("topk/int64_min", ValueError, "scores", hnm.topk, np.array([-2**63, 1], np.int64), 1,
  axis=-1)

# difficulty
_P = PROBA[:4]
_y = Y3[:4]
for _m in ("foo", None, "MARGIN", 1):
    E(f"difficulty/measure={_m!r}", ValueError, "measure", hnm.difficulty, _y, _P, measure=_m)
E("difficulty/y_score_complex", TypeError, "y_score", hnm.difficulty, _y, _P.astype(complex))
E("difficulty/y_score_object", TypeError, "y_score", hnm.difficulty, _y, _P.astype(object))
E("difficulty/y_score_str", TypeError, "y_score", hnm.difficulty, _y, _P.astype(str))
E("difficulty/y_score_longdouble", TypeError, "y_score", hnm.difficulty, _y,
  _P.astype(np.longdouble))
E("difficulty/y_score_0d", ValueError, "y_score", hnm.difficulty, _y, np.float64(0.5))
E("difficulty/y_score_3d", ValueError, "y_score", hnm.difficulty, _y, _P[:, :, None])
E("difficulty/y_score_ragged", TypeError, "y_score", hnm.difficulty, [0, 1],
  [[0.5, 0.5], [1.0]])
E("difficulty/one_column_margin", ValueError, "y_score", hnm.difficulty, _y, _P[:, :1])
E("difficulty/y_true_none_margin", ValueError, "y_true", hnm.difficulty, None, _P)
E("difficulty/y_true_short", ValueError, "y_true", hnm.difficulty, _y[:3], _P)
E("difficulty/y_true_long", ValueError, "y_true", hnm.difficulty, Y3[:6], _P)
E("difficulty/y_true_2d", ValueError, "y_true", hnm.difficulty, _y[:, None], _P)
E("difficulty/y_true_scalar", ValueError, "y_true", hnm.difficulty, 1, _P)
E("difficulty/single_class", ValueError, "y_true", hnm.difficulty, np.zeros(4, int), _P)
E("difficulty/too_many_classes_binary", ValueError, "y_true", hnm.difficulty, [0, 1, 2, 0],
  BIN[:4])
E("difficulty/nan_labels", ValueError, "y_true", hnm.difficulty, np.array([0, np.nan, 1, 2]), _P)
E("difficulty/mixed_type_labels", (ValueError, TypeError), "y_true", hnm.difficulty,
  np.array([0, "a", 1, "a"], dtype=object), PROBA[:4, :2] * 0 + 0.5)
E("difficulty/none_in_labels", (ValueError, TypeError), "y_true", hnm.difficulty,
  np.array([None, 1, None, 2], dtype=object), _P)
E("difficulty/labels_duplicate", ValueError, "labels", hnm.difficulty, _y, _P, labels=[0, 0, 1])
E("difficulty/labels_wrong_count", ValueError, "labels", hnm.difficulty, _y, _P, labels=[0, 1])
E("difficulty/labels_2d", ValueError, "labels", hnm.difficulty, _y, _P, labels=[[0, 1, 2]])
E("difficulty/label_not_in_labels", ValueError, "labels", hnm.difficulty, _y, _P,
  labels=[0, 1, 5])
E("difficulty/str_labels_int_y", ValueError, "labels", hnm.difficulty, _y, _P,
  labels=["a", "b", "c"])
E("difficulty/label_not_in_labels_entropy", ValueError, "labels", hnm.difficulty, [0, 5], _P[:2],
  labels=[0, 1, 2], measure="entropy")
E("difficulty/empty_labels", ValueError, "y_score|labels", hnm.difficulty, [0], np.zeros((1, 0)),
  labels=[], measure="entropy")
E("difficulty/nan_score", ValueError, "y_score", hnm.difficulty, _y,
  np.where(_P == 1, np.nan, _P))
E("difficulty/inf_score_margin", ValueError, "y_score", hnm.difficulty, _y,
  np.where(_P == 1, np.inf, _P))
E("difficulty/-inf_binary", ValueError, "y_score", hnm.difficulty, Y2[:4],
  np.array([0.5, -np.inf, 0.1, 0.2]))
E("difficulty/nan_f16_noncontig", ValueError, "y_score", hnm.difficulty, _y,
  _wide_view(np.where(_P == 1, np.nan, _P).astype(np.float16)))
for _m in ("log_loss", "confidence", "entropy"):
    E(f"difficulty/{_m}_above_one", ValueError, "y_score", hnm.difficulty, _y, _P * 2,
      measure=_m)
    E(f"difficulty/{_m}_negative", ValueError, "y_score", hnm.difficulty, _y, _P - 0.25,
      measure=_m)
    E(f"difficulty/{_m}_rows_not_summing", ValueError, "y_score", hnm.difficulty, _y,
      _P * 0.9, measure=_m)
    E(f"difficulty/{_m}_binary_outside", ValueError, "y_score", hnm.difficulty, Y2[:4],
      np.array([0.5, 1.5, 0.1, 0.2]), measure=_m)
for _cs, _exc in ((0, ValueError), (-1, ValueError), (True, TypeError), (2.5, TypeError)):
    E(f"difficulty/chunk_size={_cs!r}", _exc, "chunk_size", hnm.difficulty, _y, _P,
      chunk_size=_cs)
E("difficulty/uint64_beyond_2**53", ValueError, "y_score", hnm.difficulty, _y,
  (_P * 2**63).astype(np.uint64))

# search_hard_pairs
_Q = PAIR_Q[:2]
_C = PAIR_C[:6]
sp = hnm.search_hard_pairs
E("pairs/queries_complex", TypeError, "queries", sp, _Q.astype(complex), _C, 1)
E("pairs/candidates_object", TypeError, "candidates", sp, _Q, _C.astype(object), 1)
E("pairs/candidates_str", TypeError, "candidates", sp, _Q, _C.astype(str), 1)
E("pairs/queries_longdouble", TypeError, "queries", sp, _Q.astype(np.longdouble), _C, 1)
E("pairs/candidates_longdouble", TypeError, "candidates", sp, _Q, _C.astype(np.longdouble), 1)
E("pairs/queries_1d", ValueError, "queries", sp, _Q[0], _C, 1)
E("pairs/queries_0d", ValueError, "queries", sp, np.float64(1), _C, 1)
E("pairs/candidates_1d", ValueError, "candidates", sp, _Q, _C[0], 1)
E("pairs/candidates_3d", ValueError, "candidates", sp, _Q, _C[:, :, None], 1)
E("pairs/dim_mismatch", ValueError, "dimension", sp, _Q, _C[:, :3], 1)
E("pairs/zero_dim", ValueError, "dimension", sp, _Q[:, :0], _C[:, :0], 1)
E("pairs/no_candidates", ValueError, "k", sp, _Q, _C[:0], 1)
E("pairs/no_candidates_band", ValueError, "band", sp, _Q, _C[:0], band=(0, None))
_CELL = np.zeros((2, 5), dtype=bool)
_CELL[1, 2] = True
_CCELL = np.zeros((6, 5), dtype=bool)
_CCELL[4, 1] = True
E("pairs/queries_nan", ValueError, "queries", sp, np.where(_CELL, np.nan, _Q), _C, 1)
E("pairs/queries_inf_f32", ValueError, "queries", sp,
  np.where(_CELL, np.inf, _Q).astype(np.float32), _C.astype(np.float32), 1)
E("pairs/candidates_nan", ValueError, "candidates", sp, _Q, np.where(_CCELL, np.nan, _C), 1)
E("pairs/candidates_-inf_noncontig", ValueError, "candidates", sp, _Q,
  _wide_view(np.where(_CCELL, -np.inf, _C)), 1)
E("pairs/candidates_nan_big_endian_f4", ValueError, "candidates", sp, _Q,
  np.where(_CCELL, np.nan, _C).astype(">f4"), 1, block_size=1)
for _k, _exc in ((0, ValueError), (-3, ValueError), (7, ValueError), (2**62, ValueError),
                 (True, TypeError), (1.0, TypeError), ("1", TypeError)):
    E(f"pairs/k={_k!r}", _exc, "k", sp, _Q, _C, _k)
E("pairs/no_k_no_band", ValueError, "k", sp, _Q, _C)
for _b, _exc in (((-1, 2), ValueError), ((2, 2), ValueError), ((0, 7), ValueError),
                 ((0.0, 2), TypeError), (2, TypeError)):
    E(f"pairs/band={_b!r}", _exc, "band", sp, _Q, _C, band=_b)
for _m in ("dot", None, "COSINE", "euclidean"):
    E(f"pairs/metric={_m!r}", ValueError, "metric", sp, _Q, _C, 1, metric=_m)
E("pairs/exclude_self_str", TypeError, "exclude_self", sp, _Q, _C, 1, exclude_self="yes")
E("pairs/exclude_self_int", TypeError, "exclude_self", sp, _Q, _C, 1, exclude_self=1)
E("pairs/exclude_self_more_queries", ValueError, "exclude_self", sp, _C, _C[:3], 1,
  exclude_self=True)
for _j, _exc in ((0, ValueError), (-1, ValueError), (1.0, TypeError), (True, TypeError),
                 ("2", TypeError)):
    E(f"pairs/n_jobs={_j!r}", _exc, "n_jobs", sp, _Q, _C, 1, n_jobs=_j)
for _bs, _exc in ((0, ValueError), (-5, ValueError), (True, TypeError), (2.0, TypeError)):
    E(f"pairs/block_size={_bs!r}", _exc, "block_size", sp, _Q, _C, 1, block_size=_bs)
for _ms in (np.nan, np.float32(np.nan), "1", True, np.array([0.5]), np.array([0.5, np.nan]),
            np.array([[0.5, 0.5]]), np.array(["a", "b"]), [0.1, 0.2, 0.3]):
    E(f"pairs/max_score={_ms!r}", (ValueError, TypeError), "max_score", sp, _Q, _C, 1,
      max_score=_ms)
E("pairs/only_query_labels", ValueError, "candidate_labels", sp, _Q, _C, 1, query_labels=[0, 1])
E("pairs/only_candidate_labels", ValueError, "query_labels", sp, _Q, _C, 1,
  candidate_labels=np.arange(6))
E("pairs/query_labels_short", ValueError, "query_labels", sp, _Q, _C, 1, query_labels=[0],
  candidate_labels=np.arange(6))
E("pairs/candidate_labels_2d", ValueError, "candidate_labels", sp, _Q, _C, 1,
  query_labels=[0, 1], candidate_labels=np.arange(6)[:, None])
E("pairs/labels_mixed_types", (ValueError, TypeError), "labels", sp, _Q, _C, 1,
  query_labels=np.array([1, "a"], dtype=object),
  candidate_labels=np.array([1, "a", 1, "a", 1, "a"], dtype=object))
E("pairs/exclude_floats", TypeError, "exclude", sp, _Q, _C, 1, exclude=[[0.5], [1.0]])
E("pairs/exclude_bools", TypeError, "exclude", sp, _Q, _C, 1, exclude=np.array([True, False]))
E("pairs/exclude_out_of_range", ValueError, "exclude", sp, _Q, _C, 1, exclude=[[6], [0]])
E("pairs/exclude_negative", ValueError, "exclude", sp, _Q, _C, 1, exclude=[[-1], [0]])
E("pairs/exclude_short", ValueError, "exclude", sp, _Q, _C, 1, exclude=[[1]])
E("pairs/exclude_array_short", ValueError, "exclude", sp, _Q, _C, 1, exclude=np.array([1]))
E("pairs/exclude_csr_bad_indptr", ValueError, "exclude", sp, _Q, _C, 1,
  exclude=(np.array([0, 2, 1]), np.array([0, 1])))
E("pairs/exclude_csr_wrong_length", ValueError, "exclude", sp, _Q, _C, 1,
  exclude=(np.array([0, 1]), np.array([0])))
E("pairs/exclude_scalar", TypeError, "exclude", sp, _Q, _C, 1, exclude=3)
E("pairs/exclude_string", TypeError, "exclude", sp, _Q, _C, 1, exclude="ab")

# mine_hard_negatives
_MQ, _MC = MINE_Q[:3], MINE_C[:12]
_MP = np.arange(3)
mh = hnm.mine_hard_negatives
for _n, _exc in ((0, ValueError), (-1, ValueError), (True, TypeError), (2.0, TypeError),
                 (None, TypeError)):
    E(f"mine/k={_n!r}", _exc, "k must be", mh, _MQ, _MP, _MC, k=_n)
E("mine/k_over_band", ValueError, "k=4 is larger than the number of ranks in band", mh, _MQ,
  _MP, _MC, k=4, band=(0, 3))
E("mine/random_to_the_end", ValueError, "pass a finite stop", mh, _MQ, _MP, _MC,
  sampling="random")
for _b, _exc in (((-1, None), ValueError), ((3, 1), ValueError), (5, TypeError),
                 ((0.5, None), TypeError), ((0, 0), ValueError), ((0, 1, 2), TypeError)):
    E(f"mine/band={_b!r}", _exc, "band", mh, _MQ, _MP, _MC, k=1, band=_b)
for _name, _val, _exc in (("absolute_margin", -1, ValueError),
                          ("absolute_margin", np.nan, ValueError),
                          ("absolute_margin", "x", TypeError),
                          ("relative_margin", 2, ValueError),
                          ("relative_margin", -0.1, ValueError),
                          ("relative_margin", True, TypeError),
                          ("max_score", np.nan, (ValueError, TypeError)),
                          ("max_score", "1", TypeError), ("min_score", True, TypeError),
                          ("min_score", np.array([0.1, 0.2, 0.3]), (ValueError, TypeError)),
                          ("easy_ratio", -1, ValueError), ("easy_ratio", np.inf, ValueError),
                          ("easy_ratio", None, TypeError), ("sampling", "foo", ValueError),
                          ("output", "pairs", ValueError), ("metric", "dot", ValueError),
                          ("block_size", 0, ValueError), ("block_size", 1.5, TypeError)):
    E(f"mine/{_name}={_val!r}", _exc, _name, mh, _MQ, _MP, _MC, **{_name: _val})
E("mine/queries_nan", ValueError, "queries", mh, np.where(_MQ > 1, np.nan, _MQ), _MP, _MC)
_MCELL = np.zeros(_MC.shape, dtype=bool)
_MCELL[10, 3] = True  # not a positive's row
E("mine/candidates_inf", ValueError, "candidates", mh, _MQ, _MP, np.where(_MCELL, np.inf, _MC))
E("mine/candidates_nan_in_a_positive", ValueError, "candidates|positives", mh, _MQ, _MP,
  np.where(np.roll(_MCELL, -9, axis=0), np.nan, _MC))
E("mine/candidates_1d", ValueError, "candidates", mh, _MQ, _MP, _MC[0])
E("mine/queries_3d", ValueError, "queries", mh, _MQ[:, :, None], _MP, _MC)
E("mine/candidates_complex", TypeError, "candidates", mh, _MQ, _MP, _MC.astype(complex))
E("mine/queries_object", TypeError, "queries", mh, _MQ.astype(object), _MP, _MC)
E("mine/dim_mismatch", ValueError, "dimension", mh, _MQ[:, :4], _MP, _MC)
E("mine/positives_float_ids", TypeError, "positives", mh, _MQ, np.array([0.0, 1, 2]), _MC)
E("mine/positives_bool", TypeError, "positives", mh, _MQ, np.array([True, False, True]), _MC)
E("mine/positives_out_of_range", ValueError, "positives", mh, _MQ, np.array([0, 1, 12]), _MC)
E("mine/positives_negative", ValueError, "positives", mh, _MQ, np.array([0, -1, 2]), _MC)
E("mine/positives_short", ValueError, "positives", mh, _MQ, np.array([0, 1]), _MC)
E("mine/positives_empty_row", ValueError, "positive", mh, _MQ, [[0], [], [2]], _MC)
E("mine/positive_embeddings_shape", ValueError, "positive", mh, _MQ, np.zeros((3, 5)), _MC)
E("mine/positive_embeddings_nan", ValueError, "positive", mh, _MQ,
  np.where(_MQ > 0.5, np.nan, _MQ), _MC)
E("mine/positive_embeddings_inf_ip", ValueError, "positive", mh, _MQ,
  np.where(_MQ > 0.5, np.inf, _MQ), _MC, metric="ip")
E("mine/positives_scalar", TypeError, "positives", mh, _MQ, 3, _MC)
E("mine/positives_none", TypeError, "positives", mh, _MQ, None, _MC)
E("mine/exclude_scalar", TypeError, "exclude", mh, _MQ, _MP, _MC, exclude=3)
E("mine/exclude_out_of_range", ValueError, "exclude", mh, _MQ, _MP, _MC,
  exclude=[[1], [99], []])
E("mine/empty_corpus", ValueError, "positives", mh, _MQ, _MP, _MC[:0])

# selection
E("select_hardest/nan", ValueError, "difficulty", sel.select_hardest, _nan, 1)
E("select_hardest/nan_fraction", ValueError, "difficulty", sel.select_hardest, _nan,
  fraction=0.5)
E("select_hardest/2d", ValueError, "difficulty", sel.select_hardest, _x2, 1)
E("select_hardest/0d", ValueError, "difficulty", sel.select_hardest, np.float64(1), 1)
E("select_hardest/complex", TypeError, "difficulty", sel.select_hardest, _x.astype(complex), 1)
E("select_hardest/str", TypeError, "difficulty", sel.select_hardest, np.array(["a"]), 1)
E("select_hardest/k_and_fraction", ValueError, "fraction", sel.select_hardest, _x, 2,
  fraction=0.5)
E("select_hardest/neither", ValueError, "fraction", sel.select_hardest, _x)
for _k, _exc in ((0, ValueError), (11, ValueError), (True, TypeError), (2.0, TypeError)):
    E(f"select_hardest/k={_k!r}", _exc, "k", sel.select_hardest, _x, _k)
E("select_hardest/k_past_guard", ValueError, "k", sel.select_hardest, _x, 5, noise_fraction=0.6)
E("select_hardest/band_past_guard", ValueError, "band", sel.select_hardest, _x, band=(1, 5),
  noise_fraction=0.6)
E("select_hardest/k_and_band", ValueError, "band", sel.select_hardest, _x, 2, band=(0, 2))
E("select_hardest/empty_k1", ValueError, "k", sel.select_hardest, np.zeros(0), 1)
for _f, _exc in ((0, ValueError), (1.5, ValueError), (np.nan, ValueError), (True, TypeError),
                 ("0.5", TypeError)):
    E(f"select_hardest/fraction={_f!r}", _exc, "fraction", sel.select_hardest, _x, fraction=_f)
for _mk, _exc in ((-1, ValueError), (True, TypeError), (1.0, TypeError)):
    E(f"select_hardest/min_keep={_mk!r}", _exc, "min_keep", sel.select_hardest, _x,
      fraction=0.5, min_keep=_mk)
for _b, _exc in (((-1, 3), ValueError), ((True, 3), TypeError), ((1.5, 3), TypeError),
                 ((0, 11), ValueError), ((3, 3), ValueError), (3, TypeError)):
    E(f"select_hardest/band={_b!r}", _exc, "band", sel.select_hardest, _x, band=_b)
for _nf, _exc in ((1.0, ValueError), (-0.1, ValueError), (np.nan, ValueError),
                  ("x", TypeError), (True, TypeError)):
    E(f"select_hardest/noise_fraction={_nf!r}", _exc, "noise_fraction", sel.select_hardest,
      _x, 1, noise_fraction=_nf)
    E(f"sample_by_difficulty/noise_fraction={_nf!r}", _exc, "noise_fraction",
      sel.sample_by_difficulty, _x, 1, noise_fraction=_nf)
E("sample_by_difficulty/nan", ValueError, "difficulty", sel.sample_by_difficulty, _nan, 1)
E("sample_by_difficulty/inf", ValueError, "difficulty", sel.sample_by_difficulty,
  np.array([1.0, np.inf]), 1)
E("sample_by_difficulty/2d", ValueError, "difficulty", sel.sample_by_difficulty, _x2, 1)
E("sample_by_difficulty/object", TypeError, "difficulty", sel.sample_by_difficulty,
  _x.astype(object), 1)
for _k, _exc in ((0, ValueError), (11, ValueError), (True, TypeError), (None, TypeError),
                 (1.0, TypeError)):
    E(f"sample_by_difficulty/k={_k!r}", _exc, "k", sel.sample_by_difficulty, _x, _k)
E("sample_by_difficulty/k_past_noise", ValueError, "k", sel.sample_by_difficulty, _x, 9,
  noise_fraction=0.2)
E("sample_by_difficulty/empty", ValueError, "k", sel.sample_by_difficulty, np.zeros(0), 1)
for _t, _exc in ((0, ValueError), (-1, ValueError), (np.nan, ValueError), (np.inf, ValueError),
                 ("1", TypeError), (True, TypeError), (None, TypeError)):
    E(f"sample_by_difficulty/temperature={_t!r}", _exc, "temperature",
      sel.sample_by_difficulty, _x, 1, temperature=_t)
    E(f"difficulty_weights/temperature={_t!r}", _exc, "temperature", sel.difficulty_weights,
      _x, method="softmax", temperature=_t)
E("blend_easy/float_indices", TypeError, "hard_indices", sel.blend_easy, [0.5, 1.0], 5, 1)
E("blend_easy/bool_indices", TypeError, "hard_indices", sel.blend_easy,
  np.array([True, False]), 5, 1)
E("blend_easy/object_indices", TypeError, "hard_indices", sel.blend_easy,
  np.array([1, 2], dtype=object), 5, 1)
E("blend_easy/2d_indices", TypeError, "hard_indices", sel.blend_easy, [[1, 2]], 5, 1)
E("blend_easy/out_of_range", ValueError, "hard_indices", sel.blend_easy, [1, 5], 5, 1)
E("blend_easy/negative", ValueError, "hard_indices", sel.blend_easy, [-1, 2], 5, 1)
E("blend_easy/uint64_huge", ValueError, "hard_indices", sel.blend_easy,
  np.array([2**63], np.uint64), 5, 1)
E("blend_easy/duplicates", ValueError, "hard_indices", sel.blend_easy, [1, 1], 5, 1)
for _n, _exc in ((-1, ValueError), (True, TypeError), (5.0, TypeError), (None, TypeError)):
    E(f"blend_easy/n_samples={_n!r}", _exc, "n_samples", sel.blend_easy, [1], _n, 1)
for _r, _exc in ((-1, ValueError), (np.nan, TypeError), (1.5, TypeError),
                 ("1", TypeError), (True, TypeError), (4, ValueError)):
    E(f"blend_easy/k={_r!r}", _exc, "k", sel.blend_easy, [1, 2], 5, _r)
E("select_semi_hard/nan", ValueError, "margins", sel.select_semi_hard, _nan, 1.0)
E("select_semi_hard/2d", ValueError, "margins", sel.select_semi_hard, _x2, 1.0)
E("select_semi_hard/complex", TypeError, "margins", sel.select_semi_hard, _x.astype(complex),
  1.0)
for _mg, _exc in ((0, ValueError), (-1, ValueError), (np.nan, ValueError), (np.inf, ValueError),
                  (True, TypeError), ("1", TypeError)):
    E(f"select_semi_hard/margin={_mg!r}", _exc, "margin", sel.select_semi_hard, _x, _mg)
for _k, _exc in ((0, ValueError), (True, TypeError), (1.5, TypeError)):
    E(f"select_semi_hard/k={_k!r}", _exc, "k", sel.select_semi_hard, _x, 1.0, k=_k)
cw = sel.curriculum_window
for _ri, _exc in ((-1, ValueError), (4, ValueError), (True, TypeError), (1.0, TypeError),
                  (None, TypeError)):
    E(f"curriculum_window/round_index={_ri!r}", _exc, "round_index", cw, _ri, 4)
for _nr, _exc in ((0, ValueError), (-2, ValueError), (True, TypeError), (2.0, TypeError)):
    E(f"curriculum_window/n_rounds={_nr!r}", _exc, "n_rounds", cw, 0, _nr)
for _sf, _exc in ((0, ValueError), (1.5, ValueError), (np.nan, ValueError), (True, TypeError),
                  ("0.5", TypeError)):
    E(f"curriculum_window/start_fraction={_sf!r}", _exc, "start_fraction", cw, 0, 4,
      start_fraction=_sf)
for _w, _exc in ((0, ValueError), (1.5, ValueError), (-0.2, ValueError), ("x", TypeError),
                 (True, TypeError)):
    E(f"curriculum_window/width={_w!r}", _exc, "width", cw, 1, 4, width=_w)
for _name, _p, _exc in (("foo", "foo", ValueError), ("None", None, ValueError),
                        ("returns_2", lambda t: 2.0, ValueError),
                        ("returns_nan", lambda t: float("nan"), ValueError),
                        ("returns_0", lambda t: 0.0, ValueError),
                        ("returns_str", lambda t: "x", TypeError),
                        ("returns_None", lambda t: None, TypeError)):
    E(f"curriculum_window/pacing_{_name}", _exc, "pacing", cw, 1, 4, pacing=_p)
qw = sel.select_quantile_window
E("select_quantile_window/nan", ValueError, "difficulty", qw, _nan, 0.0, 0.5)
E("select_quantile_window/2d", ValueError, "difficulty", qw, _x2, 0.0, 0.5)
E("select_quantile_window/object", TypeError, "difficulty", qw, _x.astype(object), 0.0, 0.5)
for _lo, _exc in ((-0.1, ValueError), (1.0, ValueError), (np.nan, ValueError),
                  (True, TypeError), ("0", TypeError)):
    E(f"select_quantile_window/low={_lo!r}", _exc, "low", qw, _x, _lo, 1.0)
for _hi, _exc in ((0.0, ValueError), (1.5, ValueError), (None, TypeError)):
    E(f"select_quantile_window/high={_hi!r}", _exc, "high", qw, _x, 0.0, _hi)
E("select_quantile_window/low_ge_high", ValueError, "low", qw, _x, 0.5, 0.5)
dw = sel.difficulty_weights
E("difficulty_weights/nan", ValueError, "difficulty", dw, _nan)
E("difficulty_weights/inf", ValueError, "difficulty", dw, np.array([1.0, np.inf]))
E("difficulty_weights/2d", ValueError, "difficulty", dw, _x2)
E("difficulty_weights/complex", TypeError, "difficulty", dw, _x.astype(complex))
E("difficulty_weights/negative_power", ValueError, "difficulty", dw, np.array([1.0, -0.5]))
for _m in ("foo", None, "POWER"):
    E(f"difficulty_weights/method={_m!r}", ValueError, "method", dw, _x, method=_m)
for _g, _exc in ((-1, ValueError), (np.nan, ValueError), (True, TypeError), ("2", TypeError)):
    E(f"difficulty_weights/gamma={_g!r}", _exc, "gamma", dw, _x, gamma=_g)
for _mw, _exc in ((1.0, ValueError), (-0.1, ValueError), (True, TypeError)):
    E(f"difficulty_weights/min_weight={_mw!r}", _exc, "min_weight", dw, _x, min_weight=_mw)


# estimators
def _resample(X, y, **kw):
    d = kw.pop("sample_difficulty", None)
    return hnm.HardNegativeResampler(random_state=0, **kw).fit_resample(X, y,
                                                                        sample_difficulty=d)


_RX, _RY = RS_X, RS_Y
E("resampler/X_nan", ValueError, r"\bX\b", _resample, np.where(_RX > 1.5, np.nan, _RX), _RY)
E("resampler/X_inf_nearmiss", ValueError, r"\bX\b", _resample,
  np.where(_RX > 1.5, np.inf, _RX), _RY, difficulty="nearmiss")
E("resampler/X_3d", ValueError, "dim 3", _resample, _RX[:, :, None], _RY)
E("resampler/X_complex", ValueError, "Complex", _resample, _RX.astype(complex), _RY)
E("resampler/X_empty", ValueError, "0 sample", _resample, _RX[:0], _RY[:0])
E("resampler/y_single_class", ValueError, r"\by\b|'y'", _resample, _RX, np.zeros(40, int))
E("resampler/y_mismatch", ValueError, "inconsistent numbers of samples", _resample, _RX,
  _RY[:30])
E("resampler/y_continuous", ValueError, "label type", _resample, _RX, RS_D + 0.5)
E("resampler/sample_difficulty_nan", ValueError, "sample_difficulty", _resample, _RX, _RY,
  sample_difficulty=np.where(RS_D > 3, np.nan, RS_D))
E("resampler/sample_difficulty_inf", ValueError, "sample_difficulty", _resample, _RX, _RY,
  sample_difficulty=np.where(RS_D > 3, np.inf, RS_D))
E("resampler/sample_difficulty_short", ValueError, "sample_difficulty", _resample, _RX, _RY,
  sample_difficulty=RS_D[:10])
E("resampler/sample_difficulty_2d", ValueError, "sample_difficulty", _resample, _RX, _RY,
  sample_difficulty=RS_D[:, None])
E("resampler/sample_difficulty_str", TypeError, "sample_difficulty", _resample, _RX, _RY,
  sample_difficulty=RS_D.astype(str))
for _name, _val in (("noise_fraction", 1.5), ("n_neighbors", 0), ("easy_ratio", -1),
                    ("selection", "foo"), ("difficulty", "foo"), ("temperature", 0),
                    ("band", (-1, None)), ("n_processes", 0)):
    E(f"resampler/{_name}={_val!r}", ValueError, _name, _resample, _RX, _RY, **{_name: _val})


def _mine_fit(X, y, **kw):
    return hnm.HardMiningClassifier(LogisticRegression(), n_rounds=2, random_state=0,
                                    **kw).fit(X, y)


def _mine_predict(X):
    return _mine_fit(HMC_X, HMC_Y).predict(X)


E("classifier/X_nan", ValueError, r"\bX\b", _mine_fit, np.where(HMC_X > 2, np.nan, HMC_X), HMC_Y)
E("classifier/X_inf", ValueError, r"\bX\b", _mine_fit, np.where(HMC_X > 2, np.inf, HMC_X), HMC_Y)
E("classifier/X_3d", ValueError, "dim 3", _mine_fit, HMC_X[:, :, None], HMC_Y)
E("classifier/y_single_class", ValueError, r"\by\b", _mine_fit, HMC_X, np.zeros(80, int))
E("classifier/y_mismatch", ValueError, "inconsistent numbers of samples", _mine_fit, HMC_X,
  HMC_Y[:50])
E("classifier/y_continuous", ValueError, "label type", _mine_fit, HMC_X, HMC_X[:, 0])
E("classifier/n_rounds=-1", ValueError, "n_rounds", lambda X, y: hnm.HardMiningClassifier(
    n_rounds=-1).fit(X, y), HMC_X, HMC_Y)
E("classifier/negative_classes_unknown", ValueError, "negative_classes", _mine_fit, HMC_X, HMC_Y,
  negative_classes=[7])
E("classifier/weighting_power_margin", ValueError, "weighting", _mine_fit, HMC_X, HMC_Y,
  weighting="power")
E("classifier/batch_size=0", ValueError, "batch_size", _mine_fit, HMC_X, HMC_Y, batch_size=0)
E("classifier/predict_nan", ValueError, r"\bX\b", _mine_predict, np.where(HMC_X > 2, np.nan,
                                                                        HMC_X))
E("classifier/predict_wrong_features", ValueError, "features", _mine_predict, HMC_X[:, :2])
E("classifier/predict_unfitted", ValueError, "not fitted",
  lambda X: hnm.HardMiningClassifier().predict(X), HMC_X)

# metrics
hcr = hmetrics.hard_case_report
E("hard_case_report/y_score_nan", ValueError, "y_score", hcr, HCR_Y,
  np.where(HCR_S > 0.9, np.nan, HCR_S))
E("hard_case_report/y_score_inf", ValueError, "y_score", hcr, HCR_Y,
  np.where(HCR_S > 0.9, np.inf, HCR_S))
E("hard_case_report/y_score_2d", ValueError, "y_score", hcr, HCR_Y, np.c_[HCR_S, HCR_S])
E("hard_case_report/y_score_object", TypeError, "y_score", hcr, HCR_Y, HCR_S.astype(object))
E("hard_case_report/y_true_short", ValueError, "y_true", hcr, HCR_Y[:5], HCR_S)
E("hard_case_report/y_true_2d", ValueError, "y_true", hcr, HCR_Y[:, None], HCR_S)
E("hard_case_report/three_classes", ValueError, "y_true", hcr, np.arange(40) % 3, HCR_S)
E("hard_case_report/mixed_type_labels", (ValueError, TypeError), "y_true", hcr,
  np.array([0, "a"] * 20, dtype=object), HCR_S)
for _bd in (0, -0.1, np.nan):
    E(f"hard_case_report/near_threshold={_bd!r}", ValueError, "near_threshold", hcr, HCR_Y,
      HCR_S, near_threshold=_bd)
E("hard_case_report/near_threshold_str", TypeError, "near_threshold", hcr, HCR_Y, HCR_S,
  near_threshold="x")
E("hard_case_report/threshold_nan", ValueError, "threshold", hcr, HCR_Y, HCR_S,
  threshold=np.nan)
E("hard_case_report/threshold_str", TypeError, "threshold", hcr, HCR_Y, HCR_S,
  threshold="x")
for _hf, _exc in ((0, ValueError), (1.5, ValueError), (True, TypeError)):
    E(f"hard_case_report/hard_fraction={_hf!r}", _exc, "hard_fraction", hcr, HCR_Y, HCR_S,
      hard_fraction=_hf)
E("hard_case_report/hard_indices_float", TypeError, "hard_indices", hcr, HCR_Y, HCR_S,
  hard_indices=[0.5])
E("hard_case_report/hard_indices_out_of_range", ValueError, "hard_indices", hcr, HCR_Y, HCR_S,
  hard_indices=[40])
E("hard_case_report/hard_indices_2d", TypeError, "hard_indices", hcr, HCR_Y, HCR_S,
  hard_indices=[[1]])
E("hard_case_report/both_hard_sets", ValueError, "hard_indices", hcr, HCR_Y, HCR_S,
  hard_indices=[1], difficulty=HCR_D)
E("hard_case_report/difficulty_nan", ValueError, "difficulty", hcr, HCR_Y, HCR_S,
  difficulty=np.where(HCR_D > 2, np.nan, HCR_D))
E("hard_case_report/difficulty_short", ValueError, "difficulty", hcr, HCR_Y, HCR_S,
  difficulty=HCR_D[:4])
fd = hmetrics.feature_diagnosis
E("feature_diagnosis/X_1d", ValueError, r"\bX\b", fd, FD_X[:, 0], FD_Y, FD_HARD)
E("feature_diagnosis/X_3d", ValueError, r"\bX\b", fd, FD_X[:, :, None], FD_Y, FD_HARD)
E("feature_diagnosis/X_object", TypeError, r"\bX\b", fd, FD_X.astype(object), FD_Y, FD_HARD)
E("feature_diagnosis/X_complex", TypeError, r"\bX\b", fd, FD_X.astype(complex), FD_Y, FD_HARD)
E("feature_diagnosis/y_short", ValueError, r"\by\b", fd, FD_X, FD_Y[:5], FD_HARD)
E("feature_diagnosis/hard_empty", ValueError, "hard_indices", fd, FD_X, FD_Y, [])
E("feature_diagnosis/hard_float", (ValueError, TypeError), "hard_indices", fd, FD_X,
  FD_Y, [1.0])
E("feature_diagnosis/hard_out_of_range", ValueError, "hard_indices", fd, FD_X, FD_Y,
  [60])
E("feature_diagnosis/hard_negative", ValueError, "hard_indices", fd, FD_X, FD_Y, [-1])
E("feature_diagnosis/hard_positive", ValueError, "hard_indices", fd, FD_X, FD_Y, [0])
E("feature_diagnosis/single_class", ValueError, "positives", fd, FD_X, np.zeros(60, int),
  FD_HARD)
E("feature_diagnosis/all_negatives_hard", ValueError, "easy negatives", fd, FD_X, FD_Y,
  np.flatnonzero(FD_Y == 0))
E("feature_diagnosis/feature_names_short", ValueError, "feature_names", fd, FD_X, FD_Y,
  FD_HARD, feature_names=["a"])
for _t, _exc in ((0, ValueError), (True, TypeError), (1.0, TypeError)):
    E(f"feature_diagnosis/k={_t!r}", _exc, r"\bk\b", fd, FD_X, FD_Y, FD_HARD, k=_t)


# round 2 (issue #17): missing labels are named, not counted as one more label
_P3 = np.array([[0.2, 0.5, 0.3], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8], [0.3, 0.3, 0.4]])
for _name, _y in (("nan", np.array([0, 1, 2, np.nan])),
                  ("none", np.array([0, 1, 2, None], object)),
                  ("str_none", np.array(["a", "b", "c", None], object)),
                  ("nat", np.array(["2020-01-01", "2020-01-02", "2020-01-03", "NaT"], "M8[D]"))):
    E(f"difficulty/y_true_missing_{_name}", ValueError, "y_true contains missing labels",
      hnm.difficulty, _y, _P3)
    E(f"difficulty/y_true_missing_{_name}_labels", ValueError, "y_true contains missing",
      hnm.difficulty, _y, _P3, labels=[0, 1, 2])


# estimators: a class with one sample cannot be scored out of fold
_Xe = np.random.default_rng(3).standard_normal((40, 3))
for _name, _ye in (("int", (np.arange(40) == 3).astype(int)),
                   ("str", np.where(np.arange(40) == 3, "pos", "neg"))):
    E(f"HardNegativeResampler/single_sample_class_{_name}", ValueError,
      "single sample.*sample_difficulty", hnm.HardNegativeResampler(random_state=0).fit_resample,
      _Xe, _ye)


@pytest.mark.parametrize("exc,match,fn,args,kwargs", ERRORS)
def test_documented_error(exc, match, fn, args, kwargs):
    guard = Unmodified(args, kwargs)
    with pytest.raises(exc, match=match):
        fn(*args, **kwargs)
    guard.check()


# =========================================================== property fuzz
FUZZ_DTYPES = ("<f8", "<f4", "<f2", ">f8", ">f4", "<i8", "<i4", "|u1", "|b1", "<u8")
FUZZ_LAYOUTS = ("c", "noncontig", "negstride", "fortran")
FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])


def _layout(arr, layout):
    if arr.ndim == 0 or arr.size == 0 or layout == "c":
        return arr
    if layout == "noncontig":
        return _wide_view(arr)
    if layout == "negstride":
        return _reverse_view(arr)
    return np.asfortranarray(arr)


def _elements(dt, *, safe_big=None):
    dt = np.dtype(dt)
    if dt.kind == "b":
        return st.booleans()
    if dt.kind in "iu":
        info = np.iinfo(dt)
        lo, hi = int(info.min), int(info.max)
        if safe_big is not None:
            lo, hi = max(lo, -safe_big), min(hi, safe_big)
        return st.one_of(st.integers(max(lo, -3), min(hi, 3)), st.integers(lo, hi),
                         st.sampled_from([lo, hi]))
    fin = np.finfo(dt)
    width = 8 * dt.itemsize
    big = float(fin.max) if safe_big is None else float(dt.type(min(float(fin.max), safe_big)))
    specials = [0.0, -0.0, 1.0, -1.0, np.nan, np.inf, -np.inf, big, -big,
                float(fin.smallest_subnormal), -float(fin.smallest_subnormal),
                float(fin.smallest_normal), float(fin.tiny) * 3]
    return st.one_of(st.sampled_from(specials),
                     st.floats(-100, 100, width=width),
                     st.floats(-big, big, width=width, allow_subnormal=True))


@st.composite
def hostile_arrays(draw, dtypes=FUZZ_DTYPES, min_dims=1, max_dims=2, max_side=9, min_side=0,
                   safe_big=None):
    dt = np.dtype(draw(st.sampled_from(dtypes)))
    shape = draw(hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side,
                                  max_side=max_side))
    arr = draw(hnp.arrays(dt, shape, elements=_elements(dt, safe_big=safe_big)))
    return _layout(arr, draw(st.sampled_from(FUZZ_LAYOUTS)))


def _int_beyond_float(x):
    a = np.asarray(x)
    if a.dtype.kind not in "iu" or a.size == 0:
        return False
    return any(abs(int(v)) > 2**53 for v in (a.max(), a.min()))


def _expect(fn, offenders, check, optional=False):
    """Offenders non-empty: a ValueError/TypeError naming one of them (or, if
    ``optional``, the reference result); no offenders: ``check`` must pass."""
    if offenders:
        pattern = "|".join(sorted(offenders))
        try:
            fn()
        except (ValueError, TypeError) as exc:
            assert re.search(pattern, str(exc)), f"error {exc!r} does not name {pattern}"
            return
        if optional:
            check()
            return
        raise AssertionError(f"no error although {pattern} is invalid")
    check()


@FUZZ
@given(x=hostile_arrays(max_dims=3), data=st.data())
def test_fuzz_topk(x, data):
    axis = data.draw(st.sampled_from([None, -1, 0])) if x.ndim == 2 else None
    n = x.size if axis is None else x.shape[axis]
    kw = dict(largest=data.draw(st.booleans()),
              nan_policy=data.draw(st.sampled_from(["raise", "omit"])),
              chunk_size=data.draw(st.sampled_from([None, 1, 3, 64])), axis=axis)
    offenders = set()
    if data.draw(st.booleans()):
        k = data.draw(st.integers(-1, n + 2))
        kw["k"] = k
        if not 1 <= k <= n:
            offenders.add("k")
    else:
        start = data.draw(st.integers(-1, n + 1))
        stop = data.draw(st.one_of(st.none(), st.integers(-1, n + 2)))
        kw["band"] = (start, stop)
        stop_eff = n if stop is None else stop
        if start < 0 or (stop is not None and stop < 1) or stop_eff > n or start >= stop_eff:
            offenders.add("band")
    if not offenders:
        if _int_beyond_float(x):
            offenders.add("scores")
        elif kw["nan_policy"] == "raise" and np.isnan(clean64(x)).any():
            offenders.add("scores")
    guard = Unmodified(x)
    _expect(lambda: hnm.topk(x, **kw), offenders, lambda: check_topk(x, **kw))
    guard.check()


def _proba_invalid_rows(S):
    a = clean64(S)
    if a.ndim == 1:
        return ~((a >= 0) & (a <= 1))
    with np.errstate(invalid="ignore"):
        return ~(((a >= 0) & (a <= 1)).all(axis=1) & (np.abs(a.sum(axis=1) - 1) <= 1e-3))


@FUZZ
@given(S=hostile_arrays(max_side=7), data=st.data())
def test_fuzz_difficulty(S, data):
    measure = data.draw(st.sampled_from(MEASURES))
    n = S.shape[0]
    n_col = S.shape[1] if S.ndim == 2 else 2
    offenders = set()
    labels = None
    if measure == "entropy" and data.draw(st.booleans()):
        y = None
    else:
        y = data.draw(hnp.arrays(np.int64, n, elements=st.integers(0, max(n_col - 1, 0))))
        if n_col and data.draw(st.booleans()):
            labels = np.arange(n_col)
            # (unknown labels with the label-free measure: test_documented_error)
            if n and measure != "entropy" and data.draw(st.booleans()):
                y = y.copy()
                y[data.draw(st.integers(0, n - 1))] = n_col + 3  # a label not in labels
                offenders.add("y_true|labels")
        elif np.unique(y).size != n_col:
            offenders.add("y_true")
    if S.ndim == 2 and n_col < 2 and measure != "entropy":
        offenders.add("y_score")
    if _int_beyond_float(S):
        offenders.add("y_score")
    a = clean64(S)
    if not np.isfinite(a).all():
        offenders.add("y_score")
    if measure in ("log_loss", "confidence", "entropy") and _proba_invalid_rows(S).any():
        offenders.add("y_score")
    chunk = data.draw(st.sampled_from([None, 1, 4]))
    guard = Unmodified(S, y)
    # no rows: labels that cannot be inferred may raise or give the empty result
    _expect(lambda: hnm.difficulty(y, S, measure=measure, labels=labels, chunk_size=chunk),
            offenders, lambda: check_difficulty(y, S, measure=measure, labels=labels,
                                                chunk_size=chunk),
            optional=n == 0 and offenders == {"y_true"})
    guard.check()


PAIR_DTYPES = ("<f8", "<f4", "<f2", ">f8", ">f4", "<i8", "<i4", "|u1", "|b1")


@FUZZ
@given(data=st.data())
def test_fuzz_search_hard_pairs(data):
    dim = data.draw(st.integers(1, 6))
    n_q = data.draw(st.integers(0, 5))
    n_c = data.draw(st.integers(0, 9))
    dq = np.dtype(data.draw(st.sampled_from(PAIR_DTYPES)))
    dc = np.dtype(data.draw(st.sampled_from(PAIR_DTYPES)))
    wide = _compute_dtype(np.zeros(0, dq), np.zeros(0, dc))
    # magnitudes whose true scores stay finite in the computing dtype
    big = 1e150 if wide == np.float64 else 1e18

    def draw_arr(dt, rows):
        arr = data.draw(hnp.arrays(dt, (rows, dim), elements=_elements(
            dt, safe_big=int(2**40) if dt.kind in "iu" else big)))
        return _layout(arr, data.draw(st.sampled_from(FUZZ_LAYOUTS)))

    Q, C = draw_arr(dq, n_q), draw_arr(dc, n_c)
    metric = data.draw(st.sampled_from(["cosine", "ip", "l2"]))
    kw = dict(metric=metric, block_size=data.draw(st.sampled_from([None, 1, 4])),
              n_jobs=data.draw(st.sampled_from([None, 1, 2])))
    offenders = set()
    k = None
    if data.draw(st.booleans()):
        k = data.draw(st.integers(-1, n_c + 1))
        if not 1 <= k <= n_c:
            offenders.add("k")
    else:
        start = data.draw(st.integers(0, n_c))
        kw["band"] = (start, None)
        if start >= n_c:
            offenders.add("band")
    if data.draw(st.booleans()):
        kw["exclude_self"] = True
        if n_q > n_c and not offenders:
            offenders.add("exclude_self")
    if not offenders:
        if not np.isfinite(clean64(Q)).all():
            offenders.add("queries")
        if not np.isfinite(clean64(C)).all():
            offenders.add("candidates")
    guard = Unmodified(Q, C)
    _expect(lambda: hnm.search_hard_pairs(Q, C, k, **kw), offenders,
            lambda: check_pairs(Q, C, k, **kw))
    guard.check()


# ====================================== round 2 (issue #17): pandas inputs
_PR = np.random.default_rng(17)
_PS = _PR.random(50)
_PM = _PR.random((30, 4))
_PY = np.array([0, 1, 2] * 10)
_PP = _PR.random((30, 3))
_PP /= _PP.sum(1, keepdims=True)
_PQ = _PR.standard_normal((6, 5))
_PC = _PR.standard_normal((40, 5))
_PX = _PR.standard_normal((80, 3))
_PYB = (_PX[:, 0] > 0.6).astype(int)


def _pandas_cases(pd):
    """(id, call on pandas inputs, the same call on numpy inputs)."""
    f8 = pd.DataFrame(_PM).astype("Float64")
    cases = [
        ("topk/Series", lambda: hnm.topk(pd.Series(_PS), 5), lambda: hnm.topk(_PS, 5)),
        ("topk/Series_index", lambda: hnm.topk(pd.Series(_PS, index=np.arange(50)[::-1]), 5),
         lambda: hnm.topk(_PS, 5)),  # positions, never the index labels
        ("topk/Float64", lambda: hnm.topk(pd.Series(_PS, dtype="Float64"), 5),
         lambda: hnm.topk(_PS, 5)),
        ("topk/Int64", lambda: hnm.topk(pd.Series(np.arange(50) % 7, dtype="Int64"), 5),
         lambda: hnm.topk(np.arange(50) % 7, 5)),
        ("topk/DataFrame_rows", lambda: hnm.topk(pd.DataFrame(_PM), 2, axis=1),
         lambda: hnm.topk(_PM, 2, axis=1)),
        ("topk/DataFrame_Float64", lambda: hnm.topk(f8, 2, axis=1),
         lambda: hnm.topk(_PM, 2, axis=1)),
        ("difficulty/Series_DataFrame",
         lambda: hnm.difficulty(pd.Series(_PY), pd.DataFrame(_PP)),
         lambda: hnm.difficulty(_PY, _PP)),
        ("difficulty/Int64_y", lambda: hnm.difficulty(pd.Series(_PY, dtype="Int64"), _PP),
         lambda: hnm.difficulty(_PY, _PP)),
        ("difficulty/categorical_y",
         lambda: hnm.difficulty(pd.Series(pd.Categorical(np.array(list("abc"))[_PY])), _PP,
                                labels=["a", "b", "c"]),
         lambda: hnm.difficulty(_PY, _PP)),
        ("difficulty/string_y_log_loss",
         lambda: hnm.difficulty(pd.Series(np.array(list("abc"))[_PY]), _PP,
                                measure="log_loss", labels=["a", "b", "c"]),
         lambda: hnm.difficulty(_PY, _PP, measure="log_loss")),
        ("search_hard_pairs/DataFrames",
         lambda: hnm.search_hard_pairs(pd.DataFrame(_PQ), pd.DataFrame(_PC), 4),
         lambda: hnm.search_hard_pairs(_PQ, _PC, 4)),
        ("mine_hard_negatives/DataFrame_Series",
         lambda: hnm.mine_hard_negatives(pd.DataFrame(_PQ), pd.Series(np.arange(6)),
                                         pd.DataFrame(_PC), k=2),
         lambda: hnm.mine_hard_negatives(_PQ, np.arange(6), _PC, k=2)),
        ("HardNegativeResampler/pandas_X_y",
         lambda: hnm.HardNegativeResampler(random_state=0).fit_resample(
             pd.DataFrame(_PX, columns=list("abc")), pd.Series(_PYB)),
         lambda: hnm.HardNegativeResampler(random_state=0).fit_resample(_PX, _PYB)),
        ("HardNegativeResampler/nearmiss_pandas",
         lambda: hnm.HardNegativeResampler(difficulty="nearmiss", random_state=0)
         .fit_resample(pd.DataFrame(_PX), pd.Series(_PYB)),
         lambda: hnm.HardNegativeResampler(difficulty="nearmiss", random_state=0)
         .fit_resample(_PX, _PYB)),
        ("HardMiningClassifier/pandas_y",
         lambda: hnm.HardMiningClassifier(LogisticRegression(), n_rounds=2, random_state=0)
         .fit(pd.DataFrame(_PX), pd.Series(_PYB)).predict_proba(_PX),
         lambda: hnm.HardMiningClassifier(LogisticRegression(), n_rounds=2, random_state=0)
         .fit(_PX, _PYB).predict_proba(_PX)),
        ("HardMiningClassifier/string_y",
         lambda: hnm.HardMiningClassifier(LogisticRegression(), n_rounds=2, random_state=0)
         .fit(_PX, np.where(_PYB, "pos", "neg")).predict_proba(_PX),
         lambda: hnm.HardMiningClassifier(LogisticRegression(), n_rounds=2, random_state=0)
         .fit(_PX, _PYB).predict_proba(_PX)),
    ]
    return cases


_PANDAS_IDS = ["topk/Series", "topk/Series_index", "topk/Float64", "topk/Int64",
               "topk/DataFrame_rows", "topk/DataFrame_Float64", "difficulty/Series_DataFrame",
               "difficulty/Int64_y", "difficulty/categorical_y", "difficulty/string_y_log_loss",
               "search_hard_pairs/DataFrames", "mine_hard_negatives/DataFrame_Series",
               "HardNegativeResampler/pandas_X_y", "HardNegativeResampler/nearmiss_pandas",
               "HardMiningClassifier/pandas_y", "HardMiningClassifier/string_y"]


def _as_arrays(r):
    if isinstance(r, np.ndarray):
        return [r]
    if hasattr(r, "_asdict"):
        return [np.asarray(v) for v in r]
    if isinstance(r, tuple):
        return [np.asarray(v) for v in r]
    return [np.asarray(getattr(r, f)) for f in ("query", "positive", "negative", "score")]


@pytest.mark.parametrize("cid", _PANDAS_IDS)
def test_pandas_inputs_give_the_numpy_answer(cid):
    pd = pytest.importorskip("pandas")
    cases = {c[0]: c[1:] for c in _pandas_cases(pd)}
    assert set(cases) == set(_PANDAS_IDS)
    on_pandas, on_numpy = cases[cid]
    got, want = _as_arrays(on_pandas()), _as_arrays(on_numpy())
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        np.testing.assert_array_equal(g, w)


_PANDAS_ERRORS = [
    ("topk/Float64_NA", lambda pd: hnm.topk(pd.Series([0.1, None, 0.5], dtype="Float64"), 1),
     ValueError, "scores contains NaN"),
    ("topk/Float64_frame_NA",
     lambda pd: hnm.topk(pd.DataFrame(_PM).astype("Float64").mask(pd.DataFrame(_PM) > 0.9),
                         1, axis=1),
     ValueError, "scores contains NaN"),
    ("search_hard_pairs/Float64_frame_NA",
     lambda pd: hnm.search_hard_pairs(
         pd.DataFrame(_PQ).astype("Float64").mask(pd.DataFrame(_PQ) > 1), _PC, 2),
     ValueError, "queries contain NaN"),
    ("difficulty/Float64_frame_NA",
     lambda pd: hnm.difficulty(_PY, pd.DataFrame(_PP).astype("Float64").mask(
         pd.DataFrame(_PP) > 0.5)),
     ValueError, "y_score contains NaN"),
    ("topk/datetime_Series", lambda pd: hnm.topk(pd.Series(pd.date_range("2020", periods=3)), 1),
     TypeError, "scores"),
    ("difficulty/Int64_NA_y",
     lambda pd: hnm.difficulty(pd.Series([0, 1, None], dtype="Int64"), _PP[:3]),
     ValueError, "y_true contains missing labels"),
    ("difficulty/categorical_NA_y",
     lambda pd: hnm.difficulty(pd.Series(pd.Categorical(["a", None, "c"])), _PP[:3]),
     ValueError, "y_true contains missing labels"),
    ("mine_hard_negatives/Int64_NA_positives",
     lambda pd: hnm.mine_hard_negatives(_PQ, pd.Series([0, 1, None, 3, 4, 5], dtype="Int64"),
                                        _PC, k=2),
     TypeError, "positives"),
    ("HardNegativeResampler/one_class_pandas",
     lambda pd: hnm.HardNegativeResampler().fit_resample(pd.DataFrame(_PX),
                                                         pd.Series(np.zeros(80, int))),
     ValueError, "class"),
    ("HardMiningClassifier/one_class_str",
     lambda pd: hnm.HardMiningClassifier(LogisticRegression()).fit(_PX, np.full(80, "neg")),
     ValueError, "one class"),
]


@pytest.mark.parametrize("cid,call,exc,match", _PANDAS_ERRORS,
                         ids=[e[0] for e in _PANDAS_ERRORS])
def test_pandas_bad_inputs_raise_naming_the_problem(cid, call, exc, match):
    pd = pytest.importorskip("pandas")
    with pytest.raises(exc, match=match):
        call(pd)
