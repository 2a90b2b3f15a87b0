"""A strict test double of a LiteCore (Couchbase Lite 3.0) replication peer, written from
../shared/protocol.md and LiteCore's public source, independently of ``engine.replication``.

- :class:`StrictListener` behaves like a Couchbase Lite 3.0 URLEndpointListener (passive side).
- :class:`StrictReplicator` behaves like a Couchbase Lite 3.0 Replicator (active side).
- :class:`PeerStore` is the in-memory, LiteCore-like database both work on.

Anything a real LiteCore peer would refuse or choke on is appended to ``.violations`` and the
connection is closed with WebSocket code 4002 "An exception was thrown".
"""

from tests.litecore_peer.active import StrictReplicator
from tests.litecore_peer.passive import StrictListener
from tests.litecore_peer.store import PeerStore
from tests.litecore_peer.tls import ClientTLS, limit_like_mbedtls2

__all__ = ["ClientTLS", "PeerStore", "StrictListener", "StrictReplicator", "limit_like_mbedtls2"]
