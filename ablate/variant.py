"""`run_variant(config) -> dict`: one design point turned into every measured number.

Data, model, anti-aliasing, training and evaluation in one call, used by the study engine and by
users. Run one from the shell with `python -m ablate.variant key=value ...`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

import torch
import yaml
from pydantic import ValidationError
from torch import nn

from ablate.antialias import SiteChange, antialias
from ablate.chance import chance_accuracy, learned
from ablate.data import Splits, load_dataset
from ablate.flops import forward_flops
from ablate.metrics import (
    accuracy,
    accuracy_vs_shift,
    adversarial_accuracy,
    classes_over_shifts,
    consistency,
    filter_tv,
)
from ablate.models import build_model
from ablate.shifts import SHIFT_KINDS
from ablate.spec import describe_validation_error, did_you_mean
from ablate.speed import measure_speed
from ablate.train import TrainingDiverged, train
from ablate.variant_config import VariantConfig
from kernels.json_values import json_values
from kernels.provenance import git_commit, source_fingerprint


class UnbuildableVariant(ValueError):
    """The variant cannot be built: its config, device, data, network or conversion is
    refused. Every run of the same code fails the same way, so the study engine retries it only
    on a resume, after the cause may have been fixed."""

    deterministic = True


def run_variant(config: VariantConfig | dict[str, Any]) -> dict[str, Any]:
    """Build, anti-alias, train and evaluate the variant `config`; the metrics of DEVELOPERS.md.

    The seed `config.seed` fixes the model's initialisation, the minibatch order and
    augmentation; `config.data_seed` fixes the data.
    Raises `UnbuildableVariant` (a `ValueError`) for a bad config, device, network or
    conversion, or data that is not there, and `TrainingDiverged` for a diverged run.
    """
    try:
        config, splits, model, device, baseline_network = _build(config)
    except (ValueError, FileNotFoundError) as error:  # a missing data folder or file too
        raise UnbuildableVariant(str(error)) from error
    image_shape = tuple(splits.test_x.shape[1:])
    trained = train(
        model, splits, config, device, probe=lambda net: accuracy(net, splits.test_x, splits.test_y)
    )
    metrics = evaluate(model, splits.test_x, splits.test_y, config)
    metrics.update(
        measure_speed(
            model, config, device, image_shape=image_shape, num_classes=splits.num_classes
        )
    )
    metrics.update(
        accuracy_during_training=trained.probes,
        last_quarter_gain=trained.probes[-1] - trained.probes[-2],
        train_seconds=trained.seconds,
        final_train_loss=trained.final_loss,
        forward_mflops=forward_flops(model, image_shape) / 1e6,
        params=sum(p.numel() for p in model.parameters()),
        baseline_network=baseline_network,
        **made_by(device),
    )
    return metrics


def _build(
    config: VariantConfig | dict[str, Any],
) -> tuple[VariantConfig, Splits, nn.Module, torch.device, bool]:
    """The checked config, its data, its network (anti-aliased) on its device, and whether
    that network is the baseline's (nothing converted, or every site computes what it did)."""
    config = as_config(config)
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    splits = load_dataset(
        config.dataset,
        train_size=config.train_size,
        test_size=config.test_size,
        seed=config.data_seed,
        device=device,
        data_dir=config.data_dir,
        image_size=config.image_size,
    )
    model, changes = build_network(config, splits.num_classes, config.image_size, device)
    return config, splits, model, device, all(change.keeps_function for change in changes)


def build_network(
    config: VariantConfig, num_classes: int, image_size: int, device: torch.device
) -> tuple[nn.Module, list[SiteChange]]:
    """`config`'s network for `image_size`² images on `device`, anti-aliased as `config` says,
    and what the conversion changed (nothing without blur)."""
    # On its device before anti-aliasing: the converter checks shapes with a forward pass, which
    # the fused backend can only run on CUDA tensors.
    model = build_model(
        config.model,
        num_classes=num_classes,
        width=config.width,
        conv_padding=config.conv_padding,
        image_size=image_size,
    ).to(device)
    if config.placement == "none":
        return model, []
    # The conversion's forward passes (dropout in training mode) and new modules (LPS
    # scorers) draw from the global generator: with its state kept, training draws what the
    # baseline's run of the seed draws (dropout masks), so a converted network that computes
    # the baseline's (`keeps_function`) trains to the baseline's numbers.
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        return antialias(
            model,
            filter_size=config.filter_size,
            padding=config.padding,
            placement=config.placement,
            sites=config.sites,
            antialias_stem=config.antialias_stem,
            filter=config.filter,
            taps=config.taps,
            sigma=config.sigma,
            backend=config.backend,
            subsample=config.subsample,
            example_input=torch.zeros(2, 3, image_size, image_size, device=device),
        )


def evaluate(
    model: nn.Module, test_x: torch.Tensor, test_y: torch.Tensor, config: VariantConfig
) -> dict[str, Any]:
    """Accuracy on all of the test set (and whether it beats chance, `ablate.chance`), shift
    metrics on its first `eval_size` images, and the learned filters' TV (from the weights)."""
    n_eval = test_x.shape[0] if config.eval_size is None else min(config.eval_size, test_x.shape[0])
    x, y = test_x[:n_eval], test_y[:n_eval]
    test_accuracy, chance = accuracy(model, test_x, test_y), chance_accuracy(test_y)
    metrics: dict[str, Any] = {
        "accuracy": test_accuracy,
        "chance_accuracy": chance,
        "learned": learned(test_accuracy, test_x.shape[0], chance),
        "n_test": test_x.shape[0],
        "n_eval": n_eval,
    }
    for kind in SHIFT_KINDS:
        protocol = {"kind": kind, "pad": config.crop_pad, "fill": config.crop_fill}
        classes = classes_over_shifts(model, x, shift=config.shift, **protocol)
        metrics[f"consistency_{kind}"] = consistency(classes)
        metrics[f"adversarial_{kind}"] = adversarial_accuracy(classes, y)
        accuracies, true_probs = accuracy_vs_shift(
            model, x, y, diagonal=config.diagonal, **protocol
        )
        metrics[f"accuracy_vs_shift_{kind}"] = accuracies
        metrics[f"true_prob_vs_shift_{kind}"] = true_probs
    tv = filter_tv(model)
    metrics["filter_tv"] = tv
    metrics["filter_tv_mean"] = sum(tv.values()) / len(tv) if tv else math.nan
    return metrics


def as_config(config: VariantConfig | dict[str, Any]) -> VariantConfig:
    """`config` validated as a VariantConfig; a ValueError names each bad field, and a
    misspelt one's likely name."""
    if isinstance(config, VariantConfig):
        return config
    if isinstance(config, dict):
        fields = list(VariantConfig.model_fields)
        for key in config:
            if key not in fields:
                raise ValueError(f"unknown setting {key!r}{did_you_mean(str(key), fields)}; "
                                 f"the settings: {', '.join(fields)}")  # fmt: skip
        try:
            return VariantConfig.model_validate(config)
        except ValidationError as error:
            raise ValueError(describe_validation_error(error)) from None
    raise ValueError(f"config must be a VariantConfig or a dict, got {type(config).__name__}")


def resolve_device(name: str) -> torch.device:
    """'auto' (CUDA when available, else CPU), 'cpu', 'cuda' or 'cuda:N', checked to exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {name!r}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} was asked for but CUDA is not available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {name!r} does not exist: {torch.cuda.device_count()} CUDA device(s)"
            )
    return device


def recorded_device_name(device: torch.device, threads: int | None = None) -> str:
    """The GPU's marketing name, or 'cpu AVX2 (N threads)': on the CPU the vector instructions
    torch's kernels were chosen for and the thread count are part of what computes a run,
    since torch splits reductions (a convolution's weight gradient) by vector lane and by
    thread, and so rounds otherwise on another. `threads` names a count other than this
    process's (`torch.get_num_threads()`), such as a worker's."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    count = torch.get_num_threads() if threads is None else threads
    isa = torch.backends.cpu.get_cpu_capability()
    return f"cpu {isa} ({count} thread{'' if count == 1 else 's'})"


def made_by(device: torch.device, threads: int | None = None) -> dict[str, str]:
    """What a run on `device` (with `threads` CPU threads, default this process's) records of
    what made it: the device's name, the code (a fingerprint of this project's sources),
    torch's version, and the commit for a reader."""
    return {
        "device": recorded_device_name(device, threads),
        "code": source_fingerprint("ablate", "kernels"),
        "torch": torch.__version__,
        "commit": git_commit(),
    }


def main(argv: list[str] | None = None) -> None:
    """Run one variant from `key=value` settings and print its metrics as JSON; exit 2 for
    settings that cannot make a variant (as `ablate.study`), 1 for a run that failed."""
    fields = ", ".join(
        f"{name}={field.default!r}" for name, field in VariantConfig.model_fields.items()
    )
    parser = argparse.ArgumentParser(
        prog="python -m ablate.variant",
        description="Train and evaluate one variant; print its metrics as JSON. Exit status 2: "
        "settings that make no variant; 1: the run failed (diverged).",
        epilog=f"Settings (defaults): {fields}",
    )
    parser.add_argument(
        "settings",
        nargs="*",
        metavar="key=value",
        help="values are read as YAML, e.g. taps=[1,2,1]",
    )
    args = parser.parse_args(argv)
    settings = {}
    for item in args.settings:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"setting {item!r} is not of the form key=value")
        if key in settings:
            parser.error(f"setting {key!r} is given twice")
        try:
            settings[key] = yaml.safe_load(value)
        except yaml.YAMLError as error:
            reason = getattr(error, "problem", None) or str(error).splitlines()[0]
            parser.error(f"setting {key}={value!r} is not valid YAML: {reason}")
    try:
        metrics = run_variant(settings)
    except UnbuildableVariant as error:  # bad input, as the study's command line counts it
        parser.error(str(error))
    except (ValueError, TrainingDiverged) as error:
        sys.exit(f"error: {error}")
    print(json.dumps(json_values(metrics, finite=True), indent=2, allow_nan=False))
    if not metrics["learned"]:
        print(
            f"warning: accuracy {metrics['accuracy']:.1f} % is not above chance "
            f"({metrics['chance_accuracy']:.1f} %): the run did not learn, so its consistency "
            "and accuracy-vs-shift curves say nothing of the design; train longer",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
