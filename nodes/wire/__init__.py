"""Byte-exact codecs. Every decoder raises DecodeError naming what is wrong."""
from nodes.wire.errors import DecodeError

__all__ = ["DecodeError"]
