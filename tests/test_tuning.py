"""Launch-config lookup: user cache, then shipped table, then heuristic."""

import dataclasses
import json
import sys
from pathlib import Path

import pytest
import torch

from kernels import files, hardware, tuning

CONFIG_A = {"BLOCK_H": 2, "BLOCK_W": 16, "BLOCK_C": 1, "num_warps": 2, "num_stages": 3}
CONFIG_B = {"BLOCK_H": 8, "BLOCK_W": 32, "BLOCK_C": 1, "num_warps": 4, "num_stages": 2}


@pytest.fixture(autouse=True)
def isolated_tables(tmp_path, monkeypatch):
    """Every test gets its own cache folder and shipped-table folder."""
    monkeypatch.setenv(tuning.CACHE_DIR_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(tuning, "SHIPPED_DIR", tmp_path / "shipped")
    tuning.clear_cache()
    yield
    tuning.clear_cache()


def make_key(**changes) -> tuning.TuningKey:
    fields = dict(nc=256, hw=1024, c=64, dtype="float16", layout="nchw", filter_size=4, stride=2)
    fields.update(changes)
    return tuning.TuningKey(**fields)


@pytest.mark.parametrize(("n", "bucket"), [(0, 1), (1, 1), (2, 2), (3, 4), (64, 64), (65, 128)])
def test_pow2_bucket(n, bucket):
    assert tuning.pow2_bucket(n) == bucket


def test_tuning_key_buckets_shape_and_reads_layout():
    x = torch.randn(3, 5, 9, 7)
    key = tuning.tuning_key(x, 5, 2, max_kernel=2)
    assert (key.nc, key.hw, key.c) == (16, 64, 8)
    assert (key.dtype, key.layout, key.filter_size, key.max_kernel) == ("float32", "nchw", 5, 2)
    cl = tuning.tuning_key(x.to(memory_format=torch.channels_last).half(), 5, 2, relu=True)
    assert (cl.layout, cl.dtype, cl.relu) == ("channels_last", "float16", True)
    # Keys of the same bucket are equal (hashable, usable as memo keys).
    assert tuning.tuning_key(torch.randn(2, 7, 8, 8), 5, 2, max_kernel=2) == key
    assert tuning.TuningKey.from_str(cl.to_str()) == cl


@pytest.mark.parametrize(
    ("changes", "field"),
    [({"nc": 3}, "nc"), ({"dtype": "int8"}, "dtype"), ({"layout": "nhwc"}, "layout"),
     ({"stride": 0}, "stride"), ({"max_kernel": -1}, "max_kernel"),
     ({"filter_size": 0}, "filter_size"), ({"hw": 1024.0}, "hw")],
)
def test_tuning_key_rejects_bad_fields(changes, field):
    with pytest.raises(ValueError, match=field):
        make_key(**changes)


def test_bad_op_and_bad_config_are_named():
    with pytest.raises(ValueError, match="op="):
        tuning.launch_config("blur_fwd", make_key())
    with pytest.raises(ValueError, match="BLOCK_W"):
        tuning.save_config("blur_pool_fwd", make_key(), {**CONFIG_A, "BLOCK_W": 12})
    with pytest.raises(ValueError, match="missing"):
        tuning.save_config("blur_pool_fwd", make_key(), {"BLOCK_H": 2})
    with pytest.raises(ValueError, match="tuning key"):
        tuning.TuningKey.from_str("nc=1|hw=2")


def test_user_cache_beats_shipped_table_beats_heuristic():
    key = make_key()
    heuristic = tuning.launch_config("blur_pool_fwd", key)
    assert heuristic == tuning.heuristic_config("blur_pool_fwd", key)

    tuning.save_config("blur_pool_fwd", key, CONFIG_A, path=tuning.shipped_table_path())
    assert tuning.launch_config("blur_pool_fwd", key) == CONFIG_A

    written = tuning.save_config("blur_pool_fwd", key, CONFIG_B, ms=0.5)
    assert written == tuning.user_cache_path()
    assert tuning.launch_config("blur_pool_fwd", key) == CONFIG_B
    # Other ops are untouched.
    assert tuning.launch_config("blur_pool_bwd", key) == tuning.heuristic_config(
        "blur_pool_bwd", key
    )

    written.unlink()
    tuning.clear_cache()
    assert tuning.launch_config("blur_pool_fwd", key) == CONFIG_A


def test_nearest_entry_stands_in_only_for_compatible_keys():
    tuning.save_config("max_blur_pool_fwd", make_key(hw=4096, max_kernel=2), CONFIG_A)
    tuning.save_config("max_blur_pool_fwd", make_key(hw=64, max_kernel=2), CONFIG_B)
    assert tuning.launch_config("max_blur_pool_fwd", make_key(hw=2048, max_kernel=2)) == CONFIG_A
    assert tuning.launch_config("max_blur_pool_fwd", make_key(hw=128, max_kernel=2)) == CONFIG_B
    # Same element size, other filter size: still the nearest entry.
    near = make_key(hw=2048, max_kernel=2, dtype="bfloat16", filter_size=5)
    assert tuning.launch_config("max_blur_pool_fwd", near) == CONFIG_A
    far = make_key(hw=4, max_kernel=2)  # 4 log2 steps from hw=64, plus 2 more for nc and c
    far = dataclasses.replace(far, nc=64, c=16)
    for other in (far, make_key(dtype="float32", max_kernel=2), make_key(max_kernel=3),
                  make_key(max_kernel=2, layout="channels_last"), make_key(max_kernel=2, stride=3)):
        assert tuning.launch_config("max_blur_pool_fwd", other) == tuning.heuristic_config(
            "max_blur_pool_fwd", other
        )


def test_cache_folder_follows_env_var(tmp_path, monkeypatch):
    monkeypatch.setenv(tuning.CACHE_DIR_ENV, str(tmp_path / "elsewhere"))
    assert tuning.user_cache_path().parent == tmp_path / "elsewhere"
    monkeypatch.delenv(tuning.CACHE_DIR_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert tuning.cache_dir() == tmp_path / "xdg" / "shiftlab"
    name = tuning.user_cache_path("NVIDIA H100 80GB HBM3", "3.6.0").name
    assert name == "nvidia-h100-80gb-hbm3-triton-3-6-0.json"


def test_env_var_switches_cache_within_one_process(tmp_path, monkeypatch):
    key = make_key()
    tuning.save_config("blur_pool_fwd", key, CONFIG_A)
    assert tuning.launch_config("blur_pool_fwd", key) == CONFIG_A
    monkeypatch.setenv(tuning.CACHE_DIR_ENV, str(tmp_path / "empty"))
    assert tuning.launch_config("blur_pool_fwd", key) == tuning.heuristic_config(
        "blur_pool_fwd", key
    )


def test_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "table.json"
    tuning.save_config("blur_pool_fwd", make_key(), CONFIG_A, path=path)
    before = path.read_text()

    def broken_replace(source, target):
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        tuning.save_config("blur_pool_bwd", make_key(), CONFIG_B, path=path)
    assert path.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.json", "table.json.lock"]


@pytest.mark.parametrize("damage", ["{not json", "folder"])
def test_a_table_that_cannot_be_read_is_named_and_passed_over(damage):
    """Cut short, or a folder where the file goes: one warning naming it, and the heuristic
    launches (every forward pass had failed)."""
    path = tuning.user_cache_path()
    path.parent.mkdir(parents=True)
    if damage == "folder":
        path.mkdir()
    else:
        path.write_text(damage)
    key = make_key()
    with pytest.warns(UserWarning, match=f"tuning table {path}: cannot be read"):
        assert tuning.launch_config("blur_pool_fwd", key) == tuning.heuristic_config(
            "blur_pool_fwd", key)


def test_a_cache_folder_that_is_a_file_is_passed_over(tmp_path, monkeypatch):
    monkeypatch.setenv(tuning.CACHE_DIR_ENV, str(tmp_path / "a_file"))
    (tmp_path / "a_file").write_text("")
    key = make_key()
    with pytest.warns(UserWarning, match="a_file.*cannot be read"):
        assert tuning.launch_config("blur_pool_bwd", key) == tuning.heuristic_config(
            "blur_pool_bwd", key)


@pytest.mark.skipif(not hardware.interpreting(), reason="the interpreter's config; a GPU "
                    "host runs the kernels themselves")
def test_interpreter_gets_one_small_config():
    assert hardware.device_name() == hardware.INTERPRETER_DEVICE
    configs = {
        tuple(tuning.heuristic_config(op, make_key(layout=layout, hw=hw)).items())
        for op in tuning.OPS
        for layout in tuning.LAYOUTS
        for hw in (1, 4096)
    }
    assert len(configs) == 1


@pytest.mark.parametrize("op", tuning.OPS)
@pytest.mark.parametrize("layout", tuning.LAYOUTS)
@pytest.mark.parametrize(
    ("hw", "c"), [(1, 512), (64, 512), (1024, 64), (16384, 64), (65536, 4), (64, 4)]
)
def test_gpu_heuristic_is_sound(monkeypatch, op, layout, hw, c):
    monkeypatch.setattr(hardware, "device_name", lambda: "NVIDIA H100 80GB HBM3")
    key = make_key(hw=hw, c=c, nc=256 * c, layout=layout)
    config = tuning.check_config(tuning.heuristic_config(op, key))
    side = tuning.pow2_bucket(int(hw**0.5))
    whole = tuning.whole_map_tile(op, key)
    assert config["BLOCK_H"] <= max(side, whole) and config["BLOCK_W"] <= max(side, whole, 16)
    # Every kernel streams its tile one row at a time, so its threads hold a row: at most
    # their share of it (registers), and at least one element where the row fills a warp.
    per_thread = tuning.thread_elements(op, layout, key.filter_size)
    assert config["num_warps"] in (1, 2, 4, 8)
    held = config["BLOCK_W"] * config["BLOCK_C"]
    forward = op.endswith("_fwd")
    # Forward: eight rows; backward: sixteen; or the whole map.
    rows = 8 if forward else 16
    assert config["BLOCK_H"] == min(whole, rows)
    assert held <= 32 * config["num_warps"] * per_thread
    assert config["num_warps"] == 1 or 32 * config["num_warps"] <= held
    # Where the row fills more than one warp, each thread holds its whole share.
    assert config["num_warps"] == max(1, held // (32 * per_thread))
    row = 128 * per_thread  # four warps' worth
    if layout == "channels_last":  # 64 channels forward, 128 backward, more where narrow
        channels = 64 if forward else 128
        assert config["BLOCK_C"] == min(c, max(channels, row // config["BLOCK_W"]))
    else:  # forward at most 8 columns, backward the map's width; planes to fill the row
        assert config["BLOCK_W"] == min(whole, 8 if forward else row)
        assert config["BLOCK_C"] == max(1, min(c, row // config["BLOCK_W"]))


@pytest.mark.parametrize(
    ("op", "size", "k", "expected"),
    [
        ("blur_pool_fwd", 8, 4, 4),  # 4 × 4 outputs
        ("blur_pool_bwd", 8, 4, 8),
        ("max_blur_pool_fwd", 4, 4, 2),  # 3 × 3 max map, 2 × 2 outputs
        ("max_blur_pool_fwd", 8, 2, 4),  # 7 × 7 max map, 4 × 4 outputs
        ("max_blur_pool_bwd", 8, 4, 8),  # the input gradient
        ("blur_pool_fwd", 32, 4, 16),
    ],
)
def test_whole_map_tile(op, size, k, expected):
    key = make_key(hw=size * size, filter_size=k, max_kernel=2 if op.startswith("max") else 0)
    assert tuning.whole_map_tile(op, key) == expected


def test_gpu_family():
    assert hardware.gpu_family("NVIDIA H100 80GB HBM3") == "h100"
    assert hardware.gpu_family("NVIDIA GeForce RTX 4090") == "4090"
    assert hardware.gpu_family("cpu-interpreter") == "cpu-interpreter"
    assert hardware.gpu_family("") == hardware.gpu_family("(?)") == "cpu"


def table_of(op: str, entries: dict) -> dict:
    """A table (as read from JSON) holding ``entries``: key -> config."""
    table = tuning.empty_table()
    table["configs"][op] = {key.to_str(): dict(config) for key, config in entries.items()}
    return table


def test_the_nearer_of_two_entries_stands_in():
    """Of two compatible entries, the one fewer steps away stands in, whichever comes first."""
    near, far = make_key(hw=2048), make_key(hw=8192)  # 1 and 3 log2 steps from hw=1024
    for entries in ({near: CONFIG_A, far: CONFIG_B}, {far: CONFIG_B, near: CONFIG_A}):
        table = table_of("blur_pool_fwd", entries)
        assert tuning.table_config(table, "blur_pool_fwd", make_key()) == CONFIG_A


@pytest.mark.parametrize("field", ["c", "filter_size"])
def test_channel_bucket_and_filter_size_count_in_the_distance(field):
    """An entry 3 steps off in the C bucket or the filter size (8 against 64 channels, k=7
    against k=4) loses to one 2 steps off in N·C (1024 against 256 planes)."""
    off = make_key(c=8) if field == "c" else make_key(filter_size=7)
    closer = make_key(nc=1024)
    table = table_of("blur_pool_fwd", {off: CONFIG_B, closer: CONFIG_A})
    assert tuning.table_config(table, "blur_pool_fwd", make_key()) == CONFIG_A


@pytest.mark.parametrize(
    ("entry", "stands_in"),
    [(make_key(hw=16384), True),  # 4 steps: at the cutoff
     (make_key(hw=32768), False),  # 5 steps: past it
     (make_key(nc=512, filter_size=5, relu=True, dtype="bfloat16"), True),  # 1 + 1 + 1 + 1
     (make_key(nc=1024, filter_size=5, relu=True, dtype="bfloat16"), False),  # 2 + 1 + 1 + 1
     (make_key(c=16, filter_size=6), True),  # 2 + 2
     (make_key(c=16, filter_size=7), False)],  # 2 + 3
)  # fmt: skip
def test_an_entry_stands_in_up_to_the_cutoff_and_not_past_it(entry, stands_in):
    """``_MAX_STAND_IN_DISTANCE`` (4) is inclusive: an entry exactly 4 away stands in."""
    table = table_of("blur_pool_fwd", {entry: CONFIG_A})
    assert tuning.table_config(table, "blur_pool_fwd", make_key()) == (
        CONFIG_A if stands_in else None
    )


@pytest.mark.parametrize(
    ("text", "named"),
    [("[]", r"expected a JSON object with a 'configs' object.*got \[\]"),
     ('{"configs": []}', r"'configs' object.*got \{\"configs\": \[\]\}"),
     ('{"configs": {"blur_pool_fwd": [1]}}',
      r"configs\.blur_pool_fwd is \[1\]; expected an object of tuning key"),
     ('{"configs": {"blur_pool_bwd": {"nc=3|hw=64|c=4|float32|nchw|k=3|s=2|mk=0|relu=0": {}}}}',
      r"configs\.blur_pool_bwd key 'nc=3\|.*power of two.*accepted: keys such as 'nc=256\|"),
     ('{"configs": {"blur_pool_fwd": {"nc=4|hw": {}}}}',
      r"key 'nc=4\|hw'.*TuningKey\.to_str.*accepted")],
)  # fmt: skip
def test_a_malformed_table_is_named_and_passed_over(text, named):
    """A table that is JSON but not a table of op -> key -> config, or holds a bad key: one
    warning naming the file, the bad value and what is accepted, and the lookups go on to the
    heuristic (every lookup had failed)."""
    path = tuning.user_cache_path()
    path.parent.mkdir(parents=True)
    path.write_text(text)
    with pytest.warns(UserWarning, match=named) as caught:
        for op in tuning.OPS:
            assert tuning.launch_config(op, make_key()) == tuning.heuristic_config(op, make_key())
    assert len(caught) == 1 and str(path) in str(caught[0].message)


def test_bad_entries_are_left_out_and_the_good_ones_kept():
    """Values a launch cannot take (text, null, a fraction, a tile past Triton's largest
    tensor, more warps than a block holds) leave their entry out, not the table."""
    keys = [make_key(filter_size=k) for k in (3, 1, 2, 4, 5, 6)]  # the good entry's first
    bad = [{**CONFIG_A, "BLOCK_H": "big"}, {**CONFIG_A, "BLOCK_W": None},
           {**CONFIG_A, "BLOCK_W": 8.9}, {**CONFIG_A, "BLOCK_W": 2**21},
           {**CONFIG_A, "num_warps": 1024}]  # fmt: skip
    entries = {key.to_str(): config for key, config in zip(keys, [CONFIG_B, *bad], strict=True)}
    path = tuning.user_cache_path()
    files.atomic_write_text(path, json.dumps({"configs": {"blur_pool_fwd": entries}}))
    with pytest.warns(UserWarning, match=r"entries left out: .*'big'.* \(and 4 more\)"):
        assert tuning.launch_config("blur_pool_fwd", keys[0]) == CONFIG_B
    for key in keys[1:]:  # the good entry stands in for its neighbours
        assert tuning.launch_config("blur_pool_fwd", key) == CONFIG_B


def test_a_config_of_any_whole_number_type_is_taken():
    """numpy's ints (a config read from a pandas row) and any mapping, as before the bounds."""
    import types

    import numpy as np

    config = types.MappingProxyType({k: np.int64(v) for k, v in CONFIG_A.items()})
    assert tuning.check_config(config) == CONFIG_A
    assert all(type(v) is int for v in tuning.check_config(config).values())


def test_a_save_keeps_the_entries_a_lookup_passes_over():
    """An entry this version cannot take (another version's dtype) is passed over when read,
    but a save of another entry leaves it in the file, as it was."""
    path = tuning.user_cache_path()
    foreign = {"nc=256|hw=1024|c=64|float8_e4m3fn|nchw|k=3|s=2|mk=0|relu=0": CONFIG_A}
    files.atomic_write_text(path, json.dumps({"configs": {"blur_pool_fwd": foreign}}))
    tuning.save_config("blur_pool_fwd", make_key(), CONFIG_B)
    assert set(json.loads(path.read_text())["configs"]["blur_pool_fwd"]) == {
        *foreign, make_key().to_str()}


def test_the_warning_names_the_line_that_launched(monkeypatch):
    """Not a line inside the package: the user's (here this test's)."""
    path = tuning.user_cache_path()
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.warns(UserWarning, match="cannot be read") as caught:
        tuning.launch_config("blur_pool_fwd", make_key())
    assert caught[0].filename == __file__


def _save_winners(cache: str, op: str, count: int) -> None:
    import os

    os.environ[tuning.CACHE_DIR_ENV] = cache
    for k in range(1, count + 1):
        tuning.save_config(op, make_key(filter_size=k), CONFIG_A)


def test_two_autotune_runs_on_one_cache_keep_both_runs_winners(tmp_path):
    """Each save reads the file under a lock, not the table its process read at its start:
    one run's winners had overwritten the other's."""
    import multiprocessing

    tuning.read_table(tuning.user_cache_path())  # a run's first lookup: memoised, empty
    context = multiprocessing.get_context("spawn")
    runs = [context.Process(target=_save_winners, args=(str(tmp_path / "cache"), op, 8))
            for op in ("blur_pool_bwd", "max_blur_pool_bwd")]  # fmt: skip
    for run in runs:
        run.start()
    for run in runs:
        run.join(120)
    assert [run.exitcode for run in runs] == [0, 0]
    tuning.clear_cache()
    configs = tuning.read_table(tuning.user_cache_path())["configs"]
    assert (len(configs["blur_pool_bwd"]), len(configs["max_blur_pool_bwd"])) == (8, 8)


def test_a_failed_save_leaves_lookups_on_the_saved_table(monkeypatch):
    """``save_config`` updates a private copy of the memoised table: when the write fails,
    lookups keep serving what is on disk, not the unsaved entry."""
    key = make_key()
    tuning.save_config("blur_pool_fwd", key, CONFIG_A)
    assert tuning.launch_config("blur_pool_fwd", key) == CONFIG_A

    def broken_replace(source, target):
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        tuning.save_config("blur_pool_bwd", key, CONFIG_B)
    assert tuning.launch_config("blur_pool_bwd", key) == tuning.heuristic_config(
        "blur_pool_bwd", key
    )
    assert tuning.launch_config("blur_pool_fwd", key) == CONFIG_A
    assert list(tuning.read_table(tuning.user_cache_path())["configs"]["blur_pool_bwd"]) == []


def test_empty_cache_variables_count_as_unset(monkeypatch):
    """``SHIFTLAB_CACHE_DIR=`` or ``XDG_CACHE_HOME=`` (set, but empty) is as if unset: the
    cache goes under ``~/.cache``, not into the working directory."""
    monkeypatch.setenv(tuning.CACHE_DIR_ENV, "")
    monkeypatch.setenv("XDG_CACHE_HOME", "")
    assert tuning.cache_dir() == Path.home() / ".cache" / "shiftlab"


@pytest.mark.parametrize(
    ("changes", "accepted"),
    [({"BLOCK_H": 1024}, True), ({"BLOCK_H": 2048}, False),  # MAX_ROWS
     ({"num_warps": 32}, True), ({"num_warps": 64}, False),  # MAX_NUM_WARPS
     ({"BLOCK_W": 65536, "BLOCK_C": 1}, True), ({"BLOCK_W": 131072, "BLOCK_C": 1}, False),
     ({"BLOCK_C": 65536, "BLOCK_W": 1}, True), ({"BLOCK_C": 131072, "BLOCK_W": 1}, False),
     ({"BLOCK_C": 128, "BLOCK_W": 512}, True),  # a row tile of MAX_TILE elements
     ({"BLOCK_C": 256, "BLOCK_W": 512}, False),  # each within bounds, the tile twice MAX_TILE
     ({"num_stages": 3}, True),  # stages need not be a power of two
     ({"BLOCK_H": 0}, False), ({"num_stages": 0}, False),
     ({"BLOCK_W": True}, False), ({"num_warps": True}, False)],
)  # fmt: skip
def test_a_launch_config_is_taken_up_to_its_bounds_and_not_past_them(changes, accepted):
    """The bounds are inclusive; 0 (which passes the power-of-two test) and booleans (which
    are ints) are refused by name."""
    config = {**CONFIG_A, **changes}
    if accepted:
        assert tuning.check_config(config) == config
    else:
        with pytest.raises(ValueError, match=next(iter(changes))):
            tuning.check_config(config)


def test_an_entry_that_is_not_an_object_is_left_out_and_the_others_kept():
    """null, a list or a number where a launch config goes: the entry is named and passed
    over, not a TypeError that ends the lookup."""
    keys = [make_key(filter_size=k) for k in (3, 4, 5, 6)]
    entries = {key.to_str(): config for key, config in zip(keys, [CONFIG_B, None, [1, 2], 7],
                                                           strict=True)}  # fmt: skip
    path = tuning.user_cache_path()
    files.atomic_write_text(path, json.dumps({"configs": {"blur_pool_fwd": entries}}))
    with pytest.warns(UserWarning, match=r"k=4.*launch config null: expected an object.*"
                                         r"\(and 2 more\)"):  # fmt: skip
        for key in keys:  # the good entry stands in for its neighbours
            assert tuning.launch_config("blur_pool_fwd", key) == CONFIG_B


def test_one_entry_left_out_is_named_without_a_count_of_more():
    bad, good = make_key(filter_size=3), make_key()
    entries = {bad.to_str(): {**CONFIG_A, "BLOCK_H": "big"}, good.to_str(): CONFIG_B}
    path = tuning.user_cache_path()
    files.atomic_write_text(path, json.dumps({"configs": {"blur_pool_fwd": entries}}))
    with pytest.warns(UserWarning, match="entries left out") as caught:
        assert tuning.launch_config("blur_pool_fwd", good) == CONFIG_B
    assert "'big'" in str(caught[0].message) and "more)" not in str(caught[0].message)


@pytest.mark.parametrize(
    "text", ["{not json", "[]", '{"configs": []}', '{"configs": {"blur_pool_fwd": [1]}}']
)
def test_a_save_over_a_table_that_cannot_take_it_starts_it_anew(text):
    """A file cut short, or whose configs (or this op's entries) are not objects: the winner
    and its time are saved all the same, in a table a lookup reads."""
    path = tuning.user_cache_path()
    path.parent.mkdir(parents=True)
    path.write_text(text)
    tuning.save_config("blur_pool_fwd", make_key(), CONFIG_A, ms=0.25)
    saved = json.loads(path.read_text())["configs"]["blur_pool_fwd"]
    assert saved == {make_key().to_str(): {**CONFIG_A, "ms": 0.25}}
    assert tuning.launch_config("blur_pool_fwd", make_key()) == CONFIG_A


def test_a_table_written_or_cleared_moves_the_lookup_state():
    """Launch plans are kept per ``lookup_state`` (``kernels.ops.common``): a save or a
    ``clear_cache`` must move it, or launches would keep the config planned before."""
    before = tuning.lookup_state()
    tuning.save_config("blur_pool_fwd", make_key(), CONFIG_A)
    saved = tuning.lookup_state()
    tuning.clear_cache()
    assert len({before, saved, tuning.lookup_state()}) == 3


@pytest.mark.parametrize(
    ("op", "layout", "k", "share"),
    [("blur_pool_fwd", "nchw", 7, 1), ("max_blur_pool_fwd", "nchw", 3, 1),
     ("blur_pool_fwd", "channels_last", 7, 2), ("max_blur_pool_fwd", "channels_last", 3, 2),
     ("blur_pool_bwd", "nchw", 3, 1), ("max_blur_pool_bwd", "nchw", 7, 1),
     ("blur_pool_bwd", "channels_last", 7, 4), ("max_blur_pool_bwd", "channels_last", 5, 4),
     ("max_blur_pool_bwd", "channels_last", 6, 2), ("max_blur_pool_bwd", "channels_last", 7, 2)],
)  # fmt: skip
def test_a_threads_share_of_the_row_is_the_one_its_registers_allow(op, layout, k, share):
    """The shares ``thread_elements`` documents (read off ``benchmarks.resource_usage``)."""
    assert tuning.thread_elements(op, layout, k) == share


@pytest.mark.parametrize(
    ("op", "max_kernel", "expected"),
    [("blur_pool_fwd", 0, 4),  # 3 outputs, the last half off the map
     ("max_blur_pool_fwd", 3, 2),  # 3 × 3 max map, 2 × 2 outputs
     ("blur_pool_bwd", 0, 8)],
)
def test_whole_map_tile_of_an_odd_side_rounds_the_outputs_up(op, max_kernel, expected):
    """hw=32 is the bucket of a 5 × 5 map: at stride 2 it has ceil(5 / 2) = 3 output rows."""
    key = make_key(hw=32, max_kernel=max_kernel)
    assert tuning.whole_map_tile(op, key) == expected


def test_a_slug_has_no_dash_at_either_end():
    assert hardware.slug("Tesla T4 (PCIe)") == "tesla-t4-pcie"
    assert hardware.slug(" NVIDIA A100-SXM4-40GB ") == "nvidia-a100-sxm4-40gb"


@pytest.mark.parametrize(("value", "requested"), [("1", True), ("0", False), ("", False)])
def test_an_empty_triton_interpret_asks_for_no_interpreter(monkeypatch, value, requested):
    """As Triton reads it: set but empty is off."""
    monkeypatch.setenv("TRITON_INTERPRET", value)
    assert hardware.interpreter_requested() is requested


def test_without_triton_the_version_is_none(monkeypatch):
    """The name the cache files of a machine without Triton are filed under."""
    monkeypatch.setitem(sys.modules, "triton", None)  # its import then fails
    assert hardware.triton_version.__wrapped__() == "none"
