"""`IkeSession`: the state of one IKE SA as the tester sees it (RFC 7296), and helpers that build each
message of the exchanges of section 1 as bytes and digest the answers. Sans-I/O: nothing here
sends or receives; hand the bytes to a transport (transport.py).

State: SPIs, nonces, the DH private key, the chosen algorithms, the seven keys, the message-ID
counters of both directions (our next request, the peer's last request) and the child SAs.

Every helper takes overrides: `payloads=` replaces the whole payload list, `extra=` appends payloads
(inside SK for encrypted exchanges), `sk_opts=` breaks the SK payload (sk.SkOptions), `encrypt=False`
sends the payloads in clear, `message_id=` picks the Message ID (without advancing the counter), and
any header keyword of messages.build_message (`major`, `minor`, `flags`, `reserved_flags`,
`version_bit`, `next_payload`, `length`, `trailing`, `initiator`, `response`) goes through unchanged.
Each helper records its output in `self.sent` and returns it; `last_request` is what a
retransmission resends (RFC 7296 2.1: the same bytes).
"""
from __future__ import annotations

import hmac
import ipaddress
import os
from dataclasses import dataclass, field
from typing import Callable

from . import constants as c
from . import messages as m
from .crypto import (CryptoError, DhKey, IkeKeys, child_keymat, derive_ike_keys, dh_key, nat_detection_hash,
                     psk_auth, signed_octets, skeyseed, skeyseed_rekey)
from .parse import ParsedMessage, ip_attribute, parse_header, parse_message
from .sk import SkCipher, SkOptions


@dataclass
class Algorithms:
    """An IKE SA's transforms (RFC 7296 3.3.2): ENCR (+ key bits), PRF, INTEG (None with AEAD), DH."""
    encr: int = c.ENCR_AES_GCM_16
    key_bits: int = 128
    integ: int | None = None
    prf: int = c.PRF_HMAC_SHA2_256
    dh: int = c.ECP256

    def proposal(self, number: int = 1, spi: bytes = b"", dh: list[int] | None = None) -> m.Proposal:
        return m.ike_proposal(number, self.encr, self.key_bits, self.integ, self.prf, dh or self.dh, spi)


@dataclass
class ChildAlgorithms:
    """A child SA's transforms: ENCR (+ key bits), INTEG (None with AES-GCM), DH for PFS, ESN."""
    encr: int = c.ENCR_AES_GCM_16
    key_bits: int = 128
    integ: int | None = None
    dh: int | None = None
    esn: int = c.ESN_NO

    def proposal(self, spi: bytes, number: int = 1) -> m.Proposal:
        return m.esp_proposal(spi, number, self.encr, self.key_bits, self.integ, self.dh, self.esn)


def algorithms_of(proposal: dict, child: bool = False) -> Algorithms | ChildAlgorithms:
    """The first transform of each type of a parsed proposal (parse.decode_proposals)."""
    first: dict[int, dict] = {}
    for t in proposal["transforms"]:
        first.setdefault(t["type"], t)
    encr = first.get(c.T_ENCR, {"id": 0, "key_len": None})
    integ = first.get(c.T_INTEG)
    integ_id = integ["id"] if integ and integ["id"] != c.AUTH_NONE else None
    if child:
        dh = first.get(c.T_DH)
        return ChildAlgorithms(encr["id"], encr["key_len"] or 128, integ_id,
                               dh["id"] if dh and dh["id"] else None,
                               first.get(c.T_ESN, {"id": 0})["id"])
    return Algorithms(encr["id"], encr["key_len"] or 128, integ_id, first.get(c.T_PRF, {"id": 0})["id"],
                      first.get(c.T_DH, {"id": 0})["id"])


@dataclass
class ChildSa:
    """A child SA (ESP, tunnel mode unless USE_TRANSPORT_MODE was agreed). `spi_in` is ours (the peer
    sends ESP with it), `spi_out` the peer's. Keys per RFC 7296 2.17 (GCM keys end with the salt)."""
    spi_in: bytes
    spi_out: bytes
    algs: ChildAlgorithms
    encr_key_in: bytes
    integ_key_in: bytes
    encr_key_out: bytes
    integ_key_out: bytes
    ts_local: list[dict] = field(default_factory=list)
    ts_remote: list[dict] = field(default_factory=list)
    replaces: bytes | None = None

    def esp_out(self):
        from .esp import EspSa
        return EspSa(int.from_bytes(self.spi_out, "big"), self.algs.encr, self.encr_key_out, self.algs.integ,
                     self.integ_key_out)

    def esp_in(self):
        from .esp import EspSa
        return EspSa(int.from_bytes(self.spi_in, "big"), self.algs.encr, self.encr_key_in, self.algs.integ,
                     self.integ_key_in)


HEADER_KEYS = {"major", "minor", "version", "flags", "reserved_flags", "version_bit", "next_payload", "length",
               "trailing", "initiator", "response"}


class IkeSession:
    """One IKE SA seen from the tester. `initiator=True`: the tester is the original initiator
    (it plays the remote-access client); False: it plays the gateway (responder)."""

    def __init__(self, initiator: bool = True, algs: Algorithms | None = None,
                 child_algs: ChildAlgorithms | None = None, local: tuple[str, int] = ("0.0.0.0", 500),
                 peer: tuple[str, int] = ("0.0.0.0", 500), random: Callable[[int], bytes] = os.urandom,
                 spi: bytes | None = None, nonce_len: int = 32):
        self.initiator = initiator
        self.algs = algs or Algorithms()
        self.child_algs = child_algs or ChildAlgorithms()
        self.local, self.peer = local, peer
        self.random = random
        own_spi = spi or random(8)
        self.spi_i = own_spi if initiator else b""
        self.spi_r = bytes(8) if initiator else own_spi
        self.nonce_len = nonce_len
        self.ni = random(nonce_len) if initiator else b""
        self.nr = b"" if initiator else random(nonce_len)
        self.dh: DhKey | None = None
        self.peer_ke = b""
        self.keys: IkeKeys | None = None
        self.init_request = b""  # RealMessage1 (RFC 7296 2.15)
        self.init_response = b""  # RealMessage2
        self.next_mid = 0  # Message ID of our next request (RFC 7296 2.2)
        self.peer_mid: int | None = None  # Message ID of the peer's last request (our responses use it)
        self.last_request = b""
        self.last_response = b""
        self.sent: list[bytes] = []
        self.children: list[ChildSa] = []
        self.pending: dict = {}  # what an exchange we started needs when its response arrives
        self.peer_auth_ok: bool | None = None
        self.peer_id: tuple[int, bytes] | None = None
        self.peer_id_body = b""  # the peer's ID payload body (RestOfIDPayload, RFC 7296 2.15)
        self.own_id_body = b""
        self.virtual_ip: list[str] = []

    # ----------------------------------------------------------------- keys

    def _ciphers(self) -> tuple[SkCipher, SkCipher]:
        """(initiator's, responder's) SK ciphers (RFC 7296 2.14: SK_ei/SK_ai, SK_er/SK_ar)."""
        k = self.keys
        if k is None:
            raise CryptoError("no keys yet")
        a = self.algs
        return (SkCipher(a.encr, k.sk_ei, a.integ, k.sk_ai), SkCipher(a.encr, k.sk_er, a.integ, k.sk_ar))

    @property
    def cipher_out(self) -> SkCipher:
        return self._ciphers()[0 if self.initiator else 1]

    @property
    def cipher_in(self) -> SkCipher:
        return self._ciphers()[1 if self.initiator else 0]

    def _derive(self, g_ir: bytes) -> None:
        a = self.algs
        seed = skeyseed(a.prf, self.ni, self.nr, g_ir)
        self.keys = derive_ike_keys(a.prf, seed, self.ni, self.nr, self.spi_i, self.spi_r, a.encr, a.key_bits,
                                    a.integ)

    # ----------------------------------------------------------------- generic message and parsing

    def message(self, exchange: int, payloads: list, *, response: bool = False, message_id: int | None = None,
                encrypt: bool = True, sk_opts: SkOptions | None = None, before: list | None = None,
                after: list | None = None, spi_i: bytes | None = None, spi_r: bytes | None = None,
                advance: bool = True, **header) -> bytes:
        """Any message on this IKE SA. Requests take `next_mid` (and advance it unless `message_id` is
        given or advance=False); responses take the peer's last request's Message ID. With `encrypt`,
        `payloads` go inside an SK payload; `before`/`after` are clear payloads around it (`after`
        makes the SK payload non-last)."""
        unknown = set(header) - HEADER_KEYS
        if unknown:
            raise TypeError(f"unknown overrides {sorted(unknown)}")
        if message_id is None:
            if response:
                message_id = self.peer_mid if self.peer_mid is not None else 0
            else:
                message_id = self.next_mid
                if advance:
                    self.next_mid += 1
        if encrypt and not any(isinstance(p, m.SkPayload) for p in payloads):
            payloads = [m.SkPayload(list(payloads), opts=sk_opts or SkOptions())]
        payloads = list(before or []) + list(payloads) + list(after or [])
        header.setdefault("initiator", self.initiator)
        header.setdefault("response", response)
        data = m.build_message(self.spi_i if spi_i is None else spi_i, self.spi_r if spi_r is None else spi_r,
                               exchange, message_id, payloads,
                               cipher=self.cipher_out if any(isinstance(p, m.SkPayload) for p in payloads) else None,
                               **header)
        self.sent.append(data)
        if header["response"]:
            self.last_response = data
        else:
            self.last_request = data
        return data

    def parse(self, data: bytes) -> ParsedMessage:
        """Parse a message from the peer, decrypting SK with the peer's direction keys, and note the
        Message ID of a request (for our response)."""
        cipher = self.cipher_in if self.keys is not None else None
        msg = parse_message(data, cipher)
        if msg.length and not msg.response and (msg.ok or msg.sk_error is None):
            self.peer_mid = msg.message_id
        return msg

    def retransmit(self) -> bytes:
        """The last request again, byte for byte (RFC 7296 2.1)."""
        return self.last_request

    # ----------------------------------------------------------------- IKE_SA_INIT (initiator)

    def nat_notifies(self, spi_r: bytes | None = None, wrong: bool = False) -> list[m.Payload]:
        """N(NAT_DETECTION_SOURCE_IP) and N(NAT_DETECTION_DESTINATION_IP) for our local and the peer's
        address (RFC 7296 2.23); `wrong` hashes other values (pretends a NAT)."""
        spi_r = self.spi_r if spi_r is None else spi_r
        src = nat_detection_hash(self.spi_i, spi_r, self.local[0], self.local[1] + (1 if wrong else 0))
        dst = nat_detection_hash(self.spi_i, spi_r, self.peer[0], self.peer[1] + (1 if wrong else 0))
        return [m.notify(c.N_NAT_DETECTION_SOURCE_IP, src), m.notify(c.N_NAT_DETECTION_DESTINATION_IP, dst)]

    def sa_init_request(self, proposals: list[m.Proposal] | None = None, ke_group: int | None = None,
                        ke_data: bytes | None = None, nonce: bytes | None = None, cookie: bytes | None = None,
                        nat_detection: bool = True, nat_wrong: bool = False, extra: list | None = None,
                        payloads: list | None = None, **overrides) -> bytes:
        """HDR, [N(COOKIE)], SA, KE, Ni, [N(NAT_DETECTION_*)] (RFC 7296 1.2, 2.6, 2.23). `ke_group` switches
        the DH group (e.g. after INVALID_KE_PAYLOAD, 1.2); `ke_data` sends other key bytes."""
        group = ke_group or self.algs.dh
        if self.dh is None or self.dh.group != group:
            self.dh = dh_key(group)
        self.algs.dh = group
        if nonce is not None:
            self.ni = nonce
        if payloads is None:
            payloads = ([m.notify(c.N_COOKIE, cookie)] if cookie is not None else []) + [
                m.sa(proposals or [self.algs.proposal()]),
                m.ke(group, self.dh.public if ke_data is None else ke_data), m.nonce(self.ni)]
            if nat_detection:
                payloads += self.nat_notifies(bytes(8), nat_wrong)
            payloads += extra or []
        overrides.setdefault("message_id", 0)
        data = self.message(c.IKE_SA_INIT, payloads, encrypt=False, spi_r=bytes(8), **overrides)
        self.init_request = data
        return data

    def handle_sa_init_response(self, data: bytes) -> ParsedMessage:
        """Take the responder's SPI, Nr, KE and chosen proposal and derive the keys (RFC 7296 2.14).
        A response with N(COOKIE) or N(INVALID_KE_PAYLOAD) (or any error) derives nothing."""
        msg = parse_message(data)
        if not msg.ok or msg.get(c.SA) is None or msg.get(c.KE) is None or msg.get(c.NONCE) is None:
            return msg
        self.spi_r, self.nr = msg.spi_r, msg.get(c.NONCE).fields["data"]
        chosen = msg.get(c.SA).fields["proposals"][0]
        self.algs = algorithms_of(chosen)  # type: ignore[assignment]
        ke = msg.get(c.KE).fields
        self.peer_ke = ke["data"]
        if self.dh is None or ke["group"] != self.dh.group:
            msg.ok, msg.reason = False, f"KE group {ke['group']} is not the one offered"
            return msg
        self._derive(self.dh.shared(self.peer_ke))
        self.init_response = data
        self.next_mid = 1
        return msg

    # ----------------------------------------------------------------- IKE_AUTH (initiator)

    def auth_value(self, secret: bytes, initiator_side: bool | None = None, id_body: bytes | None = None) -> bytes:
        """The AUTH value of a shared key (RFC 7296 2.15) for the initiator's side or the responder's.
        After an EAP method without MSK, pass SK_pi/SK_pr as `secret` (2.16)."""
        side = self.initiator if initiator_side is None else initiator_side
        k = self.keys
        assert k is not None
        if side:
            return psk_auth(self.algs.prf, secret, signed_octets(self.init_request, self.nr, self.algs.prf, k.sk_pi,
                                                                 id_body if id_body is not None else self.own_id_body))
        return psk_auth(self.algs.prf, secret, signed_octets(self.init_response, self.ni, self.algs.prf, k.sk_pr,
                                                             id_body if id_body is not None else self.own_id_body))

    def auth_request(self, psk: bytes | None = None, idi: str = "tester@example", idr: str | None = None,
                     cp: bool = True, tsi: list | None = None, tsr: list | None = None,
                     child_proposals: list[m.Proposal] | None = None, child_spi: bytes | None = None,
                     initial_contact: bool = False, transport_mode: bool = False, auth_data: bytes | None = None,
                     auth_method: int = c.AUTH_PSK, extra: list | None = None, payloads: list | None = None,
                     **overrides) -> bytes:
        """HDR, SK {IDi, [IDr,] [AUTH,] [CP(CFG_REQUEST),] [N(INITIAL_CONTACT),] [N(USE_TRANSPORT_MODE),]
        SA, TSi, TSr} (RFC 7296 1.2, 2.19). Without `psk` (and `auth_data`) no AUTH is sent: the
        initiator asks for EAP (2.16)."""
        id_payload = m.idi(idi)
        self.own_id_body = id_payload.body
        spi = child_spi or self.random(4)
        self.pending = {"kind": "auth", "spi_in": spi, "tsi": tsi, "tsr": tsr}
        if payloads is None:
            payloads = [id_payload] + ([m.idr(idr)] if idr else [])
            if auth_data is not None or psk is not None:
                payloads.append(m.auth(auth_method, auth_data if auth_data is not None else self.auth_value(psk, True)))
            payloads += [m.cp_request()] if cp else []
            payloads += [m.notify(c.N_INITIAL_CONTACT)] if initial_contact else []
            payloads += [m.notify(c.N_USE_TRANSPORT_MODE)] if transport_mode else []
            payloads += [m.sa(child_proposals or [self.child_algs.proposal(spi)]),
                         m.tsi(tsi or ["0.0.0.0/0"]), m.tsr(tsr or ["0.0.0.0/0"])] + (extra or [])
        return self.message(c.IKE_AUTH, payloads, **overrides)

    def handle_auth_response(self, data: bytes, psk: bytes | None = None) -> ParsedMessage:
        """Decrypt, verify the responder's AUTH with `psk` (RFC 7296 2.15; `peer_auth_ok`), note the
        virtual IP (CP) and create the child SA from SA/TSi/TSr with the IKE_SA_INIT nonces (2.17)."""
        msg = self.parse(data)
        if not msg.ok:
            return msg
        idr, auth = msg.get(c.IDR), msg.get(c.AUTH)
        if idr is not None:
            self.peer_id, self.peer_id_body = (idr.fields["id_type"], idr.fields["data"]), idr.body
        if psk is not None and auth is not None and self.peer_id_body:
            expected = self.auth_value(psk, False, self.peer_id_body)
            self.peer_auth_ok = hmac.compare_digest(expected, auth.fields["data"])
        elif psk is not None:
            self.peer_auth_ok = False
        self.virtual_ip = ip_attribute(msg, c.INTERNAL_IP4_ADDRESS)
        if msg.get(c.SA) is not None and self.pending.get("kind") == "auth":
            self._child_from_response(msg, self.ni, self.nr, None)
        return msg

    def eap_response(self, msg: ParsedMessage | None = None, password: bytes | None = None,
                     identity: bytes | None = None, payload: m.Payload | None = None, **overrides) -> bytes:
        """HDR, SK {EAP} answering the EAP request in `msg` (RFC 7296 2.16): to Identity the `identity`
        (RFC 3748 5.1), to EAP-MD5 the MD5 value over Identifier | password | challenge (RFC 3748 5.4),
        or `payload` as given."""
        if payload is None:
            req = msg.get(c.EAP).fields if msg is not None and msg.get(c.EAP) is not None else {}
            ident = req.get("identifier", 0)
            if req.get("eap_type") == c.EAP_TYPE_MD5 and password is not None:
                data = req.get("data", b"")
                payload = m.eap_md5_response(ident, password, data[1:1 + data[0]] if data else b"")
            else:
                payload = m.eap_identity_response(ident, identity or b"")
        return self.message(c.IKE_AUTH, [payload], **overrides)

    def eap_auth_request(self, msk: bytes | None = None, auth_data: bytes | None = None, **overrides) -> bytes:
        """HDR, SK {AUTH} after EAP Success: the shared key is the MSK, or SK_pi when the method made
        none (RFC 7296 2.16). Verify the answer with handle_auth_response(data, psk=msk or keys.sk_pr)."""
        value = auth_data if auth_data is not None else self.auth_value(msk or self.keys.sk_pi, True)
        return self.message(c.IKE_AUTH, [m.auth(c.AUTH_PSK, value)], **overrides)

    def _child_from_response(self, msg: ParsedMessage, ni: bytes, nr: bytes, g_ir: bytes | None,
                             replaces: bytes | None = None) -> ChildSa | None:
        """A child SA from the responder's SA/TSi/TSr; we initiated this exchange."""
        props = msg.get(c.SA).fields.get("proposals") or []
        if not props:
            return None
        algs = algorithms_of(props[0], child=True)
        keys = child_keymat(self.algs.prf, self.keys.sk_d, ni, nr, algs.encr, algs.key_bits, algs.integ, g_ir)
        ts_i, ts_r = msg.get(c.TSI), msg.get(c.TSR)
        child = ChildSa(self.pending["spi_in"], props[0]["spi"], algs, keys.encr_r, keys.integ_r, keys.encr_i,
                        keys.integ_i, ts_i.fields.get("selectors", []) if ts_i else [],
                        ts_r.fields.get("selectors", []) if ts_r else [], replaces)
        self.children.append(child)
        return child

    # ----------------------------------------------------------------- later exchanges (we request)

    def informational_request(self, payloads: list | None = None, **overrides) -> bytes:
        """HDR, SK {[N,] [D,] [CP,] ...} (RFC 7296 1.4); empty = liveness check (2.4)."""
        return self.message(c.INFORMATIONAL, payloads or [], **overrides)

    def delete_request(self, child_spis: list[bytes] | None = None, ike: bool = False, **overrides) -> bytes:
        """INFORMATIONAL with a Delete payload (RFC 7296 1.4.1, 3.11): our inbound SPIs of child SAs
        (all when None) or the IKE SA itself."""
        if ike:
            pl = [m.delete(c.PROTO_IKE, [])]
        else:
            spis = child_spis if child_spis is not None else [ch.spi_in for ch in self.children]
            pl = [m.delete(c.PROTO_ESP, spis)]
        self.pending = {"kind": "delete", "spis": pl}
        return self.informational_request(pl, **overrides)

    def create_child_request(self, rekey: ChildSa | bytes | None = None, pfs_group: int | None = None,
                             tsi: list | None = None, tsr: list | None = None,
                             proposals: list[m.Proposal] | None = None, child_spi: bytes | None = None,
                             nonce: bytes | None = None, transport_mode: bool = False, extra: list | None = None,
                             payloads: list | None = None, **overrides) -> bytes:
        """HDR, SK {[N(REKEY_SA)], [N(USE_TRANSPORT_MODE)], SA, Ni, [KEi], TSi, TSr} (RFC 7296 1.3.1,
        1.3.3). `rekey` names the child SA (or its inbound SPI) being rekeyed; `pfs_group` adds KE."""
        spi = child_spi or self.random(4)
        ni = nonce or self.random(self.nonce_len)
        dh = dh_key(pfs_group) if pfs_group else None
        old = rekey.spi_in if isinstance(rekey, ChildSa) else rekey
        algs = ChildAlgorithms(**{**vars(self.child_algs), "dh": pfs_group}) if pfs_group else self.child_algs
        self.pending = {"kind": "child", "spi_in": spi, "ni": ni, "dh": dh, "replaces": old}
        if payloads is None:
            ts_src = next((ch for ch in self.children if ch.spi_in == old), None)
            payloads = [m.notify(c.N_REKEY_SA, protocol=c.PROTO_ESP, spi=old)] if old else []
            payloads += [m.notify(c.N_USE_TRANSPORT_MODE)] if transport_mode else []
            payloads += [m.sa(proposals or [algs.proposal(spi)]), m.nonce(ni)]
            payloads += [m.ke(dh.group, dh.public)] if dh else []
            payloads += [m.tsi(tsi or [_ts(t) for t in (ts_src.ts_local if ts_src else [])] or ["0.0.0.0/0"]),
                         m.tsr(tsr or [_ts(t) for t in (ts_src.ts_remote if ts_src else [])] or ["0.0.0.0/0"])]
            payloads += extra or []
        return self.message(c.CREATE_CHILD_SA, payloads, **overrides)

    def handle_create_child_response(self, data: bytes) -> tuple[ParsedMessage, ChildSa | None]:
        """The new child SA: KEYMAT = prf+(SK_d, [g^ir |] Ni | Nr) with this exchange's nonces (2.17)."""
        msg = self.parse(data)
        if not msg.ok or msg.get(c.SA) is None or msg.get(c.NONCE) is None or self.pending.get("kind") != "child":
            return msg, None
        g_ir = None
        if self.pending["dh"] is not None:
            ke = msg.get(c.KE)
            if ke is None:
                msg.ok, msg.reason = False, "no KE in a PFS response"
                return msg, None
            g_ir = self.pending["dh"].shared(ke.fields["data"])
        return msg, self._child_from_response(msg, self.pending["ni"], msg.get(c.NONCE).fields["data"], g_ir,
                                              self.pending["replaces"])

    def rekey_ike_request(self, algs: Algorithms | None = None, new_spi: bytes | None = None,
                          nonce: bytes | None = None, extra: list | None = None, payloads: list | None = None,
                          **overrides) -> bytes:
        """HDR, SK {SA (IKE proposal with the new 8-byte SPI), Ni, KEi} (RFC 7296 1.3.2)."""
        algs = algs or Algorithms(**vars(self.algs))
        spi, ni, dh = new_spi or self.random(8), nonce or self.random(self.nonce_len), dh_key(algs.dh)
        self.pending = {"kind": "rekey_ike", "spi": spi, "ni": ni, "dh": dh}
        if payloads is None:
            payloads = [m.sa([algs.proposal(spi=spi)]), m.nonce(ni), m.ke(dh.group, dh.public)] + (extra or [])
        return self.message(c.CREATE_CHILD_SA, payloads, **overrides)

    def handle_rekey_ike_response(self, data: bytes) -> tuple[ParsedMessage, "IkeSession | None"]:
        """The new IKE SA: SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr) (RFC 7296 2.18); the rekey
        initiator becomes its initiator, Message IDs restart at 0, the children move over."""
        msg = self.parse(data)
        if not msg.ok or self.pending.get("kind") != "rekey_ike" or msg.get(c.SA) is None:
            return msg, None
        prop = msg.get(c.SA).fields["proposals"][0]
        new = IkeSession(True, algorithms_of(prop), self.child_algs, self.local, self.peer, self.random,
                         self.pending["spi"], self.nonce_len)
        new.spi_r, new.ni, new.nr = prop["spi"], self.pending["ni"], msg.get(c.NONCE).fields["data"]
        g_ir = self.pending["dh"].shared(msg.get(c.KE).fields["data"])
        a = new.algs
        seed = skeyseed_rekey(self.algs.prf, self.keys.sk_d, g_ir, new.ni, new.nr)
        new.keys = derive_ike_keys(a.prf, seed, new.ni, new.nr, new.spi_i, new.spi_r, a.encr, a.key_bits, a.integ)
        new.children = self.children
        return msg, new

    # ----------------------------------------------------------------- the tester as responder

    def handle_sa_init_request(self, data: bytes, choose: bool = True) -> ParsedMessage:
        """Take SPIi, Ni, KEi of an initiator's IKE_SA_INIT. With `choose`, the first offered proposal
        that lists the KE's group (RFC 7296 1.2: the accepted proposal's group is the KE's; the first
        proposal when none lists it) becomes this SA's algorithms, with the KE's group; otherwise
        `self.algs` stays."""
        msg = self.parse(data)
        if not msg.ok or msg.get(c.SA) is None or msg.get(c.KE) is None or msg.get(c.NONCE) is None:
            return msg
        self.spi_i, self.ni = msg.spi_i, msg.get(c.NONCE).fields["data"]
        ke = msg.get(c.KE).fields
        if choose:
            proposals = msg.get(c.SA).fields["proposals"]
            self.offered = next((p for p in proposals if any(t["type"] == c.T_DH and t["id"] == ke["group"]
                                                             for t in p["transforms"])), proposals[0])
            self.algs = algorithms_of(self.offered)  # type: ignore[assignment]
            self.algs.dh = ke["group"]
        self.peer_ke = ke["data"]
        self.init_request = data
        return msg

    def sa_init_response(self, proposal: m.Proposal | None = None, nonce: bytes | None = None,
                         nat_detection: bool = True, nat_wrong: bool = False, ke_data: bytes | None = None,
                         extra: list | None = None, payloads: list | None = None, **overrides) -> bytes:
        """HDR, SA, KEr, Nr, [N(NAT_DETECTION_*)] (RFC 7296 1.2), and derive the keys."""
        if nonce is not None:
            self.nr = nonce
        if self.dh is None or self.dh.group != self.algs.dh:
            self.dh = dh_key(self.algs.dh)
        if payloads is None:
            num = getattr(self, "offered", {"number": 1})["number"]
            payloads = [m.sa([proposal or self.algs.proposal(num)]),
                        m.ke(self.dh.group, self.dh.public if ke_data is None else ke_data), m.nonce(self.nr)]
            if nat_detection:
                payloads += self.nat_notifies(None, nat_wrong)
            payloads += extra or []
        data = self.message(c.IKE_SA_INIT, payloads, response=True, encrypt=False, message_id=0, **overrides)
        self.init_response = data
        self._derive(self.dh.shared(self.peer_ke))
        return data

    def sa_init_error(self, notify: m.Payload, **overrides) -> bytes:
        """HDR(SPIr = 0), N(...): COOKIE, INVALID_KE_PAYLOAD (data = the group, 2 bytes),
        NO_PROPOSAL_CHOSEN (RFC 7296 1.2, 2.6, 3.10.1)."""
        return self.message(c.IKE_SA_INIT, [notify], response=True, encrypt=False, message_id=0,
                            spi_r=bytes(8), **overrides)

    def handle_auth_request(self, data: bytes, psk: bytes | None = None) -> ParsedMessage:
        """Decrypt the initiator's IKE_AUTH, verify its AUTH with `psk` (`peer_auth_ok`), keep its child
        offer for auth_response."""
        msg = self.parse(data)
        if not msg.ok:
            return msg
        idi, auth = msg.get(c.IDI), msg.get(c.AUTH)
        if idi is not None:
            self.peer_id = (idi.fields["id_type"], idi.fields["data"])
        if psk is not None:
            self.peer_auth_ok = bool(auth and idi and hmac.compare_digest(
                self.auth_value(psk, True, idi.body), auth.fields["data"]))
        self._note_child_offer(msg)
        return msg

    def _note_child_offer(self, msg: ParsedMessage) -> None:
        sa_p, ts_i, ts_r = msg.get(c.SA), msg.get(c.TSI), msg.get(c.TSR)
        props = sa_p.fields.get("proposals", []) if sa_p else []
        self.pending = {"kind": "offer", "proposal": props[0] if props else None,
                        "tsi": ts_i.fields.get("selectors", []) if ts_i else [],
                        "tsr": ts_r.fields.get("selectors", []) if ts_r else [],
                        "ni": (msg.get(c.NONCE).fields["data"] if msg.get(c.NONCE) else None),
                        "ke": msg.get(c.KE).fields if msg.get(c.KE) else None,
                        "rekey": (msg.notify(c.N_REKEY_SA).fields["spi"] if msg.notify(c.N_REKEY_SA) else None)}

    def auth_response(self, psk: bytes, idr: str = "gw.example", cp_address: str | None = "10.9.0.1",
                      dns: list[str] | None = None, tsi: list | None = None, tsr: list | None = None,
                      proposal: m.Proposal | None = None, child_spi: bytes | None = None,
                      auth_data: bytes | None = None, extra: list | None = None, payloads: list | None = None,
                      **overrides) -> bytes:
        """HDR, SK {IDr, AUTH, [CP(CFG_REPLY)], SA, TSi, TSr} (RFC 7296 1.2, 2.19), creating the child SA
        from the initiator's first proposal. TSi defaults to the assigned address, TSr to 0.0.0.0/0."""
        id_payload = m.idr(idr)
        self.own_id_body = id_payload.body
        offer = self.pending.get("proposal") if self.pending.get("kind") == "offer" else None
        spi = child_spi or self.random(4)
        ts_i = tsi or ([f"{cp_address}/32"] if cp_address else [_ts(t) for t in self.pending.get("tsi", [])])
        ts_r = tsr or [_ts(t) for t in self.pending.get("tsr", [])] or ["0.0.0.0/0"]
        if payloads is None:
            payloads = [id_payload, m.auth(c.AUTH_PSK, auth_data if auth_data is not None else self.auth_value(psk))]
            if cp_address:
                attrs = [(c.INTERNAL_IP4_ADDRESS, ipaddress.IPv4Address(cp_address).packed)]
                attrs += [(c.INTERNAL_IP4_DNS, ipaddress.IPv4Address(d).packed) for d in dns or []]
                payloads.append(m.cp(c.CFG_REPLY, attrs))
            if offer is not None:
                algs = algorithms_of(offer, child=True)
                payloads.append(m.sa([proposal or algs.proposal(spi, offer["number"])]))
                payloads += [m.tsi(ts_i), m.tsr(ts_r)]
            payloads += extra or []
        if offer is not None:
            self._child_as_responder(offer, spi, self.ni, self.nr, None, ts_i, ts_r)
        return self.message(c.IKE_AUTH, payloads, response=True, **overrides)

    def _child_as_responder(self, offer: dict, spi: bytes, ni: bytes, nr: bytes, g_ir: bytes | None,
                            ts_i: list, ts_r: list, replaces: bytes | None = None) -> ChildSa:
        algs = algorithms_of(offer, child=True)
        keys = child_keymat(self.algs.prf, self.keys.sk_d, ni, nr, algs.encr, algs.key_bits, algs.integ, g_ir)
        child = ChildSa(spi, offer["spi"], algs, keys.encr_i, keys.integ_i, keys.encr_r, keys.integ_r,
                        [_sel(t) for t in ts_r], [_sel(t) for t in ts_i], replaces)
        self.children.append(child)
        return child

    def handle_create_child_request(self, data: bytes) -> ParsedMessage:
        """Decrypt a CREATE_CHILD_SA request of the IUT (rekey of a child SA, 1.3.3) and keep its offer."""
        msg = self.parse(data)
        if msg.ok:
            self._note_child_offer(msg)
        return msg

    def create_child_response(self, child_spi: bytes | None = None, nonce: bytes | None = None,
                              extra: list | None = None, payloads: list | None = None, **overrides) -> bytes:
        """HDR, SK {SA, Nr, [KEr], TSi, TSr} answering the peer's CREATE_CHILD_SA (RFC 7296 1.3.1)."""
        offer = self.pending
        spi, nr = child_spi or self.random(4), nonce or self.random(self.nonce_len)
        ts_i = [_ts(t) for t in offer.get("tsi", [])] or ["0.0.0.0/0"]
        ts_r = [_ts(t) for t in offer.get("tsr", [])] or ["0.0.0.0/0"]
        dh = dh_key(offer["ke"]["group"]) if offer.get("ke") else None
        if payloads is None:
            algs = algorithms_of(offer["proposal"], child=True)
            payloads = [m.sa([algs.proposal(spi, offer["proposal"]["number"])]), m.nonce(nr)]
            payloads += [m.ke(dh.group, dh.public)] if dh else []
            payloads += [m.tsi(ts_i), m.tsr(ts_r)] + (extra or [])
        g_ir = dh.shared(offer["ke"]["data"]) if dh else None
        if offer.get("proposal"):
            self._child_as_responder(offer["proposal"], spi, offer["ni"], nr, g_ir, ts_i, ts_r, offer.get("rekey"))
        return self.message(c.CREATE_CHILD_SA, payloads, response=True, **overrides)

    def informational_response(self, payloads: list | None = None, **overrides) -> bytes:
        """HDR, SK {...} answering the peer's INFORMATIONAL (empty by default, RFC 7296 1.4)."""
        return self.message(c.INFORMATIONAL, payloads or [], response=True, **overrides)

    def response(self, exchange: int, payloads: list, **overrides) -> bytes:
        """Any response on this IKE SA (e.g. an error notify answering IKE_AUTH)."""
        return self.message(exchange, payloads, response=True, **overrides)


def _ts(sel: dict) -> m.TrafficSelector:
    return m.TrafficSelector(sel.get("start", "0.0.0.0"), sel.get("end", "255.255.255.255"), sel.get("protocol", 0),
                             sel.get("start_port", 0), sel.get("end_port", 65535))


def _sel(ts) -> dict:
    ts = m.TrafficSelector.from_cidr(ts) if isinstance(ts, str) else ts
    return {"ts_type": c.TS_IPV4_ADDR_RANGE, "protocol": ts.protocol, "start_port": ts.start_port,
            "end_port": ts.end_port, "start": ts.start, "end": ts.end}


def peek_header(data: bytes) -> ParsedMessage:
    """Header fields only (e.g. to find which session a datagram belongs to)."""
    return parse_header(data)


__all__ = ["Algorithms", "ChildAlgorithms", "ChildSa", "IkeSession", "algorithms_of", "peek_header"]
