"""The benchmark and the autotuner, end to end on the CPU (Triton under its interpreter)."""

import argparse
import contextlib
import importlib
import itertools
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from ablate.flops import forward_flops
from ablate.models import build_model
from kernels import autotune, bench, hardware, measure, tuning

COLUMNS = {
    "op", "shape", "filter_size", "layout", "dtype", "input_mb", "copy_gb_per_s", "impl",
    "direction", "ms", "gb_per_s", "pct_copy", "peak_mb", "error", "speedup_vs_pytorch",
    "speedup_vs_compile", "speedup_vs_kornia",
}


def run_bench(tmp_path, *extra):
    argv = ["--shapes", "2x3x9x7", "--filters", "3", "--dtypes", "float32",
            "--impls", "shiftlab", "pytorch", "--rep-ms", "1", "--out", str(tmp_path), *extra]
    return bench.main(argv)


def payload_impls(folder) -> list[str]:
    return json.loads((folder / "kernels.json").read_text())["meta"]["impls"]


def test_bench_writes_csv_and_json_with_every_column(tmp_path, capsys):
    df = run_bench(tmp_path, "--backend", "torch", "--layouts", "nchw", "--no-figures",
                   "--impls", "shiftlab", "pytorch", "kornia")
    csv = pd.read_csv(tmp_path / "kernels.csv")
    assert set(csv.columns) >= COLUMNS
    assert len(csv) == len(bench.OPS) * len(set(csv["impl"])) * len(bench.DIRECTIONS)
    kornia = "kornia" in payload_impls(tmp_path)
    assert set(csv["impl"]) == {"shiftlab", "pytorch"} | ({"kornia"} if kornia else set())
    assert (csv["ms"] > 0).all() and (csv["gb_per_s"] > 0).all()
    assert csv["error"].isna().all()
    # Speed-up is the other implementation's time over this one's, same case and direction.
    ours = df[(df["impl"] == "shiftlab") & (df["direction"] == "fwd")].set_index("op")
    ref = df[(df["impl"] == "pytorch") & (df["direction"] == "fwd")].set_index("op")
    assert ours["speedup_vs_pytorch"].to_dict() == pytest.approx((ref["ms"] / ours["ms"]).to_dict())

    payload = json.loads((tmp_path / "kernels.json").read_text())
    assert {"device", "torch", "triton", "commit", "command"} <= set(payload["meta"])
    assert len(payload["rows"]) == len(csv)
    assert [g["goal"] for g in payload["goals"]] == [g[0] for g in bench.GOALS]
    out = capsys.readouterr().out
    assert kornia or "kornia is not installed" in out
    assert out.index("goals") > out.index("results:")  # the short tables come last


def test_bench_times_the_triton_kernels_and_draws_figures(tmp_path):
    df = run_bench(tmp_path, "--backend", "triton", "--ops", "blur_pool", "--layouts",
                   "channels_last")
    assert (df["error"] == "").all()
    assert set(df["direction"]) == set(bench.DIRECTIONS)
    assert (tmp_path / "kernels_bandwidth.png").stat().st_size > 0
    assert (tmp_path / "kernels_speedup.png").stat().st_size > 0


def test_bench_replaces_another_runs_results_whole_and_says_so(tmp_path, capsys):
    """A folder of another GPU's results: a note names the device replaced, and a figure this
    run does not draw (no speed-ups measured here) is removed, not left beside the new rows."""
    (tmp_path / "kernels.json").write_text(json.dumps({"meta": {"device": "NVIDIA H100"}}))
    for name in bench.FIGURES:
        (tmp_path / name).write_bytes(b"an older run's")
    run_bench(tmp_path, "--backend", "torch", "--layouts", "nchw", "--ops", "blur_pool",
              "--impls", "shiftlab")  # fmt: skip
    assert "held results of NVIDIA H100; replaced by these" in capsys.readouterr().err
    assert not (tmp_path / "kernels_speedup.png").exists()
    assert (tmp_path / "kernels_bandwidth.png").read_bytes().startswith(b"\x89PNG")
    assert not list(tmp_path.glob(".*.tmp"))
    run_bench(tmp_path, "--backend", "torch", "--layouts", "nchw", "--ops", "blur_pool",
              "--no-figures")  # fmt: skip
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".png"]


def test_a_bench_cut_short_leaves_no_earlier_figures_beside_its_results(tmp_path, monkeypatch):
    for name in bench.FIGURES:
        (tmp_path / name).write_bytes(b"an older run's")
    real = bench.run_cases

    def stopped_after_the_cases(*args, **kwargs):
        real(*args, **kwargs)  # which saves the results after each case
        raise KeyboardInterrupt

    monkeypatch.setattr(bench, "run_cases", stopped_after_the_cases)
    with pytest.raises(KeyboardInterrupt):
        run_bench(tmp_path, "--backend", "torch", "--layouts", "nchw", "--ops", "blur_pool")
    assert (tmp_path / "kernels.json").exists() and not list(tmp_path.glob("*.png"))
    payload = json.loads((tmp_path / "kernels.json").read_text())  # and it says it stopped
    cases = payload["cases"]
    assert f"interrupted (Ctrl-C) after {cases} of {cases} cases" in payload["meta"]["notes"]


def test_bench_budget_keeps_the_first_cases_and_says_what_it_left_out(tmp_path, capsys):
    df = run_bench(tmp_path, "--backend", "torch", "--layouts", "nchw", "channels_last",
                   "--ops", "blur_pool", "--no-figures", "--budget-s", "1e-9")
    assert set(df["layout"]) == {"nchw"}  # the first case only: nchw before channels_last
    payload = json.loads((tmp_path / "kernels.json").read_text())
    assert payload["cases"] == 2 and {r["layout"] for r in payload["rows"]} == {"nchw"}
    assert all(goal["status"] != "met" for goal in payload["goals"])  # "met so far" at most
    note = "1 of 2 cases left out: the time budget of 1e-09 s was spent"
    assert note in payload["meta"]["notes"] and f"note: {note}" in capsys.readouterr().out


def test_bench_writes_its_results_after_each_case(tmp_path):
    cases = bench.build_cases(["2x3x9x7"], [2, 3], ["nchw"], ["float32"], ["blur_pool"])
    seen = []
    bench.run_cases(cases, ["shiftlab"], torch.device("cpu"), backend="torch", rep_ms=1,
                    progress=False, after_case=lambda df: seen.append(list(df["filter_size"])))
    assert [sorted(set(sizes)) for sizes in seen] == [[2], [2, 3]]


def test_bench_compiles_ahead_in_a_pool_of_processes(tmp_path, capsys):
    df = run_bench(tmp_path, "--backend", "triton", "--layouts", "channels_last", "--ops",
                   "max_blur_pool", "--no-figures", "--jobs", "2")
    assert (df["error"] == "").all() and set(df["impl"]) == {"shiftlab", "pytorch"}
    assert "warm-up" not in capsys.readouterr().out  # each case ran in a worker without fault


def test_the_sweep_calls_each_implementation_on_the_gradient_path_only(monkeypatch):
    """The warm-up compiles the gradient path; a call without grad would compile other kernel
    variants (and Inductor graphs) inside the budgeted sweep, untimed."""
    grads = []
    make_impl = bench.make_impl

    def recording(*args, **kwargs):
        impl = make_impl(*args, **kwargs)

        def call(x):
            grads.append(x.requires_grad)
            return impl(x)

        return call

    monkeypatch.setattr(bench, "make_impl", recording)
    case = bench.Case("max_blur_pool", (2, 3, 8, 8), 3, "nchw", "float32")
    df = bench.run_cases([case], ["pytorch"], torch.device("cpu"), rep_ms=1, progress=False)
    assert (df["error"] == "").all() and grads and all(grads)


@pytest.mark.parametrize(
    ("op", "routing"),
    [("blur_pool", 0), ("blur_pool_relu", 2 * 3 * 8 * 8 // 8), ("max_blur_pool", 2 * 3 * 7 * 7)],
)
def test_minimal_bytes_count_each_tensor_once(op, routing):
    """The backward reads the gradient's route (ReLU bits, max codes) at the size the fused
    kernels save it, not x again."""
    case = bench.Case(op, (2, 3, 8, 8), 3, "nchw", "float32")
    x, y = torch.empty(2, 3, 8, 8), torch.empty(2, 3, 4, 4)
    moved = bench.minimal_bytes(case, x, y)
    assert moved == {"fwd": x.nbytes + y.nbytes, "bwd": y.nbytes + x.nbytes + routing,
                     "fwd_bwd": 2 * y.nbytes + 2 * x.nbytes + routing}


def test_goal_table_marks_met_and_not_met():
    every_case = [
        {"impl": "shiftlab", "error": "", "direction": "fwd", "pct_copy": 85.0, "input_mb": 100.0,
         "dtype": dtype, "filter_size": k, "layout": layout, "speedup_vs_pytorch": 5.0,
         "speedup_vs_compile": 1.2, "ms": 1.0}
        for k, layout, dtype in sorted(bench.BANDWIDTH_CASES)
    ]  # fmt: skip
    rows = [
        *every_case,
        {"impl": "shiftlab", "error": "", "direction": "fwd", "pct_copy": 10.0, "input_mb": 1.0,
         "dtype": "float16", "speedup_vs_pytorch": 5.0, "speedup_vs_compile": 1.2, "ms": 1.0},
        {"impl": "shiftlab", "error": "", "direction": "fwd_bwd", "pct_copy": 50.0,
         "input_mb": 100.0, "dtype": "bfloat16", "speedup_vs_pytorch": 4.5,
         "speedup_vs_compile": 1.2, "ms": 1.0},
    ]
    goals = bench.goal_table(pd.DataFrame(rows)).set_index("goal")["status"].tolist()
    assert goals == ["met", "not measured", "met", "not met"]
    # A sweep cut short by its budget cannot say a goal is met, only that it holds so far.
    partial = bench.goal_table(pd.DataFrame(rows), complete=False)["status"].tolist()
    assert partial == ["met so far", "not measured", "met so far", "not met"]
    # The bandwidth goals are stated for every filter size 2-7, layout and half dtype.
    subset = bench.goal_table(pd.DataFrame(rows[1:]))["status"].tolist()
    assert subset == ["met on 23 of 24 goal cases", "not measured", "met", "not met"]


@pytest.mark.parametrize("text", ["2x3x4", "2x3x4x0", "axbxcxd"])
def test_bad_shape_is_named(text):
    with pytest.raises(ValueError, match=text):
        measure.parse_shape(text)


def test_bad_layout_is_named():
    with pytest.raises(ValueError, match="layout='nhwc'"):
        bench.build_cases(["1x1x4x4"], [3], ["nhwc"], ["float32"], ["blur_pool"])


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_gpu_candidates_hold_the_heuristic_and_whole_small_maps(monkeypatch, layout):
    """On a GPU the tuner tries the heuristic's config too (a tuned entry is never slower than
    none), and small NCHW maps whole, several planes per program."""
    monkeypatch.setattr(hardware, "interpreting", lambda: False)
    monkeypatch.setattr(hardware, "device_name", lambda: "NVIDIA H100 80GB HBM3")
    for op in tuning.OPS:
        for shape in ((256, 256, 8, 8), (64, 64, 112, 112)):
            problem = autotune.Problem(op, shape, layout, "bfloat16", 4)
            configs = autotune.candidates(problem, quick=True)
            assert tuning.heuristic_config(op, autotune.key_of(problem)) in configs
            whole_maps = [cfg for cfg in configs if cfg["BLOCK_C"] > 1]
            if layout == "nchw" and op.endswith("_fwd"):
                # The forwards stream rows of a few columns of several planes, whatever the
                # map.
                assert len(whole_maps) == len(configs)
            elif layout == "nchw":
                # Rows up to 128 columns wide, one element a thread; small maps' rows hold
                # whole rows of several planes.
                assert all(cfg["BLOCK_W"] <= 128 for cfg in configs)
                assert all(cfg["BLOCK_C"] * cfg["BLOCK_W"] <= 64 * cfg["num_warps"]
                           for cfg in configs)  # fmt: skip
                small = shape[2] == 8
                assert any(cfg["BLOCK_W"] == 8 for cfg in whole_maps) == small


@pytest.mark.parametrize("op", tuning.OPS)
def test_autotune_expects_what_the_reference_ops_compute(op):
    """Each problem's expected result, which every candidate must match, is the reference's:
    the heuristic's launch agrees with it, forward and backward, ReLU fused or not."""
    for relu in (False, True) if op.startswith("blur_") else (False,):
        problem = autotune.Problem(op, (2, 3, 9, 7), "nchw", "float32", 4, relu)
        problem_launcher = autotune.launcher(problem, torch.device("cpu"))
        heuristic = tuning.heuristic_config(op, autotune.key_of(problem))
        result, expected = problem_launcher.run(heuristic), problem_launcher.expected()
        assert result.shape == expected.shape
        torch.testing.assert_close(result.float(), expected, rtol=1e-5, atol=1e-5)


def test_autotune_checks_a_one_channel_channels_last_gradient_as_the_op_lays_it_out():
    """A 1-channel map is NCHW and channels_last at once; the op keeps NCHW, and so must the
    check (every candidate had been refused as differing from the reference)."""
    problem = autotune.Problem("blur_pool_bwd", (4, 1, 6, 6), "channels_last", "float32", 3, True)
    assert autotune.tune(problem, torch.device("cpu"), quick=True, rep_ms=1) is not None


def test_autotune_leaves_out_the_maps_a_max_window_does_not_fit(capsys):
    """A 1-row map has no 2×2 max: MaxBlurPool is left out there, with a note, and the other
    shapes are still tuned (the first such problem had ended the run)."""
    todo = autotune.problems(["2x3x1x5", "2x3x6x6"], ["nchw"], ["float32"], [3], tuning.OPS,
                             (False,))  # fmt: skip
    shapes = {(p.op, p.shape[2]) for p in todo}
    assert shapes == {("blur_pool_fwd", 1), ("blur_pool_bwd", 1), ("blur_pool_fwd", 6),
                      ("blur_pool_bwd", 6), ("max_blur_pool_fwd", 6), ("max_blur_pool_bwd", 6)}
    assert "MaxBlurPool left out on 2x3x1x5: its 2×2 max needs maps of 2 rows" in (
        capsys.readouterr().out)


def test_autotune_refuses_a_cache_it_cannot_write_before_tuning(tmp_path, monkeypatch):
    (tmp_path / "a_file").write_text("")
    monkeypatch.setenv(tuning.CACHE_DIR_ENV, str(tmp_path / "a_file" / "cache"))
    with pytest.raises(SystemExit, match=r"the tuning cache .* cannot be written: .*a_file' is "
                                         r"a file, not a folder; set SHIFTLAB_CACHE_DIR"):
        autotune.main(["--ops", "blur_pool_fwd"])
    monkeypatch.setenv(tuning.CACHE_DIR_ENV, str(tmp_path / "cache"))
    tuning.user_cache_path().mkdir(parents=True)  # a folder where the cache file goes
    with pytest.raises(SystemExit, match=r"cannot be written: .*json' is not a file"):
        autotune.main(["--ops", "blur_pool_fwd"])


def test_autotune_skips_a_candidate_the_reference_disagrees_with(monkeypatch, capsys):
    """Even the first candidate: a wrong one cannot become the yardstick of the others."""
    wrong, right = ({"BLOCK_H": h, "BLOCK_W": 8, "BLOCK_C": 1, "num_warps": 1, "num_stages": 1}
                    for h in (1, 2))  # fmt: skip
    fake = autotune.ProblemLauncher(
        run=lambda config: torch.ones(3) * (config["BLOCK_H"] - 1), expected=lambda: torch.ones(3)
    )
    monkeypatch.setattr(autotune, "launcher", lambda problem, device: fake)
    monkeypatch.setattr(autotune, "candidates", lambda problem, quick: [wrong, right])
    problem = autotune.Problem("blur_pool_fwd", (2, 3, 9, 7), "nchw", "float32", 3)
    best = autotune.tune(problem, torch.device("cpu"), quick=True, rep_ms=1)
    assert best is not None and best[0] == right
    assert "result differs from the reference" in capsys.readouterr().out


def test_autotune_writes_a_cache_the_kernels_then_read(tmp_path, monkeypatch):
    monkeypatch.setenv(tuning.CACHE_DIR_ENV, str(tmp_path / "cache"))
    tuning.clear_cache()
    ops = ["blur_pool_fwd", "max_blur_pool_bwd"]
    table = autotune.main(["--ops", *ops, "--layouts", "channels_last", "--out",
                           str(tmp_path / "shipped.json")])
    cache = tuning.read_table(tuning.user_cache_path())
    assert cache is not None and cache["device"] == hardware.INTERPRETER_DEVICE
    shipped = tuning.read_table(tmp_path / "shipped.json")
    assert shipped["configs"] == table["configs"]

    def no_heuristic(op, key):
        raise AssertionError(f"heuristic used for {op} {key}")

    monkeypatch.setattr(tuning, "heuristic_config", no_heuristic)
    for op in ops:
        [(text, entry)] = cache["configs"][op].items()
        assert math.isfinite(entry["ms"]) and entry["ms"] > 0
        key = tuning.TuningKey.from_str(text)
        assert key.layout == "channels_last"
        expected = {f: entry[f] for f in tuning.CONFIG_FIELDS}
        assert tuning.launch_config(op, key) == expected
    # The key the launchers compute for the tuned input is the one saved.
    x = torch.randn(2, 3, 9, 7).to(memory_format=torch.channels_last)
    assert tuning.tuning_key(x, 3, 2).to_str() in cache["configs"]["blur_pool_fwd"]
    tuning.clear_cache()


def test_end_to_end_writes_ratios_to_the_baseline_and_the_placement(tmp_path):
    from benchmarks import end_to_end

    df = end_to_end.main(["--models", "vgg", "--variants", "baseline", "aa_torch", "aa_placement",
                          "--layouts", "nchw", "--width", "4", "--batch", "8", "--device", "cpu",
                          "--out", str(tmp_path)])  # fmt: skip
    csv = pd.read_csv(tmp_path / "end_to_end.csv")
    assert list(csv["variant"]) == ["baseline", "aa_torch", "aa_placement"]
    assert list(csv["filter_size"]) == [4, 4, 1]  # the placement's filter has one tap
    assert csv["train_vs_placement"].iloc[2] == pytest.approx(1.0)
    blur_cost = df["train_images_per_s"].iloc[1] / df["train_images_per_s"].iloc[2]
    assert csv["train_vs_placement"].iloc[1] == pytest.approx(blur_cost)
    assert (csv["train_images_per_s"] > 0).all() and (csv["infer_images_per_s"] > 0).all()
    assert csv["train_ratio"].iloc[0] == pytest.approx(1.0)
    ratio = df["train_images_per_s"].iloc[1] / df["train_images_per_s"].iloc[0]
    assert csv["train_ratio"].iloc[1] == pytest.approx(ratio)
    assert csv["sites"].iloc[0] == 0 and csv["sites"].iloc[1] == csv["sites"].iloc[2] > 0
    assert csv["params"].nunique() == 1  # anti-aliasing adds buffers, not parameters
    # the blur's own arithmetic: 16 and 1 multiply-adds per output of the same three sites
    baseline, aa, placement = csv["forward_mflops"]
    assert baseline < placement < aa
    assert (csv["activation_mb"] > 0).all() and csv["activation_vs_baseline"].iloc[0] == 1
    kept = csv["activation_mb"].iloc[1] / csv["activation_mb"].iloc[0]
    assert csv["activation_vs_baseline"].iloc[1] == pytest.approx(kept)
    payload = json.loads((tmp_path / "end_to_end.json").read_text())
    assert {"device", "commit", "command"} <= set(payload["meta"])


def test_end_to_end_measure_leaves_nothing_of_its_nets_alive() -> None:
    """A measured net, its copies and their activations are freed once measured: what one row
    kept would count in the peak memory of every row after it."""
    import gc

    from benchmarks import end_to_end

    def live_tensors() -> int:
        gc.collect()
        return sum(isinstance(o, torch.Tensor) for o in gc.get_objects())

    def measure() -> None:
        end_to_end.measure_net("vgg", "nchw", ["baseline", "aa_torch"], width=4, batch=4,
                               filter_size=3, device=torch.device("cpu"))  # fmt: skip

    measure()  # fills the caches a first call fills (named filters, launch plans)
    before = live_tensors()
    measure()
    assert live_tensors() == before


def test_end_to_end_a_failed_variant_is_freed_before_the_next_is_built(monkeypatch) -> None:
    """A variant that fails once built leaves nothing on the device: the next variant's peak
    memory, measured as it is built, would hold the failed one's weights."""
    import gc
    import weakref

    from benchmarks import end_to_end

    built, alive_at_build = [], []
    real_build = end_to_end.build

    def build(*args, **kwargs):
        gc.collect()
        alive_at_build.append([ref() is not None for ref in built])
        net = real_build(*args, **kwargs)
        built.append(weakref.ref(net.model))
        return net

    def alone_measures(net, device, image_shape):
        if net.config.placement != "none":
            raise RuntimeError("out of resources")
        return {"peak_memory_mb": math.nan}

    monkeypatch.setattr(end_to_end, "build", build)
    monkeypatch.setattr(end_to_end, "alone_measures", alone_measures)
    monkeypatch.setattr(end_to_end, "speeds_in_turns", lambda steps, batch, device: {
        name: {} for name in steps})  # fmt: skip
    notes: list[str] = []
    results = end_to_end.measure_net("vgg", "nchw", ["aa_torch", "baseline"], width=4, batch=4,
                                     filter_size=3, device=torch.device("cpu"), notes=notes)
    assert list(results) == ["baseline"] and notes[0].startswith("vgg aa_torch nchw failed")
    assert alive_at_build == [[], [False]]


def test_end_to_end_a_variant_whose_inference_fails_is_left_out_alone(monkeypatch) -> None:
    """Inference runs kernels training does not (no saved state, the model in eval mode):
    a variant whose inference step fails is noted and left out before the timing in turns,
    where its failure would sink every variant of the net, the baseline too."""
    from ablate.speed import SpeedSteps
    from benchmarks import end_to_end
    from kernels import BlurPool2d, MaxBlurPool2d

    real_infer = SpeedSteps.infer

    def infer(steps: SpeedSteps) -> None:
        if any(isinstance(m, (BlurPool2d, MaxBlurPool2d)) for m in steps.model.modules()):
            raise RuntimeError("out of resources")
        real_infer(steps)

    monkeypatch.setattr(SpeedSteps, "infer", infer)
    notes: list[str] = []
    results = end_to_end.measure_net("vgg", "nchw", ["baseline", "aa_torch"], width=4, batch=4,
                                     filter_size=3, device=torch.device("cpu"), image_size=16,
                                     notes=notes)  # fmt: skip
    assert list(results) == ["baseline"] and results["baseline"]["infer_images_per_s"] > 0
    assert notes == ["vgg aa_torch nchw failed: RuntimeError: out of resources"]


def test_end_to_end_peak_memory_holds_only_the_copy_trained(monkeypatch) -> None:
    """A variant's training peak holds the copy that trains, not also the net it was copied
    from (one more set of weights in every row): that one is parked on the CPU first. The
    meta device stands in for a GPU's."""
    from ablate.speed import SpeedSteps
    from benchmarks import end_to_end

    device = torch.device("meta")
    net = end_to_end.build("vgg", "baseline", "nchw", width=4, batch=4, filter_size=3,
                           device=torch.device("cpu"), image_size=16)  # fmt: skip
    net.model.to(device)
    where: list[set[str]] = []
    move = torch.nn.Module.to

    def to(module: torch.nn.Module, *args, **kwargs) -> torch.nn.Module:
        if args == ("cpu",) and next(module.parameters()).is_meta:  # (meta holds no values)
            return module.to_empty(device="cpu")
        return move(module, *args, **kwargs)

    def peak_memory_mb(step, on: torch.device) -> float:
        where.append({p.device.type for p in net.model.parameters()})
        return 1.0

    monkeypatch.setattr(torch.nn.Module, "to", to)
    monkeypatch.setattr(end_to_end, "peak_memory_mb", peak_memory_mb)
    monkeypatch.setattr(end_to_end, "activation_mb", lambda *args: 2.0)
    monkeypatch.setattr(SpeedSteps, "infer", lambda steps: None)  # (autocast takes no meta)
    result = end_to_end.alone_measures(net, device, (3, 16, 16))
    assert where == [{"cpu"}]
    assert result["peak_memory_mb"] == 1.0 and result["activation_mb"] == 2.0
    assert result["forward_mflops"] > 0 and next(iter(result)) == "peak_memory_mb"


def test_end_to_end_profiles_each_variant_after_every_variant_is_timed(monkeypatch) -> None:
    """A profiler can leave its instrumentation behind (CUPTI, on some torch versions): the
    profiles come after the timing in turns, so none of the speeds is taken under it, and each
    profiles a training step (the timing ends on inference)."""
    from benchmarks import end_to_end

    calls = []

    def speeds_in_turns(steps, batch, device):
        calls.append("timed")
        for variant in steps.values():
            variant.model.eval()
        return {name: {} for name in steps}

    def step_profile(step, device):
        calls.append(("profiled", step.__self__.model.training))
        return pd.DataFrame({"name": ["op"]})

    monkeypatch.setattr(end_to_end, "speeds_in_turns", speeds_in_turns)
    monkeypatch.setattr(end_to_end, "step_profile", step_profile)
    results = end_to_end.measure_net("vgg", "nchw", ["baseline", "aa_torch"], width=4, batch=4,
                                     filter_size=3, device=torch.device("cpu"), image_size=16,
                                     profile=True)  # fmt: skip
    assert calls == ["timed", ("profiled", True), ("profiled", True)]
    assert all(list(result["profile"]["name"]) == ["op"] for result in results.values())


def test_end_to_end_times_the_variants_of_a_net_in_turns(monkeypatch) -> None:
    """Each round times every variant once, the order rotating round by round, so that a
    drift over the minutes a net takes moves all of them alike (the GPU's clocks had been
    timed variant after variant, the later ones on a machine in another state). A variant's
    rate is the median of its rounds, its spread their range over it."""
    from benchmarks import end_to_end

    order: list[str] = []
    # seconds of each round, training's then inference's (the first from round_length)
    seconds = {"a": iter([1.0, 1.0, 2.0, 1.0, 1.0] * 2), "b": iter([2.0, 4.0, 2.0, 2.0, 2.0] * 2),
               "c": iter([0.5] * 10)}  # fmt: skip
    monkeypatch.setattr(end_to_end, "round_length", lambda step, device: (4, step(count=False)))
    monkeypatch.setattr(end_to_end, "round_seconds", lambda step, repeats, device: step())

    def variant(name: str) -> SimpleNamespace:
        def step(count: bool = True) -> float:
            order.append(name) if count else None
            return next(seconds[name])

        return SimpleNamespace(model=torch.nn.Identity(), train=step, infer=step)

    rates = end_to_end.speeds_in_turns({n: variant(n) for n in "abc"}, 8, torch.device("cpu"),
                                       rounds=5)  # fmt: skip
    turns = ["b", "c", "a", "c", "a", "b", "a", "b", "c", "b", "c", "a"]
    assert order == turns * 2  # training rounds, then inference rounds
    assert rates["a"]["train_images_per_s"] == pytest.approx(4 * 8 / 1.0)
    assert rates["b"]["infer_images_per_s"] == pytest.approx(4 * 8 / 2.0)
    assert rates["a"]["train_spread"] == pytest.approx((32 - 16) / 32)
    assert rates["b"]["train_spread"] == pytest.approx((16 - 8) / 16)
    assert rates["c"]["infer_spread"] == 0


def test_step_profile_counts_each_operation_per_step_by_its_own_time() -> None:
    from benchmarks.step_profile import step_profile

    a, b = torch.randn(96, 96), torch.randn(96, 96)

    def step() -> None:
        for _ in range(3):
            torch.mm(a, b)
        torch.neg(a)

    table = step_profile(step, torch.device("cpu"), steps=4, top=10)
    calls = dict(zip(table["name"], table["calls_per_step"], strict=True))
    assert calls["aten::mm"] == 3 and calls["aten::neg"] == 1
    assert table["ms_per_step"].is_monotonic_decreasing and (table["ms_per_step"] > 0).all()
    assert 0 < table["share"].sum() <= 1 + 1e-9
    assert len(step_profile(step, torch.device("cpu"), steps=1, top=1)) == 1


def test_end_to_end_profile_writes_each_nets_step_profile(tmp_path):
    from benchmarks import end_to_end

    end_to_end.main(["--models", "vgg", "--variants", "baseline", "aa_torch", "--layouts", "nchw",
                     "--width", "4", "--batch", "2", "--image-size", "16", "--device", "cpu",
                     "--out", str(tmp_path), "--profile"])  # fmt: skip
    profile = pd.read_csv(tmp_path / "end_to_end_profile.csv")
    assert list(profile.columns[:4]) == ["model", "variant", "layout", "name"]
    assert list(profile.drop_duplicates("variant")["variant"]) == ["baseline", "aa_torch"]
    names = profile.groupby("variant")["name"].agg(" ".join)
    assert "convolution" in names["baseline"] and "convolution" in names["aa_torch"]
    assert (profile.groupby("variant")["share"].sum() <= 1 + 1e-9).all()
    assert (profile["ms_per_step"] > 0).all() and (profile["calls_per_step"] > 0).all()
    assert "end_to_end.csv" in {p.name for p in tmp_path.iterdir()}


def test_autotune_budget_tunes_the_first_problems_and_writes_them(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(tuning.CACHE_DIR_ENV, str(tmp_path / "cache"))
    tuning.clear_cache()
    table = autotune.main(["--ops", "blur_pool_fwd", "blur_pool_bwd", "--layouts", "nchw",
                           "--budget-s", "1e-9", "--out", str(tmp_path / "shipped.json")])
    assert list(table["configs"]["blur_pool_fwd"]) and not table["configs"]["blur_pool_bwd"]
    assert tuning.read_table(tmp_path / "shipped.json")["configs"] == table["configs"]
    assert "1 of 2 problems left out: the time budget" in capsys.readouterr().out
    tuning.clear_cache()


def test_autotune_compiles_ahead_in_a_pool_of_processes(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(tuning.CACHE_DIR_ENV, str(tmp_path / "cache"))
    tuning.clear_cache()
    table = autotune.main(["--ops", "max_blur_pool_fwd", "max_blur_pool_bwd", "--layouts",
                           "nchw", "--jobs", "2"])
    assert all(len(table["configs"][op]) == 1 for op in ("max_blur_pool_fwd", "max_blur_pool_bwd"))
    assert "warm-up" not in capsys.readouterr().out
    tuning.clear_cache()


def test_end_to_end_measures_a_network_of_your_own(tmp_path, capsys, user_nets):
    """It gets `--width` where its factory takes it; a bad name is refused before any run."""
    from benchmarks import end_to_end

    models = [f"{user_nets}:small_cnn", f"{user_nets}:KeywordNet"]
    df = end_to_end.main(["--models", *models, "--variants", "baseline", "aa_torch", "--layouts",
                          "nchw", "--width", "3", "--batch", "4", "--device", "cpu",
                          "--image-size", "24", "--out", str(tmp_path)])  # fmt: skip
    assert list(df["model"]) == [models[0]] * 2 + [models[1]] * 2
    assert list(df["sites"]) == [0, 2, 0, 2] and set(df["image_size"]) == {24}
    small = build_model(models[0], width=3, image_size=24)
    assert df["forward_mflops"].iloc[0] == pytest.approx(forward_flops(small, (3, 24, 24)) / 1e6)
    assert df["width"].iloc[0] == 3 and pd.isna(df["width"].iloc[2])  # not passed to it
    small_params, keyword_params = df["params"].iloc[0], df["params"].iloc[2]
    assert small_params < keyword_params  # width 3 against the factory's own default, 4
    with pytest.raises(SystemExit):
        end_to_end.main(["--models", "resnet", "--device", "cpu", "--out", str(tmp_path)])
    assert "did you mean 'resnet18'" in capsys.readouterr().err


def test_end_to_end_budget_runs_whole_nets_the_baseline_first(tmp_path, capsys):
    """The budget hands out nets, each with all its variants (timed in turns), the baseline
    first whatever order they are asked in."""
    from benchmarks import end_to_end

    df = end_to_end.main(["--models", "vgg", "--variants", "aa_torch", "baseline", "--layouts",
                          "nchw", "channels_last", "--width", "4", "--batch", "8", "--device",
                          "cpu", "--budget-s", "1e-9", "--out", str(tmp_path)])  # fmt: skip
    assert list(df["variant"]) == ["baseline", "aa_torch"] and set(df["layout"]) == {"nchw"}
    assert list(pd.read_csv(tmp_path / "end_to_end.csv")["variant"]) == ["baseline", "aa_torch"]
    assert "1 of 2 nets left out: the time budget" in capsys.readouterr().out
    notes = json.loads((tmp_path / "end_to_end.json").read_text())["meta"]["notes"]
    assert any("1 of 2 nets left out" in note for note in notes)


def test_end_to_end_a_failing_run_is_noted_and_the_others_go_on(tmp_path, user_nets):
    from benchmarks import end_to_end

    models = ["vgg", f"{user_nets}:for_large_images"]  # the second takes only 224-px images
    df = end_to_end.main(["--models", *models, "--variants", "baseline", "--layouts", "nchw",
                          "--width", "4", "--batch", "8", "--device", "cpu",
                          "--out", str(tmp_path)])  # fmt: skip
    assert list(df["model"]) == ["vgg"]
    (note,) = json.loads((tmp_path / "end_to_end.json").read_text())["meta"]["notes"]
    assert note.startswith(f"{user_nets}:for_large_images baseline nchw failed: ")


def test_end_to_end_activation_memory_counts_every_saved_storage_every_time() -> None:
    """What autograd keeps from a forward, counted as the distinct storages it saves: the same
    on every call. A saved tensor that autograd is not handed back is freed at once, and one
    saved later at its address had counted only once (activation_mb then fell call by call,
    and so its ratio to the baseline's, which the goal judges, was noise)."""
    import torch.nn.functional as F

    from benchmarks import end_to_end

    device = torch.device("cpu")
    net = end_to_end.build("vgg", "baseline", "nchw", width=4, batch=4, filter_size=3,
                           device=device, image_size=16)  # fmt: skip
    parameters = {p.untyped_storage().data_ptr() for p in net.model.parameters()}
    storages: dict[int, torch.UntypedStorage] = {}

    def keep(tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            storages[storage.data_ptr()] = storage

    with torch.autograd.graph.saved_tensors_hooks(keep, lambda _: None):
        F.cross_entropy(net.model(torch.randn(4, 3, 16, 16)), torch.zeros(4, dtype=torch.long))
    expected = sum(storage.nbytes() for storage in storages.values()) / 2**20
    measured = [end_to_end.activation_mb(net.model, net.config, device, (3, 16, 16))
                for _ in range(3)]  # fmt: skip
    assert measured == pytest.approx([expected] * 3)


def test_end_to_end_activation_memory_leaves_out_the_autocast_copies_of_the_weights(
    monkeypatch,
) -> None:
    """Under bf16 autocast a layer saves the bf16 copy of its weight, not the weight: that copy
    is the parameters' memory in another dtype, not an activation, and counted it would add
    the same to every variant and pull their ratio to the baseline towards 1. (Autocast runs on
    CUDA only in a benchmark; here it is turned on for the CPU, where bf16 autocast also casts
    a linear layer's weight.)"""
    from ablate.variant_config import VariantConfig
    from benchmarks import end_to_end

    monkeypatch.setattr(end_to_end, "amp_for", lambda config, device: True)
    conv = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)  # saves its weight's copy
    classes = torch.nn.Linear(8 * 32 * 32, 100)  # saves its weight's copy, transposed
    model = torch.nn.Sequential(conv, torch.nn.ReLU(), torch.nn.Flatten(), classes)
    config = VariantConfig(throughput_batch=2)
    measured = end_to_end.activation_mb(model, config, torch.device("cpu")) * 2**20
    input_copy = 2 * 3 * 32 * 32 * 2  # bf16, as the conv saves it
    features = 2 * 8 * 32 * 32 * 2  # the ReLU's output (the linear layer's input too)
    log_softmax = 2 * 100 * 4  # its fp32 output
    assert measured == input_copy + features + log_softmax + 2 * 8 + 4  # + labels, loss


def test_end_to_end_a_failed_net_is_noted_in_the_results_at_once(tmp_path, monkeypatch) -> None:
    """A net that fails is written to the JSON's notes before the next net starts: a run cut
    short during that one (the suite's limit) would otherwise keep no word of the failure."""
    from benchmarks import end_to_end

    outcomes = iter([None, RuntimeError("out of memory"), KeyboardInterrupt()])

    def measure_net(model_name, layout, variants, **kwargs):
        outcome = next(outcomes)
        if outcome is not None:
            raise outcome
        return {"baseline": {"train_images_per_s": 2.0, "infer_images_per_s": 4.0,
                             "peak_memory_mb": math.nan, "activation_mb": 1.0}}  # fmt: skip

    monkeypatch.setattr(end_to_end, "measure_net", measure_net)
    with pytest.raises(KeyboardInterrupt):
        end_to_end.main(["--models", "vgg", "resnet18", "--variants", "baseline", "--device",
                         "cpu", "--out", str(tmp_path)])  # fmt: skip
    payload = json.loads((tmp_path / "end_to_end.json").read_text())
    assert payload["meta"]["notes"] == ["vgg channels_last failed: RuntimeError: out of memory"]
    assert [row["model"] for row in payload["rows"]] == ["vgg"]


def test_end_to_end_goal_takes_train_ratio_and_activation_memory():
    from benchmarks import end_to_end

    df = pd.DataFrame({
        "model": ["vgg", "resnet18", "resnet18"], "layout": ["nchw"] * 3,
        "variant": ["aa_triton", "aa_triton", "baseline"], "train_ratio": [0.96, 0.99, 1.0],
        "activation_vs_baseline": [0.9, 1.1, 1.0], "memory_vs_baseline_mb": [math.nan] * 3,
    })  # fmt: skip
    assert [g["status"] for g in end_to_end.goals(df)] == ["met", "not met"]
    df.loc[0, "train_ratio"] = 0.94
    assert [g["status"] for g in end_to_end.goals(df)] == ["not met", "not met"]


def test_static_cost_shows_what_each_kernel_reads(tmp_path):
    """Compiled for Hopper without a GPU: the streamed kernels read each row once per program,
    so their loads grow about as k, not k² (25 / 9 = 2.8 from k = 3 to 5); tiles inside the
    map cost fewer instructions than those the padding reaches; the fused ReLU's mask costs
    the same whatever the filter; the backwards route on registers, without shuffles. At
    k = 4 the compiler peels a step off the forward's loop, which the counts follow."""
    import triton

    if not (Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas").exists():
        pytest.skip("this Triton build ships no ptxas")
    csv = tmp_path / "static_cost.csv"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    subprocess.run(
        [sys.executable, "-m", "benchmarks.static_cost", "--filters", "3", "4", "5", "--csv",
         str(csv)],
        env=env, check=True, capture_output=True, timeout=600, cwd=Path(__file__).parents[1],
    )  # fmt: skip
    table = pd.read_csv(csv).groupby(["op", "filter_size"])
    df = table["global_loads_per_output"].mean()
    issued = table["instructions_per_output"].mean()
    for op in ("blur_pool", "max_blur_pool", "blur_pool_bwd", "max_blur_pool_bwd"):
        assert df[f"{op}_interior", 5] < 2.2 * df[f"{op}_interior", 3]
        for k in (3, 4, 5):
            assert issued[f"{op}_interior", k] < issued[f"{op}_edge_rows", k]
    for op in ("blur_pool", "max_blur_pool"):
        for k in (3, 4, 5):
            assert issued[f"{op}_edge_rows", k] < issued[f"{op}_edge", k]
        assert df[f"{op}_interior", 3] < df[f"{op}_interior", 4] < df[f"{op}_interior", 5]
    # The fused ReLU's mask: one more read of the input forward, a load per row backward.
    for relu, plain in (("blur_pool_relu_mask_interior", "blur_pool_interior"),
                        ("blur_pool_relu_bwd_interior", "blur_pool_bwd_interior")):
        mask_reads = df[relu] - df[plain]
        assert mask_reads[5] == mask_reads[4] == mask_reads[3] > 0
    shuffles = table["shuffles_per_output"].mean()
    assert shuffles[["blur_pool_bwd_interior", "max_blur_pool_bwd_interior"]].max() == 0


def test_resident_warps_follow_registers_and_shared_memory():
    from benchmarks.resource_usage import resident_warps

    assert resident_warps(32, 0, 4) == 64  # the SM's 64 warps
    assert resident_warps(64, 0, 4) == 32  # 2 048 registers a warp: 8 blocks of 4 warps
    assert resident_warps(255, 0, 4) == 8  # 8 192 a warp: 2 blocks
    assert resident_warps(64, 100_000, 4) == 8  # shared memory for 2 blocks only


def test_resident_warps_count_with_the_chosen_architectures_limits():
    """An RTX 4090's SM (sm_89) holds 48 warps and 24 blocks, a Turing SM 32 warps and 64 KiB
    with no reserve; an architecture without known limits gets no figure rather than
    Hopper's."""
    from benchmarks.resource_usage import resident_warps

    assert resident_warps(32, 0, 4, arch=89) == 48
    assert resident_warps(32, 0, 1, arch=89) == 24  # 24 blocks of one warp
    assert resident_warps(32, 0, 1, arch=90) == 32
    assert resident_warps(32, 32 * 1_024, 4, arch=75) == 8  # 64 KiB: two blocks
    assert resident_warps(32, 32 * 1_024, 4, arch=80) == 16  # 164 KiB, 1 KiB a block: four
    assert resident_warps(32, 0, 4, arch=107) is None


def test_resource_usage_compiles_the_launches_a_gpu_would_make(tmp_path):
    """The real launchers, compiled for Hopper without a GPU, each config read off its cubin;
    the heuristic's configs of the goals' activation spill (almost) nothing and keep at least
    16 warps resident per SM (they used to hold 8, at 255 registers with spills). None needs
    shared memory: each access is laid out along the axis its kernel asks for, whichever way
    this Triton breaks layout ties (the NCHW forwards took 256 bytes and the channels_last
    backwards 1 KiB, to move values between layouts, under Triton 3.7-3.9 before)."""
    import triton

    if not (Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas").exists():
        pytest.skip("this Triton build ships no ptxas")
    csv = tmp_path / "resources.csv"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    subprocess.run(
        [sys.executable, "-m", "benchmarks.resource_usage", "--shapes", "2x64x112x112",
         "--filters", "3", "5", "--csv", str(csv)],
        env=env, check=True, capture_output=True, timeout=600, cwd=Path(__file__).parents[1],
    )  # fmt: skip
    df = pd.read_csv(csv)
    assert len(df) == len(tuning.OPS) * 2 * 2 and df["heuristic"].all()
    assert df["error"].isna().all()
    assert set(df["op"]) == set(tuning.OPS) and set(df["layout"]) == set(tuning.LAYOUTS)
    assert (df["registers"] <= 128).all() and (df["stack_bytes"] <= 64).all()
    assert (df["resident_warps"] >= 16).all()
    assert (df["shared_bytes"] == 0).all(), df.loc[df["shared_bytes"] > 0, ["op", "layout"]]


def test_precompiled_kernels_are_found_by_the_same_launches_in_another_folder(tmp_path):
    """``precompile pack`` compiles, without a GPU, what the benchmark's cases launch; unpacked
    into another cache folder, its records point there, and the same launches then compile
    nothing (a GPU machine's first run skips the compiles that took most of its time)."""
    import triton

    from benchmarks import precompile

    if not (Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas").exists():
        pytest.skip("this Triton build ships no ptxas")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    archive, cache = tmp_path / "kernels.tar.gz", tmp_path / "cache"
    argv = ["pack", str(archive), "--parts", "bench", "--bench-shapes", "2x16x12x10",
            "--filters", "3", "--dtypes", "float32", "--jobs", "1"]  # fmt: skip
    root = Path(__file__).parents[1]
    subprocess.run([sys.executable, "-m", "benchmarks.precompile", *argv], env=env, check=True,
                   capture_output=True, timeout=600, cwd=root)  # fmt: skip
    manifest = precompile.unpack(archive, cache)
    folders = sorted(p.name for p in cache.iterdir())
    # blur-pool (with and without the ReLU) and MaxBlurPool, forward and backward, 2 layouts
    assert manifest["kernels"] == len(folders) == len(list(cache.glob("*/*.cubin"))) == 12
    assert manifest["device"] == "NVIDIA H200" and manifest["triton"] == triton.__version__
    assert not list(cache.glob("*/*.ptx")) and not list(cache.glob("*/*.ttir"))
    for record in cache.glob("*/__grp__*.json"):
        paths = json.loads(record.read_text())["child_paths"].values()
        assert paths and all(Path(p).parent == record.parent and Path(p).exists() for p in paths)
    launch_again = (
        "from benchmarks import precompile as p; "
        f"[p.compile_launches(i) for i in p.work(p.parse_args({argv!r}), None)]"
    )
    subprocess.run([sys.executable, "-c", launch_again], check=True, capture_output=True,
                   env={**env, "TRITON_CACHE_DIR": str(cache)}, timeout=600, cwd=root)  # fmt: skip
    # (a compile writes each kernel's intermediate code beside its machine code)
    assert sorted(p.name for p in cache.iterdir()) == folders
    assert not list(cache.glob("*/*.ttir"))


def test_precompile_launches_every_quick_candidate_the_tuner_will_time(monkeypatch):
    """The autotuning part launches each quick candidate of each problem the suite tunes (the
    quick sweep's shapes, both layouts, bf16, filter sizes 3 and 5, every op), and one that
    fails to compile does not keep the others from being compiled."""
    from benchmarks import precompile

    launched = []

    def launcher(problem, device):
        def run(config):
            launched.append((problem, config))
            if len(launched) == 1:
                raise RuntimeError("out of resources")

        return SimpleNamespace(run=run)

    def candidates(problem, *, quick):
        assert quick
        return [{"BLOCK_H": 4}, {"BLOCK_H": 8}]

    monkeypatch.setattr(autotune, "launcher", launcher)
    monkeypatch.setattr(autotune, "candidates", candidates)
    monkeypatch.setattr(precompile, "refuse_interpreter", lambda parser: None)
    args = precompile.parse_args(["pack", "k.tar.gz", "--parts", "autotune",
                                  "--tune-shapes", "2x16x12x10"])  # fmt: skip
    items = precompile.work(args, None)
    problems = [item.what[0] for item in items]
    assert {(p.op, p.layout, p.dtype, p.filter_size) for p in problems} == {
        (op, layout, "bfloat16", k) for op in tuning.OPS for layout in ("nchw", "channels_last")
        for k in (3, 5)
    }  # fmt: skip
    for problem in problems:
        precompile.run_candidates(problem)
    assert launched == [(p, {"BLOCK_H": h}) for p in problems for h in (4, 8)]


def test_precompile_reads_the_triton_key_of_another_interpreter(monkeypatch):
    """The key another interpreter's Triton gives is the one this process computes for the
    same build; another Triton version is refused by name."""
    import triton
    from triton.runtime.cache import triton_key

    from benchmarks import precompile

    assert precompile.triton_key_of(sys.executable) == triton_key()
    monkeypatch.setattr(triton, "__version__", "0.0.1")
    with pytest.raises(SystemExit, match=r"its Triton is \S+, this one 0\.0\.1"):
        precompile.triton_key_of(sys.executable)


def test_host_overhead_times_every_op_and_layout_without_a_gpu(tmp_path):
    """The modules' whole host path per call, launches compiled for Hopper but not run, with
    PyTorch's own max-pool on a tiny tensor for scale."""
    import triton

    if not (Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas").exists():
        pytest.skip("this Triton build ships no ptxas")
    csv = tmp_path / "host.csv"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.host_overhead", "--shape", "2x16x12x10", "--dtype",
         "float32", "--number", "3", "--repeat", "1", "--csv", str(csv)],
        env=env, check=True, capture_output=True, text=True, timeout=600,
        cwd=Path(__file__).parents[1],
    )  # fmt: skip
    # The compile options are the kernels' own: Triton 3.9 warns where FMA fusion is not set.
    assert "TRITON_DEFAULT_FP_FUSION" not in done.stderr
    df = pd.read_csv(csv)
    assert len(df) == 3 * 2 + 1
    assert {"blur_pool", "blur_pool_relu", "max_blur_pool"} < set(df["op"])
    times = df[["inference_us", "forward_us", "backward_us"]]
    assert (times > 0).all().all() and (times < 1e6).all().all()


def test_host_overhead_keeps_the_rows_measured_before_a_stop(tmp_path, monkeypatch):
    """On the GPU run a step past its limit is stopped: the rows timed so far stay on file."""
    from benchmarks import host_overhead

    timed = []

    def phases(*args):
        if len(timed) == 2:
            raise KeyboardInterrupt
        timed.append(args)
        return {"inference_us": 1.0, "forward_us": 2.0, "backward_us": 3.0}

    monkeypatch.setattr(host_overhead, "phases", phases)
    monkeypatch.setattr(host_overhead, "compile_only", lambda *_: contextlib.nullcontext())
    csv = tmp_path / "host.csv"
    with pytest.raises(KeyboardInterrupt):
        host_overhead.main(["--shape", "1x2x6x6", "--dtype", "float32", "--csv", str(csv)])
    assert list(pd.read_csv(csv)["layout"]) == ["nchw", "channels_last"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without CUDA")
def test_host_overhead_real_launches_need_a_gpu(capsys):
    from benchmarks import host_overhead

    with pytest.raises(SystemExit):
        host_overhead.main(["--launch", "cuda"])
    assert "--launch cuda needs a CUDA device" in capsys.readouterr().err


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("op", tuning.OPS)
def test_autotune_saves_under_the_key_every_launcher_looks_up(monkeypatch, op, layout):
    """The key a winner is saved under (``autotune.key_of``) is the one the op's launcher asks
    ``launch_config`` for on the tuned input, for every op, ReLU fused or not: a winner saved
    under another key (say max kernel 0 for max-blur-pool) would silently never be used."""
    from kernels.ops import common

    asked = []

    def recording(op_name, key):
        asked.append((op_name, key))
        return tuning.heuristic_config(op_name, key)

    monkeypatch.setattr(common, "launch_config", recording)
    for relu in (False, True) if op.startswith("blur_") else (False,):
        problem = autotune.Problem(op, (2, 3, 9, 7), layout, "float32", 3, relu)
        problem_launcher = autotune.launcher(problem, torch.device("cpu"))
        tuning.clear_cache()  # plan anew: the launchers keep their plans per tuning state
        asked.clear()
        problem_launcher.run(None)
        saved = autotune.key_of(problem)
        assert [key for name, key in asked if name == op] == [saved]
        # Written out by hand: the buckets of 2·3 planes, a 9×7 map and 3 channels.
        expected = (f"nc=8|hw=64|c=4|float32|{layout}|k=3|s=2"
                    f"|mk={2 if op.startswith('max_') else 0}|relu={int(relu)}")  # fmt: skip
        assert saved.to_str() == expected
    tuning.clear_cache()


def test_autotune_keeps_the_fastest_candidate(monkeypatch):
    """``tune`` returns the candidate with the least median time, not the first or the last."""
    candidates = [{"BLOCK_H": h, "BLOCK_W": 8, "BLOCK_C": 1, "num_warps": 1, "num_stages": 1}
                  for h in (1, 2, 4)]  # fmt: skip
    times = {1: 3.0, 2: 1.0, 4: 2.0}  # by BLOCK_H: the middle candidate is the fastest
    ran = []

    def run(config):
        ran.append(config)
        return torch.ones(3)

    fake = autotune.ProblemLauncher(run=run, expected=lambda: torch.ones(3))
    monkeypatch.setattr(autotune, "launcher", lambda problem, device: fake)
    monkeypatch.setattr(autotune, "candidates", lambda problem, quick: candidates)

    def fake_time_ms(fn, device, rep_ms):
        fn()
        return times[ran[-1]["BLOCK_H"]]

    monkeypatch.setattr(autotune, "time_ms", fake_time_ms)
    problem = autotune.Problem("blur_pool_fwd", (2, 3, 9, 7), "nchw", "float32", 3)
    assert autotune.tune(problem, torch.device("cpu"), quick=True, rep_ms=1) == (candidates[1], 1.0)


@pytest.mark.parametrize("order", [("2x3x9x7", "2x3x8x8"), ("2x3x8x8", "2x3x9x7")])
def test_autotune_keeps_the_faster_of_two_shapes_in_one_bucket(tmp_path, monkeypatch, order):
    """2x3x9x7 and 2x3x8x8 share a key (nc=8, hw=64, c=4); whichever is tuned first, the
    table and the cache keep the faster shape's winner with its time."""
    fast = {"BLOCK_H": 2, "BLOCK_W": 8, "BLOCK_C": 1, "num_warps": 1, "num_stages": 1}
    slow = {"BLOCK_H": 4, "BLOCK_W": 8, "BLOCK_C": 1, "num_warps": 1, "num_stages": 1}
    winners = {(2, 3, 9, 7): (slow, 2.0), (2, 3, 8, 8): (fast, 1.0)}
    monkeypatch.setattr(autotune, "tune", lambda problem, device, quick, rep_ms:
                        winners[problem.shape])  # fmt: skip
    monkeypatch.setattr(autotune, "warm_ahead", lambda *args, **kwargs: None)
    monkeypatch.setenv(tuning.CACHE_DIR_ENV, str(tmp_path / "cache"))
    tuning.clear_cache()
    table = autotune.main(["--ops", "blur_pool_fwd", "--layouts", "nchw", "--shapes", *order,
                           "--out", str(tmp_path / "shipped.json")])  # fmt: skip
    key = "nc=8|hw=64|c=4|float32|nchw|k=3|s=2|mk=0|relu=0"
    assert table["configs"]["blur_pool_fwd"] == {key: {**fast, "ms": 1.0}}
    shipped = tuning.read_table(tmp_path / "shipped.json")
    assert shipped["configs"]["blur_pool_fwd"] == {key: {**fast, "ms": 1.0}}
    cache = tuning.read_table(tuning.user_cache_path())
    assert cache["configs"]["blur_pool_fwd"] == {key: {**fast, "ms": 1.0}}
    tuning.clear_cache()


def test_sweep_rows_hold_hand_computed_bandwidth_speedups_and_goals(monkeypatch):
    """The sweep's arithmetic on fixed timings: copy bandwidth reads and writes x (2 · bytes),
    each direction's bandwidth its own minimal bytes, percent of copy = ours / copy, speed-ups
    matched per (op, shape, filter size, layout, dtype, direction), and the goal verdict on
    the worst shiftlab row."""
    cases = [bench.Case("max_blur_pool", (2, 3, 8, 8), 3, "nchw", "float32"),
             bench.Case("max_blur_pool", (2, 3, 8, 8), 3, "channels_last", "float16"),
             bench.Case("max_blur_pool", (2, 3, 8, 8), 5, "nchw", "float32")]  # fmt: skip
    ours = {"fwd": 1.0, "bwd": 2.0, "fwd_bwd": 4.0}
    slower = {cases[0]: 2.0, cases[1]: 5.0, cases[2]: 3.0}  # pytorch's ms over ours

    def fake_measure(impl, x, device, rep_ms):
        name, case = impl
        factor = 1.0 if name == "shiftlab" else slower[case]
        y = torch.empty(2, 3, 4, 4, dtype=x.dtype)
        return {d: (ms * factor, 0.0) for d, ms in ours.items()}, y

    monkeypatch.setattr(bench, "copy_ms", lambda x, device, rep_ms: 0.5)
    monkeypatch.setattr(bench, "make_impl", lambda name, case, device, backend: (name, case))
    monkeypatch.setattr(bench, "measure", fake_measure)
    df = bench.run_cases(cases, ["shiftlab", "pytorch"], torch.device("cpu"), rep_ms=1,
                         progress=False)  # fmt: skip
    assert len(df) == 3 * 2 * 3
    # float32 x: 2·3·8·8·4 = 1536 bytes, y 384; float16 half that. Copy: 2 · 1536 B / 0.5 ms.
    first = df[(df["layout"] == "nchw") & (df["filter_size"] == 3)]
    assert first["copy_gb_per_s"].tolist() == pytest.approx([6.144e-3] * 6)
    half = df[df["dtype"] == "float16"]
    assert half["copy_gb_per_s"].tolist() == pytest.approx([3.072e-3] * 6)
    # Minimal bytes (max-blur-pool): fwd x + y = 1920, bwd y + x + codes (2·3·7·7 = 294 B,
    # one byte per max-map element whatever the dtype) = 2214, both 4134; percent of copy =
    # 100 · (bytes / ms) / (2 · 1536 / 0.5); at float16 x + y halve and the codes do not.
    shiftlab = df[df["impl"] == "shiftlab"].set_index(["layout", "dtype", "filter_size",
                                                       "direction"]).sort_index()  # fmt: skip
    row = shiftlab.loc[("nchw", "float32", 3)]
    assert row["gb_per_s"].to_dict() == pytest.approx(
        {"fwd": 1.92e-3, "bwd": 1.107e-3, "fwd_bwd": 1.0335e-3}
    )
    in_float32 = {"fwd": 31.25, "bwd": 18.017578125, "fwd_bwd": 16.8212890625}
    in_float16 = {"fwd": 31.25, "bwd": 20.41015625, "fwd_bwd": 18.017578125}  # 1254 B, 2214 B
    for case in cases:
        pct = shiftlab.loc[(case.layout, case.dtype, case.filter_size)]["pct_copy"].to_dict()
        assert pct == pytest.approx(in_float16 if case.dtype == "float16" else in_float32)
    pytorch = df[df["impl"] == "pytorch"].set_index(["layout", "dtype", "filter_size",
                                                     "direction"]).sort_index()  # fmt: skip
    assert pytorch.loc[("nchw", "float32", 3, "fwd"), "pct_copy"] == pytest.approx(15.625)
    assert (pytorch["speedup_vs_pytorch"] == 1.0).all()
    speedups = {(c.layout, c.filter_size): shiftlab.loc[(c.layout, c.dtype, c.filter_size),
                                                        "speedup_vs_pytorch"].tolist()
                for c in cases}  # fmt: skip
    assert speedups == {("nchw", 3): [2.0] * 3, ("channels_last", 3): [5.0] * 3,
                        ("nchw", 5): [3.0] * 3}  # fmt: skip
    goals = bench.goal_table(df).set_index("goal")
    vs_pytorch = goals.loc["fwd+bwd >= 4x faster than pad+conv2d"]
    assert (vs_pytorch["worst"], vs_pytorch["rows"], vs_pytorch["status"]) == (2.0, 3, "not met")
    assert goals["status"].tolist() == ["not measured", "not measured", "not met", "not measured"]


def test_goals_judge_only_shiftlab_rows():
    """A peer's slow rows (here PyTorch at 20 % of copy) do not count against our goals."""
    common = {"error": "", "direction": "fwd", "input_mb": 100.0, "ms": 1.0, "filter_size": 3,
              "layout": "nchw"}  # fmt: skip
    rows = [
        {**common, "impl": "shiftlab", "pct_copy": 90.0, "dtype": "float16"},
        {**common, "impl": "shiftlab", "pct_copy": 85.0, "dtype": "bfloat16"},
        {**common, "impl": "pytorch", "pct_copy": 20.0, "dtype": "float16"},
    ]
    goal = bench.goal_table(pd.DataFrame(rows)).iloc[0]
    assert (goal["worst"], goal["rows"], goal["status"]) == (85.0, 2, "met on 2 of 24 goal cases")


def test_cpu_reference_times_each_formulation_of_the_same_op(tmp_path):
    """The CPU benchmark compares like with like: its pad + depthwise-conv formulations compute
    what the project's ops compute, and each row is a multiple of MaxPool2d(2, 2)'s time."""
    from benchmarks import cpu_reference

    x = torch.randn(2, 3, 9, 7, dtype=torch.float64)
    ops = cpu_reference.cases(5, 3, torch.float64)
    for formulation, ours in (("pad+dwconv", "blur_pool2d"),
                              ("MaxPool2d(2,1)+pad+dwconv", "max_blur_pool2d")):  # fmt: skip
        torch.testing.assert_close(ops[formulation](x), ops[ours](x))
    csv = tmp_path / "cpu.csv"
    cpu_reference.main(["--shape", "2x3x9x7", "--filter-size", "5", "--warmup", "0",
                        "--repeats", "1", "--threads", str(torch.get_num_threads()),  # as it was
                        "--csv", str(csv)])  # fmt: skip
    table = pd.read_csv(csv)
    assert len(table) == len(ops) * 2 * 2  # ops x layouts x passes
    assert set(table["shape"]) == {"2x3x9x7"} and (table["ms"] > 0).all()
    baseline = table[table["op"] == "MaxPool2d(2,2)"]
    assert (baseline["x MaxPool2d(2,2)"] == 1.0).all()


@pytest.mark.parametrize(
    ("command", "argv", "message"),
    [
        ("kernels.bench", ["--filters", "3", "0"], "--filters: 0 is not a finite number above 0"),
        ("kernels.bench", ["--shapes", "2x3x9"], "argument --shapes: shape '2x3x9': expected four"),
        ("kernels.bench", ["--budget-s", "-1"], "--budget-s: -1 is not a finite number above 0"),
        ("kernels.autotune", ["--rep-ms", "0"], "--rep-ms: 0 is not a finite number above 0"),
        ("kernels.autotune", ["--shapes", "axb"], "argument --shapes: shape 'axb': expected four"),
        ("kernels.bench", ["--device", "foo"], "argument --device: 'foo' is not a device"),
        ("benchmarks.end_to_end", ["--variants", "aa_torch"], "'baseline' is needed"),
        ("kernels.autotune", ["--out", "."], "argument --out: . is a folder; give a file path"),
        ("benchmarks.end_to_end", ["--models", "resnet18", "vgg", "--image-size", "8"],
         "--image-size: image_size=8 is too small for model 'vgg'"),
        ("benchmarks.static_cost", ["--arch", "70"], "'70' is not a compute capability the"),
        ("benchmarks.static_cost", ["--num-warps", "3"], "--num-warps: invalid choice: 3"),
        ("benchmarks.static_cost", ["--filters", "0"], "--filters: 0 is not a finite number"),
        ("benchmarks.resource_usage", ["--dtypes", "fp16"], "--dtypes: invalid choice: 'fp16'"),
        ("benchmarks.resource_usage", ["--shapes", "1x2"], "shape '1x2': expected four"),
        ("benchmarks.host_overhead", ["--arch", "sm_90"], "'sm_90' is not a compute capability"),
        ("benchmarks.precompile", ["pack", "k.tar.gz"], "TRITON_INTERPRET is set: this tool"),
        ("benchmarks.precompile", ["pack", "k.tar.gz", "--parts", "gpu"],
         "--parts: invalid choice: 'gpu'"),
        ("benchmarks.precompile", ["pack", "k.tar.gz", "--models", "resnet"],
         "did you mean 'resnet18'"),
        ("benchmarks.host_overhead", ["--shape", "2x8x1x1"], "H and W must be at least 2"),
        ("benchmarks.cpu_reference", ["--shape", "2x8x4x4", "--filter-size", "7"],
         "--shape 2x8x4x4: H and W must be at least 5 for --filter-size 7"),
        ("benchmarks.cpu_reference", ["--warmup", "-1"], "--warmup: -1 is not a finite number"),
        # (a backend this machine lacks: Linux has no MPS)
        ("kernels.bench", ["--device", "mps"], "'mps': this machine cannot use it"),
    ],
)
def test_bad_arguments_are_refused_before_any_work(command, argv, message, capsys):
    module = importlib.import_module(command)
    with pytest.raises(SystemExit) as exit_info:
        getattr(module, "parse_args", module.main)(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_end_to_end_leaves_out_the_fused_kernels_where_they_cannot_run(monkeypatch, capsys):
    """Off CUDA and outside the interpreter, the default variants skip aa_triton, and asking
    for it is refused when parsing (it had failed run after run; so had the default on a
    machine without a GPU, which had been taken for the interpreter)."""
    from benchmarks import end_to_end

    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert "aa_triton" in end_to_end.parse_args(["--device", "cpu"]).variants
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert end_to_end.parse_args(["--device", "cpu"]).variants == [
        "baseline", "aa_torch", "aa_placement"]
    with pytest.raises(SystemExit) as exit_info:
        end_to_end.parse_args(["--device", "cpu", "--variants", "baseline", "aa_triton"])
    assert exit_info.value.code == 2
    assert "--variants aa_triton: the fused kernels do not run on --device cpu" in (
        capsys.readouterr().err)


def test_bench_times_the_reference_where_the_fused_kernels_cannot_run(monkeypatch, capsys):
    """On the CPU outside the interpreter, shiftlab's rows default to the reference ops, the
    goals (the fused kernels') are not judged on them, and ``--backend triton`` is refused
    when parsing (each of its cases had failed after the baselines' timings)."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert bench.parse_args(["--device", "cpu"]).backend == "triton"
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert bench.parse_args(["--device", "cpu"]).backend == "torch"
    assert bench.parse_args(["--device", "cpu", "--backend", "triton", "--impls",
                             "pytorch"]).backend == "triton"  # (shiftlab not timed)  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        bench.parse_args(["--device", "cpu", "--backend", "triton"])
    assert exit_info.value.code == 2
    assert "--backend triton: the fused kernels do not run on --device cpu" in (
        capsys.readouterr().err)
    rows = pd.DataFrame({"impl": ["shiftlab"], "error": [""], "ms": [1.0], "direction":
                         ["fwd_bwd"], "speedup_vs_pytorch": [9.0], "input_mb": [128.0],
                         "dtype": ["bfloat16"]})  # fmt: skip
    assert bench.goal_table(rows).loc[2, "status"] == "met"
    assert set(bench.goal_table(rows, judged=False)["status"]) == {"not measured"}


def test_bench_sizes_its_default_sweep_to_the_device_and_lets_dynamo_compile_every_case(
    tmp_path, monkeypatch, capsys
):
    """On the CPU the default sweep is one CIFAR-sized map (the GPU's, ImageNet-sized maps,
    had taken an hour), and ``torch.compile`` may compile each case on any device (past
    Dynamo's recompile limit, 8, the "compile" rows of a CPU sweep had timed eager code)."""
    planned = {}
    monkeypatch.setattr(bench, "configure_compile", lambda cases: planned.update(limit=cases))
    monkeypatch.setattr(bench, "warm_ahead", lambda *args, **kwargs: None)
    monkeypatch.setattr(bench, "run_cases", lambda cases, *args, **kwargs: planned.update(
        cases=cases) or pd.DataFrame(columns=sorted(COLUMNS)))  # fmt: skip
    bench.main(["--device", "cpu", "--impls", "pytorch", "compile", "--no-figures",
                "--out", str(tmp_path)])  # fmt: skip
    assert {case.shape for case in planned["cases"]} == {(16, 64, 32, 32)}
    assert planned["limit"] == len(planned["cases"]) > 8
    printed = capsys.readouterr().out
    assert "on cpu (cpu) in Triton's interpreter: no rows" in printed  # said to be empty


@pytest.mark.skipif(torch.cuda.is_available(), reason="the tuner runs on this machine's GPU")
def test_autotune_without_a_gpu_needs_the_interpreter(monkeypatch, capsys):
    """Without a GPU the tuner runs only under the interpreter; outside it, it is refused
    when parsing (it had failed with Triton's "0 active drivers" after listing its work)."""
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(SystemExit) as exit_info:
        autotune.parse_args(["--quick"])
    assert exit_info.value.code == 2
    assert "the fused kernels do not run here: there is no CUDA device" in (
        capsys.readouterr().err)


@pytest.mark.parametrize("command", ["benchmarks.static_cost", "benchmarks.resource_usage"])
def test_the_compile_tools_refuse_the_interpreter(command, monkeypatch, capsys):
    """They compile for a GPU, which the interpreter does not: said when parsing (they had
    failed with an AttributeError or IndexError from inside Triton)."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    with pytest.raises(SystemExit) as exit_info:
        importlib.import_module(command).main(["--filters", "3"])
    assert exit_info.value.code == 2 and "TRITON_INTERPRET is set" in capsys.readouterr().err


def test_a_stopped_command_says_so_in_one_line_and_exits_130(capsys):
    from kernels.cli_types import run_command

    def stopped() -> None:
        raise KeyboardInterrupt

    for main, status in ((stopped, 130), (lambda: 1, 1), (pd.DataFrame, 0)):
        with pytest.raises(SystemExit) as exit_info:
            run_command(main)
        assert exit_info.value.code == status
    assert capsys.readouterr().err == "interrupted: the results measured so far are written\n"


def test_output_paths_are_checked_when_parsing(tmp_path):
    """An output a run could not write is refused before the run measures anything: a folder
    given for a file, a file for a folder, a path below a file, a file system that takes no
    new entries; a path whose folders are missing is fine (they are made)."""
    from kernels.cli_types import output_file, output_folder

    existing = tmp_path / "table.csv"
    existing.write_text("")
    missing = tmp_path / "new" / "deeper" / "table.csv"
    assert output_file(str(missing)) == missing
    assert output_file(str(existing)) == existing  # rewritten
    assert output_folder(str(tmp_path)) == tmp_path  # written into
    refusals = [(output_file, tmp_path, "is a folder; give a file path"),
                (output_folder, existing, "is a file; give a folder"),
                (output_file, existing / "below.csv", f"'{existing}' is a file, not a folder"),
                (output_folder, existing / "below", f"'{existing}' is a file, not a folder")]
    if Path("/proc/self").is_dir():  # Linux: even root cannot make a folder there
        refusals.append((output_folder, Path("/proc/shiftlab-results"),
                         "'/proc' takes no new files"))  # fmt: skip
    for check, path, message in refusals:
        with pytest.raises(argparse.ArgumentTypeError, match=re.escape(message)):
            check(str(path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.csv"]  # the checks leave nothing


def test_an_output_below_a_folder_that_cannot_be_looked_into_is_named(tmp_path, monkeypatch):
    """Where a folder on the way refuses a look inside, the write check names it, rather
    than the path being called a folder."""
    from kernels.cli_types import output_file

    locked = tmp_path / "locked"
    stat = Path.stat

    def refusing_stat(path, *args, **kwargs):
        if path.is_relative_to(locked) and path != locked:
            raise PermissionError(13, "Permission denied", str(path))
        return stat(path, *args, **kwargs)

    monkeypatch.setattr(Path, "stat", refusing_stat)
    with pytest.raises(argparse.ArgumentTypeError, match="takes no new files"):
        output_file(str(locked / "sub" / "table.csv"))


def test_number_options_take_what_they_say_and_name_what_they_refuse(capsys):
    """``positive`` takes numbers above 0, ``non_negative`` 0 too, neither an infinity or
    NaN; text that is no number gets argparse's own message, naming the type."""
    from kernels.cli_types import non_negative, positive

    assert positive(float)("0.5") == 0.5 and non_negative(int)("0") == 0
    refused = [(positive(float), "0"), (positive(float), "inf"), (non_negative(float), "nan"),
               (non_negative(int), "-1"), (non_negative(float), "-inf")]  # fmt: skip
    for parse, text in refused:
        with pytest.raises(argparse.ArgumentTypeError, match=f"{text} is not a finite number"):
            parse(text)
    parser = argparse.ArgumentParser()
    parser.add_argument("--rep-ms", type=positive(float))
    with pytest.raises(SystemExit):
        parser.parse_args(["--rep-ms", "fast"])
    assert "argument --rep-ms: invalid float value: 'fast'" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without CUDA")
def test_a_cuda_device_is_refused_where_there_is_none(capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(["--device", "cuda"])
    assert "this machine has no CUDA device; use cpu" in capsys.readouterr().err


def test_a_sweep_that_measured_nothing_exits_non_zero(capsys):
    failed = pd.DataFrame([{"impl": "shiftlab", "error": "ValueError: no"}])
    assert bench.exit_status(failed) == 1 and "no case was measured" in capsys.readouterr().err
    assert bench.exit_status(pd.DataFrame()) == 1
    assert bench.exit_status(pd.DataFrame([{"impl": "shiftlab", "error": ""}])) == 0


def test_a_goal_is_not_met_where_shiftlab_failed_a_case():
    """A case whose shiftlab run failed (out of resources, a compile error) is one the goal
    is not met on: the other cases' rows alone must not make it "met"."""
    common = {"op": "blur_pool", "shape": "256x64x112x112", "layout": "nchw",
              "dtype": "bfloat16", "input_mb": 392.0, "impl": "shiftlab"}  # fmt: skip
    rows = [{**common, "filter_size": 2, "direction": d, "ms": 1.0, "pct_copy": 90.0,
             "speedup_vs_pytorch": 5.0, "speedup_vs_compile": 2.0, "error": ""}
            for d in bench.DIRECTIONS]  # fmt: skip
    rows.append({**common, "filter_size": 3, "error": "OutOfResources: shared memory"})
    assert set(bench.goal_table(pd.DataFrame(rows))["status"]) == {"not met"}


def test_bench_does_not_judge_the_goals_on_the_interpreters_timings(tmp_path, monkeypatch,
                                                                     capsys):
    """Under TRITON_INTERPRET=1 the fused kernels run in Triton's interpreter on the CPU: the
    goals, a GPU's, are not judged on those timings (they had read "not met", or "met" where
    a contended CPU slowed the baselines)."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")

    def fake_measure(impl, x, device, rep_ms):
        factor = 1.0 if impl == "shiftlab" else 10.0
        return {d: (factor, 0.0) for d in bench.DIRECTIONS}, torch.empty(1, 1, 4, 4)

    monkeypatch.setattr(bench, "copy_ms", lambda x, device, rep_ms: 0.5)
    monkeypatch.setattr(bench, "make_impl", lambda name, case, device, backend: name)
    monkeypatch.setattr(bench, "measure", fake_measure)
    bench.main(["--device", "cpu", "--shapes", "1x1x8x8", "--filters", "3", "--layouts",
                "nchw", "--dtypes", "float32", "--ops", "blur_pool", "--impls", "shiftlab",
                "pytorch", "compile", "--out", str(tmp_path), "--no-figures"])  # fmt: skip
    assert "goals: not judged" in capsys.readouterr().out
    goals = json.loads((tmp_path / "kernels.json").read_text())["goals"]
    assert {g["status"] for g in goals} == {"not measured"}


def test_end_to_end_does_not_judge_the_goal_on_the_interpreter():
    """aa_triton on the CPU is Triton's interpreter: its images/s say nothing of the goal."""
    from benchmarks import end_to_end

    df = pd.DataFrame({"model": ["vgg"], "layout": ["nchw"], "variant": ["aa_triton"],
                       "train_ratio": [0.001], "activation_vs_baseline": [0.9],
                       "memory_vs_baseline_mb": [math.nan]})  # fmt: skip
    assert end_to_end.goals(df)[0]["status"] == "not met"
    assert end_to_end.goals(df, judged=False)[0]["status"].startswith("not judged")
    # without a baseline there is no ratio to judge: not "not met"
    no_baseline = df.assign(train_ratio=math.nan, activation_vs_baseline=math.nan)
    assert end_to_end.goals(no_baseline)[0]["status"] == "not measured (no baseline row)"


def test_results_are_strict_json_with_their_threads_recorded(tmp_path):
    """A goal worth NaN (a baseline that did not run) is written as null: JSON has no NaN, and
    strict readers (a browser's JSON.parse) refused the file. CPU timings depend on the thread
    count, which the metadata records."""
    from kernels.bench_results import run_metadata, write_results

    meta = run_metadata(torch.device("cpu"))
    assert meta["torch_threads"] == torch.get_num_threads()
    df = pd.DataFrame({"ms": [1.0, math.nan]})
    write_results(tmp_path, "t", df, meta, {"goals": [{"ratio": math.nan, "ok": True}]})
    payload = json.loads((tmp_path / "t.json").read_text(), parse_constant=pytest.fail)
    assert payload["goals"] == [{"ratio": None, "ok": True}]
    assert payload["rows"] == [{"ms": 1.0}, {"ms": None}]


def _eager_compile_cases(count: int) -> list:
    """``count`` distinct cases, each a new closure of the pad + conv2d formulation's code."""
    ops_filters = [(op, k) for op in bench.OPS for k in bench.FULL_FILTERS]
    return [bench.Case(op, (1, 2, 9, 9), k, "nchw", "float32") for op, k in ops_filters[:count]]


@pytest.fixture
def eager_compile(monkeypatch):
    """``torch.compile`` with Dynamo's eager backend (no Inductor build on the CPU), Dynamo's
    limits restored afterwards; yields a counter of the graphs Dynamo compiled."""
    from torch._dynamo.utils import counters

    config = torch._dynamo.config
    for name in ("cache_size_limit", "accumulated_cache_size_limit"):
        monkeypatch.setattr(config, name, getattr(config, name))
    monkeypatch.setattr(bench.torch, "compile", lambda fn, **kwargs: torch._dynamo.optimize(
        "eager", dynamic=kwargs.get("dynamic"))(fn))  # fmt: skip
    torch._dynamo.reset()
    counters.clear()
    yield lambda: counters["stats"]["unique_graphs"]
    torch._dynamo.reset()


def test_the_compile_rows_of_a_sweep_past_dynamos_accumulated_limit_are_compiled(
        monkeypatch, eager_compile):
    """Every case compiles the formulation's one code object anew, and Dynamo also caps the
    compiles of a code object over the whole process (256 by default, fewer than the 360
    cases of the default GPU sweep): past that cap the "compile" rows timed eager code."""
    monkeypatch.setattr(torch._dynamo.config, "accumulated_cache_size_limit", 3)
    cases = _eager_compile_cases(5)
    bench.configure_compile(len(cases))
    x = torch.randn(1, 2, 9, 9, requires_grad=True)
    for case in cases:
        bench.make_impl("compile", case, x.device, "torch")(x).sum().backward()
    assert eager_compile() == len(cases)


def test_a_warm_up_worker_compiles_every_case_it_is_handed(tmp_path, monkeypatch, eager_compile):
    """A warm-up worker compiles case after case of the sweep (some 22 each of the default GPU
    sweep's 360 in 16 workers): past Dynamo's limit of 8 compiles it had run the rest eager,
    leaving their Inductor compiles to the timed sweep."""
    warmed = {}
    monkeypatch.setattr(bench, "warm_ahead", lambda task, cases, **kwargs: warmed.update(
        task=task, cases=cases))  # fmt: skip
    monkeypatch.setattr(bench, "run_cases", lambda *args, **kwargs: pd.DataFrame(
        columns=sorted(COLUMNS)))  # fmt: skip
    bench.main(["--device", "cpu", "--backend", "torch", "--impls", "compile", "--shapes",
                "1x2x9x9", "--dtypes", "float32", "--layouts", "nchw", "--no-figures",
                "--out", str(tmp_path)])  # fmt: skip
    assert len(warmed["cases"]) > 8
    monkeypatch.setattr(torch._dynamo.config, "cache_size_limit", 8)  # a spawned worker's
    for case in warmed["cases"]:  # as one worker would take them
        warmed["task"](case)
    assert eager_compile() == len(warmed["cases"])


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (1, 12, 6, 28), (2, 64, 8, 8)])
def test_minimal_bytes_read_the_gradients_route_at_the_size_the_kernels_keep_it(shape, layout):
    """The ReLU's bits are packed eight to a byte along the contiguous axis only (a row of 28
    columns keeps 4 bytes, not 3.5), the max's codes a byte per max-map element."""
    from kernels.ops.blur_pool import relu_mask_buffer
    from kernels.ops.max_blur_pool import max_codes_buffer

    x = measure.random_input(shape, "float16", layout, torch.device("cpu"))
    y = torch.empty(1, dtype=x.dtype)  # only x's route is asked about
    kept = {"blur_pool": 0, "blur_pool_relu": relu_mask_buffer(x).numel(),
            "max_blur_pool": max_codes_buffer(x, bench.MAX_KERNEL).numel()}  # fmt: skip
    for op, routing in kept.items():
        moved = bench.minimal_bytes(bench.Case(op, shape, 3, layout, "float16"), x, y)
        assert moved["bwd"] - y.nbytes - x.nbytes == routing, op


@pytest.mark.parametrize("op", tuning.OPS)
@pytest.mark.parametrize("shape", [(256, 64, 32, 32), (64, 512, 14, 14), (64, 64, 112, 112)])
def test_gpu_candidates_are_each_tried_once(monkeypatch, op, shape):
    """A small map's whole-map tiles can coincide with a streamed tile (16 planes × 8 rows ×
    16 columns at 32×32): the same launch would be timed twice, out of a GPU's short loan."""
    monkeypatch.setattr(hardware, "interpreting", lambda: False)
    monkeypatch.setattr(hardware, "device_name", lambda: "NVIDIA H200")
    for layout, quick in itertools.product(("nchw", "channels_last"), (True, False)):
        configs = autotune.candidates(autotune.Problem(op, shape, layout, "float16", 3),
                                      quick=quick)  # fmt: skip
        assert len({tuple(sorted(c.items())) for c in configs}) == len(configs), (layout, quick)


@pytest.mark.parametrize(("op", "relu", "forward"), [
    ("max_blur_pool_fwd", False, "max_blur_pool2d_forward"),
    ("blur_pool_fwd", True, "blur_pool2d_forward"),
])  # fmt: skip
def test_autotune_skips_a_forward_whose_saved_route_is_wrong(monkeypatch, capsys, op, relu,
                                                             forward):
    """A forward candidate also writes what its backward reads (the max's codes, the ReLU's
    mask): one whose output is right but whose codes or mask are not would corrupt every
    gradient of the ops that use it, and so is no valid candidate."""
    right = dict(tuning.heuristic_config(op, autotune.key_of(
        autotune.Problem(op, (2, 3, 9, 7), "nchw", "float32", 3, relu))))
    wrong = {**right, "BLOCK_H": 2 * right["BLOCK_H"]}
    launch = getattr(autotune, forward)

    def corrupting(*args, config=None, **kwargs):
        y = launch(*args, config=config, **kwargs)
        if config == wrong:
            saved = kwargs["codes"] if "codes" in kwargs else kwargs["mask"]
            saved.zero_()
        return y

    monkeypatch.setattr(autotune, forward, corrupting)
    monkeypatch.setattr(autotune, "candidates", lambda problem, quick: [wrong, right])
    problem = autotune.Problem(op, (2, 3, 9, 7), "nchw", "float32", 3, relu)
    best = autotune.tune(problem, torch.device("cpu"), quick=True, rep_ms=1)
    assert best is not None and best[0] == right
    assert f"skipped {wrong}" in capsys.readouterr().out


def test_bench_says_when_kornias_max_blur_pool_computes_a_smaller_output(tmp_path, monkeypatch):
    """Before 0.9 kornia padded (k - 1) // 2 on both sides: at even filter sizes its
    max_blur_pool2d (on the odd map a 2x2 max leaves) gave a row and a column fewer than the
    others, less work to compare against. The version it ran is recorded, and that said."""
    kornia = pytest.importorskip("kornia")
    monkeypatch.setattr(kornia, "__version__", "0.8.2")
    run_bench(tmp_path, "--impls", "kornia", "--filters", "4", "--ops", "max_blur_pool",
              "--no-figures")  # fmt: skip
    meta = json.loads((tmp_path / "kernels.json").read_text())["meta"]
    assert meta["kornia"] == "0.8.2"
    assert any("kornia 0.8.2" in note and "even filter sizes" in note for note in meta["notes"])
