"""The torch adapter's sync_batch_norm: real gloo ranks, the contract of a distributed adapter.

Every check here runs torch.distributed collectives across rank processes; nothing simulates a
worker. The float64 results are compared with the reference (batch norm of the whole batch).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from normspec.adapters.torch_adapter import ADAPTER  # noqa: E402
from normspec.adapters.torch_adapter.distributed import DISTRIBUTED, assemble  # noqa: E402
from normspec.reference import sync_batch_norm as ref  # noqa: E402

RTOL = 1e-12
"""float64 agreement: two rounding orders of the same sums, far below any convention error."""


def _case(sizes: list[int], seed: int, *, channels_last: bool = False, tracked: bool = True,
          training: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
    rng = np.random.default_rng(seed)
    shape = (sum(sizes), 2, 3) if channels_last else (sum(sizes), 3, 2)
    c = 3  # channels: axis 1 of (N, 3, 2), or axis -1 of (N, 2, 3)
    inputs: dict[str, Any] = {"x": 5.0 + rng.standard_normal(shape),
                              "weight": rng.normal(1.0, 0.3, c), "bias": rng.normal(0.0, 0.3, c),
                              "shard_sizes": np.array(sizes, dtype=np.int64)}
    hyper: dict[str, Any] = {"training": training, "eps": 1e-5,
                             "channel_axis": -1 if channels_last else 1}
    if tracked or not training:
        inputs.update(running_mean=rng.standard_normal(c), running_var=rng.uniform(0.5, 2, c),
                      num_batches_tracked=np.array(2, dtype=np.int64))
        hyper.update(batch_stat_weight=0.1, running_var_estimator="unbiased")
    return inputs, hyper


def _reference(op: str, inputs: dict[str, Any], hyper: dict[str, Any], g: Any = None,
               t: Any = None) -> Any:
    kw = {k: v for k, v in inputs.items() if k not in ("x", "weight", "bias")}
    if "num_batches_tracked" in kw:
        kw["num_batches_tracked"] = int(kw["num_batches_tracked"])
    args = (inputs["x"], inputs.get("weight"), inputs.get("bias"))
    if op == "forward":
        return ref.forward(*args, **kw, **hyper)
    if op == "vjp":
        return ref.vjp(*args, cotangent=g, **kw, **hyper)
    if op == "jvp":
        return {"y": ref.jvp(*args, tangent=t, **kw, **hyper)}
    return ref.second_order(*args, cotangent=g, tangent=t, **kw, **hyper)


def _close(got: dict[str, Any], want: dict[str, Any]) -> None:
    for key, value in got.items():
        if key == "num_batches_tracked":
            assert float(value) == float(want[key])
            continue
        scale = max(1.0, float(np.max(np.abs(want[key]))))
        np.testing.assert_allclose(value, want[key], rtol=0, atol=RTOL * scale, err_msg=key)


@pytest.mark.parametrize(("sizes", "channels_last"), [
    ([3, 5], False), ([1, 0, 4], True), ([2, 2, 1, 3], False), ([0, 4], False)],
    ids=["w2-uneven", "w3-empty-nlc", "w4", "w2-empty-first"])
def test_every_check_matches_batch_norm_of_the_whole_batch(sizes: list[int],
                                                           channels_last: bool) -> None:
    inputs, hyper = _case(sizes, sum(sizes), channels_last=channels_last)
    rng = np.random.default_rng(1)
    g = rng.standard_normal(inputs["x"].shape)
    t = {k: rng.standard_normal(np.shape(inputs[k])) for k in ("x", "weight", "bias")}
    fwd = ADAPTER.forward("sync_batch_norm", inputs, hyper, dtype="float64", device="cpu")
    assert {"y", "mean", "var", "rstd", "running_mean", "running_var",
            "num_batches_tracked"} == set(fwd)
    _close(fwd, _reference("forward", inputs, hyper))
    _close(ADAPTER.vjp("sync_batch_norm", inputs, hyper, g, dtype="float64", device="cpu"),
           _reference("vjp", inputs, hyper, g=g))
    _close({"y": ADAPTER.jvp("sync_batch_norm", inputs, hyper, t, dtype="float64",
                             device="cpu")}, _reference("jvp", inputs, hyper, t=t))
    _close(ADAPTER.second_order("sync_batch_norm", inputs, hyper, g, t, dtype="float64",
                                device="cpu"),
           _reference("second_order", inputs, hyper, g=g, t=t))


def test_evaluation_sums_the_parameter_gradients_over_the_ranks() -> None:
    inputs, hyper = _case([2, 3, 1], 4, training=False)
    g = np.random.default_rng(2).standard_normal(inputs["x"].shape)
    got = ADAPTER.vjp("sync_batch_norm", inputs, hyper, g, dtype="float64", device="cpu")
    _close(got, _reference("vjp", inputs, hyper, g=g))


def test_the_ranks_are_separate_processes_of_one_gloo_group() -> None:
    inputs, hyper = _case([2, 2, 2], 5)
    ADAPTER.forward("sync_batch_norm", inputs, hyper, dtype="float32", device="cpu")
    group = DISTRIBUTED._groups["cpu"]
    pids = {p.pid for p in group._procs}
    assert len(pids) == group.count >= 3
    assert os.getpid() not in pids
    assert group.alive


def test_half_precision_rounds_y_once_and_keeps_state_in_float32() -> None:
    inputs, hyper = _case([1, 3], 6)
    inputs = {k: (v.astype(np.float16).astype(np.float64) if v.dtype.kind == "f" else v)
              for k, v in inputs.items()}
    got = ADAPTER.forward("sync_batch_norm", inputs, hyper, dtype="float16", device="cpu")
    assert np.array_equal(got["y"].astype(np.float16).astype(np.float64), got["y"])
    want = _reference("forward", inputs, hyper)
    np.testing.assert_allclose(got["running_var"], want["running_var"], rtol=1e-6)


def test_replicated_results_must_agree_on_every_rank() -> None:
    same = {"y": np.ones((1, 2)), "running_mean": np.array([1.0, np.nan])}
    out = assemble([same, {**same, "y": np.zeros((2, 2))}])
    assert out["y"].shape == (3, 2)
    with pytest.raises(ValueError, match=r"'running_mean' differs between rank 0 and rank 1"):
        assemble([same, {**same, "running_mean": np.array([1.0, 2.0])}])


def test_world_sizes_it_cannot_run_are_declined_with_a_reason() -> None:
    inputs, hyper = _case([1] * 9, 7)
    s = ADAPTER.case_support("sync_batch_norm", inputs, hyper, dtype="float32", device="cpu")
    assert not s.supported
    assert "world size 9 declined" in s.reason
    ok = ADAPTER.case_support("sync_batch_norm", *_case([1, 2], 7), dtype="float32",
                              device="cpu")
    assert (ok.supported, ok.kind) == (True, "composed")
    assert "2 rank processes" in ok.reason


def test_cuda_is_declined_with_its_reason_without_a_gpu() -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    s = DISTRIBUTED.support("sync_batch_norm", "float32", "cuda")
    assert not s.supported
    assert "torch.cuda.is_available() is False" in s.reason


# --- PyTorch's own SyncBatchNorm (the facts on the spec page) -----------------------------------

_REFUSAL = """
import json, os, tempfile, torch, torch.distributed as dist
store = os.path.join(tempfile.mkdtemp(), "store")
dist.init_process_group("gloo", init_method="file://" + store, rank=0, world_size=1)
layer = torch.nn.SyncBatchNorm(3).train()
try:
    layer(torch.randn(4, 3))
    print(json.dumps({"raised": None}))
except ValueError as exc:
    print(json.dumps({"raised": str(exc), "backend": torch._C._get_privateuse1_backend_name()}))
dist.destroy_process_group()
"""


def test_nn_syncbatchnorm_refuses_cpu_tensors_in_an_initialized_group() -> None:
    out = subprocess.run([sys.executable, "-c", _REFUSAL], capture_output=True, text=True,
                         check=True, timeout=120)
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["raised"] == ("SyncBatchNorm expected input tensor to be on GPU or XPU or "
                               f"{found['backend']}")
    assert found["backend"] == "privateuseone"


def test_nn_syncbatchnorm_without_a_process_group_is_plain_batch_norm() -> None:
    x = torch.randn(5, 3, dtype=torch.float64)
    got = torch.nn.SyncBatchNorm(3, dtype=torch.float64).train()(x)
    want = torch.nn.functional.batch_norm(x, None, None, training=True, eps=1e-5)
    assert torch.allclose(got, want, rtol=0, atol=1e-15)


# --- the ranks end with the process that started them ----------------------------------------

_PARENT = """
import numpy as np, sys
from normspec.adapters.torch_adapter import ADAPTER
from normspec.adapters.torch_adapter.distributed import DISTRIBUTED
x = np.random.default_rng(0).standard_normal((4, 2))
ADAPTER.forward("sync_batch_norm", {"x": x, "shard_sizes": np.array([1, 3])},
                {"training": True, "eps": 1e-5}, dtype="float64", device="cpu")
print(" ".join(str(p.pid) for p in DISTRIBUTED._groups["cpu"]._procs), flush=True)
sys.stdin.read()
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead: ask the kernel for its state
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


@pytest.mark.parametrize("how", ["exit", "sigkill"])
def test_ranks_end_when_the_adapter_worker_ends(how: str) -> None:
    with subprocess.Popen([sys.executable, "-c", _PARENT], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        assert proc.stdin is not None
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert pids
        assert all(_alive(p) for p in pids)
        if how == "exit":
            proc.stdin.close()
        else:
            proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    deadline = time.monotonic() + 15
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [p for p in pids if _alive(p)], "rank processes outlived their parent"
