"""Bad arguments raise Python exceptions that say what and why, and nothing
is written: inputs stay byte-identical (no output exists to be half-written)."""
import numpy as np
import pytest
import torch

import goldilocks
from conftest import randn


@pytest.fixture
def qkv(rng):
    return randn(rng, 2, 4, 8, 16), randn(rng, 2, 4, 10, 16), randn(rng, 2, 4, 10, 16)


def call_expecting(exc, match, *args, **kwargs):
    """Runs the call, checks the exception and that no argument changed."""
    tensors = [a for a in list(args) + list(kwargs.values()) if isinstance(a, (torch.Tensor, np.ndarray))]
    before = [t.clone() if isinstance(t, torch.Tensor) else t.copy() for t in tensors]
    with pytest.raises(exc, match=match):
        goldilocks.scaled_dot_product_attention(*args, **kwargs)
    for t, b in zip(tensors, before):
        if isinstance(t, np.ndarray):
            np.testing.assert_array_equal(t, b)
        elif t.device.type == "cpu":
            assert torch.equal(t, b)


def test_wrong_rank(qkv):
    q, k, v = qkv
    call_expecting(ValueError, r"query of shape \(16,\): expected at least 2 dims", q[0, 0, 0], k, v)


@pytest.mark.parametrize("which,bad,match", [
    ("k", (2, 4, 10, 15), r"key of shape \(2, 4, 10, 15\): its last dim \(15\) must equal query's last dim \(16\)"),
    ("v", (2, 4, 11, 16), r"value of shape \(2, 4, 11, 16\): its sequence length .* must equal key's \(10\)"),
    ("k", (3, 4, 10, 16), r"key of shape \(3, 4, 10, 16\): dim 0 has size 3 but the other inputs have 2"),
])
def test_mismatched_shapes(qkv, rng, which, bad, match):
    q, k, v = qkv
    if which == "k":
        k = randn(rng, *bad)
    else:
        v = randn(rng, *bad)
    call_expecting(ValueError, match, q, k, v)


def test_gqa_needs_enable_gqa_like_torch(rng):
    q, k, v = randn(rng, 1, 6, 4, 8), randn(rng, 1, 2, 5, 8), randn(rng, 1, 2, 5, 8)
    call_expecting(ValueError, "pass enable_gqa=True", q, k, v)
    call_expecting(ValueError, "must be equal and divide the query heads", q, randn(rng, 1, 4, 5, 8),
                   randn(rng, 1, 4, 5, 8), enable_gqa=True)


def test_mask_that_does_not_broadcast(qkv, rng):
    q, k, v = qkv
    call_expecting(ValueError, r"attn_mask of shape \(3, 10\): does not broadcast", q, k, v,
                   attn_mask=torch.ones(3, 10, dtype=torch.bool))
    call_expecting(ValueError, "rank 5 is more than the output's 4", q, k, v,
                   attn_mask=torch.ones(1, 1, 1, 8, 10, dtype=torch.bool))


def test_mask_and_is_causal_together_is_an_error_like_torch(qkv):
    q, k, v = qkv
    call_expecting(ValueError, "cannot be combined with is_causal", q, k, v,
                   attn_mask=torch.ones(8, 10, dtype=torch.bool), is_causal=True)


@pytest.mark.parametrize("dtype,exc,match", [
    (torch.int32, TypeError, "dtype int32 is not a floating type"),
])
def test_wrong_dtype(qkv, dtype, exc, match):
    q, k, v = (t.to(dtype) for t in qkv)
    call_expecting(exc, match, q, k, v)


def test_mixed_dtypes_and_bad_mask_dtype(qkv):
    q, k, v = qkv
    call_expecting(TypeError, "dtypes float32, float64, float32 differ", q, k.double(), v)
    call_expecting(TypeError, "attn_mask: dtype int64 must be bool", q, k, v, attn_mask=torch.ones(8, 10, dtype=torch.int64))
    call_expecting(TypeError, "attn_mask: dtype float64 must be bool", q, k, v, attn_mask=torch.zeros(8, 10).double())


def test_non_cpu_tensor(qkv):
    q, k, v = qkv
    call_expecting(ValueError, "on device 'meta'; Goldilocks computes on the CPU", q.to("meta"), k, v)
    call_expecting(ValueError, "attn_mask: the tensor is on device 'meta'", q, k, v,
                   attn_mask=torch.ones(8, 10, dtype=torch.bool, device="meta"))


def test_dropout_is_rejected_never_ignored(qkv):
    q, k, v = qkv
    call_expecting(NotImplementedError, "dropout_p: 0.1 is not supported", q, k, v, dropout_p=0.1)


def test_bad_scale_and_types(qkv):
    q, k, v = qkv
    call_expecting(ValueError, "scale: inf is not finite", q, k, v, scale=float("inf"))
    call_expecting(TypeError, "query: expected a torch.Tensor or numpy.ndarray, got builtins.list", [[1.0]], k, v)


def test_autograd_is_refused_not_silently_dropped(qkv):
    q, k, v = qkv
    q = q.clone().requires_grad_()
    call_expecting(NotImplementedError, "requires grad, but Goldilocks has no backward pass", q, k, v)
    with torch.no_grad():
        goldilocks.scaled_dot_product_attention(q, k, v)  # fine without autograd


def test_explicit_backend_that_cannot_run(qkv):
    q, k, v = (t.double() for t in qkv)
    with goldilocks.sdpa_backend("flash"):
        call_expecting(NotImplementedError, "backend: flash is not eligible .*takes float32, float16 or bfloat16", q, k, v)
    with goldilocks.sdpa_backend("math"):  # math is the float32 baseline; flash serves the 16-bit types
        call_expecting(NotImplementedError, "backend: math is not eligible .*dtype_float32: dtype is bfloat16", *(t.to(torch.bfloat16) for t in qkv))
    with pytest.raises(ValueError, match="backend: 'fast' is not one of"):
        with goldilocks.sdpa_backend("fast"):
            pass


def test_explain_reports_why(qkv):
    q, k, v = (t.double() for t in qkv)
    e = goldilocks.explain(q, k, v)
    assert e["valid"] and e["chosen"] == "reference"
    flash = next(x for x in e["verdicts"] if x["backend"] == "flash")
    assert not flash["eligible"] and "float32, float16 or bfloat16" in flash["failed_checks"][0]
    with pytest.raises(ValueError, match="value of shape"):
        goldilocks.explain(q, k, v[..., :3, :])


def test_native_attention_arguments(qkv):
    q, k, v = qkv
    with pytest.raises(ValueError, match="causal: 'diagonal' is not one of"):
        goldilocks.attention(q, k, v, causal="diagonal")
    with pytest.raises(ValueError, match="isa: 'sse' is not one of"):
        goldilocks.attention(q, k, v, isa="sse")


def test_sdpa_backend_accepts_torch_backend_names(qkv):
    from torch.nn.attention import SDPBackend
    q, k, v = qkv
    with goldilocks.sdpa_backend(SDPBackend.MATH):
        assert goldilocks.current_backend() == "math"
        assert goldilocks.explain(q, k, v)["chosen"] == "math"
    with pytest.raises(ValueError, match="backend: .*EFFICIENT_ATTENTION"):
        with goldilocks.sdpa_backend(SDPBackend.EFFICIENT_ATTENTION):
            pass
