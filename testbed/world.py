"""The world of the seeds, built with Mininet from the address plan (fixtures/world.yaml).

Hosts are Mininet hosts (a shell in its own network and mount namespace); each segment is a
Linux bridge; point-to-point links are veth pairs. Everything lives inside the calling
process's private network namespace (isolation.py): never attached to the machine's real
interfaces. Stations (R) attach to one access network at a time and can move (handoff.py).
"""
from __future__ import annotations

import errno
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from mininet.net import Mininet
from mininet.nodelib import LinuxBridge
from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from testbed import conntrack_helpers, naming, sentinel
from testbed.plan import NodeSpec, Plan, default_plan
from testbed.processes import NodeProcess, in_node, patience
from testbed.runs import Run


class WorldError(RuntimeError):
    pass


# Kernel tunnel modules of a stock kernel (this project's own data planes are in userspace). Where
# ipip or ip_gre is loaded, the kernel answers an IP-in-IP or GRE packet that matches none of its
# own tunnels with an ICMP port unreachable (its tunnel4/GRE demultiplexers), beside our daemon's
# raw socket that takes the packet: a second, false answer on the wire. Each node then drops exactly
# those errors: type 3 code 3 whose quoted header carries protocol 4, 47 or 55 (u32: the quoted
# protocol byte sits 8 + 9 bytes after the outer header). Nothing is added where the modules are
# absent.
KERNEL_TUNNEL_MODULES = ("ipip", "ip_gre")


def kernel_tunnel_guard() -> list[str]:
    if not any(Path("/sys/module", m).exists() for m in KERNEL_TUNNEL_MODULES):
        return []
    return [f"iptables -A OUTPUT -p icmp --icmp-type port-unreachable -m u32 "
            f"--u32 '0>>22&0x3C@16>>16&0xFF={proto}' -j DROP" for proto in (4, 47, 55)]


class WorldBridge(LinuxBridge):
    """A Linux bridge that enslaves every interface given to it (Mininet's LinuxBridge only takes
    interfaces named after itself) with no forwarding delay, so a moved station forwards at once."""

    def start(self, _controllers):
        script = [f"ip link add {self.name} type bridge forward_delay 0 stp_state 0 mcast_snooping 0"]
        script += [f"ip link set {i} master {self.name} up" for i in self.intfList() if i.name != "lo"]
        script.append(f"ip link set {self.name} up")
        subprocess.run(["sh", "-ec", "; ".join(script)], check=True)

    def stop(self, deleteIntfs=True):
        subprocess.run(["ip", "link", "del", self.name], stderr=subprocess.DEVNULL)


# called before any world is built in this process: a holder of a long-lived world (the conformance
# suites keep one per implementation across cases, testbed/conformance/iut.py) takes it down, since
# two worlds in one network namespace would claim the same interface names
BEFORE_BUILD: list = []

@dataclass
class NatOptions:
    """How the NAT router translates (netfilter NAPT)."""
    mapping: str = "port-preserving"  # or "random" (--random-fully)
    helpers: Sequence[str] = ()  # conntrack helpers (ALGs) to attach, e.g. ("ftp", "sip")

    MAPPINGS = ("port-preserving", "random")
    HELPER_PORTS = conntrack_helpers.HELPER_PORTS


@dataclass
class World:
    plan: Plan
    run: Run
    log_dir: Path
    net: Mininet | None = None
    attached: dict[str, str | None] = field(default_factory=dict)  # station -> segment or None
    processes: list[NodeProcess] = field(default_factory=list)
    timeline: list[dict] = field(default_factory=list)
    built_in: float = 0.0

    # ---- building -------------------------------------------------------------------------
    @classmethod
    def build(cls, run: Run, log_dir: Path, attach: dict[str, str] | None = None,
              nat: NatOptions | None = None, plan: Plan | None = None) -> "World":
        for make_room in BEFORE_BUILD:  # a world kept up across cases gives way (same interface names)
            make_room()
        world = cls(plan or default_plan(), run, Path(log_dir))
        t0 = time.monotonic()
        try:
            world._create(attach or {})
            world._configure(nat or NatOptions())
            world._start_dhcp()
            world._wait_forwarding()
        except BaseException:
            world.stop()
            raise
        world.built_in = time.monotonic() - t0
        sentinel.register(world)
        return world

    @classmethod
    def for_scenario(cls, run: Run, log_dir: Path, scenario) -> "World":
        """The world a scenario (testbed.scenario.Scenario) asks for: its variants, stations and NAT."""
        return cls.build(run, log_dir, attach=scenario.stations, nat=scenario.nat, plan=scenario.plan())

    def _create(self, attach: dict[str, str]) -> None:
        plan = self.plan
        net = self.net = Mininet(topo=None, controller=None, switch=WorldBridge, build=False,
                                 autoSetMacs=False, autoStaticArp=False, waitConnected=False)
        for name in plan.nodes:
            net.addHost(name, ip=None, inNamespace=True)
        for i, seg in enumerate(plan.segments.values(), start=1):
            net.addSwitch(seg.bridge, dpid=f"{i:016x}", inNamespace=False)
        for spec in plan.nodes.values():
            for intf in spec.interfaces:
                if intf.segment:
                    net.addLink(spec.name, plan.segments[intf.segment].bridge,
                                intfName1=intf.name, intfName2=naming.bridge_port(intf.segment, spec.name))
        for link in plan.links.values():
            (a, _), (b, _) = link.ends
            net.addLink(a, b, intfName1=naming.host_ifname(a, b), intfName2=naming.host_ifname(b, a))
        for station in plan.stations():
            seg = attach.get(station)
            if seg is not None and seg not in plan.attachments:
                raise WorldError(f"station {station} cannot attach to {seg!r}: choose one of {sorted(plan.attachments)}")
            # the station's access-point port joins its bridge in _configure (or stays detached)
            net.addLink(station, plan.segments[next(iter(plan.attachments))].bridge,
                        intfName1=naming.station_ifname(station), intfName2=naming.station_port(station))
            self.attached[station] = seg
        net.build()
        for sw in net.switches:
            sw.start([])

    def _configure(self, nat: NatOptions) -> None:
        """One shell script per node, all run concurrently."""
        procs = []
        for spec in self.plan.nodes.values():
            script = self._node_script(spec, nat)
            procs.append((spec.name, subprocess.Popen(in_node(self.pid(spec.name), ["sh", "-ec", script]),
                                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)))
        for station, seg in self.attached.items():
            port = naming.station_port(station)
            if seg is None:
                subprocess.run(["ip", "link", "set", port, "nomaster", "down"], check=True)
            else:
                subprocess.run(["ip", "link", "set", port, "master", self.plan.segments[seg].bridge, "up"], check=True)
        for name, p in procs:
            out, _ = p.communicate()
            if p.returncode:
                raise WorldError(f"configuring node {name} failed (status {p.returncode}):\n{out.decode()}")
        for station, seg in self.attached.items():
            if seg is not None:
                self._address_station(station, seg)

    def _start_dhcp(self) -> None:
        """A DHCP server (dnsmasq, DHCP only) per node and segment the plan's variants ask for; the
        node's address there is the router it hands out; leases in the log directory."""
        for spec in self.plan.nodes.values():
            for seg, (lo, hi) in spec.dhcp.items():
                intf = spec.interface_on(seg)
                leases = self.log_dir / f"{spec.name}.dnsmasq-{seg}.leases"
                self.log_dir.mkdir(parents=True, exist_ok=True)
                argv = ["dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0", "--no-resolv", "--no-hosts",
                        f"--interface={intf.name}", "--bind-interfaces", "--except-interface=lo",
                        f"--dhcp-range={lo},{hi},{intf.prefix.netmask},1h", f"--dhcp-option=option:router,{intf.address}",
                        f"--dhcp-leasefile={leases}", f"--pid-file={self.log_dir / f'{spec.name}.dnsmasq-{seg}.pid'}",
                        "--user=root", "--dhcp-authoritative", "--no-ping", "--log-dhcp", "--log-facility=-"]
                self.start(spec.name, f"dnsmasq-{seg}", argv, ready=r"DHCP, IP range")

    def _node_script(self, spec: NodeSpec, nat: NatOptions) -> str:
        lines = ["ip link set lo up",
                 "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1",
                 f"sysctl -qw net.ipv4.ip_forward={1 if spec.router else 0}",
                 # a router answers ARP only for the addresses of the link asked on, as routers do (Linux's
                 # default answers for any local address on any link: a station moved between two of a
                 # router's links would find "its" old router behind the new link)
                 f"sysctl -qw net.ipv4.conf.all.arp_ignore={1 if spec.router else 0}",
                 "sysctl -qw net.ipv4.conf.all.send_redirects=0 net.ipv4.conf.default.send_redirects=0",
                 "sysctl -qw net.ipv4.icmp_ratelimit=0 net.ipv4.icmp_msgs_per_sec=100000"]  # no limit on icmp_send (REJECT, TTL, 
                 # port unreachable); the routing code's own no-route errors stay rate-limited host-wide: see world.yaml
        for intf in spec.interfaces:
            lines += [f"ip addr add {intf.cidr} dev {intf.name}", f"ip link set {intf.name} up"]
        lines += [f"ip addr add {a}/32 dev lo" for a in spec.loopback]
        if spec.station:
            lines.append(f"ip link set {naming.station_ifname(spec.name)} up")
        # A daemon's batched UDP sends (UDP_SEGMENT, nodes/runtime/ipsec/sockets.py) are cut into datagrams
        # before they leave the node, as a NIC sends them: every capture shows the datagrams on the
        # wire (a veth would otherwise carry, and tcpdump show, one datagram of up to 64 KiB)
        names = [i.name for i in spec.interfaces] + ([naming.station_ifname(spec.name)] if spec.station else [])
        lines += [f"ethtool -K {name} tx-udp-segmentation off" for name in names]
        for dest, gw in spec.routes.items():
            lines.append(f"ip route replace {dest} via {gw}")
        if spec.firewall:
            lines.append(f"iptables-restore <<'EOF'\n{self.plan.firewalls[spec.firewall]}EOF")
        if spec.nat:
            lines += self._nat_rules(spec, nat)
        lines += kernel_tunnel_guard()
        return "\n".join(lines)

    def _nat_rules(self, spec: NodeSpec, nat: NatOptions) -> list[str]:
        if nat.mapping not in NatOptions.MAPPINGS:
            raise WorldError(f"NAT mapping {nat.mapping!r} is not supported: choose one of {NatOptions.MAPPINGS}")
        out_if = spec.interface_on(spec.nat["outside"]).name
        in_if = spec.interface_on(spec.nat["inside"]).name
        random = " --random-fully" if nat.mapping == "random" else ""
        rules = [f"iptables -t nat -A POSTROUTING -o {out_if} -j MASQUERADE{random}",
                 f"iptables -A FORWARD -i {out_if} -o {in_if} -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
                 f"iptables -A FORWARD -i {out_if} -o {in_if} -j DROP"]
        try:
            attach = conntrack_helpers.attach_rules(in_if, nat.helpers)
        except ValueError as exc:
            raise WorldError(str(exc)) from None
        if attach:
            rules.append(conntrack_helpers.load_nat_modules(nat.helpers))
        rules += ["iptables -t raw -A " + " ".join(r) for r in attach]
        return rules

    def _wait_forwarding(self, timeout: float = 3.0) -> None:
        """Wait until every enslaved bridge port forwards (a frame sent earlier would be lost)."""
        deadline = time.monotonic() + timeout
        while True:
            out = subprocess.run(["bridge", "link", "show"], capture_output=True, text=True).stdout
            states = [line for line in out.splitlines() if " master " in line]
            if states and all("state forwarding" in s for s in states if "state disabled" not in s):
                return
            if time.monotonic() > deadline:
                raise WorldError("bridge ports did not reach the forwarding state:\n" + out)
            time.sleep(0.005)

    # ---- using ----------------------------------------------------------------------------
    def node(self, name: str):
        if self.net is None or name not in self.net:
            raise WorldError(f"no node {name!r} in the world; nodes are {sorted(self.plan.nodes)}")
        return self.net[name]

    def pid(self, name: str) -> int:
        return self.node(name).pid

    def run_in(self, name: str, argv: Sequence[str] | str, timeout: float = 30.0,
               check: bool = False) -> subprocess.CompletedProcess:
        """Run a command inside a node and wait for it. A string is run by sh -c."""
        if isinstance(argv, str):
            argv = ["sh", "-c", argv]
        res = subprocess.run(in_node(self.pid(name), argv), capture_output=True, text=True, timeout=patience(timeout))
        if check and res.returncode:
            raise WorldError(f"{' '.join(argv)} on {name} failed with status {res.returncode}:\n{res.stdout}{res.stderr}")
        return res

    def start(self, node: str, name: str, argv: Sequence[str], ready: str | None = None,
              env: dict | None = None, timeout: float = 10.0) -> NodeProcess:
        """Start a long-running process inside `node`; returns once it is ready."""
        proc = NodeProcess(node, name, argv, self.log_dir / f"{node}.{name}.log", ready=ready, env=env,
                           on_start=lambda p: self.run.track(p.pid, f"{p.name}@{p.node}"),
                           on_exit=lambda p: self.run.untrack(p.pid))
        self.processes.append(proc)
        proc.start(self.pid(node))
        return proc.wait_ready(timeout)

    def ping(self, src: str, dst, timeout: float = 1.0, ttl: int | None = None) -> bool:
        """True when `src` gets an echo reply from `dst` within `timeout` seconds.

        Timeouts of a second or more probe every 0.1 s until a reply comes (so a neighbour entry
        still being resolved does not fail the check); shorter ones send one probe. ttl=1 lets
        only a neighbour on the link answer."""
        return self.ping_output(src, dst, timeout, ttl).returncode == 0

    def ping_output(self, src: str, dst, timeout: float = 1.0, ttl: int | None = None):
        if timeout >= 1:
            argv = ["ping", "-n", "-c", "1", "-i", "0.1", "-w", str(round(timeout)), str(dst)]
        else:
            argv = ["ping", "-n", "-c", "1", "-W", str(timeout), str(dst)]
        if ttl is not None:
            argv[1:1] = ["-t", str(ttl)]
        return self.run_in(src, argv, timeout=timeout + 5)

    def reach(self, src: str, proto: str, host, port: int, timeout: float = 1.0) -> dict:
        """Probe a TCP connection or a UDP echo from `src` (nodes/instruments/reach.py); returns its JSON result."""
        res = self.run_in(src, [sys.executable, "-m", "nodes.instruments.reach", proto, str(host), str(port), "--timeout", str(timeout)],
                          timeout=timeout + 10)
        try:
            return json.loads(res.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise WorldError(f"the reach probe on {src} failed: {res.stdout}{res.stderr}") from None

    def mark(self, event: str, **details) -> dict:
        """Record an event on the world's timeline (kept with the case's artifacts)."""
        entry = {"t": time.time(), "event": event, **details}
        self.timeline.append(entry)
        return entry

    # ---- tearing down ---------------------------------------------------------------------
    def stop(self) -> None:
        """Stop processes, kill node shells, delete bridges. Leaves nothing in the namespace."""
        for proc in reversed(self.processes):
            proc.stop()
        self.processes.clear()
        if self.net is None:
            return
        nodes = self.net.hosts + self.net.switches  # Mininet gives bridges a shell too
        for node in nodes:
            if node.shell is not None and node.shell.poll() is None:
                node.shell.kill()
        for node in nodes:
            if node.shell is not None:
                node.waitExited = True
                node.cleanup()  # closes the pty pair and reaps the shell
            node.outToNode.pop(node.master, None)  # Mininet's class-wide maps would keep every node alive
            node.inToNode.pop(node.master, None)
        self.net = None
        self._delete_links()

    @staticmethod
    def _delete_links() -> None:
        """Delete every interface of the world's namespace but lo: the bridges and the bridge-side
        veth ends. Normally the veths vanish with the node namespaces, but a node namespace can
        outlive its processes (an orphaned TCP socket in FIN_WAIT holds it) and would keep its
        veth, whose name the next world needs."""
        with IPRoute() as ipr:
            for link in ipr.get_links():
                if link.get_attr("IFLA_IFNAME") != "lo":
                    try:
                        ipr.link("del", index=link["index"])
                    except NetlinkError as exc:
                        if exc.code != errno.ENODEV:  # already gone with its peer
                            raise

    def __enter__(self) -> "World":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _address_station(self, station: str, seg: str) -> None:
        from testbed.handoff import configure_station
        configure_station(self, station, seg)
