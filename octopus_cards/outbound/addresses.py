"""Where a webhook may go (contract 9.5): the URL an operator registers, and the addresses its host
may resolve to. Standard library only, so the registering command and the sender apply one rule."""

import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2048
DEFAULT_PORTS = {"https": 443, "http": 80}

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_DNS_LABEL = re.compile(r"[a-z0-9_-]{1,63}")
# A last label like these makes resolvers (inet_aton) and browsers (WHATWG) read the whole host as an
# IPv4 address, in decimal, octal or hex: 2130706433, 0177.0.0.1 and 0x7f.1 are all 127.0.0.1.
_NUMBER_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")

# Python's ipaddress lags IANA's special-purpose registries (and changes between patch releases):
# Python 3.11 calls these global although nothing public is reachable there.
_NEVER_ROUTABLE = tuple(
    ipaddress.ip_network(cidr)
    for cidr in (
        "192.0.0.0/24",  # IETF protocol assignments
        "::/96",  # IPv4-compatible IPv6 (deprecated): a tunnel to whatever IPv4 host it names
        "64:ff9b:1::/48",  # local-use NAT64: translated inside the operator's own network
        "2001::/32",  # Teredo: the real peer is an IPv4 host behind a NAT, hidden in the address
        "3fff::/20",  # documentation
    )
)
_WELL_KNOWN_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class UnsafeUrl(ValueError):
    """A webhook URL that may not be registered or delivered to; the message is one short line."""


class AddressNotAllowed(ValueError):
    """A webhook host that resolves to at least one address outside the public Internet."""


@dataclass(frozen=True)
class WebhookUrl:
    """A checked webhook URL, in the parts a request is built from."""

    scheme: str  # "https", or "http" where allowed
    host: str  # a lowercase DNS name, or an IP address without brackets
    port: int
    target: str  # path and query, as the request line carries them

    @property
    def is_address(self) -> bool:
        """Whether the host is an IP address rather than a name to look up."""
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True

    @property
    def host_header(self) -> str:
        """The Host header (and origin) of a request to this URL."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"


def parse_webhook_url(url: str, *, allow_http: bool) -> WebhookUrl:
    """The parts of a URL a webhook may be registered at: absolute, https:// (or http:// when
    allowed), at most 2,048 characters, no user-info, a host. UnsafeUrl, saying why, otherwise."""
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeUrl(f"URL is longer than {MAX_URL_LENGTH:,} characters")
    # urlsplit silently drops tabs and newlines, so "exa\tmple.com" would pass as another host.
    if not url.isascii() or any(char <= " " or char == "\x7f" for char in url):
        raise UnsafeUrl("URL must be ASCII without spaces or control characters (percent-encode them)")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UnsafeUrl("URL is not valid (check the brackets and the port)") from None
    if not parts.scheme:
        raise UnsafeUrl("URL must be absolute, like https://hooks.example.com/path")
    if parts.scheme not in (("https", "http") if allow_http else ("https",)):
        raise UnsafeUrl("URL must start with https://" + (" or http://" if allow_http else ""))
    if "@" in parts.netloc:
        raise UnsafeUrl("URL must not contain user-info (user:password@)")
    if port == 0:
        raise UnsafeUrl("URL port must be between 1 and 65535")
    host = _checked_host(parts.hostname, bracketed="[" in parts.netloc)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return WebhookUrl(parts.scheme, host, port or DEFAULT_PORTS[parts.scheme], target)


def _checked_host(host: str | None, *, bracketed: bool) -> str:
    """The URL's host in canonical form: a DNS name, a dotted-quad IPv4 or a bracketed IPv6 address."""
    if not host:
        raise UnsafeUrl("URL has no host")
    if bracketed:
        try:
            address = ipaddress.IPv6Address(host)
        except ValueError:
            raise UnsafeUrl("URL host is not a valid IPv6 address") from None
        if address.scope_id:
            raise UnsafeUrl("URL host must not name a network interface (%zone)")
        return str(address)
    labels = host.split(".")
    if _NUMBER_LABEL.fullmatch(labels[-1]):
        try:
            return str(ipaddress.IPv4Address(host))
        except ValueError:
            raise UnsafeUrl(
                "URL host must be a name or a dotted-quad IPv4 address (no decimal, octal or hex forms)"
            ) from None
    if len(host) > 253 or not all(_DNS_LABEL.fullmatch(label) for label in labels):
        raise UnsafeUrl("URL host is not a valid DNS name")
    return host


def resolve_allowed(host: str, port: int, allowed_networks: tuple[IPNetwork, ...]) -> tuple[IPAddress, ...]:
    """The addresses host resolves to, looked up once. AddressNotAllowed if any one of them is not
    allowed: a name must not mix a public address with an internal one and let the connection pick."""
    addresses = tuple(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in _getaddrinfo(host, port)))
    refused = [address for address in addresses if not is_allowed_address(address, allowed_networks)]
    if refused:
        raise AddressNotAllowed(f"{host} resolves to {refused[0]}, which is not globally routable")
    return addresses


def _getaddrinfo(host: str, port: int):
    """TCP addresses of host (IP literals come back as themselves); socket.gaierror if none."""
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)


def is_allowed_address(address: IPAddress, allowed_networks: tuple[IPNetwork, ...]) -> bool:
    """Whether a webhook may be sent to address: it is globally routable, or inside one of the
    operator's OCTOPUS_WEBHOOK_ALLOWED_NETWORKS (an IPv4-mapped address counts as its IPv4 address)."""
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in allowed_networks) or is_globally_routable(address)


def is_globally_routable(address: IPAddress) -> bool:
    """Whether address is on the public Internet: not loopback, private, link-local, CGNAT, multicast,
    reserved, unspecified, benchmarking, documentation, site- or unique-local. An IPv6 address that
    carries an IPv4 one (IPv4-mapped, 6to4, well-known NAT64) reaches that IPv4 host, so is judged by it."""
    embedded = _embedded_ipv4(address) if address.version == 6 else None
    if embedded is not None:
        return is_globally_routable(embedded)
    if any(address in network for network in _NEVER_ROUTABLE):
        return False
    site_local = address.version == 6 and address.is_site_local
    return address.is_global and not (address.is_multicast or address.is_reserved or site_local)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address a packet to this IPv6 address is delivered to, for the forms that embed one."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _WELL_KNOWN_NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
    return None
