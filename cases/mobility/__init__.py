"""Mobile IPv4 conformance cases: registrations, handoffs, NAT traversal, negatives (RFC 5944, RFC 3519)."""
