"""The seven failures a differential fuzzer found as a user would (issue 18),
each reproduced exactly as reported, plus set_num_threads(-8). Every one of
these crashed, hung, raised or returned wrong numbers before its fix."""
import numpy as np
import pytest
import torch

import goldilocks as G
from conftest import assert_matches_oracle, randn, torch_sdpa


def test_1_byte_counts_that_overflow_raise_instead_of_segfaulting():
    # Expanded head dim 2^61: segfaulted (a wrapped tile size); 2^60 already raised MemoryError.
    q, k = torch.zeros(1).expand(1, 1, 2, 2**61), torch.zeros(1).expand(1, 1, 3, 2**61)
    with pytest.raises(ValueError, match="k: the call's work"):
        G.scaled_dot_product_attention(q, k, torch.randn(1, 1, 3, 4))


@pytest.mark.parametrize("nk", [2**61, 2**62])
def test_2_endless_stride_zero_keys_raise_instead_of_hanging(nk):
    kv = torch.zeros(1).expand(1, 1, nk, 1)
    with pytest.raises(ValueError, match="overflows int64"):
        G.scaled_dot_product_attention(torch.randn(1, 1, 1, 1), kv, kv)


@pytest.mark.parametrize("backend", ["flash", "math", "reference"])
def test_3_huge_finite_scores_give_no_nan(rng, backend):
    q = randn(rng, 1, 1, 4, 16) * 1e10
    k, v = randn(rng, 1, 1, 4, 16), randn(rng, 1, 1, 4, 16)
    with G.sdpa_backend(backend):
        out = G.scaled_dot_product_attention(q, k, v)
    assert not out.isnan().any()
    same, oracle = torch_sdpa(q, k, v)
    assert_matches_oracle(out, same, oracle)


def test_3_scores_near_700_stay_within_twice_math_error(rng):
    # Row maxima ~700. The score rounding itself (fp32 dot products over 255 terms) is
    # common to every fp32 backend; the softmax must add nothing beyond the 2x policy
    # against Goldilocks' own fp32 math (tests/test_util.h). Before the fix it did.
    q, k, v = randn(rng, 1, 4, 64, 255) * 250, randn(rng, 1, 4, 80, 255), randn(rng, 1, 4, 80, 255)
    _, oracle = torch_sdpa(q, k, v)
    math_out = G.attention(q, k, v, backend="math")
    for isa in ("best", "portable"):
        out = G.attention(q, k, v, backend="flash", isa=isa)
        assert_matches_oracle(out, math_out, oracle)


def test_4_paged_fork_then_append_to_both_uses_one_copy():
    c = G.KvCache(2, 1, 8, 16, layout="paged", page_size=16)
    x = np.ones((2, 1, 1, 8), np.float32)
    c.append(x, x)
    c.fork(1, 0)
    c.append(x, x)  # raised MemoryError: needs 2 free pages but the pool has 1


def test_5_float64_mask_with_float64_queries(rng):
    q = randn(rng, 1, 2, 5, 8, dtype=torch.float64)
    mask = randn(rng, 5, 5, dtype=torch.float64)
    out = G.scaled_dot_product_attention(q, q, q, attn_mask=mask)
    want = torch.nn.functional.scaled_dot_product_attention(q, q, q, attn_mask=mask)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, want, rtol=1e-12, atol=1e-12)


def test_6_empty_numpy_arrays_with_zero_strides():
    out = G.scaled_dot_product_attention(np.zeros((0, 4), np.float32), np.zeros((3, 4), np.float32),
                                         np.zeros((3, 2), np.float32))
    assert out.shape == (0, 2) and isinstance(out, np.ndarray)
    q = np.zeros((1, 1, 0, 4), np.float32)
    kv = np.zeros((1, 1, 3, 4), np.float32)
    assert G.flex_attention(q, kv, kv, "causal").shape == (1, 1, 0, 4)


def test_7_empty_mask_with_null_data():
    q = torch.randn(2, 4)
    out = G.scaled_dot_product_attention(q, torch.randn(0, 4), torch.randn(0, 4),
                                         attn_mask=torch.from_numpy(np.zeros(0, bool)))
    want = torch.nn.functional.scaled_dot_product_attention(q, torch.randn(0, 4), torch.randn(0, 4),
                                                            attn_mask=torch.zeros(0, dtype=torch.bool))
    assert torch.equal(out, torch.zeros(2, 4)) and torch.equal(out, torch.nan_to_num(want))


def test_set_num_threads_negative_raises_and_changes_nothing():
    G.set_num_threads(1)
    with pytest.raises(ValueError, match="n: -8"):
        G.set_num_threads(-8)
    assert G.get_num_threads() == 1
