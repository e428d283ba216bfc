"""Shared benchmark helpers that are not fixtures (import them as ``from benchutils import ...``)."""
import threading
import time
import tracemalloc


def rss_anon_bytes():
    """Anonymous resident memory of this process (excludes a memmap's page cache)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("RssAnon not found in /proc/self/status")


def peak_extra_memory(func, *args, interval=0.0005, **kwargs):
    """Run ``func`` once; return its peak extra memory in bytes.

    The larger of two measures: the peak of anonymous RSS above the start (sampled
    by a thread, which runs while compiled code releases the GIL) and tracemalloc's
    peak (numpy reports its buffers to tracemalloc, so GIL-holding allocations are
    seen too). Neither counts a memmap's file pages.
    """
    base = rss_anon_bytes()
    peak = [base]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_anon_bytes())
            time.sleep(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    tracemalloc.start()
    sampler.start()
    try:
        func(*args, **kwargs)
    finally:
        done.set()
        sampler.join()
        peak[0] = max(peak[0], rss_anon_bytes())
        _, traced_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return max(peak[0] - base, traced_peak)


def interleaved_medians(timed, rounds):
    """Call the functions of ``timed`` (name -> callable) in turn, ``rounds`` times;
    return ``(wall, cpu)``: per name the median of ``time.perf_counter`` and of
    ``time.process_time`` (CPU seconds of every thread). Alternating calls see the
    same machine load, which separate benchmarks minutes apart do not."""
    import statistics

    wall = {k: [] for k in timed}
    cpu = {k: [] for k in timed}
    for _ in range(rounds):
        for name, func in timed.items():
            t, c = time.perf_counter(), time.process_time()
            func()
            wall[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
    return ({k: statistics.median(v) for k, v in wall.items()},
            {k: statistics.median(v) for k, v in cpu.items()})
