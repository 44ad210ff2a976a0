"""A pluto role's status in the public shape every vpn-gateway and vpn-client profile answers
(testbed/status_schema.py; testbed/ipsec_checks.py reads it), made from what pluto tells over its
control socket and from the kernel:

  * `whack --showstates`: the states (#n), their connection instance, peer, state name and, for a
    child SA, its IKE SA (#m) and its ESP SPIs (esp.<spi>@<dst>: to the peer the outbound SA, to us
    the inbound);
  * `whack --trafficstatus`: per child SA its bytes in/out, the peer's id and the lease (gateway);
  * `whack --status`: a connection instance's negotiated subnets ("10.1.0.0/16===G...R===100.64.0.1/32");
  * `ip -s xfrm state` in the node: the ESP keys (the kernel holds them, so the cases can decrypt
    their captures with tshark), algorithms, UDP encapsulation and packet counts by SPI;
  * pluto's log (base debugging, on by default in this profile): the IKE SPIs of each IKE SA (the
    state hash table's "ike_spis" entries) and what a client received in its CP reply
    (INTERNAL_IP4_ADDRESS, INTERNAL_IP4_DNS).

pluto logs no IKE SA keys (SK_*) at these debug levels: an IKE SA's "keys" is None.
"""
from __future__ import annotations

import re
from pathlib import Path

from testbed.vendors.node_daemon import kernel_xfrm_errors

_STATE = re.compile(r'^\d{3} #(?P<n>\d+): "(?P<conn>[^"]+)"(?P<inst>\[\d+\])? (?P<peer>[0-9.]+)(?::(?P<port>\d+))? '
                    r'(?P<name>STATE_\w+) \((?P<desc>[^)]*)\);(?P<rest>.*)$')
_ESP = re.compile(r'^\d{3} #(?P<n>\d+): "[^"]+"(?:\[\d+\])? \S+ (?P<spis>(?:esp\.[0-9a-f]+@\S+ ?)+)')
_TRAFFIC = re.compile(r'^\d{3} #(?P<n>\d+): "(?P<conn>[^"]+)"(?:\[\d+\])? (?P<peer>[0-9.]+), (?P<kv>.*)$')
# a connection (instance) line of whack --status: [leftsubnet===]left[id,flags][---nexthop]...right[id]===rightsubnet;
_CONN = re.compile(r'^\d{3} "(?P<conn>[^"]+)"(?P<inst>\[\d+\])?: (?:(?P<left>[0-9./]+)===)?(?P<lhost>[0-9.]+)'
                   r'(?:\[(?P<lid>[^\],]*)[^\]]*\])?\S*?\.\.\.(?P<rhost>[0-9.%a-z]+)(?:\[(?P<rid>[^\],]*)[^\]]*\])?'
                   r'(?:===(?P<right>[0-9./]+))?;')
_IKE_SPIS = re.compile(r'ike_spis@\S+ "[^"]+"(?:\[\d+\])? \S+ #(?P<n>\d+): (?P<hex>(?:[0-9a-f]{2}\s+){15}[0-9a-f]{2}) added')
_IKE_ALGS = re.compile(r'#(?P<n>\d+): sent IKE_(?:SA_INIT reply|AUTH request) \{cipher=(?P<encr>\S+) integ=(?P<integ>\S+) '
                       r'prf=(?P<prf>\S+) group=(?P<dh>[^}\s]+)\}')
_RECEIVED = re.compile(r'#(?P<n>\d+): received INTERNAL_IP4_(?P<what>ADDRESS|DNS) (?P<addr>[0-9.]+)')

# pluto's debug log (plutodebug) after the NAT_DETECTION notifies of IKE_SA_INIT were compared
# (RFC 7296 2.23); the state's number comes on a following line
_NAT_END = re.compile(r"NAT_TRAVERSAL (?P<end>this|that) end is (?P<not>NOT )?behind NAT")
_STATE_NO = re.compile(r"#(?P<n>\d+)\b")
_ALGS = {"rfc4106(gcm(aes))": "AES_GCM_16", "cbc(aes)": "AES_CBC", "hmac(sha256)": "HMAC_SHA2_256_128",
         "hmac(sha1)": "HMAC_SHA1_96", "hmac(sha384)": "HMAC_SHA2_384_192", "hmac(sha512)": "HMAC_SHA2_512_256"}


def snapshot(pluto) -> dict:
    """The status of `pluto` (a pluto.PlutoRole): asks its pluto and the node's kernel while it runs."""
    role = pluto.role
    out = {"implementation": "libreswan", "role": role.name, "kind": role.kind, "node": role.node,
           "running": pluto.process is not None and pluto.process.running(),
           # XFRM: inner packets enter and leave on the node's own interfaces (policy-based, no device)
           "tunnel_interface": "xfrm", "config": pluto.info, "ike_sas": [], "virtual_ips": [],
           "version": pluto.version, "keepalive": float(pluto.info.get("keepalive") or 20.0)}
    if not out["running"]:
        return out
    log = pluto.log.read_text(errors="replace") if pluto.log.exists() else ""
    xfrm = parse_xfrm_state(pluto.world.run_in(role.node, ["ip", "-s", "xfrm", "state"]).stdout)
    out["kernel_xfrm_errors"] = kernel_xfrm_errors(pluto.world, role.node)
    out["ike_sas"] = ike_sas(pluto.whack("--showstates"), pluto.whack("--trafficstatus"), pluto.whack("--status"),
                             log, xfrm, initiator=role.kind == "vpn-client")
    received = received_cp(log)
    for sa in out["ike_sas"]:
        if role.kind == "vpn-client":
            sa["local_id"] = sa["local_id"] or pluto.info.get("local_id")
            sa["remote_id"] = sa["remote_id"] or pluto.info.get("gateway_id")
        else:
            sa["local_host"] = sa["local_host"] or pluto.info.get("left")
    if role.kind == "vpn-client":
        out["virtual_ips"] = sorted({v for sa in out["ike_sas"] for v in sa["local_vips"]})
        out["dns"] = received["dns"]
        out["initiate"] = pluto.initiate
    else:
        out["virtual_ips"] = sorted({v for sa in out["ike_sas"] for v in sa["remote_vips"]})
        out["pools"] = {"vpool": {"base": pluto.info.get("pool_range"), "online": len(out["virtual_ips"])}}
    out["keys_source"] = "the kernel's XFRM states (ip -s xfrm state); pluto logs no IKE SA keys"
    return out


def nat_detection(log: str) -> dict[int, dict]:
    """State number -> {"nat_local": bool, "nat_remote": bool}, from pluto's NAT_TRAVERSAL lines (both
    ends judged), attributed to the state named on the next line that names one."""
    out: dict[int, dict] = {}
    pending: dict[str, bool] = {}
    for line in log.splitlines():
        if m := _NAT_END.search(line):
            pending["nat_local" if m["end"] == "this" else "nat_remote"] = not m["not"]
        elif len(pending) == 2 and (m := _STATE_NO.search(line)):
            out[int(m["n"])] = pending
            pending = {}
    return out


def ike_sas(showstates: str, traffic: str, status: str, log: str, xfrm: dict, initiator: bool) -> list[dict]:
    """The IKE SAs with their child SAs from whack's answers, the log and the XFRM states."""
    states: dict[int, dict] = {}
    esp: dict[int, list[tuple[str, str]]] = {}
    for line in showstates.splitlines():
        if m := _STATE.match(line):
            states[int(m["n"])] = m.groupdict()
        elif m := _ESP.match(line):
            # whack prints an SPI without its leading zeros (esp.b77e47c@...): 8 digits, as everywhere
            esp[int(m["n"])] = [(spi.zfill(8), dst) for spi, dst in re.findall(r"esp\.([0-9a-f]+)@(\S+)", m["spis"])]
    traffic_kv: dict[int, dict] = {}
    for line in traffic.splitlines():
        if m := _TRAFFIC.match(line):
            traffic_kv[int(m["n"])] = dict(re.findall(r"(\w+)=('[^']*'|[^,]*)", m["kv"]))
    conns = {(m["conn"], m["inst"] or ""): m.groupdict() for m in map(_CONN.match, status.splitlines()) if m}
    spis = {int(m["n"]): m["hex"].split() for m in _IKE_SPIS.finditer(log)}
    algs = {int(m["n"]): m.groupdict() for m in _IKE_ALGS.finditer(log)}
    received = received_cp(log)
    nat = nat_detection(log)

    ikes: dict[int, dict] = {}
    for n, s in sorted(states.items()):
        if "IKE SA #" in s["rest"] or "CHILD" in s["name"]:
            continue
        hexes, alg = spis.get(n, []), algs.get(n, {})
        conn = conns.get((s["conn"], s["inst"] or "")) or conns.get((s["conn"], ""), {})
        ikes[n] = {
            "name": s["conn"], "uniqueid": n, "state": "ESTABLISHED" if "ESTABLISHED" in s["name"] else s["name"],
            "pluto_state": s["name"], "initiator": initiator, "version": 2,
            "local_host": conn.get("lhost"), "local_port": None,
            "remote_host": s["peer"], "remote_port": int(s["port"]) if s["port"] else None,
            "local_id": conn.get("lid") or None, "remote_id": conn.get("rid") or None,
            "spi_i": "".join(hexes[:8]) or None, "spi_r": "".join(hexes[8:]) or None,
            "encap": s["port"] == "4500", **nat.get(n, {}), "nat_fake": False,
            "encr_alg": alg.get("encr"), "integ_alg": None if alg.get("integ") in (None, "n/a") else alg["integ"],
            "prf_alg": alg.get("prf"), "dh_group": alg.get("dh"), "keys": None, "local_vips": [], "remote_vips": [], "child_sas": [],
            "_subnets": (conn.get("left"), conn.get("right")),
        }
    for n, s in sorted(states.items()):
        parent = re.search(r"IKE SA #(\d+)", s["rest"])
        if not parent or int(parent[1]) not in ikes:
            continue
        ike = ikes[int(parent[1])]
        out_spi = next((spi for spi, dst in esp.get(n, []) if dst == s["peer"]), None)
        in_spi = next((spi for spi, dst in esp.get(n, []) if dst != s["peer"]), None)
        k_in, k_out = xfrm.get(in_spi or "", {}), xfrm.get(out_spi or "", {})
        kv = traffic_kv.get(n, {})
        left, right = ike["_subnets"]
        lease = kv.get("lease", "").split("/")[0]
        if lease:
            ike["remote_vips"].append(lease)
        if initiator and received["address"]:
            ike["local_vips"] = [received["address"]]
        ike["local_host"] = ike["local_host"] or k_in.get("dst")
        if kv.get("id"):
            ike["remote_id"] = kv["id"].strip("'")
        ike["encap"] = ike["encap"] or bool(k_out.get("encap"))
        ike["child_sas"].append({
            "name": s["conn"], "uniqueid": n, "state": "INSTALLED" if "ESTABLISHED" in s["name"] else s["name"],
            "mode": "TUNNEL", "protocol": "ESP", "encap": bool(k_out.get("encap")),
            "spi_in": in_spi, "spi_out": out_spi,
            "encr_alg": k_out.get("encr_alg"), "encr_keysize": k_out.get("encr_keysize"),
            "integ_alg": k_out.get("integ_alg"),
            "local_ts": [left] if left else [], "remote_ts": [right] if right else [],
            "bytes_in": _int(kv.get("inBytes")), "bytes_out": _int(kv.get("outBytes")),
            "packets_in": k_in.get("packets"), "packets_out": k_out.get("packets"),
            "keys": {"encr_in": k_in.get("encr_key"), "encr_out": k_out.get("encr_key"),
                     "integ_in": k_in.get("integ_key"), "integ_out": k_out.get("integ_key")}
            if (k_in or k_out) else None,
        })
    for ike in ikes.values():
        ike.pop("_subnets")
    return list(ikes.values())


def _int(v) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def received_cp(log: str) -> dict:
    """What the client received in its last CP reply: {"address": str|None, "dns": [...]}."""
    address, dns, last = None, [], None
    for m in _RECEIVED.finditer(log):
        if m["n"] != last:
            last, dns = m["n"], []
        if m["what"] == "ADDRESS":
            address = m["addr"]
        else:
            dns.append(m["addr"])
    return {"address": address, "dns": dns}


def parse_xfrm_state(text: str) -> dict[str, dict]:
    """`ip -s xfrm state` by SPI (hex, no 0x, 8 digits): src, dst, keys (hex, for AES-GCM with the
    4-byte salt at its end, as RFC 4106 keys are given to tshark), algorithms, encapsulation, packets."""
    out: dict[str, dict] = {}
    cur: dict | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if m := re.match(r"^src (\S+) dst (\S+)$", line):
            cur = {"src": m[1], "dst": m[2]}
        elif cur is None:
            continue
        elif m := re.match(r"^proto esp spi 0x([0-9a-f]+)", line):
            out[m[1].zfill(8)] = cur
        elif m := re.match(r"^(aead|enc|auth-trunc|auth) (\S+) 0x([0-9a-f]+)(?: (\d+))?", line):
            kind, alg, key = m[1], m[2], m[3]
            if kind in ("aead", "enc"):
                cur["encr_alg"] = _ALGS.get(alg, alg)
                bits = len(key) * 4 - (32 if kind == "aead" else 0)
                cur.update(encr_key=key, encr_keysize=bits)
            else:
                cur.update(integ_alg=_ALGS.get(alg, alg), integ_key=key)
        elif line.startswith("encap type espinudp"):
            cur["encap"] = True
        elif m := re.match(r"^(\d+)\(bytes\), (\d+)\(packets\)", line):
            cur["packets"] = int(m[2])
    return out
