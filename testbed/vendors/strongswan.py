"""The `strongswan` vendor profile: charon (strongSwan 5.9) with kernel-libipsec in a role.

The kernel here has no ESP (DESIGN.md, principle 4), so charon runs its userspace data plane,
kernel-libipsec: a TUN device `ipsec0` in the node, ESP always UDP-encapsulated on port 4500
(it fakes a NAT detection; REFERENCE.md). One charon per node, each with

  * its own mount namespace with a private tmpfs on /run (charon's pid file path is fixed), made
    with `unshare -m` right before exec, so two nodes' charons never meet; the vici socket and
    the configuration live outside /run (the run's directory and the case's log directory);
  * its own strongswan.conf (STRONGSWAN_CONF, generated into the log directory) that loads only
    the plugins it needs, logs to `<node>.<role>.charon.log` (ike, cfg, knl, net at level 2) and
    writes key material to `<node>.<role>.keys.log` (this Debian build has no save-keys plugin,
    so the child and IKE SA keys are taken from charon's level-4 `chd`/`ike` log lines);
  * a swanctl.conf generated from the scenario's role config, loaded over vici with
    `swanctl --load-all`.

Role config (the same keys as our gateway and client read; see
fixtures/scenarios/remote-access-basic.yaml):

  vpn-gateway: auth psk|eap-md5 (psk), internal_presence napt|pool, pool (CIDR, pool mode),
      napt_pool (CIDR handed out in napt mode, then SNATed to G_i; 100.64.0.0/24), dns,
      users {id: {psk, password, subnets}}, identity (the gateway's IKE id; default its address),
      inside_interface (default: the node's interface on the intranet)
  vpn-client: gateway, identity, psk, password or password_file (for eap-md5), auth psk|eap-md5,
      tunnel full|split, subnets (split tunnel), gateway_identity (the gateway's IKE id to expect),
      initiate (true: connect at start; a refusal shows in status()["initiate"], it raises nothing)
  both: child_rekey_after / ike_rekey_after (seconds; the child's / connection's rekey_time, whole
      seconds rounded up, rand_time 0, so the rekey comes when configured; life_time / over_time
      set well past it), dpd_interval (dpd_delay; default as our daemons: 5 s client, 30 s
      gateway), retransmit_timeout / retransmit_backoff / retransmit_tries (charon's
      retransmit_timeout / retransmit_base / retransmit_tries), keepalive (charon.keep_alive).
      The client reconnects as ours does: dpd_action and close_action restart, keyingtries 0
      (a gateway that stops answering takes the tunnel down, and charon tries again until it answers).

DNS on the client: the resolve plugin writes the servers it receives into `<dir>/resolv.conf`,
which starts as a copy of the node's /etc/resolv.conf and is bind-mounted over /etc/resolv.conf in
the node's own mount namespace before charon starts (so R's applications use the internal
resolver while the tunnel is up); stop() unmounts it. The plugin rewrites its file by unlink() and
a new file (resolve_handler.c), which would leave the bind mount on the old inode, so charon's
private mount namespace binds the file onto itself: the unlink fails (EBUSY) and the rewrite
happens in place. The machine's /etc/resolv.conf is never written.

status() (JSON-able; see `_status`):
  {"implementation": "strongswan", "version": ..., "role", "kind", "node",
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
   "virtual_ips": [...] (assigned to this node), "pools": {...} (gateway), "dns": [...] (client),
   "tunnel_interface": "ipsec0"}
"""
from __future__ import annotations

import ipaddress
import itertools
import math
import os
import re
import shlex
import socket
import struct
import time
from pathlib import Path

from testbed import REPO_ROOT
from testbed.profiles import RoleHandle
from testbed.schema import ConfigError

CHARON = "/usr/lib/ipsec/charon"
SWANCTL = "swanctl"
TUN = "ipsec0"  # kernel-libipsec's TUN device (the first one in the node)

PLUGINS = ("random nonce openssl pem pkcs1 x509 revocation constraints pubkey curve25519 aes sha1 sha2 "
           "hmac gcm kdf kernel-libipsec kernel-netlink socket-default updown vici eap-md5 eap-identity attr")
IKE_PROPOSALS = ("aes128gcm16-prfsha256-modp2048-ecp256-x25519", "aes128-sha256-modp2048-ecp256-x25519")
ESP_PROPOSALS = ("aes128gcm16", "aes256gcm16", "aes128-sha256")
DEFAULT_NAPT_POOL = "100.64.0.0/24"

_SERIAL = itertools.count(1)  # vici socket names stay unique within a run (one world after another)
_RUNNING: dict[tuple[int, str], "CharonRole"] = {}  # (id(world), node) -> its charon: one per node


class StrongSwanError(RuntimeError):
    pass


# ---- a minimal vici client (the protocol of src/libcharon/plugins/vici/README.md) -----------------
_CMD_REQUEST, _CMD_RESPONSE, _CMD_UNKNOWN, _EVENT_REGISTER, _EVENT_UNREGISTER = 0, 1, 2, 3, 4
_EVENT_CONFIRM, _EVENT_UNKNOWN, _EVENT = 5, 6, 7
_NAMED = {_CMD_REQUEST, _EVENT_REGISTER, _EVENT_UNREGISTER, _EVENT}
_SECTION_START, _SECTION_END, _KEY_VALUE, _LIST_START, _LIST_ITEM, _LIST_END = 1, 2, 3, 4, 5, 6


def vici_encode(msg: dict) -> bytes:
    out = bytearray()
    for key, value in msg.items():
        k = key.encode()
        if isinstance(value, dict):
            out += bytes([_SECTION_START, len(k)]) + k + vici_encode(value) + bytes([_SECTION_END])
        elif isinstance(value, (list, tuple)):
            out += bytes([_LIST_START, len(k)]) + k
            for item in value:
                b = item if isinstance(item, bytes) else str(item).encode()
                out += bytes([_LIST_ITEM]) + struct.pack("!H", len(b)) + b
            out += bytes([_LIST_END])
        else:
            b = value if isinstance(value, bytes) else str(value).encode()
            out += bytes([_KEY_VALUE, len(k)]) + k + struct.pack("!H", len(b)) + b
    return bytes(out)


def vici_decode(data: bytes) -> dict:
    root: dict = {}
    stack = [root]
    current_list: list | None = None
    i = 0

    def name() -> str:
        nonlocal i
        n = data[i]
        s = data[i + 1:i + 1 + n].decode(errors="replace")
        i += 1 + n
        return s

    def value() -> str:
        nonlocal i
        (n,) = struct.unpack_from("!H", data, i)
        s = data[i + 2:i + 2 + n].decode(errors="replace")
        i += 2 + n
        return s

    while i < len(data):
        t = data[i]
        i += 1
        if t == _SECTION_START:
            sub: dict = {}
            stack[-1][name()] = sub
            stack.append(sub)
        elif t == _SECTION_END:
            stack.pop()
        elif t == _KEY_VALUE:
            k = name()
            stack[-1][k] = value()
        elif t == _LIST_START:
            current_list = []
            stack[-1][name()] = current_list
        elif t == _LIST_ITEM:
            assert current_list is not None
            current_list.append(value())
        elif t == _LIST_END:
            current_list = None
        else:
            raise StrongSwanError(f"vici: unknown element type {t} at offset {i - 1}")
    return root


class Vici:
    """Talks to one charon's vici socket (a Unix socket reachable from any network namespace)."""

    def __init__(self, path: Path, timeout: float = 10.0):
        self.path, self.timeout = str(path), timeout

    def _connect(self) -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.path)
        return s

    @staticmethod
    def _send(s: socket.socket, ptype: int, name: str | None = None, msg: dict | None = None) -> None:
        body = bytes([ptype])
        if ptype in _NAMED:
            n = (name or "").encode()
            body += bytes([len(n)]) + n
        body += vici_encode(msg or {})
        s.sendall(struct.pack("!I", len(body)) + body)

    @staticmethod
    def _recv(s: socket.socket) -> tuple[int, str | None, dict]:
        def exactly(n: int) -> bytes:
            buf = b""
            while len(buf) < n:
                chunk = s.recv(n - len(buf))
                if not chunk:
                    raise StrongSwanError("vici: charon closed the connection")
                buf += chunk
            return buf

        (length,) = struct.unpack("!I", exactly(4))
        body = exactly(length)
        ptype, i, name = body[0], 1, None
        if ptype in _NAMED:
            n = body[1]
            name, i = body[2:2 + n].decode(), 2 + n
        return ptype, name, vici_decode(body[i:])

    def request(self, cmd: str, msg: dict | None = None) -> dict:
        with self._connect() as s:
            self._send(s, _CMD_REQUEST, cmd, msg)
            ptype, _, reply = self._recv(s)
        if ptype != _CMD_RESPONSE:
            raise StrongSwanError(f"vici: charon does not know the command {cmd!r}")
        return reply

    def stream(self, cmd: str, event: str, msg: dict | None = None) -> list[dict]:
        """A command whose answer comes as events (list-sas, list-conns) before the response."""
        events = []
        with self._connect() as s:
            self._send(s, _EVENT_REGISTER, event)
            ptype, _, _ = self._recv(s)
            if ptype != _EVENT_CONFIRM:
                raise StrongSwanError(f"vici: charon refused the event {event!r}")
            self._send(s, _CMD_REQUEST, cmd, msg)
            while True:
                ptype, name, reply = self._recv(s)
                if ptype == _EVENT and name == event:
                    events.append(reply)
                elif ptype == _CMD_RESPONSE:
                    break
                elif ptype == _CMD_UNKNOWN:
                    raise StrongSwanError(f"vici: charon does not know the command {cmd!r}")
            self._send(s, _EVENT_UNREGISTER, event)
        return events


# ---- configuration ---------------------------------------------------------------------------------
def _q(value) -> str:
    """A swanctl.conf value, quoted (settings syntax: double quotes, backslash escapes)."""
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _block(name: str, body: dict, indent: int = 0) -> str:
    pad = "  " * indent
    lines = [f"{pad}{name} {{"]
    for k, v in body.items():
        if v is None:
            continue
        if isinstance(v, dict):
            lines.append(_block(k, v, indent + 1))
        elif isinstance(v, (list, tuple)):
            lines.append(f"{pad}  {k} = {', '.join(str(x) for x in v)}")
        elif isinstance(v, bool):
            lines.append(f"{pad}  {k} = {'yes' if v else 'no'}")
        else:
            lines.append(f"{pad}  {k} = {v}")
    lines.append(f"{pad}}}")
    return "\n".join(lines)


class _Cfg:
    """Reads a role's config with messages that name the role and the key."""

    def __init__(self, role):
        self.role, self.data = role, role.config or {}

    def fail(self, key: str, expected: str, got=None) -> ConfigError:
        return ConfigError(f"scenario role {self.role.name} ({self.role.kind}, strongswan profile)", key, expected, got)

    def get(self, key: str, default=..., choices=None):
        if key not in self.data:
            if default is ...:
                raise self.fail(key, "this key to be present")
            return default
        value = self.data[key]
        if choices is not None and value not in choices:
            raise self.fail(key, f"one of {sorted(choices)}", value)
        return value

    def network(self, key: str, default=...) -> ipaddress.IPv4Network:
        value = self.get(key, default)
        try:
            return ipaddress.IPv4Network(str(value))
        except ValueError:
            raise self.fail(key, "an IPv4 prefix such as 10.1.3.0/24", value) from None

    def addresses(self, key: str, default=...) -> list[str]:
        value = self.get(key, default)
        values = value if isinstance(value, list) else [value]
        try:
            return [str(ipaddress.ip_address(str(v))) for v in values if v is not None]
        except ValueError:
            raise self.fail(key, "an IPv4 address or a list of them", value) from None

    def number(self, key: str, default=None) -> float | None:
        value = self.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise self.fail(key, "a number of seconds (0 or more)", value)
        return float(value)

    def seconds(self, key: str, default=None) -> int | None:
        """A time in whole seconds for swanctl.conf (charon takes no fractions): rounded up, at
        least 1; None when the key is absent or 0 (off)."""
        value = self.number(key, default)
        return max(1, math.ceil(value)) if value else None

    def prefixes(self, key: str, value) -> list[str]:
        values = value if isinstance(value, list) else [value]
        try:
            return [str(ipaddress.IPv4Network(str(v))) for v in values]
        except ValueError:
            raise self.fail(key, "an IPv4 prefix or a list of them", value) from None


def _strongswan_conf(vici_socket: Path, log: Path, keylog: Path, resolv: Path | None, keepalive: float | None,
                     retransmit: dict | None = None) -> str:
    filelog = {
        "main": {"path": str(log), "time_format": _q("%H:%M:%S"), "ike_name": True, "append": False,
                 "flush_line": True, "default": 1, "ike": 2, "cfg": 2, "knl": 2, "net": 2, "chd": 2},
        # key material (level 4 of ike and chd): the test decryption the issue asks for
        "keys": {"path": str(keylog), "time_format": _q("%H:%M:%S"), "ike_name": True, "append": False,
                 "flush_line": True, "default": -1, "ike": 4, "chd": 4},
        # to the process log: stderr is unbuffered (stdout is not); "spawning N worker threads" = started
        "stderr": {"default": 0, "dmn": 1, "job": 1},
    }
    plugins = {"vici": {"socket": f"unix://{vici_socket}"}}
    load = PLUGINS
    if resolv is not None:
        load += " resolve"
        plugins["resolve"] = {"file": str(resolv)}
    charon = {
        "load_modular": False,
        "load": load,
        "install_routes": True,
        "install_virtual_ip": True,
        # the role config's retransmit_timeout / retransmit_backoff / retransmit_tries (as our daemons
        # read them; charon's timeout for try k is timeout * base**k, the same formula)
        **{"retransmit_tries": 3, "retransmit_timeout": 1.0, "retransmit_base": 1.4, **(retransmit or {})},
        "filelog": filelog,
        "syslog": {"identifier": "charon-testbed", "daemon": {"default": -1}, "auth": {"default": -1}},
        "plugins": plugins,
    }
    if keepalive is not None:  # NAT-T keepalive interval (charon's default: 20 s)
        charon["keep_alive"] = f"{int(keepalive)}s"
    return _block("charon", charon) + "\n" + _block("swanctl", {"load": "pem pkcs1 x509 revocation constraints pubkey openssl random"}) + "\n"


def _timers(c: _Cfg, dpd_default: float) -> tuple[dict, dict, dict]:
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
    child_rekey = c.seconds("child_rekey_after")
    if child_rekey:
        child.update(rekey_time=f"{child_rekey}s", life_time=f"{child_rekey + max(child_rekey, 10)}s", rand_time="0s")
        info["child_rekey_time"] = child_rekey
    ike_rekey = c.seconds("ike_rekey_after")
    if ike_rekey:
        conn.update(rekey_time=f"{ike_rekey}s", over_time=f"{max(ike_rekey, 10)}s", rand_time="0s")
        info["ike_rekey_time"] = ike_rekey
    dpd = c.seconds("dpd_interval", dpd_default)
    if dpd:
        conn["dpd_delay"] = f"{dpd}s"
        info["dpd_delay"] = dpd
    return conn, child, info


def _retransmit(c: _Cfg) -> dict:
    """charon's retransmission settings (strongswan.conf) from the role config's, where given."""
    out = {}
    for key, name in (("retransmit_timeout", "retransmit_timeout"), ("retransmit_backoff", "retransmit_base")):
        value = c.number(key)
        if value:
            out[name] = value
    tries = c.number("retransmit_tries")
    if tries is not None:
        out["retransmit_tries"] = int(tries)
    return out


def _inside_interface(world, node: str):
    spec = world.plan.nodes[node]
    for intf in spec.interfaces:
        if intf.segment and world.plan.segments[intf.segment].zone == "intranet":
            return intf
    return None


def _gateway_conf(world, role) -> tuple[str, dict]:
    c = _Cfg(role)
    auth = c.get("auth", "psk", ("psk", "eap-md5"))
    presence = c.get("internal_presence", "napt", ("napt", "pool"))
    if presence == "pool":
        pool_net = c.network("pool")
    else:
        pool_net = c.network("napt_pool", DEFAULT_NAPT_POOL)
    dns = c.addresses("dns", [])
    users = c.get("users")
    if not isinstance(users, dict) or not users:
        raise c.fail("users", "a mapping of user id -> {psk, password, subnets}", users)
    local_id = c.get("identity", None)
    conn_timers, child_timers, timer_info = _timers(c, 30)  # our gateway's default dpd_interval
    connections, secrets = {}, {}
    for n, (uid, u) in enumerate(users.items()):
        if not isinstance(u, dict):
            raise c.fail(f"users.{uid}", "a mapping with psk, password and subnets", u)
        subnets = c.prefixes(f"users.{uid}.subnets", u.get("subnets", ["0.0.0.0/0"]))
        psk = u.get("psk")
        if psk is None:
            raise c.fail(f"users.{uid}.psk", "this key to be present (the gateway authenticates with it)")
        remote = {"auth": "psk", "id": _q(uid)}
        if auth == "eap-md5":
            if u.get("password") is None:
                raise c.fail(f"users.{uid}.password", "this key to be present (auth: eap-md5)")
            remote = {"auth": "eap-md5", "id": _q(uid), "eap_id": _q(uid)}
            secrets[f"eap-{n}"] = {"id": _q(uid), "secret": _q(u["password"])}
        secrets[f"ike-{n}"] = {"id": _q(uid), "secret": _q(psk)}
        connections[f"user-{n}"] = {
            "version": 2,
            "proposals": ", ".join(IKE_PROPOSALS),
            "pools": "vpool",
            "send_certreq": False,
            "unique": "replace",
            **conn_timers,
            "local": {"auth": "psk", "id": _q(local_id) if local_id else None},
            "remote": remote,
            "children": {
                f"user-{n}": {
                    "local_ts": ", ".join(subnets),
                    "esp_proposals": ", ".join(c.get("esp_proposals", ESP_PROPOSALS)),
                    "mode": "tunnel",
                    "dpd_action": "clear",
                    **child_timers,
                },
            },
        }
    pool = {"addrs": str(pool_net)}
    if dns:
        pool["dns"] = ", ".join(dns)
    conf = "\n".join([_block("connections", connections), _block("pools", {"vpool": pool}),
                      _block("secrets", secrets)]) + "\n"
    inside = c.get("inside_interface", None)
    if inside is None:
        intf = _inside_interface(world, role.node)
        if intf is None:
            raise c.fail("inside_interface", f"a value: node {role.node} has no interface on the intranet")
        inside_name, inside_addr = intf.name, str(intf.address)
    else:
        by_name = {i.name: i for i in world.plan.nodes[role.node].interfaces}
        if inside not in by_name:
            raise c.fail("inside_interface", f"an interface of node {role.node} ({sorted(by_name)})", inside)
        inside_name, inside_addr = inside, str(by_name[inside].address)
    info = {"internal_presence": presence, "pool": str(pool_net), "auth": auth,
            "inside_interface": inside_name, "inside_address": inside_addr, "dns": dns, **timer_info,
            "retransmit": _retransmit(c)}
    return conf, info


def _read_password(c: _Cfg) -> str:
    if "password" in c.data:
        return str(c.data["password"])
    path = c.get("password_file", None)
    if path is None:
        raise c.fail("password_file", "this key (or password) to be present for auth: eap-md5")
    p = Path(path)
    if not p.is_absolute():
        p = REPO_ROOT / p
    try:
        return p.read_text().strip()
    except OSError as exc:
        raise c.fail("password_file", "a readable file", f"{p}: {exc.strerror}") from None


def _client_conf(world, role) -> tuple[str, dict]:
    c = _Cfg(role)
    gateway = c.get("gateway")
    identity = c.get("identity")
    auth = c.get("auth", "psk", ("psk", "eap-md5"))
    tunnel = c.get("tunnel", "full", ("full", "split"))
    if tunnel == "full":
        remote_ts = ["0.0.0.0/0"]
    else:
        remote_ts = c.prefixes("subnets", c.get("subnets"))
    secrets = {}
    if auth == "psk":
        local = {"auth": "psk", "id": _q(identity)}
        secrets["ike-0"] = {"id": _q(identity), "secret": _q(c.get("psk"))}
    else:
        local = {"auth": "eap-md5", "id": _q(identity), "eap_id": _q(identity)}
        secrets["eap-0"] = {"id": _q(identity), "secret": _q(_read_password(c))}
        # the gateway authenticates itself with the user's pre-shared key
        secrets["ike-0"] = {"id": _q(identity), "secret": _q(c.get("psk"))}
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
            **conn_timers,
            "local": local,
            "remote": {"auth": "psk", "id": _q(gw_id) if gw_id else None},
            "children": {
                "vpn": {
                    "remote_ts": ", ".join(remote_ts),
                    "esp_proposals": ", ".join(c.get("esp_proposals", ESP_PROPOSALS)),
                    "mode": "tunnel",
                    "dpd_action": "restart",
                    "close_action": "restart",
                    **child_timers,
                },
            },
        },
    }
    conf = "\n".join([_block("connections", connections), _block("secrets", secrets)]) + "\n"
    initiate = c.get("initiate", True, (True, False))
    return conf, {"auth": auth, "tunnel": tunnel, "remote_ts": remote_ts, "gateway": gateway, "initiate": initiate,
                  **timer_info, "retransmit": _retransmit(c)}


# ---- key material from the level-4 log ------------------------------------------------------------
_LINE = re.compile(r"^(?:\S+ )?(?P<thread>\d+)\[(?P<grp>\w+)\] (?:<(?P<ike>[^>]*)> )?(?P<text>.*)$")
_DUMP = re.compile(r"^\s+\d+: ((?:[0-9A-F]{2} ?)+)")
_CHILD_KEY = re.compile(r"^(encryption|integrity) (initiator|responder) key =>")
_IKE_KEY = re.compile(r"^(Sk_\w+) secret =>")
_CHILD_UP = re.compile(r"CHILD_SA (?P<name>\S+)\{\d+\} established with SPIs (?P<in>[0-9a-f]+)_i (?P<out>[0-9a-f]+)_o")


def parse_keylog(path: Path) -> tuple[dict, dict]:
    """(child keys by inbound SPI, IKE keys by the IKE SA's unique id) from charon's level-4 log lines.

    A key is logged as "encryption initiator key => 20 bytes @ ..." (or "Sk_ei secret => ...")
    followed by hex dump lines; lines carry the IKE SA's "<name|id>" (or "<id>") prefix, and one IKE SA is
    handled by one thread at a time, so the keys logged under a prefix belong to the next
    "CHILD_SA name{n} established with SPIs aaaa_i bbbb_o" under that prefix."""
    child: dict[str, dict] = {}
    ike: dict[str, dict] = {}
    if not path.exists():
        return child, ike
    pending: dict[str, dict] = {}  # IKE SA -> {label: bytearray}, child keys not yet claimed
    collecting: dict[str, bytearray] = {}  # thread -> buffer of the key being dumped
    for raw in path.read_text(errors="replace").splitlines():
        m = _LINE.match(raw)
        if not m:
            continue
        thread, text = m["thread"], m["text"]
        sa = (m["ike"] or "").rsplit("|", 1)[-1]  # the IKE SA's unique id (a responder's has no name yet)
        d = _DUMP.match(text)
        if d and thread in collecting:
            collecting[thread] += bytes.fromhex(d.group(1).replace(" ", ""))
            continue
        collecting.pop(thread, None)
        km = _CHILD_KEY.match(text)
        if km:
            collecting[thread] = pending.setdefault(sa, {})["_".join(km.groups())] = bytearray()
            continue
        km = _IKE_KEY.match(text)
        if km:
            collecting[thread] = ike.setdefault(sa, {})[km.group(1).lower()] = bytearray()
            continue
        up = _CHILD_UP.search(text)
        if up:
            keys = {k: bytes(v).hex() for k, v in pending.pop(sa, {}).items()}
            child[up["in"]] = {"spi_in": up["in"], "spi_out": up["out"], **keys}
    ike = {name: {k: bytes(v).hex() for k, v in keys.items()} for name, keys in ike.items()}
    return child, ike


# ---- the role ---------------------------------------------------------------------------------------
class CharonRole:
    def __init__(self, world, role):
        self.world, self.role = world, role
        base = f"{role.node}.{role.name}"
        self.dir = Path(world.log_dir) / f"{base}.strongswan"
        self.swanctl_conf = self.dir / "swanctl.conf"
        self.strongswan_conf = self.dir / "strongswan.conf"
        self.charon_log = Path(world.log_dir) / f"{base}.charon.log"
        self.keylog = Path(world.log_dir) / f"{base}.keys.log"
        # the resolve plugin writes the DNS servers it receives to this file, which is bind-mounted
        # over /etc/resolv.conf in the node's own mount namespace while charon runs (see
        # _bind_resolv); left out where a resolvconf program would take over instead
        self.resolv_bound = False
        has_resolvconf = any(Path(p).exists() for p in ("/sbin/resolvconf", "/usr/sbin/resolvconf"))
        self.resolv = self.dir / "resolv.conf" if role.kind == "vpn-client" and not has_resolvconf else None
        self.socket = world.run.path(f"{role.node}-{role.name}-{next(_SERIAL)}.vici")
        self.vici = Vici(self.socket)
        self.process = None
        self.info: dict = {}
        self.fw_rules: list[list[str]] = []
        self.stopped = False
        self.initiate: dict | None = None
        self.version: dict = {}

    # -- starting
    def start(self) -> "CharonRole":
        key = (id(self.world), self.role.node)
        other = _RUNNING.get(key)
        if other is not None and other.world is self.world and not other.stopped and (
                other.process is None or other.process.running()):
            raise StrongSwanError(f"role {self.role.name}: node {self.role.node} already runs a charon "
                                  f"(role {other.role.name}); the strongswan profile runs one charon per node")
        if self.role.kind == "vpn-gateway":
            conf, self.info = _gateway_conf(self.world, self.role)
        elif self.role.kind == "vpn-client":
            conf, self.info = _client_conf(self.world, self.role)
        else:
            raise StrongSwanError(f"the strongswan profile cannot fill a {self.role.kind}")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.swanctl_conf.write_text(conf)
        keepalive = self.role.config.get("keepalive")
        if keepalive is not None:
            self.info["keepalive"] = keepalive
        self.strongswan_conf.write_text(_strongswan_conf(self.socket, self.charon_log, self.keylog, self.resolv, keepalive,
                                                         self.info.get("retransmit")))
        self.socket.unlink(missing_ok=True)
        _RUNNING[key] = self
        try:
            if self.role.kind == "vpn-gateway":
                self._gateway_network()
            script = "mount -t tmpfs -o mode=755 tmpfs /run"
            if self.resolv is not None:
                self._bind_resolv()
                # charon's resolve plugin rewrites its file by unlink() and a new file, which would
                # leave the bind mount on the old inode; in charon's own mount namespace the file
                # is bound onto itself, so the unlink fails (EBUSY, a mount point) and the fopen(.., "w")
                # that follows truncates and rewrites the bound inode in place
                f = shlex.quote(str(self.resolv))
                script += f" && mount --bind {f} {f}"
            script += f" && exec {CHARON}"
            self.process = self.world.start(
                self.role.node, f"{self.role.name}.charon-out",  # its stderr; the full log is charon_log
                ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                ready=r"spawning \d+ worker threads", env={"STRONGSWAN_CONF": str(self.strongswan_conf)},
                timeout=10)
            self._wait_vici()
            self._swanctl("--load-all", "--file", str(self.swanctl_conf))
            if self.role.kind == "vpn-client" and self.info["initiate"]:
                self.connect()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_vici(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.version = self.vici.request("version")
                return
            except (OSError, StrongSwanError):
                if time.monotonic() > deadline:
                    raise StrongSwanError(f"charon of role {self.role.name} did not answer on {self.socket} "
                                          f"within {timeout} s; its log is {self.charon_log}") from None
                if self.process is not None and not self.process.running():
                    raise StrongSwanError(f"charon of role {self.role.name} exited; its log: {self.charon_log}:\n"
                                          + "\n".join(self.process.tail())) from None
                time.sleep(0.02)

    def connect(self, timeout: int = 15) -> bool:
        """Initiate the tunnel (client). A refusal (wrong key, unknown identity, no proposal) is not an
        exception: the role keeps running and status()["initiate"] says what happened, so negative
        cases can observe it; the positive cases see no established SA with the reason next to it."""
        t0 = time.monotonic()
        rc, out = self._swanctl_run("--initiate", "--child", "vpn", "--timeout", str(timeout), timeout=timeout + 5)
        ok = rc == 0
        errors = sorted(set(re.findall(r"\b([A-Z_]{6,}(?:FAILED|CHOSEN|UNACCEPTABLE|REQUIRED))\b", out)))
        self.initiate = {"ok": ok, "seconds": round(time.monotonic() - t0, 3), "errors": errors,
                         "output": out.splitlines()[-12:]}
        return ok

    def _swanctl_run(self, *args: str, timeout: float = 15.0) -> tuple[int, str]:
        argv = ["env", f"STRONGSWAN_CONF={self.strongswan_conf}", SWANCTL, *args, "--uri", f"unix://{self.socket}"]
        res = self.world.run_in(self.role.node, argv, timeout=timeout)
        out = res.stdout + res.stderr
        with (self.dir / "swanctl.out").open("a") as f:
            f.write(f"$ swanctl {' '.join(args)}\n{out}\n")
        return res.returncode, out

    def _swanctl(self, *args: str, timeout: float = 15.0) -> str:
        rc, out = self._swanctl_run(*args, timeout=timeout)
        if rc:
            tail = ""
            if self.charon_log.exists():
                tail = "\n".join(self.charon_log.read_text(errors="replace").splitlines()[-25:])
            raise StrongSwanError(f"role {self.role.name}: swanctl {' '.join(args)} failed (status {rc}):\n"
                                  f"{out}\nlast lines of {self.charon_log}:\n{tail}")
        return out

    def _bind_resolv(self) -> None:
        """R's resolver configuration follows the tunnel, as it does with our client: the resolve
        plugin's file starts with the node's own /etc/resolv.conf lines and is bind-mounted over
        /etc/resolv.conf in the node (its own mount namespace, private: nothing reaches the
        machine's file); stop() unmounts it, and the node's original file is back."""
        node = self.role.node
        original = self.world.run_in(node, ["cat", "/etc/resolv.conf"])
        self.resolv.write_text(original.stdout if original.returncode == 0 else "")
        self.world.run_in(node, ["mount", "--bind", str(self.resolv), "/etc/resolv.conf"], check=True)
        self.resolv_bound = True
        seen = self.world.run_in(node, ["stat", "-L", "-c", "%d:%i", "/etc/resolv.conf"]).stdout.strip()
        st = os.stat(self.resolv)
        if seen != f"{st.st_dev}:{st.st_ino}":
            raise StrongSwanError(f"role {self.role.name}: /etc/resolv.conf in node {node} is not the bound "
                                  f"{self.resolv} after mount --bind ({seen} vs {st.st_dev}:{st.st_ino})")

    def _unbind_resolv(self) -> None:
        """Take the bind mount back (a node already gone took its mount namespace with it)."""
        if not self.resolv_bound:
            return
        self.resolv_bound = False
        try:
            res = self.world.run_in(self.role.node, ["umount", "/etc/resolv.conf"])
        except Exception as exc:  # noqa: BLE001 - the world may be torn down already
            res = exc
        with (self.dir / "swanctl.out").open("a") as f:
            f.write(f"$ umount /etc/resolv.conf (node {self.role.node})\n{res}\n")

    def _iptables(self, *rule: str) -> None:
        table = ["-t", rule[0]] if rule[0] == "nat" else []
        spec = list(rule[1:]) if rule[0] == "nat" else list(rule)
        self.world.run_in(self.role.node, ["iptables", *table, "-A", *spec], check=True)
        self.fw_rules.append([*table, *spec])

    def _gateway_network(self) -> None:
        """Let tunnel traffic through the node's DMZ policy and translate it per internal presence."""
        self._iptables("FORWARD", "-i", TUN, "-j", "ACCEPT")
        self._iptables("FORWARD", "-o", TUN, "-j", "ACCEPT")
        if self.info["internal_presence"] == "napt":
            # draft-gupta Appendix A: the remote host's inner packets leave with G_i as their source
            self._iptables("nat", "POSTROUTING", "-s", self.info["pool"], "-o", self.info["inside_interface"],
                           "-j", "SNAT", "--to-source", self.info["inside_address"])
        else:
            # Appendix B: H's replies to pool addresses reach G through the intranet's default route
            # here; answer ARP for them anyway, should a router on the backbone look them up.
            self.world.run_in(self.role.node, ["sysctl", "-qw",
                                               f"net.ipv4.conf.{self.info['inside_interface']}.proxy_arp=1"])

    # -- stopping
    def stop(self) -> int | None:
        if self.stopped:
            return None
        self.stopped = True
        rc = self.process.stop() if self.process is not None else None
        self._unbind_resolv()
        for spec in reversed(self.fw_rules):
            table = spec[:2] if spec[:1] == ["-t"] else []
            rest = spec[2:] if table else spec
            self.world.run_in(self.role.node, ["iptables", *table, "-D", *rest])
        self.fw_rules.clear()
        if _RUNNING.get((id(self.world), self.role.node)) is self:
            del _RUNNING[(id(self.world), self.role.node)]
        self.socket.unlink(missing_ok=True)
        return rc

    # -- status
    def status(self) -> dict:
        out = {"implementation": "strongswan", "role": self.role.name, "kind": self.role.kind,
               "node": self.role.node, "running": self.process is not None and self.process.running(),
               "tunnel_interface": TUN, "config": self.info, "ike_sas": [], "virtual_ips": []}
        if not out["running"]:
            return out
        out["version"] = self.version.get("version")
        child_keys, ike_keys = parse_keylog(self.keylog)
        for event in self.vici.stream("list-sas", "list-sa"):
            for name, sa in event.items():
                out["ike_sas"].append(_ike_sa(name, sa, child_keys, ike_keys))
        if self.role.kind == "vpn-client":
            out["virtual_ips"] = sorted({v for sa in out["ike_sas"] for v in sa["local_vips"]})
            out["dns"] = _resolv_servers(self.resolv)
            out["initiate"] = self.initiate
        else:
            out["virtual_ips"] = sorted({v for sa in out["ike_sas"] for v in sa["remote_vips"]})
            out["pools"] = self.vici.request("get-pools", {"leases": "yes"})
        out["keys_source"] = ("charon's level-4 ike/chd log (no save-keys plugin in this build): "
                              f"{self.keylog}")
        return out


def _ike_sa(name: str, sa: dict, child_keys: dict, ike_keys: dict) -> dict:
    def i(v):
        try:
            return int(v)
        except (TypeError, ValueError):
            return None

    children = []
    for cname, ch in (sa.get("child-sas") or {}).items():
        keys = child_keys.get(ch.get("spi-in", ""), {})
        initiated = sa.get("initiator") == "yes"  # libipsec here: the IKE initiator starts the CHILD_SA
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
        "encr_alg": sa.get("encr-alg"), "encr_keysize": i(sa.get("encr-keysize")), "integ_alg": sa.get("integ-alg"),
        "prf_alg": sa.get("prf-alg"), "dh_group": sa.get("dh-group"), "established_s": i(sa.get("established")),
        "local_vips": sa.get("local-vips", []), "remote_vips": sa.get("remote-vips", []),
        "keys": ike_keys.get(str(sa.get("uniqueid"))),
        "child_sas": children,
    }


def _resolv_servers(path: Path | None) -> list[str]:
    """The DNS servers charon installed (its lines end "# by strongSwan"; the rest of the file are
    the node's own resolver lines)."""
    if path is None or not path.exists():
        return []
    return [line.split()[1] for line in path.read_text().splitlines()
            if line.startswith("nameserver") and len(line.split()) > 1 and "by strongSwan" in line]


def start_role(world, role) -> RoleHandle:
    r = CharonRole(world, role).start()
    return RoleHandle(role, r.status, r.stop)
