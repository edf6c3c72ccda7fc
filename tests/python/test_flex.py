"""flex_attention with built-in specs against scaled_dot_product_attention with
the equivalent dense mask or bias; block masks are reusable and count blocks."""
import pytest
import torch

import goldilocks
from goldilocks import flex
from conftest import assert_matches_oracle, randn, torch_sdpa

N = 70


def dense_mask(f):
    i, j = torch.arange(N)[:, None], torch.arange(N)[None, :]
    return f(i, j)


@pytest.mark.parametrize("spec,mask", [
    (flex.causal(), lambda i, j: j <= i),
    (flex.spec(flex.causal(), flex.window(16)), lambda i, j: (j <= i) & (j >= i - 16)),
    (flex.spec(flex.causal(), flex.window(16), flex.sinks(4)), lambda i, j: ((j <= i) & (j >= i - 16)) | (j < 4)),
    (flex.prefix(10), lambda i, j: (j < 10) | (j <= i)),
    (flex.documents(5), lambda i, j: (i * 5 // N) == (j * 5 // N)),
])
def test_mask_specs_match_dense_masks(rng, spec, mask):
    q, k, v = randn(rng, 2, 3, N, 32), randn(rng, 2, 3, N, 32), randn(rng, 2, 3, N, 32)
    m = dense_mask(mask)
    out = goldilocks.flex_attention(q, k, v, spec)
    assert_matches_oracle(out, *torch_sdpa(q, k, v, attn_mask=m))
    bm = goldilocks.create_block_mask(spec, 2, 3, N, N, BLOCK_SIZE=16)
    out_bm = goldilocks.flex_attention(q, k, v, block_mask=bm)  # the block mask carries its mods
    assert_matches_oracle(out_bm, *torch_sdpa(q, k, v, attn_mask=m))
    assert bm.count("empty") + bm.count("full") + bm.count("partial") == bm.total_blocks


def test_alibi_and_softcap_score_mods(rng):
    q, k, v = randn(rng, 1, 4, N, 16), randn(rng, 1, 4, N, 16), randn(rng, 1, 4, N, 16)
    i, j = torch.arange(N)[:, None], torch.arange(N)[None, :]
    slopes = torch.tensor([2.0 ** (-8.0 * (h + 1) / 4) for h in range(4)], dtype=torch.float64)
    bias = (-slopes[:, None, None] * (i - j).abs()).float()
    out = goldilocks.flex_attention(q, k, v, flex.spec(flex.causal(), flex.alibi()))
    assert_matches_oracle(out, *torch_sdpa(q, k, v, attn_mask=bias.masked_fill(j > i, float("-inf"))))
    capped = goldilocks.flex_attention(q, k, v, flex.softcap(2.0))
    scores = 2.0 * torch.tanh((q.double() @ k.double().transpose(-1, -2) / 4.0) / 2.0)
    ref = torch.softmax(scores, dim=-1) @ v.double()
    torch.testing.assert_close(capped.double(), ref, rtol=1e-4, atol=1e-4)


def test_numpy_and_errors(rng):
    q = randn(rng, 1, 2, N, 16).numpy()
    out = goldilocks.flex_attention(q, q, q, "causal")
    assert type(out).__name__ == "ndarray"
    with pytest.raises(ValueError, match="windw"):
        goldilocks.flex_attention(q, q, q, "causal+windw:4")
    with pytest.raises(ValueError, match="mods: pass a spec"):
        goldilocks.flex_attention(q, q, q)
