"""sequence_batch_norm: the framework facts the spec page and the adapters rely on.

Each test is a plain-framework repro (no normspec adapter involved) of one fact read in the
installed wheel: how Flax's BatchNorm uses a mask, what it does with a row that has no valid
element (the ledger's JM1 entries), and how PyTorch's packed sequences relate to
sequence-wise statistics. Expected values are plain NumPy over the valid frames.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

LENGTHS = [5, 2, 3]
N, T, C = 3, 6, 2  # time step 5 holds no valid element


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    mask = np.arange(T)[None, :] < np.asarray(LENGTHS)[:, None]
    return rng.standard_normal((N, T, C)), mask


def _flax_bn(axis: Any, x: Any, mask: Any, scale: Any, *, clean: bool = True
             ) -> tuple[Any, Any]:
    """Flax BatchNorm(mask=...) in training, padded outputs set to 0; (y, batch_stats)."""
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    nn = pytest.importorskip("flax.linen")
    feature = (T, C) if axis == (1, 2) else (C,)
    m = jnp.asarray(mask)[:, :, None]
    layer = nn.BatchNorm(use_running_average=False, axis=axis, momentum=0.9, epsilon=1e-5,
                         use_fast_variance=False, dtype=jnp.float32, param_dtype=jnp.float32)
    variables = {"params": {"scale": jnp.broadcast_to(scale, feature),
                            "bias": jnp.zeros(feature)},
                 "batch_stats": {"mean": jnp.zeros(feature), "var": jnp.ones(feature)}}
    xin = jnp.where(m, x, 0.0) if clean else x
    y, updated = layer.apply(variables, xin, mask=m, mutable=["batch_stats"])
    return jnp.where(m, y, 0.0), updated["batch_stats"]


def test_flax_mask_keeps_padding_out_of_the_statistics_but_normalizes_it() -> None:
    jnp = pytest.importorskip("jax.numpy")
    nn = pytest.importorskip("flax.linen")
    x, mask = _data()
    m = jnp.asarray(mask)[:, :, None]
    layer = nn.BatchNorm(use_running_average=False, axis=-1, epsilon=0.0,
                         use_fast_variance=False, use_scale=False, use_bias=False)
    y, _ = layer.init_with_output(__import__("jax").random.key(0), jnp.asarray(x, jnp.float32),
                                  mask=m)
    valid = x[mask]
    mean, std = valid.mean(axis=0), valid.std(axis=0)
    np.testing.assert_allclose(np.asarray(y)[mask], (valid - mean) / std, rtol=1e-5,
                               atol=1e-5)
    # padded positions are normalized with the same statistics, not set to 0
    np.testing.assert_allclose(np.asarray(y)[~mask], (x[~mask] - mean) / std, rtol=1e-5,
                               atol=1e-5)


def test_flax_feature_axes_time_and_channel_give_frame_wise_statistics() -> None:
    x, mask = _data()
    y, _ = _flax_bn((1, 2), x.astype(np.float32), mask, np.ones(C, np.float32))
    for t in range(4):  # time steps with at least two valid elements
        v = x[mask[:, t], t]
        want = (v - v.mean(axis=0)) / np.sqrt(v.var(axis=0) + 1e-5)
        np.testing.assert_allclose(np.asarray(y)[mask[:, t], t], want, rtol=1e-4, atol=1e-5)


def test_flax_masked_row_without_valid_elements_gives_nan_state_and_scale_gradient() -> None:
    """JM1: the spec keeps an empty row's running statistics and gives a 0 gradient."""
    jax = pytest.importorskip("jax")
    x, mask = _data()
    assert not mask[:, 5].any()
    scale = np.ones(C, np.float32)
    _, stats = _flax_bn((1, 2), x.astype(np.float32), mask, scale)
    assert np.all(np.isnan(np.asarray(stats["mean"])[5]))
    assert np.all(np.isfinite(np.asarray(stats["mean"])[:5]))
    grad = jax.grad(lambda s: _flax_bn((1, 2), x.astype(np.float32), mask, s)[0].sum())(
        jax.numpy.asarray(scale))
    assert np.all(np.isnan(np.asarray(grad)))  # 0 * NaN from the empty frame's rstd
    # sequence-wise, a batch with no valid frame at all
    _, stats = _flax_bn(-1, x.astype(np.float32), np.zeros_like(mask), scale)
    assert np.all(np.isnan(np.asarray(stats["var"])))


def test_flax_nan_padding_reaches_the_scale_gradient_unless_zeroed_first() -> None:
    """Why the JAX adapter replaces padded inputs by 0 before the layer."""
    jax = pytest.importorskip("jax")
    x, mask = _data()
    # sequence-wise there is one row, with valid frames: only the NaN padding matters here
    x = np.where(mask[:, :, None], x, np.nan).astype(np.float32)

    def loss(s: Any, clean: bool) -> Any:
        return _flax_bn(-1, x, mask, s, clean=clean)[0].sum()

    scale = jax.numpy.ones(C)
    assert np.all(np.isfinite(np.asarray(jax.grad(lambda s: loss(s, True))(scale))))
    assert np.all(np.isnan(np.asarray(jax.grad(lambda s: loss(s, False))(scale))))


def test_torch_packed_batch_norm_is_sequence_wise_and_refuses_empty_sequences() -> None:
    torch = pytest.importorskip("torch")
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    x, mask = _data()
    xt = torch.tensor(x)
    with pytest.raises(RuntimeError, match="Length of all samples has to be greater than 0"):
        pack_padded_sequence(xt, torch.tensor([5, 0, 3]), batch_first=True,
                             enforce_sorted=False)
    packed = pack_padded_sequence(xt, torch.tensor(LENGTHS), batch_first=True,
                                  enforce_sorted=False)
    bn = torch.nn.BatchNorm1d(C, momentum=1.0, dtype=torch.float64)
    bn.train()
    y, _ = pad_packed_sequence(packed._replace(data=bn(packed.data)), batch_first=True,
                               total_length=T)
    valid = x[mask]
    want = (valid - valid.mean(axis=0)) / np.sqrt(valid.var(axis=0) + 1e-5)
    np.testing.assert_allclose(y.detach().numpy()[mask], want, rtol=1e-12)
    assert np.all(y.detach().numpy()[~mask] == 0.0)  # pad_packed_sequence's padding_value
    # the running variance is the unbiased one with n = the valid count
    np.testing.assert_allclose(bn.running_var.numpy(), valid.var(axis=0, ddof=1), rtol=1e-12)
