"""The Mobile Node's agent discovery (sans-I/O; part of the Mobile Node core, nodes/mip/mn.py, which
owns one `AgentDiscovery`): the agent in use and another one heard while it still advertises
(RFC 5944 2.4.2, 2.4.2.1), whether an advertisement comes from the node's home agent, the foreign
agent that requires registration through it (R), and the solicitations with their randomised
back-off (2.4).
"""
from __future__ import annotations

from ipaddress import IPv4Address

from nodes.mip.actions import SendIcmp
from nodes.mip.mn_messages import Agent
from nodes.wire.mip import AgentFlags, AgentSolicitation

ALL_ROUTERS = IPv4Address("224.0.0.2")
SOLICIT_JITTER = (0.02, 0.05)  # solicitation intervals: nominal * (1 + U(these)), RFC 5944 2.4


class AgentDiscovery:
    def __init__(self, config, counters, random):
        self.config, self.counters, self.random = config, counters, random
        self.agent: Agent | None = None
        self.candidate: Agent | None = None  # another agent heard while the current one still advertises
        self.next_solicit: float | None = None
        self._solicits = 0

    def attached(self, now: float) -> None:
        """A new link: no agent known, solicit now."""
        self.agent = self.candidate = None
        self._solicits, self.next_solicit = 0, now

    def detached(self) -> None:
        self.agent = self.candidate = self.next_solicit = None

    def restart_soliciting(self, now: float) -> None:
        self._solicits, self.next_solicit = 0, now

    def solicitation_due(self, now: float) -> bool:
        return self.next_solicit is not None and self.next_solicit <= now

    def solicit(self, now: float, src: IPv4Address) -> list:
        """An Agent Solicitation from `src`; the next one after the burst at the configured interval,
        then with exponential back-off up to the maximum."""
        cfg = self.config
        self._solicits += 1
        n = self._solicits
        delay = cfg.solicit_interval if n < cfg.solicit_burst else \
            cfg.solicit_interval * 2 ** (n - cfg.solicit_burst + 1)
        # RFC 5944 2.4: "Mobile nodes MUST randomize their solicitation times around these nominal
        # values"; only upwards, never above the maximum rate of one a second
        low, high = SOLICIT_JITTER
        jitter = low + (high - low) * int.from_bytes(self.random(2), "big") / 0xFFFF
        self.next_solicit = now + min(delay, cfg.solicit_max_interval) * (1 + jitter)
        self.counters["solicitations"] += 1
        return [SendIcmp(ALL_ROUTERS, AgentSolicitation().encode(), src=src, ttl=1, iface=cfg.iface)]

    def keeps_current(self, heard: Agent, now: float, denied: bool) -> bool:
        """Whether an advertisement from `heard`, another agent than the one in use, leaves the node
        with its agent: yes while the current agent's advertisement lifetime runs (move detection by
        lifetime, RFC 5944 2.4.2.1), unless both advertise prefix lengths and the prefixes differ
        (2.4.2.2) or the current agent is of no use (`denied` us, or neither foreign nor our home
        agent)."""
        cur = self.agent
        if cur is None or cur.address == heard.address or cur.expires <= now or denied:
            return False
        if not (cur.is_foreign or self.from_home_agent(cur)):
            return False
        return not (cur.prefix_known and heard.prefix_known and cur.prefix != heard.prefix)

    def from_home_agent(self, agent: Agent | None) -> bool:
        """An advertisement with H from our home agent (or another home agent on our home network)."""
        return agent is not None and agent.is_home and (agent.address == self.config.home_agent
                                                         or agent.address in self.config.home_network)

    def requiring_agent(self, now: float) -> Agent | None:
        """The foreign agent a co-located care-of address is registered through (with the config's
        `colocated_through_agent`): one heard on this link, within its advertisement lifetime, with R
        set. RFC 5944 3.1: "If a mobile node is using a co-located care-of address, and receives an
        Agent Advertisement from a foreign agent on the link on which it is using this care-of
        address, the mobile node SHOULD register via that foreign agent ... if the 'R' bit is set";
        otherwise it "MUST register directly with its home agent"."""
        a = self.agent
        if not self.config.colocated_through_agent or a is None or not a.is_foreign or not a.flags & AgentFlags.R \
                or a.expires <= now:
            return None
        return a

    def expired(self, now: float) -> tuple[bool, Agent | None]:
        """(whether the agent in use fell silent now, the other agent heard meanwhile and still within
        its lifetime, which becomes the one in use: RFC 5944 2.4.2.1)."""
        if self.agent is None or self.agent.expires > now:
            return False, None
        self.counters["agent-expired"] += 1
        candidate, self.agent, self.candidate = self.candidate, None, None
        if candidate is not None and candidate.expires > now:
            self.agent = candidate
            self.counters["movements"] += 1
            return True, candidate
        return True, None

    def deadlines(self) -> list:
        return [self.next_solicit, self.agent.expires if self.agent else None]
