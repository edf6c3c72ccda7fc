"""Measurements as plain Python data: bench() runs an experiment spec through the
library's harness (the same numbers as `goldilocks bench`)."""
import json
import os

from goldilocks import _core


def bench(spec, threads=0, measure_peak=True, profile=False, seed=1):
    """Runs an experiment spec (a path to a TOML file such as bench/specs/default.toml, or the
    TOML text itself) and returns the run as a dict: spec, machine, ceilings and one entry per
    case (median/min/max seconds, GFLOP/s, fraction of peak, memory, accuracy...)."""
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    if not isinstance(spec, str):
        raise TypeError(f"spec: expected a path or TOML text, got {type(spec).__name__}")
    if threads < 0:
        raise ValueError(f"threads: {threads} must be >= 0 (0 = every core, or each case's own setting)")
    if "\n" not in spec and os.path.exists(spec):
        with open(spec) as f:
            text, source = f.read(), spec
    elif "=" in spec:
        text, source = spec, "<spec>"
    else:
        raise ValueError(f"spec: {spec!r} is neither an existing file nor TOML text")
    return json.loads(_core.bench_json(text, source, threads, measure_peak, profile, seed))
