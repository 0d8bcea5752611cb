"""The JAX device process: ``python -m normspec.adapters.jax_adapter._devices``.

Started by :mod:`.distributed` with ``XLA_FLAGS=--xla_force_host_platform_device_count=4`` and
``JAX_PLATFORMS=cpu`` (a child of the adapter's worker, whose own JAX keeps its one device). It
switches on float64 as the adapter does, checks that it has its devices, says it is ready and
serves requests (:func:`.sync_batch_norm.run`) until its parent closes the pipe or goes away.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str]) -> None:
    from .. import _children

    conn = _children.connect()
    _children.watch_parent()
    import jax

    from . import _runtime
    from .distributed import DEVICES
    from .sync_batch_norm import run

    _runtime.enable_x64()
    found = len(jax.devices("cpu"))
    if found < DEVICES:
        raise RuntimeError(f"the device process has {found} CPU devices, expected {DEVICES} "
                           "(XLA_FLAGS --xla_force_host_platform_device_count was not applied)")
    _children.ready(conn, {"devices": found, "jax": jax.__version__})
    _children.serve(conn, run)


if __name__ == "__main__":
    main(sys.argv[1:])
