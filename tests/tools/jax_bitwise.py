"""Evidence that the jax adapter's compilation changes leave every result bit for bit the same.

``dump`` runs every vector case (every method, dtype, case; forward, vjp, jvp, second order, in
the runner's order) through one code path and saves the raw float64 results (exact copies of
the dtype-under-test values) or the exception raised:

* ``--path jit``: the adapter's original path, ``jax.jit`` dispatch of
  :func:`normspec.adapters.jax_adapter.autodiff.compiled` on the same prepared arguments.
  Run it with ``NORMSPEC_JAX_CACHE=0`` so no persistent cache can answer for it.
* ``--path adapter``: the adapter's public methods (ahead-of-time compiled executables,
  from the executable store and JAX's persistent cache when warm).

``compare`` then checks that two dumps hold the same keys, the same errors, and arrays that are
equal byte for byte (NaN payloads and signed zeros included). Typical use::

    NORMSPEC_JAX_CACHE=0 python tests/tools/jax_bitwise.py dump --path jit /tmp/jit.npz
    NORMSPEC_JAX_CACHE=/tmp/c python tests/tools/jax_bitwise.py dump --path adapter /tmp/cold.npz
    NORMSPEC_JAX_CACHE=/tmp/c python tests/tools/jax_bitwise.py dump --path adapter /tmp/warm.npz
    python tests/tools/jax_bitwise.py compare /tmp/jit.npz /tmp/cold.npz /tmp/warm.npz

The same ``dump --path jit`` with ``XLA_FLAGS`` set (or ``--disable-most-optimizations``) is how
a compile option is judged: any difference rules it out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from normspec.adapters.jax_adapter import JaxAdapter, _runtime
from normspec.adapters.jax_adapter.adapter import _prepare, _tangent
from normspec.adapters.jax_adapter.autodiff import compiled
from normspec.conformance.vectors import load_manifest

CHECKS = ("forward", "vjp", "jvp", "second_order")


def _jit_call(check: str, method: str, dtype: str, inputs: Mapping[str, Any],
              hyper: Mapping[str, Any], cotangent: Any, tangent: Mapping[str, Any]) -> Any:
    """What the adapter computed before ahead-of-time compilation: jax.jit dispatch."""
    call = _prepare(method, inputs, hyper, dtype, "cpu")
    fn = compiled(check, method, dtype, call.hyper)
    if check == "forward":
        y, stats = fn(call.primals, call.state)
        return {"y": y, **stats}
    g = _runtime.to_jax("cotangent", cotangent, call.np_dtype, call.device)
    t = _tangent(call, tangent)
    if check == "vjp":
        return fn(call.primals, call.state, g)
    if check == "jvp":
        return {"y": fn(call.primals, call.state, t)}
    return fn(call.primals, call.state, g, t)


def _adapter_call(adapter: JaxAdapter) -> Callable[..., Any]:
    def run(check: str, method: str, dtype: str, inputs: Mapping[str, Any],
            hyper: Mapping[str, Any], cotangent: Any, tangent: Mapping[str, Any]) -> Any:
        kw = {"dtype": dtype, "device": "cpu"}
        if check == "forward":
            return adapter.forward(method, inputs, hyper, **kw)
        if check == "vjp":
            return adapter.vjp(method, inputs, hyper, cotangent, **kw)
        if check == "jvp":
            return {"y": adapter.jvp(method, inputs, hyper, tangent, **kw)}
        return adapter.second_order(method, inputs, hyper, cotangent, tangent, **kw)
    return run


def dump(path: str, out: Path, vectors: str | None) -> None:
    if "--disable-most-optimizations" in sys.argv:
        import jax

        _runtime.enable_x64()
        config: Any = jax.config  # untyped in jax
        config.update("jax_disable_most_optimizations", True)
    manifest = load_manifest(vectors)
    run = _jit_call if path == "jit" else _adapter_call(JaxAdapter())
    arrays: dict[str, np.ndarray] = {}
    errors: dict[str, str] = {}
    t0 = time.perf_counter()
    for method in manifest.methods:
        for dtype in manifest.dtypes(method):
            for name in manifest.case_names(method, dtype):
                case = manifest.case(method, dtype, name)
                for check in CHECKS:
                    key = f"{method}/{dtype}/{name}/{check}"
                    try:
                        got = run(check, method, dtype, dict(case.inputs), dict(case.hyper),
                                  case.cotangent, dict(case.tangent))
                    except Exception as exc:
                        errors[key] = f"{type(exc).__name__}: {exc}"
                        continue
                    for k, v in got.items():
                        arrays[f"{key}/{k}"] = np.asarray(v, dtype=np.float64)
    payload: dict[str, Any] = {**arrays, "__errors__": np.array(json.dumps(errors, sort_keys=True))}
    np.savez(out, **payload)
    print(f"{path}: {len(arrays)} arrays, {len(errors)} errors in "
          f"{time.perf_counter() - t0:.1f} s -> {out}")


def compare(first: Path, others: list[Path]) -> int:
    base = np.load(first)
    status = 0
    for other in others:
        got = np.load(other)
        keys, other_keys = set(base.files), set(got.files)
        problems = [f"only in {first.name}: {k}" for k in sorted(keys - other_keys)]
        problems += [f"only in {other.name}: {k}" for k in sorted(other_keys - keys)]
        same = 0
        common = sorted((keys & other_keys) - {"__errors__"})  # that one holds the exceptions
        for k in common:
            a, b = base[k], got[k]
            if a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes():
                same += 1
            else:
                problems.append(f"differs: {k}")
        raised = str(base["__errors__"]), str(got["__errors__"])
        if raised[0] != raised[1]:
            problems.append("the exceptions raised differ")
        print(f"{first.name} vs {other.name}: {same}/{len(common)} arrays bitwise equal, "
              f"{len(json.loads(raised[0]))} vs {len(json.loads(raised[1]))} exceptions "
              f"({'same' if raised[0] == raised[1] else 'different'}), "
              f"{len(problems)} problems")
        for p in problems[:20]:
            print("  " + p)
        status |= bool(problems)
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("dump")
    d.add_argument("--path", choices=("jit", "adapter"), required=True)
    d.add_argument("--vectors")
    d.add_argument("--disable-most-optimizations", action="store_true")
    d.add_argument("out", type=Path)
    c = sub.add_parser("compare")
    c.add_argument("first", type=Path)
    c.add_argument("others", type=Path, nargs="+")
    args = parser.parse_args(argv)
    if args.command == "dump":
        dump(args.path, args.out, args.vectors)
        return 0
    return compare(args.first, args.others)


if __name__ == "__main__":
    raise SystemExit(main())
