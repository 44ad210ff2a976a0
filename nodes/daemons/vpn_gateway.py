"""The IPsec remote-access gateway G (draft-gupta sections 3 to 5, Appendices A and B).

IKEv2 responder on UDP 500 and 4500 (the sans-I/O core nodes/ipsec/ike.py), ESP in userspace:
plain ESP on a raw protocol-50 socket and UDP-encapsulated ESP on 4500 (also without a NAT:
strongSwan's kernel-libipsec always encapsulates). Internal presence per config:

  napt  (Appendix A) every remote host gets a tunnel-inner address from `napt_pool`; decrypted
        packets are translated to G_i (nodes/ipsec/napt.py, ports `napt_ports`) and sent toward
        the intranet on a raw IP socket. H's answers to G_i are taken away from G's own stack
        before routing (mangle marks and policy routing, nodes/runtime/ipsec/gateway_host.py) into the
        TUN, where the daemon translates them back and encrypts them into the right SA.
  pool  (Appendix B) every remote host gets an address from `pool`; decrypted packets are written
        into the TUN and forwarded by the kernel; the pool is routed into the TUN and G answers
        ARP for it on the inside interface (proxy ARP), so H's replies come back.

Internet access through G (draft-gupta section 4, "additional precautions": with the full tunnel
all of R's traffic goes through G): with `internet_access: true` (and a user whose `subnets` include
the Internet, e.g. 0.0.0.0/0), what a remote host sends to a destination outside the intranet
leaves G from G_e: NAPT to G_e (a second NAPT of the same port range, its answers captured on the
outside interface like G_i's), or, with the pool, the kernel's MASQUERADE to G_e. The intranet is
what G routes through its inside interface (or the `intranet` prefixes of the config).

This module is the adapter: the IKE core, the NAPT and the redirection rules' bindings
(nodes/ipsec/redirects.py) are sans-I/O, the host plumbing is nodes/runtime/ipsec/gateway_host.py.

Everything unauthenticated is dropped and counted (unknown SPI, bad ICV, replay, a source outside
the SA's selectors = spoofed, a destination outside the user's subnets). G adds FORWARD accept rules
for its TUN (the DMZ policy drops forwarding by default) and removes them, its routes and rules at exit.
A user who connects again (a restarted client, a new address) replaces its older IKE SA at once
(the IKE core's unique="replace", as strongSwan's unique=replace); toward a user who types a
password (EAP-MD5) G authenticates itself with that user's pre-shared key (UserPolicy.gateway_psk).

Config (JSON; the keys of fixtures/scenarios/remote-access-basic.yaml): internal_presence napt|pool,
pool, napt_pool (100.64.0.0/24), napt_ports (61000-65535), alg (NAPT application-level gateways:
[ftp, sip]; none by default; nodes/ipsec/alg.py), redirects (none; see below), dns, users {id: {psk, password, subnets}},
auth any|psk|eap-md5 (any), identity (G's IKE id; default G_e), external_address, inside_interface,
cookie_threshold (32 half-open IKE SAs: from then on IKE_SA_INIT needs a COOKIE, RFC 7296 2.6;
null: never), half_open_max (1024), dpd_interval (30 s), child_rekey_after / ike_rekey_after (seconds; none), tun (vpn0), mtu (1400), ike_proposals, esp_proposals,
esp_lifetime {soft_bytes, hard_bytes, soft_seconds, hard_seconds} (each optional; given to every child
SA: a soft expiry starts a child SA rekey after esp_soft_rekey_delay = [lo, hi] seconds at random,
default [2, 4], unless the client has rekeyed it meanwhile, so the two sides do not collide; a hard
expiry drops the SA and deletes the child toward the client).

Site-to-site peers (pool only; nodes/ipsec/sites.py): `sites: {id: {psk, subnets, site_subnets}}`, an
access router whose traffic selectors are its site's subnets (no pool address, no CP), e.g. the
problem statement's trusted FA (section 4.2, Figure 10). G routes every site subnet into the TUN and
sends what goes there into that site's SA while it is up (else dropped and counted, no-tunnel); the
status lists them under `sites` (up or not).

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
from ipaddress import IPv4Network

from nodes.ipsec import ike
from nodes.ipsec.alg import AlgNapt, NaptAlgs
from nodes.ipsec.napt import Napt
from nodes.ipsec.napt_presence import NaptPresence
from nodes.ipsec.pool import AddressPool, PoolExhausted
from nodes.ipsec.redirects import RedirectBindings
from nodes.ipsec.sites import SiteTable, parse_sites
from nodes.runtime import daemon
from nodes.runtime.ipsec import gateway_host as host
from nodes.runtime.ipsec import config as ipsec_config
from nodes.runtime.ipsec import sockets as io
from nodes.runtime.host.host_changes import HostChanges
from nodes.runtime.ipsec.config import Cfg, Redirect, esp_lifetime, redirects, soft_rekey_delay
from nodes.runtime.ipsec.runtime import IpsecRuntime, control_handlers, public_status
from nodes.runtime.host.netlink import sysctl
from nodes.runtime.host.tundev import TunDevice


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


def user_policies(cfg: Cfg, auth: str) -> dict[str, ike.UserPolicy]:
    """The `users` key (read by ipsec_config.users, the rule the strongSwan profile shares): id ->
    UserPolicy (G authenticates itself with the user's psk toward EAP users)."""
    return {uid: ike.UserPolicy(
                psk=None if auth == "eap-md5" else u["psk"].encode(),
                password=None if auth == "psk" or u["password"] is None else u["password"].encode(),
                subnets=u["subnets"],
                gateway_psk=u["psk"].encode())  # G's AUTH toward this user when it types a password (EAP)
            for uid, u in ipsec_config.users(cfg).items()}


class Gateway:
    def __init__(self, cfg: Cfg, log):
        self.cfg, self.log = cfg, log
        self.presence = cfg.get("internal_presence", "napt", ("napt", "pool"))
        self.auth = cfg.get("auth", "any", ("any", "psk", "eap-md5"))
        self.users = user_policies(cfg, self.auth)
        self.dns = cfg.addresses("dns", [])
        net = cfg.network("pool") if self.presence == "pool" else cfg.network("napt_pool", "100.64.0.0/24")
        self.pool = AddressPool(net)
        sites = parse_sites(cfg.get("sites", None), set(self.users), net if self.presence == "pool" else None,
                            source=cfg.source)
        self.sites = SiteTable(sites)
        self.users.update({sid: ike.UserPolicy(psk=s.psk.encode(), subnets=[str(n) for n in s.subnets],
                                               remote_ts=[str(n) for n in s.site_subnets], gateway_psk=s.psk.encode())
                           for sid, s in sites.items()})
        self.napt_ports = cfg.port_range("napt_ports", "61000-65535")
        self.algs = cfg.get("alg", [])  # application-level gateways of the NAPT (nodes/ipsec/alg.py)
        try:
            NaptAlgs(self.algs)
        except (ValueError, TypeError) as exc:
            raise cfg.fail("alg", "a list of ALG names (ftp, sip)", self.algs) from exc
        if self.algs and self.presence != "napt":
            raise cfg.fail("alg", "no ALG with internal_presence pool (nothing is translated)", self.algs)
        self.redirects: list[Redirect] = redirects(cfg, self.users,
                                                   self.napt_ports if self.presence == "napt" else None)
        self.tun_name = str(cfg.get("tun", "vpn0"))
        self.mtu = int(cfg.number("mtu", 1400))
        self.dpd = cfg.number("dpd_interval", 30)
        self.lifetime = esp_lifetime(cfg)
        self.soft_rekey_delay = soft_rekey_delay(cfg, [2, 4])
        self.g_e = cfg.get("external_address", None)
        self.inside_if = cfg.get("inside_interface", None)
        self.internet = bool(cfg.get("internet_access", False))
        self.intranet: list[IPv4Network] = cfg.prefixes("intranet", cfg.get("intranet")) if cfg.get("intranet", None) else []
        self.g_i: str | None = None
        self.napt: Napt | None = None
        self.napt_internet: Napt | None = None  # internet_access with NAPT: translation to G_e
        self.translation: NaptPresence | None = None  # which NAPT a packet takes, their timers
        self._napt_due_at: float | None = None
        self.bindings = RedirectBindings(None, self.redirects)
        self.by_vip: dict[int, object] = {}
        self.changes = HostChanges()
        self.gw_drops: dict[str, int] = {}
        self.tun_fd: int | None = None
        self.raw = None
        self.raw_sender: io.RawSender | None = None  # sends self.raw's packets from a thread of its own
        self._to_intranet: list[tuple[bytes, str]] = []  # translated packets of this burst, not yet handed over
        self.rt: IpsecRuntime | None = None
        self.loop = None
        self.napt_timer: asyncio.TimerHandle | None = None

    # -- setup and teardown ----------------------------------------------------------------------
    def setup(self, loop) -> None:
        subnets = [IPv4Network(s) for u in self.users.values() for s in u.subnets]
        self.g_e, self.inside_if, self.g_i = host.locate(self.g_e, self.inside_if, self.tun_name, subnets,
                                                         self.cfg.fail)
        config = ike.IkeConfig(
            local_id=str(self.cfg.get("identity", self.g_e)),
            users=self.users,
            allocator=PoolAllocator(self.pool, IpsecRuntime.now),
            dns=self.dns,
            dpd_interval=self.dpd or None,
            child_rekey_after=self.cfg.number("child_rekey_after", None) or None,
            ike_rekey_after=self.cfg.number("ike_rekey_after", None) or None,
            unique="replace",  # a user who reconnects (restart, new address) keeps one tunnel
            cookie_threshold=self.cfg.get("cookie_threshold", 32),
            half_open_max=int(self.cfg.number("half_open_max", 1024)),
            **({"ike_proposals": self.cfg.get("ike_proposals")} if self.cfg.get("ike_proposals", None) else {}),
            **({"esp_proposals": self.cfg.get("esp_proposals")} if self.cfg.get("esp_proposals", None) else {}),
        )
        self.core = core = ike.IkeCore(config)
        self.rt = IpsecRuntime(core, self.log, self._from_tunnel, self._on_event, self.g_e,
                               lifetime=self.lifetime, soft_rekey_delay=self.soft_rekey_delay)

        self.tun_fd = TunDevice.open(self.tun_name, self.mtu, txqueuelen=4000).fd  # rp_filter off on it
        sysctl("net.ipv4.conf.all.rp_filter", 0)
        sysctl("net.ipv4.ip_forward", 1)
        tun, inside = self.tun_name, self.inside_if
        host.forward_tunnel(self.changes, tun, inside)
        outside = host.default_interface() if self.internet else None
        if self.internet:
            self.intranet = self.intranet or host.intranet_networks(inside)
            host.forward_internet(self.changes, tun, outside, self.pool.network if self.presence == "pool" else None)
        if self.presence == "napt":
            self.napt = (AlgNapt(self.g_i, ports=self.napt_ports, alg=NaptAlgs(self.algs)) if self.algs
                         else Napt(self.g_i, ports=self.napt_ports))
            self.bindings = RedirectBindings(self.napt, self.redirects)
            self.raw = io.raw_ip_socket()
            self.raw_sender = io.RawSender(self.raw)
            if self.internet:
                self.napt_internet = Napt(self.g_e, ports=self.napt_ports)
            self.translation = NaptPresence(self.napt, self.napt_internet, self.intranet if self.internet else (),
                                            self.g_e)
            host.capture_napt(self.changes, tun, inside, self.g_i, self.napt_ports,
                              [(r.proto, r.port) for r in self.redirects],
                              outside=(outside, self.g_e) if self.internet else None)
        else:
            host.route_pool(self.changes, tun, inside, self.pool.network)
            for site in self.sites.sites.values():
                for net in site.site_subnets:
                    host.route_site(self.changes, tun, net)
        loop.add_reader(self.tun_fd, self._read_tun)
        self.rt.start(loop)
        self.loop = loop
        self.log("gateway_up", g_e=self.g_e, g_i=self.g_i, inside=inside, presence=self.presence,
                 pool=str(self.pool.network), tun=tun, internet_access=self.internet,
                 intranet=[str(n) for n in self.intranet])

    async def cleanup(self) -> None:
        if self.rt is not None and self.rt.loop is not None:
            self.rt.feed(self.core.close)  # tell the clients (INFORMATIONAL Delete)
            await asyncio.sleep(0.05)
            self.rt.stop()
        if self.napt_timer:
            self.napt_timer.cancel()
        if self.tun_fd is not None and self.loop is not None:
            try:
                self.loop.remove_reader(self.tun_fd)
            except Exception:
                pass
        self.changes.undo_all()
        if self.tun_fd is not None:
            os.close(self.tun_fd)
            self.tun_fd = None
        if self.raw_sender is not None:
            self.raw_sender.close()
        if self.raw is not None:
            self.raw.close()

    def _arm_napt_timer(self) -> None:
        """The NAPT core's timer at its next deadline (a mapping made or shortened since brings it
        forward; a refresh only makes it come up early, and it is re-armed after it ran)."""
        due = self.translation.next_deadline()
        if due is None or (self._napt_due_at is not None and self._napt_due_at <= due):
            return
        if self.napt_timer:
            self.napt_timer.cancel()
        self._napt_due_at = due
        self.napt_timer = self.loop.call_later(max(0.0, due - self.rt.now()), self._napt_timer_due)

    def _napt_timer_due(self) -> None:
        self.napt_timer = self._napt_due_at = None
        self.translation.handle_timer(self.rt.now())
        self._arm_napt_timer()

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
                self._log_all(self.bindings.bind(tunnel, a.peer_id, a.virtual_ip, self.rt.now()))
            elif tunnel is not None and self.sites.bind(a.peer_id, tunnel):
                self.log("site_up", site=a.peer_id, ike_sa=a.ike_sa)
        elif isinstance(a, ike.IkeSaClosed):
            tunnel = dp.tunnels.get(a.ike_sa)
            if tunnel is not None:
                self._forget(tunnel)

    def _forget(self, tunnel) -> None:
        if tunnel.virtual_ip and self.by_vip.get(io.ip_int(tunnel.virtual_ip)) is tunnel:
            del self.by_vip[io.ip_int(tunnel.virtual_ip)]
        self._log_all(self.bindings.unbind(tunnel))
        self.sites.unbind(tunnel)
        if self.translation is not None:
            self.translation.forget_peer(tunnel)

    def _log_all(self, events: list[tuple[str, dict]]) -> None:
        for what, fields in events:
            self.log(what, **fields)

    # -- the data path ---------------------------------------------------------------------------
    def _from_tunnel(self, inner: bytes, tunnel) -> None:
        """A packet a remote host sent through its tunnel (authenticated, selectors checked)."""
        if self.translation is not None:
            out = self.translation.outbound(inner, tunnel, self.rt.now())
            if out is None:
                return
            self._to_intranet.append((out, socket.inet_ntoa(out[16:20])))
            if len(self._to_intranet) == 1:  # the first of a burst: handed over once the burst is through
                self.loop.call_soon(self._flush_intranet)
        else:
            try:
                os.write(self.tun_fd, inner)
            except OSError:
                self._count("tun-write-error")

    def _flush_intranet(self) -> None:
        batch, self._to_intranet = self._to_intranet, []
        if batch:
            self.raw_sender.send(batch)
            self._arm_napt_timer()  # once per burst: the mappings it made or refreshed

    def _read_tun(self) -> None:
        io.drain_fd(self.tun_fd, self._to_tunnel)
        if self.translation is not None:
            self._arm_napt_timer()  # once per burst, as above

    def _to_tunnel(self, packet: bytes) -> None:
        """A packet from the intranet toward a remote host (routed into the TUN)."""
        if len(packet) < 20 or packet[0] >> 4 != 4:
            self._count("not-ipv4")
            return
        if self.translation is not None:
            got = self.translation.inbound(packet, self.rt.now())
            if got is None:
                return
            packet, tunnel = got
            if tunnel.out is None:
                self._count("tunnel-gone")
                return
        else:
            dst = int.from_bytes(packet[16:20], "big")
            tunnel = self.by_vip.get(dst) or self.sites.lookup(dst)
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
        napt = self.napt.status(now).as_dict() if self.napt is not None else None
        if napt is not None:
            drops["napt"] = napt["drops"]
        napt_internet = self.napt_internet.status(now).as_dict() if self.napt_internet is not None else None
        if napt_internet is not None:
            drops["napt_internet"] = napt_internet["drops"]
        drops["gateway"] = dict(self.gw_drops)
        if self.raw_sender is not None and self.raw_sender.failed:
            drops["gateway"]["send-error"] = self.raw_sender.failed
        return {
            "implementation": "ours", "kind": "vpn-gateway",
            "internal_presence": self.presence, "external_address": self.g_e, "inside_address": self.g_i,
            "inside_interface": self.inside_if, "tunnel_interface": self.tun_name,
            "ike_sas": ike_sas,
            "virtual_ips": sorted(t.virtual_ip for t in self.rt.dp.tunnels.values() if t.virtual_ip),
            "pool": self.pool.status(),
            "sites": self.sites.status(),
            "napt": napt["mappings"] if napt is not None else [],
            **({"napt_alg": self.napt.alg.status()} if isinstance(self.napt, AlgNapt) else {}),
            "internet_access": self.internet, "intranet": [str(n) for n in self.intranet],
            "napt_internet": napt_internet["mappings"] if napt_internet is not None else [],
            "redirects": self.bindings.status(self.g_i),
            "drops": drops,
            "drop_total": sum(sum(d.values()) for d in drops.values()),
            "counters": st["counters"],
            "ike_messages": st["ike_messages"],
            "half_open": st["half_open"],
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
