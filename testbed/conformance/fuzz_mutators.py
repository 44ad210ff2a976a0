"""The mutation engine of `testbed fuzz ike` (sans-I/O): a model of one IKEv2 message (header fields,
the clear payload chain, the SK payload's inner chain and its options) made from the valid message
the tester would send, and seeded mutators of every layer of it.

    model = model_of(valid_bytes, cipher)          # the tester's own message, decrypted with its keys
    mut = mutate(model, mutation_rng(seed, index))  # deterministic per (seed, index)
    data = mut.encode(cipher)                       # bytes to send (SK sealed after inner mutations)

Layers (RFC 7296 section 3): the IKE header (version, flags, exchange type, Message ID, SPIs,
Length, Next Payload, trailing bytes), the payload chain (Next Payload, C bit, RESERVED bits,
Payload Length, removal, duplication, reordering, unknown and foreign payloads), payload bodies
(bit flips, truncation, garbage), fields of known bodies (SA proposals and transforms, KE group and
data, Notify type/protocol/SPI size/data, Nonce, ID, AUTH, TS, Delete, CP) and, for encrypted
messages, the SK payload: the inner chain is mutated before encryption (the IUT parses it), or the
sealed bytes after (IV, ciphertext, ICV: integrity failures; padding lies; SK header; SK not last;
inner payloads sent in clear). Every mutation is described in one line (`desc`).
"""
from __future__ import annotations

import copy
import random
import struct
from dataclasses import dataclass, field
from typing import Callable

from testbed.conformance.ike import constants as c
from testbed.conformance.ike.parse import parse_message
from testbed.conformance.ike.sk import SkCipher, SkOptions

MAX_DATAGRAM = 60000
KNOWN_TYPES = [c.SA, c.KE, c.IDI, c.IDR, c.CERT, c.CERTREQ, c.AUTH, c.NONCE, c.NOTIFY, c.DELETE, c.VENDOR_ID,
               c.TSI, c.TSR, c.CP, c.EAP]
EXCHANGE_VALUES = [0, 1, 33, c.IKE_SA_INIT, c.IKE_AUTH, c.CREATE_CHILD_SA, c.INFORMATIONAL, 38, 43, 240, 255]
ERROR_NOTIFIES = [1, 4, 5, 7, 9, 11, 14, 17, 24, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48]
STATUS_NOTIFIES = list(range(16384, 16440)) + [16407, 16408, 16417, 16418, 16419, 16430, 16431]


def mutation_rng(seed: int, index: int) -> random.Random:
    """The random source of mutation `index` of a run seeded with `seed`: independent of the others,
    so that one mutation replays alone (`--seed S --only I`)."""
    return random.Random(f"ike-fuzz/{seed}/{index}")


# ----------------------------------------------------------------------------- the model

@dataclass
class Pl:
    """One payload of the model: type, body, flags octet and the overrides of its generic header."""
    type: int
    body: bytes
    flags: int = 0
    next_payload: int | None = None
    length: int | None = None


@dataclass
class Msg:
    spi_i: bytes
    spi_r: bytes
    exchange: int
    message_id: int
    flags: int
    version: int = c.VERSION_2_0
    clear: list[Pl] = field(default_factory=list)        # payloads before SK (all of them when clear)
    inner: list[Pl] | None = None                         # SK contents; None: an unencrypted message
    after: list[Pl] = field(default_factory=list)         # clear payloads after SK (SK not last)
    next_payload: int | None = None
    length: int | None = None
    trailing: bytes = b""
    sk_flags: int = 0
    sk_next: int | None = None
    sk_length: int | None = None
    sk_opts: SkOptions = field(default_factory=SkOptions)

    @property
    def encrypted(self) -> bool:
        return self.inner is not None

    def encode(self, cipher: SkCipher | None = None) -> bytes:
        return encode(self, cipher)[0]


def _chain(pls: list[Pl], follow: int) -> bytes:
    out = b""
    for i, p in enumerate(pls):
        nxt = p.next_payload if p.next_payload is not None else (pls[i + 1].type if i + 1 < len(pls) else follow)
        length = p.length if p.length is not None else 4 + len(p.body)
        out += struct.pack("!BBH", nxt & 0xFF, p.flags & 0xFF, length & 0xFFFF) + p.body
    return out


def _header(msg: Msg, first: int, total: int) -> bytes:
    nxt = msg.next_payload if msg.next_payload is not None else first
    length = msg.length if msg.length is not None else total
    return struct.pack("!8s8sBBBBII", msg.spi_i[:8].ljust(8, b"\0"), msg.spi_r[:8].ljust(8, b"\0"), nxt & 0xFF,
                       msg.version & 0xFF, msg.exchange & 0xFF, msg.flags & 0xFF, msg.message_id & 0xFFFFFFFF,
                       length & 0xFFFFFFFF)


def encode(msg: Msg, cipher: SkCipher | None) -> tuple[bytes, tuple[int, int] | None]:
    """The message's bytes and where the SK payload's body (IV | ciphertext | ICV) lies in them."""
    if msg.inner is None:
        body = _chain(msg.clear + msg.after, c.NO_NEXT)
        first = (msg.clear + msg.after)[0].type if msg.clear + msg.after else c.NO_NEXT
        return _header(msg, first, c.IKE_HEADER_LEN + len(body)) + body + msg.trailing, None
    if cipher is None:
        raise ValueError("an encrypted model needs the cipher")
    pre = _chain(msg.clear, c.SK)
    inner = _chain(msg.inner, c.NO_NEXT)
    post = _chain(msg.after, c.NO_NEXT)
    opts = copy.copy(msg.sk_opts)
    if opts.iv is not None:
        opts.iv = opts.iv[:cipher.iv_len].ljust(cipher.iv_len, b"\0")
    if opts.pad_len is not None and not cipher.gcm:  # AES-CBC: keep the block alignment
        opts.pad_len = cipher.default_pad_len(len(inner)) + 16 * (opts.pad_len % 4)
        opts.pad_bytes = (opts.pad_bytes or b"").ljust(opts.pad_len, b"\xa5")[:opts.pad_len]
    if opts.pad_bytes is not None and opts.pad_len is not None:
        opts.pad_bytes = opts.pad_bytes.ljust(opts.pad_len, b"\xa5")[:opts.pad_len]
    body_len = cipher.body_len(len(inner), opts)
    if opts.icv is not None:
        body_len += len(opts.icv) - cipher.icv_len
    sk_next = msg.sk_next if msg.sk_next is not None else (msg.inner[0].type if msg.inner else c.NO_NEXT)
    sk_hdr = struct.pack("!BBH", sk_next & 0xFF, msg.sk_flags & 0xFF,
                         (msg.sk_length if msg.sk_length is not None else 4 + body_len) & 0xFFFF)
    first = msg.clear[0].type if msg.clear else c.SK
    total = c.IKE_HEADER_LEN + len(pre) + 4 + body_len + len(post)
    prefix = _header(msg, first, total) + pre + sk_hdr
    sealed = cipher.seal(prefix, inner, opts)
    return prefix + sealed + post + msg.trailing, (len(prefix), len(prefix) + len(sealed))


def model_of(data: bytes, cipher: SkCipher | None = None) -> Msg:
    """The model of a well-formed message (the tester's own, decrypted with its outbound keys)."""
    p = parse_message(data, cipher)
    if not p.ok:
        raise ValueError(f"not a well-formed message: {p.reason}")
    enc = p.encrypted
    if enc and p.inner is None:
        raise ValueError(f"cannot open the SK payload: {p.sk_error}")
    clear = [Pl(x.type, x.body, x.flags) for x in p.payloads if x.type != c.SK]
    inner = [Pl(x.type, x.body, x.flags) for x in p.inner] if enc else None
    return Msg(p.spi_i, p.spi_r, p.exchange, p.message_id, p.flags, p.version, clear, inner)


# ----------------------------------------------------------------------------- a mutation

@dataclass
class Mutation:
    msg: Msg
    desc: str
    layer: str                      # header, chain, body, field, sk
    post: Callable[[bytes, tuple[int, int] | None], bytes] | None = None  # on the sealed bytes

    def encode(self, cipher: SkCipher | None = None) -> bytes:
        data, span = encode(self.msg, cipher)
        if self.post is not None:
            data = self.post(data, span)
        return data[:MAX_DATAGRAM]


def _interesting(rng: random.Random, size: int, current: int | None = None) -> int:
    top = (1 << (8 * size)) - 1
    vals = [0, 1, top, top - 1, top >> 1, (top >> 1) + 1, rng.randint(0, top)]
    if current is not None:
        vals += [(current + 1) & top, (current - 1) & top, current ^ (1 << rng.randrange(8 * size))]
        vals = [v for v in vals if v != current]
    return rng.choice(vals)


def _garbage(rng: random.Random, lo: int = 1, hi: int = 64) -> bytes:
    n = rng.randint(lo, hi)
    kind = rng.randrange(3)
    if kind == 0:
        return rng.randbytes(n)
    return bytes([0 if kind == 1 else 0xFF]) * n


def _flip_bits(rng: random.Random, data: bytes, n: int) -> bytes:
    if not data:
        return data
    b = bytearray(data)
    for _ in range(n):
        i = rng.randrange(len(b) * 8)
        b[i // 8] ^= 0x80 >> (i % 8)
    return bytes(b)


def _put(body: bytes, off: int, size: int, value: int) -> bytes:
    if off + size > len(body):
        return body
    return body[:off] + value.to_bytes(size, "big") + body[off + size:]


# ----------------------------------------------------------------------------- field tables

def sa_fields(body: bytes) -> list[tuple[int, int, str]]:
    """(offset, size, name) of every fixed field of the proposals, transforms and attributes of an SA
    body, walking it leniently (stops where the structure breaks)."""
    out, pos = [], 0
    while pos + 8 <= len(body):
        plen, spi_size = struct.unpack("!H", body[pos + 2:pos + 4])[0], body[pos + 6]
        out += [(pos, 1, "proposal.last"), (pos + 1, 1, "proposal.reserved"), (pos + 2, 2, "proposal.length"),
                (pos + 4, 1, "proposal.number"), (pos + 5, 1, "proposal.protocol"), (pos + 6, 1, "proposal.spi_size"),
                (pos + 7, 1, "proposal.num_transforms")]
        tpos, tend = pos + 8 + spi_size, min(pos + max(plen, 8), len(body))
        while tpos + 8 <= tend:
            tlen = struct.unpack("!H", body[tpos + 2:tpos + 4])[0]
            out += [(tpos, 1, "transform.last"), (tpos + 1, 1, "transform.reserved"), (tpos + 2, 2, "transform.length"),
                    (tpos + 4, 1, "transform.type"), (tpos + 5, 1, "transform.reserved2"), (tpos + 6, 2, "transform.id")]
            apos = tpos + 8
            while apos + 4 <= min(tpos + max(tlen, 8), tend):
                out += [(apos, 2, "attribute.type"), (apos + 2, 2, "attribute.value")]
                apos += 4
            tpos += max(tlen, 8)
        pos += max(plen, 8)
    return out


def body_fields(ptype: int, body: bytes) -> list[tuple[int, int, str]]:
    """(offset, size, name) of the fixed fields of a known payload body (RFC 7296 3.3-3.16)."""
    if ptype == c.SA:
        return sa_fields(body)
    if ptype == c.KE:
        return [(0, 2, "ke.group"), (2, 2, "ke.reserved")]
    if ptype in (c.IDI, c.IDR):
        return [(0, 1, "id.type"), (1, 3, "id.reserved")]
    if ptype == c.AUTH:
        return [(0, 1, "auth.method"), (1, 3, "auth.reserved")]
    if ptype in (c.CERT, c.CERTREQ):
        return [(0, 1, "cert.encoding")]
    if ptype == c.NOTIFY:
        return [(0, 1, "notify.protocol"), (1, 1, "notify.spi_size"), (2, 2, "notify.type")]
    if ptype == c.DELETE:
        return [(0, 1, "delete.protocol"), (1, 1, "delete.spi_size"), (2, 2, "delete.num_spis")]
    if ptype in (c.TSI, c.TSR):
        out, pos = [(0, 1, "ts.count"), (1, 3, "ts.reserved")], 4
        while pos + 8 <= len(body):
            slen = max(struct.unpack("!H", body[pos + 2:pos + 4])[0], 8)
            out += [(pos, 1, "selector.type"), (pos + 1, 1, "selector.protocol"), (pos + 2, 2, "selector.length"),
                    (pos + 4, 2, "selector.start_port"), (pos + 6, 2, "selector.end_port")]
            pos += slen
        return out
    if ptype == c.CP:
        out, pos = [(0, 1, "cp.type"), (1, 3, "cp.reserved")], 4
        while pos + 4 <= len(body):
            out += [(pos, 2, "cp.attr_type"), (pos + 2, 2, "cp.attr_length")]
            pos += 4 + struct.unpack("!H", body[pos + 2:pos + 4])[0]
        return out
    if ptype == c.EAP:
        return [(0, 1, "eap.code"), (1, 1, "eap.identifier"), (2, 2, "eap.length")]
    return []


# ----------------------------------------------------------------------------- mutators

def _target(rng: random.Random, msg: Msg) -> tuple[list[Pl], str]:
    """The chain a chain/body/field mutation works on: mostly the inner one of an encrypted message."""
    if msg.inner is not None and (not msg.clear or rng.random() < 0.85):
        return msg.inner, "inner"
    return msg.clear, "clear"


def _random_type(rng: random.Random) -> int:
    return rng.choice([rng.choice(KNOWN_TYPES), rng.randint(1, 32), rng.randint(49, 255), c.SK, 0, 255])


def _header_mutation(rng: random.Random, msg: Msg, real_len: int) -> str:
    what = rng.choice(["version", "flags", "exchange", "message_id", "spi_i", "spi_r", "length", "next_payload",
                       "trailing"])
    if what == "version":
        msg.version = rng.choice([0x10, 0x30, 0xF0, 0x21, 0x2F, 0x00, 0xFF, 0x02, rng.randrange(256)])
        return f"header version 0x{msg.version:02x}"
    if what == "flags":
        choice = rng.randrange(4)
        if choice == 0:
            msg.flags ^= 1 << rng.randrange(8)
        elif choice == 1:
            msg.flags = rng.choice([0x00, 0xFF, c.FLAG_R, c.FLAG_R | c.FLAG_I, 0xC7 | c.FLAG_I, c.FLAG_V | c.FLAG_I])
        else:
            msg.flags = rng.randrange(256)
        return f"header flags 0x{msg.flags:02x}"
    if what == "exchange":
        msg.exchange = rng.choice(EXCHANGE_VALUES + [rng.randrange(256)])
        return f"header exchange type {msg.exchange}"
    if what == "message_id":
        msg.message_id = _interesting(rng, 4, msg.message_id)
        return f"header message ID {msg.message_id}"
    if what in ("spi_i", "spi_r"):
        old = getattr(msg, what)
        new = rng.choice([bytes(8), b"\xff" * 8, rng.randbytes(8), _flip_bits(rng, old, 1)])
        setattr(msg, what, new)
        return f"header {what} {new.hex()}"
    if what == "length":
        msg.length = rng.choice([0, 1, 27, 28, real_len - 1, real_len + 1, real_len + 100, real_len * 2, 0xFFFF,
                                 0xFFFFFFFF, rng.randrange(1 << 32)]) & 0xFFFFFFFF
        return f"header length {msg.length} (real {real_len})"
    if what == "next_payload":
        msg.next_payload = _random_type(rng)
        return f"header next payload {msg.next_payload}"
    msg.trailing = _garbage(rng, 1, 200)
    return f"{len(msg.trailing)} bytes after the last payload, not counted"


def _new_payload(rng: random.Random) -> tuple[Pl, str]:
    kind = rng.randrange(3)
    if kind == 0:  # unknown, critical or not
        t = rng.choice([rng.randint(1, 32), rng.randint(49, 127), rng.randint(128, 255)])
        crit = rng.random() < 0.5
        return Pl(t, _garbage(rng, 0, 64), c.CRITICAL if crit else 0), f"unknown payload {t}{' (critical)' if crit else ''}"
    if kind == 1:  # a notify of any type
        nt = rng.choice([rng.choice(ERROR_NOTIFIES), rng.choice(STATUS_NOTIFIES), rng.randrange(65536)])
        proto, spi = rng.choice([(0, b""), (1, rng.randbytes(8)), (3, rng.randbytes(4)), (rng.randrange(256), b"")])
        body = struct.pack("!BBH", proto, len(spi), nt) + spi + _garbage(rng, 0, 48)
        return Pl(c.NOTIFY, body), f"notify {c.notify_name(nt)} proto {proto}"
    t = rng.choice(KNOWN_TYPES)
    return Pl(t, _garbage(rng, 0, 80)), f"{c.payload_name(t)} with a garbage body"


def _chain_mutation(rng: random.Random, msg: Msg) -> str:
    pls, where = _target(rng, msg)
    ops = ["insert", "insert"] + (["next_payload", "critical", "reserved", "length", "remove", "duplicate", "swap",
                                   "many", "clear_all"] if pls else [])
    op = rng.choice(ops)
    if op == "insert":
        p, d = _new_payload(rng)
        i = rng.randint(0, len(pls))
        pls.insert(i, p)
        return f"{where} chain: insert {d} at {i}"
    i = rng.randrange(len(pls))
    p = pls[i]
    name = c.payload_name(p.type)
    if op == "next_payload":
        p.next_payload = _random_type(rng)
        return f"{where} chain: {name}#{i} next payload {p.next_payload}"
    if op == "critical":
        p.flags |= c.CRITICAL
        return f"{where} chain: {name}#{i} critical bit set"
    if op == "reserved":
        p.flags = (p.flags & c.CRITICAL) | rng.randint(1, 0x7F)
        return f"{where} chain: {name}#{i} reserved bits 0x{p.flags & 0x7F:02x}"
    if op == "length":
        real = 4 + len(p.body)
        p.length = rng.choice([0, 1, 2, 3, 4, real - 1, real + 1, real + 4, real + 64, 0xFFFF, rng.randrange(65536)]) & 0xFFFF
        return f"{where} chain: {name}#{i} payload length {p.length} (real {real})"
    if op == "remove":
        del pls[i]
        return f"{where} chain: remove {name}#{i}"
    if op == "duplicate":
        pls.insert(rng.choice([i + 1, len(pls)]), copy.copy(p))
        return f"{where} chain: duplicate {name}#{i}"
    if op == "swap":
        j = rng.randrange(len(pls))
        pls[i], pls[j] = pls[j], pls[i]
        return f"{where} chain: swap #{i} and #{j}"
    if op == "many":
        n = rng.choice([10, 50, 200])
        n = max(1, min(n, 20000 // (4 + len(p.body))))
        pls[i + 1:i + 1] = [copy.copy(p) for _ in range(n)]
        return f"{where} chain: {name}#{i} repeated {n} more times"
    del pls[:]
    return f"{where} chain: every payload removed"


def _body_mutation(rng: random.Random, msg: Msg) -> str:
    pls, where = _target(rng, msg)
    if not pls:
        return _chain_mutation(rng, msg)
    i = rng.randrange(len(pls))
    p = pls[i]
    name = c.payload_name(p.type)
    op = rng.choice(["bitflip", "bitflip", "truncate", "extend", "big", "zero", "random", "empty"])
    if op == "bitflip":
        n = rng.choice([1, 1, 2, 4, 8])
        p.body = _flip_bits(rng, p.body, n)
        return f"{where} {name}#{i}: {n} bits flipped"
    if op == "truncate":
        n = rng.randrange(len(p.body)) if p.body else 0
        p.body = p.body[:n]
        return f"{where} {name}#{i}: body truncated to {n} bytes"
    if op == "extend":
        g = _garbage(rng, 1, 64)
        p.body += g
        return f"{where} {name}#{i}: {len(g)} garbage bytes appended"
    if op == "big":
        n = rng.choice([1000, 4000, 16000])
        p.body += rng.randbytes(n)
        return f"{where} {name}#{i}: {n} bytes appended"
    if op == "zero":
        p.body = bytes(len(p.body))
        return f"{where} {name}#{i}: body zeroed"
    if op == "random":
        p.body = rng.randbytes(len(p.body))
        return f"{where} {name}#{i}: body randomized"
    p.body = b""
    return f"{where} {name}#{i}: empty body"


def _structural_sa(rng: random.Random, p: Pl) -> str:
    op = rng.choice(["unknown_transform", "unknown_id", "many_proposals", "empty", "extra_attribute", "drop_tail"])
    body = p.body
    if op == "unknown_transform" or op == "unknown_id":
        ttype = rng.choice([0, 6, 7, 100, 255]) if op == "unknown_transform" else rng.choice([1, 2, 3, 4])
        tid = rng.choice([0, 999, 0xFFFF, rng.randrange(65536)])
        extra = struct.pack("!BBHBBH", 0, 0, 8, ttype, 0, tid)
        if len(body) >= 8:  # into the first proposal: one transform more, its length and count follow
            plen, ntr = struct.unpack("!H", body[2:4])[0], body[7]
            body = body[:2] + struct.pack("!H", (plen + 8) & 0xFFFF) + body[4:7] + bytes([(ntr + 1) & 0xFF]) + body[8:]
            end = min(plen, len(body))
            body = body[:end] + extra + body[end:]
            # the previous last transform now says "more"
            tpos, last_t = 8 + body[6], None
            while tpos + 8 <= end:
                last_t = tpos
                tpos += max(struct.unpack("!H", body[tpos + 2:tpos + 4])[0], 8)
            if last_t is not None:
                body = body[:last_t] + b"\x03" + body[last_t + 1:]
        p.body = body
        return f"SA: transform type {ttype} id {tid} added to proposal 1"
    if op == "many_proposals":
        n = rng.choice([2, 16, 64, 255])
        if len(body) >= 8:
            plen = max(8, min(struct.unpack("!H", body[2:4])[0], len(body)))
            prop = body[:plen]
            props = []
            for k in range(n):
                pr = bytearray(prop)
                pr[0] = 0 if k == n - 1 else 2
                pr[4] = (k + 1) & 0xFF
                props.append(bytes(pr))
            p.body = b"".join(props)[:20000]
        return f"SA: {n} copies of proposal 1"
    if op == "empty":
        p.body = b""
        return "SA: no proposal"
    if op == "extra_attribute":
        attr = rng.choice([struct.pack("!HH", 0x8000 | rng.randrange(1 << 15), rng.randrange(65536)),
                           struct.pack("!HH", rng.randrange(1 << 15), 200) + rng.randbytes(rng.randrange(201))])
        p.body = body + attr
        return f"SA: {len(attr)} attribute bytes after the last proposal"
    cut = rng.randrange(1, 12)
    p.body = body[:-cut] if len(body) > cut else b""
    return f"SA: last {cut} bytes cut"


def _field_mutation(rng: random.Random, msg: Msg) -> str:
    pls, where = _target(rng, msg)
    cands = [i for i, p in enumerate(pls) if body_fields(p.type, p.body)]
    if not cands:
        return _body_mutation(rng, msg)
    i = rng.choice(cands)
    p = pls[i]
    name = c.payload_name(p.type)
    if p.type == c.SA and rng.random() < 0.35:
        return f"{where} {name}#{i}: " + _structural_sa(rng, p)
    if p.type == c.KE and rng.random() < 0.5:
        data = p.body[4:]
        op = rng.choice(["empty", "one", "short", "long", "double", "huge", "group"])
        new = {"empty": b"", "one": data[:1], "short": data[:-1], "long": data + b"\0", "double": data + data,
               "huge": data + rng.randbytes(1000), "group": data}[op]
        if op == "group":
            g = rng.choice([0, 1, 2, 5, 14, 15, 19, 20, 21, 31, 32, 0xFFFF, rng.randrange(65536)])
            p.body = struct.pack("!H", g) + p.body[2:]
            return f"{where} KE#{i}: DH group {g} with unchanged key data ({len(data)} bytes)"
        p.body = p.body[:4] + new
        return f"{where} KE#{i}: key exchange data {len(new)} bytes (was {len(data)})"
    if p.type == c.NOTIFY and rng.random() < 0.5:
        op = rng.choice(["type", "spi_lie", "data", "huge"])
        if op == "type" and len(p.body) >= 4:
            nt = rng.choice([rng.choice(ERROR_NOTIFIES), rng.choice(STATUS_NOTIFIES), 0, 65535, rng.randrange(65536)])
            p.body = _put(p.body, 2, 2, nt)
            return f"{where} N#{i}: type {c.notify_name(nt)}"
        if op == "spi_lie" and len(p.body) >= 2:
            v = rng.choice([1, 4, 8, 16, 255])
            p.body = _put(p.body, 1, 1, v)
            return f"{where} N#{i}: SPI size {v}"
        n = 1 if op == "data" else rng.choice([1000, 8000])
        p.body += rng.randbytes(rng.randint(1, 64) if op == "data" else n)
        return f"{where} N#{i}: notification data extended"
    if p.type == c.NONCE and rng.random() < 0.5:
        n = rng.choice([0, 1, 15, 16, 256, 257, 1000])
        p.body = rng.randbytes(n)
        return f"{where} Nonce#{i}: {n} bytes"
    if p.type == c.DELETE and rng.random() < 0.4:
        n = rng.choice([0, 2, 100, 0xFFFF])
        p.body = _put(p.body, 2, 2, n) + (rng.randbytes(4 * min(n, 100)) if rng.random() < 0.5 else b"")
        return f"{where} D#{i}: {n} SPIs announced"
    off, size, fname = rng.choice(body_fields(p.type, p.body))
    old = int.from_bytes(p.body[off:off + size], "big") if off + size <= len(p.body) else None
    v = _interesting(rng, size, old)
    p.body = _put(p.body, off, size, v)
    return f"{where} {name}#{i}: {fname} {old} -> {v}"


def _sk_mutation(rng: random.Random, msg: Msg) -> tuple[str, Callable | None]:
    op = rng.choice(["ct_flip", "iv_flip", "icv_flip", "header_flip", "truncate", "icv_short", "pad_lie", "padding",
                     "sk_flags", "sk_next", "sk_length", "not_last", "clear_before", "unencrypted", "extend"])
    if op in ("ct_flip", "iv_flip", "icv_flip", "header_flip"):
        r = rng.random()

        def flip(data: bytes, span, op=op, r=r) -> bytes:
            s, e = span
            lo, hi = {"ct_flip": (s + 8, e - 16), "iv_flip": (s, s + 8), "icv_flip": (e - 16, e),
                      "header_flip": (0, c.IKE_HEADER_LEN)}[op]
            lo, hi = max(0, min(lo, len(data) - 1)), max(1, min(hi, len(data)))
            i = min(lo + int(r * max(hi - lo, 1)), len(data) - 1)
            b = bytearray(data)
            b[i] ^= 1 << (int(r * 8000) % 8)
            return bytes(b)
        return f"sealed message: a bit flipped in the {op.split('_')[0]} (integrity failure)", flip
    if op == "truncate":
        k = rng.choice([1, 4, 8, 16, 17, 32])

        def cut(data: bytes, span, k=k) -> bytes:
            s, e = span
            k2 = min(k, e - s)
            out = bytearray(data[:e - k2] + data[e:])
            struct.pack_into("!I", out, 24, len(out))
            struct.pack_into("!H", out, s - 2, e - k2 - (s - 4))
            return bytes(out)
        return f"sealed message: SK body {k} bytes shorter, lengths fixed", cut
    if op == "extend":
        g = rng.randbytes(rng.choice([1, 16, 100]))

        def grow(data: bytes, span, g=g) -> bytes:
            s, e = span
            out = bytearray(data[:e] + g + data[e:])
            struct.pack_into("!I", out, 24, len(out))
            struct.pack_into("!H", out, s - 2, (e + len(g) - (s - 4)) & 0xFFFF)
            return bytes(out)
        return f"sealed message: {len(g)} bytes after the ICV, lengths fixed", grow
    if op == "icv_short":
        msg.sk_opts.icv = rng.choice([b"", rng.randbytes(1), rng.randbytes(8), rng.randbytes(15), rng.randbytes(32)])
        return f"SK: ICV of {len(msg.sk_opts.icv)} bytes", None
    if op == "pad_lie":
        msg.sk_opts.pad_length_field = rng.choice([1, 15, 16, 127, 255, rng.randrange(256)])
        return f"SK: Pad Length {msg.sk_opts.pad_length_field} (valid ICV)", None
    if op == "padding":
        msg.sk_opts.pad_len = rng.choice([1, 4, 15, 16, 100, 255])
        msg.sk_opts.pad_bytes = _garbage(rng, 255, 255)
        return f"SK: {msg.sk_opts.pad_len} padding bytes (non-zero, valid ICV)", None
    if op == "sk_flags":
        msg.sk_flags = rng.choice([c.CRITICAL, 0x01, 0x7F, 0xFF])
        return f"SK: flags 0x{msg.sk_flags:02x}", None
    if op == "sk_next":
        msg.sk_next = _random_type(rng)
        return f"SK: next payload {msg.sk_next} (first inner is {msg.inner[0].type if msg.inner else 0})", None
    if op == "sk_length":
        msg.sk_length = rng.choice([0, 4, 5, 20, 0xFFFF, rng.randrange(65536)])
        return f"SK: payload length {msg.sk_length}", None
    if op == "not_last":
        p, d = _new_payload(rng)
        msg.after.append(p)
        return f"SK not last: {d} after it in clear", None
    if op == "clear_before":
        p, d = _new_payload(rng)
        msg.clear.insert(0, p)
        return f"{d} in clear before SK", None
    msg.clear = msg.clear + (msg.inner or [])
    msg.inner = None
    return "inner payloads sent in clear, no SK", None


LAYERS = ["header", "chain", "body", "field", "sk"]


def mutate(msg: Msg, rng: random.Random, real_len: int | None = None) -> Mutation:
    """One mutation of a copy of `msg`, every choice drawn from `rng`. `real_len`: the valid message's
    length (for Length mutations; computed from the model when None)."""
    m2 = copy.deepcopy(msg)
    if m2.inner is not None:
        m2.sk_opts.iv = rng.randbytes(16)  # a deterministic IV (cut to the cipher's length)
    if real_len is None:
        real_len = len(_chain(msg.clear + (msg.inner or []) + msg.after, 0)) + c.IKE_HEADER_LEN
    layers = LAYERS if m2.inner is not None else LAYERS[:4]
    layer = rng.choices(layers, weights=[15, 25, 20, 25, 20][:len(layers)])[0]
    post = None
    if layer == "header":
        desc = _header_mutation(rng, m2, real_len)
    elif layer == "chain":
        desc = _chain_mutation(rng, m2)
    elif layer == "body":
        desc = _body_mutation(rng, m2)
    elif layer == "field":
        desc = _field_mutation(rng, m2)
    else:
        desc, post = _sk_mutation(rng, m2)
    return Mutation(m2, desc, layer, post)


__all__ = ["LAYERS", "Msg", "Mutation", "Pl", "body_fields", "encode", "model_of", "mutate", "mutation_rng",
           "sa_fields"]
