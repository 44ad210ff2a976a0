"""IPsec remote access (draft-gupta): tunnel establishment, reachability, internal presence.

The checks below read only a role's public status (the shape every vpn-gateway and vpn-client
profile answers: `ike_sas` with `state`, `child_sas` with `state` and SPIs, `virtual_ips`) and the
scenario's data, so the interop cases reuse them with other implementations in the roles.
"""
from __future__ import annotations

import ipaddress
import time

from testbed.plan import default_plan
from testbed.processes import patience

PLAN = default_plan()


def role_of(roles: dict, kind: str):
    """The one started role of `kind` (a RoleHandle)."""
    found = [h for h in roles.values() if h.role.kind == kind]
    assert len(found) == 1, f"expected one {kind} role, the scenario has {[h.role.name for h in found]}"
    return found[0]


def established(status: dict) -> tuple[dict, dict] | None:
    """(IKE SA, child SA) of the first established IKE SA with an installed child SA, or None."""
    for ike in status.get("ike_sas", []):
        if ike.get("state") != "ESTABLISHED":
            continue
        for child in ike.get("child_sas", []):
            if child.get("state") == "INSTALLED":
                return ike, child
    return None


def wait_established(handle, timeout: float = 5.0) -> tuple[dict, dict, dict]:
    """Poll the role's status until it shows an established tunnel; (status, IKE SA, child SA)."""
    timeout = patience(timeout)
    deadline = time.monotonic() + timeout
    while True:
        status = handle.status()
        found = established(status)
        if found:
            return status, *found
        if time.monotonic() > deadline:
            raise AssertionError(f"role {handle.role.name} shows no established IKE SA with an installed "
                                 f"child SA after {timeout} s; its status: {status}")
        time.sleep(0.05)


def check_tunnel(roles: dict, scenario) -> dict:
    """The tunnel is up on both sides and consistent: same IKE SPIs, mirrored child SPIs, the
    client's virtual IP known to the gateway (from the pool the gateway's config names)."""
    gw, client = role_of(roles, "vpn-gateway"), role_of(roles, "vpn-client")
    c_status, c_ike, c_child = wait_established(client)
    g_status, g_ike, g_child = wait_established(gw)
    assert c_ike["initiator"] and not g_ike["initiator"], (c_ike, g_ike)
    assert (c_ike["spi_i"], c_ike["spi_r"]) == (g_ike["spi_i"], g_ike["spi_r"]), (c_ike, g_ike)
    assert (c_child["spi_in"], c_child["spi_out"]) == (g_child["spi_out"], g_child["spi_in"]), (c_child, g_child)
    assert c_child["mode"].upper() == "TUNNEL" and c_child["protocol"].upper() == "ESP", c_child
    assert c_ike["remote_host"] == str(gw_external(scenario)), c_ike
    vips = c_status["virtual_ips"]
    assert len(vips) == 1, f"the client got {vips}, expected one virtual IP"
    vip = ipaddress.ip_address(vips[0])
    assert vips[0] in g_status["virtual_ips"], f"the gateway does not list the client's {vip}: {g_status['virtual_ips']}"
    cfg = scenario.roles[gw.role.name].config
    if cfg.get("internal_presence") == "pool":
        assert vip in ipaddress.ip_network(cfg["pool"]), f"pool address {vip} not from {cfg['pool']}"
    return {"vip": vips[0], "client": c_status, "gateway": g_status, "client_child": c_child, "gateway_child": g_child}


def gw_external(scenario):
    """The gateway address the scenario's client is configured with (G_e)."""
    (client,) = scenario.roles_of("vpn-client")
    return ipaddress.ip_address(client.config["gateway"])


def expected_source_at_h(roles: dict, scenario, vip: str) -> str:
    """What H sees as the source: G_i with NAPT (Appendix A), R's pool address otherwise (Appendix B)."""
    gw = role_of(roles, "vpn-gateway")
    if scenario.roles[gw.role.name].config.get("internal_presence", "napt") == "napt":
        return str(PLAN.address(gw.role.node, "ibb"))
    return vip


# ---- ESP decryption in tshark with the keys a role reports ------------------------------------------
# the status names algorithms as IKEv2 transforms (strongSwan's spelling); tshark's ESP SA table wants these
_TSHARK_ENCR = {("AES_GCM_16", 128): "AES-GCM with 16 octet ICV [RFC4106]",
                ("AES_GCM_16", 256): "AES-GCM with 16 octet ICV [RFC4106]",
                ("AES_CBC", 128): "AES-CBC [RFC3602]", ("AES_CBC", 256): "AES-CBC [RFC3602]"}
_TSHARK_INTEG = {None: "NULL", "HMAC_SHA2_256_128": "HMAC-SHA-256-128 [RFC4868]"}


def tshark_esp_sa_options(child: dict, local: str, remote: str) -> list[str]:
    """tshark -o arguments that decrypt both directions of `child` (a child SA from a role's status,
    seen from the role at `local`), or [] when the role reports no keys."""
    keys = child.get("keys") or {}
    if not keys.get("encr_out") or not keys.get("encr_in"):
        return []
    encr = _TSHARK_ENCR[(child["encr_alg"], child["encr_keysize"])]
    integ = _TSHARK_INTEG[child.get("integ_alg")]
    opts = ["-o", "esp.enable_encryption_decode:TRUE"]
    for src, dst, spi, ek, ik in ((local, remote, child["spi_out"], keys["encr_out"], keys.get("integ_out")),
                                  (remote, local, child["spi_in"], keys["encr_in"], keys.get("integ_in"))):
        ikey = f"0x{ik}" if ik else ""
        opts += ["-o", f'uat:esp_sa:"IPv4","{src}","{dst}","0x{spi}","{encr}","0x{ek}","{integ}","{ikey}"']
    return opts


def start_dns_server(world, node: str, listen: str, answers: dict[str, str], records: list[tuple[str, int, bytes]] = (),
                     zones: list[str] = ()):
    """dnsmasq in `node` on `listen`, answering only `answers` (name -> address) and `records`
    ((name, RR type number, RDATA in wire form), e.g. an IPSECKEY, type 45): no upstream, no hosts
    file. For the names of `zones` it answers as their server (NXDOMAIN, or no data for a type it
    does not have) instead of refusing. Returns its process once it says it started."""
    argv = ["dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--pid-file=",
            "--user=root", f"--listen-address={listen}", "--bind-interfaces", "--log-facility=-"]
    argv += [f"--address=/{name}/{address}" for name, address in answers.items()]
    argv += [f"--dns-rr={name},{rtype},{rdata.hex()}" for name, rtype, rdata in records]
    argv += [f"--local=/{zone}/" for zone in zones]
    return world.start(node, "dnsmasq", argv, ready=r"started, version", timeout=10)
