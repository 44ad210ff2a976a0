"""Role helpers: the parties the tester stands in for. Sans-I/O first (bytes in, bytes out, the time
passed in), with optional `Transport` conveniences for live runs.

TesterMN registers (via an agent or directly), keeps its identification, signs, checks replies and
resynchronises after code 133 (RFC 5944 5.7); TesterFA relays requests and replies adding MN-FA or
FA-HA authentication as asked; TesterHA answers requests with any code, lifetime or extensions;
TesterAgentAdvertiser sends advertisements with any flags and sequence numbers.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from .advertisements import (
    ALL_SYSTEMS, AgentAdvertisement, AgentSolicitation, CODE_MOBILITY_ONLY, agent_flags, next_sequence,
)
from .auth import EXT_FA_HA_AUTH, EXT_MN_FA_AUTH, EXT_MN_HA_AUTH, SecurityAssociation
from .ipv4 import ip
from .messages import (
    MIP_PORT, NTP_UNIX_OFFSET, AuthExtension, encode_extensions, RegistrationReply, RegistrationRequest, flags_from,
    identification_time, is_accepted, ntp_identification, parse_reply, parse_request,
)
from .result import Decoded
from .tunnels import gre_encapsulate, ipip_encapsulate, minimal_encapsulate, udp_tunnel_encapsulate

CODE_IDENTIFICATION_MISMATCH = 133


def _flags(value) -> int:
    return flags_from(value) if isinstance(value, str) else int(value)


@dataclass(frozen=True)
class ReplyCheck:
    """What a TesterMN made of a reply. `error` when it could not be decoded."""

    reply: RegistrationReply | None
    error: str | None = None
    authentic: bool | None = None  # MN-HA verified (None: the reply carries none)
    matches: bool = False  # low 32 bits of the identification equal the request's
    exact_match: bool = False  # the whole identification equals the request's
    resynchronised: bool = False

    @property
    def code(self) -> int | None:
        return self.reply.code if self.reply else None

    @property
    def accepted(self) -> bool:
        return bool(self.reply and is_accepted(self.reply.code) and self.authentic and self.exact_match)


class TesterMN:
    """The mobile node side. `clock_offset` models a skewed clock; `resync` (RFC 5944 5.7) sets it
    from a code-133 reply whose low 32 bits match and whose authenticator verifies."""

    __test__ = False  # not a pytest test class

    def __init__(self, home_address, home_agent, sa: SecurityAssociation, lifetime: int = 1800,
                 clock_offset: float = 0.0, random=os.urandom, random_bits: int = 12):
        self.home_address, self.home_agent = ip(home_address), ip(home_agent)
        self.sa = sa
        self.lifetime = lifetime
        self.clock_offset = clock_offset
        self.random = random
        self.random_bits = random_bits
        self.ha_nonce = 0  # nonce style: the high half the HA gave us last
        self.last_identification = 0
        self.last_request: bytes | None = None
        self.last_reply: ReplyCheck | None = None
        self.pending_identification = 0

    def next_identification(self, now: float) -> int:
        """NTP timestamp (strictly increasing) or, for a nonce SA, the HA's nonce + a fresh own one."""
        if self.sa.replay == "nonce":
            low = int.from_bytes(self.random(4), "big")
            ident = (self.ha_nonce << 32) | low
        else:
            low = int.from_bytes(self.random(4), "big")
            ident = ntp_identification(now + self.clock_offset, low, self.random_bits)
            ident = max(ident, self.last_identification + 1)
        self.last_identification = ident
        return ident

    def request(self, now: float, care_of_address=None, lifetime: int | None = None, flags="",
                extensions_before: list = (), extensions_after: list = (), auth: dict | None = None,
                identification: int | None = None, include_auth: bool = True, **fields) -> bytes:
        """A signed Registration Request. care_of_address defaults to the home address (deregistration
        style); flags as letters ("DT") or an int; `auth` overrides the MN-HA spec (spi=, key=,
        truncate=, corrupt=, algorithm=); `extensions_after` go after the MN-HA extension (where
        an FA would add its own); `fields` override any request field (type=, home_agent=...)."""
        ident = self.next_identification(now) if identification is None else identification
        self.last_identification = max(self.last_identification, ident)
        exts = list(extensions_before)
        if include_auth:
            exts.append(self.sa.authenticate(EXT_MN_HA_AUTH, **(auth or {})))
        exts += list(extensions_after)
        values = dict(flags=_flags(flags), lifetime=self.lifetime if lifetime is None else lifetime,
                      home_address=self.home_address, home_agent=self.home_agent,
                      care_of_address=ip(care_of_address or self.home_address), identification=ident,
                      extensions=exts)
        values.update(fields)
        self.last_request = RegistrationRequest(**values).encode()
        self.pending_identification = ident
        return self.last_request

    def deregistration(self, now: float, care_of_address=None, **kw) -> bytes:
        return self.request(now, care_of_address, lifetime=0, **kw)

    def check_reply(self, data: bytes, now: float, request_identification: int | None = None) -> ReplyCheck:
        """Decode, verify the MN-HA authenticator (exactly one, our SPI) and match the identification;
        on an authentic code 133 whose low 32 bits match, resynchronise (timestamp: the clock offset;
        nonce: the HA's new nonce)."""
        decoded = parse_reply(data)
        if not decoded.ok:
            self.last_reply = ReplyCheck(None, decoded.error)
            return self.last_reply
        reply = decoded.value
        sent = self.pending_identification if request_identification is None else request_identification
        mn_ha = reply.find_all(EXT_MN_HA_AUTH)
        authentic = None
        if mn_ha:
            authentic = reply.verify(data, self.sa.key, EXT_MN_HA_AUTH, self.sa.spi, self.sa.algorithm)
        matches = (reply.identification & 0xFFFFFFFF) == (sent & 0xFFFFFFFF)
        resynced = False
        if authentic and matches:
            if self.sa.replay == "nonce":
                self.ha_nonce = reply.identification >> 32
                resynced = reply.code == CODE_IDENTIFICATION_MISMATCH
            elif reply.code == CODE_IDENTIFICATION_MISMATCH:
                ha_time = (reply.identification >> 32) - NTP_UNIX_OFFSET
                self.clock_offset = ha_time - now
                self.last_identification = 0  # the HA's clock rules now
                resynced = True
        self.last_reply = ReplyCheck(reply, None, authentic, matches, reply.identification == sent, resynced)
        return self.last_reply

    def register(self, transport, via=None, now_fn=None, care_of_address=None, timeout: float = 3.0,
                 retries: int = 1, src=None, ttl: int | None = None, **request_kw) -> ReplyCheck | None:
        """Live: send a request to `via` (an FA, default the HA) on UDP 434, wait for the reply; after
        an authentic 133, resynchronise and try again (`retries` times). None when nothing came."""
        clock = now_fn or transport.clock
        dst = ip(via or self.home_agent)
        check = None
        for _ in range(retries + 1):
            data = self.request(clock(), care_of_address, **request_kw)
            transport.send_udp(dst, data, MIP_PORT, src=src, ttl=ttl)
            ident = self.pending_identification
            item = transport.wait_for(lambda i: i.kind == "udp" and i.data[:1] == b"\x03"
                                      and parse_reply(i.data).ok
                                      and parse_reply(i.data).identification & 0xFFFFFFFF == ident & 0xFFFFFFFF,
                                      timeout)
            if item is None:
                return None
            check = self.check_reply(item.data, clock(), ident)
            if not check.resynchronised:
                return check
        return check


@dataclass
class _Pending:
    src: IPv4Address
    sport: int
    request: RegistrationRequest
    raw: bytes


class TesterFA:
    """The foreign agent side: relays requests to the HA (adding FA-HA and/or MN-FA as asked) and
    replies back to the mobile node; can deny on its own."""

    __test__ = False  # not a pytest test class

    def __init__(self, address, care_of_address=None, fa_ha: SecurityAssociation | None = None,
                 mn_fa: SecurityAssociation | None = None):
        self.address = ip(address)
        self.care_of_address = ip(care_of_address or address)
        self.fa_ha, self.mn_fa = fa_ha, mn_fa
        self.pending: dict[tuple, _Pending] = {}

    def mn_fa_ok(self, data: bytes) -> bool | None:
        """Check the MN-FA authenticator of a request (None without an MN-FA SA)."""
        if self.mn_fa is None:
            return None
        req = parse_request(data)
        return req.ok and req.value.verify(data, self.mn_fa.key, EXT_MN_FA_AUTH, self.mn_fa.spi, self.mn_fa.algorithm)

    def relay_request(self, data: bytes, src="0.0.0.0", sport: int = MIP_PORT, add_fa_ha: bool | None = None,
                      fa_ha_overrides: dict | None = None, extra_extensions: list = ()) -> Decoded:
        """Decoded((bytes for the HA, HA address)) or the request's decode error. FA-HA is added when
        an SA is configured (or forced with add_fa_ha=True) and the request is not a deregistration."""
        decoded = parse_request(data)
        if not decoded.ok:
            return decoded
        req = decoded.value
        self.pending[(req.home_address, req.identification & 0xFFFFFFFF)] = _Pending(ip(src), sport, req, data)
        out = encode_extensions(data, list(extra_extensions))
        dereg = req.lifetime == 0 or req.care_of_address == req.home_address
        if (add_fa_ha if add_fa_ha is not None else (self.fa_ha is not None and not dereg)):
            if self.fa_ha is None:
                raise ValueError("add_fa_ha without an FA-HA security association")
            out = encode_extensions(out, [self.fa_ha.authenticate(EXT_FA_HA_AUTH, **(fa_ha_overrides or {}))])
        return Decoded((out, req.home_agent))

    def relay_reply(self, data: bytes, strip_after_mn_ha: bool = True, add_mn_fa: bool | None = None,
                    check_fa_ha: bool = True) -> Decoded:
        """Decoded((bytes for the MN, MN address, MN port, fa_ha_ok)) for a reply matching a pending
        request. Extensions after the MN-HA one (FA-HA) are removed unless asked otherwise."""
        decoded = parse_reply(data)
        if not decoded.ok:
            return decoded
        reply = decoded.value
        pending = self.pending.pop((reply.home_address, reply.identification & 0xFFFFFFFF), None)
        if pending is None:
            return Decoded(error="reply matches no pending request")
        fa_ha_ok = None
        if check_fa_ha and self.fa_ha is not None:
            fa_ha_ok = reply.verify(data, self.fa_ha.key, EXT_FA_HA_AUTH, self.fa_ha.spi, self.fa_ha.algorithm)
        out = data
        mn_ha = reply.find(EXT_MN_HA_AUTH)
        if strip_after_mn_ha and isinstance(mn_ha, AuthExtension):
            out = data[:mn_ha.offset + 6 + len(mn_ha.authenticator)]
        if add_mn_fa if add_mn_fa is not None else self.mn_fa is not None:
                out = encode_extensions(out, [self.mn_fa.authenticate(EXT_MN_FA_AUTH)])
        return Decoded((out, pending.src, pending.sport, fa_ha_ok))

    def deny(self, request: bytes, code: int, lifetime: int = 0, extensions: list = ()) -> bytes:
        """A reply from the FA itself (codes 64-88): no MN-HA authenticator; MN-FA if configured."""
        req = parse_request(request)
        home = req.home_address if req.ok else IPv4Address(request[4:8]) if len(request) >= 8 else IPv4Address(0)
        ha = req.home_agent if req.ok else IPv4Address(0)
        ident = req.identification if req.ok else 0
        exts = list(extensions) + ([self.mn_fa.authenticate(EXT_MN_FA_AUTH)] if self.mn_fa else [])
        return RegistrationReply(code, lifetime, home, ha, ident, exts).encode()


class TesterHA:
    """The home agent side: checks requests and answers them with whatever the test wants."""

    __test__ = False  # not a pytest test class

    def __init__(self, address, associations: dict | None = None, fa_associations: dict | None = None):
        self.address = ip(address)
        self.associations = {ip(k): v for k, v in (associations or {}).items()}  # home address -> SA
        self.fa_associations = {ip(k): v for k, v in (fa_associations or {}).items()}  # FA address -> SA
        self.last_accepted: dict[IPv4Address, int] = {}

    def inspect(self, data: bytes, src=None, now: float | None = None) -> dict:
        """What an HA would check: decoded request, MN-HA count and validity, FA-HA validity,
        identification freshness (timestamp style, with `now`)."""
        decoded = parse_request(data)
        if not decoded.ok:
            return {"error": decoded.error}
        req = decoded.value
        sa = self.associations.get(req.home_address)
        out = {"request": req, "mn_ha_count": len(req.find_all(EXT_MN_HA_AUTH)), "mn_ha_ok": None,
               "fa_ha_ok": None, "identification_fresh": None}
        if sa is not None:
            out["mn_ha_ok"] = req.verify(data, sa.key, EXT_MN_HA_AUTH, sa.spi, sa.algorithm)
        fa_sa = self.fa_associations.get(ip(src)) if src is not None else None
        if fa_sa is not None:
            out["fa_ha_ok"] = req.verify(data, fa_sa.key, EXT_FA_HA_AUTH, fa_sa.spi, fa_sa.algorithm)
        if now is not None and sa is not None and sa.replay == "timestamp":
            out["identification_fresh"] = (abs(identification_time(req.identification) - now) <= sa.tolerance
                                           and req.identification > self.last_accepted.get(req.home_address, -1))
        return out

    def answer(self, request: bytes, code: int = 0, lifetime: int | None = None, identification: int | None = None,
               extensions_before: list = (), extensions_after: list = (), auth: dict | None = None,
               sign: bool = True, now: float | None = None, fa_ha: bool = False, **fields) -> bytes:
        """A Registration Reply to `request`: lifetime defaults to the requested one (0 on a denial),
        the identification is copied, or for 133 (with `now`) the HA's time high and the request's low
        32 bits; signed with the node's MN-HA SA (`auth` overrides), FA-HA appended with fa_ha=True
        (using the SA of fields['fa'] or the only FA SA)."""
        decoded = parse_request(request, check_type=False)
        req = decoded.value if decoded.ok else RegistrationRequest()
        if identification is None:
            identification = req.identification
            if code == CODE_IDENTIFICATION_MISMATCH and now is not None:
                identification = (ntp_identification(now) & ~0xFFFFFFFF) | (req.identification & 0xFFFFFFFF)
        if lifetime is None:
            lifetime = req.lifetime if is_accepted(code) else 0
        if is_accepted(code) and decoded.ok:
            self.last_accepted[req.home_address] = req.identification
        exts = list(extensions_before)
        sa = self.associations.get(req.home_address)
        if sign and sa is not None:
            exts.append(sa.authenticate(EXT_MN_HA_AUTH, **(auth or {})))
        exts += list(extensions_after)
        fa_addr = fields.pop("fa", None)
        if fa_ha:
            fa_sa = self.fa_associations.get(ip(fa_addr)) if fa_addr else next(iter(self.fa_associations.values()))
            exts.append(fa_sa.authenticate(EXT_FA_HA_AUTH))
        values = dict(code=code, lifetime=lifetime, home_address=req.home_address, home_agent=self.address,
                      identification=identification, extensions=exts)
        values.update(fields)
        return RegistrationReply(**values).encode()

    def tunnel(self, inner: bytes, care_of_address, kind: str = "ipip", port: int = MIP_PORT, **kw) -> bytes:
        """A packet for the mobile node tunnelled to its care-of address ("ipip", "minimal", "gre",
        "udp" to care_of_address:port)."""
        if kind == "ipip":
            return ipip_encapsulate(inner, self.address, care_of_address, **kw)
        if kind == "minimal":
            return minimal_encapsulate(inner, self.address, care_of_address, **kw)
        if kind == "gre":
            return gre_encapsulate(inner, self.address, care_of_address, **kw)
        if kind == "udp":
            return udp_tunnel_encapsulate(inner, self.address, care_of_address, MIP_PORT, port, **kw)
        raise ValueError(f"unknown tunnel kind {kind!r}")


@dataclass
class TesterAgentAdvertiser:
    """Agent Advertisements with any flags and sequence numbers (RFC 5944 2.1, 2.3.2)."""

    __test__ = False  # not a pytest test class

    address: IPv4Address
    flags: int | str = "F"
    care_of_addresses: list = field(default_factory=list)
    registration_lifetime: int = 1800
    lifetime: int = 9
    prefix_length: int | None = 24
    code: int = CODE_MOBILITY_ONLY
    sequence: int = 0

    def __post_init__(self):
        self.address = ip(self.address)
        if isinstance(self.flags, str):
            self.flags = agent_flags(self.flags)
        if not self.care_of_addresses and self.flags & agent_flags("F"):
            self.care_of_addresses = [self.address]

    def advertisement(self, **overrides) -> bytes:
        """The next advertisement's ICMP bytes (the sequence then advances with rollover to 256);
        overrides: any AgentAdvertisement field (sequence=, flags= as int or letters, checksum=...)."""
        if isinstance(overrides.get("flags"), str):
            overrides["flags"] = agent_flags(overrides["flags"])
        values = dict(sequence=self.sequence, registration_lifetime=self.registration_lifetime, flags=self.flags,
                      care_of_addresses=list(self.care_of_addresses), routers=[(self.address, 0)],
                      lifetime=self.lifetime, code=self.code,
                      prefix_lengths=None if self.prefix_length is None else [self.prefix_length])
        values.update(overrides)
        if "sequence" not in overrides:
            self.sequence = next_sequence(self.sequence)
        return AgentAdvertisement(**values).encode()

    def reboot(self) -> None:
        """Start over at sequence 0 (what a mobile node reads as an agent reboot)."""
        self.sequence = 0

    def send(self, transport, dst=ALL_SYSTEMS, **overrides) -> bytes:
        data = self.advertisement(**overrides)
        transport.send_icmp(dst, data, ttl=1, src=self.address)
        return data

    @staticmethod
    def solicitation(**overrides) -> bytes:
        return AgentSolicitation(**overrides).encode()
