import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp
from threadpoolctl import threadpool_limits

import hnm
from hnm._openmp_helpers import openmp_max_threads


def reference_topk(x, start, stop, largest=True, axis=None):
    """Plain numpy: stable order on (-key, index), NaN excluded, padded with (NaN, -1)."""
    x = np.asarray(x)
    if axis is None:
        flat = x.reshape(-1).astype(np.float64)
        keys = flat if largest else -flat
        valid = np.flatnonzero(~np.isnan(keys))
        order = valid[np.lexsort((valid, -keys[valid]))][:stop]
        idx = np.full(stop, -1, dtype=np.intp)
        idx[: order.size] = order
        vals = np.where(idx >= 0, flat[np.maximum(idx, 0)], np.nan)
        return vals[start:], idx[start:]
    if axis == 0:
        x = x.T
    rows = [reference_topk(row, start, stop, largest) for row in x]
    return (np.array([r[0] for r in rows]).reshape(len(rows), -1),
            np.array([r[1] for r in rows], dtype=np.intp).reshape(len(rows), -1))


def assert_same(result, expected):
    vals, idx = expected
    np.testing.assert_array_equal(result.indices, idx)
    np.testing.assert_array_equal(result.values.astype(np.float64), vals)


# Values drawn from a small pool so that ties are frequent.
tie_pool = st.sampled_from([-np.inf, -2.0, -0.0, 0.0, 0.5, 1.0, 3.0, np.inf])
scores_1d = hnp.arrays(
    dtype=st.sampled_from([np.float32, np.float64]),
    shape=st.integers(1, 300),
    elements=st.one_of(tie_pool, st.floats(-1e6, 1e6, width=32)),
)


@given(x=scores_1d, data=st.data())
def test_flat_matches_reference_for_any_chunking_and_threads(x, data):
    k = data.draw(st.integers(1, x.size))
    largest = data.draw(st.booleans())
    chunk = data.draw(st.integers(1, 64))
    threads = data.draw(st.sampled_from([1, 2]))
    with threadpool_limits(threads, user_api="openmp"):
        result = hnm.topk(x, k, largest=largest, chunk_size=chunk)
    assert_same(result, reference_topk(x, 0, k, largest))
    assert result.values.dtype == x.dtype and result.indices.dtype == np.intp


@given(x=scores_1d, data=st.data())
def test_band_matches_reference(x, data):
    stop = data.draw(st.integers(1, x.size))
    start = data.draw(st.integers(0, stop - 1))
    chunk = data.draw(st.integers(1, 64))
    largest = data.draw(st.booleans())
    result = hnm.topk(x, band=(start, stop), largest=largest, chunk_size=chunk)
    assert_same(result, reference_topk(x, start, stop, largest))


@given(
    x=hnp.arrays(np.float64, st.integers(1, 200),
                 elements=st.one_of(tie_pool, st.just(np.nan))),
    data=st.data(),
)
def test_nan_omit_never_selects_nan_and_pads(x, data):
    k = data.draw(st.integers(1, x.size))
    chunk = data.draw(st.integers(1, 32))
    largest = data.draw(st.booleans())
    result = hnm.topk(x, k, nan_policy="omit", chunk_size=chunk, largest=largest)
    assert_same(result, reference_topk(x, 0, k, largest))
    if np.isnan(x).any():
        with pytest.raises(ValueError, match="NaN"):
            hnm.topk(x, k, chunk_size=chunk)


@given(
    x=hnp.arrays(st.sampled_from([np.float32, np.float64]),
                 hnp.array_shapes(min_dims=2, max_dims=2, max_side=40),
                 elements=st.one_of(tie_pool, st.floats(-100, 100, width=32), st.just(np.nan))),
    data=st.data(),
)
def test_rows_match_reference(x, data):
    axis = data.draw(st.sampled_from([-1, 0, 1]))
    n = x.shape[axis]
    stop = data.draw(st.integers(1, n))
    start = data.draw(st.integers(0, stop - 1))
    largest = data.draw(st.booleans())
    chunk = data.draw(st.integers(1, 200))
    threads = data.draw(st.sampled_from([1, 2]))
    with threadpool_limits(threads, user_api="openmp"):
        result = hnm.topk(x, band=(start, stop), axis=axis, largest=largest,
                          chunk_size=chunk, nan_policy="omit")
    assert_same(result, reference_topk(x, start, stop, largest, axis=axis % 2))


@given(
    x=hnp.arrays(st.sampled_from([np.float32, np.float64, np.float16]),
                 hnp.array_shapes(min_dims=1, max_dims=3, max_side=12),
                 elements=st.floats(-50, 50, width=16)),
    data=st.data(),
)
def test_any_shape_flattens_in_c_order(x, data):
    k = data.draw(st.integers(1, x.size))
    chunk = data.draw(st.integers(1, 50))
    result = hnm.topk(x, k, chunk_size=chunk)
    assert_same(result, reference_topk(x, 0, k))
    assert result.values.dtype == x.dtype


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.uint16, np.uint64, bool])
def test_integer_and_bool_scores_are_exact(dtype, rng):
    x = rng.integers(0, 100, size=1000).astype(dtype)
    result = hnm.topk(x, 37, chunk_size=64)
    assert_same(result, reference_topk(x, 0, 37))
    assert result.values.dtype == x.dtype


def test_big_int64_refused_rather_than_rounded():
    x = np.array([2**53 + 1, 2**53, 5], dtype=np.int64)
    with pytest.raises(ValueError, match="2\\*\\*53"):
        hnm.topk(x, 1)


@pytest.mark.parametrize("order", [">f4", ">f8"])
def test_byte_swapped_input(order, rng):
    x = rng.standard_normal(500).astype(order)
    assert_same(hnm.topk(x, 20, chunk_size=33), reference_topk(x, 0, 20))


@pytest.mark.parametrize("make", [
    lambda a: a[::-3],
    lambda a: a.reshape(20, 50).T,            # Fortran order, flattened in C order
    lambda a: a.reshape(20, 50)[:, ::2],
])
def test_non_contiguous_inputs(make, rng):
    x = make(rng.standard_normal(1000))
    for chunk in (1, 7, 10**6):
        assert_same(hnm.topk(x, 15, chunk_size=chunk), reference_topk(x, 0, 15))
        if x.ndim == 2:
            assert_same(hnm.topk(x, 3, axis=-1, chunk_size=chunk),
                        reference_topk(x, 0, 3, axis=1))


def test_read_only_memmap_is_streamed_and_untouched(as_memmap, rng):
    a = rng.standard_normal(50_000).astype(np.float32)
    a[::97] = 1.5  # ties
    mm = as_memmap(a)
    assert not mm.flags.writeable
    for chunk in (1000, 4099, None):
        assert_same(hnm.topk(mm, 500, chunk_size=chunk), reference_topk(a, 0, 500))
    rows = as_memmap(a.reshape(500, 100))
    assert_same(hnm.topk(rows, 7, axis=-1), reference_topk(a.reshape(500, 100), 0, 7, axis=1))
    np.testing.assert_array_equal(np.asarray(mm), a)


def test_input_is_never_modified(rng):
    x = rng.standard_normal((30, 40))
    x[3, 5] = np.nan
    before = x.copy()
    hnm.topk(x, 10, nan_policy="omit")
    hnm.topk(x, 10, axis=-1, nan_policy="omit", largest=False)
    np.testing.assert_array_equal(x, before)


def test_larger_chunks_than_input_and_k_equals_n(rng):
    x = rng.standard_normal(100)
    assert_same(hnm.topk(x, 100, chunk_size=10**9), reference_topk(x, 0, 100))


def test_lists_are_accepted():
    assert hnm.topk([1, 3, 2], 2).indices.tolist() == [1, 2]


def test_rows_with_zero_rows():
    result = hnm.topk(np.empty((0, 5)), 2, axis=1)
    assert result.values.shape == (0, 2) and result.indices.shape == (0, 2)


def test_band_stop_none_means_all(rng):
    x = rng.standard_normal(50)
    assert_same(hnm.topk(x, band=(45, None)), reference_topk(x, 45, 50))


def test_threadpoolctl_controls_kernel_threads():
    with threadpool_limits(1, user_api="openmp"):
        assert openmp_max_threads() == 1


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(k=0), ValueError, "k must be >= 1"),
    (dict(k=-3), ValueError, "k must be >= 1"),
    (dict(k=11), ValueError, "k=11 is larger"),
    (dict(k=2.0), TypeError, "k must be an integer"),
    (dict(k=True), TypeError, "k must be an integer"),
    (dict(), ValueError, "exactly one of k and band"),
    (dict(k=2, band=(0, 2)), ValueError, "exactly one of k and band"),
    (dict(band=(3, 3)), ValueError, "start < stop"),
    (dict(band=(0, 11)), ValueError, "band stop=11"),
    (dict(band=(-1, 3)), ValueError, "band start must be >= 0"),
    (dict(band=5), TypeError, "band must be a"),
    (dict(k=2, nan_policy="ignore"), ValueError, "nan_policy"),
    (dict(k=2, chunk_size=0), ValueError, "chunk_size"),
    (dict(k=2, axis=2), ValueError, "axis 2 is out of bounds"),
    (dict(k=2, axis=1.0), TypeError, "axis must be"),
    (dict(k=2, largest="yes"), TypeError, "largest must be a bool"),
])
def test_bad_arguments_name_the_argument(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        hnm.topk(np.arange(10.0), **kwargs)


@pytest.mark.parametrize("scores, exc, match", [
    (np.array(1.0), ValueError, "at least 1-D"),
    (np.array([1 + 2j, 3j]), TypeError, "real"),
    (np.array(["a", "b"]), TypeError, "real"),
    (np.array([1.0, None], dtype=object), TypeError, "real"),
    (np.empty(0), ValueError, "larger than the number of scores \\(0\\)"),
    (np.ones(3, dtype=np.longdouble), TypeError, "not supported"),
])
def test_bad_scores(scores, exc, match):
    if np.dtype(np.longdouble).itemsize == 8 and scores.dtype == np.longdouble:
        pytest.skip("long double is float64 on this platform")
    with pytest.raises(exc, match=match):
        hnm.topk(scores, 1)


def test_3d_with_axis_is_refused():
    with pytest.raises(ValueError, match="axis must be None"):
        hnm.topk(np.ones((2, 3, 4)), 1, axis=-1)


LAYOUTS = ["contiguous", "reversed", "strided", "fortran", "read-only", "memmap"]


def make_layout(a, layout, as_memmap):
    """The same values as ``a`` (2-D) in another memory layout."""
    if layout == "contiguous":
        return a
    if layout == "reversed":  # negative strides
        return np.ascontiguousarray(a[::-1, ::-1])[::-1, ::-1]
    if layout == "strided":
        wide = np.repeat(a, 2, axis=1)
        return wide[:, ::2]
    if layout == "fortran":
        return np.asfortranarray(a)
    if layout == "read-only":
        b = a.copy()
        b.flags.writeable = False
        return b
    return as_memmap(a)


@given(
    a=hnp.arrays(st.sampled_from([np.float32, np.float64]),
                 hnp.array_shapes(min_dims=2, max_dims=2, max_side=30),
                 elements=st.one_of(tie_pool, st.floats(-10, 10, width=32))),
    layout=st.sampled_from(LAYOUTS),
    data=st.data(),
)
def test_layouts_give_identical_results(a, layout, as_memmap, data):
    x = make_layout(a, layout, as_memmap)
    np.testing.assert_array_equal(np.asarray(x), a)
    chunk = data.draw(st.integers(1, 100))
    k = data.draw(st.integers(1, a.size))
    assert_same(hnm.topk(x, k, chunk_size=chunk), reference_topk(a, 0, k))
    kr = data.draw(st.integers(1, a.shape[1]))
    assert_same(hnm.topk(x, kr, axis=-1, chunk_size=chunk, largest=False),
                reference_topk(a, 0, kr, largest=False, axis=1))
