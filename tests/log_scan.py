"""A pytest plugin: everything logged during the suite, at debug level, holds no secret and no document body.

The suite runs with the root logger at DEBUG, so every ``log.debug`` of the
engine (and of the libraries it uses) is formatted and scanned as it is
emitted. What counts as a leak:

- a PEM private key, or an ``Authorization`` header value (a Basic token);
- a password given to the engine during the suite (a replicator's
  authenticator, an allow list, a PKCS#12 password), found as a whole word;
  passwords that are ordinary words of our own messages ("password") cannot
  be told apart by value and are covered by the patterns above;
- a document body: JSON of the inventory list (``"items": [``, ``"key": "``)
  or of a blob reference (``"@type": "blob"``).

Leaks are reported at the end of the session, which then fails.
:func:`find_leaks` is the scanner itself, tested in ``tests/test_log_scan.py``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

import pytest

from engine.replication import auth, passwords

__all__ = ["LeakScanner", "find_leaks", "register_secret"]

_PATTERNS = {
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "Authorization header value": re.compile(r"\b(?:Basic|Bearer)\s+[A-Za-z0-9+/=._-]{8,}"),
    "document body": re.compile(r'"(?:items|_attachments)"\s*:\s*[\[{]|"key"\s*:\s*"|"@type"\s*:\s*"blob"'),
}
#: Passwords too common in normal messages to be searched for by value.
_ORDINARY_WORDS = frozenset({"password", "secret", "couchbase", "pw", "pass", "wrong"})
_MIN_SECRET_LENGTH = 4

_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Search the log for ``value`` from now on (short and ordinary words are left to the patterns)."""
    if value and len(value) >= _MIN_SECRET_LENGTH and value.lower() not in _ORDINARY_WORDS:
        _secrets.add(value)


def find_leaks(text: str, secrets: Iterable[str] = ()) -> list[str]:
    """What ``text`` leaks: the names of the patterns it matches, and ``"password"`` for a secret in it."""
    found = [name for name, pattern in _PATTERNS.items() if pattern.search(text)]
    for secret in secrets:
        if re.search(rf"(?<!\w){re.escape(secret)}(?!\w)", text):
            found.append("password")
            break
    return found


class LeakScanner(logging.Handler):
    """A handler that formats every record it sees and keeps those that leak."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.leaks: list[tuple[str, str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception:  # a record that cannot be formatted shows nothing
            return
        for kind in find_leaks(text, _secrets):
            if len(self.leaks) < 50:
                self.leaks.append((kind, record.name, text[:300]))


def _record_passwords() -> None:
    """Register the passwords the engine is given while the suite runs."""
    basic_init = auth.BasicAuthenticator.__init__

    def init(self: auth.BasicAuthenticator, username: str, password: str) -> None:
        register_secret(password)
        basic_init(self, username, password)

    auth.BasicAuthenticator.__init__ = init  # type: ignore[method-assign]

    post_init = passwords.AllowedUser.__post_init__

    def allowed_user(self: passwords.AllowedUser) -> None:  # every allow-list entry, however it is read
        register_secret(self.password)
        post_init(self)

    passwords.AllowedUser.__post_init__ = allowed_user  # type: ignore[method-assign]


_scanner = LeakScanner()


def pytest_configure(config: pytest.Config) -> None:
    root = logging.getLogger()
    root.addHandler(_scanner)
    root.setLevel(logging.DEBUG)
    _record_passwords()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _scanner.leaks and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _scanner.leaks:
        return
    terminalreporter.section("secrets or document bodies in the log", red=True)
    for kind, logger, text in _scanner.leaks:
        terminalreporter.line(f"{kind}: {logger}: {text}")
