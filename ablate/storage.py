"""Where a study lives: storages opened by URL, and the study a spec makes in one.

A storage is a journal file (the default, several processes on one machine), or an RDB URL
(`postgresql://...` for several machines, `sqlite:///...` for one process). A journal's torn
last record (a writer killed mid-write) is cut off and kept beside it, so the study opens; a
stored study made from another spec is refused with what changed.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from ablate.spec import StudySpec, identity_differences
from kernels.files import why_not_writable

log = logging.getLogger("ablate.study")

DEFAULT_JOURNAL = "journal.log"
#: Bytes read at a time when looking back for a journal's last whole record.
TAIL_BYTES = 1 << 16
RDB_SCHEMES = ("sqlite", "postgresql", "mysql")
SQLITE_FORMS = "sqlite:///relative.db or sqlite:////absolute/path.db"
POSTGRES_FORM = "postgresql://user:password@host:port/database"
SCHEMA_ATTEMPTS = 3


@dataclass(frozen=True)
class StorageLocation:
    """A storage as given (`url`) and as recorded in `meta.json` and shown in messages
    (`recorded`: a journal relative to the output folder, a URL without its password)."""

    url: str
    recorded: str

    @property
    def is_rdb(self) -> bool:
        return "://" in self.url

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")

    @property
    def identity(self) -> str:
        """What tells storages apart: a database URL without its password, a journal's
        absolute path."""
        return self.recorded if self.is_rdb else self.url


def locate_storage(url: str | None, out_dir: Path) -> StorageLocation:
    """Resolve `--storage`/`storage:`: None -> `out_dir/journal.log`; a path -> a journal file."""
    if url is None:
        return StorageLocation(str(Path(out_dir).resolve() / DEFAULT_JOURNAL), DEFAULT_JOURNAL)
    scheme = url.split(":", 1)[0].split("+", 1)[0] if ":" in url else ""
    if "://" in url or scheme in RDB_SCHEMES:
        return _database_location(url, scheme)
    path = Path(url).expanduser().resolve()
    if path.is_dir():
        raise ValueError(f"storage={url!r} is a folder: give a journal file's path in it")
    check_can_be_made(path, "storage")
    _check_is_journal(path)
    return StorageLocation(str(path), str(path))


def recorded_location(recorded: str | None, out_dir: Path) -> StorageLocation:
    """The storage an output folder's `meta.json` records (`StorageLocation.recorded`; None:
    the default journal), located: a database URL as it is, a journal relative to the folder,
    or found in it by its name where the absolute path recorded is gone (the folder moved)."""
    if recorded is not None and "://" in recorded:
        return locate_storage(recorded, out_dir)
    journal = Path(out_dir) / (recorded or DEFAULT_JOURNAL)
    if not journal.is_file() and (Path(out_dir) / journal.name).is_file():
        journal = Path(out_dir) / journal.name
    return locate_storage(str(journal), out_dir)


def _check_is_journal(path: Path) -> None:
    """Refuse an existing file that is not an Optuna journal (a CSV, notes), which would be
    read as a damaged journal, or, without a last newline, cut as a torn one."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    with path.open("rb") as file:
        first = file.readline(1 << 20)
    try:
        whole = first.endswith(b"\n") and "op_code" in json.loads(first)
    except (ValueError, TypeError):  # not JSON, or JSON but not an object
        whole = False
    if not (whole or (not first.endswith(b"\n") and first.startswith(b"{"))):  # torn: cut later
        raise ValueError(
            f"storage={str(path)!r} is not an Optuna journal (its first line is no journal "
            "record): give the study's journal, or the path of a new file"
        )


def _database_location(url: str, scheme: str) -> StorageLocation:
    """A database URL checked as far as it can be without connecting: its scheme, its form,
    and for SQLite a file that can be made (an in-memory database no second process sees)."""
    accepted = f"{SQLITE_FORMS}, or {POSTGRES_FORM}"
    if scheme not in RDB_SCHEMES:
        raise ValueError(
            f"storage={url!r}: unsupported scheme {scheme!r}; use a journal file path, {accepted}"
        )
    try:
        parsed = make_url(url) if "://" in url else None
    except ArgumentError:
        parsed = None
    if parsed is None or (scheme == "sqlite" and parsed.host):
        raise ValueError(f"storage={url!r} is not a database URL of the form {accepted}")
    if scheme == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            raise ValueError(
                f"storage={url!r} is an in-memory database, which the workers cannot share: "
                f"give a database file, {SQLITE_FORMS}"
            )
        database = Path(parsed.database).expanduser().resolve()
        if database.is_dir():
            raise ValueError(f"storage={url!r} names a folder: give a database file in it")
        check_can_be_made(database, "storage")
        if parsed.query.get("uri") != "true":  # (a `file:` URI is SQLite's to read)
            # absolute, as recorded: a resume from another folder finds the same database
            url = parsed.set(database=str(database)).render_as_string(hide_password=False)
    return StorageLocation(url, without_password(url))


def without_password(url: str) -> str:
    """`url` with its password left out, as `meta.json` and messages show it (PostgreSQL then
    reads the password from PGPASSWORD or ~/.pgpass, or `--storage` gives it again)."""
    parsed = make_url(url)
    if parsed.password is None:
        return url
    fields = {k: getattr(parsed, k) for k in ("drivername", "username", "host", "port", "database")}
    return URL.create(**fields, query=parsed.query).render_as_string(hide_password=False)


def check_can_be_made(path: Path, field: str, folder: bool = False) -> None:
    """Raise ValueError, naming `field`, where a file (or `folder`) cannot be written at
    `path`: the nearest existing folder (`path` itself, for a folder that exists) is a file,
    or takes no new files. A file that exists is let be: it may lie where nothing new can (a
    study kept on a read-only mount), and its reader opens it."""
    if not folder and path.is_file():
        return
    reason = why_not_writable(path if folder else path.parent)
    if reason is not None:
        raise ValueError(f"{field}={str(path)!r} cannot be made: {reason}")


def open_storage(location: StorageLocation) -> BaseStorage:
    """The Optuna storage object for a location (a journal or SQLite file is created on first
    use, in a folder made for it)."""
    if location.is_sqlite:
        _make_folder_of(Path(make_url(location.url).database), location)
    if location.is_rdb:
        engine_kwargs = {} if location.is_sqlite else {"pool_pre_ping": True}
        for attempt in range(SCHEMA_ATTEMPTS):
            try:
                return RDBStorage(location.url, engine_kwargs=engine_kwargs)
            except DBAPIError as error:
                # processes starting together on a fresh database race to create Optuna's
                # tables; the loser finds them made on the next try
                if attempt == SCHEMA_ATTEMPTS - 1:
                    raise ValueError(
                        f"storage={location.recorded!r} cannot be opened: {error.orig}"
                    ) from error
                time.sleep(0.5 + random.random())
            except ImportError as error:
                raise ValueError(
                    f"storage={location.recorded!r} needs a database driver that is not installed "
                    f"({error}): pip install psycopg2-binary for postgresql://, PyMySQL for "
                    "mysql+pymysql://"
                ) from error
    _make_folder_of(Path(location.url), location)
    return JournalStorage(MendingJournal(location.url))


def _make_folder_of(path: Path, location: StorageLocation) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(
            f"storage={location.recorded!r} cannot be made: its folder {str(path.parent)!r} "
            f"cannot be created ({error.strerror or error})"
        ) from error


class MendingJournal(JournalFileBackend):
    """Optuna's journal file, which before each append cuts off a torn last record (a write
    cut short: a full disk, a killed process; `cut_torn_tail`). Optuna would append the next
    record to the torn one, and then no process could read the study again; reading, as a
    dry run does, leaves the file as it is."""

    def __init__(self, path: str) -> None:
        self._path = Path(path)
        self._lock_of_appends = JournalFileSymlinkLock(path)  # the lock Optuna's appends take
        super().__init__(path, lock_obj=self._lock_of_appends)

    def read_logs(self, log_number_from: int) -> Iterator[dict[str, Any]]:
        """Optuna's reading, with a damaged record (not the last: that one is torn, and cut)
        named by its file and line."""
        line = log_number_from
        try:
            for log in super().read_logs(log_number_from):
                line += 1
                yield log
        except ValueError as error:  # json's decode error, or "Invalid log format."
            raise ValueError(
                f"the journal {self._path} cannot be read: its record on line {line + 1} is "
                f"damaged ({error}). Restore the file from a copy, or keep the lines before it "
                f"(head -n {line} {self._path.name} > kept.log, then use kept.log): the study "
                "as it stood then, without what was recorded after"
            ) from error

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        if _ends_torn(self._path):  # an append under way looks torn too: checked again locked
            cut_torn_tail(self._path, self._lock_of_appends)
        super().append_logs(logs)


def _ends_torn(journal: Path) -> bool:
    """Whether the journal's last byte is not a record's end."""
    with journal.open("rb") as file:
        end = file.seek(0, os.SEEK_END)
        if end == 0:
            return False
        file.seek(end - 1)
        return file.read(1) != b"\n"


def cut_torn_tail(journal: Path, lock: JournalFileSymlinkLock) -> Path | None:
    """Move a journal's torn last record to `<journal>.torn-<time>` and cut it off, under the
    journal's lock; the path of the copy, or None when the journal is whole."""
    lock.acquire()
    try:
        if not _ends_torn(journal):
            return None
        with journal.open("r+b") as file:
            start = file.seek(0, os.SEEK_END)
            while start > 0:  # back to the end of the last whole record
                chunk_start = max(0, start - TAIL_BYTES)
                file.seek(chunk_start)
                chunk = file.read(start - chunk_start)
                if b"\n" in chunk:
                    start = chunk_start + chunk.rindex(b"\n") + 1
                    break
                start = chunk_start
            file.seek(start)
            copy = journal.with_name(f"{journal.name}.torn-{datetime.now():%Y%m%dT%H%M%S%f}")
            copy.write_bytes(file.read())
            file.truncate(start)
    finally:
        lock.release()
    log.warning(
        "%s: its last record was cut short (a write that did not finish); moved to %s",
        journal,
        copy,
    )
    return copy


def open_study(
    storage: BaseStorage, spec: StudySpec, sampler: optuna.samplers.BaseSampler | None = None
) -> optuna.Study:
    """Create or load the spec's study; refuse a stored study made from a different spec."""
    study = optuna.create_study(
        study_name=spec.name,
        storage=storage,
        sampler=sampler,
        directions=[o.direction for o in spec.objectives],
        load_if_exists=True,
    )
    if "spec_fingerprint" not in study.user_attrs:
        study.set_user_attr("spec_fingerprint", spec.fingerprint())
        study.set_user_attr("spec_identity", spec.identity())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            study.set_metric_names(spec.metric_names)
    check_stored_spec(study, spec)
    return study


def check_stored_spec(study: optuna.Study, spec: StudySpec) -> None:
    """Raise ValueError, naming what changed, if the stored study was made from another spec:
    a resume may change only the trial count, `max_retries` and the storage."""
    if study.user_attrs.get("spec_fingerprint", spec.fingerprint()) == spec.fingerprint():
        return
    stored = study.user_attrs.get("spec_identity")
    changed = identity_differences(stored, spec.identity()) if stored else []
    if stored and not changed:  # equal values written otherwise (`epochs: 6` and `6.0`)
        return
    what = "; ".join(changed) or "its base, space, objectives, constraints, seeds or sampler"
    raise ValueError(
        f"study {spec.name!r} in this storage was created from a different spec (stored → "
        f"now: {what}; --epochs and --steps change base too). A resume may change only the trial "
        "count, max_retries and the storage; other points or seeds make a new study: give it "
        f"a new name and its own --out (with --storage naming this one and --reuse "
        f"{spec.name!r} it takes the runs the two share), or another --out/--storage"
    )


def existing_storage(location: StorageLocation) -> BaseStorage | None:
    """The storage at `location` if it exists (a journal or SQLite file not made yet is not
    created), else None."""
    if location.is_sqlite:
        database = make_url(location.url).database
        if not database or database == ":memory:" or not Path(database).exists():
            return None
    elif not location.is_rdb and not Path(location.url).exists():
        return None
    return open_storage(location)


def stored_study(storage: BaseStorage | None, name: str) -> optuna.Study | None:
    """The study `name` in `storage` (from `existing_storage`), or None."""
    if storage is None or name not in optuna.get_all_study_names(storage):
        return None
    return optuna.load_study(study_name=name, storage=storage)
