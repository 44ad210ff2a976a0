"""pluto's configuration from a role's config: ipsec.conf (config setup and one conn per user, or the
client's conn) and ipsec.secrets, rendered as text with no side effects.

The role config is read with the strongswan profile's reader (testbed/vendors/strongswan/config.py:
RoleCfg, the rules our daemons follow), so a bad value is refused the same way. What Libreswan 4.10
cannot do of a valid role config is not an error of the config: it is listed in info["unsupported"]
and start_role reports the role as unavailable (NOT-RUN) with that reason:

  * auth eap-md5: Libreswan's only EAP method is EAP-TLS (ipsec.conf(5), leftautheap: "none (the
    default) and tls"; pam-authorize: "Libreswan does not yet support EAP authentication methods
    for IKE" other than that);
  * more_children (more child SAs with their own selectors in one IKE SA, initiated together);
  * a user with more than one subnet: Libreswan 4.10 negotiates one traffic selector per side and
    child SA (leftsubnets= makes one child SA per subnet, which is another tunnel than the role's);
  * esp/ike proposals this module cannot translate to Libreswan's syntax.

The mapping (ipsec.conf(5) of Libreswan 4.10):

  vpn-gateway: one conn per user: right=%any, rightid=<user id>, rightaddresspool=<pool as a range>
      (pool mode: `pool`; napt mode: `napt_pool`, SNATed to G_i by the profile's firewall rules),
      leftsubnet=<the user's subnet>, narrowing=yes (the client asks for 0.0.0.0/0),
      leftmodecfgserver=yes / rightmodecfgclient=yes, modecfgdns=<dns>, authby=secret with the
      user's psk in ipsec.secrets (`%any <id> : PSK "..."`), dpdaction=clear
  vpn-client: right=<gateway>, rightsubnet=0.0.0.0/0 (full) or the one split subnet,
      leftmodecfgclient=yes (CP request, RFC 7296 3.15), narrowing=yes, dpdaction=restart,
      keyingtries=%forever, auto=start when `initiate`; site_subnets: leftsubnet=<site>, no CP
  both: identities in strongSwan's syntax (as our daemons read them) become Libreswan's: an IPv4
      address as is, user@realm as is (ID_RFC822_ADDR), `@fqdn` and a bare name as @name (ID_FQDN);
      child_rekey_after / ike_rekey_after: salifetime / ikelifetime = T + margin with
      rekeymargin = margin and rekeyfuzz=0%, so the rekey starts at T; dpd_interval: dpddelay;
      retransmit_timeout / retransmit_tries: retransmit-interval (ms) and retransmit-timeout (the
      sum of the doubling intervals; Libreswan's backoff is always 2); keepalive: keep-alive
      (config setup); mobike: mobike=yes|no (Libreswan's default: no).
"""
from __future__ import annotations

import ipaddress
import math
import os
import re
from dataclasses import dataclass, field

from nodes.runtime.ipsec.config import read_password, users
from testbed.vendors.strongswan.config import DEFAULT_NAPT_POOL, ESP_PROPOSALS, IKE_PROPOSALS, RoleCfg, \
    _inside_interface, whole_seconds

# pluto's executables under the private prefix scripts/install-libreswan unpacks the .deb into;
# inside pluto's own mount namespace the prefix's usr/libexec is overlaid on /usr/libexec, the
# path pluto was compiled with (pluto.py)
EXECDIR = "/usr/libexec/ipsec"
UPDOWN = f"{EXECDIR}/_updown"


@dataclass
class Rendered:
    """A role's ipsec.conf, ipsec.secrets and what the profile configured (status()["config"])."""
    ipsec_conf: str
    secrets: str
    info: dict = field(default_factory=dict)


class Unsupported(ValueError):
    """A valid role config this profile cannot give Libreswan."""


def render(role, plan) -> Rendered:
    """ipsec.conf and ipsec.secrets for `role` (a scenario.Role of kind vpn-gateway or vpn-client)
    in the world of `plan`; a ConfigError names the key it refuses, info["unsupported"] lists what
    Libreswan cannot do of a valid config."""
    c = RoleCfg(role)
    rendered = (_gateway if role.kind == "vpn-gateway" else _client)(c, plan)
    keepalive = c.number("keepalive", None)
    # pluto's debug classes: "base" logs the IKE SPIs the status reports (status.py); none for a load
    # run (many_sas); TESTBED_PLUTODEBUG (e.g. "all") overrides, for finding out why a run fails
    many = c.get("many_sas", False, choices=(True, False))
    setup = {"uniqueids": "yes", "plutodebug": os.environ.get("TESTBED_PLUTODEBUG", "none" if many else "base")}
    if keepalive is not None:
        setup["keep-alive"] = max(1, math.ceil(keepalive))
        rendered.info["keepalive"] = keepalive
    rendered.ipsec_conf = section("config setup", setup) + "\n" + rendered.ipsec_conf
    return rendered


# -- syntax ------------------------------------------------------------------------------------------
def section(head: str, body: dict) -> str:
    """An ipsec.conf section: its head line and tab-indented key=value lines (None left out)."""
    lines = [head]
    for k, v in body.items():
        if v is None:
            continue
        if isinstance(v, bool):
            v = "yes" if v else "no"
        lines.append(f"\t{k}={v}")
    return "\n".join(lines) + "\n"


def secret(value: str) -> str:
    """A PSK in ipsec.secrets(5): double quotes; a quote or newline in it cannot be written."""
    if '"' in value or "\n" in value:
        raise Unsupported("a pre-shared key with a double quote or a newline (ipsec.secrets(5) quoting)")
    return f'"{value}"'


def ike_id(text: str) -> str:
    """An identity in strongSwan's syntax (as our daemons read it: nodes/ipsec/ike_config.make_id)
    in Libreswan's: an IPv4 address as is, user@realm as is, @fqdn or a bare name as @fqdn."""
    text = str(text)
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        pass
    if text.startswith("@"):
        return text
    if "@" in text:
        return text
    if not re.fullmatch(r"[A-Za-z0-9._-]+", text):
        raise Unsupported(f"the identity {text!r} (Libreswan's ipsec.conf takes @fqdn names of letters, "
                          "digits, '.', '_' and '-')")
    return "@" + text


def pool_range(net: ipaddress.IPv4Network) -> str:
    """An IPv4 pool as Libreswan's rightaddresspool range (first-last host; it takes no CIDR for IPv4)."""
    hosts = list(net.hosts()) if net.num_addresses > 2 else list(net)
    return f"{hosts[0]}-{hosts[-1]}"


_DH = {"modp1024": "modp1024", "modp1536": "modp1536", "modp2048": "modp2048", "modp3072": "modp3072",
       "modp4096": "modp4096", "modp6144": "modp6144", "modp8192": "modp8192", "ecp256": "dh19",
       "ecp384": "dh20", "ecp521": "dh21", "x25519": "dh31", "curve25519": "dh31"}
_HASH = {"sha1": "sha1", "sha256": "sha2_256", "sha384": "sha2_384", "sha512": "sha2_512"}


def proposal(text: str, ike: bool) -> str:
    """A strongSwan proposal (aes128gcm16-prfsha256-modp2048-ecp256, aes128-sha256) as Libreswan's
    ike=/esp= item (aes_gcm_16_128-sha2_256-modp2048+dh19, aes128-sha2_256)."""
    encr, integ, prf, dh = [], [], [], []
    for tok in text.lower().split("-"):
        if m := re.fullmatch(r"aes(128|192|256)gcm(8|12|16)?", tok):
            encr.append(f"aes_gcm_{m[2] or 16}_{m[1]}")
        elif re.fullmatch(r"aes(128|192|256)", tok):
            encr.append(tok)
        elif tok in _HASH:
            integ.append(_HASH[tok])
        elif tok.startswith("prf") and tok[3:] in _HASH:
            prf.append(_HASH[tok[3:]])
        elif tok in _DH:
            dh.append(_DH[tok])
        else:
            raise Unsupported(f"the proposal {text!r}: no Libreswan name for {tok!r}")
    if not encr:
        raise Unsupported(f"the proposal {text!r}: no encryption algorithm")
    aead = all(e.startswith("aes_gcm") for e in encr)
    if ike:
        second = prf or integ
        if not second:
            raise Unsupported(f"the IKE proposal {text!r}: no PRF")
        parts = ["+".join(encr), "+".join(dict.fromkeys(second))]
    else:
        parts = ["+".join(encr)] + (["+".join(integ)] if integ and not aead else [])
    if dh:
        parts.append("+".join(dict.fromkeys(dh)))
    return "-".join(parts)


def proposals(c: RoleCfg, key: str, default, ike: bool, unsupported: list[str]) -> str | None:
    items = c.get(key, list(default))
    if isinstance(items, str):
        items = [items]
    try:
        return ",".join(proposal(p, ike) for p in items)
    except Unsupported as exc:
        unsupported.append(f"{key}: {exc}")
        return None


def _timers(c: RoleCfg, dpd_default: float) -> tuple[dict, dict]:
    """(conn settings, info) for rekeying, liveness and retransmission from the role config."""
    conn: dict = {}
    info: dict = {}
    # Libreswan rekeys at lifetime - rekeymargin (rekeyfuzz 0%), with one rekeymargin for both
    # lifetimes: a margin m as long as the longest rekey time (at least 10 s) and lifetime = T + m
    rekey = {life: whole_seconds(c, key) for key, life in (("child_rekey_after", "salifetime"),
                                                           ("ike_rekey_after", "ikelifetime"))}
    if any(rekey.values()):
        m = max(10, *(t for t in rekey.values() if t))
        for life, t in rekey.items():
            if t:
                conn[life] = f"{t + m}s"
                info["child_rekey_time" if life == "salifetime" else "ike_rekey_time"] = t
        conn.update(rekeymargin=f"{m}s", rekeyfuzz="0%")
    dpd = whole_seconds(c, "dpd_interval", dpd_default)
    if dpd:
        conn["dpddelay"] = f"{dpd}s"
        info["dpd_delay"] = dpd
    timeout = c.number("retransmit_timeout", None)
    tries = c.number("retransmit_tries", None)
    if timeout or tries is not None:
        first = timeout or 0.5  # Libreswan's retransmit-interval default: 500 ms
        n = int(tries) if tries is not None else 5
        conn["retransmit-interval"] = max(1, round(first * 1000))
        conn["retransmit-timeout"] = f"{max(1, math.ceil(sum(first * 2 ** k for k in range(n + 1))))}s"
        info["retransmit"] = {"interval_ms": conn["retransmit-interval"], "timeout": conn["retransmit-timeout"]}
    backoff = c.number("retransmit_backoff", None)
    if backoff and backoff != 2:
        info["retransmit_backoff_ignored"] = f"{backoff} (Libreswan doubles the interval for each try)"
    mobike = c.get("mobike", None, (True, False))
    if mobike is not None:
        conn["mobike"] = mobike
    return conn, info


def _left_address(plan, node: str) -> str:
    """The node's address toward its default route (pluto's `left` must be one of its addresses),
    or %defaultroute where the plan gives the node no default route."""
    spec = plan.nodes[node]
    gw = spec.routes.get("default")
    if gw is not None:
        for intf in spec.interfaces:
            if gw in intf.prefix:
                return str(intf.address)
    return "%defaultroute"


# -- roles -------------------------------------------------------------------------------------------
def _gateway(c: RoleCfg, plan) -> Rendered:
    unsupported: list[str] = []
    auth = c.get("auth", "psk", ("psk", "eap-md5"))
    if auth == "eap-md5":
        unsupported.append("auth eap-md5: Libreswan 4.10 offers no EAP-MD5 (its only EAP method is EAP-TLS, "
                           "ipsec.conf(5) leftautheap)")
    presence = c.get("internal_presence", "napt", ("napt", "pool"))
    pool_net = c.network("pool") if presence == "pool" else c.network("napt_pool", DEFAULT_NAPT_POOL)
    dns = c.addresses("dns", [])
    left = _left_address(plan, c.role.node)
    local_id = c.get("identity", None)
    timers, timer_info = _timers(c, 30)  # our gateway's default dpd_interval
    ike = proposals(c, "ike_proposals", IKE_PROPOSALS, True, unsupported)
    esp = proposals(c, "esp_proposals", ESP_PROPOSALS, False, unsupported)
    conns, secrets = [], []
    for n, (uid, u) in enumerate(users(c).items()):
        try:
            rid = ike_id(uid)
            secrets.append(f"%any {rid} : PSK {secret(u['psk'])}")
        except Unsupported as exc:
            unsupported.append(f"users.{uid}: {exc}")
            continue
        subnets = list(u["subnets"])
        if len(subnets) > 1:
            unsupported.append(f"users.{uid}.subnets: {len(subnets)} subnets in one child SA (Libreswan 4.10 "
                               "negotiates one traffic selector per side)")
        conns.append(section(f"conn user-{n}", {
            "ikev2": "yes", "authby": "secret", "auto": "add",
            "left": left, "leftid": ike_id(local_id) if local_id else None,
            "leftsubnet": subnets[0] if subnets else "0.0.0.0/0", "leftmodecfgserver": True,
            "leftupdown": UPDOWN,
            "right": "%any", "rightid": rid, "rightaddresspool": pool_range(pool_net), "rightmodecfgclient": True,
            "modecfgdns": ",".join(dns) if dns else None,
            "narrowing": True, "ike": ike, "esp": esp, "dpdaction": "clear", "rekey": "yes",
            "encapsulation": "auto", "fragmentation": "yes",
            **timers,
        }))
    inside_name, inside_addr = _inside_interface(c, plan, c.role.node)
    info = {"internal_presence": presence, "pool": str(pool_net), "pool_range": pool_range(pool_net), "auth": auth,
            "internet_access": bool(c.get("internet_access", False)), "left": left,
            "inside_interface": inside_name, "inside_address": inside_addr, "dns": dns, "conns": len(conns),
            "unsupported": unsupported, **timer_info}
    return Rendered("\n".join(conns), "\n".join(secrets) + "\n", info)


def _client(c: RoleCfg, plan) -> Rendered:
    unsupported: list[str] = []
    gateway = c.get("gateway")
    identity = c.get("identity")
    auth = c.get("auth", "psk", ("psk", "eap-md5"))
    if auth == "eap-md5":
        if read_password(c) is None:
            raise c.fail("password_file", "a password file (or password, or TESTBED_VPN_PASSWORD) for auth eap-md5")
        unsupported.append("auth eap-md5: Libreswan 4.10 offers no EAP-MD5 (its only EAP method is EAP-TLS, "
                           "ipsec.conf(5) leftautheap)")
    tunnel = c.get("tunnel", "full", ("full", "split"))
    remote_ts = ["0.0.0.0/0"] if tunnel == "full" else c.prefixes("subnets", c.get("subnets"))
    if len(remote_ts) > 1:
        unsupported.append(f"subnets: {len(remote_ts)} split-tunnel subnets in one child SA (Libreswan 4.10 "
                           "negotiates one traffic selector per side)")
    extra = c.get("more_children", [])
    if not isinstance(extra, list):
        raise c.fail("more_children", "a list of subnet lists (one child SA each)", extra)
    if extra:
        unsupported.append("more_children: more child SAs in the IKE SA is not rendered by the libreswan profile")
    gw_id = c.get("gateway_identity", None)
    timers, timer_info = _timers(c, 5)  # our client's default dpd_interval
    ike = proposals(c, "ike_proposals", IKE_PROPOSALS, True, unsupported)
    esp = proposals(c, "esp_proposals", ESP_PROPOSALS, False, unsupported)
    lid = rid = None
    try:
        lid = ike_id(identity)
        rid = ike_id(gw_id) if gw_id else None
        psk = secret(c.get("psk"))
    except Unsupported as exc:
        unsupported.append(str(exc))
        psk = '""'
    site = c.prefixes("site_subnets", c.get("site_subnets")) if c.get("site_subnets", None) else None
    if site and len(site) > 1:
        unsupported.append("site_subnets: more than one site subnet in one child SA")
    initiate = c.get("initiate", True, (True, False))
    conn = {
        # added, then initiated by the profile (pluto.connect) when `initiate`, so that its outcome is seen
        "ikev2": "yes", "authby": "secret", "auto": "add",
        "left": _left_address(plan, c.role.node), "leftid": lid,
        "leftmodecfgclient": None if site else True, "leftsubnet": site[0] if site else "0.0.0.0/0",
        "leftupdown": UPDOWN,
        "right": gateway, "rightid": rid, "rightsubnet": remote_ts[0],
        "narrowing": True, "ike": ike, "esp": esp,
        # liveness and reconnect, as our client does
        "dpdaction": "restart", "keyingtries": "%forever", "rekey": "yes",
        "encapsulation": "auto", "fragmentation": "yes",
        **timers,
    }
    # the secret is found by the pair of identities; the gateway's is unknown when not configured
    secrets = f"{lid or '%any'} {rid or '%any'} : PSK {psk}\n"
    info = {"auth": auth, "tunnel": tunnel, "remote_ts": remote_ts, "gateway": gateway, "site_subnets": site,
            "local_id": lid, "gateway_id": rid,
            "initiate": initiate, "children": ["vpn"], "unsupported": unsupported, **timer_info}
    return Rendered(section("conn vpn", conn), secrets, info)
