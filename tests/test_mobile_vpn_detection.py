"""The mobile VPN node decides inside/outside (RFC 5265) on a fresh detection: its step reads the MN
layer's attachment first, a new one starts a new request to the i-HA (the earlier link's answer is
forgotten), then `decide` runs on the request's outcome and the layers' status as they are, then the
node acts on the decision. `latest` (the last answer) never outlives its link: not in the status, not
in the deadline the node arms. No root needed: the request to the i-HA, the layers and the routes are
fakes."""
import asyncio

from nodes.daemons.mobile_vpn_config import read
from nodes.daemons.mobile_vpn_detection import Rfc5265Detection
from nodes.daemons.mobile_vpn_node import MobileVpnNode
from nodes.mip.rfc5265_location import I_HA_NONE, I_HA_TRUSTED
from nodes.runtime.clock import Clock
from test_mobile_vpn_node import FILE, RFC5265

CFG = {**RFC5265, "detect_window": 1.0,
       "mn": {**RFC5265["mn"], "colocated": {"fn1": {"address": "192.0.2.100/25", "router": "192.0.2.1"},
                                             "ivn": {"address": "10.1.4.100/24", "router": "10.1.4.1"},
                                             "fn3": "dhcp"}}}


class FakeProbe:
    """The request to the i-HA (nodes/runtime/mip/trust_probe.py) without a socket."""

    def __init__(self):
        self.address, self.started_at, self.outcome, self.sent = None, None, I_HA_NONE, []

    def probe(self, address, at_i_home, now, agent=None, iface=None):
        self.address, self.started_at, self.outcome = address, now, I_HA_NONE
        self.sent.append(address)

    def deregister(self, address, now, iface=None):
        self.sent.append(("deregister", address))

    def stop(self):
        pass

    def status(self):
        return {"address": self.address, "started_at": self.started_at, "outcome": self.outcome}


class FakeHold:
    on = False

    def hold(self, on):
        self.on = on


class Time:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def detection_in_loop(time: Time) -> Rfc5265Detection:
    d = Rfc5265Detection(read(CFG, FILE), lambda *a, **k: None, Clock(time, time))
    d.probe, d.x_dereg, d.hold = FakeProbe(), FakeProbe(), FakeHold()
    return d


def detection(time: Time) -> Rfc5265Detection:
    async def make():
        return detection_in_loop(time)
    return asyncio.run(make())


def mn(network: str | None, state: str = "registered") -> dict:
    return {"state": state, "attachment": None if network is None else {"kind": "colocated", "detail": network}}


VPN_UP = {"state": "established", "virtual_ip": "10.9.0.7"}
I_MIP = {"state": "registered", "care_of_address": "10.9.0.7"}


def test_a_new_attachment_forgets_the_earlier_links_answer():
    time = Time()
    d = detection(time)
    d.detect(mn("fn1"), ("colocated", "fn1"))
    time.t += 1.0
    assert d.decide(mn("fn1"), VPN_UP, I_MIP).location == "outside"
    assert d.latest.location == "outside" and d.next_deadline({}) is None
    # the move: fn3's lease has not come yet, the link has no address to ask from
    d.detect(mn("fn3", "unregistered"), ("colocated", "fn3"))
    assert d.link_address is None and d.latest is None
    d.decide(mn("fn3", "unregistered"), None, {})
    st = d.status("cvc")
    assert st["detection"]["latest"] is None, "fn1's answer shown as fn3's"
    assert st["location"]["location"] == "outside", "the decision the layers were set for stays until fn3 decides"
    assert d.next_deadline({}) is None, "no window to wait for on a link the i-HA was not asked from"


def test_an_undecided_link_gets_its_own_window_even_before_decide_ran():
    time = Time()
    d = detection(time)
    d.detect(mn("fn1"), ("colocated", "fn1"))
    time.t += 1.0
    d.decide(mn("fn1"), VPN_UP, I_MIP)
    time.t += 5.0
    d.detect(mn("ivn"), ("colocated", "ivn"))   # a step that failed before decide: no answer for ivn yet
    assert d.latest is None and d.next_deadline({}) == time.t + 1.0


def test_an_answer_from_the_i_ha_is_the_current_links():
    time = Time()
    d = detection(time)
    d.detect(mn("fn1"), ("colocated", "fn1"))
    time.t += 0.2
    d.probe.outcome = I_HA_TRUSTED            # fn1's request answered with extension 149 ...
    d.detect(mn("ivn"), ("colocated", "ivn"))  # ... but the node has moved before it decided
    got = d.decide(mn("ivn"), VPN_UP, I_MIP)
    assert d.latest.location == "undecided" and d.probe.sent == ["192.0.2.100", "10.1.4.100"]
    assert got is None or got.location == "undecided"
    d.probe.outcome = I_HA_TRUSTED            # ivn's own answer
    assert d.decide(mn("ivn"), VPN_UP, I_MIP).location == "inside"
    assert d.decided_address == "10.1.4.100"


class FakeLayer:
    def __init__(self, status):
        self._status, self.running, self.runs, self.listeners = status, True, 1, []

    def status(self):
        return self._status

    def ike_messages(self):
        return 0


class FakeInner:
    def __init__(self):
        self.attached = []

    def status(self):
        return {**I_MIP, "home_address": "10.1.1.100", "tunnel": None, "trusted_network": None, "via": None,
                "counters": {}, "dataplane": None}

    def attach(self, address):
        self.attached.append(address)

    def attach_agent(self, agent):
        self.attached.append(("agent", agent))

    def detach(self):
        self.attached.append(None)


class FakeRoute:
    via = None

    def set(self, *a):
        pass

    def clear(self):
        pass


def test_the_switch_is_decided_on_the_step_own_detection():
    """Outside on fn1 (VPN up); the node moves inside (ivn) and the i-HA's answer for ivn comes:
    the VPN goes down in that step, on the answer for ivn, never on fn1's; while ivn's request is
    unanswered, the layers stay as they are (RFC 5265: until it decides)."""
    time = Time()

    async def go():
        node = MobileVpnNode(read(CFG, FILE), lambda *a, **k: None, clock=Clock(time, time))
        node.detection = detection_in_loop(time)
        node.mip, node.vpn, node.inner, node.gateway_route = FakeLayer(mn("fn1")), FakeLayer(VPN_UP), FakeInner(), \
            FakeRoute()
        switches = []
        node._switch_client = lambda restart, run: switches.append((restart, run))
        order = []
        for name in ("detect", "decide"):
            real = getattr(node.detection, name)
            setattr(node.detection, name, lambda *a, _r=real, _n=name: (order.append(_n), _r(*a))[1])
        node._step()
        time.t += 1.0
        node._step()
        assert node.detection.location == "outside" and switches == []
        node.mip._status = mn("ivn")            # the move, then a step for it
        order.clear()
        node._step()
        assert order == ["detect", "decide"] and switches == [], "undecided on ivn: the VPN stays up"
        assert node.status()["detection"]["latest"]["location"] == "undecided"
        node.detection.probe.outcome = I_HA_TRUSTED   # ivn's answer with extension 149, its event's step
        node._step()
        assert node.detection.location == "inside" and switches == [(True, False)], "inside: the VPN goes down"
        assert node.inner.attached[-1] == "10.1.4.100"
    asyncio.run(go())

