"""An IKE_SA_INIT flood from spoofed sources (RFC 7296 section 2.6: IKE under attack).

The attacker atk sends IKE_SA_INIT requests to G_e at about 2,000 a second for 4 s, each from a
random spoofed source in 198.18.0.0/15 with a random SPIi, built once by scapy (a valid offer:
AES-GCM-16-128, PRF-HMAC-SHA2-256, ECP-256 with a real public key), so every request that G served
would cost it a Diffie-Hellman computation and a half-open IKE SA. Checked, black-box:

  * G keeps at most `cookie_threshold` (32) half-open IKE SAs and answers the rest with N(COOKIE)
    only (counted: drops.ike.cookie), so its state stays bounded;
  * a real client started in the middle of the flood gets its tunnel within 2 s (its first request
    is answered with a cookie, it repeats it with the cookie, RFC 7296 2.6) and R reaches H;
  * the gateway's resident memory grows by less than 16 MB over the flood.
"""
from __future__ import annotations

import json
import sys
import threading
import time

import pytest

from testbed.ipsec_checks import PLAN, role_of, wait_established
from testbed.profiles import start_role

pytestmark = pytest.mark.scenario("remote-access-basic")

H = str(PLAN.address("h"))
G_E = str(PLAN.address("g", "dmz"))
RATE, SECONDS = 2000, 4.0
THRESHOLD = 32

# runs in atk: argv = G_e, rate, seconds
FLOOD = r"""
import json, random, socket, struct, sys, time
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives import serialization
from scapy.contrib.ikev2 import IKEv2, IKEv2_SA, IKEv2_Proposal, IKEv2_Transform, IKEv2_KE, IKEv2_Nonce
from scapy.layers.inet import IP, UDP
from nodes.wire.ipv4 import checksum
g, rate, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
pub = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
    serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)[1:]
# scapy counts neither the transforms nor the key-length attribute: both set by hand
sa = IKEv2_SA(prop=IKEv2_Proposal(trans_nb=3, trans=IKEv2_Transform(transform_type="Encryption", transform_id=20,
                                                                    length=12, key_length=128)
                                  / IKEv2_Transform(transform_type="PRF", transform_id=5)
                                  / IKEv2_Transform(transform_type="GroupDesc", transform_id=19)))
template = bytearray(bytes(IP(src="198.18.0.1", dst=g) / UDP(sport=500, dport=500)
                     / IKEv2(init_SPI=b"\x11" * 8, exch_type=34, flags="Initiator") / sa
                     / IKEv2_KE(group=19, ke=pub) / IKEv2_Nonce(nonce=b"n" * 32)))
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
rnd = random.Random(7296)
n, errors, t0 = int(rate * seconds), 0, time.monotonic()
for i in range(n):
    pkt = template
    pkt[12:16] = bytes([198, 18 + rnd.getrandbits(1), rnd.getrandbits(8), rnd.getrandbits(8)])
    pkt[20:22] = rnd.randrange(1024, 65535).to_bytes(2, "big")
    pkt[26:28] = b"\0\0"                       # no UDP checksum (allowed over IPv4)
    pkt[28:36] = rnd.randbytes(8)               # SPIi
    pkt[10:12] = b"\0\0"
    pkt[10:12] = checksum(bytes(pkt[:20])).to_bytes(2, "big")
    try:
        raw.sendto(bytes(pkt), (g, 0))
    except OSError:
        errors += 1
    if i % 100 == 99:
        delay = t0 + (i + 1) / rate - time.monotonic()
        if delay > 0: time.sleep(delay)
print(json.dumps({"sent": n - errors, "errors": errors, "seconds": round(time.monotonic() - t0, 2)}))
"""


def rss_kib(world, pid: int) -> int:
    status = world.run_in("g", ["cat", f"/proc/{pid}/status"]).stdout
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))


@pytest.mark.req("rfc7296-2.6-cookies", "rfc1122-1.2.2-robustness")
def test_cookies_keep_a_spoofed_init_flood_stateless_and_a_real_client_connects(world, scenario):
    gw = start_role(world, scenario.roles["gw"])
    assert gw.status().get("implementation") == "ours"
    pid = next(p.pid for p in world.processes if p.node == "g" and p.name == gw.role.name)
    rss_before = rss_kib(world, pid)
    flood: dict = {}

    def run_flood():
        res = world.run_in("atk", [sys.executable, "-c", FLOOD, G_E, str(RATE), str(SECONDS)], timeout=SECONDS + 60)
        try:
            flood.update(json.loads(res.stdout.strip().splitlines()[-1]))
        except (ValueError, IndexError):
            flood["failed"] = res.stdout + res.stderr

    thread = threading.Thread(target=run_flood)
    world.mark("init-flood-start")
    thread.start()
    time.sleep(SECONDS / 2)
    started = time.monotonic()
    client = start_role(world, scenario.roles["client"])
    wait_established(client, timeout=2.0)
    connect_s = time.monotonic() - started
    during = gw.status()
    thread.join(SECONDS + 60)
    world.mark("init-flood-end", connect_s=round(connect_s, 3), **flood)
    assert "failed" not in flood, f"the flood script on atk failed: {flood}"
    assert flood["sent"] >= 0.9 * RATE * SECONDS, f"the flood sent too little to mean anything: {flood}"
    assert connect_s <= 2.0, f"the real client needed {connect_s:.2f} s under the flood"
    assert world.ping("r", H, timeout=3), "R does not reach H through the tunnel it set up under the flood"

    status = gw.status()
    cookies = status["drops"]["ike"].get("cookie", 0)
    assert during["half_open"] <= THRESHOLD and status["half_open"] <= THRESHOLD, \
        f"half-open IKE SAs beyond the cookie threshold {THRESHOLD}: {during['half_open']}, {status['half_open']}"
    grown = rss_kib(world, pid) - rss_before
    assert grown < 16 * 1024, f"the gateway's resident memory grew by {grown} KiB over the flood"
    assert cookies >= flood["sent"] // 2, (
        f"only {cookies} requests of {flood['sent']} were answered with a cookie (drops: {status['drops']['ike']})")
