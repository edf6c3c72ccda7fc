"""flex_attention with every built-in mask and score mod against PyTorch's own
torch.nn.attention.flex_attention on the CPU (eager: PyTorch's unfused path,
which evaluates the same Python mods on the dense score matrix). Policy as for
SDPA: Goldilocks' error against PyTorch's flex in float64 is at most twice
PyTorch's float32 error plus a floor. Block masks are reusable across calls
and heads."""
import numpy as np
import pytest
import torch
from torch.nn.attention import flex_attention as torch_flex_module

import goldilocks
from goldilocks import flex
from conftest import assert_matches_oracle, randn

B, HQ, HKV, N, D = 2, 4, 2, 70, 24  # GQA, N not a multiple of any tile, odd-ish head dim


def torch_flex(q, k, v, mask_mod=None, score_mod=None):
    """PyTorch's flex_attention in q's dtype and in float64 (the oracle), GQA like ours."""
    hq, nq, nk = q.shape[1], q.shape[2], k.shape[2]
    block_mask = None
    if mask_mod is not None:
        block_mask = torch_flex_module.create_block_mask(mask_mod, None, None, nq, nk, device="cpu", BLOCK_SIZE=16)
    gqa = hq != k.shape[1]

    def run(*args):
        return torch_flex_module.flex_attention(*args, score_mod=score_mod, block_mask=block_mask, enable_gqa=gqa)
    return run(q, k, v), run(q.double(), k.double(), v.double())


def inputs(rng, nq=N, nk=N):
    return randn(rng, B, HQ, nq, D), randn(rng, B, HKV, nk, D), randn(rng, B, HKV, nk, D)


def doc_of(j, n_docs, nk):
    return (j * n_docs) // nk


# spec → PyTorch mask_mod(b, h, i, j) stating the formula of docs/flex.md independently.
MASK_SPECS = {
    "causal": lambda b, h, i, j: j <= i,
    "causal:top_left": lambda b, h, i, j: j <= i,
    "window:9": lambda b, h, i, j: (j >= i - 9) & (j <= i + 9),
    "window:12,3": lambda b, h, i, j: (j >= i - 12) & (j <= i + 3),
    "causal+window:16+sinks:4": lambda b, h, i, j: ((j <= i) & (j >= i - 16)) | (j < 4),
    "causal+global:5": lambda b, h, i, j: (j <= i) | (i < 5) | (j < 5),
    "prefix:10": lambda b, h, i, j: (j < 10) | (j <= i),
    "documents:5": lambda b, h, i, j: doc_of(i, 5, N) == doc_of(j, 5, N),
    "dilated:6,3": lambda b, h, i, j: ((i - j).abs() <= 18) & ((i - j) % 3 == 0),
    "causal+dilated:4,2+sinks:3": lambda b, h, i, j: ((j <= i) & ((i - j).abs() <= 8) & ((i - j) % 2 == 0)) | (j < 3),
}


@pytest.mark.parametrize("spec", list(MASK_SPECS))
def test_mask_specs_match_torch_flex_attention(rng, spec):
    q, k, v = inputs(rng)
    out = goldilocks.flex_attention(q, k, v, spec, enable_gqa=True)
    assert isinstance(out, torch.Tensor) and out.shape == (B, HQ, N, D)
    assert_matches_oracle(out, *torch_flex(q, k, v, mask_mod=MASK_SPECS[spec]))


def test_bottom_right_causal_with_fewer_queries(rng):
    nq = 23  # the queries are the last 23 positions: key j visible iff j <= i + (N - nq)
    q, k, v = inputs(rng, nq=nq)
    out = goldilocks.flex_attention(q, k, v, flex.causal("bottom_right"), enable_gqa=True)
    assert_matches_oracle(out, *torch_flex(q, k, v, mask_mod=lambda b, h, i, j: j <= i + (N - nq)))


def test_document_ids_from_a_file(rng, tmp_path):
    ids = np.sort(torch.randint(0, 6, (N,), generator=rng).numpy()).astype("<i4")
    path = tmp_path / "ids.bin"
    ids.tofile(path)
    ids_t = torch.from_numpy(ids.astype(np.int64))
    q, k, v = inputs(rng)
    out = goldilocks.flex_attention(q, k, v, f"document:{path}+causal", enable_gqa=True)
    expect = torch_flex(q, k, v, mask_mod=lambda b, h, i, j: (ids_t[i] == ids_t[j]) & (j <= i))
    assert_matches_oracle(out, *expect)


def alibi_bias(h, i, j, max_bias=8.0):
    slope = torch.exp2(-max_bias * (h + 1).double() / HQ)
    return slope * (i - j).abs()


SCORE_SPECS = {
    "alibi": (lambda s, b, h, i, j: s - alibi_bias(h, i, j).to(s.dtype), None),
    "alibi:4": (lambda s, b, h, i, j: s - alibi_bias(h, i, j, 4.0).to(s.dtype), None),
    "softcap:1.5": (lambda s, b, h, i, j: 1.5 * torch.tanh(s / 1.5), None),
    "causal+alibi+softcap:2": (lambda s, b, h, i, j: 2 * torch.tanh((s - alibi_bias(h, i, j).to(s.dtype)) / 2),
                               lambda b, h, i, j: j <= i),
}


@pytest.mark.parametrize("spec", list(SCORE_SPECS))
def test_score_mods_match_torch_flex_attention(rng, spec):
    q, k, v = inputs(rng)
    q = q * 3  # larger scores, so softcap changes them materially
    score_mod, mask_mod = SCORE_SPECS[spec]
    out = goldilocks.flex_attention(q, k, v, spec, enable_gqa=True)
    assert_matches_oracle(out, *torch_flex(q, k, v, mask_mod=mask_mod, score_mod=score_mod))


def test_relative_bias_table_from_a_file(rng, tmp_path):
    radius = 5
    table = randn(rng, HQ, 2 * radius + 1)
    path = tmp_path / "bias.bin"
    table.numpy().astype("<f4").tofile(path)

    def score_mod(s, b, h, i, j):
        return s + table.to(s.dtype)[h, (j - i).clamp(-radius, radius) + radius]
    q, k, v = inputs(rng)
    out = goldilocks.flex_attention(q, k, v, f"causal+relbias:{path}", enable_gqa=True)
    assert_matches_oracle(out, *torch_flex(q, k, v, mask_mod=lambda b, h, i, j: j <= i, score_mod=score_mod))


def test_block_mask_is_reused_across_calls_and_heads(rng):
    spec = "causal+window:16+sinks:4"
    bm = goldilocks.create_block_mask(spec, B, HQ, N, N, BLOCK_SIZE=16)
    assert bm.shape == (B, HQ, N, N) and bm.block_size == (16, 16)
    blocks = -(-N // 16)
    assert bm.total_blocks == B * HQ * blocks * blocks
    kinds = {kind: bm.count(kind) for kind in ("empty", "full", "partial")}
    assert sum(kinds.values()) == bm.total_blocks and kinds["empty"] > 0 and kinds["partial"] > 0
    # Every (b, h) has the same table (built-in specs read neither), so each count is a multiple of B*HQ.
    assert all(n % (B * HQ) == 0 for n in kinds.values()), kinds
    for _ in range(3):  # new inputs every call, one block mask
        q, k, v = inputs(rng)
        expect = torch_flex(q, k, v, mask_mod=MASK_SPECS[spec])
        assert_matches_oracle(goldilocks.flex_attention(q, k, v, block_mask=bm, enable_gqa=True), *expect)
        assert_matches_oracle(goldilocks.flex_attention(q, k, v, spec, block_mask=bm, enable_gqa=True), *expect)
    # Each head alone (a one-head block mask) against all heads at once: the table serves every head alike.
    q, k, v = inputs(rng)
    whole = goldilocks.flex_attention(q, k, v, block_mask=bm, enable_gqa=True)
    single = goldilocks.create_block_mask(spec, B, 1, N, N, BLOCK_SIZE=16)
    for h in range(HQ):
        one = goldilocks.flex_attention(q[:, h:h + 1], k[:, h // 2:h // 2 + 1], v[:, h // 2:h // 2 + 1],
                                        block_mask=single)
        assert torch.equal(one, whole[:, h:h + 1]), f"head {h}"


def test_return_lse_and_reference_backend_agree(rng):
    q, k, v = inputs(rng)
    out, lse = goldilocks.flex_attention(q, k, v, "causal+alibi", enable_gqa=True, return_lse=True)
    with goldilocks.sdpa_backend("reference"):
        ref_out, ref_lse = goldilocks.flex_attention(q, k, v, "causal+alibi", enable_gqa=True, return_lse=True)
    assert lse.shape == (B, HQ, N) and lse.dtype == torch.float32
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(lse, ref_lse, rtol=1e-5, atol=1e-5)


def test_numpy_in_numpy_out(rng):
    q, k, v = (x.numpy() for x in inputs(rng))
    out = goldilocks.flex_attention(q, k, v, "causal", enable_gqa=True)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    expect = goldilocks.flex_attention(*(torch.from_numpy(x) for x in (q, k, v)), "causal", enable_gqa=True)
    np.testing.assert_array_equal(out, expect.numpy())


def test_bad_arguments_raise_naming_the_parameter(rng):
    q, k, v = inputs(rng)
    with pytest.raises(ValueError, match="windw"):
        goldilocks.flex_attention(q, k, v, "causal+windw:4", enable_gqa=True)
    with pytest.raises(ValueError, match="^mods: pass a spec"):
        goldilocks.flex_attention(q, k, v)
    with pytest.raises(TypeError, match="^mods: .*callables are not accepted"):
        goldilocks.flex_attention(q, k, v, lambda s, b, h, i, j: s)
    with pytest.raises(TypeError, match="^block_mask: expected a goldilocks BlockMask"):
        goldilocks.flex_attention(q, k, v, block_mask="causal")
    with pytest.raises(ValueError, match="^block_mask: built for"):
        goldilocks.flex_attention(q, k, v, block_mask=goldilocks.create_block_mask("causal", 1, HQ, N, N),
                                  enable_gqa=True)
    with pytest.raises(ValueError, match="^block_mask: was built from different mods"):
        bm = goldilocks.create_block_mask("causal", B, HQ, N, N)
        goldilocks.flex_attention(q, k, v, "causal+window:3", block_mask=bm, enable_gqa=True)
    with pytest.raises(ValueError, match="^block_mask: block_q and block_k must be >= 1"):
        goldilocks.create_block_mask("causal", B, HQ, N, N, BLOCK_SIZE=0)
    with pytest.raises(ValueError, match="enable_gqa=True"):
        goldilocks.flex_attention(q, k, v, "causal")
    with pytest.raises(ValueError, match="^spec: bad token 'document:/nonexistent"):
        goldilocks.flex_attention(q, k, v, "document:/nonexistent", enable_gqa=True)
    with goldilocks.sdpa_backend("math"), pytest.raises(NotImplementedError, match="no_flex_mods"):
        goldilocks.flex_attention(q, k, v, "causal", enable_gqa=True)
