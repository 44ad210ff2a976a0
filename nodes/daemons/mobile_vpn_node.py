"""The mobile VPN node: Mobile IPv4 MN and IPsec VPN client in one process (problem statement 2).

    python -m nodes.daemons.mobile_vpn_node --control PATH [--log-json PATH] --config mvn.json

"In all scenarios, MN refers to a mobile node that runs both MIP and IPsec-based VPN client
software" (draft-ietf-mip4-vpn-problem-statement section 2). This daemon composes the two existing
daemons' objects in its own process and asyncio loop (`mobile_node.start`, `vpn_client.start`,
nodes/daemons/mobile_vpn_layers.py; the cores are not copied), hands them their configs as objects
(nodes/daemons/mobile_vpn_config.py), reacts to their events (each line a layer logs: a move, a
registration, a tunnel up or down; each turn of the i-MIP core; a timer where time alone decides),
and layers them with kernel routes and filters between their TUN devices
(nodes/runtime/mip/layering.py), in the nesting the config chooses:

  mip-inside-ipsec  (section 4.1, Figure 8) the VPN client runs whenever the MN is away from home;
                    its IKE leaves from the care-of address, its routes toward the intranet carry
                    the MN's registrations and tunnel to an HA inside the intranet. A new point of
                    attachment means a new care-of address, so the client is restarted: a new IKE
                    exchange per move (what the draft says this nesting costs). At home the
                    client is stopped.
  ipsec-inside-mip  (sections 2.2, 2.4, 2.5) the MN registers with an HA it reaches without the VPN
                    first; then the client starts once, its IKE and ESP from the home address,
                    carried in the Mobile IP tunnel (co-located: a route to the gateway into the
                    MN's TUN; via an FA: the MN's own default route through the agent). A move
                    changes only the MN's registration: no IKE.
  rfc5265           (RFC 5265 section 2, access modes `cvc` and `fvc`) ipsec-inside-mip toward the
                    external HA (x-MIP, co-located care-of address, or a foreign agent's: fvc; `mn`
                    is its config), then, once the tunnel is
                    up, a second Mobile Node core registers with the internal HA (i-MIP; `inner` is
                    its config) through the tunnel, with the VPN-TIA as co-located care-of address
                    and the T bit set (nodes/runtime/mip/tunnel_mobile_node.py). An outside move changes
                    only the x-MIP registration: the SA is bound to the x-HoA, the i-MIP binding to
                    the VPN-TIA, neither changes. Inside/outside detection (RFC 5265; the policy
                    is nodes/mip/rfc5265_location.py, the request nodes/runtime/mip/trust_probe.py,
                    the node's part nodes/daemons/mobile_vpn_detection.py):
                    on each attachment change the node asks the i-HA from the link's own address
                    (through the agent, with its care-of address, on a link with a foreign agent)
                    while the x-MIP layer registers with the x-HA; a reply with extension 149 means
                    inside: the VPN goes down and the i-MIP core registers from that address
                    (mode c), or through the agent (mode f; at home, deregistered: mode home); no reply within detect_window
                    (1 s) means outside: x-MIP, IKE, i-MIP in that order (mode cvc, or fvc through
                    an agent). Until then
                    the layers stay as they are (an outside move keeps its VPN and i-MIP binding).
                    Inside, the x-MIP layer's registrations are held back and the node deregisters
                    from the x-HA (lifetime 0 from the link's address), where the intranet may reach
                    the x-HA (world variant intranet-reaches-x-ha).

Config: {nesting, mn: {mobile_node config}, client: {vpn_client config}}; with
rfc5265 also access_mode (cvc or fvc), detect_window (s) and inner: {home_address, home_agent, home_network, spi, key,
reverse_tunnel (true), tun (mip1), ...: the mobile node's keys but iface and colocated}. The
client's `wait` defaults to 0 and its `tunnel` to split (the layering keeps its own routes). A bad
config is refused at start with nodes.config_schema.ConfigError (file: key, expected, found).
Status: both layers' own status under `mip` and `vpn`, the nesting, IKE messages (sent and
received, over every client run) in total and per move, the client's restarts, and the moves seen
(attachment changes of the MN). With rfc5265 also `mode` (rfc5265-cvc, -fvc, -c, -f or -home: the decided access
mode; `access_mode` the same without the prefix), `location` (the decision: inside/outside, each
layer's wanted state, the reason), `detection` (the request to the i-HA: address, outcome,
counters), the i-MIP layer's status under `i_mip`, `x_ha_deregistration` (the request sent once inside:
address, outcome, code; `x_mip_held`), and `layers` named x-mip (with `held`), vpn and i-mip.
"""
from __future__ import annotations

import asyncio
from collections import Counter

from nodes.config_schema import ConfigError
from nodes.daemons.mobile_vpn_config import NESTINGS, MobileVpnConfig, load
from nodes.daemons.mobile_vpn_detection import Rfc5265Detection
from nodes.daemons.mobile_vpn_layers import MipLayer, VpnLayer
from nodes.runtime import daemon
from nodes.runtime.clock import SYSTEM, Clock
from nodes.runtime.host import netlink
from nodes.runtime.host.commands import CommandInterrupted, run
from nodes.runtime.mip.layering import AdmitMobility, GatewayThroughTunnel, SourceIntoTunnel
from nodes.runtime.mip.tunnel_mobile_node import TunnelMobileNode

__all__ = ["MobileVpnNode", "NESTINGS", "setup", "main"]

MIP_UDP_OVERHEAD = 32
INNER_TABLE = 436  # the i-MIP layer's policy-routed table (the x-MIP layer has 434, the gateway route 435)
IP_HEADER = 20
DEADLINE_SLACK = 0.002  # s after a deadline: the timer's clock (monotonic) and the decision's (wall) differ


class MobileVpnNode:
    def __init__(self, cfg: MobileVpnConfig, log, log_json: str | None = None, clock: Clock = SYSTEM):
        # wall time throughout: the Mobile IP layers' (RFC 5944 5.7.1 identifications, their status
        # times) and the moves', lined up with the world's timeline
        self.cfg, self.log, self.clock = cfg, log, clock
        self.nesting, self.access_mode = cfg.nesting, cfg.access_mode
        self.gateway, self.home, self.mip_tun = cfg.gateway, cfg.home, cfg.mip_tun
        self.mip = MipLayer(cfg.mn, cfg.mn_extra, log, log_json)
        self.vpn = VpnLayer(cfg.client, log)
        self.inner: TunnelMobileNode | None = None
        self.detection: Rfc5265Detection | None = None
        layers = [(cfg.home_agent, cfg.mip_tun)]
        if cfg.inner is not None:
            layers.append((str(cfg.inner.home_agent), cfg.inner_tun))
        self.admit = AdmitMobility(layers)
        self.masquerade = SourceIntoTunnel(cfg.vpn_tun, cfg.home_agent)
        self.gateway_route = GatewayThroughTunnel(cfg.gateway)
        self.errors = Counter()
        self.attachment: tuple | None = None
        self.moves: list[dict] = []
        self.client_restarts = 0
        self._lock = asyncio.Lock()
        self._switch: asyncio.Task | None = None
        self._kicked: asyncio.Handle | None = None  # a step scheduled by an event
        self._timer: asyncio.TimerHandle | None = None  # a step at the detection's next deadline
        self._closing = False
        self._last_error: str | None = None

    def admit_mobility(self) -> None:
        """The Mobile IP layers' INPUT chain (nodes/runtime/mip/layering.py); with RFC 5265 also the
        replies to the detection's and the x-HA deregistration's requests, which come from UDP 434
        to an ephemeral port: a late answer from the i-HA still moves the node inside (RFC 5265 3.3,
        3.5) after the VPN client's hardening, which admits established flows only. The rule puts
        connection tracking in place before the first request (a flow that left before it was is
        never established)."""
        self.admit.add()
        if self.cfg.inner is not None:
            run(["iptables", "-w", "-A", AdmitMobility.CHAIN, "-p", "udp", "--sport", "434",
                 "-m", "conntrack", "--ctstate", "ESTABLISHED", "-j", "ACCEPT"])

    async def start(self) -> None:
        self.admit_mobility()
        if self.nesting == "mip-inside-ipsec":  # before the MN sends its first request
            self.masquerade.add()
            self.masquerade.away(True)  # until the MN finds itself at home
        self.mip.listeners.append(self._on_event)
        self.vpn.listeners.append(self._on_event)
        await self.mip.start()
        if self.cfg.inner is not None:
            # what the i-MIP layer tunnels (IP-in-IP, 20 bytes) must fit the VPN's MTU
            self.inner = TunnelMobileNode(self.cfg.inner, self.cfg.inner_tun, INNER_TABLE, self.cfg.vpn_tun,
                                          self.cfg.vpn_mtu - IP_HEADER,
                                          lambda event, **f: self.log(event, layer="i-mip", **f),
                                          clock=self.clock, on_turn=self._kick)
            self.detection = Rfc5265Detection(self.cfg, self._detection_log, self.clock)
        if self.nesting == "mip-inside-ipsec":
            # what the MN tunnels (RFC 3519: IP 20 + UDP 8 + tunnel header 4) must fit the VPN's MTU
            netlink.link_set(self.mip_tun, mtu=self.cfg.vpn_mtu - MIP_UDP_OVERHEAD)
        self._kick()

    def _detection_log(self, event: str, **fields) -> None:
        self.log(event, **fields)
        if event.startswith("trust-probe"):  # an answer from the i-HA (or a failure to ask)
            self._kick()

    # ---- events -------------------------------------------------------------------------------
    def _on_event(self, event: str, _fields: dict) -> None:
        """A line a layer logged. A new point of attachment is acted on (and recorded as a move) in
        a step of its own, right after the MN layer's turn: two moves in one turn of the loop are
        two moves. Anything else schedules one step for the turn (the step reads every layer)."""
        if event == "attachment":
            asyncio.get_running_loop().call_soon(self._guarded_step)
        else:
            self._kick()

    def _kick(self) -> None:
        if self._kicked is None and not self._closing:
            self._kicked = asyncio.get_running_loop().call_soon(self._kicked_step)

    def _kicked_step(self) -> None:
        self._kicked = None
        self._guarded_step()

    def _timer_step(self) -> None:
        self._timer = None
        self._guarded_step()

    def _guarded_step(self) -> None:
        if self._closing:
            return
        try:
            self._step()
        except CommandInterrupted as exc:  # the node is stopping us: its signal ended our `ip` first
            self.log("layering-interrupted", error=str(exc))
        except Exception as exc:  # never let an event kill the node; the status shows it
            self.errors[f"layering:{type(exc).__name__}"] += 1
            if str(exc) != self._last_error:  # a lasting fault is logged once, counted every time
                self._last_error = str(exc)
                self.log("layering-error", error=str(exc))
        self._arm()

    def _arm(self) -> None:
        """A step at the next instant when time alone changes the detection's answer."""
        deadline = self.detection.next_deadline(self.inner.status()) if self.detection is not None else None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if deadline is not None and not self._closing:
            delay = max(0.0, deadline - self.clock.wall()) + DEADLINE_SLACK
            self._timer = asyncio.get_running_loop().call_later(delay, self._timer_step)

    # ---- the layering -------------------------------------------------------------------------
    def _step(self) -> None:
        mn = self.mip.status()
        a = mn.get("attachment")
        attachment = (a["kind"], a["detail"]) if a else None
        detection = self.detection
        if attachment != self.attachment:
            self.attachment = attachment
            self.moves.append({"t": self.clock.wall(), "attachment": a, "ike_before": self.vpn.ike_messages()})
            self.log("attachment-seen", attachment=a, nesting=self.nesting)
            if self.nesting == "mip-inside-ipsec":
                # a new point of attachment, a new care-of address: the VPN tunnel is re-negotiated
                away = attachment is not None and attachment[0] != "home"
                self.masquerade.away(away)
                self._switch_client(restart=True, run=away)
            if detection is not None:
                detection.detect(mn, attachment)
        elif detection is not None and detection.inside_lapsed(self.inner.status()):
            detection.restart(mn, attachment)
        if detection is not None:
            detection.decide(mn, self.vpn.status(), self.inner.status())
        if self.nesting in ("ipsec-inside-mip", "rfc5265"):
            if attachment is not None and attachment[0] == "colocated":
                self.gateway_route.set(self.mip_tun, self.home)
            else:
                self.gateway_route.clear()
            location = detection.location if detection is not None else "outside"
            if location == "inside" and self.vpn.running and self._switch is None:
                self._switch_client(restart=True, run=False)  # RFC 5265: inside, the VPN goes down
            if location == "outside" and not self.vpn.running and self._switch is None \
                    and mn.get("state") == "registered":
                self._switch_client(restart=False, run=True)
        if self.inner is not None and detection.decision is not None:
            self._attach_inner(detection)

    def _attach_inner(self, detection: Rfc5265Detection) -> None:
        """The i-MIP layer's link for the decision: the link itself inside, the VPN tunnel outside."""
        if detection.location == "inside" and detection.decision.mode == "f":
            self.inner.attach_agent(detection.decided_agent)  # i-MIP through the intranet's foreign agent
        elif detection.location == "inside":
            self.inner.attach(detection.decided_address)  # i-MIP directly: mode c, or deregistered at home
        elif detection.location == "outside":
            vpn = self.vpn.status()
            if vpn and vpn.get("state") == "established" and vpn.get("virtual_ip"):
                self.inner.attach(str(vpn["virtual_ip"]))
            else:
                self.inner.detach()

    def _switch_client(self, restart: bool, run: bool) -> None:
        previous = self._switch
        self._switch = asyncio.get_running_loop().create_task(self._client(previous, restart, run))

    async def _client(self, previous, restart: bool, run: bool) -> None:
        if previous is not None:
            try:
                await previous
            except Exception:
                pass
        async with self._lock:
            try:
                if restart and self.vpn.running:
                    await self.vpn.stop()
                    self.log("vpn-stopped", reason="the point of attachment changed")
                if run and not self.vpn.running:
                    if self.vpn.runs:
                        self.client_restarts += 1
                    await self.vpn.start()
                    self.admit.ensure_first()
                    self.log("vpn-started", run=self.vpn.runs)
            except CommandInterrupted as exc:  # the node is stopping us: its signal ended the client's command
                self.log("client-interrupted", error=str(exc))
            except Exception as exc:
                self.errors[f"client:{type(exc).__name__}"] += 1
                self.log("client-error", error=str(exc))
            finally:
                if self._switch is asyncio.current_task():
                    self._switch = None
                    self._kick()  # the client's state changed, and the next switch may be due

    # ---- status and shutdown ------------------------------------------------------------------
    def ike_messages(self) -> int:
        return self.vpn.ike_messages()

    def status(self, _req=None) -> dict:
        mn, vpn = self.mip.status(), self.vpn.status()
        total = self.vpn.ike_messages()
        moves = []
        for i, m in enumerate(self.moves):
            after = self.moves[i + 1]["ike_before"] if i + 1 < len(self.moves) else total
            moves.append({"t": m["t"], "attachment": m["attachment"], "ike_messages": after - m["ike_before"]})
        layers = {"mip": {"state": mn.get("state"), "care_of_address": mn.get("care_of_address"),
                          "tunnel": mn.get("tunnel"), "counters": mn.get("counters"), "dataplane": mn.get("dataplane")},
                  "vpn": {"state": vpn.get("state") if vpn else "stopped",
                          "local_address": vpn.get("local_address") if vpn else None,
                          "virtual_ip": vpn.get("virtual_ip") if vpn else None,
                          "counters": vpn.get("counters") if vpn else None}}
        out = {
            "implementation": "ours", "kind": "mobile-vpn-node", "nesting": self.nesting,
            "mip": mn, "vpn": vpn, "vpn_running": self.vpn.running,
            "ike_messages": total, "client_runs": self.vpn.runs, "client_restarts": self.client_restarts,
            "moves": moves, "layers": layers,
            "layering": {"masquerade_into_vpn": self.masquerade.on, "admit_mobility": self.admit.on,
                         "ha_only_through_vpn": self.masquerade.dropping_clear,
                         "gateway_route": None if self.gateway_route.via is None else
                         {"dev": self.gateway_route.via[0], "src": self.gateway_route.via[1]}},
            "errors": dict(self.errors),
        }
        if self.inner is not None:
            inner = self.inner.status()
            out.update(self.detection.status(self.access_mode))
            out["i_mip"] = inner
            out["layers"] = {"x-mip": {**layers["mip"], "held": self.detection.hold.on}, "vpn": layers["vpn"],
                             "i-mip": {key: inner[key] for key in ("state", "care_of_address", "home_address",
                                                                   "tunnel", "trusted_network", "via", "counters",
                                                                   "dataplane")}}
        return out

    async def close(self) -> None:
        self._closing = True
        for handle in (self._kicked, self._timer):
            if handle is not None:
                handle.cancel()
        if self._switch is not None:
            try:
                await self._switch
            except Exception:
                pass
        if self.detection is not None:
            self.detection.close()
        if self.inner is not None:
            await self.inner.close()
        await self.vpn.stop()
        self.gateway_route.clear()
        self.masquerade.remove()
        self.admit.remove()
        await self.mip.stop()


async def setup(args, log):
    if args.config is None:
        raise ConfigError("(command line)", "--config", "the node's JSON config file",
                          hint="python -m nodes.daemons.mobile_vpn_node --config mvn.json ...")
    cfg = load(args.config)
    node = MobileVpnNode(cfg, log, args.log_json)
    await node.start()
    log("mobile-vpn-node", nesting=node.nesting, access_mode=node.access_mode, home=node.home, gateway=node.gateway,
        inner_home=str(cfg.inner.home_address) if cfg.inner else None)
    return {"status": node.status}, node.close


def main() -> None:
    p = daemon.base_parser("mobile_vpn_node", __doc__.splitlines()[0])
    daemon.run("mvn", p.parse_args(), setup)


if __name__ == "__main__":
    main()
