"""The float64 NumPy reference: what each normalization method computes, forward and backward.

Each method is one module with the same four functions:

``forward(*primals, **hyper) -> dict``
    ``{"y": output, <statistics>}``; the statistics are listed in the module's ``STATS``.
``vjp(*primals, cotangent=g, **hyper) -> dict``
    gradient of ``sum(g * y)`` for each primal in ``PRIMALS`` that is not None.
``jvp(*primals, tangent={name: t}, **hyper) -> ndarray``
    directional derivative of ``y``; a missing tangent is zero.
``second_order(*primals, cotangent=g, tangent={name: t}, **hyper) -> dict``
    derivative of ``vjp`` along ``tangent`` with ``g`` held fixed (a Hessian-vector product
    of ``sum(g * y)``).

Only ``y`` is differentiated; statistics and running state are outputs, not differentiated.
Hyperparameters are keyword-only and have no framework defaults where frameworks disagree.
Every function accepts any real floating dtype and computes in float64.
"""

from __future__ import annotations

import importlib
from types import ModuleType

METHODS: tuple[str, ...] = (
    "batch_norm",
    "layer_norm",
    "rms_norm",
    "power_norm",
    "instance_norm",
    "group_norm",
    "lp_norm",
    "fix_norm",
    "scale_norm",
    "unit_norm",
    "local_response_norm",
    "ghost_batch_norm",
    "batch_renorm",
    "sequence_batch_norm",
    "sync_batch_norm",
    "mixed_eval_batch_norm",
    "batch_instance_norm",
    "global_response_norm",
    "adaptive_layer_norm",
    "adaptive_instance_norm",
    "conditional_instance_norm",
    "standardize",
    "min_max_scale",
    "spectral_norm",
    "qk_norm",
    "gradnorm",
    "gradient_normalization",
    "weight_norm",
    "weight_standardization",
)


def get(name: str) -> ModuleType:
    """Return the reference module of method ``name``."""
    if name not in METHODS:
        raise ValueError(f"argument 'name': got {name!r}, expected one of {list(METHODS)}")
    return importlib.import_module(f"{__name__}.{name}")


# Methods the seed material names that have no reference module yet. `normspec list` shows them
# so that the list is the whole scope of the spec, with what is missing said, not hidden.
NOT_YET_SPECIFIED: dict[str, str] = {
    "local_contrast_norm": "reference, oracle and numpy/torch/JAX compositions exist, "
                           "unregistered: catalog, vectors, spec page and mutants are missing "
                           "(issue 11)",
    "spade": "spatially-adaptive normalization: not started (issue 11)",
}

__all__ = ["METHODS", "NOT_YET_SPECIFIED", "get"]
