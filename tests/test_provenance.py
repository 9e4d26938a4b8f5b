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


def fake_git(monkeypatch, toplevel: Path, status: str) -> None:
    """Answer git_commit's git calls: this toplevel, this porcelain status, a fixed HEAD."""
    import subprocess

    from kernels import provenance

    answers = {"--show-toplevel": f"{toplevel}\n", "--porcelain": status, "HEAD": "a" * 40 + "\n"}

    def run(args, **kwargs):
        [answer] = [text for flag, text in answers.items() if flag in args]
        return subprocess.CompletedProcess(args, 0, stdout=answer, stderr="")

    monkeypatch.setattr(provenance.subprocess, "run", run)
    monkeypatch.setenv("SHIFTLAB_COMMIT", "from-env")
    git_commit.cache_clear()


ROOT = Path(__file__).resolve().parent.parent  # the checkout kernels/ lies in


def test_the_commit_is_marked_dirty_only_when_tracked_files_changed(monkeypatch) -> None:
    """``-dirty`` follows the porcelain status of tracked files."""
    fake_git(monkeypatch, ROOT, " M kernels/bench.py\n")
    assert git_commit() == "a" * 40 + "-dirty"
    fake_git(monkeypatch, ROOT, "")
    assert git_commit() == "a" * 40
    git_commit.cache_clear()


def test_another_repositorys_commit_is_not_taken(monkeypatch, tmp_path: Path) -> None:
    """Installed inside someone else's repository (git's toplevel is not this checkout), the
    commit comes from $SHIFTLAB_COMMIT instead."""
    fake_git(monkeypatch, tmp_path, "")
    assert git_commit() == "from-env"
    git_commit.cache_clear()
