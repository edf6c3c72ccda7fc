"""Records the Q, K and V of a transformers model's attention calls, so that the
Goldilocks search measures error on real activations (`goldilocks tune
--activations FILE`) instead of Gaussian noise.

    import goldilocks.record
    goldilocks.record.record(model, input_ids, "acts.bin", layer=0)

File format (read by the search's load_activations): one JSON header line
{"heads", "kv_heads", "tokens", "head_dim_k", "head_dim_v", "layer"} then q
(heads, tokens, Dk), k (kv_heads, tokens, Dk), v (kv_heads, tokens, Dv) as
little-endian float32, batch element 0, keys after RoPE (what attention sees).

As a program it builds a small Llama-style model from a config with random
weights (nothing is downloaded) and records it on sample text encoded as bytes:

    python -m goldilocks.record out.bin --text "..." [--heads 4 --kv-heads 2 --head-dim 32 --layer 0]
"""
import argparse
import json

import numpy as np

NAME = "goldilocks_record"


def write(path, q, k, v, layer=0):
    """q (Hq, N, Dk), k (Hkv, N, Dk), v (Hkv, N, Dv), array-likes of float32."""
    q, k, v = (np.ascontiguousarray(np.asarray(x, dtype="<f4")) for x in (q, k, v))
    if q.ndim != 3 or k.ndim != 3 or v.ndim != 3 or not (q.shape[1] == k.shape[1] == v.shape[1]):
        raise ValueError("q, k, v: expected (heads, tokens, dim) with the same tokens, got %s %s %s"
                         % (q.shape, k.shape, v.shape))
    header = {"heads": q.shape[0], "kv_heads": k.shape[0], "tokens": q.shape[1], "head_dim_k": q.shape[2],
              "head_dim_v": v.shape[2], "layer": layer}
    with open(path, "wb") as f:
        f.write((json.dumps(header) + "\n").encode())
        for x in (q, k, v):
            f.write(x.tobytes())
    return header


def read(path):
    """(header, q, k, v) of a file written by write()."""
    with open(path, "rb") as f:
        header = json.loads(f.readline())
        h, hk, n, dk, dv = (header[k] for k in ("heads", "kv_heads", "tokens", "head_dim_k", "head_dim_v"))
        arrays = [np.frombuffer(f.read(4 * a * n * d), dtype="<f4").reshape(a, n, d)
                  for a, d in ((h, dk), (hk, dk), (hk, dv))]
    return (header, *arrays)


def record(model, input_ids, path, layer=0):
    """Runs the model once on input_ids and writes the Q/K/V of attention layer `layer` (the
    layer-th attention call). The model's attention implementation is restored afterwards."""
    import torch
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS

    seen = []

    def capture(module, query, key, value, attention_mask, **kwargs):
        if len(seen) == layer:
            seen.append((query[0].detach().float().cpu(), key[0].detach().float().cpu(),
                         value[0].detach().float().cpu()))
        elif len(seen) < layer:
            seen.append(None)
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)

    AttentionInterface.register(NAME, capture)
    AttentionMaskInterface.register(NAME, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
    previous = model.config._attn_implementation
    model.set_attn_implementation(NAME)
    try:
        with torch.no_grad():
            model(input_ids)
    finally:
        model.set_attn_implementation(previous)
    if len(seen) <= layer or seen[layer] is None:
        raise ValueError("layer %d: the model made only %d attention calls" % (layer, len(seen)))
    q, k, v = seen[layer]
    return write(path, q.numpy(), k.numpy(), v.numpy(), layer)


SAMPLE_TEXT = ("Goldilocks tried the first bowl of porridge and it was too hot. She tried the second bowl and it was "
               "too cold. The third bowl was just right, so she ate it all up. ") * 8


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--text", default=SAMPLE_TEXT, help="sample text (encoded as bytes: no tokenizer download)")
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--head-dim", type=int, default=32)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--layer", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    import torch
    import transformers
    config = transformers.LlamaConfig(vocab_size=256, hidden_size=args.heads * args.head_dim,
                                      intermediate_size=2 * args.heads * args.head_dim,
                                      num_hidden_layers=args.layers, num_attention_heads=args.heads,
                                      num_key_value_heads=args.kv_heads, max_position_embeddings=8192,
                                      initializer_range=0.2)
    torch.manual_seed(args.seed)
    model = transformers.LlamaForCausalLM._from_config(config, attn_implementation="sdpa").eval()
    ids = torch.tensor([list(args.text.encode("utf-8"))], dtype=torch.long)
    header = record(model, ids, args.out, layer=args.layer)
    print("wrote %s: %s" % (args.out, json.dumps(header)))


if __name__ == "__main__":
    main()
