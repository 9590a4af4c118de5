"""ICE for the ingress's WebRTC peer connections: which servers, which networks.

``VOXBUS_WEBRTC_ICE_SERVERS`` lists STUN/TURN servers as a browser takes them (a JSON list
of ``{"urls", "username"?, "credential"?}``); none by default, so a peer connection
offers host candidates only (aiortc would otherwise ask a public STUN server).

``VOXBUS_WEBRTC_ICE_NETWORKS`` pins ICE to some networks (CIDR, comma-separated): the
ingress gathers host candidates only on its addresses in them, and drops the caller's
candidates outside them from the offer before ICE sees them (so no check is ever sent
elsewhere, and no ``.local`` mDNS name is resolved).  Tests pin it to ``127.0.0.0/8``.
aioice gathers on every interface but loopback and has no option to choose, so this
module replaces its address lookup (on import) with one that :func:`gathering_on` limits.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
from collections.abc import Callable, Iterator
from contextvars import ContextVar

import aioice.ice
import ifaddr
from aiortc import RTCConfiguration, RTCIceServer

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_ORIGINAL_HOST_ADDRESSES: Callable[[bool, bool], list[str]] = aioice.ice.get_host_addresses
_GATHER_NETWORKS: ContextVar[list[Network] | None] = ContextVar("webrtc_gather_networks", default=None)


def parse_networks(spec: str) -> list[Network]:
    """``VOXBUS_WEBRTC_ICE_NETWORKS`` as networks (empty: no restriction).

    Raises:
        ValueError: an entry that is not a network (``127.0.0.0/8``, ``::1/128``).
    """
    try:
        return [ipaddress.ip_network(part.strip(), strict=False) for part in spec.split(",") if part.strip()]
    except ValueError as exc:
        raise ValueError(f"VOXBUS_WEBRTC_ICE_NETWORKS: {exc}") from None


def parse_ice_servers(spec: str) -> list[RTCIceServer]:
    """``VOXBUS_WEBRTC_ICE_SERVERS`` as aiortc servers (empty: none).

    Raises:
        ValueError: not a JSON list of objects with ``urls`` (a string or a list of strings).
    """
    if not spec.strip():
        return []
    try:
        entries = json.loads(spec)
        if not isinstance(entries, list):
            raise TypeError("not a list")
        return [RTCIceServer(urls=entry["urls"], username=entry.get("username"),
                             credential=entry.get("credential")) for entry in entries]
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ValueError("VOXBUS_WEBRTC_ICE_SERVERS must be a JSON list of {urls, username?, credential?}: "
                         f"{type(exc).__name__}") from None


def configuration(ice_servers: str) -> RTCConfiguration:
    """A peer connection's configuration: the configured ICE servers, none by default.

    Raises:
        ValueError: see :func:`parse_ice_servers`.
    """
    return RTCConfiguration(iceServers=parse_ice_servers(ice_servers))


def _inside(address: str, networks: list[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:  # a hostname, e.g. an mDNS ``.local`` name
        return False
    return any(ip in network for network in networks)


def _host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    """The host address lookup of aioice, limited to :data:`_GATHER_NETWORKS` while it is set."""
    networks = _GATHER_NETWORKS.get()
    if not networks:
        return _ORIGINAL_HOST_ADDRESSES(use_ipv4, use_ipv6)
    found = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            v4 = isinstance(ip.ip, str)
            address = ip.ip if v4 else ip.ip[0]
            if (use_ipv4 if v4 else use_ipv6) and _inside(address, networks):
                found.append(address)
    return found


aioice.ice.get_host_addresses = _host_addresses  # unchanged behaviour outside gathering_on()


@contextlib.contextmanager
def gathering_on(networks: list[Network]) -> Iterator[None]:
    """Gather host candidates only on this machine's addresses inside ``networks`` (all: empty list).

    Holds for the candidate gathering started inside the block (aiortc's
    ``setLocalDescription``; its tasks inherit the context), not for other connections.
    """
    token = _GATHER_NETWORKS.set(networks)
    try:
        yield
    finally:
        _GATHER_NETWORKS.reset(token)


def filter_candidates(sdp: str, networks: list[Network]) -> str:
    """``sdp`` without the ``a=candidate`` lines (RFC 8839) whose address is outside ``networks``.

    Args:
        sdp: an offer; its lines end with CRLF (RFC 8866) or LF.
        networks: the allowed networks; empty: ``sdp`` unchanged.
    """
    if not networks:
        return sdp
    kept = []
    for line in sdp.splitlines():
        fields = line.split()
        # a=candidate:<foundation> <component> <transport> <priority> <address> <port> typ <type> ...
        if line.startswith("a=candidate:") and (len(fields) < 6 or not _inside(fields[4], networks)):
            continue
        kept.append(line)
    return "\r\n".join(kept) + "\r\n"
