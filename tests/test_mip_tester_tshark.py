"""tshark decodes what the tester library (testbed/conformance/mip) means to be well formed, and
flags what it means to be broken (so the check is not vacuous)."""
from __future__ import annotations

import pytest

from testbed.conformance.mip import (
    AgentAdvertisement, AgentSolicitation, EncapsulatingDeliveryStyle, NaiExtension, SecurityAssociation,
    TesterAgentAdvertiser, TesterFA, TesterHA, TesterMN, TrustedNetworksConfigured, UdpTunnelReply,
    UdpTunnelRequest, ipv4_udp,
)
from testbed.conformance.mip import tshark
from testbed.conformance.mip.ipv4 import build_ipv4

pytestmark = pytest.mark.skipif(tshark.tshark_path() is None, reason="tshark is not installed")

SA = SecurityAssociation(1000, b"0123456789abcdef")
FA_HA = SecurityAssociation(3000, b"fa-ha")
HOME, HA, COA, FA = "10.1.0.50", "10.1.0.1", "192.0.2.10", "198.51.100.1"
NOW = 1_700_000_000.0


def well_formed() -> list[bytes]:
    mn, ha, fa = TesterMN(HOME, HA, SA), TesterHA(HA, {HOME: SA}, {FA: FA_HA}), TesterFA(FA, fa_ha=FA_HA)
    colocated = mn.request(NOW, COA, flags="DT", extensions_before=[NaiExtension(b"mn@example.net"),
                                                                     UdpTunnelRequest(force=True)])
    via_fa = mn.request(NOW, FA, flags="T", extensions_before=[EncapsulatingDeliveryStyle()])
    relayed, _ = fa.relay_request(via_fa, src=HOME).value
    packets = [
        ipv4_udp(COA, HA, 434, 434, colocated),
        ipv4_udp(HA, COA, 434, 434, ha.answer(colocated, extensions_before=[UdpTunnelReply(keepalive=30),
                                                                            TrustedNetworksConfigured()])),
        ipv4_udp(HA, COA, 434, 434, ha.answer(colocated, code=133, now=NOW)),
        ipv4_udp(HOME, FA, 434, 434, via_fa, ttl=255),
        ipv4_udp(FA, HA, 434, 434, relayed),
        ipv4_udp(FA, HOME, 434, 434, fa.deny(via_fa, 69, lifetime=300)),
        ipv4_udp(COA, HA, 434, 434, mn.deregistration(NOW + 1), checksum="zero"),
    ]
    adv = TesterAgentAdvertiser(FA, "RBFMGTU", care_of_addresses=[FA, "198.51.100.2"])
    packets += [build_ipv4(FA, "224.0.0.1", 1, adv.advertisement(), ttl=1),
                build_ipv4(HA, "255.255.255.255", 1, AgentAdvertisement(flags=0x2000, routers=[(HA, 0)],
                                                                        prefix_lengths=[24], padding=True,
                                                                        code=0).encode(), ttl=1),
                build_ipv4(HOME, "224.0.0.2", 1, AgentSolicitation().encode(), ttl=1)]
    return packets


def test_well_formed_messages_decode_cleanly():
    packets = well_formed()
    verdict = tshark.check_packets(packets)
    assert verdict.error is None, verdict.error
    assert verdict.ok, verdict.problems
    assert len(verdict.rows) == len(packets)
    protocols = [row["_ws.col.Protocol"] for row in verdict.rows]
    assert protocols[:7] == ["MobileIP"] * 7, protocols
    fields = tshark.dissect(packets[:2], ("mip.type", "mip.ext.type"))
    assert fields[0] == {"mip.type": "1", "mip.ext.type": "131|144|32"}
    assert fields[1]["mip.ext.type"] == "44|149|32"


def test_broken_messages_are_flagged():
    req = TesterMN(HOME, HA, SA).request(NOW, COA)
    broken = [ipv4_udp(COA, HA, 434, 434, req[:-3]),
              ipv4_udp(COA, HA, 434, 434, req, checksum="wrong"),
              build_ipv4(FA, "224.0.0.1", 1, AgentAdvertisement(checksum="wrong", care_of_addresses=[FA]).encode(),
                         ttl=1)]
    verdict = tshark.check_packets(broken)
    assert {frame for frame, _ in verdict.problems} == {"1", "2", "3"}, verdict.problems
