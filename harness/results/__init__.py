"""The run directory and everything derived from it: schema, store, checkpoints, tables, statistics, charts, report, compare."""
