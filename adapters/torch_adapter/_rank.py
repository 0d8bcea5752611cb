"""One rank of the torch adapter's process group: ``python -m ... RANK WORLD STORE BACKEND DEVICE``.

Started by :mod:`.distributed` (a child of the adapter's worker process), it joins the process
group through the file store ``STORE``, creates the subgroups of ranks ``0..k-1`` for every
``k < WORLD``, says it is ready and then serves requests (:func:`.sync_batch_norm.run`) until
its parent closes the pipe or goes away.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import timedelta

COLLECTIVE_TIMEOUT_S = 60.0
"""How long a collective waits for the other ranks before it raises (a rank that failed)."""


def main(argv: Sequence[str]) -> None:
    from .. import _children

    rank, world, store, backend, device = (int(argv[0]), int(argv[1]), argv[2], argv[3],
                                           argv[4])
    conn = _children.connect()
    _children.watch_parent()
    import torch
    import torch.distributed as dist

    # W ranks share the machine's cores: one thread each, so that they do not oversubscribe.
    torch.set_num_threads(1)
    where = torch.device(device if device == "cpu" else f"{device}:{rank}")
    if where.type == "cuda":
        torch.cuda.set_device(where)
    dist.init_process_group(backend, init_method=f"file://{store}", rank=rank, world_size=world,
                            timeout=timedelta(seconds=COLLECTIVE_TIMEOUT_S))
    # One group of ranks 0..k-1 for every world size k a case may ask for: every rank takes
    # part in creating each (a collective), and a case of W workers runs on the first W.
    groups = {k: dist.new_group(ranks=list(range(k))) for k in range(1, world)}
    groups[world] = dist.group.WORLD
    from .sync_batch_norm import run

    _children.ready(conn, {"rank": rank, "backend": dist.get_backend()})
    try:
        _children.serve(conn, lambda message: run(message, where, groups))
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1:])
