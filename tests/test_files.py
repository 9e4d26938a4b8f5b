"""Files written whole or not at all (kernels.files)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from kernels import files


def test_the_temporary_file_lies_beside_the_target(tmp_path: Path, monkeypatch) -> None:
    """The rename is atomic only within one filesystem: the temporary file is made in the
    target's own folder, not in the system's temporary folder."""
    renames = []
    replace = files.os.replace

    def recording(source, target):
        renames.append((Path(source), Path(target)))
        replace(source, target)

    monkeypatch.setattr(files.os, "replace", recording)
    path = tmp_path / "sub" / "table.json"
    files.atomic_write_text(path, "{}\n")
    [(source, target)] = renames
    assert target == path and source.parent == path.parent
    assert path.read_text() == "{}\n" and [p.name for p in path.parent.iterdir()] == ["table.json"]


def test_the_file_is_readable_by_others(tmp_path: Path) -> None:
    """Results are mode 0644, not mkstemp's 0600, so collaborators can read them."""
    path = files.atomic_write_text(tmp_path / "table.json", "{}\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_a_write_that_fails_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    """A full disk halfway through: the reader still finds the previous table, whole."""
    path = files.atomic_write_text(tmp_path / "results.csv", "old\n")

    def cut_short(temporary: Path) -> None:
        temporary.write_text("ha")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        files.atomic_write(path, cut_short)
    assert path.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["results.csv"]
