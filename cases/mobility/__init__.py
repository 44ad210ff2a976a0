"""Mobile IPv4 conformance cases: registrations, handoffs, NAT traversal, negatives (issue 4)."""
