#!/usr/bin/env python3
"""Times a Llama-style transformers model (random weights from a config,
nothing downloaded) with its own "sdpa" attention and with Goldilocks
registered as its attention implementation: prefill (one forward pass over the
prompt) and greedy generation. Runs are interleaved, same thread count; prints
medians and the ratio, and checks both produce the same tokens. The attention
calls themselves are timed too (a wrapper around each registered attention
function): the model's total also holds the projections, MLP and elementwise
work, which are the same torch code in both and, being memory-bound, swing
with whatever else the machine runs.

  python python/benchmarks/llama_timing.py
  python python/benchmarks/llama_timing.py --prompt 2048 --new-tokens 64 --layers 4 --repeats 3
  python python/benchmarks/llama_timing.py --dtype bfloat16
"""
import argparse
import copy
import statistics
import time

import torch
import transformers

import goldilocks
import goldilocks.hf


def time_attention_calls(names):
    """Wraps the registered attention functions so each call's time is summed per name; calls with
    one query row (the decode steps of generation) are also summed apart, under (name, "decode")."""
    from transformers import AttentionInterface
    seconds = dict.fromkeys(names, 0.0)
    seconds.update({(name, "decode"): 0.0 for name in names})

    def timed(name, forward):
        def run(module, query, *args, **kwargs):
            t0 = time.perf_counter()
            try:
                return forward(module, query, *args, **kwargs)
            finally:
                dt = time.perf_counter() - t0
                seconds[name] += dt
                if query.shape[2] == 1:
                    seconds[(name, "decode")] += dt
                    seconds.setdefault((name, "per call"), []).append(dt)
        return run
    for name in names:
        AttentionInterface.register(name, timed(name, AttentionInterface._global_mapping[name]))
    return seconds


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompt", type=int, default=1024, help="prompt length (tokens)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="default: the cores available")
    ap.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32",
                    help="the models' weights and activations (bfloat16: how most CPU checkpoints load)")
    args = ap.parse_args()

    threads = args.threads or goldilocks.available_cores()
    torch.set_num_threads(threads)
    goldilocks.set_num_threads(threads)
    goldilocks.hf.register()
    attention_seconds = time_attention_calls(("sdpa", "goldilocks"))
    config = transformers.LlamaConfig(
        vocab_size=32000, hidden_size=args.hidden, intermediate_size=args.hidden * 11 // 4,
        num_hidden_layers=args.layers, num_attention_heads=args.heads, num_key_value_heads=args.kv_heads,
        max_position_embeddings=args.prompt + args.new_tokens + 16)
    torch.manual_seed(0)
    models = {"sdpa": transformers.LlamaForCausalLM._from_config(copy.deepcopy(config), attn_implementation="sdpa")}
    models["goldilocks"] = transformers.LlamaForCausalLM._from_config(copy.deepcopy(config),
                                                                       attn_implementation="goldilocks")
    models["goldilocks"].load_state_dict(models["sdpa"].state_dict())
    for m in models.values():
        m.to(getattr(torch, args.dtype)).eval()
    ids = torch.randint(0, config.vocab_size, (args.batch, args.prompt), generator=torch.Generator().manual_seed(1))
    gen_kwargs = dict(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False)

    prefill = {name: [] for name in models}
    generate = {name: [] for name in models}
    prefill_attn = {name: [] for name in models}
    generate_attn = {name: [] for name in models}
    decode_attn = {name: [] for name in models}
    tokens = {}
    with torch.inference_mode():
        for name, m in models.items():  # warm-up
            m(input_ids=ids, logits_to_keep=1)
        for r in range(args.repeats):
            order = list(models) if r % 2 == 0 else list(reversed(models))
            for name in order:
                attention_seconds[name] = 0.0
                t0 = time.perf_counter()
                # Logits of the last position only, as generate() computes them: the full
                # [prompt, vocab] projection is not part of prefill (in bf16 on a CPU without
                # native bf16 it outweighed the whole generation).
                models[name](input_ids=ids, logits_to_keep=1)
                prefill[name].append(time.perf_counter() - t0)
                prefill_attn[name].append(attention_seconds[name])
                attention_seconds[name] = attention_seconds[(name, "decode")] = 0.0
                t0 = time.perf_counter()
                tokens[name] = models[name].generate(ids, **gen_kwargs)
                generate[name].append(time.perf_counter() - t0)
                generate_attn[name].append(attention_seconds[name])
                decode_attn[name].append(attention_seconds[(name, "decode")])

    print(f"# Llama-style: {args.layers} layers, hidden {args.hidden}, {args.heads} heads / {args.kv_heads} KV heads, "
          f"batch {args.batch}, prompt {args.prompt}, {args.new_tokens} new tokens, {args.dtype}, {threads} threads, "
          f"torch {torch.__version__}, transformers {transformers.__version__}, {args.repeats} interleaved repeats")
    # generate() runs one prefill, then new_tokens - 1 decode steps.
    decode_steps = max(1, args.new_tokens - 1)
    print(f"{'attention':<11} {'prefill ms':>11} {'generate ms':>12} {'decode ms/token':>16} "
          f"{'| in attention: prefill ms':>26} {'generate ms':>12}")
    for name in models:
        p, g = statistics.median(prefill[name]), statistics.median(generate[name])
        pa, ga = statistics.median(prefill_attn[name]), statistics.median(generate_attn[name])
        print(f"{name:<11} {p*1e3:>11.1f} {g*1e3:>12.1f} {(g - p)*1e3/decode_steps:>16.2f} "
              f"{pa*1e3:>26.1f} {ga*1e3:>12.1f}")
    ps, pg = (statistics.median(prefill[n]) for n in ("sdpa", "goldilocks"))
    gs, gg = (statistics.median(generate[n]) for n in ("sdpa", "goldilocks"))
    print(f"speed-up of goldilocks over sdpa: prefill {ps/pg:.2f}x, generate {gs/gg:.2f}x, "
          f"decode {(gs - ps)/(gg - pg):.2f}x")
    pa = {n: statistics.median(prefill_attn[n]) for n in models}
    ga = {n: statistics.median(generate_attn[n]) for n in models}
    print(f"attention calls alone, goldilocks over sdpa: prefill {pa['sdpa']/pa['goldilocks']:.2f}x, "
          f"generate {ga['sdpa']/ga['goldilocks']:.2f}x; share of sdpa's time in attention: "
          f"prefill {pa['sdpa']/ps:.0%}, generate {ga['sdpa']/gs:.0%}")
    da = {n: statistics.median(decode_attn[n]) for n in models}
    calls = decode_steps * args.layers
    print(f"decode-step attention calls alone ({calls} calls of one query row): sdpa {da['sdpa']*1e3/calls:.3f} ms, "
          f"goldilocks {da['goldilocks']*1e3/calls:.3f} ms per call; goldilocks over sdpa "
          f"{da['sdpa']/da['goldilocks']:.2f}x; whole-model decode ms/token: sdpa "
          f"{(gs - ps)*1e3/decode_steps:.2f}, goldilocks {(gg - pg)*1e3/decode_steps:.2f}")
    # Medians per call resist the odd call that another process on the machine delayed.
    dm = {n: statistics.median(attention_seconds[(n, "per call")]) for n in models}
    print(f"decode-step attention, median per call over every repeat: sdpa {dm['sdpa']*1e3:.3f} ms, goldilocks "
          f"{dm['goldilocks']*1e3:.3f} ms; goldilocks over sdpa {dm['sdpa']/dm['goldilocks']:.2f}x")
    print("same generated tokens:", torch.equal(tokens["sdpa"], tokens["goldilocks"]))


if __name__ == "__main__":
    main()
