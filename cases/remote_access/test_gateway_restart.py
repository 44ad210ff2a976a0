"""The gateway killed and restarted: the client notices within its configured interval and cleans
up (RFC 7296 section 2.4, liveness checks), and reconnects when the gateway is back.

G's process is killed with SIGKILL (no Delete reaches R: the client can only find out by its
liveness checks). Black-box observations:

  * the client's public status leaves "established" within the bound computed from its
    configured interval (fixtures/scenarios/remote-access-gateway-restart.yaml: dpd_interval 1 s,
    retransmissions after 0.5, 0.75 and 1.125 s, so 3.4 s after G's last word) plus 2 s of slack
    for a loaded machine;
  * cleanup: R's route toward H no longer goes into the tunnel (neither through the client's tunnel
    interface nor, with a kernel XFRM data plane and no interface, from the tunnel's virtual
    address) and R reaches the public server pub directly (its traffic no longer goes into the dead
    tunnel);
  * the gateway role started again (the same role, start_role): the client reconnects by itself
    within RECONNECT_BOUND, both roles show the new tunnel and R reaches H again.

Every profile takes the same role keys (a third-party profile maps dpd_interval and the
retransmission keys to its own settings), so the case runs with any implementation in either role.
"""
from __future__ import annotations

import json
import time

import pytest

from testbed.report.verdicts import downgraded
from testbed.ipsec_checks import PLAN, check_tunnel, established, role_of, wait_established
from testbed.faults import kill_role
from testbed.conformance.ics import statement_of
from testbed.profiles import get, start_role

pytestmark = pytest.mark.scenario("remote-access-gateway-restart")

H = str(PLAN.address("h"))
PUB = str(PLAN.address("pub"))
SLACK = 2.0  # seconds on top of the configured detection time (a loaded 2-core machine)
RECONNECT_BOUND = 15.0  # seconds from the gateway's READY to an established tunnel


def notice_bound(config: dict) -> float:
    """The client's own detection time from its config: a liveness check after `dpd_interval`
    seconds of silence, then retransmissions after timeout * backoff**k, k = 0..tries."""
    dpd = float(config.get("dpd_interval", 5))
    timeout, backoff = float(config.get("retransmit_timeout", 0.5)), float(config.get("retransmit_backoff", 1.5))
    tries = int(config.get("retransmit_tries", 3))
    return dpd + sum(timeout * backoff ** k for k in range(tries + 1)) + SLACK


def tunnel_route(world, tunnel_if: str, vips: list, dst: str) -> dict:
    """R's route toward `dst`, and whether it goes into the tunnel: through the tunnel interface, or
    from one of the tunnel's virtual addresses (a kernel XFRM data plane has no interface: its
    route keeps the physical device and takes the virtual address as source)."""
    route = json.loads(world.run_in("r", ["ip", "-j", "route", "get", dst], check=True).stdout or "[{}]")[0]
    into = route.get("dev") == tunnel_if or route.get("prefsrc") in vips
    return {"dst": dst, "dev": route.get("dev"), "prefsrc": route.get("prefsrc"), "into_tunnel": into}


@pytest.mark.req("rfc7296-2.4-liveness")
def test_killed_gateway_noticed_and_restarted_gateway_reconnected(world, roles, scenario):
    gw, client = role_of(roles, "vpn-gateway"), role_of(roles, "vpn-client")
    before = check_tunnel(roles, scenario)
    tunnel_if = before["client"].get("tunnel_interface")
    vips = [str(v).split("/")[0] for v in before["client"].get("virtual_ips", [])]
    assert world.ping("r", H, timeout=3), "R does not reach H before the gateway is killed"
    bound = notice_bound(scenario.roles[client.role.name].config)

    # -- kill: the client notices within its configured interval
    pids = kill_role(world, gw)
    t_kill = time.monotonic()
    world.mark("gateway-killed", pids=pids)
    while established(status := client.status()) is not None:
        assert time.monotonic() - t_kill <= bound, (
            f"the client still shows an established tunnel {bound:.1f} s after the gateway was killed "
            f"(bound: its configured liveness time + {SLACK} s); status: {status}")
        time.sleep(0.05)
    noticed = time.monotonic() - t_kill
    world.mark("client-noticed", seconds=round(noticed, 3), bound=round(bound, 3))

    # -- cleanup: no traffic into the dead tunnel
    deadline = time.monotonic() + 2.0  # routes go right after the status changes
    while (route := tunnel_route(world, tunnel_if, vips, H))["into_tunnel"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not route["into_tunnel"], f"R still routes H into the dead tunnel {tunnel_if}: {route}"
    assert not tunnel_route(world, tunnel_if, vips, PUB)["into_tunnel"], "R still routes the Internet into the dead tunnel"
    assert world.ping("r", PUB, timeout=3), "R does not reach the public server directly after the tunnel went down"

    # -- restart: the client reconnects and R reaches H again
    t_start = time.monotonic()
    roles[gw.role.name] = gw2 = start_role(world, scenario.roles[gw.role.name])
    t_ready = time.monotonic()
    world.mark("gateway-restarted", seconds=round(t_ready - t_start, 3))
    wait_established(client, timeout=RECONNECT_BOUND)
    wait_established(gw2, timeout=5)
    reconnected = time.monotonic() - t_ready
    world.mark("client-reconnected", seconds=round(reconnected, 3), bound=RECONNECT_BOUND)
    after = check_tunnel(roles, scenario)
    assert (after["client_child"]["spi_in"], after["client_child"]["spi_out"]) != \
        (before["client_child"]["spi_in"], before["client_child"]["spi_out"]), "the new tunnel reuses old SPIs"
    assert world.ping("r", H, timeout=3), "R does not reach H after the gateway restarted"
    print(f"client noticed the killed gateway after {noticed:.2f} s (bound {bound:.2f} s); "
          f"reconnected {reconnected:.2f} s after the restarted gateway was ready (bound {RECONNECT_BOUND} s)")


@pytest.mark.req("rfc7296-2.4-initial-contact")
def test_killed_client_reconnects_and_gateway_replaces_its_old_sa(world, roles, scenario):
    """The other side: R's client killed (no Delete reaches G) and started again. It connects anew
    with the same identity, and G replaces the stale IKE SA at once (one IKE SA per user identity,
    with INITIAL_CONTACT as RFC 7296 section 2.4 describes it) instead of keeping two tunnels for one
    user until its liveness checks expire: G then holds exactly the client's new IKE SA, and R
    reaches H. A client profile whose statement says it sends no INITIAL_CONTACT
    (CLIENT-RESTART.NO-INITIAL-CONTACT) facing a gateway profile whose statement says it then keeps
    the duplicate for a while (CLIENT-RESTART.STALE-IKE-SA) needs only the new SA: the stale one
    beside it downgrades the case (WARNED) with both statements' findings."""
    gw, client = role_of(roles, "vpn-gateway"), role_of(roles, "vpn-client")
    before = check_tunnel(roles, scenario)
    old = {(sa["spi_i"], sa["spi_r"]) for sa in before["gateway"]["ike_sas"]}
    kill_role(world, client)
    world.mark("client-killed")
    t0 = time.monotonic()
    roles[client.role.name] = client2 = start_role(world, scenario.roles[client.role.name])
    _, c_ike, _ = wait_established(client2, timeout=RECONNECT_BOUND)
    new = (c_ike["spi_i"], c_ike["spi_r"])
    assert new not in old
    # both deviations are data in the profiles' conformance statements
    lenient = [statement_of(get(h.role.impl)).expected.get(key) for h, key in
               ((client2, "CLIENT-RESTART.NO-INITIAL-CONTACT"), (gw, "CLIENT-RESTART.STALE-IKE-SA"))]
    lenient = lenient if all(lenient) else None
    deadline = time.monotonic() + 5
    while True:
        g_sas = [(sa["spi_i"], sa["spi_r"]) for sa in gw.status()["ike_sas"] if sa["state"] == "ESTABLISHED"]
        if g_sas == [new] or (lenient and new in g_sas):
            break
        assert time.monotonic() < deadline, (
            f"5 s after the client reconnected, the gateway should hold only its new IKE SA {new}, "
            f"not the stale {old}: {g_sas}")
        time.sleep(0.05)
    if g_sas != [new]:
        downgraded(f"gateway {gw.role.name} still holds the stale IKE SA next to the new one: {g_sas} "
                   f"({'; '.join(f'{e.finding} ({e.source})' for e in lenient)})")
    world.mark("client-reconnected", seconds=round(time.monotonic() - t0, 3))
    if g_sas == [new]:
        check_tunnel(roles, scenario)  # (it reads the gateway's first established SA)
    assert world.ping("r", H, timeout=3), "R does not reach H after its client restarted"
