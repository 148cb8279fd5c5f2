"""aiolog's benchmark suite: ``python -m benchmarks`` (``--quick``, ``--write-docs``).

The measuring code lives in :mod:`aiolog._bench` (it ships with the package, for ``python
-m aiolog bench``); this package runs the full, recorded version of it, keeps the results
in ``benchmarks/results/`` and regenerates ``docs/benchmarks.md``.
"""
