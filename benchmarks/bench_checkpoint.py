"""What ``hnm mine --checkpoint`` costs, and what it saves after a kill.

``hnm mine`` (random sampling in the band 10..100, 5 negatives, output .npz) on
N_Q x N_C x 48 float32 embeddings, in the same run:

- without a checkpoint, and with ``--checkpoint DIR`` (fresh each round).
  Target: checkpointing costs under 5% of the run.
- resuming a run killed (SIGKILL, in a child process) at two thirds of the
  checkpointed run's time. Target: the resume takes under half of the full run.
  The three run in turn in every round and the ratios are paired by round.
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
    n = 5 * 10**6  # a 5e6-line CSV to interrupt while it is written
    np.save(d / "y.npy", rng.integers(0, 2, n))
    proba = rng.uniform(size=n).astype(np.float32)
    np.save(d / "proba.npy", np.column_stack([1 - proba, proba]))
    argv = ["mine", str(d / "q.npy"), str(d / "p.npy"), str(d / "c.npy"),
            "-k", "5", "--band", "10", "100", "--sampling", "random",
            "--seed", "0"]
    return {"dir": d, "argv": argv, "outputs": {}}


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


def _timed(argv):
    t0 = time.perf_counter()
    assert main(argv) == 0
    return time.perf_counter() - t0


@pytest.mark.parametrize("threads", THREADS)
def test_checkpoint_cost_and_resume(benchmark, files, ratios, threads):
    """Rounds of: the run without a checkpoint, the run with a fresh one, and the
    resume of a run killed at two thirds of the latter; ratios are paired within
    a round, so a machine whose load drifts compares like with like."""
    d = files["dir"]
    plain = files["argv"] + ["-o", str(d / f"plain-{threads}.npz")]
    ck = d / f"ck-{threads}"
    checkpointed = files["argv"] + ["--checkpoint", str(ck), "-o", str(d / f"ck-{threads}.npz")]
    ctx = _ctx()
    times = {"plain": [], "checkpoint": [], "resume": []}
    saved = []

    def one_round():
        with _limit(threads):
            times["plain"].append(_timed(plain))
            shutil.rmtree(ck, ignore_errors=True)
            times["checkpoint"].append(_timed(checkpointed))
        files["checkpointed-" + threads] = times["checkpoint"][-1]
        shutil.rmtree(ck, ignore_errors=True)
        p = ctx.Process(target=_cli, args=(checkpointed, threads))
        p.start()
        p.join(2 / 3 * times["checkpoint"][-1])
        if p.exitcode is None:
            os.kill(p.pid, signal.SIGKILL)
        p.join()
        saved.append(sum(1 for f in os.listdir(ck) if f.startswith("block-")))
        with _limit(threads):
            times["resume"].append(_timed(checkpointed))

    benchmark.group = f"hnm mine {N_Q} x {N_C} x {DIM}: plain + checkpoint + resume"
    benchmark.pedantic(one_round, rounds=ROUNDS, iterations=1)
    n_blocks = sum(1 for f in os.listdir(ck) if f.startswith("block-"))
    size = sum(os.path.getsize(ck / f) for f in os.listdir(ck)) / 2**20
    plain_t = np.array(times["plain"])
    cost = np.median(np.array(times["checkpoint"]) / plain_t)
    resume = np.median(np.array(times["resume"]) / plain_t)
    benchmark.extra_info.update({k: v for k, v in times.items()})
    ratios.note(f"[{N_Q} x {N_C} x {DIM}, threads={threads}] hnm mine: "
                f"{', '.join(f'{t:.1f}' for t in plain_t)} s; with --checkpoint: "
                f"{', '.join(f'{t:.1f}' for t in times['checkpoint'])} s "
                f"(paired median ratio {cost:.3f}, target <= 1.05); resume after a kill at "
                f"2/3: {', '.join(f'{t:.1f}' for t in times['resume'])} s (ratio "
                f"{resume:.3f} of the run, target <= 0.5; {saved} of {n_blocks} blocks "
                f"saved at the kill); checkpoint {size:.1f} MiB")
    for name in (f"plain-{threads}.npz", f"ck-{threads}.npz"):
        _check_same(files, f"mine-{threads}", d / name)


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
    """Times ``hnm score`` writing 5e6 CSV rows (the scoring itself takes a few
    percent of it), then sends SIGINT to children at 20/50/80% of that and of the
    mining run."""
    ctx = _ctx()
    d = files["dir"]
    mine = files["argv"] + ["-o", str(d / "sigint.npz")]
    big_csv = ["score", str(d / "y.npy"), str(d / "proba.npy"), "-o", str(d / "sigint.csv")]
    benchmark.group = "hnm score, 5e6 rows -o x.csv"
    benchmark.pedantic(main, args=(big_csv,), rounds=1, iterations=1)
    write_time = benchmark.stats.stats.median
    previous = (d / "sigint.csv").read_bytes()
    latencies = {"searching": [], "writing a CSV": []}
    for frac in (0.2, 0.5, 0.8):
        lat, code = _sigint_latency(ctx, mine, frac * files.get("checkpointed-all", 10.0),
                                    d / "sigint.npz")
        if code == 130:  # else it had finished when the signal came
            latencies["searching"].append(lat)
        lat, code = _sigint_latency(ctx, big_csv, frac * write_time, d / "sigint.csv")
        if code == 130:
            latencies["writing a CSV"].append(lat)
        assert (d / "sigint.csv").read_bytes() == previous  # never a partial file
    ratios.note(f"hnm score writing 5e6 CSV rows: {write_time:.2f} s")
    for what, values in latencies.items():
        if values:
            ratios.note(f"Ctrl-C while {what}: exited {max(values):.2f} s after SIGINT at "
                        f"worst ({len(values)} tries; goal 0.7 s)")
