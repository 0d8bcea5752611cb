"""Argument validation shared by the reference methods.

Every error names the argument, the value received and what was expected, so a caller
never has to read the reference source to learn what went wrong.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ParamSpec, TypeVar

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

_P = ParamSpec("_P")
_R = TypeVar("_R")


def ieee(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """Evaluate ``fn`` with NumPy's floating-point warnings off.

    The spec says NaN and Inf propagate as IEEE arithmetic does (0 * inf = NaN, x / 0 = inf);
    a warning would turn that documented behaviour into an error under ``-W error``.
    """

    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with np.errstate(all="ignore"):
            return fn(*args, **kwargs)

    return wrapper


def _is_real_float(dtype: np.dtype[Any]) -> bool:
    if dtype.kind == "f":
        return True
    # ml_dtypes registers bfloat16 and friends as void-kind dtypes; accept the float ones.
    # Only ask ml_dtypes about those: its finfo defers to numpy's, which accepts complex.
    if dtype.kind != "V":
        return False
    try:
        import ml_dtypes

        ml_dtypes.finfo(dtype)  # type: ignore[no-untyped-call]
    except (ImportError, ValueError, TypeError):
        return False
    return True


def _describe(value: object) -> str:
    """A short description of ``value`` for messages (an input may be too large to repr)."""
    kind = type(value)
    shape = getattr(value, "shape", None)
    where = f" of shape {tuple(shape)}" if isinstance(shape, (tuple, list)) else ""
    module = "" if kind.__module__ == "builtins" else f"{kind.__module__}."
    return f"a {module}{kind.__qualname__}{where}"


def _to_array(name: str, value: object) -> npt.NDArray[Any]:
    """``np.asarray(value)``, with NumPy's and the tensor libraries' errors reworded.

    Raising here (rather than letting NumPy or torch speak) keeps the contract that every
    error names the argument; the checks cost nothing on the success path.
    """
    if isinstance(value, np.ma.MaskedArray):
        # np.asarray drops the mask, so masked values would silently enter the statistics.
        raise TypeError(
            f"argument {name!r}: got a numpy masked array, expected a plain float array-like; "
            "the reference has no notion of masked elements (pass arr.filled(v) or select "
            "the valid elements explicitly)"
        )
    try:
        return np.asarray(value)
    except (ValueError, TypeError, RuntimeError) as exc:
        if callable(getattr(value, "detach", None)):
            # a tensor that NumPy cannot read directly: requires_grad, on a GPU, or a
            # dtype NumPy lacks. Duck-typed so that the reference never imports torch.
            raise TypeError(
                f"argument {name!r}: got {_describe(value)} that NumPy cannot convert "
                f"({exc}), expected a float array-like; for a tensor, pass "
                "tensor.detach().cpu().numpy()"
            ) from exc
        if isinstance(exc, ValueError):
            raise ValueError(
                f"argument {name!r}: got {_describe(value)} that is not rectangular "
                f"({exc}), expected a float array-like whose nested sequences all have "
                "the same length"
            ) from exc
        raise TypeError(
            f"argument {name!r}: got {_describe(value)} that NumPy cannot convert ({exc}), "
            "expected a float array-like"
        ) from exc


def as_float64(name: str, value: object) -> FloatArray:
    """Convert a real floating array to float64 exactly, rejecting every other dtype."""
    arr = _to_array(name, value)
    if not _is_real_float(arr.dtype):
        raise TypeError(
            f"argument {name!r}: got dtype {arr.dtype}, expected a real floating dtype "
            "(float16, bfloat16, float32 or float64); integer, bool and complex inputs "
            "are rejected rather than silently converted"
        )
    return np.asarray(arr, dtype=np.float64)


def optional_float64(name: str, value: object | None) -> FloatArray | None:
    return None if value is None else as_float64(name, value)


def check_ndim(name: str, arr: FloatArray, minimum: int) -> None:
    if arr.ndim < minimum:
        raise ValueError(
            f"argument {name!r}: got an array of shape {arr.shape} ({arr.ndim}-d), "
            f"expected at least {minimum} dimensions"
        )


def check_eps(eps: object, name: str = "eps") -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float, np.floating, np.integer)):
        raise TypeError(f"argument {name!r}: got {eps!r}, expected a real number >= 0")
    value = float(eps)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"argument {name!r}: got {value!r}, expected a finite number >= 0")
    return value


def check_real(name: str, value: object, *, minimum: float | None = None,
               exclusive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"argument {name!r}: got {value!r}, expected a real number")
    out = float(value)
    if not math.isfinite(out):
        raise ValueError(f"argument {name!r}: got {out!r}, expected a finite number")
    if minimum is not None and (out <= minimum if exclusive else out < minimum):
        relation = ">" if exclusive else ">="
        raise ValueError(f"argument {name!r}: got {out!r}, expected a number {relation} {minimum}")
    return out


def check_int(name: str, value: object, *, minimum: int) -> int:
    """An integer, given as a Python or NumPy integer or a 0-d integer array (a stored counter)."""
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iu":
        value = value[()]
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"argument {name!r}: got {value!r}, expected an integer >= {minimum}")
    out = int(value)
    if out < minimum:
        raise ValueError(f"argument {name!r}: got {out}, expected an integer >= {minimum}")
    return out


def check_axis(name: str, axis: object, ndim: int) -> int:
    """Return ``axis`` normalized to ``0 <= axis < ndim``."""
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"argument {name!r}: got {axis!r}, expected an integer axis")
    a = int(axis)
    if not -ndim <= a < ndim:
        raise ValueError(
            f"argument {name!r}: got {a}, expected an axis in [{-ndim}, {ndim - 1}] "
            f"for a {ndim}-d input"
        )
    return a % ndim


def check_choice(name: str, value: object, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"argument {name!r}: got {value!r}, expected one of {list(choices)}")
    return value


def check_shape(name: str, arr: FloatArray | None, expected: tuple[int, ...]) -> None:
    if arr is not None and arr.shape != expected:
        raise ValueError(
            f"argument {name!r}: got shape {arr.shape}, expected shape {expected}"
        )


def check_nonempty_reduction(name: str, shape: tuple[int, ...], axes: tuple[int, ...]) -> None:
    count = math.prod(shape[a] for a in axes)
    if count == 0:
        raise ValueError(
            f"argument {name!r}: got shape {shape}, expected a non-empty reduction over "
            f"axes {axes} (it has 0 elements)"
        )


def directions(name: str, given: Mapping[str, object] | None,
               allowed: Mapping[str, FloatArray | None]) -> dict[str, FloatArray | None]:
    """Validate a tangent mapping: known keys, matching shapes, missing keys are zero."""
    expected = sorted(k for k, v in allowed.items() if v is not None)
    if given is not None and not isinstance(given, Mapping):
        # dict(array) would fail with "dictionary update sequence element #0", which names
        # neither the argument nor what it should be.
        raise TypeError(
            f"argument {name!r}: got {_describe(given)}, expected a mapping from primal names "
            f"to arrays, e.g. {{'x': t}}, with keys from {expected}"
        )
    given = {} if given is None else dict(given)
    # key=repr: keys of mixed types (an int and a str) do not compare with each other
    unknown = sorted((k for k in given if k not in expected), key=repr)
    if unknown:
        raise ValueError(
            f"argument {name!r}: got keys {unknown} that are not differentiable inputs of "
            f"this call, expected a subset of {expected}"
        )
    out: dict[str, FloatArray | None] = {}
    for key, primal in allowed.items():
        if primal is None:
            out[key] = None
            continue
        raw = given.get(key)
        if raw is None:
            out[key] = np.zeros_like(primal)
            continue
        arr = as_float64(f"{name}[{key!r}]", raw)
        check_shape(f"{name}[{key!r}]", arr, primal.shape)
        out[key] = arr
    return out


def cotangent_like(cotangent: object, y_shape: tuple[int, ...]) -> FloatArray:
    g = as_float64("cotangent", cotangent)
    check_shape("cotangent", g, y_shape)
    return g
