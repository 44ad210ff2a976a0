"""The Home Agent, Foreign Agent and Mobile Node cores against nodes/core.py's contract, through
the generic harness of tests/core_contract.py."""
from __future__ import annotations

from ipaddress import IPv4Address as A, IPv4Network

from nodes.core import Addr
from nodes.mip.auth import SecurityAssociation
from nodes.mip.fa import ForeignAgent, ForeignAgentConfig
from nodes.mip.ha import HomeAgent, HomeAgentConfig, MobileNodeEntry
from nodes.mip.mn import MobileNode, MobileNodeConfig
from nodes.wire.mip import RegistrationReply, RegistrationRequest, ntp_now
from core_contract import CoreCase, check_contract

HA_ADDR, HOME, FA_ADDR, COA = A("10.1.0.1"), A("10.1.0.50"), A("198.51.100.1"), A("192.0.2.10")
SA = SecurityAssociation(1000, b"0123456789abcdef")


def _request(now: float, coa=COA) -> bytes:
    return SA.sign(RegistrationRequest(0, 1800, HOME, HA_ADDR, coa, ntp_now(now)).encode())


HA_CASE = CoreCase(
    name="home agent",
    make=lambda rnd: HomeAgent(HomeAgentConfig(HA_ADDR, [MobileNodeEntry(HOME, SA)], home_iface="home0"), random=rnd),
    valid=lambda core: [(_request(1000.0), Addr(str(COA), 434, str(HA_ADDR), 434))],
)

FA_CASE = CoreCase(
    name="foreign agent",
    make=lambda rnd: ForeignAgent(ForeignAgentConfig(FA_ADDR, iface="fa0"), random=rnd),
    start=lambda core, now: core.start(now),
    valid=lambda core: [(_request(1000.0, FA_ADDR),
                         Addr(str(HOME), 434, str(FA_ADDR), 434, ttl=255, lladdr="02:aa:00:00:00:50"))],
)


def _reply_to_attempt(core: MobileNode) -> list:
    """An accepted reply from the home agent to the request the node has in flight."""
    attempt = core.attempt
    reply = RegistrationReply(0, 600, HOME, HA_ADDR, attempt.identification)
    return [(SA.sign(reply.encode()), Addr(str(HA_ADDR), 434, str(COA), 434))]


MN_CASE = CoreCase(
    name="mobile node",
    make=lambda rnd: MobileNode(MobileNodeConfig(HOME, HA_ADDR, IPv4Network("10.1.0.0/24"), SA, iface="mn0"),
                                random=rnd),
    start=lambda core, now: core.link_up(now, care_of_address=COA),
    valid=_reply_to_attempt,
)


def test_home_agent_follows_the_core_contract():
    check_contract(HA_CASE)


def test_foreign_agent_follows_the_core_contract():
    check_contract(FA_CASE)


def test_mobile_node_follows_the_core_contract():
    check_contract(MN_CASE)


def test_mobile_node_identifications_take_their_low_bits_from_the_random_source():
    """Same clock, different random sources: the NTP seconds agree, the low fraction bits differ;
    the same seeded source replays the same identification."""
    from nodes.core import seeded_random

    def first_ident(seed: int) -> int:
        core = MN_CASE.make(seeded_random(seed))
        core.link_up(1000.0, care_of_address=COA)
        core.drain_actions()
        return core.attempt.identification

    assert first_ident(1) == first_ident(1)
    assert first_ident(1) >> 32 == first_ident(2) >> 32 and first_ident(1) != first_ident(2)
