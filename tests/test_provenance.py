"""What a result records of the code that made it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from kernels.provenance import git_commit, source_fingerprint


def test_the_fingerprint_follows_the_sources_and_nothing_else(tmp_path: Path, monkeypatch) -> None:
    package = tmp_path / "fingerprinted"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "op.py").write_text("SCALE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    def fingerprint() -> str:
        source_fingerprint.cache_clear()
        return source_fingerprint("fingerprinted")

    first = fingerprint()
    (package / "notes.md").write_text("a doc is not code")
    assert fingerprint() == first
    (package / "sub" / "op.py").write_text("SCALE = 2\n")
    edited = fingerprint()
    assert edited != first
    (package / "sub" / "op.py").rename(package / "op.py")  # the same bytes elsewhere
    assert fingerprint() not in (first, edited)
    sys.modules.pop("fingerprinted", None)
    with pytest.raises(ValueError, match="package 'no_such_package' is not an importable"):
        source_fingerprint("no_such_package")


def test_the_commit_is_this_checkouts() -> None:
    if not (Path(__file__).resolve().parent.parent / ".git").exists():
        pytest.skip("not a git checkout")
    commit = git_commit()
    assert len(commit.removesuffix("-dirty")) == 40 and int(commit[:40], 16) >= 0
