"""Benchmark tasks of the projUNN paper: copy memory and adding, with orthogonal RNNs."""
