"""Who is calling, and may they (contract 3.7). Pure: no database, no framework."""

import functools
import ipaddress

from octopus_cards.settings import parse_network


def normalise(text):
    """The address in `text`, IPv4-mapped IPv6 folded to IPv4; None if it is not an address."""
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def client_address(peer, forwarded_for, trusted_proxies):
    """The caller: the TCP peer, or, only behind a trusted proxy, the right-most untrusted
    X-Forwarded-For hop. None when no address can be established (the caller is then refused
    by any allowlist)."""
    address = normalise(peer) if peer else None
    forwarded = ",".join(forwarded_for).strip()
    if address is None or not forwarded or not _in_any(address, trusted_proxies):
        return address
    hops = [hop.strip() for hop in forwarded.split(",")]
    for hop in reversed(hops):
        hop_address = normalise(hop)
        if hop_address is None:
            return None
        if not _in_any(hop_address, trusted_proxies):
            return hop_address
    return normalise(hops[0])


def is_allowed(address, cidrs):
    """No entries allow everyone; otherwise the address must fall in one of them."""
    if not cidrs:
        return True
    return address is not None and _in_any(address, [network_of(cidr) for cidr in cidrs])


@functools.lru_cache(maxsize=4096)
def network_of(cidr):
    return parse_network(cidr)


def _in_any(address, networks):
    return any(address.version == network.version and address in network for network in networks)
