"""RFC 5265 inside/outside detection of the mobile VPN node (nodes/daemons/mobile_vpn_node.py).

On each attachment change of the x-MIP layer the node asks the i-HA from the link's own address
(through the agent, with its care-of address, on a link with a foreign agent; the request is
nodes/runtime/mip/trust_probe.py) while the x-MIP layer registers with the x-HA, and decides with
the sans-I/O policy (nodes/mip/rfc5265_location.py: `decide`): a reply with extension 149 means
inside (RFC 5265 3.3), none within `detect_window` means outside. Inside, the x-MIP layer's
registrations are held back (nodes/runtime/mip/layering.py: `HoldRegistrations`) and the node
deregisters from the x-HA from the link's address (RFC 5265 3.3, 4.1); a failed re-registration
with the i-HA inside restarts the detection (`inside_lapsed`).

`next_deadline` is when time alone may change the decision (the window ends, the inside
registration runs out): the node arms a timer there rather than look again and again.

Freshness: the node decides only in its step, which reads the MN layer's attachment first (a new one
starts a new request here, which forgets the earlier link's answer), then calls `decide` with the
layers' status as they are and the request's outcome as it is, then acts on `location`. `latest`, the
last `decide` answer, belongs to the link it was made on: a new attachment clears it, so neither the
status nor `next_deadline` ever shows one link's answer for another; a status read reports and
never decides.
"""
from __future__ import annotations

from ipaddress import ip_address

from nodes.mip import rfc5265_location
from nodes.mip.rfc5265_location import I_HA_NONE, X_HA_ACCEPTED, X_HA_DENIED, X_HA_NONE, Decision, decide
from nodes.runtime.clock import Clock
from nodes.runtime.mip.layering import HoldRegistrations
from nodes.runtime.mip.trust_probe import TrustProbe


class Rfc5265Detection:
    def __init__(self, cfg, log, clock: Clock):
        """`cfg`: the node's MobileVpnConfig (nodes/daemons/mobile_vpn_config.py) with nesting rfc5265."""
        self.inner_cfg, self.window, self.clock = cfg.inner, cfg.detect_window, clock
        self.mn_iface = str(cfg.mn.iface)
        self.colocated = cfg.mn_extra["colocated"]  # the x-MIP layer's networks: {name: {dhcp, address, router}}
        self.hold = HoldRegistrations(cfg.home_agent, cfg.home)
        self.probe = TrustProbe(cfg.inner, lambda event, **f: log(event, layer="detect", **f), clock)
        # inside: the deregistration from the x-HA
        self.x_dereg = TrustProbe(cfg.x_mip_copy(), lambda event, **f: log(event, layer="x-ha-deregistration", **f),
                                  clock)
        self.log = log
        self._dereg_for: str | None = None  # the link address it was sent from
        self.decision: Decision | None = None
        self.latest: Decision | None = None  # the last decide() answer on the current link (also "undecided")
        self.link_address: str | None = None  # the x-MIP layer's co-located address on the current link
        self.link_agent: str | None = None  # the foreign agent there (link_address is then its care-of address)
        self.decided_address: str | None = None  # the link address the current decision was made on
        self.decided_agent: str | None = None  # and the foreign agent there, if any
        self._logged: tuple | None = None

    @property
    def location(self) -> str:
        return self.decision.location if self.decision is not None else "undecided"

    def inside_lapsed(self, inner: dict) -> bool:
        return self.location == "inside" and rfc5265_location.inside_lapsed(inner, self.clock.wall())

    def at_i_home(self, address: str | None) -> bool:
        return address is not None and ip_address(address) in self.inner_cfg.home_network

    def restart(self, mn: dict, attachment) -> None:
        """RFC 5265 3.3: inside, a failed re-registration with the i-HA restarts the detection."""
        self.log("rfc5265-redetect", reason="the i-HA did not answer the re-registration inside")
        self.decision = None
        self.detect(mn, attachment)

    def detect(self, mn: dict, attachment) -> None:
        """A new attachment: ask the i-HA from the link's address (the x-MIP layer registers with
        the x-HA at the same time); until it answers or the window passes, the layers stay as they are."""
        self.link_address, self.link_agent = self._link_address(mn, attachment)
        self.latest = None  # the earlier link's answer is not this link's
        self.hold.hold(False)  # x-MIP registers with the x-HA while the i-HA is asked (RFC 5265)
        self._dereg_for = None
        if self.link_address is None:
            self.probe.stop()
            return
        self.probe.probe(self.link_address, self.at_i_home(self.link_address), self.clock.wall(),
                         agent=self.link_agent, iface=self.mn_iface)

    def _link_address(self, mn: dict, attachment) -> tuple[str | None, str | None]:
        """(address, agent): the x-MIP layer's co-located address on the link (configured for the
        network, or leased), or with a foreign agent the agent's care-of address and the agent."""
        if attachment is not None and attachment[0] == "fa":
            coas = (mn.get("agent") or {}).get("care_of_addresses") or []
            return (coas[0], attachment[1]) if coas else (None, None)
        if attachment is None or attachment[0] != "colocated":
            return None, None
        configured = (self.colocated.get(attachment[1]) or {}).get("address")
        if configured:
            return str(configured).split("/")[0], None
        lease = (mn.get("dhcp") or {}).get("lease") or {}
        address = lease.get("address") or mn.get("care_of_address")
        return (str(address).split("/")[0] if address else None), None

    def decide(self, mn: dict, vpn: dict | None, inner: dict) -> Decision | None:
        """The decision on the current link, from the probe's outcome and the layers' status (`vpn`
        None: the client is not running); kept while the policy says undecided."""
        if self.probe.started_at is None or self.link_address is None:
            return self.decision
        x_ha = X_HA_ACCEPTED if mn.get("state") == "registered" else \
            X_HA_DENIED if (mn.get("last_code") or 0) >= 64 else X_HA_NONE
        up = (mn.get("state") == "registered", bool(vpn and vpn.get("state") == "established"),
              inner.get("state") == "registered" and vpn is not None
              and inner.get("care_of_address") == vpn.get("virtual_ip"))
        d = decide(self.probe.outcome, x_ha, self.clock.wall() - self.probe.started_at,
                   self.at_i_home(self.link_address), self.window, up, via_fa=self.link_agent is not None)
        if d.location != "undecided":
            self.probe.stop()
            self.decided_address, self.decided_agent = self.link_address, self.link_agent
            if d.location == "inside" and self._dereg_for != self.link_address:
                self._deregister_x_ha()
        self.latest = d
        if (d.location, d.mode, self.link_address) != self._logged:
            self._logged = (d.location, d.mode, self.link_address)
            self.log("rfc5265-location", address=self.link_address, **d.as_dict())
        if d.location != "undecided" or self.decision is None:
            self.decision = d
        return self.decision

    def _deregister_x_ha(self) -> None:
        """RFC 5265 inside: no x-MIP registration while inside (held), and the x-HA's binding removed
        by a deregistration from the link's address (through an agent the node has no address of
        its own there: only held)."""
        self._dereg_for = self.link_address
        self.hold.hold(True)
        if self.link_agent is None:
            self.x_dereg.deregister(self.link_address, self.clock.wall(), self.mn_iface)

    def next_deadline(self, inner: dict) -> float | None:
        """The wall time at which time alone changes what `decide` or `inside_lapsed` say: the end
        of the window while the i-HA has not answered, the end of the registration while inside."""
        now = self.clock.wall()
        waiting = self.link_address is not None and self.probe.started_at is not None \
            and self.probe.outcome == I_HA_NONE and (self.latest is None or self.latest.location == "undecided")
        if waiting:  # the current link's request, unanswered and undecided (not what `latest` said before)
            end = self.probe.started_at + self.window
            if end > now:
                return end
        until = inner.get("registered_until")
        if self.location == "inside" and until is not None and until > now:
            return until
        return None

    def status(self, access_mode: str | None) -> dict:
        mode = self.decision.mode if self.decision is not None and self.decision.mode else access_mode
        return {"mode": f"rfc5265-{mode}", "access_mode": mode,
                "location": self.decision.as_dict() if self.decision is not None else None,
                "detection": {**self.probe.status(), "window": self.window, "link_address": self.link_address,
                              "agent": self.link_agent,
                              "latest": self.latest.as_dict() if self.latest is not None else None},
                "x_ha_deregistration": {**self.x_dereg.status(), "x_mip_held": self.hold.on}}

    def close(self) -> None:
        self.probe.stop()
        self.x_dereg.stop()
        self.hold.hold(False)
