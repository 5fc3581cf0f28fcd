"""Timing of the MoE engine's controller (``hw/moe_controller.py``): how the engine composes its
blocks into a layer (the schedule of :mod:`hw.moe_engine`, which :mod:`sim.schedule` follows).

Cycle convention: cycle 0 is the one after the ``start`` handshake (the first cycle counted by
``status.cycles``); the layer ends with the last ``out`` beat, ``status.cycles - 1``.

* **Fetch** ``i`` (one command per matrix, :mod:`sim.timing.weight_fetch`) is issued in the
  first cycle in which it is known (the gate and the shared experts' matrices: cycle 0; the
  routed experts': the cycle after the router's read-out has been stored), the previous fetch
  is done, and its slot is free (matrix ``i - slots`` streamed: the cycle after its last weight
  beat).
* **GEMM** ``g``: its commands are handshaken in cycle
  ``max(previous GEMM's end + GEMM_GAP, fetch done + FETCHED_TO_COMMAND)``, where a GEMM's end
  is the cycle after its completion (last output row consumed) and a fetch is done in the cycle
  ``done`` pulses; cycles the GEMM waits beyond the gap count as ``weight_wait``.
* **Router**: after the router GEMM (complete when the logit serialiser is idle) the router is
  flushed (``FLUSH_CYCLES``) once its pipeline has drained; the read-out is stored when the
  router falls idle (:func:`sim.timing.router.readout_cycles`), and the next cycle the
  controller knows the routed experts.
* **Read-out**: after the last GEMM2 the scatter block takes the read-out command once its
  accumulate pipeline has drained (:func:`sim.timing.scatter.next_command_after_rows`).
"""

from __future__ import annotations

#: cycles from the previous GEMM's end (the cycle after its completion) to the next GEMM's
#: command handshake: one ``WAIT_WEIGHTS`` cycle checking the matrix is on chip
GEMM_GAP = 1
#: cycles from a fetch's ``done`` pulse to the earliest command handshake of its GEMM: the
#: ``fetched`` counter is registered, ``WAIT_WEIGHTS`` sees it, the commands are registered
FETCHED_TO_COMMAND = 2
#: cycles from the router GEMM's end to the earliest flush handshake (``FLUSH`` state)
FLUSH_CYCLES = 0
#: cycles from the router falling idle to the routed experts being known (``DRAIN`` -> next)
KNOWN_AFTER_IDLE = 1
