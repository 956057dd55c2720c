"""Task files shipped with harness (installed as the ``harness_tasks`` package).

Each ``*.toml`` here defines a task by name; see ``timemachine.toml`` for the format.
"""
