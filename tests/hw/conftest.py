"""Fixtures for the cocotb testbenches under ``tests/hw``.

``hw_config`` is the design config the benches build their DUTs for: ``--hw-config NAME`` (an
option declared in ``tests/conftest.py``), default ``tiny``::

    def test_softmax(hw_config):
        runner.run("softmax", hw_config, __name__)
"""

from __future__ import annotations

import pytest


@pytest.fixture
def hw_config(request) -> str:
    """The design config name the cocotb benches run with."""
    return request.config.getoption("--hw-config")
