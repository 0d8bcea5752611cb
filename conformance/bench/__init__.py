"""``normspec bench``: effective bandwidth per method, adapter and device, against the same
device's copy roofline.

* :mod:`.bytes_model`: the bytes one call moves (spec/bytes-model.md);
* :mod:`.workloads`: methods, shapes (transformer rows, CNN maps, a size sweep) and inputs;
* :mod:`.timing`: warm-up, samples, median and spread;
* :mod:`.machine`: CPU/GPU model, last-level cache, environment, spec peaks;
* :mod:`.harness`: the run (adapters' benchmarking extension, or the protocol as fallback);
* :mod:`.output`: JSON (spec/bench.schema.json), the summary table, the plots.

Nothing here imports a framework; adapters do, when a run loads them.
"""
