"""Rekeying under traffic (the child SA and the IKE SA, with packet loss within a stated
bound; RFC 7296 sections 1.3.2, 1.3.3, 2.8 and 2.18).

The scenarios (fixtures/scenarios/remote-access-rekey-{child,ike}.yaml) give the client a rekey
interval of 2 s and the gateway one of 3.5 s, so the client starts the rekeys (the gateway's timer
restarts with every new SA before it fires) and a run of a few seconds sees several. While they
happen, a 1 kHz UDP probe stream (nodes/instruments/probe.py) runs from R through the tunnel to H. Black-box:
the SPIs come from the roles' public status, the loss from the probe receiver at H.

Stated bound: at most 1 % of the probes sent during the run may be lost (a rekey done right loses
none: the old SA keeps receiving until it is deleted, RFC 7296 2.8); no arrival gap may exceed
1 s (generous, for a loaded 2-core machine).

Every implementation takes child_rekey_after / ike_rekey_after from its role config (a third-party profile
passes them on to its program's rekey settings with no random jitter), so the client starts the rekeys whichever implementation fills it.
"""
from __future__ import annotations

import time

import pytest

from testbed.ipsec_checks import PLAN, check_tunnel, role_of, wait_established
from testbed.ipsec_traffic import assert_probe_loss, roles_agree, start_probe, stop_probe

H = str(PLAN.address("h"))
REKEYS = 2  # rekeys to see under traffic


def _rekey_interval(roles: dict, scenario, key: str) -> float:
    """The shortest `key` among the roles' configs."""
    intervals = [float(value) for handle in roles.values() if handle.role.kind in ("vpn-gateway", "vpn-client")
                 if (value := scenario.roles[handle.role.name].config.get(key))]
    assert intervals, f"the scenario gives no role a {key}: nothing would start a rekey"
    return min(intervals)


def _watch(handle, key_of, count: int, timeout: float) -> list[tuple[float, tuple]]:
    """Poll the role's status until `key_of(established IKE SA, child SA)` has changed `count` times;
    the (time, key) sequence seen."""
    _, ike, child = wait_established(handle)
    seen = [(time.time(), key_of(ike, child))]
    deadline = time.monotonic() + timeout
    while len(seen) <= count:
        if time.monotonic() > deadline:
            raise AssertionError(f"role {handle.role.name}: saw {len(seen) - 1} rekeys within {timeout:.1f} s, "
                                 f"expected {count}; keys seen: {seen}")
        time.sleep(0.05)
        _, ike, child = wait_established(handle, timeout=5)
        key = key_of(ike, child)
        if key != seen[-1][1]:
            seen.append((time.time(), key))
    return seen


def _rekey_under_traffic(world, roles, scenario, key: str, key_of):
    interval = _rekey_interval(roles, scenario, key)
    first = check_tunnel(roles, scenario)
    client = role_of(roles, "vpn-client")
    receiver, sender = start_probe(world)
    time.sleep(0.3)
    world.mark("probe-started")
    seen = _watch(client, key_of, REKEYS, timeout=(REKEYS + 1) * interval + 6)
    world.mark("rekeys-seen", keys=[list(k) for _, k in seen])
    time.sleep(0.5)  # traffic after the last rekey
    probe = stop_probe(receiver, sender)
    world.mark("probe-stopped", **{k: v for k, v in probe.items() if k != "gaps"})
    after = roles_agree(roles)  # both sides agree on the new SAs
    return first, seen, probe, after


def _established_ike(status: dict) -> dict:
    return next(sa for sa in status["ike_sas"] if sa["state"] == "ESTABLISHED")


def _child_spis(ike: dict, child: dict) -> tuple:
    return child["spi_in"], child["spi_out"]


def _ike_spis(ike: dict, child: dict) -> tuple:
    return ike["spi_i"], ike["spi_r"]


@pytest.mark.scenario("remote-access-rekey-child")
@pytest.mark.req("rfc7296-1.3.3-child-rekey")
def test_child_sa_rekey_under_traffic(world, roles, scenario):
    """The child SA is replaced (new SPIs in both directions, on both roles) while R sends 1000
    probes a second to H; at most 1 % are lost; the IKE SA stays; traffic flows after."""
    first, seen, probe, after = _rekey_under_traffic(world, roles, scenario, "child_rekey_after", _child_spis)
    spis = [k for _, k in seen]
    assert len(set(spis)) == len(spis), f"a child SPI pair came back: {spis}"
    for (old_in, old_out), (new_in, new_out) in zip(spis, spis[1:]):
        assert old_in != new_in and old_out != new_out, f"only one direction's SPI changed: {spis}"
    assert (after["client_child"]["spi_in"], after["client_child"]["spi_out"]) != spis[0]
    c_ike0 = _established_ike(first["client"])
    c_ike1 = _established_ike(after["client"])
    assert (c_ike0["spi_i"], c_ike0["spi_r"]) == (c_ike1["spi_i"], c_ike1["spi_r"]), \
        "a child SA rekey must not replace the IKE SA"
    assert_probe_loss(probe)
    assert world.ping("r", H, timeout=3), "R does not reach H after the child SA rekeys"


@pytest.mark.scenario("remote-access-rekey-ike")
@pytest.mark.req("rfc7296-2.18-ike-rekey")
def test_ike_sa_rekey_under_traffic(world, roles, scenario):
    """The IKE SA is replaced (new SPIs; both roles agree) while R sends 1000 probes a second to H;
    the child SA moves to the new IKE SA unchanged (RFC 7296 2.18); at most 1 % of the probes are
    lost; traffic flows and the new IKE SA answers after."""
    first, seen, probe, after = _rekey_under_traffic(world, roles, scenario, "ike_rekey_after", _ike_spis)
    spis = [k for _, k in seen]
    assert len({i for i, _ in spis}) == len(spis) and len({r for _, r in spis}) == len(spis), \
        f"an IKE SPI came back: {spis}"
    assert (after["client_child"]["spi_in"], after["client_child"]["spi_out"]) == \
        (first["client_child"]["spi_in"], first["client_child"]["spi_out"]), \
        "the child SA should move to the new IKE SA, not be renegotiated"
    established = [sa for sa in after["client"]["ike_sas"] if sa["state"] == "ESTABLISHED"]
    assert len(established) == 1, f"the client keeps more than one established IKE SA: {established}"
    assert_probe_loss(probe)
    assert world.ping("r", H, timeout=3), "R does not reach H after the IKE SA rekeys"
