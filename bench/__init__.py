"""Benchmarks of massaged against the simulator (docs/performance.md); run each as a script."""
