from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.blobs import digest_of
from engine.cli import main
from engine.database import Database
from engine.inventory import LIST_DOC_ID
from engine.userdata import user_database_path
from tests.conftest import SEED_DATA, needs_shared


class Cli:
    def __init__(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.base = ["--data-dir", str(tmp_path), "--user", "bob"]
        self.capsys = capsys

    def __call__(self, *args: str) -> tuple[int, str, str]:
        code = main([*self.base, *args])
        out, err = self.capsys.readouterr()
        return code, out, err

    def json(self, *args: str) -> list[dict[str, object]]:
        code, out, err = self("--json", *args)
        assert code == 0, err
        return [json.loads(line) for line in out.splitlines()]


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(tmp_path, capsys)


def test_item_edit_round_trip(cli: Cli) -> None:
    items = cli.json("items")
    assert items[0]["key"] == "Flour"
    assert cli("set", "Flour", "42")[0] == 0
    items = cli.json("items")
    assert items[0] == {"key": "Flour", "value": 42, "image": items[0]["image"]}
    code, out, _ = cli("items")
    assert code == 0 and "Flour" in out and "42" in out


@pytest.mark.parametrize(("args", "message"), [
    (("set", "Nothing", "1"), "no item named"),
    (("set", "Flour", "-3"), "quantity"),
    (("set", "Flour", "2.5"), "quantity"),
    (("doc", "put", "x", "{bad json"), "malformed JSON"),
    (("doc", "put", "x", "[1]"), "not an object"),
    (("doc", "put", "x", '{"_id": "y"}'), "reserved"),
    (("doc", "get", "missing"), "no document"),
    (("doc", "rm", "missing"), "does not exist"),
    (("blob", "get", "sha1-Kq5sNclPz7QV2+lfQIuc6R7oRu0="), "no blob"),
    (("blob", "get", "nonsense"), "digest"),
])  # fmt: skip
def test_bad_input_fails_cleanly_and_changes_nothing(cli: Cli, args: tuple[str, ...], message: str) -> None:
    before = cli.json("changes")
    code, out, err = cli(*args)
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err and "Traceback" not in err
    assert cli.json("changes") == before


def test_doc_commands(cli: Cli) -> None:
    put = cli.json("doc", "put", "note", '{"text": "hi"}')[0]
    got = cli.json("doc", "get", "note")[0]
    assert got == {"_id": "note", "_rev": put["rev"], "text": "hi"}
    assert cli.json("doc", "rm", "note")[0]["deleted"] is True
    assert cli.json("doc", "get", "note")[0]["_deleted"] is True
    rows = cli.json("changes", "--since", "1")
    assert [r["id"] for r in rows] == ["note"] and rows[0]["deleted"] is True


def test_blob_get_writes_bytes(cli: Cli, tmp_path: Path) -> None:
    digest = cli.json("items")[0]["image"]
    assert isinstance(digest, str)
    proc = subprocess.run(
        [sys.executable, "-m", "engine.cli", *cli.base, "blob", "get", digest], capture_output=True, check=True
    )
    assert proc.stdout[:2] == b"\xff\xd8" and digest_of(proc.stdout) == digest


def test_conflicts_and_compact(cli: Cli) -> None:
    assert cli.json("conflicts") == []
    result = cli.json("compact")[0]
    assert set(result) == {"bodies_removed", "revisions_pruned", "blobs_removed"}


@needs_shared(SEED_DATA / "samplelist.json")
def test_seed_from_sample(cli: Cli) -> None:
    cli.base = [*cli.base[:-1], "priya"]
    seeded = cli.json("seed", "--from", str(SEED_DATA / "samplelist.json"), "--images", str(SEED_DATA / "images"))
    assert seeded == [{"event": "seeded", "items": 42}]
    assert cli.json("seed")[0]["event"] == "unchanged"
    assert len(cli.json("items")) == 42


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    for args in ([], ["frobnicate"], ["set", "OnlyKey"], ["changes", "--since", "x"]):
        proc = subprocess.run(
            [sys.executable, "-m", "engine.cli", "--data-dir", str(tmp_path), *args],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert proc.returncode == 2, (args, proc.stderr)


def test_debug_shows_traceback(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "engine.cli", "--data-dir", str(tmp_path), "--user", "x", "--debug", "set", "Nope", "1"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 1 and "Traceback" in proc.stderr


@pytest.mark.parametrize("bad", ['{"items":[{"value":1},{"key":"Eggs","value":"many"}]}', '{"items":"notalist"}'])
def test_doc_put_refuses_a_list_that_breaks_its_schema(cli: Cli, bad: str) -> None:
    before = cli.json("items")
    code, out, err = cli("doc", "put", "doc::list", bad)
    assert code == 1 and out == ""
    assert err.startswith("inventory-sync: error: ") and "not a valid inventory list" in err
    assert cli.json("items") == before


def test_items_of_a_damaged_list_show_its_last_valid_revision(cli: Cli, tmp_path: Path) -> None:
    cli("set", "Flour", "42")
    with Database(user_database_path("bob", tmp_path)) as db:  # as an older version, without the schema
        db.save(LIST_DOC_ID, {"items": "notalist"})
    code, out, err = cli("items")
    assert code == 0 and "warning: the stored list is damaged" in err and "last valid revision" in err
    assert out.splitlines()[0].split()[:2] == ["Flour", "42"]
