"""Redirection rules at the NAPT gateway: connections initiated from the intranet toward a remote host
(draft-gupta Appendix C: explicit redirection rules for inbound connections through NAPT).

Appendix C: with NAPT at G, a host H on the intranet cannot open a connection to a remote host R:
R's external address is not routed inside, and a packet to G_i finds no NAPT mapping telling G
which remote host it is for. Explicit mappings (redirection rules) are the workaround. The scenario
(fixtures/scenarios/remote-access-redirect.yaml) gives G the rules G_i:2222/tcp and G_i:2222/udp ->
alice's tunnel-inner address, port 7, where an echo sink listens on R. Black-box checks:

  * H connects to G_i:2222 (TCP) and sends to G_i:2222 (UDP) and gets its data echoed; the sink on R
    records H as the peer (the connection came through the tunnel, H's address unchanged); H sees
    only G_i as its peer; the gateway reports the rules as bound to alice's tunnel;
  * a port without a rule (2223) reaches nothing on R: the Appendix C situation;
  * when alice's tunnel goes, the rule goes with it: G_i:2222 reaches nothing on R any more.

R's host hardening (draft-gupta section 4) still drops unsolicited inbound from the Internet
(cases/security/test_attacks.py); it admits connections arriving through the tunnel, which only G
can send. Redirection rules are an optional gateway feature: a gateway whose status reports no
`redirects` has none, and the case is not applicable to it (so no impl_matrix).
"""
from __future__ import annotations

import json
import sys
import time

import pytest

from testbed.ipsec_checks import PLAN, check_tunnel, role_of
from testbed.daemons import start_daemon
from testbed.report.verdicts import not_applicable

pytestmark = pytest.mark.scenario("remote-access-redirect")

H = str(PLAN.address("h"))
G_I = str(PLAN.address("g", "ibb"))
PORT, NO_RULE, ECHO = 2222, 2223, 7

# runs in H: one TCP connection (or one UDP datagram) to G_i:port with a payload; prints what came
# back and the local/peer ends as one JSON line
ECHO_PROBE = r"""
import json, socket, sys
proto, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
payload = b"redirect-probe-" + proto.encode()
out = {"proto": proto, "sent": payload.decode()}
kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
with socket.socket(socket.AF_INET, kind) as s:
    s.settimeout(3)
    try:
        s.connect((host, port))
        s.send(payload)
        got = b""
        while len(got) < len(payload):
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        out.update(result="ok", echo=got.decode(errors="replace"), local=s.getsockname(), peer=s.getpeername())
    except OSError as exc:
        out.update(result=type(exc).__name__ + ": " + str(exc))
print(json.dumps(out))
"""


def echo_probe(world, proto: str, port: int) -> dict:
    res = world.run_in("h", [sys.executable, "-c", ECHO_PROBE, proto, G_I, str(port)], timeout=15)
    try:
        return json.loads(res.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise AssertionError(f"the echo probe on H failed: {res.stdout}{res.stderr}") from None


@pytest.fixture
def sink(world):
    """The echo sink on R, port 7 (TCP and UDP), started before the roles."""
    return start_daemon(world, "r", "instruments.sink", args=["--tcp", str(ECHO), "--udp", str(ECHO)])


def redirecting_gateway(roles) -> object:
    """The gateway role, when it has redirection rules (its status reports `redirects`)."""
    gw = role_of(roles, "vpn-gateway")
    if "redirects" not in gw.status():
        not_applicable(f"the {gw.role.impl} gateway has no redirection rules (its status reports no `redirects`)")
    return gw


def wait_redirects(gw, active: bool, timeout: float = 5.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        rules = gw.status().get("redirects", [])
        if rules and all(r["active"] is active for r in rules):
            return rules
        if time.monotonic() > deadline:
            raise AssertionError(f"the gateway's redirects are not all {'active' if active else 'inactive'} "
                                 f"after {timeout} s: {rules}")
        time.sleep(0.1)


@pytest.mark.req("gupta-appc-redirect")
def test_intranet_host_reaches_remote_host_through_redirect(world, sink, capture, roles, scenario):
    """H -> G_i:2222 (TCP and UDP) reaches the echo sink on R at port 7 and gets the echo."""
    gw = redirecting_gateway(roles)
    vip = check_tunnel(roles, scenario)["vip"]
    rules = wait_redirects(gw, active=True)
    assert {(r["proto"], r["port"], r["user"], r["to_port"]) for r in rules} == \
        {("tcp", PORT, "alice", ECHO), ("udp", PORT, "alice", ECHO)}, rules
    assert all(r["to"] == f"{vip}:{ECHO}" and r["external"] == f"{G_I}:{PORT}" for r in rules), rules
    at_h = capture("h", "h-srv", bpf="tcp or udp", name="h-redirect")

    for proto in ("tcp", "udp"):
        got = echo_probe(world, proto, PORT)
        assert got["result"] == "ok", f"H gets no {proto} connection to R through G_i:{PORT}: {got}"
        assert got["echo"] == got["sent"], f"R's echo sink did not answer H over {proto}: {got}"
        assert got["peer"] == [G_I, PORT], got
    assert world.reach("h", "tcp", G_I, PORT, timeout=2)["result"] == "ok"
    at_h.stop()

    received = sink.status()["received"]
    assert {(e["proto"], e["port"]) for e in received} >= {("tcp", ECHO), ("udp", ECHO)}, \
        f"the sink on R did not record the connections: {received}"
    assert {e["peer"] for e in received} == {H}, f"R should see H's own address as the peer: {received}"
    # on H's link, H talks only with G_i:2222 (R's inner address never shows inside)
    rows = at_h.packets(f"ip.addr == {H} && (tcp.port == {PORT} || udp.port == {PORT})", ["ip.src", "ip.dst"])
    assert rows and {(x["ip.src"][0], x["ip.dst"][0]) for x in rows} <= {(H, G_I), (G_I, H)}, rows
    napt = gw.status()["napt"]
    static = {(m["proto"], m["external"], m["inner"]) for m in napt if m["static"]}
    assert static == {("tcp", f"{G_I}:{PORT}", f"{vip}:{ECHO}"), ("udp", f"{G_I}:{PORT}", f"{vip}:{ECHO}")}, napt


@pytest.mark.req("gupta-appc-no-mapping")
def test_port_without_rule_reaches_nothing(world, sink, capture, roles, scenario):
    """Appendix C: without a rule (G_i:2223) G has no mapping to a remote host: nothing reaches R."""
    redirecting_gateway(roles)
    check_tunnel(roles, scenario)
    at_r = capture("r", "any", bpf=f"src host {H}", name="r-from-h")
    for proto in ("tcp", "udp"):
        got = echo_probe(world, proto, NO_RULE)
        assert got["result"] != "ok", f"{proto} to G_i:{NO_RULE} (no rule) got an answer: {got}"
    at_r.stop()
    assert sink.status()["received"] == [], "something reached the sink on R without a rule"
    seen = at_r.packets(None, ["ip.src", "ip.dst", "ip.proto"])
    assert seen == [], f"packets from H reached R without a redirection rule: {seen}"


@pytest.mark.req("gupta-appc-redirect-follows")
def test_redirect_goes_with_the_tunnel(world, sink, capture, roles, scenario):
    """When alice's tunnel goes (her client stops), G removes the rule's mapping: G_i:2222 reaches
    nothing on R any more, and the status shows the rules unbound."""
    gw = redirecting_gateway(roles)
    check_tunnel(roles, scenario)
    wait_redirects(gw, active=True)
    assert echo_probe(world, "udp", PORT)["result"] == "ok"
    role_of(roles, "vpn-client").stop()
    rules = wait_redirects(gw, active=False)
    assert all(r["to"] is None for r in rules), rules
    assert not [m for m in gw.status()["napt"] if m["static"]], gw.status()["napt"]
    before = len(sink.status()["received"])
    at_r = capture("r", "any", bpf=f"src host {H}", name="r-after-down")
    for proto in ("tcp", "udp"):
        got = echo_probe(world, proto, PORT)
        assert got["result"] != "ok", f"{proto} to G_i:{PORT} still answered after the tunnel went: {got}"
    at_r.stop()
    assert len(sink.status()["received"]) == before, sink.status()["received"]
    assert at_r.packets(None, ["ip.src"]) == []


@pytest.mark.req("gupta-appc-redirect-follows")
def test_redirect_follows_the_remote_host_to_a_new_network(world, sink, roles, scenario):
    """Appendix C: explicit mappings "must be updated whenever the mobile node's address changes".
    R moves from fn1 to fn2 (a new outer address) and connects again; the rule names the user, not
    an address, so G binds it to R's new tunnel by itself and H reaches R through G_i:2222 again."""
    from testbed.handoff import move
    from testbed.profiles import start_role

    gw = redirecting_gateway(roles)
    check_tunnel(roles, scenario)
    first = {r["ike_sa"] for r in wait_redirects(gw, active=True)}
    client = role_of(roles, "vpn-client")
    client.stop()
    move(world, "r", "fn2")
    roles[client.role.name] = start_role(world, client.role)
    vip = check_tunnel(roles, scenario)["vip"]
    rules = wait_redirects(gw, active=True)
    assert {r["ike_sa"] for r in rules}.isdisjoint(first), f"the rules stayed on the old tunnel: {rules}"
    assert all(r["to"] == f"{vip}:{ECHO}" for r in rules), rules
    new_outer = str(PLAN.attachments["fn2"].address)
    remotes = {sa["remote_host"] for sa in gw.status()["ike_sas"] if sa.get("state") == "ESTABLISHED"}
    assert remotes == {new_outer}, f"G's tunnel to R is not from R's new address {new_outer}: {remotes}"
    for proto in ("tcp", "udp"):
        got = echo_probe(world, proto, PORT)
        assert got["result"] == "ok" and got["echo"] == got["sent"], \
            f"H gets no {proto} echo from R through G_i:{PORT} after R moved: {got}"
