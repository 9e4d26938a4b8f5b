"""Files written whole or not at all: a reader (another worker, a report, a copy off the
machine) never sees half a table, and a run killed mid-write leaves the previous file; and
read back with an error that names the file when one was damaged anyway (edited by hand)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def atomic_write(path: Path, write: Callable[[Path], object]) -> Path:
    """Let ``write`` fill a temporary file beside ``path`` (its folder made if missing), then
    rename it over ``path``; a writer that fails leaves ``path`` as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=".tmp")
    os.close(descriptor)
    temporary = Path(name)
    try:
        write(temporary)
        os.chmod(temporary, 0o644)  # mkstemp's 0600 would hide results from collaborators
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8, newlines as given) whole or not at all (:func:`atomic_write`)."""
    return atomic_write(path, lambda temporary: temporary.write_text(text, "utf-8", newline=""))


def read_json(path: Path) -> Any:
    """The JSON in ``path``; a ValueError naming the file and the place where it is not JSON."""
    try:
        return json.loads(Path(path).read_text("utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err}): was it edited, or cut short?") from None


def why_not_writable(path: Path) -> str | None:
    """Why a file or folder cannot be made at `path`, or None: the nearest existing folder at
    or above it is a file, or takes no new entry (tried by making and removing one, as
    permission bits do not tell root where a file system refuses: `/proc`, a read-only
    mount)."""
    existing = Path(path).absolute()
    try:
        while not existing.exists():
            existing = existing.parent
        if not existing.is_dir():
            return f"{str(existing)!r} is a file, not a folder"
        tempfile.TemporaryDirectory(dir=existing, prefix=".write-check-").cleanup()
    except OSError as err:  # (also where a folder on the way cannot be looked into)
        return f"{str(existing)!r} takes no new files ({err.strerror or err})"
    return None
