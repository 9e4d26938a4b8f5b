"""Compile a GPU run's kernels ahead, on a machine without a GPU: ``python -m
benchmarks.precompile``.

A fresh GPU machine spends most of a benchmark run compiling: each variant of a fused kernel is
a Triton compile of one to fifteen seconds of a CPU core, and the GPU suite's sweeps launch
hundreds of them (on the H200, the benchmark step timed 3 of its 72 cases in its 97 s). Triton
keeps what it compiles in an on-disk cache (``TRITON_CACHE_DIR``), keyed by the kernel's
source, its specialisation, the compile options, the target and Triton's own build, not by the
machine that compiled it. So a machine without a GPU can compile, for ``sm_<arch>`` and with
the launch configs of the GPU named by ``--device`` (:func:`benchmarks.resource_usage.
compile_only`), the very launches the suite will make:

- ``kernels.bench``'s cases, forward as it times it (writing what the backward reads) and
  backward, every op at ``--bench-shapes``, ``--filters``, ``--dtypes`` and both layouts (the
  suite's ``compare`` step launches a subset of them);
- ``benchmarks.end_to_end``'s nets (``--models``), anti-aliased with the fused kernels at
  ``--net-filter`` and with the one-tap placement, one training and one inference step in
  bf16 (what the nets' layers hand the kernels under a GPU's autocast), both layouts, after
  the anti-aliasing converter's own float32 check;
- ``benchmarks.host_overhead``'s calls at ``--host-shape``;
- ``kernels.autotune --quick``'s candidates at ``--tune-shapes`` (every launch config it
  times there; a benchmark after it launches the winners, at other filter sizes too, which
  only those at the tuned problems' own keys are among).

``pack ARCHIVE`` compiles them in ``--jobs`` processes and writes the machine code and its
metadata as a ``.tar.gz`` (not the intermediate code, most of a cache's bytes); ``unpack
ARCHIVE DIR`` extracts it on the GPU machine into a cache folder and points its records at
that folder. ``bash benchmarks/gpu_suite.sh`` does so for ``$TRITON_CACHE_ARCHIVE`` and says
how many kernels the run still compiled. The suite's ``autotune`` step changes the configs
the benchmark launches (it times the winners), so run it after the others, in a run of its
own (``STEPS``), to find them all.

Triton's key includes a hash of its compiled library, which differs between the builds of one
Triton version for different Python versions. Where the GPU machine runs another Python,
``--triton-key-from PYTHON`` names an interpreter of that version with the same Triton
installed (Triton alone: neither torch nor this project), and the keys come out as that
machine's. A launch whose key still differs is compiled on the GPU machine, as without the
archive. Run it without ``TRITON_INTERPRET``, with the GPU machine's Triton version (as for
``benchmarks.static_cost``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import os
import subprocess
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
import triton
import triton.runtime.cache

from benchmarks import host_overhead
from benchmarks.end_to_end import build, model_name
from benchmarks.resource_usage import compile_only
from benchmarks.static_cost import compute_capability, refuse_interpreter
from kernels import autotune, tuning
from kernels.bench import OPS, build_cases, warm_case
from kernels.cli_types import output_file, positive, run_command, shape_text
from kernels.files import atomic_write
from kernels.layout import LAYOUTS
from kernels.measure import DTYPES, parse_shape
from kernels.warmup import warm_in_parallel

PARTS = ("bench", "nets", "host", "autotune")
MANIFEST = "manifest.json"
#: What a cache hit reads: a kernel's record (``__grp__*.json``), metadata and machine code.
KEPT_SUFFIXES = (".json", ".cubin")


@dataclasses.dataclass(frozen=True)
class Launches:
    """One unit of work for a process: ``kind`` (one of :data:`PARTS`) and what it runs, the
    target and the Triton key to compile under (None: this Triton's own)."""

    kind: str
    what: tuple
    arch: int
    device: str
    triton_key: str | None


def compile_launches(item: Launches) -> None:
    """Make ``item``'s launches once, each compiling into Triton's cache and launching nothing
    (a module-level function: :func:`kernels.warmup.warm_in_parallel` runs it in its
    processes)."""
    torch.set_num_threads(1)  # the processes are the parallelism
    if item.triton_key is not None:
        triton.runtime.cache.triton_key = lambda: item.triton_key
    if item.kind == "host":
        shape, dtype, filter_size = item.what
        host_overhead.measure(shape, DTYPES[dtype], filter_size, launch="none", arch=item.arch,
                              device=item.device, number=1, repeat=1)  # fmt: skip
        return
    with compile_only(item.arch, item.device):
        if item.kind == "bench":
            warm_case(item.what[0], impls=("shiftlab",), backend="triton", device="cpu")
        elif item.kind == "autotune":
            run_candidates(item.what[0])
        else:
            run_net(*item.what)


def compile_all(items: Sequence[Launches], jobs: int) -> list[str]:
    """:func:`compile_launches` of every item, in ``jobs`` processes (in this one for 1); one
    line per item that failed, which the others outlive."""
    if jobs > 1:
        return warm_in_parallel(compile_launches, items, jobs)
    failed = []
    for item in items:
        try:
            compile_launches(item)
        except Exception as error:
            failed.append(f"{item}: {type(error).__name__}: {error}")
    return failed


def run_net(name: str, layout: str, filter_size: int, width: int, batch: int) -> None:
    """One training and one inference step of net ``name`` anti-aliased with the fused kernels
    at ``filter_size`` (1: the one-tap placement), built as ``benchmarks.end_to_end`` builds
    it, in bf16 (what its layers hand the kernels under a GPU's autocast) and ``layout``."""
    net = build(name, "aa_triton", layout, width=width, batch=batch, filter_size=filter_size,
                device=torch.device("cpu"), image_size=32)  # fmt: skip
    memory_format = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    model = net.model.to(dtype=torch.bfloat16, memory_format=memory_format)
    x = torch.randn(batch, 3, 32, 32, dtype=torch.bfloat16).contiguous(memory_format=memory_format)
    F.cross_entropy(model(x).float(), torch.zeros(batch, dtype=torch.long)).backward()
    with torch.inference_mode():
        model(x)


def run_candidates(problem: autotune.Problem) -> None:
    """Launch each of ``problem``'s quick autotuning candidates once; one that fails to
    compile is left to the tuner, which skips it on the GPU too."""
    run = autotune.launcher(problem, torch.device("cpu")).run
    for config in autotune.candidates(problem, quick=True):
        with contextlib.suppress(Exception):
            run(config)


def work(args: argparse.Namespace, triton_key: str | None) -> list[Launches]:
    """The launches of the parts asked for, the slowest to compile first."""
    target = (args.arch, args.device, triton_key)
    items = []
    if "nets" in args.parts:
        items += [Launches("nets", (model, layout, k, args.net_width, args.net_batch), *target)
                  for model in args.models for layout in LAYOUTS
                  for k in (args.net_filter, 1)]  # fmt: skip
    if "bench" in args.parts:
        cases = build_cases(args.bench_shapes, args.filters, LAYOUTS, args.dtypes, OPS)
        items += [Launches("bench", (case,), *target)
                  for case in sorted(cases, key=lambda c: -c.filter_size)]  # fmt: skip
    if "host" in args.parts:
        items.append(Launches("host", (parse_shape(args.host_shape), "bfloat16", 3), *target))
    if "autotune" in args.parts:
        problems = autotune.problems(args.tune_shapes, LAYOUTS, ["bfloat16"],
                                     autotune.QUICK_FILTERS, tuning.OPS, (False,))
        items += [Launches("autotune", (problem,), *target) for problem in problems]
    return items


def triton_key_of(python: str) -> str:
    """The Triton cache key component of the Triton installed for ``python``, which must be
    this Triton's version."""
    code = ("import triton; from triton.runtime.cache import triton_key; "
            "print(triton.__version__); print(triton_key())")  # fmt: skip
    # Its own packages, not this interpreter's path (which may point at another Triton).
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    try:
        done = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True,
                              timeout=120, env=env)  # fmt: skip
    except (OSError, subprocess.SubprocessError) as err:
        why = getattr(err, "stderr", None) or ""
        raise SystemExit(f"--triton-key-from {python}: could not read its Triton's key: {err}"
                         f"{': ' + why.strip().splitlines()[-1] if why.strip() else ''}") from err
    version, key = done.stdout.split("\n", 1)
    if version != triton.__version__:
        raise SystemExit(f"--triton-key-from {python}: its Triton is {version}, this one "
                         f"{triton.__version__}: the kernels must be compiled by the same version")
    return key.strip()


def pack(cache: Path, archive: Path, manifest: dict) -> int:
    """Write ``cache``'s kernels (records, metadata, machine code) and ``manifest`` to
    ``archive``, atomically; returns the number of kernels."""
    kernels = sorted(p.parent for p in cache.glob("*/*.cubin"))
    text = json.dumps({**manifest, "kernels": len(kernels)}, indent=1).encode()

    def write(path: Path) -> None:
        with tarfile.open(path, mode="w:gz") as tar:
            for folder in kernels:
                for file in sorted(folder.iterdir()):
                    if file.suffix in KEPT_SUFFIXES:
                        tar.add(file, arcname=f"{folder.name}/{file.name}")
            info = tarfile.TarInfo(MANIFEST)
            info.size = len(text)
            tar.addfile(info, io.BytesIO(text))

    atomic_write(archive, write)
    return len(kernels)


def unpack(archive: Path, cache: Path) -> dict:
    """Extract ``archive`` into the cache folder ``cache`` and point each kernel's record at
    its files there (a record names them by absolute path; those not packed are dropped).
    Returns the manifest."""
    cache.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:gz") as tar:
        manifest = json.load(tar.extractfile(MANIFEST))
        tar.extractall(cache, members=[m for m in tar.getmembers() if m.name != MANIFEST],
                       filter="data")  # fmt: skip
    for record in cache.glob("*/__grp__*.json"):
        data = json.loads(record.read_text())
        moved = {name: record.parent / Path(old).name for name, old in data["child_paths"].items()}
        data["child_paths"] = {name: str(new) for name, new in moved.items() if new.exists()}
        record.write_text(json.dumps(data))
    return manifest


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.precompile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    packing = commands.add_parser("pack", help="compile the launches and write ARCHIVE")
    packing.add_argument("archive", type=output_file, help="the .tar.gz to write")
    packing.add_argument("--arch", type=compute_capability, default=90,
                         help="the GPU's compute capability (default 90: H100, H200)")
    packing.add_argument("--device", default="NVIDIA H200",
                         help="the GPU's name, whose launch configs to compile (its tuned "
                              "table, else the heuristic; default: NVIDIA H200)")
    packing.add_argument("--triton-key-from", metavar="PYTHON",
                         help="an interpreter with the GPU machine's Python and Triton")
    packing.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    packing.add_argument("--bench-shapes", nargs="+", type=shape_text,
                         default=["256x64x112x112", "256x128x32x32"])
    packing.add_argument("--filters", nargs="+", type=positive(int), default=[2, 3, 4, 5, 6, 7])
    packing.add_argument("--dtypes", nargs="+", choices=("bfloat16", "float16", "float32"),
                         default=["bfloat16", "float16"])
    packing.add_argument("--models", nargs="+", type=model_name, default=["resnet18", "vgg"])
    packing.add_argument("--net-filter", type=positive(int), default=4)
    packing.add_argument("--net-width", type=positive(int), default=64)
    packing.add_argument("--net-batch", type=positive(int), default=256)
    packing.add_argument("--host-shape", type=shape_text, default="8x64x16x16")
    packing.add_argument("--tune-shapes", nargs="+", type=shape_text,
                         default=["256x64x112x112", "256x64x32x32"])
    packing.add_argument("--jobs", type=positive(int), default=2,
                         help="processes compiling in parallel (default 2)")
    unpacking = commands.add_parser("unpack", help="extract ARCHIVE into the cache folder DIR")
    unpacking.add_argument("archive", type=Path)
    unpacking.add_argument("dir", type=Path)
    args = parser.parse_args(argv)
    if args.command == "pack":
        refuse_interpreter(packing)
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.command == "unpack":
        manifest = unpack(args.archive, args.dir)
        print(f"{manifest['kernels']} kernels compiled ahead for {manifest['device']} "
              f"(sm_{manifest['arch']}, Triton {manifest['triton']}) in {args.dir}")
        return
    key = None if args.triton_key_from is None else triton_key_of(args.triton_key_from)
    items = work(args, key)
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as tuning:
        # Every process compiles into one fresh cache, the GPU's configs from its shipped
        # table or the heuristic (a user cache of tuned winners would be this machine's).
        os.environ.update(TRITON_CACHE_DIR=cache, SHIFTLAB_CACHE_DIR=tuning)
        for line in compile_all(items, args.jobs):
            print(line)
        manifest = {"device": args.device, "arch": args.arch, "triton": triton.__version__,
                    "parts": args.parts}  # fmt: skip
        count = pack(Path(cache), args.archive, manifest)
    print(f"{count} kernels for {args.device} (sm_{args.arch}) in {args.archive}")


if __name__ == "__main__":
    run_command(main)
