import logging

import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import hnm  # noqa: E402
import hnm.dask  # noqa: E402

tie_pool = st.sampled_from([-np.inf, -1.0, 0.0, 0.5, 2.0, np.inf])


def assert_same(a, b):
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.values, b.values)
    assert a.values.dtype == b.values.dtype


@given(
    x=hnp.arrays(st.sampled_from([np.float32, np.float64, np.int16]),
                 hnp.array_shapes(min_dims=1, max_dims=3, max_side=15),
                 elements=st.integers(-3, 3)),
    data=st.data(),
)
def test_flat_topk_equals_single_machine_for_any_chunking(x, data):
    chunks = tuple(data.draw(st.integers(1, s)) for s in x.shape)
    stop = data.draw(st.integers(1, x.size))
    start = data.draw(st.integers(0, stop - 1))
    largest = data.draw(st.booleans())
    got = hnm.dask.topk(da.from_array(x, chunks=chunks), band=(start, stop), largest=largest,
                        split_every=data.draw(st.integers(2, 5)))
    assert_same(got, hnm.topk(x, band=(start, stop), largest=largest))


@given(
    x=hnp.arrays(np.float64, hnp.array_shapes(min_dims=2, max_dims=2, max_side=20),
                 elements=st.one_of(tie_pool, st.just(np.nan))),
    data=st.data(),
)
def test_rows_topk_with_column_blocks_and_nans(x, data):
    chunks = (data.draw(st.integers(1, x.shape[0])), data.draw(st.integers(1, x.shape[1])))
    k = data.draw(st.integers(1, x.shape[1]))
    got = hnm.dask.topk(da.from_array(x, chunks=chunks), k, axis=-1, nan_policy="omit")
    assert_same(got, hnm.topk(x, k, axis=-1, nan_policy="omit"))


def test_nan_raises_like_single_machine():
    x = da.from_array(np.array([1.0, np.nan, 2.0, 3.0]), chunks=2)
    with pytest.raises(ValueError, match="NaN"):
        hnm.dask.topk(x, 1)
    flat = hnm.dask.topk(x, 4, nan_policy="omit")
    np.testing.assert_array_equal(flat.indices, [3, 2, 0, -1])


def test_bad_arguments():
    x = da.ones(10, chunks=3)
    with pytest.raises(ValueError, match="k=11 is larger"):
        hnm.dask.topk(x, 11)
    with pytest.raises(ValueError, match="axis"):
        hnm.dask.topk(x, 1, axis=-1)
    with pytest.raises(TypeError, match="real dtype"):
        hnm.dask.topk(da.from_array(np.array([1j, 2j]), chunks=1), 1)
    with pytest.raises(ValueError, match="split_every must be >= 2"):
        hnm.dask.topk(x, 1, split_every=1)


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None, silence_logs=logging.ERROR)
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


def test_on_a_two_worker_cluster_over_memmaps(client, tmp_path, rng):
    x = rng.standard_normal((4000, 50)).astype(np.float32)
    x[::7, 3] = 1.25  # ties
    path = tmp_path / "scores.npy"
    np.save(path, x)
    mm = np.load(path, mmap_mode="r")
    darr = da.from_array(mm, chunks=(700, 20))
    assert_same(hnm.dask.topk(darr, 300), hnm.topk(x, 300))
    assert_same(hnm.dask.topk(darr, band=(10, 40), axis=-1, largest=False),
                hnm.topk(x, band=(10, 40), axis=-1, largest=False))
    assert len(client.scheduler_info()["workers"]) == 2
