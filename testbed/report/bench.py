"""The benchmarks page's content from reports/bench/*.json: each benchmark with what it measures,
when and where, whether it met its target, its comparisons side by side (ours vs strongSwan,
one handoff mode against another) with a bar chart, and every figure in a table."""
from __future__ import annotations

import io
import json
import time
from pathlib import Path

SUMMARY_KEYS = ("median", "p95", "min", "max")
SIDES = ("ours", "strongswan", "xfrm", "rfc5265", "ike")  # the prefixes of figures compared side by side


def flatten(data, prefix: str = "") -> list[tuple[str, str]]:
    out = []
    if isinstance(data, dict):
        for k, v in data.items():
            out += flatten(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(data, list) and data and all(isinstance(x, (dict, list)) for x in data):
        for i, v in enumerate(data[:50]):
            out += flatten(v, f"{prefix}[{i}]")
    else:
        text = json.dumps(data) if not isinstance(data, str) else data
        out.append((prefix, text if len(text) < 200 else text[:197] + "..."))
    return out


def _num(x):
    return x if isinstance(x, (int, float)) and not isinstance(x, bool) else None


def comparisons(data: dict) -> list[dict]:
    """Side-by-side tables: keys `<a>_<metric>` and `<b>_<metric>` of one dict (ours_mbps against
    strongswan_mbps, per row), and sibling dicts holding the same summary (handoff modes)."""
    out = []

    def pairs_of(d: dict) -> dict:
        rows = {}
        for key, val in d.items():
            if isinstance(val, dict):
                continue
            for side in SIDES:
                if key.startswith(side + "_") and _num(val) is not None:
                    rows.setdefault(key[len(side) + 1:], {})[side] = val
        return {m: sides for m, sides in rows.items() if len(sides) >= 2}

    def walk(d: dict, path: str):
        children = {k: pairs_of(v) for k, v in d.items() if isinstance(v, dict)}
        if len(children) >= 2 and all(children.values()):
            # siblings compared alike (throughput per ESP transform): one table, a row per sibling and figure
            paired = {f"{k} {m}": sides for k, ps in children.items() for m, sides in ps.items()}
            sides = sorted({s for v in paired.values() for s in v}, key=SIDES.index)
            out.append({"title": path or "comparison", "headers": sides,
                        "rows": [{"label": m, "cells": [v.get(s, "-") for s in sides]} for m, v in paired.items()],
                        "series": {s: [v.get(s) for v in paired.values()] for s in sides}, "labels": list(paired)})
            return
        paired = pairs_of(d)
        if paired:
            sides = sorted({s for v in paired.values() for s in v}, key=SIDES.index)
            out.append({"title": path or "comparison", "headers": sides,
                        "rows": [{"label": m, "cells": [v.get(s, "-") for s in sides]} for m, v in paired.items()],
                        "series": {s: [v.get(s) for v in paired.values()] for s in sides}, "labels": list(paired)})
        summaries = {k: v for k, v in d.items() if isinstance(v, dict) and any(
            isinstance(x, dict) and "median" in x for x in v.values())}
        if len(summaries) >= 2:
            metrics = sorted({m for v in summaries.values() for m, x in v.items() if isinstance(x, dict) and "median" in x})
            for metric in metrics:
                rows_ = [{"label": name, "cells": [v.get(metric, {}).get(k, "-") for k in SUMMARY_KEYS]}
                         for name, v in summaries.items()]
                out.append({"title": f"{path + ': ' if path else ''}{metric} by {', '.join(summaries)}",
                            "headers": list(SUMMARY_KEYS), "rows": rows_,
                            "series": {"median": [r["cells"][0] for r in rows_], "p95": [r["cells"][1] for r in rows_]},
                            "labels": list(summaries)})
        for key, val in d.items():
            if isinstance(val, dict) and key not in summaries:
                walk(val, f"{path}.{key}" if path else key)

    walk(data, "")
    return out[:12]


def bar_svg(labels: list[str], series: dict[str, list]) -> str | None:
    if not labels or not any(_num(x) is not None for xs in series.values() for x in xs):
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.fonttype"] = "none"
    fig, ax = plt.subplots(figsize=(min(9, 2 + 1.3 * len(labels)), 2.6))
    width = 0.8 / max(1, len(series))
    for i, (name, values) in enumerate(series.items()):
        xs = [j + i * width for j in range(len(labels))]
        ax.bar(xs, [_num(v) or 0 for v in values], width=width, label=name)
    ax.set_xticks([j + width * (len(series) - 1) / 2 for j in range(len(labels))])
    ax.set_xticklabels(labels, fontsize=8, rotation=15 if len(labels) > 3 else 0)
    ax.legend(fontsize=8, frameon=False)
    ax.grid(axis="y", color="#eee")
    fig.tight_layout()
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    plt.close(fig)
    svg = buf.getvalue()
    return svg[svg.index("<svg"):]


def load_benches(bench_dir: Path) -> list[dict]:
    out = []
    for path in sorted(bench_dir.glob("*.json")) if bench_dir.is_dir() else []:
        try:
            data = json.loads(path.read_text())
        except ValueError as exc:
            out.append({"name": path.stem, "what": f"unreadable: {exc}", "date": "-", "machine": "-", "target": None,
                        "comparisons": [], "flat": []})
            continue
        rec = data.get("recorded", {}) if isinstance(data.get("recorded"), dict) else {}
        date = rec.get("date") or time.strftime("%Y-%m-%d %H:%M UTC (file time)", time.gmtime(path.stat().st_mtime))
        machine = rec.get("machine") or ", ".join(
            f"{k} {data[k]}" for k in ("cpus", "machine", "python") if k in data) or "a machine it did not record"
        target = data.get("meets_target", data.get("meets_targets"))
        cmps = comparisons(data)
        for c in cmps:
            c["plot"] = bar_svg(c["labels"], c["series"])
        out.append({"name": path.stem, "what": data.get("what") or data.get("scope") or "", "date": date,
                    "machine": machine, "target": target if isinstance(target, bool) else None,
                    "comparisons": cmps, "flat": flatten({k: v for k, v in data.items() if k != "runs"})})
    return out
