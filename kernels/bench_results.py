"""Where benchmark results go and what they record: ``benchmarks/results/<gpu>/``, CSV and JSON
stamped with the device, versions, commit and command, and the short table printed last."""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from kernels.files import atomic_write_text
from kernels.hardware import device_name, gpu_family, triton_version
from kernels.json_values import json_values
from kernels.provenance import command_line, git_commit, source_fingerprint


def run_metadata(device: torch.device) -> dict[str, Any]:
    """Where and how a result was measured: device, versions, commit, command."""
    name = device_name() if device.type == "cuda" else f"cpu ({platform.processor() or 'cpu'})"
    return {
        "device": name,
        "torch": torch.__version__,
        "triton": triton_version(),
        "python": platform.python_version(),
        "commit": git_commit(),
        "code": source_fingerprint("kernels"),
        "command": command_line(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "triton_interpret": os.environ.get("TRITON_INTERPRET", "0"),
        "torch_threads": torch.get_num_threads(),  # CPU timings depend on them
    }


def default_results_dir(device: torch.device) -> Path:
    """``benchmarks/results/<gpu family>`` (``h100``), or ``.../cpu`` without CUDA."""
    family = gpu_family(device_name()) if device.type == "cuda" else "cpu"
    return Path(__file__).resolve().parent.parent / "benchmarks" / "results" / family


def write_results(
    out: Path,
    stem: str,
    df: pd.DataFrame,
    meta: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> list[Path]:
    """``<stem>.csv`` and ``<stem>.json`` (meta, extra sections and rows) under ``out``, each
    written atomically; a note says when they replace another device's results."""
    earlier = _recorded_device(out / f"{stem}.json")
    if earlier not in (None, meta.get("device")):
        print(f"note: {out / stem}.csv/.json held results of {earlier}; replaced by these, of "
              f"{meta.get('device')} (--out keeps each device's apart)", file=sys.stderr)
    payload = {"meta": meta, **json_values(extra or {}, finite=True),
               "rows": json.loads(df.to_json(orient="records"))}  # fmt: skip
    text = json.dumps(payload, indent=1, allow_nan=False)  # strict JSON: NaN as null
    return [
        atomic_write_text(out / f"{stem}.csv", df.to_csv(index=False)),
        atomic_write_text(out / f"{stem}.json", text + "\n"),
    ]


def _recorded_device(path: Path) -> str | None:
    """The device a results file records, if it is one that can be read."""
    try:
        return json.loads(path.read_text("utf-8")).get("meta", {}).get("device")
    except (OSError, ValueError, AttributeError):
        return None


def print_table(df: pd.DataFrame, title: str) -> None:
    """Print a small table with rich when it is installed, plain text otherwise."""
    if df.empty:
        print(f"{title}: no rows")
        return
    if importlib.util.find_spec("rich") is None:
        print(title)
        print(df.to_string(index=False, float_format=_number))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in df.columns:
        table.add_column(str(column))
    for row in df.itertuples(index=False):
        table.add_row(*(_number(v) if isinstance(v, float) else str(v) for v in row))
    Console(width=160).print(table)


def _number(value: float) -> str:
    """Three significant digits, without an exponent from 100 up (images/s read as 2510, not
    2.51e+03)."""
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"
