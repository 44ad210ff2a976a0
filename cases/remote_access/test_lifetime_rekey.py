"""ESP lifetimes in bytes trigger rekeying under traffic (RFC 4301
4.4.2.1: a soft lifetime starts the replacement SA,
a hard one ends the SA; RFC 7296 1.3.3 and 2.8).

The scenario (fixtures/scenarios/remote-access-lifetime.yaml) sets no rekey timer, only an ESP
lifetime of 200 kB soft / 2 MB hard (inner bytes per SA and direction) on both roles; the client
rekeys at once on its soft expiry, the gateway only after a few seconds (so they do not collide).
R pings H with 1200-byte payloads (about 1.5 MB each way), while the 1 kHz probe (nodes/instruments/probe.py)
runs from R to H. Black-box: the child SPIs come from the client's public status, polled while the
traffic flows; the loss from the ping and the probe receiver at H.

Stated bound: as in test_rekey.py, at most 1 % of the probes lost and no arrival gap above 1 s; at
most 1 % of the pings lost.
"""
from __future__ import annotations

import re
import threading
import time

import pytest

from testbed.ipsec_checks import PLAN, check_tunnel, role_of, wait_established
from testbed.report.verdicts import downgraded
from testbed.ipsec_traffic import assert_probe_loss, roles_agree, start_probe, stop_probe

pytestmark = pytest.mark.scenario("remote-access-lifetime")

H = str(PLAN.address("h"))
PAYLOAD = 1200
COUNT = 1200  # x 1228 bytes = about 1.5 MB each way: several 200 kB soft lifetimes
REKEYS = 2


class SpiWatch(threading.Thread):
    """Polls the client's status: every distinct child SPI pair and the bytes the SA had carried."""

    def __init__(self, handle):
        super().__init__(daemon=True)
        self.handle, self.seen, self.stop_flag, self.error = handle, [], threading.Event(), None

    def run(self):
        try:
            while not self.stop_flag.is_set():
                _, _, child = wait_established(self.handle, timeout=5)
                key = (child["spi_in"], child["spi_out"])
                if not self.seen or self.seen[-1][0] != key:
                    self.seen.append((key, child["bytes_in"], child["bytes_out"]))
                time.sleep(0.05)
        except Exception as exc:  # reported by the case
            self.error = exc


def _soft_bytes(scenario, role_name: str) -> int:
    return int(scenario.roles[role_name].config["esp_lifetime"]["soft_bytes"])


@pytest.mark.req("rfc4301-4.4.2.1-lifetime", "rfc7296-1.3.3-child-rekey")
def test_child_sa_rekeyed_when_its_byte_lifetime_runs_out(world, roles, scenario):
    first = check_tunnel(roles, scenario)
    client, gw = role_of(roles, "vpn-client"), role_of(roles, "vpn-gateway")
    soft = _soft_bytes(scenario, client.role.name)
    ike0 = next(sa for sa in first["client"]["ike_sas"] if sa["state"] == "ESTABLISHED")

    watch = SpiWatch(client)
    watch.start()
    receiver, sender = start_probe(world)
    time.sleep(0.3)
    world.mark("traffic-started", soft_bytes=soft)
    res = world.run_in("r", ["ping", "-n", "-q", "-s", str(PAYLOAD), "-i", "0.002", "-c", str(COUNT), "-W", "2", H],
                       timeout=60)
    time.sleep(0.5)
    probe = stop_probe(receiver, sender)
    watch.stop_flag.set()
    watch.join(10)
    world.mark("traffic-stopped", spis=[list(k) for k, _, _ in watch.seen],
               **{k: v for k, v in probe.items() if k != "gaps"})
    assert watch.error is None, f"the client's status failed while the traffic flowed: {watch.error}"

    m = re.search(r"(\d+) packets transmitted, (\d+) received", res.stdout)
    assert m, f"ping gave no summary: {res.stdout}{res.stderr}"
    sent, got = int(m.group(1)), int(m.group(2))
    assert sent == COUNT and got >= 0.99 * sent, f"{got} of {sent} large pings answered across the rekeys"

    spis = [k for k, _, _ in watch.seen]
    assert len(spis) - 1 >= REKEYS, (
        f"the child SA was replaced {len(spis) - 1} times while about {COUNT * (PAYLOAD + 28)} bytes went "
        f"each way with a soft lifetime of {soft} bytes; expected at least {REKEYS}; SPIs seen: {spis}")
    assert len(set(spis)) == len(spis), f"a child SPI pair came back: {spis}"
    for (old_in, old_out), (new_in, new_out) in zip(spis, spis[1:]):
        assert old_in != new_in and old_out != new_out, f"only one direction's SPI changed: {spis}"

    c_status = client.status()
    rekeys = c_status.get("counters", {}).get("lifetime_rekeys")
    if rekeys is None and client.role.impl != "ours":
        downgraded(f"the client role {client.role.name} ({client.role.impl}) reports no lifetime_rekeys counter: "
                   f"that the rekeys were started by the lifetime (not a timer) is checked by the SPIs only")
    else:
        assert rekeys is not None, f"the client reports no lifetime_rekeys counter: {c_status.get('counters')}"
        assert rekeys >= REKEYS, (f"the client counted {rekeys} rekeys started by the byte lifetime, expected at "
                                  f"least {REKEYS}; SPIs seen: {spis}")
    after = roles_agree(roles)
    ike1 = next(sa for sa in after["client"]["ike_sas"] if sa["state"] == "ESTABLISHED")
    assert (ike0["spi_i"], ike0["spi_r"]) == (ike1["spi_i"], ike1["spi_r"]), \
        "a child SA rekey must not replace the IKE SA"
    # no SA ever carried much more than its soft lifetime before it was replaced (hard is 10 x soft)
    for c in after["client"]["ike_sas"][0]["child_sas"]:
        assert c["bytes_out"] < 3 * soft and c["bytes_in"] < 3 * soft, c
    g_drops = gw.status()["drops"]["esp"]
    assert not g_drops.get("sa-expired"), f"the gateway dropped packets on an expired SA: {g_drops}"
    assert_probe_loss(probe)
    assert world.ping("r", H, timeout=3), "R does not reach H after the lifetime rekeys"
