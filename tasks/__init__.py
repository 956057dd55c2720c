"""Task files shipped with harness (installed as the ``harness_tasks`` package).

Each ``*.toml`` here defines a task by name: its corpus, recipe defaults, prompts, default
models and samplers, and reference numbers. ``timemachine.toml`` shows every table;
:mod:`harness.data.taskfile` describes each key.
"""
