"""The Goldilocks search from Python.

    cfg = goldilocks.tune("bench/workloads/llama3_8b_8k.toml", memory_budget=16 * 2**30, max_error=1e-2)
    cache = cfg.kv_cache(batch=1, kv_heads=8, head_dim=128, max_tokens=8192 + 256)   # the picked cache
    goldilocks.hf.register(config=cfg)      # transformers' attention runs with the picked backend and threads
    cfg.save("pick.json"); cfg = goldilocks.TuneConfig.load("pick.json")

The workload is a TOML file (the schema of `goldilocks tune`, bench/workloads/), a
dict of the same tables ({"model": {...}, "workload": {...}}), or keyword arguments
naming its keys (heads=32, kv_heads=8, head_dim=128, layers=32, batch=1,
prompt=2048, generate=64, mask="causal", threads=0), which also override a file's
values. The search itself is the C++ one: this runs the `goldilocks` command-line
tool (found through $GOLDILOCKS_CLI, then PATH, then this source tree's
build/release) and reads its JSON, so both share one measurement cache.
"""
import json
import os
import shutil
import subprocess
import tempfile

_MODEL_KEYS = {"heads", "kv_heads", "head_dim", "head_dim_k", "head_dim_v", "layers"}
_WORKLOAD_KEYS = {"batch", "prompt", "generate", "mask", "dtype", "threads"}


def _toml_value(v):
    if isinstance(v, bool) or v is None:
        raise TypeError("workload values are integers, strings or lists of integers, got %r" % (v,))
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)  # a TOML basic string is a JSON string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError("workload values are integers, strings or lists of integers, got %r" % (v,))


def _overrides(tables, kwargs):
    """--set arguments for a dict workload and keyword arguments, each naming its table."""
    sets = []
    for table, keys in (tables or {}).items():
        if not isinstance(keys, dict):
            raise TypeError("workload[%r]: expected a dict of keys" % (table,))
        sets += ["%s.%s=%s" % (table, k, _toml_value(v)) for k, v in keys.items()]
    for k, v in kwargs.items():
        if k in _MODEL_KEYS:
            sets.append("model.%s=%s" % (k, _toml_value(v)))
        elif k in _WORKLOAD_KEYS:
            sets.append("workload.%s=%s" % (k, _toml_value(v)))
        else:
            raise TypeError("tune(): unknown workload key %r; known: %s" % (k, ", ".join(sorted(_MODEL_KEYS | _WORKLOAD_KEYS))))
    return sets


def _cli():
    path = os.environ.get("GOLDILOCKS_CLI") or shutil.which("goldilocks")
    if path:
        return path
    here = os.path.dirname(os.path.abspath(__file__))
    tree = os.path.join(here, "..", "..", "build", "release", "goldilocks")
    if os.path.exists(tree):
        return os.path.abspath(tree)
    raise RuntimeError("goldilocks.tune needs the `goldilocks` command-line tool: build it (cmake --build --preset "
                       "release) and put it on PATH or set GOLDILOCKS_CLI")


class TuneConfig:
    """A configuration found by the search (or loaded from a file): prefill backend, tiles, precision,
    threads, KV cache layout and storage, split-KV count, window and sinks. `report` holds the search's JSON
    (every measured point, the front, the sensitivity) when it came from tune()."""

    def __init__(self, config, report=None):
        self.config = dict(config)
        self.report = report
        c = self.config
        self.backend = c["backend"]
        self.threads = int(c["threads"])
        tiles = c["tiles"]
        self.block_q, self.block_k = (0, 0) if tiles == "auto" else (int(x) for x in tiles.split("x"))
        self.cache = c["cache"]  # "none", "contiguous", "paged"
        self.page_size = int(c["page_size"])
        self.k_storage, self.v_storage = c["k_storage"], c["v_storage"]
        self.int4_group = int(c["int4_group"])
        self.k_scales = c["k_scales"]
        self.kv_splits = 0 if c["kv_splits"] == "auto" else int(c["kv_splits"])
        self.window = 0 if c["window"] == "off" else int(c["window"])
        self.sinks = int(c["sinks"]) if self.window else 0
        # Q·Kᵀ of prefill-sized calls ("exact" in picks saved before the axis existed).
        self.precision = c.get("precision", "exact")

    def __repr__(self):
        return "TuneConfig(%s)" % " ".join("%s=%s" % kv for kv in sorted(self.config.items()))

    def kv_cache(self, batch, kv_heads, head_dim, max_tokens, head_dim_v=None):
        """The picked KvCache for these sizes (None when the pick recomputes without a cache). With a
        window the capacity is sinks + 2 windows, as the search measured (call evict(seq, sinks, window))."""
        from goldilocks.kv_cache import KvCache
        if self.cache == "none":
            return None
        if self.window:
            max_tokens = min(max_tokens, self.sinks + 2 * self.window)
        dv = head_dim if head_dim_v is None else head_dim_v
        k_group = self.int4_group if self.k_storage == "int4" and self.k_scales == "token" else 0
        v_group = self.int4_group if self.v_storage == "int4" else 0
        return KvCache(batch, kv_heads, head_dim, max_tokens, head_dim_v=dv, layout=self.cache,
                       page_size=self.page_size, k_storage=self.k_storage, v_storage=self.v_storage,
                       k_group_size=k_group, v_group_size=v_group, k_scales=self.k_scales)

    def attention_kwargs(self):
        """Keyword arguments of goldilocks.attention() this configuration sets for prefill (calls
        over plain tensors with more query rows than the decode kernel takes)."""
        return {"backend": self.backend, "precision": self.precision}

    def save(self, path):
        with open(path, "w") as f:
            json.dump({"goldilocks_tune_choice": 1, "config": self.config}, f, indent=2)
            f.write("\n")

    @classmethod
    def load(cls, path):
        with open(path) as f:
            data = json.load(f)
        if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
            raise ValueError("%s: expected a file written by TuneConfig.save or `goldilocks tune --save-pick`" % path)
        return cls(data["config"])


def tune(workload, memory_budget=None, max_error=None, max_latency=None, *, cache_dir=None, html=None,
         reps=None, activations=None, **workload_keys):
    """Runs the Goldilocks search and returns the pick as a TuneConfig (None when no configuration
    meets the constraints; the binding one is in the returned report then: see tune_report())."""
    report = tune_report(workload, memory_budget, max_error, max_latency, cache_dir=cache_dir, html=html, reps=reps,
                         activations=activations, **workload_keys)
    if report["pick"] is None:
        return None
    return TuneConfig(report["pick"]["config"], report)


def tune_report(workload, memory_budget=None, max_error=None, max_latency=None, *, cache_dir=None, html=None,
                reps=None, activations=None, **workload_keys):
    """The search's whole JSON report (points, front, pick, binding constraint, sensitivity)."""
    with tempfile.TemporaryDirectory() as tmp:
        if isinstance(workload, (str, os.PathLike)):
            path, tables = os.fspath(workload), None
        elif isinstance(workload, dict):
            path, tables = os.path.join(tmp, "workload.toml"), workload
            with open(path, "w") as f:  # an empty file: every key comes from the dict
                f.write("")
        elif workload is None:
            path, tables = os.path.join(tmp, "workload.toml"), None
            open(path, "w").close()
        else:
            raise TypeError("workload: expected a TOML path, a dict of tables or None, got %r" % (workload,))
        out = os.path.join(tmp, "tune.json")
        cmd = [_cli(), "tune", path, "--json", out]
        for s in _overrides(tables, workload_keys):
            cmd += ["--set", s]
        if memory_budget is not None:
            cmd += ["--memory-budget", str(int(memory_budget))]
        if max_error is not None:
            cmd += ["--max-error", repr(float(max_error))]
        if max_latency is not None:
            cmd += ["--max-latency", repr(float(max_latency))]
        if cache_dir is not None:
            cmd += ["--cache-dir", os.fspath(cache_dir)]
        if html is not None:
            cmd += ["--html", os.fspath(html)]
        if reps is not None:
            cmd += ["--reps", str(int(reps))]
        if activations is not None:
            cmd += ["--activations", os.fspath(activations)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode not in (0, 3):  # 3: answered, but nothing meets the constraints
            raise ValueError((r.stderr.strip().splitlines() or ["goldilocks tune failed"])[-1].replace("error: ", ""))
        with open(out) as f:
            return json.load(f)
