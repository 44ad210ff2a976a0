"""The remote-access load generator: N IKEv2 initiators against a VPN gateway of any installed
profile, at an offered rate, in one process with one event loop (`testbed load`, benchmarks/bench_load.py,
cases/remote_access/test_load_smoke.py).

The world is conformance-sgw's with a big pool (fixtures/scenarios/load-sgw.yaml): the gateway gets
one user per client (distinct identities: strongSwan's `unique = replace` would let one identity
hold only one IKE SA). The clients speak from the attacker's node on the Internet (atk): the
benchmarking range 198.18.0.0/16 (RFC 2544) is routed there by the core router and made local on
atk with one `ip route add local` (no address per client to add), each client from its own
address, port 500 (4500 after a NAT detection, which strongSwan's userspace ESP fakes). One UDP
socket per port (bound to 0.0.0.0:500 and :4500, the source chosen per datagram with IP_PKTINFO) and
one raw ESP socket (IP_HDRINCL) carry every client; answers are demultiplexed by
the IKE initiator SPI and the ESP SPI. Each client (testbed/load_client.py) sets up its IKE SA and
child SA with a CP request, sends one ICMP echo to H through it, and after the setup phase one
liveness check (empty INFORMATIONAL) goes over every established SA.

Measured: offered, established, failed by cause, setups/s, time to establish (p50/p95/p99), the
gateway's CPU seconds and RSS (its process tree, /proc) over the run and at 1k/10k/50k SAs,
RSS per SA, probes lost, the generator's own CPU (saturated near one core). Written to load.json
and load.svg in the report directory.
"""
from __future__ import annotations

import dataclasses
import heapq
import ipaddress
import json
import os
import resource
import selectors
import socket
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from testbed.load_client import GROUPS, LoadClient

CLIENT_NET = ipaddress.ip_network("198.18.0.0/16")  # RFC 2544 benchmarking range
CLIENT_NODE = "atk"
BASE_SCENARIO = "load-sgw"
MILESTONES = (1000, 10000, 50000)
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
NON_ESP_MARKER = bytes(4)  # RFC 3948 2.2
SATURATED = 0.9  # generator CPU / wall time above this: the generator is the bottleneck
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


# ---------------------------------------------------------------------------------------- pure parts
def percentile(samples, p: float) -> float | None:
    """The p-th percentile (0..100) by linear interpolation between closest ranks; None when empty."""
    xs = sorted(samples)
    if not xs:
        return None
    if len(xs) == 1:
        return float(xs[0])
    k = (len(xs) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return float(xs[lo] + (xs[hi] - xs[lo]) * (k - lo))


def client_identity(i: int) -> str:
    return f"load-{i:05d}@testbed"


def client_psk(i: int) -> str:
    return f"load-psk-{i:05d}"


def client_password(i: int) -> str:
    return f"load-password-{i:05d}"


def client_address(i: int) -> str:
    return str(CLIENT_NET.network_address + 256 + i)  # from 198.18.1.0 on


def generate_users(n: int, subnets=("10.1.0.0/16",)) -> dict:
    """The gateway's users config for n clients: one identity each."""
    return {client_identity(i): {"psk": client_psk(i), "password": client_password(i), "subnets": list(subnets)}
            for i in range(n)}


def progress_line(done: int, total: int, established: int, failed: int, rate: float, p95: float | None,
                  gw_rss_kib: int | None, gen_cpu: float | None, width: int = 24, phase: str = "setup") -> str:
    """One line: a bar of started-and-finished clients, counts, the achieved setup rate, p95, the
    gateway's RSS and the generator's CPU share."""
    frac = 0.0 if total <= 0 else min(1.0, done / total)
    filled = int(round(frac * width))
    bar = "#" * filled + "." * (width - filled)
    parts = [f"{phase:5} [{bar}] {done}/{total}", f"up {established}", f"fail {failed}", f"{rate:.1f}/s"]
    if p95 is not None:
        parts.append(f"p95 {p95:.3f}s")
    if gw_rss_kib is not None:
        parts.append(f"gw {gw_rss_kib / 1024:.1f}MiB")
    if gen_cpu is not None:
        parts.append(f"gen {gen_cpu * 100:.0f}%")
    return " | ".join(parts)


LOAD_KEYS = ("offered", "established", "failed", "setups_per_s", "p50_s", "p95_s", "p99_s", "gateway_rss_kib_per_sa",
             "gateway_cpu_s", "probes_lost", "generator_cpu_s", "generator_saturated")


def write_load_json(directory: Path, result: dict) -> Path:
    """load.json: the keys every reader relies on first (LOAD_KEYS, all present), then the rest."""
    missing = [k for k in LOAD_KEYS if k not in result]
    if missing:
        raise ValueError(f"load result lacks {missing}")
    directory.mkdir(parents=True, exist_ok=True)
    ordered = {k: result[k] for k in LOAD_KEYS}
    ordered.update({k: v for k, v in result.items() if k not in ordered})
    path = directory / "load.json"
    path.write_text(json.dumps(ordered, indent=2) + "\n")
    return path


def svg_plot(samples: list[dict], title: str = "") -> str:
    """Two panels against established SAs: setups/s and the gateway's RSS (MiB). `samples`: dicts with
    established, setups_per_s, gateway_rss_kib."""
    W, H, ML, MR, MT, PH, GAP = 640, 460, 70, 20, 40, 170, 50
    pw = W - ML - MR
    pts = [s for s in samples if s.get("established") is not None]
    xmax = max([s["established"] for s in pts] + [1])

    def panel(y0: int, key: str, label: str, scale: float, colour: str) -> list[str]:
        vals = [(s["established"], s[key] * scale) for s in pts if s.get(key) is not None]
        ymax = max([v for _, v in vals] + [1e-9]) * 1.1
        out = [f'<rect x="{ML}" y="{y0}" width="{pw}" height="{PH}" fill="none" stroke="#888"/>',
               f'<text x="{ML - 8}" y="{y0 + 12}" text-anchor="end" font-size="11">{ymax:.4g}</text>',
               f'<text x="{ML - 8}" y="{y0 + PH}" text-anchor="end" font-size="11">0</text>',
               f'<text x="{ML + 6}" y="{y0 + 14}" font-size="12" fill="{colour}">{label}</text>']
        if vals:
            path = " ".join(f"{ML + pw * x / xmax:.1f},{y0 + PH - PH * y / ymax:.1f}" for x, y in vals)
            out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.5"/>')
        return out

    y1, y2 = MT, MT + PH + GAP
    body = [f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="14">{_esc(title)}</text>']
    body += panel(y1, "setups_per_s", "setups/s", 1.0, "#1f77b4")
    body += panel(y2, "gateway_rss_kib", "gateway RSS (MiB)", 1 / 1024, "#d62728")
    for y in (y1 + PH, y2 + PH):
        body.append(f'<text x="{ML}" y="{y + 14}" font-size="11">0</text>')
        body.append(f'<text x="{ML + pw}" y="{y + 14}" text-anchor="end" font-size="11">{xmax}</text>')
    body.append(f'<text x="{ML + pw / 2}" y="{y2 + PH + 30}" text-anchor="middle" font-size="12">established SAs</text>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
            f'font-family="sans-serif">\n<rect width="100%" height="100%" fill="white"/>\n' + "\n".join(body) + "\n</svg>\n")


def _esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def summarize(clients: list[LoadClient], t0: float, gateway: dict, generator_cpu_s: float, wall_s: float,
              extra: dict | None = None) -> dict:
    """The load.json figures from the clients' end states (pure: the gateway's and generator's
    figures are given)."""
    est = [cl for cl in clients if cl.established]
    times = [cl.t_established - cl.t_start for cl in est]
    failed: dict[str, int] = {}
    for cl in clients:
        if not cl.established:
            cause = cl.cause or ("not_started" if cl.t_start is None else f"timeout:{cl.state}")
            failed[cause] = failed.get(cause, 0) + 1
    first = min((cl.t_start for cl in clients if cl.t_start is not None), default=t0)
    last = max((cl.t_established for cl in est), default=first)
    span = last - first
    rate = len(est) / span if span > 0 else float(len(est))
    active_cpu_share = generator_cpu_s / wall_s if wall_s > 0 else 0.0
    rss_per_sa = gateway.get("rss_per_sa_kib")
    out = {
        "offered": len(clients),
        "established": len(est),
        "failed": dict(sorted(failed.items())),
        "setups_per_s": round(rate, 2),
        "p50_s": _r(percentile(times, 50)), "p95_s": _r(percentile(times, 95)), "p99_s": _r(percentile(times, 99)),
        "gateway_rss_kib_per_sa": None if rss_per_sa is None else round(rss_per_sa, 2),
        "gateway_cpu_s": gateway.get("cpu_s"),
        "probes_lost": sum(1 for cl in est if cl.probe_ok is not True),
        "generator_cpu_s": round(generator_cpu_s, 3),
        "generator_saturated": active_cpu_share > SATURATED,
        "generator_cpu_share": round(active_cpu_share, 3),
        "dpd_sent": sum(1 for cl in clients if cl.dpd_ok is not None),
        "dpd_lost": sum(1 for cl in clients if cl.dpd_ok is False),
        "cookies": sum(cl.cookies for cl in clients),
        "gateway_requests_answered": sum(cl.peer_requests for cl in clients),
        "wall_s": round(wall_s, 3),
    }
    out.update(extra or {})
    return out


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


# ---------------------------------------------------------------------------------------- the gateway in /proc
def _children(pid: int) -> list[int]:
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def process_tree(pid: int) -> list[int]:
    seen, todo = [], [pid]
    while todo:
        p = todo.pop()
        if p not in seen:
            seen.append(p)
            todo += _children(p)
    return seen


def proc_usage(pids: list[int]) -> tuple[float, int]:
    """(CPU seconds user+system, RSS KiB) summed over `pids` (gone ones count nothing)."""
    cpu, rss = 0.0, 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / CLK_TCK
            with open(f"/proc/{pid}/statm") as f:
                rss += int(f.read().split()[1]) * PAGE_KIB
        except (OSError, IndexError, ValueError):
            pass
    return cpu, rss


@dataclass
class GatewayProbe:
    """The gateway's processes (the role's node, every process the world started there but capture
    and DHCP helpers, and their children) and their usage since the baseline."""
    pids: list[int]
    names: list[str]
    cpu0: float = 0.0
    rss0: int = 0

    @classmethod
    def find(cls, world, node: str) -> "GatewayProbe":
        procs = [p for p in world.processes if p.node == node and p.running()
                 and not any(k in p.name for k in ("tcpdump", "capture", "dnsmasq"))]
        pids, names = [], []
        for p in procs:
            pids += [x for x in process_tree(p.pid) if x not in pids]
            names.append(p.name)
        g = cls(pids, names)
        g.cpu0, g.rss0 = proc_usage(pids)
        return g

    def refresh(self) -> None:
        for p in list(self.pids):
            self.pids += [x for x in process_tree(p) if x not in self.pids]

    def sample(self) -> tuple[float, int]:
        cpu, rss = proc_usage(self.pids)
        return cpu - self.cpu0, rss


# ---------------------------------------------------------------------------------------- the generator
def pktinfo(src: str) -> list:
    return [(socket.IPPROTO_IP, IP_PKTINFO, struct.pack("=I4s4s", 0, socket.inet_aton(src), bytes(4)))]


def ip_header(src: str, dst: str, proto: int, payload_len: int) -> bytes:
    """The outer IPv4 header of an ESP packet (the kernel fills ID and checksum, raw(7))."""
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + payload_len, 0, 0x4000, 64, proto, 0,
                       socket.inet_aton(src), socket.inet_aton(dst))


@dataclass
class Generator:
    """The event loop over all clients: one UDP socket and one raw ESP socket in the clients' node."""
    node_pid: int
    gateway: str
    clients: list[LoadClient]
    rate: float
    gw: GatewayProbe | None = None
    timeout: float | None = None        # the whole setup phase's limit (default: N/R + 30 s)
    dpd: bool = True
    show_progress: bool = True
    sample_every: float = 0.5
    samples: list[dict] = field(default_factory=list)
    milestones: dict = field(default_factory=dict)
    stream = sys.stderr

    def __post_init__(self):
        from testbed.conformance import netns
        self.by_spi_i = {cl.spi_i: cl for cl in self.clients}
        self.by_spi_in: dict[bytes, LoadClient] = {}
        self.udp = netns.udp_socket(self.node_pid, "0.0.0.0", 500)
        self.udp4500 = netns.udp_socket(self.node_pid, "0.0.0.0", 4500)
        self.esp = netns.raw_socket(self.node_pid, 50, header_included=True)
        for s in (self.udp, self.udp4500, self.esp):
            s.setblocking(False)
            for opt, size in ((getattr(socket, "SO_RCVBUFFORCE", 33), 32 << 20), (getattr(socket, "SO_SNDBUFFORCE", 32), 8 << 20)):
                try:
                    s.setsockopt(socket.SOL_SOCKET, opt, size)
                except OSError:
                    pass
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.udp, selectors.EVENT_READ, "ike")
        self.sel.register(self.udp4500, selectors.EVENT_READ, "nat-t")
        self.sel.register(self.esp, selectors.EVENT_READ, "esp")
        self.timers: list = []
        self.send_errors = 0
        self.tty = getattr(self.stream, "isatty", lambda: False)()

    def close(self) -> None:
        self.sel.close()
        self.udp.close()
        self.udp4500.close()
        self.esp.close()

    # ---- I/O
    def _emit(self, cl: LoadClient, out: list) -> None:
        for kind, data in out:
            try:
                if cl.port == 4500:
                    self.udp4500.sendmsg([NON_ESP_MARKER + data if kind == "ike" else data], pktinfo(cl.local), 0,
                                         (self.gateway, 4500))
                elif kind == "ike":
                    self.udp.sendmsg([data], pktinfo(cl.local), 0, (self.gateway, 500))
                else:
                    self.esp.sendto(ip_header(cl.local, self.gateway, 50, len(data)) + data, (self.gateway, 0))
            except (BlockingIOError, OSError):
                self.send_errors += 1   # a retransmission covers it
        if cl.spi_in is not None and cl.spi_in not in self.by_spi_in:
            self.by_spi_in[cl.spi_in] = cl
        if cl.deadline is not None:
            heapq.heappush(self.timers, (cl.deadline, cl.index))

    def _drain(self, sock, kind: str, now: float, budget: int = 512) -> None:
        for _ in range(budget):
            try:
                raw = sock.recv(65535)
            except (BlockingIOError, InterruptedError):
                return
            if kind == "nat-t":
                if raw[:4] == NON_ESP_MARKER:
                    cl = self.by_spi_i.get(raw[4:12])
                    if cl is not None:
                        self._emit(cl, cl.on_ike(raw[4:], now))
                elif len(raw) >= 8:
                    cl = self.by_spi_in.get(raw[:4])
                    if cl is not None:
                        self._emit(cl, cl.on_esp(raw, now))
            elif kind == "ike":
                cl = self.by_spi_i.get(raw[:8])
                if cl is not None:
                    self._emit(cl, cl.on_ike(raw, now))
            else:
                ihl = (raw[0] & 0x0F) * 4
                cl = self.by_spi_in.get(raw[ihl:ihl + 4])
                if cl is not None:
                    self._emit(cl, cl.on_esp(raw[ihl:], now))

    def _fire_timers(self, now: float) -> None:
        while self.timers and self.timers[0][0] <= now:
            deadline, i = heapq.heappop(self.timers)
            cl = self.clients[i]
            if cl.deadline is not None and cl.deadline <= now:
                self._emit(cl, cl.on_timer(now))

    def _loop(self, launch, finished, deadline: float, phase: str, launched_of) -> None:
        """Launch (launch(now) -> list of clients to start, with their output) until finished()."""
        next_sample = next_show = 0.0
        while True:
            now = time.monotonic()
            launch(now)
            self._fire_timers(now)
            if finished() or now > deadline:
                break
            wait = 0.05
            if self.timers:
                wait = min(wait, max(0.0, self.timers[0][0] - now))
            for key, _ in self.sel.select(wait):
                self._drain(key.fileobj, key.data, time.monotonic())
            now = time.monotonic()
            if now >= next_sample:
                self._sample(now)
                next_sample = now + self.sample_every
            if self.show_progress and now >= next_show:
                self._show(phase, launched_of(), now)
                next_show = now + (0.2 if self.tty else 5.0)
        self._sample(time.monotonic())
        if self.show_progress:
            self._show(phase, launched_of(), time.monotonic(), final=True)

    def _sample(self, now: float) -> None:
        est = sum(1 for cl in self.clients if cl.established)
        recent = [cl for cl in self.clients if cl.established and cl.t_established > now - 2.0]
        s = {"t": round(now - self.t0, 3), "established": est, "setups_per_s": round(len(recent) / min(2.0, max(now - self.t0, 1e-3)), 2),
             "generator_cpu_s": round(time.process_time() - self.cpu0, 3)}
        if self.gw is not None:
            cpu, rss = self.gw.sample()
            s.update(gateway_cpu_s=round(cpu, 3), gateway_rss_kib=rss)
        self.samples.append(s)
        for m in MILESTONES:
            if est >= m and m not in self.milestones:
                self.milestones[m] = s

    def _show(self, phase: str, done: int, now: float, final: bool = False) -> None:
        est = [cl for cl in self.clients if cl.established]
        fails = sum(1 for cl in self.clients if cl.state == "failed")
        recent = [cl.t_established - cl.t_start for cl in est[-500:]]
        last = self.samples[-1] if self.samples else {}
        wall = now - self.t0
        line = progress_line(done, len(self.clients), len(est), fails, last.get("setups_per_s", 0.0),
                             percentile(recent, 95), last.get("gateway_rss_kib"),
                             (time.process_time() - self.cpu0) / wall if wall > 0 else None, phase=phase)
        if self.tty:
            self.stream.write("\r\x1b[K" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    # ---- the run
    def run(self) -> dict:
        n = len(self.clients)
        self.t0, self.cpu0 = time.monotonic(), time.process_time()
        if self.gw is not None:
            self.gw.refresh()
        self._sample(self.t0)
        interval = 1.0 / self.rate if self.rate > 0 else 0.0
        state = {"next": 0}
        timeout = self.timeout if self.timeout is not None else n * interval + 30.0

        def launch(now: float) -> None:
            while state["next"] < n and self.t0 + state["next"] * interval <= now:
                cl = self.clients[state["next"]]
                state["next"] += 1
                self._emit(cl, cl.start(now))

        self._loop(launch, lambda: state["next"] >= n and all(cl.done for cl in self.clients),
                   self.t0 + timeout, "setup", lambda: sum(1 for cl in self.clients if cl.done))
        setup_wall = time.monotonic() - self.t0
        setup_cpu = time.process_time() - self.cpu0
        gw_after_setup = self.gw.sample() if self.gw is not None else (None, None)
        # one liveness check per established SA, at the same offered rate
        if self.dpd:
            up = [cl for cl in self.clients if cl.state == "up"]
            state2 = {"next": 0}
            t1 = time.monotonic()

            def launch_dpd(now: float) -> None:
                while state2["next"] < len(up) and t1 + state2["next"] * interval <= now:
                    cl = up[state2["next"]]
                    state2["next"] += 1
                    self._emit(cl, cl.dpd(now))

            self._loop(launch_dpd, lambda: state2["next"] >= len(up) and all(cl.state != "dpd" for cl in up),
                       t1 + len(up) * interval + 15.0, "dpd",
                       lambda: sum(1 for cl in up if cl.dpd_ok is not None))
        wall = time.monotonic() - self.t0
        gen_cpu = time.process_time() - self.cpu0
        gateway = {}
        if self.gw is not None:
            cpu, rss = self.gw.sample()
            est = sum(1 for cl in self.clients if cl.established)
            gateway = {"cpu_s": round(cpu, 3), "rss_kib": rss, "rss_baseline_kib": self.gw.rss0,
                       "rss_after_setup_kib": gw_after_setup[1], "cpu_setup_s": round(gw_after_setup[0], 3),
                       "rss_per_sa_kib": (gw_after_setup[1] - self.gw.rss0) / est if est else None,
                       "processes": self.gw.names, "pids": self.gw.pids}
        extra = {"rate_offered": self.rate, "setup_wall_s": round(setup_wall, 3),
                 "generator_cpu_setup_s": round(setup_cpu, 3), "gateway": gateway,
                 "milestones": {str(k): v for k, v in self.milestones.items()}, "send_errors": self.send_errors}
        res = summarize(self.clients, self.t0, gateway, gen_cpu, wall, extra)
        # saturation is judged over the setup phase, where the offered rate applies
        res["generator_cpu_share"] = round(setup_cpu / setup_wall, 3) if setup_wall > 0 else 0.0
        res["generator_saturated"] = res["generator_cpu_share"] > SATURATED
        res["samples"] = self.samples
        return res


# ---------------------------------------------------------------------------------------- the world
def load_scenario(profile: str, n: int, auth: str = "psk", base: str = BASE_SCENARIO, users: dict | None = None):
    """The base scenario with one user per client and the gateway filled by `profile`."""
    from testbed.scenario import load_named

    s = load_named(base)
    gw = s.roles["gw"]
    cfg = {**gw.config, "users": users if users is not None else generate_users(n), "auth": auth}
    roles = {**s.roles, "gw": dataclasses.replace(gw, config=cfg)}
    return dataclasses.replace(s, roles=roles).with_impls({"gw": profile})


def prepare_clients_node(world, count: int, node: str = CLIENT_NODE) -> None:
    """CLIENT_NET local on `node` (AnyIP: every address of it is the node's own) and routed there
    by the core router."""
    router = str(world.plan.address(node, "inet"))
    world.run_in(node, f"ip route replace local {CLIENT_NET} dev lo", check=True)
    world.run_in("core", f"ip route replace {CLIENT_NET} via {router}", check=True)
    world.run_in(node, "sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.ip_nonlocal_bind=1", check=False)


def make_clients(world, scenario, n: int, auth: str, group: int) -> list[LoadClient]:
    plan = world.plan
    gw_role = scenario.roles["gw"]
    gateway, inside = str(plan.address(gw_role.node, "dmz")), str(plan.address("h"))
    users = list(gw_role.config["users"].items())
    if n > len(users):
        raise ValueError(f"{n} clients but the gateway has {len(users)} users")
    out = []
    for i, (uid, u) in enumerate(users[:n]):
        out.append(LoadClient(i, client_address(i), gateway, uid, str(u["psk"]).encode(), inside, auth=auth,
                              password=None if u.get("password") is None else str(u["password"]).encode(),
                              group=group))
    return out


def load_in_world(world, scenario, n: int, rate: float, auth: str = "psk", group: int = 19,
                  report_dir: Path | None = None, show_progress: bool = True, timeout: float | None = None,
                  dpd: bool = True) -> dict:
    """Run the load against the started gateway role of `scenario` in `world`; writes load.json and
    load.svg into `report_dir` when given."""
    if group not in GROUPS:
        raise ValueError(f"group {group}: choose one of {sorted(GROUPS)}")
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    except (ValueError, OSError):
        pass
    prepare_clients_node(world, n)
    clients = make_clients(world, scenario, n, auth, group)
    gw_role = scenario.roles["gw"]
    probe = GatewayProbe.find(world, gw_role.node)
    gen = Generator(world.pid(CLIENT_NODE), clients[0].gateway, clients, rate, gw=probe, timeout=timeout,
                    dpd=dpd, show_progress=show_progress)
    try:
        res = gen.run()
    finally:
        gen.close()
    res = {**res, "implementation": gw_role.impl, "auth": auth, "group": group, "scenario": scenario.name}
    if report_dir is not None:
        write_load_json(Path(report_dir), res)
        title = f"{gw_role.impl}: {n} clients at {rate:g}/s (group {group}, {auth})"
        (Path(report_dir) / "load.svg").write_text(svg_plot(res["samples"], title))
    return res


def run_load(profile: str, n: int, rate: float, auth: str = "psk", group: int = 19, report_dir: Path | None = None,
             run=None, show_progress: bool = True, timeout: float | None = None) -> dict:
    """Build the world, start the gateway `profile` with n users, run the load, tear down. `run`: a
    registered testbed Run (one is made, with a private network namespace, when None)."""
    from testbed.profiles import start_roles
    from testbed.world import World

    own_run = run is None
    if own_run:
        from mininet.log import setLogLevel

        from testbed.isolation import enter_private_netns
        from testbed.naming import new_run_id
        from testbed.runs import Run
        setLogLevel("critical")
        enter_private_netns()
        run = Run.register(new_run_id("load"))
    report_dir = Path(report_dir) if report_dir is not None else None
    scenario = load_scenario(profile, n, auth)
    log_dir = (report_dir or Path("/tmp")) / "logs"
    world = None
    handles: dict = {}
    try:
        world = World.for_scenario(run, log_dir, scenario)
        t = time.monotonic()
        handles = start_roles(world, scenario.roles.values())
        started_in = time.monotonic() - t
        res = load_in_world(world, scenario, n, rate, auth, group, report_dir, show_progress, timeout)
        res["gateway_started_in_s"] = round(started_in, 3)
        if report_dir is not None:
            write_load_json(report_dir, res)
        return res
    finally:
        for h in reversed(list(handles.values())):
            try:
                h.stop()
            except Exception:  # noqa: BLE001 - teardown goes on
                pass
        if world is not None:
            world.stop()
        if own_run:
            run.close()
