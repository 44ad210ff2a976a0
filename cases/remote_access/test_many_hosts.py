"""Several remote hosts at once behind one G_i (draft-gupta Appendix A:
demultiplexing by port and ICMP identifier).

Two remote hosts, each with its own tunnel (fixtures/scenarios/remote-access-many-hosts.yaml):
R (alice) on a foreign network and nh (bob) behind the foreign NAT router. Both talk to H at the same
time and deliberately collide inside their tunnels: the same UDP source port and the same ICMP echo
identifier. Black-box checks:

  * at H (capture on h-srv and the echo sink) both appear as G_i, on distinct UDP ports and with
    distinct ICMP identifiers;
  * each host gets back exactly its own data (payloads name the sender), so G demultiplexed H's
    answers; TCP from both at once works too;
  * where the gateway role reports its NAPT table (ours), it holds one mapping per host and protocol
    with distinct external ports / identifiers.
"""
from __future__ import annotations

import ipaddress
import json
import sys
import threading

import pytest

from testbed.report.verdicts import downgraded
from testbed.ipsec_checks import PLAN, role_of, wait_established
from testbed.daemons import start_daemon

pytestmark = pytest.mark.scenario("remote-access-many-hosts")

H = str(PLAN.address("h"))
G_I = str(PLAN.address("g", "ibb"))
ECHO = 7
SPORT = 40000  # the same inner UDP source port on both hosts
IDENT = 0x4242  # the same ICMP echo identifier on both hosts
COUNT = 30

# runs in a remote host: UDP datagrams from port SPORT and ICMP echoes with identifier IDENT to H,
# interleaved over about a second; every answer is checked against what this host sent
TALK = r"""
import json, os, select, socket, struct, sys, time
host, dst, port, sport, ident, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])

def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b)); s = (s >> 16) + (s & 0xFFFF); s += s >> 16
    return ~s & 0xFFFF

u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", sport)); u.setblocking(False)
r = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP); r.setblocking(False)
out = {"host": host, "udp_sent": 0, "udp_own": 0, "udp_foreign": [], "icmp_sent": 0, "icmp_own": 0,
       "icmp_foreign": [], "icmp_other_ident": 0}
want_udp = {("%s-udp-%d" % (host, i)).encode() for i in range(count)}
want_icmp = {("%s-icmp-%d" % (host, i)).encode() for i in range(count)}
got_udp, got_icmp = set(), set()

def drain():
    while select.select([u, r], [], [], 0)[0]:
        for s in select.select([u, r], [], [], 0)[0]:
            data = s.recv(4096)
            if s is u:
                if data in want_udp: got_udp.add(data)
                else: out["udp_foreign"].append(data.decode(errors="replace"))
            else:
                ihl = (data[0] & 15) * 4
                t, _, _, idn, _ = struct.unpack_from("!BBHHH", data, ihl)
                if t != 0: continue
                if idn != ident: out["icmp_other_ident"] += 1; continue
                payload = data[ihl + 8:]
                if payload in want_icmp: got_icmp.add(payload)
                else: out["icmp_foreign"].append(payload.decode(errors="replace"))

for i in range(count):
    u.sendto(("%s-udp-%d" % (host, i)).encode(), (dst, port)); out["udp_sent"] += 1
    payload = ("%s-icmp-%d" % (host, i)).encode()
    hdr = struct.pack("!BBHHH", 8, 0, 0, ident, i)
    r.sendto(struct.pack("!BBHHH", 8, 0, csum(hdr + payload), ident, i) + payload, (dst, 0)); out["icmp_sent"] += 1
    time.sleep(0.03)
    drain()
end = time.time() + 2
while time.time() < end and (len(got_udp) < count or len(got_icmp) < count):
    select.select([u, r], [], [], 0.05); drain()
out["udp_own"], out["icmp_own"] = len(got_udp), len(got_icmp)
print(json.dumps(out))
"""


@pytest.fixture
def h_capture(world, capture):
    cap = capture("h", "h-srv", bpf="ip")
    yield cap
    cap.stop()


def _clients(roles) -> list:
    clients = [h for h in roles.values() if h.role.kind == "vpn-client"]
    assert len(clients) == 2, f"the scenario should place two vpn-client roles: {[c.role.name for c in clients]}"
    return clients


def _talk(world, node: str) -> dict:
    res = world.run_in(node, [sys.executable, "-c", TALK, node, H, str(ECHO), str(SPORT), str(IDENT), str(COUNT)],
                       timeout=30)
    try:
        return json.loads(res.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise AssertionError(f"the traffic script on {node} failed: {res.stdout}{res.stderr}") from None


def _concurrently(fns: dict) -> dict:
    results, errors = {}, {}

    def run(key, fn):
        try:
            results[key] = fn()
        except BaseException as exc:  # reported below, in the test's thread
            errors[key] = exc

    threads = [threading.Thread(target=run, args=(k, f)) for k, f in fns.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    if errors:
        raise next(iter(errors.values()))
    return results


@pytest.mark.req("gupta-3b-napt-demux", "gupta-3b-napt")
def test_two_remote_hosts_share_g_i_and_get_their_own_answers(world, h_capture, roles, scenario):
    gw = role_of(roles, "vpn-gateway")
    clients = _clients(roles)
    vips = {}
    for c in clients:
        status, _, _ = wait_established(c, timeout=10)
        assert len(status["virtual_ips"]) == 1, status
        vips[c.role.node] = status["virtual_ips"][0]
    assert len(set(vips.values())) == 2, f"the two hosts got the same virtual IP: {vips}"
    g_status, _, _ = wait_established(gw)
    assert set(vips.values()) <= set(g_status["virtual_ips"]), (vips, g_status["virtual_ips"])
    established = [sa for sa in g_status["ike_sas"] if sa["state"] == "ESTABLISHED"]
    assert len(established) == 2, f"the gateway should hold one IKE SA per host: {established}"

    sink = start_daemon(world, "h", "instruments.sink", args=["--tcp", str(ECHO), "--udp", str(ECHO)])
    nodes = [c.role.node for c in clients]

    # -- both at once, colliding inside their tunnels: same UDP source port, same ICMP identifier
    talk = _concurrently({n: (lambda n=n: _talk(world, n)) for n in nodes})
    for node, res in talk.items():
        assert res["udp_foreign"] == [] and res["icmp_foreign"] == [], f"{node} got another host's answers: {res}"
        assert res["udp_own"] >= COUNT - 2 and res["icmp_own"] >= COUNT - 2, \
            f"{node} got too few of its own answers back (at most 2 of {COUNT} may be lost): {res}"
    # TCP from both at once
    tcp = _concurrently({n: (lambda n=n: world.reach(n, "tcp", H, ECHO, timeout=3)) for n in nodes})
    assert all(r["result"] == "ok" for r in tcp.values()), tcp
    world.mark("talked", talk=talk, tcp=tcp)

    # -- at H: both are G_i, on distinct ports and identifiers
    received = sink.status()["received"]
    assert {e["peer"] for e in received} == {G_I}, f"H saw sources other than G_i: {received}"
    udp_ports = {e["peer_port"] for e in received if e["proto"] == "udp"}
    tcp_ports = {e["peer_port"] for e in received if e["proto"] == "tcp"}
    assert len(udp_ports) == 2, f"H should see the two hosts' UDP flows on two distinct G_i ports: {udp_ports}"
    assert len(tcp_ports) == 2, f"H should see the two TCP connections on two distinct G_i ports: {tcp_ports}"
    h_capture.stop()
    echoes = h_capture.packets(f"ip.dst == {H} && icmp.type == 8", ["ip.src", "icmp.ident"])
    assert {r["ip.src"][0] for r in echoes} == {G_I}, f"echo requests at H not from G_i: {echoes[:5]}"
    idents = {int(r["icmp.ident"][0], 0) for r in echoes}
    assert len(idents) == 2, f"H should see two distinct ICMP identifiers (both hosts sent {IDENT:#x}): {idents}"

    # -- the gateway's NAPT table, where the role reports one
    table = gw.status().get("napt")
    if not table:
        downgraded(f"gateway role {gw.role.name} ({g_status.get('implementation')}) reports no NAPT table; "
                   "the demultiplexing is checked at H only")
        return
    for proto, inner_port in (("udp", SPORT), ("icmp", IDENT)):
        rows = [r for r in table if r["proto"] == proto and r["inner"] in {f"{v}:{inner_port}" for v in vips.values()}]
        assert {r["inner"].split(":")[0] for r in rows} == set(vips.values()), \
            f"the NAPT table lacks a {proto} mapping for each host's {inner_port}: {table}"
        externals = {r["external"] for r in rows}
        assert len(externals) == len(rows) == 2, f"{proto} mappings of the two hosts share an external port: {rows}"
        assert all(ipaddress.ip_address(e.split(":")[0]) == ipaddress.ip_address(G_I) for e in externals), rows
        assert len({r["peer"] for r in rows}) == 2, f"both {proto} mappings point to the same tunnel: {rows}"
