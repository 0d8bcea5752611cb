"""The prepared GPU run of issue 13: one call on a CUDA machine, each step with its own time
limit inside one overall budget, every step writing its JSON as it goes.

Steps, in order of value:

1. ``normspec bench``: torch eager and JAX jit, layer_norm, rms_norm, batch_norm and group_norm,
   bfloat16 and float32, forward and forward+backward, the GPU shapes with the size sweep;
2. ``normspec bench``: torch.compile, same selection, the table shapes only (each shape is one
   compile);
3. ``normspec run``: the CUDA conformance run of the torch and JAX adapters on the same four
   methods (its report is written even when the step's time limit interrupts it).

``python benchmarks/gpu_run.py OUT [--budget S] [--dry-run]``; ``benchmarks/gpu_run.sh`` wraps it.
The logic (device detection, the plan, the budget) is tested on the CPU in
tests/test_bench_gpu.py with a fake runner.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

METHODS = ("layer_norm", "rms_norm", "batch_norm", "group_norm")
DTYPES = ("bfloat16", "float32")


@dataclass(frozen=True)
class Step:
    name: str
    argv: tuple[str, ...]
    limit_s: float
    """The most this step may take; it gets less when the overall budget runs short."""
    writes: tuple[str, ...]


def detect(python: str = sys.executable) -> dict[str, object]:
    """What this machine offers: torch's CUDA device name, JAX's GPU platforms."""
    code = (
        "import json\n"
        "out = {'torch_cuda': None, 'jax_gpu': []}\n"
        "try:\n"
        "    import torch\n"
        "    if torch.cuda.is_available():\n"
        "        out['torch_cuda'] = torch.cuda.get_device_name(0)\n"
        "except Exception as e:\n"
        "    out['torch_error'] = repr(e)\n"
        "try:\n"
        "    import jax\n"
        "    for p in ('cuda', 'gpu'):\n"
        "        try:\n"
        "            if jax.devices(p):\n"
        "                out['jax_gpu'].append(p)\n"
        "        except RuntimeError:\n"
        "            pass\n"
        "except Exception as e:\n"
        "    out['jax_error'] = repr(e)\n"
        "print(json.dumps(out))\n")
    done = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=300)
    found: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


def _selection() -> list[str]:
    args: list[str] = []
    for m in METHODS:
        args += ["--method", m]
    for d in DTYPES:
        args += ["--dtype", d]
    return args


def plan(out: Path, found: dict[str, object], *, normspec: str = "normspec") -> list[Step]:
    """The steps for what ``found`` (see :func:`detect`) says this machine has."""
    steps: list[Step] = []
    adapters: list[str] = []
    if found.get("torch_cuda"):
        adapters += ["--adapter", "torch"]
    if "cuda" in (found.get("jax_gpu") or []):  # type: ignore[operator]
        adapters += ["--adapter", "jax"]
    if not adapters:
        return steps
    note = f"GPU run of benchmarks/gpu_run.py on {found.get('torch_cuda') or 'a CUDA device'}"
    steps.append(Step(
        "bench-eager-jit",
        (normspec, "bench", *adapters, "--device", "cuda", *_selection(), "--variant", "eager",
         "--variant", "jit", "--seconds", "0.2", "--note", note, "--no-progress",
         "--json", str(out / "bench-cuda.json"), "--plot", str(out / "plots")),
        300.0, ("bench-cuda.json", "plots")))
    if found.get("torch_cuda"):
        steps.append(Step(
            "bench-compile",
            (normspec, "bench", "--adapter", "torch", "--device", "cuda", *_selection(),
             "--variant", "compile", "--no-sweep", "--seconds", "0.2", "--note", note,
             "--no-progress", "--json", str(out / "bench-cuda-compile.json")),
            240.0, ("bench-cuda-compile.json",)))
    run = [normspec, "run", *adapters, "--device", "cuda"]
    for m in METHODS:
        run += ["--method", m]
    steps.append(Step(
        "conformance-cuda",
        (*run, "--no-progress", "--json", str(out / "conformance-cuda.json"),
         "--markdown", str(out / "conformance-cuda.md")),
        300.0, ("conformance-cuda.json", "conformance-cuda.md")))
    return steps


Runner = Callable[[Sequence[str], float], int]


def _subprocess_runner(argv: Sequence[str], limit_s: float) -> int:
    # SIGTERM at the limit: normspec treats it as Ctrl-C and still writes its reports.
    proc = subprocess.Popen(list(argv))
    try:
        return proc.wait(timeout=limit_s)
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            return proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()


def execute(steps: Sequence[Step], budget_s: float, *, runner: Runner = _subprocess_runner,
            clock: Callable[[], float] = time.monotonic, min_step_s: float = 30.0
            ) -> list[dict[str, object]]:
    """Run ``steps`` within ``budget_s``; a step that would get under ``min_step_s`` is skipped."""
    start = clock()
    log: list[dict[str, object]] = []
    for step in steps:
        left = budget_s - (clock() - start)
        if left < min_step_s:
            log.append({"step": step.name, "status": "skipped",
                        "reason": f"{left:.0f} s left of the {budget_s:.0f} s budget"})
            continue
        limit = min(step.limit_s, left)
        began = clock()
        code = runner(step.argv, limit)
        log.append({"step": step.name, "status": "ran", "exit": code, "limit_s": limit,
                    "wall_s": round(clock() - began, 1), "argv": list(step.argv)})
    return log


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--budget", type=float, default=540.0,
                        help="seconds for all steps together (default: 540)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan only")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    found = detect()
    steps = plan(args.out, found, normspec=shutil.which("normspec") or "normspec")
    print(json.dumps({"found": found, "steps": [s.argv for s in steps]}, indent=1))
    if not steps:
        print("gpu_run: no CUDA device for torch or JAX: nothing to run", file=sys.stderr)
        return 1
    if args.dry_run:
        return 0
    log = execute(steps, args.budget)
    (args.out / "gpu-run-log.json").write_text(json.dumps({"found": found, "steps": log},
                                                          indent=1) + "\n")
    print(json.dumps(log, indent=1))
    return 0 if all(e.get("exit") == 0 for e in log if e["status"] == "ran") else 1


if __name__ == "__main__":
    raise SystemExit(main())
