"""The KV cache from Python: append / rollback / fork / evict / attend against
plain attention over the same keys, every storage type, errors leave it unchanged."""
import numpy as np
import pytest
import torch

import goldilocks
from conftest import assert_matches_oracle, randn, torch_sdpa


def filled_cache(rng, storage="f32", layout="contiguous", batch=2, hkv=2, n=37, d=16, max_tokens=64):
    cache = goldilocks.KvCache(batch, hkv, d, max_tokens, layout=layout, page_size=8, storage=storage)
    k, v = randn(rng, batch, hkv, n, d), randn(rng, batch, hkv, n, d)
    cache.append(k, v)
    return cache, k, v


@pytest.mark.parametrize("layout", ["contiguous", "paged"])
def test_decode_matches_attention_over_the_same_keys(rng, layout):
    cache, k, v = filled_cache(rng, layout=layout)
    q = randn(rng, 2, 4, 1, 16)  # GQA: 4 query heads over 2 KV heads
    out, lse = cache.attend(q, return_lse=True)
    assert out.shape == (2, 4, 1, 16) and isinstance(out, torch.Tensor)
    assert_matches_oracle(out, *torch_sdpa(q, k, v, enable_gqa=True))
    ref_lse = goldilocks.attention(q, k, v, return_lse=True)[1]
    torch.testing.assert_close(lse, ref_lse, rtol=1e-5, atol=1e-5)


def test_chunked_prefill_is_bottom_right_causal(rng):
    cache, k, v = filled_cache(rng)
    q = randn(rng, 2, 2, 5, 16)  # the last 5 positions
    mask = torch.arange(37)[None, :] <= torch.arange(5)[:, None] + 32
    assert_matches_oracle(cache.attend(q), *torch_sdpa(q, k, v, attn_mask=mask))


def test_rollback_fork_evict_and_read(rng):
    cache, k, v = filled_cache(rng, layout="paged")
    assert cache.lengths == [37, 37]
    cache.rollback(0, 30)
    kr, vr = cache.read(0)
    assert isinstance(kr, np.ndarray) and kr.shape == (2, 30, 16)
    np.testing.assert_array_equal(kr, k[0, :, :30].numpy())
    cache.fork(0, 1)
    assert cache.lengths == [30, 30]
    np.testing.assert_array_equal(cache.read(1, like=k)[1].numpy(), v[0, :, :30].numpy())
    cache.evict(1, 4, 10)
    kr, _ = cache.read(1, like=k)
    assert torch.equal(kr, torch.cat([k[0, :, :4], k[0, :, 20:30]], dim=1))
    cache.reset()
    assert cache.lengths == [0, 0]


@pytest.mark.parametrize("storage", ["f16", "bf16", "int8", "int4"])
def test_quantized_storage_reads_back_what_attention_sees(rng, storage):
    cache, k, v = filled_cache(rng, storage=storage, d=32)
    kr, vr = cache.read(0, like=k)
    rel = (kr - k[0]).norm() / k[0].norm()
    assert 0 < rel < 0.2  # quantized (not a copy), but close
    q = randn(rng, 2, 2, 1, 32)
    out = cache.attend(q)
    ref = goldilocks.scaled_dot_product_attention(q[:1], kr[None], vr[None])
    torch.testing.assert_close(out[:1], ref, rtol=1e-4, atol=1e-4)  # attends to exactly the stored values
    assert cache.config["k_storage"] == storage


def test_errors_leave_the_cache_unchanged(rng):
    cache, k, v = filled_cache(rng, max_tokens=40)
    before = cache.read(0)
    with pytest.raises((ValueError, MemoryError), match="."):
        cache.append(randn(rng, 2, 2, 5, 16), randn(rng, 2, 2, 5, 16))  # 37 + 5 > 40 tokens
    with pytest.raises(ValueError, match="."):
        cache.rollback(0, 50)
    with pytest.raises(ValueError, match="k_storage: 'int3'"):
        goldilocks.KvCache(1, 1, 8, 8, k_storage="int3")
    with pytest.raises(TypeError, match="query: dtype float64"):
        cache.attend(randn(rng, 2, 2, 1, 16, dtype=torch.float64))
    after = cache.read(0)
    assert cache.lengths == [37, 37]
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_array_equal(before[1], after[1])
