"""bench_ipsec's comparison: our pair against the reference pair on the same wire format, the
reference's figures under its own prefix, targets only against strongSwan's userspace data plane."""
from __future__ import annotations

from benchmarks.bench_ipsec import compare


def run(gw, client, mbps, setup, encap):
    return {"gateway": gw, "client": client, "esp": "aes128gcm16", "throughput_mbps": mbps, "setup_s": setup,
            "ike_s": setup / 2, "auth_to_traffic_s": setup / 2, "negotiated": {"client": {"encap": encap}}}


RESULTS = [run("ours+encap", "ours+encap", 300.0, 0.010, True), run("ours", "ours", 320.0, 0.009, False),
           run("strongswan", "strongswan", 200.0, 0.012, True),
           run("strongswan-kernel", "strongswan-kernel", 900.0, 0.008, False)]
PAIRS = [(r["gateway"], r["client"]) for r in RESULTS]


def test_libipsec_reference_takes_the_encapsulated_pair_and_judges_targets():
    out = compare(RESULTS, ["aes128gcm16"], PAIRS, "strongswan")
    row = out["throughput"]["aes128gcm16"]
    assert out["like_with_like"]["ours_pair"] == "ours+encap gateway / ours+encap client"
    assert out["like_with_like"]["same_wire_format"] is True
    assert row["ours_mbps"] == 300.0 and row["strongswan_mbps"] == 200.0
    assert row["ratio_ours_over_reference"] == 1.5 and row["target_met"] is True
    assert out["setup"]["target_met"] is True  # 10 ms against 12 ms


def test_kernel_reference_takes_the_plain_pair_and_sets_no_target():
    out = compare(RESULTS, ["aes128gcm16"], PAIRS, "strongswan-kernel")
    row = out["throughput"]["aes128gcm16"]
    assert out["like_with_like"]["ours_pair"] == "ours gateway / ours client"
    assert row["xfrm_mbps"] == 900.0 and row["ratio_ours_over_reference"] == round(320 / 900, 3)
    assert row["target_met"] is None and out["setup"]["target_met"] is None
    assert "strongswan_mbps" not in row


def test_no_reference_pair_no_comparison():
    out = compare(RESULTS[:2], ["aes128gcm16"], PAIRS[:2], "strongswan")
    assert set(out) == {"by_pair"}
