"""The strongswan profile's vici client: the codec against bytes written out by hand from the
message format of strongSwan's vici README (src/libcharon/plugins/vici/README.md; element types
1..6, 8-bit name and 16-bit value lengths), and the socket protocol against a fake charon on a
Unix socket. The conformance cases check it against charon itself."""
import socket
import struct
import threading

import pytest

from testbed.vendors.strongswan.vici import Vici, ViciError, vici_decode, vici_encode

SECTION_START, SECTION_END, KEY_VALUE, LIST_START, LIST_ITEM, LIST_END = 1, 2, 3, 4, 5, 6
CMD_REQUEST, CMD_RESPONSE, CMD_UNKNOWN, EVENT_REGISTER, EVENT_UNREGISTER, EVENT_CONFIRM = 0, 1, 2, 3, 4, 5
EVENT = 7


def name(s: str) -> bytes:
    return bytes([len(s)]) + s.encode()


def value(s: str) -> bytes:
    return struct.pack("!H", len(s)) + s.encode()


# modelled on the README's example: key1 = value1, section1 = {sub-section = {key2 = value2}, list1 = [item1, item2]}
README_EXAMPLE = (bytes([KEY_VALUE]) + name("key1") + value("value1")
                  + bytes([SECTION_START]) + name("section1")
                  + bytes([SECTION_START]) + name("sub-section")
                  + bytes([KEY_VALUE]) + name("key2") + value("value2")
                  + bytes([SECTION_END])
                  + bytes([LIST_START]) + name("list1")
                  + bytes([LIST_ITEM]) + value("item1") + bytes([LIST_ITEM]) + value("item2")
                  + bytes([LIST_END])
                  + bytes([SECTION_END]))
README_MESSAGE = {"key1": "value1", "section1": {"sub-section": {"key2": "value2"}, "list1": ["item1", "item2"]}}


def test_encoding_matches_the_readme_example():
    assert vici_encode(README_MESSAGE) == README_EXAMPLE


def test_decoding_the_readme_example():
    assert vici_decode(README_EXAMPLE) == README_MESSAGE


def test_values_are_strings_bytes_and_bools_as_text():
    msg = {"leases": "yes", "n": 3, "raw": b"\x00\xff", "empty": [], "nested": {"a": {"b": {}}}}
    out = vici_decode(vici_encode(msg))
    assert out["n"] == "3" and out["empty"] == [] and out["nested"] == {"a": {"b": {}}}
    assert vici_encode({"raw": b"\x00\xff"}) == bytes([KEY_VALUE]) + name("raw") + struct.pack("!H", 2) + b"\x00\xff"


def test_an_unknown_element_type_is_refused_with_its_offset():
    with pytest.raises(ViciError, match="unknown element type 9 at offset 0"):
        vici_decode(bytes([9]))


def packet(ptype: int, label: str | None = None, msg: dict | None = None) -> bytes:
    body = bytes([ptype]) + (name(label) if label is not None else b"") + vici_encode(msg or {})
    return struct.pack("!I", len(body)) + body


def read_packet(conn: socket.socket) -> tuple[int, bytes]:
    (length,) = struct.unpack("!I", conn.recv(4, socket.MSG_WAITALL))
    body = conn.recv(length, socket.MSG_WAITALL)
    return body[0], body[1:]


@pytest.fixture
def fake_charon(tmp_path):
    """A vici server on a Unix socket that answers each connection with `script(conn)`."""
    path = tmp_path / "charon.vici"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen()
    seen = []

    def serve(script):
        def run():
            conn, _ = server.accept()
            with conn:
                script(conn, seen)
        t = threading.Thread(target=run, daemon=True)
        t.start()
        return t

    yield path, serve, seen
    server.close()


def test_request_sends_a_named_command_and_reads_the_response(fake_charon):
    path, serve, seen = fake_charon

    def script(conn, seen):
        seen.append(read_packet(conn))
        conn.sendall(packet(CMD_RESPONSE, msg={"daemon": "charon", "version": "5.9.8"}))

    t = serve(script)
    assert Vici(path, timeout=2).request("version") == {"daemon": "charon", "version": "5.9.8"}
    t.join(2)
    assert seen == [(CMD_REQUEST, name("version"))]


def test_an_unknown_command_is_an_error(fake_charon):
    path, serve, _ = fake_charon
    serve(lambda conn, seen: (read_packet(conn), conn.sendall(packet(CMD_UNKNOWN))))
    with pytest.raises(ViciError, match="does not know the command 'nope'"):
        Vici(path, timeout=2).request("nope")


def test_stream_registers_collects_events_until_the_response_and_unregisters(fake_charon):
    path, serve, seen = fake_charon
    sas = [{"vpn": {"state": "ESTABLISHED"}}, {"user-0": {"state": "CONNECTING"}}]

    def script(conn, seen):
        seen.append(read_packet(conn))  # register
        conn.sendall(packet(EVENT_CONFIRM))
        seen.append(read_packet(conn))  # the command
        for sa in sas:
            conn.sendall(packet(EVENT, "list-sa", sa))
        conn.sendall(packet(CMD_RESPONSE))
        seen.append(read_packet(conn))  # unregister

    t = serve(script)
    assert Vici(path, timeout=2).stream("list-sas", "list-sa") == sas
    t.join(2)
    assert seen == [(EVENT_REGISTER, name("list-sa")), (CMD_REQUEST, name("list-sas")),
                    (EVENT_UNREGISTER, name("list-sa"))]


def test_a_closed_connection_is_an_error(fake_charon):
    path, serve, _ = fake_charon
    serve(lambda conn, seen: read_packet(conn))
    with pytest.raises(ViciError, match="closed the connection"):
        Vici(path, timeout=2).request("version")
