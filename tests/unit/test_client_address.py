"""Unit: caller address and allowlist (contract 3.7), with property tests for the parsing."""

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from octopus_cards.http.client_address import client_address, is_allowed, normalise
from octopus_cards.settings import parse_network, parse_networks

PROXY = parse_networks({"OCTOPUS_TRUSTED_PROXIES": "10.0.0.0/8, 2001:db8:ffff::/48"}, "OCTOPUS_TRUSTED_PROXIES")


def addr(text):
    return ipaddress.ip_address(text)


def test_peer_is_the_caller_without_trusted_proxies():
    assert client_address("198.51.100.4", ["203.0.113.7"], ()) == addr("198.51.100.4")


def test_forwarded_for_from_an_untrusted_peer_is_ignored():
    assert client_address("127.0.0.1", ["203.0.113.7"], PROXY) == addr("127.0.0.1")


def test_right_most_untrusted_hop_behind_a_trusted_proxy():
    hops = ["203.0.113.99, 198.51.100.1", "10.1.1.1"]
    assert client_address("10.0.0.2", hops, PROXY) == addr("198.51.100.1")


def test_unparsable_hop_denies():
    assert client_address("10.0.0.2", ["203.0.113.7, nonsense"], PROXY) is None


def test_all_hops_trusted_takes_the_left_most():
    assert client_address("10.0.0.2", ["10.9.9.9, 10.0.0.3"], PROXY) == addr("10.9.9.9")


def test_ipv4_mapped_peer_and_hop_are_folded():
    assert client_address("::ffff:203.0.113.5", [], ()) == addr("203.0.113.5")
    assert client_address("::ffff:10.0.0.2", ["::ffff:198.51.100.8"], PROXY) == addr("198.51.100.8")


def test_non_ip_peer_has_no_address():
    assert client_address("testclient", [], ()) is None
    assert client_address(None, [], ()) is None


def test_empty_allowlist_allows_everyone_even_without_an_address():
    assert is_allowed(None, [])
    assert is_allowed(addr("2001:db8::1"), [])


def test_allowlist_membership():
    cidrs = ["203.0.113.0/24", "2001:db8::/32"]
    assert is_allowed(addr("203.0.113.200"), cidrs)
    assert is_allowed(addr("2001:db8::5"), cidrs)
    assert not is_allowed(addr("198.51.100.1"), cidrs)
    assert not is_allowed(None, cidrs)


def test_ipv4_mapped_allowlist_entry_matches_plain_ipv4():
    assert str(parse_network("::ffff:203.0.113.0/120")) == "203.0.113.0/24"
    assert is_allowed(normalise("::ffff:203.0.113.9"), [str(parse_network("::ffff:203.0.113.0/120"))])


def test_bare_addresses_and_host_bits():
    assert str(parse_network("203.0.113.5")) == "203.0.113.5/32"
    assert str(parse_network("2001:db8::1")) == "2001:db8::1/128"
    assert str(parse_network("10.1.2.3/8")) == "10.0.0.0/8"


@pytest.mark.parametrize("bad", ["", "300.1.1.1", "10.0.0.0/33", "nonsense", "1.2.3.4/abc", "::/129"])
def test_invalid_networks_raise_value_error(bad):
    with pytest.raises(ValueError):
        parse_network(bad)


ipv4 = st.ip_addresses(v=4)
ipv6 = st.ip_addresses(v=6)


@given(ipv4)
def test_mapped_form_of_any_ipv4_is_that_ipv4(address):
    assert normalise(f"::ffff:{address}") == address


@given(ipv4, st.integers(0, 32))
def test_an_ipv4_is_inside_its_own_network(address, prefix):
    network = parse_network(f"{address}/{prefix}")
    assert is_allowed(address, [str(network)])
    assert is_allowed(normalise(f"::ffff:{address}"), [str(network)])


@given(ipv6, ipv4)
def test_a_v6_address_never_matches_a_v4_network(v6, v4):
    if v6.ipv4_mapped is None:
        assert not is_allowed(normalise(str(v6)), [f"{v4}/0"])


@given(st.text(max_size=60))
def test_normalise_never_raises(text):
    result = normalise(text)
    assert result is None or isinstance(result, (ipaddress.IPv4Address, ipaddress.IPv6Address))


hop_text = st.one_of(ipv4.map(str), ipv6.map(str), st.text(alphabet="0123456789abcdef.:/ ", max_size=20))


@given(st.lists(hop_text, max_size=6), st.one_of(ipv4, ipv6))
def test_forwarded_for_yields_the_peer_a_hop_or_nothing(hops, peer):
    trusted = (parse_network("0.0.0.0/0"),)  # every IPv4 peer and hop is a trusted proxy
    header = ", ".join(hops)
    result = client_address(str(peer), [header], trusted)
    caller = normalise(str(peer))  # an IPv4-mapped peer is IPv4, hence trusted
    if caller.version == 6 or not header.strip():  # untrusted peer, or no forwarding information
        assert result == caller
    else:
        assert result is None or result in {normalise(hop) for hop in hops}
        untrusted = [normalise(hop) for hop in hops if normalise(hop) and normalise(hop).version == 6]
        if result is not None and untrusted:
            assert result == untrusted[-1]
