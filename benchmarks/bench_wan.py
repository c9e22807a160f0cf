"""A batch send over an emulated WAN (40 ms RTT, 200 Mbit/s): concurrent part uploads beside sequential ones.

Run as root: ``python benchmarks/bench_wan.py [--invoices 10000] [--part-size 1000000] [--concurrency 8]``.
Needs ``ip`` and ``tc`` (iproute2). The benchmark builds its own network and removes it on any exit (normal end,
exception, SIGINT/SIGTERM):

* a network namespace ``ksefwan<pid>`` and a veth pair between it and the host, with private addresses of its own
  (``10.213.<n>.1/30`` on the host side, ``10.213.<n>.2/30`` inside; ``n`` is derived from the process id and
  skipped if an address of that /24 is in use);
* the link's bandwidth: ``tc qdisc ... netem delay 20ms rate 200mbit`` on both veth ends when the kernel has
  ``sch_netem``; without it (this machine's kernel has neither netem nor fq), ``tbf rate 200mbit`` shapes each
  direction in the kernel and the 40 ms RTT comes from a delay line in user space: a relay inside the namespace
  (``--relay``) that holds every chunk 20 ms in each direction before passing it on and reopens a 4 MB window per
  direction and connection only 20 ms after that (the ACK's way back), as a TCP path of 40 ms RTT would. What
  that leaves out: the TCP handshake and slow start see the veth's sub-millisecond RTT, so the
  figures are, if anything, kind to sequential uploads (a real WAN makes each new window ramp up over RTTs);
* the simulator (``ksef-async simulator``) inside the namespace (``ip netns exec``), reached through the relay at
  ``10.213.<n>.2:8090`` (``--public-url`` makes its upload URLs point there too); a fresh one per run so that no run
  sees another's invoices as duplicates.

The client runs on the host and reaches the simulator over the link. The simulator serves plain HTTP, which the
client accepts for a non-loopback host only when asked explicitly: ``ClientConfig(allow_insecure_http=True)``
(`ksef_async.core.baseurl.check_base_url`).

Columns: ``concurrent`` (``--concurrency`` part uploads at once) and ``sequential`` (one part at a time), on the same
files. Rows, wall seconds:

* ``validate``: XSD validation, measured locally before the send: prepare with validation minus prepare without;
* ``pack+encrypt``: prepare without validation (read, pack sessions, zip, split, encrypt, hash, spool), locally;
* then the send itself (validation on): ``prepare`` (everything above, in one pass), ``open``, ``upload`` (the
  engine's upload stage: spool checks, the part uploads, and the plan written after each part), ``on the link``
  (the first part's first byte read for sending to the last part acknowledged), ``close``, ``status`` (close to
  final status, per-invoice results, UPO);
* ``link use``: ciphertext bytes uploaded x 8 / ``on the link`` seconds / 200 Mbit/s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from _machine import describe
from cryptography.hazmat.primitives.asymmetric import rsa

from ksef_async.auth import KsefTokenCredentials
from ksef_async.batch import prepare_batch_sync
from ksef_async.batch.engine import BatchSender, SendConfig
from ksef_async.batch.events import BatchEvent, PartProgress, PartUploaded
from ksef_async.client import ClientConfig, KsefClient
from ksef_async.core.polling import Backoff
from ksef_async.testing.invoices import write_invoices

NIP = "5265877635"
TOKEN = "20250101-EC-0000000000-0000000000-00|nip-5265877635|" + "0" * 64
RATE_MBIT = 200
ONE_WAY_DELAY_MS = 20


def _ip(*args: str, netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = ["ip", "netns", "exec", netns, *args] if netns else list(args)
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


def _free_subnet() -> int:
    used = _ip("ip", "-4", "-o", "addr", "show").stdout
    start = os.getpid() % 250
    for k in range(250):
        n = (start + k) % 250 + 1
        if f"10.213.{n}." not in used:
            return n
    msg = "no free 10.213.n.0/30 subnet"
    raise RuntimeError(msg)


@contextlib.contextmanager
def emulated_wan() -> Iterator[tuple[str, str, bool]]:
    """Create the namespace, the veth pair and the qdiscs; yield (namespace, address inside, netem?); remove all."""
    pid = os.getpid()
    ns, host_if, ns_if = f"ksefwan{pid}", f"kwh{pid % 100000}", f"kwn{pid % 100000}"
    n = _free_subnet()
    host_ip, ns_ip = f"10.213.{n}.1", f"10.213.{n}.2"
    netem = ["netem", "delay", f"{ONE_WAY_DELAY_MS}ms", "rate", f"{RATE_MBIT}mbit", "limit", "100000"]
    tbf = ["tbf", "rate", f"{RATE_MBIT}mbit", "burst", "256kb", "latency", "100ms"]
    try:
        _ip("ip", "netns", "add", ns)
        _ip("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        _ip("ip", "link", "set", ns_if, "netns", ns)
        _ip("ip", "addr", "add", f"{host_ip}/30", "dev", host_if)
        _ip("ip", "link", "set", host_if, "up")
        _ip("ip", "addr", "add", f"{ns_ip}/30", "dev", ns_if, netns=ns)
        _ip("ip", "link", "set", ns_if, "up", netns=ns)
        _ip("ip", "link", "set", "lo", "up", netns=ns)
        kernel_delay = _ip("tc", "qdisc", "add", "dev", host_if, "root", *netem, check=False).returncode == 0
        if kernel_delay:
            _ip("tc", "qdisc", "add", "dev", ns_if, "root", *netem, netns=ns)
        else:
            _ip("tc", "qdisc", "add", "dev", host_if, "root", *tbf)
            _ip("tc", "qdisc", "add", "dev", ns_if, "root", *tbf, netns=ns)
        how = "netem delay + rate" if kernel_delay else "tbf rate (kernel) + delay line relay (user space)"
        print(f"link: {host_ip} <-> {ns_ip} in netns {ns}; {how}: {ONE_WAY_DELAY_MS} ms each way, "
              f"{RATE_MBIT} Mbit/s")  # fmt: skip
        yield ns, ns_ip, kernel_delay
    finally:
        _ip("ip", "netns", "del", ns, check=False)  # takes the veth pair and its qdiscs with it
        _ip("ip", "link", "del", host_if, check=False)  # if the namespace was never made


@contextlib.contextmanager
def simulator_in(ns: str, address: str, kernel_delay: bool) -> Iterator[str]:
    """Run ``ksef-async simulator`` inside ``ns`` (behind the delay relay without netem); yield its base URL."""
    code = "from ksef_async.cli import main; main()"
    if kernel_delay:
        args = ["--host", address, "--port", "8090"]
    else:
        args = ["--host", "127.0.0.1", "--port", "8091", "--public-url", f"http://{address}:8090"]
    args = ["simulator", *args, "--nip", NIP, "--token", TOKEN, "--seed", "1", "--rate-limits", "off"]
    procs: list[subprocess.Popen[str]] = []
    if not kernel_delay:
        relay = [sys.executable, __file__, "--relay", f"{address}:8090", "--relay-to", "127.0.0.1:8091"]
        procs.append(
            subprocess.Popen(
                ["ip", "netns", "exec", ns, *relay], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True
            )
        )
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    procs.append(proc)
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        if not base_url.startswith("http"):
            msg = f"the simulator did not start: {base_url!r}"
            raise RuntimeError(msg)
        yield base_url
    finally:
        for each in procs:
            each.terminate()
            try:
                each.wait(timeout=30)
            except subprocess.TimeoutExpired:
                each.kill()
                each.wait()


def prepare_seconds(inputs: Path, work: Path, *, validate: bool) -> float:
    """Wall seconds of a local prepare of ``inputs`` (the spool is deleted afterwards)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    state = Path(tempfile.mkdtemp(prefix="prep-", dir=work))
    try:
        started = time.perf_counter()
        prepare_batch_sync(str(inputs), public_key=key, state_dir=state / "s", validate=validate)
        return time.perf_counter() - started
    finally:
        shutil.rmtree(state)


async def send_once(base_url: str, inputs: Path, state: Path, config: SendConfig) -> dict[str, float]:
    """One batch send over the link; return the stage timings and the uploaded bytes."""
    uploaded: list[PartUploaded] = []
    first_byte: list[float] = []
    last_ack: list[float] = []

    def on_event(event: BatchEvent) -> None:
        if isinstance(event, PartProgress) and not first_byte:
            first_byte.append(time.perf_counter())
        if isinstance(event, PartUploaded):
            uploaded.append(event)
            last_ack[:] = [time.perf_counter()]

    client = KsefClient(
        base_url,
        credentials=KsefTokenCredentials(TOKEN),
        context=NIP,
        config=ClientConfig(storage_connections=config.concurrency, allow_insecure_http=True),
    )
    async with client:
        await client.login()
        begun = time.perf_counter()
        sender = BatchSender(client, state, config, on_event=on_event)
        report = await sender.send(str(inputs))
        total = time.perf_counter() - begun
    if not report.all_accepted:
        msg = f"not every invoice was accepted: {report.to_json()['summary']}"
        raise RuntimeError(msg)
    t = dict(report.timings)
    t["status"] = sum(t.get(k, 0.0) for k in ("process", "results", "upo"))
    t["total"] = total
    t["on the link"] = last_ack[0] - first_byte[0]
    t["bytes"] = float(sum(e.size for e in uploaded))
    t["parts"] = float(len(uploaded))
    t["sessions"] = float(len(report.sessions))
    return t


_WINDOW = 4 << 20
"""Bytes in flight per direction and connection: Linux's default largest TCP window is 4-6 MB, so one connection
could fill this link's 1 MB bandwidth-delay product; the relay must not be the limit of a sequential upload."""


async def _delay_line(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy ``reader`` to ``writer`` as a TCP path of 40 ms RTT would: data arrives 20 ms after it was sent, and
    the sender's window (`_WINDOW` bytes) reopens 20 ms later still (the ACK's way back)."""
    loop = asyncio.get_running_loop()
    delay = ONE_WAY_DELAY_MS / 1000
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
    in_flight = 0
    window_open = asyncio.Event()
    window_open.set()

    def acked(size: int) -> None:
        nonlocal in_flight
        in_flight -= size
        if in_flight < _WINDOW:
            window_open.set()

    async def pump_in() -> None:
        nonlocal in_flight
        while True:
            await window_open.wait()
            data = await reader.read(min(262144, _WINDOW - in_flight))
            in_flight += len(data)
            if in_flight >= _WINDOW:
                window_open.clear()
            await queue.put((loop.time() + delay, data))
            if not data:
                return

    async def pump_out() -> None:
        while True:
            due, data = await queue.get()
            await asyncio.sleep(max(0.0, due - loop.time()))
            if not data:
                with contextlib.suppress(OSError):
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()
            loop.call_later(delay, acked, len(data))

    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        await asyncio.gather(pump_in(), pump_out())


async def _relay(listen: str, target: str) -> None:
    """Accept on ``listen``; connect each client to ``target`` through two delay lines."""
    host, port = listen.rsplit(":", 1)
    to_host, to_port = target.rsplit(":", 1)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(to_host, int(to_port))
        try:
            await asyncio.gather(_delay_line(reader, up_writer), _delay_line(up_reader, writer))
        finally:
            writer.close()
            up_writer.close()

    server = await asyncio.start_server(handle, host, int(port))
    async with server:
        await server.serve_forever()


def _stop(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks: the simulator and the link go


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoices", type=int, default=10_000)
    parser.add_argument("--part-size", type=int, default=1_000_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--relay", help=argparse.SUPPRESS)
    parser.add_argument("--relay-to", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.relay:
        signal.signal(signal.SIGTERM, _stop)
        with contextlib.suppress(KeyboardInterrupt, SystemExit):
            asyncio.run(_relay(args.relay, args.relay_to))
        return 0
    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("tc"):
        print("bench_wan: needs root, ip and tc", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(f"machine: {describe()}; load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    work = Path(tempfile.mkdtemp(prefix="bench-wan-"))
    status = Backoff(initial=0.2, factor=1.5, maximum=1.0)
    columns = {
        f"concurrent ({args.concurrency})": SendConfig(
            concurrency=args.concurrency, part_size=args.part_size, status_backoff=status
        ),
        "sequential (1)": SendConfig(concurrency=1, part_size=args.part_size, status_backoff=status),
    }
    results: dict[str, dict[str, float]] = {}
    try:
        inputs = work / "in"
        write_invoices(inputs, args.invoices, NIP, seed=None)
        size = sum(p.stat().st_size for p in inputs.iterdir())
        print(f"input: {args.invoices:,} invoices, {size / 1e6:.1f} MB XML; part size {args.part_size:,} B")
        with emulated_wan() as (ns, address, kernel_delay):
            for index, (name, config) in enumerate(columns.items()):
                with_xsd = prepare_seconds(inputs, work, validate=True)
                without = prepare_seconds(inputs, work, validate=False)
                with simulator_in(ns, address, kernel_delay) as base_url:
                    t = asyncio.run(send_once(base_url, inputs, work / f"state-{index}", config))
                t["validate"], t["pack+encrypt"] = max(0.0, with_xsd - without), without
                results[name] = t
                print(f"{name}: done, load average {os.getloadavg()[0]:.2f}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_table(results)
    return 0


def print_table(results: dict[str, dict[str, float]]) -> None:
    """Print the stages side by side, then the link use."""
    names = list(results)
    print("wall seconds per stage (local: validate, pack+encrypt; then the send over the link)")
    print(f"{'stage':<14}" + "".join(f"{n:>18}" for n in names))
    for stage in ("validate", "pack+encrypt", "prepare", "open", "upload", "on the link", "close", "status", "total"):
        print(f"{stage:<14}" + "".join(f"{results[n].get(stage, 0.0):>18.2f}" for n in names))
    print(f"{'sessions':<14}" + "".join(f"{results[n]['sessions']:>18.0f}" for n in names))
    print(f"{'parts':<14}" + "".join(f"{results[n]['parts']:>18.0f}" for n in names))
    print(f"{'MB uploaded':<14}" + "".join(f"{results[n]['bytes'] / 1e6:>18.1f}" for n in names))
    cells = []
    for n in names:
        mbit = results[n]["bytes"] * 8 / 1e6 / results[n]["on the link"] if results[n]["on the link"] else 0.0
        cells.append(f"{mbit:>7.1f} Mb/s {mbit / RATE_MBIT:>5.0%}")
    print(f"{'link use':<14}" + "".join(f"{c:>18}" for c in cells))


if __name__ == "__main__":
    raise SystemExit(main())
