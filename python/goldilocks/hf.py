"""Goldilocks as a Hugging Face `transformers` attention implementation.

    import goldilocks.hf
    goldilocks.hf.register()   # once per process; the name is "goldilocks"
    model = AutoModelForCausalLM.from_config(config, attn_implementation="goldilocks")

Registration goes through transformers' public interfaces: AttentionInterface
for the attention function and AttentionMaskInterface for the mask, which is
the one the model's own "sdpa" implementation builds (so padding, causal and
sliding-window masks arrive exactly as sdpa would see them)."""
# The decode backend's limit (its `few_query_rows` check): calls with more query rows are
# prefill, where a tuned configuration's backend and precision apply; shorter ones take the
# automatic choice, exact, as the search measured its decode steps.
from goldilocks._core import DECODE_MAX_QUERY_ROWS as _DECODE_MAX_QUERY_ROWS
from goldilocks.functional import _run_sdpa

NAME = "goldilocks"


def attention_forward(module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None,
                      **kwargs):
    """query (B, Hq, Nq, D), key/value (B, Hkv, Nk, D) → ((B, Nq, Hq, D), None), as transformers' sdpa."""
    return _forward(None, module, query, key, value, attention_mask, dropout, scaling, is_causal, **kwargs)


def _forward(config, module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None,
             **kwargs):
    if kwargs.get("softcap") is not None:
        raise NotImplementedError("softcap: Goldilocks' SDPA has no logit soft-capping; use attn_implementation='eager'")
    if kwargs.get("position_bias") is not None:
        raise NotImplementedError("position_bias: not supported here; fold it into an additive attention mask")
    q_len, kv_len = query.shape[2], key.shape[2]
    # The same is_causal rule as transformers' sdpa_attention_forward.
    is_causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    is_causal = bool(q_len > 1 and attention_mask is None and is_causal)
    if is_causal and kv_len > q_len:
        # An empty static cache's tail: sdpa crops it too (top-left causal would otherwise see it).
        key, value = key[:, :, :q_len], value[:, :, :q_len]
    backend, precision = None, "exact"  # None: goldilocks.current_backend()
    if config is not None and q_len > _DECODE_MAX_QUERY_ROWS:
        backend, precision = config.backend, config.precision
    # GQA is native (no repeat_kv copies): query head h reads KV head h // (Hq // Hkv).
    out = _run_sdpa(query, key, value, attention_mask, dropout, is_causal, scaling, True, backend=backend,
                    precision=precision)
    return out.transpose(1, 2).contiguous(), None


def register(name=NAME, config=None):
    """Registers Goldilocks under `name` with transformers (idempotent). With `config` (a
    goldilocks.TuneConfig, e.g. from goldilocks.tune()), prefill calls (more query rows than the
    decode kernel takes) run with the configuration's backend and precision, decode steps with the
    automatic choice, exact, as the search measured them; its threads are set process-wide
    (goldilocks.set_num_threads)."""
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS
    forward = attention_forward
    if config is not None:
        from goldilocks._core import set_num_threads

        def forward(*args, **kwargs):
            return _forward(config, *args, **kwargs)

        set_num_threads(config.threads)
    AttentionInterface.register(name, forward)
    AttentionMaskInterface.register(name, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
    return name
