"""Ladder (message sequence) diagrams from a case's captures, decoded by tshark (not by our codecs).

Nodes are columns (named from the world's address plan), each decoded packet an arrow with its time
and tshark's summary; a packet seen by several captures is drawn once; runs of data packets (ESP,
echo, probes) fold into one arrow "xN"; the timeline's moves and link changes are bands across.
The result is plain SVG: it needs no JavaScript and opens from the file system.
"""
from __future__ import annotations

import html
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

FIELDS = ["frame.time_epoch", "ip.src", "ip.dst", "ip.id", "_ws.col.Protocol", "_ws.col.Info"]
# protocols drawn one arrow per packet; anything else folds into runs
SIGNALLING = {"ISAKMP", "IKEv2", "MIP", "DHCP", "DNS", "ARP", "ICMP"}
MAX_PACKETS = 20000  # per capture, read by tshark
MAX_ARROWS = 160
ORDER = ["r", "nh", "ar1", "ar2", "nat", "core", "atk", "pub", "g", "xha", "ir", "iha", "h", "dns"]
COL_W, ROW_H, TOP, LEFT = 180, 20, 46, 78


@dataclass
class Arrow:
    t: float
    t_end: float
    src: str
    dst: str
    protocol: str
    info: str
    count: int = 1


def address_names() -> dict[str, str]:
    """Address -> node name from fixtures/world.yaml (station addresses as the station)."""
    from testbed.plan import default_plan

    plan = default_plan()
    names = {str(i.address): n for n, spec in plan.nodes.items() for i in spec.interfaces}
    stations = plan.stations()
    for att in plan.attachments.values():  # a station keeps its column wherever it is attached
        names.setdefault(str(att.address), stations[0] if len(stations) == 1 else f"station {att.address}")
    return names


def decode_pcap(pcap: Path) -> list[list[str]]:
    res = subprocess.run(["tshark", "-n", "-r", str(pcap), "-c", str(MAX_PACKETS), "-Y", "ip", "-T", "fields",
                          "-E", "separator=\t", "-E", "occurrence=f"] + [a for f in FIELDS for a in ("-e", f)],
                         capture_output=True, text=True, timeout=60)
    return [line.split("\t") for line in res.stdout.splitlines() if line.count("\t") == len(FIELDS) - 1]


def arrows_from(pcaps: list[Path], names: dict[str, str]) -> list[Arrow]:
    with ThreadPoolExecutor(max_workers=2) as pool:
        rows = [r for rs in pool.map(decode_pcap, pcaps) for r in rs]
    rows.sort(key=lambda r: float(r[0] or 0))
    seen: dict[tuple, float] = {}
    packets: list[Arrow] = []
    for t, src, dst, ident, proto, info in rows:
        key = (src, dst, ident, proto, info[:48])
        ts = float(t)
        if ident and key in seen and ts - seen[key] < 1.0:
            continue  # the same packet, captured at another point
        seen[key] = ts
        packets.append(Arrow(ts, ts, names.get(src, src), names.get(dst, dst), proto, info))
    out: list[Arrow] = []
    for p in packets:
        last = out[-1] if out else None
        if (last and p.protocol not in SIGNALLING and (last.src, last.dst, last.protocol) == (p.src, p.dst, p.protocol)):
            last.count += 1
            last.t_end = p.t
            continue
        out.append(p)
    return out


def columns_of(arrows: list[Arrow]) -> list[str]:
    present = []
    for a in arrows:
        for n in (a.src, a.dst):
            if n not in present:
                present.append(n)

    def rank(n: str):
        return (ORDER.index(n) if n in ORDER else len(ORDER), present.index(n))
    return sorted(present, key=rank)


def render_svg(arrows: list[Arrow], events: list[dict], t0: float | None = None) -> str:
    """The ladder as an SVG document; `events` are timeline entries (t, event, ...)."""
    dropped = max(0, len(arrows) - MAX_ARROWS)
    arrows = arrows[:MAX_ARROWS]
    cols = columns_of(arrows)
    longest = max((min(70, len(a.info)) for a in arrows), default=20)
    col_w = COL_W if len(cols) > 3 else max(COL_W, min(440, 6 * longest + 20))  # few columns: room for labels
    x = {n: LEFT + col_w // 2 + i * col_w for i, n in enumerate(cols)}
    t0 = t0 if t0 is not None else (arrows[0].t if arrows else 0.0)
    t_last = arrows[-1].t if arrows else t0
    marks = [e for e in events if e.get("event") in ("move", "link-down", "link-up", "detach") or "rekey" in e.get("event", "")]
    marks = [e for e in marks if arrows and t0 - 1 <= e["t"] <= t_last + 1]
    rows = sorted([("a", a.t, a) for a in arrows] + [("e", e["t"], e) for e in marks], key=lambda r: r[1])
    width = LEFT + col_w * max(1, len(cols)) + 10
    height = TOP + ROW_H * (len(rows) + 1) + (ROW_H if dropped else 0) + 10
    esc = html.escape
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="ladder" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="DejaVu Sans, sans-serif" font-size="11">',
           '<defs><marker id="ah" markerWidth="8" markerHeight="8" refX="7" refY="3" orient="auto" markerUnits="userSpaceOnUse">'
           '<path d="M0,0 L7,3 L0,6 z" fill="#333"/></marker></defs>',
           f'<text x="4" y="{TOP - 26}" fill="#666">time (s)</text>']
    for n in cols:
        out.append(f'<text x="{x[n]}" y="{TOP - 26}" text-anchor="middle" font-weight="bold">{esc(n)}</text>')
        out.append(f'<line x1="{x[n]}" y1="{TOP - 18}" x2="{x[n]}" y2="{height - 10}" stroke="#bbb" stroke-dasharray="3,3"/>')
    colours = {"ISAKMP": "#1f5fa8", "IKEv2": "#1f5fa8", "ESP": "#7a3fa0", "MIP": "#b35900", "DHCP": "#22793a",
               "ICMP": "#555", "DNS": "#22793a", "UDPENCAP": "#7a3fa0"}
    for i, (kind, t, item) in enumerate(rows):
        y = TOP + ROW_H * i
        out.append(f'<text x="4" y="{y + 4}" fill="#666">{t - t0:+.3f}</text>')
        if kind == "e":
            label = _event_label(item)
            out.append(f'<rect x="{LEFT - 4}" y="{y - 8}" width="{width - LEFT - 6}" height="14" fill="#fff3c4"/>')
            out.append(f'<text x="{LEFT}" y="{y + 3}" fill="#6b5300">{esc(label)}</text>')
            continue
        a = item
        colour = colours.get(a.protocol, "#333")
        x1, x2 = x[a.src], x[a.dst]
        label = a.info if a.count == 1 else f"{a.protocol} x{a.count} ({a.t_end - a.t:.2f} s)"
        label = label if len(label) <= 70 else label[:67] + "..."
        tip = f"{a.protocol}: {a.info}" + (f" (and {a.count - 1} more until {a.t_end - t0:+.3f} s)" if a.count > 1 else "")
        out.append(f'<g><title>{esc(tip)}</title>')
        if x1 == x2:
            out.append(f'<circle cx="{x1}" cy="{y}" r="3" fill="{colour}"/>')
        else:
            out.append(f'<line x1="{x1}" y1="{y}" x2="{x2}" y2="{y}" stroke="{colour}" stroke-width="{2 if a.count > 1 else 1.2}" '
                       f'marker-end="url(#ah)"/>')
        mid = (x1 + x2) / 2 if x1 != x2 else x1 + 6
        out.append(f'<text x="{mid}" y="{y - 3}" text-anchor="{"middle" if x1 != x2 else "start"}" fill="{colour}">'
                   f'{esc(label)}</text></g>')
    if dropped:
        out.append(f'<text x="{LEFT}" y="{height - 14}" fill="#b00020">{dropped} more packets not drawn '
                   f'(open the captures in Wireshark)</text>')
    out.append("</svg>")
    return "\n".join(out)


def _event_label(e: dict) -> str:
    if e["event"] == "move":
        return f"move: {e.get('station', '')} {e.get('from')} -> {e.get('to')}"
    rest = ", ".join(f"{k}={v}" for k, v in e.items() if k not in ("t", "event") and not isinstance(v, (list, dict)))
    return f"{e['event']} {rest}".strip()


def ladder(case_dir: Path, timeline: list[dict]) -> str | None:
    """The SVG ladder of the pcaps in case_dir/captures, or None when there are none."""
    pcaps = sorted((case_dir / "captures").glob("*.pcap")) if (case_dir / "captures").is_dir() else []
    if not pcaps:
        return None
    arrows = arrows_from(pcaps, address_names())
    if not arrows:
        return None
    return render_svg(arrows, timeline)
