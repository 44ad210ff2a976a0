"""charon's configuration from a role's config: swanctl.conf (connections, pools, secrets) and
strongswan.conf (plugins, logs, timers), rendered as text with no side effects.

The role config has the keys our gateway and client read (fixtures/scenarios/remote-access-basic.yaml)
and is read with the same reader and rules (nodes/runtime/ipsec/config.py), refusing a bad value in
the scenario files' style (`<file>: roles.<role>.config.<key>: expected ...`):

  vpn-gateway: auth psk|eap-md5 (psk), internal_presence napt|pool, pool (CIDR, pool mode),
      napt_pool (CIDR handed out in napt mode, then SNATed to G_i; 100.64.0.0/24), dns,
      users {id: {psk, password, subnets}}, identity (the gateway's IKE id; default its address),
      inside_interface (default: the node's interface on the intranet), internet_access (MASQUERADE to
      the outside address for what leaves elsewhere than through the inside interface)
  vpn-client: gateway, identity, psk, password or password_file (for eap-md5), auth psk|eap-md5,
      tunnel full|split, subnets (split tunnel), more_children (more child SAs in the IKE SA: a list
      of subnet lists, one child each), gateway_identity (the gateway's IKE id to expect),
      initiate (true: connect at start; a refusal shows in status()["initiate"], it raises nothing)
      site_subnets (site-to-site: the node's own networks as local_ts, no virtual IP; e.g. an access
      router joining its site to the intranet, the trusted FA of the MIPv4/VPN problem statement 4.2)
  both: child_rekey_after / ike_rekey_after (seconds; the child's / connection's rekey_time, whole
      seconds rounded up, rand_time 0, so the rekey comes when configured; life_time / over_time
      set well past it), dpd_interval (dpd_delay; default as our daemons: 5 s client, 30 s
      gateway), retransmit_timeout / retransmit_backoff / retransmit_tries (charon's
      retransmit_timeout / retransmit_base / retransmit_tries), keepalive (charon.keep_alive),
      esp_proposals, mobike (true|false: MOBIKE, RFC 4555, on or off for the connection; unset,
      charon's default, which is on for IKEv2). The client reconnects as ours does: dpd_action and close_action restart,
      keyingtries 0 (a gateway that stops answering takes the tunnel down, and charon tries again
      until it answers).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from nodes.runtime.ipsec.config import Cfg, read_password, users
from testbed.profile_api import config_error

PLUGINS = ("random nonce openssl pem pkcs1 x509 revocation constraints pubkey curve25519 aes sha1 sha2 "
           "hmac gcm kdf {ipsec}kernel-netlink socket-default updown vici eap-md5 eap-identity attr")
MANY_SAS_THREADS, MANY_SAS_TABLE = 32, 4096   # strongswan.conf(5): charon.threads, charon.ikesa_table_size (a power of 2)
IKE_PROPOSALS = ("aes128gcm16-prfsha256-modp2048-ecp256-x25519", "aes128-sha256-modp2048-ecp256-x25519")
ESP_PROPOSALS = ("aes128gcm16", "aes256gcm16", "aes128-sha256")
DEFAULT_NAPT_POOL = "100.64.0.0/24"
SITE_ROUTING_PRIO = 1000  # below the FA's reverse-tunnel rules (nodes/runtime/mip_tunnels.RULE_PRIORITY 434)


class RoleCfg(Cfg):
    """nodes/runtime/ipsec/config.py's reader (the rules our daemons follow), refusing in the
    scenario files' style: the scenario file, `roles.<role>.config.<key>`, what was expected."""

    def __init__(self, role):
        super().__init__(role.config or {}, role.source)
        self.role = role

    def fail(self, key: str, expected: str, got=None):
        return config_error(self.role, key, expected, got)


def whole_seconds(c: Cfg, key: str, default=None) -> int | None:
    """A time in whole seconds for swanctl.conf (charon takes no fractions): rounded up, at least 1;
    None when the key is absent or 0 (off)."""
    value = c.number(key, default)
    return max(1, math.ceil(value)) if value else None


@dataclass(frozen=True)
class DataPlane:
    """Where charon's ESP happens. `plugin`: its IPsec backend, loaded before kernel-netlink (which
    then does only the networking: addresses, routes) or None (kernel-netlink is the backend too:
    the kernel's XFRM); `tun`: the TUN device the tunnel's inner packets cross, or None (XFRM
    policies select them, on the interfaces they arrive and leave on)."""
    profile: str
    plugin: str | None
    tun: str | None


# strongSwan's kernel-libipsec: ESP in userspace through a TUN device, always UDP-encapsulated
LIBIPSEC = DataPlane("strongswan", "kernel-libipsec", "ipsec0")
# strongSwan's kernel-netlink: ESP in the kernel's XFRM, plain ESP unless a NAT is detected (RFC 3948)
KERNEL = DataPlane("strongswan-kernel", None, None)
PLANES = {plane.profile: plane for plane in (LIBIPSEC, KERNEL)}  # by the profile that runs it


@dataclass
class Rendered:
    """A role's swanctl.conf and what the profile configured (status()["config"] shows `info`)."""
    swanctl: str
    info: dict = field(default_factory=dict)


def render(role, plan) -> Rendered:
    """swanctl.conf for `role` (a scenario.Role of kind vpn-gateway or vpn-client) in the world of
    `plan`; a ConfigError names the key it refuses."""
    c = RoleCfg(role)
    rendered = (_gateway if role.kind == "vpn-gateway" else _client)(c, plan)
    keepalive = c.number("keepalive", None)
    if keepalive is not None:
        rendered.info["keepalive"] = keepalive
    rendered.info["retransmit"] = _retransmit(c)
    if c.get("many_sas", False, choices=(True, False)):
        rendered.info["many_sas"] = True
    return rendered


def quote(value) -> str:
    """A swanctl.conf value, quoted (settings syntax: double quotes, backslash escapes)."""
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def block(name: str, body: dict, indent: int = 0) -> str:
    """A settings section (strongswan.conf(5) syntax); None values are left out, bools are yes/no."""
    pad = "  " * indent
    lines = [f"{pad}{name} {{"]
    for k, v in body.items():
        if v is None:
            continue
        if isinstance(v, dict):
            lines.append(block(k, v, indent + 1))
        elif isinstance(v, (list, tuple)):
            lines.append(f"{pad}  {k} = {', '.join(str(x) for x in v)}")
        elif isinstance(v, bool):
            lines.append(f"{pad}  {k} = {'yes' if v else 'no'}")
        else:
            lines.append(f"{pad}  {k} = {v}")
    lines.append(f"{pad}}}")
    return "\n".join(lines)


def strongswan_conf(vici_socket: Path, log: Path, keylog: Path, resolv: Path | None, info: dict,
                    plane: DataPlane = LIBIPSEC) -> str:
    """strongswan.conf for one charon: only the plugins it needs (the data plane's IPsec backend
    among them), its vici socket, its logs (the key
    log at level 4 of ike and chd), retransmission and keepalive from `info` (render()'s). With
    `many_sas` (the role config's key for a load run) charon is tuned as strongswan.conf(5) advises
    for many IKE SAs: a segmented IKE SA hash table, more worker threads, and no per-SA log lines
    (only errors; no key log)."""
    filelog = {
        "main": {"path": str(log), "time_format": quote("%H:%M:%S"), "ike_name": True, "append": True,
                 "flush_line": True, "default": 1, "ike": 2, "cfg": 2, "knl": 2, "net": 2, "chd": 2},
        # key material (level 4 of ike and chd): the test decryption the issue asks for
        "keys": {"path": str(keylog), "time_format": quote("%H:%M:%S"), "ike_name": True, "append": False,
                 "flush_line": True, "default": -1, "ike": 4, "chd": 4},
        # to the process log: stderr is unbuffered (stdout is not); "spawning N worker threads" = started
        "stderr": {"default": 0, "dmn": 1, "job": 1},
    }
    tuning = {}
    if info.get("many_sas"):
        filelog["main"].update({"default": -1, "ike": -1, "cfg": -1, "knl": -1, "net": -1, "chd": -1, "dmn": 1})
        filelog["keys"].update({"ike": -1, "chd": -1})
        filelog["stderr"]["default"] = -1
        tuning = {"threads": MANY_SAS_THREADS, "ikesa_table_size": MANY_SAS_TABLE, "ikesa_table_segments": 16}
    plugins = {"vici": {"socket": f"unix://{vici_socket}"}}
    load = PLUGINS.format(ipsec=f"{plane.plugin} " if plane.plugin else "")
    if resolv is not None:
        load += " resolve"
        plugins["resolve"] = {"file": str(resolv)}
    charon = {
        "load_modular": False,
        "load": load,
        "install_routes": True,
        "install_virtual_ip": True,
        # site-to-site: charon's routing-table rule after the node's own policy rules (an FA's reverse
        # tunnels steer visitors' packets by source first); charon's default is 220
        "routing_table_prio": info.get("routing_table_prio"),
        # the role config's retransmit_timeout / retransmit_backoff / retransmit_tries (as our daemons
        # read them; charon's timeout for try k is timeout * base**k, the same formula)
        **{"retransmit_tries": 3, "retransmit_timeout": 1.0, "retransmit_base": 1.4, **info.get("retransmit", {})},
        **tuning,
        "filelog": filelog,
        "syslog": {"identifier": "charon-testbed", "daemon": {"default": -1}, "auth": {"default": -1}},
        "plugins": plugins,
    }
    if info.get("keepalive") is not None:  # NAT-T keepalive interval (charon's default: 20 s)
        charon["keep_alive"] = f"{int(info['keepalive'])}s"
    swanctl = {"load": "pem pkcs1 x509 revocation constraints pubkey openssl random"}
    return block("charon", charon) + "\n" + block("swanctl", swanctl) + "\n"


def _timers(c: Cfg, dpd_default: float) -> tuple[dict, dict, dict]:
    """(connection settings, child settings, info) for rekeying and liveness from the role config.

    child_rekey_after / ike_rekey_after (seconds, as our daemons read them) become the child's and
    the connection's rekey_time with rand_time = 0, so a rekey starts when configured and not up to
    10 % earlier; the child's life_time (hard expiry) and the IKE SA's over_time are set well past
    it (charon derives them as 110 % / 10 % in whole seconds, which for a rekey every 2 s would put
    the hard expiry on the rekey itself). dpd_interval (the same default as our daemon in the role)
    becomes dpd_delay."""
    conn: dict = {}
    child: dict = {}
    info: dict = {}
    child_rekey = whole_seconds(c, "child_rekey_after")
    if child_rekey:
        child.update(rekey_time=f"{child_rekey}s", life_time=f"{child_rekey + max(child_rekey, 10)}s", rand_time="0s")
        info["child_rekey_time"] = child_rekey
    ike_rekey = whole_seconds(c, "ike_rekey_after")
    if ike_rekey:
        conn.update(rekey_time=f"{ike_rekey}s", over_time=f"{max(ike_rekey, 10)}s", rand_time="0s")
        info["ike_rekey_time"] = ike_rekey
    dpd = whole_seconds(c, "dpd_interval", dpd_default)
    if dpd:
        conn["dpd_delay"] = f"{dpd}s"
        info["dpd_delay"] = dpd
    return conn, child, info


def _mobike(c: Cfg) -> bool | None:
    """The connection's `mobike` (RFC 4555 address updates with UPDATE_SA_ADDRESSES instead of a new
    IKE SA): the role config's true/false, or None (left out: charon's default, on)."""
    return c.get("mobike", None, (True, False))


def _retransmit(c: Cfg) -> dict:
    """charon's retransmission settings (strongswan.conf) from the role config's, where given."""
    out = {}
    for key, name in (("retransmit_timeout", "retransmit_timeout"), ("retransmit_backoff", "retransmit_base")):
        value = c.number(key, None)
        if value:
            out[name] = value
    tries = c.number("retransmit_tries", None)
    if tries is not None:
        out["retransmit_tries"] = int(tries)
    return out


def _inside_interface(c: Cfg, plan, node: str):
    """(name, address) of the gateway's interface toward the intranet: `inside_interface`, or the
    node's interface on an intranet segment."""
    interfaces = plan.nodes[node].interfaces
    inside = c.get("inside_interface", None)
    if inside is None:
        for intf in interfaces:
            if intf.segment and plan.segments[intf.segment].zone == "intranet":
                return intf.name, str(intf.address)
        raise c.fail("inside_interface", f"a value: node {node} has no interface on the intranet")
    by_name = {i.name: i for i in interfaces}
    if inside not in by_name:
        raise c.fail("inside_interface", f"an interface of node {node} ({sorted(by_name)})", inside)
    return inside, str(by_name[inside].address)


def _gateway(c: RoleCfg, plan) -> Rendered:
    auth = c.get("auth", "psk", ("psk", "eap-md5"))
    presence = c.get("internal_presence", "napt", ("napt", "pool"))
    pool_net = c.network("pool") if presence == "pool" else c.network("napt_pool", DEFAULT_NAPT_POOL)
    dns = c.addresses("dns", [])
    local_id = c.get("identity", None)
    conn_timers, child_timers, timer_info = _timers(c, 30)  # our gateway's default dpd_interval
    connections, secrets = {}, {}
    for n, (uid, u) in enumerate(users(c).items()):
        remote = {"auth": "psk", "id": quote(uid)}
        if auth == "eap-md5":
            if u["password"] is None:
                raise c.fail(f"users.{uid}.password", "a password (auth: eap-md5)")
            remote = {"auth": "eap-md5", "id": quote(uid), "eap_id": quote(uid)}
            secrets[f"eap-{n}"] = {"id": quote(uid), "secret": quote(u["password"])}
        secrets[f"ike-{n}"] = {"id": quote(uid), "secret": quote(u["psk"])}
        connections[f"user-{n}"] = {
            "version": 2,
            "proposals": ", ".join(IKE_PROPOSALS),
            "pools": "vpool",
            "send_certreq": False,
            "unique": "replace",
            "mobike": _mobike(c),
            **conn_timers,
            "local": {"auth": "psk", "id": quote(local_id) if local_id else None},
            "remote": remote,
            "children": {
                f"user-{n}": {
                    "local_ts": ", ".join(u["subnets"]),
                    "esp_proposals": ", ".join(c.get("esp_proposals", ESP_PROPOSALS)),
                    "mode": "tunnel",
                    "dpd_action": "clear",
                    **child_timers,
                },
            },
        }
    if c.get("many_sas", False, choices=(True, False)):
        connections = _one_connection(connections)
    pool = {"addrs": str(pool_net)}
    if dns:
        pool["dns"] = ", ".join(dns)
    conf = "\n".join([block("connections", connections), block("pools", {"vpool": pool}),
                      block("secrets", secrets)]) + "\n"
    inside_name, inside_addr = _inside_interface(c, plan, c.role.node)
    return Rendered(conf, {"internal_presence": presence, "pool": str(pool_net), "auth": auth,
                           "internet_access": bool(c.get("internet_access", False)),
                           "inside_interface": inside_name, "inside_address": inside_addr, "dns": dns, **timer_info})


def _one_connection(connections: dict) -> dict:
    """Many users with one policy: one connection for any identity (remote id %any, each user's key
    found by the identity it sends), as strongSwan's remote-access examples are set up, instead of a
    connection per user, which charon searches one by one for every IKE_SA_INIT and IKE_AUTH (10,000
    of them established nothing in a load run). Users with different policies keep theirs."""
    def policy(conn):
        (child,) = conn["children"].values()
        return {**conn, "remote": {**conn["remote"], "id": None, "eap_id": None}, "children": child}
    shapes = {json.dumps(policy(conn), sort_keys=True, default=str) for conn in connections.values()}
    if len(shapes) != 1:
        return connections
    first = policy(next(iter(connections.values())))
    remote = {**first["remote"], "id": "%any", **({"eap_id": "%any"} if first["remote"]["auth"] == "eap-md5" else {})}
    return {"users": {**first, "remote": remote, "children": {"users": first["children"]}}}


def _client(c: RoleCfg, plan) -> Rendered:
    gateway = c.get("gateway")
    identity = c.get("identity")
    auth = c.get("auth", "psk", ("psk", "eap-md5"))
    tunnel = c.get("tunnel", "full", ("full", "split"))
    remote_ts = ["0.0.0.0/0"] if tunnel == "full" else c.prefixes("subnets", c.get("subnets"))
    children = {"vpn": remote_ts}
    extra = c.get("more_children", [])  # more child SAs in the same IKE SA, one list of subnets each
    if not isinstance(extra, list):
        raise c.fail("more_children", "a list of subnet lists (one child SA each)", extra)
    for n, subnets in enumerate(extra):
        children[f"vpn-{n + 2}"] = c.prefixes(f"more_children.{n}", subnets)
    # the gateway authenticates itself with the user's pre-shared key, also toward a password (EAP)
    secrets = {"ike-0": {"id": quote(identity), "secret": quote(c.get("psk"))}}
    if auth == "psk":
        local = {"auth": "psk", "id": quote(identity)}
    else:
        password = read_password(c)
        if password is None:
            raise c.fail("password_file", "a password file (or password, or TESTBED_VPN_PASSWORD) for auth eap-md5")
        local = {"auth": "eap-md5", "id": quote(identity), "eap_id": quote(identity)}
        secrets = {"eap-0": {"id": quote(identity), "secret": quote(password)}, **secrets}
    gw_id = c.get("gateway_identity", None)
    conn_timers, child_timers, timer_info = _timers(c, 5)  # our client's default dpd_interval
    connections = {
        "vpn": {
            "version": 2,
            "remote_addrs": gateway,
            "vips": "0.0.0.0",
            "proposals": ", ".join(IKE_PROPOSALS),
            "send_certreq": False,
            # liveness and reconnect, as our client does: a gateway that stops answering the
            # liveness checks (or deletes the SA) takes the tunnel down, and charon tries again,
            # without limit, until the gateway answers
            "keyingtries": 0,
            "mobike": _mobike(c),
            **conn_timers,
            "local": local,
            "remote": {"auth": "psk", "id": quote(gw_id) if gw_id else None},
            "children": {
                name: {
                    "remote_ts": ", ".join(ts),
                    "esp_proposals": ", ".join(c.get("esp_proposals", ESP_PROPOSALS)),
                    "mode": "tunnel",
                    "dpd_action": "restart",
                    "close_action": "restart",
                    **child_timers,
                } for name, ts in children.items()
            },
        },
    }
    site = c.prefixes("site_subnets", c.get("site_subnets")) if c.get("site_subnets", None) else None
    if site:  # site-to-site: its networks on this side instead of a virtual IP
        timer_info["routing_table_prio"] = SITE_ROUTING_PRIO
        connections["vpn"]["vips"] = None
        for child in connections["vpn"]["children"].values():
            child["local_ts"] = ", ".join(site)
    conf = "\n".join([block("connections", connections), block("secrets", secrets)]) + "\n"
    initiate = c.get("initiate", True, (True, False))
    return Rendered(conf, {"auth": auth, "tunnel": tunnel, "mobike": _mobike(c), "remote_ts": remote_ts,
                           "gateway": gateway, "site_subnets": site,
                           "initiate": initiate, "children": list(children), **timer_info})
