"""The reachability matrix before any VPN exists (draft-gupta section 2; problem statement figure 6)."""
import pytest

from testbed.daemons import start_daemon
from testbed.plan import default_plan

pytestmark = pytest.mark.scenario("bare-world")

PLAN = default_plan()
CORE_TO_AR1 = PLAN.address("core", "core-ar1")
G_E = PLAN.address("g", "dmz")
G_I = PLAN.address("g", "ibb")
INTRANET = {name: PLAN.address(name) for name in ("ir", "iha", "h", "dns")} | {"g (G_i)": G_I}


def one_echo(world, src, dst):
    """One echo request; ping ends at the first answer or ICMP error, else after 2 s (a loaded
    machine may take longer than a few hundred ms to deliver the core's unreachable)."""
    return world.run_in(src, ["ping", "-n", "-c", "1", "-W", "2", str(dst)])


@pytest.mark.req("ps-1.1-dmz-guarded")
def test_remote_host_reaches_public_server_and_gateway(world):
    assert world.ping("r", PLAN.address("pub")), "R on fn1 must reach the public server"
    assert world.ping("r", G_E), "R on fn1 must reach the gateway's external address G_e"


@pytest.mark.parametrize("outsider", ["r", "atk"])
@pytest.mark.req("gupta-2-private-unreachable", "ps-4.3-ha-behind-vpn")
def test_no_intranet_address_is_reachable_from_the_internet(world, outsider):
    for name, addr in INTRANET.items():
        out = one_echo(world, outsider, addr)
        assert out.returncode != 0, f"{outsider} reached intranet address {addr} ({name})"
        # the packet dies at the core router, which has no route to private addresses
        assert "Unreachable" in out.stdout, f"expected an ICMP unreachable for {addr}, got:\n{out.stdout}"


@pytest.mark.req("gupta-2-private-unreachable")
def test_unreachable_comes_from_the_core_router(world):
    out = one_echo(world, "r", PLAN.address("h"))
    assert f"From {CORE_TO_AR1}" in out.stdout and "Destination Net Unreachable" in out.stdout, out.stdout


@pytest.mark.req("testbed-nat-router")
def test_nat_translates_the_source_of_hosts_behind_it(world, capture):
    public_side = capture("pub", "pub-inet", bpf="icmp or udp")
    inside = capture("nh", "nh-fn3", bpf="icmp or udp")
    sink = start_daemon(world, "pub", "instruments.sink", args=["--udp", "5555"])
    assert world.ping("nh", PLAN.address("pub"))
    assert world.reach("nh", "udp", PLAN.address("pub"), 5555)["result"] == "ok"
    public_side.stop(), inside.stop()

    nat_outside = str(PLAN.address("nat", "core-nat"))
    nh = str(PLAN.address("nh"))
    at_pub = public_side.packets("icmp.type == 8 || udp.dstport == 5555", ["ip.src", "ip.dst"])
    assert at_pub, "no echo request or UDP datagram from behind the NAT arrived at pub"
    assert {row["ip.src"][0] for row in at_pub} == {nat_outside}, f"sources seen at pub: {at_pub}"
    at_nh = inside.packets("icmp.type == 8 || udp.dstport == 5555", ["ip.src"])
    assert {row["ip.src"][0] for row in at_nh} == {nh}
    assert [r["peer"] for r in sink.status()["received"]] == [nat_outside]


@pytest.mark.req("ps-1.1-dmz-guarded", "ps-4.3-ha-behind-vpn")
def test_dmz_policy_at_the_gateway(world):
    """From the Internet, G_e admits IKE (UDP 500, 4500), ESP and ICMP echo, nothing else; nothing is
    forwarded from the DMZ into the intranet. From the intranet, G_i answers."""
    sink = start_daemon(world, "g", "instruments.sink", args=["--tcp", "22,80", "--udp", "53,500,4500"])
    assert world.reach("r", "udp", G_E, 500)["result"] == "ok"
    assert world.reach("r", "udp", G_E, 4500)["result"] == "ok"
    for proto, port in (("tcp", 22), ("tcp", 80), ("udp", 53)):
        res = world.reach("r", proto, G_E, port, timeout=0.5)
        assert res["result"] == "timeout", f"{proto}/{port} to G_e from the Internet must be dropped: {res}"
    assert world.ping("r", G_E)
    # from the inside the same listener is reachable on G_i
    assert world.reach("h", "tcp", G_I, 22)["result"] == "ok"
    seen = {(e["proto"], e["port"], e["peer"]) for e in sink.status()["received"]}
    r_addr = str(PLAN.attachments["fn1"].address)
    assert seen == {("udp", 500, r_addr), ("udp", 4500, r_addr), ("tcp", 22, str(PLAN.address("h")))}, seen

    # a DMZ host that routes intranet traffic at G_e gets nothing forwarded
    world.run_in("xha", f"ip route add 10.1.0.0/16 via {G_E}", check=True)
    assert not world.ping("xha", PLAN.address("h"), timeout=0.5), "G forwarded a packet from the DMZ into the intranet"
    counters = world.run_in("g", "iptables -L FORWARD -nvx", check=True).stdout
    assert "policy DROP" in counters and "policy DROP 0 packets" not in counters, counters
