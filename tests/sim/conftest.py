"""Shared helpers for the simulator tests."""

from __future__ import annotations

import pytest

from moeaccel import config


@pytest.fixture(scope="session")
def tiny():
    return config.load("tiny")


@pytest.fixture(scope="session")
def m3vit():
    return config.load("m3vit-tiny")
