"""The traversal cases' IKE count on the wire sees IKE inside the MIP tunnel (IPsec inside MIP:
2.3, 2.5, where G_e, or the border, carries the node's IKE in IP-in-IP or RFC 3519 UDP tunnel
data): the capture filter admits both encapsulations (tcpdump) and the decoder finds the IKE
message inside each (tshark)."""
import subprocess

from scapy.all import IP, UDP, Ether, Raw, wrpcap
from scapy.contrib.ikev2 import IKEv2

from testbed.traversal_checks import IKE_BPF, IKE_BPF_IN_MIP, IKE_SA_INIT, ike_messages


def test_ike_inside_ip_in_ip_and_rfc3519_tunnel_data_is_captured_and_counted(tmp_path):
    inner = IP(src="10.1.1.100", dst="203.0.113.40") / UDP(sport=500, dport=500) / IKEv2(
        init_SPI=b"\x01" * 8, exch_type=IKE_SA_INIT, flags="Initiator")
    ipip = Ether() / IP(src="192.0.2.100", dst="203.0.113.40", proto=4) / inner
    tunnel_data = (Ether() / IP(src="203.0.113.10", dst="203.0.113.40") / UDP(sport=4000, dport=434)
                   / Raw(b"\x04\x04\x00\x00") / inner)  # RFC 3519 tunnel data: type 4, next header 4 (IPv4)
    for n, p in enumerate((ipip, tunnel_data)):
        p.time = 100.0 + n
    pcap = tmp_path / "in-mip.pcap"
    wrpcap(str(pcap), [ipip, tunnel_data])

    def matched(bpf: str) -> int:
        out = subprocess.run(["tcpdump", "-r", str(pcap), "-n", bpf], capture_output=True, text=True, check=True)
        return len(out.stdout.splitlines())

    assert matched(IKE_BPF) == 0, "the plain filter misses IKE in the MIP tunnel"
    assert matched(IKE_BPF_IN_MIP) == 2
    (msgs,) = ike_messages(pcap, [(0, 1e9)])
    assert [(m["t"], m["src"], m["exchange"], m["response"]) for m in msgs] == [
        (100.0, "10.1.1.100", IKE_SA_INIT, False), (101.0, "10.1.1.100", IKE_SA_INIT, False)]
