"""What the VPN-traversal cases and benchmark share: the mobile VPN node's readiness (both layers up),
a probe stream toward the address the intranet sees, a TCP session to H, and IKE messages counted
on the wire (tshark) per move."""
from __future__ import annotations

from ipaddress import ip_address, ip_network

from testbed import handoff
from testbed.capture import decode
from testbed.disruption import Disruption
from testbed.daemons import start_daemon
from testbed.mip_checks import H, PROBE_PORT, session_caught_up, wait_for

ECHO_PORT = 7
IKE_SA_INIT, IKE_AUTH = 34, 35  # IKEv2 exchange types
IKE_FILTER = "isakmp"  # tshark: IKE on 500, and on 4500 after the non-ESP marker
IKE_BPF = "udp port 500 or (udp port 4500 and udp[8:4] = 0)"  # IKE, not UDP-encapsulated ESP
# with IPsec inside MIP the node's IKE crosses G_e inside the MIP tunnel (2.3, 2.5): IP-in-IP and
# RFC 3519 UDP tunnel data too; tshark decodes the IKE inside both
IKE_BPF_IN_MIP = f"{IKE_BPF} or ip proto 4 or udp port 434"


class MipLayer:
    """The MN layer of a mobile VPN node, for the mobility helpers that read an MN's status."""

    def __init__(self, mvn):
        self.mvn = mvn

    def status(self) -> dict:
        return self.mvn.status()["mip"]


def both_layers_up(mvn, coa: str | None = None):
    """The mobile VPN node's status once the MN is registered (with that care-of address, or one
    inside that prefix: a DHCP lease) and the VPN tunnel is established, else None."""
    s = mvn.status()
    mip, vpn = s["mip"], s["vpn"]
    if mip["state"] != "registered" or (coa is not None and not _matches(mip["care_of_address"], coa)):
        return None
    if not vpn or vpn["state"] != "established":
        return None
    return s


def rfc5265_layers_up(mvn):
    """The status of a mobile VPN node in an RFC 5265 mode once x-MIP, the VPN tunnel and i-MIP are
    all up, else None."""
    s = mvn.status()
    return s if all_rfc5265_layers_up(s) else None


def all_rfc5265_layers_up(status: dict) -> bool:
    """In a mobile VPN node's status (an RFC 5265 mode): x-MIP registered, the VPN tunnel established
    and i-MIP registered."""
    i, vpn = status.get("i_mip") or {}, status.get("vpn") or {}
    return status["mip"]["state"] == "registered" and vpn.get("state") == "established" and i.get("state") == "registered"


def _matches(address: str | None, want: str) -> bool:
    return address is not None and ip_address(address) in ip_network(want)


def wait_both_layers(mvn, coa: str | None = None, timeout: float = 8.0) -> dict:
    return wait_for(lambda: both_layers_up(mvn, coa), timeout=timeout,
                    what=f"registration{f' with care-of address {coa}' if coa else ''} and an established VPN tunnel")


def ike_per_move(mvn) -> dict[str, int]:
    """IKE messages the node counted after each attachment (its detail: the network's name when
    co-located, the agent's address with an FA -> count; the last stay on each wins)."""
    return {m["attachment"]["detail"]: m["ike_messages"] for m in mvn.status()["moves"] if m["attachment"]}


def start_probe(world, to: str, rate: int = 1000, gap: float = 0.005, sender: str = "h"):
    """A 1 kHz UDP probe stream from `sender` (H) -> `to` (an address of R); returns (receiver, sender)."""
    rx = start_daemon(world, "r", "instruments.probe", name="probe-rx", config={"listen": PROBE_PORT, "bind": to, "gap": gap})
    tx = start_daemon(world, sender, "instruments.probe", name="probe-tx",
                      config={"send": {"to": to, "port": PROBE_PORT, "rate": rate}})
    wait_for(lambda: rx.status()["receiver"]["received"] > 50, timeout=5, what=f"the probe stream to reach {to}")
    return rx, tx


def start_session(world, bind: str | None = None):
    """One long-lived TCP session R -> H:7 (an echo sink on H), from `bind` or the routed source."""
    start_daemon(world, "h", "instruments.sink", args=["--tcp", str(ECHO_PORT)])
    args = ["--connect", f"{H}:{ECHO_PORT}"] + (["--bind", bind] if bind else [])
    keeper = start_daemon(world, "r", "instruments.tcpkeeper", args=args)
    session_caught_up(keeper)
    return keeper


def ike_messages(pcap, windows: list[tuple[float, float]]) -> list[list[dict]]:
    """The IKE messages of a capture (tshark), split into time windows [from, to)."""
    rows = decode(pcap, IKE_FILTER, fields=["frame.time_epoch", "ip.src", "ip.dst", "isakmp.exchangetype",
                                             "isakmp.flag_r"])
    out: list[list[dict]] = [[] for _ in windows]
    for row in rows:
        t = float(row["frame.time_epoch"][0])
        msg = {"t": t, "src": row["ip.src"][-1], "dst": row["ip.dst"][-1],
               "exchange": int(row["isakmp.exchangetype"][0]) if row["isakmp.exchangetype"] else None,
               "response": (row["isakmp.flag_r"] or ["0"])[0] in ("1", "True")}
        for i, (lo, hi) in enumerate(windows):
            if lo <= t < hi:
                out[i].append(msg)
    return out


def visit(world, mvn, rx, keeper, net: str, coa: str) -> dict:
    """Move R to `net` and wait until both layers are up with care-of address `coa`, the probe
    stream flows again and the TCP session has caught up; the move, the disruption the probe saw
    and the node's status then."""
    m = handoff.move(world, "r", net, configure=False)
    s = wait_both_layers(mvn, coa)
    wait_for(lambda: (rx.status()["receiver"]["last_arrival"] or 0) > m.t_up + 0.05, timeout=5,
             what=f"the probe stream to flow again on {net}")
    if keeper is not None:
        session_caught_up(keeper)
    return {"to": net, "coa": coa, "t_down": m.t_down, "t_up": m.t_up, "status": s,
            **outage(m.t_down, m.t_up, rx.status()["receiver"]).as_dict()}


def outage(t_down: float, t_up: float, receiver: dict, window: float = 3.0) -> Disruption:
    """The longest arrival gap of a probe receiver that overlaps [t_down, t_up + window].

    Unlike testbed.disruption (the gap that spans the carrier change), this also finds an outage
    that starts after the carrier is back: probes already in flight on the old path can arrive
    just after the move, while the new path needs a VPN tunnel first (section 4.1)."""
    gaps = [g for g in receiver["gaps"] if g["to_t"] >= t_down and g["from_t"] <= t_up + window]
    if not gaps:
        last = receiver.get("last_arrival")
        if last is None or last < t_up:
            raise ValueError("no probe packet arrived after the move: the stream did not recover")
        return Disruption(t_down, t_up, 0.0, 0.0, 0)
    g = max(gaps, key=lambda g: g["to_t"] - g["from_t"])
    return Disruption(t_down, t_up, g["to_t"] - g["from_t"], max(0.0, g["to_t"] - t_up), g["lost"])
