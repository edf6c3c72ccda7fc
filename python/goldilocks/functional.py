"""scaled_dot_product_attention with torch.nn.functional's exact signature and
semantics on the CPU, and attention(), the native call (bottom-right causal,
log-sum-exp). PyTorch's argument rules are checked here; shapes, strides and
the no-copy layout are the extension's job (python/src/batch_layout.cc)."""
import math

from goldilocks import _arrays, _core
from goldilocks.backends import _normalize, current_backend

_FLOAT_DTYPES = ("float32", "float64", "float16", "bfloat16")


def _check_inputs(query, key, value, attn_mask):
    q = _arrays.prepare(query, "query")
    k = _arrays.prepare(key, "key")
    v = _arrays.prepare(value, "value")
    dtypes = (_arrays.dtype_name(q), _arrays.dtype_name(k), _arrays.dtype_name(v))
    if len(set(dtypes)) != 1:
        raise TypeError(f"query, key, value: dtypes {', '.join(dtypes)} differ; they must share one dtype "
                        "(as in torch.nn.functional.scaled_dot_product_attention)")
    if dtypes[0] not in _FLOAT_DTYPES:
        raise TypeError(f"query: dtype {dtypes[0]} is not a floating type; use float32, float16 or bfloat16")
    m = None
    if attn_mask is not None:
        m = _arrays.prepare(attn_mask, "attn_mask")
        mdt = _arrays.dtype_name(m)
        if mdt != "bool" and mdt != dtypes[0]:
            raise TypeError(f"attn_mask: dtype {mdt} must be bool (True = attend) or the query's dtype {dtypes[0]} "
                            "(added to the scores), as in PyTorch")
    return q, k, v, m


def _check_scale(scale):
    if scale is None:
        return None
    scale = float(scale)
    if not math.isfinite(scale):
        raise ValueError(f"scale: {scale} is not finite; pass a finite number or None for 1/sqrt(E)")
    return scale


def _run_sdpa(query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa, backend=None,
              explain_only=False, precision="exact"):
    if dropout_p != 0.0:
        # Dropout needs an RNG stream matching torch's to be a drop-in; refusing beats ignoring it.
        raise NotImplementedError(
            f"dropout_p: {dropout_p} is not supported; Goldilocks is for inference and never drops silently. "
            "Pass dropout_p=0.0 (e.g. dropout_p=p if module.training else 0.0)")
    if is_causal and attn_mask is not None:
        raise ValueError("attn_mask: an explicit mask cannot be combined with is_causal=True (PyTorch's rule); "
                         "fold the causal mask into attn_mask or drop one of them")
    q, k, v, m = _check_inputs(query, key, value, attn_mask)
    name = _normalize(backend) if backend is not None else current_backend()
    return _core.attention(*map(_arrays.importable, (q, k, v, m)), _check_scale(scale),
                           "top_left" if is_causal else "none", bool(enable_gqa), name, "best",
                           _arrays.allocator_like(q), False, explain_only, precision=precision)


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                                 enable_gqa=False):
    """torch.nn.functional.scaled_dot_product_attention for CPU arrays.

    query (..., Hq, L, E), key (..., Hkv, S, E), value (..., Hkv, S, Ev) → (..., Hq, L, Ev), as
    torch.Tensor or numpy.ndarray (the type of `query`). Same semantics as PyTorch: leading dims
    broadcast, bool masks (True = attend) or float masks (added) broadcast to (..., Hq, L, S),
    top-left is_causal, enable_gqa, scale defaulting to 1/sqrt(E). Inputs of any strides are read
    in place. A fully masked row gives 0 (PyTorch 2.13 on the CPU also gives 0; older versions NaN).

    float16 / bfloat16 inputs give an output of the query's dtype, computed in float32 and rounded once.
    Raises ValueError/TypeError for invalid arguments and NotImplementedError for what Goldilocks
    does not do (dropout_p > 0, autograd); nothing is written then.
    The backend is goldilocks.current_backend() (see sdpa_backend)."""
    return _run_sdpa(query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa)


_CAUSAL = {None: "none", False: "none", True: "top_left", "top_left": "top_left", "bottom_right": "bottom_right"}


def attention(query, key, value, *, mask=None, causal=None, scale=None, backend=None, isa="best", return_lse=False,
              precision="exact"):
    """The native call: like scaled_dot_product_attention, plus

    causal: None, "top_left" (= True, PyTorch's is_causal) or "bottom_right" (FlashAttention's,
            for decoding against a KV cache); it may be combined with `mask`.
    return_lse: also return the per-row log-sum-exp (float32, shape out.shape[:-1], -inf for a
            fully masked row).
    isa: "best" (the widest instruction set this CPU supports) or "portable" (the baseline
    target every x86-64 CPU runs: scalar code). Grouped-query attention is always allowed.
    precision: "exact" (default) or "int8_qk": approximate, opt-in int8 Q·Kᵀ (SageAttention's smoothing and
            quantization; softmax and P·V in float32) on the flash backend; relative L2 error <= 1e-2 on Gaussian
            inputs. An explicit backend="reference" or "math" (exact attention) with it raises NotImplementedError."""
    if causal not in _CAUSAL:
        raise ValueError(f"causal: {causal!r} is not one of None, True, 'top_left', 'bottom_right'")
    q, k, v, m = _check_inputs(query, key, value, mask)
    name = _normalize(backend) if backend is not None else current_backend()
    return _core.attention(*map(_arrays.importable, (q, k, v, m)), _check_scale(scale), _CAUSAL[causal], True,
                           name, isa, _arrays.allocator_like(q), bool(return_lse), False, precision=str(precision))
