"""moeaccel: an open Mixture-of-Experts inference accelerator (Amaranth HDL), its bit-exact NumPy
golden model, its cycle-level simulator and its open FPGA flow.

The design config (:mod:`moeaccel.config`) is the one source of truth every part reads.
"""

from .config import DesignConfig, load
from .errors import ConfigError, UserError

__all__ = ["DesignConfig", "load", "ConfigError", "UserError"]
__version__ = "0.1.0"
