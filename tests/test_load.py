"""The load generator's pure parts (testbed/load.py, testbed/load_client.py): percentiles, the
load.json writer, the progress line, the SVG plot, and one client's state machine run in memory
against this project's IKEv2 core (as tests/test_ike_tester_interop.py does)."""
from __future__ import annotations

import json
import struct

from ike_fakelink import Pool

from nodes.core import Addr
from nodes.ipsec.ike import IkeConfig, IkeCore, SendIke, UserPolicy
from testbed.conformance.ike import constants as c
from testbed.load import (LOAD_KEYS, client_address, generate_users, percentile, progress_line, summarize, svg_plot,
                          write_load_json)
from testbed.load_client import LoadClient, icmp_echo, is_echo_reply

CLIENT, GATEWAY, H = "198.18.1.0", "203.0.113.70", "10.1.2.10"


def test_percentile():
    assert percentile([], 50) is None
    assert percentile([3.0], 99) == 3.0
    xs = list(range(1, 101))
    assert percentile(xs, 50) == 50.5
    assert percentile(xs, 0) == 1 and percentile(xs, 100) == 100
    assert abs(percentile(xs, 95) - 95.05) < 1e-9
    assert percentile([5, 1, 3], 50) == 3


def test_users_and_addresses_are_distinct():
    users = generate_users(300)
    assert len(users) == 300 and len({u["psk"] for u in users.values()}) == 300
    assert len({client_address(i) for i in range(60000)}) == 60000
    assert client_address(0) == "198.18.1.0"


def test_progress_line():
    line = progress_line(50, 200, 48, 2, 97.25, 0.0831, 20480, 0.42, width=10)
    assert line.startswith("setup [##........] 50/200")
    assert "up 48" in line and "fail 2" in line and "97.2/s" in line and "p95 0.083s" in line
    assert "gw 20.0MiB" in line and "gen 42%" in line
    assert "\n" not in line
    assert "p95" not in progress_line(0, 0, 0, 0, 0.0, None, None, None)


def test_load_json_writer(tmp_path):
    res = {k: 0 for k in LOAD_KEYS}
    res.update(failed={"timeout:IKE_SA_INIT": 2}, samples=[{"established": 1}], implementation="ours")
    path = write_load_json(tmp_path / "run", res)
    doc = json.loads(path.read_text())
    assert list(doc)[:len(LOAD_KEYS)] == list(LOAD_KEYS)
    assert doc["failed"] == {"timeout:IKE_SA_INIT": 2} and doc["implementation"] == "ours"
    del res["p99_s"]
    try:
        write_load_json(tmp_path, res)
    except ValueError as exc:
        assert "p99_s" in str(exc)
    else:
        raise AssertionError("a result without p99_s was written")


def test_svg_plot():
    svg = svg_plot([{"established": i * 10, "setups_per_s": 50.0 + i, "gateway_rss_kib": 10000 + 100 * i}
                    for i in range(20)], "ours <x>")
    assert svg.startswith("<svg") and svg.count("<polyline") == 2 and "ours &lt;x&gt;" in svg
    assert svg_plot([], "empty").count("<polyline") == 0


def test_icmp_echo_builder():
    pkt = icmp_echo("10.2.0.1", H, 0x4001, 3)
    assert pkt[9] == 1 and pkt[20] == 8
    reply = pkt[:20] + bytes([0]) + pkt[21:]
    assert is_echo_reply(reply, 0x4001, 3) and not is_echo_reply(reply, 0x4001, 4) and not is_echo_reply(pkt, 0x4001, 3)


# ---- one client against our IKEv2 core, in memory --------------------------------------------------------
def gateway(auth_password: bool = False, cookie_threshold=None):
    users = {"load-00000@testbed": UserPolicy(psk=None if auth_password else b"load-psk-00000",
                                              password=b"load-password-00000" if auth_password else None,
                                              subnets=["10.1.0.0/16"])}
    return IkeCore(IkeConfig("gw.example", ["aes128gcm16-prfsha256-ecp256-modp2048-curve25519"], ["aes128gcm16"],
                             users=users, allocator=Pool("10.2.0.1"), gateway_psk=b"load-psk-00000" if auth_password else None,
                             cookie_threshold=cookie_threshold))


def drive(cl: LoadClient, core: IkeCore, now: float = 0.0, drop_first: bool = False) -> list:
    """Deliver the client's IKE output to the core and back until both are quiet; returns the ESP
    the client sent."""
    esp, queue, dropped = [], list(cl.start(now)), False
    for _ in range(50):
        if not queue:
            break
        kind, data = queue.pop(0)
        if kind == "esp":
            esp.append(data)
            continue
        if drop_first and not dropped:
            dropped = True
            queue += cl.on_timer(now + 5)
            continue
        core.receive_datagram(data, Addr(cl.local, 500, GATEWAY, 500), now)
        for act in core.drain_actions():
            if isinstance(act, SendIke):
                queue += cl.on_ike(act.data, now + 0.01)
    return esp


def client(**kw) -> LoadClient:
    return LoadClient(0, CLIENT, GATEWAY, "load-00000@testbed", b"load-psk-00000", H, **kw)


def echo_reply_through(cl: LoadClient, esp_packet: bytes) -> bytes:
    """What the gateway would send back: open the echo with the client's outbound keys, turn it into a
    reply, seal it with the client's inbound keys."""
    out = cl.session.children[0].esp_out()
    inner = out.open(esp_packet).payload
    reply = inner[:12] + inner[16:20] + inner[12:16] + bytes([0]) + inner[21:]
    return cl.session.children[0].esp_in().seal(reply, c.IPPROTO_IPIP)


def test_client_establishes_and_probes_with_psk():
    cl = client(group=19)
    esp = drive(cl, gateway())
    assert cl.established and cl.state == "probe" and cl.session.virtual_ip == ["10.2.0.1"]
    assert len(esp) == 1 and cl.spi_in is not None
    assert cl.on_esp(echo_reply_through(cl, esp[0]), 0.5) == [] and cl.probe_ok and cl.state == "up" and cl.done


def test_client_group_31_and_14():
    for group in (31, 14):
        cl = client(group=group)
        drive(cl, gateway())
        assert cl.established and cl.session.algs.dh == group


def test_client_eap_md5():
    cl = client(auth="eap-md5", password=b"load-password-00000")
    drive(cl, gateway(auth_password=True))
    assert cl.established and cl.session.peer_auth_ok and cl.session.children


def test_client_retransmits_then_times_out():
    cl = client(retransmit=(1.0, 2.0))
    first = cl.start(0.0)
    assert cl.on_timer(0.5) == []
    again = cl.on_timer(1.0)
    assert again == first and cl.state == "init"
    assert cl.on_timer(3.0) == [] and cl.state == "failed" and cl.cause == "timeout:IKE_SA_INIT"


def test_client_survives_a_lost_request():
    cl = client()
    drive(cl, gateway(), drop_first=True)
    assert cl.established


def test_client_failure_cause_is_the_notify():
    cl = LoadClient(0, CLIENT, GATEWAY, "load-00000@testbed", b"wrong-psk", H)
    drive(cl, gateway())
    assert cl.state == "failed" and cl.cause == "AUTHENTICATION_FAILED"


def test_client_follows_a_cookie():
    core = gateway(cookie_threshold=0)
    cl = client()
    drive(cl, core)
    assert cl.cookies == 1 and cl.established


def test_probe_lost_and_dpd():
    cl = client(probe_wait=(1.0,))
    core = gateway()
    drive(cl, core)
    assert cl.on_timer(2.0) == [] and cl.probe_ok is False and cl.state == "up"
    out = cl.dpd(3.0)
    assert cl.state == "dpd" and out[0][0] == "ike"
    core.receive_datagram(out[0][1], Addr(CLIENT, 500, GATEWAY, 500), 3.0)
    answers = [a for a in core.drain_actions() if isinstance(a, SendIke)]
    assert answers
    cl.on_ike(answers[0].data, 3.02)
    assert cl.dpd_ok and cl.state == "up" and abs(cl.dpd_rtt - 0.02) < 1e-9
    # a liveness check that goes unanswered
    cl.dpd(4.0)
    for t in (5.0, 7.0, 11.0):
        cl.on_timer(t)
    assert cl.dpd_ok is False and cl.state == "up"


def test_client_ignores_a_runt_datagram():
    cl = client()
    core = gateway()
    drive(cl, core)
    req = struct.pack("!I", 0)
    assert cl.on_ike(req, 1.0) == []  # garbage is ignored


def test_summarize_counts_causes():
    a, b, d = client(), client(), client()
    a.t_start, a.t_established, a.probe_ok = 0.0, 0.1, True
    b.t_start, b.state, b.cause = 0.0, "failed", "timeout:IKE_SA_INIT"
    res = summarize([a, b, d], 0.0, {"cpu_s": 1.0, "rss_per_sa_kib": 12.345}, 0.5, 1.0)
    assert res["offered"] == 3 and res["established"] == 1
    assert res["failed"] == {"not_started": 1, "timeout:IKE_SA_INIT": 1}
    assert res["p50_s"] == 0.1 and res["gateway_rss_kib_per_sa"] == 12.35 and res["probes_lost"] == 0
    assert res["generator_saturated"] is False
