"""Implementations that run inside the testbed's nodes: codecs, protocol cores, daemons."""
