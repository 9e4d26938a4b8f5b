"""Argument types the command lines share: a value argparse refuses gets a one-line error that
names the option, the value and what it takes, not a traceback from deep in the run. And
the way they end on Ctrl-C."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from kernels.files import why_not_writable
from kernels.measure import parse_shape


def positive(kind: type) -> Callable[[str], Any]:
    """An argparse type: a finite number of `kind` above 0."""
    return _finite(kind, lambda value: value > 0, "above 0")


def non_negative(kind: type) -> Callable[[str], Any]:
    """An argparse type: a finite number of `kind`, 0 or above."""
    return _finite(kind, lambda value: value >= 0, "of 0 or above")


def _finite(kind: type, accepted: Callable[[Any], bool], words: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = kind(text)
        if not (accepted(value) and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"{text} is not a finite number {words}")
        return value

    parse.__name__ = kind.__name__  # argparse's message for a value `kind` refuses
    return parse


def shape_text(text: str) -> str:
    """An argparse type: an ``NxCxHxW`` shape of positive sizes, kept as written."""
    try:
        parse_shape(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def device_option(text: str) -> str:
    """An argparse type: a device torch knows and this machine has (a CUDA one only where
    CUDA is available)."""
    try:
        device = torch.device(text)
    except RuntimeError as err:
        raise argparse.ArgumentTypeError(f"{text!r} is not a device: {err}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text!r}: this machine has no CUDA device; use cpu")
    if device.type in ("cpu", "cuda"):  # (no probe: it would set up CUDA while parsing)
        return text
    try:  # another backend (mps, xpu, ...) this machine or this torch lacks
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as err:
        why = (str(err).splitlines() or [type(err).__name__])[0].split(". ")[0]  # its gist
        raise argparse.ArgumentTypeError(f"{text!r}: this machine cannot use it ({why}); use "
                                         "cpu") from None  # fmt: skip
    return text


def output_file(text: str) -> Path:
    """An argparse type: a file path the run can write (not a folder; its folder exists or
    can be made), refused now rather than after the run has measured everything."""
    path = Path(text)
    if _is(path, Path.is_dir):
        raise argparse.ArgumentTypeError(f"{text} is a folder; give a file path")
    return _writable(text, path.parent)


def output_folder(text: str) -> Path:
    """An argparse type: a folder the run can write into (existing, or one it can make)."""
    path = Path(text)
    if _is(path, Path.exists) and not _is(path, Path.is_dir):
        raise argparse.ArgumentTypeError(f"{text} is a file; give a folder")
    return _writable(text, path)


def _is(path: Path, test: Callable[[Path], bool]) -> bool:
    """`test(path)`, False where a folder on the way cannot be looked into (the write check
    then names it)."""
    try:
        return test(path)
    except OSError:
        return False


def _writable(text: str, folder: Path) -> Path:
    reason = why_not_writable(folder)
    if reason is not None:
        raise argparse.ArgumentTypeError(f"{text}: {reason}")
    return Path(text)


def run_command(main: Callable[[], Any]) -> None:
    """Run a command's ``main`` and exit with the status it returns (an int; anything else, such
    as its table, is 0); on Ctrl-C with 130 and one line, not a traceback (the commands write
    their results after each item, so what was measured stays on file)."""
    try:
        result = main()
    except KeyboardInterrupt:
        print("interrupted: the results measured so far are written", file=sys.stderr)
        sys.exit(130)
    sys.exit(result if isinstance(result, int) else 0)
