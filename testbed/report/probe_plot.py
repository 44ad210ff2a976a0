"""The probe-stream plot of a handoff or rekey case: arrivals and gaps over time, moves and rekeys
marked. Drawn with matplotlib as SVG from what the case directory holds: the probe receiver's and
sender's structured logs (logs/*probe-rx*.events.jsonl: ready, every gap with its lost probes,
stopping), the sender's rate (its config), the world's timeline (moves) and the roles' events
(child and IKE SAs installed or rekeyed, registrations)."""
from __future__ import annotations

import io
import json
from pathlib import Path

REKEY_EVENTS = {"child_sa_installed", "ike_sa_rekeyed", "rekeyed", "registered", "registration_accepted"}


def _events(path: Path) -> list[dict]:
    out = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def probe_data(case_dir: Path) -> dict | None:
    """The stream's start, end, rate and gaps, or None when the case ran no probe stream."""
    logs = case_dir / "logs"
    rx_files = sorted(logs.glob("*probe-rx*.events.jsonl")) if logs.is_dir() else []
    if not rx_files:
        return None
    rx = _events(rx_files[0])
    tx_files = sorted(logs.glob("*probe-tx*.events.jsonl"))
    tx = _events(tx_files[0]) if tx_files else []
    rate = 1000.0
    for cfg in sorted(logs.glob("*probe-tx*.config.json")):
        try:
            rate = float(json.loads(cfg.read_text())["send"]["rate"])
        except (ValueError, KeyError, TypeError):
            pass
    start = next((e["t"] for e in tx if e.get("event") == "ready"), None) or next(
        (e["t"] for e in rx if e.get("event") == "ready"), None)
    end = next((e["t"] for e in tx if e.get("event") == "stopping"), None) or next(
        (e["t"] for e in rx if e.get("event") == "stopping"), None)
    gaps = [e for e in rx if e.get("event") == "gap"]
    if start is None:
        return None
    end = end or max([g["to_t"] for g in gaps] + [start + 1])
    marks = []
    for f in sorted(logs.glob("*.events.jsonl")):
        if "probe" in f.name:
            continue
        for e in _events(f):
            if e.get("event") in REKEY_EVENTS and start <= e.get("t", 0) <= end:
                marks.append({"t": e["t"], "label": f"{f.name.split('.events')[0]}: {e['event']}"})
    return {"start": start, "end": end, "rate": rate, "gaps": gaps, "marks": marks}


def plot_svg(data: dict, timeline: list[dict]) -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.fonttype"] = "none"  # text stays text: small files, searchable
    t0 = data["start"]
    gaps = data["gaps"]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 4.2), sharex=True, gridspec_kw={"height_ratios": [2, 1.3]})
    # received = sent at the stream's rate minus the probes each gap lost
    xs, ys, lost = [0.0], [0.0], 0
    for g in gaps:
        lost += g.get("lost", 0)
        xs.append(g["to_t"] - t0)
        ys.append(max(0.0, (g["to_t"] - t0) * data["rate"] - lost))
    xs.append(data["end"] - t0)
    ys.append(max(0.0, (data["end"] - t0) * data["rate"] - lost))
    ax1.plot([0, data["end"] - t0], [0, (data["end"] - t0) * data["rate"]], color="#bbb", lw=1, label="sent (at the rate)")
    ax1.plot(xs, ys, color="#1f5fa8", lw=1.5, label=f"received ({lost} lost in gaps)")
    ax1.set_ylabel("probes")
    ax1.legend(loc="upper left", fontsize=8, frameon=False)
    for g in gaps:
        ax2.bar(g["from_t"] - t0, g["seconds"] * 1000, width=max(g["to_t"] - g["from_t"], 0.004), align="edge",
                color="#b00020" if g.get("lost") else "#e08a00")
    ax2.set_ylabel("arrival gap (ms)")
    ax2.set_xlabel("seconds since the stream started")
    moves = [e for e in timeline if e.get("event") == "move" and t0 <= e.get("t_down", e["t"]) <= data["end"]]
    for ax in (ax1, ax2):
        for m in moves:
            ax.axvspan(m.get("t_down", m["t"]) - t0, m.get("t_up", m["t"]) - t0 + 0.002, color="#f2c200", alpha=0.5)
            ax.axvline(m.get("t_down", m["t"]) - t0, color="#b38f00", lw=0.8)
        for mk in data["marks"]:
            ax.axvline(mk["t"] - t0, color="#7a3fa0", lw=0.8, ls="--")
        ax.grid(axis="y", color="#eee")
    for m in moves:
        ax1.annotate(f"-> {m.get('to')}", (m.get("t_down", m["t"]) - t0, ax1.get_ylim()[1]), fontsize=7,
                     rotation=90, va="top", ha="right", color="#6b5300")
    for mk in data["marks"][:20]:
        ax1.annotate(mk["label"], (mk["t"] - t0, ax1.get_ylim()[1] * 0.02), fontsize=6, rotation=90, va="bottom",
                     ha="right", color="#7a3fa0")
    ax1.set_title(f"probe stream at {data['rate']:g}/s: {len(gaps)} gaps, longest "
                  f"{max((g['seconds'] for g in gaps), default=0) * 1000:.1f} ms; moves shaded, SA/registration events dashed",
                  fontsize=9)
    fig.tight_layout()
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    plt.close(fig)
    svg = buf.getvalue()
    return svg[svg.index("<svg"):]  # inline: without the XML prologue and doctype


def probe_plot(case_dir: Path, timeline: list[dict]) -> str | None:
    data = probe_data(case_dir)
    return plot_svg(data, timeline) if data else None
