"""A user-space delay proxy: TCP relays that add a fixed one-way delay in each direction.

The kernel here has no ``netem``, so network distance is made in user space.  Each PETALS
server listens on a private loopback port and announces the proxy's port instead
(``--announce_maddrs``): every peer (the testbed's client, PETALS' own routing, the other
servers' DHT) reaches it through the relay, so the round trip it sees is the real one.

One process serves every relay: ``python -m serving.petals.delay_proxy LISTEN:TARGET:DELAY_MS ...``
(one-way delay; a round trip pays it twice).  Data is forwarded as it arrives, each chunk held
until its own arrival time plus the delay, so the relay delays without throttling.
Standard library only; prints ``ready`` once every port listens; stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import sys
import time


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay_s: float) -> None:
    queue: asyncio.Queue = asyncio.Queue()

    async def pump() -> None:
        while True:
            due, data = await queue.get()
            if data is None:
                break
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()

    sender = asyncio.create_task(pump())
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            queue.put_nowait((time.monotonic() + delay_s, data))
    except (ConnectionError, OSError):
        pass
    finally:
        queue.put_nowait((0.0, None))
        try:
            await sender
        except (ConnectionError, OSError):
            pass
        try:
            if writer.can_write_eof():
                writer.write_eof()
        except (ConnectionError, OSError):
            pass


def relay_handler(target_port: int, delay_s: float):
    async def handle(client_reader, client_writer) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            client_writer.close()
            return
        for w in (client_writer, server_writer):
            sock = w.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            await asyncio.gather(_pipe(client_reader, server_writer, delay_s),
                                 _pipe(server_reader, client_writer, delay_s))
        except asyncio.CancelledError:      # the relay is stopping
            pass
        finally:
            for w in (client_writer, server_writer):
                try:
                    w.close()
                except (ConnectionError, OSError):
                    pass
    return handle


def parse_relay(text: str) -> tuple[int, int, float]:
    try:
        listen, target, delay_ms = text.split(":")
        out = int(listen), int(target), float(delay_ms)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected LISTEN_PORT:TARGET_PORT:ONE_WAY_DELAY_MS") from None
    if out[2] < 0 or out[2] > 10_000:
        raise argparse.ArgumentTypeError(f"{text!r}: the delay must be 0..10000 ms")
    return out


async def serve(relays: list[tuple[int, int, float]]) -> None:
    servers = [await asyncio.start_server(relay_handler(target, delay / 1e3), "127.0.0.1", listen)
               for listen, target, delay in relays]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    await stop.wait()
    for s in servers:
        s.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m serving.petals.delay_proxy", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("relays", nargs="+", type=parse_relay, metavar="LISTEN:TARGET:DELAY_MS")
    args = p.parse_args(argv)
    asyncio.run(serve(args.relays))
    return 0


MULTISTREAM = b"/multistream/1.0.0\n"
PROPOSAL = b"/noise\n"


def _lp(msg: bytes) -> bytes:
    return bytes([len(msg)]) + msg        # multistream's varint length prefix (messages < 128 bytes)


def libp2p_rtt(port: int, samples: int = 3, settle_s: float = 0.25, timeout_s: float = 10.0) -> float:
    """Median round trip to a libp2p listener through ``port`` (a relay or the server itself), seconds.

    Each sample opens a TCP connection, lets the listener's own multistream header (if it sends
    one first) arrive, then times sending our header with a security-protocol proposal until the
    listener's answer to it comes back: one request-response through the whole path.
    """
    times = []
    for _ in range(samples):
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.settimeout(settle_s)
            early = b""
            try:
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    early += chunk
            except socket.timeout:
                pass
            s.settimeout(timeout_s)
            need = 1 if early.count(b"\n") >= 1 else 2      # the answer, plus the header if not seen yet
            t = time.perf_counter()
            s.sendall(_lp(MULTISTREAM) + _lp(PROPOSAL))
            got = b""
            while got.count(b"\n") < need:
                chunk = s.recv(4096)
                if not chunk:
                    raise ConnectionError(f"port {port}: the listener closed before answering")
                got += chunk
            times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2]


if __name__ == "__main__":
    sys.exit(main())
