"""Seeds on which the differential fuzzer (fuzz_sdpa.py) once failed, replayed on every
run: the Python counterpart of tests/fuzz/corpus/regressions. The call is drawn by the
fuzzer's own generator, so `python tests/python/fuzz_sdpa.py --seed N` replays one with
its traceback."""
import pytest

import fuzz_sdpa

SEEDS = {
    # q of 3e4 against k with cancelling products: scores whose last bits differ between
    # any two summation orders (flash 4.1e-5, math and PyTorch 6.8e-6 against fp64).
    135414: "score rounding in fp32",
    # Ill-conditioned scores where PyTorch's summation order was the luckier one
    # (3.8e-5 for Goldilocks' math and flash, 5.4e-6 for PyTorch): the 2x-own-math policy.
    103274: "2x Goldilocks' own fp32 math",
    # float64 with |k| 3.6e4: the reference backend 2.8e-8 from PyTorch's float64 oracle
    # (1e-12 of max |v|); the check allowed float64 no score rounding, then fell back to
    # the math backend, which takes float32 only, and raised.
    676415: "score rounding in float64",
}


@pytest.mark.parametrize("seed", sorted(SEEDS))
def test_past_fuzz_failure_passes(seed):
    assert fuzz_sdpa.check(seed) is None, SEEDS[seed]
