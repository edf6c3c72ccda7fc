"""The KV cache for decoding: keys and values stored once (float32, float16,
bfloat16, int8 or int4, contiguous or paged) and attended to by every later
query. A thin layer over the C++ cache (include/goldilocks/kv_cache.h): every
failed operation raises and leaves the cache unchanged. Threads may share a
cache: each operation holds the cache's lock with the GIL released, so calls
on one cache run one at a time (attention over a cache is not reentrant)."""
from goldilocks import _arrays, _core


class KvCache:
    """KvCache(batch, kv_heads, head_dim, max_tokens, *, head_dim_v=None, layout="contiguous",
    page_size=16, num_pages=0, storage="f32", k_storage=None, v_storage=None,
    k_group_size=0, v_group_size=0, k_scales="token", k_channel_tokens=0)

    storage / k_storage / v_storage: "f32", "f16", "bf16", "int8", "int4" (quantized on append,
    dequantized inside the attention kernel). layout "paged" shares pages between forks
    (copy-on-write); num_pages 0 sizes the pool for batch * max_tokens. k_scales "channel"
    (int8/int4 K): KIVI's per-channel K scales over groups of k_channel_tokens tokens (0 =
    default), the newest tokens of an unfinished group kept in float32."""

    def __init__(self, batch, kv_heads, head_dim, max_tokens, *, head_dim_v=None, layout="contiguous",
                 page_size=16, num_pages=0, storage="f32", k_storage=None, v_storage=None, k_group_size=0,
                 v_group_size=0, k_scales="token", k_channel_tokens=0):
        self._cache = _core.KvCache(
            batch=batch, kv_heads=kv_heads, head_dim_k=head_dim, head_dim_v=head_dim if head_dim_v is None else head_dim_v,
            max_tokens=max_tokens, layout=layout, page_size=page_size, num_pages=num_pages,
            k_storage=k_storage or storage, v_storage=v_storage or storage, k_group_size=k_group_size,
            v_group_size=v_group_size, k_scales=k_scales, k_channel_tokens=k_channel_tokens)

    def append(self, k, v, seq=None):
        """Appends n tokens: to every sequence (k (B, Hkv, n, Dk), v (B, Hkv, n, Dv)) or, with seq,
        to one (k (Hkv, n, Dk), v (Hkv, n, Dv)). float32, any strides."""
        k, v = _arrays.importable(_arrays.prepare(k, "k")), _arrays.importable(_arrays.prepare(v, "v"))
        if seq is None:
            self._cache.append_all(k, v)
        else:
            self._cache.append(seq, k, v)

    def rollback(self, seq, new_length):
        """Truncates sequence seq to new_length tokens (speculative decoding)."""
        self._cache.truncate(seq, new_length)

    truncate = rollback

    def fork(self, src, dst):
        """Makes sequence dst a copy of src (paged: pages shared until written)."""
        self._cache.fork(src, dst)

    def evict(self, seq, sink_tokens, recent_tokens):
        """StreamingLLM: keeps the first sink_tokens and the last recent_tokens of seq."""
        self._cache.evict(seq, sink_tokens, recent_tokens)

    def reset(self, seq=-1):
        """Empties sequence seq, or every sequence (seq=-1)."""
        self._cache.reset(seq)

    def length(self, seq):
        return self._cache.length(seq)

    @property
    def lengths(self):
        return [self._cache.length(b) for b in range(self.config["batch"])]

    @property
    def bytes(self):
        """What the cache allocated (the whole pool, up front)."""
        return self._cache.bytes

    @property
    def free_pages(self):
        return self._cache.free_pages

    @property
    def config(self):
        return self._cache.config

    def read(self, seq, start=0, count=None, like=None):
        """The dequantized (k, v) of tokens [start, start+count) of seq, shapes (Hkv, count, D),
        as NumPy arrays or the type of `like`."""
        if count is None:
            count = self._cache.length(seq) - start
        return self._cache.read(seq, start, count, _arrays.allocator_like(like))

    def attend(self, query, scale=None, causal=True, return_lse=False, kv_splits=0):
        """Attention of query (B, Hq, Nq, Dk) over the cache; the Nq queries are the last Nq
        positions of each sequence. causal=True is bottom-right (decoding, chunked prefill);
        Hq may be a multiple of the cache's KV heads (GQA). Returns (B, Hq, Nq, Dv) of
        query's type, and the log-sum-exp with return_lse."""
        if causal not in (True, False, None, "bottom_right"):
            raise ValueError(f"causal: {causal!r} is not True/'bottom_right' (the queries are the last Nq "
                             "positions) or False/None; a KV cache has no top-left alignment")
        q = _arrays.prepare(query, "query")
        if _arrays.dtype_name(q) != "float32":
            raise TypeError(f"query: dtype {_arrays.dtype_name(q)} is not supported; the KV cache attends in float32")
        return self._cache.attend(_arrays.importable(q), scale, "bottom_right" if causal else "none", kv_splits,
                                  bool(return_lse), _arrays.allocator_like(q))
