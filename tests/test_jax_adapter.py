"""The built-in jax adapter: the contract, its convention translations and float64 agreement.

The conformance runner measures the adapter against the golden vectors in every dtype; these
tests pin what the runner cannot see: that each convention is translated (not absorbed by a
tolerance), that float64 really computes in float64, and that outputs come back in the dtype
under test. Expected values come from normspec.reference, never from the adapter.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import ml_dtypes
import numpy as np
import pytest

pytest.importorskip("jax")
flax_linen = pytest.importorskip("flax.linen")

from normspec import reference  # noqa: E402
from normspec.adapters import CALLS, DTYPES, Adapter  # noqa: E402
from normspec.adapters.jax_adapter import ADAPTER, JaxAdapter, make_adapter  # noqa: E402
from normspec.adapters.jax_adapter.distributed import METHODS as DISTRIBUTED  # noqa: E402

pytestmark = pytest.mark.jax

NP_DTYPES = {"float64": np.float64, "float32": np.float32, "float16": np.float16,
             "bfloat16": ml_dtypes.bfloat16}
STATE = ("running_mean", "running_var")


@dataclass(frozen=True)
class Case:
    """A small input for one method: shape of x, which inputs are present, hyperparameters."""

    method: str
    name: str
    shape: tuple[int, ...]
    hyper: Mapping[str, Any]
    params: tuple[str, ...] = ()
    """Present weight/bias (shape from the method's axis rule)."""
    state: bool = False
    """Whether running statistics are passed (batch_norm)."""
    offset: float = 0.0
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.method}[{self.name}]"


CASES = (
    Case("layer_norm", "axis=1-affine", (3, 4, 5), {"axis": 1, "eps": 1e-5}, ("weight", "bias")),
    Case("layer_norm", "axis=-1-plain", (4, 7), {"axis": -1, "eps": 1e-3}),
    Case("rms_norm", "axis=-1-weight", (3, 5), {"axis": -1, "eps": 1e-6}, ("weight",)),
    Case("rms_norm", "axis=1-plain", (2, 3, 4), {"axis": 1, "eps": 1e-5}),
    Case("rms_norm", "axis=-1-bias", (2, 3, 4), {"axis": -1, "eps": 1e-6}, ("weight", "bias")),
    Case("power_norm", "p=3-axis=1-affine", (2, 3, 4), {"p": 3.0, "axis": 1, "eps": 1e-6},
         ("weight", "bias")),
    Case("power_norm", "p=0.5-axis=-1", (3, 5), {"p": 0.5, "axis": -1, "eps": 1e-6}),
    Case("instance_norm", "nchw-affine", (2, 3, 5), {"eps": 1e-5}, ("weight", "bias")),
    Case("instance_norm", "channels-last", (2, 4, 3, 2), {"eps": 1e-5, "channel_axis": -1},
         ("weight",)),
    Case("group_norm", "groups=3-affine", (2, 6, 3), {"groups": 3, "eps": 1e-5},
         ("weight", "bias")),
    Case("group_norm", "channels-last-groups=2", (2, 3, 6), {"groups": 2, "eps": 1e-5,
                                                             "channel_axis": -1}, ("bias",)),
    Case("batch_norm", "train-tracked-biased", (4, 3, 2),
         {"training": True, "eps": 1e-5, "batch_stat_weight": 0.1,
          "running_var_estimator": "biased"}, ("weight", "bias"), state=True),
    Case("batch_norm", "train-cumulative-k=2", (5, 3), {
        "training": True, "eps": 1e-5, "batch_stat_weight": "cumulative",
        "num_batches_tracked": 2, "running_var_estimator": "biased"}, state=True),
    Case("batch_norm", "train-untracked-channels-last", (3, 2, 4),
         {"training": True, "eps": 1e-5, "channel_axis": -1}, ("weight",)),
    Case("batch_norm", "eval", (3, 4, 2), {"training": False, "eps": 1e-5},
         ("weight", "bias"), state=True),
    Case("lp_norm", "p=2-axis=-1", (3, 5), {"p": 2, "axis": -1, "eps": 1e-12}),
    Case("lp_norm", "p=3-axis=0", (4, 3), {"p": 3.0, "axis": 0, "eps": 1e-12}),
    Case("lp_norm", "p=1.5", (2, 6), {"p": 1.5, "axis": 1, "eps": 1e-12}),
    Case("local_response_norm", "size=3", (2, 5, 3),
         {"size": 3, "alpha": 0.1, "beta": 0.75, "k": 1.0}),
    Case("local_response_norm", "size=4-channels-last", (2, 3, 6),
         {"size": 4, "alpha": 0.5, "beta": 0.6, "k": 2.0, "channel_axis": -1}),
    Case("ghost_batch_norm", "train-tracked-G=2", (4, 3, 2),
         {"training": True, "eps": 1e-5, "ghost_batch_size": 2, "batch_stat_weight": 0.1,
          "running_var_estimator": "unbiased"}, ("weight", "bias"), state=True),
    # r free in some channels, clipped in others (running_var uniform(0.5, 2) against var ~ 1)
    Case("batch_renorm", "train-tracked", (5, 3, 2),
         {"training": True, "eps": 1e-5, "batch_stat_weight": 0.1, "rmax": 1.2, "dmax": 0.5,
          "running_var_estimator": "unbiased"}, ("weight", "bias"), state=True),
    # on the device process's host devices (tests/test_jax_sync_batch_norm.py for the rest)
    Case("sync_batch_norm", "train-tracked-w3-uneven", (5, 3, 2),
         {"training": True, "eps": 1e-5, "shard_sizes": [1, 0, 4], "batch_stat_weight": 0.1,
          "running_var_estimator": "biased"}, ("weight", "bias"), state=True),
)

CASES += (
    Case("sequence_batch_norm", "seq-tracked-uneven", (4, 5, 3),
         {"statistics": "sequence", "training": True, "eps": 1e-5, "channel_axis": -1,
          "batch_stat_weight": 0.1, "running_var_estimator": "biased"}, ("weight", "bias"),
         state=True, extra={"mask": np.arange(5)[None, :] < np.array([5, 3, 0, 2])[:, None]}),
    Case("sequence_batch_norm", "seq-ncl-eval", (3, 2, 4),
         {"statistics": "sequence", "training": False, "eps": 1e-3, "channel_axis": 1},
         ("weight",), state=True,
         extra={"mask": np.arange(4)[None, :] < np.array([4, 1, 3])[:, None]}),
)
CASES += (
    Case("mixed_eval_batch_norm", "alpha=0.3", (4, 3, 2), {"alpha": 0.3, "eps": 1e-5},
         ("weight", "bias"), state=True),
    # rho ~ N(0, 0.5): gates inside and outside [0, 1]
    Case("batch_instance_norm", "train-tracked", (3, 4, 2),
         {"training": True, "eps": 1e-5, "batch_stat_weight": 0.1,
          "running_var_estimator": "unbiased"}, ("rho", "weight", "bias"), state=True),
    Case("batch_instance_norm", "eval-channels-last", (2, 3, 3),
         {"training": False, "eps": 1e-5, "channel_axis": -1}, ("rho", "weight"), state=True),
    # cond, weight and bias are multiples of 1/4 (exact in every dtype), passed as inputs
    Case("adaptive_layer_norm", "gated-silu", (2, 3, 4),
         {"gated": True, "activation": "silu", "eps": 1e-6},
         extra={"cond": np.array([[0.5, -1.0, 0.25], [1.5, -0.75, 0.0]]),
                "weight": np.arange(36.0).reshape(3, 12) % 7 / 4 - 0.75,
                "bias": np.arange(12.0) % 5 / 4 - 0.5}),
    # the style one row longer than x, multiples of 1/4 (exact in every dtype), as an input
    Case("adaptive_instance_norm", "unbiased-style-longer", (2, 3, 4),
         {"variance_estimator": "unbiased", "eps": 1e-5},
         extra={"style": np.arange(30.0).reshape(2, 3, 5) % 7 / 4 - 0.5}),
    # tables of multiples of 1/4 (exact in every dtype), a repeated style and unused rows
    Case("conditional_instance_norm", "repeated-style", (3, 2, 5), {"eps": 1e-5},
         extra={"weight": np.arange(10.0).reshape(5, 2) % 3 / 4 + 0.5,
                "bias": np.arange(10.0).reshape(5, 2) % 5 / 4 - 0.5,
                "style": np.array([3, 0, 3])}),
    Case("standardize", "fit-ddof1-spatial", (2, 3, 4),
         {"training": True, "axis": "0,2", "ddof": 1, "eps": 1e-3,
          "eps_placement": "inside_sqrt", "zero_variance": "unit_scale"}),
    Case("min_max_scale", "fit-range-nchw", (2, 3, 4),
         {"training": True, "axis": "0,2", "range_min": -1.0, "range_max": 2.0,
          "clip": True}),
)
CASES += (
    Case("global_response_norm", "nhwc", (2, 3, 2, 4), {"channel_axis": -1, "eps": 1e-6},
         ("weight", "bias")),
)
CASES += (
    Case("gradient_normalization", "axes=1,2", (2, 3, 4), {"axis": "1,2", "eps": 1e-12}),
)
CASES += (
    Case("fix_norm", "axis=0", (5, 3), {"axis": 0, "eps": 1e-12}, ("weight",)),
    Case("scale_norm", "M=3", (3, 2, 5), {"eps": 1e-5}, ("weight",)),
    Case("unit_norm", "w_o-axis=0", (8, 6), {"axis": 0, "eps": 0.0}),
)
CASES += (
    Case("weight_norm", "conv-kept=0", (4, 3, 2), {"kept_axis": 0, "eps": 0.0}, ("g",)),
)
CASES += (
    # gradient norms and losses around 4 (>= 0), y one weight per task (output_shape)
    Case("gradnorm", "T3-alpha1.5", (2, 3), {"training": True, "alpha": 1.5, "lr": 0.1},
         offset=4.0, extra={"initial_losses": np.array([3.5, 4.0, 4.5]),
                            "weights": np.array([1.25, 0.75, 1.0])}),
)
CASES += (
    Case("weight_standardization", "hwio", (3, 2, 2, 4), {"kept_axis": -1, "eps": 1e-6}),
)
CASES += (
    # keys (Tk = Tq + 2 for an odd Tq: qk_norm.input_shapes) and weights in quarters, exact in
    # every dtype; the logits are (B, H, Tq, Tk) (output_shape)
    Case("qk_norm", "rms-hidden-bhtd", (2, 2, 3, 4),
         {"variant": "rms", "layout": "bhtd", "norm_axes": "hidden", "logit_scale": 0.5,
          "eps": 1e-6},
         extra={"k": np.arange(80.0).reshape(2, 2, 5, 4) % 7 / 4 - 0.75,
                "q_weight": np.arange(8.0).reshape(2, 4) % 3 / 4 + 0.75,
                "k_weight": np.arange(8.0).reshape(2, 4) % 5 / 4 + 0.5}),
    Case("qk_norm", "l2-gain-bthd", (2, 2, 2, 4),
         {"variant": "l2", "layout": "bthd", "norm_axes": "head", "logit_scale": 1.0,
          "eps": 1e-12},
         extra={"k": np.arange(32.0).reshape(2, 2, 2, 4) % 5 / 4 - 0.5, "gain": np.array(2.5)}),
)
CASES += (
    Case("spectral_norm", "exact-conv", (4, 2, 3), {"dim": 0, "mode": "exact",
                                                    "training": True}),
)
FIRST_CASES = tuple(next(c for c in CASES if c.method == m) for m in reference.METHODS)


def _param_shape(case: Case) -> tuple[int, ...]:
    if case.method == "weight_norm":  # g: x's shape with the normalized axes 1
        return tuple(d if i == 0 else 1 for i, d in enumerate(case.shape))
    if case.method in ("fix_norm", "scale_norm"):  # one scalar g
        return ()
    if case.method in ("layer_norm", "rms_norm", "power_norm"):
        return case.shape[case.hyper["axis"] % len(case.shape):]
    return (case.shape[case.hyper.get("channel_axis", 1) % len(case.shape)],)


def _rounded(a: np.ndarray, dtype: str) -> np.ndarray:
    out: np.ndarray = np.asarray(a).astype(NP_DTYPES[dtype]).astype(np.float64)
    return out


def _inputs(case: Case, dtype: str = "float64", seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    inputs = {"x": case.offset + rng.normal(size=case.shape)}
    for name in case.params:
        inputs[name] = rng.normal(loc=1.0 if name == "weight" else 0.0, scale=0.5,
                                  size=_param_shape(case))
    if case.state:
        inputs["running_mean"] = rng.normal(size=_param_shape(case))
        inputs["running_var"] = rng.uniform(0.5, 2.0, size=_param_shape(case))
    # integer and boolean inputs (a mask) are given as they are, never rounded
    return {**{k: _rounded(v, dtype) for k, v in inputs.items()}, **case.extra}


def _split(case: Case, inputs: Mapping[str, np.ndarray]
           ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    primals = {k: v for k, v in inputs.items() if k not in STATE and k not in case.extra}
    return primals, {k: v for k, v in inputs.items() if k in STATE}


def _assert_close(got: np.ndarray, expected: np.ndarray, what: str, rel: float = 1e-12) -> None:
    """float64 agreement: max abs error within ``rel`` of the expected values' scale."""
    assert got.shape == expected.shape, f"{what}: shape {got.shape} != {expected.shape}"
    scale = max(1.0, float(np.max(np.abs(expected))))
    np.testing.assert_allclose(got, expected, rtol=0, atol=rel * scale, err_msg=what)


# --- the contract ---


def test_importing_the_adapter_does_not_import_jax_or_flax() -> None:
    code = ("import sys, normspec.adapters.jax_adapter; "
            "print(sorted(k for k in ('jax', 'flax', 'jaxlib') if k in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_adapter_satisfies_the_protocol() -> None:
    assert isinstance(ADAPTER, Adapter)
    assert isinstance(make_adapter(), JaxAdapter)
    assert ADAPTER.name == "jax"
    assert ADAPTER.devices()[0] == "cpu"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", reference.METHODS)
def test_every_method_and_dtype_is_supported_on_cpu(method: str, dtype: str) -> None:
    support = ADAPTER.support(method, dtype, "cpu")
    assert support.supported, support.reason
    jnp_only = method in ("lp_norm", "local_response_norm", "mixed_eval_batch_norm")
    jnp_only = jnp_only or method == "global_response_norm"
    jnp_only = jnp_only or method == "power_norm"
    jnp_only = jnp_only or method == "weight_standardization"
    jnp_only = jnp_only or method == "gradnorm"
    jnp_only = jnp_only or method == "gradient_normalization"
    jnp_only = jnp_only or method in ("fix_norm", "scale_norm", "unit_norm", "qk_norm")
    jnp_only = jnp_only or method in ("standardize", "min_max_scale", "spectral_norm")
    jnp_only = jnp_only or method in ("adaptive_instance_norm", "conditional_instance_norm")
    # ghost_batch_norm: Flax's BatchNorm on a view of the batch, still a composition;
    # batch_renorm: jax.numpy in training, Flax's BatchNorm in evaluation
    # batch_instance_norm: Flax's BatchNorm and InstanceNorm blended by the gate
    assert support.kind == ("composed" if jnp_only or method in ("ghost_batch_norm",
                                                                 "batch_renorm",
                                                                 "batch_instance_norm",
                                                                 "adaptive_layer_norm")
                            else "native")
    # qk_norm's reason spells out its jnp / lax operations instead of naming jax.numpy
    named = "jnp." if method == "qk_norm" else "jax.numpy" if jnp_only else "flax.linen."
    assert named in support.reason


@pytest.mark.parametrize(("method", "dtype", "device", "named"), [
    ("no_such_norm", "float32", "cpu", "'no_such_norm'"),
    ("layer_norm", "int8", "cpu", "'int8'"),
    ("layer_norm", "float32", "tpu", "'tpu'"),
    ("layer_norm", "float32", "", "''")])
def test_unknown_combinations_are_unsupported_with_a_reason(method: str, dtype: str,
                                                            device: str, named: str) -> None:
    support = ADAPTER.support(method, dtype, device)
    assert not support.supported
    assert named in support.reason


def test_cuda_and_gpu_are_listed_exactly_when_jax_has_them() -> None:
    import jax

    for name in ("gpu", "cuda"):
        try:
            present = bool(jax.devices(name))
        except RuntimeError:
            present = False
        assert (name in ADAPTER.devices()) == present
        for method in reference.METHODS:
            support = ADAPTER.support(method, "float32", name)
            # the distributed methods run on forced host devices only (adapter guide)
            assert support.supported == (present and method not in DISTRIBUTED)
            assert present or repr(name) in support.reason


def test_versions_name_the_frameworks_and_the_fast_variance_default() -> None:
    versions = ADAPTER.versions()
    for dist in ("jax", "jaxlib", "flax"):
        assert versions[dist] == metadata.version(dist)
    defaults = {next(f.default for f in dataclasses.fields(getattr(flax_linen, layer))
                     if f.name == "use_fast_variance")
                for layer in ("BatchNorm", "LayerNorm", "RMSNorm", "GroupNorm", "InstanceNorm")}
    assert len(defaults) == 1
    assert versions["flax.use_fast_variance"] == str(defaults.pop())


def test_the_adapter_module_tables_match_the_reference() -> None:
    from normspec.adapters.jax_adapter.methods import TRANSLATIONS

    assert set(TRANSLATIONS) | set(DISTRIBUTED) == set(reference.METHODS)
    for method, translation in TRANSLATIONS.items():
        assert translation.primals == reference.get(method).PRIMALS, method


# --- float64 agreement with the reference, every method and check ---


def _reference_call(case: Case, inputs: Mapping[str, np.ndarray], check: str,
                    g: np.ndarray, t: Mapping[str, np.ndarray]) -> Any:
    ref = reference.get(case.method)
    kwargs = {**inputs, **case.hyper}
    if check == "forward":
        return ref.forward(**kwargs)
    if check == "vjp":
        return ref.vjp(**kwargs, cotangent=g)
    if check == "jvp":
        return ref.jvp(**kwargs, tangent=t)
    return ref.second_order(**kwargs, cotangent=g, tangent=t)


def _adapter_call(adapter: JaxAdapter, case: Case, inputs: Mapping[str, np.ndarray], check: str,
                  g: np.ndarray, t: Mapping[str, np.ndarray], dtype: str = "float64",
                  device: str = "cpu") -> Any:
    if check == "forward":
        return adapter.forward(case.method, inputs, case.hyper, dtype=dtype, device=device)
    if check == "vjp":
        return adapter.vjp(case.method, inputs, case.hyper, g, dtype=dtype, device=device)
    if check == "jvp":
        return adapter.jvp(case.method, inputs, case.hyper, t, dtype=dtype, device=device)
    return adapter.second_order(case.method, inputs, case.hyper, g, t, dtype=dtype,
                                device=device)


def _directions(case: Case, inputs: Mapping[str, np.ndarray], dtype: str
                ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(1)
    primals, _ = _split(case, inputs)
    hook = getattr(reference.get(case.method), "output_shape", None)  # y not shaped like x
    y_shape = case.shape if hook is None else tuple(hook(case.shape, case.hyper))
    g = _rounded(rng.normal(size=y_shape), dtype)
    return g, {k: _rounded(rng.normal(size=v.shape), dtype) for k, v in primals.items()}


@pytest.mark.parametrize("check", CALLS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_float64_agrees_with_the_reference(case: Case, check: str) -> None:
    declared = getattr(reference.get(case.method), "NOT_APPLICABLE", {})
    if check in declared:  # the method has no such quantity
        pytest.skip(declared[check])
    inputs = _inputs(case)
    g, t = _directions(case, inputs, "float64")
    got = _adapter_call(ADAPTER, case, inputs, check, g, t)
    expected = _reference_call(case, inputs, check, g, t)
    if check == "jvp":
        _assert_close(got, expected, check)
        return
    if check == "forward":
        # Only what the framework exposes comes back, always under the reference's names.
        assert "y" in got
        assert set(got) <= set(expected), sorted(set(got) - set(expected))
        if case.method == "batch_norm" and case.state and case.hyper["training"]:
            assert {"running_mean", "running_var"} <= set(got)
    else:
        assert set(got) == set(expected)
    for key, value in got.items():
        assert value.dtype == np.float64
        _assert_close(value, expected[key], f"{case.id} {check} {key}")


# --- conventions the adapter must translate ---


def _bn_trajectory(adapter_or_ref: str, weight: float | str, xs: list[np.ndarray],
                   rm: np.ndarray, rv: np.ndarray) -> list[dict[str, np.ndarray]]:
    out = []
    for k, x in enumerate(xs):
        hyper = {"training": True, "eps": 1e-5, "batch_stat_weight": weight,
                 "num_batches_tracked": k, "running_var_estimator": "biased"}
        inputs = {"x": x, "running_mean": rm, "running_var": rv}
        if adapter_or_ref == "adapter":
            step = ADAPTER.forward("batch_norm", inputs, hyper, dtype="float64", device="cpu")
        else:
            step = reference.get("batch_norm").forward(**inputs, **hyper)
        rm, rv = step["running_mean"], step["running_var"]
        out.append(step)
    return out


@pytest.mark.parametrize("weight", [0.1, "cumulative"])
def test_batch_norm_running_statistics_follow_the_reference_over_three_steps(
        weight: float | str) -> None:
    rng = np.random.default_rng(7)
    xs = [rng.normal(loc=3.0 * k, scale=1.0 + k, size=(6, 3)) for k in range(3)]
    rm, rv = rng.normal(size=3), rng.uniform(0.5, 2.0, size=3)
    got = _bn_trajectory("adapter", weight, xs, rm, rv)
    expected = _bn_trajectory("reference", weight, xs, rm, rv)
    for k, (g, e) in enumerate(zip(got, expected, strict=True)):
        for key in ("y", "running_mean", "running_var"):
            _assert_close(g[key], e[key], f"step {k} {key}")
    if weight == 0.1:
        # The inverted (Flax-momentum-as-new-weight) convention lands far away: the check above
        # discriminates the momentum direction.
        inverted = _bn_trajectory("reference", 0.9, xs, rm, rv)
        assert np.max(np.abs(inverted[-1]["running_mean"] - got[-1]["running_mean"])) > 0.5
    # Eval with the trajectory's final state uses Flax's stored batch_stats as given.
    x = rng.normal(size=(4, 3))
    state = {"running_mean": got[-1]["running_mean"], "running_var": got[-1]["running_var"]}
    y = ADAPTER.forward("batch_norm", {"x": x, **state}, {"training": False, "eps": 1e-5},
                        dtype="float64", device="cpu")["y"]
    _assert_close(y, reference.get("batch_norm").forward(x, training=False, eps=1e-5,
                                                         **state)["y"], "eval")


def test_flax_momentum_is_the_weight_of_the_old_value() -> None:
    from normspec.adapters.jax_adapter.methods import flax_momentum

    assert flax_momentum(0.1, 5) == pytest.approx(0.9)
    assert flax_momentum(1.0, 0) == 0.0
    assert [flax_momentum("cumulative", k) for k in range(3)] == [0.0, 0.5, 2 / 3]
    with pytest.raises(ValueError, match="batch_stat_weight"):
        flax_momentum(1.5, 0)
    with pytest.raises(TypeError, match="batch_stat_weight"):
        flax_momentum(None, 0)


def test_batch_norm_unbiased_running_var_is_composed_and_labelled() -> None:
    # by name: the table grows as methods are added
    case = next(c for c in CASES if (c.method, c.name) == ("batch_norm", "train-tracked-biased"))
    hyper = {**case.hyper, "running_var_estimator": "unbiased", "num_batches_tracked": 3}
    inputs = _inputs(case)
    support = ADAPTER.case_support("batch_norm", inputs, hyper, dtype="float32", device="cpu")
    assert support.supported
    assert support.kind == "composed"
    assert "biased" in support.reason
    got = ADAPTER.forward("batch_norm", inputs, hyper, dtype="float64", device="cpu")
    expected = reference.get("batch_norm").forward(**inputs, **hyper)
    for key in ("y", "running_mean", "running_var"):
        _assert_close(got[key], expected[key], key)
    assert "num_batches_tracked" not in got, "Flax keeps no counter: none may be reported"
    # Flax's own (biased) value would differ by f * var / (n - 1): the estimator is honoured.
    flax_biased = 0.9 * inputs["running_var"] + 0.1 * expected["var"]
    assert np.min(np.abs(got["running_var"] - flax_biased)) > 1e-3
    for biased in (case.hyper, {**case.hyper, "training": False}):
        assert ADAPTER.case_support("batch_norm", inputs, biased, dtype="float32",
                                    device="cpu") == ADAPTER.support("batch_norm", "float32",
                                                                     "cpu")


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("case", FIRST_CASES, ids=lambda c: c.id)
def test_low_precision_results_come_back_in_the_dtype_under_test(case: Case, dtype: str) -> None:
    # Flax infers the output dtype from x and the params; without dtype/param_dtype a half
    # input would return float32, whose values are almost never representable in the half type.
    inputs = _inputs(case, dtype)
    g, _ = _directions(case, inputs, dtype)
    out = ADAPTER.forward(case.method, inputs, case.hyper, dtype=dtype, device="cpu")
    grads = ADAPTER.vjp(case.method, inputs, case.hyper, g, dtype=dtype, device="cpu")
    for key, value in {"y": out["y"], **{f"d{k}": v for k, v in grads.items()}}.items():
        np.testing.assert_array_equal(_rounded(value, dtype), value, err_msg=f"{key} in {dtype}")
    expected = _reference_call(case, inputs, "forward", g, {})["y"]
    # Sanity, not the tolerance model: the half-precision result is the same function.
    assert np.max(np.abs(out["y"] - expected)) < 0.1 * max(1.0, float(np.max(np.abs(expected))))


def test_float64_is_not_silently_float32() -> None:
    # Without jax_enable_x64 JAX would round these inputs to float32 (an error near 1e-8) and
    # compute in float32; float64 agreement at 1e-13 rules both out.
    x = np.random.default_rng(3).normal(size=(2, 16))
    assert not np.array_equal(_rounded(x, "float32"), x)
    y = ADAPTER.forward("layer_norm", {"x": x}, {"axis": -1, "eps": 1e-5}, dtype="float64",
                        device="cpu")["y"]
    _assert_close(y, reference.get("layer_norm").forward(x, axis=-1, eps=1e-5)["y"], "y",
                  rel=1e-13)


# --- bad input ---


def test_inputs_not_representable_in_the_dtype_are_refused() -> None:
    with pytest.raises(ValueError, match=r"argument 'x'.*float16"):
        ADAPTER.forward("layer_norm", {"x": np.array([[0.1, 0.2]])}, {"axis": -1, "eps": 1e-5},
                        dtype="float16", device="cpu")


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"inputs": {"x": np.ones((2, 3)), "gamma": np.ones(3)}}, TypeError, "gamma"),
    ({"hyper": {"axis": -1, "eps": 1e-5, "momentum": 0.1}}, TypeError, "momentum"),
    ({"dtype": "float8"}, ValueError, "argument 'dtype'"),
    ({"device": "tpu"}, ValueError, "argument 'device'"),
    ({"method": "no_such_norm"}, ValueError, "argument 'method'"),
])
def test_bad_calls_raise_naming_the_argument(kwargs: dict[str, Any], error: type[Exception],
                                             match: str) -> None:
    call: dict[str, Any] = {"method": "layer_norm", "inputs": {"x": np.ones((2, 3))},
                            "hyper": {"axis": -1, "eps": 1e-5}, "dtype": "float32",
                            "device": "cpu", **kwargs}
    with pytest.raises(error, match=match):
        ADAPTER.forward(call.pop("method"), call.pop("inputs"), call.pop("hyper"), **call)


def test_a_tangent_for_an_absent_input_is_refused() -> None:
    with pytest.raises(ValueError, match="argument 'tangent'"):
        ADAPTER.jvp("layer_norm", {"x": np.ones((2, 3))}, {"axis": -1, "eps": 1e-5},
                    {"weight": np.ones(3)}, dtype="float32", device="cpu")


# --- Flax's default fast variance: the evidence behind the ledger entries ---


def test_flax_default_fast_variance_cancels_at_a_large_mean_offset() -> None:
    """Minimal repro: Flax LayerNorm's default one-pass variance in float32, mean 1e4, std 1.

    ``use_fast_variance=True`` computes ``max(0, E[x^2] - E[x]^2)``: at |mean|/std = 1e4 the
    float32 difference cancels to noise (often to the clamp at 0), while the two-pass form
    stays near float32 precision. The ledger's large-offset entries cite this test.
    """
    import jax.numpy as jnp

    x32 = (1e4 + np.random.default_rng(0).normal(size=(4, 1024))).astype(np.float32)
    exact = reference.get("layer_norm").forward(x32.astype(np.float64), axis=-1, eps=1e-5)["y"]

    def error(fast: bool) -> float:
        layer = flax_linen.LayerNorm(epsilon=1e-5, use_scale=False, use_bias=False,
                                     use_fast_variance=fast, dtype=jnp.float32,
                                     param_dtype=jnp.float32)
        y = np.asarray(layer.apply({}, jnp.asarray(x32)), dtype=np.float64)
        return float(np.max(np.abs(y - exact)))

    assert error(fast=False) < 1e-2
    assert error(fast=True) > 1.0


def test_flax_default_fast_variance_is_noise_on_constant_input() -> None:
    """Minimal repro: constant rows (-1.9250644 in float32), eps = 1e-5: the gradient is 2% off.

    The one-pass ``E[x^2] - E[x]^2`` of a constant is rounding noise (~5e-7 here, not 0),
    comparable to eps, so rstd and every derivative move; the two-pass variance is exactly 0.
    """
    import jax
    import jax.numpy as jnp

    x = np.full((3, 7), -1.9250644, dtype=np.float32)
    g = np.random.default_rng(0).normal(size=(3, 7)).astype(np.float32)
    exact = reference.get("layer_norm").vjp(x.astype(np.float64), cotangent=g, axis=-1,
                                            eps=1e-5)["x"]

    def error(fast: bool) -> float:
        layer = flax_linen.LayerNorm(epsilon=1e-5, use_scale=False, use_bias=False,
                                     use_fast_variance=fast, dtype=jnp.float32,
                                     param_dtype=jnp.float32)
        grad = jax.grad(lambda v: jnp.sum(layer.apply({}, v) * g))(jnp.asarray(x))
        return float(np.max(np.abs(np.asarray(grad, np.float64) - exact)) /
                     np.max(np.abs(exact)))

    assert error(fast=False) < 1e-6
    assert error(fast=True) > 1e-3


# --- GPU ---

needs_gpu = pytest.mark.skipif("gpu" not in ADAPTER.devices(),
                               reason="JAX has no GPU backend here (jax.devices('gpu') fails)")
needs_cuda = pytest.mark.skipif("cuda" not in ADAPTER.devices(),
                                reason="JAX has no CUDA backend here (jax.devices('cuda') fails)")


@pytest.mark.parametrize("device", [pytest.param("gpu", marks=needs_gpu),
                                    pytest.param("cuda", marks=needs_cuda)])
@pytest.mark.parametrize("case", CASES[::3], ids=lambda c: c.id)
def test_gpu_agrees_with_the_reference(case: Case, device: str) -> None:
    inputs = _inputs(case)
    g, t = _directions(case, inputs, "float64")
    for check in CALLS:
        if check in getattr(reference.get(case.method), "NOT_APPLICABLE", {}):
            continue
        got = _adapter_call(ADAPTER, case, inputs, check, g, t, device=device)
        expected = _reference_call(case, inputs, check, g, t)
        pairs = [("", got, expected)] if check == "jvp" else [
            (k, v, expected[k]) for k, v in got.items()]
        for key, value, exp in pairs:
            _assert_close(value, exp, f"{case.id} {check} {key} on {device}", rel=1e-10)


@needs_gpu
def test_gpu_computes_bfloat16_in_bfloat16() -> None:
    case = CASES[0]
    inputs = _inputs(case, "bfloat16")
    y = ADAPTER.forward(case.method, inputs, case.hyper, dtype="bfloat16", device="gpu")["y"]
    np.testing.assert_array_equal(_rounded(y, "bfloat16"), y)


# --- JAX's second derivative of rsqrt: the evidence behind the extreme-scale entries ---


@pytest.mark.parametrize("scale", [1e-100, 1e100])
def test_jax_second_order_through_rsqrt_breaks_at_extreme_variances(scale: float) -> None:
    """Minimal repro: the HVP of a float64 LayerNorm at |x| ~ 1e-100 is NaN, at 1e100 wrong.

    JAX differentiates ``rsqrt(v)`` as ``-0.5 * rsqrt(v) / v`` (jax/_src/lax/lax.py, the
    rsqrt_p JVP rule) and that quotient's own derivative as ``-g * a * v**-2`` (the div_p JVP
    rule): ``v**-2`` overflows at ``v ~ 1e-200`` and underflows at ``v ~ 1e200``, although the
    Hessian-vector product itself is finite and representable. Two-pass or fast variance does
    not matter, so the adapter cannot translate it away.
    """
    import jax
    import jax.numpy as jnp
    from normspec.adapters.jax_adapter import _runtime

    _runtime.enable_x64()
    x = np.array([[1.0, 2.0, 4.0, -3.0]]) * scale
    g, t = np.array([[1.0, -2.0, 0.5, 1.5]]), np.array([[0.5, 1.0, -1.0, 2.0]]) * scale
    layer = flax_linen.LayerNorm(epsilon=0.0, use_scale=False, use_bias=False,
                                 use_fast_variance=False, dtype=jnp.float64,
                                 param_dtype=jnp.float64)

    def loss(v: Any) -> Any:
        return jnp.sum(layer.apply({}, v) * g)

    hvp = np.asarray(jax.jvp(jax.grad(loss), (jnp.asarray(x),), (jnp.asarray(t),))[1])
    exact = reference.get("layer_norm").second_order(x, cotangent=g, tangent={"x": t}, axis=-1,
                                                     eps=0.0)["x"]
    assert np.all(np.isfinite(exact))
    with np.errstate(invalid="ignore"):
        worst = np.max(np.abs(hvp - exact)) / np.max(np.abs(exact))
    assert not worst < 0.1  # NaN (1e-100) or an O(1) relative error (1e100)
    # The same function at unit scale is exact to rounding: the failure is the scale alone.
    unit = np.asarray(jax.jvp(jax.grad(loss), (jnp.asarray(x / scale),),
                              (jnp.asarray(t / scale),))[1])
    expected_unit = reference.get("layer_norm").second_order(
        x / scale, cotangent=g, tangent={"x": t / scale}, axis=-1, eps=0.0)["x"]
    np.testing.assert_allclose(unit, expected_unit, rtol=1e-12, atol=1e-14)


def test_jax_first_order_through_rsqrt_overflows_in_float32_at_a_tiny_variance() -> None:
    """Minimal repro: the float32 gradient of LayerNorm(eps=0) at |x| ~ 1e-15 is NaN.

    The variance (~1e-30) and the gradient (~1e15) both fit float32, but JAX's rsqrt rule
    forms ``rsqrt(v) / v = v**-1.5 ~ 1e45``, which overflows; inf times the zero-sum
    cotangent terms gives NaN. Two-pass variance, as here, does not help.
    """
    import jax
    import jax.numpy as jnp

    x = (np.array([[1.0, 2.0, 4.0, -3.0]]) * 1e-15).astype(np.float32)
    g = np.array([[1.0, -2.0, 0.5, 1.5]], dtype=np.float32)
    layer = flax_linen.LayerNorm(epsilon=0.0, use_scale=False, use_bias=False,
                                 use_fast_variance=False, dtype=jnp.float32,
                                 param_dtype=jnp.float32)
    grad = np.asarray(jax.grad(lambda v: jnp.sum(layer.apply({}, v) * g))(jnp.asarray(x)))
    exact = reference.get("layer_norm").vjp(x.astype(np.float64), cotangent=g, axis=-1,
                                            eps=0.0)["x"]
    assert np.all(np.abs(exact) < np.finfo(np.float32).max)
    assert not np.all(np.isfinite(grad))


def test_jax_pow_rule_underflows_before_the_lrn_derivative_does() -> None:
    """Minimal repro: d/dx [x * (1 + x^2)^-0.75] at x = 1e100 in float64 has the wrong sign.

    JAX differentiates ``s ** -0.75`` as ``-0.75 * s ** -1.75``; at ``s = 1e200`` that is
    1e-350, below float64's range, so the second term of the product rule vanishes. The exact
    derivative ``s**-0.75 * (1 - 1.5 x^2 / s)`` is about -5e-151 and fits easily. The composed
    local_response_norm differentiates the same power of its window energy.
    """
    import jax
    from normspec.adapters.jax_adapter import _runtime

    _runtime.enable_x64()
    x = 1e100
    s = 1.0 + x * x
    exact = s ** -0.75 * (1.0 - 1.5 * x * x / s)
    got = float(jax.grad(lambda v: v * (1.0 + v * v) ** -0.75)(x))
    assert exact < 0.0
    assert got > 0.0
    # At unit scale the same rule is exact to rounding.
    v = 0.5
    assert float(jax.grad(lambda u: u * (1.0 + u * u) ** -0.75)(v)) == pytest.approx(
        (1.0 + v * v) ** -0.75 * (1.0 - 1.5 * v * v / (1.0 + v * v)), rel=1e-14)


def test_jax_second_order_of_an_l2_normalization_underflows_in_float32_at_huge_inputs() -> None:
    """Minimal repro: the float32 HVP of ``x / ||x||_2`` at |x| ~ 1e15 is wrong.

    ``||x||`` (~1e15) and the HVP (~1e-15) fit float32, but JAX's div rule multiplies by
    ``||x||**-2`` and its own derivative by ``||x||**-3`` (~1e-45, subnormal), so most bits
    are lost. This is how the composed lp_norm (jnp.linalg.norm) differentiates.
    """
    import jax
    import jax.numpy as jnp

    def hvp(x: np.ndarray, g: np.ndarray, t: np.ndarray) -> np.ndarray:
        def loss(v: Any) -> Any:
            return jnp.sum(v / jnp.linalg.norm(v, axis=-1, keepdims=True) * g)
        return np.asarray(jax.jvp(jax.grad(loss), (jnp.asarray(x),), (jnp.asarray(t),))[1],
                          dtype=np.float64)

    unit = np.array([[1.0, -2.0, 0.5, 1.5, 3.0]], dtype=np.float32)
    g = np.array([[0.5, 1.0, -1.0, 2.0, 0.25]], dtype=np.float32)
    ref = reference.get("lp_norm")
    for scale, limit in ((1.0, 1e-5), (1e15, None)):
        x, t = unit * np.float32(scale), np.float32(scale) * g[:, ::-1]
        exact = ref.second_order(x.astype(np.float64), cotangent=g, tangent={"x": t}, p=2,
                                 axis=-1, eps=0.0)["x"]
        err = np.max(np.abs(hvp(x, g, t) - exact)) / np.max(np.abs(exact))
        if limit is None:
            assert err > 1e-2  # float32 rounding alone would be ~1e-6
        else:
            assert err < limit
