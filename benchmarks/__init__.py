"""Benchmarks: each is a module with a ``main()`` that prints its figures and writes a JSON file
to ``benchmarks/results/``. Run all with ``make bench`` (``python -m benchmarks.run_all``)."""
