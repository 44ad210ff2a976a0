"""The report: verdicts, results.json, the conformance statement, case pages, ladder and plots."""
import json
import re
from pathlib import Path

from testbed.naming import case_dirname
from testbed.report import CaseResult, collect_artifacts, render_evidence, summarize, write_report
from testbed.report.ladder import Arrow, render_svg
from testbed.report.verdicts import (
    FAIL, INCONCLUSIVE, NONCONFORMANCE, NOT_APPLICABLE, NOT_RUN, PASS, SKIPPED, WARNED, is_downgrade, verdict_of, worst,
)

R, G_E, FA1, HA = "192.0.2.100", "203.0.113.70", "192.0.2.1", "10.1.1.2"
OURS = {"gw": {"kind": "vpn-gateway", "impl": "ours"}, "client": {"kind": "vpn-client", "impl": "ours"}}
SWAN_CLIENT = {"gw": {"kind": "vpn-gateway", "impl": "ours"}, "client": {"kind": "vpn-client", "impl": "strongswan"}}


def write_pcap(path: Path) -> None:
    """IKE_SA_INIT and IKE_AUTH, ESP both ways, a Mobile IP registration: what tshark must decode."""
    from scapy.layers.inet import IP, UDP
    from scapy.packet import Raw
    from scapy.utils import wrpcap

    def ike(src, dst, exch, resp, mid):
        flags = 0x20 if resp else 0x08
        hdr = bytes(range(1, 9)) + (bytes(range(9, 17)) if exch != 34 or resp else bytes(8)) + bytes(
            [33 if exch == 34 else 46, 0x20, exch, flags]) + mid.to_bytes(4, "big") + (28).to_bytes(4, "big")
        return IP(src=src, dst=dst, id=mid + (100 if resp else 0)) / UDP(sport=500, dport=500) / Raw(hdr)

    pkts = [ike(R, G_E, 34, False, 0), ike(G_E, R, 34, True, 0), ike(R, G_E, 35, False, 1), ike(G_E, R, 35, True, 1)]
    for n in range(6):
        src, dst = (R, G_E) if n < 3 else (G_E, R)
        pkts.append(IP(src=src, dst=dst, proto=50, id=200 + n) / Raw(b"\x11\x22\x33\x44" + (n + 1).to_bytes(4, "big") + bytes(40)))
    rrq = bytes([1, 0x02, 0, 60]) + bytes([10, 1, 1, 100]) + bytes([10, 1, 1, 2]) + bytes([192, 0, 2, 1]) + bytes(8)
    pkts.append(IP(src=R, dst=FA1, id=300) / UDP(sport=434, dport=434) / Raw(rrq))
    t = 1_800_000_000.0
    for i, p in enumerate(pkts):
        p.time = t + 0.01 * i
    wrpcap(str(path), pkts)


def small_run(root: Path) -> Path:
    """A run of six cases, one per verdict, the first with kept captures and a probe stream."""
    run = root / "run-1"
    results = [
        CaseResult("cases/remote_access/test_tunnel.py::test_tunnel_is_established[remote-access-basic]", "passed", 1.25,
                   ["remote_access"], reqs=["gupta-3-tunnel-mode"], scenario="remote-access-basic", roles=OURS),
        CaseResult("cases/remote_access/test_tunnel.py::test_tunnel_is_established[remote-access-basic+client=strongswan]",
                   "failed", 0.5, ["remote_access"], message="E   AssertionError: assert <b>1 == 2</b>",
                   reqs=["gupta-3-tunnel-mode"], scenario="remote-access-basic", roles=SWAN_CLIENT),
        CaseResult("cases/security/test_flood.py::test_flood[remote-access-flood]", "passed", 3.0, ["security"],
                   reqs=["rfc1122-1.2.2-robustness"], scenario="remote-access-flood", roles=OURS,
                   warnings=["gateway role gw (strongswan) reports no drop counters"]),
        CaseResult("cases/security/test_attacks.py::test_unsolicited_syn[remote-access-basic+client=strongswan]", "xfailed",
                   2.0, ["security"], message="E   AssertionError: R answered", reqs=["gupta-4b-no-unsolicited"],
                   scenario="remote-access-basic", roles=SWAN_CLIENT,
                   nonconformance={"implementation": "strongswan", "finding": "no inbound filter", "source": "draft-gupta 4 (b)"}),
        CaseResult("cases/napt/test_redirect.py::test_redirect[remote-access-redirect]", "skipped", 0.0, ["napt"],
                   message="not applicable: redirection rules are a feature of our gateway", reqs=["gupta-appc-redirect"]),
        CaseResult("cases/world/test_move.py::test_move[bare-world]", "skipped", 0.0, ["world"], message="needs root"),
    ]
    first = run / "cases" / case_dirname(results[0].nodeid)
    (first / "captures").mkdir(parents=True)
    write_pcap(first / "captures" / "g-dmz.pcap")
    (first / "logs").mkdir()
    (first / "logs" / "g.gw.log").write_text("gateway log\n")
    (first / "logs" / "h.probe-rx.events.jsonl").write_text("\n".join(json.dumps(e) for e in [
        {"t": 1_800_000_000.0, "event": "ready"},
        {"t": 1_800_000_000.5, "event": "gap", "from_t": 1_800_000_000.40, "to_t": 1_800_000_000.48, "seconds": 0.08, "lost": 79},
        {"t": 1_800_000_002.0, "event": "stopping"}]))
    timeline = [{"t": 1_800_000_000.0 - 1, "event": "world-up"},
                {"t": 1_800_000_000.4, "event": "move", "station": "r", "from": "fn1", "to": "fn2",
                 "t_down": 1_800_000_000.40, "t_up": 1_800_000_000.41}]
    (first / "timeline.json").write_text(json.dumps(timeline))
    assert render_evidence(first) == ["ladder.svg", "probe.svg"]
    for r in results:
        r.artifacts = collect_artifacts(run, run / "cases" / case_dirname(r.nodeid))
        r.verdict = verdict_of(r.outcome, r.message, r.nonconformance is not None, r.warnings)
    bench = root / "bench"
    bench.mkdir()
    (bench / "ipsec.json").write_text(json.dumps({"what": "iperf3 through the tunnel", "meets_targets": False, "comparison": {
        "throughput": {"aes128gcm16": {"ours_mbps": 520.0, "strongswan_mbps": 400.0, "ratio_ours_over_reference": 1.3}}}}))
    write_report(run, "run-1", results, {"workers": 2}, bench_dir=bench)
    return run


def test_verdicts():
    assert verdict_of("passed", "", False, []) == PASS
    assert verdict_of("passed", "", False, ["no counters"]) == WARNED
    assert verdict_of("failed", "", True, []) == verdict_of("error", "", False, []) == FAIL
    assert verdict_of("xfailed", "", True, []) == NONCONFORMANCE
    assert verdict_of("skipped", "not applicable: no such role", False, []) == NOT_APPLICABLE
    assert verdict_of("skipped", "needs root", False, []) == SKIPPED
    assert verdict_of("skipped", "not run: role gw: strongswan-kernel needs the kernel's XFRM", False, []) == NOT_RUN
    assert worst([PASS, WARNED, NOT_APPLICABLE]) == WARNED and worst([]) is None
    assert is_downgrade("UserWarning", "/repo/cases/x/test_a.py", "/repo/cases")
    assert is_downgrade("CheckDowngraded", "/repo/testbed/x.py", "/repo/cases")
    assert not is_downgrade("DeprecationWarning", "/venv/lib/scapy/x.py", "/repo/cases")


def test_report_states_verdicts_matrix_and_unchecked_requirements(run):
    doc = json.loads((run / "results.json").read_text())
    assert doc["summary"] == {PASS: 1, FAIL: 1, WARNED: 1, NONCONFORMANCE: 1, INCONCLUSIVE: 0, NOT_APPLICABLE: 1, NOT_RUN: 0, SKIPPED: 1, "total": 6}
    page = (run / "index.html").read_text()
    assert "run-1" in page and ">FAIL<" in page
    assert "&lt;b&gt;1 == 2&lt;/b&gt;" in page  # messages are escaped
    assert 'id="matrix"' in page and "strongswan as vpn-client" in page
    # every requirement a case checked is a matrix row; the others are listed as unchecked
    unchecked = page[page.index('id="unchecked"'):page.index('id="cases"')]
    assert "gupta-3-tunnel-mode" not in unchecked and "ps-5.6-handoff-without-ike" in unchecked
    assert "reports no drop counters" in page  # a WARNED case says why, on the first page
    assert (run.parent / "latest").resolve() == run.resolve()
    for href in re.findall(r'href="(cases/[^"]+)"', page):
        assert (run / href).is_file(), href


def test_case_page_has_ladder_probe_plot_and_grouped_artifacts(run):
    case = next((run / "cases").glob("*test_tunnel_is_established_remote-access-basic_*"))
    page = (case / "case.html").read_text()
    ladder = page[page.index('<svg xmlns="http://www.w3.org/2000/svg" class="ladder"'):]
    # tshark's decoding, not ours: IKE exchange names, ESP, Mobile IP
    for text in ("IKE_SA_INIT", "IKE_AUTH", "ESP x3", "Reg", ">r<", ">g<", ">ar1<", "move: r fn1 -&gt; fn2"):
        assert text in ladder, text
    assert "probe stream at 1000/s" in page
    assert "Captures (pcap, open in Wireshark)" in page and "Logs: g.gw" in page and "Logs: h.probe-rx" in page
    assert 'href="captures/g-dmz.pcap"' in page and "gupta-3-tunnel-mode" in page


def test_nonconformance_and_not_applicable_pages(run):
    syn = (next((run / "cases").glob("*test_unsolicited_syn*")) / "case.html").read_text()
    assert "Known nonconformance of strongswan" in syn and "EXPECTED-NONCONFORMANCE" in syn
    na = (next((run / "cases").glob("*test_redirect*")) / "case.html").read_text()
    assert "NOT-APPLICABLE" in na and "feature of our gateway" in na


def test_benchmarks_page_compares_side_by_side(run):
    bench = (run / "bench.html").read_text()
    assert "target not met" in bench and "<th>ours</th><th>strongswan</th>" in bench
    assert "<td>520.0</td><td>400.0</td>" in bench and "<svg" in bench


def test_ladder_folds_data_runs_and_keeps_signalling():
    arrows = [Arrow(1.0, 1.0, "r", "g", "ISAKMP", "IKE_SA_INIT MID=00 Initiator Request"),
              Arrow(1.5, 1.9, "r", "g", "ESP", "ESP (SPI=0x1)", count=40)]
    svg = render_svg(arrows, [])
    assert "IKE_SA_INIT" in svg and "ESP x40 (0.40 s)" in svg and svg.startswith("<svg")
    assert summarize([])["total"] == 0
