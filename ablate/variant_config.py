"""One design point of a study: everything `run_variant` needs, validated in one place.

A study spec's `base:` and `space:` keys are the fields of this model, so a typo in a YAML key or
a bad value is caught here with the field's name and the accepted values.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)

from ablate.data import DATA_DIRS, Dataset, check_source
from ablate.models import check_image_size, check_model_name, model_arguments
from ablate.shifts import CropFill
from kernels.filters import MAX_FILTER_SIZE, filter_taps
from kernels.options import Backend, FilterFamily, PaddingMode

Placement = Literal["none", "paper", "blur_before_max", "blur_before_relu", "blur_before_conv"]
PLACEMENTS: tuple[str, ...] = Placement.__args__
Subsample = Literal["fixed", "aps", "lps"]
SUBSAMPLES: tuple[str, ...] = Subsample.__args__
#: A seed torch's generators take whole (`manual_seed` keeps 64 bits and refuses more).
Seed = Annotated[int, BeforeValidator(lambda v: _not_text_or_bool(v, "a seed")),
                 Field(ge=0, lt=2**63)]  # fmt: skip


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"expected a whole number, got the boolean {value!r}")
    return value


#: An int field: YAML's `yes`/`true` would otherwise be read as 1 (`filter_size: yes`).
Int = Annotated[int, BeforeValidator(_not_bool)]


def _not_text_or_bool(value: Any, what: str) -> Any:
    """`value`, unless YAML's `true` or a quoted number stands where an int is wanted (pydantic
    would read them as 1 and as the number)."""
    if isinstance(value, (bool, str)):
        raise ValueError(f"{what} is an int, got {value!r}")
    return value


def check_subsample(placement: str, subsample: str) -> None:
    """Raise ValueError unless `subsample` is known and has a blur-pool to act on under
    `placement` (under `blur_before_max` the max-pools subsample, not the blur)."""
    if subsample not in SUBSAMPLES:
        raise ValueError(f"subsample must be one of {SUBSAMPLES}, got {subsample!r}")
    if subsample != "fixed" and placement == "blur_before_max":
        raise ValueError(
            f"subsample {subsample!r} needs placement 'paper', 'blur_before_relu' or "
            "'blur_before_conv': under 'blur_before_max' the max-pools subsample, not a blur-pool"
        )


#: Fields that shape only the blur: a network without blur sites does not use them.
BLUR_FIELDS = ("filter", "filter_size", "sigma", "taps", "padding", "sites", "antialias_stem",
               "subsample", "backend")  # fmt: skip
#: Fields a one-tap filter does not read, on the fixed grid (it reads no padding; every family
#: of one tap is [1]). Under APS or LPS circular padding still wraps the dense max.
ONE_TAP_FIELDS = ("filter", "sigma", "taps", "padding")


#: What `unused_fields` leaves out, in the words the runner's and the report's notes use.
UNUSED_FIELDS_TEXT = (
    "without blur the filter settings, with custom taps the filter size, with a one-tap filter "
    "on the fixed grid the padding, with `steps` set the epochs, under AdamW the momentum, on "
    "the synthetic data the data folder"
)


def unused_fields(config: Mapping[str, Any]) -> tuple[str, ...]:
    """The config fields that do not change the run `config` makes, given the others:
    configurations that differ only there are one run, and the report counts them as one.
    Without blur (placement `none`, or `sites` 0, which converts nothing) every blur field;
    with custom taps the filter size; with one tap on the fixed grid what it does not read;
    `epochs` when `steps` is set, `momentum` under AdamW, `data_dir` of the synthetic data."""
    return (*_unused_blur_fields(config), *_unused_training_fields(config))


def converts(config: Mapping[str, Any]) -> bool:
    """Whether a config's network has its downsampling replaced: not placement `none`, and not
    `sites` 0, which converts nothing."""
    return config.get("placement") != "none" and config.get("sites") != 0


def _unused_blur_fields(config: Mapping[str, Any]) -> tuple[str, ...]:
    if not converts(config):
        return BLUR_FIELDS
    one_tap = taps_per_axis(config) == 1
    unused = ONE_TAP_FIELDS if one_tap and config.get("subsample", "fixed") == "fixed" else ()
    return (*unused, "filter_size") if config.get("filter") == "custom" else unused


def taps_per_axis(config: Mapping[str, Any]) -> Any:
    """The size of the filter a config's network has: with custom taps their count (its
    `filter_size` is unused), else `filter_size`."""
    taps = config.get("taps")
    if config.get("filter") == "custom" and isinstance(taps, (list, tuple)):
        return len(taps)
    return config.get("filter_size")


def _unused_training_fields(config: Mapping[str, Any]) -> tuple[str, ...]:
    steps = config.get("steps")
    given_steps = steps is not None and steps == steps  # a table's missing value is NaN
    unused = {
        "epochs": given_steps,
        "momentum": config.get("optimizer") == "adamw",
        "data_dir": config.get("dataset", "synthetic") not in DATA_DIRS,
    }
    return tuple(name for name, is_unused in unused.items() if is_unused)


def run_identity(config: Mapping[str, Any]) -> str:
    """The identity of the run a config makes: its fields, the unused ones blanked."""
    unused = unused_fields(config)
    canonical = {k: None if k in unused else v for k, v in config.items()}
    return json.dumps(canonical, sort_keys=True, default=str)


class VariantConfig(BaseModel):
    """A network, its anti-aliasing, its training budget and how it is evaluated."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # data
    dataset: Dataset = Field(
        "synthetic", description="'folder': your own images, data_dir/{train,test}/<class>/"
    )
    data_dir: str | None = Field(None, description="where 'cifar10' or 'folder' reads from")
    image_size: Int = Field(
        32, ge=1, description="side of the square images ('folder' only; the others are 32)"
    )
    train_size: Int = Field(5000, ge=1)
    test_size: Int = Field(1000, ge=1)
    augment: bool = Field(False, description="padded random crop + horizontal flip")
    data_seed: Seed = 0

    # model
    model: Annotated[str, AfterValidator(check_model_name)] = Field(
        "vgg", description="'vgg', 'resnet18' or your own network as 'package.module:function'"
    )
    width: Int = Field(16, ge=1, description="channels of the first stage")
    conv_padding: Literal["zeros", "circular"] = Field(
        "zeros", description="padding mode of the 3x3 convolutions"
    )

    # anti-aliasing
    placement: Placement = "paper"
    filter: FilterFamily = "binomial"
    filter_size: Int = Field(4, ge=1, le=MAX_FILTER_SIZE)
    sigma: float | None = Field(None, gt=0, allow_inf_nan=False)
    taps: tuple[float, ...] | None = None
    padding: PaddingMode = "reflect"
    subsample: Subsample = Field(
        "fixed",
        description="where a blur-pool subsamples: 'aps' adaptive, 'lps' learnable polyphase "
        "sampling",
    )
    sites: Int | None = Field(
        None, ge=0, description="anti-alias only the first N sites (a block's conv + shortcut: one)"
    )
    antialias_stem: bool = True
    backend: Backend = "auto"

    # training
    epochs: float = Field(
        6.0, gt=0, allow_inf_nan=False, description="training epochs (`steps` overrides them)"
    )
    steps: Int | None = Field(None, ge=1, description="overrides epochs when set")
    batch_size: Int = Field(128, ge=1)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.05, gt=0, allow_inf_nan=False)
    weight_decay: float = Field(5e-4, ge=0, allow_inf_nan=False)
    momentum: float = Field(0.9, ge=0, lt=1)
    schedule: Literal["onecycle", "cosine"] = "onecycle"
    seed: Seed = 0
    device: str = Field("auto", description="'auto', 'cpu', 'cuda' or 'cuda:N'")
    amp: bool = Field(True, description="bf16 autocast (CUDA only)")
    channels_last: bool = Field(True, description="channels_last memory format (CUDA only)")

    # evaluation
    eval_size: Int | None = Field(None, ge=1, description="test images for shift metrics")
    shift: Int = Field(4, ge=0, description="S: offsets [-S, S]^2 of consistency and adversary")
    diagonal: Int = Field(8, ge=0, description="D: diagonal offsets 0..D")
    crop_pad: Int = Field(8, ge=0, description="P: padding of the crop-shift protocol")
    crop_fill: CropFill = "zeros"
    throughput_batch: Int = Field(256, ge=1)

    @model_validator(mode="after")
    def _check_dependent_fields(self) -> VariantConfig:
        if self.filter == "gaussian" and self.sigma is None:
            raise ValueError("filter 'gaussian' needs sigma (a positive float)")
        if self.filter == "custom" and self.taps is None:
            raise ValueError("filter 'custom' needs taps (a list of numbers)")
        if self.placement != "none":  # the filter as `antialias` will make it
            size = None if self.filter == "custom" else self.filter_size
            filter_taps(size, self.filter, taps=self.taps, sigma=self.sigma, argument="filter")
        check_subsample(self.placement, self.subsample)
        check_source(self.dataset, self.data_dir, self.image_size)
        check_image_size(self.model, self.image_size)
        ignored = {"width", "conv_padding"} & (self.model_fields_set - model_arguments(self.model))
        if ignored:
            field = min(ignored)
            raise ValueError(
                f"{field}={getattr(self, field)!r} is set, but model {self.model!r} takes no "
                f"{field!r} argument; leave {field} out for this model"
            )
        if self.crop_fill == "reflect" and self.crop_pad >= self.image_size:
            raise ValueError(
                f"crop_pad={self.crop_pad} with crop_fill 'reflect' must be smaller than the "
                f"images' side {self.image_size}: use crop_pad <= {self.image_size - 1} or "
                "crop_fill 'zeros'"
            )
        if self.eval_size is not None and self.eval_size > self.test_size:
            raise ValueError(
                f"eval_size={self.eval_size} is larger than test_size={self.test_size}: the "
                f"shift metrics take the first eval_size test images; use eval_size <= "
                f"{self.test_size}, or leave it out to take them all"
            )
        if self.crop_pad < max(self.shift, self.diagonal):
            raise ValueError(
                f"crop_pad={self.crop_pad} must be >= max(shift, diagonal)="
                f"{max(self.shift, self.diagonal)} so crop shifts stay inside the padded image"
            )
        return self
