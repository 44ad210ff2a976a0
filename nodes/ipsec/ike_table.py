"""The IKE SAs of a core: by our SPI (demultiplexing of received messages), the responder's
half-open SAs by (SPIi, peer address, peer port), by peer identity (unique=replace), and the per-SA
deadlines in a heap. No lookup scans every SA: a gateway with 10k IKE SAs pays per SA what it pays
with 1k.

After an input, the core `touch`es the SAs it worked on and calls `reschedule()`: each touched SA's
deadline (IkeSa.deadline) is pushed when it changed. Entries are checked when they reach the top of
the heap (the SA is gone, or holds another deadline now: skipped), so no input scans every SA.
"""
from __future__ import annotations

import heapq
import itertools

from nodes.ipsec.ike_state import IkeSa


class SaTable:
    def __init__(self, dpd_interval: float | None):
        self.dpd_interval = dpd_interval
        self.sas: dict[bytes, IkeSa] = {}  # by our SPI
        self.half_open: dict[tuple[bytes, str, int], IkeSa] = {}  # responder: (SPIi, peer, port)
        self._open_key: dict[bytes, tuple[bytes, str, int]] = {}  # our SPI -> its half_open key
        self._by_peer: dict[str, dict[bytes, IkeSa]] = {}  # peer identity -> SAs by our SPI
        self._settled: dict[tuple[bytes, str], bytes] = {}  # responder: (SPIi, peer) -> our SPI, after IKE_AUTH
        self._heap: list[tuple[float, int, IkeSa]] = []
        self._order = itertools.count()
        self._touched: dict[int, IkeSa] = {}

    # -- membership and demultiplexing --------------------------------------------------------
    def add(self, sa: IkeSa, half_open_key: tuple[bytes, str, int] | None = None) -> None:
        self.sas[sa.local_spi] = sa
        if half_open_key is not None:
            self.half_open[half_open_key] = sa
            self._open_key[sa.local_spi] = half_open_key
        self.index_peer(sa)
        self.touch(sa)

    def get(self, our_spi: bytes) -> IkeSa | None:
        return self.sas.get(our_spi)

    def by_name(self, name: str) -> IkeSa | None:
        """An SA by its name (our SPI in hex)."""
        try:
            sa = self.sas.get(bytes.fromhex(name))
        except ValueError:
            return None
        return sa if sa is not None and sa.name == name else None

    def index_peer(self, sa: IkeSa) -> None:
        """File the SA under its peer identity (once IKE_AUTH has told it; a rekey's successor has it)."""
        if sa.peer_id:
            self._by_peer.setdefault(sa.peer_id, {})[sa.local_spi] = sa

    def with_peer(self, peer_id: str) -> list[IkeSa]:
        """The SAs in the table whose peer identity is `peer_id`."""
        return [sa for sa in self._by_peer.get(peer_id, {}).values() if sa in self and sa.peer_id == peer_id]

    def forget(self, sa: IkeSa) -> None:
        if self.sas.get(sa.local_spi) is sa:
            del self.sas[sa.local_spi]
        if sa.spi_i and self._settled.get((sa.spi_i, sa.peer_addr)) == sa.local_spi:
            del self._settled[(sa.spi_i, sa.peer_addr)]
        peers = self._by_peer.get(sa.peer_id or "")
        if peers is not None and peers.get(sa.local_spi) is sa:
            del peers[sa.local_spi]
            if not peers:
                del self._by_peer[sa.peer_id]
        self.settle(sa)

    def settle(self, sa: IkeSa) -> None:
        """The SA is no longer half-open (its IKE_AUTH came, or it is gone)."""
        key = self._open_key.pop(sa.local_spi, None)
        if key is not None and self.half_open.get(key) is sa:
            del self.half_open[key]
            if sa in self:
                self._settled[(key[0], key[1])] = sa.local_spi

    def authenticated_from(self, spi_i: bytes, peer: str) -> bool:
        """An IKE SA that `peer` started with initiator SPI `spi_i` is past IKE_SA_INIT and still here
        (so a retransmitted IKE_SA_INIT of it is late, RFC 7296 2.1)."""
        ours = self._settled.get((spi_i, peer))
        if ours is None:
            return False
        sa = self.sas.get(ours)
        if sa is None or sa.spi_i != spi_i:
            del self._settled[(spi_i, peer)]
            return False
        return True

    def __contains__(self, sa: IkeSa) -> bool:
        return self.sas.get(sa.local_spi) is sa

    def __iter__(self):
        return iter(list(self.sas.values()))

    def established(self) -> list[IkeSa]:
        return [sa for sa in self.sas.values() if sa.established]

    # -- deadlines ----------------------------------------------------------------------------
    def touch(self, sa: IkeSa) -> None:
        self._touched[id(sa)] = sa

    def reschedule(self) -> None:
        touched, self._touched = self._touched, {}
        for sa in touched.values():
            if sa not in self:
                continue
            at = sa.deadline(self.dpd_interval)
            if at != sa.scheduled:
                sa.scheduled = at
                if at is not None:
                    heapq.heappush(self._heap, (at, next(self._order), sa))

    def _valid(self, entry: tuple[float, int, IkeSa]) -> bool:
        at, _, sa = entry
        return sa in self and sa.scheduled == at

    def next_deadline(self) -> float | None:
        while self._heap and not self._valid(self._heap[0]):
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def due(self, now: float) -> list[IkeSa]:
        """The SAs whose deadline has come (each once), taken off the heap and marked touched."""
        out: dict[int, IkeSa] = {}
        while self.next_deadline() is not None and self._heap[0][0] <= now:
            _, _, sa = heapq.heappop(self._heap)
            sa.scheduled = None
            out[id(sa)] = sa
            self.touch(sa)
        return list(out.values())
