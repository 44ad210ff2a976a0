"""Host changes sent to the kernel in batches (nodes/runtime/host/netlink_batch.py, netlink.send_batch):
the queue sans-I/O with a fake kernel, then the real rtnetlink batch in a private namespace.

The kernel test needs root and `unshare -n`; it is skipped without.
"""
from __future__ import annotations

import errno
import textwrap

from nodes.runtime.host import netlink
from nodes.runtime.host.netlink_batch import NetlinkBatch
from test_mip_runtime import in_private_netns, needs_netns


def test_requests_go_out_in_order_and_refusals_come_back_with_their_tags():
    sent = []

    def kernel(requests):
        sent.append([r.what for r in requests])
        return [(1, errno.ENODEV)]

    lookups = []
    batch = NetlinkBatch(kernel, lambda name: lookups.append(name) or 7)
    batch.add(netlink.route_replace_request("10.1.1.100/32", dev=batch.ifindex("mip0")), tag="a")
    batch.add(netlink.proxy_arp_request("10.1.1.100", batch.ifindex("mip0"), True), tag="b")
    assert len(batch) == 2 and lookups == ["mip0"]  # one lookup per interface and batch
    (failure,) = batch.flush()
    assert sent == [["route replace 10.1.1.100/32", "proxy ARP on 10.1.1.100"]]
    assert failure.tag == "b" and failure.errno == errno.ENODEV and failure.error.startswith("ENODEV (")
    assert batch.flush() == [] and len(sent) == 1  # nothing queued: nothing sent
    batch.ifindex("mip0")
    assert lookups == ["mip0", "mip0"]  # looked up again in the next batch


def test_a_failed_send_marks_every_request_of_the_batch():
    def kernel(requests):
        raise OSError(errno.ENOBUFS, "No buffer space available")

    batch = NetlinkBatch(kernel, lambda name: 7)
    for i in range(3):
        batch.add(netlink.route_del_request(f"10.1.1.{i}/32", dev=7), tag=i)
    assert [(f.tag, f.errno) for f in batch.flush()] == [(0, errno.ENOBUFS), (1, errno.ENOBUFS), (2, errno.ENOBUFS)]


BATCH_SCRIPT = textwrap.dedent("""
    import subprocess
    from nodes.runtime.host import netlink as n
    sh = lambda c: subprocess.run(c, shell=True, capture_output=True, text=True, check=True).stdout
    sh("ip link set lo up; ip link add va type veth peer name vb; ip link set va up; ip link set vb up")
    n.addr_add("va", "10.5.0.1/24")
    va = n.link_index("va")
    count = 3 * n.BATCH_MAX // 2  # more than one datagram
    reqs = []
    for i in range(count):
        ip = f"10.7.{i // 250}.{1 + i % 250}"
        reqs += [n.route_replace_request(f"{ip}/32", dev=va), n.proxy_arp_request(ip, va, True)]
    bad = n.route_replace_request("10.9.9.9/32", gateway="10.99.0.1", dev=va)  # ENETUNREACH
    reqs.insert(5, bad)
    reqs.append(n.proxy_arp_request("10.7.0.1", va, True))  # already there: EEXIST is ignored
    refused = n.send_batch(reqs)
    assert refused == [(5, 101)], refused  # only the bad one, by its index; the rest were done
    routes, proxies = sh("ip route"), sh("ip neigh show proxy")
    assert routes.count("dev va") == count + 1 and proxies.count("dev va") == count, (routes, proxies)
    assert "10.7.1.50 dev va" in routes and "10.7.1.50 dev va proxy" in proxies
    # a batch of deletions, some of what is not there (ignored), and a second one (the sequence goes on)
    gone = [n.route_del_request(f"10.7.0.{i}/32", dev=va) for i in range(1, 11)]
    gone += [n.proxy_arp_request(f"10.7.0.{i}", va, False) for i in range(1, 11)]
    assert n.send_batch(gone) == [] and n.send_batch(gone) == []
    assert "10.7.0.5 " not in sh("ip route") and "10.7.0.5 " not in sh("ip neigh show proxy")
    # the same kernel answers through the one-at-a-time path after batches
    n.route_replace("10.8.0.1/32", dev="va")
    assert "10.8.0.1 dev va" in sh("ip route")
    n.close()
    print("OK")
""")


@needs_netns
def test_one_batch_in_the_kernel_reports_only_the_refused_request():
    in_private_netns(BATCH_SCRIPT)


def test_a_host_route_by_address_is_the_same_request_as_by_its_prefix():
    """The home agent passes the home address itself (no string to parse): same bytes, same words."""
    from ipaddress import IPv4Address
    home = IPv4Address("10.128.3.7")
    for build in (netlink.route_replace_request, netlink.route_del_request):
        by_address, by_prefix = build(home, dev=7), build("10.128.3.7/32", dev=7)
        assert by_address.body == by_prefix.body and by_address.what == by_prefix.what
    assert netlink.route_del_request("10.128.0.0/16", dev=7).what == "route del 10.128.0.0/16"
