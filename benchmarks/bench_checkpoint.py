"""What ``hnm mine --checkpoint`` costs, and what it saves after a kill.

``hnm mine`` (random sampling in the band 10..100, 5 negatives, output .npz) on
N_Q x N_C x 48 float32 embeddings, in the same run:

- without a checkpoint, and with ``--checkpoint DIR`` (fresh each round).
  Target: checkpointing costs under 5% of the run.
- resuming a run killed (SIGKILL, in a child process) at two thirds of the
  checkpointed run's time. Target: the resume takes under half of the full run.
- Ctrl-C latency: SIGINT sent while searching and while writing a large CSV;
  the time until the process has exited (goal: under 0.7 s).

Every output is compared, byte for byte, with the run without a checkpoint.
Both with all OpenMP threads and with one: on a loaded machine a block's
searches wait for descheduled threads at every candidate block, a cost that
one thread does not pay (and an idle machine barely does).

Default 20,000 x 100,000 x 48; ``HNM_BENCH_CHECKPOINT_FULL=1`` runs the goal's
40,000 x 300,000 x 48 (``HNM_BENCH_CHECKPOINT_SIZE=n_q,n_c,dim`` any other).
"""
import multiprocessing
import os
import shutil
import signal
import time

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from hnm.cli import main

FULL = os.environ.get("HNM_BENCH_CHECKPOINT_FULL", "") not in ("", "0")
N_Q, N_C, DIM = (40_000, 300_000, 48) if FULL else tuple(
    int(v) for v in os.environ.get("HNM_BENCH_CHECKPOINT_SIZE", "20000,100000,48").split(","))
ROUNDS = 1 if FULL else 3
THREADS = ["all", "1"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("checkpoint")
    rng = np.random.default_rng(0)
    corpus = rng.standard_normal((N_C, DIM), dtype=np.float32)
    queries = corpus[:N_Q] + 0.3 * rng.standard_normal((N_Q, DIM), dtype=np.float32)
    np.save(d / "c.npy", corpus)
    np.save(d / "q.npy", queries)
    np.save(d / "p.npy", np.arange(N_Q))
    np.save(d / "losses.npy", rng.standard_normal(10**7))
    argv = ["mine", str(d / "q.npy"), str(d / "p.npy"), str(d / "c.npy"),
            "--num-negatives", "5", "--band", "10", "100", "--sampling", "random",
            "--seed", "0"]
    return {"dir": d, "argv": argv, "outputs": {}}


@pytest.fixture(scope="module", autouse=True)
def declare(ratios):
    size = f"{N_Q} x {N_C} x {DIM}"
    for t in THREADS:
        ratios.compare(f"hnm mine --checkpoint [{size}, threads={t}]",
                       f"hnm mine [{size}, threads={t}]", "<= 1.05")
        ratios.compare(f"resume after a kill at 2/3 [{size}, threads={t}]",
                       f"hnm mine [{size}, threads={t}]", "<= 0.5")


def _limit(threads):
    return threadpool_limits(1, user_api="openmp") if threads == "1" else \
        threadpool_limits(None)


def _cli(argv, threads):
    import sys

    with _limit(threads):
        sys.exit(main(argv))


def _ctx():
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["hnm", "hnm.cli"])
    return ctx


def _check_same(files, key, path):
    data = path.read_bytes()
    first = files["outputs"].setdefault(key, data)
    assert data == first, f"{path} differs from the output without a checkpoint"


@pytest.mark.parametrize("threads", THREADS)
def test_mine(benchmark, files, ratios, threads):
    out = files["dir"] / f"plain-{threads}.npz"
    benchmark.group = f"hnm mine {N_Q} x {N_C} x {DIM}"
    with _limit(threads):
        benchmark.pedantic(main, args=(files["argv"] + ["-o", str(out)],), rounds=ROUNDS,
                           iterations=1)
    ratios.record(benchmark, f"hnm mine [{N_Q} x {N_C} x {DIM}, threads={threads}]")
    _check_same(files, f"mine-{threads}", out)


@pytest.mark.parametrize("threads", THREADS)
def test_mine_checkpoint(benchmark, files, ratios, threads):
    out = files["dir"] / f"ck-{threads}.npz"
    ck = files["dir"] / f"ck-{threads}"
    argv = files["argv"] + ["--checkpoint", str(ck), "-o", str(out)]
    benchmark.group = f"hnm mine {N_Q} x {N_C} x {DIM}"
    times = []

    def run():
        t0 = time.perf_counter()
        assert main(argv) == 0
        times.append(time.perf_counter() - t0)

    with _limit(threads):
        benchmark.pedantic(run, setup=lambda: shutil.rmtree(ck, ignore_errors=True),
                           rounds=ROUNDS, iterations=1)
    ratios.record(benchmark, f"hnm mine --checkpoint [{N_Q} x {N_C} x {DIM}, "
                             f"threads={threads}]")
    files[f"checkpointed-{threads}"] = float(np.median(times))
    n_blocks = sum(1 for f in os.listdir(ck) if f.startswith("block-"))
    ratios.note(f"checkpoint [threads={threads}]: {n_blocks} blocks, "
                f"{sum(os.path.getsize(ck / f) for f in os.listdir(ck)) / 2**20:.1f} MiB")
    _check_same(files, f"mine-{threads}", out)


@pytest.mark.parametrize("threads", THREADS)
def test_resume_after_a_kill_at_two_thirds(benchmark, files, ratios, threads):
    out = files["dir"] / f"resume-{threads}.npz"
    ck = files["dir"] / f"resume-{threads}"
    argv = files["argv"] + ["--checkpoint", str(ck), "-o", str(out)]
    full = files.get(f"checkpointed-{threads}")
    if full is None:
        pytest.skip("needs test_mine_checkpoint first (same file, same session)")
    ctx = _ctx()
    done = []

    def killed_at_two_thirds():
        shutil.rmtree(ck, ignore_errors=True)
        p = ctx.Process(target=_cli, args=(argv, threads))
        p.start()
        p.join(2 / 3 * full)
        if p.exitcode is None:
            os.kill(p.pid, signal.SIGKILL)
        p.join()
        done.append(sum(1 for f in os.listdir(ck) if f.startswith("block-")))

    benchmark.group = f"hnm mine {N_Q} x {N_C} x {DIM}"
    with _limit(threads):
        benchmark.pedantic(main, args=(argv,), setup=killed_at_two_thirds, rounds=ROUNDS,
                           iterations=1)
    ratios.record(benchmark, f"resume after a kill at 2/3 [{N_Q} x {N_C} x {DIM}, "
                             f"threads={threads}]")
    total = sum(1 for f in os.listdir(ck) if f.startswith("block-"))
    ratios.note(f"kill at 2/3 [threads={threads}]: {done} of {total} blocks had been saved")
    _check_same(files, f"mine-{threads}", out)


def _sigint_latency(ctx, argv, after, path):
    """Seconds from SIGINT to the child's exit, and its exit code."""
    p = ctx.Process(target=_cli, args=(argv, "all"))
    p.start()
    p.join(after)
    if p.exitcode is not None:
        return None, p.exitcode
    t0 = time.perf_counter()
    os.kill(p.pid, signal.SIGINT)
    p.join(30)
    return time.perf_counter() - t0, p.exitcode


def test_ctrl_c_latency(benchmark, files, ratios):
    """Times writing 5e6 CSV rows (``hnm topk -k 5e6 -o x.csv``), then sends SIGINT
    to children at 20/50/80% of that write and of the mining run."""
    ctx = _ctx()
    d = files["dir"]
    mine = files["argv"] + ["-o", str(d / "sigint.npz")]
    big_csv = ["topk", str(d / "losses.npy"), "-k", str(5 * 10**6), "-o",
               str(d / "sigint.csv")]
    benchmark.group = "hnm topk -k 5e6 -o x.csv"
    benchmark.pedantic(main, args=(big_csv,), rounds=1, iterations=1)
    write_time = benchmark.stats.stats.median
    previous = (d / "sigint.csv").read_bytes()
    latencies = {"searching": [], "writing a CSV": []}
    for frac in (0.2, 0.5, 0.8):
        lat, code = _sigint_latency(ctx, mine, frac * files.get("checkpointed-all", 10.0),
                                    d / "sigint.npz")
        if lat is not None:
            assert code == 130
            latencies["searching"].append(lat)
        lat, code = _sigint_latency(ctx, big_csv, frac * write_time, d / "sigint.csv")
        if lat is not None:
            assert code == 130
            latencies["writing a CSV"].append(lat)
        assert (d / "sigint.csv").read_bytes() == previous  # never a partial file
    ratios.note(f"hnm topk writing 5e6 CSV rows: {write_time:.2f} s")
    for what, values in latencies.items():
        if values:
            ratios.note(f"Ctrl-C while {what}: exited {max(values):.2f} s after SIGINT at "
                        f"worst ({len(values)} tries; goal 0.7 s)")
