"""MVN: coverage of RFC 5265 for the mobile VPN node: periodic re-registration through the intranet's
foreign agent (mode 'f'), periodic re-registration with the i-HA while user traffic flows, and no
plaintext mode on hints alone (the i-HA must have answered). The tester is the i-HA (10.1.1.2 in iha)
and the agent on the intranet's visited subnet ivn; see test_rfc5265_mvn.py for the world."""
import time
from ipaddress import IPv4Address

from testbed.conformance.mip.messages import TrustedNetworksConfigured
from testbed.conformance.mip.tunnels import ipip_decapsulate, ipip_encapsulate
from testbed.conformance.mip_mn_env import CORRESPONDENT, AtHa, Frame, echo_reply_in, pingable
from testbed.conformance.parts import inconclusive, part

I_HA = IPv4Address("10.1.1.2")
X_HA = IPv4Address("203.0.113.71")
IVN_COA = IPv4Address("10.1.4.100")
NEEDS = ["mip.rfc5265"]


def _i_ha_request(src=None):
    def match(i) -> bool:
        return isinstance(i, AtHa) and i.request is not None and (src is None or IPv4Address(i.src) == src)
    return match


def _answer(vt, at: AtHa, lifetime: int, tnc: bool = True) -> None:
    data = vt.answer(at.data, 0, lifetime=lifetime, extensions_before=[TrustedNetworksConfigured()] if tnc else [])
    vt.ha_reply(at, data, what=f"code 0, lifetime {lifetime}, {'with' if tnc else 'without'} extension 149")


def _is_ike(i) -> bool:
    """IKE toward the gateway, plain or inside the x-MIP tunnel (IP-in-IP or RFC 3519 tunnel data)."""
    if not isinstance(i, Frame) or i.ip is None:
        return False
    if i.udp is not None and i.udp.dport in (500, 4500):
        return True
    inner = i.ip.payload if i.ip.protocol == 4 else (i.udp.payload[4:] if i.udp is not None and i.udp.dport == 434
                                                      and i.udp.payload[:1] == b"\x04" else b"")
    return len(inner) >= 24 and inner[9] == 17 and int.from_bytes(inner[22:24], "big") in (500, 4500)


@part("MIP.MVN.COV.1", "In mode f (the intranet's foreign agent), the node re-registers through the agent periodically",
      ["rfc5265-2.2-b", "rfc5265-2.2-a"], needs=NEEDS)
def test_mode_f_periodic(vtester, steps):
    vtester.attach("ivn")
    a = vtester.agent("ivn")
    vtester.advertise(a, "RF", prefix_length=24)
    start = time.monotonic()
    times, end = [], start + 3.6
    while (left := end - time.monotonic()) > 0:
        f = vtester.take(lambda i: isinstance(i, Frame) and i.request is not None and i.ip.dst == a.address
                         and i.request.home_address == vtester.home and i.request.lifetime > 0, left)
        if f is None:
            break
        times.append(round(time.monotonic() - start, 2))
        vtester.fa_reply(f, vtester.answer(f.udp.payload, 0, lifetime=2,
                                           extensions_before=[TrustedNetworksConfigured()]),
                         agent=a, what="relayed i-HA reply: code 0, lifetime 2, extension 149")
        vtester.advertise(a, "RF", prefix_length=24)  # the agent stays there
    if not times:
        inconclusive("no i-MIP request through the agent on ivn")
    later = [t for t in times if t >= times[0] + 1.0]
    steps.record("advertisement R F on ivn; every request answered (relayed) with 149 and lifetime 2 s",
                 "a re-registration through the agent within the lifetime", f"requests at +{times} s", ok=bool(later))
    assert later, f"no re-registration through the agent after the first (requests at +{times} s, lifetime 2 s)"


@part("MIP.MVN.COV.2", "Inside, the node keeps re-registering with the i-HA while user traffic flows both ways",
      ["rfc5265-3.2.4-e"], needs=NEEDS)
def test_inside_reregisters_with_traffic(vtester, steps):
    vtester.place("ivn")
    first = vtester.take(_i_ha_request(IVN_COA), 3.0)
    if first is None:
        inconclusive(f"no registration request at the i-HA from {IVN_COA}")
    _answer(vtester, first, 2)
    start, requests, echoes, sent = time.monotonic(), [], 0, 0
    while time.monotonic() - start < 3.4:
        ident = vtester.next_ident()
        vtester.ha_send_ip(ipip_encapsulate(pingable(CORRESPONDENT, vtester.home, ident), I_HA, IVN_COA),
                           "IP-in-IP echo request H -> i-HoA")
        sent += 1
        deadline = time.monotonic() + 0.25
        while (left := deadline - time.monotonic()) > 0:
            item = vtester.take(lambda i: _i_ha_request(IVN_COA)(i) or (
                isinstance(i, AtHa) and i.kind == "ip" and i.protocol == 4), left)
            if item is None:
                break
            if item.kind == "udp":
                requests.append(round(time.monotonic() - start, 2))
                _answer(vtester, item, 2)
            else:
                d = ipip_decapsulate(item.data)
                echoes += bool(d.ok and echo_reply_in(d.value.inner, ident))
    steps.record("inside (149, lifetime 2 s); an echo request H -> i-HoA every 0.25 s for 3.4 s",
                 "echo replies back through the reverse tunnel, and re-registrations with the i-HA",
                 f"{echoes}/{sent} echo replies; requests at +{requests} s", ok=bool(requests) and echoes > 0)
    if echoes == 0:
        inconclusive("no user traffic came back from the node inside")
    assert requests, f"no re-registration with the i-HA in 3.4 s of traffic ({echoes} echo replies), lifetime 2 s"


@part("MIP.MVN.COV.3", "On an intranet link whose i-HA stays silent, the node does not go plaintext: no x-HA "
      "deregistration, the VPN comes up", ["rfc5265-3.5-c", "rfc5265-3-a"], needs=NEEDS)
def test_no_plaintext_on_hints(vtester, steps):
    vtester.place("ivn")
    got = vtester.collect_until(_is_ike, 3.5)
    dereg = [g for g in got if isinstance(g, Frame) and g.request is not None and g.ip.dst == X_HA
             and g.request.lifetime == 0]
    ike = [g for g in got if _is_ike(g)]
    steps.record(f"attach to ivn (intranet address {IVN_COA}); the i-HA never answers",
                 "no deregistration from the x-HA; IKE toward the gateway",
                 f"deregistrations {[g.summary() for g in dereg]}; IKE {ike[0].summary() if ike else 'none'}",
                 ok=not dereg and bool(ike))
    assert not dereg, f"the node left the VPN path (deregistered from the x-HA) without an i-HA reply: {dereg[0].summary()}"
    assert ike, "no IKE toward the gateway within 3.5 s while the i-HA stays silent"
