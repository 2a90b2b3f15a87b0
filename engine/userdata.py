"""Where each user's database lives: one directory per user under a data directory.

The data directory defaults to the platform's user data directory
(``~/.local/share/inventory-sync`` on Linux). A user name becomes a folder
name by percent-encoding every character other than lower-case ASCII
letters, digits, ``-`` and ``_``, so names such as ``../x`` or ``A/B`` stay
inside the data directory and names differing only in case never share a
folder, even on case-insensitive file systems.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path
from urllib.parse import unquote

import platformdirs

from engine.database import Database
from engine.errors import InvalidUserNameError
from engine.inventory import LIST_DOC_ID, save_new_list, validate_list_revision
from engine.revtree import DEFAULT_MAX_DEPTH
from engine.seeding import load_starter_inventory

__all__ = [
    "APP_DIR_NAME",
    "MAX_USER_NAME",
    "database_exists",
    "decode_user_name",
    "default_data_dir",
    "encode_user_name",
    "existing_users",
    "open_database",
    "open_user_database",
    "user_database_path",
]

APP_DIR_NAME = "inventory-sync"
MAX_USER_NAME = 64
_SAFE = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")


def default_data_dir() -> Path:
    """The platform's per-user data directory for this app."""
    return platformdirs.user_data_path(APP_DIR_NAME, appauthor=False)


def encode_user_name(name: str) -> str:
    """Return the folder name for ``name``.

    Raises:
        InvalidUserNameError: empty, too long, or containing control characters.
    """
    if not isinstance(name, str) or not name:
        raise InvalidUserNameError("user name must not be empty")
    name = unicodedata.normalize("NFC", name)
    if len(name) > MAX_USER_NAME:
        raise InvalidUserNameError(f"user name must be at most {MAX_USER_NAME} characters")
    if any(unicodedata.category(ch) in ("Cc", "Cs", "Cf") for ch in name):
        raise InvalidUserNameError("user name must not contain control characters")
    if name != name.strip():
        raise InvalidUserNameError("user name must not start or end with spaces")
    return "".join(ch if ch in _SAFE else "".join(f"%{b:02X}" for b in ch.encode()) for ch in name)


def user_database_path(user: str, data_dir: Path | None = None) -> Path:
    """Return the database directory of ``user`` under ``data_dir``."""
    base = data_dir if data_dir is not None else default_data_dir()
    return base / "users" / encode_user_name(user)


def decode_user_name(folder: str) -> str:
    """The user name a database folder stands for (inverse of :func:`encode_user_name`)."""
    return unquote(folder, errors="strict")


def database_exists(user: str, data_dir: Path | None = None) -> bool:
    """Whether ``user`` has a database under ``data_dir``."""
    return (user_database_path(user, data_dir) / "data.mdb").is_file()


def existing_users(data_dir: Path | None = None) -> list[str]:
    """The users with a database under ``data_dir``, sorted."""
    base = (data_dir if data_dir is not None else default_data_dir()) / "users"
    try:
        folders = [entry.name for entry in base.iterdir() if (entry / "data.mdb").is_file()]
    except OSError:
        return []
    return sorted(decode_user_name(folder) for folder in folders)


def open_database(path: Path) -> Database:
    """Open (creating if needed) the database in ``path`` as the app runs it.

    Commits are durable; the bodies of every revision within the pruning
    depth are kept, so that a conflict on the list can always be merged
    against its common ancestor; and every revision of the list is checked
    against its schema, whether saved here or received from a peer.
    """
    return Database(path, keep_bodies=DEFAULT_MAX_DEPTH, validator=validate_list_revision)


def open_user_database(user: str, data_dir: Path | None = None, *, seed: bool = True) -> Database:
    """Open (creating if needed) ``user``'s database (see :func:`open_database`).

    The starter list is seeded on first open.
    """
    path = user_database_path(user, data_dir)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    db = open_database(path)
    if seed and db.get(LIST_DOC_ID) is None:
        try:
            save_new_list(db, load_starter_inventory())
        except BaseException:
            db.close()
            raise
    return db
