"""goldilocks.scaled_dot_product_attention against torch's on a grid of
shapes, masks, causal, GQA, scales, dtypes and memory layouts."""
import itertools

import numpy as np
import pytest
import torch

import goldilocks
from conftest import assert_matches_oracle, randn, torch_sdpa

# (B, Hq, Hkv, Nq, Nk, Dk, Dv): lengths 0/1/prime/around tile sizes, odd head dims.
SHAPES = [
    (1, 1, 1, 1, 1, 1, 1),
    (2, 3, 3, 17, 33, 24, 16),
    (1, 2, 2, 64, 65, 64, 64),
    (1, 2, 2, 65, 63, 80, 96),
    (3, 1, 1, 7, 129, 13, 5),
    (1, 2, 2, 0, 5, 8, 8),
    (1, 2, 2, 5, 0, 8, 8),
]


@pytest.mark.parametrize("backend", ["auto", "math", "flash", "reference"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("is_causal", [False, True])
def test_shapes(rng, shape, is_causal, backend):
    b, hq, hkv, nq, nk, dk, dv = shape
    q, k, v = randn(rng, b, hq, nq, dk), randn(rng, b, hkv, nk, dk), randn(rng, b, hkv, nk, dv)
    with goldilocks.sdpa_backend(backend):
        out = goldilocks.scaled_dot_product_attention(q, k, v, is_causal=is_causal)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    assert_matches_oracle(out, *torch_sdpa(q, k, v, is_causal=is_causal))


def broadcast_mask_shapes(full):
    """Every shape that broadcasts to `full` (B, H, Nq, Nk) by PyTorch's rules: ranks 1..4, each dim full or 1."""
    for rank in range(1, 5):
        dims = full[4 - rank:]
        for keep in itertools.product([True, False], repeat=rank):
            yield tuple(d if kept else 1 for d, kept in zip(dims, keep))


FULL = (2, 3, 9, 11)


@pytest.mark.parametrize("mask_shape", list(broadcast_mask_shapes(FULL)), ids=str)
@pytest.mark.parametrize("kind", ["bool", "float"])
def test_every_broadcastable_mask_shape(rng, mask_shape, kind):
    b, h, nq, nk = FULL
    q, k, v = randn(rng, b, h, nq, 16), randn(rng, b, h, nk, 16), randn(rng, b, h, nk, 16)
    if kind == "bool":
        mask = torch.rand(mask_shape, generator=rng) > 0.4
        if len(mask_shape) >= 2 and mask_shape[-2] > 1:
            mask[..., 3, :] = False  # a fully masked row (both give 0 for it)
    else:
        mask = randn(rng, *mask_shape)
        mask[torch.rand(mask_shape, generator=rng) > 0.7] = float("-inf")
    out = goldilocks.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert_matches_oracle(out, *torch_sdpa(q, k, v, attn_mask=mask))


def test_fully_masked_row_is_zero_like_torch_2_13(rng):
    q, k, v = randn(rng, 1, 2, 4, 8), randn(rng, 1, 2, 6, 8), randn(rng, 1, 2, 6, 8)
    mask = torch.ones(4, 6, dtype=torch.bool)
    mask[2] = False
    out = goldilocks.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert torch.equal(out[:, :, 2], torch.zeros(1, 2, 8))  # Goldilocks' documented rule
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert not torch.isnan(ref).any()  # PyTorch 2.13 on the CPU agrees (older versions gave NaN)
    lse = goldilocks.attention(q, k, v, mask=mask, return_lse=True)[1]
    assert torch.all(lse[:, :, 2] == float("-inf")) and torch.isfinite(lse[:, :, [0, 1, 3]]).all()


@pytest.mark.parametrize("hq,hkv", [(6, 2), (6, 3), (6, 1), (4, 4)])
@pytest.mark.parametrize("is_causal", [False, True])
def test_gqa(rng, hq, hkv, is_causal):
    q, k, v = randn(rng, 2, hq, 13, 32), randn(rng, 2, hkv, 21, 32), randn(rng, 2, hkv, 21, 32)
    out = goldilocks.scaled_dot_product_attention(q, k, v, is_causal=is_causal, enable_gqa=True)
    assert_matches_oracle(out, *torch_sdpa(q, k, v, is_causal=is_causal, enable_gqa=True))


def test_gqa_with_per_head_mask(rng):
    q, k, v = randn(rng, 2, 6, 13, 32), randn(rng, 2, 2, 21, 32), randn(rng, 2, 2, 21, 32)
    mask = torch.rand(2, 6, 13, 21, generator=rng) > 0.3
    out = goldilocks.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
    assert_matches_oracle(out, *torch_sdpa(q, k, v, attn_mask=mask, enable_gqa=True))


@pytest.mark.parametrize("scale", [0.0, -0.3, 2.5, 1e-3])
def test_scale(rng, scale):
    q, k, v = randn(rng, 1, 2, 9, 16), randn(rng, 1, 2, 12, 16), randn(rng, 1, 2, 12, 16)
    out = goldilocks.scaled_dot_product_attention(q, k, v, scale=scale)
    assert_matches_oracle(out, *torch_sdpa(q, k, v, scale=scale))


@pytest.mark.parametrize("lead", [(), (5,), (2, 3), (2, 1, 3)], ids=str)
def test_leading_batch_dims(rng, lead):
    q, k, v = randn(rng, *lead, 7, 16), randn(rng, *lead, 9, 16), randn(rng, *lead, 9, 8)
    mask = torch.rand(*lead[-1:], 7, 9, generator=rng) > 0.3
    out = goldilocks.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert_matches_oracle(out, *torch_sdpa(q, k, v, attn_mask=mask))


def test_leading_dims_broadcast_between_inputs(rng):
    q = randn(rng, 2, 3, 4, 7, 16)
    k, v = randn(rng, 3, 1, 9, 16), randn(rng, 1, 3, 1, 9, 8)  # missing and size-1 dims broadcast
    out = goldilocks.scaled_dot_product_attention(q, k, v)
    assert out.shape == (2, 3, 4, 7, 8)
    assert_matches_oracle(out, *torch_sdpa(q, k, v))


def test_transposed_sliced_and_expanded_views(rng):
    base = randn(rng, 2, 19, 4, 40)  # (B, N, H, D) as projections produce it
    q = base.transpose(1, 2)[..., :32]  # non-contiguous: strided heads, sliced head dim
    kv = randn(rng, 2, 4, 40, 64)
    k, v = kv[:, :, ::2, :32], kv[:, :, 1::2, 32:]  # every other key: stride 2 along N
    mask = (torch.rand(1, 1, 1, 20, generator=rng) > 0.3).expand(2, 4, 19, 20)  # stride-0 dims
    out = goldilocks.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert_matches_oracle(out, *torch_sdpa(q, k, v, attn_mask=mask))


def test_batch_dims_that_cannot_merge_loop_without_copies(rng):
    # (3, 2) batch dims permuted: no single stride covers them, so the call loops over slices.
    q = randn(rng, 2, 3, 4, 5, 16).transpose(0, 1)
    k = randn(rng, 3, 2, 4, 6, 16)
    v = randn(rng, 2, 3, 4, 6, 16).transpose(0, 1)
    out = goldilocks.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert_matches_oracle(out, *torch_sdpa(q, k, v, is_causal=True))


def test_float64_runs_on_the_reference_backend(rng):
    q, k, v = (randn(rng, 1, 2, 9, 16, dtype=torch.float64) for _ in range(3))
    mask = torch.rand(9, 9, generator=rng) > 0.3
    out = goldilocks.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert out.dtype == torch.float64
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    assert goldilocks.explain(q, k, v)["chosen"] == "reference"


def test_numpy_in_numpy_out_same_values(rng):
    q, k, v = randn(rng, 2, 3, 10, 16), randn(rng, 2, 3, 12, 16), randn(rng, 2, 3, 12, 16)
    mask = torch.rand(3, 10, 12, generator=rng) > 0.3
    expected = goldilocks.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    qn, kn, vn, mn = (t.numpy() for t in (q, k, v, mask))
    kn = kn.copy()
    kn.setflags(write=False)  # read-only arrays are fine: inputs are never written
    out = goldilocks.scaled_dot_product_attention(qn, kn, vn, attn_mask=mn)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    np.testing.assert_array_equal(out, expected.numpy())  # same kernel, same bits
    # NumPy-only layouts: Fortran order and negative strides.
    out2 = goldilocks.scaled_dot_product_attention(np.asfortranarray(qn), kn[:, :, ::-1], vn[:, :, ::-1])
    ref = goldilocks.scaled_dot_product_attention(q, k.flip(2), v.flip(2))
    np.testing.assert_allclose(out2, ref.numpy(), rtol=1e-5, atol=1e-6)


def test_output_is_independent_of_thread_count(rng):
    q, k, v = randn(rng, 1, 4, 70, 32), randn(rng, 1, 4, 90, 32), randn(rng, 1, 4, 90, 32)
    goldilocks.set_num_threads(1)
    one = goldilocks.scaled_dot_product_attention(q, k, v, is_causal=True)
    goldilocks.set_num_threads(2)
    two = goldilocks.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert torch.equal(one, two)


def test_native_attention_bottom_right_and_lse(rng):
    q, k, v = randn(rng, 1, 2, 3, 16), randn(rng, 1, 2, 8, 16), randn(rng, 1, 2, 8, 16)
    out, lse = goldilocks.attention(q, k, v, causal="bottom_right", return_lse=True)
    # Bottom-right causal = the last Nq keys' diagonal: an explicit mask of j <= i + (Nk - Nq).
    mask = torch.arange(8)[None, :] <= torch.arange(3)[:, None] + 5
    assert_matches_oracle(out, *torch_sdpa(q, k, v, attn_mask=mask))
    scores = (q.double() @ k.double().transpose(-1, -2)) / 4.0
    ref_lse = torch.logsumexp(scores.masked_fill(~mask, float("-inf")), dim=-1)
    torch.testing.assert_close(lse.double(), ref_lse, rtol=1e-5, atol=1e-5)
