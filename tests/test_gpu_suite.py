"""`benchmarks/gpu_suite.sh` keeps to its budget, reports what failed or was cut, and archives.

The script is what a first GPU run depends on, so its logic is checked here with a stand-in
interpreter (`$PYTHON`): a shell script that logs each command it is given and, per module,
fails or sleeps as the test asks.
"""

import os
import re
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "benchmarks" / "gpu_suite.sh"
STEPS = ["tests_kernels", "tests_ablate", "autotune", "bench", "compare", "end_to_end",
         "host_overhead"]  # fmt: skip
# The modules each step runs, in the order the steps run.
MODULES = ["pytest", "pytest", "kernels.autotune", "kernels.bench", "kernels.bench",
           "benchmarks.end_to_end", "benchmarks.host_overhead"]  # fmt: skip

STAND_IN = """#!/usr/bin/env bash
# Answers `-c CODE` (the suite's checks of what is installed) as $HAS_XDIST says for xdist,
# else with success; logs `-m MODULE ARGS...`, prints SAY_<module>, creates the file
# MAKE_<module> names, and exits or sleeps as FAIL_/SLEEP_<module> say.
if [[ $1 == -c ]]; then
  [[ $2 == "import xdist" ]] && exit "${HAS_XDIST:-1}"
  exit 0
fi
[[ $1 == -m ]] || exit 3
module=$2
shift 2
echo "$module $*" >>"$CALLS"
key=${module//./_}
sleep_s=SLEEP_$key fail=FAIL_$key say=SAY_$key make=MAKE_$key
[[ -n ${!say:-} ]] && echo "${!say}"
[[ -n ${!make:-} ]] && mkdir -p "$(dirname "${!make}")" && touch "${!make}"
[[ -n ${!sleep_s:-} ]] && exec sleep "${!sleep_s}"
echo "ran $module"
exit "${!fail:-0}"
"""

pytestmark = pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in ("bash", "timeout", "tar")),
    reason="needs bash, timeout and tar",
)


def run_suite(tmp_path: Path, budget_s: int = 600, **env: str) -> tuple[int, Path, list[str]]:
    """Run the suite into ``tmp_path/out`` with the stand-in; return its exit, out and calls."""
    python = tmp_path / "python"
    python.write_text(STAND_IN)
    python.chmod(0o755)
    calls = tmp_path / "calls.log"
    calls.touch()
    out = tmp_path / "out"
    environ = {**os.environ, "PYTHON": str(python), "CALLS": str(calls), "BUDGET_S": str(budget_s),
               "GRACE_S": "1", "KILL_S": "1", **env}  # fmt: skip
    environ.pop("SHIFTLAB_CACHE_DIR", None)
    command = ["bash", str(SUITE), str(out), str(tmp_path / "suite.tar.gz")]
    done = subprocess.run(command, env=environ, capture_output=True, timeout=budget_s + 60)
    return done.returncode, out, calls.read_text().splitlines()


def budget_of(call: str) -> int:
    return int(re.search(r"--budget-s (-?\d+)", call).group(1))


def test_every_step_runs_in_order_with_its_share_and_the_run_is_archived(tmp_path) -> None:
    code, out, calls = run_suite(tmp_path)
    assert code == 0
    assert [call.split()[0] for call in calls] == MODULES
    # Nothing used its time, so each sweep may take the budget less the later steps' shares
    # (autotune: 600 less 18 + 14 + 14 + 8 per cent), less the grace the sweep leaves itself.
    assert 600 - 324 - 1 - 2 <= budget_of(calls[2]) <= 600 - 324 - 1
    assert 600 - 216 - 1 - 2 <= budget_of(calls[3]) <= 600 - 216 - 1
    assert 600 - 132 - 1 - 2 <= budget_of(calls[4]) <= 600 - 132 - 1
    assert 600 - 48 - 1 - 2 <= budget_of(calls[5]) <= 600 - 48 - 1
    assert "--out " + str(out / "tuned.json") in calls[2]
    # The bandwidth sweep times the fused kernels alone; the comparison, every formulation.
    assert "--impls shiftlab" in calls[3] and "--impls" not in calls[4]
    for step in STEPS:
        assert (out / f"{step}.log").read_text().startswith("ran ")
    device = (out / "device.txt").read_text()
    assert "budget 600s" in device and "commit " in device
    assert device.rstrip().endswith("test steps passed")
    with tarfile.open(tmp_path / "suite.tar.gz") as archive:
        names = set(archive.getnames())
    assert {f"out/{step}.log" for step in STEPS} | {"out/device.txt"} <= names


def test_the_tests_run_in_xdist_workers_where_it_is_installed(tmp_path) -> None:
    for has_xdist, where in (("0", tmp_path / "with"), ("1", tmp_path / "without")):
        where.mkdir()
        _, _, calls = run_suite(where, HAS_XDIST=has_xdist, JOBS="5")
        assert [" -n 5 " in call for call in calls[:2]] == [has_xdist == "0"] * 2


def test_a_failed_test_step_fails_the_suite_but_the_later_steps_still_run(tmp_path) -> None:
    code, out, calls = run_suite(tmp_path, FAIL_pytest="1")
    assert code == 1
    assert [call.split()[0] for call in calls] == MODULES
    assert "test steps FAILED" in (out / "device.txt").read_text()


def test_a_sweep_past_its_limit_is_stopped_and_named_and_the_rest_go_on(tmp_path) -> None:
    began = time.monotonic()
    code, out, calls = run_suite(tmp_path, budget_s=20, SLEEP_kernels_bench="120")
    # The bench may take its share and what the earlier steps left (20 s less the later
    # shares, 36 %): about 13 s, then SIGINT; the comparison (the same module) gets about
    # 3 s; the steps after them still run.
    assert time.monotonic() - began < 25
    assert code == 0
    assert [call.split()[0] for call in calls] == MODULES
    finished = (out / "device.txt").read_text().splitlines()[-1]
    assert finished.endswith("timed out or killed (their results are partial): bench compare")


@pytest.mark.parametrize("said", ["", "1 failed, 40 passed in 59.1s", "..s...F..   [ 25%]",
                                  "....E"])  # fmt: skip
def test_a_test_step_cut_short_is_incomplete_unless_it_had_failed(tmp_path, said) -> None:
    """Tests stopped at their limit had been reported as passed, their failures so far too;
    and pytest killed before its summary (xdist's workers slow to stop) had left only its
    progress lines, whose F had been read as no failure."""
    code, out, _ = run_suite(tmp_path, budget_s=20, SLEEP_pytest="60", SAY_pytest=said)
    finished = (out / "device.txt").read_text().splitlines()[-1]
    if said:
        assert code == 1
        assert "test steps FAILED; failed: tests_kernels tests_ablate; timed out" in finished
    else:
        assert code == 0
        assert "test steps incomplete (no failure before the limit); timed out" in finished


def test_a_failed_sweep_is_named_and_no_sweep_gets_a_budget_below_a_second(tmp_path) -> None:
    """A sweep's failure had been left to its own log; and a step whose share was at most the
    grace had been handed --budget-s 0 or less, which the sweeps refuse."""
    code, out, calls = run_suite(tmp_path, budget_s=20, GRACE_S="15", FAIL_kernels_bench="1")
    assert code == 0  # only failed tests fail the suite
    assert all(budget_of(call) >= 1 for call in calls[2:6])
    finished = (out / "device.txt").read_text().splitlines()[-1]
    assert "test steps passed; failed: bench" in finished


def test_steps_runs_the_steps_named_in_order_with_the_budget_shared_among_them(tmp_path) -> None:
    code, out, calls = run_suite(tmp_path, STEPS="end_to_end bench")
    assert code == 0
    assert [call.split()[0] for call in calls] == ["kernels.bench", "benchmarks.end_to_end"]
    # The bench keeps the end to end's share of the two (14 of 32) and leaves itself a grace.
    assert 600 - 262 - 1 - 2 <= budget_of(calls[0]) <= 600 - 262 - 1
    assert "steps end_to_end bench" in (out / "device.txt").read_text()


def test_kernels_compiled_ahead_are_unpacked_first_and_the_run_counts_what_it_compiled(
    tmp_path,
) -> None:
    """With an archive of kernels compiled without a GPU, the suite unpacks it into the Triton
    cache its steps compile into, and says how many kernels the run still compiled itself."""
    archive, cache = tmp_path / "kernels.tar.gz", tmp_path / "cache"
    (cache / "ahead").mkdir(parents=True)
    (cache / "ahead" / "kernel.cubin").touch()  # (as if unpacked)
    code, out, calls = run_suite(tmp_path, STEPS="bench", TRITON_CACHE_ARCHIVE=str(archive),
                                 TRITON_CACHE_DIR=str(cache),
                                 MAKE_kernels_bench=str(cache / "missed" / "kernel.cubin"))
    assert code == 0
    assert calls[0] == f"benchmarks.precompile unpack {archive} {cache}"
    assert [call.split()[0] for call in calls[1:]] == ["kernels.bench"]
    device = (out / "device.txt").read_text()
    assert "ran benchmarks.precompile" in device  # the unpacking's report
    assert "Triton kernels this run compiled (not in the cache it began with): 1\n" in device


@pytest.mark.parametrize("steps", ["bench tests", " "])
def test_steps_naming_no_step_or_an_unknown_one_is_refused_with_the_steps(tmp_path, steps) -> None:
    python = tmp_path / "python"
    python.write_text(STAND_IN)
    python.chmod(0o755)
    environ = {**os.environ, "PYTHON": str(python), "STEPS": steps}
    done = subprocess.run(["bash", str(SUITE), str(tmp_path / "out")], env=environ,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2
    assert "STEPS:" in done.stderr and " ".join(STEPS) in done.stderr
    assert ("'tests'" in done.stderr) == (steps != " ")
