"""Adapter discovery: entry points of the group ``normspec.adapters`` and ``module:attribute``.

An adapter is named on the command line in one of three ways:

* a registered name, e.g. ``numpy`` or ``torch`` (an entry point of the group
  ``normspec.adapters``, declared in the adapter's distribution);
* ``package.module:ATTRIBUTE``, an importable module and an attribute of it;
* ``path/to/file.py:ATTRIBUTE``, a Python file that is not part of any package (handy while
  writing an adapter).

The attribute is either an adapter instance or a factory: a class or any callable that takes no
argument and returns one. Nothing is imported until :func:`load` is called, so listing names
never imports a framework.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from types import ModuleType

from .protocol import Adapter

GROUP = "normspec.adapters"
"""The entry-point group third-party distributions register their adapters under."""


class AdapterLoadError(ValueError):
    """An adapter name that resolves to nothing, or to something that is not an adapter."""


def _entry_points() -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=GROUP):
        # Several installed copies of one distribution can list the same name; the first wins,
        # as it does for console scripts.
        found.setdefault(ep.name, ep)
    return found


def _registered(name: str) -> EntryPoint:
    eps = _entry_points()
    if name not in eps:
        names = ", ".join(sorted(eps)) or "none registered"
        raise AdapterLoadError(
            f"unknown adapter {name!r}; registered adapters: {names} "
            f"(or give module:attribute or file.py:attribute)"
        )
    return eps[name]


def available() -> dict[str, str]:
    """Registered adapter names mapped to their ``module:attribute`` targets, sorted by name."""
    return {name: ep.value for name, ep in sorted(_entry_points().items())}


def is_target(spec: str) -> bool:
    """Whether ``spec`` is a ``module:attribute`` (or ``file.py:attribute``) target."""
    return ":" in spec and not spec.startswith(":") and not spec.endswith(":")


def canonical_spec(spec: str) -> str:
    """Return ``spec`` with a relative ``file.py:ATTR`` path made absolute.

    Worker processes resolve the spec again, possibly from another working directory.
    """
    if is_target(spec):
        module, attr = spec.rsplit(":", 1)
        if module.endswith(".py"):
            return f"{Path(module).resolve()}:{attr}"
    return spec


def _import_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise AdapterLoadError(f"adapter file {str(path)!r} does not exist")
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    name = f"_normspec_adapter_{path.stem}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise AdapterLoadError(f"adapter file {str(path)!r} cannot be imported as a module")
    module = importlib.util.module_from_spec(module_spec)
    # Registered before running so dataclasses and pickling inside the module can find it.
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _resolve_target(spec: str) -> object:
    module_name, attr = spec.rsplit(":", 1)
    if module_name.endswith(".py"):
        module = _import_file(Path(module_name))
    else:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and module_name.startswith(exc.name):
                raise AdapterLoadError(
                    f"adapter {spec!r}: module {module_name!r} not found"
                ) from exc
            raise
    obj: object = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AdapterLoadError(
                f"adapter {spec!r}: module {module_name!r} has no attribute {attr!r}"
            ) from None
    return obj


def _as_adapter(obj: object, spec: str) -> Adapter:
    # A class satisfies the Protocol's attribute checks too, so classes are factories first.
    if isinstance(obj, type) or (not isinstance(obj, Adapter) and callable(obj)):
        obj = obj()
    if not isinstance(obj, Adapter):
        missing = [a for a in ("name", "versions", "devices", "support", "forward", "vjp", "jvp",
                               "second_order") if not hasattr(obj, a)]
        raise AdapterLoadError(
            f"adapter {spec!r}: got {type(obj).__name__}, expected an object implementing "
            f"normspec.adapters.Adapter (missing: {', '.join(missing)})"
        )
    if not isinstance(obj.name, str) or not obj.name:
        raise AdapterLoadError(
            f"adapter {spec!r}: attribute 'name' is {obj.name!r}, expected a non-empty str"
        )
    return obj


def load(spec: str) -> Adapter:
    """Return the adapter named by ``spec`` (a registered name or ``module:attribute``).

    Raises :class:`AdapterLoadError` naming ``spec`` and, for an unknown name, listing the
    registered names. Exceptions raised while importing the adapter's module propagate.
    """
    if is_target(spec):
        return _as_adapter(_resolve_target(spec), spec)
    return _as_adapter(_registered(spec).load(), spec)


def check_spec(spec: str) -> str:
    """Validate ``spec`` without importing anything; return its canonical form.

    Used before worker processes start, so an unknown name is reported once, as a usage error.
    """
    if is_target(spec):
        module, _ = spec.rsplit(":", 1)
        if module.endswith(".py") and not Path(module).is_file():
            raise AdapterLoadError(f"adapter file {module!r} does not exist")
        return canonical_spec(spec)
    _registered(spec)
    return spec


__all__ = ["GROUP", "AdapterLoadError", "available", "canonical_spec", "check_spec", "is_target",
           "load"]
