"""Unit: where a webhook may go (contract 9.5): the registration URL check and the address policy.
No network: literal addresses, and a stand-in for getaddrinfo where a name must resolve."""

import ipaddress
import socket

import pytest

from octopus_cards.outbound.addresses import (
    AddressNotAllowed,
    UnsafeUrl,
    is_allowed_address,
    is_globally_routable,
    parse_webhook_url,
    resolve_allowed,
)

LOCAL_RECEIVER = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://hooks.example.com/x", "must start with https://"),
        ("http://hooks.example.com/x", "must start with https://"),
        ("hooks.example.com/x", "must be absolute"),
        ("/webhooks/octopus", "must be absolute"),
        ("//hooks.example.com/x", "must be absolute"),
        ("https:hooks.example.com", "no host"),
        ("https://user:secret@hooks.example.com/x", "user-info"),
        ("https://user@hooks.example.com/x", "user-info"),
        ("https://evil.example\\@hooks.example.com/", "user-info"),
        ("https://hooks.example.com/" + "a" * 2030, "longer than 2,048 characters"),
        ("https:///path", "no host"),
        ("https://:443/path", "no host"),
        ("https://exa\tmple.com/", "control characters"),
        ("https://hooks.example.com/a b", "spaces"),
        ("https://hööks.example.com/", "ASCII"),
        ("https://hooks.example.com:99999/", "port"),
        ("https://hooks.example.com:0/", "port"),
        ("https://[::1/", "not valid"),
        ("https://[fe80::1%25eth0]/", "network interface"),
        ("https://hooks..example.com/", "not a valid DNS name"),
        ("https://hooks.example.com./", "not a valid DNS name"),
        ("https://good.example\\.evil.example/", "not a valid DNS name"),
        ("https://2130706433/", "dotted-quad"),
        ("https://0177.0.0.1/", "dotted-quad"),
        ("https://0x7f.1/", "dotted-quad"),
        ("https://0x7f000001/", "dotted-quad"),
        ("https://127.1/", "dotted-quad"),
        ("https://010.0.0.1/", "dotted-quad"),
        ("https://1.2.3.4.5/", "dotted-quad"),
    ],
)
def test_unsafe_urls_are_refused_with_a_one_line_reason(url, reason):
    with pytest.raises(UnsafeUrl, match=reason) as refusal:
        parse_webhook_url(url, allow_http=False)
    assert "\n" not in str(refusal.value)
    assert isinstance(refusal.value, ValueError)


def test_http_is_refused_unless_allowed_and_other_schemes_always():
    assert parse_webhook_url("http://127.0.0.1:8080/hook", allow_http=True).scheme == "http"
    with pytest.raises(UnsafeUrl, match=r"https:// or http://"):
        parse_webhook_url("ftp://hooks.example.com/", allow_http=True)


def test_a_url_of_exactly_2048_characters_is_accepted():
    url = "https://hooks.example.com/" + "a" * (2048 - len("https://hooks.example.com/"))
    assert parse_webhook_url(url, allow_http=False).target == url[len("https://hooks.example.com") :]


@pytest.mark.parametrize(
    ("url", "parts", "host_header"),
    [
        ("https://Hooks.Example.com/in?x=1#frag", ("https", "hooks.example.com", 443, "/in?x=1"), "hooks.example.com"),
        ("https://hooks.example.com", ("https", "hooks.example.com", 443, "/"), "hooks.example.com"),
        ("https://hooks.example.com:8443/a/b", ("https", "hooks.example.com", 8443, "/a/b"), "hooks.example.com:8443"),
        ("https://203.0.113.9/x", ("https", "203.0.113.9", 443, "/x"), "203.0.113.9"),
        ("https://[2606:4700:0::1111]:8443/", ("https", "2606:4700::1111", 8443, "/"), "[2606:4700::1111]:8443"),
        ("http://localhost:8080/h", ("http", "localhost", 8080, "/h"), "localhost:8080"),
        ("https://my_hooks.example.com/", ("https", "my_hooks.example.com", 443, "/"), "my_hooks.example.com"),
    ],
)
def test_accepted_urls_are_split_into_request_parts(url, parts, host_header):
    webhook_url = parse_webhook_url(url, allow_http=True)
    assert (webhook_url.scheme, webhook_url.host, webhook_url.port, webhook_url.target) == parts
    assert webhook_url.host_header == host_header


HOSTILE_ADDRESSES = [
    "127.0.0.1",  # loopback
    "127.255.255.254",
    "::1",
    "0.0.0.0",  # unspecified
    "::",
    "169.254.169.254",  # link-local: cloud metadata
    "fe80::1",
    "10.0.0.1",  # private
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "100.64.0.1",  # CGNAT
    "100.127.255.254",
    "198.18.0.1",  # benchmarking
    "192.0.2.1",  # documentation
    "198.51.100.1",
    "203.0.113.1",
    "2001:db8::1",
    "3fff::1",
    "224.0.0.1",  # multicast
    "239.255.255.250",
    "ff02::1",
    "ff0e::1",
    "240.0.0.1",  # reserved
    "255.255.255.255",
    "192.0.0.8",  # IETF protocol assignments
    "fc00::1",  # unique-local
    "fd00::1",
    "fec0::1",  # site-local
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "::127.0.0.1",  # IPv4-compatible
    "::8.8.8.8",
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
    "2002:a00:1::1",  # 6to4 of 10.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b:1::808:808",  # local-use NAT64
    "2001::1",  # Teredo
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",
    "100::1",  # discard-only
    "5f00::1",  # SRv6
]

PUBLIC_ADDRESSES = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "2606:4700::1111",
    "2001:4860:4860::8888",
    "::ffff:8.8.8.8",  # IPv4-mapped public address
    "2002:808:808::1",  # 6to4 of 8.8.8.8
    "64:ff9b::808:808",  # NAT64 of 8.8.8.8, as DNS64 answers on an IPv6-only network
]


@pytest.mark.parametrize("text", HOSTILE_ADDRESSES)
def test_addresses_off_the_public_internet_are_not_allowed(text):
    address = ipaddress.ip_address(text)
    assert not is_globally_routable(address)
    assert not is_allowed_address(address, ())


@pytest.mark.parametrize("text", PUBLIC_ADDRESSES)
def test_globally_routable_addresses_are_allowed(text):
    address = ipaddress.ip_address(text)
    assert is_globally_routable(address)
    assert is_allowed_address(address, ())


def test_allowed_networks_admit_internal_addresses_and_nothing_else():
    assert is_allowed_address(ipaddress.ip_address("127.0.0.1"), LOCAL_RECEIVER)
    assert is_allowed_address(ipaddress.ip_address("::1"), LOCAL_RECEIVER)
    assert not is_allowed_address(ipaddress.ip_address("10.0.0.1"), LOCAL_RECEIVER)
    assert not is_allowed_address(ipaddress.ip_address("169.254.169.254"), LOCAL_RECEIVER)


def test_an_ipv4_mapped_address_is_allowed_by_its_ipv4_network():
    assert is_allowed_address(ipaddress.ip_address("::ffff:127.0.0.1"), LOCAL_RECEIVER)
    assert not is_allowed_address(ipaddress.ip_address("::ffff:10.0.0.1"), LOCAL_RECEIVER)


def answering(monkeypatch, table):
    """socket.getaddrinfo answering the names in table with their addresses; returns the names asked."""
    asked = []

    def getaddrinfo(host, port, *args, **kwargs):
        asked.append(host)
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (socket.AF_INET6 if ":" in text else socket.AF_INET, socket.SOCK_STREAM, 6, "", (text, port))
            for text in table[host]
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return asked


def test_a_name_resolving_to_public_addresses_is_allowed_after_one_lookup(monkeypatch):
    asked = answering(monkeypatch, {"hooks.example.com": ["93.184.216.34", "2606:2800:220:1::1", "93.184.216.34"]})
    addresses = resolve_allowed("hooks.example.com", 443, ())
    assert addresses == (ipaddress.ip_address("93.184.216.34"), ipaddress.ip_address("2606:2800:220:1::1"))
    assert asked == ["hooks.example.com"]


@pytest.mark.parametrize(
    "answers",
    [["10.1.2.3"], ["93.184.216.34", "10.1.2.3"], ["2606:2800:220:1::1", "fd12::1"], ["::ffff:192.168.0.7"]],
)
def test_one_internal_address_refuses_the_name(monkeypatch, answers):
    answering(monkeypatch, {"internal.example.com": answers})
    with pytest.raises(AddressNotAllowed, match="internal.example.com resolves to"):
        resolve_allowed("internal.example.com", 443, ())


def test_localhost_is_refused_unless_its_network_is_allowed():
    with pytest.raises(AddressNotAllowed):
        resolve_allowed("localhost", 80, ())
    assert all(address.is_loopback for address in resolve_allowed("localhost", 80, LOCAL_RECEIVER))


def test_an_unknown_name_fails_the_lookup(monkeypatch):
    answering(monkeypatch, {})
    with pytest.raises(socket.gaierror):
        resolve_allowed("nowhere.example.com", 443, ())
