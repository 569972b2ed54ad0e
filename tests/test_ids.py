"""Ids counted from 0 (aelab's rows) or from 1 (homework lists): parsing, the range errors, and every
command that takes ids printing and writing them in the base the user chose."""

import csv
import json
import shutil

import numpy as np
import pytest
from _cli import aelab
from _cli import one_line_exit_2 as bad
from hypothesis import given, settings
from hypothesis import strategies as st

from aelab.cli import main
from aelab.codenoise import augment, select
from aelab.data.ids import check_base, format_ids, from_rows, parse_ids, to_rows
from aelab.data.imageset import ImageSet
from aelab.errors import AelabError, DataError

HOMEWORK = "1-5,226-230,841-845,1471-1475"
"""The seed study's picks: 1-based, indexed i - 1 in its code."""


def numbered(n: int) -> ImageSet:
    """n one-pixel images whose value is their row (mod 256), so a pick shows which row it read."""
    return ImageSet((np.arange(n) % 256).astype(np.uint8).reshape(n, 1, 1, 1), name="numbered")


def test_homework_list_reads_rows_0_to_1474_with_id_base_1():
    data = numbered(1475)
    picked = data.by_ids(parse_ids(HOMEWORK), id_base=1)
    rows = [*range(0, 5), *range(225, 230), *range(840, 845), *range(1470, 1475)]
    assert picked.ids.tolist() == rows
    np.testing.assert_array_equal(picked.batch()[:, 0, 0, 0], np.array(rows) % 256)
    with pytest.raises(DataError) as err:  # the same list read as rows runs one past the end
        data.by_ids(parse_ids(HOMEWORK), id_base=0)
    msg = str(err.value)
    assert "no image with id 1475" in msg and "0..1474" in msg and "count from 0" in msg and "--id-base 1" in msg


@pytest.mark.parametrize(("ids", "base", "needles"), [
    ([0], 1, ["id 0", "1..10", "count from 1", "--id-base 1"]),
    ([11, 12], 1, ["id 11, 12", "1..10"]),
    ([10], 0, ["id 10", "0..9", "count from 0", "needs --id-base 1"]),
])
def test_out_of_range_ids_name_the_id_the_base_and_the_range(ids, base, needles):
    with pytest.raises(DataError) as err:
        to_rows(ids, 10, base, "numbered")
    for needle in needles:
        assert needle in str(err.value)


def test_a_subset_reports_missing_ids_in_the_users_base():
    part = numbered(10).subset(np.array([2, 3]))
    assert part.by_ids([3, 4], id_base=1).ids.tolist() == [2, 3]
    with pytest.raises(DataError, match="id 1 is not in this subset"):
        part.by_ids([1], id_base=1)


@pytest.mark.parametrize("base", [2, -1, True, "1"])
def test_only_bases_0_and_1(base):
    with pytest.raises(AelabError, match="--id-base"):
        check_base(base)


@settings(max_examples=80, deadline=None)
@given(ids=st.lists(st.integers(0, 3000), min_size=1, max_size=40, unique=True), base=st.sampled_from([0, 1]),
       n=st.integers(1, 3001))
def test_id_lists_round_trip_and_map_to_rows(ids, base, n):
    assert parse_ids(format_ids(ids)) == ids  # what a command prints reads back as the same list
    assert parse_ids(",".join(map(str, ids))) == ids == parse_ids(ids)
    inside = [i for i in ids if base <= i < n + base]
    if len(inside) == len(ids):
        rows = to_rows(ids, n, base)
        assert rows.tolist() == [i - base for i in ids] and from_rows(rows, base).tolist() == ids
        assert numbered(n).by_ids(ids, base).ids.tolist() == rows.tolist()
    else:
        first_bad = next(i for i in ids if not base <= i < n + base)
        with pytest.raises(DataError) as err:
            to_rows(ids, n, base)
        assert f"id {first_bad}" in str(err.value) and f"{base}..{n - 1 + base}" in str(err.value)


PART = st.one_of(st.integers(0, 500).map(str),
                 st.tuples(st.integers(0, 500), st.integers(0, 500)).map("{0[0]}-{0[1]}".format),
                 st.sampled_from(["", " ", "x", "-", "--1", "1-", "1.5", "٣", "-3"]))


@settings(max_examples=80, deadline=None)
@given(st.lists(PART, max_size=6).map(",".join))
def test_typed_id_lists_parse_or_fail_with_aelab_error(text):
    try:
        ids = parse_ids(text)
    except AelabError:
        return
    assert ids and min(ids) >= 0 and len(ids) == len(set(ids))
    assert parse_ids(format_ids(ids)) == ids


def test_augment_with_id_base_1_is_the_same_images_recorded_in_base_1(tiny_run):
    one = augment(tiny_run, "1-3", variants=2, seed=5, id_base=1)
    zero = augment(tiny_run, "0-2", variants=2, seed=5)
    np.testing.assert_array_equal(one.images, zero.images)  # the noise follows the row, not how it is counted
    assert one.source_ids.tolist() == [1, 1, 2, 2, 3, 3] and zero.source_ids.tolist() == [0, 0, 1, 1, 2, 2]
    assert int(one.arrays()["id_base"]) == 1 and one.arrays()["source_ids"].tolist() == [1, 1, 2, 2, 3, 3]
    assert select(tiny_run, [160], id_base=1).ids.tolist() == [159]
    with pytest.raises(DataError, match=r"id 161: 160 images have ids 1\.\.160"):
        select(tiny_run, "160-161", id_base=1)


def cli(capsys, *args) -> tuple[int, str, str]:
    """The CLI in this process (the subprocess path is covered by the augment test below)."""
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


@pytest.mark.slow
def test_augment_command_with_id_base_1(tiny_run, tmp_path):
    res = aelab("augment", tiny_run.path, "--ids", "1-2,160", "--id-base", "1", "--variants", "2",
                "--out", tmp_path / "a.npz")
    assert res.returncode == 0, res.stderr
    assert "ids 1-2,160, counted from 1" in res.stdout
    with np.load(tmp_path / "a.npz") as z:
        assert z["source_ids"].tolist() == [1, 1, 2, 2, 160, 160] and int(z["id_base"]) == 1
    bad(aelab("augment", tiny_run.path, "--ids", "0-2", "--id-base", "1", "--out", tmp_path / "x.npz"),
        "no image with id 0", "1..160", "count from 1")
    assert not (tmp_path / "x.npz").exists()


@pytest.mark.slow
def test_every_id_command_takes_id_base_1(tiny_run, tmp_path, capsys):
    run = shutil.copytree(tiny_run.path, tmp_path / "run")  # score records anomaly.json in the run it scores
    code, out, err = cli(capsys, "reconstruct", run, "--ids", "1,160", "--id-base", "1", "--out", tmp_path / "r.png",
                         "--json")
    assert code == 0, err
    one = json.loads(out)
    assert one["ids"] == [1, 160] and one["id_base"] == 1
    _, out, _ = cli(capsys, "reconstruct", run, "--ids", "0,159", "--out", tmp_path / "r0.png", "--json")
    assert json.loads(out)["psnr"] == one["psnr"] and json.loads(out)["ids"] == [0, 159]  # the same two images

    code, out, err = cli(capsys, "edit", run, "--id", "1", "--id-base", "1", "--edit", "0+=1", "--out",
                         tmp_path / "e.png", "--json")
    assert code == 0, err
    edited = json.loads(out)
    assert (edited["id"], edited["id_base"], edited["image"]) == (1, 1, "id 1")

    code, out, err = cli(capsys, "interpolate", run, "--ids", "1,160", "--id-base", "1", "--steps", "3",
                         "--out", tmp_path / "i.png")
    assert code == 0 and "id 1 → id 160 (ids counted from 1)" in " ".join(out.split()), err

    code, out, err = cli(capsys, "score", run, "--id-base", "1", "--out", tmp_path / "s.csv", "--json")
    assert code == 0 and json.loads(out)["id_base"] == 1, err
    rows = list(csv.reader((tmp_path / "s.csv").open()))
    assert rows[0] == ["ID", "score"] and [r[0] for r in rows[1:3]] == ["1", "2"] and rows[-1][0] == "160"

    code, out, err = cli(capsys, "compare-noise", run, run, "--ids", "160", "--id-base", "1", "--variants", "2",
                         "--out", tmp_path / "c.png", "--json")
    assert code == 0 and json.loads(out)["ids"] == [160] and json.loads(out)["id_base"] == 1, err

    for args, needles in [
        (("traverse", run, "--id", "160", "--out", tmp_path / "t.png"), ["id 160", "0..159", "--id-base 1"]),
        (("traverse", run, "--id", "0", "--id-base", "1", "--out", tmp_path / "t.png"), ["id 0", "1..160"]),
        (("interpolate", run, "--ids", "1,161", "--id-base", "1", "--out", tmp_path / "t.png"), ["id 161"]),
        (("compare-noise", run, run, "--ids", "1", "--id-base", "2", "--out", tmp_path / "c.png"), ["--id-base 2"]),
        (("edit", run, "--id", "1", "--image", tmp_path / "f.png", "--edit", "0+=1", "--out", tmp_path / "e.png"),
         ["give --id or --image, not both"]),
    ]:
        code, _, err = cli(capsys, *args)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and all(n in lines[0] for n in needles), err
