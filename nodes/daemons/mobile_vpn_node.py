"""The mobile VPN node: Mobile IPv4 MN and IPsec VPN client in one process (problem statement 2).

    python -m nodes.daemons.mobile_vpn_node --control PATH [--log-json PATH] --config mvn.json

"In all scenarios, MN refers to a mobile node that runs both MIP and IPsec-based VPN client
software" (draft-ietf-mip4-vpn-problem-statement section 2). This daemon composes the two existing
daemons through their module entry points, `mobile_node.setup` and `vpn_client.setup`, in one
asyncio loop (the cores are not copied), and layers them with kernel routes and filters between
their TUN devices (nodes/runtime/mip/layering.py), in the nesting the config chooses:

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
                    is nodes/mip/rfc5265_location.py, the request nodes/runtime/mip/trust_probe.py):
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

Config: {nesting, mn: {mobile_node config}, client: {vpn_client config}, poll (0.02 s)}; with
rfc5265 also access_mode (cvc or fvc), detect_window (s) and inner: {home_address, home_agent, home_network, spi, key,
reverse_tunnel (true), tun (mip1), ...: the mobile node's keys but iface and colocated}. The
client's `wait` defaults to 0 and its `tunnel` to split (the layering keeps its own routes).
Status: both layers' own status under `mip` and `vpn`, the nesting, IKE messages (sent and
received, over every client run) in total and per move, the client's restarts, and the moves seen
(attachment changes of the MN). With rfc5265 also `mode` (rfc5265-cvc, -fvc, -c, -f or -home: the decided access
mode; `access_mode` the same without the prefix), `location` (the decision: inside/outside, each
layer's wanted state, the reason), `detection` (the request to the i-HA: address, outcome,
counters), the i-MIP layer's status under `i_mip`, `x_ha_deregistration` (the request sent once inside:
address, outcome, code; `x_mip_held`), and `layers` named x-mip (with `held`), vpn and i-mip.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from collections import Counter
from ipaddress import ip_address
from pathlib import Path

from nodes.daemons import mobile_node, vpn_client
from nodes.mip import rfc5265_location
from nodes.mip.rfc5265_location import X_HA_ACCEPTED, X_HA_DENIED, X_HA_NONE, decide
from nodes.runtime import daemon
from nodes.runtime.mip import config as mip_config
from nodes.runtime.host import netlink
from nodes.runtime.clock import SYSTEM, Clock
from nodes.runtime.host.commands import CommandInterrupted, run
from nodes.runtime.mip.layering import AdmitMobility, GatewayThroughTunnel, HoldRegistrations, SourceIntoTunnel
from nodes.runtime.mip.trust_probe import TrustProbe
from nodes.runtime.mip.tunnel_mobile_node import TunnelMobileNode

MIP_UDP_OVERHEAD = 32
NESTINGS = ("mip-inside-ipsec", "ipsec-inside-mip", "rfc5265")
ACCESS_MODES = ("cvc", "fvc")  # RFC 5265 outside modes: x-MIP co-located or through a foreign agent
INNER_TABLE = 436  # the i-MIP layer's policy-routed table (the x-MIP layer has 434, the gateway route 435)
IP_HEADER = 20


class BadConfig(ValueError):
    pass


class Layer:
    """One daemon module run in this process through its `setup(args, log)`."""

    def __init__(self, name: str, module, config: dict, workdir: Path, log_json: str | None, log):
        self.name, self.module, self.config, self._log = name, module, config, log
        self.path = workdir / f"{Path(log_json or 'mobile-vpn').name.split('.events')[0]}.{name}.config.json"
        self.path.write_text(json.dumps(config, indent=1))
        self.log_json = (log_json.split(".events")[0] + f".{name}.events.jsonl") if log_json else None
        self.listeners: list = []  # called with (event, fields) for each line the layer logs
        self.handlers: dict | None = None
        self._cleanup = None
        self.runs = 0

    def log(self, event: str, **fields) -> None:
        self._log(event, layer=self.name, **fields)
        for listener in self.listeners:
            listener(event, fields)

    @property
    def running(self) -> bool:
        return self.handlers is not None

    async def start(self) -> None:
        args = argparse.Namespace(config=self.path, log_json=self.log_json, control=None)
        self.handlers, self._cleanup = await self.module.setup(args, self.log)
        self.runs += 1

    async def stop(self) -> None:
        if self._cleanup is not None:
            cleanup, self.handlers, self._cleanup = self._cleanup, None, None
            await cleanup()

    def status(self) -> dict | None:
        return self.handlers["status"](None) if self.handlers else None


def _ike_messages(st: dict | None) -> int:
    if not st:
        return 0
    c = st.get("counters", {})
    return int(c.get("ike_in", 0)) + int(c.get("ike_out", 0))


class MobileVpnNode:
    def __init__(self, cfg: dict, workdir: Path, log_json: str | None, log, clock: Clock = SYSTEM):
        # wall time throughout: the Mobile IP layers' (RFC 5944 5.7.1 identifications, their status
        # times) and the moves', lined up with the world's timeline
        self.log, self.clock = log, clock
        nesting = cfg.get("nesting")
        if nesting not in NESTINGS:
            raise BadConfig(f"key nesting: expected one of {', '.join(NESTINGS)}, got {nesting!r}")
        for key in ("mn", "client"):
            if not isinstance(cfg.get(key), dict):
                raise BadConfig(f"key {key}: expected the {key} layer's config as a mapping, got {cfg.get(key)!r}")
        known = {"nesting", "mn", "client", "poll"} | ({"access_mode", "inner", "detect_window"} if nesting == "rfc5265" else set())
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise BadConfig(f"unknown key(s) {', '.join(unknown)} for nesting {nesting}; known: {', '.join(sorted(known))}")
        self.access_mode = None
        if nesting == "rfc5265":
            self.access_mode = cfg.get("access_mode", "cvc")
            if self.access_mode not in ACCESS_MODES:
                raise BadConfig(f"key access_mode: expected one of {', '.join(ACCESS_MODES)} (the outside mode; "
                                f"inside, c or f follow from the link), got {self.access_mode!r}")
            if not isinstance(cfg.get("inner"), dict):
                raise BadConfig(f"key inner: expected the i-MIP layer's config as a mapping, got {cfg.get('inner')!r}")
        self.nesting = nesting
        self.poll = float(cfg.get("poll", 0.02))
        client_cfg = {"wait": 0, "tunnel": "split", **cfg["client"]}
        self.gateway = str(client_cfg.get("gateway"))
        self.home = str(cfg["mn"].get("home_address"))
        self.mip_tun = str(cfg["mn"].get("tun", "mip0"))
        self.vpn_mtu = int(client_cfg.get("mtu", 1400))
        self.mip = Layer("mip", mobile_node, cfg["mn"], workdir, log_json, log)
        self.mn_colocated = dict(cfg["mn"].get("colocated") or {})
        self.vpn = Layer("vpn", vpn_client, client_cfg, workdir, log_json, log)
        self.home_agent = str(cfg["mn"].get("home_agent"))
        self.vpn_tun = str(client_cfg.get("tun", "vpn0"))
        self.inner_cfg = None
        if nesting == "rfc5265":
            inner = {"reverse_tunnel": True, "tun": "mip1", **cfg["inner"]}
            for key in ("iface", "colocated"):
                if key in inner:
                    raise BadConfig(f"key inner.{key}: the i-MIP layer's link is the VPN tunnel ({self.vpn_tun}); "
                                    f"remove the key")
            inner["iface"] = self.vpn_tun
            path = workdir / f"{Path(log_json or 'mobile-vpn').name.split('.events')[0]}.i-mip.config.json"
            path.write_text(json.dumps(inner, indent=1))
            self.inner_cfg, extra = mip_config.load(path, mip_config.mobile_node)
            self.inner_tun = extra["tun"]
        self.inner: TunnelMobileNode | None = None
        self.hold = HoldRegistrations(self.home_agent, self.home)
        self.x_dereg: TrustProbe | None = None  # inside: the deregistration from the x-HA
        self._dereg_for: str | None = None  # the link address it was sent from
        self.detect_window = float(cfg.get("detect_window", rfc5265_location.DEFAULT_WINDOW))
        self.probe: TrustProbe | None = None
        self.decision: rfc5265_location.Decision | None = None
        self.link_address: str | None = None  # the x-MIP layer's co-located address on the current link
        self.link_agent: str | None = None  # the foreign agent there (link_address is then its care-of address)
        self.mn_iface = str(cfg["mn"].get("iface"))
        self.decided_address: str | None = None  # the link address the current decision was made on
        self.decided_agent: str | None = None  # and the foreign agent there, if any
        self.latest: rfc5265_location.Decision | None = None  # the last decide() answer (also "undecided")
        self._logged: tuple | None = None
        layers = [(self.home_agent, self.mip_tun)]
        if self.inner_cfg is not None:
            layers.append((str(self.inner_cfg.home_agent), self.inner_tun))
        self.admit = AdmitMobility(layers)
        self.masquerade = SourceIntoTunnel(str(client_cfg.get("tun", "vpn0")), self.home_agent)
        self.gateway_route = GatewayThroughTunnel(self.gateway)
        self.errors = Counter()
        self.attachment: tuple | None = None
        self.moves: list[dict] = []
        self.ike_done = 0  # IKE messages of client runs that have ended
        self.client_restarts = 0
        self._lock = asyncio.Lock()
        self._watch: asyncio.Task | None = None
        self._switch: asyncio.Task | None = None
        self._last_error: str | None = None

    def admit_mobility(self) -> None:
        """The Mobile IP layers' INPUT chain (nodes/runtime/mip/layering.py); with RFC 5265 also the
        replies to the detection's and the x-HA deregistration's requests, which come from UDP 434
        to an ephemeral port: a late answer from the i-HA still moves the node inside (RFC 5265 3.3,
        3.5) after the VPN client's hardening, which admits established flows only. The rule puts
        connection tracking in place before the first request (a flow that left before it was is
        never established)."""
        self.admit.add()
        if self.inner_cfg is not None:
            run(["iptables", "-w", "-A", AdmitMobility.CHAIN, "-p", "udp", "--sport", "434",
                 "-m", "conntrack", "--ctstate", "ESTABLISHED", "-j", "ACCEPT"])

    async def start(self) -> None:
        self.admit_mobility()
        if self.nesting == "mip-inside-ipsec":  # before the MN sends its first request
            self.masquerade.add()
            self.masquerade.away(True)  # until the MN finds itself at home
        self.mip.listeners.append(self._on_mip_event)
        await self.mip.start()
        if self.inner_cfg is not None:
            # what the i-MIP layer tunnels (IP-in-IP, 20 bytes) must fit the VPN's MTU
            self.inner = TunnelMobileNode(self.inner_cfg, self.inner_tun, INNER_TABLE, self.vpn_tun,
                                          self.vpn_mtu - IP_HEADER, lambda event, **f: self.log(event, layer="i-mip", **f),
                                          clock=self.clock)
            self.probe = TrustProbe(self.inner_cfg, lambda event, **f: self.log(event, layer="detect", **f), self.clock)
            x_cfg = mip_config.load(self.mip.path, mip_config.mobile_node)[0]  # the x-MIP layer's, checked by it
            self.x_dereg = TrustProbe(x_cfg, lambda event, **f: self.log(event, layer="x-ha-deregistration", **f),
                                      self.clock)
        if self.nesting == "mip-inside-ipsec":
            # what the MN tunnels (RFC 3519: IP 20 + UDP 8 + tunnel header 4) must fit the VPN's MTU
            netlink.link_set(self.mip_tun, mtu=self.vpn_mtu - MIP_UDP_OVERHEAD)
        self._watch = asyncio.get_running_loop().create_task(self._watcher())

    # ---- the layering -------------------------------------------------------------------------
    def ike_messages(self) -> int:
        return self.ike_done + _ike_messages(self.vpn.status())

    async def _watcher(self) -> None:
        while True:
            self._guarded_step()
            await asyncio.sleep(self.poll)

    def _guarded_step(self) -> None:
        try:
            self._step()
        except CommandInterrupted as exc:  # the node is stopping us: its signal ended our `ip` first
            self.log("layering-interrupted", error=str(exc))
        except Exception as exc:  # never let the watcher die; the status shows it
            self.errors[f"layering:{type(exc).__name__}"] += 1
            if str(exc) != self._last_error:  # a lasting fault is logged once, counted every time
                self._last_error = str(exc)
                self.log("layering-error", error=str(exc))

    def _on_mip_event(self, event: str, _fields: dict) -> None:
        """A new point of attachment is acted on (and recorded as a move) as soon as the MN layer
        says so, right after its turn, not at the next poll: two moves within one poll interval
        are two moves."""
        if event == "attachment":
            asyncio.get_running_loop().call_soon(self._guarded_step)

    def _step(self) -> None:
        mn = self.mip.status()
        a = mn.get("attachment")
        attachment = (a["kind"], a["detail"]) if a else None
        if attachment != self.attachment:
            self.attachment = attachment
            self.moves.append({"t": self.clock.wall(), "attachment": a, "ike_before": self.ike_messages()})
            self.log("attachment-seen", attachment=a, nesting=self.nesting)
            if self.nesting == "mip-inside-ipsec":
                # a new point of attachment, a new care-of address: the VPN tunnel is re-negotiated
                away = attachment is not None and attachment[0] != "home"
                self.masquerade.away(away)
                self._switch_client(restart=True, run=away)
            if self.probe is not None:
                self._detect(mn, attachment)
        elif self.probe is not None and self._inside_lapsed():
            # RFC 5265 3.3: inside, a failed re-registration with the i-HA restarts the detection
            self.log("rfc5265-redetect", reason="the i-HA did not answer the re-registration inside")
            self.decision = None
            self._detect(mn, attachment)
        if self.probe is not None:
            self.decision = self._decide(mn)
        if self.nesting in ("ipsec-inside-mip", "rfc5265"):
            if attachment is not None and attachment[0] == "colocated":
                self.gateway_route.set(self.mip_tun, self.home)
            else:
                self.gateway_route.clear()
            location = self.decision.location if self.decision is not None else \
                "undecided" if self.probe is not None else "outside"
            if location == "inside" and self.vpn.running and self._switch is None:
                self._switch_client(restart=True, run=False)  # RFC 5265: inside, the VPN goes down
            if location == "outside" and not self.vpn.running and self._switch is None \
                    and mn.get("state") == "registered":
                self._switch_client(restart=False, run=True)
        if self.inner is not None and self.decision is not None:
            if self.decision.location == "inside" and self.decision.mode == "f":
                self.inner.attach_agent(self.decided_agent)  # i-MIP through the intranet's foreign agent
            elif self.decision.location == "inside":
                self.inner.attach(self.decided_address)  # i-MIP directly: mode c, or deregistered at home
            elif self.decision.location == "outside":
                vpn = self.vpn.status() if self.vpn.running else None
                if vpn and vpn.get("state") == "established" and vpn.get("virtual_ip"):
                    self.inner.attach(str(vpn["virtual_ip"]))
                else:
                    self.inner.detach()

    # ---- RFC 5265 inside/outside detection ------------------------------------------------------
    def _inside_lapsed(self) -> bool:
        return (self.decision is not None and self.decision.location == "inside" and self.inner is not None
                and rfc5265_location.inside_lapsed(self.inner.status(), self.clock.wall()))

    def _at_i_home(self, address: str | None) -> bool:
        return address is not None and ip_address(address) in self.inner_cfg.home_network

    def _detect(self, mn: dict, attachment) -> None:
        """A new attachment: ask the i-HA from the link's address (the x-MIP layer registers with
        the x-HA at the same time); until it answers or the window passes, the layers stay as they are."""
        self.link_address, self.link_agent = self._link_address(mn, attachment)
        self.hold.hold(False)  # x-MIP registers with the x-HA while the i-HA is asked (RFC 5265)
        self._dereg_for = None
        if self.link_address is None:
            self.probe.stop()
            return
        self.probe.probe(self.link_address, self._at_i_home(self.link_address), self.clock.wall(),
                         agent=self.link_agent, iface=self.mn_iface)

    def _link_address(self, mn: dict, attachment) -> tuple[str | None, str | None]:
        """(address, agent): the x-MIP layer's co-located address on the link (configured for the
        network, or leased), or with a foreign agent the agent's care-of address and the agent."""
        if attachment is not None and attachment[0] == "fa":
            coas = (mn.get("agent") or {}).get("care_of_addresses") or []
            return (coas[0], attachment[1]) if coas else (None, None)
        if attachment is None or attachment[0] != "colocated":
            return None, None
        configured = (self.mn_colocated.get(attachment[1]) or {}).get("address")
        if configured:
            return str(configured).split("/")[0], None
        lease = (mn.get("dhcp") or {}).get("lease") or {}
        address = lease.get("address") or mn.get("care_of_address")
        return (str(address).split("/")[0] if address else None), None

    def _decide(self, mn: dict) -> rfc5265_location.Decision | None:
        if self.probe.started_at is None or self.link_address is None:
            return self.decision
        x_ha = X_HA_ACCEPTED if mn.get("state") == "registered" else \
            X_HA_DENIED if (mn.get("last_code") or 0) >= 64 else X_HA_NONE
        vpn = self.vpn.status() if self.vpn.running else None
        i = self.inner.status()
        up = (mn.get("state") == "registered", bool(vpn and vpn.get("state") == "established"),
              i.get("state") == "registered" and vpn is not None and i.get("care_of_address") == vpn.get("virtual_ip"))
        d = decide(self.probe.outcome, x_ha, self.clock.wall() - self.probe.started_at, self._at_i_home(self.link_address),
                   self.detect_window, up, via_fa=self.link_agent is not None)
        if d.location != "undecided":
            self.probe.stop()
            self.decided_address, self.decided_agent = self.link_address, self.link_agent
            if d.location == "inside" and self._dereg_for != self.link_address:
                self._deregister_x_ha()
        self.latest = d
        if (d.location, d.mode, self.link_address) != self._logged:
            self._logged = (d.location, d.mode, self.link_address)
            self.log("rfc5265-location", address=self.link_address, **d.as_dict())
        return d if d.location != "undecided" or self.decision is None else self.decision

    def _deregister_x_ha(self) -> None:
        """RFC 5265 inside: no x-MIP registration while inside (held), and the x-HA's binding removed
        by a deregistration from the link's address (through an agent the node has no address of
        its own there: only held)."""
        self._dereg_for = self.link_address
        self.hold.hold(True)
        if self.link_agent is None:
            self.x_dereg.deregister(self.link_address, self.clock.wall(), self.mn_iface)

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
                    self.ike_done += _ike_messages(self.vpn.status())
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

    # ---- status and shutdown ------------------------------------------------------------------
    def status(self, _req=None) -> dict:
        mn, vpn = self.mip.status(), self.vpn.status()
        total = self.ike_done + _ike_messages(vpn)
        moves = []
        for i, m in enumerate(self.moves):
            after = self.moves[i + 1]["ike_before"] if i + 1 < len(self.moves) else total
            moves.append({"t": m["t"], "attachment": m["attachment"], "ike_messages": after - m["ike_before"]})
        out = {
            "implementation": "ours", "kind": "mobile-vpn-node", "nesting": self.nesting,
            "mip": mn, "vpn": vpn, "vpn_running": self.vpn.running,
            "ike_messages": total, "client_runs": self.vpn.runs, "client_restarts": self.client_restarts,
            "moves": moves,
            "layers": {"mip": {"state": mn.get("state"), "care_of_address": mn.get("care_of_address"),
                               "tunnel": mn.get("tunnel"), "counters": mn.get("counters"),
                               "dataplane": mn.get("dataplane")},
                       "vpn": {"state": vpn.get("state") if vpn else "stopped",
                               "local_address": vpn.get("local_address") if vpn else None,
                               "virtual_ip": vpn.get("virtual_ip") if vpn else None,
                               "counters": vpn.get("counters") if vpn else None}},
            "layering": {"masquerade_into_vpn": self.masquerade.on, "admit_mobility": self.admit.on,
                         "ha_only_through_vpn": self.masquerade.dropping_clear,
                         "gateway_route": None if self.gateway_route.via is None else
                         {"dev": self.gateway_route.via[0], "src": self.gateway_route.via[1]}},
            "errors": dict(self.errors),
        }
        if self.inner is not None:
            inner = self.inner.status()
            mode = self.decision.mode if self.decision is not None and self.decision.mode else self.access_mode
            out["mode"] = f"rfc5265-{mode}"
            out["access_mode"] = mode
            out["location"] = self.decision.as_dict() if self.decision is not None else None
            out["detection"] = {**self.probe.status(), "window": self.detect_window, "link_address": self.link_address,
                                "agent": self.link_agent,
                                "latest": self.latest.as_dict() if self.latest is not None else None}
            out["i_mip"] = inner
            out["x_ha_deregistration"] = {**self.x_dereg.status(), "x_mip_held": self.hold.on}
            layers = out["layers"]
            out["layers"] = {"x-mip": {**layers["mip"], "held": self.hold.on}, "vpn": layers["vpn"],
                             "i-mip": {"state": inner["state"], "care_of_address": inner["care_of_address"],
                                       "home_address": inner["home_address"], "tunnel": inner["tunnel"],
                                       "trusted_network": inner["trusted_network"], "via": inner["via"],
                                       "counters": inner["counters"], "dataplane": inner["dataplane"]}}
        return out

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        if self._switch is not None:
            try:
                await self._switch
            except Exception:
                pass
        if self.probe is not None:
            self.probe.stop()
            self.x_dereg.stop()
        self.hold.hold(False)
        if self.inner is not None:
            await self.inner.close()
        await self.vpn.stop()
        self.gateway_route.clear()
        self.masquerade.remove()
        self.admit.remove()
        await self.mip.stop()


async def setup(args, log):
    cfg = daemon.load_config(args.config)
    workdir = Path(args.config).parent if args.config else Path(tempfile.mkdtemp(prefix="mobile-vpn-"))
    try:
        node = MobileVpnNode(cfg, workdir, args.log_json, log)
    except BadConfig as exc:
        raise SystemExit(f"config {args.config}: {exc}")
    await node.start()
    log("mobile-vpn-node", nesting=node.nesting, access_mode=node.access_mode, home=node.home, gateway=node.gateway,
        inner_home=str(node.inner_cfg.home_address) if node.inner_cfg else None)
    return {"status": node.status}, node.close


def main() -> None:
    p = daemon.base_parser("mobile_vpn_node", __doc__.splitlines()[0])
    daemon.run("mvn", p.parse_args(), setup)


if __name__ == "__main__":
    main()
