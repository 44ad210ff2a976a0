"""The gateway found by a DNS name (draft-gupta section 5: "the gateway's IP address may be published
through DNS"), by its A record and,
in the modern form of the draft's reference [Atki97], by the IPSECKEY record of the domain (RFC 4025).

A public resolver, dnsmasq on node pub (198.51.100.10), answers vpn.example.net with G_e
(203.0.113.70). R's resolver configuration is pointed at it privately: a file bind-mounted over
/etc/resolv.conf inside R's own mount namespace (the machine's file is never touched), before the
roles start, so the client resolves the name at start the way any application on R would. The roles
are started by the case (not the `roles` fixture, which would start them before the resolver).
"""
from __future__ import annotations

import dataclasses
import ipaddress
import json
import time

import pytest

from testbed.ipsec_checks import PLAN, role_of, start_dns_server, wait_established
from testbed.profiles import RoleUnavailable, start_role
from testbed.report.verdicts import not_run

pytestmark = pytest.mark.scenario("remote-access-by-name")

H = str(PLAN.address("h"))
PUB = str(PLAN.address("pub"))  # 198.51.100.10
G_E = str(PLAN.address("g"))  # 203.0.113.70
NAME = "vpn.example.net"
UNKNOWN = "novpn.example.net"
DOMAIN = "example.net"             # IPSECKEY: precedence 10 -> G_e, precedence 20 -> atk (must not win)
BROKEN = "broken.example.net"      # IPSECKEY whose IPv4 gateway is cut to two bytes
ATK = str(PLAN.address("atk"))
KEY = bytes(range(1, 33))          # an opaque public key (algorithm 2): the client does not use it


def ipseckey(precedence: int, gateway: str, algorithm: int = 2) -> bytes:
    """IPSECKEY RDATA (RFC 4025 section 2.1): precedence, gateway type 1 (IPv4), algorithm, gateway, key."""
    return bytes([precedence, 1, algorithm]) + ipaddress.IPv4Address(gateway).packed + KEY


@pytest.fixture
def public_dns(world):
    """dnsmasq on pub answering only NAME -> G_e and the IPSECKEY records above (no upstream, no hosts file)."""
    return start_dns_server(world, "pub", PUB, {NAME: G_E}, records=[
        (DOMAIN, 45, ipseckey(20, ATK)), (DOMAIN, 45, ipseckey(10, G_E)),
        (BROKEN, 45, bytes([10, 1, 0]) + ipaddress.IPv4Address(G_E).packed[:2])], zones=[DOMAIN])


@pytest.fixture
def r_resolver(world, public_dns, case_dir):
    """R's /etc/resolv.conf names pub, by a bind mount inside R's mount namespace; undone after."""
    conf = case_dir / "r-resolv.conf"
    conf.write_text(f"nameserver {PUB}\noptions timeout:1 attempts:2\n")
    before = world.run_in("r", ["cat", "/etc/resolv.conf"]).stdout
    world.run_in("r", ["mount", "--bind", str(conf), "/etc/resolv.conf"], check=True)
    got = world.run_in("r", ["getent", "hosts", NAME], timeout=10)
    assert got.returncode == 0 and got.stdout.split()[:1] == [G_E], \
        f"R's resolver does not answer {NAME} -> {G_E} before the roles start: {got.stdout!r} {got.stderr!r}"
    yield conf
    world.run_in("r", ["umount", "/etc/resolv.conf"])
    assert world.run_in("r", ["cat", "/etc/resolv.conf"]).stdout == before


@pytest.fixture
def start_roles(world, r_resolver, scenario):
    """Starts the scenario's roles (the client's config amended by keyword); stops them before R's
    resolver configuration is put back (the client stacks its own resolv.conf while the tunnel is up)."""
    started = {}

    def start(**client_config):
        try:
            for role in scenario.roles.values():
                if role.kind == "vpn-client" and client_config:
                    role = dataclasses.replace(role, config={**role.config, **client_config})
                started[role.name] = start_role(world, role)
        except RoleUnavailable as exc:
            not_run(str(exc))
        return started

    yield start
    for handle in reversed(list(started.values())):
        handle.stop()


@pytest.mark.req("gupta-5-gateway-by-name")
def test_client_reaches_the_gateway_by_its_name(world, capture, start_roles, scenario):
    """The client resolves vpn.example.net to G_e through R's resolver (its query and pub's answer
    are on the wire), sets the tunnel up with G (IKE with G_e as the peer on both sides) and R
    reaches H through it."""
    dns_at_pub = capture("pub", "any", bpf="udp port 53", name="pub-dns")
    roles = start_roles()
    client, gw = role_of(roles, "vpn-client"), role_of(roles, "vpn-gateway")
    c_status, c_ike, c_child = wait_established(client, timeout=10)
    g_status, g_ike, g_child = wait_established(gw)
    assert c_ike["remote_host"] == G_E, f"the client's IKE SA is with {c_ike['remote_host']}, not G_e {G_E}"
    assert c_status.get("gateway") == G_E and c_status.get("gateway_name") == NAME, \
        {k: c_status.get(k) for k in ("gateway", "gateway_name")}
    assert (c_ike["spi_i"], c_ike["spi_r"]) == (g_ike["spi_i"], g_ike["spi_r"])
    assert (c_child["spi_in"], c_child["spi_out"]) == (g_child["spi_out"], g_child["spi_in"])
    vip = c_status["virtual_ips"][0]
    assert ipaddress.ip_address(vip) and vip in g_status["virtual_ips"]
    assert world.ping("r", H, timeout=3), "R does not reach H through the gateway it found by name"
    dns_at_pub.stop()
    r = str(PLAN.attachments[world.attached["r"]].address)
    answers = dns_at_pub.packets(f'dns.flags.response == 1 && dns.qry.name == "{NAME}"', ["ip.dst", "dns.a"])
    assert any(row["ip.dst"] == [r] and G_E in row["dns.a"] for row in answers), \
        f"no answer {NAME} -> {G_E} from pub to R ({r}) on the wire while the client started: {answers}"
    events = [json.loads(line) for line in
              (world.log_dir / "r.client.events.jsonl").read_text().splitlines() if line.strip()]
    resolved = [e for e in events if e.get("event") == "gateway_resolved"]
    assert resolved and resolved[0].get("address") == G_E and resolved[0].get("name") == NAME, resolved


@pytest.mark.req("gupta-5-gateway-by-name")
def test_a_name_that_does_not_resolve_is_reported(world, start_roles, scenario):
    """A gateway name the resolver does not know: the client keeps running, sets no tunnel up and
    says why in its status (last_error names the name) and its log (gateway_unresolved)."""
    roles = start_roles(gateway=UNKNOWN)
    client = role_of(roles, "vpn-client")
    deadline = time.monotonic() + 10
    while True:
        status = client.status()
        if status.get("last_error"):
            break
        assert time.monotonic() < deadline, f"no error reported for the unknown gateway name: {status}"
        time.sleep(0.1)
    assert UNKNOWN in status["last_error"] and "resolve" in status["last_error"], status["last_error"]
    assert status["state"] != "established" and not status["ike_sas"], status
    assert status.get("gateway") is None, status
    events = [json.loads(line) for line in
              (world.log_dir / "r.client.events.jsonl").read_text().splitlines() if line.strip()]
    assert any(e.get("event") == "gateway_unresolved" and e.get("name") == UNKNOWN for e in events), events[-10:]
    assert not world.ping("r", H, timeout=1), "R reaches H without a tunnel?"


@pytest.mark.req("gupta-5-ipseckey")
def test_client_finds_the_gateway_by_the_domains_ipseckey_record(world, start_roles, scenario):
    """RFC 4025: the client looks up example.net's IPSECKEY records in the public DNS and uses the
    gateway of the lowest precedence (10: G_e; the record of precedence 20 names atk), sets the tunnel
    up with it and R reaches H."""
    roles = start_roles(gateway=DOMAIN, gateway_lookup="ipseckey")
    client, gw = role_of(roles, "vpn-client"), role_of(roles, "vpn-gateway")
    c_status, c_ike, _ = wait_established(client, timeout=10)
    wait_established(gw)
    assert c_ike["remote_host"] == G_E, f"the client chose {c_ike['remote_host']}, not G_e {G_E} (precedence 10)"
    assert c_status.get("gateway_lookup") == "ipseckey" and c_status.get("gateway_name") == DOMAIN, c_status
    assert world.ping("r", H, timeout=3), "R does not reach H through the gateway its domain's IPSECKEY names"


@pytest.mark.req("gupta-5-ipseckey")
@pytest.mark.parametrize("domain, says", [(UNKNOWN, "is missing"), (NAME, "is missing"), (BROKEN, "malformed")])
def test_a_missing_or_malformed_ipseckey_record_is_reported(world, start_roles, domain, says):
    """A domain the DNS does not know, one without an IPSECKEY record (vpn.example.net has only an A
    record), and one whose record is cut short: no tunnel, and the status says what is wrong and what
    to do."""
    roles = start_roles(gateway=domain, gateway_lookup="ipseckey")
    client = role_of(roles, "vpn-client")
    deadline = time.monotonic() + 10
    while not (status := client.status()).get("last_error"):
        assert time.monotonic() < deadline, f"no error reported for {domain}'s IPSECKEY record: {status}"
        time.sleep(0.1)
    assert domain in status["last_error"] and says in status["last_error"], status["last_error"]
    assert not status["ike_sas"] and status.get("gateway") is None, status
    assert not world.ping("r", H, timeout=1), "R reaches H without a tunnel?"
