"""Fail-over of requests in flight: when a hop of the granted chain fails, report it, take a new lease
and resume there with what the failed attempt had already produced.

    from serving.dispatch import DispatchClient
    from serving.dispatch.failover import HopFailed, run

    progress = []                                   # yours: whatever a resumed attempt needs
    def attempt(a):                                 # a.lease: the chain granted to this attempt
        for token in my_runtime.generate(prompt + progress, a.lease.servers):
            progress.append(token)                  # kept across attempts
        return progress
    # inside my_runtime: raise HopFailed("connection reset", server=hop.server) when a hop fails
    answer = run(client, attempt, state=progress)

Each attempt runs on one lease (renewed in the background, as ``client.acquire()`` does).  A **hop
failure** is a ``HopFailed`` raised by the attempt (``server`` names the hop; None or a server not on
the chain: the chain's first hop is reported), a ``ServerDown`` raised by it, or the lease's renewal
ending with ``ServerDown`` (the dispatcher took the lease back: a server of the chain is ``down``).
On one, the lease is released with ``failed={"server", "error"}`` (the store masks that server's chains
in the same step, so the next grant is a surviving chain: JFFC's fastest unmasked one), a new lease is
taken and the attempt function runs again with the same ``state``.  Anything else the attempt raises
releases the lease (no report) and propagates unchanged.

Bounded: at most ``max_attempts`` leases per request, and no new lease later than ``max_failover_s``
after the first failure (the re-acquire waits at most that long, or ``wait_s`` if shorter).  When they
run out, or no chain is granted in time, one ``FailoverExhausted`` (a ``DispatchError``, 503, with
``retry_after_s`` and the ``failures``) says what failed where.  The first acquire's own refusals
(``NoFreeChain``, ``NoAdoptedPlan``, ...) propagate as they are: nothing failed yet.

``run`` (blocking; an attempt that runs long calls ``attempt.check()`` between steps to notice a
``ServerDown`` renewal), ``arun`` (asyncio; the attempt is cancelled when the renewal ends with
``ServerDown``) and ``astream`` (asyncio, for attempts that yield: one uninterrupted iterator over every
attempt's items; the attempt's iterator is closed before its lease is released).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable, Sequence

from .protocol import DispatchError, Lease, ServerDown

__all__ = ["HopFailed", "Failure", "FailoverExhausted", "Attempt", "run", "arun", "astream",
           "MAX_ATTEMPTS", "MAX_FAILOVER_S"]

log = logging.getLogger("serving.dispatch.failover")

MAX_ATTEMPTS = 3          # leases per request: the first and two fail-overs
MAX_FAILOVER_S = 30.0     # from the first failure, the longest a request waits for a new lease
RETRY_AFTER_S = 1.0       # what FailoverExhausted tells the caller: a masked server is probed again after 1 s
_QUEUE = 64               # items an attempt may run ahead of astream's consumer


class HopFailed(RuntimeError):
    """A hop of the granted chain failed (connection refused or reset, a step past its deadline...).

    ``server`` names the hop's server (None: not known which hop; the chain's first is reported)."""

    def __init__(self, message: str = "", *, server: str | None = None):
        super().__init__(message)
        self.server = server


@dataclass(frozen=True)
class Failure:
    """One failed attempt: on ``chain`` (lease ``lease``), ``server`` failed with ``error``; the
    dispatcher then held the server in ``server_state`` (None: the report could not be delivered)."""

    attempt: int
    lease: str
    chain: int
    server: str
    error: str
    at_s: float                     # seconds since the request started
    server_state: str | None = None

    def describe(self) -> str:
        return f"chain {self.chain}: server {self.server}: {self.error}"


class FailoverExhausted(DispatchError):
    """No chain could finish the request within the fail-over bounds (503, Retry-After)."""

    status = 503

    def __init__(self, detail: str, *, failures: Sequence[Failure], retry_after_s: float = RETRY_AFTER_S):
        super().__init__(detail, headers=[(b"retry-after", f"{retry_after_s:g}".encode())])
        self.failures = list(failures)
        self.retry_after_s = retry_after_s


@dataclass
class Attempt:
    """What the attempt function gets: the lease of this attempt, its number (1, 2, ...), the failures
    before it, and the caller's ``state`` (the same object every attempt)."""

    lease: Lease
    number: int
    state: Any
    failures: tuple[Failure, ...]
    _held: Any = field(repr=False, default=None)

    @property
    def resumed(self) -> bool:
        return self.number > 1

    def check(self) -> None:
        """Raise ``ServerDown`` if the dispatcher has taken this lease back (a server of its chain is down)."""
        lost = getattr(self._held, "lost", None)
        if isinstance(lost, ServerDown):
            raise lost


class _Bounds:
    """The bookkeeping every variant shares: what counts as a hop failure, the report, the bounds."""

    def __init__(self, wait_s: float, max_attempts: int, max_failover_s: float,
                 on_failover: Callable[[Failure], Any] | None, can_resume: Callable[[Any, Failure], bool] | None,
                 state: Any):
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        self.wait_s, self.max_attempts, self.max_failover_s = float(wait_s), int(max_attempts), float(max_failover_s)
        self.on_failover, self.can_resume, self.state = on_failover, can_resume, state
        self.failures: list[Failure] = []
        self.last: BaseException | None = None      # the last hop failure: the cause of FailoverExhausted
        self.t0 = time.monotonic()
        self.first_failure: float | None = None
        self.number = 0

    def next_wait(self) -> float:
        """The next acquire's wait (raises FailoverExhausted when no attempt is left)."""
        self.number += 1
        if not self.failures:
            return self.wait_s
        if self.number > self.max_attempts:
            raise self.exhausted(f"no attempt left ({self.max_attempts} at most)")
        left = self.max_failover_s - (time.monotonic() - self.first_failure)
        if left <= 0:
            raise self.exhausted(f"no new lease within {self.max_failover_s:g} s of the first failure")
        return min(self.wait_s, left)

    def attempt(self, lease: Lease, held: Any) -> Attempt:
        return Attempt(lease, self.number, self.state, tuple(self.failures), held)

    def refuse(self, exc: BaseException) -> None:
        """The acquire failed: the first one's refusal goes on as it is (the caller re-raises it), a
        fail-over's becomes FailoverExhausted."""
        if self.failures and isinstance(exc, Exception):
            detail = exc.detail if isinstance(exc, DispatchError) else (str(exc) or type(exc).__name__)
            raise self.exhausted(f"then no chain was granted: {detail}") from exc

    @staticmethod
    def hop(exc: BaseException, lease: Lease, lost: BaseException | None) -> tuple[str, str] | None:
        """(server, error) when ``exc`` ended the attempt because a hop failed, else None."""
        if not isinstance(exc, Exception):            # cancelled, closed, interrupted: not the chain's doing
            return None
        if isinstance(exc, (HopFailed, ServerDown)):
            server, error = exc.server, (exc.detail if isinstance(exc, ServerDown) else str(exc))
        elif isinstance(lost, ServerDown):            # the dispatcher took the lease back; what failed came of it
            server, error = lost.server, lost.detail
        else:
            return None
        hops = [h.server for h in lease.servers]
        if server not in hops:
            server = hops[0]
        return server, (error or type(exc).__name__)[:1000]

    def record(self, lease: Lease, server: str, error: str) -> None:
        lease.fail(server, error)          # the release on exit carries it
        if self.first_failure is None:
            self.first_failure = time.monotonic()

    def reported(self, lease: Lease, server: str, error: str, released: Any, exc: BaseException) -> None:
        """After the release: note the failure, tell on_failover, and stop if nothing may resume."""
        state = released.get("server_state") if isinstance(released, dict) else None
        failure = Failure(self.number, lease.lease, lease.chain, server, error, time.monotonic() - self.t0, state)
        self.failures.append(failure)
        self.last = exc
        log.warning("hop failed: attempt %d, %s (server now %s)", failure.attempt, failure.describe(), state)
        if self.on_failover is not None:
            self.on_failover(failure)
        if self.can_resume is not None and not self.can_resume(self.state, failure):
            raise exc

    def exhausted(self, why: str) -> FailoverExhausted:
        tried = "; ".join(f.describe() for f in self.failures)
        n = len(self.failures)
        err = FailoverExhausted(f"no chain could finish the request: {n} hop failure{'s' if n != 1 else ''} "
                                f"({tried}), {why}", failures=self.failures)
        err.__cause__ = self.last
        return err


def _release(held: Any, lease: Lease) -> Any:
    try:
        held.__exit__(None, None, None)
    except Exception:  # noqa: BLE001 - the lease expires by itself within its TTL
        log.warning("could not release lease %s; it expires with its TTL", lease.lease, exc_info=True)
    return held.released


async def _arelease(held: Any, lease: Lease) -> Any:
    try:
        await held.__aexit__(None, None, None)
    except Exception:  # noqa: BLE001
        log.warning("could not release lease %s; it expires with its TTL", lease.lease, exc_info=True)
    return held.released


def _failed(b: _Bounds, exc: BaseException, lease: Lease, held: Any) -> bool:
    """An attempt raised ``exc``: release its lease, reporting the hop that failed when there is one.
    True when the caller fails over, False when ``exc`` must propagate."""
    hop = b.hop(exc, lease, held.lost)
    if hop is None:
        _release(held, lease)
        return False
    b.record(lease, *hop)
    b.reported(lease, *hop, _release(held, lease), exc)
    return True


async def _afailed(b: _Bounds, exc: BaseException, lease: Lease, held: Any) -> bool:
    """``_failed`` for asyncio clients."""
    hop = b.hop(exc, lease, held.lost)
    if hop is None:
        await _arelease(held, lease)
        return False
    b.record(lease, *hop)
    b.reported(lease, *hop, await _arelease(held, lease), exc)
    return True


async def _aenter(b: _Bounds, held: Any) -> Lease:
    try:
        return await held.__aenter__()
    except BaseException as exc:
        b.refuse(exc)
        raise


def run(client: Any, fn: Callable[[Attempt], Any], *, state: Any = None, wait_s: float = 30.0,
        policy: str | None = None, max_attempts: int = MAX_ATTEMPTS, max_failover_s: float = MAX_FAILOVER_S,
        on_failover: Callable[[Failure], Any] | None = None,
        can_resume: Callable[[Any, Failure], bool] | None = None) -> Any:
    """``fn(attempt)`` on a leased chain, failing over on hop failures (a blocking client: ``DispatchClient``,
    ``RedisDispatchClient``).  ``can_resume(state, failure)`` False: no new attempt, the hop failure
    propagates (after its report).  Returns what ``fn`` returned."""
    b = _Bounds(wait_s, max_attempts, max_failover_s, on_failover, can_resume, state)
    while True:
        held = client.acquire(wait_s=b.next_wait(), policy=policy)
        try:
            lease = held.__enter__()
        except BaseException as exc:
            b.refuse(exc)
            raise
        try:
            result = fn(b.attempt(lease, held))
        except BaseException as exc:
            if not _failed(b, exc, lease, held):
                raise
            continue
        _release(held, lease)
        return result


async def arun(client: Any, fn: Callable[[Attempt], Awaitable[Any]], *, state: Any = None, wait_s: float = 30.0,
               policy: str | None = None, max_attempts: int = MAX_ATTEMPTS, max_failover_s: float = MAX_FAILOVER_S,
               on_failover: Callable[[Failure], Any] | None = None,
               can_resume: Callable[[Any, Failure], bool] | None = None) -> Any:
    """``run`` for asyncio clients (``AsyncDispatchClient``, ``AsyncRedisDispatchClient``, ``StoreClient``):
    ``await fn(attempt)``, cancelled at once if the lease's renewal ends with ``ServerDown``."""
    b = _Bounds(wait_s, max_attempts, max_failover_s, on_failover, can_resume, state)
    while True:
        held = client.acquire(wait_s=b.next_wait(), policy=policy)
        lease = await _aenter(b, held)
        work = asyncio.ensure_future(fn(b.attempt(lease, held)))
        ended = asyncio.ensure_future(held.ended.wait())
        try:
            try:
                await asyncio.wait({work, ended}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                ended.cancel()
                if not work.done():
                    work.cancel()
                    await asyncio.gather(work, return_exceptions=True)
            result = work.result() if not work.cancelled() else _raise_lost(held)
        except BaseException as exc:
            if not await _afailed(b, exc, lease, held):
                raise
            continue
        await _arelease(held, lease)
        return result


def _raise_lost(held: Any) -> Any:
    if isinstance(held.lost, ServerDown):
        raise held.lost
    raise asyncio.CancelledError()


async def astream(client: Any, fn: Callable[[Attempt], AsyncIterator[Any]], *, state: Any = None,
                  wait_s: float = 30.0, policy: str | None = None, max_attempts: int = MAX_ATTEMPTS,
                  max_failover_s: float = MAX_FAILOVER_S, on_failover: Callable[[Failure], Any] | None = None,
                  can_resume: Callable[[Any, Failure], bool] | None = None) -> AsyncIterator[Any]:
    """Every item of ``fn(attempt)`` (an async iterator per attempt), failing over on hop failures: the
    consumer sees one iterator.  ``state`` is where the attempt notes what it produced, so that the next
    one resumes after it (the items already yielded are the consumer's; nothing is replayed here).

    The attempt's iterator runs in a task of its own, at most a few items ahead of the consumer, so that
    a renewal ending with ``ServerDown`` can stop it even while it waits.  Closing this iterator (or
    cancelling its consumer) closes the attempt's iterator first, then releases the lease."""
    b = _Bounds(wait_s, max_attempts, max_failover_s, on_failover, can_resume, state)
    while True:
        held = client.acquire(wait_s=b.next_wait(), policy=policy)
        lease = await _aenter(b, held)
        items = _Feed(fn(b.attempt(lease, held)), held)
        try:
            while True:
                item = await items.next()
                if item is _END:
                    break
                yield item
        except BaseException as exc:
            await items.stop()
            if not await _afailed(b, exc, lease, held):
                raise
            continue
        await items.stop()
        await _arelease(held, lease)
        return


_END = object()


class _Feed:
    """An attempt's iterator pumped by a task into a small queue.  A watcher waits for the lease's
    renewal to end: it stops the pump (which may be stuck on a hung hop) and queues the ``ServerDown``,
    so no task is made per item."""

    def __init__(self, source: AsyncIterator[Any], held: Any):
        self.source = source
        self.held = held
        self.queue: asyncio.Queue = asyncio.Queue(_QUEUE)
        self.task = asyncio.ensure_future(self._pump())
        self.watch = asyncio.ensure_future(self._watch())

    async def _pump(self) -> None:
        try:
            async for item in self.source:
                await self.queue.put((True, item))
        except Exception as exc:  # noqa: BLE001 - handed to the consumer, which decides
            await self.queue.put((False, exc))
            return
        await self.queue.put((True, _END))

    async def _watch(self) -> None:
        await self.held.ended.wait()
        self.task.cancel()
        lost = self.held.lost if isinstance(self.held.lost, ServerDown) else asyncio.CancelledError()
        try:
            self.queue.put_nowait((False, lost))
        except asyncio.QueueFull:       # the consumer is behind: it checks ``lost`` after each item
            pass

    async def next(self) -> Any:
        ok, value = await self.queue.get()
        if not ok:
            raise value
        if isinstance(self.held.lost, ServerDown):
            raise self.held.lost
        return value

    async def stop(self) -> None:
        """Stop the attempt's iterator (its ``finally`` runs: sessions closed) before the lease goes back."""
        self.watch.cancel()
        if not self.task.done():
            self.task.cancel()
        await asyncio.gather(self.task, self.watch, return_exceptions=True)
        close = getattr(self.source, "aclose", None)
        if close is not None:
            try:
                await close()
            except Exception:  # noqa: BLE001 - already failed; its own error was handled
                pass
