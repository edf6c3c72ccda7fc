"""float16 and bfloat16 through the drop-in: torch bf16/f16 tensors and NumPy
float16 arrays, against PyTorch on the same tensors.

Policy (as tests/test_util.h's half-precision policy): the oracle is PyTorch's
math SDPA in float64 on the same (already rounded) inputs; Goldilocks' error
must be at most twice PyTorch's own error for that dtype (its default CPU SDPA
on the same half tensors) plus eps(dtype)/8, and NaN positions must match."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import goldilocks
from conftest import randn

HALF = [torch.float16, torch.bfloat16]
EPS = {torch.float16: 2.0 ** -10, torch.bfloat16: 2.0 ** -7}

# (B, Hq, Hkv, Nq, Nk, Dk, Dv): lengths 0/1/prime/around tile sizes, odd head dims, GQA.
SHAPES = [
    (1, 1, 1, 1, 1, 1, 1),
    (2, 3, 3, 17, 33, 24, 16),
    (1, 2, 2, 64, 65, 64, 64),
    (1, 4, 2, 65, 63, 80, 96),
    (3, 2, 1, 7, 129, 13, 5),
    (1, 2, 2, 0, 5, 8, 8),
    (1, 2, 2, 5, 0, 8, 8),
]


def oracle64(q, k, v, **kw):
    from torch.nn.attention import SDPBackend, sdpa_kernel
    kw = dict(kw)
    if kw.get("attn_mask") is not None and kw["attn_mask"].dtype != torch.bool:
        kw["attn_mask"] = kw["attn_mask"].double()
    with sdpa_kernel(SDPBackend.MATH):
        return F.scaled_dot_product_attention(q.double(), k.double(), v.double(), **kw)


def assert_half_policy(out, q, k, v, **kw):
    """out against PyTorch's own SDPA on the same half tensors, both measured against the fp64 oracle."""
    torch_out = F.scaled_dot_product_attention(q, k, v, **kw)
    oracle = oracle64(q, k, v, **kw)
    assert out.dtype == q.dtype and out.shape == torch_out.shape
    assert torch.equal(torch.isnan(out), torch.isnan(oracle)), "NaN positions differ from the fp64 oracle"
    finite = torch.isfinite(oracle)
    infinite = torch.isinf(oracle)
    assert torch.equal(out.double()[infinite], oracle[infinite]), "±inf positions differ from the fp64 oracle"
    if not finite.any():
        return
    err = (out.double() - oracle)[finite].abs().max().item()
    torch_err = (torch_out.double() - oracle)[finite].abs().max().item()
    assert err <= 2 * torch_err + EPS[q.dtype] / 8, f"error {err:.3g} vs PyTorch's {torch_err:.3g} ({q.dtype})"


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("is_causal", [False, True])
def test_shapes(rng, dtype, shape, is_causal):
    b, hq, hkv, nq, nk, dk, dv = shape
    q, k, v = (randn(rng, b, h, n, d, dtype=dtype) for h, n, d in ((hq, nq, dk), (hkv, nk, dk), (hkv, nk, dv)))
    out = goldilocks.scaled_dot_product_attention(q, k, v, is_causal=is_causal, enable_gqa=hq != hkv)
    assert isinstance(out, torch.Tensor) and out.dtype == dtype
    assert_half_policy(out, q, k, v, is_causal=is_causal, enable_gqa=hq != hkv)


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("kind", ["bool", "float"])
def test_masks_with_fully_masked_rows(rng, dtype, kind):
    q, k, v = randn(rng, 2, 3, 9, 16, dtype=dtype), randn(rng, 2, 3, 11, 16, dtype=dtype), randn(rng, 2, 3, 11, 16, dtype=dtype)
    if kind == "bool":
        mask = torch.rand(2, 1, 9, 11, generator=rng) > 0.4
        mask[..., 3, :] = False
    else:
        mask = randn(rng, 2, 1, 9, 11, dtype=dtype)  # a float mask has the query's dtype, as in PyTorch
        mask[torch.rand(2, 1, 9, 11, generator=rng) > 0.7] = float("-inf")
        mask[..., 3, :] = float("-inf")
    out = goldilocks.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert torch.all(out[:, :, 3] == 0)
    keep = torch.ones(9, dtype=torch.bool)
    keep[3] = False  # PyTorch's own fully masked rows are its business (0 or NaN by version)
    torch_out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    oracle = oracle64(q, k, v, attn_mask=mask)
    err = (out.double() - oracle)[:, :, keep].abs().max().item()
    torch_err = (torch_out.double() - oracle)[:, :, keep].abs().max().item()
    assert err <= 2 * torch_err + EPS[dtype] / 8


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_strided_inputs_read_in_place(rng, dtype):
    # (B, N, H, D) projections viewed as (B, H, N, D), and a sliced head dim.
    q = randn(rng, 2, 33, 4, 40, dtype=dtype).transpose(1, 2)[..., :32]
    k = randn(rng, 2, 47, 2, 32, dtype=dtype).transpose(1, 2)
    v = randn(rng, 2, 47, 2, 24, dtype=dtype).transpose(1, 2)
    out = goldilocks.scaled_dot_product_attention(q, k, v, enable_gqa=True, is_causal=True)
    assert_half_policy(out, q, k, v, enable_gqa=True, is_causal=True)


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_nan_and_inf_propagate(rng, dtype):
    q, k, v = (randn(rng, 1, 2, 12, 16, dtype=dtype) for _ in range(3))
    q[0, 0, 4, 3] = float("nan")
    v[0, 1, 0, 2] = float("inf")  # key 0 is visible to every row: column 2 of head 1 is +inf
    out = goldilocks.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert_half_policy(out, q, k, v, is_causal=True)
    assert torch.isnan(out[0, 0, 4]).all() and torch.isinf(out[0, 1, :, 2]).all()
    assert not torch.isnan(out[0, 1]).any()


def test_f16_extremes(rng):
    q, k = randn(rng, 1, 1, 8, 16, dtype=torch.float16), randn(rng, 1, 1, 8, 16, dtype=torch.float16)
    v = torch.full((1, 1, 8, 16), 65504.0, dtype=torch.float16)  # largest finite: the average stays finite
    v[..., 8:] = 2.0 ** -24 * torch.arange(1, 9, dtype=torch.float16)  # subnormals
    out = goldilocks.scaled_dot_product_attention(q, k, v)
    assert torch.all(out[..., :8] == 65504.0)
    assert_half_policy(out, q, k, v)


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_lse_is_float32_and_flex_takes_half(rng, dtype):
    q, k, v = (randn(rng, 1, 2, 70, 32, dtype=dtype) for _ in range(3))
    out, lse = goldilocks.attention(q, k, v, causal="bottom_right", return_lse=True)
    assert out.dtype == dtype and lse.dtype == torch.float32
    ref, ref_lse = goldilocks.attention(q.float(), k.float(), v.float(), causal="bottom_right", return_lse=True)
    assert torch.equal(out, ref.to(dtype)), "16-bit inputs = float32 on the widened values, rounded once"
    assert torch.equal(lse, ref_lse)
    flex = goldilocks.flex_attention(q, k, v, goldilocks.flex.spec(goldilocks.flex.causal(), goldilocks.flex.window(16)))
    flex32 = goldilocks.flex_attention(q.float(), k.float(), v.float(),
                                       goldilocks.flex.spec(goldilocks.flex.causal(), goldilocks.flex.window(16)))
    assert flex.dtype == dtype and torch.equal(flex, flex32.to(dtype))


def test_numpy_float16(rng):
    q, k, v = (randn(rng, 2, 3, 17, 24, dtype=torch.float16) for _ in range(3))
    out = goldilocks.scaled_dot_product_attention(q.numpy(), k.numpy(), v.numpy(), is_causal=True)
    assert isinstance(out, np.ndarray) and out.dtype == np.float16
    assert_half_policy(torch.from_numpy(out), q, k, v, is_causal=True)


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_mixed_dtypes_raise_like_torch(rng, dtype):
    q, k, v = (randn(rng, 1, 2, 5, 8, dtype=dtype) for _ in range(3))
    other = torch.float16 if dtype == torch.bfloat16 else torch.bfloat16
    with pytest.raises(RuntimeError):
        F.scaled_dot_product_attention(q, k.to(other), v)  # PyTorch refuses too
    with pytest.raises(TypeError, match="differ; they must share one dtype"):
        goldilocks.scaled_dot_product_attention(q, k.to(other), v)
    with pytest.raises(TypeError, match="differ"):
        goldilocks.scaled_dot_product_attention(q, k, v.float())
    with pytest.raises(TypeError, match=f"must be bool .* or the query's dtype {str(dtype).removeprefix('torch.')}"):
        goldilocks.scaled_dot_product_attention(q, k, v, attn_mask=torch.zeros(5, 5))
    with goldilocks.sdpa_backend("math"), pytest.raises(NotImplementedError, match="dtype_float32"):
        goldilocks.scaled_dot_product_attention(q, k, v)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_int8_qk_is_opt_in_and_within_its_bounds(rng, dtype):
    q, k, v = (randn(rng, 1, 4, 300, 64, dtype=dtype) for _ in range(3))
    out, lse = goldilocks.attention(q, k, v, precision="int8_qk", return_lse=True)
    exact, exact_lse = goldilocks.attention(q, k, v, return_lse=True)
    oracle = oracle64(q, k, v)
    rel = ((out.double() - oracle).norm() / oracle.norm()).item()
    cos = F.cosine_similarity(out.double().flatten(), oracle.flatten(), dim=0).item()
    assert out.dtype == dtype and rel <= 1e-2 and cos >= 0.9999, (rel, cos)
    assert not torch.equal(out, exact), "int8_qk must actually change the arithmetic"
    assert (lse - exact_lse).abs().max().item() < 0.05
    for backend in ("reference", "math"):
        with pytest.raises(NotImplementedError, match="precision is int8_qk"):
            goldilocks.attention(q, k, v, precision="int8_qk", backend=backend)
    with pytest.raises(ValueError, match="precision: 'int4' is not one of"):
        goldilocks.attention(q, k, v, precision="int4")
