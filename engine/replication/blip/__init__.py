"""The BLIP transport (protocol §1-2): what the replication protocol runs on.

* :mod:`~engine.replication.blip.codec`: wire primitives (varints, flags, properties), pure;
* :mod:`~engine.replication.blip.connection`: one BLIP connection, sans-I/O (frames in, events and frames out);
* :mod:`~engine.replication.blip.socket`: the asyncio adapter over one ``websockets`` connection;
* :mod:`~engine.replication.blip.websocket`: opening connections, client and server side (§1).

Nothing here knows about documents or replication; the protocol roles beside
this package (puller, pusher, passive session...) only see messages.
"""
