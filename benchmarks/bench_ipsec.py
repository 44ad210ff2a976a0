"""IPsec remote access: IKE setup time and iperf3 TCP throughput from R to H through the tunnel.

    sudo .venv/bin/python -m benchmarks.bench_ipsec [--profiles ours strongswan] [--seconds 5]
        [--esp aes128gcm16 aes128-sha256] [--no-mixed] [--setups 3] [--rounds 1]

For every pair of implementations (gateway G, client R) and every ESP
transform, a fresh world of the scenario remote-access-basic (R on fn1, NAPT at G_i) is built and:

  * setup time: from the first IKE_SA_INIT on the wire (tcpdump on r-eth0, the first packet to
    UDP 500 that tshark decodes as IKE_SA_INIT) to the first echo reply from H (10.1.2.10) that
    a ping loop on R (one echo every 2 ms, `ping -D` timestamps) gets through the tunnel; split
    on the wire into `ike_s` (to the last IKE_AUTH response R receives) and `auth_to_traffic_s`,
    itself cut at the first ESP packets on R's link (`esp_split`: to the first ESP out, its round
    trip through G to H and back, from the first ESP in to the reply).
    Then the client role is stopped and started again in the same world (gateway still up) for
    --setups samples in all; the first (cold) sample and the repeats are kept apart, the
    comparison takes the median of all of them;
  * throughput: `iperf3 -c 10.1.2.10 -t N -J` on R against `iperf3 -s` on H; the figure is the
    receiver's rate (end.sum_received.bits_per_second).

The pairs are ours-ours and strongswan-strongswan (both roles filled by one profile) and, unless
--no-mixed, the two mixed pairs (our client with a strongSwan gateway and the other way round).
The ESP transform reaches the roles as the config key `esp_proposals` (a list of strongSwan-style
proposal strings), which both profiles read; the transform each child SA actually negotiated is
read back from the status and recorded.

Targets: our pair's throughput >= 1.5 x strongswan-strongswan's for each transform on the same wire
format, and ours-ours setup time no slower than strongswan-strongswan's (the medians of all setup samples of
either pair, over both transforms; the per-transform setup ratios are printed too). For reference, strongSwan (kernel-libipsec) was
measured on such a machine at about 400 Mbit/s with AES-GCM and 250 Mbit/s with AES-CBC/SHA-256.

A role that fails to start or a tunnel that does not come up is recorded as that measurement's
`error`; the benchmark goes on with the next one.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import re
import statistics
import tempfile
import time
import traceback
from pathlib import Path


from benchmarks.common import publish, start_bench_run
from testbed.ipsec_checks import established
from testbed.capture import start_capture
from testbed.profiles import start_role
from testbed.runs import Run
from testbed.scenario import load_named
from testbed.world import World

SCENARIO = "remote-access-basic"
H_ADDR = "10.1.2.10"
R_IF = "r-eth0"
R_ADDR = "192.0.2.100"  # R on fn1, as the scenario places it
ESP_SPLIT = ("auth_to_first_esp_s", "first_esp_round_trip_s", "esp_in_to_reply_s")  # see esp_split
PING_INTERVAL = 0.002  # s between echo requests of the setup probe (the resolution of the setup time)
SETUP_TIMEOUT = 20.0  # s to wait for the first echo reply after the client role is up
CLOSE_WAIT = 2.0  # s to let iperf3's connections close through the tunnel
REPEAT_PAUSE = 0.3  # s between stopping the client role and starting it again (setup samples 2..n)
ESP_NAMES = {"aes128gcm16": "AES-128-GCM-16", "aes256gcm16": "AES-256-GCM-16", "aes128-sha256": "AES-128-CBC/HMAC-SHA-256-128"}
# a reference, not a target: strongSwan with kernel-libipsec measured on such a machine at about these rates
ISSUE_REFERENCE_MBPS = {"aes128gcm16": 400, "aes128-sha256": 250}
THROUGHPUT_RATIO_TARGET = 1.5  # the project's target: ours / strongSwan on the same wire format, per transform
_REPLY = re.compile(r"^\[(?P<t>\d+\.\d+)\] \d+ bytes from " + re.escape(H_ADDR) + r"\b")


class MeasureError(RuntimeError):
    pass


# ---- the ESP choice: the `esp_proposals` key of both profiles' role configs ----------------
# A "+encap" profile is ours with the client's force_encap: IKE moves to 4500 and ESP is
# UDP-encapsulated (RFC 3948), the wire format strongSwan's kernel-libipsec always uses.
PROFILES = ("ours", "ours+encap", "strongswan", "strongswan-kernel")
# the reference pair our pair is compared with, and the prefix of its figures in ipsec.json (the
# report's side-by-side tables, testbed/report/bench.py SIDES): strongSwan with kernel-libipsec (its
# userspace data plane, which runs on any kernel) or with the kernel's XFRM (where the kernel has ESP,
# e.g. the Vagrant VM's stock kernel): the physical anchor for a userspace data plane
REFERENCES = {"strongswan": "strongswan", "strongswan-kernel": "xfrm"}


def impl_of(profile: str) -> str:
    return profile.split("+", 1)[0]


def scenario_for(gateway: str, client: str, esp: str):
    base = load_named(SCENARIO)
    (gw_role,) = base.roles_of("vpn-gateway")
    (cl_role,) = base.roles_of("vpn-client")
    sc = base.with_impls({gw_role.name: impl_of(gateway), cl_role.name: impl_of(client)})
    encap = {"force_encap": True} if client.endswith("+encap") else {}
    roles = {name: dataclasses.replace(r, config={**(r.config or {}), "esp_proposals": [esp],
                                                  **(encap if name == cl_role.name else {})})
             for name, r in sc.roles.items()}
    return dataclasses.replace(sc, roles=roles)


# ---- status helpers -------------------------------------------------------------------------------
def wait_established(handle, timeout: float) -> tuple[dict, dict]:
    deadline = time.monotonic() + timeout
    status: dict = {}
    while time.monotonic() < deadline:
        status = handle.status()
        found = established(status)
        if found:
            return found
        time.sleep(0.05)
    brief = {k: status.get(k) for k in ("initiate", "last_error", "state") if k in status}
    for ike in status.get("ike_sas", [])[:1]:
        brief["ike_sa"] = {k: ike.get(k) for k in ("state", "core_state", "last_error")}
    raise MeasureError(f"role {handle.role.name} ({handle.role.impl}) "
                       f"shows no established tunnel after {timeout:.0f} s: {brief}")


def negotiated(child: dict) -> dict:
    return {k: child.get(k) for k in ("encr_alg", "encr_keysize", "integ_alg", "encap")}


# ---- one measurement ------------------------------------------------------------------------------
def first_reply(log: Path) -> float | None:
    if not log.exists():
        return None
    for line in log.read_text(errors="replace").splitlines():
        m = _REPLY.match(line)
        if m:
            return float(m["t"])
    return None


def esp_split(cap, auth_at: float, reply_at: float) -> dict:
    """auth_to_traffic_s cut at the first ESP packets on R's link (UDP-encapsulated on 4500,
    which the capture keeps): the client's part (its SA and routes, then the probe's next echo
    request) to the first ESP out, the round trip through the gateway to H and back to the first
    ESP in, and the client's decryption to the reply the probe prints."""
    packets = cap.packets("esp", ["frame.time_epoch", "ip.dst"])
    after = [(float(p["frame.time_epoch"][0]), p["ip.dst"][0]) for p in packets
             if float(p["frame.time_epoch"][0]) > auth_at]
    out = next((t for t, dst in after if dst != R_ADDR), None)
    back = next((t for t, dst in after if dst == R_ADDR and out is not None and t > out), None)
    if out is None or back is None:
        return {}
    return {"auth_to_first_esp_s": round(out - auth_at, 4), "first_esp_round_trip_s": round(back - out, 4),
            "esp_in_to_reply_s": round(reply_at - back, 4)}


def setup_once(world, cl_role, esp: str, log_dir: Path, k: int):
    """Start the client role with a capture on r-eth0 and a ping loop to H running; returns its
    handle and {setup_s, ...}: the first IKE_SA_INIT on the wire to the first echo reply."""
    sample: dict = {}
    cap = start_capture(world, "r", R_IF, log_dir / "captures", bpf="udp port 500 or udp port 4500", name=f"r-ike-{k}")
    # (no -w: with a deadline ping quits at the first error, such as the Internet core's
    # "net unreachable" that answers until the tunnel is up)
    pinger = world.start("r", f"ping-setup-{k}", ["ping", "-n", "-D", "-i", str(PING_INTERVAL), "-c", "100000", H_ADDR])
    handle = None
    try:
        t0 = time.monotonic()
        handle = start_role(world, cl_role)
        sample["client_start_s"] = round(time.monotonic() - t0, 3)
        _, c_child = wait_established(handle, 10)
        sample["negotiated"] = {"client": negotiated(c_child)}
        deadline = time.monotonic() + SETUP_TIMEOUT
        reply_at = None
        while time.monotonic() < deadline and reply_at is None:
            reply_at = first_reply(pinger.log_path)
            if reply_at is None:
                if not pinger.running():
                    break
                time.sleep(0.05)
        pinger.stop()
        reply_at = reply_at or first_reply(pinger.log_path)
        pcap = cap.stop()
        if reply_at is None:
            raise MeasureError(f"no echo reply from {H_ADDR} through the tunnel within {SETUP_TIMEOUT:.0f} s "
                               f"(ping log {pinger.log_path})")
        inits = cap.packets("isakmp.exchangetype == 34 && udp.dstport == 500", ["frame.time_epoch"])
        if not inits:
            raise MeasureError(f"no IKE_SA_INIT to UDP 500 in the capture {pcap}")
        init_at = float(inits[0]["frame.time_epoch"][0])
        sample["setup_s"] = round(reply_at - init_at, 4)
        sample["ike_sa_init_at"], sample["first_reply_at"] = init_at, reply_at
        # the split on the wire: IKE exchanges (to the last IKE_AUTH response R receives) and the
        # rest (the roles install the tunnel's routes and data path until traffic passes)
        auths = cap.packets("isakmp.exchangetype == 35 && isakmp.flag_r == 1", ["frame.time_epoch"])
        if auths:
            auth_at = max(float(a["frame.time_epoch"][0]) for a in auths)
            sample["ike_s"] = round(auth_at - init_at, 4)
            sample["auth_to_traffic_s"] = round(reply_at - auth_at, 4)
            sample.update(esp_split(cap, auth_at, reply_at))
        return handle, sample
    except BaseException:
        if handle is not None:
            with contextlib.suppress(Exception):
                handle.stop()
        raise
    finally:
        pinger.stop()
        cap.process.stop()


def daemon_cpu_s(world, node: str) -> float:
    """CPU seconds (user + system) used so far by the IPsec daemon processes in `node`'s network
    namespace: ours (python) or strongSwan's (charon, with its kernel-libipsec threads). Kernel
    work done in a process's system calls (forwarding a packet it sends) counts; softirq work the
    kernel accounts apart (irq time accounting) does not, for either implementation."""
    netns = os.readlink(f"/proc/{world.pid(node)}/ns/net")
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.readlink(f"/proc/{pid}/ns/net") != netns:
                continue
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:  # gone meanwhile
            continue
        comm, fields = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
        if comm.startswith(("python", "charon")):
            total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
    return total / os.sysconf("SC_CLK_TCK")


def tcp_sockets(world, node: str) -> list[str]:
    out = world.run_in(node, ["ss", "-tnH", "state", "all", "( dport = :5201 or sport = :5201 )"], timeout=5).stdout
    return [" ".join(line.split()) for line in out.splitlines() if line.strip() and not line.startswith("LISTEN")]


def wait_tcp_closed(world, node: str, timeout: float) -> list[str]:
    """The iperf3 sockets still open on `node` after up to `timeout` s (TIME-WAIT does not count:
    it ends with the namespace). A socket left in FIN-WAIT-1 or LAST-ACK means the last segments
    of the connection did not get through the tunnel; the kernel keeps retransmitting them, and
    the orphaned socket keeps the node's network namespace alive for minutes (the benchmark
    destroys such sockets with `ss -K` before it stops the world)."""
    deadline = time.monotonic() + timeout
    while True:
        left = [x for x in tcp_sockets(world, node) if not x.startswith("TIME-WAIT")]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def measure(run: Run, log_root: Path, gateway: str, client: str, esp: str, seconds: int, setups: int) -> dict:
    out: dict = {"pair": f"{gateway}-{client}",
                 "gateway": gateway, "client": client, "esp": esp,
                 "load_average_1min": round(os.getloadavg()[0], 2)}  # a shared machine: say how busy
    scenario = scenario_for(gateway, client, esp)
    (gw_role,) = scenario.roles_of("vpn-gateway")
    (cl_role,) = scenario.roles_of("vpn-client")
    log_dir = Path(tempfile.mkdtemp(prefix=f"ipsec-{gateway}-{client}-{esp}-", dir=log_root))
    out["log_dir"] = str(log_dir)
    handles = []
    world = None
    stage = "building the world"
    t_total = time.monotonic()
    try:
        t0 = time.monotonic()
        world = World.for_scenario(run, log_dir, scenario)
        out["world_build_s"] = round(time.monotonic() - t0, 3)

        stage = "starting iperf3 -s on h"
        world.start("h", "iperf3-s", ["iperf3", "-s", "--forceflush"], ready="Server listening", timeout=10)

        stage = f"starting the gateway role ({gateway})"
        handles.append(start_role(world, gw_role))

        stage = f"setting up the tunnel ({client} client)"
        handle, first = setup_once(world, cl_role, esp, log_dir, 0)
        handles.append(handle)
        out.update(first)
        _, g_child = wait_established(handles[0], 5)
        out["negotiated"]["gateway"] = negotiated(g_child)

        stage = "running iperf3"
        cpu_before = {node: daemon_cpu_s(world, node) for node in ("g", "r")}
        res = world.run_in("r", ["iperf3", "-c", H_ADDR, "-t", str(seconds), "-J"], timeout=seconds + 30)
        cpu_used = {node: daemon_cpu_s(world, node) - cpu_before[node] for node in ("g", "r")}
        try:
            report = json.loads(res.stdout)
        except ValueError:
            raise MeasureError(f"iperf3 gave no JSON (status {res.returncode}): {(res.stdout + res.stderr)[-400:]}") from None
        if report.get("error"):
            raise MeasureError(f"iperf3: {report['error']}")
        end = report["end"]
        out["throughput_mbps"] = round(end["sum_received"]["bits_per_second"] / 1e6, 1)
        out["sent_mbps"] = round(end["sum_sent"]["bits_per_second"] / 1e6, 1)
        received_gb = end["sum_received"]["bytes"] / 1e9
        # the cost of the data plane, less sensitive to a busy machine than the rate
        out["daemon_cpu_s_per_gb"] = {"gateway": round(cpu_used["g"] / received_gb, 2),
                                      "client": round(cpu_used["r"] / received_gb, 2)}
        out["tcp_retransmits"] = end["sum_sent"].get("retransmits")
        cpu = end.get("cpu_utilization_percent") or {}
        out["iperf_cpu_percent"] = {"sender": round(cpu.get("host_total", 0.0), 1),
                                    "receiver": round(cpu.get("remote_total", 0.0), 1)}
        # iperf3's connections should close through the tunnel (FIN and ACK both ways) before the
        # roles stop; a socket that cannot finish keeps its node's namespace alive after the world
        out["tcp_left_after_iperf"] = wait_tcp_closed(world, "r", CLOSE_WAIT)
        # the child SA's counters after the transfer: the traffic did go through the tunnel
        found = established(handles[1].status())
        if found:
            out["client_child_bytes_out"] = found[1].get("bytes_out")

        # more setup samples in the same world: the client role stopped and started again
        repeats, repeat_split, repeat_errors, repeat_esp = [], [], [], []
        for k in range(1, setups):
            stage = f"setup sample {k + 1}"
            h = handles.pop()
            h.stop()
            time.sleep(REPEAT_PAUSE)
            try:
                handle, sample = setup_once(world, cl_role, esp, log_dir, k)
            except Exception as exc:
                repeat_errors.append(f"sample {k + 1}: {type(exc).__name__}: {str(exc)[:500]}")
                break
            handles.append(handle)
            repeats.append(sample["setup_s"])
            repeat_split.append([sample.get("ike_s"), sample.get("auth_to_traffic_s")])
            repeat_esp.append({key: sample.get(key) for key in ESP_SPLIT})
        out["setup_repeat_s"] = repeats
        out["setup_repeat_split_s"] = repeat_split  # [ike_s, auth_to_traffic_s] per repeat
        out["setup_repeat_esp_split_s"] = repeat_esp  # esp_split per repeat
        if repeat_errors:
            out["setup_repeat_errors"] = repeat_errors
    except Exception as exc:  # a role that fails is a figure, not the end of the benchmark
        out["error"] = f"{stage}: {type(exc).__name__}: {exc}"
        out["error"] = out["error"][:2000]
        (log_dir / "bench-error.txt").write_text(traceback.format_exc())
    finally:
        if world is not None:  # see wait_tcp_closed: orphaned sockets would outlive the world
            for node in ("r", "h"):
                with contextlib.suppress(Exception):
                    world.run_in(node, ["ss", "-K", "-tn", "state", "all", "( dport = :5201 or sport = :5201 )"], timeout=5)
        for h in reversed(handles):
            with contextlib.suppress(Exception):
                h.stop()
        if world is not None:
            with contextlib.suppress(Exception):
                world.stop()
    out["wall_s"] = round(time.monotonic() - t_total, 2)
    return out


# ---- summary --------------------------------------------------------------------------------------
def median_of(runs: list[dict], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return round(statistics.median(values), 4) if values else None


def setup_samples(runs: list[dict]) -> list[float]:
    """Every setup sample: the first (cold: fresh world and gateway) and the repeats."""
    return [x for r in runs for x in ([r["setup_s"]] if r.get("setup_s") is not None else []) + r.get("setup_repeat_s", [])]


def ratio(a, b):
    return round(a / b, 3) if a is not None and b else None


def split_samples(runs: list[dict], i: int) -> list[float]:
    """ike_s (i=0) or auth_to_traffic_s (i=1) of every setup sample that has it."""
    key = ("ike_s", "auth_to_traffic_s")[i]
    firsts = [r[key] for r in runs if r.get(key) is not None]
    return firsts + [x[i] for r in runs for x in r.get("setup_repeat_split_s", []) if x[i] is not None]


def esp_split_samples(runs: list[dict], key: str) -> list[float]:
    """One of ESP_SPLIT over every setup sample that has it."""
    return [x[key] for r in runs for x in [r, *r.get("setup_repeat_esp_split_s", [])] if x.get(key) is not None]


def med(values: list[float]) -> float | None:
    return round(statistics.median(values), 4) if values else None


def pair_figures(runs: list[dict]) -> dict:
    samples = setup_samples(runs)
    cpu = [sum(r["daemon_cpu_s_per_gb"].values()) for r in runs if r.get("daemon_cpu_s_per_gb")]
    return {"throughput_mbps": median_of(runs, "throughput_mbps"),
            "daemon_cpu_s_per_gb": med(cpu),
            "setup_s": med(samples), "ike_s": med(split_samples(runs, 0)),
            "auth_to_traffic_s": med(split_samples(runs, 1)),
            **{key: med(esp_split_samples(runs, key)) for key in ESP_SPLIT},
            "setup_samples_s": samples, "setup_cold_s": median_of(runs, "setup_s"),
            "errors": [r["error"] for r in runs if r.get("error")]}


def compare(results: list[dict], esps: list[str], pairs: list[tuple[str, str]], reference: str = "strongswan") -> dict:
    """Medians per pair and transform; our pair against the reference pair (both roles filled by
    `reference`): throughput per transform, setup time over the samples of all transforms (the ESP
    transform plays no part in the IKE exchanges but for its proposal; pooled, each side has more
    samples against the noise). Our pair is the one on the reference's wire format (UDP-encapsulated
    ESP or not) when both of ours ran; the reference's figures carry the prefix REFERENCES[reference]."""
    def runs_of(g, c, esp=None):
        return [r for r in results if r["gateway"] == g and r["client"] == c and (esp is None or r["esp"] == esp)]

    def encap_of(pair) -> tuple[str, ...]:
        return tuple(sorted({str((r.get("negotiated", {}).get("client") or {}).get("encap")) for r in runs_of(*pair)}))

    by_pair = {esp: {f"{g} gateway / {c} client": pair_figures(runs_of(g, c, esp)) for g, c in pairs} for esp in esps}
    out: dict = {"by_pair": by_pair}
    ref, side = (reference, reference), REFERENCES[reference]
    ours = [p for p in (("ours+encap", "ours+encap"), ("ours", "ours")) if p in pairs]
    if not ours or ref not in pairs:
        return out
    # like with like: our pair on the reference's wire format when it ran
    mine = next((p for p in ours if encap_of(p) == encap_of(ref)), ours[0])
    wire = {p: list(encap_of(p)) for p in (mine, ref)}
    out["reference"] = reference
    out["like_with_like"] = {"ours_pair": f"{mine[0]} gateway / {mine[1]} client",
                             "reference_pair": f"{reference} gateway / {reference} client",
                             "udp_encapsulated": {f"{g}-{c}": v for (g, c), v in wire.items()},
                             "same_wire_format": len({tuple(v) for v in wire.values()}) == 1}
    other = next((p for p in ours if p != mine), None)
    if other is not None:
        out[f"extra_{other[0].replace('+', '_')}"] = {esp: pair_figures(runs_of(*other, esp))["throughput_mbps"] for esp in esps}
    throughput = {}
    for esp in esps:
        o, w = pair_figures(runs_of(*mine, esp)), pair_figures(runs_of(*ref, esp))
        tp = ratio(o["throughput_mbps"], w["throughput_mbps"])
        throughput[esp] = {"ours_mbps": o["throughput_mbps"], f"{side}_mbps": w["throughput_mbps"],
                           "ratio_ours_over_reference": tp,
                           "daemon_cpu_s_per_gb_ours": o["daemon_cpu_s_per_gb"],
                           f"daemon_cpu_s_per_gb_{side}": w["daemon_cpu_s_per_gb"],
                           "cpu_ratio_reference_over_ours": ratio(w["daemon_cpu_s_per_gb"], o["daemon_cpu_s_per_gb"]),
                           "target_met": None if w["throughput_mbps"] is None else bool(tp is not None and tp >= THROUGHPUT_RATIO_TARGET),
                           "issue_reference_strongswan_mbps": ISSUE_REFERENCE_MBPS.get(esp) if reference == "strongswan" else None,
                           "setup_ours_s": o["setup_s"], f"setup_{side}_s": w["setup_s"],
                           "setup_ratio_ours_over_reference": ratio(o["setup_s"], w["setup_s"])}
    o, w = pair_figures(runs_of(*mine)), pair_figures(runs_of(*ref))
    st = ratio(o["setup_s"], w["setup_s"])
    out["throughput"] = throughput
    out["setup"] = {"ours_median_s": o["setup_s"], f"{side}_median_s": w["setup_s"],
                    "ours_samples": len(o["setup_samples_s"]), f"{side}_samples": len(w["setup_samples_s"]),
                    "ours_cold_median_s": o["setup_cold_s"], f"{side}_cold_median_s": w["setup_cold_s"],
                    "ours_ike_median_s": o["ike_s"], f"{side}_ike_median_s": w["ike_s"],
                    "ours_auth_to_traffic_median_s": o["auth_to_traffic_s"],
                    f"{side}_auth_to_traffic_median_s": w["auth_to_traffic_s"],
                    "auth_to_traffic_split_median_s": {f"{name}_{key}": fig[key] for name, fig in (("ours", o), (side, w))
                                                       for key in ESP_SPLIT},
                    "ratio_ours_over_reference": st,
                    "target_met": None if w["setup_s"] is None else bool(st is not None and st <= 1.0)}
    if reference != "strongswan":  # an anchor, not a target: a kernel data plane against a userspace one
        for row in (*throughput.values(), out["setup"]):
            row["target_met"] = None
    return out


def fmt(v, unit=""):
    return "-" if v is None else f"{v}{unit}"


def print_table(results: list[dict], comparison: dict) -> None:
    print()
    print(f"{'gateway':<11} {'client':<11} {'esp':<14} {'setup ms (first; repeats)':<28} {'Mbit/s':>8} {'retr':>6} "
          f"{'cpu s/GB g+r':>13} {'load':>5}  negotiated / error")
    for r in results:
        setup = "-" if r.get("setup_s") is None else f"{r['setup_s'] * 1000:.1f}"
        if r.get("setup_repeat_s"):
            setup += "; " + " ".join(f"{x * 1000:.1f}" for x in r["setup_repeat_s"])
        neg = r.get("negotiated", {}).get("client") or {}
        note = r.get("error") or f"{neg.get('encr_alg')}/{neg.get('encr_keysize')} {neg.get('integ_alg') or ''}".strip()
        if len(note) > 110:
            note = note[:107] + "..."
        cpu = r.get("daemon_cpu_s_per_gb")
        cpu = "-" if not cpu else f"{cpu['gateway']}+{cpu['client']}"
        print(f"{r['gateway']:<11} {r['client']:<11} {r['esp']:<14} {setup:<28} {fmt(r.get('throughput_mbps')):>8} "
              f"{fmt(r.get('tcp_retransmits')):>6} {cpu:>13} {r['load_average_1min']:>5}  {note}")
    print()
    reference = comparison.get("reference")
    if reference is None:
        return
    side = REFERENCES[reference]
    for esp, row in comparison.get("throughput", {}).items():
        print(f"{esp:<14} throughput ours-ours {fmt(row['ours_mbps'])} Mbit/s, {reference}-{reference} "
              f"{fmt(row[f'{side}_mbps'])} Mbit/s: ratio {fmt(row['ratio_ours_over_reference'])} "
              f"(target >= {THROUGHPUT_RATIO_TARGET:g} met: {row['target_met']}); setup ratio {fmt(row['setup_ratio_ours_over_reference'])}")
        print(f"{'':<14} daemons' CPU s per GB (gateway + client): ours {fmt(row['daemon_cpu_s_per_gb_ours'])}, "
              f"{reference} {fmt(row[f'daemon_cpu_s_per_gb_{side}'])}: {reference} / ours "
              f"{fmt(row['cpu_ratio_reference_over_ours'])}")
    st = comparison.get("setup")
    if st:
        print(f"{'setup':<14} ours-ours median {fmt(st['ours_median_s'])} s ({st['ours_samples']} samples), "
              f"{reference}-{reference} {fmt(st[f'{side}_median_s'])} s ({st[f'{side}_samples']}): ratio "
              f"{fmt(st['ratio_ours_over_reference'])} (target <= 1 met: {st['target_met']})")
        print(f"{'':<14} of which IKE (IKE_SA_INIT to the last IKE_AUTH response): ours {fmt(st['ours_ike_median_s'])} s, "
              f"{reference} {fmt(st[f'{side}_ike_median_s'])} s; IKE_AUTH response to the first reply: ours "
              f"{fmt(st['ours_auth_to_traffic_median_s'])} s, {reference} {fmt(st[f'{side}_auth_to_traffic_median_s'])} s")
        sp = st["auth_to_traffic_split_median_s"]
        print(f"{'':<14} of which to the first ESP out / its round trip / to the reply: ours "
              + " / ".join(fmt(sp[f"ours_{k}"]) for k in ESP_SPLIT) + f" s, {reference} "
              + " / ".join(fmt(sp[f"{side}_{k}"]) for k in ESP_SPLIT) + " s")
    wire = comparison["like_with_like"]
    if not wire["same_wire_format"]:
        print(f"NOTE: not the same wire format (UDP encapsulation per pair: {wire['udp_encapsulated']}): "
              "the ratios compare different packets")
    print()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profiles", nargs="+", default=["ours+encap", "ours", "strongswan"], choices=PROFILES,
                    help="ours+encap: our pair with UDP-encapsulated ESP, strongSwan's wire format (the fair pair)")
    ap.add_argument("--seconds", type=int, default=5, help="iperf3 duration per measurement")
    ap.add_argument("--esp", nargs="+", default=["aes128gcm16", "aes128-sha256"], choices=sorted(ESP_NAMES))
    ap.add_argument("--no-mixed", action="store_true", help="leave out the mixed pairs (one profile per role)")
    ap.add_argument("--reference", default=None, choices=sorted(REFERENCES),
                    help="the pair ours is compared with (default: strongswan-kernel when it runs, else strongswan); "
                         "the targets apply to strongswan (kernel-libipsec), the kernel's XFRM is an anchor without one")
    ap.add_argument("--rounds", type=int, default=1, help="repeat every measurement; figures are medians")
    ap.add_argument("--setups", type=int, default=3,
                    help="setup samples per measurement (the client role restarted in the same world)")
    args = ap.parse_args()
    reference = args.reference or ("strongswan-kernel" if "strongswan-kernel" in args.profiles else "strongswan")
    if reference not in args.profiles:
        ap.error(f"--reference {reference}: add it to --profiles")
    pairs = [(p, p) for p in args.profiles]
    if not args.no_mixed and len(args.profiles) > 1:
        real = [p for p in args.profiles if "+" not in p]
        pairs += [(g, c) for g in real for c in real if g != c]
    log_root = Path(tempfile.mkdtemp(prefix="bench-ipsec-"))
    run = start_bench_run()
    results: list[dict] = []
    load_before = os.getloadavg()
    t0 = time.monotonic()
    try:
        for _ in range(args.rounds):
            for esp in args.esp:  # interleaved, so background load hits every pair alike
                for gateway, client in pairs:
                    r = measure(run, log_root, gateway, client, esp, args.seconds, max(1, args.setups))
                    results.append(r)
                    print(f"  {gateway:>10} gw / {client:<10} client  {esp:<14} setup {fmt(r.get('setup_s'), ' s'):>10}  "
                          f"{fmt(r.get('throughput_mbps'), ' Mbit/s'):>14}  load {r['load_average_1min']:<5} {'ERROR ' + r['error'][:150] if r.get('error') else ''}",
                          flush=True)
    finally:
        run.close()
    comparison = compare(results, args.esp, pairs, reference)
    print_table(results, comparison)
    verdicts = [row["target_met"] for row in comparison.get("throughput", {}).values()]
    if "setup" in comparison:
        verdicts.append(comparison["setup"]["target_met"])
    publish("ipsec", {
        "what": (f"scenario {SCENARIO}: R (fn1) to H ({H_ADDR}) through G, NAPT; setup = first IKE_SA_INIT on "
                 f"{R_IF} to the first echo reply (ping every {PING_INTERVAL * 1000:g} ms); throughput = iperf3 TCP "
                 f"R->H, {args.seconds} s, receiver's rate; a fresh world per measurement"),
        "seconds": args.seconds, "rounds": args.rounds, "setups_per_measurement": args.setups, "esp": {e: ESP_NAMES[e] for e in args.esp},
        "pairs": [f"{g} gateway / {c} client" for g, c in pairs],
        "targets": {"throughput": f"ours / strongswan-strongswan >= {THROUGHPUT_RATIO_TARGET:g} (Mbit/s), per ESP "
                                  "transform, on the same wire format (ours+encap: UDP-encapsulated ESP, as "
                                  "kernel-libipsec)",
                    "setup": "ours-ours setup time <= strongswan-strongswan's (medians over all samples of both transforms)",
                    "issue_reference_strongswan_mbps": ISSUE_REFERENCE_MBPS},
        "comparison": comparison,
        "meets_targets": (all(verdicts) if verdicts and None not in verdicts else None),
        "runs": results,
        "cpus": os.cpu_count(), "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "wall_s": round(time.monotonic() - t0, 1), "logs": str(log_root),
    })


if __name__ == "__main__":
    main()
