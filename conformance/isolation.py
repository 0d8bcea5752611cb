"""Run an adapter in a separate process, so that its failures become results, not crashes.

Each adapter gets one persistent worker process (``multiprocessing`` *spawn* context: torch, JAX
and ``fork`` do not mix). The worker imports the adapter once and then serves cases: the runner
sends one case's inputs with the list of calls to make (forward, vjp, jvp, second order), and the
worker streams back one outcome per call. So a case costs one round trip, and when a call hangs
past the timeout or kills the process, the calls already answered keep their outcomes; the
worker is killed, a fresh one is started, and the remaining calls go on there.

Adapter results are sanitized in the worker: arrays travel back as NumPy arrays, anything else
as a :class:`Foreign` description, so the parent never unpickles framework objects (and never
imports the framework).
"""

from __future__ import annotations

import contextlib
import faulthandler
import multiprocessing
import os
import signal
import tempfile
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

CALL_OPS = ("case_support", "forward", "vjp", "jvp", "second_order")


@dataclass(frozen=True)
class Foreign:
    """A returned value that is not a NumPy array, described by its type and repr."""

    type_name: str
    text: str


@dataclass(frozen=True)
class Call:
    """One adapter call of a case: ``op`` is a :data:`CALL_OPS` name; ``args`` its extras."""

    op: str
    args: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    """What one call gave: a sanitized value, or an error message (raised, hung, crashed)."""

    op: str
    value: Any = None
    error: str = ""
    duration_s: float = 0.0
    declined: str = ""
    """Why the call was not made: the adapter's per-case support answer ruled it out."""
    compile_s: float | None = None
    """Seconds of the call spent compiling, when the adapter can tell (``call_timing``)."""
    run_s: float | None = None
    """Seconds of the call spent running, when the adapter can tell."""

    @property
    def ok(self) -> bool:
        """Whether the adapter returned (the value still has to be validated)."""
        return not self.error and not self.declined


@dataclass(frozen=True)
class SupportInfo:
    """An adapter's answer to ``support(method, dtype, device)``; ``state`` is supported,
    unsupported, or error (``support`` raised, which is an adapter bug)."""

    state: str
    kind: str = "native"
    reason: str = ""
    not_implemented: Mapping[str, str] = field(default_factory=dict)
    """Checks the adapter does not implement, with its reasons (skipped, never called)."""
    not_produced: Mapping[str, str] = field(default_factory=dict)
    """Quantities (``forward/running_var``) the adapter cannot return, with its reasons."""


def support_info(s: Any) -> SupportInfo:
    """Plain-data copy of an adapter's :class:`~normspec.adapters.Support` answer.

    Only str and dict cross the process boundary, so the parent never unpickles an adapter's
    class; a malformed answer raises TypeError naming what is wrong.
    """
    supported = getattr(s, "supported", None)
    if not isinstance(supported, bool):
        raise TypeError(f"got {type(s).__name__} with supported={supported!r}, expected a "
                        f"normspec.adapters.Support")
    tables = []
    for attr in ("not_implemented", "not_produced"):
        table = getattr(s, attr, None) or {}
        if not isinstance(table, Mapping):
            raise TypeError(f"Support.{attr}: got {type(table).__name__}, expected a mapping "
                            f"of names to reasons")
        tables.append({str(k): str(v) for k, v in table.items()})
    return SupportInfo("supported" if supported else "unsupported",
                       str(getattr(s, "kind", "native")), str(getattr(s, "reason", "")),
                       tables[0], tables[1])


@dataclass(frozen=True)
class WorkerInfo:
    """What the worker reports once its adapter is loaded."""

    name: str
    versions: dict[str, str]
    devices: tuple[str, ...]
    support: dict[tuple[str, str], SupportInfo]


class WorkerStartError(RuntimeError):
    """The adapter could not be loaded in the worker (the message holds its traceback).

    ``usage`` is true when the name resolves to nothing (an unknown module or attribute): the
    message is then one line, and the caller reports it as a usage error."""

    def __init__(self, message: str, *, usage: bool = False) -> None:
        super().__init__(message)
        self.usage = usage


# ---------------------------------------------------------------------------------------------
# The worker process.


def _sanitize(value: object, depth: int = 0) -> object:
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            return Foreign(f"numpy.ndarray[{value.dtype}]", "object array")
        if type(value) is not np.ndarray:
            # A subclass (a masked array, a framework's array type) would make the parent
            # import its module to unpickle it. It crosses as a plain array; a masked array's
            # mask would be lost silently, so that one is refused.
            if isinstance(value, np.ma.MaskedArray):
                return Foreign(f"{type(value).__module__}.{type(value).__qualname__}",
                               "a masked array (its mask would be lost)")
            return np.array(value, subok=False)
        return value
    if isinstance(value, Mapping) and depth == 0:
        return {str(k): _sanitize(v, depth + 1) for k, v in value.items()}
    text = repr(value)
    return Foreign(f"{type(value).__module__}.{type(value).__qualname__}",
                   text if len(text) <= 200 else text[:200] + "...")


def _describe(adapter: Any, device: str, methods: Sequence[str], dtypes: Sequence[str]
              ) -> WorkerInfo:
    support: dict[tuple[str, str], SupportInfo] = {}
    for method in methods:
        for dtype in dtypes:
            try:
                support[method, dtype] = support_info(adapter.support(method, dtype, device))
            except Exception as exc:  # an adapter bug: reported as errors, not as skips
                support[method, dtype] = SupportInfo(
                    "error", reason=f"support() raised {type(exc).__name__}: {exc}")
    versions = {str(k): str(v) for k, v in dict(adapter.versions()).items()}
    return WorkerInfo(name=str(adapter.name), versions=versions,
                      devices=checked_devices(adapter.devices()), support=support)


def checked_devices(devices: object) -> tuple[str, ...]:
    """An adapter's ``devices()`` answer as a tuple of names; TypeError for anything else.

    A bare string is refused: iterating ``"cpu"`` would give the devices c, p and u.
    """
    if isinstance(devices, (str, bytes)) or not isinstance(devices, (tuple, list)):
        raise TypeError(f"devices() returned {type(devices).__name__} {devices!r}, expected a "
                        f"tuple of device names such as ('cpu',)")
    bad = [d for d in devices if not isinstance(d, str) or not d]
    if bad:
        raise TypeError(f"devices() returned {tuple(devices)!r}, expected non-empty str names "
                        f"(bad: {bad!r})")
    return tuple(devices)


def _invoke(adapter: Any, call: Call, method: str, dtype: str, device: str,
            inputs: Mapping[str, Any], hyper: Mapping[str, Any]) -> object:
    # Fresh copies: an adapter that updates running statistics in place must not change the
    # inputs of the next call.
    fresh = {k: None if v is None else np.array(v, copy=True) for k, v in inputs.items()}
    kw = dict(hyper)
    if call.op == "case_support":
        # optional refinement of support() for one case's inputs (e.g. a composed variant)
        refine = getattr(adapter, "case_support", None)
        if refine is None:
            return None
        return support_info(refine(method, fresh, kw, dtype=dtype, device=device))
    fn = getattr(adapter, call.op)
    if call.op == "forward":
        return fn(method, fresh, kw, dtype=dtype, device=device)
    if call.op == "vjp":
        return fn(method, fresh, kw, np.array(call.args["cotangent"]), dtype=dtype, device=device)
    tangent = {k: np.array(v) for k, v in call.args["tangent"].items()}
    if call.op == "jvp":
        return fn(method, fresh, kw, tangent, dtype=dtype, device=device)
    return fn(method, fresh, kw, np.array(call.args["cotangent"]), tangent, dtype=dtype,
              device=device)


def _timing(adapter: Any) -> dict[str, float]:
    """The adapter's own split of its last call into compile and run seconds, when it offers
    one (the optional ``call_timing()``); empty otherwise, or when it answers nonsense."""
    timing = getattr(adapter, "call_timing", None)
    if timing is None:
        return {}
    try:
        raw = dict(timing())
        out = {k: float(raw[k]) for k in ("compile_s", "run_s") if raw.get(k) is not None}
    except Exception:  # timing is diagnostics: a broken answer never fails a check
        return {}
    return {k: v for k, v in out.items() if v >= 0 and v == v}


def _declined_calls(info: SupportInfo) -> dict[str, str]:
    """The calls a per-case support answer rules out: all of them for an unsupported case,
    else those whose checks are all not implemented (forward serves forward and state)."""
    if info.state != "supported":
        return dict.fromkeys(CALL_OPS[1:], info.reason or "unsupported case")
    out = {op: info.not_implemented[op] for op in ("vjp", "jvp", "second_order")
           if op in info.not_implemented}
    if "forward" in info.not_implemented and "state" in info.not_implemented:
        out["forward"] = info.not_implemented["forward"]
    return out


def _adapter_traceback(exc: BaseException, limit: int = 8) -> str:
    """The traceback of an adapter's exception without the worker's own frames."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename != __file__]
    text = "".join(traceback.format_list(frames[-limit:]))
    head = "Traceback (most recent call last):\n" if text else ""
    return head + text + "".join(traceback.format_exception_only(type(exc), exc))


def _serve(conn: Connection, adapter: Any, device: str) -> None:
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg is None:
            return
        method, dtype, inputs, hyper, calls = msg
        declined: Mapping[str, str] = {}
        for call in calls:
            start = time.perf_counter()
            if call.op in declined:
                # The adapter's per-case answer said it does not run this call: never made.
                conn.send(("declined", call.op, declined[call.op], 0.0, {}))
                continue
            try:
                raw = _invoke(adapter, call, method, dtype, device, inputs, hyper)
                # case_support answers plain data; results are sanitized arrays
                value = raw if call.op == "case_support" else _sanitize(raw)
                reply: tuple[Any, ...] = ("ok", call.op, value)
                if isinstance(value, SupportInfo):
                    declined = _declined_calls(value)
            except Exception as exc:
                reply = ("raised", call.op, _adapter_traceback(exc))
            reply = (*reply, time.perf_counter() - start,
                     _timing(adapter) if call.op != "case_support" else {})
            try:
                conn.send(reply)
            except Exception as exc:  # e.g. an array subclass that does not pickle
                conn.send(("raised", call.op, f"result could not be sent back: {exc!r}",
                           reply[-2], {}))
        conn.send(("done",))


def worker_main(conn: Connection, spec: str, device: str, methods: Sequence[str],
                dtypes: Sequence[str], crash_log: str) -> None:
    """Entry point of the worker process (public so that *spawn* can import it)."""
    # Ctrl-C goes to the whole process group; the parent decides, writes its reports and then
    # stops the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    log = open(crash_log, "w")  # noqa: SIM115 - must stay open for faulthandler until exit
    faulthandler.enable(log)
    from normspec.adapters import registry

    try:
        adapter = registry.load(spec)
        info = _describe(adapter, device, methods, dtypes)
    except registry.AdapterLoadError as exc:
        # A name that resolves to nothing is a usage error: one line, no traceback.
        conn.send(("load_error", str(exc), "usage"))
        return
    except BaseException:
        conn.send(("load_error", traceback.format_exc(limit=-10), "adapter"))
        return
    conn.send(("ready", info))
    _serve(conn, adapter, device)


# ---------------------------------------------------------------------------------------------
# The parent side.


def _exit_text(code: int | None) -> str:
    if code is None:
        return "stopped responding"
    if code < 0:
        try:
            return f"was killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


class Worker:
    """A persistent worker process for one adapter on one device.

    ``timeout`` bounds each adapter call (seconds); ``startup_timeout`` bounds loading the
    adapter (importing a framework can take a while). When one kind of call (``forward``,
    ``vjp``, ...) crashes or times out more than ``max_restarts`` times in a row, with no answer
    to that kind of call in between, the worker gives up on it: every further call of that kind
    is an error without running, so an adapter that hangs on every ``vjp`` costs a few timeouts,
    not one per case. Answers to other kinds of call do not reset the count (an adapter that
    answers ``case_support`` and then hangs in ``forward`` is still given up on). When the worker
    cannot be restarted at all, every further call is an error.
    """

    def __init__(self, spec: str, device: str, methods: Sequence[str], dtypes: Sequence[str],
                 *, timeout: float = 60.0, startup_timeout: float = 300.0,
                 max_restarts: int = 5) -> None:
        self.spec = spec
        self.device = device
        self.methods = tuple(methods)
        self.dtypes = tuple(dtypes)
        self.timeout = timeout
        self.startup_timeout = startup_timeout
        self.max_restarts = max_restarts
        self.info: WorkerInfo | None = None
        self._proc: Any = None
        self._conn: Connection | None = None
        self._log_dir = tempfile.TemporaryDirectory(prefix="normspec-worker-")
        self._crash_log = os.path.join(self._log_dir.name, "faulthandler.log")
        self._closed = False
        self._failures: dict[str, int] = {}
        self._gave_up_on: dict[str, str] = {}
        self._gave_up = ""

    # Lifecycle -------------------------------------------------------------------------------

    def start(self) -> WorkerInfo:
        """Start the process and load the adapter; raise :class:`WorkerStartError` on failure."""
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe(duplex=True)
        proc = ctx.Process(target=worker_main, name=f"normspec-worker[{self.spec}]",
                           args=(child, self.spec, self.device, self.methods, self.dtypes,
                                 self._crash_log), daemon=True)
        proc.start()
        # Without closing our copy of the child's end, a dead worker would never read as EOF.
        child.close()
        self._proc, self._conn = proc, parent
        try:
            msg = parent.recv() if parent.poll(self.startup_timeout) else None
        except (EOFError, OSError):
            proc.join(5)
            text = (f"the worker for adapter {self.spec!r} {_exit_text(proc.exitcode)} while "
                    f"loading it{self._crash_text()}")
            self._kill()
            raise WorkerStartError(text) from None
        if msg is None or msg[0] != "ready":
            self._kill()
            if msg is not None and msg[-1] == "usage":
                raise WorkerStartError(msg[1], usage=True)
            raise WorkerStartError(
                f"adapter {self.spec!r} did not load within {self.startup_timeout:g} s"
                if msg is None else f"adapter {self.spec!r} failed to load:\n{msg[1]}")
        info: WorkerInfo = msg[1]
        self.info = info
        return info

    def close(self) -> None:
        """Stop the worker process (politely, then by force) and remove its scratch files.

        A closed worker never starts again: a call still in flight on another thread ends in
        an error outcome instead of a new process."""
        self._closed = True
        if self._conn is not None and self._proc is not None and self._proc.is_alive():
            with contextlib.suppress(OSError):
                self._conn.send(None)
            self._proc.join(2)
        self._kill()
        self._log_dir.cleanup()

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _kill(self) -> None:
        if self._proc is not None:
            if self._proc.is_alive():
                self._proc.kill()
            self._proc.join(5)
        if self._conn is not None:
            self._conn.close()
        self._proc, self._conn = None, None

    def _crash_text(self) -> str:
        try:
            with open(self._crash_log) as f:
                text = f.read().strip()
        except OSError:
            return ""
        return f"\nfaulthandler:\n{text[-2000:]}" if text else ""

    # Calls -----------------------------------------------------------------------------------

    def run_case(self, method: str, dtype: str, inputs: Mapping[str, Any],
                 hyper: Mapping[str, Any], calls: Sequence[Call]) -> list[Outcome]:
        """Make ``calls`` on one case; one :class:`Outcome` per call, in order. Never raises for
        an adapter's failure (exception, hang, crash): those come back as outcomes."""
        outcomes: list[Outcome] = []
        pending = list(calls)
        while pending:
            if self._closed:
                outcomes += [Outcome(c.op, error="not run: the worker was closed") for c in pending]
                break
            if self._gave_up:
                outcomes += [Outcome(c.op, error=self._gave_up) for c in pending]
                break
            outcomes += [Outcome(c.op, error=self._gave_up_on[c.op]) for c in pending
                         if c.op in self._gave_up_on]
            pending = [c for c in pending if c.op not in self._gave_up_on]
            if not pending:
                break
            if self._conn is None:
                try:
                    self.start()
                except WorkerStartError as exc:
                    self._gave_up = f"not run: the adapter worker could not restart: {exc}"
                    continue
            got = self._round_trip(method, dtype, inputs, hyper, pending)
            outcomes += got
            pending = pending[len(got):]
        return outcomes

    def _round_trip(self, method: str, dtype: str, inputs: Mapping[str, Any],
                    hyper: Mapping[str, Any], calls: Sequence[Call]) -> list[Outcome]:
        """Send ``calls``; return the outcomes up to and including the first hang or crash."""
        conn = self._conn
        assert conn is not None
        out: list[Outcome] = []
        try:
            conn.send((method, dtype, dict(inputs), dict(hyper), list(calls)))
        except OSError:
            return [self._lost(calls[0].op, 0.0)]
        for call in calls:
            start = time.perf_counter()
            try:
                ready = conn.poll(self.timeout)
                msg = conn.recv() if ready else None
            except (EOFError, OSError):
                return [*out, self._lost(call.op, time.perf_counter() - start)]
            if msg is None:
                self._kill()
                self._count_failure(call.op)
                return [*out, Outcome(call.op, duration_s=time.perf_counter() - start, error=(
                    f"timed out: {call.op} did not return within {self.timeout:g} s "
                    f"(the worker was killed and restarted)"))]
            kind, op, payload, seconds, timing = msg
            self._failures.pop(op, None)
            if kind == "ok":
                out.append(Outcome(op, value=payload, duration_s=seconds,
                                   compile_s=timing.get("compile_s"), run_s=timing.get("run_s")))
            elif kind == "declined":
                out.append(Outcome(op, declined=str(payload)))
            else:
                out.append(Outcome(op, error=f"the adapter raised:\n{payload}".rstrip(),
                                   duration_s=seconds))
        try:
            if not conn.poll(self.timeout) or conn.recv() != ("done",):
                raise EOFError
        except (EOFError, OSError):
            # Every call answered; a worker that then misbehaves is replaced before the next case.
            self._kill()
        return out

    def _lost(self, op: str, seconds: float) -> Outcome:
        proc = self._proc
        if proc is not None:
            proc.join(5)
        what = _exit_text(proc.exitcode if proc is not None else None)
        crash = self._crash_text()
        self._kill()
        self._count_failure(op)
        return Outcome(op, duration_s=seconds, error=(
            f"crashed: the worker process {what} during {op} (the worker was restarted)"
            + crash))

    def _count_failure(self, op: str) -> None:
        n = self._failures[op] = self._failures.get(op, 0) + 1
        if n > self.max_restarts:
            self._gave_up_on[op] = (
                f"not run: {op} crashed or timed out {n} times in a row in the worker of "
                f"{self.spec!r}; giving up on its {op} calls")


__all__ = ["CALL_OPS", "Call", "Foreign", "Outcome", "SupportInfo", "Worker", "WorkerInfo",
           "WorkerStartError", "checked_devices", "support_info", "worker_main"]
