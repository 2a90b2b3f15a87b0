"""Every batch size, timeout and limit of the replication layer, in one place."""

from __future__ import annotations

# -- BLIP (protocol §2) ---------------------------------------------------------

#: Largest slice of a message per frame. LiteCore uses 16 KiB and stalls on
#: frames above ~64 KiB (protocol §2.5, §9).
MAX_FRAME_SIZE = 16 * 1024
#: Frame size for a normal message when an urgent one waits behind it (§2.5).
URGENT_PREEMPT_FRAME_SIZE = 4 * 1024
#: Send an ACK after this many unacknowledged received bytes of one message (§2.8).
INCOMING_ACK_THRESHOLD = 50_000
#: Pause a message while more than this many sent bytes are unacknowledged (§2.8).
MAX_UNACKED_BYTES = 128_000
#: Largest properties block accepted (LiteCore's kMaxPropertiesSize, §2.3).
MAX_PROPERTIES_SIZE = 100 * 1024
#: Largest incoming message (decoded). Pictures of several MB must fit.
MAX_MESSAGE_SIZE = 64 * 1024 * 1024
#: Most partially received incoming messages at once.
MAX_PENDING_INCOMING = 1024
#: Bytes one connection may buffer for incoming messages whose last frame has
#: not arrived, over all of them; beyond, it closes with 1009. Peers interleave
#: messages (§2.5), so several pictures of a few MB, a puller's blob fetches
#: (MAX_FETCHED_BYTES, 32 MiB) and revisions can be half-received at once; equal
#: to MAX_MESSAGE_SIZE so that one message of the largest size still arrives.
#: Without it, MAX_PENDING_INCOMING messages of MAX_MESSAGE_SIZE (64 GiB) fit.
MAX_UNFINISHED_BYTES = MAX_MESSAGE_SIZE
#: The same over every connection a server process accepts, so that many
#: clients cannot add up to more: a dozen devices pushing pictures at once need
#: far less, and two messages of the largest size still fit side by side.
MAX_SERVER_UNFINISHED_BYTES = 2 * MAX_MESSAGE_SIZE
#: Deflate settings of LiteCore (§2.7): level 6, window 15, memLevel 9.
DEFLATE_LEVEL = 6
DEFLATE_MEM_LEVEL = 9

# -- WebSocket (protocol §1) -----------------------------------------------------

#: Subprotocols we speak, in order of preference (§1, vector V19).
SUBPROTOCOLS = ("BLIP_3+CBMobile_3", "BLIP_3+CBMobile_2")
#: A WebSocket message carries one BLIP frame; LiteCore refuses > 1 MiB.
MAX_WEBSOCKET_MESSAGE = 1 << 20
#: Seconds allowed for the opening handshake (TCP, TLS and HTTP).
OPEN_TIMEOUT = 15.0
#: Seconds between keepalive pings, and to wait for their pong.
PING_INTERVAL = 20.0
PING_TIMEOUT = 20.0
#: Seconds to wait for the closing handshake.
CLOSE_TIMEOUT = 5.0
#: Frames handed to the socket per write call.
WRITE_BATCH_FRAMES = 256
#: Stop writing and wait for TCP to drain above this many buffered bytes.
WRITE_BUFFER_HIGH = 256 * 1024

# -- authentication (protocol §1 Authentication) ----------------------------------------

#: scrypt cost of new password hashes (N, r, p): 16 MiB and about 0.1 s per check on
#: this project's test VM; the scrypt paper's setting for interactive sign-ins, and
#: Django's default. Raising N by one power of two doubles both.
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
#: Most memory (128 * r * N bytes) a hash in an allow list may ask for per check.
SCRYPT_MAX_MEMORY = 128 * 1024 * 1024
#: Password checks running at once (each holds its scrypt memory on a worker
#: thread), and checks waiting for one of them; beyond, handshakes get 503.
PASSWORD_CHECK_WORKERS = 2
PASSWORD_CHECKS_WAITING = 32
#: Failed sign-ins an address may make before its next attempts are slowed down:
#: the first by SIGN_IN_SLOWDOWN seconds, doubling up to SIGN_IN_MAX_SLOWDOWN (well
#: inside a client's 15 s handshake timeout).
SIGN_IN_FREE_FAILURES = 3
SIGN_IN_SLOWDOWN = 0.5
SIGN_IN_MAX_SLOWDOWN = 4.0
#: Failed sign-ins (attempts in progress count) after which an address is refused
#: with 429 for SIGN_IN_LOCKOUT seconds, doubling per lockout up to SIGN_IN_MAX_LOCKOUT.
SIGN_IN_LOCK_AFTER = 10
SIGN_IN_LOCKOUT = 60.0
SIGN_IN_MAX_LOCKOUT = 900.0
#: An IPv6 /64 as a whole gets this many times an address's allowance: one host
#: cycling through its network's addresses is held back without one noisy host
#: locking out its neighbours (on a LAN, the /64 is the whole LAN).
SIGN_IN_NETWORK_FACTOR = 10
#: An address's failures are forgotten after this long without a failure.
SIGN_IN_FORGET_AFTER = 3600.0
#: Addresses and networks tracked at most (a few hundred bytes each); the least
#: recently seen is dropped first.
SIGN_IN_TRACKED = 10_000
#: Longest wait a peer's ``Retry-After`` may impose on the replicator.
MAX_RETRY_AFTER = 3600.0

# -- delta sync (protocol §5) ------------------------------------------------------------

#: Steps one delta may spend searching for string edits (about 10 ms of CPU on the
#: event loop); beyond, a changed string is sent as one replacement between its common
#: prefix and suffix, found in linear time. An unbounded diff took seconds on 20 KB.
MAX_DELTA_SEARCH_STEPS = 20_000

# -- replication (protocol §3) --------------------------------------------------------

#: Most known ancestors listed per row of a ``changes`` reply (LiteCore sends up to 10, §3.5).
MAX_KNOWN_ANCESTORS = 10
#: Rows per ``changes`` / ``proposeChanges`` message (LiteCore and Sync Gateway use 200).
CHANGES_BATCH = 200
#: ``changes`` / ``proposeChanges`` go urgent, as LiteCore sends them (protocol §2.5,
#: §9): they overtake queued ``rev`` messages, so the peer's answer, and with it the
#: next revisions, are on their way while it still works through the earlier ones.
CHANGES_URGENT = True
#: ``changes`` / ``proposeChanges`` messages awaiting replies at once (LiteCore: 5).
MAX_CHANGES_IN_FLIGHT = 5
#: ``rev`` messages awaiting replies at once, and their bytes (LiteCore: 10 and 2 MB;
#: more here, since replies come after batched commits).
MAX_REVS_IN_FLIGHT = 500
MAX_REV_BYTES_IN_FLIGHT = 8 * 1024 * 1024
#: A sender lets the socket write after preparing this many revisions in a row.
REV_SEND_SLICE = 50
#: Revisions a puller requests but has not yet stored before it delays its
#: ``changes`` replies, which holds the sender back (LiteCore: 200).
MAX_PENDING_REVS = 2000
#: Bytes of fetched blobs held in memory until their revisions are stored;
#: further revisions wait to fetch theirs (one revision needing more still goes, alone).
MAX_FETCHED_BYTES = 32 * 1024 * 1024
#: Revisions inserted per database transaction on the receiving side.
INSERT_BATCH = 500
#: Peer revisions learned from pushes (or offered while we have them) are written to
#: the database in batches of this many, and always before a checkpoint is saved.
REMOTE_REVISIONS_BATCH = 1000
#: History entries sent when no common ancestor is known and the peer did not say how many
#: it keeps; a receiver tells senders its own tree depth (20 by default), as LiteCore does.
MAX_HISTORY = 20
#: Bodies smaller than this are always sent whole. LiteCore's kMinBodySizeForDelta is 200
#: bytes, for mobile links; between peers on a LAN a delta of a body under 1 KiB saves less
#: than a packet, yet costs a read of its base on both sides and a reply (a delta ``rev``
#: cannot go NoReply, §3.7): S3's edit-to-peer median fell 0.1-0.2 ms without them.
MIN_DELTA_BODY = 1024
#: Compress ``rev`` and ``changes`` bodies from this size on.
COMPRESS_MIN_BODY = 512
#: Seconds between checks for changes other processes made to the database files.
EXTERNAL_CHANGES_INTERVAL = 0.5
#: Seconds between checkpoint saves while progress is made (protocol §6).
CHECKPOINT_INTERVAL = 5.0
#: Retry waits: the first, and the default cap (Couchbase Lite: 300 s).
RETRY_INITIAL_WAIT = 1.0
RETRY_MAX_WAIT = 300.0
#: Default number of connection attempts of a one-shot (continuous: unlimited).
ONE_SHOT_MAX_ATTEMPTS = 10

# -- the listener under abuse (issue 12) -------------------------------------------------

#: Seconds a client has for the TLS handshake, and then for its HTTP upgrade request and
#: authentication; a slow or partial one (slowloris, a ClientHello never finished) is cut
#: at each deadline. Handshakes on a LAN take milliseconds.
TLS_HANDSHAKE_TIMEOUT = 10.0
HTTP_HANDSHAKE_TIMEOUT = 10.0
#: Connections a listener holds at once, from accept() to close, handshakes included. One
#: over takes the place of the oldest still in its handshake, else it is reset before any
#: TLS or HTTP work. A shop has a dozen devices.
MAX_CONNECTIONS = 256
#: The same from one address (an IPv4-mapped IPv6 address counts as its IPv4 address).
#: Whole IPv6 addresses, not /64 prefixes: all hosts of a LAN share one /64.
MAX_CONNECTIONS_PER_ADDRESS = 32
#: Descriptors kept for the rest of the process (database files, logs, outgoing
#: connections, the window) below the open-file soft limit: the connection cap is
#: lowered to fit, so that a flood of connections cannot take the last descriptors.
RESERVED_DESCRIPTORS = 128
#: After accept() fails (out of descriptors or memory) the listener stops accepting for
#: this long, doubled after each failure up to the maximum; asyncio retried in a tight loop.
ACCEPT_RETRY_INITIAL_WAIT = 0.05
ACCEPT_RETRY_MAX_WAIT = 0.25
#: Connections accepted per event-loop turn (asyncio accepts up to 100).
ACCEPT_BATCH = 100

# -- discovery (zeroconf, engine/replication/discovery.py) ------------------------------------

#: Milliseconds a browser waits for a peer's SRV, TXT and address records once it
#: has seen the peer's name (python-zeroconf's default; answers on a LAN take a few ms).
RESOLVE_TIMEOUT_MS = 3000
#: Seconds a replicator that follows a peer waits for it to be advertised at each
#: connection attempt before it tries the peer's last known URL (or retries later).
PEER_WAIT = 5.0
#: Time to live, in seconds, of every record of an advert (python-zeroconf's default is
#: 120 s for SRV and addresses, 75 min for PTR and TXT): a peer that vanished without
#: a goodbye (a crash, a lid closed) leaves browsers' lists within about 2 minutes
#: instead of 75. Browsers refresh records at 80% of their lifetime; a few packets.
ADVERT_TTL = 120
#: Seconds the goodbye packets of an advertiser that stops may take (three, 125 ms apart).
UNREGISTER_TIMEOUT = 2.0
