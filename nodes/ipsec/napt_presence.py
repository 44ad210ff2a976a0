"""The gateway's NAPT internal presence (draft-gupta-ipsec-remote-access Appendix A) as one sans-I/O
core: a remote host's packets leave translated to G_i toward the intranet, or, with Internet access
through the gateway, translated to G_e toward everything else; answers come back through the
translation that made their mapping. The core decides which translation a packet takes and when its
mappings time out; the gateway daemon only moves the bytes and arms a timer at `next_deadline()`.

    presence = NaptPresence(Napt(g_i, ...), Napt(g_e, ...) or None, intranet=[10.1.0.0/16], g_e="203.0.113.70")
    out = presence.outbound(inner, tunnel, now)         # bytes toward the intranet / Internet, or None
    got = presence.inbound(packet, now)                 # (packet, tunnel) or None
    presence.handle_timer(now) at presence.next_deadline()
"""
from __future__ import annotations

from collections.abc import Hashable, Iterable
from ipaddress import IPv4Address, IPv4Network

from nodes.ipsec.napt import Napt


class NaptPresence:
    def __init__(self, intranet_napt: Napt, internet_napt: Napt | None = None,
                 intranet: Iterable[IPv4Network] = (), g_e: str | None = None):
        """`intranet_napt` translates to G_i; `internet_napt` (the gateway as the remote hosts' way
        to the Internet too) to G_e, for destinations outside `intranet`."""
        self.intranet_napt, self.internet_napt = intranet_napt, internet_napt
        self._intranet = [(int(n.network_address), int(n.netmask)) for n in intranet]
        self._g_e = IPv4Address(g_e).packed if g_e else b""

    @property
    def napts(self) -> list[Napt]:
        return [n for n in (self.intranet_napt, self.internet_napt) if n is not None]

    def _toward_intranet(self, packet: bytes) -> bool:
        dst = int.from_bytes(packet[16:20], "big")
        return any(dst & mask == net for net, mask in self._intranet)

    def outbound(self, inner: bytes, peer: Hashable, now: float) -> bytes | None:
        """A packet a remote host sent through its tunnel, translated (None: dropped, counted)."""
        napt = self.intranet_napt
        if self.internet_napt is not None and not self._toward_intranet(inner):
            napt = self.internet_napt
        return napt.outbound(inner, peer, now)

    def inbound(self, packet: bytes, now: float) -> tuple[bytes, Hashable] | None:
        """A packet to G_i (or G_e) for a mapping: (translated back, the tunnel's peer), or None."""
        napt = self.intranet_napt
        if self.internet_napt is not None and packet[16:20] == self._g_e:
            napt = self.internet_napt
        return napt.inbound(packet, now)

    def forget_peer(self, peer: Hashable) -> None:
        for napt in self.napts:
            napt.forget_peer(peer)

    def handle_timer(self, now: float) -> None:
        for napt in self.napts:
            napt.handle_timer(now)

    def next_deadline(self) -> float | None:
        return min((d for n in self.napts if (d := n.next_deadline()) is not None), default=None)
