"""HTTP Basic authentication on the opening handshake (protocol §1 Authentication).

Client side, :class:`BasicAuthenticator` adds ``Authorization: Basic ...`` to
the upgrade request. Listener side, :class:`PasswordAuthenticator` checks it
and refuses with 401 and ``WWW-Authenticate: Basic`` (Couchbase Lite clients
send their password only after that challenge, protocol §9). Passwords are
compared in constant time and never logged.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.json_codec import read_json_lines
from engine.replication.blip.websocket import HandshakeRequest
from engine.replication.errors import ConfigurationError, HTTPStatusError

__all__ = ["REALM", "AllowedUser", "BasicAuthenticator", "PasswordAuthenticator", "load_allow_list", "parse_basic"]

REALM = "Inventory Sync"


class BasicAuthenticator:
    """A user name and password for the replicator's handshake."""

    def __init__(self, username: str, password: str) -> None:
        if ":" in username:
            raise ValueError("a user name for Basic authentication cannot contain ':'")
        self.username = username
        self._password = password

    def headers(self) -> dict[str, str]:
        """The header to send."""
        token = base64.b64encode(f"{self.username}:{self._password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    def __repr__(self) -> str:
        return f"BasicAuthenticator(username={self.username!r}, password=<hidden>)"


def parse_basic(header: str | None) -> tuple[str, str] | None:
    """Return ``(user, password)`` from an ``Authorization: Basic`` header, or None."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(token.strip(), validate=True).decode().partition(":")
    except (binascii.Error, ValueError):
        return None
    return (user, password) if sep else None


class PasswordAuthenticator:
    """Accepts handshakes whose Basic credentials pass ``check``; the principal is the user name."""

    def __init__(self, check: Callable[[str, str], bool]) -> None:
        self._check = check

    @classmethod
    def from_users(cls, users: Mapping[str, str] | Iterable[tuple[str, str]]) -> PasswordAuthenticator:
        """Build one from user names and passwords (an allow list)."""
        table = dict(users.items() if isinstance(users, Mapping) else users)

        def check(user: str, password: str) -> bool:
            expected = table.get(user)
            # compare even for unknown users, so timing tells nothing
            return hmac.compare_digest((expected or "\0").encode(), password.encode()) and expected is not None

        return cls(check)

    def __call__(self, request: HandshakeRequest) -> str:
        credentials = parse_basic(request.headers.get("Authorization"))
        if credentials is None or not self._check(*credentials):
            raise HTTPStatusError(
                401, "unauthorized", headers={"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"'}
            )
        return credentials[0]


@dataclass(frozen=True, slots=True)
class AllowedUser:
    """One entry of a user allow list."""

    name: str
    password: str

    def __repr__(self) -> str:
        return f"AllowedUser(name={self.name!r}, password=<hidden>)"


def load_allow_list(path: Path) -> list[AllowedUser]:
    """Read a user allow list (JSON lines or a JSON array of ``{"name", "password"}``), the sample's format.

    Raises:
        ConfigurationError: unreadable or malformed file, a user without a name
            or with an empty password, a name twice, or no user at all.
    """
    users: list[AllowedUser] = []
    names: set[str] = set()
    for number, value in _read_allow_list(path):
        if not isinstance(value, dict):
            raise ConfigurationError(f"{path} line {number}: expected an object")
        name, password = value.get("name"), value.get("password")
        if not isinstance(name, str) or not name or not isinstance(password, str):
            raise ConfigurationError(f"{path} line {number}: each user needs a name and a password")
        if not password:
            raise ConfigurationError(f"{path} line {number}: user {name!r} has an empty password")
        if name in names:
            raise ConfigurationError(f"{path}: user {name!r} appears twice")
        names.add(name)
        users.append(AllowedUser(name, password))
    if not users:
        raise ConfigurationError(f"{path}: the allow list names no user, so nobody could sign in")
    return users


def _read_allow_list(path: Path) -> Iterator[tuple[int, Any]]:
    try:
        yield from read_json_lines(path)
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"allow list: {exc}") from None
