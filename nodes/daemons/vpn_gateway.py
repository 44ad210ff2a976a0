"""The IPsec remote-access gateway G (draft-gupta sections 3 to 5, Appendices A and B).

IKEv2 responder on UDP 500 and 4500 (the sans-I/O core nodes/ipsec/ike.py), ESP in userspace:
plain ESP on a raw protocol-50 socket and UDP-encapsulated ESP on 4500 (also without a NAT:
strongSwan's kernel-libipsec always encapsulates). Internal presence per config:

  napt  (Appendix A) every remote host gets a tunnel-inner address from `napt_pool`; decrypted
        packets are translated to G_i (nodes/ipsec/napt.py, ports `napt_ports`) and sent toward
        the intranet on a raw IP socket. H's answers to G_i are taken away from G's own stack
        before routing: mangle PREROUTING rules mark packets arriving on the inside interface for
        G_i with a destination port in the NAPT range (ICMP: echo replies whose identifier, and
        errors whose quoted source port, is in the range, matched with u32), a
        policy-routing rule sends marked packets to a table whose only route is the TUN device,
        so the kernel forwards them into the TUN where the daemon translates them back and
        encrypts them into the right SA. G's own sockets (ephemeral ports 32768-60999) are not
        touched.
  pool  (Appendix B) every remote host gets an address from `pool`; decrypted packets are written
        into the TUN and forwarded by the kernel; the pool is routed into the TUN and G answers
        ARP for it on the inside interface (proxy ARP), so H's replies come back.

Everything unauthenticated is dropped and counted (unknown SPI, bad ICV, replay, a source outside
the SA's selectors = spoofed, a destination outside the user's subnets). G adds FORWARD accept rules
for its TUN (the DMZ policy drops forwarding by default) and removes them, its routes and rules at exit.
A user who connects again (a restarted client, a new address) replaces its older IKE SA at once
(the IKE core's unique="replace", as strongSwan's unique=replace); toward a user who types a
password (EAP-MD5) G authenticates itself with that user's pre-shared key (UserPolicy.gateway_psk).

Config (JSON; the keys of fixtures/scenarios/remote-access-basic.yaml): internal_presence napt|pool,
pool, napt_pool (100.64.0.0/24), napt_ports (61000-65535), redirects (none; see below), dns, users {id: {psk, password, subnets}},
auth any|psk|eap-md5 (any), identity (G's IKE id; default G_e), external_address, inside_interface,
dpd_interval (30 s), child_rekey_after / ike_rekey_after (seconds; none), tun (vpn0), mtu (1400), ike_proposals, esp_proposals,
esp_lifetime {soft_bytes, hard_bytes, soft_seconds, hard_seconds} (each optional; given to every child
SA: a soft expiry starts a child SA rekey after esp_soft_rekey_delay = [lo, hi] seconds at random,
default [2, 4], unless the client has rekeyed it meanwhile, so the two sides do not collide; a hard
expiry drops the SA and deletes the child toward the client).

Redirection rules (NAPT only; draft-gupta Appendix C: connections initiated from the intranet toward
a remote host, e.g. X11): `redirects: [{proto: tcp|udp, port, user, to_port}]`. G_i:`port` is
captured into the gateway like H's answers (one more mangle mark rule per port, removed at exit);
while `user`'s tunnel is up, a static NAPT mapping sends what arrives there to the user's
tunnel-inner address, port `to_port`, through that user's SA (and R's answers leave from G_i:`port`).
The mapping follows the user to a new IKE SA (reconnect) and goes when the user's IKE SA goes; until
then, and for a port without a rule, H gets nothing from R (no NAPT mapping: dropped and counted, or
G's own stack answers). The status lists the rules under `redirects`, with the tunnel each is bound to.
"""
from __future__ import annotations

import asyncio
import os
import socket
from ipaddress import IPv4Address, IPv4Network

from nodes.ipsec import ike
from nodes.ipsec.napt import Napt, RedirectRule
from nodes.ipsec.pool import AddressPool, PoolExhausted
from nodes.runtime import daemon
from nodes.runtime import ipsec_io as io
from nodes.runtime.ipsec_config import Cfg, Redirect, esp_lifetime, redirects
from nodes.runtime.ipsec_runtime import IpsecRuntime, control_handlers, public_status
from nodes.runtime.commands import CommandError, ip, run
from nodes.runtime.netlink import sysctl
from nodes.runtime.tundev import TunDevice

FWMARK = "0x4500"
RT_TABLE = "145"
RULE_PREF = "145"
LOCAL_PREF = "146"


class GatewayIkeCore(ike.IkeCore):
    """The IKE core with a setter for the per-user keys the responder proves itself with toward EAP
    users (`gateway_psks`: id -> key, stored in each user's UserPolicy.gateway_psk). The gateway
    itself fills UserPolicy.gateway_psk directly; this stays for callers that set the mapping."""

    @property
    def gateway_psks(self) -> dict[str, bytes]:
        return {uid: u.gateway_psk for uid, u in self.config.users.items() if u.gateway_psk is not None}

    @gateway_psks.setter
    def gateway_psks(self, keys: dict[str, bytes]) -> None:
        for uid, key in keys.items():
            if uid in self.config.users:
                self.config.users[uid].gateway_psk = key


class PoolAllocator:
    """The IKE core's allocator over AddressPool: one lease per identity, held while any of its
    IKE SAs lives."""

    def __init__(self, pool: AddressPool, now):
        self.pool, self.now = pool, now
        self.refs: dict[str, int] = {}

    def allocate(self, peer_id: str):
        try:
            addr = self.pool.allocate(peer_id, self.now())
        except PoolExhausted:
            return None
        self.refs[peer_id] = self.refs.get(peer_id, 0) + 1
        return addr

    def release(self, peer_id: str, address: str) -> None:
        n = self.refs.get(peer_id, 0) - 1
        if n <= 0:
            self.refs.pop(peer_id, None)
            self.pool.release(peer_id)
        else:
            self.refs[peer_id] = n


def _interfaces() -> list[tuple[str, str, int]]:
    """(name, address, prefixlen) of every IPv4 address in the node."""
    import json
    out = json.loads(ip("-4", "-j", "addr", "show").stdout or "[]")
    return [(i["ifname"], a["local"], a["prefixlen"]) for i in out for a in i.get("addr_info", [])
            if a.get("family") == "inet"]


def _default_interface() -> str | None:
    import json
    routes = json.loads(ip("-4", "-j", "route", "show", "default").stdout or "[]")
    return routes[0].get("dev") if routes else None


class Gateway:
    def __init__(self, cfg: Cfg, log):
        self.cfg, self.log = cfg, log
        self.presence = cfg.get("internal_presence", "napt", ("napt", "pool"))
        auth = cfg.get("auth", "any", ("any", "psk", "eap-md5"))
        users = cfg.get("users")
        if not isinstance(users, dict) or not users:
            raise cfg.fail("users", "a mapping of user id -> {psk, password, subnets}", users)
        self.users: dict[str, ike.UserPolicy] = {}
        for uid, u in users.items():
            if not isinstance(u, dict):
                raise cfg.fail(f"users.{uid}", "a mapping with psk, password and subnets", u)
            subnets = cfg.prefixes(f"users.{uid}.subnets", u.get("subnets", ["0.0.0.0/0"]))
            psk = u.get("psk")
            password = u.get("password")
            if psk is None:
                raise cfg.fail(f"users.{uid}.psk", "a pre-shared key (G authenticates itself with it)")
            self.users[str(uid)] = ike.UserPolicy(
                psk=None if auth == "eap-md5" else str(psk).encode(),
                password=None if auth == "psk" or password is None else str(password).encode(),
                subnets=subnets,
                gateway_psk=str(psk).encode())  # G's AUTH toward this user when it types a password (EAP)
        self.auth = auth
        self.dns = cfg.addresses("dns", [])
        if self.presence == "pool":
            net = cfg.network("pool")
        else:
            net = cfg.network("napt_pool", "100.64.0.0/24")
        self.pool = AddressPool(net)
        self.napt_ports = cfg.port_range("napt_ports", "61000-65535")
        self.redirects: list[Redirect] = redirects(cfg, self.users,
                                                   self.napt_ports if self.presence == "napt" else None)
        self.redirect_bound: dict[tuple[str, int], object] = {}  # (proto, port) -> the tunnel it goes to
        self.tun_name = str(cfg.get("tun", "vpn0"))
        self.mtu = int(cfg.number("mtu", 1400))
        self.dpd = cfg.number("dpd_interval", 30)
        self.lifetime = esp_lifetime(cfg)
        delay = cfg.get("esp_soft_rekey_delay", [2, 4])
        if (not isinstance(delay, list) or len(delay) != 2 or not all(
                isinstance(x, (int, float)) and not isinstance(x, bool) and x >= 0 for x in delay)
                or delay[0] > delay[1]):
            raise cfg.fail("esp_soft_rekey_delay", "[lo, hi] seconds (0 <= lo <= hi)", delay)
        self.soft_rekey_delay = (float(delay[0]), float(delay[1]))
        self.g_e = cfg.get("external_address", None)
        self.inside_if = cfg.get("inside_interface", None)
        self.g_i: str | None = None
        self.napt: Napt | None = None
        self.by_vip: dict[int, object] = {}
        self.undo: list[list[str]] = []
        self.gw_drops: dict[str, int] = {}
        self.tun_fd: int | None = None
        self.raw = None
        self.rt: IpsecRuntime | None = None
        self.housekeeping: asyncio.TimerHandle | None = None

    # -- setup and teardown ----------------------------------------------------------------------
    def _locate(self) -> None:
        addrs = _interfaces()
        default_if = _default_interface()
        if self.g_e is None:
            self.g_e = next((a for n, a, _ in addrs if n == default_if), None)
            if self.g_e is None:
                raise self.cfg.fail("external_address", "a value: the node has no default route to find G_e by")
        subnets = [IPv4Network(s) for u in self.users.values() for s in u.subnets]
        if self.inside_if is None:
            cands = [(n, a) for n, a, _ in addrs
                     if n not in ("lo", self.tun_name, default_if)
                     and any(IPv4Address(a) in s for s in subnets)]
            cands = cands or [(n, a) for n, a, _ in addrs if n not in ("lo", self.tun_name, default_if)]
            if not cands:
                raise self.cfg.fail("inside_interface", "a value: no interface besides the default route's")
            self.inside_if, self.g_i = cands[0]
        else:
            self.g_i = next((a for n, a, _ in addrs if n == self.inside_if), None)
            if self.g_i is None:
                raise self.cfg.fail("inside_interface", "an interface of this node with an IPv4 address",
                                    self.inside_if)

    def _do(self, argv: list[str], undo: list[str] | None = None, preclean: bool = True) -> None:
        """Run `argv`, remembering `undo` for the exit. With preclean, first remove what a killed
        earlier gateway in this node may have left (undo is a deletion then)."""
        if undo and preclean:
            run(undo, check=False)
        run(argv)
        if undo:
            self.undo.append(undo)

    def setup(self, loop) -> None:
        self._locate()
        config = ike.IkeConfig(
            local_id=str(self.cfg.get("identity", self.g_e)),
            users=self.users,
            allocator=PoolAllocator(self.pool, IpsecRuntime.now),
            dns=self.dns,
            dpd_interval=self.dpd or None,
            child_rekey_after=self.cfg.number("child_rekey_after", None) or None,
            ike_rekey_after=self.cfg.number("ike_rekey_after", None) or None,
            unique="replace",  # a user who reconnects (restart, new address) keeps one tunnel
            **({"ike_proposals": self.cfg.get("ike_proposals")} if self.cfg.get("ike_proposals", None) else {}),
            **({"esp_proposals": self.cfg.get("esp_proposals")} if self.cfg.get("esp_proposals", None) else {}),
        )
        self.core = core = ike.IkeCore(config)
        self.rt = IpsecRuntime(core, self.log, self._from_tunnel, self._on_event, self.g_e,
                               lifetime=self.lifetime, soft_rekey_delay=self.soft_rekey_delay)

        self.tun_fd = TunDevice.open(self.tun_name, self.mtu, txqueuelen=4000).fd  # rp_filter off on it
        sysctl("net.ipv4.conf.all.rp_filter", 0)
        self.old_forward = sysctl("net.ipv4.ip_forward", 1)
        ipt = ["iptables", "-w"]
        tun, inside = self.tun_name, self.inside_if
        self._do(ipt + ["-I", "FORWARD", "1", "-i", tun, "-o", inside, "-j", "ACCEPT"],
                 ipt + ["-D", "FORWARD", "-i", tun, "-o", inside, "-j", "ACCEPT"])
        self._do(ipt + ["-I", "FORWARD", "1", "-i", inside, "-o", tun, "-j", "ACCEPT"],
                 ipt + ["-D", "FORWARD", "-i", inside, "-o", tun, "-j", "ACCEPT"])
        if self.presence == "napt":
            self.napt = Napt(self.g_i, ports=self.napt_ports)
            self.raw = io.raw_ip_socket()
            lo, hi = self.napt_ports
            # ICMP: echo replies by identifier, errors by the source port of the packet they quote
            # (u32 matches; without the u32 module all echo replies and errors to G_i are taken)
            ident = ["-m", "u32", "--u32", f"0>>22&0x3C@4>>16={lo}:{hi}"]
            quoted = ["-m", "u32", "--u32", f"0>>22&0x3C@8>>22&0x3C@8>>16={lo}:{hi}"]
            marks = [(["-p", "tcp", "--dport", f"{lo}:{hi}"], []), (["-p", "udp", "--dport", f"{lo}:{hi}"], []),
                     (["-p", "icmp", "--icmp-type", "echo-reply"], ident),
                     (["-p", "icmp", "--icmp-type", "destination-unreachable"], quoted),
                     (["-p", "icmp", "--icmp-type", "time-exceeded"], quoted)]
            for m, narrow in marks:
                for extra in ([narrow, []] if narrow else [[]]):
                    rule = ["PREROUTING", "-i", inside, "-d", self.g_i, *m, *extra,
                            "-j", "MARK", "--set-mark", FWMARK]
                    try:
                        self._do(ipt + ["-t", "mangle", "-A", *rule], ipt + ["-t", "mangle", "-D", *rule])
                        break
                    except CommandError:
                        if not extra:
                            raise
            # the redirection rules' ports: connections from the intranet to G_i:port (Appendix C)
            for proto, port in sorted({(r.proto, r.port) for r in self.redirects}):
                rule = ["PREROUTING", "-i", inside, "-d", self.g_i, "-p", proto, "--dport", str(port),
                        "-j", "MARK", "--set-mark", FWMARK]
                self._do(ipt + ["-t", "mangle", "-A", *rule], ipt + ["-t", "mangle", "-D", *rule])
            self._do(["ip", "route", "replace", "default", "dev", tun, "table", RT_TABLE],
                     ["ip", "route", "flush", "table", RT_TABLE])
            self._do(["ip", "rule", "add", "pref", RULE_PREF, "fwmark", FWMARK, "lookup", RT_TABLE],
                     ["ip", "rule", "del", "pref", RULE_PREF])
            # G_i is a local address: the `local` table (rule 0) would take the answers first, so
            # it moves behind the mark rule while the gateway runs
            rules = ip("rule", "show").stdout
            if f"{LOCAL_PREF}:\tfrom all lookup local" not in rules:
                run(["ip", "rule", "add", "pref", LOCAL_PREF, "lookup", "local"])
            if "0:\tfrom all lookup local" in rules.splitlines()[0] if rules else False:
                run(["ip", "rule", "del", "pref", "0", "lookup", "local"])
            self.undo.append(["ip", "rule", "del", "pref", LOCAL_PREF, "lookup", "local"])
            self.undo.append(["ip", "rule", "add", "pref", "0", "lookup", "local"])  # runs first at exit
        else:
            self.old_proxy_arp = sysctl(f"net.ipv4.conf.{inside}.proxy_arp", 1)
            self._do(["ip", "route", "replace", str(self.pool.network), "dev", tun],
                     ["ip", "route", "del", str(self.pool.network), "dev", tun])
        loop.add_reader(self.tun_fd, self._read_tun)
        self.rt.start(loop)
        self.loop = loop
        self._housekeep()
        self.log("gateway_up", g_e=self.g_e, g_i=self.g_i, inside=inside, presence=self.presence,
                 pool=str(self.pool.network), tun=tun)

    async def cleanup(self) -> None:
        if self.rt is not None and self.rt.loop is not None:
            self.core.close(self.rt.now())  # tell the clients (INFORMATIONAL Delete)
            self.rt.flush()
            await asyncio.sleep(0.05)
            self.rt.stop()
        if self.housekeeping:
            self.housekeeping.cancel()
        if self.tun_fd is not None and getattr(self, "loop", None) is not None:
            try:
                self.loop.remove_reader(self.tun_fd)
            except Exception:
                pass
        for argv in reversed(self.undo):
            run(argv, check=False)
        self.undo.clear()
        if self.presence == "pool" and getattr(self, "old_proxy_arp", None) is not None:
            sysctl(f"net.ipv4.conf.{self.inside_if}.proxy_arp", self.old_proxy_arp)
        if self.tun_fd is not None:
            os.close(self.tun_fd)
            self.tun_fd = None
        if self.raw is not None:
            self.raw.close()

    def _housekeep(self) -> None:
        if self.napt is not None:
            self.napt.handle_timer(self.rt.now())
        self.housekeeping = self.loop.call_later(1.0, self._housekeep)

    # -- events ----------------------------------------------------------------------------------
    def _count(self, reason: str) -> None:
        self.gw_drops[reason] = self.gw_drops.get(reason, 0) + 1

    def _on_event(self, a) -> None:
        dp = self.rt.dp
        # an older IKE SA of a reconnecting user is closed by the core (unique=replace) after the
        # new one's Established: it arrives here as IkeSaClosed and _forget spares the new tunnel
        if isinstance(a, ike.Established):
            tunnel = dp.tunnels.get(a.ike_sa)
            if tunnel is not None and a.virtual_ip:
                self.by_vip[io.ip_int(a.virtual_ip)] = tunnel
                self._bind_redirects(tunnel, a.peer_id, a.virtual_ip)
        elif isinstance(a, ike.IkeSaClosed):
            tunnel = dp.tunnels.get(a.ike_sa)
            if tunnel is not None:
                self._forget(tunnel)

    def _forget(self, tunnel) -> None:
        if tunnel.virtual_ip and self.by_vip.get(io.ip_int(tunnel.virtual_ip)) is tunnel:
            del self.by_vip[io.ip_int(tunnel.virtual_ip)]
        self._unbind_redirects(tunnel)
        if self.napt is not None:
            self.napt.forget_peer(tunnel)

    # -- redirection rules (Appendix C) ------------------------------------------------------------
    def _bind_redirects(self, tunnel, user: str | None, virtual_ip: str) -> None:
        """`user`'s tunnel is up: its rules now lead to `virtual_ip` through `tunnel` (replacing a
        binding to an older tunnel of the same user)."""
        if self.napt is None:
            return
        now = self.rt.now()
        for r in self.redirects:
            if r.user != user:
                continue
            key = (r.proto, r.port)
            if key in self.redirect_bound:
                self.napt.remove_redirect(r.proto, r.port)
            try:
                self.napt.add_redirect(RedirectRule(r.proto, r.port, tunnel, virtual_ip, r.to_port), now)
            except ValueError as exc:  # not expected: the port lies outside the dynamic range
                self.redirect_bound.pop(key, None)
                self.log("redirect_failed", proto=r.proto, port=r.port, user=user, error=str(exc))
                continue
            self.redirect_bound[key] = tunnel
            self.log("redirect_added", proto=r.proto, port=r.port, user=user, to=f"{virtual_ip}:{r.to_port}",
                     ike_sa=tunnel.name)

    def _unbind_redirects(self, tunnel) -> None:
        """`tunnel`'s IKE SA went away: the rules bound to it are removed (not those that moved on
        to a newer tunnel of the same user)."""
        for key, bound in list(self.redirect_bound.items()):
            if bound is not tunnel:
                continue
            del self.redirect_bound[key]
            if self.napt is not None:
                self.napt.remove_redirect(*key)
            self.log("redirect_removed", proto=key[0], port=key[1], user=tunnel.peer_id, ike_sa=tunnel.name)

    def redirect_status(self) -> list[dict]:
        out = []
        for r in self.redirects:
            t = self.redirect_bound.get((r.proto, r.port))
            out.append({**r.as_dict(), "external": f"{self.g_i}:{r.port}", "active": t is not None,
                        "to": f"{t.virtual_ip}:{r.to_port}" if t is not None else None,
                        "ike_sa": t.name if t is not None else None})
        return out

    # -- the data path ---------------------------------------------------------------------------
    def _from_tunnel(self, inner: bytes, tunnel) -> None:
        """A packet a remote host sent through its tunnel (authenticated, selectors checked)."""
        if self.napt is not None:
            out = self.napt.outbound(inner, tunnel, self.rt.now())
            if out is None:
                return
            try:
                self.raw.sendto(out, (socket.inet_ntoa(out[16:20]), 0))
            except OSError:
                self._count("send-error")
        else:
            try:
                os.write(self.tun_fd, inner)
            except OSError:
                self._count("tun-write-error")

    def _read_tun(self) -> None:
        io.drain_fd(self.tun_fd, self._to_tunnel)

    def _to_tunnel(self, packet: bytes) -> None:
        """A packet from the intranet toward a remote host (routed into the TUN)."""
        if len(packet) < 20 or packet[0] >> 4 != 4:
            self._count("not-ipv4")
            return
        if self.napt is not None:
            got = self.napt.inbound(packet, self.rt.now())
            if got is None:
                return
            packet, tunnel = got
            if tunnel.out is None:
                self._count("tunnel-gone")
                return
        else:
            tunnel = self.by_vip.get(int.from_bytes(packet[16:20], "big"))
            if tunnel is None:
                self._count("no-tunnel")
                return
        self.rt.send_inner(tunnel, packet)

    # -- status ----------------------------------------------------------------------------------
    def status(self, req=None) -> dict:
        st = self.rt.status()
        now = self.rt.now()
        by_name = {t["ike_sa"]: t for t in st["tunnels"]}
        ike_sas = [public_status(sa, by_name.get(sa["name"]), self.core.config.local_id) for sa in st["ike_sas"]]
        drops = dict(st["drops"])
        if self.napt is not None:
            drops["napt"] = self.napt.status(self.rt.now()).as_dict()["drops"]
        drops["gateway"] = dict(self.gw_drops)
        return {
            "implementation": "ours", "kind": "vpn-gateway",
            "internal_presence": self.presence, "external_address": self.g_e, "inside_address": self.g_i,
            "inside_interface": self.inside_if, "tunnel_interface": self.tun_name,
            "ike_sas": ike_sas,
            "virtual_ips": sorted(t.virtual_ip for t in self.rt.dp.tunnels.values() if t.virtual_ip),
            "pool": self.pool.status(),
            "napt": self.napt.status(now).as_dict()["mappings"] if self.napt is not None else [],
            "redirects": self.redirect_status(),
            "drops": drops,
            "drop_total": sum(sum(d.values()) for d in drops.values()),
            "counters": st["counters"],
            "events": st["events"],
        }


async def setup(args, log):
    cfg = Cfg(daemon.load_config(args.config), str(args.config))
    gw = Gateway(cfg, log)
    try:
        gw.setup(asyncio.get_running_loop())
    except BaseException:
        await gw.cleanup()  # take back the rules and routes set so far
        raise
    return control_handlers(gw.status, gw.rt, gw.core), gw.cleanup


def main() -> None:
    p = daemon.base_parser("gateway", __doc__.splitlines()[0])
    daemon.run("gateway", p.parse_args(), setup)


if __name__ == "__main__":
    main()
