"""What an advertiser refuses before anything is sent (the advert itself is tested with a browser in test_discovery)."""

from __future__ import annotations

import uuid

import pytest

from engine.replication.auth import NO_AUTHENTICATION
from engine.replication.discovery_advertiser import PeerAdvertiser, advertise_listener, open_zeroconf
from engine.replication.errors import ConfigurationError, DiscoveryError
from engine.replication.listener import ListenerConfiguration, URLEndpointListener
from tests.engine.replication.conftest import Peers

pytestmark = pytest.mark.asyncio

LOOPBACK = ["127.0.0.1"]


def new_id() -> str:
    return str(uuid.uuid4())


async def test_what_cannot_be_advertised_is_refused(peers: Peers) -> None:
    with pytest.raises(ConfigurationError, match="UUID"):
        PeerAdvertiser(peer_id="me", database_name="userdb", port=1, interfaces=LOOPBACK)
    with pytest.raises(ConfigurationError, match="port"):
        PeerAdvertiser(peer_id=new_id(), database_name="userdb", port=0, interfaces=LOOPBACK)
    with pytest.raises(ConfigurationError, match="fingerprint"):
        PeerAdvertiser(peer_id=new_id(), database_name="userdb", port=1, fingerprint="12", interfaces=LOOPBACK)
    db = peers.database("a")
    with pytest.raises(ConfigurationError, match="start the listener"):
        await advertise_listener(
            URLEndpointListener(ListenerConfiguration(db, authenticator=NO_AUTHENTICATION)), peer_id=db.peer_id
        )


async def test_interfaces_must_be_addresses_of_this_machine() -> None:
    with pytest.raises(ConfigurationError, match="not an IP address"):
        open_zeroconf(["eth0"])
    with pytest.raises(DiscoveryError, match=r"198\.51\.100\.77"):  # TEST-NET-2: no interface has it; nothing is sent
        open_zeroconf(["198.51.100.77"])
    with pytest.raises(DiscoveryError, match="2001:db8::77"):  # an IPv6 address no interface has
        open_zeroconf(["2001:db8::77"])
