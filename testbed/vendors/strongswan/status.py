"""A charon role's status in the public shape every vpn-gateway and vpn-client profile answers
(testbed/ipsec_checks.py reads it), made from vici's list-sas / get-pools answers and the key log:

  {"implementation": "strongswan" (or "strongswan-kernel"), "version": ..., "role", "kind", "node", "running",
   "config" (what the profile configured: pool, auth, timers, ...),
   "ike_sas": [{"name", "state" (ESTABLISHED, ...), "initiator", "local_host", "local_port",
                "remote_host", "remote_port", "local_id", "remote_id", "remote_eap_id",
                "spi_i", "spi_r", "nat_local", "nat_remote", "nat_fake", "encr_alg",
                "encr_keysize", "integ_alg", "prf_alg", "dh_group", "established_s",
                "local_vips", "remote_vips", "keys" (SK_* hex, when logged),
                "child_sas": [{"name", "state" (INSTALLED, ...), "mode", "protocol", "encap",
                               "spi_in", "spi_out", "encr_alg", "encr_keysize", "integ_alg",
                               "local_ts", "remote_ts", "bytes_in", "bytes_out", "packets_in",
                               "packets_out", "keys": {"encr_in", "encr_out", "integ_in",
                               "integ_out"} (hex; for AES-GCM the 4-byte salt ends the key)}]}],
   "virtual_ips": [...] (assigned to this node), "pools": {...} (gateway), "dns": [...] and
   "initiate" (client), "tunnel_interface" ("ipsec0" with kernel-libipsec; with the kernel's XFRM the
   interface the IKE SA's local address is on), "keepalive" (the NAT-T keepalive interval
   charon uses, seconds), "keys_source"}
"""
from __future__ import annotations

from pathlib import Path

from testbed.vendors.strongswan.config import LIBIPSEC
from testbed.vendors.strongswan.keylog import parse_keylog
from testbed.vendors.node_daemon import kernel_xfrm_errors

KEEP_ALIVE_DEFAULT = 20.0  # charon.keep_alive's default (strongswan.conf(5)), used unless the role sets keepalive


def snapshot(charon) -> dict:
    """The status of `charon` (a charon.CharonRole): asks its charon over vici while it runs."""
    role = charon.role
    plane = getattr(charon, "plane", LIBIPSEC)
    out = {"implementation": plane.profile, "role": role.name, "kind": role.kind, "node": role.node,
           "running": charon.process is not None and charon.process.running(),
           "tunnel_interface": charon.TUN or charon.tunnel_interface(None), "config": charon.info, "ike_sas": [], "virtual_ips": [],
           "keepalive": float(charon.info.get("keepalive") or KEEP_ALIVE_DEFAULT)}
    if not out["running"]:
        return out
    out["version"] = charon.version.get("version")
    child_keys, ike_keys = parse_keylog(charon.keylog)
    for event in charon.vici.stream("list-sas", "list-sa"):
        for name, sa in event.items():
            out["ike_sas"].append(ike_sa(name, sa, child_keys, ike_keys))
    if not charon.TUN:  # the kernel's XFRM: the interface the IKE SA's packets use, and what it dropped
        out["tunnel_interface"] = charon.tunnel_interface(next((sa["local_host"] for sa in out["ike_sas"]), None))
        out["kernel_xfrm_errors"] = kernel_xfrm_errors(charon.world, role.node)
    if role.kind == "vpn-client":
        out["virtual_ips"] = sorted({v for sa in out["ike_sas"] for v in sa["local_vips"]})
        out["dns"] = resolv_servers(charon.resolv)
        out["initiate"] = charon.initiate
    else:
        out["virtual_ips"] = sorted({v for sa in out["ike_sas"] for v in sa["remote_vips"]})
        out["pools"] = charon.vici.request("get-pools", {"leases": "yes"})
    out["keys_source"] = f"charon's level-4 ike/chd log (no save-keys plugin in this build): {charon.keylog}"
    return out


def ike_sa(name: str, sa: dict, child_keys: dict, ike_keys: dict) -> dict:
    def i(v):
        try:
            return int(v)
        except (TypeError, ValueError):
            return None

    children = []
    for cname, ch in (sa.get("child-sas") or {}).items():
        keys = child_keys.get(ch.get("spi-in", ""), {})
        initiated = sa.get("initiator") == "yes"  # the IKE initiator starts the CHILD_SA here
        send, recv = ("initiator", "responder") if initiated else ("responder", "initiator")
        children.append({
            "name": ch.get("name", cname), "uniqueid": ch.get("uniqueid"), "state": ch.get("state"),
            "mode": ch.get("mode"), "protocol": ch.get("protocol"), "encap": ch.get("encap") == "yes",
            "spi_in": ch.get("spi-in"), "spi_out": ch.get("spi-out"),
            "encr_alg": ch.get("encr-alg"), "encr_keysize": i(ch.get("encr-keysize")),
            "integ_alg": ch.get("integ-alg"), "dh_group": ch.get("dh-group"),
            "local_ts": ch.get("local-ts", []), "remote_ts": ch.get("remote-ts", []),
            "bytes_in": i(ch.get("bytes-in")), "bytes_out": i(ch.get("bytes-out")),
            "packets_in": i(ch.get("packets-in")), "packets_out": i(ch.get("packets-out")),
            "installed_s": i(ch.get("install-time")),
            "keys": {"encr_out": keys.get(f"encryption_{send}"), "encr_in": keys.get(f"encryption_{recv}"),
                     "integ_out": keys.get(f"integrity_{send}"), "integ_in": keys.get(f"integrity_{recv}")}
            if keys else None,
        })
    return {
        "name": name, "uniqueid": sa.get("uniqueid"), "state": sa.get("state"), "version": i(sa.get("version")),
        "initiator": sa.get("initiator") == "yes",
        "local_host": sa.get("local-host"), "local_port": i(sa.get("local-port")), "local_id": sa.get("local-id"),
        "remote_host": sa.get("remote-host"), "remote_port": i(sa.get("remote-port")),
        "remote_id": sa.get("remote-id"), "remote_eap_id": sa.get("remote-eap-id"),
        "spi_i": sa.get("initiator-spi"), "spi_r": sa.get("responder-spi"),
        "nat_local": sa.get("nat-local") == "yes", "nat_remote": sa.get("nat-remote") == "yes",
        "nat_fake": sa.get("nat-fake") == "yes",
        "encap": sa.get("nat-any") == "yes",  # UDP-encapsulated (a NAT seen, or faked: kernel-libipsec)
        "encr_alg": sa.get("encr-alg"), "encr_keysize": i(sa.get("encr-keysize")), "integ_alg": sa.get("integ-alg"),
        "prf_alg": sa.get("prf-alg"), "dh_group": sa.get("dh-group"), "established_s": i(sa.get("established")),
        "local_vips": sa.get("local-vips", []), "remote_vips": sa.get("remote-vips", []),
        "keys": ike_keys.get(str(sa.get("uniqueid"))),
        "child_sas": children,
    }


def resolv_servers(path: Path | None) -> list[str]:
    """The DNS servers charon installed (its lines end "# by strongSwan"; the rest of the file are
    the node's own resolver lines)."""
    if path is None or not path.exists():
        return []
    return [line.split()[1] for line in path.read_text().splitlines()
            if line.startswith("nameserver") and len(line.split()) > 1 and "by strongSwan" in line]


