"""Which commands may create a user's database, and opening it for one command.

Reading commands never create one: for a user without a database they say
so, and name the users that have one. Only the commands that write (``seed``,
``set``, ``items add``, ``doc put``) and ``serve``/``sync`` create one, and say
so the first time; a command that fails on a database it just created
removes it again, so that nothing is left behind.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
from collections.abc import Iterator
from contextlib import contextmanager

from engine.cli.output import Output
from engine.database import Database
from engine.errors import EngineError
from engine.inventory import LIST_DOC_ID, save_new_list
from engine.seeding import load_starter_inventory
from engine.userdata import database_exists, existing_users, open_user_database, user_database_path

__all__ = ["NoDatabaseError", "command_for", "creating_database", "existing_database"]


class NoDatabaseError(EngineError):
    """The user has no database, and the command does not create one."""


def command_for(args: argparse.Namespace, *words: str) -> str:
    """An ``inventory-sync`` command line for this user and data directory, to print for the user to run."""
    data_dir = ["--data-dir", str(args.data_dir)] if args.data_dir is not None else []
    return shlex.join(["inventory-sync", *data_dir, "--user", args.user, *words])


@contextmanager
def existing_database(args: argparse.Namespace) -> Iterator[Database]:
    """The user's database, for a command that must not create one.

    Raises:
        NoDatabaseError: the user has none (the message names the users who do).
    """
    if not database_exists(args.user, args.data_dir):
        users = existing_users(args.data_dir)
        known = f"existing users: {', '.join(users)}" if users else "there are no users yet"
        raise NoDatabaseError(f"no database for user {args.user!r} (seed creates one; {known})")
    db = open_user_database(args.user, args.data_dir, seed=False)
    try:
        yield db
    finally:
        db.close()


@contextmanager
def creating_database(args: argparse.Namespace, out: Output, *, seed: bool) -> Iterator[Database]:
    """The user's database, created if needed (with the starter list when ``seed``).

    A database this command created is removed again if the command fails.
    """
    created = not database_exists(args.user, args.data_dir)
    path = user_database_path(args.user, args.data_dir)
    db = open_user_database(args.user, args.data_dir, seed=False)
    try:
        if created:
            if seed and db.get(LIST_DOC_ID) is None:
                save_new_list(db, load_starter_inventory())
            what = " with the starter inventory" if seed else ""
            out.record(
                {"event": "database_created", "user": args.user, "path": str(path), "seeded": seed},
                f"created a database for user {args.user!r}{what} in {path}",
            )
        yield db
    except BaseException:
        db.close()
        if created:
            shutil.rmtree(path, ignore_errors=True)
            out.note(f"removed the database created for user {args.user!r}: the command failed")
        raise
    db.close()
