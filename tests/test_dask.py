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


def test_padded_results_have_the_single_machine_dtype():
    for dtype in (np.float32, np.float64):
        x = np.array([[1.0, np.nan, 2.0, np.nan], [np.nan, np.nan, np.nan, 0.5]], dtype=dtype)
        got = hnm.dask.topk(da.from_array(x, chunks=(1, 2)), 3, axis=-1, nan_policy="omit")
        assert_same(got, hnm.topk(x, 3, axis=-1, nan_policy="omit"))
        assert got.values.dtype == dtype


def test_search_and_mine_take_at_most_and_reject_nan_bounds(rng):
    C = rng.standard_normal((40, 4))
    dC = da.from_array(C, chunks=(15, 4))
    got = hnm.dask.search_hard_pairs(C[:3], dC, 50, at_most=True, n_jobs=1)
    np.testing.assert_array_equal(got.indices, hnm.search_hard_pairs(C[:3], C, 40).indices)
    with pytest.raises(ValueError, match="pass at_most=True"):
        hnm.dask.search_hard_pairs(C[:3], dC, 50)
    for kw in (dict(max_score=np.nan), dict(min_score=np.nan)):
        with pytest.raises(ValueError, match="must be a finite number"):
            hnm.dask.mine_hard_negatives(C[:3], np.arange(3), dC, **kw)
    with pytest.raises(ValueError, match="max_score must be a finite number"):
        hnm.dask.search_hard_pairs(C[:3], dC, 2, max_score=np.nan)
    whole = hnm.dask.mine_hard_negatives(C[:3], np.arange(3), dC, k=50, band=(30, None),
                                         at_most=True, duplicate_threshold=None)
    ref = hnm.mine_hard_negatives(C[:3], np.arange(3), C, k=50, band=(30, None),
                                  at_most=True, duplicate_threshold=None)
    np.testing.assert_array_equal(whole.negative, ref.negative)
    assert whole.summary["n_short_queries"] == 3


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


def quasi_same_pairs(a, b, Q, C, metric):
    np.testing.assert_array_equal(a.indices < 0, b.indices < 0)
    if not np.array_equal(a.indices, b.indices):  # only swaps between rounding ties
        np.testing.assert_allclose(np.sort(a.scores, axis=1), np.sort(b.scores, axis=1),
                                   rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5, atol=1e-6)


@given(n_c=st.integers(2, 80), n_q=st.integers(1, 10), metric=st.sampled_from(["ip", "cosine", "l2"]),
       data=st.data())
def test_search_equals_single_machine_for_any_chunking(n_c, n_q, metric, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    C = rng.standard_normal((n_c, 5))
    Q = rng.standard_normal((n_q, 5))
    k = data.draw(st.integers(1, n_c))
    exclude = [rng.choice(n_c, size=rng.integers(0, min(4, n_c)), replace=False)
               for _ in range(n_q)]
    labels = data.draw(st.booleans())
    kw = dict(metric=metric, exclude=exclude,
              exclude_self=data.draw(st.booleans()) and n_q <= n_c,
              query_labels=rng.integers(0, 3, n_q) if labels else None,
              candidate_labels=rng.integers(0, 3, n_c) if labels else None)
    chunks = data.draw(st.integers(1, n_c))
    got = hnm.dask.search_hard_pairs(Q, da.from_array(C, chunks=(chunks, 5)), k,
                                     split_every=data.draw(st.integers(2, 4)), **kw)
    quasi_same_pairs(got, hnm.search_hard_pairs(Q, C, k, **kw), Q, C, metric)


@given(n=st.integers(1, 200), C=st.integers(2, 6), measure=st.sampled_from(hnm.scoring.MEASURES),
       data=st.data())
def test_difficulty_equals_single_machine(n, C, measure, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    P = rng.random((n, C))
    P /= P.sum(axis=1, keepdims=True)
    y = rng.integers(0, C, n)
    chunks = data.draw(st.integers(1, n))
    got = hnm.dask.difficulty(da.from_array(y, chunks=chunks), da.from_array(P, chunks=(chunks, 1)),
                              measure=measure, labels=np.arange(C)).compute()
    np.testing.assert_array_equal(got, hnm.difficulty(y, P, measure=measure, labels=np.arange(C)))


def test_mine_equals_single_machine(rng):
    C = rng.standard_normal((600, 8))
    Q = C[:30] + 0.05 * rng.standard_normal((30, 8))
    kw = dict(k=4, band=(2, 20), relative_margin=0.05, easy_ratio=1.0,
              random_state=0)
    a = hnm.dask.mine_hard_negatives(Q, np.arange(30), da.from_array(C, chunks=(97, 8)), **kw)
    b = hnm.mine_hard_negatives(Q, np.arange(30), C, **kw)
    np.testing.assert_array_equal(a.negative, b.negative)
    np.testing.assert_allclose(a.score, b.score, rtol=1e-9)
    assert a.summary["n_short_queries"] == b.summary["n_short_queries"]


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
    C = rng.standard_normal((20_000, 16)).astype(np.float32)
    np.save(tmp_path / "c.npy", C)
    dC = da.from_array(np.load(tmp_path / "c.npy", mmap_mode="r"), chunks=(3000, 16))
    Qs = C[:50] + 0.01
    got = hnm.dask.search_hard_pairs(Qs, dC, 10, exclude_self=True)
    quasi_same_pairs(got, hnm.search_hard_pairs(Qs, C, 10, exclude_self=True), Qs, C, "cosine")
    mined = hnm.dask.mine_hard_negatives(Qs, np.arange(50), dC, k=3,
                                         relative_margin=0.05)
    ref = hnm.mine_hard_negatives(Qs, np.arange(50), C, k=3, relative_margin=0.05)
    np.testing.assert_array_equal(mined.negative, ref.negative)
    from_file = hnm.dask.from_npy(tmp_path / "c.npy", 3000)  # workers read their rows
    assert from_file.chunks[0][:2] == (3000, 3000)
    quasi_same_pairs(hnm.dask.search_hard_pairs(Qs, from_file, 10, exclude_self=True), got,
                     Qs, C, "cosine")
    P = rng.random((5000, 4)).astype(np.float32)
    P /= P.sum(axis=1, keepdims=True)
    y = rng.integers(0, 4, 5000)
    d = hnm.dask.difficulty(da.from_array(y, chunks=700), da.from_array(P, chunks=(700, 4)),
                            measure="log_loss").compute()
    np.testing.assert_array_equal(d, hnm.difficulty(y, P, measure="log_loss"))


def test_topk_and_difficulty_take_n_jobs_and_at_most():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(5000).astype(np.float32)
    dx = da.from_array(x, chunks=700)
    ref = hnm.topk(x, 10)
    for n_jobs in (1, 2):
        got = hnm.dask.topk(dx, 10, n_jobs=n_jobs)
        np.testing.assert_array_equal(got.indices, ref.indices)
    with pytest.raises(ValueError, match="at_most"):
        hnm.dask.topk(dx, 6000)
    np.testing.assert_array_equal(hnm.dask.topk(dx, 6000, at_most=True).indices,
                                  hnm.topk(x, 6000, at_most=True).indices)
    with pytest.raises(ValueError, match="n_jobs"):
        hnm.dask.topk(dx, 3, n_jobs=0)
    y = rng.integers(0, 3, 4000)
    P = rng.dirichlet(np.ones(3), 4000)
    dP = da.from_array(P, chunks=(900, 3))
    expected = hnm.difficulty(y, P, labels=[0, 1, 2])
    for n_jobs in (1, 2):
        np.testing.assert_array_equal(
            hnm.dask.difficulty(y, dP, labels=[0, 1, 2], n_jobs=n_jobs).compute(), expected)
