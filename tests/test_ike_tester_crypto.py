"""The IKE tester library's crypto (testbed/conformance/ike): known answers, SK and ESP round trips,
and ESP checked by an independent decoder (scapy's SecurityAssociation)."""
from __future__ import annotations

import hashlib
import hmac
import os

import pytest
from scapy.layers.inet import IP
from scapy.layers.ipsec import ESP, SecurityAssociation

from testbed.conformance.ike import constants as c
from testbed.conformance.ike.crypto import (ModpKey, X25519Key, child_keymat, derive_ike_keys, dh_key,
                                            nat_detection_hash, prf, prf_plus, psk_auth, MODP2048_P)
from testbed.conformance.ike.esp import EspSa, classify_udp4500, inner_ipv4
from testbed.conformance.ike.sk import SkCipher, SkError, SkOptions
from cryptography.hazmat.primitives.asymmetric import x25519


def test_prf_is_hmac_sha256_rfc4231_case2():
    assert prf(c.PRF_HMAC_SHA2_256, b"Jefe", b"what do ya want for nothing?").hex() == (
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")


def test_prf_plus_equals_hkdf_expand_rfc5869_case1():
    """prf+ (RFC 7296 2.13) with HMAC is HKDF-Expand (RFC 5869 2.3): T(n) = HMAC(K, T(n-1) | S | n)."""
    prk = bytes.fromhex("077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5")
    info = bytes.fromhex("f0f1f2f3f4f5f6f7f8f9")
    assert prf_plus(c.PRF_HMAC_SHA2_256, prk, info, 42).hex() == (
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865")


def test_prf_plus_structure_by_hand():
    k, s = b"k" * 32, b"seed"
    t1 = hmac.new(k, s + b"\x01", hashlib.sha256).digest()
    t2 = hmac.new(k, t1 + s + b"\x02", hashlib.sha256).digest()
    assert prf_plus(c.PRF_HMAC_SHA2_256, k, s, 50) == (t1 + t2)[:50]
    t1 = hmac.new(k, s + b"\x01", hashlib.sha1).digest()
    assert prf_plus(c.PRF_HMAC_SHA1, k, s, 20) == t1


def test_x25519_rfc7748_vector():
    a = X25519Key(private=x25519.X25519PrivateKey.from_private_bytes(bytes.fromhex(
        "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")))
    assert a.public.hex() == "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
    shared = a.shared(bytes.fromhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"))
    assert shared.hex() == "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"


def test_modp2048_is_a_safe_prime_and_exchange_agrees():
    assert MODP2048_P.bit_length() == 2048 and pow(3, MODP2048_P - 1, MODP2048_P) == 1
    q = (MODP2048_P - 1) // 2
    assert pow(3, q - 1, q) == 1  # Fermat: (p-1)/2 prime too
    a, b = ModpKey(), ModpKey()
    assert len(a.public) == 256 and a.shared(b.public) == b.shared(a.public)


@pytest.mark.parametrize("group,size", [(c.MODP2048, 256), (c.ECP256, 64), (c.CURVE25519, 32)])
def test_dh_groups_agree_and_reject_bad_values(group, size):
    a, b = dh_key(group), dh_key(group)
    assert len(a.public) == size and a.shared(b.public) == b.shared(a.public)
    with pytest.raises(ValueError):
        a.shared(b.public[:-1])
    if group == c.ECP256:
        with pytest.raises(ValueError):
            a.shared(bytes(64))  # not on the curve


def test_ike_key_split_lengths_and_order():
    """RFC 7296 2.14: SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr from one prf+ stream."""
    ni, nr, si, sr = b"n" * 32, b"r" * 32, b"i" * 8, b"s" * 8
    seed = prf(c.PRF_HMAC_SHA2_256, ni + nr, b"g" * 32)
    k = derive_ike_keys(c.PRF_HMAC_SHA2_256, seed, ni, nr, si, sr, c.ENCR_AES_CBC, 256, c.AUTH_HMAC_SHA2_256_128)
    stream = prf_plus(c.PRF_HMAC_SHA2_256, seed, ni + nr + si + sr, 32 * 7)
    assert k.sk_d + k.sk_ai + k.sk_ar + k.sk_ei + k.sk_er + k.sk_pi + k.sk_pr == stream
    g = derive_ike_keys(c.PRF_HMAC_SHA2_256, seed, ni, nr, si, sr, c.ENCR_AES_GCM_16, 128, None)
    assert (len(g.sk_ai), len(g.sk_ei), len(g.sk_pr)) == (0, 20, 32)


def test_child_keymat_with_pfs_puts_g_ir_first():
    sk_d, ni, nr, gir = b"d" * 32, b"n" * 32, b"r" * 32, b"g" * 32
    k = child_keymat(c.PRF_HMAC_SHA2_256, sk_d, ni, nr, c.ENCR_AES_GCM_16, 256, None, gir)
    stream = prf_plus(c.PRF_HMAC_SHA2_256, sk_d, gir + ni + nr, 72)
    assert (k.encr_i, k.encr_r, k.integ_i) == (stream[:36], stream[36:], b"")
    k = child_keymat(c.PRF_HMAC_SHA2_256, sk_d, ni, nr, c.ENCR_AES_CBC, 128, c.AUTH_HMAC_SHA2_256_128)
    stream = prf_plus(c.PRF_HMAC_SHA2_256, sk_d, ni + nr, 96)
    assert k.encr_i + k.integ_i + k.encr_r + k.integ_r == stream


def test_psk_auth_and_nat_hash_formulas():
    inner = hmac.new(b"secret", b"Key Pad for IKEv2", hashlib.sha256).digest()
    assert psk_auth(c.PRF_HMAC_SHA2_256, b"secret", b"octets") == hmac.new(inner, b"octets", hashlib.sha256).digest()
    h = nat_detection_hash(b"a" * 8, bytes(8), "192.0.2.1", 500)
    assert h == hashlib.sha1(b"a" * 8 + bytes(8) + bytes([192, 0, 2, 1]) + b"\x01\xf4").digest()


# ----------------------------------------------------------------------------- SK payload

CIPHERS = [SkCipher(c.ENCR_AES_GCM_16, os.urandom(20)), SkCipher(c.ENCR_AES_GCM_16, os.urandom(36)),
           SkCipher(c.ENCR_AES_CBC, os.urandom(16), c.AUTH_HMAC_SHA2_256_128, os.urandom(32)),
           SkCipher(c.ENCR_AES_CBC, os.urandom(32), c.AUTH_HMAC_SHA2_256_128, os.urandom(32))]


@pytest.mark.parametrize("cipher", CIPHERS, ids=["gcm128", "gcm256", "cbc128", "cbc256"])
def test_sk_round_trip_and_breakage(cipher):
    prefix, inner = b"H" * 32, b"payloads" * 5
    body = cipher.seal(prefix, inner)
    assert len(body) == cipher.body_len(len(inner))
    assert cipher.open(prefix, body)[0] == inner
    with pytest.raises(SkError, match="icv"):
        cipher.open(prefix, cipher.seal(prefix, inner, SkOptions(break_icv=True)))
    with pytest.raises(SkError, match="icv"):
        cipher.open(b"X" + prefix[1:], body)  # the header is authenticated too
    pad = 16 + cipher.default_pad_len(len(inner))
    opts = SkOptions(iv=bytes(cipher.iv_len), pad_len=pad, pad_bytes=os.urandom(pad))
    body = cipher.seal(prefix, inner, opts)
    assert body[:cipher.iv_len] == bytes(cipher.iv_len)
    plain, pad_len, padding = cipher.open(prefix, body)
    assert (plain, pad_len, padding) == (inner, pad, opts.pad_bytes)
    with pytest.raises(SkError, match="padding"):
        cipher.open(prefix, cipher.seal(prefix, b"", SkOptions(pad_len=cipher.default_pad_len(0),
                                                               pad_length_field=200)))


# ----------------------------------------------------------------------------- ESP

ESP_SAS = [("AES-GCM", "NULL", c.ENCR_AES_GCM_16, 20, None), ("AES-GCM", "NULL", c.ENCR_AES_GCM_16, 36, None),
           ("AES-CBC", "SHA2-256-128", c.ENCR_AES_CBC, 16, c.AUTH_HMAC_SHA2_256_128),
           ("AES-CBC", "SHA2-256-128", c.ENCR_AES_CBC, 32, c.AUTH_HMAC_SHA2_256_128)]


@pytest.mark.parametrize("crypt,auth,encr,klen,integ", ESP_SAS)
def test_esp_against_scapy_security_association(crypt, auth, encr, klen, integ):
    key, ikey = os.urandom(klen), os.urandom(32) if integ else b""
    ours = EspSa(0xC0FFEE01, encr, key, integ, ikey)
    theirs = SecurityAssociation(ESP, spi=0xC0FFEE01, crypt_algo=crypt, crypt_key=key, auth_algo=auth,
                                 auth_key=ikey or None, tunnel_header=IP(src="192.0.2.1", dst="192.0.2.2"))
    inner = inner_ipv4("10.9.0.1", "10.1.0.5", b"payload of the tester")
    for _ in range(3):
        pkt = ours.seal(inner)
        dec = theirs.decrypt(IP(src="192.0.2.1", dst="192.0.2.2", proto=50) / ESP(pkt))
        assert bytes(dec) == inner
    assert ESP(pkt).seq == 3
    enc = theirs.encrypt(IP(inner))
    got = ours.open(bytes(enc[ESP]))
    assert got.ok and got.payload == inner and got.next_header == 4
    broken = ours.seal(inner, break_icv=True)
    assert ours.open(broken).reason == "icv"
    with pytest.raises(Exception):
        theirs.decrypt(IP(src="192.0.2.1", dst="192.0.2.2", proto=50) / ESP(broken))


def test_esp_dummy_padding_and_udp_classification():
    sa = EspSa(7, c.ENCR_AES_GCM_16, os.urandom(20))
    d = sa.open(sa.dummy(40))
    assert d.ok and d.next_header == 59 and len(d.payload) == 40
    p = sa.open(sa.seal(b"x" * 5, pad_len=3))
    assert p.pad == b"\x01\x02\x03"  # RFC 4303 2.4 default padding contents
    assert sa.open(sa.seal(b"abc", spi=8)).reason.startswith("SPI")
    assert classify_udp4500(b"\xff") == ("keepalive", b"")
    assert classify_udp4500(bytes(4) + b"ike") == ("ike", b"ike")
    assert classify_udp4500(sa.seal(b"x"))[0] == "esp"
    assert sa.open(b"short").reason == "short"
