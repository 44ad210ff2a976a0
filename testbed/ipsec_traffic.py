"""Traffic through the tunnel for cases that change SAs under it (rekeys, lifetimes): a 1 kHz UDP
probe from R to H (nodes/instruments/probe.py), its loss and gaps against a stated bound, and whether both roles
agree on the SAs afterwards."""
from __future__ import annotations

import time

from testbed.ipsec_checks import PLAN, role_of, wait_established
from testbed.daemons import start_daemon

H = str(PLAN.address("h"))
PROBE_PORT = 9000
RATE = 1000
LOSS_BOUND = 0.01  # fraction of the probes sent
GAP_BOUND = 1.0  # seconds without arrivals


def start_probe(world):
    receiver = start_daemon(world, "h", "instruments.probe", name="probe-rx", config={"listen": PROBE_PORT, "gap": 0.05})
    sender = start_daemon(world, "r", "instruments.probe", name="probe-tx",
                          config={"send": {"to": H, "port": PROBE_PORT, "rate": RATE}})
    return receiver, sender


def stop_probe(receiver, sender) -> dict:
    """Stop the sender, let the last probes arrive; the loss and gaps over the whole run."""
    sent = sender.status()["sender"]
    sender.stop()
    time.sleep(0.5)
    rx = receiver.status()["receiver"]
    holes = rx["lost"]  # sequences missing below the highest one received
    tail = max(0, sent["sent"] - 1 - rx["highest_seq"])  # sent before the stop, never arrived
    return {"sent": sent["sent"], "received": rx["received"], "lost": holes + tail, "tail_lost": tail,
            "send_errors": sent["send_errors"], "gaps": rx["gaps"],
            "max_gap": max((g["seconds"] for g in rx["gaps"]), default=0.0)}


def roles_agree(roles: dict) -> dict:
    """Both roles show the same established IKE SA and mirrored child SPIs (not check_tunnel: after
    an IKE rekey the gateway may be the new IKE SA's initiator, RFC 7296 2.18)."""
    gw, client = role_of(roles, "vpn-gateway"), role_of(roles, "vpn-client")
    deadline = time.monotonic() + 5
    while True:
        c_status, c_ike, c_child = wait_established(client)
        g_status = gw.status()
        g_ike = next((sa for sa in g_status["ike_sas"] if sa["state"] == "ESTABLISHED"
                      and (sa["spi_i"], sa["spi_r"]) == (c_ike["spi_i"], c_ike["spi_r"])), None)
        mirrored = [c for c in (g_ike or {}).get("child_sas", []) if c.get("state") == "INSTALLED"
                    and (c["spi_in"], c["spi_out"]) == (c_child["spi_out"], c_child["spi_in"])]
        if mirrored:
            return {"client": c_status, "gateway": g_status, "client_child": c_child, "gateway_child": mirrored[0]}
        assert time.monotonic() < deadline, (
            f"the roles do not agree on the SAs after the rekeys: client {c_ike} / gateway {g_status['ike_sas']}")
        time.sleep(0.05)


def assert_probe_loss(probe: dict) -> None:
    assert probe["sent"] > 0 and probe["send_errors"] == 0, probe
    bound = LOSS_BOUND * probe["sent"]
    assert probe["lost"] <= bound, (
        f"{probe['lost']} of {probe['sent']} probes lost across the rekeys; the bound is "
        f"{LOSS_BOUND:.0%} ({bound:.0f}); gaps: {probe['gaps']}")
    assert probe["max_gap"] <= GAP_BOUND, (
        f"an arrival gap of {probe['max_gap']} s across the rekeys; the bound is {GAP_BOUND} s; gaps: {probe['gaps']}")
