"""Regenerate the torch adapter's xfail ledger from a run report (a maintenance tool).

    normspec run --adapter torch --device cpu --ledger-dir EMPTY_DIR --json raw.json
    python tests/tools/torch_ledger.py raw.json           # classify and summarize
    python tests/tools/torch_ledger.py raw.json --write   # rewrite adapters/ledgers/torch.toml

A report written with the ledger applied works too (its ``xfail`` results keep the original
failure message under the ledger's first line). Every ``fail``/``error`` result must match one
erratum of docs/errata/torch.md by the rules in :func:`classify`, or the tool exits 1 and names
it: a failure nobody explained never reaches the ledger. ``xpass`` results are dropped.

The precision errata are not matched on the failure message alone: the tool re-runs the case
and requires (a) that the numpy adapter (the spec's straightforward formulas in the dtype under
test) passes it, so a sound implementation in that dtype exists, and (b) the erratum's own
witness: the same PyTorch operator computed in a wider dtype and rounded once passes (T7-T10,
T12, T14), or passes on the same data shifted to a zero mean (T13).

Not part of the test suite; importing it only defines names (pytest collects its doctests).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

E = "docs/errata/torch.md"
ERRATA: dict[str, tuple[str, str]] = {
    "T1": ("F.batch_norm refuses eps=0 in training (ValueError: batch_norm eps must be positive "
           "during training); the spec defines the result",
           f"{E} (T1); torch/nn/functional.py batch_norm"),
    "T2": ("F.batch_norm refuses one value per channel in training (ValueError: Expected more "
           "than 1 value per channel when training); the spec defines var=0, y=bias",
           f"{E} (T2); torch/nn/functional.py _verify_batch_size"),
    "T3": ("F.instance_norm refuses a spatial size of 1 (ValueError: Expected more than 1 "
           "spatial element when training); the spec defines var=0, y=bias",
           f"{E} (T3); torch/nn/functional.py _verify_spatial_size"),
    "T4": ("F.group_norm with a bias and no weight: the backward crashes (RuntimeError: tensor "
           "does not have a device / shape '[0]' is invalid) in native_group_norm_backward",
           f"{E} (T4)"),
    "T5": ("torch.func.jvp of F.group_norm crashes on non-contiguous (channels-last) input: "
           "group_norm_jvp uses view() (RuntimeError: view size is not compatible)",
           f"{E} (T5); https://github.com/pytorch/pytorch/pull/70355"),
    "T6": ("the mean saved by native_layer_norm/native_group_norm is NaN for a row holding "
           "+-inf (Welford inf - inf); the spec's mean is +-inf", f"{E} (T6)"),
    "T7": ("the forward-mode formulas (layer/group/batch_norm_jvp) run in the half dtype: "
           "rstd^3 overflows or precision is lost; passes when the same op runs in float32 and "
           "rounds once", f"{E} (T7)"),
    "T8": ("CPU batch/instance norm in half round the batch mean to the half dtype before "
           "normalizing (large-offset error); passes in float32 rounded once", f"{E} (T8)"),
    "T8b": ("CPU layer/group norm in half save mean and rstd in the half dtype for the backward "
            "(large-offset error); passes in float32 rounded once", f"{E} (T8b)"),
    "T9": ("F.local_response_norm squares and averages in the input dtype: x^2 overflows (or "
           "underflows) float16; passes in float32 rounded once",
           f"{E} (T9); torch/nn/functional.py local_response_norm"),
    "T10": ("F.normalize and its derivative formulas run in the half dtype: eps=1e-12 rounds "
            "to 0 (0/0 on a zero vector) and norm_jvp overflows or underflows; passes in "
            "float32 rounded once", f"{E} (T10); https://github.com/pytorch/pytorch/issues/41527"),
    "T12": ("the derivative formulas cube rstd (_invstd_jvp, rms_norm via rsqrt's derivative "
            "-0.5*grad*result^3, the jvp decompositions' recompute_mean_var, group norm's "
            "rstd_cube): rstd^3 leaves float32's range for |x| ~ 1e15 (underflow) or tiny x "
            "with eps=0 (overflow, NaN/inf) although every x^2 fits; passes in float64 rounded "
            "once",
            f"{E} (T12); torch/csrc/autograd/FunctionsManual.cpp _invstd_jvp, rms_norm_jvp; "
            "tools/autograd/derivatives.yaml rsqrt; torch/_decomp/decompositions_for_jvp.py "
            "recompute_mean_var"),
    "T13": ("group norm's differentiable backward (infinitely_differentiable_native_group_norm_"
            "backward, used by double backward and forward-over-reverse) works from uncentered "
            "sums sum(g*x), sum(g) and the mean: the second order loses about (|mean|/std)^2 "
            "units of roundoff; exact on the same data centred",
            f"{E} (T13); torch/csrc/autograd/FunctionsManual.cpp "
            "infinitely_differentiable_native_group_norm_backward"),
    "T14": ("F.local_response_norm's autograd carries the adjoint of its intermediate scale, "
            "g*beta*x*scale^(-beta-1), which overflows float32 for tiny x with k=0 although "
            "the input gradient fits (inf/NaN); passes in float64 rounded once",
            f"{E} (T14); torch/nn/functional.py local_response_norm"),
    "T17": ("torch.func.jvp through torch._weight_norm raises: dim 0 or ndim-1 dispatches "
            "to _weight_norm_interface, which has no forward-AD formula "
            "(NotImplementedError); dim=None (-1, the whole tensor) builds a tangent of the "
            "wrong shape (RuntimeError); forward and VJP pass",
            f"{E} (T17); measured on torch 2.13.0 CPU: torch.func.jvp of "
            "torch._weight_norm(v, g, 0) raises NotImplementedError for "
            "_weight_norm_interface"),
    "T21": ("the double backward of torch._weight_norm (dim 0 or ndim-1: "
            "_weight_norm_interface) gives wrong second derivatives (gradgradcheck fails; "
            "g * v / v.norm() passes); in float16 it also squares v in float16 (over 65504 "
            "for |v| > 256); forward and VJP pass",
            f"{E} (T21); measured on torch 2.13.0 CPU: "
            "torch.autograd.gradgradcheck(lambda a, b: torch._weight_norm(a, b, 0), (v, g)) "
            "is False"),
}
"""Erratum id -> (ledger reason, evidence), in the order the ledger lists them."""

HALF = ("float16", "bfloat16")
MOMENT_NORMS = ("layer_norm", "group_norm", "instance_norm", "batch_norm", "rms_norm",
                "ghost_batch_norm", "batch_renorm", "adaptive_layer_norm", "qk_norm")
MESSAGE_RULES: tuple[tuple[str, str], ...] = (
    ("eps must be positive during training", "T1"),
    ("more than 1 value per channel", "T2"),
    ("more than 1 spatial element", "T3"),
    ("view size is not compatible", "T5"),
    ("forward AD with _weight_norm_interface", "T17"),
    ("forward gradient that has a different size", "T17"),
)
OFFSET_RATIO = 1e2
"""|mean|/std above which T13 applies: its error grows like the ratio squared while the budget
grows like the ratio, so only offset data shows it (the offset cases draw ratios near 1e3)."""

Result = Mapping[str, Any]


def failure_message(result: Result) -> str:
    """The adapter's failure message, without the ledger's ``expected ...`` first line.

    >>> failure_message({"status": "xfail", "message": "expected error (ledger: x)\\nboom"})
    'boom'
    >>> failure_message({"status": "fail", "message": "boom"})
    'boom'
    """
    message = str(result.get("message", ""))
    if result.get("status") == "xfail":
        return message.split("\n", 1)[1] if "\n" in message else ""
    return message


def failing(results: Sequence[Result]) -> list[Result]:
    """Results the ledger must cover: failures and errors, raw or already expected.

    >>> [r["id"] for r in failing([{"id": "a", "status": "fail"}, {"id": "b", "status": "xpass"},
    ...                            {"id": "c", "status": "xfail"}, {"id": "d", "status": "pass"}])]
    ['a', 'c']
    """
    return [r for r in results if r.get("status") in ("fail", "error", "xfail")]


def message_erratum(result: Result) -> str | None:
    """The erratum an error message alone identifies (refusals and crashes), if any.

    >>> message_erratum({"status": "error", "method": "batch_norm", "case": "c",
    ...                  "message": "ValueError: batch_norm eps must be positive during training"})
    'T1'
    >>> message_erratum({"status": "fail", "method": "lp_norm", "case": "c", "message": "x"})
    """
    message = failure_message(result)
    for needle, erratum in MESSAGE_RULES:
        if needle in message:
            return erratum
    if result.get("method") == "group_norm" and ("does not have a device" in message
                                                 or "shape '[0]' is invalid" in message):
        return "T4"
    if "forward/mean: NaN where" in message and result.get("case") in ("inf", "neg_inf"):
        return "T6"
    return None


def half_erratum(method: str, check: str) -> str:
    """Which half-precision erratum (T7-T10) covers a method and check.

    >>> half_erratum("layer_norm", "jvp"), half_erratum("batch_norm", "vjp")
    ('T7', 'T8')
    """
    if method == "local_response_norm":
        return "T9"
    if method == "lp_norm":
        return "T10"
    if check in ("jvp", "second_order"):
        return "T7"
    # ghost_batch_norm is composed from F.batch_norm: its kernels are batch norm's
    return "T8" if method in ("batch_norm", "instance_norm", "ghost_batch_norm") else "T8b"


def cubes_rstd(method: str, check: str) -> bool:
    """Whether PyTorch's formula for this check cubes rstd (the T12 mechanism).

    The forward-mode formulas and the forward-over-reverse second order of every moment norm
    do; of the VJPs only rms_norm's, which autograd derives through ``rsqrt``.

    >>> cubes_rstd("rms_norm", "vjp"), cubes_rstd("layer_norm", "vjp")
    (True, False)
    """
    if method not in MOMENT_NORMS:
        return False
    # qk_norm's rms variant runs F.rms_norm on q and k
    return check in ("jvp", "second_order") or (method in ("rms_norm", "qk_norm")
                                                 and check == "vjp")


class Evidence:
    """Re-runs of one case that witness an erratum: wider dtype, numpy adapter, centred data."""

    def __init__(self, device: str = "cpu") -> None:
        from normspec.adapters.numpy_adapter import ADAPTER as NUMPY
        from normspec.adapters.torch_adapter import ADAPTER as TORCH
        from normspec.conformance.vectors import load_manifest

        self.device = device
        self.torch: Any = TORCH
        self.numpy: Any = NUMPY
        self.manifest = load_manifest()

    def case(self, result: Result) -> Any:
        """The vector case of a result."""
        return self.manifest.case(result["method"], result["dtype"], result["case"])

    def _outputs(self, adapter: Any, case: Any, check: str, dtype: str,
                 inputs: Mapping[str, Any] | None = None) -> dict[str, Any]:
        args = (case.method, inputs if inputs is not None else case.inputs, dict(case.hyper))
        kw = {"dtype": dtype, "device": self.device}
        if check in ("forward", "state"):
            return dict(adapter.forward(*args, **kw))
        if check == "vjp":
            return dict(adapter.vjp(*args, case.cotangent, **kw))
        if check == "jvp":
            return {"y": adapter.jvp(*args, dict(case.tangent), **kw)}
        return dict(adapter.second_order(*args, case.cotangent, dict(case.tangent), **kw))

    def passes(self, result: Result, *, adapter: str = "torch", compute: str | None = None,
               inputs: Mapping[str, Any] | None = None) -> bool:
        """Whether one check passes its budgets, computed in ``compute`` and rounded once to
        the dtype under test (statistics and state are compared unrounded)."""
        import numpy as np
        from normspec.conformance.runner import check_of
        from normspec.conformance.tolerance import compare_quantity

        case, check, dtype = self.case(result), result["check"], result["dtype"]
        try:
            outputs = self._outputs(getattr(self, adapter), case, check, compute or dtype,
                                    inputs)
        except Exception:
            return False
        compared = 0
        for quantity, tol_class in case.tolerance.items():
            if check_of(quantity, tol_class) != check:
                continue
            key = quantity.split("/", 1)[1] if "/" in quantity else "y"
            if key not in outputs:
                if tol_class == "statistic":
                    continue
                return False
            got = np.asarray(outputs[key], dtype=np.float64)
            if compute not in (None, dtype) and tol_class not in ("statistic", "state"):
                got = _round_to(got, dtype)
            expected = case.expected[quantity]
            if np.any(np.isnan(got) & ~np.isnan(expected)):
                return False
            op = "forward" if check == "state" else check
            if not compare_quantity(case.method, dtype, key, tol_class, got, expected, case,
                                    check=op).passed:
                return False
            compared += 1
        return compared > 0

    def rstd_cubed_leaves_float32(self, result: Result) -> bool:
        """Whether the reference's rstd (or rrms) cubed is outside float32's normal range."""
        import numpy as np

        expected = self.case(result).expected
        rstd = expected.get("forward/rstd", expected.get("forward/rrms"))
        if rstd is None:
            return False
        cube = np.abs(np.asarray(rstd, dtype=np.float64)) ** 3
        f32 = np.finfo(np.float32)
        return bool(np.any(cube > f32.max) or np.any((cube > 0) & (cube < f32.tiny)))

    def lrn_adjoint_leaves_float32(self, result: Result) -> bool:
        """Whether scale^(-beta-1), the factor of LRN's scale adjoint, exceeds float32."""
        import numpy as np

        case = self.case(result)
        scale = np.asarray(case.expected["forward/scale"], dtype=np.float64)
        beta = float(case.hyper["beta"])
        with np.errstate(divide="ignore", over="ignore"):
            factor = scale ** (-beta - 1.0)
        return bool(np.any(factor > np.finfo(np.float32).max))

    def offset_ratio(self, result: Result) -> float:
        """The largest |mean|/std of the reference statistics (0 when there are none)."""
        import numpy as np

        expected = self.case(result).expected
        if "forward/mean" not in expected or "forward/var" not in expected:
            return 0.0
        mean = np.abs(np.asarray(expected["forward/mean"], dtype=np.float64))
        std = np.sqrt(np.asarray(expected["forward/var"], dtype=np.float64))
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(std > 0, mean / std, 0.0)
        return float(np.max(ratio))

    def centred_passes(self, result: Result) -> bool:
        """Whether torch passes the same check on x shifted by one constant to near zero mean.

        The norms are invariant under x -> x + c (c constant per group), so every derivative
        at the shifted point equals the golden value. The shift must be exact in the dtype
        under test, or this returns False.
        """
        import numpy as np

        case = self.case(result)
        x = np.asarray(case.inputs["x"], dtype=np.float64)
        c = float(_round_to(np.asarray([np.median(x)]), case.dtype)[0])
        shifted = x - c
        if not (np.array_equal(_round_to(shifted, case.dtype), shifted)
                and np.array_equal(shifted + c, x)):
            return False
        return self.passes(result, inputs={**case.inputs, "x": shifted})


def _round_to(values: Any, dtype: str) -> Any:
    import ml_dtypes
    import numpy as np

    kinds: dict[str, Any] = {"float16": np.float16, "bfloat16": ml_dtypes.bfloat16,
                             "float32": np.float32, "float64": np.float64}
    # overflow to inf is the correctly rounded result, which the tolerance model accepts
    with np.errstate(over="ignore"):
        return np.asarray(values).astype(kinds[dtype]).astype(np.float64)


def classify(result: Result, evidence: Evidence) -> str | None:
    """The erratum that explains one failing result, or None (then it must be investigated)."""
    by_message = message_erratum(result)
    if by_message is not None:
        return by_message
    method, check, dtype = result["method"], result["check"], result["dtype"]
    witnesses: list[tuple[str, Callable[[], bool]]] = []
    if dtype in HALF:
        witnesses.append((half_erratum(method, check),
                          lambda: evidence.passes(result, compute="float32")))
    if dtype in ("float32", "bfloat16") and cubes_rstd(method, check):
        witnesses.append(("T12", lambda: evidence.rstd_cubed_leaves_float32(result)
                          and evidence.passes(result, compute="float64")))
    if (dtype in ("float32", "bfloat16") and method == "local_response_norm"
            and check in ("vjp", "second_order")):
        witnesses.append(("T14", lambda: evidence.lrn_adjoint_leaves_float32(result)
                          and evidence.passes(result, compute="float64")))
    if method == "group_norm" and check == "second_order" and dtype in ("float64", "float32"):
        witnesses.append(("T13", lambda: evidence.offset_ratio(result) >= OFFSET_RATIO
                          and evidence.centred_passes(result)))
    for erratum, witness in witnesses:
        if witness() and evidence.passes(result, adapter="numpy"):
            return erratum
    return None


HEADER = ("# Expected failures of the built-in torch adapter (torch 2.13.0, CPU).",
          "# Every entry is a measured deviation of PyTorch itself; docs/errata/torch.md holds",
          "# a plain-PyTorch repro for each reason. Generated by tests/tools/torch_ledger.py",
          "# from a run report; regenerate it when the vectors or the tolerances change.")


def render(groups: Mapping[str, Sequence[str]],
           errata: Mapping[str, tuple[str, str]] | None = None,
           header: Sequence[str] = HEADER) -> str:
    """The ledger file for ``{erratum: [test ids]}``, grouped in ``errata`` order.

    ``errata`` maps each erratum to its (reason, evidence), :data:`ERRATA` by default;
    ``header`` is the comment block on top (other adapters' ledger tools pass their own).

    >>> print(render({"T3": ["instance_norm[hw=1]-float64-forward"]}))  # doctest: +ELLIPSIS
    # Expected failures ...
    # --- T3 ---...
    [[xfail]]
    id = "instance_norm[hw=1]-float64-forward"
    reason = "F.instance_norm refuses a spatial size of 1 ...
    evidence = "docs/errata/torch.md (T3); torch/nn/functional.py _verify_spatial_size"
    <BLANKLINE>
    """
    lines = [*header, ""]
    for erratum, (reason, evidence) in (ERRATA if errata is None else errata).items():
        ids = sorted(groups.get(erratum, ()))
        if not ids:
            continue
        lines.append(f"# --- {erratum} " + "-" * (90 - len(erratum)))
        for test_id in ids:
            lines += ["[[xfail]]", f'id = "{test_id}"', f'reason = "{reason}"',
                      f'evidence = "{evidence}"', ""]
    return "\n".join(lines)


def _ledger_ids(path: Path) -> set[str]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib

    if not path.is_file():
        return set()
    return {e["id"] for e in tomllib.loads(path.read_text()).get("xfail", [])}


def main(argv: Sequence[str] | None = None) -> int:
    """Classify a report's failures; print counts and differences; optionally write."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="normspec JSON report of the torch adapter")
    parser.add_argument("--ledger", type=Path, default=Path("adapters/ledgers/torch.toml"))
    parser.add_argument("--write", action="store_true", help="rewrite the ledger file")
    args = parser.parse_args(argv)

    report = json.loads(args.report.read_text())
    results = [r for r in report["results"] if r.get("adapter") == "torch"]
    devices = {r.get("device") for r in results}
    if devices != {"cpu"}:
        parser.error(f"argument report: got results on devices {sorted(map(str, devices))}, "
                     "expected a CPU run only (the ledger has no device keys)")
    evidence = Evidence()
    groups: dict[str, list[str]] = {}
    unexplained: list[Result] = []
    for result in failing(results):
        erratum = classify(result, evidence)
        if erratum is None:
            unexplained.append(result)
        else:
            groups.setdefault(erratum, []).append(result["id"])
    new = {i for ids in groups.values() for i in ids}
    old = _ledger_ids(args.ledger)
    for erratum in ERRATA:
        if erratum in groups:
            print(f"{erratum:4} {len(groups[erratum]):4d}")
    print(f"total {len(new)}; added {len(new - old)}, removed {len(old - new)} vs {args.ledger}")
    for test_id in sorted(new - old):
        print(f"  + {test_id}")
    for test_id in sorted(old - new):
        print(f"  - {test_id}")
    for result in unexplained:
        first = failure_message(result).strip().splitlines()
        print(f"UNEXPLAINED {result['id']}: {first[0] if first else ''}")
    if args.write and not unexplained:
        args.ledger.write_text(render(groups))
        print(f"wrote {args.ledger}")
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
