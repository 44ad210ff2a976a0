"""IKEv2/ESP tester: a peer that a conformance test drives field by field against an IKEv2
implementation under test (IUT), written from RFC 7296 (IKEv2), RFC 4303 (ESP) and RFC 3948
(UDP encapsulation), sharing no code with the project's own implementation (nodes/).

Modules (sans-I/O except transport.py and tshark.py):

    constants   wire numbers of RFC 7296 section 3 (payload, exchange, notify, transform types ...)
    crypto      DH groups 14/19/31, PRF_HMAC_SHA2_256 (and SHA1), prf+, SKEYSEED, SK_d/ai/ar/ei/er/pi/pr,
                rekeyed SKEYSEED, PSK AUTH (2.15), child SA KEYMAT with and without PFS (2.17),
                NAT detection hashes (2.23)
    sk          the Encrypted payload: AES-CBC + HMAC-SHA2-256-128 and AES-GCM-16 (RFC 5282), with
                options to choose the IV, the padding, a lying Pad Length, a broken ICV
    messages    builders returning bytes: `Payload` (any type, C bit, RESERVED bits, Next Payload,
                Payload Length), SA proposals/transforms, KE, Nonce, IDi/IDr, AUTH, Notify, Delete,
                Vendor ID, TSi/TSr, CP, EAP, unknown payloads; `build_message` with every header field
    parse       strict parser of received messages; malformed input gives ok=False and a reason;
                decrypts SK with the session's keys
    session     `IkeSession`: SPIs, nonces, DH key, algorithms, keys, Message IDs, child SAs, and the
                helpers of each exchange as initiator (client) or responder (gateway)
    esp         ESP tunnel-mode packets (AES-GCM-16, AES-CBC + HMAC-SHA-256-128), dummy packets,
                UDP encapsulation on 4500, NAT-keepalive
    transport   `UdpTransport` (caller-made sockets for 500, 4500 and raw ESP), `FakeTransport`;
                everything sent and received is logged with times (`log`, `ladder()`)
    tshark      write a pcap and let tshark check that well-formed messages decode cleanly

Usage (the tester as initiator, sockets made by the caller inside the namespace)::

    from testbed.conformance.ike import IkeSession, UdpTransport, messages as m, constants as c
    t = UdpTransport(sock500, sock4500)
    s = IkeSession(initiator=True, local=("198.51.100.10", 500), peer=("203.0.113.1", 500))
    t.send(s.sa_init_request(), "203.0.113.1", 500)
    s.handle_sa_init_response(t.recv_ike(2.0).data)
    t.send(s.auth_request(psk=b"secret", idi="alice@example", cp=True), "203.0.113.1", 500)
    reply = s.handle_auth_response(t.recv_ike(2.0).data, psk=b"secret")
    assert reply.ok and s.peer_auth_ok
    # a crafted request: unknown critical payload, version 3.0, reserved header flag set
    t.send(s.informational_request([m.unknown(200, b"x", critical=True)], major=3, reserved_flags=0x01),
           "203.0.113.1", 500)
    answer = s.parse(t.recv_ike(2.0).data)
    print(answer.summary(), answer.notify_types())   # e.g. [c.N_UNSUPPORTED_CRITICAL_PAYLOAD]
"""
from .constants import *  # noqa: F401,F403
from .crypto import IkeKeys, child_keymat, derive_ike_keys, dh_key, prf, prf_plus, psk_auth  # noqa: F401
from .esp import EspParsed, EspSa, classify_udp4500, inner_ipv4  # noqa: F401
from .messages import (Payload, Proposal, SkPayload, TrafficSelector, Transform, build_message,  # noqa: F401
                       esp_proposal, ike_proposal)
from .parse import ParsedMessage, ParsedPayload, parse_message  # noqa: F401
from .session import Algorithms, ChildAlgorithms, ChildSa, IkeSession  # noqa: F401
from .sk import SkCipher, SkError, SkOptions  # noqa: F401
from .transport import FakeTransport, LogEntry, Received, Transport, UdpTransport  # noqa: F401
