"""What the IKE core is configured with: its identity, proposals, peers (initiator) or users
(responder), and its timers."""
from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Protocol

from nodes.wire import ikev2 as w


class AddressAllocator(Protocol):
    def allocate(self, peer_id: str) -> IPv4Address | str | None: ...

    def release(self, peer_id: str, address: str) -> None: ...


@dataclass
class UserPolicy:
    """A remote user the responder admits: a PSK, or an EAP-MD5 password, and the subnets it may reach."""
    psk: bytes | None = None
    password: bytes | None = None
    subnets: list[str] = field(default_factory=lambda: ["0.0.0.0/0"])
    remote_ts: list[str] | None = None  # allowed TSi without a virtual IP; None: config.remote_ts
    gateway_psk: bytes | None = None  # responder's AUTH toward this user when it uses EAP; None: config's


# strongSwan's default proposal sets (5.9: AEAD and AES-CBC/SHA-2 suites, ECP/Curve25519/MODP groups),
# within what this implementation has (AES-GCM-16 and AES-CBC with HMAC-SHA-256-128, PRF-HMAC-SHA-256,
# groups 19, 31, 14); a config's ike_proposals / esp_proposals narrow them. PFS: a CREATE_CHILD_SA
# offer with a KE payload is accepted with the peer's group even when esp_proposals name none.
DEFAULT_IKE_PROPOSALS = ("aes128gcm16-aes256gcm16-prfsha256-ecp256-curve25519-modp2048",
                         "aes128-aes256-sha256-prfsha256-ecp256-curve25519-modp2048")
DEFAULT_ESP_PROPOSALS = ("aes128gcm16", "aes256gcm16", "aes128-sha256", "aes256-sha256")


@dataclass
class IkeConfig:
    local_id: str
    ike_proposals: list[str] = field(default_factory=lambda: list(DEFAULT_IKE_PROPOSALS))
    esp_proposals: list[str] = field(default_factory=lambda: list(DEFAULT_ESP_PROPOSALS))
    # initiator
    remote_id: str | None = None  # expected responder identity (also sent as IDr)
    psk: bytes | None = None  # own AUTH (without EAP) and check of the responder's AUTH
    eap_password: bytes | None = None  # authenticate by EAP-MD5 instead of PSK
    eap_identity: str | None = None
    request_address: bool = True  # CP CFG_REQUEST for INTERNAL_IP4_ADDRESS and DNS
    local_ts: list[str] = field(default_factory=lambda: ["0.0.0.0/0"])
    remote_ts: list[str] = field(default_factory=lambda: ["0.0.0.0/0"])
    # responder
    users: dict[str, UserPolicy] = field(default_factory=dict)
    gateway_psk: bytes | None = None  # responder's AUTH toward EAP users without their own gateway_psk
    unique: str = "no"  # "replace": a new IKE SA of a peer identity closes the older ones (responder)
    allocator: AddressAllocator | None = None
    dns: list[str] = field(default_factory=list)
    netmask: str | None = None
    # both
    force_encap: bool = False  # fake a NAT (as strongSwan's encap=yes / kernel-libipsec)
    retransmit_timeout: float = 2.0
    retransmit_backoff: float = 2.0
    retransmit_tries: int = 5  # retransmissions before giving up
    dpd_interval: float | None = None
    child_rekey_after: float | None = None
    ike_rekey_after: float | None = None
    half_open_timeout: float = 30.0
    # responder under an IKE_SA_INIT flood (RFC 7296 2.6): demand a COOKIE while this many IKE SAs
    # are half-open (None: never; 0: always), and refuse new ones beyond half_open_max
    cookie_threshold: int | None = 32
    half_open_max: int = 1024


def make_id(text: str, payload_cls: type) -> w.Identification:
    """strongSwan's identity syntax: an IPv4 address, 'user@realm' (RFC822), '@fqdn' or 'fqdn'."""
    try:
        return payload_cls(w.ID_IPV4_ADDR, IPv4Address(text).packed)
    except ValueError:
        pass
    if text.startswith("@"):
        return payload_cls(w.ID_FQDN, text[1:].encode())
    if "@" in text:
        return payload_cls(w.ID_RFC822_ADDR, text.encode())
    return payload_cls(w.ID_FQDN, text.encode())


def id_text(text: str) -> str:
    return text[1:] if text.startswith("@") else text
