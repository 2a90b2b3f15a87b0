"""Replication: the protocol roles (§3-6) over the BLIP transport in :mod:`engine.replication.blip`.

The protocol cores are sans-I/O (bytes in, events and bytes out); the asyncio
modules only move bytes between them and ``websockets``.
"""
