"""Benchmark tables generated from ``benchmarks/results/*.json``.

``python -m benchmarks.tables`` writes docs/benchmarks.md (every benchmark's full tables, each
figure beside its same-run baseline, with the run's machine, settings and targets) and the
README's headline table; ``--check`` exits 1 naming the file that differs from what the JSON
gives. One renderer module per results file; :mod:`benchmarks.tables.generic` covers a file
without one.
"""

from benchmarks.tables.document import RENDERERS, Built, TablesError, build, with_headline

__all__ = ["RENDERERS", "Built", "TablesError", "build", "with_headline"]
