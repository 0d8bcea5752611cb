"""``mutant-sync-local-count``: the unbiased running variance is corrected with the worker's count.

Bug class: var * n_i / (n_i - 1) with a worker's own n_i instead of the global n, as a worker
that reuses its local batch norm's update would. Exposed by the sync_batch_norm state check with
``running_var_estimator="unbiased"``: on equal shards every worker agrees on the wrong factor
(w2-even-unbiased: 6/5 for 12/11, w4-even-unbiased: 2/1 for 8/7), on uneven ones the workers'
running statistics disagree, which the adapter refuses (an error), and one row per worker asks
for 1/0, which it refuses too. The biased estimator cannot see it.
"""

from __future__ import annotations

from collections.abc import Sequence

from normspec.adapters.numpy_adapter import Numerics, NumpyAdapter


class SyncLocalCount(Numerics):
    def sync_count(self, counts: Sequence[int], worker: int) -> int:
        return counts[worker]


MUTANT = NumpyAdapter("mutant-sync-local-count", SyncLocalCount())
