"""The shared stream driver / monitor / scoreboard layer, under the name the test benches use.

The layer itself is :mod:`moeaccel.benches.streams` (the library's measurement benches for
``moeaccel validate`` use it too); this module re-exports it unchanged, so
``from tests.hw.streams import Bench, StreamSource, ...`` keeps working. Read that module for
the documentation and the testbench skeleton.
"""

from moeaccel.benches.streams import *  # noqa: F401,F403  (the whole public API)
from moeaccel.benches.streams import STALL_CYCLES, Layout, Pattern  # noqa: F401
