"""checkpoint=: resumed runs are identical, byte for byte, to uninterrupted ones."""
import json
import multiprocessing
import os
import signal
import time

import numpy as np
import pytest

import hnm
from hnm import _checkpoint
from hnm._checkpoint import query_blocks
from hnm._io import is_temporary
from hnm._search_inputs import DEFAULT_QUERY_BLOCK

FIELDS = ("query", "positive", "negative", "score", "positive_score", "is_hard", "rank")


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 2 tiles (512 queries), so a few thousand queries make several."""
    monkeypatch.setattr(_checkpoint, "MIN_TILES_PER_BLOCK", 2)
    monkeypatch.setattr(_checkpoint, "TARGET_BLOCKS", 64)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    corpus = rng.standard_normal((2000, 12)).astype(np.float32)
    queries = corpus[rng.integers(0, 2000, 1600)] + 0.3 * rng.standard_normal(
        (1600, 12)).astype(np.float32)
    positives = rng.integers(0, 2000, 1600)
    return queries, positives, corpus


def same_bytes(a, b):
    return all(np.asarray(getattr(a, f)).tobytes() == np.asarray(getattr(b, f)).tobytes()
               and np.asarray(getattr(a, f)).dtype == np.asarray(getattr(b, f)).dtype
               for f in FIELDS)


def blocks_in(directory):
    return sorted(f for f in os.listdir(directory)
                  if f.startswith("block-") and not is_temporary(f))


def test_block_layout_keeps_the_search_tiling():
    tile = DEFAULT_QUERY_BLOCK
    for n_q in (1, 100, 511, 512, 4096, 40_000, 123_457):
        for threads in (1, 2, 3, 8, 12):
            blocks = query_blocks(n_q, threads, tile)
            assert blocks[0][0] == 0 and blocks[-1][1] == n_q
            assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:]))
            if len(blocks) > 1:
                assert all(s % tile == 0 for s, _ in blocks)
                assert min(e - s for s, e in blocks) >= tile * max(8, threads)
            else:
                assert n_q < 2 * tile * max(8, threads)
    assert len(query_blocks(40_000, 2, tile)) >= 10  # a kill loses at most a tenth


@pytest.mark.parametrize("kwargs", [
    dict(k=7),
    dict(k=5, metric="l2", exclude_self=True),
    dict(band=(3, 9), metric="ip", max_score=2.0),
    dict(k=4, max_score="per query", exclude="lists"),
    dict(k=3, query_labels="labels"),
])
def test_search_hard_pairs_resumes_identically(tmp_path, small_blocks, data, kwargs):
    queries, _, corpus = data
    rng = np.random.default_rng(1)
    kwargs = dict(kwargs)
    if kwargs.get("max_score") == "per query":
        kwargs["max_score"] = rng.uniform(0.5, 1.0, len(queries))
    if kwargs.get("exclude") == "lists":
        kwargs["exclude"] = [rng.integers(0, len(corpus), rng.integers(0, 4))
                             for _ in range(len(queries))]
    if kwargs.get("query_labels") == "labels":
        kwargs["query_labels"] = rng.integers(0, 5, len(queries))
        kwargs["candidate_labels"] = rng.integers(0, 5, len(corpus))
    if kwargs.get("exclude_self"):
        queries = corpus[:1600]
    full = hnm.search_hard_pairs(queries, corpus, **kwargs)
    ck = tmp_path / "ck"
    first = hnm.search_hard_pairs(queries, corpus, checkpoint=ck, **kwargs)
    names = blocks_in(ck)
    assert len(names) >= 3
    os.unlink(ck / names[1])  # as if killed before this block was saved
    os.unlink(ck / names[-1])
    kept = {n: os.stat(ck / n).st_ino for n in names if n not in (names[1], names[-1])}
    again = hnm.search_hard_pairs(queries, corpus, checkpoint=ck, **kwargs)
    for r in (first, again):
        assert r.indices.tobytes() == full.indices.tobytes()
        assert r.scores.tobytes() == full.scores.tobytes() and r.scores.dtype == full.scores.dtype
    assert blocks_in(ck) == names
    assert {n: os.stat(ck / n).st_ino for n in kept} == kept  # finished blocks not redone


@pytest.mark.parametrize("kwargs", [
    dict(k=3),
    dict(k=4, band=(5, 40), sampling="random", random_state=7),
    dict(k=2, band=(2, 30), relative_margin=0.05, easy_ratio=2.0,
         random_state=3, metric="l2"),
    dict(k=3, band=(0, 12), sampling="random", easy_ratio=1.0, output="ntuple",
         min_score=0.3, random_state=11),
    dict(k=3, absolute_margin=0.1, max_score=0.9, exclude="lists",
         positives="lists", metric="ip"),
    dict(k=2, sampling="random", band=(1, 20), positives="embeddings",
         random_state=5),
])
def test_mine_hard_negatives_resumes_identically(tmp_path, small_blocks, data, kwargs):
    queries, positives, corpus = data
    rng = np.random.default_rng(2)
    kwargs = dict(kwargs)
    form = kwargs.pop("positives", "ids")
    if form == "lists":
        positives = [np.unique(np.r_[p, rng.integers(0, len(corpus), 2)]) for p in positives]
    elif form == "embeddings":
        positives = queries + 0.05 * rng.standard_normal(queries.shape).astype(np.float32)
    if kwargs.get("exclude") == "lists":
        kwargs["exclude"] = [rng.integers(0, len(corpus), 3) for _ in range(len(queries))]
    full = hnm.mine_hard_negatives(queries, positives, corpus, **kwargs)
    ck = tmp_path / "ck"
    first = hnm.mine_hard_negatives(queries, positives, corpus, checkpoint=ck, **kwargs)
    names = blocks_in(ck)
    assert len(names) >= 3
    os.unlink(ck / names[0])
    os.unlink(ck / names[2])
    again = hnm.mine_hard_negatives(queries, positives, corpus, checkpoint=ck, **kwargs)
    for r in (first, again):
        assert same_bytes(r, full)
        for key, value in full.summary.items():  # counts exact, means to rounding
            if isinstance(value, float):
                assert r.summary[key] == pytest.approx(value, rel=1e-12)
            else:
                assert r.summary[key] == value, key


def test_random_state_none_is_drawn_once_and_kept(tmp_path, small_blocks, data):
    queries, positives, corpus = data
    kw = dict(k=3, band=(0, 30), sampling="random", checkpoint=tmp_path)
    first = hnm.mine_hard_negatives(queries, positives, corpus, **kw)
    seed = json.loads((tmp_path / "manifest.json").read_text())["seed"]
    for name in blocks_in(tmp_path)[1::2]:
        os.unlink(tmp_path / name)
    again = hnm.mine_hard_negatives(queries, positives, corpus, **kw)
    assert same_bytes(first, again)
    seeded = hnm.mine_hard_negatives(queries, positives, corpus, k=3,
                                     band=(0, 30), sampling="random", random_state=seed)
    assert same_bytes(first, seeded)  # as one uninterrupted run with that seed


@pytest.mark.parametrize("change, message", [
    (dict(k=2), "k=3 -> 2"),
    (dict(band=(1, 10)), "band=[0, 10] -> [1, 10]"),
    (dict(random_state=1), "random_state=0 -> 1"),
    (dict(metric="l2"), "metric='cosine' -> 'l2'"),
    (dict(queries="shorter"), "queries shape (1600, 12) -> (1500, 12)"),
    (dict(queries="edited"), "queries contents"),
    (dict(queries="float64"), "queries dtype <f4 -> <f8"),
    (dict(candidates="edited"), "candidates contents"),
    (dict(positives="edited"), "positives contents"),
])
def test_another_call_on_the_same_directory_is_refused(tmp_path, data, change, message):
    queries, positives, corpus = data
    kw = dict(k=3, band=(0, 10), random_state=0, metric="cosine")
    hnm.mine_hard_negatives(queries, positives, corpus, checkpoint=tmp_path, **kw)
    before = {n: os.stat(tmp_path / n).st_mtime_ns for n in os.listdir(tmp_path)}
    q, p, c = queries, positives, corpus
    what = next(iter(change.values()))
    if "queries" in change:
        q = {"shorter": queries[:1500], "float64": queries.astype(np.float64)}.get(what)
        p = positives[:1500] if what == "shorter" else positives
        if what == "edited":
            q = queries.copy()
            q[1234, 5] += 1  # one value of one row
    elif "candidates" in change:
        c = corpus.copy()
        c[7, 0] += 1
    elif "positives" in change:
        p = positives.copy()
        p[3] = (p[3] + 1) % len(corpus)
    else:
        kw.update(change)
    with pytest.raises(ValueError, match="made by another call") as err:
        hnm.mine_hard_negatives(q, p, c, checkpoint=tmp_path, **kw)
    assert message in str(err.value)
    assert {n: os.stat(tmp_path / n).st_mtime_ns for n in os.listdir(tmp_path)} == before


def test_checkpoint_arguments_are_checked(tmp_path, data):
    queries, positives, corpus = data
    with pytest.raises(ValueError, match="random_state to be an int or None"):
        hnm.mine_hard_negatives(queries, positives, corpus, checkpoint=tmp_path,
                                random_state=np.random.RandomState(0))
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        hnm.search_hard_pairs(queries, corpus, 3, checkpoint=tmp_path / "file")
    with pytest.raises(TypeError, match="checkpoint must be a directory path"):
        hnm.search_hard_pairs(queries, corpus, 3, checkpoint=3)
    # an invalid call writes nothing
    with pytest.raises(ValueError, match="k=5000"):
        hnm.search_hard_pairs(queries, corpus, 5000, checkpoint=tmp_path / "new")
    assert os.listdir(tmp_path / "new") in ([], [".lock"])
    # a search checkpoint is not a mining one
    hnm.search_hard_pairs(queries, corpus, 3, checkpoint=tmp_path / "s")
    with pytest.raises(ValueError, match="function 'search_hard_pairs' -> "
                                         "'mine_hard_negatives'"):
        hnm.mine_hard_negatives(queries, positives, corpus, checkpoint=tmp_path / "s")


def test_progress_counts_resumed_blocks_as_done(tmp_path, small_blocks, data, monkeypatch):
    queries, positives, corpus = data
    hnm.mine_hard_negatives(queries, positives, corpus, checkpoint=tmp_path)
    names = blocks_in(tmp_path)
    os.unlink(tmp_path / names[-1])
    missing = int(names[-1].split("-")[3].split(".")[0]) - int(names[-1].split("-")[2])
    updates = []

    class Bar:
        def __init__(self, enabled, total, desc, unit):
            updates.append(("total", total))

        def update(self, n):
            updates.append(n)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(_checkpoint, "progress_bar", Bar)
    hnm.mine_hard_negatives(queries, positives, corpus, checkpoint=tmp_path, progress=True)
    assert updates == [("total", len(queries)), len(queries) - missing, missing]


# ------------------------------------------------------- kill -9 in subprocesses

def _forkserver():
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["hnm", "hnm.cli"])
    return ctx


def _cli(argv, min_tiles):
    """Child: the hnm command, with blocks of ``min_tiles`` query tiles."""
    import sys

    import hnm._checkpoint as ck
    from hnm.cli import main

    ck.MIN_TILES_PER_BLOCK = min_tiles
    ck.TARGET_BLOCKS = 64
    sys.exit(main(argv))


def _run(ctx, argv, kill=None, min_tiles=2):
    """Run the hnm command in a child; ``kill()`` (if given) is polled while it
    runs and returns True when the child is to be killed with SIGKILL."""
    p = ctx.Process(target=_cli, args=(argv, min_tiles))
    p.start()
    while kill is not None and p.exitcode is None and not kill():
        p.join(0.005)
    if kill is not None and p.exitcode is None:
        os.kill(p.pid, signal.SIGKILL)
    p.join(300)
    return p.exitcode


def test_kill_9_at_random_points_then_resume_gives_the_same_output(tmp_path):
    rng = np.random.default_rng(0)
    corpus = rng.standard_normal((8_000, 16)).astype(np.float32)
    queries = corpus[:2048] + 0.2 * rng.standard_normal((2048, 16)).astype(np.float32)
    for name, a in (("c", corpus), ("q", queries), ("p", np.arange(2048))):
        np.save(tmp_path / f"{name}.npy", a)
    args = ["mine"] + [str(tmp_path / f) for f in ("q.npy", "p.npy", "c.npy")] + [
        "-k", "5", "--band", "10", "100", "--sampling", "random",
        "--easy-ratio", "1", "--seed", "3"]
    ctx = _forkserver()
    assert _run(ctx, args + ["-o", str(tmp_path / "ref.csv")]) == 0
    reference = (tmp_path / "ref.csv").read_bytes()
    out, ck = tmp_path / "out.csv", tmp_path / "ck"
    out.write_bytes(b"previous output\n")
    n_blocks = len(query_blocks(2048, 2, DEFAULT_QUERY_BLOCK, min_tiles=2))
    assert n_blocks == 4
    # kill soon after the start, then a random moment after each block is saved:
    # while computing the next block, while saving it, or while writing the output
    for target in (0, 1, 2, 3, 4):
        t0 = time.perf_counter()
        wait = rng.uniform(0.0, 0.25)

        def kill():
            if target == 0:
                return time.perf_counter() - t0 > wait
            if ck.exists() and len(blocks_in(ck)) >= target:
                time.sleep(wait)
                return True
            return False

        code = _run(ctx, args + ["-o", str(out), "--checkpoint", str(ck)], kill=kill)
        # the output is the previous one or the complete new one, never a part
        assert out.read_bytes() in (b"previous output\n", reference)
        if code == 0:
            continue
        assert code == -signal.SIGKILL
        for name in blocks_in(ck) if ck.exists() else []:
            with np.load(ck / name) as z:  # every block under its final name is whole
                assert z["query"].shape[0] == z["negative"].shape[0]
        if (ck / "manifest.json").exists():
            json.loads((ck / "manifest.json").read_text())
    assert _run(ctx, args + ["-o", str(out), "--checkpoint", str(ck)]) == 0
    assert out.read_bytes() == reference
    assert not [f for f in os.listdir(ck) if is_temporary(f)]  # cleaned on resume
    assert not [f for f in os.listdir(tmp_path) if is_temporary(f)]


def test_sigint_while_mining_exits_130_and_keeps_finished_blocks(tmp_path):
    rng = np.random.default_rng(0)
    corpus = rng.standard_normal((60_000, 16)).astype(np.float32)
    np.save(tmp_path / "c.npy", corpus)
    np.save(tmp_path / "q.npy", corpus[:4096])
    np.save(tmp_path / "p.npy", np.arange(4096))
    out = tmp_path / "out.npz"
    out.write_bytes(b"previous")
    ctx = _forkserver()
    argv = ["mine"] + [str(tmp_path / f) for f in ("q.npy", "p.npy", "c.npy")] + [
        "--checkpoint", str(tmp_path / "ck"), "-o", str(out)]
    p = ctx.Process(target=_cli, args=(argv, 2))
    p.start()
    deadline = time.time() + 120
    while not ((tmp_path / "ck").exists() and blocks_in(tmp_path / "ck")):
        time.sleep(0.01)
        assert time.time() < deadline
    os.kill(p.pid, signal.SIGINT)
    p.join(60)
    if p.exitcode == 0:  # the run finished before the signal arrived
        pytest.skip("the run finished before SIGINT")
    assert p.exitcode == 130
    assert out.read_bytes() == b"previous"
    assert len(blocks_in(tmp_path / "ck")) >= 1
