"""Error of the opt-in int8 Q·Kᵀ mode against the fp64 oracle, on the inputs that decide it.

precision="int8_qk" quantizes each query row and each (smoothed) key to int8 with its own
scale. Three kinds of inputs per shape, each against PyTorch's SDPA in float64:
  gaussian      q, k, v standard normal
  k offset      K with a shared offset of 8 on every 16th channel (SageAttention's smoothing
                subtracts K's channel means, so this costs nothing)
  magnitude     Q and K ten times larger on every 32nd channel: one scale per row leaves the
                other channels few codes, which per-row int8 cannot avoid

  python python/benchmarks/int8_error.py
  python python/benchmarks/int8_error.py --shape 1,8,4096,128 --seed 3
"""
import argparse

import torch

import goldilocks


def errors(q, k, v):
    ref = torch.nn.functional.scaled_dot_product_attention(q.double(), k.double(), v.double())
    out = goldilocks.attention(q, k, v, precision="int8_qk").double()
    diff = out - ref
    rel_l2 = (diff.norm() / ref.norm()).item()
    cosine = torch.nn.functional.cosine_similarity(out.flatten(), ref.flatten(), dim=0).item()
    return rel_l2, cosine, diff.abs().max().item()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", action="append", help="B,H,N,D (repeatable); default the prefill targets' shapes")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    shapes = [tuple(int(x) for x in s.split(",")) for s in (args.shape or ["1,16,4096,64", "1,8,4096,128"])]
    torch.manual_seed(args.seed)
    print("# int8_qk against the fp64 oracle (PyTorch SDPA in float64), seed %d" % args.seed)
    print("%-16s %-14s %9s %10s %9s" % ("B,H,N,D", "inputs", "rel L2", "cosine", "max abs"))
    for shape in shapes:
        q, k, v = (torch.randn(*shape) for _ in range(3))
        k_offset = k.clone()
        k_offset[..., 3::16] += 8.0
        q_big, k_big = q.clone(), k.clone()
        q_big[..., 5::32] *= 10.0
        k_big[..., 5::32] *= 10.0
        for name, (a, b) in (("gaussian", (q, k)), ("k offset", (q, k_offset)), ("magnitude", (q_big, k_big))):
            rel, cos, mx = errors(a, b, v)
            print("%-16s %-14s %9.2e %10.6f %9.1e" % (",".join(map(str, shape)), name, rel, cos, mx))


if __name__ == "__main__":
    main()
