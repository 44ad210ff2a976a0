"""Problem statement 4.2 (registering via an FA, HA inside the intranet, MIP inside IPsec): why it
is impossible, shown on the wire."""
import time

import pytest

from testbed.mip_checks import HA, HOME, binding, wait_for
from testbed.traversal_checks import IKE_BPF, IKE_SA_INIT, ike_messages

pytestmark = [pytest.mark.scenario("mipvpn-ha-intranet-fa"),
              pytest.mark.impl_matrix("gw")]  # a plain VPN gateway: every installed gateway fills it

FA1 = "192.0.2.1"
FA_DENIALS = {80: "home network unreachable", 81: "HA host unreachable", 88: "HA unreachable"}


@pytest.mark.req("ps-4.2-fa-cannot-relay", "ps-4.2-bypass-policy")
def test_4_2_registration_via_an_fa_is_impossible(world, roles, capture):
    """Section 4.2 (Figure 9): "the FA needs to see the mip tunnel outermost, while the VPN-GW needs
    to see the IPsec tunnel outermost". With an FA care-of address the MN has no address of its own
    to run IKE from, and the FA, outside the VPN, cannot reach the HA. Verdicts, on the wire and in
    the public status: the MN hears FA1's advertisements and its registration request to FA1 is in
    clear text (tshark decodes it: home address, HA, care-of address); FA1 relays it toward the
    intranet's HA, which is unreachable from outside, and denies it (code 80, 81 or 88); the HA
    never sees a request and holds no binding; the VPN client, left with the home address as its
    only address, sends IKE_SA_INIT from it, G answers into the intranet (where the home address
    lives) and no tunnel comes up. Our MN hears agents on a link socket, outside the VPN client's
    routes: that is the draft's "explicit bypass policy for MIP packets"; it lets the MN register
    with the FA, and the registration still fails, because the FA is not inside the VPN."""
    mvn, fa1, ha, gw = roles["mn"], roles["fa1"], roles["i-ha"], roles["gw"]
    at_r = capture("r", "r-eth0", f"icmp or udp port 434 or {IKE_BPF}", name="r-eth0")
    at_g = capture("g", "g-dmz", IKE_BPF, name="g-dmz-ike")
    t0 = time.time()
    mip = wait_for(lambda: (lambda s: s if s["last_code"] in FA_DENIALS else None)(mvn.status()["mip"]), timeout=8,
                   what="FA1 to deny the registration (HA unreachable)")
    assert mip["state"] != "registered" and mip["agent"]["address"] == FA1, mip
    wait_for(lambda: [m for m in ike_messages(at_g.path, [(0, float("inf"))])[0] if m["src"] == HOME], timeout=5,
             what="G to receive IKE_SA_INIT from the home address (capture at G_e)")
    time.sleep(1.0)  # the client retransmits; nothing comes back
    st = mvn.status()
    assert st["vpn"]["state"] != "established", f"a VPN tunnel came up through the FA: {st['vpn']}"
    assert st["vpn"]["local_address"] == HOME, st["vpn"]
    assert st["vpn"]["counters"]["ike_in"] == 0 and st["vpn"]["counters"]["ike_out"] >= 2, st["vpn"]["counters"]
    assert binding(ha) is None and ha.status()["counters"].get("requests", 0) == 0, ha.status()["counters"]
    assert not [sa for sa in gw.status()["ike_sas"] if sa["state"] == "ESTABLISHED"]
    assert fa1.status()["visitors"] == [], "FA1 must not hold the MN as a visitor"

    at_r.stop()
    at_g.stop()
    adverts = at_r.packets("icmp.type == 9")
    assert adverts, "R must hear FA1's agent advertisements"
    requests = at_r.packets(f"mip.type == 1 && ip.dst == {FA1}", fields=["mip.homeaddr", "mip.haaddr", "mip.coa"])
    assert requests and requests[0] == {"mip.homeaddr": [HOME], "mip.haaddr": [HA], "mip.coa": [FA1]}, requests
    denials = at_r.packets("mip.type == 3", fields=["mip.code"])
    assert denials and {int(d["mip.code"][0]) for d in denials} <= set(FA_DENIALS), denials
    (ike,) = ike_messages(at_g.path, [(t0 - 5, t0 + 60)])
    inits = [m for m in ike if m["exchange"] == IKE_SA_INIT]
    assert [m for m in inits if not m["response"] and m["src"] == HOME], f"G must see IKE from the home address: {ike}"
    assert not [m for m in ike if m["dst"] == HOME and m["exchange"] != IKE_SA_INIT], \
        "no IKE exchange beyond IKE_SA_INIT can happen: G's answers go into the intranet"
