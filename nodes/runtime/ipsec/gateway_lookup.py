"""Find the VPN gateway of a domain in the public DNS by its IPSECKEY record (RFC 4025; draft-gupta
section 5: the gateway's address may be published through DNS [Atki97], whose modern form this is).

    address = await gateway_from_ipseckey("example.net")      # through the node's /etc/resolv.conf

RFC 4025 section 2: the record carries a precedence (lower is preferred), a gateway type (0 none,
1 IPv4 address, 2 IPv6 address, 3 a domain name), an algorithm and a public key. We take the IPv4
gateways, and domain-name gateways resolved to an IPv4 address, lowest precedence first (the order
of records with equal precedence is the server's). Everything that goes wrong is a GatewayLookupError
that says what happened and what to do: no record, only IPv6 or no-gateway records, a malformed
record, no answer from the resolver.
"""
from __future__ import annotations

import ipaddress
from typing import Awaitable, Callable

import dns.asyncquery
import dns.exception
import dns.message
import dns.rcode
import dns.rdatatype
import dns.resolver

GATEWAY_NONE, GATEWAY_IPV4, GATEWAY_IPV6, GATEWAY_NAME = 0, 1, 2, 3

Query = Callable[[str, str], Awaitable[dns.message.Message]]
"""(name, record type) -> the DNS response; raises dns.exception.DNSException subclasses."""


class GatewayLookupError(RuntimeError):
    pass


def ipv4_gateways(rdatas) -> list[tuple[int, str, bool]]:
    """(precedence, gateway, is_name) for every record naming an IPv4 gateway or a domain name,
    lowest precedence first (a stable sort: equal precedences keep the server's order)."""
    found = []
    for rd in rdatas:
        if rd.gateway_type == GATEWAY_IPV4:
            found.append((rd.precedence, str(ipaddress.IPv4Address(rd.gateway)), False))
        elif rd.gateway_type == GATEWAY_NAME:
            found.append((rd.precedence, str(rd.gateway).rstrip("."), True))
    return sorted(found, key=lambda g: g[0])


def udp_query(nameservers: list[str] | None = None, timeout: float = 3.0) -> Query:
    """Ask the first of `nameservers` (default: the node's /etc/resolv.conf) over UDP. Unlike
    dnspython's resolver, which ignores answers it cannot parse (it waits for a better one, as
    against spoofing), a malformed answer raises here, so the user learns the record is malformed."""
    servers = nameservers or dns.resolver.Resolver().nameservers

    async def query(name: str, rdtype: str) -> dns.message.Message:
        return await dns.asyncquery.udp(dns.message.make_query(name, rdtype), servers[0], timeout=timeout,
                                        ignore_errors=False)

    query.servers = servers  # type: ignore[attr-defined]
    return query


async def _records(query: Query, name: str, rdtype: str, what: str) -> list:
    try:
        response = await query(name, rdtype)
    except dns.exception.Timeout:
        servers = ", ".join(getattr(query, "servers", [])) or "?"
        raise GatewayLookupError(f"no answer for {what} from the resolver ({servers}, from /etc/resolv.conf); "
                                 f"check that it runs and is reachable") from None
    except dns.exception.DNSException as exc:  # FormError and the rest: the answer could not be read
        raise GatewayLookupError(f"{what} is malformed: the DNS answer cannot be decoded ({exc or type(exc).__name__}); "
                                 f"fix the record on the DNS server") from None
    rcode = response.rcode()
    if rcode == dns.rcode.NXDOMAIN:
        raise GatewayLookupError(f"{what} is missing: the name does not exist in the DNS; publish the record (e.g. "
                                 f"`{name}. IN IPSECKEY 10 1 2 <gateway address> <key>`) or give the gateway's address")
    if rcode != dns.rcode.NOERROR:
        raise GatewayLookupError(f"{what} could not be looked up: the DNS server answered {dns.rcode.to_text(rcode)}; "
                                 f"check that it serves {name}")
    found = [rd for rrset in response.answer if rrset.rdtype == dns.rdatatype.from_text(rdtype) for rd in rrset]
    if not found:
        raise GatewayLookupError(f"{what} is missing: the name exists but has no such record; publish one or give the "
                                 f"gateway's address")
    return found


async def gateway_from_ipseckey(domain: str, query: Query | None = None) -> str:
    """The IPv4 address of `domain`'s preferred IPsec gateway, from its IPSECKEY records."""
    query = query or udp_query()
    what = f"the IPSECKEY record of {domain!r} (RFC 4025)"
    records = await _records(query, domain, "IPSECKEY", what)
    gateways = ipv4_gateways(records)
    if not gateways:
        kinds = sorted({rd.gateway_type for rd in records})
        raise GatewayLookupError(f"{what} names no IPv4 gateway (gateway types {kinds}: 0 none, 2 IPv6); "
                                 f"publish one with gateway type 1 or 3, or give the gateway's address")
    _, gateway, is_name = gateways[0]
    if not is_name:
        return gateway
    a = await _records(query, gateway, "A", f"the address of the gateway {gateway!r} that {what} names")
    return str(a[0].address)
