"""Reading a user's YAML file (config, workload, sweep) with one-line errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from moeaccel.errors import UserError


def _user_error(where: str, problem: str) -> UserError:
    return UserError(f"{where}: {problem}")


def read_yaml(path: Path, what: str = "file",
              error: Callable[[str, str], UserError] = _user_error) -> Any:
    """The parsed contents of ``path`` (None for an empty file). A missing or unreadable file and
    invalid YAML raise ``error(where, problem)``: ``<path>: no such <what>``, ``<path>: cannot be
    read (...)`` or ``<path>:<line>: not valid YAML (...)``."""
    if not path.exists():
        raise error(str(path), f"no such {what}")
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise error(str(path), f"cannot be read ({getattr(exc, 'strerror', None) or exc})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise error(where, f"not valid YAML ({getattr(exc, 'problem', exc)})") from None
