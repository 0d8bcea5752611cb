"""Adapter discovery: entry points, module:attribute, file.py:attribute, factories, errors."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
from normspec.adapters import Adapter, registry

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "minimal_adapter.py"


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend two adapters are registered under the entry-point group."""
    eps = {name: EntryPoint(name=name, value=value, group=registry.GROUP) for name, value in (
        ("fake", "fakes.adapters:REFERENCE"), ("broken", "fakes.adapters:broken_factory"))}
    monkeypatch.setattr(registry, "_entry_points", lambda: eps)


@pytest.mark.usefixtures("registered")
def test_registered_name_loads_its_entry_point() -> None:
    adapter = registry.load("fake")
    assert isinstance(adapter, Adapter)
    assert adapter.name == "fake_reference"


@pytest.mark.usefixtures("registered")
def test_available_lists_registered_names_sorted() -> None:
    assert registry.available() == {"broken": "fakes.adapters:broken_factory",
                                    "fake": "fakes.adapters:REFERENCE"}


@pytest.mark.usefixtures("registered")
def test_unknown_name_lists_the_registered_ones() -> None:
    with pytest.raises(registry.AdapterLoadError,
                       match=r"unknown adapter 'tensorflow'.*broken, fake"):
        registry.load("tensorflow")
    with pytest.raises(registry.AdapterLoadError, match="unknown adapter 'tensorflow'"):
        registry.check_spec("tensorflow")


@pytest.mark.usefixtures("registered")
def test_failing_factory_propagates_its_error() -> None:
    with pytest.raises(ImportError, match="deliberately missing dependency"):
        registry.load("broken")


def test_module_attribute_instance() -> None:
    assert registry.load("fakes.adapters:NAN").name == "fake_nan"


def test_class_is_a_factory() -> None:
    adapter = registry.load("fakes.adapters:Raising")
    assert isinstance(adapter, Adapter)
    assert adapter.name == "fake_raising"


def test_file_path_target_loads_the_documented_example() -> None:
    adapter = registry.load(f"{EXAMPLE}:ADAPTER")
    assert adapter.name == "minimal"
    assert adapter.support("layer_norm", "float32", "cpu").supported is False


def test_relative_file_target_is_made_absolute(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(EXAMPLE.parent)
    assert registry.check_spec("minimal_adapter.py:ADAPTER") == f"{EXAMPLE}:ADAPTER"


@pytest.mark.parametrize(("spec", "pattern"), [
    ("fakes.adapters:NOT_AN_ADAPTER", r"got object, expected an object implementing.*missing: "
                                      r"name, versions"),
    ("fakes.adapters:NO_SUCH_THING", r"has no attribute 'NO_SUCH_THING'"),
    ("fakes.no_such_module:ADAPTER", r"module 'fakes.no_such_module' not found"),
    ("missing_file.py:ADAPTER", r"adapter file 'missing_file.py' does not exist"),
], ids=["not-an-adapter", "missing-attribute", "missing-module", "missing-file"])
def test_bad_targets_name_what_is_wrong(spec: str, pattern: str) -> None:
    with pytest.raises(registry.AdapterLoadError, match=pattern):
        registry.load(spec)


def test_check_spec_accepts_targets_without_importing() -> None:
    assert registry.check_spec("not_imported_yet.module:ADAPTER") == (
        "not_imported_yet.module:ADAPTER")
