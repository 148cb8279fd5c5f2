"""aiolog's benchmark suite: ``python -m benchmarks`` (``--quick``, ``--write-docs``).

The core of the measuring code ships with the package, for ``python -m aiolog bench``:
:mod:`aiolog._bench` (the driver and its tables) and :mod:`aiolog._bench_worker` (one
measurement in a child process). This package imports them and adds what only the recorded
suite needs (:mod:`benchmarks.worker`: the peers, the scenario sinks and tests;
:mod:`benchmarks.suite`: scenarios, paired runs, targets), keeps the results in
``benchmarks/results/`` and regenerates ``docs/benchmarks.md``.
"""
