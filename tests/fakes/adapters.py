"""Fake adapters built on the float64 reference, each misbehaving in one way.

:class:`ReferenceAdapter` answers every call with the reference itself, so every check passes;
each subclass breaks one call (``jvp`` by default) in one of the ways the runner must survive:
raising, a wrong shape, a wrong dtype, a foreign object, an unexpected NaN, a wrong value, a
missing gradient, hanging, aborting and segfaulting. They are module attributes, so the runner
loads them as ``fakes.adapters:NAME`` in its worker processes.
"""

from __future__ import annotations

import ctypes
import os
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
from normspec import reference
from normspec.adapters import Support

Array = np.ndarray


class ReferenceAdapter:
    """A correct adapter: the float64 reference itself (it passes every budget)."""

    name = "fake_reference"

    def versions(self) -> dict[str, str]:
        return {"numpy": np.__version__, "fake": "1"}

    def devices(self) -> tuple[str, ...]:
        return ("cpu",)

    def support(self, method: str, dtype: str, device: str) -> Support:
        if device != "cpu":
            return Support(False, reason=f"fakes run on cpu only, not {device}")
        return Support(True, kind="composed", reason="the float64 reference")

    @staticmethod
    def _split(method: str, inputs: Mapping[str, Any], hyper: Mapping[str, Any]
               ) -> tuple[list[Any], dict[str, Any]]:
        module = reference.get(method)
        args = [inputs.get(p) for p in module.PRIMALS]
        kw = {k: v for k, v in inputs.items() if k not in module.PRIMALS}
        kw.update(hyper)
        return args, kw

    def forward(self, method: str, inputs: Mapping[str, Any], hyper: Mapping[str, Any], *,
                dtype: str, device: str) -> dict[str, Array]:
        args, kw = self._split(method, inputs, hyper)
        with np.errstate(all="ignore"):
            return dict(reference.get(method).forward(*args, **kw))

    def vjp(self, method: str, inputs: Mapping[str, Any], hyper: Mapping[str, Any],
            cotangent: Array, *, dtype: str, device: str) -> dict[str, Array]:
        args, kw = self._split(method, inputs, hyper)
        with np.errstate(all="ignore"):
            return dict(reference.get(method).vjp(*args, cotangent=cotangent, **kw))

    def jvp(self, method: str, inputs: Mapping[str, Any], hyper: Mapping[str, Any],
            tangent: Mapping[str, Array], *, dtype: str, device: str) -> Array:
        args, kw = self._split(method, inputs, hyper)
        with np.errstate(all="ignore"):
            out: Array = reference.get(method).jvp(*args, tangent=dict(tangent), **kw)
        return out

    def second_order(self, method: str, inputs: Mapping[str, Any], hyper: Mapping[str, Any],
                     cotangent: Array, tangent: Mapping[str, Array], *, dtype: str,
                     device: str) -> dict[str, Array]:
        args, kw = self._split(method, inputs, hyper)
        with np.errstate(all="ignore"):
            return dict(reference.get(method).second_order(
                *args, cotangent=cotangent, tangent=dict(tangent), **kw))


class _BadJvp(ReferenceAdapter):
    """Breaks only ``jvp``: forward and vjp before it and second_order after it still pass."""

    def jvp(self, method: str, inputs: Mapping[str, Any], hyper: Mapping[str, Any],
            tangent: Mapping[str, Array], *, dtype: str, device: str) -> Array:
        good = super().jvp(method, inputs, hyper, tangent, dtype=dtype, device=device)
        return self.bad(good)  # type: ignore[no-any-return]

    def bad(self, good: Array) -> Any:
        raise NotImplementedError


class Raising(_BadJvp):
    name = "fake_raising"

    def bad(self, good: Array) -> Any:
        raise RuntimeError("deliberate failure inside the adapter")


class WrongShape(_BadJvp):
    name = "fake_wrong_shape"

    def bad(self, good: Array) -> Any:
        return good.reshape(-1)[:-1] if good.size > 1 else np.zeros((2, 2))


class WrongDtype(_BadJvp):
    name = "fake_wrong_dtype"

    def bad(self, good: Array) -> Any:
        return good.astype(np.float32)


class Foreign(_BadJvp):
    name = "fake_foreign"

    def bad(self, good: Array) -> Any:
        return good.tolist()


class Nan(_BadJvp):
    name = "fake_nan"

    def bad(self, good: Array) -> Any:
        out = good.copy()
        out.reshape(-1)[0] = np.nan
        return out


class Off(_BadJvp):
    """Numerically wrong (by 1%): a ``fail``, not an ``error``."""

    name = "fake_off"

    def bad(self, good: Array) -> Any:
        return good * 1.01 + 0.01


class Hanging(_BadJvp):
    name = "fake_hanging"

    def bad(self, good: Array) -> Any:
        time.sleep(600)
        return good


class Aborting(_BadJvp):
    name = "fake_aborting"

    def bad(self, good: Array) -> Any:
        os.abort()


class Segfaulting(_BadJvp):
    name = "fake_segfaulting"

    def bad(self, good: Array) -> Any:
        return ctypes.string_at(0)  # reads address 0: SIGSEGV


class MissingGradient(ReferenceAdapter):
    name = "fake_missing_gradient"

    def vjp(self, method: str, inputs: Mapping[str, Any], hyper: Mapping[str, Any],
            cotangent: Array, *, dtype: str, device: str) -> dict[str, Array]:
        out = super().vjp(method, inputs, hyper, cotangent, dtype=dtype, device=device)
        out.pop("x")
        return out


class Mutating(ReferenceAdapter):
    """Updates its inputs in place after computing (as in-place running statistics do)."""

    name = "fake_mutating"

    def forward(self, method: str, inputs: Mapping[str, Any], hyper: Mapping[str, Any], *,
                dtype: str, device: str) -> dict[str, Array]:
        out = super().forward(method, inputs, hyper, dtype=dtype, device=device)
        inputs["x"] += 1.0
        return out


class NoHalf(ReferenceAdapter):
    """Declares float16 unsupported: its results are skips with this reason."""

    name = "fake_no_half"

    def support(self, method: str, dtype: str, device: str) -> Support:
        if dtype == "float16":
            return Support(False, reason="no float16 kernels in this fake")
        return super().support(method, dtype, device)


class ForwardOnly(ReferenceAdapter):
    """An inference runtime: forward (and state) only; its derivative methods must never run."""

    name = "fake_forward_only"

    def support(self, method: str, dtype: str, device: str) -> Support:
        base = super().support(method, dtype, device)
        if not base.supported:
            return base
        return Support.forward_only("this fake runtime computes no derivatives",
                                    kind="composed", reason="the float64 reference")

    def vjp(self, *args: Any, **kw: Any) -> dict[str, Array]:
        raise AssertionError("vjp was called although declared not implemented")

    def jvp(self, *args: Any, **kw: Any) -> Array:
        raise AssertionError("jvp was called although declared not implemented")

    def second_order(self, *args: Any, **kw: Any) -> dict[str, Array]:
        raise AssertionError("second_order was called although declared not implemented")


class NoMean(ReferenceAdapter):
    """Declares the ``mean`` statistic not produced, and returns a wrong one anyway."""

    name = "fake_no_mean"

    def support(self, method: str, dtype: str, device: str) -> Support:
        base = super().support(method, dtype, device)
        if not base.supported:
            return base
        return Support(True, kind="composed", reason="the float64 reference",
                       not_produced={"forward/mean": "this fake has no mean output"})

    def forward(self, method: str, inputs: Mapping[str, Any], hyper: Mapping[str, Any], *,
                dtype: str, device: str) -> dict[str, Array]:
        out = super().forward(method, inputs, hyper, dtype=dtype, device=device)
        out["mean"] = out["mean"] + 1.0  # would fail if it were compared
        return out


class DecliningCases(ReferenceAdapter):
    """Declines every case through ``case_support``; any other call would be an error."""

    name = "fake_declining"

    def case_support(self, method: str, inputs: Mapping[str, Any], hyper: Mapping[str, Any],
                     *, dtype: str, device: str) -> Support:
        return Support(False, reason="this fake declines every case")

    def forward(self, *args: Any, **kw: Any) -> dict[str, Array]:
        raise AssertionError("forward was called on a declined case")


class WrongShapeStatistic(ReferenceAdapter):
    """Returns a wrong-shape ``rstd`` and a correct ``y``: y is still compared."""

    name = "fake_wrong_shape_statistic"

    def forward(self, method: str, inputs: Mapping[str, Any], hyper: Mapping[str, Any], *,
                dtype: str, device: str) -> dict[str, Array]:
        out = super().forward(method, inputs, hyper, dtype=dtype, device=device)
        out["rstd"] = np.zeros(7)
        return out


class HangingForward(ReferenceAdapter):
    """Answers ``case_support`` at once, then hangs in every forward call."""

    name = "fake_hanging_forward"

    def case_support(self, method: str, inputs: Mapping[str, Any], hyper: Mapping[str, Any],
                     *, dtype: str, device: str) -> Support:
        return self.support(method, dtype, device)

    def forward(self, *args: Any, **kw: Any) -> dict[str, Array]:
        time.sleep(600)
        raise AssertionError("unreachable")


class StringDevices(ReferenceAdapter):
    """``devices()`` returns a bare string, which must not read as the devices c, p, u."""

    name = "fake_string_devices"

    def devices(self) -> tuple[str, ...]:
        return "cpu"  # type: ignore[return-value]


class _Subclassed(np.ndarray):
    """An ndarray subclass defined in this module: the parent must not need to import it."""


class SubclassResult(ReferenceAdapter):
    """Returns ``y`` as an ndarray subclass of this module."""

    name = "fake_subclass_result"

    def forward(self, method: str, inputs: Mapping[str, Any], hyper: Mapping[str, Any], *,
                dtype: str, device: str) -> dict[str, Array]:
        out = super().forward(method, inputs, hyper, dtype=dtype, device=device)
        out["y"] = out["y"].view(_Subclassed)
        return out


class MissingNan(ReferenceAdapter):
    """Returns 0 wherever the reference has NaN (the reverse of :class:`Nan`)."""

    name = "fake_missing_nan"

    def forward(self, method: str, inputs: Mapping[str, Any], hyper: Mapping[str, Any], *,
                dtype: str, device: str) -> dict[str, Array]:
        out = super().forward(method, inputs, hyper, dtype=dtype, device=device)
        return {k: np.nan_to_num(v, nan=0.0, posinf=0.0, neginf=0.0) for k, v in out.items()}


def broken_factory() -> ReferenceAdapter:
    """A factory that fails: the adapter cannot load."""
    raise ImportError("deliberately missing dependency")


REFERENCE = ReferenceAdapter()
RAISING = Raising()
WRONG_SHAPE = WrongShape()
WRONG_DTYPE = WrongDtype()
FOREIGN = Foreign()
NAN = Nan()
OFF = Off()
HANGING = Hanging()
ABORTING = Aborting()
SEGFAULTING = Segfaulting()
MISSING_GRADIENT = MissingGradient()
NO_HALF = NoHalf()
MUTATING = Mutating()
NOT_AN_ADAPTER = object()
FORWARD_ONLY = ForwardOnly()
NO_MEAN = NoMean()
DECLINING = DecliningCases()
WRONG_SHAPE_STATISTIC = WrongShapeStatistic()
HANGING_FORWARD = HangingForward()
STRING_DEVICES = StringDevices()
SUBCLASS_RESULT = SubclassResult()
MISSING_NAN = MissingNan()


class Timed(ReferenceAdapter):
    """Reports a compile/run split of every call through the optional ``call_timing``."""

    name = "fake_timed"

    def call_timing(self) -> dict[str, float]:
        return {"compile_s": 0.25, "run_s": 0.5}


TIMED = Timed()


class OwnState(ReferenceAdapter):
    """Marks the state it returns (a relative 2^-28, inside float32's budget) and raises when a
    step is not fed exactly the state it returned from the step before, which a runner that
    threads the reference's state instead would do."""

    name = "fake_own_state"
    MARK = 1.0 + 2.0**-28

    def __init__(self) -> None:
        self._last: dict[str, Array] = {}

    def forward(self, method: str, inputs: Mapping[str, Any], hyper: Mapping[str, Any], *,
                dtype: str, device: str) -> dict[str, Array]:
        given = {k: inputs[k] for k in ("running_mean", "running_var") if k in inputs}
        if self._last and set(given) == set(self._last) and all(
                given[k].shape == self._last[k].shape for k in given):
            # the reference's own state is this adapter's last one without the mark
            unmarked = all(np.allclose(given[k], self._last[k] / self.MARK, rtol=1e-12,
                                       atol=0.0) for k in given)
            exact = all(np.array_equal(given[k], self._last[k]) for k in given)
            if unmarked and not exact:
                raise RuntimeError("fed the reference's state instead of the one this adapter "
                                   "returned")
        out = super().forward(method, inputs, hyper, dtype=dtype, device=device)
        if "running_var" in out:
            out["running_var"] = out["running_var"] * self.MARK
            out["running_mean"] = out["running_mean"] * self.MARK
            self._last = {k: out[k] for k in ("running_mean", "running_var")}
        return out


class FailingStep(ReferenceAdapter):
    """Raises on the third training call of a trajectory (counter 2 on a fresh start)."""

    name = "fake_failing_step"

    def forward(self, method: str, inputs: Mapping[str, Any], hyper: Mapping[str, Any], *,
                dtype: str, device: str) -> dict[str, Array]:
        if hyper.get("training") and int(np.asarray(inputs.get("num_batches_tracked", 0))) == 2:
            raise RuntimeError("deliberate failure at the third step")
        return super().forward(method, inputs, hyper, dtype=dtype, device=device)


class NoRunningVar(ReferenceAdapter):
    """Declares the running variance not produced, as ONNX does for the unbiased one."""

    name = "fake_no_running_var"

    def support(self, method: str, dtype: str, device: str) -> Support:
        return Support(True, kind="composed", reason="the float64 reference",
                       not_produced={"forward/running_var": "deliberately not produced"})


OWN_STATE = OwnState()
FAILING_STEP = FailingStep()
NO_RUNNING_VAR = NoRunningVar()


class PidStamped(ReferenceAdapter):
    """The reference, leaving a file named after its worker's pid in $NORMSPEC_FAKE_PID_DIR on
    every forward call, so a test can see how many worker processes shared the cases."""

    name = "fake_pid_stamped"

    def forward(self, method: str, inputs: Mapping[str, Any], hyper: Mapping[str, Any], *,
                dtype: str, device: str) -> dict[str, Array]:
        import os
        from pathlib import Path
        Path(os.environ["NORMSPEC_FAKE_PID_DIR"], str(os.getpid())).touch()
        return super().forward(method, inputs, hyper, dtype=dtype, device=device)


PID_STAMPED = PidStamped()
