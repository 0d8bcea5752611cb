"""``normspec run`` in a child process, stopped by SIGTERM after a delay, as a CI timeout does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def run_then_sigterm(args: list[str], delay: float) -> tuple[int, str]:
    """Start ``normspec run ARGS`` (the fake adapters importable), send SIGTERM after ``delay``
    seconds, and return its exit status and standard error."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get(
        "PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "normspec.conformance.cli", "run", *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err
