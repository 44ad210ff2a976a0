"""SGW-R robustness: a short seeded mutation fuzz of every exchange (testbed/conformance/fuzz.py; the long
run is `testbed fuzz ike`). RFC 7296 2.21: errors in requests are answered or dropped, never fatal to
the responder or to other IKE SAs."""
from testbed.conformance.fuzz import FuzzConfig, IkeFuzzer, summary_lines
from testbed.conformance.parts import inconclusive, part

SEED = 7296
COUNT = 200


@part("IKE.SGW-R.ROBUST.1", "Mutated IKE_SA_INIT, IKE_AUTH, INFORMATIONAL, CREATE_CHILD_SA and Delete requests "
      "(seeded, 200) neither crash nor hang the gateway, nor break an established IKE SA's tunnel",
      ["rfc7296-2.21.2-b", "rfc7296-2.21.3-a"], needs=["ikev2.psk", "ikev2.cp"])
def test_mutated_requests_keep_gateway_alive(sgw, ike, steps):
    fuzzer = IkeFuzzer(sgw, ike, FuzzConfig(seed=SEED, count=COUNT, seconds=15.0, check_every=20))
    res = fuzzer.run()
    if res["error"]:
        inconclusive(res["error"])
    steps.record(f"{res['mutations_sent']} mutations (seed {SEED}) over the five request states, a health check "
                 f"every 20 (fresh IKE SA + ping) and the victim SA's ping",
                 expect="no crash, no hang, no lost tunnel", observed="; ".join(summary_lines(res)),
                 ok=not (res["crashes"] or res["hangs"] or res["lost_tunnels"]))
    detail = "\n".join(summary_lines(res))
    assert res["mutations_sent"] >= 50, f"too few mutations sent for a verdict:\n{detail}"
    assert not res["crashes"], f"the gateway's process exited:\n{detail}"
    assert not res["hangs"], f"the gateway stopped answering a correct client:\n{detail}"
    assert not res["lost_tunnels"], f"an established IKE SA stopped carrying data:\n{detail}"
