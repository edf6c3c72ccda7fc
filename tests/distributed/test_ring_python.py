"""goldilocks.distributed over mpi4py, run by scripts/test under mpirun with 1-4 ranks:
every rank builds the same global inputs from a seed, runs the ring on its shard, and
checks its rows against a float64 oracle under tests/test_util.h's policy (at most
2x the error of the fp32 math backend on the whole problem, plus a small floor)."""
import numpy as np
import pytest

mpi4py = pytest.importorskip("mpi4py")
from mpi4py import MPI  # noqa: E402

import goldilocks  # noqa: E402
import goldilocks.distributed as gd  # noqa: E402

COMM = MPI.COMM_WORLD
ABS_FLOOR = 2e-6


def oracle(q, k, v, causal, mask=None):
    """float64 attention with GQA; fully masked rows give 0 and -inf."""
    q, k, v = (x.astype(np.float64) for x in (q, k, v))
    rep = q.shape[-3] // k.shape[-3]
    k, v = np.repeat(k, rep, axis=-3), np.repeat(v, rep, axis=-3)
    s = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])
    nq, nk = q.shape[-2], k.shape[-2]
    vis = np.ones((nq, nk), dtype=bool)
    if causal in (True, "top_left"):
        vis = np.tril(vis)
    elif causal == "bottom_right":
        vis = np.tril(vis, nk - nq)
    s = np.where(vis, s, -np.inf)
    m = s.max(axis=-1, keepdims=True)
    m0 = np.where(np.isfinite(m), m, 0)
    e = np.exp(s - m0)
    z = e.sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(z > 0, (e @ v) / np.where(z > 0, z, 1), 0)
        lse = np.where(z[..., 0] > 0, (m0 + np.log(np.where(z > 0, z, 1)))[..., 0], -np.inf)
    return out, lse


def inputs(seed, hq, hkv, nq, nk, d):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((2, hq, nq, d), dtype=np.float32),
            rng.standard_normal((2, hkv, nk, d), dtype=np.float32),
            rng.standard_normal((2, hkv, nk, d), dtype=np.float32))


@pytest.mark.parametrize("layout", ["zigzag", "contiguous"])
@pytest.mark.parametrize("causal", [None, "top_left", "bottom_right"])
@pytest.mark.parametrize("shape", [(37, 37, 4, 2), (13, 29, 2, 2), (29, 13, 4, 1), (1, 1, 2, 1), (200, 200, 4, 2)])
def test_ring_matches_single_process(layout, causal, shape):
    nq, nk, hq, hkv = shape
    rank, size = COMM.rank, COMM.size
    q, k, v = inputs(nq * 1000 + nk, hq, hkv, nq, nk, 16)
    want, want_lse = oracle(q, k, v, causal)
    math_out, math_lse = goldilocks.attention(q, k, v, causal=causal, backend="math", return_lse=True)
    qs, ks, vs = (gd.shard(x, rank, size, layout) for x in (q, k, v))
    out, lse = gd.ring_attention(qs, ks, vs, comm=COMM, causal=causal, layout=layout, q_len=nq, kv_len=nk,
                                 return_lse=True)
    pos = gd.shard_positions(nq, rank, size, layout)
    valid = pos >= 0
    assert np.all(out[:, :, ~valid] == 0) and np.all(lse[:, :, ~valid] == -np.inf)  # padding rows
    err = np.abs(out[:, :, valid] - want[:, :, pos[valid]]).max(initial=0)
    tol = 2 * np.abs(math_out - want).max(initial=0) + ABS_FLOOR
    assert err <= tol, f"seed shape {shape}: err {err} > {tol}"
    got_l, want_l = lse[:, :, valid], want_lse[:, :, pos[valid]]
    assert np.array_equal(np.isfinite(got_l), np.isfinite(want_l))  # fully masked rows: -inf exactly
    fin = np.isfinite(want_l)
    with np.errstate(invalid="ignore"):  # -inf - -inf on fully masked rows, excluded below
        math_lerr = np.abs(math_lse - want_lse)[np.isfinite(want_lse)].max(initial=0)
    assert np.abs(got_l - want_l)[fin].max(initial=0) <= 2 * math_lerr + 8 * ABS_FLOOR
    # The gathered result is the single-process one, and a repeat gives the same bits.
    full = gd.unshard(COMM.allgather(out), nq, layout)
    assert np.abs(full - want).max(initial=0) <= tol
    again = gd.ring_attention(qs, ks, vs, comm=COMM, causal=causal, layout=layout, q_len=nq, kv_len=nk)
    assert again.tobytes() == out.tobytes()


def test_torch_tensors_in_torch_out():
    torch = pytest.importorskip("torch")
    rank, size = COMM.rank, COMM.size
    q, k, v = inputs(5, 4, 2, 24, 24, 8)
    qs, ks, vs = (torch.from_numpy(gd.shard(x, rank, size)) for x in (q, k, v))
    out = gd.ring_attention(qs, ks, vs, comm=COMM, causal=True, q_len=24)
    assert isinstance(out, torch.Tensor)
    want, _ = oracle(q, k, v, True)
    pos = gd.shard_positions(24, rank, size)
    assert np.abs(out.numpy()[:, :, pos >= 0] - want[:, :, pos[pos >= 0]]).max() < 1e-5


def test_invalid_shard_on_one_rank_raises_on_every_rank():
    rank, size = COMM.rank, COMM.size
    q, k, v = inputs(6, 2, 2, 20, 20, 8)
    qs, ks, vs = (gd.shard(x, rank, size) for x in (q, k, v))
    if rank == size - 1:
        ks = ks[..., :-1, :]  # one row short
    with pytest.raises(ValueError, match=f"rank {size - 1}: k: shard length"):
        gd.ring_attention(qs, ks, vs, comm=COMM, q_len=20)


def test_sharded_decode_matches_and_is_identical_on_every_rank():
    rank, size = COMM.rank, COMM.size
    lens = [0 if (size > 1 and r == 1) else 5 + 3 * r for r in range(size)]
    starts = np.concatenate([[0], np.cumsum(lens)])
    q, k, v = inputs(9, 4, 2, 1, int(starts[-1]), 16)
    mine = slice(int(starts[rank]), int(starts[rank + 1]))
    out, lse = gd.sharded_decode(q, k[:, :, mine], v[:, :, mine], comm=COMM, return_lse=True)
    want, want_lse = oracle(q, k, v, None)
    math_out = goldilocks.attention(q, k, v, backend="math")
    assert np.abs(out - want).max() <= 2 * np.abs(math_out - want).max() + ABS_FLOOR
    everyone = COMM.allgather(out.tobytes() + lse.tobytes())
    assert all(e == everyone[0] for e in everyone)
