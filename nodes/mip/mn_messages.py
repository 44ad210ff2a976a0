"""What the Mobile Node core (nodes/mip/mn.py) keeps and sends: the agent it hears (RFC 5944 2.1),
the registration request of an attempt, the checks a reply must pass (3.3-3.6, RFC 3519), and the
identifications (NTP timestamps, 5.7)."""
from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from nodes.core import RandomSource
from nodes.mip.common import encapsulation_flags
from nodes.wire.errors import DecodeError
from nodes.wire.ipv4 import ICMP, PROTO_ICMP, IPv4
from nodes.wire.mip import (
    ENCAP_IPIP, EXT_MN_HA_AUTH, NTP_UNIX_OFFSET, TYPE_REPLY, AgentAdvertisement, AgentFlags, RegistrationReply,
    RegistrationRequest, ReplyCode, RequestFlags, TunnelData, UdpTunnelRequest, find_extension, message_type,
    ntp_now,
)

KEEPALIVE_ECHO_ID = 0x3519  # the ICMP identifier of the node's RFC 3519 keepalives
RANDOM_LOW_BITS = 12  # fraction bits of an identification below a microsecond clock (2**-20 s)


@dataclass
class Agent:
    """The mobility agent currently heard on the link."""

    address: IPv4Address
    care_of_addresses: list
    sequence: int
    flags: int
    prefix: IPv4Network
    expires: float
    max_lifetime: int
    prefix_known: bool = False  # the advertisement had the Prefix-Lengths extension (RFC 5944 2.4.2.2)

    @classmethod
    def heard(cls, adv: AgentAdvertisement, src: IPv4Address, now: float) -> "Agent":
        """The agent an advertisement from `src` describes (its prefix from the prefix-lengths
        extension, a /32 without one)."""
        prefix = IPv4Network(f"{src}/{adv.prefix_lengths[0] if adv.prefix_lengths else 32}", strict=False)
        return cls(src, list(adv.care_of_addresses), adv.sequence, adv.flags, prefix, now + adv.lifetime,
                   adv.registration_lifetime, bool(adv.prefix_lengths))

    @property
    def is_home(self) -> bool:
        return bool(self.flags & AgentFlags.H)

    @property
    def is_foreign(self) -> bool:
        return bool(self.flags & AgentFlags.F) and bool(self.care_of_addresses)

    def to_json(self) -> dict:
        return {"address": str(self.address), "sequence": self.sequence, "flags": self.flags,
                "prefix": str(self.prefix), "care_of_addresses": [str(c) for c in self.care_of_addresses]}


@dataclass
class Attempt:
    """The registration request in flight (retransmitted with a new identification each time)."""

    mode: str  # "fa", "colocated" or "home" (deregistration)
    lifetime: int
    care_of_address: IPv4Address
    dst: IPv4Address
    src: IPv4Address
    identification: int = 0
    sent_at: float = 0.0
    first_sent_at: float = 0.0
    timeout: float = 1.0
    retransmit_at: float = 0.0
    resynced: bool = False
    agent_flags: int = 0  # through an agent: its advertised flags (M and G, RFC 5944 3.6.1.2; U, RFC 3519 4.4)
    via_fa: bool = False  # mode colocated: sent through the foreign agent `dst` that advertises R (RFC 5944 3.1)

    @property
    def through_agent(self) -> bool:
        """The request goes to a foreign agent on the link (its own care-of address or a co-located one)."""
        return self.mode == "fa" or self.via_fa


@dataclass
class Registration:
    mode: str
    care_of_address: IPv4Address
    lifetime: int
    expires: float
    renew_at: float
    tunnel: str
    trusted_network: bool


class Identifications:
    """Increasing NTP-timestamp identifications; the fraction bits a clock cannot resolve come from
    the random source (RFC 5944 5.7). `offset` is what a code-133 reply taught about the HA's clock."""

    def __init__(self, random: RandomSource):
        self.random = random
        self.offset = 0.0
        self._last = 0

    def next(self, now: float) -> int:
        noise = int.from_bytes(self.random(2), "big") & ((1 << RANDOM_LOW_BITS) - 1)
        stamp = (ntp_now(now + self.offset) & ~((1 << RANDOM_LOW_BITS) - 1)) | noise
        self._last = max(stamp, self._last + 1)
        return self._last

    def resync(self, reply_identification: int, now: float) -> None:
        """A code-133 reply carries the HA's time in its high 32 bits: follow it."""
        self.offset = (reply_identification >> 32) - NTP_UNIX_OFFSET - now


def requested_encapsulation(cfg, attempt: Attempt) -> str:
    """The forward tunnel `attempt` asks for: the configured one, except that through a foreign
    agent M or G is asked only when the agent advertises it (RFC 5944 3.6.1.2: "only if the mobile
    node is decapsulating its own datagrams ... or if its foreign agent has indicated support for
    these forms of encapsulation"); IP-in-IP otherwise (always supported)."""
    if attempt.mode == "home":
        return "ipip"
    if attempt.mode == "fa":
        advertised = {"minimal": AgentFlags.M, "gre": AgentFlags.G}.get(cfg.encapsulation)
        if advertised is not None and not attempt.agent_flags & advertised:
            return "ipip"
    return cfg.encapsulation


def udp_tunnel_requested(cfg, attempt: Attempt) -> bool:
    """Whether the request of `attempt` carries a UDP Tunnel Request (RFC 3519 4.4): as configured
    (`udp_tunnel` auto: with a co-located care-of address), except that a co-located address
    registered through a foreign agent carries one only when the agent advertises U: "the mobile
    node MUST NOT include a UDP Tunnel Request Extension" otherwise. Never with a foreign agent's
    care-of address, whatever the config: the extension "SHALL NOT be used by the mobile node when it
    is registering with a foreign agent care-of address" (4.4)."""
    if attempt.mode in ("home", "fa") or cfg.udp_tunnel == "never":
        return False
    if attempt.via_fa:
        return bool(attempt.agent_flags & AgentFlags.U)
    return cfg.udp_tunnel == "always" or attempt.mode == "colocated"


def request_for(cfg, attempt: Attempt) -> bytes:
    """The signed registration request of `attempt` (T, D, M or G and the RFC 3519 extension as
    configured). A co-located care-of address registered through a foreign agent that advertises U
    sets the extension's R flag (RFC 3519 3.1.2, 4.4)."""
    flags = encapsulation_flags(requested_encapsulation(cfg, attempt))
    if cfg.reverse_tunnel and attempt.mode != "home":
        flags |= RequestFlags.T
    exts = []
    if attempt.mode == "colocated":
        flags |= RequestFlags.D
    if udp_tunnel_requested(cfg, attempt):
        exts.append(UdpTunnelRequest(force=cfg.force_udp, via_fa=attempt.via_fa))
    req = RegistrationRequest(flags, attempt.lifetime, cfg.home_address, cfg.home_agent,
                              attempt.care_of_address, attempt.identification, exts)
    return cfg.sa.sign(req.encode())


def check_reply(cfg, attempt: Attempt | None, payload: bytes) -> tuple[RegistrationReply | None, str | None]:
    """(the reply, None) when it answers `attempt` and authenticates, else (None, why it is dropped).
    A denial from a foreign agent carries no MN-HA authenticator; a code-133 reply from the HA
    carries the HA's time in the high half of the identification."""
    if message_type(payload) != TYPE_REPLY:
        return None, "not-a-reply"
    try:
        reply = RegistrationReply.decode(payload)
    except DecodeError as e:
        return None, f"decode:{e.reason}"
    if attempt is None or reply.home_address != cfg.home_address or \
            (reply.identification & 0xFFFFFFFF) != (attempt.identification & 0xFFFFFFFF):
        return None, "unmatched-reply"
    from_fa = 64 <= reply.code < 128 or reply.code == ReplyCode.FA_INVALID_HA_ADDRESS
    mn_ha = find_extension(reply.extensions, EXT_MN_HA_AUTH)
    if sum(1 for e in reply.extensions if e.type == EXT_MN_HA_AUTH) > 1:
        return None, "reply-duplicate-mn-ha"  # RFC 5944 3.6.2.1: exactly one MN-HA extension
    if mn_ha is None and not from_fa:
        return None, "reply-unauthenticated"
    if mn_ha is not None and not cfg.sa.verifies(payload, mn_ha):
        return None, "reply-bad-auth"
    if not from_fa and reply.identification != attempt.identification and \
            reply.code != ReplyCode.HA_IDENTIFICATION_MISMATCH:
        return None, "unmatched-reply"
    return reply, None


# --- the co-located node's data plane: what it may deliver of what its home agent tunnels ----------

def tunnel_data_inner(payload: bytes, encapsulation: int = ENCAP_IPIP) -> bytes:
    """The packet an RFC 3519 tunnel data message carries, when its Next Header is the tunnelling
    mode of the binding (`encapsulation`, what the node's UDP Tunnel Request asked for: IP-in-UDP).
    RFC 3519 3.3: "The receiver of a tunnelled packet MUST check that the Next Header value matches
    the tunnelling mode established for the mobility binding ... If a discrepancy is detected, the
    packet MUST be dropped." DecodeError 'next-header-mismatch' then (or the decoder's reasons)."""
    data = TunnelData.decode(payload)
    if data.next_header != encapsulation:
        raise DecodeError("next-header-mismatch",
                          f"next header {data.next_header}, the binding tunnels with {encapsulation}")
    return data.payload


def keepalive_packet(home: IPv4Address, home_agent: IPv4Address, seq: int) -> bytes:
    """RFC 3519 3.1's keepalive: an ICMP echo request from the home address to the home agent (to be
    carried in tunnel data, IP-in-UDP)."""
    echo = ICMP(8, 0, struct.pack("!HH", KEEPALIVE_ECHO_ID, seq & 0xFFFF), b"mip-keepalive").encode()
    return IPv4(home, home_agent, PROTO_ICMP, echo).encode()


def inner_ttl_expired(inner: bytes) -> bool:
    """RFC 2003 3.1: "If, after decapsulation, the inner datagram has TTL = 0, the decapsulator
    MUST discard the datagram." (an inner packet too short to have a TTL is the caller's drop)."""
    return len(inner) >= 9 and inner[8] == 0
