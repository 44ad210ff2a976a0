"""The daemons that fill roles: each is `python -m nodes.daemons.<name>`, a thin adapter between a
protocol core (nodes/ipsec, nodes/mip) and the runtime (nodes/runtime)."""
