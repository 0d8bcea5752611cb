"""The jax adapter's sync_batch_norm on host devices, and plain-JAX/Flax repros of what it meets.

The adapter runs the shards on the forced host devices of a child process (shard_map + psum,
or Flax's BatchNorm(axis_name=...)); its float64 results are compared with the reference. The
repros run plain Flax and JAX in a subprocess with ``--xla_force_host_platform_device_count``:

* Flax's ``BatchNorm(axis_name=...)`` averages the devices' masked means with ``lax.pmean``:
  equal weight per device, not per value (why the adapter composes uneven shards);
* its default ``use_fast_variance=True`` under ``shard_map`` on offset data (ledger J1);
* JAX's division rule in the second order of ``d / sqrt(var + eps)`` (ledger J4).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from typing import Any

import numpy as np
import pytest

pytest.importorskip("jax")
pytest.importorskip("flax")

from normspec.adapters.jax_adapter import ADAPTER
from normspec.adapters.jax_adapter.distributed import DISTRIBUTED, plan
from normspec.reference import sync_batch_norm as ref

RTOL = 1e-12


def _plain(code: str, devices: int) -> Any:
    """Run ``code`` (which prints one JSON line last) in JAX with ``devices`` host devices."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                         text=True, env=env, check=True, timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- Flax weights devices equally ---------------------------------------------------------------

_EQUAL_WEIGHTS = """
import json
import jax, jax.numpy as jnp, numpy as np
from flax import linen as nn
from jax.sharding import Mesh, PartitionSpec as P

mesh = Mesh(np.array(jax.devices()[:2]), ("d",))
# two devices with 2 padded rows each; valid rows: device 0 holds [0], device 1 holds [4, 4]
x = jnp.array([[0.0], [99.0], [4.0], [4.0]])
mask = jnp.array([[True], [False], [True], [True]])
empty = jnp.array([[True], [True], [False], [False]])

def body(x, m):
    layer = nn.BatchNorm(use_running_average=False, axis=-1, momentum=0.0, axis_name="d",
                         use_fast_variance=False, use_scale=False, use_bias=False)
    _, upd = layer.apply({"batch_stats": {"mean": jnp.zeros(1), "var": jnp.ones(1)}}, x,
                         mask=m, mutable=["batch_stats"])
    return upd["batch_stats"]["mean"][None], upd["batch_stats"]["var"][None]

run = jax.shard_map(body, mesh=mesh, in_specs=(P("d"), P("d")), out_specs=(P("d"), P("d")))
mean, var = run(x, mask)
mean_e, var_e = run(x, empty)
print(json.dumps({"mean": float(mean[0, 0]), "var": float(var[0, 0]),
                  "empty_mean": str(float(mean_e[0, 0]))}))
"""


def test_flax_batchnorm_axis_name_weights_devices_equally_not_by_count() -> None:
    got = _plain(_EQUAL_WEIGHTS, 2)
    # valid values 0, 4, 4: the batch mean is 8/3, the variance 32/9
    assert got["mean"] == pytest.approx(2.0)  # (0 + 4) / 2: one weight per device
    assert got["mean"] != pytest.approx(8 / 3)
    assert got["var"] == pytest.approx(4.0)   # (0 + 8) / 2 after centering at 2
    # a device whose mask is all false: its masked mean is 0/0, and pmean spreads the NaN
    assert got["empty_mean"] == "nan"


# --- J1 under shard_map --------------------------------------------------------------------------

_FAST_VARIANCE = """
import json
import jax, jax.numpy as jnp, numpy as np
from flax import linen as nn
from jax.sharding import Mesh, PartitionSpec as P

mesh = Mesh(np.array(jax.devices()[:2]), ("d",))
x = (1e3 + np.random.default_rng(0).standard_normal((8, 3))).astype(np.float32)

def var_of(fast):
    def body(x):
        layer = nn.BatchNorm(use_running_average=False, axis=-1, momentum=0.0, axis_name="d",
                             use_fast_variance=fast, use_scale=False, use_bias=False)
        _, upd = layer.apply({"batch_stats": {"mean": jnp.zeros(3), "var": jnp.ones(3)}}, x,
                             mutable=["batch_stats"])
        return upd["batch_stats"]["var"][None]
    run = jax.shard_map(body, mesh=mesh, in_specs=P("d"), out_specs=P("d"))
    return np.asarray(run(jnp.asarray(x)))[0].tolist()

print(json.dumps({"fast": var_of(True), "two_pass": var_of(False),
                  "exact": np.var(x.astype(np.float64), axis=0).tolist()}))
"""


def test_flax_default_fast_variance_cancels_under_shard_map_at_a_large_offset() -> None:
    got = _plain(_FAST_VARIANCE, 2)
    exact = np.array(got["exact"])
    fast_err = np.max(np.abs(np.array(got["fast"]) - exact) / exact)
    two_pass_err = np.max(np.abs(np.array(got["two_pass"]) - exact) / exact)
    assert fast_err > 1e-3      # E[x^2] - E[x]^2 at |mean|/std = 1e3 in float32
    assert two_pass_err < 1e-5  # use_fast_variance=False is fine


# --- J4: the division rule in the second order ---------------------------------------------------

_DIV_RULE = """
import json
import jax, jax.numpy as jnp, numpy as np
jax.config.update("jax_enable_x64", True)

def second_order(dtype, scale):
    rng = np.random.default_rng(0)
    x = jnp.asarray(scale * rng.standard_normal(6), dtype)
    g = jnp.asarray(rng.standard_normal(6), dtype)
    t = jnp.asarray(rng.standard_normal(6), dtype)
    def y(x):
        d = x - jnp.mean(x)
        return d / jnp.sqrt(jnp.mean(d * d))
    grads = lambda x: jax.vjp(y, x)[1](g)[0]
    return np.asarray(jax.jvp(grads, (x,), (t,))[1], dtype=np.float64)

huge32, huge64 = second_order(jnp.float32, 1e15), second_order(jnp.float64, 1e15)
print(json.dumps({"huge32": huge32.tolist(), "huge64": huge64.tolist()}))
"""


def test_jax_div_rule_loses_the_second_order_of_a_huge_spread_in_float32() -> None:
    got = _plain(_DIV_RULE, 1)
    want = np.array(got["huge64"])
    have = np.array(got["huge32"])
    # y is scale-free, so its second derivative is ~ std^-2 ~ 1e-30, a normal float32; the
    # division rule's y^-2, differentiated again, forms std^-3 ~ 1e-45 on the way: below
    # float32's smallest subnormal (1.4e-45), so it flushes and the result is lost
    assert np.all(np.isfinite(want))
    assert np.max(np.abs(have - want)) > 0.5 * np.max(np.abs(want))


# --- the adapter ---------------------------------------------------------------------------------


def _case(sizes: list[int], seed: int, *, training: bool = True, estimator: str = "unbiased"
          ) -> tuple[dict[str, Any], dict[str, Any]]:
    rng = np.random.default_rng(seed)
    x = 3.0 + rng.standard_normal((sum(sizes), 3, 2))
    inputs: dict[str, Any] = {"x": x, "weight": rng.normal(1.0, 0.3, 3),
                              "bias": rng.normal(0.0, 0.3, 3),
                              "running_mean": rng.standard_normal(3),
                              "running_var": rng.uniform(0.5, 2.0, 3),
                              "shard_sizes": np.array(sizes, dtype=np.int64)}
    hyper = {"training": training, "eps": 1e-5, "batch_stat_weight": 0.1,
             "running_var_estimator": estimator}
    return inputs, hyper


def _reference(op: str, inputs: dict[str, Any], hyper: dict[str, Any], g: Any = None,
               t: Any = None) -> dict[str, Any]:
    kw = {k: inputs[k] for k in ("shard_sizes", "running_mean", "running_var")}
    args = (inputs["x"], inputs["weight"], inputs["bias"])
    if op == "forward":
        return ref.forward(*args, **kw, **hyper)
    if op == "vjp":
        return ref.vjp(*args, cotangent=g, **kw, **hyper)
    if op == "jvp":
        return {"y": ref.jvp(*args, tangent=t, **kw, **hyper)}
    return ref.second_order(*args, cotangent=g, tangent=t, **kw, **hyper)


@pytest.mark.parametrize(("sizes", "training", "estimator", "kind"), [
    ([1, 0, 4], True, "unbiased", "composed"),   # psum: uneven, an empty device
    ([2, 3, 1, 2], True, "biased", "composed"),  # psum on all four devices
    ([3, 3], True, "biased", "native"),          # Flax, equal shards
    ([2, 2], True, "unbiased", "composed"),      # Flax y, composed unbiased update
    ([3, 1], False, "biased", "native"),         # evaluation: Flax on padded shards
], ids=["psum-w3-empty", "psum-w4", "flax-w2", "flax-w2-unbiased", "eval-w2-uneven"])
def test_every_check_matches_batch_norm_of_the_whole_batch(sizes: list[int], training: bool,
                                                           estimator: str, kind: str) -> None:
    inputs, hyper = _case(sizes, sum(sizes) + len(sizes), training=training,
                          estimator=estimator)
    support = ADAPTER.case_support("sync_batch_norm", inputs, hyper, dtype="float64",
                                   device="cpu")
    assert (support.supported, support.kind) == (True, kind), support.reason
    rng = np.random.default_rng(3)
    g = rng.standard_normal(inputs["x"].shape)
    t = {k: rng.standard_normal(np.shape(inputs[k])) for k in ("x", "weight", "bias")}
    calls = {
        "forward": lambda: ADAPTER.forward("sync_batch_norm", inputs, hyper, dtype="float64",
                                           device="cpu"),
        "vjp": lambda: ADAPTER.vjp("sync_batch_norm", inputs, hyper, g, dtype="float64",
                                   device="cpu"),
        "jvp": lambda: {"y": ADAPTER.jvp("sync_batch_norm", inputs, hyper, t, dtype="float64",
                                         device="cpu")},
        "second_order": lambda: ADAPTER.second_order("sync_batch_norm", inputs, hyper, g, t,
                                                     dtype="float64", device="cpu")}
    for op, call in calls.items():
        got, want = call(), _reference(op, inputs, hyper, g=g, t=t)
        if op != "forward":
            assert set(got) == set(want), op
        for key, value in got.items():
            scale = max(1.0, float(np.max(np.abs(want[key]))))
            np.testing.assert_allclose(value, want[key], rtol=0, atol=RTOL * scale,
                                       err_msg=f"{op}/{key}")
    timing = ADAPTER.call_timing()
    assert set(timing) == {"compile_s", "run_s"}


def test_the_variant_follows_the_shards() -> None:
    assert plan([2, 2, 2], {"training": True}, tracking=False) == ("flax", False)
    assert plan([2, 2], {"training": True, "running_var_estimator": "unbiased"},
                tracking=True) == ("flax", True)
    assert plan([1, 3], {"training": True}, tracking=False) == ("psum", False)
    assert plan([0, 0, 4], {"training": True}, tracking=False) == ("psum", False)
    assert plan([0, 4], {"training": False}, tracking=True) == ("flax", False)


def test_world_sizes_beyond_the_devices_and_other_devices_are_declined() -> None:
    inputs, hyper = _case([1] * 5, 1)
    s = ADAPTER.case_support("sync_batch_norm", inputs, hyper, dtype="float32", device="cpu")
    assert not s.supported
    assert "world size 5 declined" in s.reason
    gpu = DISTRIBUTED.support("sync_batch_norm", "float32", "gpu")
    assert not gpu.supported
    assert "host devices (CPU) only" in gpu.reason


def test_the_workers_jax_keeps_its_single_device() -> None:
    inputs, hyper = _case([1, 2], 2)
    before = os.environ.get("XLA_FLAGS")
    ADAPTER.forward("sync_batch_norm", inputs, hyper, dtype="float64", device="cpu")
    assert os.environ.get("XLA_FLAGS") == before
    import jax

    assert len(jax.devices("cpu")) == 1
    assert DISTRIBUTED._child is not None
    assert DISTRIBUTED._child._procs[0].pid != os.getpid()


_PARENT = """
import numpy as np, sys
from normspec.adapters.jax_adapter import ADAPTER
from normspec.adapters.jax_adapter.distributed import DISTRIBUTED
x = np.random.default_rng(0).standard_normal((4, 2))
ADAPTER.forward("sync_batch_norm", {"x": x, "shard_sizes": np.array([1, 3])},
                {"training": True, "eps": 1e-5}, dtype="float64", device="cpu")
print(DISTRIBUTED._child._procs[0].pid, flush=True)
sys.stdin.read()
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except ProcessLookupError:
        return False
    except OSError:
        return True


def test_the_device_process_ends_when_the_adapter_worker_is_killed() -> None:
    with subprocess.Popen([sys.executable, "-c", _PARENT], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        pid = int(proc.stdout.readline())
        assert _alive(pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    deadline = time.monotonic() + 15
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(pid), "the device process outlived its parent"
