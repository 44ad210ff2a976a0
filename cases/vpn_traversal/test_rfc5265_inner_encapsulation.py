"""RFC 5265 access mode cvc with the i-MIP layer asking for minimal encapsulation or GRE (RFC 5944
3.3, RFC 2004, RFC 2784): the i-HA tunnels to the VPN-TIA with what was granted, and the mobile VPN
node decapsulates it, as a plain co-located mobile node does."""
import pytest

from testbed.capture import decode
from testbed.mip_checks import H, wait_for
from testbed.profiles import restart_role
from testbed.traversal_checks import rfc5265_layers_up

PROTO = {"minimal": 55, "gre": 47}


@pytest.mark.req("rfc5944-3.3-encapsulation-choice")
@pytest.mark.scenario("rfc5265-cvc")
@pytest.mark.parametrize("encapsulation", ["minimal", "gre"])
def test_i_mip_with_minimal_or_gre(world, scenario, roles, capture, encapsulation):
    """Verdicts: the i-MIP layer's status names the granted encapsulation; a ping from the i-HoA to
    H gets its answer; at the i-HA, tshark sees the answer leave in IP protocol 55 (minimal) or 47
    (GRE) toward the VPN-TIA, none in IP-in-IP."""
    inner = {**scenario.roles["mn"].config["inner"], "encapsulation": encapsulation}
    mvn = restart_role(world, scenario, roles, "mn", inner=inner)
    s = wait_for(lambda: rfc5265_layers_up(mvn), timeout=15, what="x-MIP, the VPN tunnel and i-MIP all up")
    vip, i_hoa = s["vpn"]["virtual_ip"], inner["home_address"]
    assert s["layers"]["i-mip"]["tunnel"] == encapsulation, s["layers"]["i-mip"]
    at_iha = capture("iha", "iha-home", name="iha-home")
    ok = world.run_in("r", ["ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", "-I", i_hoa, H])
    assert ok.returncode == 0, f"no answer from H to the i-HoA through a {encapsulation} i-MIP tunnel:\n{ok.stdout}"
    pcap = at_iha.stop()
    outer = [r["ip.proto"][0] for r in decode(pcap, f"ip.dst == {vip}", ["ip.proto"])]  # the outermost header's
    assert outer and set(outer) == {str(PROTO[encapsulation])}, f"the i-HA's tunnel to {vip}: IP protocols {outer}"
