"""Which code made a result, so that results of other code are never mixed in unawares.

A benchmark's JSON and each run of a study record these. `source_fingerprint` hashes the
Python sources a result depends on, so it tells two versions apart with or without git, in a
clean or an edited tree, and stays the same across commits that change only docs or specs;
`git_commit` names the commit for a reader.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shlex
import subprocess
import sys
from functools import cache
from pathlib import Path

FINGERPRINT_CHARS = 12


@cache
def source_fingerprint(*packages: str) -> str:
    """A short SHA-256 of the `.py` files of `packages` (their paths and bytes, in order)."""
    digest = hashlib.sha256()
    for package in packages:
        found = importlib.util.find_spec(package)
        if found is None or not found.submodule_search_locations:
            raise ValueError(f"package {package!r} is not an importable package")
        root = Path(next(iter(found.submodule_search_locations)))
        for path in sorted(root.rglob("*.py")):
            digest.update(f"{package}/{path.relative_to(root).as_posix()}\0".encode())
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:FINGERPRINT_CHARS]


@cache
def git_commit() -> str:
    """The commit of the checkout this code runs from (``git rev-parse HEAD``, ``-dirty`` when
    tracked files changed), else ``$SHIFTLAB_COMMIT``, else ``unknown``: an installed copy
    inside someone else's repository is not that repository's commit."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        if Path(git("rev-parse", "--show-toplevel")).resolve() != root:
            raise FileNotFoundError(root)
        dirty = git("status", "--porcelain", "--untracked-files=no")
        return git("rev-parse", "HEAD") + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("SHIFTLAB_COMMIT", "unknown")


def command_line() -> str:
    """The command as typed: ``python -m <module> ...`` when run as a module."""
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    program = ["-m", spec.name] if spec is not None else sys.argv[:1]
    return shlex.join([Path(sys.executable).name, *program, *sys.argv[1:]])
