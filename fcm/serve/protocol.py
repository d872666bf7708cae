"""Connections that cannot starve the server: uvicorn's HTTP/1.1 protocol with a header deadline and a connection cap
that evicts idle connections instead of refusing requests.

uvicorn (0.30) has no header-read timeout — a client that connects and sends nothing, or one header byte every few
seconds, holds its connection for ever — and its ``limit_concurrency`` counts *connections*: the audit's 63 idle
sockets made every request, ``/healthz`` included, answer 503. Here:

* every connection must deliver a complete request head within ``header_timeout_s`` of connecting (or of its
  previous response, plus uvicorn's keep-alive wait); otherwise it is closed;
* a connection whose client stops reading its answers (the transport's write buffer full: pipelined requests
  whose responses are never read) is aborted when writing has stayed paused for ``header_timeout_s``;
* at most ``max_connections`` connections are held; a new one beyond that closes the longest-held connection that
  has no request in progress or whose writing is paused (an idle, slow-header or non-reading one), so an
  attacker's sockets make room for real clients; only when every held connection is working is the newcomer itself
  closed;
* every such closing is reported to ``on_refusal(reason)`` (the server counts them in ``/metrics``).

Work is limited elsewhere, per request (the app's decode slots and body budget), never per connection.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["guarded_protocol"]


def guarded_protocol(
    header_timeout_s: float, max_connections: int, on_refusal: Callable[[str], None]
) -> type[asyncio.Protocol]:
    """An :class:`H11Protocol` subclass with these limits (uvicorn's ``http=`` option takes the class)."""
    held: OrderedDict[int, GuardedH11Protocol] = OrderedDict()  # every live connection, oldest first

    class GuardedH11Protocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None
        _write_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            held[id(self)] = self
            self._arm(header_timeout_s)
            if len(held) > max_connections:
                victim = next((c for c in held.values() if c is not self and c._evictable()), self)
                on_refusal("evicted_idle" if victim is not self else "connections_full")
                victim._close()

        def connection_lost(self, exc: Exception | None) -> None:
            held.pop(id(self), None)
            self._disarm()
            self._cancel_write_timer()
            super().connection_lost(exc)

        def pause_writing(self) -> None:
            super().pause_writing()
            if self._write_timer is None:
                self._write_timer = self.loop.call_later(header_timeout_s, self._write_deadline)

        def resume_writing(self) -> None:
            super().resume_writing()
            self._cancel_write_timer()

        def handle_events(self) -> None:
            super().handle_events()
            if self._working():  # a whole request head arrived: the app's own timeouts take over
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():  # the next request's head: keep-alive wait plus the deadline
                self._arm(self.timeout_keep_alive + header_timeout_s)

        def _working(self) -> bool:
            cycle: Any = self.cycle
            return cycle is not None and not cycle.response_complete

        def _evictable(self) -> bool:
            return not self._working() or self._write_timer is not None

        def _cancel_write_timer(self) -> None:
            if self._write_timer is not None:
                self._write_timer.cancel()
                self._write_timer = None

        def _write_deadline(self) -> None:
            self._write_timer = None
            if self.flow.write_paused and not self.transport.is_closing():
                on_refusal("write_timeout")
                held.pop(id(self), None)
                self.transport.abort()  # close() would wait for the buffer the client never reads

        def _arm(self, seconds: float) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(seconds, self._deadline)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _deadline(self) -> None:
            self._header_timer = None
            if not self._working() and not self.transport.is_closing():
                on_refusal("header_timeout")
                self._close()

        def _close(self) -> None:
            self._disarm()
            held.pop(id(self), None)
            if self._write_timer is not None:  # its buffer would never drain
                self._cancel_write_timer()
                self.transport.abort()
            else:
                self.transport.close()

    return GuardedH11Protocol
