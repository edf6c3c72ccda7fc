"""Backend selection like torch.nn.attention.sdpa_kernel, and explain().

The choice lives in a contextvars.ContextVar: it is per thread (a new thread
starts at "auto") and per asyncio task, so concurrent callers never see each
other's choice."""
import contextlib
import contextvars

BACKENDS = ("auto", "reference", "math", "flash", "decode")

# torch.nn.attention.SDPBackend names that have a Goldilocks counterpart.
_TORCH_NAMES = {"MATH": "math", "FLASH_ATTENTION": "flash"}

_current = contextvars.ContextVar("goldilocks_sdpa_backend", default="auto")


def _normalize(backend):
    name = getattr(backend, "name", backend)  # accepts SDPBackend members too
    if isinstance(name, str):
        lowered = _TORCH_NAMES.get(name, name.lower())
        if lowered in BACKENDS:
            return lowered
    raise ValueError(f"backend: {backend!r} is not one of {', '.join(BACKENDS)}")


def current_backend():
    """The backend scaled_dot_product_attention uses in this thread/context."""
    return _current.get()


@contextlib.contextmanager
def sdpa_backend(backend):
    """Use `backend` ("auto", "reference", "math", "flash" or "decode") for calls inside the block.

    An explicit backend that cannot run a call raises NotImplementedError naming
    the failed checks (nothing falls back silently); explain() shows them upfront.
    """
    token = _current.set(_normalize(backend))
    try:
        yield
    finally:
        _current.reset(token)


def explain(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False,
            backend=None):
    """Which backend a scaled_dot_product_attention call would use and why each other one would not.

    Returns a dict: valid, error, chosen, isa, reason, verdicts (backend, eligible,
    failed_checks) and text (the same, printable)."""
    from goldilocks.functional import _run_sdpa
    return _run_sdpa(query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa,
                     backend=backend, explain_only=True)
