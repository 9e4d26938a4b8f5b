"""run_variant end to end: the documented metric names, seeding, config and device checks, CLI."""

import dataclasses
import json
import math

import pytest
import torch
from torch import nn

from ablate import variant
from ablate.flops import forward_flops
from ablate.models import build_model
from ablate.polyphase import PolyphasePool2d
from ablate.train import TrainResult
from ablate.variant import UnbuildableVariant, main, resolve_device, run_variant
from ablate.variant_config import VariantConfig
from kernels.provenance import source_fingerprint

DOCUMENTED_METRICS = {
    "accuracy",
    "chance_accuracy",
    "learned",
    "consistency_circular",
    "consistency_crop",
    "adversarial_circular",
    "adversarial_crop",
    "accuracy_vs_shift_circular",
    "accuracy_vs_shift_crop",
    "true_prob_vs_shift_circular",
    "true_prob_vs_shift_crop",
    "filter_tv",
    "filter_tv_mean",
    "train_images_per_s",
    "infer_images_per_s",
    "peak_memory_mb",
    "forward_mflops",
    "train_seconds",
    "final_train_loss",
    "accuracy_during_training",
    "last_quarter_gain",
    "params",
    "baseline_network",
    "n_test",
    "n_eval",
    "device",
    "code",
    "commit",
    "torch",
}
PERCENTAGES = ("accuracy", "consistency_circular", "consistency_crop")
TINY = {
    "placement": "none",
    "train_size": 20,
    "test_size": 12,
    "width": 2,
    "steps": 2,
    "batch_size": 10,
    "eval_size": 8,
    "shift": 1,
    "diagonal": 2,
    "crop_pad": 2,
    "throughput_batch": 4,
    "device": "cpu",
}


def test_small_vgg_on_synthetic_data_learns_on_the_cpu():
    """The short CPU run: small anti-aliased VGG, synthetic data, well above chance (10 %)."""
    config = {
        "model": "vgg",
        "width": 16,
        "placement": "paper",
        "filter_size": 3,
        "train_size": 3000,
        "test_size": 500,
        "epochs": 3,
        "batch_size": 32,
        "optimizer": "adamw",
        "lr": 0.002,
        "eval_size": 200,
        "shift": 2,
        "diagonal": 3,
        "crop_pad": 4,
        "throughput_batch": 32,
        "device": "cpu",
    }
    metrics = run_variant(config)
    assert set(metrics) == DOCUMENTED_METRICS
    assert metrics["accuracy"] > 40  # chance is 10 %; about 75-80 % at this budget
    assert metrics["learned"] is True and 10 <= metrics["chance_accuracy"] < 15
    during = metrics["accuracy_during_training"]
    assert len(during) == 4 and during[-1] == pytest.approx(metrics["accuracy"])
    assert during[0] < during[-1]  # it learned along the way
    assert metrics["last_quarter_gain"] == pytest.approx(during[-1] - during[-2])
    for name in PERCENTAGES:
        assert 0 <= metrics[name] <= 100, name
    for kind in ("circular", "crop"):
        assert 0 <= metrics[f"adversarial_{kind}"] <= metrics["accuracy_vs_shift_" + kind][0]
        assert len(metrics[f"accuracy_vs_shift_{kind}"]) == 4
        assert all(0 < p < 1 for p in metrics[f"true_prob_vs_shift_{kind}"])
    assert set(metrics["filter_tv"]) == {f"features.{i}.0" for i in (0, 2, 4, 5, 7, 8)}
    tv = metrics["filter_tv"].values()
    assert metrics["filter_tv_mean"] == pytest.approx(sum(tv) / len(tv))
    threads = torch.get_num_threads()  # on a CPU part of what computes a run
    isa = torch.backends.cpu.get_cpu_capability()  # (the vector width torch's kernels use)
    device = f"cpu {isa} ({threads} thread{'' if threads == 1 else 's'})"
    assert (metrics["n_test"], metrics["n_eval"], metrics["device"]) == (500, 200, device)
    assert metrics["baseline_network"] is False
    assert metrics["code"] == source_fingerprint("ablate", "kernels") and len(metrics["code"]) == 12
    assert metrics["train_images_per_s"] > 0 and metrics["infer_images_per_s"] > 0
    assert math.isnan(metrics["peak_memory_mb"])
    assert math.isfinite(metrics["final_train_loss"]) and metrics["train_seconds"] > 0
    # the trained network's own count: the anti-aliased VGG's, not the baseline's
    baseline = forward_flops(build_model("vgg", width=16), (3, 32, 32))
    assert baseline / 1e6 < metrics["forward_mflops"] < 1.1 * baseline / 1e6


def test_training_metrics_are_the_training_runs_own(monkeypatch) -> None:
    """`accuracy_during_training`, `last_quarter_gain` (the last probe less the one before it),
    `train_seconds` and `final_train_loss` are read from the training run's result, and the
    speed metrics from the speed measurement's."""
    real_train = variant.train

    def train(*args: object, **kwargs: object) -> TrainResult:
        result = real_train(*args, **kwargs)
        return dataclasses.replace(result, probes=[10.0, 20.0, 35.0, 60.0], seconds=7.0,
                                   final_loss=0.25)  # fmt: skip

    speed = {"train_images_per_s": 1.0, "infer_images_per_s": 2.0, "peak_memory_mb": 3.0}
    monkeypatch.setattr(variant, "train", train)
    monkeypatch.setattr(variant, "measure_speed", lambda *args, **kwargs: dict(speed))
    metrics = run_variant(TINY)
    assert {name: metrics[name] for name in speed} == speed
    assert metrics["accuracy_during_training"] == [10.0, 20.0, 35.0, 60.0]
    assert metrics["last_quarter_gain"] == 25.0
    assert (metrics["train_seconds"], metrics["final_train_loss"]) == (7.0, 0.25)


def test_same_seed_same_numbers():
    runs = [run_variant(TINY | {"seed": seed}) for seed in (1, 1, 2)]
    timing = {"train_images_per_s", "infer_images_per_s", "train_seconds"}
    same = [{k: v for k, v in run.items() if k not in timing} for run in runs]
    assert json.dumps(same[0]) == json.dumps(same[1])
    assert same[0]["final_train_loss"] != same[2]["final_train_loss"]


@pytest.mark.parametrize("subsample", ["fixed", "lps"])
def test_a_conversion_leaves_the_random_state_that_training_draws_from(subsample):
    """Dropout and drop-path draw from the global generator in training: a conversion that
    drew from it (LPS's scorers, timm's norm-activation check) gave a seed's converted runs
    other masks than its baseline's run."""
    def state_after(**changes: object) -> torch.Tensor:
        config = VariantConfig(**TINY | changes)
        torch.manual_seed(config.seed)
        variant.build_network(config, 10, 32, torch.device("cpu"))
        return torch.get_rng_state()

    converted = state_after(placement="paper", filter_size=3, subsample=subsample)
    assert torch.equal(converted, state_after(placement="none"))


def test_a_one_tap_filter_at_max_pools_trains_the_baseline_network():
    """Placement none, and a one-tap filter at the VGG's max-pools, train one network: the runs
    say so (`baseline_network`), and their numbers agree but for the time and the blur's FLOPs."""
    differ = {"train_images_per_s", "infer_images_per_s", "train_seconds", "forward_mflops",
              "baseline_network"}  # fmt: skip
    runs = [run_variant(TINY | placed) for placed in (
        {}, {"placement": "paper", "filter_size": 1}, {"placement": "paper", "filter_size": 2},
    )]  # fmt: skip
    assert [run["baseline_network"] for run in runs] == [True, True, False]
    same = [json.dumps({k: v for k, v in run.items() if k not in differ}) for run in runs]
    assert same[0] == same[1] != same[2]


def test_bad_config_names_the_field():
    with pytest.raises(ValueError, match="placment"):
        run_variant({"placment": "none"})
    with pytest.raises(ValueError, match=r"unknown setting 'fliter_size' \(did you mean 'filter_"):
        run_variant({"fliter_size": 3})
    with pytest.raises(ValueError, match=r"^epochs: Input should be greater than 0 \(got -1\)$"):
        run_variant({"epochs": -1})  # one line, not pydantic's report with its links
    with pytest.raises(ValueError, match="VariantConfig or a dict"):
        run_variant([("epochs", 1)])
    with pytest.raises(ValueError, match="subsample 'aps' needs placement"):
        run_variant({"subsample": "aps", "placement": "blur_before_max"})


@pytest.mark.parametrize("dataset", ["folder", "cifar10"])
def test_data_that_is_not_there_makes_the_variant_unbuildable(tmp_path, dataset):
    """A data folder or file not (yet) there fails the same way every time: the engine must
    fail the point once and run it on a resume, not spend its retries on it."""
    with pytest.raises(UnbuildableVariant, match=f"{tmp_path / 'absent'}"):
        run_variant(TINY | {"dataset": dataset, "data_dir": str(tmp_path / "absent")})


def spy_on(monkeypatch, *names: str) -> dict[str, list[tuple]]:
    """Record every call of the named functions of `ablate.variant`, as (args, kwargs,
    result), by name."""
    calls: dict[str, list[tuple]] = {name: [] for name in names}

    def spy(name):
        function = getattr(variant, name)

        def call(*args, **kwargs):
            result = function(*args, **kwargs)
            calls[name].append((args, kwargs, result))
            return result

        return call

    for name in names:
        monkeypatch.setattr(variant, name, spy(name))
    return calls


@pytest.mark.parametrize("subsample", ["aps", "lps"])
def test_subsampling_and_conv_padding_reach_the_network(monkeypatch, subsample):
    """The exact invariance they buy is tested in test_antialias; here, that the config's
    fields build that network (a briefly trained net is too close to constant to show it)."""
    calls = spy_on(monkeypatch, "build_model", "antialias")
    fields = {"placement": "paper", "padding": "circular", "conv_padding": "circular"}
    metrics = run_variant(TINY | fields | {"model": "resnet18", "subsample": subsample})
    assert set(metrics) == DOCUMENTED_METRICS
    ((*_, baseline),) = calls["build_model"]
    ((*_, (converted, _)),) = calls["antialias"]
    convs = [m for m in baseline.modules() if isinstance(m, nn.Conv2d) and m.padding != (0, 0)]
    assert all(m.padding_mode == "circular" for m in convs)
    pools = [m for m in converted.modules() if isinstance(m, PolyphasePool2d)]
    assert len(pools) == 6 and all(m.link is not None for m in pools)
    scorers = [m.scorer for m in pools if m.scorer is not None]
    assert len(scorers) == (3 if subsample == "lps" else 0)


def test_a_network_of_your_own_is_anti_aliased_trained_and_measured(user_nets, capsys):
    """From the CLI as a user runs it: the factory gets `width`, its max-pool and strided conv
    become MaxBlurPool and ConvBlurPool, and its filters are measured."""
    settings = TINY | {"model": f"{user_nets}:small_cnn", "width": 3, "placement": "paper"}
    main([f"{key}={value}" for key, value in settings.items()])
    metrics = json.loads(capsys.readouterr().out)
    assert set(metrics) == DOCUMENTED_METRICS
    baseline = build_model(f"{user_nets}:small_cnn", width=3)
    assert metrics["params"] == sum(p.numel() for p in baseline.parameters())
    assert metrics["forward_mflops"] > forward_flops(baseline, (3, 32, 32)) / 1e6
    assert set(metrics["filter_tv"]) == {"0", "4"}


def test_your_own_images_train_a_network_with_their_classes_and_size(image_folder):
    """Three classes of assorted image sizes, brought to 20×20 (not a power of two): the
    network gets three outputs, the converter and every metric run at that size."""
    data_dir = image_folder({"ant": (7, 3), "bee": (7, 3), "cat": (7, 3)})
    settings = TINY | {"dataset": "folder", "data_dir": str(data_dir), "image_size": 20,
                       "train_size": 21, "test_size": 9, "placement": "paper"}  # fmt: skip
    metrics = run_variant(settings)
    assert set(metrics) == DOCUMENTED_METRICS and metrics["n_test"] == 9
    baseline = build_model("vgg", num_classes=3, width=2, image_size=20)
    assert metrics["params"] == sum(p.numel() for p in baseline.parameters())
    assert metrics["forward_mflops"] > forward_flops(baseline, (3, 20, 20)) / 1e6
    assert metrics["chance_accuracy"] == pytest.approx(100 / 3)
    with pytest.raises(ValueError, match=r"image_size=12 is too small for model 'vgg': it takes"):
        VariantConfig(**(settings | {"image_size": 12}))  # as a spec loads, before any run


def test_a_setting_your_network_does_not_take_is_refused(user_nets):
    """Its factory names `width` but not `conv_padding`: setting the second would be ignored."""
    with pytest.raises(ValueError, match="conv_padding='circular' is set, but model 'user_nets"):
        run_variant(TINY | {"model": f"{user_nets}:small_cnn", "conv_padding": "circular"})
    with pytest.raises(ValueError, match=r"width=3 is set, .* takes no 'width' argument"):
        run_variant(TINY | {"model": f"{user_nets}:KeywordNet", "width": 3})
    with pytest.raises(ValueError, match="'resnet' is unknown"):
        run_variant(TINY | {"model": "resnet"})
    tiny = {key: value for key, value in TINY.items() if key != "width"}
    with pytest.raises(UnbuildableVariant, match="returns tuple in training mode"):
        run_variant(tiny | {"model": f"{user_nets}:AuxiliaryOutput"})


def test_device_names_are_checked():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    with pytest.raises(ValueError, match="'tpu'"):
        resolve_device("tpu")
    with pytest.raises(ValueError, match="'cuda:99'"):
        resolve_device("cuda:99")


def test_cli_runs_a_variant_and_prints_json(capsys):
    """... and warns when the run did not learn (here: a learning rate too small to move)."""
    main([f"{key}={value}" for key, value in TINY.items()] + ["lr=1e-9"])
    printed = capsys.readouterr()
    metrics = json.loads(printed.out, parse_constant=pytest.fail)  # strict JSON: no bare NaN
    assert set(metrics) == DOCUMENTED_METRICS
    assert metrics["n_eval"] == 8
    assert metrics["peak_memory_mb"] is None  # not measured on a CPU
    assert not metrics["learned"] and "the run did not learn" in printed.err


def test_cli_help_and_bad_settings(capsys):
    with pytest.raises(SystemExit) as exit_help:
        main(["--help"])
    assert exit_help.value.code == 0
    assert "filter_size=4" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_bad:
        main(["epochs"])
    assert exit_bad.value.code == 2
    assert "key=value" in capsys.readouterr().err
    for argv, message in [
        (["placment=none"], "placment"),
        (["padding=mirror"], "padding"),
        (["filter_size=0"], "filter_size"),
        (["taps=[1,2"], "setting taps='[1,2' is not valid YAML: expected ',' or ']'"),
        (["filter_size=3", "filter_size=5"], "setting 'filter_size' is given twice"),
    ]:
        with pytest.raises(SystemExit) as exit_bad:
            main(argv)
        assert exit_bad.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("model", ["vgg", "resnet18"])
def test_fused_backend_runs_a_variant_on_cuda(model):
    """The converter's shape check and training both run through the fused kernels on CUDA."""
    config = {**TINY, "model": model, "placement": "paper", "backend": "triton", "device": "cuda"}
    metrics = run_variant(config)
    assert set(metrics) == DOCUMENTED_METRICS
    assert 0 <= metrics["accuracy"] <= 100


#: Every anti-aliasing field of a VariantConfig, each away from its default.
ANTIALIASING = [
    {"filter": "gaussian", "sigma": 0.8, "filter_size": 3, "subsample": "aps"},
    {"filter": "custom", "taps": (1.0, 3.0, 2.0), "subsample": "lps"},
]


@pytest.mark.parametrize("filters", ANTIALIASING, ids=["gaussian", "custom"])
def test_every_design_field_reaches_the_network_and_the_metrics(monkeypatch, filters):
    """What a study varies is what runs: the converter gets each anti-aliasing field of the
    config, and the shift metrics get the evaluation's."""
    calls = spy_on(monkeypatch, "antialias", "classes_over_shifts", "accuracy_vs_shift")
    config = variant.as_config(
        TINY
        | filters
        | {"placement": "blur_before_conv", "padding": "circular", "sites": 2}
        | {"antialias_stem": False, "backend": "torch", "eval_size": 7}
        | {"shift": 2, "diagonal": 3, "crop_pad": 5, "crop_fill": "reflect"}
    )
    _, splits, model, _, _ = variant._build(config)
    variant.evaluate(model, splits.test_x, splits.test_y, config)
    ((_, converted, _),) = calls["antialias"]
    fields = ("filter_size", "padding", "placement", "sites", "antialias_stem", "filter", "taps",
              "sigma", "backend", "subsample")  # fmt: skip
    assert {f: converted[f] for f in fields} == {f: getattr(config, f) for f in fields}
    protocols = {"pad": 5, "fill": "reflect"}
    for args, kwargs, _ in calls["classes_over_shifts"]:
        assert args[1].shape[0] == 7 and kwargs == kwargs | protocols | {"shift": 2}
    for args, kwargs, _ in calls["accuracy_vs_shift"]:
        assert args[1].shape[0] == 7 and kwargs == kwargs | protocols | {"diagonal": 3}
    kinds = [kwargs["kind"] for _, kwargs, _ in calls["classes_over_shifts"]]
    assert sorted(kinds) == sorted(variant.SHIFT_KINDS)
