"""tests/hw/runner.py without a simulator: build caching and locking, test filters, results."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tests.hw import runner

VERILOG = '(* src = "hw/x.py:10" *)\nmodule m(input clk);\nendmodule\n'


class FakeVerilator:
    """Stands in for cocotb's Verilator runner: counts builds, takes a while, may fail."""

    calls: list[Path] = []
    fail = False

    def build(self, *, sources, hdl_toplevel, build_dir, log_file, **kwargs):
        FakeVerilator.calls.append(Path(build_dir))
        time.sleep(0.3)
        Path(log_file).write_text("%Error: something broke\n" if self.fail else "ok\n")
        if self.fail:
            raise RuntimeError("Command failed with return code: 1")


@pytest.fixture
def fake_verilator(monkeypatch, tmp_path):
    monkeypatch.setattr(runner, "BUILD_ROOT", tmp_path)
    monkeypatch.setattr(runner, "_verilator_runner", FakeVerilator)
    FakeVerilator.calls = []
    FakeVerilator.fail = False
    return FakeVerilator


def test_concurrent_builds_of_one_model_compile_once(fake_verilator):
    results = []
    threads = [threading.Thread(target=lambda: results.append(runner._build_verilog("m", "m",
                                                                                    VERILOG)))
               for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(fake_verilator.calls) == 1
    assert len({r.directory for r in results}) == 1
    assert (results[0].directory / "built.ok").exists()
    assert (results[0].directory / "m.v").read_text() == VERILOG


def test_cache_key_ignores_source_locations_only(fake_verilator):
    first = runner._build_verilog("m", "m", VERILOG).directory
    moved = runner._build_verilog("m", "m", VERILOG.replace("x.py:10", "x.py:99")).directory
    changed = runner._build_verilog("m", "m", VERILOG.replace("input clk", "input clk, rst"))
    assert moved == first and changed.directory != first
    assert fake_verilator.calls == [first, changed.directory]


def test_failed_build_reports_log_and_is_retried(fake_verilator):
    fake_verilator.fail = True
    with pytest.raises(RuntimeError, match="(?s)Verilator build of m failed.*something broke"):
        runner._build_verilog("m", "m", VERILOG)
    fake_verilator.fail = False
    runner._build_verilog("m", "m", VERILOG)
    assert len(fake_verilator.calls) == 2


@pytest.mark.parametrize("name, selected", [
    ("tests.hw.test_x.stress", True),
    ("tests.hw.test_x.stress/pattern=full", True),
    ("tests.hw.test_x.stress_long", False),
    ("tests.hw.test_x.reset", True),
    ("tests.hw.test_x.other", False),
])
def test_testcase_filter_selects_named_tests_and_their_parametrisations(name, selected):
    import re

    assert bool(re.search(runner._test_filter(["stress", "reset"]), name)) == selected
    assert runner._test_filter(None) is None


def test_failed_tests_are_named_with_message_traceback_and_seed(tmp_path):
    xml = tmp_path / "results.xml"
    xml.write_text(
        '<testsuites><testsuite name="t" tests="2">'
        '<testcase name="good"/>'
        '<testcase name="bad"><failure message="o: item 3: expected 3, got 4">Traceback\n'
        '  File "x.py", line 1\nAssertionError: o: item 3: expected 3, got 4</failure>'
        '<system-err>Test failed with COCOTB_RANDOM_SEED=42</system-err></testcase>'
        '</testsuite></testsuites>')
    total, failed = runner.failed_tests(xml)
    assert total == 2 and len(failed) == 1
    assert failed[0].startswith("bad: o: item 3: expected 3, got 4")
    assert "COCOTB_RANDOM_SEED=42" in failed[0] and 'File "x.py"' in failed[0]
    with pytest.raises(AssertionError, match="1 of 2 cocotb tests failed"):
        runner._check_results(xml, "blk[tiny]", "tests.hw.test_x", tmp_path / "sim.log")
    with pytest.raises(AssertionError, match="ended abnormally"):
        runner._check_results(tmp_path / "missing.xml", "blk", "tests.hw.test_x",
                              tmp_path / "sim.log")
