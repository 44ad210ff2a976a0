"""Host changes (routes, neighbour and proxy-ARP entries) queued while the event loop handles a burst
of input, and sent to the kernel together: one rtnetlink datagram for up to 256 of them, one
acknowledgement, and an error message for each one the kernel refused (nodes/runtime/host/netlink.py
`send_batch`). A home agent creating bindings at thousands a second saves a system call, an
acknowledgement and an interface lookup per change.

Sans-I/O: the batch only queues; `flush()` gives the queued requests, in order, to the `send`
function it was built with (`netlink.send_batch` on a node, a fake in tests) and returns what was
refused, each with the tag its caller attached, so the caller can log it, count it and retry it.
`take()` and `send(taken)` are the two halves of `flush()`, for a caller that has more to take
along with the batch (the home agent: the replies and announcements that wait for it).

    batch = NetlinkBatch(netlink.send_batch, netlink.link_index)
    batch.add(netlink.proxy_arp_request(home, batch.ifindex("eth0"), True), tag=("proxy-on", home, "eth0"))
    for failure in batch.flush():
        ...  # failure.request.what, failure.errno, failure.tag
"""
from __future__ import annotations

import errno as _errno
import os
from dataclasses import dataclass
from typing import Callable

from nodes.runtime.host.netlink import Request


@dataclass(frozen=True)
class Failure:
    """A request the kernel refused (or whose outcome is unknown: the send itself failed)."""

    request: Request
    errno: int
    tag: object

    @property
    def error(self) -> str:
        """The errno's name and text, e.g. 'ENODEV (No such device)'."""
        return f"{_errno.errorcode.get(self.errno, str(self.errno))} ({os.strerror(self.errno)})"


class NetlinkBatch:
    def __init__(self, send: Callable[[list[Request]], list[tuple[int, int]]], resolve: Callable[[str], int]):
        self._send, self._resolve = send, resolve
        self._requests: list[Request] = []
        self._tags: list[object] = []
        self._index: dict[str, int] = {}
        self.sent = self.flushes = 0

    def __len__(self) -> int:
        return len(self._requests)

    def ifindex(self, name: str) -> int:
        """The index of interface `name`, looked up once per batch (an interface that is deleted and
        created again between two batches gets its new index)."""
        index = self._index.get(name)
        if index is None:
            index = self._index[name] = self._resolve(name)
        return index

    def add(self, request: Request, tag: object = None) -> None:
        self._requests.append(request)
        self._tags.append(tag)

    def take(self) -> "Taken":
        """What is queued, to be sent with `send` (from any thread); the batch starts empty again."""
        taken = Taken(self._requests, self._tags)
        self._requests, self._tags, self._index = [], [], {}
        if taken.requests:
            self.flushes += 1
            self.sent += len(taken.requests)
        return taken

    def send(self, taken: "Taken") -> list[Failure]:
        """Send taken requests, in order; the refused ones (none when all were done)."""
        if not taken.requests:
            return []
        try:
            refused = self._send(taken.requests)
        except OSError as exc:  # e.g. ENOBUFS: the answers were lost, so is what was done
            refused = [(i, exc.errno or _errno.EIO) for i in range(len(taken.requests))]
        return [Failure(taken.requests[i], err, taken.tags[i]) for i, err in refused]

    def flush(self) -> list[Failure]:
        """Send what is queued, in order; the refused requests (none when all were done)."""
        return self.send(self.take())


@dataclass(frozen=True)
class Taken:
    requests: list[Request]
    tags: list[object]
