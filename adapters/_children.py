"""Helper processes for the distributed adapters: start them once, talk to them, always stop them.

A distributed method runs on several workers with real collectives, so the adapter (itself in
the runner's worker process) starts helper processes: one per rank for torch.distributed, one
with several host devices for JAX. Starting a framework costs seconds, so a :class:`Children`
group is started on first use and kept for the calls that follow.

* Each child is ``python -m <module> <args>``, talking to the parent over two pipes handed down
  with ``pass_fds`` (no port to find, no socket to secure). Its stdout is moved to stderr so that
  nothing a framework prints can corrupt the protocol; stderr goes to a file whose tail is
  quoted when the child fails.
* Messages are pickled Python objects (NumPy arrays, numbers, strings) through
  :class:`multiprocessing.connection.Connection`.
* Stopping: :meth:`Children.close` asks, then kills. A group is also closed when it is garbage
  collected or the parent exits (``weakref.finalize``), and each child runs :func:`watch_parent`,
  which ends the child as soon as its parent is gone (a parent killed by SIGKILL runs no exit
  handler, and a child blocked in a collective never reads the closed pipe).
* A failed call (an exception in a child, a crash, a timeout) closes the whole group: the other
  children may be blocked in a collective waiting for the failed one. The next call starts a
  fresh group.

POSIX only (``pass_fds``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import weakref
from collections.abc import Callable, Mapping, Sequence
from multiprocessing.connection import Connection
from typing import Any

FDS_VAR = "NORMSPEC_CHILD_FDS"
"""Environment variable that tells a child its pipe descriptors, ``"<read>,<write>"``."""


class ChildError(RuntimeError):
    """A child failed: it raised, crashed, or did not answer in time (the message says which)."""


def _stop(procs: Sequence[subprocess.Popen[bytes]], conns: Sequence[Connection],
          grace: float) -> None:
    """Close the pipes (a child reading them exits), wait up to ``grace`` s, then kill."""
    for conn in conns:
        with contextlib.suppress(OSError):
            conn.send(None)
        conn.close()
    deadline = time.monotonic() + grace
    for proc in procs:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class Children:
    """A group of ``count`` helper processes running ``python -m module *argv(i)``.

    ``env`` is added to the parent's environment (``None`` values remove a variable).
    """

    def __init__(self, module: str, count: int, argv: Callable[[int], Sequence[str]],
                 env: Mapping[str, str | None] | None = None, *,
                 startup_timeout: float = 120.0) -> None:
        self.module = module
        self.count = count
        self._argv = argv
        self._env = dict(env or {})
        self.startup_timeout = startup_timeout
        self._procs: list[subprocess.Popen[bytes]] = []
        self._conns: list[Connection] = []
        self._logs = tempfile.TemporaryDirectory(prefix="normspec-children-")
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self.startup_s = 0.0
        """Seconds the last start took (until every child said it was ready)."""

    @property
    def alive(self) -> bool:
        return bool(self._procs) and all(p.poll() is None for p in self._procs)

    def start(self) -> None:
        """Start every child and wait for each one's first message (its ready signal)."""
        begin = time.monotonic()
        env = dict(os.environ)
        for key, value in self._env.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        try:
            for i in range(self.count):
                self._spawn(i, env)
            # The ready signals: each child connects to its peers (a collective setup) first.
            self._gather([None] * self.count, self.startup_timeout, "starting")
        except BaseException:
            self.close()
            raise
        self.startup_s = time.monotonic() - begin

    def _spawn(self, index: int, env: dict[str, str]) -> None:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        log = open(os.path.join(self._logs.name, f"child{index}.log"), "wb")  # noqa: SIM115
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", self.module, *self._argv(index)],
                env={**env, FDS_VAR: f"{to_child_r},{from_child_w}"},
                pass_fds=(to_child_r, from_child_w), stdin=subprocess.DEVNULL, stdout=log,
                stderr=log, start_new_session=False)
        finally:
            log.close()
            os.close(to_child_r)
            os.close(from_child_w)
        self._procs.append(proc)
        self._conns.append(_Duplex(from_child_r, to_child_w))
        if self._finalizer is None:
            self._finalizer = weakref.finalize(self, _stop, self._procs, self._conns, 2.0)

    def request(self, messages: Sequence[Any], timeout: float) -> list[Any]:
        """Send ``messages[i]`` to child ``i`` and return their answers, in order.

        Fewer messages than children address the first ones only; the others stay idle.
        Raises :class:`ChildError` (and closes the group) when a child raises, dies or does not
        answer within ``timeout`` seconds.
        """
        if not 1 <= len(messages) <= self.count:
            raise ValueError(f"argument 'messages': got {len(messages)}, expected 1 to "
                             f"{self.count} (one per child addressed)")
        if not self.alive:
            self.close()
            self.start()
        for conn, message in zip(self._conns, messages, strict=False):
            try:
                conn.send(message)
            except OSError as exc:
                self.close()
                raise ChildError(f"could not send to a child of {self.module}: {exc}") from exc
        return self._gather(messages, timeout, "answering")

    def _gather(self, messages: Sequence[Any], timeout: float, doing: str) -> list[Any]:
        deadline = time.monotonic() + timeout
        answers: list[Any] = [None] * len(messages)
        failure = ""
        for i, conn in enumerate(self._conns[:len(messages)]):
            # After one child failed the others are likely blocked in a collective: give them
            # a moment to fail too (their errors are more telling), not the whole timeout.
            wait = max(0.0, deadline - time.monotonic()) if not failure else 1.0
            try:
                ready = conn.poll(wait)
                reply = conn.recv() if ready else None
            except (EOFError, OSError):
                failure = failure or self._died(i, doing)
                continue
            if reply is None:
                failure = failure or (f"child {i} of {self.module} did not finish {doing} within "
                                      f"{timeout:g} s{self._tail(i)}")
                continue
            kind, payload = reply
            if kind == "ok":
                answers[i] = payload
            else:
                failure = failure or f"child {i} of {self.module} raised while {doing}:\n{payload}"
        if failure:
            self.close()
            raise ChildError(failure)
        return answers

    def _died(self, index: int, doing: str) -> str:
        proc = self._procs[index]
        try:
            code = proc.wait(5)
        except subprocess.TimeoutExpired:
            code = None
        how = ("stopped responding" if code is None else
               f"was killed by {signal.Signals(-code).name}" if code < 0 else
               f"exited with status {code}")
        return f"child {index} of {self.module} {how} while {doing}{self._tail(index)}"

    def _tail(self, index: int, limit: int = 3000) -> str:
        try:
            with open(os.path.join(self._logs.name, f"child{index}.log"), "rb") as f:
                text = f.read().decode("utf-8", "replace").strip()
        except OSError:
            return ""
        return f"\nits output ends with:\n{text[-limit:]}" if text else ""

    def close(self) -> None:
        """Stop every child (politely, then by force). The group may be started again."""
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None
        self._procs, self._conns = [], []


class _Duplex(Connection):
    """One connection over two pipes: receive from ``read_fd``, send on ``write_fd``."""

    def __init__(self, read_fd: int, write_fd: int) -> None:
        super().__init__(read_fd, readable=True, writable=False)
        self._out = Connection(write_fd, readable=False, writable=True)

    def send(self, obj: Any) -> None:
        self._out.send(obj)

    def close(self) -> None:
        super().close()
        self._out.close()


# --- the child's side ---------------------------------------------------------------------


def watch_parent(period: float = 0.5) -> None:
    """End this process (exit status 3) as soon as the process that started it is gone."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(period)
            if os.getppid() != parent:
                os._exit(3)

    threading.Thread(target=watch, name="normspec-watch-parent", daemon=True).start()


def connect() -> Connection:
    """This child's connection to its parent, with stdout moved to stderr and SIGINT ignored.

    The runner decides about Ctrl-C (it reaches the whole process group) and then stops its
    workers, which stop their children.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    read_fd, write_fd = (int(v) for v in os.environ[FDS_VAR].split(","))
    sys.stdout.flush()
    os.dup2(2, 1)
    return _Duplex(read_fd, write_fd)


def serve(conn: Connection, handle: Callable[[Any], Any]) -> None:
    """Answer ``handle(message)`` to each message until None or the parent closes the pipe.

    An exception becomes an ``("error", traceback)`` answer and the loop goes on (the parent
    decides whether the group survives).
    """
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        try:
            reply: tuple[str, Any] = ("ok", handle(message))
        except Exception:
            reply = ("error", traceback.format_exc(limit=-12))
        try:
            conn.send(reply)
        except (OSError, ValueError):
            return


def ready(conn: Connection, info: Any = None) -> None:
    """Tell the parent this child is set up (the answer :meth:`Children.start` waits for)."""
    conn.send(("ok", info))


__all__ = ["ChildError", "Children", "connect", "ready", "serve", "watch_parent"]
