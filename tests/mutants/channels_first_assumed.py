"""``mutant-channels-first-assumed``: the ``channel_axis`` argument is ignored (axis 1 always).

Bug class: a kernel written for NCHW reused on NHWC/NLC input with the layout argument
dropped (a wrapper that forwards every hyperparameter but the layout, ``data_format`` ignored).
When axis 1 has as many entries as the channel axis, the weight still broadcasts and the
result is silently wrong; otherwise the weight's shape is rejected. Exposed by batch_norm,
instance_norm, group_norm and local_response_norm with a channel axis other than 1, every
check, any dtype.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from normspec.adapters.numpy_adapter import NumpyAdapter
from normspec.adapters.protocol import Array


def _drop_layout(hyper: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in hyper.items() if k != "channel_axis"}


class ChannelsFirstAdapter(NumpyAdapter):
    """The numpy adapter with ``channel_axis`` removed before every call (default 1)."""

    def forward(self, method: str, inputs: Mapping[str, Array | None], hyper: Mapping[str, Any],
                *, dtype: str, device: str) -> dict[str, Array]:
        return super().forward(method, inputs, _drop_layout(hyper), dtype=dtype, device=device)

    def vjp(self, method: str, inputs: Mapping[str, Array | None], hyper: Mapping[str, Any],
            cotangent: Array, *, dtype: str, device: str) -> dict[str, Array]:
        return super().vjp(method, inputs, _drop_layout(hyper), cotangent, dtype=dtype,
                           device=device)

    def jvp(self, method: str, inputs: Mapping[str, Array | None], hyper: Mapping[str, Any],
            tangent: Mapping[str, Array], *, dtype: str, device: str) -> Array:
        return super().jvp(method, inputs, _drop_layout(hyper), tangent, dtype=dtype,
                           device=device)

    def second_order(self, method: str, inputs: Mapping[str, Array | None],
                     hyper: Mapping[str, Any], cotangent: Array, tangent: Mapping[str, Array],
                     *, dtype: str, device: str) -> dict[str, Array]:
        return super().second_order(method, inputs, _drop_layout(hyper), cotangent, tangent,
                                    dtype=dtype, device=device)


MUTANT = ChannelsFirstAdapter("mutant-channels-first-assumed")
