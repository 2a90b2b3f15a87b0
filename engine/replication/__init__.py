"""Replication: the BLIP protocol, the replication protocol and their asyncio adapters.

The protocol cores are sans-I/O (bytes in, events and bytes out); the asyncio
modules only move bytes between them and ``websockets``.
"""
