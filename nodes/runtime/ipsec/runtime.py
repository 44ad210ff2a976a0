"""The I/O driver shared by the IPsec gateway and client: it feeds the sans-I/O IKE core
(nodes/ipsec/ike.py) from UDP 500/4500, carries out its actions, and moves ESP between the
network (raw protocol-50 socket or UDP 4500) and the data plane (nodes.runtime.ipsec.dataplane.DataPlane).

    rt = IpsecRuntime(core, log, on_inner=deliver, on_event=react)
    rt.start(loop)          # bind sockets, add readers, drive the core (nodes/runtime/core_driver.py)
    rt.feed(core.connect, gateway, local)   # every input to the core: its own method, with the time
    ...
    rt.send_inner(tunnel, packet)   # encrypt and send toward the tunnel's peer

UDP-encapsulated ESP that `send_inner` produces while the loop runs is batched per peer and sent
right after the current burst (`flush_esp`, scheduled with call_soon) as UDP_SEGMENT writes
(sockets.UdpSender); plain ESP leaves at once (a raw socket has no segmentation offload).

`on_inner(inner, tunnel)` gets each authenticated, selector-checked inner packet;
`on_event(action)` gets InstallChildSa, DeleteChildSa, Established, Failed, IkeSaClosed and
IkeSaRekeyed after the data plane has applied them.

ESP lifetimes (`lifetime`, an esp_sa.Lifetime given to every child SA installed): the SAs' soft and
hard expiries go to a nodes/ipsec/lifetime_policy.LifetimePolicy(`soft_rekey_delay`), which decides
(rekey the child now or later, delete it), and the runtime carries its decisions out; an SA past
its hard limit leaves the data plane at once.
"""
from __future__ import annotations

import asyncio
from typing import Callable

from nodes.core import Addr
from nodes.ipsec import ike
from nodes.runtime.ipsec import sockets as io
from nodes.ipsec import lifetime_policy as lp
from nodes.ipsec.esp_sa import Lifetime, warm_up
from nodes.runtime.clock import SYSTEM
from nodes.runtime.control import Handler
from nodes.runtime.core_driver import CoreDriver
from nodes.runtime.ipsec.dataplane import DataPlane, Tunnel

IKE_PORT, NAT_T_PORT = 500, 4500
MARKER = b"\0\0\0\0"


class IkeActions:
    """The CoreDriver's executor for the IKE core (nodes/runtime/core_driver.py): the drained actions
    carried out by the runtime. It owns nothing: the runtime that made the driver stops it."""

    def __init__(self, runtime: "IpsecRuntime"):
        self.runtime = runtime

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self.runtime.loop = loop  # the loop the actions are carried out on

    def run(self, actions: list) -> None:
        self.runtime._apply(actions)

    def stop(self) -> None:
        pass


class IpsecRuntime:
    def __init__(self, core: ike.IkeCore, log, on_inner: Callable[[bytes, Tunnel], None],
                 on_event: Callable[[object], None], local_address: str | None = None,
                 lifetime: Lifetime | None = None,
                 soft_rekey_delay: tuple[float, float] | None = (0.0, 0.0)):
        self.core, self.log = core, log
        self.dp = DataPlane(lifetime)
        self.lifetime = lifetime
        self.policy = lp.LifetimePolicy(soft_rekey_delay)
        self._lifetime_timer: asyncio.TimerHandle | None = None
        self._lifetime_at: float | None = None
        self.on_inner, self.on_event = on_inner, on_event
        self.local_address = local_address
        self.socks: dict[int, object] = {}
        self.esp = None
        self._encap_sender: io.UdpSender | None = None
        self._encap_out: dict[tuple[str, int], list[bytes]] = {}  # ESP in UDP not yet sent, by peer
        self._flush_scheduled = False
        self.driver: CoreDriver | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.ike_in_at: float | None = None  # when the last IKE message arrived (the node's clock)
        self.counters = {"ike_in": 0, "ike_out": 0, "esp_in": 0, "esp_out": 0, "keepalives_in": 0,
                         "send_errors": 0, "lifetime_rekeys": 0, "lifetime_expiries": 0}

    now = staticmethod(SYSTEM.now)  # the node's monotonic clock (nodes/runtime/clock.py)

    # -- lifecycle ---------------------------------------------------------------------------------
    def drive_on(self, loop: asyncio.AbstractEventLoop) -> None:
        """Drive the IKE core on `loop` through the one CoreDriver (its timer, its error counting).
        The driver's executor is an `IkeActions` of this runtime, not the runtime itself: stopping
        the driver stops the executor, and that one owns nothing, so the runtime's sockets and
        timers are released by `stop` alone, once (the runtime owns the driver, not the reverse)."""
        if self.driver is None:
            self.driver = CoreDriver(self.core, IkeActions(self), self.log, now=self.now, loop=loop)

    def feed(self, core_input: Callable[..., None], *args, **kw) -> None:
        """An input to the IKE core (its own method; the driver passes `now`), its actions carried out."""
        self.driver.feed(core_input, *args, **kw)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.drive_on(loop)
        warm_up()  # the ESP ciphers' first contexts, before any SA is installed
        for port in (IKE_PORT, NAT_T_PORT):
            s = self.socks[port] = io.udp_socket(port)
            loop.add_reader(s.fileno(), io.UdpReader(s).drain, self._udp4500 if port == NAT_T_PORT else self._udp500)
        self._encap_sender = io.UdpSender(self.socks[NAT_T_PORT])
        self.esp = io.esp_socket()
        loop.add_reader(self.esp.fileno(), io.RawReader(self.esp).drain, self._esp)

    def stop(self) -> None:
        """The runtime's end: the driver's timer, the lifetime timer, the sockets and their readers,
        each released once (a second call finds nothing left)."""
        driver, self.driver = self.driver, None
        if driver is not None:
            driver.stop()  # its timer; its executor (IkeActions) holds nothing
        if self._lifetime_timer:
            self._lifetime_timer.cancel()
            self._lifetime_timer = None
        for s in [*self.socks.values(), self.esp]:
            if s is None:
                continue
            try:
                self.loop.remove_reader(s.fileno())
            except Exception:
                pass
            s.close()
        self.socks.clear()
        self.esp = None

    # -- IKE -----------------------------------------------------------------------------------
    def _apply(self, actions: list) -> None:
        """Carry out the actions; their log lines are written once all are carried out (in their
        order, after the lines the reactions to them wrote): a log line wakes the log's writer
        thread, which then competes for the GIL, and on a busy machine that cost milliseconds
        between an IKE_AUTH response and the routes of the tunnel it brings up."""
        logs: list[tuple[str, dict]] = []
        try:
            self._carry_out(actions, lambda event, **fields: logs.append((event, fields)))
        finally:
            for event, fields in logs:
                self.log(event, **fields)

    def _carry_out(self, actions: list, log) -> None:
        now = self.now()
        for a in actions:
            if isinstance(a, ike.SendIke):
                self._send_ike(a)
            elif isinstance(a, ike.InstallChildSa):
                self.dp.install(a, now)
                log("child_sa_installed", ike_sa=a.ike_sa, spi_in=f"{a.spi_in:08x}", spi_out=f"{a.spi_out:08x}",
                    alg=a.alg, encap=a.encap, peer=f"{a.peer_addr}:{a.peer_port}",
                    ts_local=[str(t.start) + "-" + str(t.end) for t in a.ts_local],
                    ts_remote=[str(t.start) + "-" + str(t.end) for t in a.ts_remote],
                    replaces=None if a.replaces is None else f"{a.replaces:08x}")
                self._arm_lifetime()
                self.on_event(a)
            elif isinstance(a, ike.DeleteChildSa):
                self.dp.delete(a.spi_in)
                self.policy.child_gone(a.spi_in)
                log("child_sa_deleted", spi_in=f"{a.spi_in:08x}", reason=a.reason)
                self.on_event(a)
            elif isinstance(a, ike.IkeSaRekeyed):
                self.dp.rename(a.old, a.new)
                log("ike_sa_rekeyed", old=a.old, new=a.new)
                self.on_event(a)
            elif isinstance(a, ike.Established):
                t = self.dp.tunnels.get(a.ike_sa)
                if t is not None:
                    t.peer_id, t.virtual_ip = a.peer_id, a.virtual_ip
                log("established", ike_sa=a.ike_sa, role=a.role, peer_id=a.peer_id,
                    peer=f"{a.peer_addr}:{a.peer_port}", encap=a.encap, virtual_ip=a.virtual_ip,
                    dns=a.dns, subnets=a.subnets)
                self.on_event(a)
            elif isinstance(a, ike.IkeSaClosed):
                log("ike_sa_closed", ike_sa=a.ike_sa, reason=a.reason, peer_id=a.peer_id,
                    virtual_ip=a.virtual_ip)
                self.on_event(a)
                for spi in getattr(self.dp.tunnels.get(a.ike_sa), "children", ()):
                    self.policy.child_gone(spi)
                self.dp.close(a.ike_sa)
            elif isinstance(a, ike.Failed):
                log("ike_failed", reason=a.reason, notify=a.notify, peer_id=a.peer_id, peer=a.peer_addr)
                self.on_event(a)

    def _send_ike(self, a: ike.SendIke) -> None:
        sock = self.socks.get(a.sport) or self.socks[IKE_PORT]
        try:
            sock.sendto(a.data, (a.dst, a.dport))
            self.counters["ike_out"] += 1
        except OSError as exc:
            self.counters["send_errors"] += 1
            self.log("send_error", what="ike", dst=f"{a.dst}:{a.dport}", error=str(exc))

    # -- ESP lifetimes -------------------------------------------------------------------------
    def _arm_lifetime(self) -> None:
        """A timer at the earliest time limit of any SA (byte limits are seen per packet) or delayed
        rekey of the lifetime policy."""
        if self.loop is None:
            return
        times = [t for t in (self.dp.next_deadline(), self.policy.next_deadline()) if t is not None]
        at = min(times) if times else None
        if at == self._lifetime_at and self._lifetime_timer is not None:
            return
        if self._lifetime_timer is not None:
            self._lifetime_timer.cancel()
            self._lifetime_timer = None
        self._lifetime_at = at
        if at is not None:
            self._lifetime_timer = self.loop.call_at(at, self._lifetime_tick)

    def _lifetime_tick(self) -> None:
        self._lifetime_timer, self._lifetime_at = None, None
        now = self.now()
        self.dp.poll(now)
        self.policy.handle_timer(now)
        self.lifetime_events()

    def lifetime_events(self) -> None:
        """Hand the SAs' soft and hard expiry events the data plane has gathered to the lifetime
        policy, and carry out its decisions."""
        now = self.now()
        for child, ev in self.dp.pop_events():
            spi = child.spi_in
            fields = {"spi_in": f"{spi:08x}", "sa": f"{ev.spi:08x}", "direction": ev.direction, "cause": ev.cause}
            if ev.kind == "rekey-due":
                self.log("esp_soft_expired", **fields)
                self.policy.soft_expired(spi, now)
            else:
                self.counters["lifetime_expiries"] += 1
                self.log("esp_hard_expired", **fields)
                if self.dp.delete(spi) is not None:
                    self.policy.hard_expired(spi, now)
        for a in self.policy.drain_actions():
            if isinstance(a, lp.RekeyChild):
                self.counters["lifetime_rekeys"] += 1
                self.log("esp_lifetime_rekey", spi_in=f"{a.spi_in:08x}")
                self.feed(self.core.rekey_child, spi_in=a.spi_in)
            else:
                self.feed(self.core.delete_child, a.spi_in)
        self._arm_lifetime()

    # -- receive (datagrams are memoryviews into the reader's buffer: copied where kept) --------
    def _udp500(self, data: memoryview, src: str, sport: int, dst: str | None) -> None:
        data = bytes(data)
        self.counters["ike_in"] += 1
        self._ike_in(data, src, sport, dst, IKE_PORT)

    def _udp4500(self, data: memoryview, src: str, sport: int, dst: str | None) -> None:
        if data[:4] != MARKER:
            if len(data) == 1 and data[0] == 0xFF:
                self.counters["keepalives_in"] += 1
                return
            self._esp_in(data, src, sport, True)
            return
        data = bytes(data)
        self.counters["ike_in"] += 1
        self._ike_in(data, src, sport, dst, NAT_T_PORT)

    def _ike_in(self, data: bytes, src: str, sport: int, dst: str | None, dport: int) -> None:
        self.ike_in_at = self.now()
        self.feed(self.core.receive_datagram, data, Addr(src, sport, dst or self.local_address or "0.0.0.0", dport))

    def _esp(self, payload: memoryview, src: str) -> None:
        self._esp_in(payload, src, 0, False)

    def _esp_in(self, data: memoryview, src: str, sport: int, encap: bool) -> None:
        """An ESP packet (UDP-encapsulated or not) opened by the data plane; one on an SPI no child SA
        has goes to the IKE core, which may tell the sender (N(INVALID_SPI), RFC 7296 1.5)."""
        self.counters["esp_in"] += 1
        now = self.now()
        got = self.dp.open(data, src, sport, encap, now)
        if self.dp.events:
            self.lifetime_events()
        if got is not None:
            self.on_inner(got[0], got[1])
        elif len(data) >= 8 and (spi := int.from_bytes(data[:4], "big")) not in self.dp.by_spi:
            self.feed(self.core.invalid_spi, src, spi)

    # -- send ----------------------------------------------------------------------------------
    def send_inner(self, tunnel: Tunnel, inner: bytes) -> None:
        esp = self.dp.seal(tunnel, inner, self.now())
        if self.dp.events:
            self.lifetime_events()
        if esp is None:
            return
        if tunnel.encap and self.loop is not None:
            # sent in one batch per peer once the current burst (a drained TUN device) is through
            self._encap_out.setdefault((tunnel.peer_addr, tunnel.peer_port), []).append(esp)
            if not self._flush_scheduled:
                self._flush_scheduled = True
                self.loop.call_soon(self.flush_esp)
            return
        try:
            if tunnel.encap:
                self.socks[NAT_T_PORT].sendto(esp, (tunnel.peer_addr, tunnel.peer_port))
            else:
                self.esp.sendto(esp, (tunnel.peer_addr, 0))
            self.counters["esp_out"] += 1
        except OSError:
            self.counters["send_errors"] += 1

    def flush_esp(self) -> None:
        """Send the UDP-encapsulated ESP that `send_inner` batched."""
        self._flush_scheduled = False
        batches, self._encap_out = self._encap_out, {}
        if self._encap_sender is None:
            return
        for addr, packets in batches.items():
            failed = self._encap_sender.send(packets, addr)
            self.counters["esp_out"] += len(packets) - failed
            self.counters["send_errors"] += failed

    def send_keepalive(self, tunnel: Tunnel) -> None:
        try:
            self.socks[NAT_T_PORT].sendto(b"\xff", (tunnel.peer_addr, tunnel.peer_port))
        except OSError:
            self.counters["send_errors"] += 1

    # -- status --------------------------------------------------------------------------------
    def status(self) -> dict:
        now = self.now()
        core = self.core.status(now).as_dict()
        dp = self.dp.status(now)
        return {"ike_sas": core["ike_sas"], "tunnels": dp["tunnels"],
                "drops": {"esp": dp["drops"], "ike": core["drops"]},
                "counters": dict(self.counters), "ike_messages": core["messages"], "events": core["events"],
                "half_open": core["half_open"]}


# -- the public status shape every vpn role answers (testbed/ipsec_checks.py) -----------------
_STATES = {"established": "ESTABLISHED", "rekeyed": "REKEYED", "closed": "DELETING", "failed": "DESTROYING",
           "new": "CREATED"}
_ENCR = {"aes-gcm-16": "AES_GCM_16", "aes-cbc": "AES_CBC"}


def control_handlers(status: Handler, rt: "IpsecRuntime", core: ike.IkeCore) -> dict[str, Handler]:
    """The control-socket commands both IPsec daemons answer, as an explicit table: status, and the
    IKE actions a case may ask for (rekey the child or IKE SA now, run a liveness check now, reset:
    every SA gone at once without a word to the peer, for a conformance tester between test parts).
    Each action is the core's own method, fed through the runtime's driver; its answer is "ok"."""
    def act(action: Callable[..., None]) -> Handler:
        def run(req: dict) -> str:
            rt.feed(action)
            return "ok"
        return run

    return {"status": status,
            "rekey_child": act(core.rekey_child),
            "rekey_ike": act(core.rekey_ike),
            "check_liveness": act(core.check_liveness),
            "reset": act(core.reset)}


def _alg_fields(alg: str) -> dict:
    """esp_sa's algorithm name -> strongSwan's (IKEv2 transform) spelling."""
    for prefix, name in _ENCR.items():
        if alg.startswith(prefix + "-"):
            bits = int(alg[len(prefix) + 1:].split("-")[0])
            integ = "HMAC_SHA2_256_128" if "hmac-sha256" in alg else None
            return {"encr_alg": name, "encr_keysize": bits, "integ_alg": integ}
    return {"encr_alg": alg, "encr_keysize": None, "integ_alg": None}


def public_status(core_sa: dict, tunnel: dict | None, local_id: str | None) -> dict:
    """One IKE SA in the shape of the vpn roles' status (the strongSwan profile answers the same)."""
    lhost, _, lport = core_sa["local"].rpartition(":")
    rhost, _, rport = core_sa["peer"].rpartition(":")
    initiator = core_sa["role"] == "initiator"
    children = []
    for c in (tunnel or {}).get("child_sas", []):
        children.append({
            "name": c["spi_in"], "state": "INSTALLED", "mode": "TUNNEL", "protocol": "ESP",
            "encap": bool(tunnel.get("encap")), "spi_in": c["spi_in"], "spi_out": c["spi_out"],
            "alg": c["alg"], **_alg_fields(c["alg"]),
            "local_ts": c["ts_local"], "remote_ts": c["ts_remote"],
            "bytes_in": c["bytes_in"], "bytes_out": c["bytes_out"],
            "packets_in": c["packets_in"], "packets_out": c["packets_out"],
            "keys": {"encr_in": c["encr_key_in"], "encr_out": c["encr_key_out"],
                     "integ_in": c["integ_key_in"] or None, "integ_out": c["integ_key_out"] or None},
        })
    vip = core_sa.get("virtual_ip")
    return {
        "name": core_sa["name"], "state": _STATES.get(core_sa["state"], "CONNECTING"),
        "core_state": core_sa["state"], "initiator": initiator,
        "local_host": lhost, "local_port": int(lport), "remote_host": rhost, "remote_port": int(rport),
        "local_id": local_id, "remote_id": core_sa.get("peer_id"), "remote_eap_id": None,
        "spi_i": core_sa["spi_i"], "spi_r": core_sa["spi_r"], "encap": core_sa["encap"],
        "nat_local": bool((tunnel or {}).get("nat_local")), "nat_remote": bool((tunnel or {}).get("nat_remote")),
        "nat_fake": False,
        "suite": core_sa.get("suite"), "dh_group": core_sa.get("dh_group"), "keys": core_sa.get("keys"),
        "local_vips": [vip] if vip and initiator else [], "remote_vips": [vip] if vip and not initiator else [],
        "dns": core_sa.get("dns", []), "last_error": core_sa.get("last_error"),
        "tunnel": {k: v for k, v in (tunnel or {}).items() if k != "child_sas"} or None,
        "child_sas": children,
    }
