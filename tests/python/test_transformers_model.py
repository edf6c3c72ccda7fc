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
