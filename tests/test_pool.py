"""The address pool (draft-gupta Appendix B)."""
import json
from ipaddress import IPv4Address

import pytest

from nodes.ipsec.pool import AddressPool, PoolExhausted


def test_excludes_network_broadcast_and_reserved():
    pool = AddressPool("10.8.0.0/29", reserved=["10.8.0.1"])
    assert pool.size == 5 and str(pool.netmask) == "255.255.255.248"
    got = {pool.allocate(f"user{i}", 0.0) for i in range(5)}
    assert got == {IPv4Address(f"10.8.0.{i}") for i in range(2, 7)}
    with pytest.raises(PoolExhausted, match="all 5 addresses"):
        pool.allocate("late", 0.0)


def test_stickiness_and_reuse_order():
    pool = AddressPool("10.8.0.0/29")
    alice = pool.allocate("alice", 0.0)
    bob = pool.allocate("bob", 0.0)
    assert pool.allocate("alice", 1.0) == alice  # reconnect with the lease still there
    assert pool.release("alice") == alice and pool.release("alice") is None
    carol = pool.allocate("carol", 2.0)
    assert carol not in (alice, bob)  # never-used addresses before alice's old one
    assert pool.allocate("alice", 3.0) == alice  # her address came back
    pool.release("alice")
    for i in range(3):  # take the remaining never-used addresses
        pool.allocate(f"u{i}", 4.0)
    assert pool.allocate("dave", 5.0) == alice  # only alice's old address is left
    pool.release("dave")
    assert pool.allocate("alice", 6.0) == alice


def test_requested_address_and_release_by_address():
    pool = AddressPool("10.8.0.0/24", reserved=["10.8.0.1", "10.8.0.254"])
    assert pool.allocate("alice", 0.0, requested="10.8.0.77") == IPv4Address("10.8.0.77")
    assert pool.allocate("bob", 0.0, requested="10.8.0.77") != IPv4Address("10.8.0.77")
    assert pool.allocate("carol", 0.0, requested="10.8.0.1") != IPv4Address("10.8.0.1")  # reserved
    assert pool.owner("10.8.0.77") == "alice" and pool.address_of("bob") is not None
    assert pool.release_address("10.8.0.77") == "alice" and pool.owner("10.8.0.77") is None
    assert pool.release_address("10.8.0.77") is None
    status = json.loads(json.dumps(pool.status()))
    assert status["free"] == 252 - 2 and [l["identity"] for l in status["leases"]] == ["bob", "carol"]


def test_small_and_bad_pools():
    assert AddressPool("10.8.0.4/31").size == 2
    assert AddressPool("10.8.0.4/32").size == 1
    with pytest.raises(ValueError, match="not in the pool"):
        AddressPool("10.8.0.0/29", reserved=["10.9.0.1"])
    with pytest.raises(ValueError, match="no usable address"):
        AddressPool("10.8.0.4/32", reserved=["10.8.0.4"])
