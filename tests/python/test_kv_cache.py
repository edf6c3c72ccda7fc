"""The KV cache from Python: token-by-token decoding equals one-shot SDPA,
rollback, fork (copy-on-write), eviction, every storage type within its
quantization bound, and failed operations that leave the cache unchanged."""
import numpy as np
import pytest
import torch

import goldilocks
from conftest import assert_matches_oracle, randn, torch_sdpa

STORAGES = ["f32", "f16", "bf16", "int8", "int4"]


def filled_cache(rng, storage="f32", layout="contiguous", batch=2, hkv=2, n=37, d=16, max_tokens=64):
    cache = goldilocks.KvCache(batch, hkv, d, max_tokens, layout=layout, page_size=8, storage=storage)
    k, v = randn(rng, batch, hkv, n, d), randn(rng, batch, hkv, n, d)
    cache.append(k, v)
    return cache, k, v


def snapshot(cache):
    """Everything observable: lengths, free pages and every stored (dequantized) row."""
    return cache.lengths, cache.free_pages, [cache.read(s) for s in range(cache.config["batch"])]


def assert_same_snapshot(a, b):
    assert a[0] == b[0] and a[1] == b[1]
    for (ka, va), (kb, vb) in zip(a[2], b[2]):
        assert ka.tobytes() == kb.tobytes() and va.tobytes() == vb.tobytes()


@pytest.mark.parametrize("layout", ["contiguous", "paged"])
def test_token_by_token_decode_equals_one_shot_sdpa(rng, layout):
    batch, hq, hkv, n, d = 2, 4, 2, 29, 16
    q, k, v = randn(rng, batch, hq, n, d), randn(rng, batch, hkv, n, d), randn(rng, batch, hkv, n, d)
    cache = goldilocks.KvCache(batch, hkv, d, n, layout=layout, page_size=8)
    steps = []
    for t in range(n):  # one new token per step, as a decoder generates
        cache.append(k[:, :, t:t + 1], v[:, :, t:t + 1])
        steps.append(cache.attend(q[:, :, t:t + 1]))
    assert cache.lengths == [n, n]
    decoded = torch.cat(steps, dim=2)
    assert_matches_oracle(decoded, *torch_sdpa(q, k, v, is_causal=True, enable_gqa=True))
    # Chunked prefill of the same tokens: one call, bottom-right causal, same answer.
    assert_matches_oracle(cache.attend(q), *torch_sdpa(q, k, v, is_causal=True, enable_gqa=True))


def test_decode_lse_matches_plain_attention(rng):
    cache, k, v = filled_cache(rng, layout="paged")
    q = randn(rng, 2, 4, 1, 16)
    out, lse = cache.attend(q, return_lse=True)
    assert out.shape == (2, 4, 1, 16) and isinstance(out, torch.Tensor)
    assert_matches_oracle(out, *torch_sdpa(q, k, v, enable_gqa=True))
    torch.testing.assert_close(lse, goldilocks.attention(q, k, v, return_lse=True)[1], rtol=1e-5, atol=1e-5)


def test_rollback_then_new_tokens(rng):
    cache, k, v = filled_cache(rng)
    cache.rollback(0, 30)
    cache.rollback(1, 12)  # speculative tokens rejected, different counts per sequence
    assert cache.lengths == [30, 12]
    k_new, v_new = randn(rng, 2, 5, 16), randn(rng, 2, 5, 16)
    cache.append(k_new, v_new, seq=1)
    q = randn(rng, 2, 2, 1, 16)
    out = cache.attend(q)
    keep0 = torch_sdpa(q[:1], k[:1, :, :30], v[:1, :, :30])
    keep1 = torch_sdpa(q[1:], torch.cat([k[1:, :, :12], k_new[None]], 2), torch.cat([v[1:, :, :12], v_new[None]], 2))
    assert_matches_oracle(out[:1], *keep0)
    assert_matches_oracle(out[1:], *keep1)


@pytest.mark.parametrize("layout", ["contiguous", "paged"])
def test_fork_then_diverge(rng, layout):
    cache, k, v = filled_cache(rng, layout=layout)
    cache.fork(0, 1)  # sequence 1 becomes a copy of 0 (paged: shared pages)
    assert cache.lengths == [37, 37]
    k0, v0 = cache.read(0)
    ka, va, kb, vb = (randn(rng, 2, 3, 16) for _ in range(4))
    cache.append(ka, va, seq=0)  # writing to the shared last page copies it first
    cache.append(kb, vb, seq=1)
    for seq, (kx, vx) in enumerate([(ka, va), (kb, vb)]):
        kr, vr = cache.read(seq, like=ka)
        assert torch.equal(kr, torch.cat([torch.from_numpy(k0), kx], 1)), seq
        assert torch.equal(vr, torch.cat([torch.from_numpy(v0), vx], 1)), seq
    np.testing.assert_array_equal(k0, k[0].numpy())


def test_evict_read_and_reset(rng):
    cache, k, v = filled_cache(rng, layout="paged")
    kr, _ = cache.read(0)
    assert isinstance(kr, np.ndarray) and kr.shape == (2, 37, 16)  # NumPy unless `like` says otherwise
    cache.evict(1, 4, 10)  # StreamingLLM: 4 sink tokens and the last 10
    kr, vr = cache.read(1, like=k)
    assert torch.equal(kr, torch.cat([k[1, :, :4], k[1, :, 27:]], dim=1))
    assert torch.equal(vr, torch.cat([v[1, :, :4], v[1, :, 27:]], dim=1))
    assert cache.read(0, start=5, count=3)[0].shape == (2, 3, 16)
    cache.reset(0)
    assert cache.lengths == [0, 14]
    cache.reset()
    assert cache.lengths == [0, 0]


def quantization_bound(x, storage, group):
    """Largest |read-back - x| the storage format allows, elementwise (x float64, last dim grouped)."""
    if storage == "f32":
        return torch.zeros_like(x)
    if storage in ("f16", "bf16"):  # round to nearest: half an ulp, relative (plus the subnormal floor)
        mantissa = 10 if storage == "f16" else 7
        return x.abs() * 2.0 ** -(mantissa + 1) + 2.0 ** -24
    levels = 255 if storage == "int8" else 15
    g = x.reshape(*x.shape[:-1], -1, group)  # affine per group: half a step of (max - min) / levels
    step = (g.amax(-1, keepdim=True) - g.amin(-1, keepdim=True)) / levels
    return (step / 2 * (1 + 1e-4) + 1e-6).expand_as(g).reshape(x.shape)


@pytest.mark.parametrize("storage", STORAGES)
def test_storage_types_within_their_quantization_bound(rng, storage):
    d = 64
    cache, k, v = filled_cache(rng, storage=storage, d=d)
    assert cache.config["k_storage"] == storage and cache.config["v_storage"] == storage
    group = {"int8": d, "int4": 32}.get(storage, 1)  # the documented defaults
    assert cache.config["k_group_size"] in (0, group) or storage in ("f32", "f16", "bf16")
    for seq in range(2):
        kr, vr = cache.read(seq, like=k)
        for stored, orig in ((kr, k[seq]), (vr, v[seq])):
            err = (stored.double() - orig.double()).abs()
            assert (err <= quantization_bound(orig.double(), storage, group)).all(), err.max()
            assert (err.max() > 0) == (storage != "f32")  # quantized, not a copy
    # Attention reads exactly the stored values: equal to SDPA over what read() returns.
    q = randn(rng, 2, 2, 1, d)
    out = cache.attend(q)
    for seq in range(2):
        kr, vr = cache.read(seq, like=k)
        ref = goldilocks.scaled_dot_product_attention(q[seq:seq + 1], kr[None], vr[None])
        torch.testing.assert_close(out[seq:seq + 1], ref, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("layout", ["contiguous", "paged"])
def test_per_channel_k_scales_attend_what_read_returns(rng, layout):
    # KIVI: K per channel over groups of 4 tokens; 37 tokens leave an open group of 1 in float32.
    cache = goldilocks.KvCache(2, 2, 16, 64, layout=layout, page_size=8, storage="int8", k_scales="channel",
                               k_channel_tokens=4)
    assert (cache.config["k_scales"], cache.config["k_channel_tokens"]) == ("channel", 4)
    k, v = randn(rng, 2, 2, 37, 16), randn(rng, 2, 2, 37, 16)
    k[..., 3] *= 10  # an outlier channel, what per-channel scales are for
    cache.append(k, v)
    q = randn(rng, 2, 4, 1, 16)  # one decode token per sequence, two query heads per KV head
    out = cache.attend(q)
    for seq in range(2):
        kr, vr = cache.read(seq, like=k)
        assert kr[:, -1].numpy().tobytes() == k[seq, :, -1].numpy().tobytes()  # the open group: float32, exact
        assert 0 < (kr - k[seq]).abs().max() < 0.1  # quantized, within half a step of the outlier's range
        ref = goldilocks.scaled_dot_product_attention(q[seq:seq + 1], kr[None], vr[None], enable_gqa=True)
        torch.testing.assert_close(out[seq:seq + 1], ref, rtol=2e-5, atol=2e-5)
    cache.rollback(0, 34)  # into the last completed group: its float32 rows are kept, so exact
    assert cache.read(0, like=k)[0][:, 32:].numpy().tobytes() == k[0, :, 32:34].numpy().tobytes()


def test_mixed_k_and_v_storage_and_bytes(rng):
    sizes = {}
    for storage in STORAGES:
        sizes[storage] = goldilocks.KvCache(1, 2, 64, 128, storage=storage).bytes
    assert sizes["f32"] > sizes["f16"] == sizes["bf16"] > sizes["int8"] > sizes["int4"]
    cache = goldilocks.KvCache(1, 2, 64, 16, k_storage="int8", v_storage="f16")
    assert (cache.config["k_storage"], cache.config["v_storage"]) == ("int8", "f16")


def test_failed_operations_leave_the_cache_unchanged(rng):
    cache = goldilocks.KvCache(2, 2, 16, 40, layout="paged", page_size=8, storage="int8")
    cache.append(randn(rng, 2, 2, 30, 16), randn(rng, 2, 2, 30, 16))
    cache.append(randn(rng, 2, 8, 16), randn(rng, 2, 8, 16), seq=1)  # lengths 30, 38
    cache.fork(1, 0)
    cache.rollback(0, 33)  # sequence 0 shares 4 pages with 1
    before = snapshot(cache)
    k5, v5 = randn(rng, 2, 2, 5, 16), randn(rng, 2, 2, 5, 16)
    bad_calls = [
        (lambda: cache.append(k5, v5), (ValueError, MemoryError), "."),  # fits sequence 0, not 1: all or nothing
        (lambda: cache.append(k5[0], v5[0], seq=1), (ValueError, MemoryError), "."),
        (lambda: cache.append(k5.double(), v5.double()), ValueError, "^k: dtype float64"),
        (lambda: cache.append(k5.int(), v5.int()), TypeError, "^k: unsupported dtype"),
        (lambda: cache.append(k5[:, :1], v5[:, :1]), ValueError, r"^k\.shape\[1\]"),
        (lambda: cache.append(k5, v5[..., :8]), ValueError, r"^v"),
        (lambda: cache.append(k5[0], v5[0], seq=2), ValueError, "^seq"),
        (lambda: cache.rollback(0, 50), ValueError, "^new_length"),
        (lambda: cache.rollback(0, -1), ValueError, "^new_length"),
        (lambda: cache.fork(0, 7), ValueError, "^dst"),
        (lambda: cache.evict(0, -1, 3), ValueError, "^sink_tokens"),
        (lambda: cache.reset(5), ValueError, "^seq"),
        (lambda: cache.read(0, 30, 10), ValueError, "^count"),
        (lambda: cache.attend(randn(rng, 2, 3, 1, 16)), ValueError, r"^query\.shape\[1\] = 3 query heads"),
        (lambda: cache.attend(randn(rng, 2, 2, 1, 8)), ValueError, r"^query\.shape\[3\] = 8 .*head_dim_k"),
        (lambda: cache.attend(randn(rng, 3, 2, 1, 16)), ValueError, r"^query\.shape\[0\] = 3 .*2 sequences"),
        (lambda: cache.attend(randn(rng, 2, 2, 16)), ValueError, "^query: shape"),
        (lambda: cache.attend(randn(rng, 2, 2, 1, 16, dtype=torch.float64)), TypeError, "^query: dtype float64"),
        (lambda: cache.attend(randn(rng, 2, 2, 1, 16), causal="top_left"), ValueError, "^causal"),
    ]
    for call, error, match in bad_calls:
        with pytest.raises(error, match=match):
            call()
        assert_same_snapshot(before, snapshot(cache))


def test_bad_configurations_raise_naming_the_parameter():
    with pytest.raises(ValueError, match="^k_storage: 'int3'"):
        goldilocks.KvCache(1, 1, 8, 8, k_storage="int3")
    with pytest.raises(ValueError, match="^layout: 'pagd'"):
        goldilocks.KvCache(1, 1, 8, 8, layout="pagd")
    with pytest.raises(ValueError, match="^batch: 0"):
        goldilocks.KvCache(0, 1, 8, 8)
    with pytest.raises(ValueError, match="^max_tokens: .*overflows"):
        goldilocks.KvCache(1 << 20, 1 << 10, 1 << 10, 1 << 20)
    with pytest.raises(ValueError, match="group"):
        goldilocks.KvCache(1, 1, 24, 8, storage="int4", k_group_size=7)
    with pytest.raises(ValueError, match="^k_scales: 'chan'"):
        goldilocks.KvCache(1, 1, 8, 8, storage="int8", k_scales="chan")
    with pytest.raises(ValueError, match="^k_scales"):
        goldilocks.KvCache(1, 1, 8, 8, storage="f16", k_scales="channel")
    with pytest.raises(ValueError, match="^k_channel_tokens"):
        goldilocks.KvCache(1, 1, 8, 32, layout="paged", page_size=8, storage="int8", k_scales="channel",
                           k_channel_tokens=3)
