"""A small Llama-style model from Hugging Face transformers (random weights from
a config, nothing downloaded) with Goldilocks registered as its attention: the
logits match the model's own "sdpa" implementation and greedy generation picks
the same tokens."""
import copy

import pytest
import torch

transformers = pytest.importorskip("transformers")

import goldilocks
import goldilocks.hf

CONFIG = dict(vocab_size=256, hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=512, initializer_range=0.2)  # GQA: 2 query heads per KV head


@pytest.fixture(scope="module")
def models():
    goldilocks.hf.register()
    config = transformers.LlamaConfig(**CONFIG)
    torch.manual_seed(0)
    sdpa = transformers.LlamaForCausalLM._from_config(copy.deepcopy(config), attn_implementation="sdpa").eval()
    ours = transformers.LlamaForCausalLM._from_config(copy.deepcopy(config), attn_implementation="goldilocks").eval()
    ours.load_state_dict(sdpa.state_dict())
    assert ours.config._attn_implementation == "goldilocks"
    return sdpa, ours


@pytest.fixture
def calls(monkeypatch):
    """Counts calls into Goldilocks' attention, so the test cannot pass by running sdpa twice."""
    count = [0]
    real = goldilocks.hf.attention_forward

    def counting(*args, **kwargs):
        count[0] += 1
        return real(*args, **kwargs)

    transformers.AttentionInterface.register("goldilocks", counting)
    yield count
    transformers.AttentionInterface.register("goldilocks", real)


def inputs():
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, CONFIG["vocab_size"], (2, 24), generator=gen)
    attention_mask = torch.ones_like(ids)
    attention_mask[1, :6] = 0  # left padding: exercises the boolean mask path
    return ids, attention_mask


@torch.inference_mode()
def test_logits_match_sdpa(models, calls):
    sdpa, ours = models
    ids, attention_mask = inputs()
    for kwargs in ({}, {"attention_mask": attention_mask}):  # causal fast path, then a padding mask
        expected = sdpa(input_ids=ids, **kwargs).logits
        got = ours(input_ids=ids, **kwargs).logits
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert calls[0] == 2 * CONFIG["num_hidden_layers"]


@torch.inference_mode()
def test_greedy_generation_gives_the_same_tokens(models, calls):
    sdpa, ours = models
    ids, attention_mask = inputs()
    kwargs = dict(attention_mask=attention_mask, max_new_tokens=32, min_new_tokens=32, do_sample=False)
    expected = sdpa.generate(ids, **kwargs)
    got = ours.generate(ids, **kwargs)
    assert got.shape == (2, 24 + 32)
    assert torch.equal(got, expected)
    assert calls[0] == 32 * CONFIG["num_hidden_layers"]  # prefill + 31 decode steps, each layer



@pytest.fixture(scope="module")
def bf16_models(models):
    """The same two models loaded in bfloat16, as most CPU checkpoints are."""
    sdpa, ours = models
    return copy.deepcopy(sdpa).to(torch.bfloat16), copy.deepcopy(ours).to(torch.bfloat16)


def teacher_forced_logits(model, ids, attention_mask, tokens):
    """Prefill, then one decode step per token of `tokens` (the same tokens for every model), through the KV cache:
    the logits of every step, so models are compared step by step without one near-tie changing the rest."""
    out = model(input_ids=ids, attention_mask=attention_mask, use_cache=True)
    steps, cache = [out.logits[:, -1].double()], out.past_key_values
    for t in range(tokens.shape[1] - 1):
        attention_mask = torch.cat([attention_mask, torch.ones_like(attention_mask[:, :1])], dim=1)
        out = model(input_ids=tokens[:, t:t + 1], attention_mask=attention_mask, past_key_values=cache, use_cache=True)
        steps.append(out.logits[:, -1].double())
        cache = out.past_key_values
    return torch.stack(steps, dim=1)


@torch.inference_mode()
def test_bfloat16_model_runs_32_greedy_tokens_within_sdpas_bf16_error(models, bf16_models, calls):
    """A bf16 model with Goldilocks registered generates 32 greedy tokens, every attention call in bf16 through
    Goldilocks; its logits at each of those steps are as close to the float32 model's as the model's own sdpa
    in bf16 is (at most 2x its max and 1.25x its mean error, the attention policy lifted to the model).

    Exact token equality with sdpa in bf16 is not the criterion: on this random-weight model the bf16 weights
    and activations move logits by up to ~0.5 from the float32 model for sdpa and Goldilocks alike, while their
    attention outputs differ by one bf16 rounding; where the top two logits are nearer than that (a near-tie)
    either choice is within bf16's error, and greedy decoding then continues from different tokens (measured:
    the first of the two sequences agreed for 13 tokens, the second for all 32)."""
    sdpa32 = models[0]
    sdpa, ours = bf16_models
    ids, attention_mask = inputs()
    kwargs = dict(attention_mask=attention_mask, max_new_tokens=32, min_new_tokens=32, do_sample=False)
    got = ours.generate(ids, **kwargs)
    assert got.shape == (2, 24 + 32)
    assert calls[0] == 32 * CONFIG["num_hidden_layers"]  # prefill + 31 decode steps, each layer, in bf16
    tokens = sdpa.generate(ids, **kwargs)[:, 24:]
    reference = teacher_forced_logits(sdpa32, ids, attention_mask, tokens)
    theirs = teacher_forced_logits(sdpa, ids, attention_mask, tokens) - reference
    mine = teacher_forced_logits(ours, ids, attention_mask, tokens) - reference
    assert mine.abs().max() <= 2 * theirs.abs().max(), (mine.abs().max(), theirs.abs().max())
    assert mine.abs().mean() <= 1.25 * theirs.abs().mean(), (mine.abs().mean(), theirs.abs().mean())
