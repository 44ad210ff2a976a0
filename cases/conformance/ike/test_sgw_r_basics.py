"""SGW-R: the gateway as responder, basic exchanges (RFC 7296 sections 1.2, 1.4, 2.5)."""
from testbed.conformance.ike import constants as c
from testbed.conformance.ike import messages as m
from testbed.conformance.ike_env import notify_names
from testbed.conformance.parts import part, should


@part("IKE.SGW-R.INIT.1", "IKE_SA_INIT and IKE_AUTH with a pre-shared key establish a child SA that carries data",
      ["rfc7296-1.2-b", "rfc7296-1.2-c"], needs=["ikev2.psk", "ikev2.cp"])
def test_establish_and_ping(ike, steps):
    s = ike.establish()
    steps.record("IKE_SA_INIT, IKE_AUTH (PSK, CP, SA, TSi, TSr)", "a child SA and an internal address",
                 f"child SPI {s.children[-1].spi_out.hex()}, address {s.virtual_ip}", ok=bool(s.virtual_ip))
    ok = bool(ike.ping(s))
    steps.record("ICMP echo to H inside the child SA", "the echo reply comes back through the IUT's ESP", ok, ok=ok)
    assert s.virtual_ip, "no INTERNAL_IP4_ADDRESS in the CP reply to a CFG_REQUEST"
    assert ok, "no echo reply through the child SA"


@part("IKE.SGW-R.VER.1", "A request with major version 3 is answered with INVALID_MAJOR_VERSION, version 2",
      ["rfc7296-2.5-b"])
def test_higher_major_version(ike, steps):
    s = ike.session()
    resp = ike.exchange(s, s.sa_init_request(major=3), port=c.IKE_PORT)
    steps.record("IKE_SA_INIT with major version 3", "INVALID_MAJOR_VERSION in a message of version 2.0",
                 resp.summary() if resp else "no answer")
    if should(resp is not None and c.N_INVALID_MAJOR_VERSION in resp.notify_types(),
              f"an INVALID_MAJOR_VERSION notify (got {resp.summary() if resp else 'no answer'})"):
        assert resp.major == 2 and resp.get(c.SA) is None, f"the answer must not accept: {resp.summary()}"


@part("IKE.SGW-R.VER.2", "A higher minor version is ignored: the exchange proceeds",
      ["rfc7296-2.5-a"])
def test_higher_minor_version_ignored(ike, steps):
    s = ike.session()
    resp = ike.exchange(s, s.sa_init_request(minor=7), port=c.IKE_PORT)
    steps.record("IKE_SA_INIT with version 2.7", "a normal IKE_SA_INIT response (SA, KE, Nr)",
                 resp.summary() if resp else "no answer")
    assert resp is not None and resp.get(c.SA) is not None, resp.summary() if resp else "no answer"


@part("IKE.SGW-R.INFO.1", "An empty INFORMATIONAL request (liveness check) is answered",
      ["rfc7296-1.4-d"])
def test_empty_informational_answered(ike, steps):
    s = ike.establish()
    resp = ike.exchange(s, s.informational_request([]))
    steps.record("INFORMATIONAL with no payloads", "an INFORMATIONAL response", resp.summary() if resp else "no answer")
    assert resp is not None and resp.exchange == c.INFORMATIONAL and resp.response


@part("IKE.SGW-R.CRIT.1", "An unknown payload with the critical bit set gets UNSUPPORTED_CRITICAL_PAYLOAD",
      ["rfc7296-2.5-h"])
def test_unknown_critical_payload(ike, steps):
    s = ike.establish()
    resp = ike.exchange(s, s.informational_request([m.unknown(200, b"x" * 4, critical=True)]))
    steps.record("INFORMATIONAL with an unknown payload type 200, critical", "UNSUPPORTED_CRITICAL_PAYLOAD",
                 resp.summary() if resp else "no answer")
    assert resp is not None, "no answer"
    assert c.N_UNSUPPORTED_CRITICAL_PAYLOAD in resp.notify_types(), notify_names(resp)
