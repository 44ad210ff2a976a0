"""IPSECKEY (RFC 4025) gateway choice, with records parsed by dnspython from their text and wire forms."""
import asyncio

import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rrset
import pytest

from nodes.runtime.ipsec.gateway_lookup import GatewayLookupError, gateway_from_ipseckey, ipv4_gateways

KEY = "AQNRU3mG7TVTO2BkR47usntb102uFJtugbo6BSGvgqt4AQ=="
KEY_HEX = "010351537986ed35533b6064478eeeb27b5bd74dae149b6e81ba3a0521af82ab7801"


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


def answer(name: str, rdtype: str, records=(), rcode=dns.rcode.NOERROR) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype)
    r = dns.message.make_response(q)
    r.set_rcode(rcode)
    if records:
        r.answer.append(dns.rrset.from_rdata_list(dns.name.from_text(name), 300, list(records)))
    return r


def serve(responses: dict):
    """A Query that answers from `responses` ((name, type) -> Message or an exception to raise)."""
    async def query(name, rdtype):
        got = responses[(name, rdtype)]
        if isinstance(got, Exception):
            raise got
        return got
    query.servers = ["198.51.100.10"]
    return query


def lookup(responses: dict) -> str:
    return asyncio.run(gateway_from_ipseckey("example.net", serve(responses)))


def test_lookup_takes_the_lowest_precedence():
    records = [rr(f"20 1 2 198.51.100.66 {KEY}"), rr(f"10 1 2 203.0.113.70 {KEY}")]
    assert lookup({("example.net", "IPSECKEY"): answer("example.net", "IPSECKEY", records)}) == "203.0.113.70"


def test_a_named_gateway_is_resolved_to_its_address():
    name = b"\x03vpn\x07example\x03net\x00"
    a = dns.rdata.from_text("IN", "A", "203.0.113.70")
    assert lookup({("example.net", "IPSECKEY"): answer("example.net", "IPSECKEY", [rr_wire(10, 3, name)]),
                   ("vpn.example.net", "A"): answer("vpn.example.net", "A", [a])}) == "203.0.113.70"


def test_a_malformed_answer_on_the_wire_is_reported_as_such():
    """An IPSECKEY whose IPv4 gateway is cut to two bytes: dnspython cannot decode the answer."""
    good = answer("example.net", "IPSECKEY", [rr(f"10 1 2 203.0.113.70 {KEY}")]).to_wire()
    rdata = bytes([10, 1, 2]) + bytes([203, 0, 113, 70]) + bytes.fromhex(KEY_HEX)
    cut = bytes([10, 1, 0, 203, 0])
    at = good.index(rdata)
    wire = good[:at - 2] + len(cut).to_bytes(2, "big") + cut + good[at + len(rdata):]
    with pytest.raises(dns.exception.DNSException) as decode:
        dns.message.from_wire(wire)
    with pytest.raises(GatewayLookupError, match="malformed"):
        lookup({("example.net", "IPSECKEY"): decode.value})


@pytest.mark.parametrize("response, says", [
    (answer("example.net", "IPSECKEY", rcode=dns.rcode.NXDOMAIN), "is missing: the name does not exist"),
    (answer("example.net", "IPSECKEY"), "is missing: the name exists but has no such record"),
    (answer("example.net", "IPSECKEY", rcode=dns.rcode.REFUSED), "answered REFUSED"),
    (dns.exception.Timeout(), "no answer"),
    (answer("example.net", "IPSECKEY", [rr_wire(5, 2, bytes(16))]), "names no IPv4 gateway"),
])
def test_lookup_failures_say_what_to_do(response, says):
    with pytest.raises(GatewayLookupError, match=says):
        lookup({("example.net", "IPSECKEY"): response})
