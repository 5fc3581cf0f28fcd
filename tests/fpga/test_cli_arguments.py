"""``moeaccel fpga`` rejects impossible numbers, unknown routers and bad seed lists with one
argparse error line before any tool runs."""

from __future__ import annotations

import pytest

from moeaccel import cli


@pytest.mark.parametrize("args, problem", [
    (["--baud", "0"], "argument --baud: must be > 0, got 0"),
    (["--baud", "-9600"], "argument --baud: must be > 0, got -9600"),
    (["--clock-mhz", "0"], "argument --clock-mhz: must be > 0, got 0"),
    (["--clock-mhz", "fast"], "argument --clock-mhz: not a number: 'fast'"),
    (["--router", "router3"], "argument --router: invalid choice: 'router3' (choose from "
                              "'router2', 'router1')"),
    (["--seed", "1,x"], "argument --seed: not a comma-separated list of integers: '1,x'"),
    (["--seed", "2,3,2"], "argument --seed: a seed is repeated: 2,3,2"),
])
def test_non_positive_or_non_numeric_is_one_error(capsys, args, problem):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["fpga", "--board", "ulx3s-85f", *args])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith(problem)
    assert not any("Traceback" in line for line in err)
