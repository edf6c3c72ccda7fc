"""Small-Nq calls through the drop-in SDPA against PyTorch's, interleaved in one process.

One-token decode (Nq=1, fp32, B=1) over plain K/V tensors as transformers passes them
from its cache, and a BERT-style padded batch with a boolean padding mask. For every
case each library is called `--calls` times in a round, rounds alternate between the
two libraries, and the medians over `--rounds` rounds are reported with their ratio
(PyTorch time / Goldilocks time: > 1 means Goldilocks is faster).

  python python/benchmarks/decode_timing.py                 # the issue's table
  python python/benchmarks/decode_timing.py --busy-core 1   # the same with a busy loop pinned to core 1
  python python/benchmarks/decode_timing.py --dtype bfloat16   # also Goldilocks on the fp32 values, in turn

With a 16-bit --dtype, Goldilocks on the same values in float32 takes its turn in every
round too, and the table adds its time and the half call's speed-up over it.

--busy-core N starts a process spinning on core N (os.sched_setaffinity) for the whole
run, as another program on a shared machine would, and measures quiet first, then busy.
"""
import argparse
import multiprocessing as mp
import os
import statistics
import time

import torch
import torch.nn.functional as F

import goldilocks

DECODE_SHAPES = [  # (Hq, Hkv, Nk, D)
    (16, 4, 2048, 64),
    (16, 4, 8192, 64),
    (32, 8, 2048, 128),
    (32, 32, 2048, 128),
    (32, 32, 4096, 128),
    (32, 8, 4096, 128),
    (32, 32, 32768, 128),
    (32, 8, 32768, 128),
]


def _spin(core):
    os.sched_setaffinity(0, {core})
    x = 0
    while True:
        x += 1


def _time_calls(fn, calls):
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls


def interleaved(fns, rounds, calls):
    """Median seconds per call of each fn, the fns taking turns round by round."""
    for fn in fns:
        fn()  # warm-up: first-call allocations, thread start-up
    times = [[] for _ in fns]
    for r in range(rounds):
        # Rotate which goes first so drift does not favour one side.
        for i in range(len(fns)):
            j = (i + r) % len(fns)
            times[j].append(_time_calls(fns[j], calls))
    return [statistics.median(t) for t in times]


def decode_cases(dtype, shapes):
    g = torch.Generator().manual_seed(0)
    for hq, hkv, nk, d in shapes:
        q32, k32, v32 = (torch.randn(1, h, n, d, generator=g) for h, n in ((hq, 1), (hkv, nk), (hkv, nk)))
        q, k, v = q32.to(dtype), k32.to(dtype), v32.to(dtype)
        yield (f"decode Hq={hq} Hkv={hkv} Nk={nk} D={d}",
               lambda q=q, k=k, v=v: F.scaled_dot_product_attention(q, k, v, enable_gqa=True),
               lambda q=q, k=k, v=v: goldilocks.scaled_dot_product_attention(q, k, v, enable_gqa=True),
               lambda q=q32, k=k32, v=v32: goldilocks.scaled_dot_product_attention(q, k, v, enable_gqa=True),
               (q, k, v, None))


def padded_batch_case(dtype):
    # 13 sentences of 3..256 tokens padded to the longest, 12 heads of 32 (BERT-base-like).
    g = torch.Generator().manual_seed(1)
    lengths = torch.linspace(3, 256, 13).round().long()
    L = int(lengths.max())
    q32, k32, v32 = (torch.randn(13, 12, L, 32, generator=g) for _ in range(3))
    q, k, v = q32.to(dtype), k32.to(dtype), v32.to(dtype)
    keep = torch.arange(L)[None, :] < lengths[:, None]  # [B, L] True = real token
    # transformers expands its [B, L] padding mask to [B, 1, L, L]: every query row sees the real keys.
    mask = keep[:, None, None, :].expand(13, 1, L, L).contiguous()
    yield ("padded batch B=13 H=12 L<=256 D=32 bool mask",
           lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask),
           lambda: goldilocks.scaled_dot_product_attention(q, k, v, attn_mask=mask),
           lambda: goldilocks.scaled_dot_product_attention(q32, k32, v32, attn_mask=mask),
           (q, k, v, mask))


def check_same(case):
    q, k, v, mask = case
    a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True).float()
    b = goldilocks.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True).float()
    return float((a - b).abs().max())


def run(args, label):
    dtype = getattr(torch, args.dtype)
    cases = list(decode_cases(dtype, DECODE_SHAPES if not args.shapes else args.shapes)) + list(padded_batch_case(dtype))
    print(f"\n{label}: torch {torch.__version__}, {args.threads} threads, {args.rounds} rounds x {args.calls} calls, "
          f"dtype {args.dtype}")
    half = dtype != torch.float32
    # Half inputs: Goldilocks on the same values in float32 takes turns too, for the speed-up over its own fp32.
    extra = f" {'gl fp32 ms':>10s} {'vs own fp32':>11s}" if half else ""
    print(f"{'case':52s} {'torch ms':>9s} {'goldilocks ms':>13s} {'speed vs torch':>15s}{extra} {'max |diff|':>10s}")
    results = {}
    for name, torch_fn, gl_fn, gl_fp32_fn, tensors in cases:
        t_torch, t_gl, *t_fp32 = interleaved([torch_fn, gl_fn] + ([gl_fp32_fn] if half else []), args.rounds,
                                             args.calls)
        results[name] = (t_torch, t_gl)
        extra = f" {t_fp32[0] * 1e3:10.3f} {t_fp32[0] / t_gl:10.2f}x" if half else ""
        print(f"{name:52s} {t_torch * 1e3:9.3f} {t_gl * 1e3:13.3f} {t_torch / t_gl:14.2f}x{extra} "
              f"{check_same(tensors):10.2e}", flush=True)
    return results


def parse_shape(s):
    hq, hkv, nk, d = (int(x) for x in s.split(","))
    return (hq, hkv, nk, d)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=11)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--shape", dest="shapes", action="append", type=parse_shape, help="Hq,Hkv,Nk,D (repeatable)")
    ap.add_argument("--busy-core", type=int, default=None, help="also measure with a busy loop pinned to this core")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    goldilocks.set_num_threads(args.threads)
    quiet = run(args, "quiet")
    if args.busy_core is None:
        return
    spinner = mp.get_context("fork").Process(target=_spin, args=(args.busy_core,), daemon=True)
    spinner.start()
    try:
        time.sleep(0.5)
        busy = run(args, f"busy loop on core {args.busy_core}")
    finally:
        spinner.terminate()
    print("\nslowdown with the busy core (busy time / quiet time)")
    print(f"{'case':52s} {'torch':>8s} {'goldilocks':>11s}")
    for name in quiet:
        print(f"{name:52s} {busy[name][0] / quiet[name][0]:7.2f}x {busy[name][1] / quiet[name][1]:10.2f}x")


if __name__ == "__main__":
    main()
