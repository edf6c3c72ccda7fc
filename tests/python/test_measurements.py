"""Measurements return plain Python data; bad options raise naming the option."""
import pytest

import goldilocks


def test_peak_returns_plain_numbers():
    p = goldilocks.peak(threads=1, fma_seconds=0.01, repeats=1, buffer_bytes=1 << 24)
    assert isinstance(p, dict) and p["threads"] == 1 and isinstance(p["isa"], str)
    for key in ("fma_gflops_1t", "fma_gflops_all", "fma_gflops_per_cpu_second", "read_gbs_1t", "read_gbs_all"):
        assert isinstance(p[key], float) and p[key] > 0, key


@pytest.mark.parametrize("kwargs,match", [
    ({"repeats": 0}, "repeats: must be in"),
    ({"fma_seconds": -1.0}, "fma_seconds: must be in"),
    ({"threads": -2}, "threads: must be >= 0"),
])
def test_peak_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        goldilocks.peak(**kwargs)


TINY_SPEC = """
name = "tiny"
description = "two backends, a flex mask and a paged int8 cache on a small problem"
baseline = "math"
[timing]
warmup = 0
min_repetitions = 1
max_repetitions = 2
min_seconds = 0.0
max_seconds = 0.05
[[experiment]]
name = "prefill"
heads = 2
seq_len = 40
head_dim = 16
causal = "top_left"
backends = ["math", "flash"]
[[experiment]]
name = "sparse"
heads = 2
seq_len = 40
head_dim = 16
backends = ["flash"]
masks = ["causal+window:8"]
[[experiment]]
name = "decode"
heads = 4
kv_heads = 2
nq = 1
nk = 33
head_dim = 16
causal = "bottom_right"
backends = ["flash"]
kv_layout = ["paged:8"]
kv_storage = ["int8"]
"""


def check_bench_run(run):
    assert isinstance(run, dict) and run["format"] == "goldilocks-bench/1"
    assert run["spec"]["name"] == "tiny" and run["spec"]["experiments"] == ["prefill", "sparse", "decode"]
    assert isinstance(run["machine"], dict) and isinstance(run["machine"]["cpu_model"], str)
    cases = run["cases"]
    # The cache case runs on (and is labelled) decode: only that backend reads a cache.
    assert isinstance(cases, list) and [c["backend"] for c in cases] == ["math", "flash", "flash", "decode"]
    for c in cases:
        assert c["status"] == "ok", c["status"]
        for field in ("experiment", "label", "causal", "mask", "kv_layout", "kv_storage", "threads"):
            assert field in c, field
        for group, fields in {"time": ["median", "min", "max", "samples"], "memory": ["library_peak_bytes"],
                              "work": ["flops", "gflops", "fma_peak_fraction"], "accuracy": ["method", "max_abs"]}.items():
            assert isinstance(c[group], dict), group
            for f in fields:
                assert f in c[group], (group, f)
        assert isinstance(c["time"]["median"], float) and c["work"]["flops"] > 0
        assert c["accuracy"]["method"] in ("full", "sampled")
        assert c["accuracy"]["max_abs"] < (1e-2 if c["kv_storage"] == "int8" else 1e-4)  # vs the fp64 oracle
    assert cases[2]["mask"] == "causal+window:8" and cases[3]["kv_layout"] == "paged:8"
    assert cases[3]["kv_storage"] == "int8" and cases[3]["memory"]["cache_bytes"] > 0
    # The flash case is linked to its math baseline on the same problem.
    assert isinstance(cases[1]["baseline"]["speedup"], float)


def test_bench_runs_a_spec_text_and_returns_plain_data():
    check_bench_run(goldilocks.bench(TINY_SPEC, threads=1, measure_peak=False))


def test_bench_reads_a_spec_file(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_SPEC)
    run = goldilocks.bench(path, threads=1, measure_peak=False)  # a str or os.PathLike
    check_bench_run(run)
    assert run["spec"]["file"] == str(path)


@pytest.mark.parametrize("spec,match", [
    ("/no/such/spec.toml", "^spec: '/no/such/spec.toml' is neither"),
    ("name = \"x\"\n[[experiment]]\nname = \"e\"\nseq_len = -3\nhead_dim = 8\n", "^<spec>:4: .*seq_len"),
    ("name = \"x\"\n[[experiment]]\nname = \"e\"\nseq_len = 8\nhead_dim = 8\nbackends = [\"fast\"]\n",
     "^<spec>:.*backends.*fast"),
])
def test_bench_bad_specs_raise(spec, match):
    with pytest.raises(ValueError, match=match):
        goldilocks.bench(spec, measure_peak=False)
    with pytest.raises(TypeError, match="^spec: expected a path or TOML text"):
        goldilocks.bench(42)
