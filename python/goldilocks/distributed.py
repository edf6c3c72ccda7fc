"""Exact attention across MPI ranks with mpi4py (optional extra: pip install goldilocks[distributed]).

    from mpi4py import MPI
    import goldilocks.distributed as gd
    qs = gd.shard(q, comm.rank, comm.size)            # this rank's zigzag shard of (B, H, N, D)
    out, lse = gd.ring_attention(qs, ks, vs, comm=comm, causal="top_left", q_len=N, return_lse=True)
    full = gd.unshard(comm.allgather(out), N)          # == goldilocks.attention(q, k, v, causal=...)

ring_attention passes K/V blocks around the ring (non-blocking Isend/Irecv,
double-buffered, in their own dtype, only the KV heads under GQA), attends
this rank's queries to each block with goldilocks.attention(return_lse=True)
and merges the partial results with their log-sum-exp in float32, in the same
order on every run (bitwise reproducible for a given number of ranks).
sharded_decode is the decode-time "pass-Q" variant: every rank attends the
same query to its own keys, and the partials are merged in rank order.

The ring is written here over mpi4py rather than in the C++ extension: the
extension then needs no MPI at build time, and the MPI library is whichever
one mpi4py loaded (no second, possibly mismatched MPI in the process). The C++
ring (include/goldilocks/distributed.h) is the same algorithm.

Semantics and errors match the C++ ring: shards use the layout's padded
length (shard_length); padding rows get output 0 and LSE -inf; a bad shard on
any rank raises the same ValueError on every rank before any data moves.
"""
import hashlib

import numpy as np

from . import _arrays, functional

__all__ = ["shard_length", "shard_positions", "shard", "unshard", "ring_attention", "sharded_decode"]

_LAYOUTS = ("zigzag", "contiguous")
_CAUSAL = {None: "none", False: "none", "none": "none", True: "top_left", "top_left": "top_left",
           "bottom_right": "bottom_right"}


def _comm(comm):
    if comm is not None:
        return comm
    try:
        from mpi4py import MPI
    except ImportError as e:  # the optional extra is missing
        raise ImportError("goldilocks.distributed needs mpi4py: pip install 'goldilocks[distributed]' "
                          "(and an MPI library such as Debian's libopenmpi-dev)") from e
    return MPI.COMM_WORLD


def _check_layout(layout):
    if layout not in _LAYOUTS:
        raise ValueError(f"layout: {layout!r} is not one of {_LAYOUTS}")


def _chunks(n, rank, size, layout):
    """[(local_row, global_start, valid_len)] of rank's shard."""
    parts = 2 * size if layout == "zigzag" else size
    c = -(-n // parts)
    idx = [rank, 2 * size - 1 - rank] if layout == "zigzag" else [rank]
    return [(i * c, j * c, max(0, min(c, n - j * c))) for i, j in enumerate(idx)]


def shard_length(n, size, layout="zigzag"):
    """Rows per shard (padding included) for a global length n over `size` ranks."""
    _check_layout(layout)
    if n < 0 or size < 1:
        raise ValueError(f"n, size: need n >= 0 and size >= 1, got {n}, {size}")
    parts = 2 * size if layout == "zigzag" else size
    return (-(-n // parts)) * (parts // size)


def shard_positions(n, rank, size, layout="zigzag"):
    """Global position of each row of rank's shard (int64), -1 for padding."""
    pos = np.full(shard_length(n, size, layout), -1, dtype=np.int64)
    for row, start, length in _chunks(n, rank, size, layout):
        pos[row:row + length] = np.arange(start, start + length)
    return pos


def _numpy(x, name):
    x = _arrays.prepare(x, name)
    return (x.numpy() if _arrays.is_torch(x) else x), _arrays.is_torch(x)


def _like(arr, torch_out):
    if torch_out:
        return _arrays._torch().from_numpy(np.ascontiguousarray(arr))
    return arr


def shard(x, rank, size, layout="zigzag"):
    """Rank's shard of a full (..., N, D) array along the sequence axis (-2), zero-padded."""
    a, is_t = _numpy(x, "x")
    if a.ndim < 2:
        raise ValueError("x: needs at least 2 dims (..., N, D) with the sequence in axis -2")
    n = a.shape[-2]
    out = np.zeros(a.shape[:-2] + (shard_length(n, size, layout), a.shape[-1]), dtype=a.dtype)
    for row, start, length in _chunks(n, rank, size, layout):
        out[..., row:row + length, :] = a[..., start:start + length, :]
    return _like(out, is_t)


def unshard(shards, n, layout="zigzag"):
    """The full (..., n, D) array from every rank's shard, in rank order (e.g. comm.allgather(out)).
    A shard may also be (..., S) (an LSE); the sequence axis is then the last."""
    arrs = [_numpy(s, "shards")[0] for s in shards]
    is_t = _arrays.is_torch(shards[0]) if shards else False
    size = len(arrs)
    axis = -2 if arrs[0].ndim >= 2 and arrs[0].shape[-2] == shard_length(n, size, layout) else -1
    shape = list(arrs[0].shape)
    shape[axis] = n
    full = np.empty(shape, dtype=arrs[0].dtype)
    for r, a in enumerate(arrs):
        for row, start, length in _chunks(n, r, size, layout):
            if axis == -2:
                full[..., start:start + length, :] = a[..., row:row + length, :]
            else:
                full[..., start:start + length] = a[..., row:row + length]
    return _like(full, is_t)


def _agree(comm, error):
    """Raises on every rank the lowest failing rank's error (collective)."""
    errors = comm.allgather(error)
    for r, e in enumerate(errors):
        if e is not None:
            raise ValueError(f"rank {r}: {e}")


def _merge(out_a, lse_a, out_b, lse_b):
    """The LSE merge of two partial states over disjoint keys, in float32 (fixed order a, b)."""
    m = np.maximum(lse_a, lse_b)
    finite = np.isfinite(m)
    m0 = np.where(finite, m, np.float32(0))
    wa = np.exp(lse_a - m0, dtype=np.float32)
    wb = np.exp(lse_b - m0, dtype=np.float32)
    s = wa + wb
    with np.errstate(divide="ignore", invalid="ignore"):
        lse = np.where(finite, m0 + np.log(s), np.float32(-np.inf)).astype(np.float32)
        out = np.where(finite[..., None], (out_a * wa[..., None] + out_b * wb[..., None]) / s[..., None],
                       np.float32(0)).astype(np.float32)
    return out, lse


def _plan(qc, kc, causal, off):
    """None (skip) or (causal, mask) for one (query chunk, key chunk) pair over global positions."""
    (qr, qs, nq), (kr, ks, nk) = qc, kc
    if nq == 0 or nk == 0:
        return None
    if causal == "none":
        return ("none", None)
    if ks > qs + nq - 1 + off:
        return None  # wholly above the diagonal: skipped, never computed
    if ks + nk - 1 <= qs + off:
        return ("none", None)
    d = qs + off - ks  # block-local: key j visible to query i iff j <= i + d
    if d == 0:
        return ("top_left", None)
    if d == nk - nq:
        return ("bottom_right", None)
    return ("none", np.arange(nk)[None, :] <= np.arange(nq)[:, None] + d)


def ring_attention(q, k, v, comm=None, *, causal=None, scale=None, layout="zigzag", q_len=None, kv_len=None,
                   return_lse=False):
    """Attention of this rank's query shard to every rank's K/V shard (collective over comm).

    q (..., Hq, Sq, Dk), k (..., Hkv, Sk, Dk), v (..., Hkv, Sk, Dv): this rank's shards in
    `layout` ("zigzag" or "contiguous"), Sq = shard_length(q_len, comm.size, layout).
    q_len / kv_len: the global lengths (default comm.size * Sq, and kv_len = q_len).
    causal: None, True / "top_left", or "bottom_right" over GLOBAL positions.
    Returns out (..., Hq, Sq, Dv) float32 (and the LSE (..., Hq, Sq) with return_lse),
    the rows of the single-process result at this rank's positions."""
    comm = _comm(comm)
    rank, size = comm.Get_rank(), comm.Get_size()
    error = None
    try:
        if causal not in _CAUSAL:
            raise ValueError(f"causal: {causal!r} is not one of None, True, 'top_left', 'bottom_right'")
        causal = _CAUSAL[causal]
        _check_layout(layout)
        (qa, is_t), (ka, _), (va, _) = _numpy(q, "q"), _numpy(k, "k"), _numpy(v, "v")
        if qa.ndim < 3 or ka.ndim != qa.ndim or va.ndim != qa.ndim:
            raise ValueError("q, k, v: need the same number of dims, at least 3 (..., H, S, D)")
        sq, sk = qa.shape[-2], ka.shape[-2]
        q_len = size * sq if q_len is None else int(q_len)
        kv_len = q_len if kv_len is None else int(kv_len)
        if q_len < 0 or kv_len < 0:
            raise ValueError("q_len, kv_len: must be >= 0")
        for name, got, n in (("q", sq, q_len), ("k", sk, kv_len), ("v", va.shape[-2], kv_len)):
            want = shard_length(n, size, layout)
            if got != want:
                raise ValueError(f"{name}: shard length (axis -2) must be shard_length({n}, {size}, '{layout}') = "
                                 f"{want}, got {got}; shard with goldilocks.distributed.shard")
        if ka.shape[:-1] != va.shape[:-1]:
            raise ValueError("k, v: must agree on every dim but the last")
    except (ValueError, TypeError, NotImplementedError) as e:
        error = str(e)
    _agree(comm, error)
    sig = (q_len, kv_len, causal, layout, qa.shape[:-2], ka.shape[:-2], qa.shape[-1], va.shape[-1],
           str(ka.dtype), str(va.dtype), scale)
    sigs = comm.allgather(sig)
    names = ("q_len", "kv_len", "causal", "layout", "q (batch, heads)", "k (batch, heads)", "q (head dim)",
             "v (head dim)", "k (dtype)", "v (dtype)", "scale")
    for i, name in enumerate(names):
        if any(s[i] != sig[i] for s in sigs):
            raise ValueError(f"{name}: ranks disagree ({[s[i] for s in sigs]}); every rank must pass the same value")

    off = kv_len - q_len if causal == "bottom_right" else 0
    # K then V as bytes in their own dtypes: what travels.
    kb = np.ascontiguousarray(ka).reshape(-1).view(np.uint8)
    vb = np.ascontiguousarray(va).reshape(-1).view(np.uint8)
    cur = np.concatenate([kb, vb])
    nxt = np.empty_like(cur)
    out = np.zeros(qa.shape[:-1] + (va.shape[-1],), dtype=np.float32)
    lse = np.full(qa.shape[:-1], -np.inf, dtype=np.float32)
    q_chunks = _chunks(q_len, rank, size, layout)
    started = [False] * len(q_chunks)
    for s in range(size):
        src = (rank - s) % size
        reqs = []
        if s + 1 < size:
            from mpi4py import MPI
            reqs = [comm.Irecv([nxt, MPI.BYTE], source=(rank - 1) % size, tag=77),
                    comm.Isend([cur, MPI.BYTE], dest=(rank + 1) % size, tag=77)]
        kblk = cur[:kb.size].view(ka.dtype).reshape(ka.shape)
        vblk = cur[kb.size:].view(va.dtype).reshape(va.shape)
        for ci, qc in enumerate(q_chunks):
            for kc in _chunks(kv_len, src, size, layout):
                plan = _plan(qc, kc, causal, off)
                if plan is None:
                    continue
                (qr, _, nq), (kr, _, nk) = qc, kc
                po, pl = functional.attention(qa[..., qr:qr + nq, :], kblk[..., kr:kr + nk, :],
                                              vblk[..., kr:kr + nk, :], mask=plan[1],
                                              causal=None if plan[0] == "none" else plan[0], scale=scale,
                                              backend="flash", return_lse=True)
                if not started[ci]:
                    out[..., qr:qr + nq, :], lse[..., qr:qr + nq] = po, pl
                    started[ci] = True
                else:
                    out[..., qr:qr + nq, :], lse[..., qr:qr + nq] = _merge(
                        out[..., qr:qr + nq, :], lse[..., qr:qr + nq], po, pl)
        if reqs:
            from mpi4py import MPI
            MPI.Request.Waitall(reqs)
            cur, nxt = nxt, cur
    out_t = _like(out, is_t)
    return (out_t, _like(lse, is_t)) if return_lse else out_t


def sharded_decode(q, k, v, comm=None, *, scale=None, return_lse=False):
    """Pass-Q decoding: q (..., Hq, Nq, Dk) the same on every rank, k/v this rank's keys
    (..., Hkv, n_rank, D), n_rank may differ per rank (0 included). Every query sees every
    key; partials are merged in rank order, so every rank returns the same bits."""
    comm = _comm(comm)
    error = None
    try:
        (qa, is_t), (ka, _), (va, _) = _numpy(q, "q"), _numpy(k, "k"), _numpy(v, "v")
        po, pl = functional.attention(qa, ka, va, scale=scale, backend="flash", return_lse=True)
    except (ValueError, TypeError, NotImplementedError, RuntimeError) as e:
        error = str(e)
    _agree(comm, error)
    # A digest, not hash(): Python's hash of bytes differs between processes.
    digests = comm.allgather((qa.shape, str(qa.dtype), hashlib.sha256(np.ascontiguousarray(qa).tobytes()).digest()))
    if any(d != digests[0] for d in digests):
        raise ValueError("q: ranks disagree; every rank must pass the same queries")
    parts = comm.allgather((np.asarray(po), np.asarray(pl)))
    out, lse = parts[0]
    for o, l in parts[1:]:
        out, lse = _merge(out, lse, o, l)
    out_t = _like(out, is_t)
    return (out_t, _like(lse, is_t)) if return_lse else out_t
