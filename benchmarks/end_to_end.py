"""End-to-end cost of anti-aliasing: ``python -m benchmarks.end_to_end`` (from the repository root).

Training and inference images/s, peak training memory, activation memory (what autograd keeps
for the backward) and forward FLOPs per image of the CIFAR ResNet-18-style and VGG-style nets
(or of your own, ``--models mynets:build`` as a study names it: ``ablate.models``), on
``--image-size`` images (32 by default, CIFAR's), each as the baseline, anti-aliased with the
reference ops (``backend="torch"``), anti-aliased with the fused kernels
(``backend="triton"``), and with the paper's placement but the one-tap filter
(``aa_placement``: max and strided convolutions at stride 1, then plain subsampling, fused
kernels on a GPU), under bf16 autocast on a GPU (in float32 on the CPU), in NCHW and
channels_last. The paper's placement makes a strided layer run at stride 1, so part of an
anti-aliased net's cost is that layer's own, whatever the filter: ``aa_placement`` measures
that part, and ``aa_triton`` over ``aa_placement`` the blur's.
Timed with ``ablate.speed``'s steps and rounds (a study's optimiser, warm-up, round length and
synchronisation), the variants of one net in turns, ``ROUNDS`` rounds each: a drift of the
GPU's clocks or of the host's load over the minutes a net takes then moves all of its variants
alike, and the ratios between them, what the goals judge, keep still (``*_spread`` says how far
a variant's rounds lay apart). Peak memory is measured with one variant on the device at a time.

Writes ``end_to_end.csv`` / ``end_to_end.json`` (with the device, versions, commit and
command) to ``benchmarks/results/<gpu>/`` and prints the table, ratios to the baseline last.
``--profile`` also writes ``end_to_end_profile.csv`` / ``.json``: per net, the operations that
take the most time of a training step (``benchmarks.step_profile``: kernels by device time on
a GPU).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import itertools
import math
import statistics
from collections.abc import Mapping, Sequence

import pandas as pd
import torch
import torch.nn.functional as F

from ablate.flops import forward_flops
from ablate.models import (
    MODELS,
    check_image_size,
    check_model_name,
    model_arguments,
)
from ablate.speed import SpeedSteps, peak_memory_mb, round_length, round_seconds
from ablate.train import amp_for, memory_format_for
from ablate.variant import build_network
from ablate.variant_config import VariantConfig
from benchmarks.step_profile import COLUMNS as PROFILE_COLUMNS
from benchmarks.step_profile import step_profile
from kernels.bench_results import default_results_dir, print_table, run_metadata, write_results
from kernels.cli_types import device_option, output_folder, positive, run_command
from kernels.functional import fused_kernels_run
from kernels.layout import LAYOUTS
from kernels.time_budget import TimeBudget


@dataclasses.dataclass(frozen=True)
class Variant:
    """How a variant builds its net: ``backend`` of the anti-aliased ops (None: the baseline,
    not anti-aliased); ``one_tap``: the paper's placement with the one-tap filter."""

    backend: str | None
    one_tap: bool = False


VARIANTS = {
    "baseline": Variant(None),
    "aa_torch": Variant("torch"),
    "aa_triton": Variant("triton"),
    # "auto": the fused kernels on a GPU (as aa_triton), the reference ops on a CPU.
    "aa_placement": Variant("auto", one_tap=True),
}
TRAIN_RATIO_GOAL = 0.95
NUM_CLASSES = 10  # the outputs of the measured networks (CIFAR's classes)
ROUNDS = 5  # timed rounds of each variant of a net


@dataclasses.dataclass
class Built:
    """One variant of a net, built: the network, its config and what anti-aliasing changed."""

    model: torch.nn.Module
    config: VariantConfig
    changes: list


def build(model_name: str, variant: str, layout: str, *, width: int, batch: int,
          filter_size: int, device: torch.device, image_size: int) -> Built:
    """``variant`` of ``model_name`` for 3-channel ``image_size``² images on ``device``."""
    spec = VARIANTS[variant]
    sized = {"width": width} if "width" in model_arguments(model_name) else {}
    config = VariantConfig(
        model=model_name, **sized, throughput_batch=batch, amp=True,
        channels_last=layout == "channels_last", filter_size=1 if spec.one_tap else filter_size,
        placement="none" if spec.backend is None else "paper",
        backend=spec.backend or "auto", device=str(device),
    )
    torch.manual_seed(0)
    model, changes = build_network(config, NUM_CLASSES, image_size, device)
    return Built(model, config, changes)


def speeds_in_turns(steps: Mapping[str, SpeedSteps], batch: int, device: torch.device,
                    rounds: int = ROUNDS) -> dict[str, dict[str, float]]:
    """Training and inference images/s of the variants of one net, timed in turns: each round
    times every variant once, in an order that rotates, so that the GPU's clocks or other load
    drifting over the minutes a net takes moves all its variants alike, not the ones timed
    last. A variant's rate is the median of its rounds (each as long as ``ablate.speed``'s,
    after its warm-up); ``*_spread`` is the range of its rounds' rates over that median."""
    rates: dict[str, dict[str, float]] = {name: {} for name in steps}
    if not steps:  # (every variant of the net failed to build)
        return rates
    for phase, training in (("train", True), ("infer", False)):
        timed = {}
        for name, variant in steps.items():
            variant.model.train(training)
            step = getattr(variant, phase)
            timed[name] = (step, *round_length(step, device))
        seconds = {name: [first] for name, (_, _, first) in timed.items()}
        names = list(timed)
        for turn in range(1, rounds):
            for name in names[turn % len(names):] + names[:turn % len(names)]:
                step, repeats, _ = timed[name]
                seconds[name].append(round_seconds(step, repeats, device))
        for name, (_, repeats, _) in timed.items():
            per_s = [repeats * batch / elapsed for elapsed in seconds[name]]
            median = statistics.median(per_s)
            rates[name][f"{phase}_images_per_s"] = median
            rates[name][f"{phase}_spread"] = (max(per_s) - min(per_s)) / median
    return rates


def measure_net(model_name: str, layout: str, variants: Sequence[str], *, width: int,
                batch: int, filter_size: int, device: torch.device, image_size: int = 32,
                profile: bool = False, notes: list[str] | None = None) -> dict[str, dict]:
    """Per variant of one net and memory format: images/s (:func:`speeds_in_turns`), peak
    memory of a training step, activation memory, forward FLOPs, and with ``profile`` its
    training step's :func:`step_profile` (key ``profile``). Each variant's memory is measured
    as it is built, with no other variant on the device (each is then parked on the CPU until
    the timing in turns). The profiles come last: a profiler can leave instrumentation behind
    that slows what runs after it (CUPTI, on some torch versions). A variant that fails is
    left out, with a line in ``notes``."""
    image_shape = (3, image_size, image_size)
    results: dict[str, dict] = {}
    parked: dict[str, Built] = {}
    for variant in variants:
        net = None  # (one that failed, still on the device, must not count in the next's peak)
        try:
            net = build(model_name, variant, layout, width=width, batch=batch,
                        filter_size=filter_size, device=device, image_size=image_size)
            results[variant] = alone_measures(net, device, image_shape)
        except Exception as err:  # one failing variant must not sink the others
            line = f"{model_name} {variant} {layout} failed: {type(err).__name__}: {err}"
            print(line, flush=True)
            if notes is not None:
                notes.append(line)
            continue
        parked[variant] = net  # (alone_measures parked its model on the CPU)
    steps = {name: SpeedSteps(net.model, net.config, device, image_shape, NUM_CLASSES)
             for name, net in parked.items()}  # fmt: skip
    rates = speeds_in_turns(steps, batch, device)
    if profile:
        for name, variant_steps in steps.items():
            variant_steps.model.train()  # (the timing ends on inference)
            results[name]["profile"] = step_profile(variant_steps.train, device)
    return {name: {**rates[name], **result} for name, result in results.items()}


def alone_measures(net: Built, device: torch.device,
                   image_shape: tuple[int, int, int]) -> dict[str, object]:
    """What ``net`` costs besides its speed: peak memory of a training step (after one step,
    so that what a step allocates once, the optimiser's state, is in place), activation memory,
    forward FLOPs and size. An inference step runs too, as the timing's does (kernels training
    does not run): a variant that fails there fails here, alone, not in the timing in turns,
    which would lose every variant of the net.
    ``net.model`` is left parked on the CPU: the peak holds the copy that trains, not also the
    net it was copied from."""
    sized = "width" in model_arguments(net.config.model)
    sizes = {"width": net.config.width if sized else None,  # None: the factory takes none
             "image_size": image_shape[1],
             "activation_mb": activation_mb(net.model, net.config, device, image_shape),
             "forward_mflops": forward_flops(net.model, image_shape) / 1e6,
             "filter_size": net.config.filter_size, "sites": len(net.changes),
             "params": sum(p.numel() for p in net.model.parameters())}  # fmt: skip
    net.model.to("cpu")
    steps = SpeedSteps(net.model, net.config, device, image_shape, NUM_CLASSES)
    steps.train()
    result: dict[str, object] = {"peak_memory_mb": peak_memory_mb(steps.train, device), **sizes}
    steps.model.eval()
    steps.infer()
    del steps
    return result


def activation_mb(model: torch.nn.Module, config: VariantConfig, device: torch.device,
                  image_shape: tuple[int, int, int] = (3, 32, 32)) -> float:
    """MiB that autograd keeps from one training forward (with its loss) for the backward:
    distinct storages, parameters excluded, and so are the bf16 copies of them that layers
    save under autocast (:func:`copies_a_parameter`). The activation memory of the goal, on
    any device and free of the allocator's caching and of transients, which peak memory
    includes."""
    memory_format = memory_format_for(config, device)
    model = copy.deepcopy(model).to(device=device, memory_format=memory_format).train()
    x = torch.randn(config.throughput_batch, *image_shape, device=device)
    x = x.contiguous(memory_format=memory_format)
    y = torch.zeros(config.throughput_batch, dtype=torch.long, device=device)
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    kept: dict[int, torch.UntypedStorage] = {}

    def keep(tensor: torch.Tensor) -> None:
        # Not handed back to autograd: a saved output would hold its own graph (output -> node
        # -> saved output), a cycle through C++ that no garbage collection frees, and every
        # call would leak a forward's activations. Its storage is held here (a storage holds
        # no graph) until the forward ends: freed at once, its address would be reused by a
        # later saved tensor, and the two counted as one.
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters and not copies_a_parameter(tensor, parameters):
            kept[storage.data_ptr()] = storage

    def never_unpacked(_: None) -> torch.Tensor:
        raise RuntimeError("activation_mb runs no backward")

    amp = amp_for(config, device)
    with torch.autograd.graph.saved_tensors_hooks(keep, never_unpacked), torch.autocast(
        device.type, torch.bfloat16, enabled=amp
    ):
        F.cross_entropy(model(x), y)
    return sum(storage.nbytes() for storage in kept.values()) / 2**20


#: Autograd nodes of a cast or a view: what lies between a parameter and the copy of it, or the
#: transposed copy, that a layer saves under autocast.
CAST_AND_VIEW_NODES = frozenset({"ToCopyBackward0", "TBackward0", "TransposeBackward0",
                                 "PermuteBackward0", "ViewBackward0", "UnsafeViewBackward0",
                                 "ExpandBackward0", "AliasBackward0"})  # fmt: skip


def copies_a_parameter(tensor: torch.Tensor, parameters: set[int]) -> bool:
    """Whether ``tensor`` is a parameter cast, or a view of one (autocast's bf16 weights), by
    its autograd history: casts and views only, back to a parameter (one whose storage's
    address is in ``parameters``). An activation's history passes through the layer that made
    it, and so never qualifies, even where the layer's only other input needs no gradient."""
    node = tensor.grad_fn
    while node is not None and type(node).__name__ in CAST_AND_VIEW_NODES:
        inputs = [function for function, _ in node.next_functions if function is not None]
        node = inputs[0] if len(inputs) == 1 else None
    variable = getattr(node, "variable", None)  # (an AccumulateGrad's: a leaf needing a grad)
    return variable is not None and variable.untyped_storage().data_ptr() in parameters


def same_net(df: pd.DataFrame, variant: str, column: str) -> pd.Series:
    """``column`` of ``variant``'s row for the net and layout of every row (NaN where that
    variant was not run)."""
    rows = df[df["variant"] == variant].set_index(["model", "layout"])[column]
    return pd.Series(rows.reindex(pd.MultiIndex.from_frame(df[["model", "layout"]])).to_numpy(),
                     index=df.index)  # fmt: skip


def add_ratios(df: pd.DataFrame) -> pd.DataFrame:
    """Throughput ratios and memory difference to the baseline of the same net and layout;
    training throughput over the one-tap placement's (the blur's own cost), where it ran."""
    for column in ("train_images_per_s", "infer_images_per_s"):
        df[column.replace("images_per_s", "ratio")] = df[column] / same_net(df, "baseline", column)
    df["memory_vs_baseline_mb"] = df["peak_memory_mb"] - same_net(df, "baseline", "peak_memory_mb")
    df["activation_vs_baseline"] = df["activation_mb"] / same_net(df, "baseline", "activation_mb")
    df["train_vs_placement"] = df["train_images_per_s"] / same_net(
        df, "aa_placement", "train_images_per_s"
    )
    return df


def goals(df: pd.DataFrame, *, judged: bool = True) -> list[dict[str, object]]:
    """The end-to-end goal for each fused-kernel row, met or not: train ratio, and activation
    memory (what autograd keeps) no larger than the baseline's; peak memory is reported.
    Not ``judged`` off a GPU, where the fused kernels run in Triton's interpreter; "not
    measured" where the baseline did not run."""
    rows = []
    for row in df[df["variant"] == "aa_triton"].itertuples():
        ratios = (row.train_ratio, row.activation_vs_baseline)
        if not judged:
            status = "not judged (the goal is a GPU's; this ran Triton's interpreter)"
        elif any(math.isnan(ratio) for ratio in ratios):
            status = "not measured (no baseline row)"
        else:
            met = row.train_ratio >= TRAIN_RATIO_GOAL and row.activation_vs_baseline <= 1
            status = "met" if met else "not met"
        rows.append({"model": row.model, "layout": row.layout, "train_ratio": row.train_ratio,
                     "activation_vs_baseline": row.activation_vs_baseline,
                     "memory_vs_baseline_mb": row.memory_vs_baseline_mb, "status": status})
    return rows


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.end_to_end", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", type=model_name, default=list(MODELS),
                        help=f"{', '.join(MODELS)} or your own network, package.module:function")
    parser.add_argument("--variants", nargs="+", choices=tuple(VARIANTS),
                        help="default: all where the fused kernels run (CUDA, or the CPU with "
                             "TRITON_INTERPRET=1), else all but aa_triton")
    parser.add_argument("--layouts", nargs="+", choices=LAYOUTS, default=list(LAYOUTS))
    parser.add_argument("--width", type=positive(int), default=64,
                        help="channels of the first stage (for a network whose factory takes it; "
                             "default 64)")
    parser.add_argument("--batch", type=positive(int), default=256, help="default 256")
    parser.add_argument("--image-size", type=positive(int), default=32,
                        help="side of the square input images (the built-in nets take 16 up)")
    parser.add_argument("--filter-size", type=positive(int), default=4, help="default 4")
    parser.add_argument("--device", type=device_option,
                        default="cuda" if torch.cuda.is_available() else "cpu",
                        help="default: cuda where there is one, else cpu")
    parser.add_argument("--budget-s", type=positive(float),
                        help="stop starting nets after this many seconds (nets go model by "
                             "model, layout by layout, each with all its variants)")
    parser.add_argument("--out", type=output_folder,
                        help="results folder (default: benchmarks/results/<gpu>)")
    parser.add_argument("--profile", action="store_true",
                        help="also profile each net's training step (end_to_end_profile.csv)")
    args = parser.parse_args(argv)
    fused_run = fused_kernels_run(args.device)
    if args.variants is None:
        args.variants = [v for v in VARIANTS if fused_run or v != "aa_triton"]
    if "baseline" not in args.variants:
        parser.error(f"--variants {' '.join(args.variants)}: 'baseline' is needed for the ratios")
    if "aa_triton" in args.variants and not fused_run:
        parser.error(f"--variants aa_triton: the fused kernels do not run on --device "
                     f"{args.device} (they take CUDA, or the CPU with TRITON_INTERPRET=1)")
    for name in args.models:
        try:
            check_image_size(name, args.image_size)
        except ValueError as err:
            parser.error(f"--image-size: {err}")
    return args


def model_name(name: str) -> str:
    """``name`` checked as ``ablate.models`` accepts it, for argparse."""
    try:
        return check_model_name(name)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def main(argv: Sequence[str] | None = None) -> pd.DataFrame:
    args = parse_args(argv)
    device = torch.device(args.device)
    out = args.out or default_results_dir(device)
    meta = {**run_metadata(device), "autocast": "bfloat16" if device.type == "cuda" else "none"}
    variants = ["baseline", *(v for v in args.variants if v != "baseline")]
    nets = list(itertools.product(args.models, args.layouts))
    meta["notes"] = notes = []
    judged = device.type == "cuda"  # off a GPU aa_triton is Triton's interpreter
    budget = TimeBudget(args.budget_s)
    rows = []
    profiles = []
    for model_name, layout in budget.over(nets):
        try:
            results = measure_net(model_name, layout, variants, width=args.width,
                                  batch=args.batch, filter_size=args.filter_size, device=device,
                                  image_size=args.image_size, profile=args.profile, notes=notes)
        except Exception as err:  # one failing net must not sink the others
            notes.append(f"{model_name} {layout} failed: {type(err).__name__}: {err}")
            print(notes[-1], flush=True)
            results = {}
        for variant, result in results.items():
            net = {"model": model_name, "variant": variant, "layout": layout}
            if args.profile:
                profiles.append(result.pop("profile").assign(**net))
            rows.append({**net, "batch": args.batch, **result})
            print(f"{model_name} {variant} {layout}: training {result['train_images_per_s']:.0f}"
                  f", inference {result['infer_images_per_s']:.0f} images/s", flush=True)
        if profiles:
            profile = pd.concat(profiles, ignore_index=True)
            named = profile[["model", "variant", "layout", *PROFILE_COLUMNS]]
            write_results(out, "end_to_end_profile", named, meta)
        # Written after each net, failed or not: a cut run keeps its rows and its notes.
        if rows:
            df = add_ratios(pd.DataFrame(rows))
            write_results(out, "end_to_end", df, meta, {"goals": goals(df, judged=judged)})
    cut = budget.note("nets")
    if cut:
        notes.append(cut)
        print(cut)
    if not rows:
        raise SystemExit(f"no net finished: {'; '.join(notes)}")
    df = add_ratios(pd.DataFrame(rows))
    write_results(out, "end_to_end", df, meta, {"goals": goals(df, judged=judged)})  # + notes
    columns = ["model", "variant", "layout", "train_images_per_s", "infer_images_per_s",
               "train_spread", "peak_memory_mb", "activation_mb", "forward_mflops", "train_ratio",
               "infer_ratio", "memory_vs_baseline_mb", "activation_vs_baseline",
               "train_vs_placement"]
    print(f"results: {out}")
    print_table(df[columns], f"end to end on {meta['device']}")
    return df


if __name__ == "__main__":
    run_command(main)
