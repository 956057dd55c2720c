"""What the machine gives a run: the device, its cores, and the maths library's determinism."""
