"""What a benchmark result depends on, recorded with every run: the machine and its settings.

CPU model and core count (``/proc/cpuinfo``, ``os``), the last-level cache size (from
``/sys/devices/system/cpu/cpu0/cache``, else ``lscpu``; the source is recorded), thread
settings (``OMP_NUM_THREADS`` and friends), ``XLA_FLAGS``, and the spec peak bandwidth where it is
known (:data:`PEAKS`, matched on the GPU name) or given with ``--peak-gbs``.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

PEAKS: Mapping[str, float] = {
    "H200": 4800.0,
    "H100 SXM": 3350.0,
    "H100 80GB HBM3": 3350.0,
    "H100 PCIe": 2000.0,
    "A100-SXM4-80GB": 2039.0,
    "A100 80GB": 2039.0,
    "A100-SXM4-40GB": 1555.0,
    "L40S": 864.0,
}
"""Spec DRAM bandwidth in GB/s by GPU name fragment (vendor data sheets). CPUs: unknown unless
given with ``--peak-gbs``, since a socket's figure depends on the populated channels."""

ENV_KEYS = ("XLA_FLAGS", "XLA_PYTHON_CLIENT_PREALLOCATE", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
            "OPENBLAS_NUM_THREADS", "CUDA_VISIBLE_DEVICES", "NORMSPEC_JAX_CACHE")


def _parse_size(text: str) -> int | None:
    m = re.match(r"^\s*([\d.]+)\s*([KMG]?)(i?B)?", text.strip(), re.IGNORECASE)
    if not m:
        return None
    scale = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[m.group(2).upper()]
    return int(float(m.group(1)) * scale)


def last_level_cache(root: Path = Path("/sys/devices/system/cpu/cpu0/cache")
                     ) -> tuple[int | None, str]:
    """(bytes, source) of the CPU's last-level cache; (None, why) when unknown."""
    best: tuple[int, int] | None = None
    if root.is_dir():
        for index in sorted(root.glob("index*")):
            try:
                level = int((index / "level").read_text())
                kind = (index / "type").read_text().strip()
                size = _parse_size((index / "size").read_text())
            except (OSError, ValueError):
                continue
            if kind in ("Unified", "Data") and size and (best is None or level > best[0]):
                best = (level, size)
        if best is not None:
            return best[1], f"{root}/index*/size (L{best[0]}, per instance)"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None, "unknown: no /sys cache information and no lscpu"
    for name in ("L3", "L2"):
        m = re.search(rf"^{name} cache:\s*(.+)$", out, re.MULTILINE)
        if m and (size := _parse_size(m.group(1))):
            return size, f"lscpu ({name}: {m.group(1).strip()})"
    return None, "unknown: lscpu shows no L3 or L2"


def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    m = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return m.group(1).strip() if m else (platform.processor() or platform.machine())


def peak_for(device_name: str) -> tuple[float | None, str]:
    """Spec peak GB/s for a device name, and where it came from."""
    for fragment, peak in PEAKS.items():
        if fragment.lower() in device_name.lower():
            return peak, f"spec sheet ({fragment})"
    return None, "unknown (pass --peak-gbs to set one)"


def gpu_info() -> dict[str, Any] | None:
    """Name, memory and L2 size of the current CUDA device, when torch sees one."""
    import importlib.util
    import sys

    if "torch" not in sys.modules and importlib.util.find_spec("torch") is None:
        return None
    import torch

    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    return {"name": str(props.name), "memory_bytes": int(props.total_memory),
            "l2_cache_bytes": int(getattr(props, "L2_cache_size", 0)) or None,
            "multiprocessors": int(props.multi_processor_count)}


def host(note: str = "") -> dict[str, Any]:
    """The machine as a benchmark result records it."""
    llc, source = last_level_cache()
    return {
        "cpu": cpu_model(), "cpu_count": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "llc_bytes": llc, "llc_source": source,
        "platform": platform.platform(), "python": platform.python_version(),
        "env": {k: os.environ.get(k) for k in ENV_KEYS},
        "note": note,
    }


__all__ = ["PEAKS", "cpu_model", "gpu_info", "host", "last_level_cache", "peak_for"]
