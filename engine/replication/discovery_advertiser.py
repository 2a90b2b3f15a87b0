"""Advertising a listener on the local network with zeroconf (mDNS / DNS-SD).

:class:`PeerAdvertiser` registers ``_cblistservicesync._tcp.local.`` with the
TXT record of :mod:`engine.replication.discovery_records` (``strict=False``:
the sample's service name is longer than RFC 6763 allows), renames itself when
its name is taken, re-announces on :meth:`~PeerAdvertiser.update` and says
goodbye on :meth:`~PeerAdvertiser.stop`. :func:`open_zeroconf` opens the
python-zeroconf instance an advertiser and a browser may share. Everything is
also importable from :mod:`engine.replication.discovery`.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import ipaddress
import logging
import secrets
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import ifaddr
import zeroconf
from zeroconf import InterfaceChoice, IPVersion
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

from engine.replication import tuning
from engine.replication.discovery_records import SERVICE_TYPE, Advert, default_instance_name, encode_txt
from engine.replication.errors import ConfigurationError, DiscoveryError
from engine.replication.listener import URLEndpointListener

__all__ = ["PeerAdvertiser", "advertise_listener", "open_zeroconf"]

log = logging.getLogger(__name__)

_UNSET: Any = object()


def open_zeroconf(interfaces: Sequence[str] | None = None) -> AsyncZeroconf:
    """A python-zeroconf instance on ``interfaces`` (IP addresses of this machine), or on every interface.

    Call it with an event loop running; close it with ``async_close()``.

    Raises:
        ConfigurationError: an interface that is not an IP address.
        DiscoveryError: the mDNS sockets could not be opened.
    """
    try:
        if interfaces is None:
            try:
                return AsyncZeroconf(interfaces=InterfaceChoice.All, ip_version=IPVersion.All)
            except OSError:  # no IPv6 on this machine
                return AsyncZeroconf(interfaces=InterfaceChoice.All, ip_version=IPVersion.V4Only)
        return AsyncZeroconf(interfaces=[_interface_address(text) for text in interfaces])
    except (OSError, RuntimeError, zeroconf.Error) as exc:  # RuntimeError: no interface has that IPv6 address
        raise DiscoveryError(f"cannot use mDNS on {', '.join(interfaces or ['every interface'])}: {exc}") from exc


def _interface_address(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ConfigurationError(f"not an IP address of an interface: {text!r}") from None


# -- advertising ------------------------------------------------------------------------------


class PeerAdvertiser:
    """Advertises one listener on the local network until :meth:`stop` (or the end of ``async with``).

    Args:
        peer_id: the database's stable peer ID (``Database.peer_id``).
        database_name: the database name in the listener's URL.
        port: the listener's port.
        fingerprint: the TLS certificate's SHA-256 (``TLSIdentity.fingerprint``);
            None for a plain ``ws://`` listener.
        name: the instance name people see (default ``"<user> on <machine>"``);
            when another advert has it, ``-2``, ``-3``... is appended.
        addresses: the addresses to announce (default: those of ``interfaces``,
            or every address of this machine but loopback).
        interfaces: where to advertise (see the module docstring).
        zeroconf: a python-zeroconf instance to share (not closed by :meth:`stop`).

    Raises:
        ConfigurationError: a value that cannot be advertised.
    """

    def __init__(
        self,
        *,
        peer_id: str,
        database_name: str,
        port: int,
        fingerprint: str | None = None,
        name: str | None = None,
        addresses: Sequence[str] | None = None,
        interfaces: Sequence[str] | None = None,
        zeroconf: AsyncZeroconf | None = None,
    ) -> None:
        self._advert = _checked_advert(Advert(peer_id, database_name, fingerprint))
        self._port = _checked_port(port)
        self._name = name or default_instance_name(getpass.getuser())
        self._addresses = list(addresses) if addresses else None
        self._interfaces = list(interfaces) if interfaces is not None else None
        self._zeroconf = zeroconf
        self._owns_zeroconf = zeroconf is None
        # a host name of this advert's own: the machine's (avahi's or Bonjour's) could clash, and
        # another advert's goodbye would withdraw the address records of a shared one
        self._server = f"inventory-sync-{secrets.token_hex(6)}.local."
        self._info: AsyncServiceInfo | None = None
        self._announcing: asyncio.Future[Any] | None = None

    @property
    def name(self) -> str:
        """The instance name: the one registered (after any renaming) once started."""
        return self._name

    @property
    def service_name(self) -> str:
        """The full service name, ``<name>._cblistservicesync._tcp.local.``."""
        return f"{self._name}.{SERVICE_TYPE}"

    @property
    def advert(self) -> Advert:
        """What the TXT record says."""
        return self._advert

    @property
    def port(self) -> int:
        """The advertised port."""
        return self._port

    @property
    def running(self) -> bool:
        """Whether the advert is registered."""
        return self._info is not None

    async def start(self) -> None:
        """Register the advert: probe for its name (about 1.2 s), rename if taken, announce.

        Raises:
            DiscoveryError: zeroconf could not register it.
        """
        if self._info is not None:
            return
        zc = self._zeroconf = self._zeroconf or open_zeroconf(self._interfaces)
        if self._addresses is None:
            self._addresses = _advertised_addresses(self._interfaces)
        info = self._service_info()
        try:
            # strict=False: the sample's service name has 17 characters, RFC 6763 allows 15
            announcing = await zc.async_register_service(info, allow_name_change=True, strict=False)
        except (zeroconf.Error, OSError) as exc:
            if self._owns_zeroconf:
                await self._close_zeroconf()
            raise DiscoveryError(f"cannot advertise {self._name!r}: {type(exc).__name__}: {exc}") from exc
        self._info, self._announcing = info, asyncio.ensure_future(announcing)
        self._name = info.name[: -len(SERVICE_TYPE) - 1]
        log.info("advertising %r (peer %s) on port %d", self._name, self._advert.peer_id, self._port)

    async def update(self, *, port: int | None = None, fingerprint: str | None = _UNSET) -> None:
        """Re-announce with a new port (the listener restarted) or certificate fingerprint.

        Raises:
            ConfigurationError: a value that cannot be advertised.
        """
        new_port = self._port if port is None else _checked_port(port)
        new_advert = self._advert
        if fingerprint is not _UNSET:
            new_advert = _checked_advert(replace(self._advert, fingerprint=fingerprint))
        if (new_port, new_advert) == (self._port, self._advert):
            return
        self._port, self._advert = new_port, new_advert
        if self._info is None or self._zeroconf is None:
            return
        self._cancel_announcing()
        info = self._service_info()
        self._announcing = asyncio.ensure_future(await self._zeroconf.async_update_service(info))
        self._info = info
        log.info("advertising %r on port %d (TLS %s)", self._name, new_port, "on" if new_advert.tls else "off")

    async def stop(self) -> None:
        """Withdraw the advert (goodbye packets) and close the zeroconf instance if it is ours."""
        info, self._info = self._info, None
        self._cancel_announcing()
        zc = self._zeroconf
        if info is not None and zc is not None:
            try:
                goodbyes = await zc.async_unregister_service(info)
                await asyncio.wait_for(goodbyes, tuning.UNREGISTER_TIMEOUT)
            except (zeroconf.Error, OSError, TimeoutError) as exc:
                log.debug("goodbye for %r not sent: %s", self._name, exc)
            log.info("stopped advertising %r", self._name)
        if self._owns_zeroconf:
            await self._close_zeroconf()

    async def __aenter__(self) -> PeerAdvertiser:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await asyncio.shield(self.stop())

    def _service_info(self) -> AsyncServiceInfo:
        return AsyncServiceInfo(
            SERVICE_TYPE,
            f"{self._name}.{SERVICE_TYPE}",
            port=self._port,
            properties=encode_txt(self._advert),
            server=self._server,
            parsed_addresses=self._addresses,
            host_ttl=tuning.ADVERT_TTL,
            other_ttl=tuning.ADVERT_TTL,
        )

    def _cancel_announcing(self) -> None:
        announcing, self._announcing = self._announcing, None
        if announcing is not None:
            announcing.cancel()

    async def _close_zeroconf(self) -> None:
        zc, self._zeroconf = self._zeroconf, None
        if zc is not None:
            await zc.async_close()


def _checked_advert(advert: Advert) -> Advert:
    try:
        encode_txt(advert)
    except ValueError as exc:
        raise ConfigurationError(f"cannot advertise: {exc}") from None
    return advert


def _checked_port(port: int) -> int:
    if not 0 < port < 65536:
        raise ConfigurationError(f"cannot advertise port {port}: a listener's port is from 1 to 65535")
    return port


def _advertised_addresses(interfaces: Sequence[str] | None) -> list[str]:
    """The addresses of ``interfaces``, else every address of this machine (loopback only if alone)."""
    if interfaces is not None:
        return [str(ipaddress.ip_address(text)).partition("%")[0] for text in interfaces]
    found: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            found.append(ipaddress.ip_address(ip.ip if isinstance(ip.ip, str) else ip.ip[0]))
    outside = [address for address in found if not address.is_loopback]
    return [str(address) for address in (outside or found)]


async def advertise_listener(
    listener: URLEndpointListener,
    *,
    peer_id: str,
    fingerprint: str | None = None,
    name: str | None = None,
    interfaces: Sequence[str] | None = None,
    zeroconf: AsyncZeroconf | None = None,
) -> PeerAdvertiser:
    """Advertise a started listener; return the running advertiser (stop it before the listener).

    A listener bound to one address advertises that address only. When the
    listener restarts on another port, call ``update(port=listener.port)``.

    Raises:
        ConfigurationError: the listener is not started, or a value cannot be advertised.
        DiscoveryError: zeroconf could not register the advert.
    """
    port = listener.port
    if port is None:
        raise ConfigurationError("start the listener before advertising it")
    host = listener.config.host
    addresses = None
    with contextlib.suppress(ValueError):
        if host and not ipaddress.ip_address(host).is_unspecified:
            addresses = [host]
    advertiser = PeerAdvertiser(
        peer_id=peer_id,
        database_name=listener.config.database_name,
        port=port,
        fingerprint=fingerprint,
        name=name,
        addresses=addresses,
        interfaces=interfaces,
        zeroconf=zeroconf,
    )
    await advertiser.start()
    return advertiser
