"""The HTTP upgrade to BLIP-over-WebSocket, both sides, as LiteCore 3.0 performs it.

Server (a Couchbase Lite 3.0 URLEndpointListener, REST/Server.cc + REST/Request.cc): every
response line is ``HTTP/1.0`` (protocol §9); no or bad credentials -> ``401`` with
``WWW-Authenticate: Basic realm=...``; route ``/<db>/_blipsync``; subprotocol
``BLIP_3+CBMobile_3`` if offered, else ``BLIP_3+CBMobile_2`` (§1); ``Sec-WebSocket-Accept``.

Client (Networking/HTTP/HTTPLogic.cc with challenge auth, as the 3.0 client behaved, §9): the
first request carries no ``Authorization``; a ``401`` whose ``WWW-Authenticate`` parses as
``Basic realm="..."`` is retried once with Basic credentials on a new connection. The ``101``
may say HTTP/1.0 or 1.1; ``Connection`` must be ``upgrade`` (any case), ``Upgrade`` exactly
``websocket``, the subprotocol one that was offered and ``Sec-WebSocket-Accept`` right.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from tests.litecore_peer.tls import ClientTLS

__all__ = [
    "CLIENT_SUBPROTOCOLS",
    "HandshakeError",
    "Upgraded",
    "accept_key",
    "client_handshake",
    "server_handshake",
]

CLIENT_SUBPROTOCOLS = ("BLIP_3+CBMobile_3", "BLIP_3+CBMobile_2")
_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: HTTPLogic::handleAuthChallenge's pattern, e.g. ``Basic realm="Foobar"``.
_CHALLENGE = re.compile(r'(\w+)\s+(\w+)=((\w+)|"([^"]+))')
_MAX_HEAD = 64 * 1024
_REASONS = {101: "Switching Protocols", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found"}


class HandshakeError(Exception):
    """The upgrade failed; ``status`` is the HTTP status when there was one."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def accept_key(key: str) -> str:
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455, protocol §1)."""
    return base64.b64encode(hashlib.sha1((key + _GUID).encode()).digest()).decode()


async def _read_head(reader: asyncio.StreamReader) -> tuple[str, dict[str, str]]:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError) as exc:
        raise HandshakeError(f"no complete HTTP head: {exc}") from None
    if len(head) > _MAX_HEAD:
        raise HandshakeError("HTTP head too large")
    lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise HandshakeError(f"malformed header line {line!r}")
        headers[name.strip().lower()] = value.strip()
    return lines[0], headers


# -- server side (LiteCore 3.0 listener) ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Upgraded:
    """A finished upgrade: the negotiated subprotocol and the user that authenticated."""

    subprotocol: str
    username: str | None
    status_line: str = ""
    #: Client side: the server asked for credentials with a 401 challenge first.
    challenged: bool = False


def _respond(writer: asyncio.StreamWriter, status: int, headers: Mapping[str, str] = {}) -> None:
    # protocol §9: LiteCore 3.0's REST/Request.cc answers HTTP/1.0.
    lines = [f"HTTP/1.0 {status} {_REASONS.get(status, 'Error')}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if status != 101:
        lines.append("Content-Length: 0")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))


def _check_basic(header: str | None, users: Mapping[str, str]) -> str | None:
    if not header or not header.startswith("Basic "):
        return None
    try:
        user, _, password = base64.b64decode(header[6:].strip(), validate=True).decode().partition(":")
    except ValueError:
        return None
    return user if users.get(user) == password else None


async def server_handshake(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    database: str,
    users: Mapping[str, str] | None,
    realm: str = "Couchbase Lite",
) -> tuple[int, Upgraded | None]:
    """Answer one upgrade request; return (status sent, Upgraded if it was a 101)."""
    request_line, headers = await _read_head(reader)
    parts = request_line.split(" ")
    if len(parts) != 3 or parts[0] != "GET" or not parts[2].startswith("HTTP/1."):
        _respond(writer, 400)
        return 400, None
    # LiteCore's REST server runs the authenticator before routing (protocol §1).
    username = None
    if users is not None:
        username = _check_basic(headers.get("authorization"), users)
        if username is None:
            _respond(writer, 401, {"WWW-Authenticate": f'Basic realm="{realm}"'})
            return 401, None
    path = parts[1].split("?", 1)[0]
    if path.rstrip("/") != f"/{database}/_blipsync":
        _respond(writer, 404)
        return 404, None
    key = headers.get("sec-websocket-key", "")
    if (
        headers.get("upgrade", "").lower() != "websocket"
        or "upgrade" not in headers.get("connection", "").lower()
        or headers.get("sec-websocket-version") != "13"
        or not key
    ):
        _respond(writer, 400)
        return 400, None
    offered = [p.strip() for p in headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
    chosen = next((p for p in CLIENT_SUBPROTOCOLS if p in offered), None)
    if chosen is None:
        _respond(writer, 400)
        return 400, None
    _respond(
        writer,
        101,
        {
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Accept": accept_key(key),
            "Sec-WebSocket-Protocol": chosen,
        },
    )
    await writer.drain()
    return 101, Upgraded(chosen, username)


# -- client side (LiteCore 3.0 replicator) -------------------------------------------------------


async def _attempt(
    host: str,
    port: int,
    path: str,
    authorization: str | None,
    protocols: tuple[str, ...],
    tls: ClientTLS | None,
    violations: list[str],
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str, dict[str, str], str]:
    if tls is None:
        reader, writer = await asyncio.open_connection(host, port)
    else:
        reader, writer = await asyncio.open_connection(host, port, ssl=tls.context(), server_hostname=host)
        ssl_object = writer.get_extra_info("ssl_object")
        refused = tls.check(ssl_object.getpeercert(binary_form=True) if ssl_object else None, host)
        if refused is not None:  # LiteCore closes before any HTTP byte
            writer.close()
            violations.append(refused)
            raise HandshakeError(refused)
    key = base64.b64encode(secrets.token_bytes(16)).decode()
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "User-Agent: CouchbaseLite/3.0 (litecore-peer double)"]
    if authorization:
        lines.append(f"Authorization: {authorization}")
    lines += [
        "Connection: Upgrade",
        "Upgrade: websocket",
        "Sec-WebSocket-Version: 13",
        f"Sec-WebSocket-Key: {key}",
        f"Sec-WebSocket-Protocol: {','.join(protocols)}",
    ]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    await writer.drain()
    try:
        status_line, headers = await _read_head(reader)
    except HandshakeError:
        writer.close()
        raise
    return reader, writer, status_line, headers, key


async def client_handshake(
    url: str,
    username: str | None,
    password: str | None,
    *,
    violations: list[str],
    protocols: tuple[str, ...] = CLIENT_SUBPROTOCOLS,
    tls: ClientTLS | None = None,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, Upgraded]:
    """Connect and upgrade as a LiteCore 3.0 replicator with challenge auth does (``tls`` for ``wss://``)."""
    parts = urlsplit(url)
    if parts.scheme != ("wss" if tls is not None else "ws") or not parts.hostname:
        raise HandshakeError(f"unsupported URL {url!r}")
    path = parts.path.rstrip("/")
    if not path.endswith("/_blipsync"):
        path += "/_blipsync"
    authorization = None
    for _attempt_number in range(2):
        reader, writer, status_line, headers, key = await _attempt(
            parts.hostname, parts.port or 80, path, authorization, protocols, tls, violations
        )
        fields = status_line.split(" ", 2)
        if len(fields) < 2 or not fields[0].startswith("HTTP/") or not fields[1].isdigit():
            writer.close()
            raise HandshakeError(f"received invalid HTTP: {status_line!r}")
        status = int(fields[1])
        if status == 401 and authorization is None and username is not None:
            writer.close()
            challenge = headers.get("www-authenticate", "")
            if not _CHALLENGE.search(challenge):
                violations.append(
                    f"401 without a usable WWW-Authenticate challenge ({challenge!r}): a LiteCore 3.0 client "
                    "sends credentials only after a 'Basic realm=...' challenge (protocol §9)"
                )
                raise HandshakeError("401 without challenge", 401)
            authorization = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
            continue
        if status != 101:
            writer.close()
            raise HandshakeError(f"HTTP {status_line}", status)
        problem = _check_upgrade(headers, key, protocols)
        if problem:
            writer.close()
            violations.append(f"bad 101 response: {problem}")
            raise HandshakeError(problem, 101)
        chosen = headers["sec-websocket-protocol"]
        return reader, writer, Upgraded(chosen, username, status_line, challenged=authorization is not None)
    raise HandshakeError("401 after sending credentials", 401)


def _check_upgrade(headers: Mapping[str, str], key: str, protocols: tuple[str, ...]) -> str | None:
    # HTTPLogic::handleUpgrade
    if headers.get("connection", "").lower() != "upgrade" or headers.get("upgrade") != "websocket":
        return f"Connection/Upgrade headers {headers.get('connection')!r}/{headers.get('upgrade')!r}"
    chosen = headers.get("sec-websocket-protocol")
    if not chosen:
        return "no Sec-WebSocket-Protocol (LiteCore: Incompatible replication protocol)"
    if chosen not in protocols:
        return f"server picked subprotocol {chosen!r}, not one offered (LiteCore: 403)"
    if headers.get("sec-websocket-accept") != accept_key(key):
        return "wrong Sec-WebSocket-Accept (LiteCore: Server returned invalid nonce)"
    return None
