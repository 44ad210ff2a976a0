"""The IPsec remote-access client R (draft-gupta sections 3 to 5).

IKEv2 initiator (nodes/ipsec/ike.py) toward the configured gateway (an address, or a DNS name
resolved at start through the node's resolver, draft-gupta-ipsec-remote-access-00 section 5; with `gateway_lookup: ipseckey` the
name is a domain whose IPSECKEY record (RFC 4025) names its gateway; a name that does not resolve is
reported in the status's last_error and the log (gateway_unresolved) and tried again every
`reconnect_interval`), authenticated by pre-shared key or by the user's password through EAP-MD5
(password from `password`, the environment variable TESTBED_VPN_PASSWORD or `password_file`; or
typed at a prompt on the controlling terminal with --ask-password or `password: prompt`, refused at
start with what to do instead when there is no terminal). While the tunnel is up:

  * a TUN device carries the assigned virtual address; routes: full tunnel (0/1 and 128/1 into
    the TUN, a host route keeps the tunnel's own packets to G_e on the physical path), or split
    tunnel (only `subnets`, else the subnets the gateway announced, else the SA's selectors);
  * DNS: the internal resolver the gateway hands out is written to a private resolv.conf that is
    bind-mounted over /etc/resolv.conf inside the node's own mount namespace (the machine's file
    is never written); the mount goes when the tunnel goes;
  * ESP in userspace: plain on a raw protocol-50 socket, or UDP-encapsulated on 4500 behind a NAT
    (with keepalives every `keepalive` seconds).

Host hardening (draft-gupta-ipsec-remote-access-00 section 4), from start to exit: IP forwarding off, and an iptables INPUT
chain that admits only loopback, established/related traffic, the tunnel's own IKE and ESP from
the gateway, DHCP replies, and what arrives through the tunnel (on the TUN device: only packets
authenticated by the SA with the gateway, from the corporate side, land there: ICMP echo, and the
connections the gateway's redirection rules send, draft-gupta Appendix C; `admit_from_tunnel: false`
admits only ICMP echo there); everything unsolicited from the Internet is dropped.
ESP lifetimes: `esp_lifetime: {soft_bytes, hard_bytes, soft_seconds, hard_seconds}` (each optional)
is given to every child SA; crossing a soft limit starts a child SA rekey (CREATE_CHILD_SA) at once
(`esp_soft_rekey_delay`, [lo, hi] seconds, default [0, 0]), crossing a hard limit drops the SA.
Liveness: DPD every `dpd_interval` seconds; when the gateway stops answering (or deletes the SA)
the tunnel is taken down and the client reconnects every `reconnect_interval` seconds.

Config keys: gateway, identity, psk, auth psk|eap-md5 (psk), password_file, tunnel full|split,
subnets, gateway_identity, child_rekey_after / ike_rekey_after (seconds; none), esp_lifetime,
esp_soft_rekey_delay, dpd_interval (5), retransmit_timeout (0.5), retransmit_backoff (1.5),
retransmit_tries (3) (so a dead gateway is noticed within about dpd_interval + 4 s),
reconnect_interval (2), keepalive (20), dns (true), harden (true), admit_from_tunnel (true), wait (6: seconds to wait for the
first attempt to end, established or refused, before READY), tun (vpn0), mtu (1400), force_encap (false), ike_proposals, esp_proposals.

This module is the adapter: the IKE core and the session policy (nodes/ipsec/client_session.py:
resolve, connect, reconnect) are sans-I/O; the host plumbing is nodes/runtime/ipsec/client_firewall.py
(hardening), tunnel_routes.py (address and routes) and dns_mount.py (the resolv.conf mount).
"""
from __future__ import annotations

import asyncio
import os
import socket
import tempfile
from ipaddress import IPv4Address

from nodes.ipsec import client_session as cs
from nodes.ipsec import ike
from nodes.ipsec import traffic_selectors as tsel
from nodes.runtime import daemon
from nodes.runtime.host.commands import CommandInterrupted
from nodes.runtime.core_driver import CoreDriver
from nodes.runtime.ipsec import sockets as io
from nodes.runtime.ipsec.client_firewall import InputFirewall
from nodes.runtime.ipsec.gateway_lookup import GatewayLookupError, gateway_from_ipseckey
from nodes.runtime.host.dns_mount import ResolvConfMount, remove_stale_mounts
from nodes.runtime.ipsec.config import Cfg, esp_lifetime, read_password, soft_rekey_delay
from nodes.runtime.ipsec.runtime import IpsecRuntime, control_handlers, public_status
from nodes.runtime.host.tundev import TunDevice
from nodes.runtime.host.tunnel_routes import TunnelRoutes
from nodes.wire.ikev2 import TrafficSelector

CHAIN = "VPNCLIENT-IN"


def gateway_literal(name: str) -> str | None:
    """The gateway's address when `gateway` is written as an IPv4 address, else None (a name)."""
    try:
        return str(IPv4Address(name))
    except ValueError:
        return None


def valid_hostname(name: str) -> bool:
    labels = name.rstrip(".").split(".")
    return 0 < len(name) <= 253 and all(
        0 < len(lb) <= 63 and lb[0] != "-" and lb[-1] != "-" and all(c.isalnum() or c == "-" for c in lb)
        for lb in labels)


def ike_config(cfg: Cfg, identity: str, password: str | None) -> ike.IkeConfig:
    psk = cfg.get("psk", None)
    if psk is None:
        raise cfg.fail("psk", "the pre-shared key (the gateway's AUTH is checked with it)")
    split = cfg.prefixes("subnets", cfg.get("subnets")) if cfg.get("subnets", None) else None
    full = cfg.get("tunnel", "full", ("full", "split")) == "full"
    return ike.IkeConfig(
        local_id=identity,
        remote_id=cfg.get("gateway_identity", None),
        psk=str(psk).encode(),
        eap_password=password.encode() if password is not None else None,
        eap_identity=identity if password is not None else None,
        remote_ts=["0.0.0.0/0"] if full or not split else split,
        force_encap=bool(cfg.get("force_encap", False)),
        dpd_interval=cfg.number("dpd_interval", 5) or None,
        child_rekey_after=cfg.number("child_rekey_after", None) or None,
        ike_rekey_after=cfg.number("ike_rekey_after", None) or None,
        retransmit_timeout=cfg.number("retransmit_timeout", 0.5),
        retransmit_backoff=cfg.number("retransmit_backoff", 1.5),
        retransmit_tries=int(cfg.number("retransmit_tries", 3)),
        **({"ike_proposals": cfg.get("ike_proposals")} if cfg.get("ike_proposals", None) else {}),
        **({"esp_proposals": cfg.get("esp_proposals")} if cfg.get("esp_proposals", None) else {}),
    )


class Client:
    def __init__(self, cfg: Cfg, log, ask_password: bool = False):
        self.cfg, self.log = cfg, log
        gw = str(cfg.get("gateway"))
        if gateway_literal(gw) is None and not valid_hostname(gw):
            raise cfg.fail("gateway", "an IPv4 address or a DNS name", gw)
        self.gateway_lookup = cfg.get("gateway_lookup", "address", ("address", "ipseckey"))
        if self.gateway_lookup == "ipseckey" and gateway_literal(gw) is not None:
            raise cfg.fail("gateway", "a domain name whose IPSECKEY record names the gateway (gateway_lookup: ipseckey)", gw)
        self.session = cs.ClientSession(gw, gateway_literal(gw), cfg.number("reconnect_interval", 2.0))
        self.identity = str(cfg.get("identity"))
        self.auth = cfg.get("auth", "psk", ("psk", "eap-md5"))
        password = None
        if ask_password and self.auth != "eap-md5":
            raise cfg.fail("auth", "eap-md5 with --ask-password (only EAP-MD5 uses a password)", self.auth)
        if self.auth == "eap-md5":
            password = read_password(cfg, ask=ask_password)
            if password is None:
                raise cfg.fail("password_file", "a password file (or TESTBED_VPN_PASSWORD, or --ask-password "
                               "to type it) for auth eap-md5")
        self.config = ike_config(cfg, self.identity, password)
        self.tunnel_mode = cfg.get("tunnel", "full", ("full", "split"))
        self.split_subnets = cfg.prefixes("subnets", cfg.get("subnets")) if cfg.get("subnets", None) else None
        self.lifetime = esp_lifetime(cfg)
        self.soft_rekey_delay = soft_rekey_delay(cfg, [0, 0])
        self.keepalive = cfg.number("keepalive", 20)
        self.use_dns = bool(cfg.get("dns", True))
        self.wait = cfg.number("wait", 6)
        self.tun_name = str(cfg.get("tun", "vpn0"))
        self.mtu = int(cfg.number("mtu", 1400))
        self.firewall = (InputFirewall(CHAIN, self.tun_name, cfg.get("admit_from_tunnel", True) is not False)
                         if cfg.get("harden", True) else None)
        self.routes = TunnelRoutes(self.tun_name)
        self.dns_mount = ResolvConfMount()
        self.tunnel = None
        self.local: str | None = None
        self.drops: dict[str, int] = {}
        self.settled = asyncio.Event()  # the first attempt ended: established or failed
        self.resolving: asyncio.Task | None = None
        self.session_driver: CoreDriver | None = None  # feeds the session core (setup)
        self.keepalive_handle: asyncio.TimerHandle | None = None

    @property
    def gateway(self) -> str | None:
        return self.session.gateway

    # -- lifecycle --------------------------------------------------------------------------------
    def setup(self, loop) -> None:
        self.loop = loop
        self.local = io.source_address_for(self.gateway) if self.gateway else None
        self.core = ike.IkeCore(self.config)
        self.rt = IpsecRuntime(self.core, self.log, self._from_tunnel, self._on_event, self.local,
                               lifetime=self.lifetime, soft_rekey_delay=self.soft_rekey_delay)
        if remove_stale_mounts():
            self.log("stale_dns_mount_removed")
        if self.firewall is not None:
            self.firewall.harden()
            if self.gateway:
                self.firewall.allow_gateway(self.gateway)
            self.log("hardened", ip_forward="0", input_chain=CHAIN)
        self.tun_fd = TunDevice.open(self.tun_name, self.mtu, txqueuelen=4000).fd  # rp_filter off on it
        loop.add_reader(self.tun_fd, self._read_tun)
        self.rt.start(loop)  # warms the ESP ciphers too
        # the temporary directory the DNS mount writes its resolv.conf into: the first use of
        # tempfile probes the candidates (milliseconds), here rather than when the tunnel comes up
        tempfile.gettempdir()
        self.session_driver = CoreDriver(self.session, SessionActions(self), self.log, now=self.rt.now)
        self.session_driver.feed(self.session.start)

    async def cleanup(self) -> None:
        if self.session_driver is not None:
            self.session_driver.feed(self.session.stop)
            self.session_driver.stop()
        for h in (self.keepalive_handle, self.resolving):
            if h is not None:
                h.cancel()
        if self.session.state == "established":
            self.rt.feed(self.core.close)
            await asyncio.sleep(0.1)
        self._net_down()
        self.rt.stop()
        try:
            self.loop.remove_reader(self.tun_fd)
        except Exception:
            pass
        os.close(self.tun_fd)
        self.unharden()

    def unharden(self) -> None:
        if self.firewall is not None:
            self.firewall.remove()

    # -- the session's actions --------------------------------------------------------------------
    def run_session_actions(self, actions: list) -> None:
        for a in actions:
            if isinstance(a, cs.Connect):
                self._connect(a.gateway)
            elif isinstance(a, cs.Resolve):
                self.log("resolving_gateway", name=a.name)
                self.resolving = self.loop.create_task(self._resolve(a.name))
            elif isinstance(a, cs.GatewayResolved):
                self.log("gateway_resolved", name=self.session.gateway_name, lookup=self.gateway_lookup, address=a.address)
                if self.firewall is not None:
                    self.firewall.allow_gateway(a.address)
            elif isinstance(a, cs.TunnelUp):
                self._tunnel_up(a.established)
            elif isinstance(a, cs.TunnelDown):
                self.log("tunnel_down", reason=a.reason)
                self._net_down()
                self.tunnel = None
            elif isinstance(a, cs.AttemptFailed):
                self.settled.set()

    def _connect(self, gateway: str) -> None:
        self.local = io.source_address_for(gateway)
        self.rt.local_address = self.local
        self.log("connecting", gateway=gateway, local=self.local, attempt=self.session.connects)
        self.rt.feed(self.core.connect, gateway, self.local)

    async def _resolve(self, name: str) -> None:
        """The gateway's address: the name through the node's resolver (getaddrinfo: /etc/resolv.conf,
        hosts), or, with gateway_lookup ipseckey, the gateway the domain's IPSECKEY record names."""
        try:
            if self.gateway_lookup == "ipseckey":
                address, error = await gateway_from_ipseckey(name), None
            else:
                infos = await self.loop.getaddrinfo(name, 500, family=socket.AF_INET, type=socket.SOCK_DGRAM)
                address, error = infos[0][4][0], None
        except GatewayLookupError as exc:
            address, error = None, str(exc)
        except (socket.gaierror, OSError, IndexError) as exc:
            address, error = None, getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        finally:
            self.resolving = None
        if error is not None:
            self.log("gateway_unresolved", name=name, lookup=self.gateway_lookup, error=error)
        self.session_driver.feed(self.session.resolved, address, error)

    # -- the tunnel's network configuration ----------------------------------------------------------
    def _tunnel_up(self, a: ike.Established) -> None:
        self.tunnel = self.rt.dp.tunnels.get(a.ike_sa)
        self._net_down()
        t0 = self.rt.now()
        try:
            timing = self._net_up(a)
        except CommandInterrupted as exc:  # the node is stopping us: its signal ended our command first
            self.log("net_interrupted", error=str(exc))
        except Exception as exc:  # a failing route must not kill the client
            self.log("net_error", error=str(exc))
        else:
            # where the time between the IKE_AUTH response and the first packet goes, on our side;
            # logged after the work (a log line wakes the log's writer thread: see IpsecRuntime._apply)
            since = None if self.rt.ike_in_at is None else round((t0 - self.rt.ike_in_at) * 1000, 3)
            dns_event, dns_fields = timing.pop("dns_log", (None, None))
            timing["total_ms"] = round((self.rt.now() - t0) * 1000, 3)
            if dns_event:
                self.log(dns_event, **dns_fields)
            self.log("net_up", ike_response_to_net_ms=since, **timing)
        self.settled.set()
        self._arm_keepalive()

    def _net_up(self, a: ike.Established) -> dict:
        """The tunnel's address, routes and DNS; how long each took (ms), and the DNS outcome's log
        line (`dns_log`) for the caller to write."""
        child = self.tunnel.out if self.tunnel else None
        if self.tunnel_mode == "full":
            nets = None
        else:
            nets = self.split_subnets or a.subnets or (
                [str(n) for ts in child_ts(child) for n in tsel.networks(ts)] if child else [])
        t0 = self.rt.now()
        self.routes.up(a.virtual_ip, self.gateway, nets)
        t1 = self.rt.now()
        timing: dict = {"routes_ms": round((t1 - t0) * 1000, 3)}
        if self.use_dns and a.dns:
            ok, why = self.dns_mount.up(list(a.dns))
            timing["dns_log"] = (("dns_up", {"servers": list(a.dns)}) if ok
                                 else ("dns_not_changed", {"reason": why, "servers": list(a.dns)}))
        timing["dns_ms"] = round((self.rt.now() - t1) * 1000, 3)
        return timing

    def _net_down(self) -> None:
        self.routes.down()
        if self.dns_mount.down():
            self.log("dns_restored")

    def _arm_keepalive(self) -> None:
        if self.keepalive_handle is not None:
            self.keepalive_handle.cancel()
        if not self.keepalive:
            return

        def tick():
            if self.tunnel is not None and self.tunnel.encap:
                self.rt.send_keepalive(self.tunnel)
            self.keepalive_handle = self.loop.call_later(self.keepalive, tick)

        self.keepalive_handle = self.loop.call_later(self.keepalive, tick)

    # -- the data path ---------------------------------------------------------------------------
    def _on_event(self, a) -> None:
        self.session_driver.feed(self.session.ike_event, a)

    def _read_tun(self) -> None:
        io.drain_fd(self.tun_fd, self._to_tunnel)

    def _to_tunnel(self, packet: bytes) -> None:
        tunnel = self.tunnel
        if tunnel is None or tunnel.out is None:
            self.drops["no-tunnel"] = self.drops.get("no-tunnel", 0) + 1
            return
        self.rt.send_inner(tunnel, packet)

    def _from_tunnel(self, inner: bytes, tunnel) -> None:
        try:
            os.write(self.tun_fd, inner)
        except OSError:
            self.drops["tun-write-error"] = self.drops.get("tun-write-error", 0) + 1

    # -- status ----------------------------------------------------------------------------------
    def status(self, req=None) -> dict:
        st = self.rt.status()
        session = self.session.status(self.rt.now())
        by_name = {t["ike_sa"]: t for t in st["tunnels"]}
        ike_sas = [public_status(sa, by_name.get(sa["name"]), self.identity) for sa in st["ike_sas"]]
        for sa in ike_sas:
            sa["nat_fake"] = self.config.force_encap
        drops = dict(st["drops"])
        drops["client"] = dict(self.drops)
        state = session.state
        return {
            "implementation": "ours", "kind": "vpn-client",
            "state": "down" if state == "resolving" else state, "resolving": state == "resolving",
            "gateway": session.gateway, "gateway_name": session.gateway_name, "gateway_lookup": self.gateway_lookup, "local_address": self.local,
            "identity": self.identity, "auth": self.auth, "tunnel": self.tunnel_mode,
            "virtual_ip": session.virtual_ip, "virtual_ips": [session.virtual_ip] if session.virtual_ip else [],
            "dns": list(session.dns), "subnets": list(session.subnets), "routes": self.routes.routes,
            "tunnel_interface": self.tun_name, "encap": bool(self.tunnel and self.tunnel.encap),
            "ike_sas": ike_sas, "drops": drops, "counters": st["counters"], "ike_messages": st["ike_messages"],
            "connects": session.connects, "establishments": session.establishments,
            "last_error": session.last_error, "hardened": bool(self.firewall and self.firewall.active),
            "events": st["events"],
        }


class SessionActions:
    """The session core's executor (nodes/runtime/core_driver.py): its actions carried out by the client."""

    def __init__(self, client: Client):
        self.client = client

    def attach(self, loop) -> None:
        pass

    def run(self, actions: list) -> None:
        self.client.run_session_actions(actions)

    def stop(self) -> None:
        pass


def child_ts(child) -> list:
    if child is None:
        return []
    return [TrafficSelector(IPv4Address(lo), IPv4Address(hi)) for lo, hi in child.remote]


def start(cfg: Cfg, log, ask_password: bool = False) -> Client:
    """A client from its config, set up in the running loop (also the mobile VPN node's VPN layer)."""
    client = Client(cfg, log, ask_password=ask_password)
    try:
        client.setup(asyncio.get_running_loop())
    except BaseException:
        client.unharden()  # take back the firewall and sysctl set so far
        raise
    return client


async def setup(args, log):
    cfg = Cfg(daemon.load_config(args.config), str(args.config))
    client = start(cfg, log, ask_password=bool(getattr(args, "ask_password", False)))
    if client.wait:
        try:
            await asyncio.wait_for(client.settled.wait(), client.wait)
        except asyncio.TimeoutError:
            log("not_established_yet", state=client.session.state, last_error=client.session.last_error)
    return control_handlers(client.status, client.rt, client.core), client.cleanup


def main() -> None:
    p = daemon.base_parser("client", __doc__.splitlines()[0])
    p.add_argument("--ask-password", action="store_true",
                   help="type the EAP password at a prompt on the controlling terminal (as `password: prompt`)")
    daemon.run("client", p.parse_args(), setup)


if __name__ == "__main__":
    main()
