"""Test instruments that run inside nodes (probe streams, echo sinks, reachability checks):
`python -m nodes.instruments.<name>`. Not roles; the harness and cases start them."""
