"""The PyTorch adapter: the :class:`~normspec.adapters.protocol.Adapter` contract over torch.

torch is imported inside the methods, never at module import, so discovering this adapter (or
importing ``normspec.adapters``) costs nothing on a machine without torch. Arrays arrive as
float64 NumPy values exactly representable in the dtype under test; they become torch tensors in
that dtype on the device, the framework computes there, and results come back as float64 NumPy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..protocol import DTYPES, Array, Support
from .bench import TorchBench
from .distributed import DISTRIBUTED
from .distributed import METHODS as _DISTRIBUTED

if TYPE_CHECKING:
    import torch

    from .methods import Translation

METHODS: tuple[str, ...] = ("batch_norm", "layer_norm", "rms_norm", "power_norm",
                            "instance_norm",
                            "group_norm", "lp_norm", "local_response_norm", "ghost_batch_norm",
                            "fix_norm", "scale_norm", "unit_norm",
                            "batch_renorm", "mixed_eval_batch_norm", "batch_instance_norm",
                            "adaptive_instance_norm", "conditional_instance_norm",
                            "sync_batch_norm", "sequence_batch_norm", "standardize",
                            "adaptive_layer_norm", "spectral_norm",
                            "gradient_normalization",
                            "global_response_norm", "min_max_scale", "gradnorm",
                            "weight_norm", "weight_standardization", "qk_norm")
"""Methods this adapter translates (all of :data:`normspec.reference.METHODS`)."""

_API: dict[str, str] = {
    "batch_norm": "torch.nn.BatchNorm{1,2,3}d (training with running statistics) and "
                  "torch.nn.functional.batch_norm (otherwise)",
    "layer_norm": "torch.nn.functional.layer_norm; mean and rstd from torch.native_layer_norm",
    "rms_norm": "torch.nn.functional.rms_norm with eps passed explicitly",
    "power_norm": "composed (PyTorch has no power normalization): |x / s|^p with a double "
                  "torch.where (derivative 0 at x = 0), torch.mean, pow(-1/p), s = 2^e near "
                  "amax(|x|) detached; F.rms_norm (+ bias) for p = 2; float32 for 16-bit "
                  "inputs; see adapters/torch_adapter/power_norm.py",
    "instance_norm": "torch.nn.functional.instance_norm (input statistics)",
    "group_norm": "torch.nn.functional.group_norm; mean and rstd from torch.native_group_norm",
    "lp_norm": "torch.nn.functional.normalize",
    "unit_norm": "torch.nn.functional.normalize",
    "fix_norm": "composed (PyTorch has no FixNorm layer): weight * F.normalize(x, "
                "p=2, dim=axis, eps=eps); see adapters/torch_adapter/l2_scale.py",
    "scale_norm": "composed (PyTorch has no ScaleNorm layer): M modules sharing one "
                  "nn.Parameter g, each x * (g / vector_norm(x, dim=-1).clamp(min=eps)); "
                  "see adapters/torch_adapter/l2_scale.py",
    "local_response_norm": "torch.nn.functional.local_response_norm",
    "ghost_batch_norm": "composed from torch.nn.functional.batch_norm (no ghost batch norm "
                        "operator): see adapters/torch_adapter/ghost_batch_norm.py",
    "batch_renorm": "composed (PyTorch has no batch renormalization): "
                    "torch.nn.functional.batch_norm with weight * r and weight * d + bias, r and "
                    "d detached; see adapters/torch_adapter/batch_renorm.py",
    "mixed_eval_batch_norm": "composed (PyTorch has no mixed-statistics evaluation): "
                             "torch.var_mean batch statistics mixed with the running ones; see "
                             "adapters/torch_adapter/mixed_eval_batch_norm.py",
    "batch_instance_norm": "composed (PyTorch has no batch-instance norm): the batch_norm and "
                           "instance_norm translations with weights clamp(rho, 0, 1) * weight "
                           "and its complement; see adapters/torch_adapter/batch_instance_norm.py",
    "adaptive_instance_norm": "composed (PyTorch has no AdaIN), in float32 for 16-bit dtypes: "
                              "F.instance_norm for the content, torch.mean, torch.var and "
                              "torch.sqrt for the style; see "
                              "adapters/torch_adapter/adaptive_instance_norm.py",
    "adaptive_layer_norm": "composed (PyTorch has no adaptive layer norm): F.silu, "
                           "F.linear, chunk (shift, scale, gate) and F.layer_norm without "
                           "affine; see adapters/torch_adapter/adaptive_layer_norm.py",
    "conditional_instance_norm": "composed (PyTorch has no conditional instance norm), in "
                                 "float32 for 16-bit dtypes: F.instance_norm without affine, "
                                 "weight[style] and bias[style] by indexing; see "
                                 "adapters/torch_adapter/conditional_instance_norm.py",
    "sequence_batch_norm": "composed (PyTorch has no masked batch norm): F.batch_norm on the "
                           "valid frames (sequence-wise) or masked sums (frame-wise); see "
                           "adapters/torch_adapter/sequence_batch_norm.py",
    "standardize": "composed (PyTorch has no fitted scaler): torch.mean and "
                   "torch.var(correction=ddof) (fit) or the given mean and var "
                   "(apply); see adapters/torch_adapter/standardize.py",
    "global_response_norm": "composed (PyTorch has no GRN operator): torch.linalg.vector_norm "
                            "over the spatial axes, the channel mean plus eps, the residual; see "
                            "adapters/torch_adapter/global_response_norm.py",
    "gradient_normalization": "composed (PyTorch has no gradient normalization): a "
                              "torch.autograd.Function, identity forward, F.normalize "
                              "of the gradient backward; see "
                              "adapters/torch_adapter/gradient_normalization.py",
    "qk_norm": "composed (PyTorch has no QK-norm operator): F.normalize (l2) or F.rms_norm "
               "(rms) on q and k, then torch.matmul times the scale; see "
               "adapters/torch_adapter/qk_norm.py",
    "spectral_norm": "torch.nn.utils.spectral_norm (the hook, update_order v_first) and "
                     "torch.nn.utils.parametrizations.spectral_norm (u_first, evaluation), "
                     "their buffers set to the given u, v; exact mode composed; see "
                     "adapters/torch_adapter/spectral_norm.py",
    "min_max_scale": "composed (PyTorch has no fitted scaler): torch.amin and "
                     "torch.amax (fit) or the given extremes (apply), torch.clamp "
                     "under clip; see adapters/torch_adapter/min_max_scale.py",
    "gradnorm": "composed from the paper (PyTorch has no GradNorm): the target "
                "detached, torch.func.grad of L_grad in the weights, one SGD step, "
                "renormalized to sum T; see adapters/torch_adapter/gradnorm.py",
    "weight_norm": "torch.nn.utils.parametrizations.weight_norm (torch._weight_norm), "
                   "dim = kept_axis % ndim or None; eps > 0 composed (PyTorch has no "
                   "eps); the deprecated hook runs as the variant "
                   "torch-weight-norm-hook; see adapters/torch_adapter/weight_norm.py",
    "weight_standardization": "composed (PyTorch has no weight standardization): "
                              "torch.var_mean(correction=0) and (w - mean) / "
                              "torch.sqrt(var + eps), as Big Transfer's StdConv2d; see "
                              "adapters/torch_adapter/weight_standardization.py",
}
_COMPOSED = frozenset({"qk_norm", "scale_norm",
                       "adaptive_instance_norm", "fix_norm", "conditional_instance_norm",
                       "ghost_batch_norm", "batch_renorm", "mixed_eval_batch_norm",
                       "power_norm",
                       "batch_instance_norm", "sequence_batch_norm", "standardize",
                       "adaptive_layer_norm",
                       "gradient_normalization",
                       "global_response_norm", "min_max_scale", "gradnorm",
                       "weight_standardization"})
"""Methods PyTorch has no operator for: the result is composed from its primitives."""
_LRN_HALF_CPU = (
    "; >= 4-d input runs through F.local_response_norm's 3-d path on the (N, C, spatial) view, "
    "because torch's CPU avg_pool3d has no float16/bfloat16 kernel")
_BIASED_RUNNING_VAR = (
    "y from torch.nn.functional.batch_norm; the running-statistics update with "
    "running_var_estimator='biased' is composed from torch.var_mean(correction=0), because "
    "PyTorch always stores the unbiased batch variance in running_var")


_RMS_BIAS = (
    "composed: torch.nn.functional.rms_norm (and nn.RMSNorm) has no bias, so the bias is "
    "added to its output in the dtype under test")


def _torch() -> Any:
    """torch, imported on first use; ImportError propagates to the caller that needs it."""
    import torch

    return torch


def _torch_available() -> bool:
    try:
        _torch()
    except ImportError:
        return False
    return True


def is_tracking(inputs: Mapping[str, object], hyper: Mapping[str, Any]) -> bool:
    """Whether a batch_norm call updates running statistics (training with them given)."""
    return bool(hyper.get("training", False)) and inputs.get("running_mean") is not None


@dataclass(frozen=True)
class _Call:
    """One validated call: the translation, the tensors in the dtype under test, the hyper."""

    translation: Translation
    tensors: dict[str, torch.Tensor | None]
    hyper: Mapping[str, Any]
    dtype: torch.dtype
    device: torch.device

    @property
    def live(self) -> tuple[str, ...]:
        """Differentiable inputs that are present, in the reference's order."""
        return tuple(n for n in self.translation.primals if self.tensors.get(n) is not None)

    @property
    def constants(self) -> dict[str, torch.Tensor | None]:
        return {n: self.tensors.get(n)
                for n in (*self.translation.state, *self.translation.constants)}

    def primal_values(self) -> list[torch.Tensor]:
        return [t for n in self.live if (t := self.tensors[n]) is not None]

    def tensor(self, name: str, value: object) -> torch.Tensor:
        return _to_tensor(name, value, self.dtype, self.device)


def _to_tensor(name: str, value: object, dtype: torch.dtype, device: torch.device
               ) -> torch.Tensor:
    th = _torch()
    arr = np.asarray(value)
    if arr.dtype.kind != "f":
        raise TypeError(f"argument {name!r}: got dtype {arr.dtype}, expected float64 values")
    # Values are exactly representable in the dtype under test (the protocol's contract), so this
    # one rounding step is exact. torch.tensor copies: a tensor sharing the caller's buffer would
    # let the in-place running-statistics update write into the caller's array.
    host = th.tensor(np.asarray(arr, dtype=np.float64))
    out: torch.Tensor = host.to(device=device, dtype=dtype)
    return out


def _to_numpy(t: torch.Tensor) -> Array:
    out: Array = t.detach().to(device="cpu", dtype=_torch().float64).numpy()
    return out


class TorchAdapter(TorchBench):
    """PyTorch through ``torch.nn.functional``, ``torch.nn`` modules, autograd and ``torch.func``.

    Devices ``"cpu"`` and, when ``torch.cuda.is_available()``, ``"cuda"`` (the current CUDA
    device). Besides the protocol it offers :meth:`case_support`, the support of one case, for
    the one variant whose result is composed rather than native.
    """

    name = "torch"

    def versions(self) -> dict[str, str]:
        """torch's version, the CUDA and cuDNN versions it was built with (or "none"), and the
        CPU thread count: ATen splits CPU reductions by thread, so the count can change the
        last bits of a sum and belongs with every result."""
        if not _torch_available():
            return {"torch": "not installed"}
        th = _torch()
        cudnn = th.backends.cudnn.version() if th.backends.cudnn.is_available() else None
        return {"torch": str(th.__version__), "cuda": str(th.version.cuda or "none"),
                "cudnn": str(cudnn or "none"), "cpu_threads": str(th.get_num_threads())}

    def devices(self) -> tuple[str, ...]:
        """``("cpu",)``, plus ``"cuda"`` when a CUDA device is usable; empty without torch."""
        if not _torch_available():
            return ()
        return ("cpu", "cuda") if _torch().cuda.is_available() else ("cpu",)

    def support(self, method: str, dtype: str, device: str) -> Support:
        """Every method in every dtype on every available device, natively.

        Checked on torch 2.13.0's CPU build: forward, backward, double backward and forward AD
        of every operator used run in float64, float32, float16 and bfloat16 (the tests repeat
        the check on the installed wheel). The one CPU gap, avg_pool3d for float16/bfloat16
        under F.local_response_norm on >= 4-d input, is bridged by layout glue (see the reason).
        """
        if method not in METHODS:
            return Support(False, reason=f"unknown method {method!r}; expected one of "
                                         f"{list(METHODS)}")
        if dtype not in DTYPES:
            return Support(False, reason=f"unknown dtype {dtype!r}; expected one of {list(DTYPES)}")
        if not _torch_available():
            return Support(False, reason="torch is not installed (pip install 'normspec[torch]')")
        if device not in self.devices():
            why = ("torch.cuda.is_available() is False" if device == "cuda"
                   else f"unknown device {device!r}")
            return Support(False, reason=f"device {device!r} unavailable: {why}")
        if method in _DISTRIBUTED:  # real ranks: see distributed.py
            return DISTRIBUTED.support(method, dtype, device)
        reason = _API[method]
        if method == "local_response_norm" and device == "cpu" and dtype in ("float16",
                                                                              "bfloat16"):
            reason += _LRN_HALF_CPU
        return Support(True, "composed" if method in _COMPOSED else "native", reason)

    def case_support(self, method: str, inputs: Mapping[str, Array | None],
                     hyper: Mapping[str, Any], *, dtype: str, device: str) -> Support:
        """Like :meth:`support`, refined for one case's inputs and hyperparameters.

        batch_norm training with running statistics and ``running_var_estimator="biased"`` is
        ``composed``: PyTorch has no biased running variance, so the adapter builds that update
        from torch primitives (never by rescaling PyTorch's unbiased value).
        """
        base = self.support(method, dtype, device)
        if base.supported and method in _DISTRIBUTED:
            return DISTRIBUTED.case_support(method, inputs, hyper, dtype=dtype, device=device)
        if base.supported and method == "spectral_norm" and hyper.get("mode") == "exact":
            return Support(True, "composed", "PyTorch has no exact spectral normalization: "
                           "torch.linalg.matrix_norm(M, ord=2), in float32 for 16-bit weights")
        if base.supported and method == "weight_norm":  # eps > 0: composed
            from . import weight_norm as _wn

            return _wn.case_support(base, inputs, hyper, dtype, device)
        if (base.supported and method == "batch_norm" and is_tracking(inputs, hyper)
                and hyper.get("running_var_estimator") == "biased"):
            return Support(True, "composed", _BIASED_RUNNING_VAR)
        if base.supported and method == "rms_norm" and inputs.get("bias") is not None:
            return Support(True, "composed", _RMS_BIAS)
        return base

    # --- the four computations ---

    def forward(self, method: str, inputs: Mapping[str, Array | None], hyper: Mapping[str, Any],
                *, dtype: str, device: str) -> dict[str, Array]:
        """``{"y": ...}`` plus the statistics and updated state PyTorch exposes."""
        if method in _DISTRIBUTED:
            return DISTRIBUTED.call("forward", method, inputs, hyper, dtype=dtype, device=device)
        call = self._prepare(method, inputs, hyper, dtype, device)
        with _torch().no_grad():
            y, stats = call.translation.run(call.tensors, call.hyper, True)
        return {"y": _to_numpy(y), **{k: _to_numpy(v) for k, v in stats.items()}}

    def vjp(self, method: str, inputs: Mapping[str, Array | None], hyper: Mapping[str, Any],
            cotangent: Array, *, dtype: str, device: str) -> dict[str, Array]:
        """Gradient of ``sum(cotangent * y)`` for each differentiable input that is not None."""
        from . import autodiff

        if method in _DISTRIBUTED:
            return DISTRIBUTED.call("vjp", method, inputs, hyper, dtype=dtype, device=device,
                                    cotangent=cotangent)
        call = self._prepare(method, inputs, hyper, dtype, device)
        fn = autodiff.bind(call.translation, call.live, call.constants, call.hyper)
        grads = autodiff.vjp(fn, call.primal_values(), call.tensor("cotangent", cotangent))
        return {n: _to_numpy(g) for n, g in zip(call.live, grads, strict=True)}

    def jvp(self, method: str, inputs: Mapping[str, Array | None], hyper: Mapping[str, Any],
            tangent: Mapping[str, Array], *, dtype: str, device: str) -> Array:
        """Directional derivative of ``y`` along ``tangent``; missing keys are zero."""
        from . import autodiff

        if method in _DISTRIBUTED:
            return DISTRIBUTED.call("jvp", method, inputs, hyper, dtype=dtype, device=device,
                                    tangent=tangent)["y"]
        call = self._prepare(method, inputs, hyper, dtype, device)
        fn = autodiff.bind(call.translation, call.live, call.constants, call.hyper)
        jvp = autodiff.jvp if call.translation.forward_ad else autodiff.jvp_reverse
        return _to_numpy(jvp(fn, call.primal_values(), self._tangents(call, tangent)))

    def second_order(self, method: str, inputs: Mapping[str, Array | None],
                     hyper: Mapping[str, Any], cotangent: Array, tangent: Mapping[str, Array],
                     *, dtype: str, device: str) -> dict[str, Array]:
        """Derivative of :meth:`vjp` (``cotangent`` fixed) along ``tangent``; keys as in vjp."""
        from . import autodiff

        if method in _DISTRIBUTED:
            return DISTRIBUTED.call("second_order", method, inputs, hyper, dtype=dtype,
                                    device=device, cotangent=cotangent, tangent=tangent)
        call = self._prepare(method, inputs, hyper, dtype, device)
        fn = autodiff.bind(call.translation, call.live, call.constants, call.hyper)
        second = (autodiff.second_order if call.translation.forward_ad
                  else autodiff.second_order_reverse)
        out = second(fn, call.primal_values(), call.tensor("cotangent", cotangent),
                     self._tangents(call, tangent))
        return {n: _to_numpy(g) for n, g in zip(call.live, out, strict=True)}

    # --- helpers ---

    def _prepare(self, method: str, inputs: Mapping[str, Array | None],
                 hyper: Mapping[str, Any], dtype: str, device: str) -> _Call:
        support = self.support(method, dtype, device)
        if not support.supported:
            raise ValueError(f"argument 'method'/'dtype'/'device': got ({method!r}, {dtype!r}, "
                             f"{device!r}), which this adapter does not run: {support.reason}")
        from .methods import TRANSLATIONS

        translation = TRANSLATIONS[method]
        hyper = dict(hyper)
        inputs = dict(inputs)
        # A count is not a value in the dtype under test (bfloat16 cannot even hold 257); it is
        # the module's long buffer, so it travels as an integer hyperparameter.
        if (count := inputs.pop("num_batches_tracked", None)) is not None:
            hyper["num_batches_tracked"] = int(np.asarray(count).item())
        allowed = (*translation.primals, *translation.state)
        unknown = sorted(set(inputs) - set(allowed) - set(translation.constants))
        if unknown:
            raise ValueError(f"argument 'inputs': got keys {unknown} that {method} does not take, "
                             f"expected a subset of {list(allowed)}")
        th = _torch()
        tdtype = getattr(th, dtype)
        tdevice = th.device(device)
        tensors: dict[str, torch.Tensor | None] = {
            n: None if (v := inputs.get(n)) is None else _to_tensor(f"inputs[{n!r}]", v, tdtype,
                                                                     tdevice)
            for n in allowed}
        # integer and boolean inputs (a padding mask) keep their own dtype
        tensors.update({n: None if (v := inputs.get(n)) is None else th.as_tensor(
            np.array(v), device=tdevice) for n in translation.constants})
        return _Call(translation, tensors, hyper, tdtype, tdevice)

    @staticmethod
    def _tangents(call: _Call, tangent: Mapping[str, Array]) -> list[torch.Tensor]:
        unknown = sorted(set(tangent) - set(call.live))
        if unknown:
            raise ValueError(f"argument 'tangent': got keys {unknown}, expected a subset of the "
                             f"differentiable inputs given, {list(call.live)}")
        out: list[torch.Tensor] = []
        for name, primal in zip(call.live, call.primal_values(), strict=True):
            given = tangent.get(name)
            out.append(_torch().zeros_like(primal) if given is None
                       else call.tensor(f"tangent[{name!r}]", given))
        return out


def make_adapter() -> TorchAdapter:
    """A fresh :class:`TorchAdapter` (the factory named in the adapter contract)."""
    return TorchAdapter()


__all__: Sequence[str] = ("METHODS", "TorchAdapter", "is_tracking", "make_adapter")
