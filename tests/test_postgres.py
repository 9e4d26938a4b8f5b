"""Several machines on one study, for real: two runners share a study through PostgreSQL.

A throw-away cluster is started from Debian's PostgreSQL binaries (installed by
.ci/setup-postgres) on a loopback port, as the `postgres` user when the tests run as root
(initdb refuses root). Two separate runner processes, each with its own worker process, stand in
for two machines: they race to enqueue the grid and to claim its points; each point must run
exactly once. Skipped, with the reason, only where PostgreSQL or its driver is missing.
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import yaml

TESTS = Path(__file__).parent
ROOT = TESTS.parent


def _postgres_bin() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(versions[-1]).parent if versions else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh cluster with database `ablate`; its URL. Stopped and deleted afterwards."""
    pytest.importorskip("psycopg2", reason="psycopg2 missing: pip install psycopg2-binary")
    bin_dir = _postgres_bin()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server binaries (initdb): run .ci/setup-postgres")
    run_as: list[str] = []
    owner = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user for initdb")
        run_as = ["runuser", "-u", "postgres", "--"]
    # pytest's tmp_path is private to root; the server's user needs its own folder
    folder = Path(tempfile.mkdtemp(prefix="ablate-pg-"))
    if owner is not None:
        os.chown(folder, owner.pw_uid, owner.pw_gid)
    data, port = folder / "data", _free_port()

    def pg(tool: str, *args: str) -> None:
        subprocess.run([*run_as, str(bin_dir / tool), *args], check=True, capture_output=True)

    try:
        pg("initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        pg("pg_ctl", "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "start")
    except subprocess.CalledProcessError as error:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"could not start PostgreSQL: {error.stderr.decode(errors='replace')[-300:]}")
    try:
        pg("createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "ablate")
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/ablate"
    finally:
        pg("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)


RUNNER = """
import sys
from ablate.spec import load_spec
from ablate.study import RunOptions, run_study
from test_study import fake_objective

options = RunOptions(storage=sys.argv[3], workers=1, device="cpu", objective=fake_objective,
                     report=False, progress=False, poll_s=0.2)
status = run_study(load_spec(sys.argv[1]), sys.argv[2], options)
sys.exit(0 if status.done else 1)
"""


def test_two_runners_share_one_postgres_study_and_run_each_point_once(postgres_url, tmp_path):
    spec = {
        "name": "two-machines",
        "space": {
            "filter_size": {"choices": [1, 2, 3, 4]},
            "padding": {"choices": ["zeros", "reflect"]},
        },
        "objectives": [{"metric": "accuracy", "direction": "maximize"}],
        "seeds": [0],
        "sampler": {"name": "grid"},
    }
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    calls = tmp_path / "calls.jsonl"
    env = {
        **os.environ,
        "ABLATE_TEST_CALLS": str(calls),
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)]),
    }
    runners = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                RUNNER,
                str(spec_path),
                str(tmp_path / f"machine-{k}"),
                postgres_url,
            ],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for k in range(2)
    ]
    outputs = [runner.communicate(timeout=300)[0].decode(errors="replace") for runner in runners]
    assert [r.returncode for r in runners] == [0, 0], outputs

    runs = Counter(
        (c["filter_size"], c["padding"]) for c in map(json.loads, calls.read_text().splitlines())
    )
    assert runs == {(f, p): 1 for f in (1, 2, 3, 4) for p in ("zeros", "reflect")}
    study = optuna.load_study(study_name="two-machines", storage=postgres_url)
    trials = study.get_trials()
    assert sorted(t.user_attrs["slot"] for t in trials) == list(range(8))
    assert {t.state.name for t in trials} == {"COMPLETE"}
    assert len({t.user_attrs["worker"]["pid"] for t in trials}) <= 2
    for k in range(2):
        meta = json.loads((tmp_path / f"machine-{k}" / "meta.json").read_text())
        assert meta["storage"] == postgres_url
