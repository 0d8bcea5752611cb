"""``mutant-sync-local-mean``: each worker centers its shard with its own mean, not the global one.

Bug class: synchronizing the variance (or nothing) but subtracting the per-worker batch mean, as
plain batch norm does on each device of a data-parallel job. Exposed by every sync_batch_norm
training case whose workers' means differ (two or more non-empty shards): y, the input gradient
and the JVP move by (mean_i - mean) * rstd. With one non-empty worker the local mean is the
global one, so those cases cannot see it.
"""

from __future__ import annotations

from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter
from normspec.adapters.numpy_adapter._precision import Num


class SyncLocalMean(Numerics):
    def worker_mean(self, global_mean: Num, local_mean: Num) -> Num:
        return local_mean


MUTANT = NumpyAdapter("mutant-sync-local-mean", SyncLocalMean())
