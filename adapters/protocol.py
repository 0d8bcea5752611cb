"""The adapter contract: how normspec drives an implementation under test.

An adapter wraps one framework (or one hand-written kernel). The runner hands it golden-vector
inputs and compares what it returns with the float64 reference. The docstrings of
:class:`Adapter` are the contract; a third-party adapter satisfies it structurally (no base class
to inherit) and is found through the entry-point group ``normspec.adapters`` or as
``module:attribute`` on the command line.

Conventions that hold for every call:

* Float arrays cross the boundary as NumPy ``float64``. Every input value is exactly
  representable in ``dtype`` (the vectors round inputs to the dtype first), so converting to the
  framework's tensor in ``dtype`` is exact, except running state fed back along a trajectory:
  it is what the adapter itself returned from the step before, in whatever precision it keeps
  its state. Integer and boolean inputs (the step counter ``num_batches_tracked`` as a 0-d
  ``int64`` array, masks, shard sizes) cross as ``int64`` and ``bool`` arrays. Results are
  converted back to ``float64`` *after* the framework computed them in ``dtype``; never compute
  in a wider type than the framework itself would.
* ``method`` is a name from :data:`normspec.reference.METHODS`; ``inputs`` maps the reference's
  argument names (its ``PRIMALS``, its state such as ``running_mean`` and the counter, and its
  integer or boolean constants) to arrays or None;
  ``hyper`` holds the reference's canonical keyword hyperparameters. The adapter translates them to
  the framework's own conventions explicitly (momentum direction, unbiased running variance, LRN
  alpha/size, eps placement and defaults); a tolerance never absorbs a convention.
* ``dtype`` is one of ``"float64"``, ``"float32"``, ``"float16"``, ``"bfloat16"``; ``device`` is
  one of the names :meth:`Adapter.devices` returns (``"cpu"``, ``"cuda"``, ...).
* Optional: an adapter may also define ``case_support(method, inputs, hyper, *, dtype, device)
  -> Support`` to refine :meth:`Adapter.support` for one case, for example to label a variant it
  composes from primitives (PyTorch's biased running variance) as ``"composed"``, to decline one
  case (``supported=False``: every check of the case is a ``skip`` with the reason, and no other
  call of the case is made), or to declare a quantity it cannot produce for that case. The
  runner calls it once per case, before any other call of the case, when present.
* Optional: ``call_timing() -> Mapping[str, float]`` gives ``{"compile_s", "run_s"}`` of the
  call that just returned, for an implementation that can tell compiling from running (a JIT).
  Reports record the split per check; an adapter without it gets ``null`` there.
* Partial implementations say what they lack, never by raising: :attr:`Support.not_implemented`
  names the checks an adapter does not implement (an inference runtime implements ``forward``
  and ``state`` only; see :meth:`Support.forward_only`), and :attr:`Support.not_produced` names
  single quantities it cannot return (ONNX's BatchNormalization has no unbiased running
  variance). Both are reported as ``skip`` with the adapter's reason; a method of the protocol
  that is never called may simply raise ``NotImplementedError``.
* Raise on failure. The runner turns an exception, a wrong type, dtype or shape, a hang past
  the per-case timeout or a crashed process into an ``error`` result and goes on. A NaN or
  infinity where the reference has none (or a finite value where it has one) is a ``fail``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]
Kind = Literal["native", "composed"]
DTYPES: tuple[str, ...] = ("float64", "float32", "float16", "bfloat16")
CHECKS: tuple[str, ...] = ("forward", "state", "vjp", "jvp", "second_order")
"""Every check, in the order a case runs them. ``forward`` compares ``y`` and the statistics;
``state`` compares the updated running statistics that the same forward call returns (stateful
methods in training); ``vjp``, ``jvp`` and ``second_order`` compare derivatives."""
DERIVATIVE_CHECKS: tuple[str, ...] = ("vjp", "jvp", "second_order")
CALLS: tuple[str, ...] = ("forward", "vjp", "jvp", "second_order")
"""The adapter methods that compute: ``forward`` serves both the forward and the state check."""


@dataclass(frozen=True)
class Support:
    """Whether an adapter runs a (method, dtype, device), and how.

    ``kind`` is ``"native"`` when the framework's own operator computes the result, and
    ``"composed"`` when the adapter builds it from the framework's primitives because the framework
    has no such operator. ``reason`` explains an unsupported combination (shown in reports) or,
    for a supported one, which framework API is used.
    """

    supported: bool
    kind: Kind = "native"
    reason: str = ""
    not_implemented: Mapping[str, str] = field(default_factory=dict)
    """Checks (names from :data:`CHECKS`) that the adapter does not implement for this
    combination, each mapped to the reason shown in reports. They are reported as ``skip`` and
    their adapter methods are never called. Empty: every check is implemented."""
    not_produced: Mapping[str, str] = field(default_factory=dict)
    """Quantities the adapter cannot return, by their manifest names (``"forward/running_var"``,
    ``"vjp/weight"``), each mapped to the reason. Each one is reported as skipped inside its
    check, and the check's other quantities are still compared."""

    def __post_init__(self) -> None:
        unknown = sorted(set(self.not_implemented) - set(CHECKS))
        if unknown:
            raise ValueError(f"argument 'not_implemented': got checks {unknown}, expected names "
                             f"from {list(CHECKS)}")
        for what, table in (("not_implemented", self.not_implemented),
                            ("not_produced", self.not_produced)):
            empty = sorted(k for k, v in table.items() if not str(v).strip())
            if empty:
                raise ValueError(f"argument {what!r}: got no reason for {empty}, expected a "
                                 f"non-empty reason for each entry")

    @classmethod
    def forward_only(cls, why: str, *, kind: Kind = "native", reason: str = "",
                     not_produced: Mapping[str, str] | None = None) -> Support:
        """A supported combination whose derivative checks are not implemented, because
        ``why`` (e.g. ``"ONNX Runtime computes no derivatives"``)."""
        return cls(True, kind=kind, reason=reason,
                   not_implemented=dict.fromkeys(DERIVATIVE_CHECKS, why),
                   not_produced=dict(not_produced or {}))


@runtime_checkable
class Adapter(Protocol):
    """An implementation under test. Every method below is part of the contract."""

    name: str
    """Short unique name used on the command line and in test ids (``"torch"``)."""

    def versions(self) -> dict[str, str]:
        """Versions of everything that affects results, e.g. ``{"torch": "2.13.0"}``."""
        ...

    def devices(self) -> tuple[str, ...]:
        """Devices usable now, in preference order; ``"cpu"`` first when present."""
        ...

    def support(self, method: str, dtype: str, device: str) -> Support:
        """Whether ``method`` in ``dtype`` on ``device`` is implemented, with the reason if not.

        Must not raise for unknown combinations: return ``Support(False, reason=...)``.
        """
        ...

    def forward(self, method: str, inputs: Mapping[str, Array | None], hyper: Mapping[str, Any],
                *, dtype: str, device: str) -> dict[str, Array]:
        """Return ``{"y": ...}`` plus any statistics and updated state the framework exposes.

        Keys follow the reference's names (``"mean"``, ``"rstd"``, ``"running_mean"``, ...);
        statistics the framework does not expose are left out and not checked, but for stateful
        methods in training with tracked running statistics the updated state is required.
        """
        ...

    def vjp(self, method: str, inputs: Mapping[str, Array | None], hyper: Mapping[str, Any],
            cotangent: Array, *, dtype: str, device: str) -> dict[str, Array]:
        """Gradient of ``sum(cotangent * y)`` for each differentiable input that is not None."""
        ...

    def jvp(self, method: str, inputs: Mapping[str, Array | None], hyper: Mapping[str, Any],
            tangent: Mapping[str, Array], *, dtype: str, device: str) -> Array:
        """Directional derivative of ``y`` along ``tangent`` (keys: differentiable inputs)."""
        ...

    def second_order(self, method: str, inputs: Mapping[str, Array | None],
                     hyper: Mapping[str, Any], cotangent: Array, tangent: Mapping[str, Array],
                     *, dtype: str, device: str) -> dict[str, Array]:
        """Derivative of :meth:`vjp` (``cotangent`` fixed) along ``tangent``; keys as in vjp."""
        ...
