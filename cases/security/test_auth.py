"""Bad credentials (draft-gupta section 4 (a): "the IPSec gateway must not allow unauthorized hosts to
communicate with the protected network": a wrong key, wrong password or unknown identity gives
AUTHENTICATION_FAILED and no tunnel, RFC 7296 section 2.21.2).

Each scenario gives the client one bad credential; the gateway holds the right ones:
  remote-access-wrong-psk           alice with a pre-shared key that is not hers
  remote-access-wrong-password      alice (EAP-MD5) typing a wrong password
  remote-access-unknown-identity    mallory, whom G does not know
The client's status must name AUTHENTICATION_FAILED (RFC 7296 section 2.21.2), neither side may show
an established tunnel or hand out an address, and nothing from R reaches H.

With EAP the gateway refuses a wrong password with an EAP-Failure message in its last IKE_AUTH response
(RFC 7296 section 2.16, RFC 3748 section 4.2), which is a complete refusal on its own; an AUTHENTICATION_FAILED
notify next to it is optional (a third-party gateway may send none; its client then tells the gateway
AUTHENTICATION_FAILED itself). So for the EAP scenario the client may report either EAP_FAILURE or AUTHENTICATION_FAILED.
"""
import re
import time

import pytest

from testbed.ipsec_checks import PLAN, established, role_of

pytestmark = [pytest.mark.scenario("remote-access-wrong-psk", "remote-access-wrong-password",
                                  "remote-access-unknown-identity"),
              pytest.mark.impl_matrix("gw", "client")]

H = str(PLAN.address("h"))


def error_names(status: dict) -> set[str]:
    """The IKEv2/EAP error names a role's status reports: `errors`, the last initiation's `errors` and
    what it says it received (a third-party profile's `initiate`), `last_error` of the role and of its
    IKE SAs (ours)."""
    initiate = status.get("initiate") or {}
    texts = list(status.get("errors") or []) + list(initiate.get("errors") or [])
    texts.append(status.get("last_error") or "")
    texts += [ike.get("last_error") or "" for ike in status.get("ike_sas", [])]
    names = set(re.findall(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b", " ".join(map(str, texts))))
    for line in initiate.get("output") or []:
        names.update(re.findall(r"\breceived (EAP_FAILURE)\b", line))
    return names


def refusals(scenario) -> set[str]:
    """The error names that count as the gateway's refusal of the client's credential here."""
    (client,) = scenario.roles_of("vpn-client")
    if client.config.get("auth") == "eap-md5":
        return {"AUTHENTICATION_FAILED", "EAP_FAILURE"}
    return {"AUTHENTICATION_FAILED"}


def wait_for_error(handle, timeout: float = 8.0) -> dict:
    """The client's status once it reports an error (or the last one seen after `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        status = handle.status()
        if error_names(status) or time.monotonic() > deadline:
            return status
        time.sleep(0.1)


@pytest.mark.req("gupta-4-password", "gupta-4a-unauthorized")
def test_bad_credentials_give_authentication_failed_and_no_tunnel(world, capture, roles, scenario):
    at_h = capture("h", "h-srv", bpf="ip")
    client, gw = role_of(roles, "vpn-client"), role_of(roles, "vpn-gateway")
    c_status = wait_for_error(client)
    errors = error_names(c_status)
    shown = {k: c_status.get(k) for k in ("errors", "initiate", "last_error", "state") if k in c_status}
    expected = refusals(scenario)
    assert errors & expected, (f"the client ({client.role.impl}) does not report {' or '.join(sorted(expected))}; "
                               f"it reports {sorted(errors)}: {shown}")
    assert established(c_status) is None and not c_status.get("virtual_ips"), \
        f"the client shows a tunnel despite its bad credential: {c_status['ike_sas']}"

    assert not world.ping("r", H, timeout=1), "R reaches H without a tunnel"
    g_status = gw.status()
    assert established(g_status) is None, \
        f"the gateway ({gw.role.impl}) shows an established tunnel: {g_status['ike_sas']}"
    assert not g_status.get("virtual_ips"), f"the gateway handed out an address: {g_status['virtual_ips']}"
    assert established(client.status()) is None, "the client established a tunnel after all (a retry?)"

    at_h.stop()
    seen = at_h.packets(f"ip.dst == {H}", ["ip.src", "ip.dst", "ip.proto"])
    assert seen == [], f"packets reached H although no tunnel exists: {seen[:5]}"
