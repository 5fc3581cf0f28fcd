"""Amaranth HDL blocks of the accelerator, all parameterised from :mod:`moeaccel.config`."""
