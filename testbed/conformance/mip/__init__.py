"""Mobile IPv4 tester library: the other parties of a conformance test against an HA, FA or MN.

Independent of the project's own implementation (nothing from ``nodes`` is imported): every
message is laid out here from the RFC texts (RFC 5944, 2794, 3024, 3519, 5265, 3543, 2003, 2004,
2784). Sans-I/O core (bytes in, bytes out, time passed in) plus a thin transport.

Modules
    result.py          Decoded(value | error): what every decoder returns; decoders never raise
    ipv4.py            our own IPv4 header build/parse and the Internet checksum
    udp.py             UDP with a right, zero or wrong checksum; whole IPv4/UDP packets
    auth.py            HMAC-MD5 and prefix+suffix keyed MD5; SecurityAssociation; Authenticate spec
                       (wrong key/SPI, truncated, corrupted, lying Length) computed in place
    messages.py        Registration Request/Reply, all flags, every extension (MN-HA 32, MN-FA 33,
                       FA-HA 34, padding 0, NAI 131, MN-AAA 36, delivery style 130, UDP tunnel
                       request 144 / reply 44, TNC 149, revocation support 137), tunnel data
                       (type 4), revocation (7) and its ack (15); NTP / nonce identifications
    advertisements.py  Agent Advertisement (flags R B H F M G r T U X I, sequence, care-of
                       addresses, prefix lengths, padding, checksum right or wrong) and Solicitation
    tunnels.py         IP-in-IP, minimal encapsulation, GRE, RFC 3519 UDP tunnel, keepalives
    transport.py       Transport (send_udp/send_icmp/send_ip/send_frame, recv(timeout), log),
                       SocketTransport over caller-made sockets, FakeTransport for unit tests
    link.py            Ethernet/ARP frames (scapy) for an AF_PACKET socket: gratuitous ARP, parse_arp
    tshark.py          check that packets decode in tshark without malformed/expert warnings
    peers.py           TesterMN, TesterFA, TesterHA, TesterAgentAdvertiser role helpers

Usage (an HA under test, the tester as a co-located mobile node)::

    from testbed.conformance.mip import SecurityAssociation, TesterMN, SocketTransport
    sa = SecurityAssociation(spi=1000, key=bytes.fromhex("00112233445566778899aabbccddeeff"))
    mn = TesterMN("10.1.0.50", home_agent="10.1.0.1", sa=sa)
    transport = SocketTransport(udp=udp434_socket)       # created inside the tester's namespace
    check = mn.register(transport, care_of_address="192.0.2.10", flags="D")
    assert check.accepted                                 # code 0/1, MN-HA verified, ident matched
    bad = mn.request(transport.clock(), "192.0.2.10", flags="D", auth={"key": b"wrong"})
    transport.send_udp("10.1.0.1", bad)                   # expect code 131 back
    print(transport.ladder())                             # the message ladder with times
"""
from .advertisements import (
    AGENT_FLAGS, ALL_ROUTERS, ALL_SYSTEMS, AgentAdvertisement, AgentSolicitation, agent_flags, next_sequence,
    parse_advertisement, parse_solicitation,
)
from .auth import (
    EXT_FA_HA_AUTH, EXT_MN_FA_AUTH, EXT_MN_HA_AUTH, HMAC_MD5, PREFIX_SUFFIX_MD5, Authenticate, SecurityAssociation,
    compute_authenticator, hmac_md5, prefix_suffix_md5, verify_authenticator,
)
from .messages import (
    REPLY_CODES, AuthExtension, EncapsulatingDeliveryStyle, Extension, MnAaaAuthenticate, MnAaaAuthExtension,
    NaiExtension, Padding, RegistrationReply, RegistrationRequest, RegistrationRevocation, RevocationAck,
    RevocationSupport, TrustedNetworksConfigured, TunnelData, UdpTunnelReply, UdpTunnelRequest, flags_from,
    identification_time, nonce_identification, ntp_identification, parse_message, parse_reply, parse_request,
    parse_tunnel_data,
)
from .peers import ReplyCheck, TesterAgentAdvertiser, TesterFA, TesterHA, TesterMN
from .result import Decoded
from .transport import FakeTransport, Received, SocketTransport, Transport
from .tunnels import (
    decapsulate, gre_decapsulate, gre_encapsulate, ipip_decapsulate, ipip_encapsulate, minimal_decapsulate,
    minimal_encapsulate, udp_keepalive, udp_tunnel_decapsulate, udp_tunnel_encapsulate,
)
from .udp import build_udp, ipv4_udp, parse_ipv4_udp
