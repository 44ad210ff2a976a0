"""Key material from charon's level-4 `ike`/`chd` log lines (this Debian build has no save-keys
plugin): the child SAs' ESP keys by inbound SPI and the IKE SAs' SK_* keys, so a role's status can
report them and the cases decrypt their captures with tshark."""
from __future__ import annotations

import re
from pathlib import Path

_LINE = re.compile(r"^(?:\S+ )?(?P<thread>\d+)\[(?P<grp>\w+)\] (?:<(?P<ike>[^>]*)> )?(?P<text>.*)$")
_DUMP = re.compile(r"^\s+\d+: ((?:[0-9A-F]{2} ?)+)")
_CHILD_KEY = re.compile(r"^(encryption|integrity) (initiator|responder) key =>")
_IKE_KEY = re.compile(r"^(Sk_\w+) secret =>")
_CHILD_UP = re.compile(r"CHILD_SA (?P<name>\S+)\{\d+\} established with SPIs (?P<in>[0-9a-f]+)_i (?P<out>[0-9a-f]+)_o")


def parse_keylog(path: Path) -> tuple[dict, dict]:
    """(child keys by inbound SPI, IKE keys by the IKE SA's unique id) from charon's level-4 log lines.

    A key is logged as "encryption initiator key => 20 bytes @ ..." (or "Sk_ei secret => ...")
    followed by hex dump lines; lines carry the IKE SA's "<name|id>" (or "<id>") prefix, and one IKE SA is
    handled by one thread at a time, so the keys logged under a prefix belong to the next
    "CHILD_SA name{n} established with SPIs aaaa_i bbbb_o" under that prefix."""
    child: dict[str, dict] = {}
    ike: dict[str, dict] = {}
    if not path.exists():
        return child, ike
    pending: dict[str, dict] = {}  # IKE SA -> {label: bytearray}, child keys not yet claimed
    collecting: dict[str, bytearray] = {}  # thread -> buffer of the key being dumped
    for raw in path.read_text(errors="replace").splitlines():
        m = _LINE.match(raw)
        if not m:
            continue
        thread, text = m["thread"], m["text"]
        sa = (m["ike"] or "").rsplit("|", 1)[-1]  # the IKE SA's unique id (a responder's has no name yet)
        d = _DUMP.match(text)
        if d and thread in collecting:
            collecting[thread] += bytes.fromhex(d.group(1).replace(" ", ""))
            continue
        collecting.pop(thread, None)
        km = _CHILD_KEY.match(text)
        if km:
            collecting[thread] = pending.setdefault(sa, {})["_".join(km.groups())] = bytearray()
            continue
        km = _IKE_KEY.match(text)
        if km:
            collecting[thread] = ike.setdefault(sa, {})[km.group(1).lower()] = bytearray()
            continue
        up = _CHILD_UP.search(text)
        if up:
            keys = {k: bytes(v).hex() for k, v in pending.pop(sa, {}).items()}
            child[up["in"]] = {"spi_in": up["in"], "spi_out": up["out"], **keys}
    ike = {name: {k: bytes(v).hex() for k, v in keys.items()} for name, keys in ike.items()}
    return child, ike

