"""draft-gupta section 3 (b)(ii): with internal presence by a pool, the pool must be as large as the
number of simultaneous remote users and G must make the pool's addresses reachable inside the
protected network. Three users, a pool of two: the users are IKEv2 tester sessions from R's place
(testbed/conformance/ike_env.py), so the case judges only what G sends."""
import subprocess
from ipaddress import IPv4Address, IPv4Network

import pytest

from testbed.conformance.ike import constants as c
from testbed.conformance.ike_env import IkeTester, Peer, notify_names
from testbed.processes import in_node


def _users(scenario):
    return scenario.roles["gw"].config["users"]


@pytest.mark.req("gupta-3b-pool-size", "gupta-3b-pool")
@pytest.mark.scenario("remote-access-pool-size")
@pytest.mark.impl_matrix("gw")
def test_pool_as_large_as_the_users_and_reachable_inside(world, scenario, roles):
    """Verdicts: the first two users get distinct addresses from the pool; the third user's IKE_AUTH
    gets no address (INTERNAL_ADDRESS_FAILURE, or no child SA) while both hold theirs; an ICMP echo
    from H to each pool address arrives at that user's child SA (decrypted by the tester), i.e. G
    routes the pool inside the intranet."""
    plan = world.plan
    pool = IPv4Network(scenario.roles["gw"].config["pool"])
    base = dict(node_pid=world.pid("r"), local=str(plan.attachments["fn1"].address),
                gateway=str(plan.address("g", "dmz")), inside_host=str(plan.address("h")))
    tester = IkeTester.open(Peer(identity="alice", psk=b"", **base))
    try:
        sessions = {}
        for user, cfg in list(_users(scenario).items())[:2]:
            tester.peer = Peer(identity=user, psk=cfg["psk"].encode(), **base)
            s = tester.establish()
            sessions[user] = s
        addresses = {u: IPv4Address(s.virtual_ip[0]) for u, s in sessions.items()}
        assert len(set(addresses.values())) == 2 and all(a in pool for a in addresses.values()), addresses

        user, cfg = list(_users(scenario).items())[2]
        tester.peer = Peer(identity=user, psk=cfg["psk"].encode(), **base)
        s, _ = tester.init()
        resp = tester.exchange(s, s.auth_request(psk=tester.peer.psk, idi=user))
        assert resp is not None, f"no answer to {user}'s IKE_AUTH"
        s.handle_auth_response(resp.raw, psk=tester.peer.psk)
        assert not s.virtual_ip, f"{user} got {s.virtual_ip} from a pool of two held by {addresses}"
        refused = c.N_INTERNAL_ADDRESS_FAILURE in resp.notify_types() or resp.get(c.SA) is None
        assert refused, f"{user}'s IKE_AUTH without an address must not establish a child SA: {notify_names(resp)}"

        for u, s in sessions.items():
            child = s.children[-1]
            inbound = child.esp_in()
            ping = subprocess.Popen(in_node(world.pid("h"), ["ping", "-n", "-c", "1", "-W", "1", str(addresses[u])]),
                                    stdout=subprocess.DEVNULL)

            def echo_request(r, inbound=inbound, vip=str(addresses[u])):
                p = inbound.open(r.data)
                return p.ok and len(p.payload) >= 21 and p.payload[9] == 1 and p.payload[20] == 8 and \
                    str(IPv4Address(p.payload[16:20])) == vip
            got = tester.receive(echo_request, timeout=2.0, kind="esp")
            ping.wait()
            assert got is not None, f"H's echo request to {addresses[u]} did not reach {u}'s child SA through G"
    finally:
        tester.close()
