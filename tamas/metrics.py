"""``GET /metrics``: the gateway's numbers in the Prometheus text format.

One :class:`Metrics` per application (tests run several in one process), reachable as
``app[METRICS]``. Other packages report through it:

* the screen-pop hub: :meth:`Metrics.observe_pop` with the seconds from the ringing event's
  time to the pop being sent; its websocket clients are read from ``Hub.stats()`` at scrape
  time (:func:`hub_source`);
* the routing service: :meth:`Metrics.observe_route` for every FastAGI decision;
* anything else: :meth:`Metrics.add_source`, a function returning metric families read at
  scrape time (link states, open calls, bus queues), which costs nothing between scrapes.

The hot path (AMI parsing) is never instrumented: its counters already exist
(``AmiLink.counters``) and are read when Prometheus scrapes. AMI events per second is
``rate(tamas_ami_events_total[1m])``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric

log = logging.getLogger("tamas.metrics")

Source = Callable[[], Iterable[Metric]]

# Seconds; a screen pop should arrive well under a second after the phone rings, a FastAGI
# decision within the 300 ms deadline.
POP_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
ROUTE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _Sources:
    """A prometheus_client collector that asks each source at scrape time."""

    def __init__(self) -> None:
        self.sources: list[Source] = []

    def collect(self) -> Iterable[Metric]:
        for source in list(self.sources):
            try:
                yield from source()
            except Exception:  # a broken source must not break the scrape
                log.exception("metrics source failed")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self.pop_latency = Histogram(
            "tamas_screen_pop_latency_seconds",
            "From the ringing event's time to the screen pop sent to the agent's browser",
            buckets=POP_BUCKETS,
            registry=r,
        )
        self.route_latency = Histogram(
            "tamas_agi_route_seconds",
            "FastAGI routing decisions: from the AGI request to the decision",
            ["route", "fallback"],
            buckets=ROUTE_BUCKETS,
            registry=r,
        )
        self.event_lag = Histogram(
            "tamas_event_lag_seconds",
            "Now minus the event's time when a bus subscriber gets it; source=local: produced"
            " here (bus queueing), cluster: produced by another instance (Redis included)",
            ["source"],
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.bus_events = Counter(
            "tamas_bus_events",
            "Domain events on this instance's bus, by source (local or cluster)",
            ["source"],
            registry=r,
        )
        self._sources = _Sources()
        r.register(self._sources)

    # -- reporting hooks ---------------------------------------------------------------------

    def add_source(self, source: Source) -> None:
        self._sources.sources.append(source)

    def observe_pop(self, seconds: float) -> None:
        self.pop_latency.observe(max(0.0, seconds))

    def observe_route(self, outcome: Any) -> None:
        """A ``cti.routing.service.Outcome``."""
        decision = outcome.decision
        fallback = "true" if decision.fallback else "false"
        self.route_latency.labels(decision.route.route, fallback).observe(
            outcome.duration_ms / 1000
        )

    async def observe_event(self, event: Any) -> None:
        """Bus subscriber (every event): counts events and their lag."""
        source = "local" if getattr(event, "origin", None) is None else "cluster"
        self.bus_events.labels(source).inc()
        inner = getattr(event, "event", event)
        at = getattr(inner, "at", None)
        if isinstance(at, int | float):
            self.event_lag.labels(source).observe(max(0.0, time.time() - at))

    def render(self, accept: str = "") -> tuple[bytes, str]:
        """The exposition in the format the scraper asks for (``Accept``; default the
        classic text format 0.0.4 every Prometheus reads) and its content type."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type


METRICS = web.AppKey("metrics", Metrics)


async def metrics_handler(request: web.Request) -> web.Response:
    body, content_type = request.app[METRICS].render(request.headers.get("Accept", ""))
    return web.Response(body=body, headers={"Content-Type": content_type})


# -- sources: read at scrape time ------------------------------------------------------------

LINK_STATES = ("connecting", "connected", "resyncing", "up", "down", "standby")


def link_source(links: Any) -> Source:
    """AMI events, link state and open calls per PBX (a ``tamas.pbx_links.PbxLinks``)."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    def collect() -> Iterable[Metric]:
        events = CounterMetricFamily(
            "tamas_ami_events", "AMI events received from the PBX by this instance", labels=["pbx"]
        )
        up = GaugeMetricFamily(
            "tamas_pbx_link_up", "1 when this instance's AMI link to the PBX is up", labels=["pbx"]
        )
        state = GaugeMetricFamily(
            "tamas_pbx_link_state",
            "The AMI link's state on this instance (1 for the current one; standby: another"
            " instance holds the link)",
            labels=["pbx", "state"],
        )
        held = GaugeMetricFamily(
            "tamas_pbx_link_held",
            "1 when this instance holds the PBX's AMI link (its lease, in a cluster)",
            labels=["pbx"],
        )
        calls = GaugeMetricFamily(
            "tamas_open_calls",
            "Calls in progress on the PBX, seen by the link holder",
            labels=["pbx"],
        )
        for st in links.status():
            events.add_metric([st.pbx], st.ami_events)
            up.add_metric([st.pbx], 1.0 if st.state == "up" else 0.0)
            for name in LINK_STATES:
                state.add_metric([st.pbx, name], 1.0 if st.state == name else 0.0)
            held.add_metric([st.pbx], 1.0 if st.held_here else 0.0)
            calls.add_metric([st.pbx], st.open_calls)
        return [events, up, state, held, calls]

    return collect


def bus_source(bus: Any) -> Source:
    """Queue depth, drops and handler failures of each bus subscriber."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    def collect() -> Iterable[Metric]:
        queued = GaugeMetricFamily(
            "tamas_bus_queued", "Events waiting for a bus subscriber", labels=["subscriber"]
        )
        dropped = CounterMetricFamily(
            "tamas_bus_dropped",
            "Events a lagging bus subscriber lost (its queue was full)",
            labels=["subscriber"],
        )
        failed = CounterMetricFamily(
            "tamas_bus_failed", "Events a bus subscriber failed to handle", labels=["subscriber"]
        )
        for name, st in bus.stats().items():
            queued.add_metric([name], st["queued"])
            dropped.add_metric([name], st["dropped"])
            failed.add_metric([name], st["failed"])
        return [queued, dropped, failed]

    return collect


def cluster_source(bridge: Any, instance: str) -> Source:
    """The Redis event bridge (a ``tamas.cluster.redis_bus.RedisBridge``)."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    def collect() -> Iterable[Metric]:
        c = bridge.counters
        info = GaugeMetricFamily(
            "tamas_cluster_instance", "This gateway instance's id", labels=["instance"]
        )
        info.add_metric([instance], 1.0)
        connected = GaugeMetricFamily(
            "tamas_cluster_redis_connected", "1 when the last Redis operation of the bus worked"
        )
        connected.add_metric([], 1.0 if bridge.connected else 0.0)
        out: list[Metric] = [info, connected]
        for name, value, text in (
            ("events_published", c.published, "Local events written to the cluster stream"),
            ("events_received", c.received, "Events of other instances republished here"),
            ("events_dropped", c.dropped, "Local events lost while Redis was out of reach"),
            ("decode_errors", c.decode_errors, "Stream entries that could not be decoded"),
            ("redis_errors", c.redis_errors, "Failed Redis operations of the cluster bus"),
        ):
            counter = CounterMetricFamily(f"tamas_cluster_{name}", text)
            counter.add_metric([], value)
            out.append(counter)
        lag = GaugeMetricFamily(
            "tamas_cluster_last_lag_seconds",
            "Event time to republishing here, for the last event from another instance",
        )
        lag.add_metric([], c.last_received_lag or 0.0)
        out.append(lag)
        return out

    return collect


def hub_source(hub: Any) -> Source:
    """Websocket clients of the screen-pop hub (``screenpop.hub.Hub.stats()``)."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    def collect() -> Iterable[Metric]:
        st = hub.stats()
        clients = GaugeMetricFamily(
            "tamas_websocket_clients",
            "Websocket connections open on this instance (agent desktops and wallboards)",
        )
        clients.add_metric([], st.get("clients", 0))
        users = GaugeMetricFamily(
            "tamas_websocket_users", "Users with a websocket session on this instance"
        )
        users.add_metric([], st.get("sessions", 0))
        watchers = GaugeMetricFamily(
            "tamas_websocket_watchers", "Wallboard (supervisor) sessions on this instance"
        )
        watchers.add_metric([], st.get("watchers", 0))
        dropped = CounterMetricFamily(
            "tamas_websocket_dropped_clients",
            "Websocket clients closed because they fell behind (4409)",
        )
        dropped.add_metric([], st.get("dropped_clients", 0))
        families: list[Metric] = [clients, users, watchers, dropped]
        if "user_events_forwarded" in st:  # several instances (screenpop/presence.py)
            forwarded = CounterMetricFamily(
                "tamas_user_events",
                "Events of a user's own (reminders, dialer cards) exchanged with the instance "
                "their socket is on",
                labels=["direction"],
            )
            for direction in ("forwarded", "received", "undeliverable"):
                forwarded.add_metric([direction], st[f"user_events_{direction}"])
            families.append(forwarded)
        return families

    return collect
