"""Cycle-level simulator of the accelerator, parameterised by the same design config as the RTL."""
