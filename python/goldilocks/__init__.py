"""Goldilocks: fast, memory-efficient scaled dot-product attention on the CPU.

Drop-in for PyTorch on the CPU::

    from goldilocks import scaled_dot_product_attention
    out = scaled_dot_product_attention(q, k, v, is_causal=True)   # torch or NumPy in, same type out
"""
from goldilocks._core import available_cores, get_num_threads, peak, set_num_threads
from goldilocks.functional import attention, scaled_dot_product_attention
from goldilocks.backends import sdpa_backend, current_backend, explain
from goldilocks.flex import create_block_mask, flex_attention
from goldilocks.kv_cache import KvCache
from goldilocks.analysis import bench
from goldilocks.tune import TuneConfig, tune, tune_report

__version__ = "0.1.0"

__all__ = [
    "scaled_dot_product_attention",
    "attention",
    "sdpa_backend",
    "current_backend",
    "explain",
    "set_num_threads",
    "get_num_threads",
    "available_cores",
    "peak",
    "flex_attention",
    "create_block_mask",
    "KvCache",
    "bench",
    "tune",
    "tune_report",
    "TuneConfig",
]
