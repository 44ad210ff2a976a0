"""Problem statement 4.2, Figure 10: the trusted FA. "an FA which is actually a combined VPN GW and
FA. The scenario will work fine in this case; effectively we are then operating within the VPN
established between the two VPN gateways ... Furthermore, this solution would leave the traffic
between FA and MN unprotected". ar1 (the FA on fn1) runs the scenario's third-party VPN client with a site-to-site connection
to G (our gateway's `sites`: fn1's subnet as the site's traffic selectors); the mobile node runs
Mobile IP alone, no VPN client."""
import pytest

from testbed import handoff
from testbed.mip_checks import HA, HOME, binding, wait_for
from testbed.traversal_checks import start_session

pytestmark = pytest.mark.scenario("mipvpn-trusted-fa")

FA1, AR1_UPLINK, G_E = "192.0.2.1", "203.0.113.2", "203.0.113.70"


@pytest.mark.req("ps-4.2-trusted-fa")
def test_4_2_trusted_fa_registers_through_the_site_to_site_vpn(world, roles, capture):
    """Section 4.2 (Figure 10). Verdicts: G holds the site's IKE SA (peer ar1's uplink, selectors
    fn1 <-> the intranet) and no user's; the MN registers via FA1 (care-of address 192.0.2.1) with
    the HA inside the intranet, which holds the binding; on fn1 the registration request and reply
    are clear text (tshark decodes home address, HA and care-of address: the FA-MN link is
    unprotected); between ar1 and G_e only IKE and ESP pass, no Mobile IP in clear (the FA-HA path
    runs inside the site's tunnel); a TCP session R (home address) -> H works through it."""
    mn, gw, ha = roles["mn"], roles["gw"], roles["i-ha"]
    at_fn1 = capture("ar1", "ar1-fn1", "udp port 434", name="ar1-fn1-mip")
    at_g = capture("g", "g-dmz", f"host {AR1_UPLINK}", name="g-dmz-site")
    site = wait_for(lambda: (lambda s: s if s["up"] else None)(gw.status()["sites"]["site-ar1"]), timeout=10,
                    what="the site-to-site tunnel ar1 <-> G")
    assert site["site_subnets"] == ["192.0.2.0/25"], site
    sas = [sa for sa in gw.status()["ike_sas"] if sa["state"] == "ESTABLISHED"]
    assert [(sa["remote_host"], sa.get("virtual_ip")) for sa in sas] == [(AR1_UPLINK, None)], sas
    handoff.move(world, "r", "fn1", configure=False)  # R arrives on FA1's link (it starts on fn2, no FA there)
    mip = wait_for(lambda: (lambda s: s if s["state"] == "registered" else None)(mn.status()), timeout=10,
                   what="the MN's registration via FA1")
    assert mip["care_of_address"] == FA1, mip
    b = binding(ha)
    assert b is not None and b["care_of_address"] == FA1, ha.status()
    keeper = start_session(world)  # R -> H from the home address, reverse-tunnelled by FA1 inside the site's SA
    k = keeper.status()
    assert k["connects"] == 1 and k["error"] is None, k

    at_fn1.stop()
    at_g.stop()
    fields = ["ip.src", "ip.dst", "mip.homeaddr", "mip.haaddr", "mip.coa"]
    requests = at_fn1.packets("mip.type == 1", fields=fields)
    assert requests and requests[0] == {"ip.src": [HOME], "ip.dst": [FA1], "mip.homeaddr": [HOME], "mip.haaddr": [HA],
                                        "mip.coa": [FA1]}, f"the request in clear on fn1: {requests}"
    replies = at_fn1.packets("mip.type == 3", fields=["mip.code", "mip.homeaddr"])
    assert replies and replies[-1] == {"mip.code": ["0"], "mip.homeaddr": [HOME]}, replies
    assert at_g.packets("mip || ip.proto == 4") == [], "Mobile IP between ar1 and G must be inside ESP"
    assert at_g.packets("esp || udp.port == 4500"), "the FA-HA traffic must cross as ESP"
