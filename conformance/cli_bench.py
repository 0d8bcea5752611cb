"""``normspec bench``: effective bandwidth per method and adapter, against the same device's copy
roofline (the harness is :mod:`normspec.conformance.bench`).

Exit status: 0 when every selected combination was timed or skipped with a reason; 1 when one
raised (an ``error`` result); 2 for a usage error; 130 when interrupted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .cli_run import DTYPES, _device

MODES = ("forward", "forward+backward")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``bench`` command."""
    p = subparsers.add_parser(
        "bench", help="benchmark methods per adapter and device against the copy roofline",
        description="Time each method's forward (and forward+backward) call per adapter and "
                    "variant (torch eager and torch.compile, JAX jit, ...), report effective "
                    "GB/s from the bytes model (spec/bytes-model.md), the percentage of the "
                    "same framework's copy bandwidth measured in the same run on a buffer of "
                    "the same size, and of the device's spec peak where known.")
    p.add_argument("--adapter", action="append", metavar="NAME|module:attr",
                   help="adapter to benchmark (repeatable; default: numpy, torch, jax, "
                        "onnxruntime, those installed)")
    p.add_argument("--device", default="cpu", type=_device,
                   help="device: cpu, cuda, gpu, ... (default: cpu)")
    p.add_argument("--method", action="append", metavar="METHOD",
                   help="method (repeatable; default: layer_norm, rms_norm, batch_norm, "
                        "group_norm, instance_norm); other registered methods get a generic "
                        "workload from their catalog")
    p.add_argument("--dtype", action="append", choices=DTYPES, metavar="DTYPE",
                   help="dtype (repeatable; default: float32)")
    p.add_argument("--mode", action="append", choices=MODES, metavar="MODE",
                   help="forward or forward+backward (repeatable; default: both)")
    p.add_argument("--variant", action="append", metavar="NAME",
                   help="only these variants, e.g. eager, compile, jit (repeatable; default: "
                        "all, except compile under --quick)")
    p.add_argument("--quick", action="store_true",
                   help="one small shape per method and a short timing budget (a smoke test "
                        "of the setup; its figures are cache-resident, not DRAM)")
    p.add_argument("--seconds", type=float, metavar="S",
                   help="sampling time per measurement after the warm-up (default: 0.5, or "
                        "0.15 with --quick; at least 5 samples are taken)")
    p.add_argument("--no-sweep", action="store_true",
                   help="leave out the size sweep (only the table's rows and maps shapes)")
    p.add_argument("--peak-gbs", type=float, metavar="GBS",
                   help="the device's spec peak bandwidth in GB/s, for %% of peak (default: "
                        "known GPUs only)")
    p.add_argument("--note", default="", metavar="TEXT",
                   help="a note stored in the result (e.g. that the machine was shared)")
    p.add_argument("--json", type=Path, metavar="FILE", help="write the JSON result here")
    p.add_argument("--plot", type=Path, metavar="DIR",
                   help="write plots (GB/s against size, copy roofline) here; needs matplotlib "
                        "(normspec[bench])")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_bench)


DEFAULT_ADAPTERS = ("numpy", "torch", "jax", "onnxruntime")


def _default_adapters() -> list[str]:
    import importlib.util

    from normspec.adapters import registry

    needs = {"torch": "torch", "jax": "jax", "onnxruntime": "onnxruntime"}
    found = registry.available()
    return [a for a in DEFAULT_ADAPTERS if a in found and (
        a not in needs or importlib.util.find_spec(needs[a]) is not None)]


def _command(args: argparse.Namespace, adapters: list[str]) -> list[str]:
    cmd = ["normspec", "bench"]
    for a in adapters:
        cmd += ["--adapter", a]
    cmd += ["--device", args.device]
    for flag, values in (("--method", args.method), ("--dtype", args.dtype),
                         ("--mode", args.mode), ("--variant", args.variant)):
        for v in values or ():
            cmd += [flag, v]
    if args.quick:
        cmd.append("--quick")
    if args.no_sweep:
        cmd.append("--no-sweep")
    if args.seconds is not None:
        cmd += ["--seconds", f"{args.seconds:g}"]
    if args.peak_gbs is not None:
        cmd += ["--peak-gbs", f"{args.peak_gbs:g}"]
    for flag, value in (("--json", args.json), ("--plot", args.plot)):
        if value is not None:
            cmd += [flag, str(value)]
    return cmd


def _bench(args: argparse.Namespace) -> int:
    from normspec import reference
    from normspec.adapters import registry
    from rich.console import Console

    from .bench import output, workloads
    from .bench.harness import Config, Harness
    from .errors import UsageError

    adapters = list(dict.fromkeys(args.adapter or _default_adapters()))
    methods = tuple(dict.fromkeys(args.method or workloads.DEFAULT_METHODS))
    unknown = [m for m in methods if m not in reference.METHODS]
    if unknown:
        raise UsageError(f"unknown method(s) {unknown}; expected names from "
                         f"{list(reference.METHODS)}")
    if args.seconds is not None and not args.seconds >= 0:
        raise UsageError(f"--seconds: got {args.seconds}, expected 0 or more")
    if args.peak_gbs is not None and not args.peak_gbs > 0:
        raise UsageError(f"--peak-gbs: got {args.peak_gbs}, expected a positive number")
    try:
        specs = [registry.check_spec(a) for a in adapters]
    except registry.AdapterLoadError as exc:
        raise UsageError(str(exc)) from None
    config = Config(adapters=tuple(specs), device=args.device, methods=methods,
                    dtypes=tuple(dict.fromkeys(args.dtype or ("float32",))),
                    modes=tuple(m for m in MODES if m in (args.mode or MODES)),
                    variants=tuple(dict.fromkeys(args.variant or ())), quick=args.quick,
                    sweep=not args.no_sweep, peak_gbs=args.peak_gbs, note=args.note,
                    budget=None if args.seconds is None else _budget(args))
    out = Console(soft_wrap=False, width=None if sys.stdout.isatty() else 200)
    err = Console(stderr=True)
    harness = Harness(config, argv=_command(args, adapters))
    try:
        items = harness.plan()
    except registry.AdapterLoadError as exc:
        raise UsageError(str(exc)) from None
    status = 0
    try:
        with _Progress(err, len(items), enabled=not args.no_progress) as advance:
            document = harness.run(items, on_result=advance)
    except KeyboardInterrupt:
        err.print("[bold red]interrupted[/]: writing the results so far")
        document, status = harness.document(), 130
    output.print_summary(document, out)
    if args.json is not None:
        output.write_json(document, args.json)
        err.print(f"wrote {args.json}", markup=False, highlight=False)
    if args.plot is not None:
        for path in output.plot(document, args.plot):
            err.print(f"wrote {path}", markup=False, highlight=False)
    if status == 0 and any(r.get("status") == "error" for r in document["results"]):
        status = 1
    return status


def _budget(args: argparse.Namespace) -> Any:
    from dataclasses import replace

    from .bench.timing import FULL, QUICK

    return replace(QUICK if args.quick else FULL, seconds=args.seconds)


class _Progress:
    """A rich progress bar advanced once per timed combination (off when not a terminal)."""

    def __init__(self, console: Any, total: int, *, enabled: bool) -> None:
        self.console, self.total = console, total
        self.enabled = enabled and console.is_terminal
        self.bar: Any = None
        self.task: Any = None

    def __enter__(self) -> Any:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(),
                                MofNCompleteColumn(), TimeElapsedColumn(),
                                console=self.console, transient=True)
            self.bar.start()
            self.task = self.bar.add_task("starting", total=self.total)
        return self.advance

    def advance(self, result: dict[str, Any]) -> None:
        if self.bar is None:
            return
        from rich.markup import escape

        shape = "x".join(map(str, result.get("shape", ())))
        self.bar.update(self.task, advance=1, description=escape(
            f"{result.get('label')} {result.get('method')} {shape} {result.get('dtype')} "
            f"{result.get('mode')}"))

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


__all__ = ["DEFAULT_ADAPTERS", "register"]
