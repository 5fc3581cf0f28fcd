"""The one exception type for problems a user can cause and fix.

Anything a user controls (a config file, a trace, a sweep file, a CLI argument) that is wrong is
reported as a :class:`UserError` whose message names the key or file and the problem in one line.
The CLI prints that line and exits with status 2; library callers can catch it.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem in user input, reported as one line that names what is wrong."""


class ConfigError(UserError):
    """A design config (YAML or override) has a wrong key, type or value."""

    def __init__(self, where: str, problem: str):
        self.where = where
        self.problem = problem
        super().__init__(f"{where}: {problem}")
