"""RFC 5265 inside/outside detection: where the mobile node is, from its two registrations' outcomes.

Sans-I/O policy, no sockets and no clock of its own: the mobile VPN node (nodes/daemons/
mobile_vpn_node.py, nesting rfc5265) feeds `decide` what became of the registration requests it
sent together on an attachment change, one to the internal home agent (i-HA) directly from the
address it has on the new link and one to the external home agent (x-HA), and how long it has waited.

RFC 5265 sections 3.2.3 to 3.4: an i-HA reply carrying the Trusted
Networks Configured extension (type 149) means inside: the VPN goes down, the x-HA binding is
removed and i-MIP runs directly (access mode `c` with a co-located care-of address on an intranet
subnet, or no binding at all at home). The i-HA silently drops requests from sources outside its
trusted networks, so outside no such reply comes: once the detection window has passed, the node is
outside and brings x-MIP, IKE and i-MIP up in that order (access mode `cvc`). On a link with a
foreign agent the request to the i-HA is relayed by the agent (its care-of address): inside that is
access mode `f`, outside `fvc` (x-MIP through the agent; RFC 5265 section 2). A reply from the i-HA
without the extension is no proof of being inside (an i-HA configured without trusted networks
answers everywhere): outside as well, without waiting.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from nodes.mip.common import addr
from nodes.mip.mn_messages import Attempt, check_reply
from nodes.wire.mip import EXT_MN_HA_AUTH, EXT_TRUSTED_NETWORKS, ReplyCode, find_extension, is_accepted

# what became of the request to the i-HA
I_HA_TRUSTED = "trusted-reply"      # an accepting reply (code 0 or 1) carrying extension 149
I_HA_REPLY = "reply"                # any other reply: without extension 149, or a denial
I_HA_NONE = "none"                  # nothing (yet): outside, the i-HA drops the request silently
I_HA_OUTCOMES = (I_HA_TRUSTED, I_HA_REPLY, I_HA_NONE)
# what became of the request to the x-HA
X_HA_ACCEPTED, X_HA_DENIED, X_HA_NONE = "accepted", "denied", "none"
X_HA_OUTCOMES = (X_HA_ACCEPTED, X_HA_DENIED, X_HA_NONE)

DEFAULT_WINDOW = 1.0  # seconds to wait for the i-HA before deciding "outside"
OUTSIDE_ORDER = ("x-mip", "vpn", "i-mip")  # RFC 5265: x-MIP, then IKE from the x-HoA, then i-MIP


@dataclass(frozen=True)
class Decision:
    """Where the node is and what each layer should do there.

    location: "inside", "outside" or "undecided" (keep the layers as they are and wait);
    mode: the RFC 5265 access mode ("home", "c", "f", "cvc", "fvc") or None while undecided;
    x_mip: "register" or "deregister"; vpn: "up" or "down"; i_mip: "direct" (registered from the
    link's own address, or deregistered at home) or "through-vpn" (VPN-TIA as care-of address);
    None for a layer means "leave it as it is"; next_up: outside, the first layer of x-MIP, vpn,
    i-MIP that still has to come up (each waits for the one before), else None;
    reason: why, in words for the log and the status."""

    location: str
    mode: str | None
    x_mip: str | None
    vpn: str | None
    i_mip: str | None
    next_up: str | None
    reason: str

    def as_dict(self) -> dict:
        return asdict(self)


def decide(i_ha: str, x_ha: str, waited: float, at_i_home: bool, window: float = DEFAULT_WINDOW,
           layers_up: tuple[bool, bool, bool] = (False, False, False), via_fa: bool = False) -> Decision:
    """The decision after `waited` seconds since the two requests of an attachment left.

    `at_i_home`: the link's address is inside the i-HoA's home network (the node is on the home
    subnet: the i-MIP request is a deregistration). `layers_up`: whether x-MIP, the VPN and i-MIP
    (through the VPN) are up, to name the next layer to bring up outside. `via_fa`: the link has a
    foreign agent, whose care-of address the node uses (modes f inside, fvc outside)."""
    if i_ha not in I_HA_OUTCOMES:
        raise ValueError(f"i_ha outcome: expected one of {', '.join(I_HA_OUTCOMES)}, got {i_ha!r}")
    if x_ha not in X_HA_OUTCOMES:
        raise ValueError(f"x_ha outcome: expected one of {', '.join(X_HA_OUTCOMES)}, got {x_ha!r}")
    if i_ha == I_HA_TRUSTED:
        mode = "home" if at_i_home else "f" if via_fa else "c"
        return Decision("inside", mode, "deregister", "down", "direct", None,
                        "the i-HA's reply carries the Trusted Networks Configured extension (149)")
    if i_ha == I_HA_REPLY:
        reason = "the i-HA answered without the Trusted Networks Configured extension (149)"
    elif waited >= window:
        reason = f"no reply from the i-HA within {window:g} s (it drops untrusted sources silently)"
    else:
        return Decision("undecided", None, None, None, None, None,
                        f"waiting for the i-HA ({waited:.2f} of {window:g} s); x-HA: {x_ha}")
    next_up = next((name for name, up in zip(OUTSIDE_ORDER, layers_up) if not up), None)
    return Decision("outside", "fvc" if via_fa else "cvc", "register", "up", "through-vpn", next_up, reason)


def probe_attempt(cfg, address, now: float, identification: int, at_i_home: bool, agent=None):
    """The registration request that asks the i-HA from the link's own `address`: a co-located
    registration (access mode c) there, a deregistration when `address` is on the i-HoA's home
    network (RFC 5944: at home, lifetime 0 from the home address). With `agent` (the foreign agent's
    address) `address` is the agent's care-of address: a registration through it (access mode f),
    sent to the agent from the i-HoA."""
    a = addr(address)
    if agent is not None:
        attempt = Attempt("fa", cfg.lifetime, a, addr(agent), cfg.home_address)
    elif at_i_home:
        attempt = Attempt("home", 0, cfg.home_address, cfg.home_agent, cfg.home_address)
    else:
        attempt = Attempt("colocated", cfg.lifetime, a, cfg.home_agent, a)
    attempt.identification, attempt.sent_at, attempt.first_sent_at = identification, now, now
    return attempt


def deregistration_attempt(cfg, address, now: float, identification: int):
    """RFC 5265 inside: the request that removes the x-HA's binding, sent from the link's `address`
    (lifetime 0, RFC 5944 3.6.1.2)."""
    a = addr(address)
    attempt = Attempt("colocated", 0, a, cfg.home_agent, a)
    attempt.identification, attempt.sent_at, attempt.first_sent_at = identification, now, now
    return attempt


def i_ha_outcome(cfg, attempt, payload: bytes) -> tuple[str | None, str | None]:
    """(I_HA_TRUSTED or I_HA_REPLY, None) for an authentic reply of the i-HA to `attempt`, else
    (None, why it is dropped). Only an accepting reply counts as trusted: RFC 5265 3.2.3, the node
    "MUST NOT infer that an interface is connected to the internal network unless a successful
    registration has been completed through that particular interface to the i-HA, the i-HA
    registration reply contained a Trusted Networks Configured extension"; a denial carrying 149
    is an answer, but not a successful registration. A foreign agent's denial is not the i-HA's answer (outside, the agent
    of the visited network cannot reach the i-HA: code 80 after the Internet core's ICMP error)."""
    reply, dropped = check_reply(cfg, attempt, payload)
    if reply is None:
        return None, dropped
    if find_extension(reply.extensions, EXT_MN_HA_AUTH) is None:
        return None, f"agent-denial-{reply.code}"
    trusted = is_accepted(reply.code) and find_extension(reply.extensions, EXT_TRUSTED_NETWORKS) is not None
    return (I_HA_TRUSTED if trusted else I_HA_REPLY), None


def agent_lifetime_offer(cfg, attempt, payload: bytes) -> int | None:
    """The lifetime a foreign agent offers when it denies `attempt` with code 69 (lifetime too long,
    RFC 5944 3.7.2.2: the reply's lifetime is the agent's maximum), else None: the request is sent
    again with it, as the Mobile Node core does."""
    reply, _dropped = check_reply(cfg, attempt, payload)
    if reply is None or reply.code != ReplyCode.FA_LIFETIME_TOO_LONG or not 0 < reply.lifetime < attempt.lifetime:
        return None
    return reply.lifetime


def inside_lapsed(i_mip: dict, now: float) -> bool:
    """Inside, whether the i-MIP layer's direct registration with the i-HA has run out without a
    renewal being answered (its status: `state`, `registered_until`). RFC 5265 3.3: "If the
    re-registration fails, the MN MUST stop sending and receiving plaintext traffic, and MUST
    restart the detection algorithm" (the caller asks the i-HA and the x-HA again, as on a new
    attachment)."""
    until = i_mip.get("registered_until")
    return i_mip.get("state") in ("registering", "denied") and until is not None and now >= until
