#!/usr/bin/env python3
"""Goldilocks vs PyTorch on the CPU, side by side in one run.

Times, interleaved (every repeat runs each implementation once, in a rotating
order, so machine noise hits all of them alike) and with the same thread count:
  torch_math   F.scaled_dot_product_attention under sdpa_kernel(SDPBackend.MATH)
  torch_flash  F.scaled_dot_product_attention under sdpa_kernel(SDPBackend.FLASH_ATTENTION)
  torch_flex   flex_attention on the CPU, torch.compile'd (compile time reported apart)
  gl_math      goldilocks.scaled_dot_product_attention under sdpa_backend("math")
  gl_flash     goldilocks.scaled_dot_product_attention under sdpa_backend("flash")
  gl_flex      goldilocks.flex_attention with the spec "causal" (or "none"): the flex path
               of the same flash kernel, the counterpart of torch_flex
With --dtype bfloat16 / float16 every implementation gets the same tensors in that
dtype (drawn in float32, then rounded; gl_math is skipped: Goldilocks' math backend
is the float32 baseline), plus
  gl_flash_fp32  gl_flash on the same values in float32: Goldilocks' own fp32 speed
and with --int8-qk
  gl_flash_int8  goldilocks.attention(..., precision="int8_qk"): approximate int8 Q·Kᵀ
and prints medians, min/max, GFLOP/s, the fraction of this machine's fp32 FMA
peak measured in the same run (goldilocks.peak, all threads) and each one's
speed-up over torch_flash.

  python python/benchmarks/compare_torch.py                       # default shapes
  python python/benchmarks/compare_torch.py --shape 1,16,4096,64 --causal --repeats 5
  python python/benchmarks/compare_torch.py --flex off --json results.json
  python python/benchmarks/compare_torch.py --dtype bfloat16 --shape 1,16,4096,64 --shape 1,8,4096,128 --flex off
  python python/benchmarks/compare_torch.py --int8-qk --shape 1,16,4096,64 --flex off

torch_flex needs torch.compile on the CPU to be a fused kernel (a C++ compiler at
run time; the first call compiles, reported as warm-up). --flex eager runs
PyTorch's unfused fallback, which materialises the N×N scores like math.
"""
import argparse
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

import goldilocks

DEFAULT_SHAPES = ["1,16,1024,64", "1,16,4096,64", "1,8,4096,128"]


def parse_shape(text):
    b, h, n, d = (int(x) for x in text.split(","))
    return b, h, n, d


def make_impls(q, k, v, causal, flex_mode, int8_qk=False):
    """name → zero-argument callable running one attention call."""
    impls = {}

    def torch_sdpa(backend):
        def run():
            with sdpa_kernel(backend):
                return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return run

    def gl_sdpa(backend):
        def run():
            with goldilocks.sdpa_backend(backend):
                return goldilocks.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return run

    impls["torch_math"] = torch_sdpa(SDPBackend.MATH)
    impls["torch_flash"] = torch_sdpa(SDPBackend.FLASH_ATTENTION)
    if flex_mode != "off":
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention
        flex = torch.compile(flex_attention) if flex_mode == "compiled" else flex_attention
        n_q, n_k = q.shape[-2], k.shape[-2]
        block_mask = None
        if causal:
            block_mask = create_block_mask(lambda b, h, i, j: i >= j, None, None, n_q, n_k, device="cpu")
        impls["torch_flex"] = lambda: flex(q, k, v, block_mask=block_mask)
    if q.dtype == torch.float32:
        impls["gl_math"] = gl_sdpa("math")  # the float32 baseline: it refuses 16-bit inputs
    impls["gl_flash"] = gl_sdpa("flash")
    if q.dtype != torch.float32:
        q32, k32, v32 = q.float(), k.float(), v.float()
        impls["gl_flash_fp32"] = lambda: goldilocks.attention(q32, k32, v32, causal="top_left" if causal else None,
                                                              backend="flash")
    if int8_qk:
        impls["gl_flash_int8"] = lambda: goldilocks.attention(q, k, v, causal="top_left" if causal else None,
                                                              backend="flash", precision="int8_qk")
    if flex_mode != "off":
        spec = "causal" if causal else "none"  # built-in masks classify blocks themselves: no block mask needed
        impls["gl_flex"] = lambda: goldilocks.flex_attention(q, k, v, spec)
    return impls


def bench_shape(shape, causal, repeats, flex_mode, math_limit_bytes, seed, peak_gflops, dtype=torch.float32,
                int8_qk=False):
    b, h, n, d = shape
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(b, h, n, d, generator=gen).to(dtype) for _ in range(3))
    impls = make_impls(q, k, v, causal, flex_mode, int8_qk)
    if b * h * n * n * 4 > math_limit_bytes:  # the N×N score matrix would not fit
        for name in ("torch_math", "gl_math"):
            impls.pop(name, None)

    # Warm-up (and compile) once each; check every result against torch's math path in float64
    # (on the rounded values, for a 16-bit dtype).
    reference = F.scaled_dot_product_attention(q.double(), k.double(), v.double(), is_causal=causal)
    warmup_s, max_err = {}, {}
    for name, run in impls.items():
        t0 = time.perf_counter()
        out = run()
        warmup_s[name] = time.perf_counter() - t0
        max_err[name] = (out.double() - reference).abs().max().item()
    del reference

    times = {name: [] for name in impls}
    names = list(impls)
    for r in range(repeats):
        for i in range(len(names)):
            name = names[(i + r) % len(names)]  # rotate the order every repeat
            t0 = time.perf_counter()
            impls[name]()
            times[name].append(time.perf_counter() - t0)

    flops = 4 * b * h * n * n * d * (0.5 if causal else 1.0)
    base = statistics.median(times["torch_flash"])
    own_fp32 = statistics.median(times["gl_flash_fp32"]) if "gl_flash_fp32" in times else None
    rows = []
    for name in names:
        med = statistics.median(times[name])
        rows.append({
            "impl": name, "B": b, "H": h, "N": n, "D": d, "causal": causal, "dtype": str(dtype).removeprefix("torch."),
            "threads": goldilocks.get_num_threads(),
            "speedup_vs_gl_flash_fp32": own_fp32 / med if own_fp32 else None,
            "median_s": med, "min_s": min(times[name]), "max_s": max(times[name]), "gflops": flops / med / 1e9,
            "fraction_of_fma_peak": flops / med / 1e9 / peak_gflops if peak_gflops else None,
            "speedup_vs_torch_flash": base / med, "max_abs_err_vs_fp64": max_err[name], "warmup_s": warmup_s[name],
        })
    return rows


def fmt_fraction(x):
    return "-" if x is None else f"{100 * x:.1f}%"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", action="append", help="B,H,N,D (repeatable); default: %s" % " ".join(DEFAULT_SHAPES))
    ap.add_argument("--causal", action="store_true", help="is_causal=True (FLOPs halved)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=0, help="threads for both (default: the cores available)")
    ap.add_argument("--flex", choices=["compiled", "eager", "off"], default="compiled")
    ap.add_argument("--math-limit-gib", type=float, default=4.0, help="skip the math paths above this score matrix size")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-peak", action="store_true", help="skip measuring the machine's FMA peak")
    ap.add_argument("--json", help="also write the rows to this file")
    ap.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32",
                    help="dtype of q, k, v for every implementation (adds gl_flash_fp32 for 16-bit types)")
    ap.add_argument("--int8-qk", action="store_true", help="also time goldilocks flash with precision='int8_qk'")
    args = ap.parse_args()

    threads = args.threads or goldilocks.available_cores()
    torch.set_num_threads(threads)
    goldilocks.set_num_threads(threads)
    print(f"# torch {torch.__version__}, goldilocks {goldilocks.__version__}, {threads} threads, "
          f"{args.repeats} interleaved repeats, causal={args.causal}")
    peak_gflops = None
    if not args.no_peak:
        peak = goldilocks.peak(threads=threads)
        peak_gflops = peak["fma_gflops_all"]
        print(f"# measured peak ({peak['isa']}, {threads} threads): fp32 FMA {peak_gflops:.1f} GFLOP/s, "
              f"memory read {peak['read_gbs_all']:.1f} GB/s")
    all_rows = []
    with torch.inference_mode():
        for text in args.shape or DEFAULT_SHAPES:
            rows = bench_shape(parse_shape(text), args.causal, args.repeats, args.flex,
                               args.math_limit_gib * 2**30, args.seed, peak_gflops, getattr(torch, args.dtype),
                               args.int8_qk)
            all_rows += rows
            b, h, n, d = parse_shape(text)
            print(f"\nB={b} H={h} N={n} D={d} causal={args.causal} dtype={args.dtype}")
            print(f"{'impl':<14} {'median ms':>10} {'min ms':>9} {'max ms':>9} {'GFLOP/s':>8} {'% peak':>7} "
                  f"{'vs torch_flash':>14} {'vs gl fp32':>10} {'max err':>9} {'warm-up s':>9}")
            for r in rows:
                own = r["speedup_vs_gl_flash_fp32"]
                print(f"{r['impl']:<14} {r['median_s']*1e3:>10.2f} {r['min_s']*1e3:>9.2f} {r['max_s']*1e3:>9.2f} "
                      f"{r['gflops']:>8.1f} {fmt_fraction(r['fraction_of_fma_peak']):>7} "
                      f"{r['speedup_vs_torch_flash']:>13.2f}x {'-' if own is None else f'{own:.2f}x':>10} "
                      f"{r['max_abs_err_vs_fp64']:>9.1e} {r['warmup_s']:>9.2f}")
            sys.stdout.flush()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(all_rows, f, indent=1)


if __name__ == "__main__":
    main()
