"""The plugins that ship with harness.

They use only the public plugin API (``harness.hookimpl`` and ``harness.plugin.contracts``) and are
loaded by the same plugin manager as installed plugins; nothing in the core imports them.
"""
