"""The IPsec remote-access client R (draft-gupta sections 3 to 5).

IKEv2 initiator (nodes/ipsec/ike.py) toward the configured gateway (an address, or a DNS name
resolved at start through the node's resolver, seed section 5; a name that does not resolve is
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

Host hardening (seed section 4), from start to exit: IP forwarding off, and an iptables INPUT
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
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import tempfile
from ipaddress import IPv4Address
from pathlib import Path

from nodes.ipsec import ike
from nodes.ipsec import traffic_selectors as tsel
from nodes.runtime import daemon
from nodes.runtime import ipsec_io as io
from nodes.runtime.ipsec_config import Cfg, esp_lifetime, read_password
from nodes.runtime.ipsec_runtime import IpsecRuntime, control_handlers, public_status
from nodes.runtime.commands import ip, run
from nodes.runtime.netlink import sysctl
from nodes.runtime.tundev import TunDevice

CHAIN = "VPNCLIENT-IN"


def _private_mount_ns() -> tuple[bool, str]:
    """Whether bind-mounting over /etc/resolv.conf stays inside this node."""
    try:
        if os.readlink("/proc/self/ns/mnt") == os.readlink("/proc/1/ns/mnt"):
            return False, "this process shares the machine's mount namespace"
    except OSError:
        pass
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == "/":
            opt = fields[6:fields.index("-")]
            if any(o.startswith("shared:") for o in opt):
                return False, "/ is a shared mount here: a mount would propagate out of the node"
            return True, ""
    return False, "no root mount found"


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


class Client:
    def __init__(self, cfg: Cfg, log, ask_password: bool = False):
        self.cfg, self.log = cfg, log
        gw = str(cfg.get("gateway"))
        self.gateway_name = gw
        self.gateway: str | None = gateway_literal(gw)
        if self.gateway is None and not valid_hostname(gw):
            raise cfg.fail("gateway", "an IPv4 address or a DNS name", gw)
        self.resolving = None
        self.identity = str(cfg.get("identity"))
        self.auth = cfg.get("auth", "psk", ("psk", "eap-md5"))
        psk = cfg.get("psk", None)
        password = None
        if ask_password and self.auth != "eap-md5":
            raise cfg.fail("auth", "eap-md5 with --ask-password (only EAP-MD5 uses a password)", self.auth)
        if self.auth == "eap-md5":
            password = read_password(cfg, ask=ask_password)
            if password is None:
                raise cfg.fail("password_file", "a password file (or TESTBED_VPN_PASSWORD, or --ask-password "
                               "to type it) for auth eap-md5")
        if psk is None:
            raise cfg.fail("psk", "the pre-shared key (the gateway's AUTH is checked with it)")
        self.tunnel_mode = cfg.get("tunnel", "full", ("full", "split"))
        self.split_subnets = cfg.prefixes("subnets", cfg.get("subnets")) if cfg.get("subnets", None) else None
        remote_ts = ["0.0.0.0/0"] if self.tunnel_mode == "full" or not self.split_subnets else self.split_subnets
        self.config = ike.IkeConfig(
            local_id=self.identity,
            remote_id=cfg.get("gateway_identity", None),
            psk=str(psk).encode(),
            eap_password=password.encode() if password is not None else None,
            eap_identity=self.identity if password is not None else None,
            remote_ts=remote_ts,
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
        self.lifetime = esp_lifetime(cfg)
        delay = cfg.get("esp_soft_rekey_delay", [0, 0])
        if (not isinstance(delay, list) or len(delay) != 2 or not all(
                isinstance(x, (int, float)) and not isinstance(x, bool) and x >= 0 for x in delay)
                or delay[0] > delay[1]):
            raise cfg.fail("esp_soft_rekey_delay", "[lo, hi] seconds (0 <= lo <= hi)", delay)
        self.soft_rekey_delay = (float(delay[0]), float(delay[1]))
        self.reconnect_interval = cfg.number("reconnect_interval", 2.0)
        self.keepalive = cfg.number("keepalive", 20)
        self.use_dns = bool(cfg.get("dns", True))
        self.harden = bool(cfg.get("harden", True))
        self.wait = cfg.number("wait", 6)
        self.tun_name = str(cfg.get("tun", "vpn0"))
        self.mtu = int(cfg.number("mtu", 1400))
        self.state = "down"
        self.tunnel = None
        self.ike_sa: str | None = None
        self.virtual_ip: str | None = None
        self.dns: list[str] = []
        self.subnets: list[str] = []
        self.routes: list[str] = []
        self.net_undo: list[list[str]] = []
        self.dns_undo: list = []
        self.harden_undo: list[list[str]] = []
        self.old_forward: str | None = None
        self.last_error: str | None = None
        self.connects = self.establishments = 0
        self.drops: dict[str, int] = {}
        self.established = asyncio.Event()
        self.settled = asyncio.Event()  # the first attempt ended: established or failed
        self.reconnect_handle = None
        self.keepalive_handle = None
        self.stopping = False

    # -- lifecycle --------------------------------------------------------------------------------
    def setup(self, loop) -> None:
        self.loop = loop
        self.local = io.source_address_for(self.gateway) if self.gateway else None
        self.core = ike.IkeCore(self.config)
        self.rt = IpsecRuntime(self.core, self.log, self._from_tunnel, self._on_event, self.local,
                               lifetime=self.lifetime, soft_rekey_delay=self.soft_rekey_delay)
        if _private_mount_ns()[0] and self._stale_dns_mounts():
            self.log("stale_dns_mount_removed")
        if self.harden:
            self._harden()
        self.tun_fd = TunDevice.open(self.tun_name, self.mtu, txqueuelen=4000).fd  # rp_filter off on it
        loop.add_reader(self.tun_fd, self._read_tun)
        self.rt.start(loop)
        self.connect()

    def connect(self) -> None:
        self.reconnect_handle = None
        if self.stopping or self.state in ("connecting", "established", "resolving"):
            return
        if self.gateway is None:
            self.state = "resolving"
            self.resolving = self.loop.create_task(self._resolve())
            return
        self.local = io.source_address_for(self.gateway)
        self.rt.local_address = self.local
        self.state = "connecting"
        self.connects += 1
        self.log("connecting", gateway=self.gateway, local=self.local, attempt=self.connects)
        self.core.connect(self.gateway, self.local, self.rt.now())
        self.rt.flush()

    async def _resolve(self) -> None:
        """The gateway's name through the node's resolver (getaddrinfo: /etc/resolv.conf, hosts)."""
        name = self.gateway_name
        self.log("resolving_gateway", name=name)
        try:
            infos = await self.loop.getaddrinfo(name, 500, family=socket.AF_INET, type=socket.SOCK_DGRAM)
            addr = infos[0][4][0]
        except (socket.gaierror, OSError, IndexError) as exc:
            err = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            self.last_error = (f"cannot resolve the gateway name {name!r}: {err} (check the DNS resolver in "
                               f"/etc/resolv.conf, or give the gateway's address); retrying every "
                               f"{self.reconnect_interval:g} s")
            self.log("gateway_unresolved", name=name, error=err)
            self.state = "down"
            self.settled.set()
            self._schedule_reconnect()
            return
        finally:
            self.resolving = None
        self.log("gateway_resolved", name=name, address=addr)
        self.gateway = addr
        if self.harden:
            self._allow_gateway()
        self.state = "down"
        self.connect()

    def _schedule_reconnect(self, delay: float | None = None) -> None:
        if self.stopping or self.reconnect_handle is not None:
            return
        self.reconnect_handle = self.loop.call_later(self.reconnect_interval if delay is None else delay,
                                                     self.connect)

    async def cleanup(self) -> None:
        self.stopping = True
        for h in (self.reconnect_handle, self.keepalive_handle, self.resolving):
            if h is not None:
                h.cancel()
        if self.state == "established":
            self.core.close(self.rt.now())
            self.rt.flush()
            await asyncio.sleep(0.1)
        self._net_down()
        self.rt.stop()
        try:
            self.loop.remove_reader(self.tun_fd)
        except Exception:
            pass
        os.close(self.tun_fd)
        self._unharden()

    # -- hardening (seed section 4) -------------------------------------------------------------
    def _harden(self) -> None:
        self.old_forward = sysctl("net.ipv4.ip_forward", 0)
        ipt = ["iptables", "-w"]
        for _ in range(8):  # jumps a killed earlier client may have left
            if run(ipt + ["-D", "INPUT", "-j", CHAIN], check=False).returncode:
                break
        run(ipt + ["-N", CHAIN], check=False)
        run(ipt + ["-F", CHAIN])
        rules = [["-i", "lo", "-j", "ACCEPT"],
                 ["-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"],
                 ["-p", "udp", "--sport", "67", "--dport", "68", "-j", "ACCEPT"],
                 ["-i", self.tun_name, "-p", "icmp", "--icmp-type", "echo-request", "-j", "ACCEPT"],
                 ["-j", "DROP"]]
        if self.cfg.get("admit_from_tunnel", True) is not False:
            # new TCP/UDP connections through the tunnel: from the corporate side only (the gateway's
            # redirection rules); never from the Internet, whose packets do not arrive on the TUN
            rules[-1:-1] = [["-i", self.tun_name, "-p", p, "-m", "conntrack", "--ctstate", "NEW", "-j", "ACCEPT"]
                            for p in ("tcp", "udp")]
        for r in rules:
            run(ipt + ["-A", CHAIN, *r])
        run(ipt + ["-I", "INPUT", "1", "-j", CHAIN])
        self.harden_undo = [ipt + ["-D", "INPUT", "-j", CHAIN], ipt + ["-F", CHAIN], ipt + ["-X", CHAIN]]
        if self.gateway:
            self._allow_gateway()
        self.log("hardened", ip_forward="0", input_chain=CHAIN)

    def _allow_gateway(self) -> None:
        """The tunnel's own IKE and ESP from the gateway (once its address is known)."""
        ipt = ["iptables", "-w"]
        for r in (["-s", self.gateway, "-p", "esp", "-j", "ACCEPT"],
                  ["-s", self.gateway, "-p", "udp", "-m", "multiport", "--dports", "500,4500", "-j", "ACCEPT"]):
            run(ipt + ["-I", CHAIN, "3", *r])

    def _unharden(self) -> None:
        for argv in self.harden_undo:
            run(argv, check=False)
        self.harden_undo = []
        if self.old_forward is not None:
            sysctl("net.ipv4.ip_forward", self.old_forward)

    # -- the tunnel's network configuration ----------------------------------------------------------
    def _net_up(self, a: ike.Established) -> None:
        vip = a.virtual_ip
        tun = self.tun_name
        ip("addr", "replace", f"{vip}/32", "dev", tun)
        self.net_undo.append(["ip", "addr", "del", f"{vip}/32", "dev", tun])
        child = self.tunnel.out if self.tunnel else None
        if self.tunnel_mode == "full":
            via = json.loads(ip("-j", "route", "get", self.gateway).stdout or "[{}]")[0]
            host = [f"{self.gateway}/32"] + (["via", via["gateway"]] if via.get("gateway") else []) + ["dev", via["dev"]]
            ip("route", "replace", *host)
            self.net_undo.append(["ip", "route", "del", f"{self.gateway}/32"])
            nets = ["0.0.0.0/1", "128.0.0.0/1"]
        else:
            nets = self.split_subnets or a.subnets or (
                [str(n) for ts in child_ts(child) for n in tsel.networks(ts)] if child else [])
        for net in nets:
            ip("route", "replace", net, "dev", tun, "src", vip)
            self.net_undo.append(["ip", "route", "del", net, "dev", tun])
        self.routes = nets
        if self.use_dns and a.dns:
            self._dns_up(a.dns)

    def _net_down(self) -> None:
        for argv in reversed(self.net_undo):
            run(argv, check=False)
        self.net_undo = []
        self.routes = []
        self._dns_down()

    @staticmethod
    def _stale_dns_mounts() -> int:
        """Unmount resolv.conf copies a killed earlier client left in this node; how many."""
        n = 0
        for _ in range(8):
            mounts = Path("/proc/self/mountinfo").read_text().splitlines()
            stale = [f[3] for f in (m.split() for m in mounts)
                     if len(f) > 4 and f[4] == "/etc/resolv.conf" and "vpn-client-dns-" in f[3]]
            if not stale or run(["umount", "/etc/resolv.conf"], check=False).returncode:
                break
            d = Path(stale[-1]).parent
            if d.name.startswith("vpn-client-dns-") and d.is_dir():
                shutil.rmtree(d, ignore_errors=True)
            n += 1
        return n

    def _dns_up(self, servers: list[str]) -> None:
        ok, why = _private_mount_ns()
        if not ok:
            self.log("dns_not_changed", reason=why, servers=servers)
            return
        d = tempfile.mkdtemp(prefix="vpn-client-dns-")
        path = Path(d) / "resolv.conf"
        path.write_text("# written by the testbed VPN client while its tunnel is up\n"
                        + "".join(f"nameserver {s}\n" for s in servers) + "options timeout:1 attempts:2\n")
        res = run(["mount", "--bind", str(path), "/etc/resolv.conf"], check=False)
        if res.returncode:
            self.log("dns_not_changed", reason=res.stderr.strip(), servers=servers)
            shutil.rmtree(d, ignore_errors=True)
            return
        self.dns_undo = [d]
        self.log("dns_up", servers=servers)

    def _dns_down(self) -> None:
        if not self.dns_undo:
            return
        run(["umount", "/etc/resolv.conf"], check=False)
        shutil.rmtree(self.dns_undo[0], ignore_errors=True)
        self.dns_undo = []
        self.log("dns_restored")

    # -- events ----------------------------------------------------------------------------------
    def _on_event(self, a) -> None:
        if isinstance(a, ike.Established):
            self.tunnel = self.rt.dp.tunnels.get(a.ike_sa)
            self.ike_sa = a.ike_sa
            self.virtual_ip, self.dns, self.subnets = a.virtual_ip, list(a.dns), list(a.subnets)
            self._net_down()
            try:
                self._net_up(a)
            except Exception as exc:  # a failing route must not kill the client
                self.last_error = f"network configuration failed: {exc}"
                self.log("net_error", error=str(exc))
            self.state = "established"
            self.establishments += 1
            self.last_error = None
            self.established.set()
            self.settled.set()
            self._arm_keepalive()
        elif isinstance(a, ike.IkeSaRekeyed):
            if a.old == self.ike_sa:
                self.ike_sa = a.new
        elif isinstance(a, ike.IkeSaClosed):
            if a.ike_sa == self.ike_sa or self.state == "connecting":
                self._down(a.reason)
        elif isinstance(a, ike.Failed):
            reason = a.reason
            if a.notify is not None and ike.notify_name(a.notify) not in reason:
                reason = f"{ike.notify_name(a.notify)} ({reason})"
            self.last_error = reason
            self.settled.set()
            if self.state != "established":
                self.state = "down"
                self._schedule_reconnect(self.reconnect_interval * (3 if a.notify == 24 else 1))

    def _down(self, reason: str) -> None:
        self.log("tunnel_down", reason=reason)
        self.last_error = reason
        self._net_down()
        self.tunnel, self.ike_sa, self.virtual_ip = None, None, None
        self.state = "down"
        self.established.clear()
        self._schedule_reconnect()

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
        by_name = {t["ike_sa"]: t for t in st["tunnels"]}
        ike_sas = [public_status(sa, by_name.get(sa["name"]), self.identity) for sa in st["ike_sas"]]
        for sa in ike_sas:
            sa["nat_fake"] = self.config.force_encap
        drops = dict(st["drops"])
        drops["client"] = dict(self.drops)
        return {
            "implementation": "ours", "kind": "vpn-client",
            "state": "down" if self.state == "resolving" else self.state, "resolving": self.state == "resolving",
            "gateway": self.gateway, "gateway_name": self.gateway_name, "local_address": self.local,
            "identity": self.identity, "auth": self.auth, "tunnel": self.tunnel_mode,
            "virtual_ip": self.virtual_ip, "virtual_ips": [self.virtual_ip] if self.virtual_ip else [],
            "dns": self.dns, "subnets": self.subnets, "routes": self.routes,
            "tunnel_interface": self.tun_name, "encap": bool(self.tunnel and self.tunnel.encap),
            "ike_sas": ike_sas, "drops": drops, "counters": st["counters"],
            "connects": self.connects, "establishments": self.establishments,
            "last_error": self.last_error, "hardened": bool(self.harden_undo), "events": st["events"],
        }


def child_ts(child) -> list:
    if child is None:
        return []
    from ipaddress import IPv4Address
    from nodes.wire.ikev2 import TrafficSelector
    return [TrafficSelector(IPv4Address(lo), IPv4Address(hi)) for lo, hi in child.remote]


async def setup(args, log):
    cfg = Cfg(daemon.load_config(args.config), str(args.config))
    client = Client(cfg, log, ask_password=bool(getattr(args, "ask_password", False)))
    try:
        client.setup(asyncio.get_running_loop())
    except BaseException:
        client._unharden()  # take back the firewall and sysctl set so far
        raise
    if client.wait:
        try:
            await asyncio.wait_for(client.settled.wait(), client.wait)
        except asyncio.TimeoutError:
            log("not_established_yet", state=client.state, last_error=client.last_error)
    return control_handlers(client.status, client.rt, client.core), client.cleanup


def main() -> None:
    p = daemon.base_parser("client", __doc__.splitlines()[0])
    p.add_argument("--ask-password", action="store_true",
                   help="type the EAP password at a prompt on the controlling terminal (as `password: prompt`)")
    daemon.run("client", p.parse_args(), setup)


if __name__ == "__main__":
    main()
