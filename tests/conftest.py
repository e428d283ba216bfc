import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# Kernels are compiled, so individual examples are fast but the first call of a
# test may compile nothing and still be slow on a shared machine: no deadline.
settings.register_profile(
    "default", deadline=None, max_examples=100,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
# CI draws the same examples every run (a failure there is reproducible, and a
# run that passed here passes there); local runs keep exploring new ones.
settings.register_profile(
    "ci", deadline=None, max_examples=200, print_blob=True, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile("ci" if os.environ.get("CI") else "default")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def as_memmap(tmp_path):
    """Write an array to disk and return it as a read-only np.memmap."""
    counter = iter(range(10**9))

    def make(a, mode="r"):
        a = np.ascontiguousarray(a)
        path = tmp_path / f"array{next(counter)}.dat"
        mm = np.memmap(path, dtype=a.dtype, mode="w+", shape=a.shape)
        mm[...] = a
        mm.flush()
        del mm
        return np.memmap(path, dtype=a.dtype, mode=mode, shape=a.shape)

    return make
