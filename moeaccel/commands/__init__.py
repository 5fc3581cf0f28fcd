"""Subcommands of the ``moeaccel`` CLI, one module each (see :mod:`moeaccel.cli`)."""
