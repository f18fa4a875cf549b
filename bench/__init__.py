"""Benchmarks: each prints its figures and the ratio to the limit or goal it is measured against."""
