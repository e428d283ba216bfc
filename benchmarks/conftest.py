"""Shared benchmark helpers.

Benchmarks compare hnm with the numpy / scikit-learn / faiss way of doing the same
work in the same run, and record ratios of medians in ``extra_info``. They are not
part of the test run: ``pytest benchmarks --benchmark-only``.
"""
import pytest


class Ratios:
    """Medians recorded by the benchmarks, and the ratios to report between them.

    Each benchmark calls ``record`` after it ran; ``compare`` declares a ratio of
    medians (``a / b``) with its target, printed at the end of the session.
    """

    def __init__(self):
        self.medians = {}
        self.comparisons = []
        self.notes = []

    def record(self, benchmark, name):
        self.medians[name] = benchmark.stats.stats.median
        benchmark.extra_info["name"] = name

    def compare(self, a, b, target):
        self.comparisons.append((a, b, target))

    def note(self, text):
        self.notes.append(text)

    def lines(self):
        for a, b, target in self.comparisons:
            if a in self.medians and b in self.medians:
                r = self.medians[a] / self.medians[b]
                yield (f"{a} / {b}: {r:.3f}  (medians {self.medians[a]:.4g} s / "
                       f"{self.medians[b]:.4g} s; target {target})")
        yield from self.notes


RATIOS = Ratios()


@pytest.fixture(scope="session")
def ratios():
    return RATIOS


def pytest_terminal_summary(terminalreporter):
    lines = list(RATIOS.lines())
    if lines:
        terminalreporter.section("hnm ratios (same run)")
        for line in lines:
            terminalreporter.write_line(line)
