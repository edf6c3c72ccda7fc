"""Shared helpers for the Python tests: seeded inputs and the oracle check.

Tolerance policy (as tests/test_util.h for C++): Goldilocks' error against an
fp64 oracle (PyTorch's math SDPA in float64) must be at most twice the error of
PyTorch's own float32 result plus a small floor, and NaN positions must match."""
import zlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import goldilocks


@pytest.fixture
def rng(request):
    # One stable seed per test, derived from its name; pytest shows it with a failure's captured output.
    seed = zlib.crc32(request.node.name.encode())
    print(f"seed={seed}")
    return torch.Generator().manual_seed(seed)


def randn(gen, *shape, dtype=torch.float32):
    return torch.randn(*shape, generator=gen, dtype=torch.float64).to(dtype)


def torch_sdpa(q, k, v, **kw):
    """PyTorch's reference answer (its math backend) in q's dtype and in float64."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    mask = kw.get("attn_mask")
    with sdpa_kernel(SDPBackend.MATH):
        same = F.scaled_dot_product_attention(q, k, v, **kw)
        kw64 = dict(kw)
        if mask is not None and mask.dtype != torch.bool:
            kw64["attn_mask"] = mask.double()
        oracle = F.scaled_dot_product_attention(q.double(), k.double(), v.double(), **kw64)
    return same, oracle


def assert_matches_oracle(out, torch_out, oracle, floor=2e-6):
    out = torch.as_tensor(np.asarray(out)) if isinstance(out, np.ndarray) else out
    assert out.shape == oracle.shape, (out.shape, oracle.shape)
    assert torch.equal(torch.isnan(out), torch.isnan(oracle)), "NaN positions differ from the fp64 oracle"
    finite = ~torch.isnan(oracle)
    err = (out.double() - oracle)[finite].abs().max().item() if finite.any() else 0.0
    torch_err = (torch_out.double() - oracle)[finite].abs().max().item() if finite.any() else 0.0
    assert err <= 2 * torch_err + floor, f"error {err:.3g} vs PyTorch's {torch_err:.3g} against the fp64 oracle"


@pytest.fixture(autouse=True)
def _reset_threads():
    yield
    goldilocks.set_num_threads(0)


# goldilocks.tune drives the `goldilocks` command-line tool; the suite uses the one
# scripts/test built in this checkout (an installed package cannot find it by itself).
import os as _os

_CLI = _os.path.join(_os.path.dirname(_os.path.abspath(__file__)), "..", "..", "build", "release", "goldilocks")
if _os.path.exists(_CLI):
    _os.environ.setdefault("GOLDILOCKS_CLI", _os.path.abspath(_CLI))
