"""Passwords of a listener's users: scrypt hashes, the allow-list file, and checks of equal cost.

Hash format (ours, self-describing)::

    scrypt$n=16384,r=8,p=1$<salt>$<hash>

scrypt (``cryptography``'s KDF) with cost ``n``, block size ``r`` and
parallelism ``p``; salt and hash in standard base64 without padding (16 and
32 bytes as :func:`hash_password` writes them).

Allow list (protocol §1 Authentication): one JSON object per line, as the
sample's ``userallowlist.json``, or a JSON array of them. Each names a user and
gives either ``"password"`` (plain text, as in the sample) or
``"password_hash"`` (the format above, as :func:`allow_list_entry` writes it).

Equal cost: :class:`PasswordTable` runs the same steps whatever the name: one
scrypt derivation with the entry's parameters (a decoy hash for plain entries
and unknown users, with the parameters most hashed entries use) and two
constant-time comparisons of 32-byte values, a hash and a keyed MAC of the
password, of which at most one can match. A user with a plain password, a user
with a hashed one (at the common parameters) and an unknown name cost the same
(``bench/auth_cost.py``). The checks run on a small pool of worker threads
(:class:`CheckPool`): scrypt releases the GIL, so the event loop keeps going, and
the pool bounds the memory and CPU a flood of sign-ins can take.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import os
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from engine.json_codec import read_json_lines
from engine.replication import tuning
from engine.replication.errors import ConfigurationError, HTTPStatusError

__all__ = [
    "PASSWORD_CHECKS",
    "AllowedUser",
    "CheckPool",
    "PasswordHash",
    "PasswordTable",
    "allow_list_entry",
    "hash_password",
    "load_allow_list",
]

_HASH = re.compile(r"scrypt\$n=([0-9]{1,10}),r=([0-9]{1,4}),p=([0-9]{1,4})\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)")
_SALT_BYTES = 16
_HASH_BYTES = 32
T = TypeVar("T")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


@dataclass(frozen=True, slots=True)
class PasswordHash:
    """A scrypt password hash: its parameters, salt and derived key."""

    n: int
    r: int
    p: int
    salt: bytes
    digest: bytes

    def __post_init__(self) -> None:
        if self.n < 2 or self.n & (self.n - 1):
            raise ValueError("scrypt n must be a power of two, 2 or more")
        if not 1 <= self.r <= 64 or not 1 <= self.p <= 16:
            raise ValueError("scrypt r must be 1 to 64 and p 1 to 16")
        if 128 * self.r * self.n > tuning.SCRYPT_MAX_MEMORY:
            raise ValueError(f"scrypt n={self.n}, r={self.r} needs more than {tuning.SCRYPT_MAX_MEMORY >> 20} MiB")
        if len(self.salt) < 8 or not 16 <= len(self.digest) <= 64:
            raise ValueError("the salt must have 8 bytes or more, and the hash 16 to 64")

    @classmethod
    def parse(cls, text: str) -> PasswordHash:
        """Read ``scrypt$n=..,r=..,p=..$<salt>$<hash>``.

        Raises:
            ValueError: not that format, or parameters out of bounds (the
                message never repeats the text).
        """
        match = _HASH.fullmatch(text)
        if match is None:
            raise ValueError("not a password hash of the form scrypt$n=...,r=...,p=...$<salt>$<hash>")
        try:
            salt, digest = _unb64(match[4]), _unb64(match[5])
        except binascii.Error:
            raise ValueError("the salt or hash of a password hash is not base64") from None
        return cls(int(match[1]), int(match[2]), int(match[3]), salt, digest)

    def __str__(self) -> str:
        return f"scrypt$n={self.n},r={self.r},p={self.p}${_b64(self.salt)}${_b64(self.digest)}"

    def __repr__(self) -> str:
        return f"PasswordHash(n={self.n}, r={self.r}, p={self.p}, <hidden>)"

    @property
    def parameters(self) -> tuple[int, int, int]:
        """``(n, r, p)``."""
        return self.n, self.r, self.p

    def derive(self, password: str) -> bytes:
        """scrypt of ``password`` with this hash's parameters and salt (CPU and memory bound)."""
        from cryptography.hazmat.primitives.kdf.scrypt import Scrypt  # at first use: see tls.py

        kdf = Scrypt(salt=self.salt, length=len(self.digest), n=self.n, r=self.r, p=self.p)
        return kdf.derive(password.encode("utf-8", "surrogatepass"))

    @classmethod
    def decoy(cls, parameters: tuple[int, int, int]) -> PasswordHash:
        """A hash no password matches, with these parameters: the same work as a real one."""
        return cls(*parameters, os.urandom(_SALT_BYTES), os.urandom(_HASH_BYTES))


def hash_password(
    password: str, *, n: int = tuning.SCRYPT_N, r: int = tuning.SCRYPT_R, p: int = tuning.SCRYPT_P
) -> str:
    """Hash ``password`` for an allow list: ``scrypt$n=..,r=..,p=..$<salt>$<hash>`` with a fresh salt.

    Raises:
        ValueError: an empty password, or parameters out of bounds.
    """
    if not password:
        raise ValueError("an empty password cannot be hashed")
    template = PasswordHash.decoy((n, r, p))  # checks the parameters; a fresh salt
    return str(PasswordHash(n, r, p, template.salt, template.derive(password)))


def allow_list_entry(name: str, password: str) -> dict[str, str]:
    """One allow-list entry with a hashed password: ``{"name": ..., "password_hash": ...}``.

    Raises:
        ValueError: an empty name or password, or a name containing ':'.
    """
    if not name or ":" in name:
        raise ValueError("a user name must not be empty or contain ':'")
    return {"name": name, "password_hash": hash_password(password)}


@dataclass(frozen=True, slots=True)
class AllowedUser:
    """One entry of a user allow list: a plain ``password`` or a ``password_hash``."""

    name: str
    password: str | None = None
    password_hash: PasswordHash | None = None

    def __post_init__(self) -> None:
        if (self.password is None) == (self.password_hash is None):
            raise ValueError("an allowed user has either a password or a password hash")

    def __repr__(self) -> str:
        kind = "password" if self.password is not None else "password_hash"
        return f"AllowedUser(name={self.name!r}, {kind}=<hidden>)"


def load_allow_list(path: Path) -> list[AllowedUser]:
    """Read a user allow list (see the module docstring for its formats).

    Raises:
        ConfigurationError: unreadable or malformed file, an entry without a
            name, with neither or both of ``password`` and ``password_hash``,
            an empty password, a malformed hash, an unknown key, a name twice,
            or no user at all. The message names the file and line (or entry)
            and never shows a password or hash.
    """
    users: list[AllowedUser] = []
    names: set[str] = set()
    is_array: bool | None = None
    for index, (number, value) in enumerate(_read_allow_list(path), start=1):
        if is_array is None:
            is_array = path.read_text(encoding="utf-8").lstrip().startswith("[")
        where = f"{path} entry {index}" if is_array else f"{path} line {number}"
        user = _allowed_user(value, where)
        if user.name in names:
            raise ConfigurationError(f"{where}: user {user.name!r} appears twice")
        names.add(user.name)
        users.append(user)
    if not users:
        raise ConfigurationError(f"{path}: the allow list names no user, so nobody could sign in")
    return users


def _allowed_user(value: Any, where: str) -> AllowedUser:
    if not isinstance(value, dict):
        raise ConfigurationError(f"{where}: expected an object")
    unknown = sorted(str(key) for key in value if key not in ("name", "password", "password_hash"))
    if unknown:
        raise ConfigurationError(f"{where}: unknown key {unknown[0]!r} (expected name, password or password_hash)")
    name, password, hashed = value.get("name"), value.get("password"), value.get("password_hash")
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"{where}: each user needs a name")
    if (password is None) == (hashed is None):
        raise ConfigurationError(f"{where}: user {name!r} needs a password or a password_hash (one of them)")
    if password is not None:
        if not isinstance(password, str):
            raise ConfigurationError(f"{where}: user {name!r} has a password that is not a string")
        if not password:
            raise ConfigurationError(f"{where}: user {name!r} has an empty password")
        return AllowedUser(name, password=password)
    if not isinstance(hashed, str):
        raise ConfigurationError(f"{where}: user {name!r} has a password_hash that is not a string")
    try:
        return AllowedUser(name, password_hash=PasswordHash.parse(hashed))
    except ValueError as exc:
        raise ConfigurationError(f"{where}: user {name!r}: {exc}") from None


def _read_allow_list(path: Path) -> Iterator[tuple[int, Any]]:
    try:
        yield from read_json_lines(path)
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"allow list: {exc}") from None


@dataclass(frozen=True, slots=True)
class _Entry:
    hash: PasswordHash
    mac: bytes  # keyed MAC of a plain password; random (never matches) for hashed entries


class PasswordTable:
    """Checks a name and password against allow-list users, at the same cost whatever the name.

    Thread-safe (read-only once built): call it from the worker threads of a
    :class:`CheckPool`.
    """

    def __init__(self, users: Iterable[AllowedUser]) -> None:
        users = list(users)
        self._key = os.urandom(32)
        hashed = Counter(u.password_hash.parameters for u in users if u.password_hash is not None)
        common = hashed.most_common(1)[0][0] if hashed else (tuning.SCRYPT_N, tuning.SCRYPT_R, tuning.SCRYPT_P)
        self.parameters = common
        self._unknown = _Entry(PasswordHash.decoy(common), os.urandom(32))
        self._entries: dict[str, _Entry] = {}
        for user in users:
            if user.password_hash is not None:
                self._entries[user.name] = _Entry(user.password_hash, os.urandom(32))
            else:
                self._entries[user.name] = _Entry(PasswordHash.decoy(common), self._mac(user.password or ""))

    def _mac(self, password: str) -> bytes:
        return hmac.new(self._key, password.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()

    def __call__(self, name: str, password: str) -> bool:
        entry = self._entries.get(name, self._unknown)
        by_hash = hmac.compare_digest(entry.hash.derive(password), entry.hash.digest)
        by_plain = hmac.compare_digest(self._mac(password), entry.mac)
        return (by_hash | by_plain) and entry is not self._unknown

    def __repr__(self) -> str:
        return f"PasswordTable({len(self._entries)} users)"


class CheckPool:
    """Worker threads for password checks: ``workers`` at once, ``waiting`` more queued.

    Beyond that a check is refused at once with HTTP 503 and ``Retry-After``
    (Couchbase Lite retries a 503 later). A check whose handshake is abandoned
    while it waits is dropped from the queue.
    """

    def __init__(
        self, workers: int = tuning.PASSWORD_CHECK_WORKERS, waiting: int = tuning.PASSWORD_CHECKS_WAITING
    ) -> None:
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="password-check")
        self._limit = workers + waiting
        self._lock = threading.Lock()
        self._pending = 0

    @property
    def pending(self) -> int:
        """Checks running or queued."""
        return self._pending

    async def run(self, check: Callable[..., T], *args: Any) -> T:
        """Run ``check(*args)`` on a worker thread and return its result.

        Raises:
            HTTPStatusError: 503 when the pool is full.
        """
        with self._lock:
            if self._pending >= self._limit:
                raise HTTPStatusError(503, "busy checking passwords; try again", headers={"Retry-After": "1"})
            self._pending += 1
        try:
            future: Future[T] = self._executor.submit(check, *args)
        except BaseException:
            self._release()
            raise
        future.add_done_callback(lambda _future: self._release())
        return await asyncio.wrap_future(future)

    def _release(self) -> None:
        with self._lock:
            self._pending -= 1


#: The pool every password authenticator uses unless given another.
PASSWORD_CHECKS = CheckPool()
