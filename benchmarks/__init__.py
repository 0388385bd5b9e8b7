"""Benchmark scripts, and the planted heads they share (``benchmarks.planted_heads``)."""
