"""goldilocks.tune from Python: the search through the command-line tool, its pick as a
TuneConfig that creates the KvCache and registers with transformers, save/load, keyword
workloads with errors naming the key, and activations recorded from a transformers model."""
import copy
import os

import numpy as np
import pytest
import torch

import goldilocks
import goldilocks.hf
import goldilocks.record

TINY = dict(heads=4, kv_heads=2, head_dim=32, batch=1, prompt=[24, 40], generate=4)


def _cli_or_skip():
    """The search needs the command-line tool; a missing one is a failure, not a skip."""
    import importlib
    mod = importlib.import_module("goldilocks.tune")
    try:
        return mod._cli()
    except RuntimeError as e:
        pytest.fail(str(e))


@pytest.fixture(scope="module")
def picked(tmp_path_factory):
    _cli_or_skip()
    cache = tmp_path_factory.mktemp("tune_cache")
    cfg = goldilocks.tune(None, max_error=0.05, cache_dir=cache, reps=2, threads=1, **TINY)
    assert cfg is not None
    return cfg, cache


def test_pick_meets_the_error_budget_and_creates_its_cache(picked):
    cfg, _ = picked
    pick = cfg.report["pick"]
    point = cfg.report["points"][pick["index"]]
    assert point["error"]["rel_l2"] <= 0.05
    cache = cfg.kv_cache(batch=1, kv_heads=2, head_dim=32, max_tokens=44)
    if cfg.cache == "none":
        assert cache is None
    else:
        assert cache.config["k_storage"] == cfg.k_storage and cache.config["v_storage"] == cfg.v_storage


def test_applying_a_pick_equals_configuring_by_hand(picked):
    cfg, _ = picked
    config = dict(cfg.config, cache="paged", page_size="16", k_storage="int8", v_storage="int4", int4_group="32",
                  k_scales="token", window="off")
    mine = goldilocks.TuneConfig(config).kv_cache(batch=1, kv_heads=2, head_dim=32, max_tokens=44)
    hand = goldilocks.KvCache(1, 2, 32, 44, layout="paged", page_size=16, k_storage="int8", v_storage="int4",
                              v_group_size=32)
    g = torch.Generator().manual_seed(3)
    k, v = torch.randn(1, 2, 40, 32, generator=g), torch.randn(1, 2, 40, 32, generator=g)
    q = torch.randn(1, 4, 1, 32, generator=g)
    outs = []
    for c in (mine, hand):
        c.append(k, v)
        outs.append(c.attend(q, kv_splits=cfg.kv_splits))
    assert torch.equal(outs[0], outs[1])


def test_save_and_load_round_trip(picked, tmp_path):
    cfg, _ = picked
    cfg.save(tmp_path / "pick.json")
    again = goldilocks.TuneConfig.load(tmp_path / "pick.json")
    assert again.config == cfg.config
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="TuneConfig.save"):
        goldilocks.TuneConfig.load(tmp_path / "bad.json")


def test_second_run_comes_from_the_cache(picked):
    cfg, cache = picked
    again = goldilocks.tune(None, max_error=0.05, cache_dir=cache, reps=2, threads=1, **TINY)
    assert again.report["cache_hit"]
    assert again.config == cfg.config


def _tiny_llama_pair(transformers, implementation):
    """A tiny Llama with sdpa and the same weights with `implementation`, and a 37-token prompt."""
    config = transformers.LlamaConfig(vocab_size=256, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    torch.manual_seed(0)
    # Each model its own config: _from_config records the implementation on the object it is given.
    sdpa = transformers.LlamaForCausalLM._from_config(copy.deepcopy(config), attn_implementation="sdpa").eval()
    ours = transformers.LlamaForCausalLM._from_config(copy.deepcopy(config), attn_implementation=implementation).eval()
    ours.load_state_dict(sdpa.state_dict())
    return sdpa, ours, torch.randint(0, 256, (1, 37), generator=torch.Generator().manual_seed(1))


def test_registered_with_transformers_the_pick_runs_the_model(picked):
    transformers = pytest.importorskip("transformers")
    cfg, _ = picked
    # The exact form of the pick (int8_qk, if picked, is checked below): logits as sdpa's.
    cfg = goldilocks.TuneConfig(dict(cfg.config, precision="exact"))
    goldilocks.hf.register("goldilocks_tuned", config=cfg)
    sdpa, ours, ids = _tiny_llama_pair(transformers, "goldilocks_tuned")
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits, sdpa(ids).logits, rtol=1e-4, atol=1e-4)
    goldilocks.set_num_threads(0)


def test_a_pick_sets_prefill_calls_only_and_decode_stays_exact(picked, monkeypatch):
    """backend and precision of a pick apply to prefill-sized calls; decode steps take the
    automatic choice, exact (int8_qk is refused over a cache, and the search measured them so)."""
    transformers = pytest.importorskip("transformers")
    cfg, _ = picked
    cfg = goldilocks.TuneConfig(dict(cfg.config, backend="flash", precision="int8_qk"))
    seen = []
    real = goldilocks.hf._run_sdpa

    def spy(query, *args, backend=None, precision="exact", **kwargs):
        seen.append((query.shape[2], backend, precision))
        return real(query, *args, backend=backend, precision=precision, **kwargs)

    monkeypatch.setattr(goldilocks.hf, "_run_sdpa", spy)
    goldilocks.hf.register("goldilocks_int8", config=cfg)
    sdpa, ours, ids = _tiny_llama_pair(transformers, "goldilocks_int8")
    with torch.no_grad():
        ours.generate(ids, max_new_tokens=2, do_sample=False)
        want = sdpa(ids).logits
        got = ours(ids).logits
    prefill = [s for s in seen if s[0] > 16]
    decode = [s for s in seen if s[0] <= 16]
    assert prefill and decode, seen
    assert all(b == "flash" and p == "int8_qk" for _, b, p in prefill), prefill
    assert all(b is None and p == "exact" for _, b, p in decode), decode
    # Approximate, not wrong: the int8 prefill's logits are near sdpa's and not equal to them.
    assert not torch.equal(got, want)
    torch.testing.assert_close(got, want, rtol=0.1, atol=0.1)
    goldilocks.set_num_threads(0)


@pytest.mark.parametrize("kwargs, key", [
    (dict(heads=4, kv_heads=3, head_dim=32, prompt=8), "model.kv_heads"),
    (dict(heads=4, head_dim=32, prompt=0), "workload.prompt"),
    (dict(heads=4, head_dim=32, prompt=8, mask="causal+nonsense"), "workload.mask"),
    (dict(head_dim=32, prompt=8), "model.heads"),
])
def test_bad_workloads_name_the_key(kwargs, key, tmp_path):
    _cli_or_skip()
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        goldilocks.tune(None, cache_dir=tmp_path, **kwargs)


def test_unknown_keyword_and_bad_budget(tmp_path):
    with pytest.raises(TypeError, match="colour"):
        goldilocks.tune(None, colour=3, heads=4, head_dim=32, prompt=8)
    _cli_or_skip()
    with pytest.raises(ValueError, match="memory-budget"):
        goldilocks.tune(None, memory_budget=-5, cache_dir=tmp_path, heads=4, head_dim=32, prompt=8)


def test_recorded_activations_round_trip_and_drive_the_search(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(vocab_size=256, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM._from_config(config, attn_implementation="sdpa").eval()
    ids = torch.tensor([list(goldilocks.record.SAMPLE_TEXT.encode())[:48]])
    path = tmp_path / "acts.bin"
    header = goldilocks.record.record(model, ids, path, layer=1)
    assert header == {"heads": 4, "kv_heads": 2, "tokens": 48, "head_dim_k": 32, "head_dim_v": 32, "layer": 1}
    assert model.config._attn_implementation == "sdpa"  # restored
    _, q, k, v = goldilocks.record.read(path)
    assert q.shape == (4, 48, 32) and k.shape == (2, 48, 32) and np.isfinite(q).all() and q.std() > 0
    _cli_or_skip()
    report = goldilocks.tune_report(None, cache_dir=tmp_path / "c", reps=2, threads=1, activations=path, heads=4,
                                     kv_heads=2, head_dim=32, prompt=44, generate=4)
    errors = [p["error"]["rel_l2"] for p in report["points"] if "error" in p]
    assert errors and all(np.isfinite(errors))
