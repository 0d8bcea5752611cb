"""Xfail ledgers: the recorded, evidenced deviations of one adapter.

A ledger is a TOML file ``adapters/ledgers/<adapter>.toml`` (or ``<dir>/<adapter>.toml`` given
with ``--ledger-dir``)::

    [[xfail]]
    id = "layer_norm[offset_1e3-axis=-1]-float16-vjp"   # a test id that exists
    reason = "float16 accumulation of the mean gradient"
    evidence = "https://github.com/org/repo/issues/123"  # a link, or a path to a repro
    device = "cuda"                                       # optional: only on this device

The ledger is strict: an entry turns a ``fail`` or ``error`` into ``xfail``, and a ``pass`` into
``xpass``, which fails the run (the entry is stale and must go). An entry without a reason or
evidence, with unknown keys, or naming a test id that does not exist is rejected when the ledger
is loaded.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from .results import Result

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

_KEYS = {"id", "reason", "evidence", "device"}
_REQUIRED = ("id", "reason", "evidence")


class LedgerError(ValueError):
    """A ledger file that cannot be used; the message names the file and the entry."""


@dataclass(frozen=True)
class LedgerEntry:
    """One expected failure."""

    id: str
    reason: str
    evidence: str
    device: str | None = None


@dataclass(frozen=True)
class Ledger:
    """The entries of one adapter's ledger, keyed by test id."""

    path: str = ""
    entries: tuple[LedgerEntry, ...] = field(default=())

    def lookup(self, test_id: str, device: str) -> LedgerEntry | None:
        """The entry for ``test_id`` on ``device``; a device-specific entry wins."""
        general = None
        for e in self.entries:
            if e.id != test_id:
                continue
            if e.device == device:
                return e
            if e.device is None:
                general = e
        return general

    def apply(self, result: Result) -> Result:
        """Return ``result`` with the ledger applied (fail/error -> xfail, pass -> xpass)."""
        entry = self.lookup(result.id, result.device)
        if entry is None or result.status in ("skip", "xfail", "xpass", "not_applicable"):
            return result
        note = f"{entry.reason} (evidence: {entry.evidence})"
        if result.status == "pass":
            msg = (f"unexpectedly passed: the ledger {self.path} expects a failure ({note}); "
                   f"remove the entry {entry.id!r} if the deviation is fixed")
            return replace(result, status="xpass", ledger=note, message=msg)
        msg = f"expected {result.status} (ledger: {note})\n{result.message}"
        return replace(result, status="xfail", ledger=note, message=msg)


def _entry(raw: Any, where: str) -> LedgerEntry:
    if not isinstance(raw, dict):
        raise LedgerError(f"{where}: expected a table, got {type(raw).__name__}")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise LedgerError(f"{where}: unknown key(s) {unknown}, expected only {sorted(_KEYS)}")
    for key in _REQUIRED:
        value = raw.get(key)
        if not isinstance(value, str) or not value.strip():
            raise LedgerError(f"{where}: key {key!r} is {value!r}, expected a non-empty string")
    device = raw.get("device")
    if device is not None and (not isinstance(device, str) or not device):
        raise LedgerError(f"{where}: key 'device' is {device!r}, expected a device name")
    return LedgerEntry(id=raw["id"], reason=raw["reason"].strip(),
                       evidence=raw["evidence"].strip(), device=device)


def parse_ledger(text: str, path: str, known_ids: Collection[str] | None = None) -> Ledger:
    """Parse ledger TOML ``text`` (from ``path``, used in messages) and validate every entry.

    ``known_ids`` is the set of test ids that exist for this adapter's vectors; when given, an
    entry naming another id is rejected, with the closest existing ids as a hint.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise LedgerError(f"ledger {path}: invalid TOML: {exc}") from None
    extra = sorted(set(data) - {"xfail"})
    if extra:
        raise LedgerError(f"ledger {path}: unknown top-level key(s) {extra}, expected [[xfail]]")
    raw_entries = data.get("xfail", [])
    if not isinstance(raw_entries, list):
        raise LedgerError(f"ledger {path}: 'xfail' must be an array of tables ([[xfail]])")
    entries: list[LedgerEntry] = []
    seen: set[tuple[str, str | None]] = set()
    for i, raw in enumerate(raw_entries):
        where = f"ledger {path}: entry {i + 1}"
        entry = _entry(raw, where)
        if known_ids is not None and entry.id not in known_ids:
            close = difflib.get_close_matches(entry.id, list(known_ids), n=3)
            hint = f"; closest existing ids: {', '.join(close)}" if close else ""
            raise LedgerError(f"{where}: test id {entry.id!r} does not exist{hint}")
        key = (entry.id, entry.device)
        if key in seen:
            raise LedgerError(f"{where}: duplicate entry for {entry.id!r}"
                              + (f" on device {entry.device!r}" if entry.device else ""))
        seen.add(key)
        entries.append(entry)
    return Ledger(path=path, entries=tuple(entries))


def check_ledger_dir(ledger_dir: Path) -> None:
    """Raise :class:`LedgerError` unless ``ledger_dir`` is an existing directory: a mistyped
    ``--ledger-dir`` would otherwise silently run with no ledger at all."""
    if not ledger_dir.is_dir():
        what = "is not a directory" if ledger_dir.exists() else "does not exist"
        raise LedgerError(f"ledger directory {ledger_dir} {what}, expected a directory holding "
                          f"<adapter>.toml ledgers")


def find_ledger(adapter: str, ledger_dir: Path | None = None) -> Path | str | None:
    """Where the ledger of ``adapter`` is: ``ledger_dir/<adapter>.toml``, else the built-in one.

    Returns None when the adapter has no ledger (an empty ledger).
    """
    if ledger_dir is not None:
        check_ledger_dir(ledger_dir)
        candidate = ledger_dir / f"{adapter}.toml"
        if candidate.exists() and not candidate.is_file():
            raise LedgerError(f"ledger {candidate}: is not a regular file, expected a TOML file "
                              f"of [[xfail]] entries")
        return candidate if candidate.is_file() else None
    builtin = resources.files("normspec.adapters").joinpath("ledgers").joinpath(f"{adapter}.toml")
    return str(builtin) if builtin.is_file() else None


def load_ledger(adapter: str, ledger_dir: Path | None = None,
                known_ids: Collection[str] | None = None) -> Ledger:
    """Load and validate the ledger of ``adapter`` (an empty ledger when there is none)."""
    where = find_ledger(adapter, ledger_dir)
    if where is None:
        return Ledger()
    path = Path(where)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise LedgerError(f"ledger {path}: cannot be read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise LedgerError(f"ledger {path}: is not UTF-8 text (byte {exc.start}: {exc.reason}), "
                          f"expected a UTF-8 TOML file") from None
    return parse_ledger(text, str(path), known_ids)


__all__ = ["Ledger", "LedgerEntry", "LedgerError", "check_ledger_dir", "find_ledger", "load_ledger",
           "parse_ledger"]
