#!/usr/bin/env python3
"""Seeds each fuzz target's corpus from real frames (proto-fixtures/, and
../shared/reference-traces/ when present) and the example configs.

    fuzz/seed.py            writes fuzz/corpus/<target>/seed-*

Each seed starts with the target's mode byte (see the target's source)."""
import hashlib
import pathlib
import struct

root = pathlib.Path(__file__).resolve().parent.parent
out = root / "fuzz" / "corpus"

OPCODES = {"STARTUP": 1, "OPTIONS": 5, "QUERY": 7, "PREPARE": 9, "EXECUTE": 10, "REGISTER": 11,
           "BATCH": 13, "AUTH_RESPONSE": 15}


def records(path):
    b = path.read_bytes()
    i = 0
    while i + 13 <= len(b):
        d = chr(b[i])
        (n,) = struct.unpack(">I", b[i + 9:i + 13])
        yield d, b[i + 13:i + 13 + n]
        i += 13 + n


def frames(stream):
    """v3/v4 frames (9-byte headers) from the start of a byte stream; stops at
    anything that does not look like one (v5 segments, compressed bodies)."""
    i = 0
    while i + 9 <= len(stream):
        version, flags, sid, op, n = struct.unpack(">BBhBI", stream[i:i + 9])
        if (version & 0x7F) not in (3, 4, 5) or n > len(stream):
            return
        yield version & 0x7F, flags, op, stream[i + 9:i + 9 + n]
        i += 9 + n


def put(target, data):
    d = out / target
    d.mkdir(parents=True, exist_ok=True)
    (d / ("seed-" + hashlib.sha1(data).hexdigest()[:16])).write_bytes(data)


def main():
    recs = sorted(root.glob("proto-fixtures/*/*.rec"))
    shared = root.parent / "shared" / "reference-traces"
    if shared.exists():
        recs += sorted(shared.glob("**/*.rec"))
    for rec in recs:
        lz4 = "lz4" in str(rec.parent.name)
        v5 = "v5" in str(rec.parent.name)
        for side in "CS":
            stream = b"".join(chunk for d, chunk in records(rec) if d == side)
            if not stream:
                continue
            mode = 8 | (1 if lz4 else 0)
            put("frame_codec", bytes([mode, 64]) + stream[:65536])
            if v5 or lz4:
                continue
            for version, flags, op, body in frames(stream):
                if flags & 1:
                    continue
                v = version - 3
                if side == "S":
                    put("response_bodies", bytes([v]) + body)
                    continue
                kind = {1: 0, 11: 0, 15: 1, 7: 2, 9: 3, 10: 4, 13: 5}.get(op)
                if kind is None:
                    continue
                put("request_bodies", bytes([v + 3 * kind]) + body)
                if op in (7, 9) and len(body) >= 4:
                    (n,) = struct.unpack(">i", body[:4])
                    text = body[4:4 + n]
                    put("lexer", text)
                    put("classify", text)
                    put("node", bytes([v]) + text)
                if op in (7, 10, 13):
                    put("node", bytes([v + 3 * {7: 1, 10: 2, 13: 3}[op]]) + body)
    for cfg in sorted(root.glob("config/*.toml")):
        put("config", cfg.read_bytes())
    # Every kept finding seeds its target's corpus too.
    for kept in sorted((root / "fuzz" / "regressions").glob("*/*")):
        put(kept.parent.name, kept.read_bytes())
    for t in ["segment"]:
        put(t, bytes([2]) + b"\x04\x00\x00\x01\x00\x00\x00\x00")
        put(t, bytes([3 | 4 | 8]) + b"\x04\x00\x00\x01\x00\x00\x00\x00" * 4)
    for d in sorted(out.iterdir()):
        print(f"{d.name}: {len(list(d.iterdir()))} seeds")


main()
