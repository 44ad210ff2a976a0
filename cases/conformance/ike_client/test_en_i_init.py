"""EN-I: the client's IKE_SA_INIT request, as it comes when the client starts (RFC 7296 sections 1.2,
2.10, 2.23, 3.1-3.4, 3.9, 3.10)."""
from testbed.conformance.ike import constants as c
from testbed.conformance.ike.crypto import nat_detection_hash
from testbed.conformance.ike.parse import parse_message
from testbed.conformance.ike_gateway_env import intervals
from testbed.conformance.parts import part, should

PRF_KEY_BYTES = {1: 16, 2: 20, 3: 24, 4: 16, 5: 32, 6: 48, 7: 64, 8: 16}  # RFC 7296 3.3.2 / RFC 4868
KE_BYTES = {1: 96, 2: 128, 5: 192, 14: 256, 15: 384, 16: 512, 17: 768, 18: 1024, 19: 64, 20: 96, 21: 132,
            31: 32, 32: 56}  # the public value's length per group (RFC 3526, RFC 5903, RFC 8031)
AEAD = {c.ENCR_AES_GCM_16, 18, 19, 14, 15, 16, 28}  # GCM-8/12/16, CCM-8/12/16, ChaCha20-Poly1305
NEEDS_KEY_LENGTH = {c.ENCR_AES_CBC, 13, 14, 15, 16, 18, 19, c.ENCR_AES_GCM_16, 23, 24, 25, 26, 27}


def transforms(msg, ttype):
    return [t for p in msg.get(c.SA).fields.get("proposals", []) for t in p["transforms"] if t["type"] == ttype]


@part("IKE.EN-I.INIT.1", "The IKE_SA_INIT request says version 2.0", ["rfc7296-3.1-d", "rfc7296-3.1-g"])
def test_init_version(gw, steps):
    msg = parse_message(gw.first_init().data)
    steps.record("wait for the client's IKE_SA_INIT", "Major Version 2, Minor Version 0",
                 f"{msg.major}.{msg.minor}", ok=(msg.major, msg.minor) == (2, 0))
    assert msg.major == 2, f"Major Version {msg.major}"
    assert msg.minor == 0, f"Minor Version {msg.minor}"


@part("IKE.EN-I.INIT.2", "The IKE_SA_INIT request has the Initiator flag set, R and V clear, the other flag bits zero",
      ["rfc7296-3.1-j", "rfc7296-3.1-i", "rfc7296-3.1-l"])
def test_init_flags(gw, steps):
    msg = parse_message(gw.first_init().data)
    steps.record("wait for the client's IKE_SA_INIT", "Flags 0x08 (I)", f"0x{msg.flags:02x}", ok=msg.flags == c.FLAG_I)
    assert msg.initiator, f"the I flag is clear (flags 0x{msg.flags:02x})"
    assert not msg.response, f"a request with the R flag set (flags 0x{msg.flags:02x})"
    assert not msg.version_bit, f"the V flag is set (flags 0x{msg.flags:02x})"
    assert msg.reserved_flags == 0, f"reserved flag bits 0x{msg.reserved_flags:02x} set"


@part("IKE.EN-I.INIT.3", "The IKE_SA_INIT request has Message ID 0, a zero responder SPI and a non-zero initiator SPI",
      ["rfc7296-3.1-b", "rfc7296-3.1-c"])
def test_init_ids(gw, steps):
    msg = parse_message(gw.first_init().data)
    steps.record("wait for the client's IKE_SA_INIT", "Message ID 0, SPIr 0, SPIi not 0",
                 f"mid {msg.message_id}, SPIi {msg.spi_i.hex()}, SPIr {msg.spi_r.hex()}")
    assert msg.message_id == 0, f"Message ID {msg.message_id}"
    assert msg.spi_r == bytes(8), f"SPIr {msg.spi_r.hex()}"
    assert msg.spi_i != bytes(8), "SPIi is zero"


@part("IKE.EN-I.INIT.4", "The IKE_SA_INIT request carries SA, KE and Nonce in clear, payloads without critical or reserved bits",
      ["rfc7296-4-d", "rfc7296-3.2-d", "rfc7296-3.2-f"])
def test_init_payloads(gw, steps):
    msg = parse_message(gw.first_init().data)
    steps.record("wait for the client's IKE_SA_INIT", "a well-formed message with SA, KE, Ni; C and RESERVED bits 0",
                 msg.summary(), ok=msg.ok)
    assert msg.ok, msg.reason
    for t in (c.SA, c.KE, c.NONCE):
        assert msg.get(t) is not None, f"no {c.payload_name(t)} payload: {msg.summary()}"
    assert not msg.encrypted, "an SK payload in IKE_SA_INIT"
    flagged = [f"{p.describe()} flags 0x{p.flags:02x}" for p in msg.payloads if p.flags]
    assert not flagged, f"payloads of RFC 7296 types sent with the critical or RESERVED bits set: {flagged}"


@part("IKE.EN-I.INIT.5", "The initiator's nonce is 16 to 256 octets and at least half the key size of every PRF offered",
      ["rfc7296-2.10-a", "rfc7296-3.9-a"])
def test_init_nonce(gw, steps):
    msg = parse_message(gw.first_init().data)
    ni = msg.get(c.NONCE)
    assert ni is not None, f"no Nonce: {msg.summary()}"
    n = len(ni.fields["data"])
    prfs = sorted({t["id"] for t in transforms(msg, c.T_PRF)})
    need = max([16] + [PRF_KEY_BYTES.get(p, 0) // 2 for p in prfs])
    steps.record("wait for the client's IKE_SA_INIT", f"Nonce of {need} to 256 octets (PRFs offered {prfs})",
                 f"{n} octets", ok=need <= n <= 256)
    assert 16 <= n <= 256, f"a nonce of {n} octets"
    assert n >= need, f"a nonce of {n} octets, shorter than half the key of a PRF offered ({prfs})"


@part("IKE.EN-I.INIT.6", "The KE payload's group is one its SA payload proposes (should be the first of the first proposal)",
      ["rfc7296-3.4-b", "rfc7296-3.3.6-h"])
def test_init_ke_group_listed(gw, steps):
    msg = parse_message(gw.first_init().data)
    group = msg.get(c.KE).fields["group"]
    props = msg.get(c.SA).fields["proposals"]
    offered = [t["id"] for t in transforms(msg, c.T_DH)]
    first = next((t["id"] for t in props[0]["transforms"] if t["type"] == c.T_DH), None) if props else None
    steps.record("wait for the client's IKE_SA_INIT", "KE's group among the DH transforms of the SA payload",
                 f"KE group {group}, DH offered {offered}", ok=group in offered)
    assert group in offered, f"KE of group {group}, the SA payload proposes {offered}"
    should(group == first, f"KE of the first group of the first proposal ({first}), not {group}")


@part("IKE.EN-I.INIT.7", "The KE payload's public value has the length its group defines", ["rfc7296-3.4-a"])
def test_init_ke_length(gw, steps):
    ke = parse_message(gw.first_init().data).get(c.KE).fields
    want = KE_BYTES.get(ke["group"])
    steps.record("wait for the client's IKE_SA_INIT", f"a public value of {want} octets for group {ke['group']}",
                 f"{len(ke['data'])} octets, RESERVED {ke['reserved2']}", ok=len(ke["data"]) == want)
    assert want is not None, f"KE of group {ke['group']}, which the tester does not know"
    assert len(ke["data"]) == want, f"{len(ke['data'])} octets for group {ke['group']} ({want} expected)"
    assert ke["reserved2"] == 0, f"KE RESERVED {ke['reserved2']}"


@part("IKE.EN-I.INIT.8", "The IKE proposals are numbered 1, 2, 3 ... for protocol IKE with no SPI",
      ["rfc7296-3.3-c", "rfc7296-3.3-d", "rfc7296-3.3.1-b"])
def test_init_proposal_numbers(gw, steps):
    props = parse_message(gw.first_init().data).get(c.SA).fields["proposals"]
    nums = [p["number"] for p in props]
    steps.record("wait for the client's IKE_SA_INIT", "Proposal Num 1..n, protocol 1, SPI Size 0",
                 [(p["number"], p["protocol"], len(p["spi"])) for p in props], ok=nums == list(range(1, len(nums) + 1)))
    assert nums and nums[0] == 1, f"the first proposal is numbered {nums[:1]}"
    assert nums == list(range(1, len(nums) + 1)), f"proposal numbers {nums}"
    assert all(p["protocol"] == c.PROTO_IKE and p["spi"] == b"" for p in props), \
        [(p["protocol"], p["spi"].hex()) for p in props]


@part("IKE.EN-I.INIT.9", "Its transforms: AEAD without integrity, Key Length (TV) on AES and only there",
      ["rfc7296-3.3-e", "rfc7296-3.3.5-a", "rfc7296-3.3.5-d", "rfc7296-3.3.5-e", "rfc7296-3.3-f"])
def test_init_transforms(gw, steps):
    props = parse_message(gw.first_init().data).get(c.SA).fields["proposals"]
    problems = []
    for p in props:
        ts = p["transforms"]
        encr = [t["id"] for t in ts if t["type"] == c.T_ENCR]
        integ = [t["id"] for t in ts if t["type"] == c.T_INTEG and t["id"] != c.AUTH_NONE]
        if encr and all(e in AEAD for e in encr) and integ:
            problems.append(f"proposal {p['number']}: AEAD with integrity {integ}")
        for t in ts:
            kl = [a for a in t["attrs"] if a[0] == c.ATTR_KEY_LENGTH]
            where = f"proposal {p['number']} transform {t['type']}/{t['id']}"
            if len(kl) > 1:
                problems.append(f"{where}: {len(kl)} Key Length attributes")
            if t["type"] == c.T_ENCR and t["id"] in NEEDS_KEY_LENGTH and not kl:
                problems.append(f"{where}: no Key Length")
            if t["type"] != c.T_ENCR and kl:
                problems.append(f"{where}: a Key Length on a fixed-length transform")
            if any(not isinstance(a[1], int) for a in kl):
                problems.append(f"{where}: Key Length in TLV format")
    steps.record("wait for the client's IKE_SA_INIT", "no transform problem", problems or "none", ok=not problems)
    assert not problems, problems


@part("IKE.EN-I.INIT.10", "NAT_DETECTION_SOURCE_IP and NAT_DETECTION_DESTINATION_IP are sent; the destination hash is right",
      ["rfc7296-2.23-g"], needs=["ikev2.nat-t"])
def test_init_nat_detection(gw, steps):
    r = gw.first_init()
    msg = parse_message(r.data)
    src, dst = msg.notify(c.N_NAT_DETECTION_SOURCE_IP), msg.notify(c.N_NAT_DETECTION_DESTINATION_IP)
    want = nat_detection_hash(msg.spi_i, bytes(8), gw.site.local, r.dport)
    own = nat_detection_hash(msg.spi_i, bytes(8), r.src, r.sport)
    steps.record("wait for the client's IKE_SA_INIT", "both NAT_DETECTION notifies; DESTINATION = SHA-1(SPIi | 0 | G_e | 500)",
                 f"source {'present' if src else 'absent'} (matches the client's address: "
                 f"{bool(src) and src.fields['data'] == own}), destination "
                 f"{'right' if dst and dst.fields['data'] == want else 'wrong or absent'}")
    assert src is not None and dst is not None, f"NAT_DETECTION notifies missing: {msg.summary()}"
    assert len(src.fields["data"]) == 20, f"a source hash of {len(src.fields['data'])} octets"
    assert dst.fields["data"] == want, "NAT_DETECTION_DESTINATION_IP is not SHA-1(SPIi | SPIr | G_e | 500)"


@part("IKE.EN-I.INIT.11", "An unanswered IKE_SA_INIT is retransmitted byte for byte with the same Message ID",
      ["rfc7296-2.1-f", "rfc7296-2.1-g", "rfc7296-2.2-a"])
def test_init_retransmitted(gw, steps):
    first = gw.first_init()
    again = gw.init_request(timeout=4.0, spi_i=parse_message(first.data).spi_i)
    steps.record("leave the IKE_SA_INIT unanswered", "the same request again, the same bytes",
                 f"after {again.t - first.t:.2f} s, identical: {again.data == first.data}" if again else "nothing")
    assert again is not None, "no retransmission within 4 s"
    assert again.data == first.data, "the retransmission differs from the original request"


@part("IKE.EN-I.RETX.1", "The retransmission intervals of an unanswered request grow",
      ["rfc7296-2.4-f", "rfc7296-2.1-f"])
def test_retransmission_intervals(gw, steps):
    s, _ = gw.accept_init()
    r, _ = gw.auth_request(s)
    assert r is not None, "no IKE_AUTH"
    times = [r.t]
    for _ in range(3):
        again = gw.request(s, c.IKE_AUTH, timeout=5.0)
        if again is None:
            break
        times.append(again.t)
    gaps = intervals(times)
    steps.record("leave the IKE_AUTH unanswered", "retransmissions at growing intervals", f"intervals {gaps} s",
                 ok=len(gaps) >= 2 and all(b > a for a, b in zip(gaps, gaps[1:])))
    assert len(gaps) >= 2, f"only {len(times)} copies of the IKE_AUTH request (intervals {gaps})"
    assert all(b > a * 1.05 for a, b in zip(gaps, gaps[1:])), f"the intervals do not grow: {gaps} s"
