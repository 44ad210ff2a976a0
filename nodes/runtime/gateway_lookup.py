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

import dns.asyncresolver
import dns.exception
import dns.rdatatype
import dns.resolver

GATEWAY_NONE, GATEWAY_IPV4, GATEWAY_IPV6, GATEWAY_NAME = 0, 1, 2, 3


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


async def gateway_from_ipseckey(domain: str, resolver: dns.asyncresolver.Resolver | None = None,
                                timeout: float = 3.0) -> str:
    """The IPv4 address of `domain`'s preferred IPsec gateway, from its IPSECKEY records."""
    resolver = resolver or dns.asyncresolver.Resolver()
    what = f"the IPSECKEY record of {domain!r} (RFC 4025)"
    try:
        answer = await resolver.resolve(domain, "IPSECKEY", lifetime=timeout)
    except dns.resolver.NXDOMAIN:
        raise GatewayLookupError(f"no {what}: the name does not exist in the DNS; publish the record "
                                 f"(e.g. `{domain}. IN IPSECKEY 10 1 2 <gateway address> <key>`) or give "
                                 f"the gateway's address") from None
    except dns.resolver.NoAnswer:
        raise GatewayLookupError(f"no {what}: the name exists but has no IPSECKEY record; publish one or "
                                 f"give the gateway's address") from None
    except dns.exception.FormError as exc:
        raise GatewayLookupError(f"{what} is malformed ({exc}); fix the record on the DNS server") from None
    except dns.exception.Timeout:
        raise GatewayLookupError(f"no answer for {what} within {timeout:g} s from the resolvers in "
                                 f"/etc/resolv.conf ({', '.join(resolver.nameservers)}); check them") from None
    except dns.exception.DNSException as exc:
        raise GatewayLookupError(f"{what} could not be looked up: {exc}") from None
    gateways = ipv4_gateways(answer)
    if not gateways:
        kinds = sorted({rd.gateway_type for rd in answer})
        raise GatewayLookupError(f"{what} names no IPv4 gateway (gateway types {kinds}: 0 none, 2 IPv6); "
                                 f"publish one with gateway type 1 or 3, or give the gateway's address")
    _, gateway, is_name = gateways[0]
    if not is_name:
        return gateway
    try:
        a = await resolver.resolve(gateway, "A", lifetime=timeout)
    except dns.exception.DNSException as exc:
        raise GatewayLookupError(f"{what} names the gateway {gateway!r}, which has no IPv4 address: {exc}") from None
    return str(a[0].address)
