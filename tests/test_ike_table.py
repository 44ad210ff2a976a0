"""The IKE core's SA table: lookups by name, half-open key and peer identity, none of them a scan."""
from __future__ import annotations

from nodes.ipsec.ike_state import IkeSa
from nodes.ipsec.ike_table import SaTable


def responder(n: int, peer_id: str | None = None) -> IkeSa:
    sa = IkeSa(False, n.to_bytes(8, "big"), (n + 1000).to_bytes(8, "big"), ("192.0.2.1", 500),
               (f"198.51.100.{n % 250 + 1}", 500), 0.0)
    sa.peer_id = peer_id
    return sa


def test_by_name_half_open_and_peer_index():
    table = SaTable(dpd_interval=None)
    sas = [responder(i) for i in range(1, 6)]
    for sa in sas:
        table.add(sa, (sa.spi_i, sa.peer_addr, sa.peer_port))
    assert len(table.half_open) == 5 and table.by_name(sas[2].name) is sas[2]
    assert table.by_name("zz") is None and table.by_name("00" * 8) is None
    for sa in sas[:3]:  # IKE_AUTH told who they are; the first two are one user
        sa.peer_id = "alice" if sa is not sas[2] else "bob"
        table.settle(sa)
        table.index_peer(sa)
    assert len(table.half_open) == 2
    assert table.with_peer("alice") == sas[:2] and table.with_peer("bob") == [sas[2]]
    successor = responder(9, "alice")  # an IKE rekey's successor arrives with the identity
    table.add(successor)
    assert table.with_peer("alice") == [*sas[:2], successor]
    table.forget(sas[0])
    assert table.with_peer("alice") == [sas[1], successor] and table.by_name(sas[0].name) is None
    table.forget(sas[3])  # still half-open: leaves the half-open map
    assert len(table.half_open) == 1 and table.with_peer("nobody") == []
