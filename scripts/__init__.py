"""Command-line entry points, the local stack and the benchmarks."""
