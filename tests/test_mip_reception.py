"""What the Home Agent and Foreign Agent cores accept on reception (RFC 5944,
RFC 3519), where their solicited advertisements go, and which identification replay protection
remembers. Requests are built byte by byte here (struct + hmac), not with nodes.wire.mip."""
from __future__ import annotations

import hashlib
import hmac
import struct
from ipaddress import IPv4Address as A

import pytest

from nodes.core import Addr
from nodes.mip.actions import Log, SendIcmp, SendUdp
from nodes.mip.auth import SecurityAssociation
from nodes.mip.fa import ForeignAgent, ForeignAgentConfig
from nodes.mip.ha import HomeAgent, HomeAgentConfig, MobileNodeEntry
from nodes.wire.mip import ntp_now
from fakelink import feed

HA_ADDR, HOME, FA1 = A("10.1.0.1"), A("10.1.0.50"), A("198.51.100.1")
KEY = b"0123456789abcdef"
T0 = 1_700_000_000.0
MN_MAC = "02:aa:00:00:00:50"
FLAG_R, FLAG_X, FLAG_T = 0x04, 0x01, 0x02
FLAG_D = 0x20  # RFC 3519 3.1.5: set by a node that asks for UDP tunnelling


def request(flags: int = 0, coa=FA1, ident: int | None = None, exts: bytes = b"", spis=(1000,),
            lifetime: int = 1800) -> bytes:
    """A registration request (type 1) with `exts`, then one MN-HA authentication extension per SPI
    in `spis` (HMAC-MD5 over everything before its authenticator, RFC 5944 3.5.1)."""
    msg = struct.pack("!BBH4s4s4sQ", 1, flags, lifetime, HOME.packed, HA_ADDR.packed, A(coa).packed,
                      ntp_now(T0) if ident is None else ident) + exts
    for spi in spis:
        head = bytes([32, 20]) + struct.pack("!I", spi)
        msg += head + hmac.new(KEY, msg + head, hashlib.md5).digest()
    return msg


def udp_tunnel_request(reserved1: int = 0, flags: int = 0, encapsulation: int = 4, reserved3: int = 0) -> bytes:
    """RFC 3519 UDP Tunnel Request extension (type 144, length 6, sub-type 0)."""
    return struct.pack("!BBBBBBH", 144, 6, 0, reserved1, flags, encapsulation, reserved3)


def ha(**kw) -> HomeAgent:
    return HomeAgent(HomeAgentConfig(HA_ADDR, [MobileNodeEntry(HOME, SecurityAssociation(1000, KEY))],
                                     home_iface="home0", **kw))


def fa(**kw) -> ForeignAgent:
    return ForeignAgent(ForeignAgentConfig(FA1, iface="fa0", **kw))


def ha_code(core: HomeAgent, raw: bytes, src=FA1, sport: int = 434, now: float = T0) -> int:
    replies = [a for a in feed(core, "receive_datagram", raw, Addr(str(src), sport, str(HA_ADDR), 434), now=now)
               if isinstance(a, SendUdp)]
    assert len(replies) == 1, replies
    return replies[0].payload[1]


def fa_relays(core: ForeignAgent, raw: bytes) -> list:
    """What the FA sends for a visitor's request: to the HA when relayed (empty list: denied)."""
    out = feed(core, "receive_datagram", raw, Addr(str(HOME), 434, str(FA1), 434, ttl=255, lladdr=MN_MAC), now=T0)
    denials = [a.payload[1] for a in out if isinstance(a, SendUdp) and a.dst == HOME]
    assert not denials, f"the FA denied the request with {denials}"
    return [a for a in out if isinstance(a, SendUdp) and a.dst == HA_ADDR]


# --- item 5: reserved flag bits r and x are ignored on reception ----------------------------------

@pytest.mark.parametrize("bits", [FLAG_R, FLAG_X, FLAG_R | FLAG_X])
def test_reserved_request_flags_are_ignored_by_the_home_agent(bits):
    core = ha()
    assert ha_code(core, request(flags=bits)) == 0
    assert HOME in core.bindings and core.bindings[HOME].care_of_address == FA1


@pytest.mark.parametrize("bits", [FLAG_R, FLAG_X])
def test_reserved_request_flags_are_ignored_by_the_foreign_agent(bits):
    raw = request(flags=bits)
    (relayed,) = fa_relays(fa(), raw)
    assert relayed.payload == raw, "relayed unchanged: the MN-HA authenticator covers the flags"


# --- item 6: exactly one MN-HA authentication extension -------------------------------------------

def test_two_mn_ha_authentication_extensions_give_131():
    core = ha()
    assert ha_code(core, request(spis=(1000, 1000))) == 131
    assert not core.bindings
    assert core.status().counters["denied:131"] == 1
    (log,) = [a for a in feed(core, "receive_datagram", request(spis=(1000, 1000), ident=ntp_now(T0) + 1),
                              Addr(str(FA1), 434, str(HA_ADDR), 434), now=T0) if isinstance(a, Log)]
    assert log.fields["code"] == 131 and log.fields["reason"] == "two-mn-ha-auth"


# --- item 7: an SPI in the reserved range is an authentication failure -----------------------------

@pytest.mark.parametrize("spi", [0, 1, 255])
def test_reserved_spi_gives_131_not_134(spi):
    core = ha()
    assert ha_code(core, request(spis=(spi,))) == 131
    assert not core.bindings


def test_foreign_agent_relays_a_reserved_spi_for_the_home_agent_to_judge():
    raw = request(spis=(255,))
    (relayed,) = fa_relays(fa(), raw)
    assert relayed.payload == raw


# --- item 8: RFC 3519 UDP Tunnel Request reserved fields: 1 and 2 ignored, 3 must be zero -----------

@pytest.mark.parametrize("fields", [{"reserved1": 0xFF}, {"flags": 0x3F}])
def test_udp_tunnel_request_reserved_fields_are_ignored(fields):
    core = ha()
    raw = request(FLAG_D, coa="192.168.1.10", exts=udp_tunnel_request(**fields))
    assert ha_code(core, raw, src="203.0.113.200", sport=40000) == 0
    binding = core.bindings[HOME]
    assert (binding.kind, binding.remote, binding.remote_port) == ("udp", A("203.0.113.200"), 40000)
    (relayed,) = fa_relays(fa(), request(exts=udp_tunnel_request(**fields)))
    assert relayed.dst == HA_ADDR


@pytest.mark.parametrize("fields", [{"reserved3": 0xFFFF}, {"reserved1": 1, "flags": 0x01, "reserved3": 1}])
def test_udp_tunnel_request_with_reserved3_set_is_not_acted_on(fields):
    """RFC 3519 3.1.3: Reserved 3 is verified as 0 on receipt, otherwise the extension is handled
    as not understood and silently skipped: no UDP tunnel is set up on its word, the registration
    goes on without it."""
    core = ha()
    raw = request(FLAG_D, coa="192.168.1.10", exts=udp_tunnel_request(**fields))
    assert ha_code(core, raw, src="203.0.113.200", sport=40000) == 0
    assert core.bindings[HOME].kind != "udp"


# --- item 9: solicited advertisements go to all systems (224.0.0.1) or the limited broadcast -------

def _solicitation() -> bytes:
    body = struct.pack("!BBHI", 10, 0, 0, 0)
    csum = 0
    for i in range(0, len(body), 2):
        csum += (body[i] << 8) + body[i + 1]
    csum = (csum & 0xFFFF) + (csum >> 16)
    return struct.pack("!BBHI", 10, 0, ~csum & 0xFFFF, 0)


def _solicit(core: ForeignAgent, src, now: float) -> list:
    return [a for a in feed(core, "receive_icmp", _solicitation(), Addr(str(src), 0, "224.0.0.2", 0, lladdr=MN_MAC),
                            now=now) if isinstance(a, SendIcmp)]


@pytest.mark.parametrize("src", [HOME, "0.0.0.0"])
@pytest.mark.parametrize("destination", ["224.0.0.1", "255.255.255.255"])
def test_solicited_advertisement_goes_to_the_advertisement_destination(src, destination):
    core = fa(adv_destination=A(destination), adv_interval=100.0)
    feed(core, "start", now=T0)
    (answer,) = _solicit(core, src, T0 + 10)
    assert answer.dst == A(destination) and answer.ttl == 1 and answer.iface == "fa0"
    assert answer.payload[0] == 9 and core.counters["solicitations"] == 1


def test_solicited_answers_are_rate_limited_not_lost():
    """A flood of solicitations (multicast answers reach every node on the link) gets at most one
    answer per solicited_min_interval; a solicitation inside that window is answered at its end."""
    core = fa(adv_interval=100.0, solicited_min_interval=0.1)
    feed(core, "start", now=T0)
    assert len(_solicit(core, HOME, T0 + 10)) == 1
    assert _solicit(core, HOME, T0 + 10.02) == [] and _solicit(core, "10.1.0.51", T0 + 10.05) == []
    assert core.next_deadline() == pytest.approx(T0 + 10.1)
    late = [a for a in feed(core, "handle_timer", now=T0 + 10.1) if isinstance(a, SendIcmp)]
    assert [a.dst for a in late] == [A("224.0.0.1")], "one answer for the two solicitations of the window"
    assert core.counters["solicitations"] == 3 and core.counters["solicitations-deferred"] == 2


# --- item 10: replay protection remembers the last ACCEPTED identification -------------------------

@pytest.mark.parametrize("config, denied_request, code", [
    # RFC 3519 4.1: a UDP tunnel asked with an encapsulation the HA will not carry in UDP: 142
    ({}, dict(flags=FLAG_D, coa="192.168.1.10", exts=udp_tunnel_request(encapsulation=47)), 142),
    ({"reverse_tunnelling": False}, dict(flags=FLAG_T), 137),
    ({"reverse_tunnel_required": True}, dict(), 138),
    ({"udp_tunnelling": False}, dict(flags=FLAG_D, coa="192.168.1.10", exts=udp_tunnel_request()), 142),
])
def test_a_denied_identification_does_not_block_a_lower_later_one(config, denied_request, code):
    core = ha(**config)
    later, earlier = ntp_now(T0 + 2), ntp_now(T0 + 1)
    assert ha_code(core, request(ident=later, **denied_request), src="203.0.113.200") == code
    ok = request(ident=earlier, flags=FLAG_T if config.get("reverse_tunnel_required") else 0)
    assert ha_code(core, ok) == 0, "the request denied for another reason must not count as the last one seen"
    # and an accepted identification still protects against replays
    assert ha_code(core, ok, now=T0 + 1.5) == 133


def test_a_130_denial_does_not_count_as_the_last_identification():
    """The binding table is full (130): once a place is free, a request with a lower identification
    than the denied one is accepted."""
    other, other_key = A("10.1.0.51"), b"fedcba9876543210"
    core = HomeAgent(HomeAgentConfig(HA_ADDR, [MobileNodeEntry(HOME, SecurityAssociation(1000, KEY)),
                                               MobileNodeEntry(other, SecurityAssociation(1001, other_key))],
                                     home_iface="home0", max_bindings=1))
    sa = SecurityAssociation(1001, other_key)

    def other_request(lifetime: int, ident: int) -> bytes:
        msg = struct.pack("!BBH4s4s4sQ", 1, 0, lifetime, other.packed, HA_ADDR.packed, FA1.packed, ident)
        return sa.sign(msg)

    assert ha_code(core, other_request(1800, ntp_now(T0))) == 0
    assert ha_code(core, request(ident=ntp_now(T0 + 2))) == 130
    assert ha_code(core, other_request(0, ntp_now(T0 + 0.5))) == 0  # the other node deregisters
    assert ha_code(core, request(ident=ntp_now(T0 + 1))) == 0
