"""What the RFC 5265 cases share: after outside moves, the verdicts that only the x-MIP layer moved
(the VPN's IKE SA, the client and the i-MIP binding unchanged, the TCP session intact) and that no
IKE message crossed G_e (tshark) nor was counted by the node; the intranet router set to answer ARP
per link."""
from __future__ import annotations

import subprocess
import time

from testbed.mip_checks import binding
from testbed.traversal_checks import ike_messages, ike_per_move, start_probe, start_session, visit


def outside_moves(world, mvn, i_hoa: str, stops: list[tuple[str, str]], each=None) -> dict:
    """A TCP session to H and a 1 kHz probe H -> i-HoA, then the moves `stops` ((network, x-MIP
    care-of address) pairs), `each(net, coa)` after each; keeper, the i-MIP request count before,
    the moves (visit() results without the status) and the time they ended."""
    keeper = start_session(world, bind=i_hoa)
    rx, _tx = start_probe(world, i_hoa)
    i_requests = mvn.status()["i_mip"]["counters"].get("requests", 0)
    moves = []
    for net, coa in stops:
        mv = visit(world, mvn, rx, keeper, net, coa)
        mv.pop("status")
        if each is not None:
            each(net, coa)
        moves.append(mv)
    return {"keeper": keeper, "i_requests": i_requests, "moves": moves, "t_end": time.time()}


def assert_only_x_mip_moved(mvn, gw, iha, i_hoa: str, vip: str, sa_name: str, keeper, i_requests: int):
    """The node's status and the TCP keeper's after the moves; `i_requests`: the i-MIP layer's
    request count before them."""
    after = mvn.status()
    assert after["i_mip"]["counters"].get("requests", 0) == i_requests, \
        f"an outside move must not redo the i-MIP registration: {after['i_mip']['counters']}"
    assert binding(iha, i_hoa)["care_of_address"] == vip, "the i-MIP binding must stay on the VPN-TIA"
    now = [x for x in gw.status()["ike_sas"] if x["state"] == "ESTABLISHED"]
    assert [x["name"] for x in now] == [sa_name], f"the IKE SA must stay the same across moves: {now}"
    assert after["client_runs"] == 1, "the VPN client must not restart on a move"
    k = keeper.status()
    assert k["connects"] == 1 and k["error"] is None and k["mismatch_at"] is None, k
    return after, k


def assert_no_ike_per_move(pcap, mvn, moves: list[dict], t_end: float, detail: str) -> dict:
    """ZERO IKE messages at G_e (the capture `pcap`) from each move (`moves`: visit() results) to the
    next, and none in the node's count for the stay whose attachment detail is `detail`; each move
    gains ike_messages_wire and ike_messages_status."""
    counted = ike_per_move(mvn)
    ends = [mv["t_down"] for mv in moves[1:]] + [t_end]
    for mv, msgs in zip(moves, ike_messages(pcap, [(mv["t_down"], end) for mv, end in zip(moves, ends)])):
        mv["ike_messages_wire"], mv["ike_messages_status"] = len(msgs), counted.get(mv["to"], counted.get(mv["coa"]))
        assert msgs == [], f"move to {mv['to']}: IKE messages at G_e: {msgs}"
    assert counted.get(detail) == 0, f"the node counted IKE messages after the move to {detail}: {counted}"
    return counted


def settled(mvn, mode: str, coa: str | None = None):
    """The node's status once it has decided on RFC 5265 access mode `mode` and that mode's layers
    are up, else None. home: inside, no VPN, no i-MIP binding; c and f: inside, no VPN, i-MIP
    registered (co-located, or through the agent) from `coa` with extension 149 in the reply; cvc
    and fvc: outside, x-MIP registered with care-of address `coa` (co-located, or the agent's), the
    VPN established and i-MIP registered on the VPN-TIA."""
    s = mvn.status()
    i, vpn, x = s.get("i_mip") or {}, s["vpn"] or {}, s["mip"]
    location = (s.get("location") or {}).get("location")
    if s.get("access_mode") != mode:
        return None
    if mode in ("home", "c", "f"):
        if location != "inside" or s["vpn_running"]:
            return None
        if mode == "home":
            return s if i.get("state") in ("home", "detached") else None
        kind = "fa" if mode == "f" else "colocated"
        ok = i.get("state") == "registered" and (i["mode"], i["care_of_address"]) == (kind, coa) and i["trusted_network"]
        return s if ok else None
    if location != "outside" or x["state"] != "registered" or (coa is not None and x["care_of_address"] != coa):
        return None
    if x["mode"] != ("fa" if mode == "fvc" else "colocated"):
        return None
    if vpn.get("state") != "established" or i.get("state") != "registered" or i["care_of_address"] != vpn["virtual_ip"]:
        return None
    return s


def ip_layers(pcap, opts: list[str], display_filter: str) -> list[dict]:
    """Each packet's IP headers outside in (source, destination, total length) and protocols, as
    tshark decodes them, with ESP decrypted by `opts` (testbed.ipsec_checks.tshark_esp_sa_options)."""
    out = subprocess.run(["tshark", "-n", "-r", str(pcap), *opts, "-Y", display_filter, "-T", "fields",
                          "-E", "occurrence=a", "-E", "aggregator=,", "-e", "ip.src", "-e", "ip.dst", "-e", "ip.len",
                          "-e", "frame.protocols"], capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        src, dst, length, protos = (line.split("\t") + ["", "", "", ""])[:4]
        rows.append({"src": src.split(","), "dst": dst.split(","), "ip_len": [int(x) for x in length.split(",") if x],
                     "proto": protos.split(":")})
    return rows
