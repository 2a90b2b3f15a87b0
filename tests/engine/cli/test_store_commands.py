from __future__ import annotations

import io
import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

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
    """bob's database, seeded with the starter inventory."""
    runner = Cli(tmp_path, capsys)
    assert runner("seed")[0] == 0
    return runner


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
    code, out, err = cli("doc", "get", "note")
    assert code == 1 and out == "" and "is deleted" in err and "--deleted" in err
    assert cli.json("doc", "get", "note", "--deleted")[0]["_deleted"] is True
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
    assert seeded[0]["event"] == "database_created"
    assert {k: seeded[1][k] for k in ("event", "items", "replaced")} == {
        "event": "seeded",
        "items": 42,
        "replaced": False,
    }
    code, _, err = cli("seed")
    assert code == 1 and "already has a list (42 items)" in err and "--replace" in err
    assert len(cli.json("items")) == 42
    assert cli.json("seed", "--replace")[0]["replaced"] is True
    assert len(cli.json("items")) == 18  # the app's own starter inventory


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


# -- as a new user meets them: the real entry point, in a subprocess -------------------------------

_SCRIPT = Path(sys.executable).parent / "inventory-sync"
ENTRY = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "engine.cli"]


def run(
    tmp_path: Path, *args: str, user: str = "Bob", stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*ENTRY, "--data-dir", str(tmp_path), "--user", user, *args],
        input=stdin, capture_output=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    "args",
    [("items",), ("doc", "get", "x"), ("changes",), ("conflicts",), ("blob", "get", "sha1-x", "-o", "f"),
     ("compact",), ("items", "rm", "Flour"), ("doc", "rm", "x")],
)  # fmt: skip
def test_reading_commands_never_create_a_database(tmp_path: Path, args: tuple[str, ...]) -> None:
    assert run(tmp_path, "seed", user="alice").returncode == 0
    failed = run(tmp_path, *args)
    assert failed.returncode == 1 and failed.stdout == b""
    assert failed.stderr.decode().strip() == (
        "inventory-sync: error: no database for user 'Bob' (seed creates one; existing users: alice)"
    )
    assert sorted(p.name for p in (tmp_path / "users").iterdir()) == ["alice"]  # nothing new on disk


@pytest.mark.parametrize(
    ("args", "seeded"),
    [(("seed",), False), (("set", "Flour", "4"), True), (("items", "add", "Saffron", "2"), True),
     (("doc", "put", "note", "{}"), False)],
)  # fmt: skip
def test_writing_commands_create_a_database_and_say_so_once(
    tmp_path: Path, args: tuple[str, ...], seeded: bool
) -> None:
    first = run(tmp_path, *args)
    assert first.returncode == 0, first.stderr
    what = " with the starter inventory" if seeded else ""
    assert first.stdout.decode().startswith(f"created a database for user 'Bob'{what} in ")
    second = run(tmp_path, "doc", "put", "other", "{}")
    assert b"created" not in second.stdout


def test_a_failed_seed_leaves_nothing_behind(tmp_path: Path) -> None:
    bad = tmp_path / "list.json"
    bad.write_text('{"items":[{"key":"Apples","value":1}]}\n{"items":[{"key":"Pears","value":"many"}]}\n')
    failed = run(tmp_path / "data", "seed", "--from", str(bad))
    assert failed.returncode == 1 and b"line 2: item 'Pears': quantity" in failed.stderr
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    (pictures / "apples.png").write_bytes(b"not a picture")
    good = tmp_path / "good.json"
    good.write_text('{"items":[{"key":"Apples","value":1}]}\n')
    failed = run(tmp_path / "data", "seed", "--from", str(good), "--images", str(pictures))
    assert failed.returncode == 1 and b"apples.png" in failed.stderr
    assert not (tmp_path / "data" / "users").exists() or not any((tmp_path / "data" / "users").iterdir())


def test_items_add_and_rm_with_names_in_one_normal_form(tmp_path: Path) -> None:
    assert run(tmp_path, "seed").returncode == 0
    picture = tmp_path / "eclair.png"
    picture.write_bytes(_png(1600, 800))
    composed, decomposed = "\u00e9clair", "e\u0301clair"
    added = run(tmp_path, "items", "add", composed, "3", "--picture", str(picture))
    assert added.returncode == 0 and added.stdout.decode().strip() == f"added {composed} = 3"
    again = run(tmp_path, "items", "add", decomposed, "1")  # the same name typed another way
    assert again.returncode == 1 and b"already exists" in again.stderr
    assert run(tmp_path, "set", decomposed, "5").returncode == 0
    items = [json.loads(line) for line in run(tmp_path, "--json", "items").stdout.splitlines()]
    eclairs = [item for item in items if item["key"] == composed]
    assert len(eclairs) == 1 and eclairs[0]["value"] == 5 and eclairs[0]["image"]
    stored = run(tmp_path, "blob", "get", eclairs[0]["image"])
    with Image.open(io.BytesIO(stored.stdout)) as image:
        assert image.format == "JPEG" and image.size == (1024, 512)  # scaled to 1024 px
    assert run(tmp_path, "items", "rm", decomposed).returncode == 0
    assert composed not in run(tmp_path, "items").stdout.decode()
    bad = run(tmp_path, "items", "add", "tab\there", "1")
    assert bad.returncode == 1 and b"control or format character U+0009" in bad.stderr


def _png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 150, 50)).save(out, "PNG")
    return out.getvalue()


def test_input_errors_name_what_they_are_about(tmp_path: Path) -> None:
    assert run(tmp_path, "seed").returncode == 0
    quantity = run(tmp_path, "set", "Flour", "lots")
    assert quantity.returncode == 1 and quantity.stderr.decode().startswith("inventory-sync: error: Flour: quantity")
    unknown = run(tmp_path, "set", "Caviar", "1")
    assert unknown.returncode == 1 and b"'Caviar'" in unknown.stderr
    not_utf8 = run(tmp_path, "doc", "put", "note", "-", stdin=b'{"text": "caf\xe9"}')
    assert not_utf8.returncode == 1
    assert not_utf8.stderr.decode().strip() == (
        "inventory-sync: error: standard input is not UTF-8 text (byte 0xe9 at 13)"
    )
    body = run(tmp_path, "doc", "put", "note", "[1, 2]")
    assert body.returncode == 1 and body.stderr.decode().startswith("inventory-sync: error: note: ")


def test_doc_get_of_a_deleted_document(tmp_path: Path) -> None:
    assert run(tmp_path, "doc", "put", "note", '{"a": 1}').returncode == 0
    assert run(tmp_path, "doc", "rm", "note").returncode == 0
    gone = run(tmp_path, "doc", "get", "note")
    assert gone.returncode == 1 and b"is deleted" in gone.stderr and b"--deleted" in gone.stderr
    tombstone = run(tmp_path, "--json", "doc", "get", "note", "--deleted")
    assert tombstone.returncode == 0 and json.loads(tombstone.stdout)["_deleted"] is True


def test_blob_get_writes_to_a_file_or_a_pipe_never_to_a_terminal(tmp_path: Path) -> None:
    assert run(tmp_path, "seed").returncode == 0
    digest = json.loads(run(tmp_path, "--json", "items").stdout.splitlines()[0])["image"]
    leader, follower = pty.openpty()
    proc = subprocess.run(
        [*ENTRY, "--data-dir", str(tmp_path), "--user", "Bob", "blob", "get", digest],
        stdout=follower, stderr=subprocess.PIPE, timeout=60, check=False,
    )  # fmt: skip
    os.close(follower)
    os.close(leader)
    assert proc.returncode == 2 and b"--output FILE" in proc.stderr
    written = run(tmp_path, "blob", "get", digest, "--output", str(tmp_path / "picture.jpg"))
    assert written.returncode == 0 and (tmp_path / "picture.jpg").read_bytes()[:2] == b"\xff\xd8"
