"""Benchmarks of sb3-bayes (not part of the package; run from the repository root, see benchmarks/README.md)."""
