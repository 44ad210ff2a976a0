"""IPSECKEY (RFC 4025) gateway choice, with records parsed by dnspython from their text and wire forms."""
import asyncio

import dns.rdata
import dns.resolver
import pytest

from nodes.runtime.gateway_lookup import GatewayLookupError, gateway_from_ipseckey, ipv4_gateways

KEY = "AQNRU3mG7TVTO2BkR47usntb102uFJtugbo6BSGvgqt4AQ=="


def rr(text: str):
    return dns.rdata.from_text("IN", "IPSECKEY", text)


def rr_wire(precedence: int, gateway_type: int, gateway: bytes, algorithm: int = 0, key: bytes = b""):
    """A record in wire form (RFC 4025 section 2.1): the text form cannot leave the key out."""
    wire = bytes([precedence, gateway_type, algorithm]) + gateway + key
    return dns.rdata.from_wire("IN", "IPSECKEY", wire, 0, len(wire))


def test_lowest_precedence_ipv4_gateway_first():
    records = [rr(f"20 1 2 203.0.113.71 {KEY}"), rr(f"10 1 2 203.0.113.70 {KEY}"), rr_wire(5, 2, bytes(16))]
    assert ipv4_gateways(records) == [(10, "203.0.113.70", False), (20, "203.0.113.71", False)]


def test_domain_name_gateway_and_no_gateway():
    name = b"\x03vpn\x07example\x03net\x00"
    records = [rr_wire(10, 3, name), rr_wire(1, 0, b"")]
    assert ipv4_gateways(records) == [(10, "vpn.example.net", True)]


def test_wire_form_round_trips_through_dnspython():
    wire = bytes.fromhex("0a0102cb007146")  # precedence 10, IPv4, algorithm 2, 203.0.113.70, key "F"
    record = dns.rdata.from_wire("IN", "IPSECKEY", wire, 0, len(wire))
    assert ipv4_gateways([record]) == [(10, "203.0.113.70", False)]


@pytest.mark.parametrize("exc, says", [(dns.resolver.NXDOMAIN, "does not exist"), (dns.resolver.NoAnswer, "has no IPSECKEY"),
                                       (dns.exception.FormError, "malformed"), (dns.exception.Timeout, "no answer")])
def test_lookup_failures_say_what_to_do(exc, says):
    class Resolver:
        nameservers = ["198.51.100.10"]

        async def resolve(self, *a, **kw):
            raise exc()

    with pytest.raises(GatewayLookupError, match=says):
        asyncio.run(gateway_from_ipseckey("example.net", Resolver()))


def test_only_ipv6_gateways_is_an_error():
    class Resolver:
        nameservers = ["198.51.100.10"]

        async def resolve(self, *a, **kw):
            return [rr_wire(5, 2, bytes(16))]

    with pytest.raises(GatewayLookupError, match="names no IPv4 gateway"):
        asyncio.run(gateway_from_ipseckey("example.net", Resolver()))
