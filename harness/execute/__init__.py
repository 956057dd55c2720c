"""Executors: run a plan's combinations serially, in worker processes or on Ray; signals."""
