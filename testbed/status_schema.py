"""The schema of a role's status (RoleHandle.status(), testbed/profile_api.py): the keys every role's
status carries and, per role kind, the keys the cases and checks read (testbed/ipsec_checks.py,
testbed/mip_checks.py, testbed/rfc5265_checks.py, testbed/traversal_checks.py, the sink's
"received"), with their JSON types. Taken from what our daemons answer (nodes/daemons/,
nodes/instruments/sink.py), what the strongSwan profile answers (testbed/vendors/strongswan/status.py)
and the example profile (examples/socat_profile/).

A status may carry more keys than these (a profile's own details): the schema names what every
profile of a kind must answer so that the same cases run against it. A key's type is a set of JSON
types ("str", "int", "num", "bool", "list", "map", "null"); a list's items or a mapping's keys have
a schema of their own where cases read into them. `check_status(status, kind)` raises the one
ConfigError (nodes/config_schema.py), naming the profile's status, the key, what was expected
and what was found.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from testbed.profile_api import KINDS
from testbed.schema import ConfigError, Reader

_JSON_TYPES = {"str": str, "int": int, "num": (int, float), "bool": bool, "list": list, "map": dict, "null": type(None)}


@dataclass(frozen=True)
class Key:
    """One key of a status: its JSON types ("str|null"), whether every profile answers it, what it
    means, and the schema of a list's items or a mapping's keys."""
    types: str
    about: str = ""
    required: bool = True
    items: dict[str, "Key"] | None = None  # a list of mappings: each item's keys
    fields: dict[str, "Key"] | None = None  # a mapping: its keys

    def accepts(self, value) -> bool:
        for t in self.types.split("|"):
            if t in ("int", "num") and isinstance(value, bool):
                continue
            if isinstance(value, _JSON_TYPES[t]):
                return True
        return False


def _optional(key: Key) -> Key:
    return Key(key.types, key.about, False, key.items, key.fields)


# -- every role ------------------------------------------------------------------------------------
COMMON = {
    "implementation": Key("str", "the profile's name (the harness fills it in when a profile leaves it out)"),
    "kind": Key("str", "the role's kind, one of profile_api.KINDS (filled in likewise)"),
    "running": Key("bool", "whether the role's program still runs", required=False),
}

# -- IPsec roles: vpn-gateway, vpn-client -----------------------------------------------------------
CHILD_KEYS = {  # the ESP keys that let tshark decrypt the capture (testbed/ipsec_checks.py); hex or None
    name: Key("str|null", f"{name.replace('_', ' ')}ward key, hex (None: not known to the profile)")
    for name in ("encr_in", "encr_out", "integ_in", "integ_out")
}

CHILD_SA = {
    "name": Key("str"),
    "state": Key("str", "INSTALLED once the child SA carries traffic"),
    "mode": Key("str", "TUNNEL or TRANSPORT"),
    "protocol": Key("str", "ESP"),
    "encap": Key("bool", "ESP inside UDP (RFC 3948)"),
    "spi_in": Key("str", "inbound SPI, hex"),
    "spi_out": Key("str", "outbound SPI, hex"),
    "encr_alg": Key("str|null", "IKEv2 transform name, e.g. AES_GCM_16, AES_CBC"),
    "encr_keysize": Key("int|null", "bits"),
    "integ_alg": Key("str|null", "e.g. HMAC_SHA2_256_128; None for an AEAD"),
    "local_ts": Key("list", "traffic selectors as prefixes"),
    "remote_ts": Key("list"),
    "bytes_in": Key("int|null"), "bytes_out": Key("int|null"),
    "packets_in": Key("int|null"), "packets_out": Key("int|null"),
    "keys": Key("map|null", "None when the profile cannot know the keys", fields=CHILD_KEYS),
}

IKE_SA = {
    "name": Key("str"),
    "state": Key("str", "ESTABLISHED once up (CONNECTING, REKEYING, DELETING, ...)"),
    "initiator": Key("bool"),
    "local_host": Key("str"), "local_port": Key("int|null"),
    "remote_host": Key("str"), "remote_port": Key("int|null"),
    "local_id": Key("str|null"), "remote_id": Key("str|null"),
    "spi_i": Key("str", "initiator's SPI, hex"), "spi_r": Key("str|null", "responder's SPI, hex"),
    "encap": Key("bool", "UDP-encapsulated (a NAT seen, or faked)"),
    "nat_local": Key("bool"), "nat_remote": Key("bool"), "nat_fake": Key("bool"),
    "dh_group": Key("int|str|null", "the Diffie-Hellman group (a number or a name)"),
    "keys": Key("map|null", "SK_* keys, hex, where known"),
    "local_vips": Key("list"), "remote_vips": Key("list"),
    "child_sas": Key("list", items=CHILD_SA),
}

IPSEC = {
    "ike_sas": Key("list", items=IKE_SA),
    "virtual_ips": Key("list", "virtual IPs: assigned to this client, or handed out by this gateway"),
    "tunnel_interface": Key("str", "where the tunnel's inner packets enter and leave the node"),
}

# -- Mobile IP roles ----------------------------------------------------------------------------------
BINDING = {  # RFC 5944 3.8 mobility binding (testbed/mip_checks.binding)
    "home_address": Key("str"), "care_of_address": Key("str"), "lifetime": Key("int"),
    "kind": Key("str", "the forward tunnel: ipip, minimal, gre or udp"),
    "remote": Key("str", "the tunnel endpoint (the care-of address or the NAT's observed address)"),
    "remote_port": Key("int|null"), "reverse": Key("bool"),
}
VISITOR = {  # RFC 5944 3.7.2 visitor list entry
    "home_address": Key("str"), "home_agent": Key("str"), "care_of_address": Key("str"),
    "reverse": Key("bool"), "lifetime": Key("int"),
}
MIP_COUNTERS = {
    "counters": Key("map", "counters by name (requests, advertisements, denied:<code>, ...)"),
    "drops": Key("map", "discarded input by reason"),
}
MOBILE_NODE = {
    "home_address": Key("str"),
    "state": Key("str", "home, registered, registering, ... (mip_checks.registered)"),
    "location": Key("str", "home or foreign"),
    "care_of_address": Key("str|null"), "mode": Key("str|null", "fa or colocated once registered"),
    "last_code": Key("int|null", "the last registration reply's code"),
    **MIP_COUNTERS,
}

SCHEMAS: dict[str, dict[str, Key]] = {
    "vpn-gateway": IPSEC,
    "vpn-client": {**IPSEC, "dns": Key("list", "DNS servers the gateway gave")},
    "home-agent": {"address": Key("str"), "bindings": Key("list", items=BINDING), **MIP_COUNTERS},
    "foreign-agent": {"address": Key("str"), "visitors": Key("list", items=VISITOR),
                      "pending": Key("int", "requests relayed and not answered yet"), **MIP_COUNTERS},
    "mobile-node": MOBILE_NODE,
    "mobile-vpn-node": {
        "nesting": Key("str", "how the MIP and VPN layers nest (mip-inside-ipsec, ipsec-inside-mip, rfc5265)"),
        "mip": Key("map", "the mobile node layer's status", fields=MOBILE_NODE),
        "vpn": Key("map", "the VPN client layer's status", fields={k: _optional(v) for k, v in IPSEC.items()}),
    },
    "echo-sink": {"received": Key("list", "each TCP connection or UDP datagram", items={
        "proto": Key("str", "tcp or udp"), "port": Key("int"), "peer": Key("str"), "peer_port": Key("int")})},
}
assert set(SCHEMAS) == set(KINDS), "a kind without a status schema"


def completed(status: dict, role) -> dict:
    """`status` with the keys every status carries filled in from the role where the profile left
    them out (implementation: the profile's name; kind)."""
    return {"implementation": role.impl, "kind": role.kind, **status}


def check_status(status: dict, kind: str, source: str | None = None) -> None:
    """Refuse a status that lacks a key its kind's cases read, or has one of another type, with a
    ConfigError naming `source` (default: "<implementation>'s <kind> status"), the key, what was
    expected and what was found."""
    if kind not in SCHEMAS:
        raise ConfigError(source or "a status", "kind", f"one of {list(KINDS)}", kind)
    if source is None:
        impl = status.get("implementation") if isinstance(status, dict) else None
        source = f"{impl or 'a profile'}'s {kind} status"
    top = Reader(source, status)
    top.mapping()
    _check(top, {**COMMON, **SCHEMAS[kind]})
    if status["kind"] != kind:
        raise top.child("kind").fail(repr(kind), status["kind"])


def _check(r: Reader, schema: dict[str, Key]) -> None:
    data = r.mapping()
    for name, key in schema.items():
        if name not in data:
            if key.required:
                raise r.child(name, None).fail(f"{key.types} ({key.about or 'a key every profile answers'})",
                                               hint="the status lacks this key: the profile must answer it")
            continue
        sub = r.child(name)
        if not key.accepts(sub.data):
            raise sub.fail(key.types, sub.data)
        if key.fields is not None and isinstance(sub.data, dict):
            _check(sub, key.fields)
        if key.items is not None:
            for item in sub.list():
                _check(item, key.items)


def describe(kind: str) -> list[str]:
    """The schema of `kind`'s status as lines (`key: types -- about`), for docs and error messages."""
    lines: list[str] = []

    def walk(schema: dict[str, Key], prefix: str) -> None:
        for name, key in schema.items():
            flag = "" if key.required else " (optional)"
            lines.append(f"{prefix}{name}: {key.types}{flag}" + (f" -- {key.about}" if key.about else ""))
            if key.fields:
                walk(key.fields, f"{prefix}{name}.")
            if key.items:
                walk(key.items, f"{prefix}{name}[].")

    walk({**COMMON, **SCHEMAS[kind]}, "")
    return lines
