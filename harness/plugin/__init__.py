"""The plugin host: hook specs, the contracts plugins implement, the manager that loads them, the registry of what they provide."""
