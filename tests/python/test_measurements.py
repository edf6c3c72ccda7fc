"""Measurements return plain Python data; bad options raise naming the option."""
import pytest

import goldilocks


def test_peak_returns_plain_numbers():
    p = goldilocks.peak(threads=1, fma_seconds=0.01, repeats=1, buffer_bytes=1 << 24)
    assert isinstance(p, dict) and p["threads"] == 1 and isinstance(p["isa"], str)
    for key in ("fma_gflops_1t", "fma_gflops_all", "fma_gflops_per_cpu_second", "read_gbs_1t", "read_gbs_all"):
        assert isinstance(p[key], float) and p[key] > 0, key


@pytest.mark.parametrize("kwargs,match", [
    ({"repeats": 0}, "repeats: must be in"),
    ({"fma_seconds": -1.0}, "fma_seconds: must be in"),
    ({"threads": -2}, "threads: must be >= 0"),
])
def test_peak_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        goldilocks.peak(**kwargs)
