"""Implementation conformance statements (ICS): what a profile claims, as data.

Like the ICS of ETSI's and TAHI's suites, a profile declares the optional features it implements;
a test part that needs a feature the statement does not claim is NOT-APPLICABLE for it, and only
then. The statement also holds the implementation's expected nonconformances: test parts it is known
to fail, each with the finding and its source (a bug report, the vendor's documentation). Such a
part still runs and is reported EXPECTED-NONCONFORMANCE when it fails as expected, FAIL when it
passes (the record must stay true). Our own implementation may have none: we fix ours instead.

A profile points to its statement with the attribute `conformance_statement` (a path); the file:

    implementation: strongswan
    features:                  # FEATURES: true (claimed) or false; a feature left out is not claimed
      ikev2.cookies: true
      ikev2.mobike: true
    expected:                  # test part id -> why it fails
      IKE.SGW-R.CRIT.2: {finding: "...", source: "..."}
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from testbed.schema import Reader, load_yaml

FEATURES = {
    # IKEv2 (RFC 7296 and its extensions)
    "ikev2.psk": "authentication with a pre-shared key (RFC 7296 2.15)",
    "ikev2.eap-md5": "EAP-MD5 authentication of the initiator (RFC 7296 2.16)",
    "ikev2.cookies": "the responder demands a COOKIE under load (RFC 7296 2.6)",
    "ikev2.pfs": "a Diffie-Hellman exchange in CREATE_CHILD_SA (RFC 7296 1.3.1)",
    "ikev2.cp": "configuration payloads, an internal address for a remote client (RFC 7296 2.19)",
    "ikev2.nat-t": "NAT traversal, UDP 4500 (RFC 7296 2.23, RFC 3948)",
    "ikev2.window": "a window of more than one outstanding request (RFC 7296 2.3)",
    "ikev2.mobike": "MOBIKE (RFC 4555)",
    "ikev2.fragmentation": "IKE message fragmentation (RFC 7383)",
    "ikev2.redirect": "the redirect mechanism (RFC 5685)",
    "ikev2.group.14": "Diffie-Hellman group 14, MODP 2048",
    "ikev2.group.19": "Diffie-Hellman group 19, ECP 256",
    "ikev2.group.31": "Diffie-Hellman group 31, Curve25519",
    # ESP (RFC 4303) and its algorithms
    "esp.aes-gcm-16": "ENCR_AES_GCM_16 (RFC 4106)",
    "esp.aes-cbc-hmac-sha256": "ENCR_AES_CBC with AUTH_HMAC_SHA2_256_128 (RFC 3602, RFC 4868)",
    "esp.esn": "extended sequence numbers (RFC 4303 2.2.1)",
    "esp.tfc": "traffic flow confidentiality padding (RFC 4303 2.7)",
    # Mobile IPv4
    "mip.minimal-encapsulation": "minimal encapsulation (RFC 2004)",
    "mip.gre": "GRE encapsulation (RFC 2784)",
    "mip.reverse-tunnel": "reverse tunnelling (RFC 3024)",
    "mip.nat-traversal": "UDP tunnelling through NAT (RFC 3519)",
    "mip.fa-ha-auth": "the Foreign-Home Authentication Extension (RFC 5944 3.5.4)",
    "mip.mn-fa-auth": "the Mobile-Foreign Authentication Extension (RFC 5944 3.5.3)",
    "mip.revocation": "registration revocation (RFC 3543)",
    "mip.nai": "the Mobile Node NAI extension (RFC 2794)",
    "mip.broadcast": "broadcast forwarding to mobile nodes that set B (RFC 5944 4.3)",
    "mip.rfc5265": "RFC 5265: the Trusted Networks Configured extension, x-HA / i-HA",
    # what an agent can be configured to do (the scenario's role config keys a profile reads)
    "mip.config.reverse-tunnelling-off": "reverse tunnelling can be switched off (reverse_tunnelling: false): "
                                         "T requests then get 74 at an FA, 137 at an HA (RFC 3024 3.4)",
    "mip.config.reverse-tunnel-required": "reverse tunnelling can be made mandatory (reverse_tunnel_required: "
                                          "true): requests without T then get 75 / 138 (RFC 3024 3.4)",
}


@dataclass(frozen=True)
class Expectation:
    part: str
    finding: str
    source: str


@dataclass(frozen=True)
class Statement:
    implementation: str
    features: dict[str, bool] = field(default_factory=dict)
    expected: dict[str, Expectation] = field(default_factory=dict)
    path: Path | None = None

    def claims(self, feature: str) -> bool:
        return bool(self.features.get(feature, False))


def load_statement(path: Path) -> Statement:
    top = Reader(path, load_yaml(path))
    top.only_keys(["implementation", "features", "expected"])
    feats = {}
    for name, r in top.child("features", {}).items():
        if name not in FEATURES:
            raise r.fail(f"a feature of testbed.conformance.ics.FEATURES ({', '.join(FEATURES)})", name)
        feats[name] = r.bool()
    expected = {}
    for part, r in top.child("expected", {}).items():
        r.only_keys(["finding", "source"])
        expected[part] = Expectation(part, r.child("finding").str(), r.child("source").str())
    impl = top.child("implementation").str()
    if impl == "ours" and expected:
        raise top.child("expected").fail("no expected nonconformance for our own implementation (fix it)", list(expected))
    return Statement(impl, feats, expected, path)


def expect_per_statement(request, impl: str, key: str) -> None:
    """Apply `impl`'s expected nonconformance for `key` (a test part's id, or a scenario case's key
    such as GUPTA.4B.UNSOLICITED-SYN), if its statement holds one: the case then runs as
    EXPECTED-NONCONFORMANCE, so no case names a vendor to expect its deviation."""
    from testbed.profiles import get
    from testbed.report.verdicts import expect_nonconformance

    exp = statement_of(get(impl)).expected.get(key)
    if exp is not None:
        expect_nonconformance(request, impl, exp.finding, exp.source)


def statement_of(profile) -> Statement:
    """The profile's statement, or an empty one (claims nothing) when it declares none."""
    path = getattr(profile, "conformance_statement", None)
    if path is None:
        return Statement(profile.name)
    return load_statement(Path(path))
