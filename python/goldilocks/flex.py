"""FlexAttention on the CPU: built-in mask and score mods, reusable block masks.

Mods are runtime specs compiled once onto the library's built-in (inlined, vectorised)
mods; the grammar and the list are in docs/flex.md. Helpers below build the terms:

    spec = goldilocks.flex.spec(flex.causal(), flex.window(256), flex.sinks(4))   # "causal+window:256+sinks:4"
    bm = goldilocks.create_block_mask(spec, B=1, H=8, Q_LEN=n, KV_LEN=n)         # reusable across calls
    out = goldilocks.flex_attention(q, k, v, spec, block_mask=bm)
"""
import functools

from goldilocks import _arrays, _core
from goldilocks.backends import current_backend
from goldilocks.functional import _check_inputs, _check_scale

FlexMods = _core.FlexMods
BlockMask = _core.BlockMask


# Terms of the spec grammar (docs/flex.md), as functions so typos fail in Python.
def causal(align="top_left"):
    return "causal" if align == "top_left" else f"causal:{align}"


def window(left, right=None):
    return f"window:{left}" if right is None else f"window:{left},{right}"


def sinks(n):
    return f"sinks:{n}"


def global_tokens(n):
    return f"global:{n}"


def prefix(n):
    return f"prefix:{n}"


def documents(n):
    return f"documents:{n}"


def dilated(width, step):
    return f"dilated:{width},{step}"


def alibi(max_bias=None):
    return "alibi" if max_bias is None else f"alibi:{max_bias}"


def softcap(cap):
    return f"softcap:{cap}"


def spec(*terms):
    """Joins terms: restrictions AND, grants (sinks/global/prefix) OR, score mods chain."""
    return "+".join(terms)


@functools.lru_cache(maxsize=256)
def _compile_cached(text):
    return _core.compile_flex_spec(text)


# Terms that read a file when compiled: never cached, the file may have changed.
_FILE_TERMS = ("document:", "relbias:")


def compile_mods(mods):
    """A spec string (or FlexMods) → FlexMods; raises ValueError naming a bad token."""
    if isinstance(mods, FlexMods):
        return mods
    if not isinstance(mods, str):
        raise TypeError(f"mods: expected a spec string such as 'causal+window:256' or FlexMods, got "
                        f"{type(mods).__name__} (Python callables are not accepted: see docs/python.md)")
    if any(term in mods for term in _FILE_TERMS):
        return _core.compile_flex_spec(mods)
    return _compile_cached(mods)


def create_block_mask(mods, B, H, Q_LEN, KV_LEN, BLOCK_SIZE=128):
    """Per (query block, key block): empty (skipped), full (no mask work) or partial. Built once,
    reused by every call of shape (B, H, Q_LEN, KV_LEN) (H: query heads); built-in specs store
    one table for all batches and heads. BLOCK_SIZE is an int or (block_q, block_k)."""
    bq, bk = (BLOCK_SIZE, BLOCK_SIZE) if isinstance(BLOCK_SIZE, int) else BLOCK_SIZE
    return _core.build_block_mask(compile_mods(mods), B, H, Q_LEN, KV_LEN, bq, bk)


def flex_attention(query, key, value, mods=None, block_mask=None, scale=None, enable_gqa=False, return_lse=False):
    """softmax(score_mod(scale·q·kᵀ)) restricted to mask_mod, times v.

    mods: a spec string ("causal+alibi"), FlexMods, or None to use block_mask's own mods.
    query (B, Hq, L, E), key (B, Hkv, S, E), value (B, Hkv, S, Ev) → (B, Hq, L, Ev) of query's type
    (and the log-sum-exp with return_lse). A row with no visible key gives 0 (lse -inf).
    Runs on the flash backend (or reference inside sdpa_backend("reference"))."""
    if mods is None and block_mask is None:
        raise ValueError("mods: pass a spec, FlexMods or a block_mask (for plain attention use "
                         "scaled_dot_product_attention)")
    if block_mask is not None and not isinstance(block_mask, BlockMask):
        raise TypeError(f"block_mask: expected a goldilocks BlockMask (create_block_mask), got "
                        f"{type(block_mask).__module__}.{type(block_mask).__name__}")
    q, k, v, _ = _check_inputs(query, key, value, None)
    if isinstance(mods, str) and block_mask is not None and mods == block_mask.mods.description:
        mods = None  # the block mask's own compiled mods: the same spec, and the identity the kernel checks
    compiled = compile_mods(mods) if mods is not None else None
    return _core.attention(*map(_arrays.importable, (q, k, v)), None, _check_scale(scale), "none", bool(enable_gqa),
                           current_backend(), "best", _arrays.allocator_like(q), bool(return_lse), False, compiled,
                           block_mask)
