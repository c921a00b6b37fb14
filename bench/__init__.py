"""Benchmarks: run side by side with a peer in one run, reported as ratios."""
