"""Evidence that the jax adapter's compilation changes leave every result bit for bit the same.

``dump`` runs every vector case (every method, dtype, case; forward, vjp, jvp, second order, in
the runner's order) through one code path and saves the raw float64 results (exact copies of
the dtype-under-test values) or the exception raised:

* ``--path jit``: the adapter's original path, ``jax.jit`` dispatch of
  :func:`normspec.adapters.jax_adapter.autodiff.compiled` on the same prepared arguments.
  Run it with ``NORMSPEC_JAX_CACHE=0`` so no persistent cache can answer for it.
* ``--path adapter``: the adapter's public methods (ahead-of-time compiled executables,
  from the executable store and JAX's persistent cache when warm).
* ``--path grouped --group vjp+jvp+second_order``: the checks joined by ``+`` come from *one*
  jitted program that returns them together (each computed by the adapter's own wrapper in
  :data:`normspec.adapters.jax_adapter.autodiff._WRAPPERS`, on the same arguments); the other
  checks from their own programs as in ``--path jit``. This is how merging programs (fewer
  compiles) is judged: any difference from ``--path jit`` rules the grouping out.

``--checks`` restricts a dump to some checks (``compare --checks`` to the same ones).

``compare`` then checks that two dumps hold the same keys, the same errors, and arrays that are
equal byte for byte (NaN payloads and signed zeros included). Typical use::

    NORMSPEC_JAX_CACHE=0 python tests/tools/jax_bitwise.py dump --path jit /tmp/jit.npz
    NORMSPEC_JAX_CACHE=/tmp/c python tests/tools/jax_bitwise.py dump --path adapter /tmp/cold.npz
    NORMSPEC_JAX_CACHE=/tmp/c python tests/tools/jax_bitwise.py dump --path adapter /tmp/warm.npz
    python tests/tools/jax_bitwise.py compare /tmp/jit.npz /tmp/cold.npz /tmp/warm.npz

Measured (jax 0.10.2, XLA:CPU, 895 cases, against ``--path jit``): vjp+jvp+second_order in one
program changes 8 of 4,659 derivative arrays (6 jvp, 2 vjp; local_response_norm, group_norm
n=1056), by 1-2 ulp; with ``--isolate`` still 1 (group_norm float32 n=1056 jvp: even a jvp next
to a second copy of itself compiles differently); jvp+second_order changes 6 of 2,777 (the same
jvps). Only vjp+second_order leaves all 3,764 of its arrays identical, also with
``--placeholder`` (vjp from that program run with a zero tangent at the vjp call).

The same ``dump --path jit`` with ``XLA_FLAGS`` set (or ``--disable-most-optimizations``) is how
a compile option is judged: any difference rules it out.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from normspec.adapters.jax_adapter import JaxAdapter, _runtime
from normspec.adapters.jax_adapter.adapter import _prepare, _tangent
from normspec.adapters.jax_adapter.autodiff import _WRAPPERS, compiled
from normspec.adapters.jax_adapter.methods import TRANSLATIONS
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


_DIRECTIONS = {"forward": (), "vjp": ("cotangent",), "jvp": ("tangent",),
               "second_order": ("cotangent", "tangent")}
"""The direction arguments each check's program takes after ``(primals, state)``."""


@functools.lru_cache(maxsize=64)
def _grouped(checks: tuple[str, ...], method: str, dtype: str, hyper: Any,
             isolate: bool = False) -> Any:
    """One jitted program returning ``checks`` together: ``(primals, state, g, t) -> tuple``.

    ``isolate``: the program takes ``((primals, state, g, t),) * len(checks)``, one copy of the
    arguments per check as separate parameters (the caller passes the same arrays), so XLA
    cannot share (CSE) or fuse computations between the checks. (An
    ``optimization_barrier`` per check does not isolate them: XLA still shares work.)
    """
    import jax

    fn = TRANSLATIONS[method].build(_runtime.NUMPY_DTYPES[dtype], **dict(hyper))
    runs = [_WRAPPERS[c](fn) for c in checks]

    def each(copies: tuple[Any, ...]) -> tuple[Any, ...]:
        out = []
        for (p, s, g, t), r, c in zip(copies, runs, checks, strict=True):
            given = {"cotangent": g, "tangent": t}
            out.append(r(p, s, *(given[a] for a in _DIRECTIONS[c])))
        return tuple(out)

    return jax.jit(each) if isolate else jax.jit(lambda *args: each(tuple(args for _ in checks)))


def _grouped_call(groups: list[tuple[str, ...]], isolate: bool = False,
                  placeholder: bool = False) -> Callable[..., Any]:
    """``--path grouped``: each group's checks from one program, computed at its first check
    (the runner's order) and served from memory for the others of the same case.

    ``placeholder``: the program runs again at every check of the group, with the directions
    that check's call has and zeros for the others (a vjp call has no tangent), and the
    check's own part of the result is kept: what an adapter could do, since it sees the
    tangent only at the jvp/second-order calls.
    """
    held: dict[str, Any] = {}

    def run(check: str, method: str, dtype: str, inputs: Mapping[str, Any],
            hyper: Mapping[str, Any], cotangent: Any, tangent: Mapping[str, Any]) -> Any:
        group = next((g for g in groups if check in g), None)
        if group is None:
            return _jit_call(check, method, dtype, inputs, hyper, cotangent, tangent)
        if check == group[0] or placeholder:
            call = _prepare(method, inputs, hyper, dtype, "cpu")
            if placeholder:  # only the directions this check's own call has
                cotangent = cotangent if "cotangent" in _DIRECTIONS[check] else np.zeros(
                    np.shape(inputs["x"]))
                tangent = tangent if "tangent" in _DIRECTIONS[check] else {}
            g = _runtime.to_jax("cotangent", cotangent, call.np_dtype, call.device)
            t = _tangent(call, tangent)
            fn = _grouped(group, method, dtype, call.hyper, isolate)
            held.clear()
            args = (call.primals, call.state, g, t)
            held.update(zip(group, fn(*((args,) * len(group),) if isolate else args),
                            strict=True))
        out = held[check]
        return {"y": out} if check == "jvp" else out
    return run


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


def dump(path: str, out: Path, vectors: str | None, groups: list[tuple[str, ...]],
         checks: tuple[str, ...], isolate: bool = False, placeholder: bool = False) -> None:
    if "--disable-most-optimizations" in sys.argv:
        import jax

        _runtime.enable_x64()
        config: Any = jax.config  # untyped in jax
        config.update("jax_disable_most_optimizations", True)
    manifest = load_manifest(vectors)
    run = (_jit_call if path == "jit" else
           _grouped_call(groups, isolate, placeholder) if path == "grouped" else
           _adapter_call(JaxAdapter()))
    arrays: dict[str, np.ndarray] = {}
    errors: dict[str, str] = {}
    t0 = time.perf_counter()
    for method in manifest.methods:
        for dtype in manifest.dtypes(method):
            for name in manifest.case_names(method, dtype):
                case = manifest.case(method, dtype, name)
                for check in CHECKS:
                    if check not in checks:
                        continue
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


def _checked(keys: set[str], checks: tuple[str, ...]) -> set[str]:
    return {k for k in keys if k == "__errors__" or k.split("/")[3] in checks}


def compare(first: Path, others: list[Path], checks: tuple[str, ...] = CHECKS) -> int:
    base = np.load(first)
    status = 0
    for other in others:
        got = np.load(other)
        keys, other_keys = _checked(set(base.files), checks), _checked(set(got.files), checks)
        problems = [f"only in {first.name}: {k}" for k in sorted(keys - other_keys)]
        problems += [f"only in {other.name}: {k}" for k in sorted(other_keys - keys)]
        same = 0
        differ: set[str] = set()
        common = sorted((keys & other_keys) - {"__errors__"})  # that one holds the exceptions
        for k in common:
            a, b = base[k], got[k]
            if a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes():
                same += 1
            else:
                problems.append(f"differs: {k}")
                differ.add(k)
        raised = tuple(json.dumps({k: v for k, v in json.loads(str(f["__errors__"])).items()
                                   if k.split("/")[3] in checks}, sort_keys=True)
                       for f in (base, got))
        if raised[0] != raised[1]:
            problems.append("the exceptions raised differ")
        print(f"{first.name} vs {other.name}: {same}/{len(common)} arrays bitwise equal, "
              f"{len(json.loads(raised[0]))} vs {len(json.loads(raised[1]))} exceptions "
              f"({'same' if raised[0] == raised[1] else 'different'}), "
              f"{len(problems)} problems")
        for p in problems[:20]:
            print("  " + p)
        by_check: dict[str, list[int]] = {}
        for k in common:
            counts = by_check.setdefault(k.split("/")[3], [0, 0])
            counts[1] += 1
            counts[0] += k in differ
        print("  differing per check: " + ", ".join(f"{c} {n}/{total}"
                                                    for c, (n, total) in by_check.items()))
        status |= bool(problems)
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("dump")
    d.add_argument("--path", choices=("jit", "adapter", "grouped"), required=True)
    d.add_argument("--group", action="append", default=[],
                   help="checks joined by '+' computed by one program (--path grouped)")
    d.add_argument("--checks", default=",".join(CHECKS))
    d.add_argument("--isolate", action="store_true",
                   help="--path grouped: separate parameters per check (no shared work)")
    d.add_argument("--placeholder", action="store_true",
                   help="--path grouped: rerun at each check, zeros for directions not given")
    d.add_argument("--vectors")
    d.add_argument("--disable-most-optimizations", action="store_true")
    d.add_argument("out", type=Path)
    c = sub.add_parser("compare")
    c.add_argument("first", type=Path)
    c.add_argument("others", type=Path, nargs="+")
    c.add_argument("--checks", default=",".join(CHECKS))
    args = parser.parse_args(argv)
    if args.command == "dump":
        groups = [tuple(g.split("+")) for g in args.group]
        unknown = {c for g in groups for c in g} - set(CHECKS)
        if unknown or (args.path == "grouped") != bool(groups):
            parser.error(f"--group takes checks {CHECKS} joined by '+', with --path grouped only")
        dump(args.path, args.out, args.vectors, groups, tuple(args.checks.split(",")),
             args.isolate, args.placeholder)
        return 0
    return compare(args.first, args.others, tuple(args.checks.split(",")))


if __name__ == "__main__":
    raise SystemExit(main())
