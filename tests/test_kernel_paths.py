"""The run-time dispatched kernels (src_ext/_rowmax.h) against the numpy
references on both paths: AVX-512 where the CPU has it, and the portable one."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import hnm
import refs_selection
from hnm import _scoring, _topk


@pytest.fixture(params=["avx512", "portable"])
def kernel_path(request):
    if request.param == "avx512" and not _topk.AVX512_SUPPORTED:
        pytest.skip("this CPU has no AVX-512")
    before = (_topk.use_avx512(request.param == "avx512"),
              _scoring.use_avx512(request.param == "avx512"))
    yield request.param
    _topk.use_avx512(before[0])
    _scoring.use_avx512(before[1])


def test_the_switch_reports_and_restores():
    before = _topk.use_avx512()
    assert _topk.use_avx512(False) == before and _topk.use_avx512() is False
    _topk.use_avx512(True)
    assert _topk.use_avx512() == _topk.AVX512_SUPPORTED
    _topk.use_avx512(before)


@given(n=st.integers(1, 3000), k=st.integers(1, 40), largest=st.booleans(),
       dtype=st.sampled_from([np.float32, np.float64]),
       ties=st.booleans(), nans=st.integers(0, 5), chunk=st.sampled_from([7, 64, 1000, None]),
       n_jobs=st.sampled_from([1, 2]), data=st.data())
def test_flat_topk_screen_matches_reference(n, k, largest, dtype, ties, nans, chunk, n_jobs,
                                            data, kernel_path):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    x = rng.standard_normal(n)
    if ties:
        x = x.round(0)  # many equal keys: the smaller index must win at the root too
    x = x.astype(dtype)
    x[rng.integers(0, n, nans)] = np.nan
    k = min(k, n)
    got = hnm.topk(x, k, largest=largest, nan_policy="omit", chunk_size=chunk, n_jobs=n_jobs)
    values, indices = refs_selection.topk(x, k, largest=largest)
    np.testing.assert_array_equal(got.indices, indices)
    np.testing.assert_array_equal(got.values.astype(np.float64), values)
    if nans:
        with pytest.raises(ValueError, match="NaN"):
            hnm.topk(x, k, largest=largest, chunk_size=chunk, n_jobs=n_jobs)


@given(rows=st.integers(1, 30), cols=st.integers(1, 200), k=st.integers(1, 10),
       largest=st.booleans(), dtype=st.sampled_from([np.float32, np.float64]),
       data=st.data())
def test_row_topk_screen_matches_reference(rows, cols, k, largest, dtype, data, kernel_path):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    x = rng.integers(-5, 6, size=(rows, cols)).astype(dtype)
    k = min(k, cols)
    got = hnm.topk(x, k, axis=1, largest=largest)
    values, indices = refs_selection.topk(x, k, axis=1, largest=largest)
    np.testing.assert_array_equal(got.indices, indices)
    np.testing.assert_array_equal(got.values.astype(np.float64), values)


@pytest.mark.parametrize("value", [np.inf, -np.inf])
def test_infinite_scores_are_ranked(value, kernel_path):
    x = np.zeros(1000, dtype=np.float32)
    x[[3, 700]] = value
    top = hnm.topk(x, 2, largest=value > 0)
    np.testing.assert_array_equal(top.indices, [3, 700])
