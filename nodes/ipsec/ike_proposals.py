"""Cipher suites in strongSwan's proposal syntax, and proposal selection (RFC 7296 2.7, 3.3.6).

A suite string such as "aes128gcm16-prfsha256-ecp256" (IKE) or "aes256-sha256-modp2048" (IKE) or
"aes128gcm16" / "aes128-sha256" (ESP) parses into a `Suite`; a list of suites becomes an SA payload;
`select` picks the first of our suites that the peer's SA offers and returns the chosen proposal.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from nodes.core import RandomSource, system_random
from nodes.wire import ikev2 as w

ENCR_TOKENS = {
    "aes128": (w.ENCR_AES_CBC, 128), "aes192": (w.ENCR_AES_CBC, 192), "aes256": (w.ENCR_AES_CBC, 256),
    "aes128gcm16": (w.ENCR_AES_GCM_16, 128), "aes192gcm16": (w.ENCR_AES_GCM_16, 192),
    "aes256gcm16": (w.ENCR_AES_GCM_16, 256),
}
INTEG_TOKENS = {"sha256": w.INTEG_HMAC_SHA2_256_128}
PRF_TOKENS = {"prfsha1": w.PRF_HMAC_SHA1, "prfsha256": w.PRF_HMAC_SHA2_256, "prfsha384": w.PRF_HMAC_SHA2_384,
              "prfsha512": w.PRF_HMAC_SHA2_512}
DH_TOKENS = {"modp2048": 14, "ecp256": 19, "curve25519": 31, "x25519": 31}
ALG_NAMES = {w.ENCR_AES_CBC: "aes-cbc", w.ENCR_AES_GCM_16: "aes-gcm-16"}


class ProposalError(ValueError):
    """A suite string that cannot be parsed."""


@dataclass(frozen=True)
class Suite:
    encr: int
    key_bits: int
    integ: int = w.INTEG_NONE
    prf: int = 0  # IKE only
    dh: int = 0  # IKE; for ESP only with PFS
    esn: bool = False

    @property
    def aead(self) -> bool:
        return self.encr == w.ENCR_AES_GCM_16

    def name(self) -> str:
        integ = "" if self.aead else "+hmac-sha256-128"
        return f"{ALG_NAMES[self.encr]}-{self.key_bits}{integ}"

    def transforms(self, protocol: int) -> list[w.Transform]:
        out = [w.Transform(w.TT_ENCR, self.encr, self.key_bits)]
        if protocol == w.PROTO_IKE:
            out.append(w.Transform(w.TT_PRF, self.prf))
        if not self.aead:
            out.append(w.Transform(w.TT_INTEG, self.integ))
        if self.dh:
            out.append(w.Transform(w.TT_DH, self.dh))
        if protocol == w.PROTO_ESP:
            out.append(w.Transform(w.TT_ESN, 1 if self.esn else 0))
        return out


def parse_suite(text: str, protocol: int) -> Suite:
    encr = key_bits = None
    integ, prf, dh, esn = w.INTEG_NONE, 0, 0, False
    for token in text.lower().split("-"):
        if token in ENCR_TOKENS:
            encr, key_bits = ENCR_TOKENS[token]
        elif token in INTEG_TOKENS:
            integ = INTEG_TOKENS[token]
        elif token in PRF_TOKENS:
            prf = PRF_TOKENS[token]
        elif token in DH_TOKENS:
            dh = DH_TOKENS[token]
        elif token == "noesn":
            esn = False
        elif token == "esn":  # RFC 4303 appendix A: 64-bit sequence numbers, which our ESP SA lacks
            raise ProposalError(f"proposal {text!r}: extended sequence numbers (esn) are not implemented "
                                f"(the ESP SA counts 32 bits and rekeys before they run out); use noesn or leave it out")
        else:
            raise ProposalError(f"proposal {text!r}: unknown algorithm {token!r}")
    if encr is None:
        raise ProposalError(f"proposal {text!r}: no encryption algorithm")
    aead = encr == w.ENCR_AES_GCM_16
    if not aead and integ == w.INTEG_NONE:
        raise ProposalError(f"proposal {text!r}: AES-CBC needs an integrity algorithm (sha256)")
    if aead:
        integ = w.INTEG_NONE
    if protocol == w.PROTO_IKE:
        if not prf:
            prf = w.PRF_HMAC_SHA2_256 if integ in (w.INTEG_NONE, w.INTEG_HMAC_SHA2_256_128) else 0
        if not dh:
            raise ProposalError(f"IKE proposal {text!r}: no DH group")
    return Suite(encr, key_bits, integ, prf, dh, esn)


def parse_suites(texts: list[str], protocol: int) -> list[Suite]:
    """Several encryption algorithms or DH groups in one string, as strongSwan writes them
    ("aes128gcm16-aes256gcm16-prfsha256-ecp256-modp2048"), give one suite each, in that order."""
    out = []
    for text in texts:
        tokens = text.lower().split("-")
        encrs = [t for t in tokens if t in ENCR_TOKENS]
        groups = [t for t in tokens if t in DH_TOKENS]
        rest = [t for t in tokens if t not in DH_TOKENS and t not in ENCR_TOKENS]
        for e in encrs or [None]:
            for g in groups or [None]:
                out.append(parse_suite("-".join(([e] if e else []) + rest + ([g] if g else [])), protocol))
    return list(dict.fromkeys(out))


def sa_payload(suites: list[Suite], protocol: int, spi: bytes) -> w.SecurityAssociation:
    return w.SecurityAssociation([w.Proposal(i + 1, protocol, spi, s.transforms(protocol))
                                  for i, s in enumerate(suites)])


KNOWN_TRANSFORM_TYPES = frozenset({w.TT_ENCR, w.TT_PRF, w.TT_INTEG, w.TT_DH, w.TT_ESN})


def _matches(suite: Suite, proposal: w.Proposal, protocol: int, dh_required: bool, ignore_dh: bool = False) -> bool:
    """A proposal matches when, for each transform type, it offers the suite's value (RFC 7296 3.3.6):
    a transform with an attribute we do not understand is unacceptable, and so is a proposal with a
    transform type we do not understand or without a mandatory one (ESP: ENCR and ESN, 3.3.3)."""
    def offers(ttype: int, tid: int, key_bits: int | None = None) -> bool:
        return any(t.id == tid and not t.unknown_attributes and (key_bits is None or t.key_length == key_bits)
                   for t in proposal.get(ttype))

    if any(t.type not in KNOWN_TRANSFORM_TYPES for t in proposal.transforms):
        return False
    if not offers(w.TT_ENCR, suite.encr, suite.key_bits):
        return False
    if suite.aead and any(t.id != w.INTEG_NONE for t in proposal.get(w.TT_INTEG)):
        return False
    if not suite.aead and not offers(w.TT_INTEG, suite.integ):
        return False
    if protocol == w.PROTO_IKE and not offers(w.TT_PRF, suite.prf):
        return False
    if protocol == w.PROTO_ESP and not offers(w.TT_ESN, 1 if suite.esn else 0):
        return False
    dhs = proposal.get(w.TT_DH)
    if ignore_dh:  # IKE_AUTH: a child SA created there never has its own DH exchange
        return True
    if dh_required or suite.dh:
        return offers(w.TT_DH, suite.dh)
    return not dhs or offers(w.TT_DH, 0)


@dataclass
class Selection:
    suite: Suite
    proposal: w.Proposal  # the chosen proposal to send back (peer's number, one transform per type)
    peer_spi: bytes
    # groups the peer offered for the chosen proposal (for INVALID_KE_PAYLOAD decisions)
    peer_groups: list[int] = field(default_factory=list)


def select(ours: list[Suite], offered: w.SecurityAssociation, protocol: int, our_spi: bytes,
           dh_required: bool = False, ignore_dh: bool = False) -> Selection | None:
    """Our first suite (in our order of preference) that one of the peer's proposals offers."""
    for suite in ours:
        for prop in offered.proposals:
            if prop.protocol != protocol:
                continue
            if protocol == w.PROTO_ESP and len(prop.spi) != 4:
                continue
            if protocol == w.PROTO_IKE and len(prop.spi) not in (0, 8):
                continue
            if _matches(suite, prop, protocol, dh_required, ignore_dh):
                chosen = w.Proposal(prop.num, protocol, our_spi, suite.transforms(protocol))
                return Selection(suite, chosen, prop.spi, [t.id for t in prop.get(w.TT_DH)])
    return None


def accept_reply(ours: list[Suite], reply: w.SecurityAssociation, protocol: int) -> Selection | None:
    """The responder's single chosen proposal, if it is one we offered."""
    if len(reply.proposals) != 1:
        return None
    prop = reply.proposals[0]
    if prop.num < 1 or prop.num > len(ours) or prop.protocol != protocol:
        return None
    suite = ours[prop.num - 1]
    types = {t.type for t in prop.transforms}
    if len(types) != len(prop.transforms):  # more than one transform of a type
        return None
    if not _matches(suite, prop, protocol, dh_required=bool(suite.dh)):
        return None
    return Selection(suite, prop, prop.spi, [t.id for t in prop.get(w.TT_DH)])


TRANSFORM_NAMES = {w.TT_ENCR: "ENCR", w.TT_PRF: "PRF", w.TT_INTEG: "INTEG", w.TT_DH: "DH", w.TT_ESN: "ESN"}


def describe_offer(offered: w.SecurityAssociation) -> str:
    """A peer's proposals for a log line: '#1 ESP ENCR 20/128 DH 19 ESN 0; #2 ...' (IANA numbers)."""
    out = []
    for prop in offered.proposals:
        ts = " ".join(f"{TRANSFORM_NAMES.get(t.type, t.type)} {t.id}" + (f"/{t.key_length}" if t.key_length else "")
                      for t in prop.transforms)
        out.append(f"#{prop.num} {'IKE' if prop.protocol == w.PROTO_IKE else 'ESP'} {ts}")
    return "; ".join(out)


def with_pfs(suites: list[Suite], group: int) -> list[Suite]:
    """The suites to match a CREATE_CHILD_SA offer carrying a KE payload of `group` (PFS, RFC 7296
    1.3.1): those configured with a DH group first, then every configured suite with the peer's group
    (if we implement it) and with each other group we implement, so a peer that asks for PFS is
    served (as strongSwan is) even when our proposals name no group."""
    from nodes.ipsec.ike_crypto import DH_GROUPS
    groups = ([group] if group in DH_GROUPS else []) + sorted(g for g in DH_GROUPS if g != group)
    plain = list(dict.fromkeys(replace(s, dh=0) for s in suites))
    return list(dict.fromkeys([s for s in suites if s.dh] + [replace(s, dh=g) for g in groups for s in plain]))


def new_spi(size: int, random: RandomSource = system_random) -> bytes:
    while True:
        spi = random(size)
        if int.from_bytes(spi, "big") >= 256:  # ESP SPIs 0..255 are reserved
            return spi


def select_for_ke(suites: list[Suite], sa_p: w.SecurityAssociation, group: int,
                  spi: bytes) -> tuple[Selection | None, int | None]:
    """An IKE proposal (IKE_SA_INIT or IKE rekey) with the DH group of the peer's KE payload:
    (selection, None); else (None, the group of a proposal we would take, for INVALID_KE_PAYLOAD),
    or (None, None) when no proposal is acceptable (NO_PROPOSAL_CHOSEN)."""
    same = [s for s in suites if s.dh == group]
    sel = select(same, sa_p, w.PROTO_IKE, spi, dh_required=True) if same else None
    if sel is not None:
        return sel, None
    other = select(suites, sa_p, w.PROTO_IKE, spi, dh_required=True)
    return None, other.suite.dh if other is not None else None
