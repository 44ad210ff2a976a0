"""What a capture shows is what crosses the wire: a daemon that hands the kernel many UDP datagrams
in one write (UDP_SEGMENT, as the IPsec data plane sends UDP-encapsulated ESP in bursts) puts
separate datagrams on every link, and tcpdump there sees them one by one, as a NIC would send them.
A veth left with its UDP segmentation offload would carry one datagram of up to 64 KiB instead,
which no capture of a real network shows and an ESP decoder cannot read."""
import subprocess

import pytest

from testbed import naming
from testbed.plan import default_plan

pytestmark = pytest.mark.scenario("bare-world")

PLAN = default_plan()
PUB = str(PLAN.address("pub"))
SEGMENT, COUNT = 1200, 12
SEND_BATCH = (
    "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
    f"s.setsockopt(socket.SOL_UDP, 103, {SEGMENT}); "  # UDP_SEGMENT
    f"s.sendto(b'x' * {SEGMENT * COUNT}, ('{PUB}', 4500))"
)


@pytest.mark.req("testbed-capture-fidelity")
def test_a_batched_udp_write_crosses_the_world_as_datagrams(world, capture):
    """R writes 12 datagrams of 1,200 bytes in one UDP_SEGMENT write to pub:4500; captures on R's own
    link (at R), in the middle (the core router) and at pub each show 12 UDP datagrams of 1,200
    bytes of payload (tshark), none larger."""
    core_if = PLAN.nodes["core"].interface_on("inet").name
    caps = [capture("r", naming.station_ifname("r"), bpf="udp port 4500", name="at-r"),
            capture("core", core_if, bpf="udp port 4500", name="at-core"),
            capture("pub", PLAN.nodes["pub"].interface_on("inet").name, bpf="udp port 4500", name="at-pub")]
    world.run_in("r", ["python3", "-c", SEND_BATCH], check=True)
    for cap in caps:
        pcap = cap.stop()
        lengths = subprocess.run(["tshark", "-n", "-r", str(pcap), "-T", "fields", "-e", "udp.length"],
                                 capture_output=True, text=True, check=True).stdout.split()
        assert [int(n) - 8 for n in lengths] == [SEGMENT] * COUNT, \
            f"{pcap.name}: UDP payload sizes {lengths} (want {COUNT} x {SEGMENT})"
