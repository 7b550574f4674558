#!/usr/bin/env python3
"""A loopback TCP relay that records every byte each way, one file per connection.

    relay.py LISTEN_PORT UPSTREAM_HOST UPSTREAM_PORT OUTDIR

File format (`conn-NNN.rec`), a sequence of records:
    direction  1 byte   b'C' client->server, b'S' server->client
    time       f64 BE   unix seconds
    length     u32 BE
    bytes      `length` bytes as read from the socket
This is the format of the reference traces in ../shared/reference-traces, so
the same tools read both.
"""
import asyncio
import os
import struct
import sys
import time


async def pump(reader, writer, out, tag, lock):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            async with lock:
                out.write(tag + struct.pack(">dI", time.time(), len(data)) + data)
                out.flush()
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass


async def main():
    listen, host, port, outdir = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
    os.makedirs(outdir, exist_ok=True)
    counter = 0

    async def handle(client_reader, client_writer):
        nonlocal counter
        counter += 1
        path = os.path.join(outdir, f"conn-{counter:03d}.rec")
        server_reader, server_writer = await asyncio.open_connection(host, port)
        lock = asyncio.Lock()
        with open(path, "wb") as out:
            await asyncio.gather(
                pump(client_reader, server_writer, out, b"C", lock),
                pump(server_reader, client_writer, out, b"S", lock),
            )

    server = await asyncio.start_server(handle, "127.0.0.1", listen)
    print(f"relay listening on 127.0.0.1:{listen}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
