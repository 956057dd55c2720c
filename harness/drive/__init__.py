"""The driver: a plan, an executor and a store make a run; resume finishes one."""
