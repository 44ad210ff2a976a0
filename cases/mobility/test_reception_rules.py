"""What the agents accept on reception and how they answer a solicitation (RFC 5944 2.1, 3.3, 3.8.2.1, 5.7; RFC 3519 3.1). Packets are built with scapy and struct, the
authenticators with Python's hmac (not with our codecs), and sent from R on fn1 while R's own
registration through FA1 stands; every request leaves that binding in place."""
import json
import sys

import pytest

from testbed.mip_checks import FA1, HA, HOME, KEY, binding, still_bound

pytestmark = pytest.mark.scenario("mobility-open-intranet")

REQUESTS = r"""
import hashlib, hmac, json, socket, struct, sys, time
from scapy.layers.mobileip import MobileIP, MobileIPRRP, MobileIPRRQ
spec = json.loads(sys.argv[1])
key = bytes.fromhex(spec["key"])
NTP = 2208988800
out = []
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 255)
    s.bind((spec["bind"], 0))
    for r in spec["requests"]:
        now = time.time() + r.get("ident_delta", 0.0)
        ident = ((int(now) + NTP) << 32) | int((now % 1) * (1 << 32))
        msg = bytes(MobileIP(type=1) / MobileIPRRQ(flags=r.get("flags", 0), lifetime=r.get("lifetime", 1800),
                    homeaddr=spec["home"], haaddr=spec["ha"], coaddr=r["coa"], id=ident))
        msg += bytes.fromhex(r.get("extensions", ""))
        for spi in r.get("spis", [1000]):
            head = bytes([32, 20]) + struct.pack("!I", spi)
            msg += head + hmac.new(key, msg + head, hashlib.md5).digest()
        s.settimeout(2.0)
        s.sendto(msg, (r["to"], 434))
        code = None
        try:
            while code is None:
                raw, peer = s.recvfrom(2048)
                reply = MobileIP(raw)
                if reply.type == 3 and reply[MobileIPRRP].id & 0xFFFFFFFF == ident & 0xFFFFFFFF:
                    code = reply[MobileIPRRP].code
        except (socket.timeout, TimeoutError):
            pass
        out.append(code)
print(json.dumps(out))
"""


def codes(world, *requests) -> list:
    """Send registration requests from R (bound to the home address), one after the other; the
    reply code of each (None without a reply)."""
    spec = {"key": KEY, "bind": HOME, "home": HOME, "ha": HA, "requests": list(requests)}
    res = world.run_in("r", [sys.executable, "-c", REQUESTS, json.dumps(spec)], timeout=30)
    assert res.returncode == 0, f"the request sender failed: {res.stdout}{res.stderr}"
    return json.loads(res.stdout.strip().splitlines()[-1])


def udp_tunnel_request(reserved1=0, flags=0, encapsulation=4, reserved3=0) -> str:
    """RFC 3519 UDP Tunnel Request extension (type 144, length 6, sub-type 0), hex."""
    return bytes([144, 6, 0, reserved1, flags, encapsulation]).hex() + f"{reserved3:04x}"


@pytest.mark.req("rfc5944-reserved-ignored")
def test_reserved_request_flags_are_ignored(world, on_fn1):
    """r (0x04) and x (0x01): sent as zero, ignored on reception, at the HA and at the FA."""
    assert codes(world, {"to": HA, "coa": FA1, "flags": 0x05}, {"to": FA1, "coa": FA1, "flags": 0x05}) == [0, 0]
    still_bound(world, on_fn1)


@pytest.mark.req("rfc5944-3.8.2.1-one-mn-ha-auth")
def test_two_mn_ha_authentication_extensions_give_131(world, on_fn1):
    assert codes(world, {"to": HA, "coa": FA1, "spis": [1000, 1000]}, {"to": FA1, "coa": FA1, "spis": [1000, 1000]}) \
        == [131, 131]
    assert on_fn1["ha"].status()["counters"].get("denied:131") == 2
    still_bound(world, on_fn1)


@pytest.mark.req("rfc5944-3.8.2.1-one-mn-ha-auth")
def test_reserved_spi_gives_131(world, on_fn1):
    assert codes(world, {"to": HA, "coa": FA1, "spis": [255]}, {"to": FA1, "coa": FA1, "spis": [0]}) == [131, 131]
    assert "denied:134" not in on_fn1["ha"].status()["counters"]
    still_bound(world, on_fn1)


@pytest.mark.req("rfc5944-reserved-ignored")
def test_udp_tunnel_request_reserved_fields_are_ignored(world, on_fn1):
    """Through FA1 (source and care-of address agree: no NAT, so the HA keeps IP-in-IP)."""
    ext = udp_tunnel_request(reserved1=0xFF, flags=0x3F, reserved3=0xFFFF)
    assert codes(world, {"to": FA1, "coa": FA1, "extensions": ext}) == [0]
    assert binding(on_fn1["ha"])["kind"] == "ipip"
    still_bound(world, on_fn1)


@pytest.mark.req("rfc5944-5.7-replay")
def test_replay_protection_follows_accepted_identifications(world, on_fn1):
    """A request denied after authentication (142: an RFC 3519 UDP tunnel asked with GRE, RFC 3519
    4.1; D set, as RFC 3519 3.1.5 asks of a node that places the extension itself) must not become
    the identification later requests have to exceed; an accepted one must."""
    gre = udp_tunnel_request(encapsulation=47)
    first, second, replayed = codes(world, {"to": HA, "coa": FA1, "extensions": gre, "flags": 0x20, "ident_delta": 3.0},
                                    {"to": HA, "coa": FA1, "ident_delta": 1.5},
                                    {"to": HA, "coa": FA1, "ident_delta": 1.0})
    assert (first, second) == (142, 0), "the lower identification after a denial must be accepted"
    assert replayed == 133, "below the last accepted identification: 133"
    still_bound(world, on_fn1)


SOLICIT = r"""
import json, sys, time
from scapy.all import ICMP, IP, AsyncSniffer, Ether, get_if_hwaddr, sendp
iface, home, fa = sys.argv[1:4]
sniffer = AsyncSniffer(iface=iface, store=True,
                       lfilter=lambda p: IP in p and ICMP in p and p[ICMP].type == 9 and p[IP].src == fa)
sniffer.start()
time.sleep(0.5)
t = time.time()
sendp(Ether(dst="01:00:5e:00:00:02", src=get_if_hwaddr(iface)) / IP(src=home, dst="224.0.0.2", ttl=1) / ICMP(type=10),
      iface=iface, verbose=False)
time.sleep(0.8)
sniffer.stop()
print(json.dumps([{"dst": p[IP].dst, "ttl": p[IP].ttl, "after": round(float(p.time) - t, 4)} for p in sniffer.results]))
"""


@pytest.mark.req("rfc5944-2.1-adv-destination")
def test_solicited_advertisement_goes_to_all_systems(world, on_fn1):
    """RFC 5944 2.1: an Agent Advertisement's destination is 224.0.0.1 or 255.255.255.255, the
    answer to a solicitation too (not the soliciting address)."""
    before = on_fn1["fa1"].status()["counters"].get("solicitations", 0)
    res = world.run_in("r", [sys.executable, "-c", SOLICIT, "r-eth0", HOME, FA1], timeout=30)
    assert res.returncode == 0, f"the solicitation sender failed: {res.stdout}{res.stderr}"
    adverts = json.loads(res.stdout.strip().splitlines()[-1])
    assert on_fn1["fa1"].status()["counters"].get("solicitations", 0) == before + 1
    answers = [a for a in adverts if 0 <= a["after"] <= 0.3]
    assert answers, f"no advertisement within 0.3 s of the solicitation: {adverts}"
    assert all(a["dst"] in ("224.0.0.1", "255.255.255.255") and a["ttl"] == 1 for a in adverts), adverts
    still_bound(world, on_fn1)
