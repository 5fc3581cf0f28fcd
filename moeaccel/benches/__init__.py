"""cocotb benches that live in the library: the stream layer (:mod:`.streams`) and the
measurement benches ``moeaccel validate`` runs on Verilator (one module per DUT).

A measurement bench is a cocotb test module with one test, ``measure``. It reads its cases from
the JSON file named by ``$MOEACCEL_VALIDATE_CASES`` (a list of dicts, each with a ``name`` and
the case's shape), drives each case through the DUT at full rate (inputs always valid, outputs
always ready) and writes ``{name: {"cycles": measured, ...}}`` to ``$MOEACCEL_VALIDATE_RESULTS``.
"""

from __future__ import annotations

import json
import os


def cases() -> list[dict]:
    """The cases this run measures."""
    with open(os.environ["MOEACCEL_VALIDATE_CASES"]) as handle:
        return json.load(handle)


def write_results(results: dict[str, dict]) -> None:
    """Hand the measurements back to :func:`moeaccel.validate.run_cases`."""
    with open(os.environ["MOEACCEL_VALIDATE_RESULTS"], "w") as handle:
        json.dump(results, handle, indent=1)
