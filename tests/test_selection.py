import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp
from threadpoolctl import threadpool_limits

import hnm
import refs_selection as refs
from hnm._openmp_helpers import openmp_max_threads


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
    assert_same(result, refs.topk(x, band=(0, k), largest=largest))
    assert result.values.dtype == x.dtype and result.indices.dtype == np.intp


@given(x=scores_1d, data=st.data())
def test_band_matches_reference(x, data):
    stop = data.draw(st.integers(1, x.size))
    start = data.draw(st.integers(0, stop - 1))
    chunk = data.draw(st.integers(1, 64))
    largest = data.draw(st.booleans())
    result = hnm.topk(x, band=(start, stop), largest=largest, chunk_size=chunk)
    assert_same(result, refs.topk(x, band=(start, stop), largest=largest))


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
    assert_same(result, refs.topk(x, band=(0, k), largest=largest))
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
    assert_same(result, refs.topk(x, band=(start, stop), largest=largest, axis=axis % 2))


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
    assert_same(result, refs.topk(x, band=(0, k)))
    assert result.values.dtype == x.dtype


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.uint16, np.uint64, bool])
def test_integer_and_bool_scores_are_exact(dtype, rng):
    x = rng.integers(0, 100, size=1000).astype(dtype)
    result = hnm.topk(x, 37, chunk_size=64)
    assert_same(result, refs.topk(x, band=(0, 37)))
    assert result.values.dtype == x.dtype


def test_big_int64_refused_rather_than_rounded():
    x = np.array([2**53 + 1, 2**53, 5], dtype=np.int64)
    with pytest.raises(ValueError, match="2\\*\\*53"):
        hnm.topk(x, 1)


@pytest.mark.parametrize("order", [">f4", ">f8"])
def test_byte_swapped_input(order, rng):
    x = rng.standard_normal(500).astype(order)
    assert_same(hnm.topk(x, 20, chunk_size=33), refs.topk(x, band=(0, 20)))


@pytest.mark.parametrize("make", [
    lambda a: a[::-3],
    lambda a: a.reshape(20, 50).T,            # Fortran order, flattened in C order
    lambda a: a.reshape(20, 50)[:, ::2],
])
def test_non_contiguous_inputs(make, rng):
    x = make(rng.standard_normal(1000))
    for chunk in (1, 7, 10**6):
        assert_same(hnm.topk(x, 15, chunk_size=chunk), refs.topk(x, band=(0, 15)))
        if x.ndim == 2:
            assert_same(hnm.topk(x, 3, axis=-1, chunk_size=chunk),
                        refs.topk(x, band=(0, 3), axis=1))


def test_read_only_memmap_is_streamed_and_untouched(as_memmap, rng):
    a = rng.standard_normal(50_000).astype(np.float32)
    a[::97] = 1.5  # ties
    mm = as_memmap(a)
    assert not mm.flags.writeable
    for chunk in (1000, 4099, None):
        assert_same(hnm.topk(mm, 500, chunk_size=chunk), refs.topk(a, band=(0, 500)))
    rows = as_memmap(a.reshape(500, 100))
    assert_same(hnm.topk(rows, 7, axis=-1), refs.topk(a.reshape(500, 100), band=(0, 7), axis=1))
    np.testing.assert_array_equal(np.asarray(mm), a)


def test_input_is_never_modified(rng):
    x = rng.standard_normal((30, 40))
    x[3, 5] = np.nan
    before = x.copy()
    hnm.topk(x, 10, nan_policy="omit")
    hnm.topk(x, 10, axis=-1, nan_policy="omit", largest=False)
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("axis", [None, 1])
def test_at_most_takes_all_instead_of_raising(axis, rng):
    x = rng.standard_normal((3, 5))
    n = x.size if axis is None else 5
    with pytest.raises(ValueError, match=rf"k={n + 1} is larger than the number of scores "
                                         rf"\({n}\); pass at_most=True"):
        hnm.topk(x, n + 1, axis=axis)
    assert_same(hnm.topk(x, n + 1, axis=axis, at_most=True),
                refs.topk(x, band=(0, n), axis=axis))
    empty = hnm.topk(np.empty(0), 3, at_most=True)
    assert empty.indices.shape == (0,) and empty.indices.dtype == np.intp


def test_check_k_is_the_one_how_many_rule():
    from hnm._ranking import check_k, check_k_band
    assert check_k(3, 5) == 3 and check_k(np.int64(5), 5) == 5
    assert check_k(7, 5, at_most=True) == 5 and check_k(2, 0, at_most=True) == 0
    with pytest.raises(ValueError, match=r"k=7 is larger than the number of rows \(5\); "
                                         r"pass at_most=True to take all of them\."):
        check_k(7, 5, what="rows")
    with pytest.raises(ValueError, match="k must be >= 1"):
        check_k(0, 5, at_most=True)
    with pytest.raises(TypeError, match="k must be an integer"):
        check_k(2.0, 5)
    with pytest.raises(TypeError, match="at_most must be a bool"):
        check_k(2, 5, at_most=None)
    assert check_k_band(9, None, 4, at_most=True) == (0, 4)
    assert check_k_band(None, (1, None), 4, at_most=True) == (1, 4)


def test_larger_chunks_than_input_and_k_equals_n(rng):
    x = rng.standard_normal(100)
    assert_same(hnm.topk(x, 100, chunk_size=10**9), refs.topk(x, band=(0, 100)))


def test_lists_are_accepted():
    assert hnm.topk([1, 3, 2], 2).indices.tolist() == [1, 2]


def test_rows_with_zero_rows():
    result = hnm.topk(np.empty((0, 5)), 2, axis=1)
    assert result.values.shape == (0, 2) and result.indices.shape == (0, 2)


def test_band_stop_none_means_all(rng):
    x = rng.standard_normal(50)
    assert_same(hnm.topk(x, band=(45, None)), refs.topk(x, band=(45, 50)))


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
    (np.ones(3, dtype=np.longdouble), TypeError, "scores has dtype"),
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
    assert_same(hnm.topk(x, k, chunk_size=chunk), refs.topk(a, band=(0, k)))
    kr = data.draw(st.integers(1, a.shape[1]))
    assert_same(hnm.topk(x, kr, axis=-1, chunk_size=chunk, largest=False),
                refs.topk(a, band=(0, kr), largest=False, axis=1))


# ---------------------------------------------------------------- strategies
from hnm.selection import (  # noqa: E402
    blend_easy,
    curriculum_window,
    difficulty_weights,
    importance_sample,
    sample_by_difficulty,
    select_hardest,
    select_quantile_window,
    select_semi_hard,
)


@given(
    d=hnp.arrays(np.float64, st.integers(1, 200), elements=st.one_of(tie_pool, st.floats(-5, 5))),
    data=st.data(),
)
def test_select_hardest_is_a_band_of_the_ranking(d, data):
    q = data.draw(st.sampled_from([0.0, 0.05, 0.3]))
    left = d.size - int(q * d.size)
    start = data.draw(st.integers(0, left - 1))
    for kw in (dict(k=data.draw(st.integers(1, left))),
               dict(band=(start, data.draw(st.none() | st.integers(start + 1, left)))),
               dict(fraction=data.draw(st.floats(0.01, 1.0)), min_keep=data.draw(
                   st.integers(0, 5))),
               # at_most: the count or the band cut at what is left, possibly empty
               dict(k=data.draw(st.integers(1, left + 5)), at_most=True),
               dict(band=(left + 1, left + 3), at_most=True),
               dict(band=(start, left + 5), at_most=True)):
        np.testing.assert_array_equal(select_hardest(d, noise_fraction=q, **kw),
                                      refs.select_hardest(d, noise_fraction=q, **kw), str(kw))


def test_select_hardest_fraction_and_min_keep():
    d = np.arange(100.0)
    np.testing.assert_array_equal(select_hardest(d, fraction=0.031), [99, 98, 97, 96])
    assert select_hardest(d, fraction=0.01, min_keep=5).size == 5
    # the fraction is capped by what the guards leave
    assert select_hardest(d, fraction=1.0, noise_fraction=0.1).size == 90


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(), ValueError, "exactly one of k, fraction and band"),
    (dict(k=3, fraction=0.5), ValueError, "exactly one of k, fraction and band"),
    (dict(k=3, band=(0, 3)), ValueError, "exactly one of k, fraction and band"),
    (dict(fraction=0.5, band=(0, 3)), ValueError, "exactly one of k, fraction and band"),
    (dict(k=9), ValueError, r"k=9 is larger than the number of examples left after "
                            r"the noise guard dropped 0 of 8 \(8\); pass at_most=True"),
    (dict(k=7, noise_fraction=0.25), ValueError, r"k=7 is larger .* dropped 2 of 8 \(6\)"),
    (dict(band=(1, 7), noise_fraction=0.25), ValueError,
     r"band stop=7 is larger than the number of examples left after the noise guard "
     r"dropped 2 of 8 \(6\); pass at_most=True"),
    (dict(band=(6, None), noise_fraction=0.25), ValueError, r"start < stop, got \(6, 6\)"),
    (dict(band=(3, 3), at_most=True), ValueError, r"start < stop, got \(3, 3\)"),
    (dict(band=(-1, 3)), ValueError, "band start must be >= 0"),
    (dict(band=3), TypeError, r"band must be a \(start, stop\) pair"),
    (dict(k=2, at_most="yes"), TypeError, "at_most must be a bool"),
    (dict(fraction=0.0), ValueError, "fraction must be in \\(0, 1\\]"),
    (dict(fraction=1.5), ValueError, "fraction must be in"),
    (dict(k=1, noise_fraction=1.0), ValueError, "noise_fraction must be in \\[0, 1\\)"),
    (dict(fraction=0.5, min_keep=-1), ValueError, "min_keep must be >= 0"),
])
def test_select_hardest_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        select_hardest(np.arange(8.0), **kwargs)


def test_at_most_across_the_selection_api():
    d = np.array([0.5, 3.0, 1.0, 2.0])
    np.testing.assert_array_equal(select_hardest(d, 9, at_most=True), [1, 3, 2, 0])
    np.testing.assert_array_equal(select_hardest(d, band=(2, 9), at_most=True), [2, 0])
    assert select_hardest(d, band=(4, None), at_most=True).size == 0
    np.testing.assert_array_equal(hnm.topk(d, band=(3, 8), at_most=True).indices, [0])
    got = sample_by_difficulty(d, 9, noise_fraction=0.25, at_most=True, random_state=0)
    np.testing.assert_array_equal(np.sort(got), [0, 2, 3])
    idx, w = importance_sample(d, 9, at_most=True, random_state=0)
    np.testing.assert_array_equal(idx, [0, 1, 2, 3])
    np.testing.assert_array_equal(w, 1.0)
    with pytest.raises(ValueError, match="k=9 is larger than the number of examples \\(4\\)"):
        importance_sample(d, 9)


@given(d=hnp.arrays(np.float64, st.integers(1, 120), elements=st.one_of(
    tie_pool.filter(np.isfinite), st.floats(-5, 5))), data=st.data())
def test_sample_by_difficulty_is_the_gumbel_top_k_of_the_reference(d, data):
    q = data.draw(st.sampled_from([0.0, 0.1]))
    kw = dict(k=data.draw(st.integers(1, d.size - int(q * d.size))), noise_fraction=q,
              temperature=data.draw(st.sampled_from([0.1, 1.0, 7.0])),
              random_state=data.draw(st.integers(0, 2**31)))
    np.testing.assert_array_equal(sample_by_difficulty(d, **kw), refs.sample_by_difficulty(d, **kw))


def test_sample_by_difficulty_is_reproducible_and_without_replacement(rng):
    d = rng.standard_normal(500)
    a = sample_by_difficulty(d, 50, random_state=3)
    np.testing.assert_array_equal(a, sample_by_difficulty(d, 50, random_state=3))
    assert np.unique(a).size == 50
    assert not np.array_equal(a, sample_by_difficulty(d, 50, random_state=4))


def test_sample_by_difficulty_temperature_limits(rng):
    d = rng.permutation(200).astype(float)
    cold = sample_by_difficulty(d, 20, temperature=1e-3, random_state=0)
    np.testing.assert_array_equal(np.sort(cold), np.sort(refs.ranking(d)[:20]))
    # very hot: every example about equally likely to be drawn first
    firsts = np.array([sample_by_difficulty(d[:5], 1, temperature=1e9, random_state=s)[0]
                       for s in range(3000)])
    np.testing.assert_allclose(np.bincount(firsts, minlength=5) / 3000, 0.2, atol=0.03)


def test_sample_by_difficulty_follows_softmax_probabilities():
    d = np.log([1.0, 2.0, 3.0, 4.0])  # exp(d) / sum = 0.1, 0.2, 0.3, 0.4
    firsts = np.array([sample_by_difficulty(d, 1, random_state=s)[0] for s in range(4000)])
    np.testing.assert_allclose(np.bincount(firsts, minlength=4) / 4000,
                               [0.1, 0.2, 0.3, 0.4], atol=0.03)


def test_sample_by_difficulty_noise_guard_excludes_the_hardest(rng):
    d = rng.standard_normal(100)
    hardest = refs.ranking(d)[:10]
    for seed in range(20):
        got = sample_by_difficulty(d, 90, noise_fraction=0.1, temperature=5.0, random_state=seed)
        assert not np.isin(hardest, got).any()


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(k=0), ValueError, "k must be >= 1"),
    (dict(k=11), ValueError, "k=11 is larger"),
    (dict(k=10, noise_fraction=0.2), ValueError, r"k=10 is larger .* dropped 2 of 10 \(8\)"),
    (dict(k=2, temperature=0), ValueError, "temperature must be a finite number > 0"),
    (dict(k=2, temperature=-1.0), ValueError, "temperature"),
    (dict(k=2, temperature=np.inf), ValueError, "temperature"),
])
def test_sample_by_difficulty_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        sample_by_difficulty(np.arange(10.0), **kwargs)


def test_sample_by_difficulty_refuses_non_finite():
    with pytest.raises(ValueError, match="difficulty contains NaN"):
        sample_by_difficulty([1.0, np.nan, 2.0], 1)


@given(n=st.integers(0, 60), data=st.data())
def test_blend_easy_matches_the_reference_draw(n, data):
    hard = data.draw(st.lists(st.integers(0, max(n - 1, 0)), unique=True, max_size=n)
                     if n else st.just([]))
    k = data.draw(st.integers(0, n - len(hard)))
    seed = data.draw(st.integers(0, 2**31))
    got = blend_easy(np.array(hard, dtype=np.intp), n, k, random_state=seed)
    indices, is_hard = refs.blend_easy(hard, n, k, random_state=seed)
    np.testing.assert_array_equal(got.indices, indices)
    np.testing.assert_array_equal(got.is_hard, is_hard)


def test_blend_easy_adds_distinct_easy_examples():
    b = blend_easy(np.array([3, 9, 4]), 50, 12, random_state=0)
    assert b.indices.size == 15 and b.is_hard.sum() == 3
    np.testing.assert_array_equal(b.indices[:3], [3, 9, 4])
    assert np.unique(b.indices).size == 15
    assert not np.isin(b.indices[3:], [3, 9, 4]).any()
    np.testing.assert_array_equal(
        b.indices, blend_easy([3, 9, 4], 50, 12, random_state=0).indices)
    assert blend_easy([1], 5, 0).indices.tolist() == [1]
    assert blend_easy([], 5, 3).indices.size == 3
    # at_most: every other example when fewer than k are left
    assert sorted(blend_easy([1], 5, 9, at_most=True).indices.tolist()) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("args, exc, match", [
    (([1, 1], 10, 1), ValueError, "duplicates"),
    (([1, 10], 10, 1), ValueError, "must lie in \\[0, 10\\)"),
    (([-1], 10, 1), ValueError, "must lie in"),
    (([1, 2], 10, -1), ValueError, "k must be >= 0"),
    (([1, 2], 10, 0.5), TypeError, "k must be an integer"),
    (([1, 2], 10, 9), ValueError, r"k=9 is larger than the number of examples not in "
                                  r"hard_indices \(8\); pass at_most=True"),
    (([0.5], 10, 1), TypeError, "integers"),
])
def test_blend_easy_bad_arguments(args, exc, match):
    with pytest.raises(exc, match=match):
        blend_easy(*args)


@given(m=hnp.arrays(np.float64, st.integers(0, 100), elements=st.one_of(
    tie_pool, st.floats(-2, 2))), margin=st.floats(0.01, 3), data=st.data())
def test_select_semi_hard_matches_reference(m, margin, data):
    expected = refs.select_semi_hard(m, margin)
    k = data.draw(st.none() | st.integers(1, 120))
    if k is not None and k > m.size:
        # the static count is checked against the margins given, the filter's
        # shortfall is not
        with pytest.raises(ValueError, match=f"k={k} is larger than the number of margins"):
            select_semi_hard(m, margin, k=k)
        got = select_semi_hard(m, margin, k=k, at_most=True)
    else:
        got = select_semi_hard(m, margin, k=k)
    np.testing.assert_array_equal(got, expected[:k])


def test_select_semi_hard_bad_arguments():
    with pytest.raises(ValueError, match="margin must be a finite number > 0"):
        select_semi_hard([0.1], 0.0)
    with pytest.raises(ValueError, match="margins contains NaN"):
        select_semi_hard([0.1, np.nan], 1.0)


@pytest.mark.parametrize("kw", [dict(), dict(pacing="root"), dict(pacing="geometric",
                                start_fraction=0.5), dict(width=0.25), dict(width=1.0),
                                dict(pacing=lambda t: 0.5 + t / 2)])
def test_curriculum_window_matches_the_reference(kw):
    for n_rounds in (1, 2, 5):
        for r in range(n_rounds):
            np.testing.assert_allclose(curriculum_window(r, n_rounds, **kw),
                                       refs.curriculum_window(r, n_rounds, **kw), atol=1e-11)


@pytest.mark.parametrize("pacing", ["linear", "root", "geometric", lambda t: 0.1 + 0.9 * t**2])
def test_curriculum_grows_from_easy_to_everything(pacing):
    windows = [curriculum_window(r, 6, pacing=pacing, start_fraction=0.1) for r in range(6)]
    highs = [hi for _, hi in windows]
    assert all(lo == 0.0 for lo, _ in windows)
    assert highs[0] == pytest.approx(0.1) and highs[-1] == 1.0
    assert all(a < b for a, b in zip(highs, highs[1:]))


def test_curriculum_sliding_window_moves_to_the_hardest():
    windows = [curriculum_window(r, 3, start_fraction=0.2, width=0.2) for r in range(3)]
    assert windows == [(0.0, 0.2), (0.4, 0.6), (0.8, 1.0)]
    assert curriculum_window(0, 1) == (0.0, 1.0)


@pytest.mark.parametrize("args, kwargs, exc, match", [
    ((3, 3), {}, ValueError, "round_index must be <= 2"),
    ((0, 0), {}, ValueError, "n_rounds must be >= 1"),
    ((0, 3), dict(pacing="cubic"), ValueError, "pacing must be one of"),
    ((0, 3), dict(pacing=lambda t: 2.0), ValueError, "pacing\\(t\\) must be in"),
    ((0, 3), dict(pacing=lambda t: "x"), TypeError, "pacing must return a real number"),
    ((0, 3), dict(start_fraction=0), ValueError, "start_fraction must be in"),
    ((0, 3), dict(width=1.5), ValueError, "width must be in"),
])
def test_curriculum_bad_arguments(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        curriculum_window(*args, **kwargs)


@given(d=hnp.arrays(np.float64, st.integers(1, 100), elements=st.one_of(tie_pool, st.floats(-5, 5))),
       cuts=st.lists(st.floats(0.01, 0.99), min_size=0, max_size=4))
def test_quantile_windows_partition_the_easy_to_hard_ranking(d, cuts):
    bounds = [0.0, *sorted(set(cuts)), 1.0]
    parts = [select_quantile_window(d, lo, hi) for lo, hi in zip(bounds, bounds[1:])]
    for part, lo, hi in zip(parts, bounds, bounds[1:]):
        np.testing.assert_array_equal(part, refs.select_quantile_window(d, lo, hi))
    np.testing.assert_array_equal(np.concatenate(parts), refs.ranking(d, largest=False))


def test_quantile_window_bad_arguments():
    with pytest.raises(ValueError, match="low must be < high"):
        select_quantile_window([1.0, 2.0], 0.5, 0.5)
    with pytest.raises(ValueError, match="high must be in"):
        select_quantile_window([1.0, 2.0], 0.0, 1.5)


def test_difficulty_weights_focal_and_softmax(rng):
    p_true = rng.uniform(0, 1, 100)
    w = difficulty_weights(1 - p_true, gamma=2.0)
    np.testing.assert_allclose(w, (1 - p_true) ** 2 / np.mean((1 - p_true) ** 2))
    margins = rng.standard_normal(100)
    s = difficulty_weights(margins, method="softmax", temperature=0.5)
    np.testing.assert_allclose(s, np.exp(margins / 0.5) / np.exp(margins / 0.5).mean())
    np.testing.assert_allclose(
        s, difficulty_weights(margins + 1000.0, method="softmax", temperature=0.5))
    floored = difficulty_weights(1 - p_true, min_weight=0.3)
    assert floored.mean() == pytest.approx(1.0) and floored.min() > 0
    np.testing.assert_array_equal(difficulty_weights(np.zeros(4)), np.ones(4))


@given(d=hnp.arrays(np.float64, st.integers(0, 80), elements=st.floats(0, 50)),
       kw=st.sampled_from([dict(), dict(gamma=0.5), dict(gamma=0.0), dict(min_weight=0.3),
                           dict(method="softmax", temperature=3.0),
                           dict(method="softmax", temperature=0.2, min_weight=0.1)]))
def test_difficulty_weights_match_the_reference(d, kw):
    np.testing.assert_allclose(difficulty_weights(d, **kw), refs.difficulty_weights(d, **kw),
                               rtol=1e-12, atol=1e-14)


def test_difficulty_weights_bad_arguments():
    with pytest.raises(ValueError, match="difficulty must be >= 0 for method='power'"):
        difficulty_weights([-1.0, 1.0])
    with pytest.raises(ValueError, match="gamma must be a finite number >= 0"):
        difficulty_weights([1.0], gamma=-2)
    with pytest.raises(ValueError, match="method must be one of"):
        difficulty_weights([1.0], method="focal")
    with pytest.raises(ValueError, match="min_weight must be in"):
        difficulty_weights([1.0], min_weight=1.0)
    with pytest.raises(ValueError, match="difficulty contains NaN"):
        difficulty_weights([np.inf])


def test_progress_bar_reports_on_stderr(capsys, rng):
    x = rng.standard_normal(5000)
    r = hnm.topk(x, 10, chunk_size=100, progress=True)
    assert_same(r, refs.topk(x, band=(0, 10)))
    assert "topk" in capsys.readouterr().err
    hnm.topk(x.reshape(50, 100), 3, axis=-1, chunk_size=100, progress=True)
    assert "rows" in capsys.readouterr().err
