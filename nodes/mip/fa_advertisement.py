"""What the foreign agent advertises (RFC 5944 2.1.1; the advertiser that sends it on the visitor
link is nodes/mip/advertiser.py). Sans-I/O, part of nodes/mip/fa.py.

The flags say what the agent offers: F always (it is a foreign agent), R when registration is
required even for co-located care-of addresses, B when busy, T for reverse tunnelling (RFC 3024
3.1), U when it sits behind a NAT and asks home agents for UDP tunnelling (RFC 3519 3.3), M and G
for the minimal (RFC 2004) and GRE (RFC 2784) tunnels it decapsulates. Its care-of addresses, the
longest registration lifetime it accepts, and itself as the link's router with its prefix length.
"""
from __future__ import annotations

from nodes.wire.mip import AgentAdvertisement, AgentFlags


def flags_offered(config) -> int:
    """The advertisement's flags for a foreign agent's `config`."""
    flags = AgentFlags.F
    for wanted, flag in ((config.registration_required, AgentFlags.R), (config.busy, AgentFlags.B),
                         (config.reverse_tunnelling, AgentFlags.T), (config.behind_nat, AgentFlags.U),
                         ("minimal" in config.encapsulations, AgentFlags.M),
                         ("gre" in config.encapsulations, AgentFlags.G)):
        if wanted:
            flags |= flag
    return int(flags)


def foreign_agent_advertisement(config, sequence: int) -> AgentAdvertisement:
    """The advertisement of a foreign agent's `config` with this sequence number."""
    return AgentAdvertisement(
        sequence, config.max_lifetime, flags_offered(config), list(config.care_of_addresses), config.adv_lifetime,
        routers=[(config.address, 0)], prefix_lengths=[config.prefix_length],
    )
