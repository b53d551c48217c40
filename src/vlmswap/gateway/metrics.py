"""Prometheus metrics for one gateway app, in its own CollectorRegistry (no global state).

Request counts are observed by the proxy; switch counts and phase durations come from the
manager's published events; queue depth, the resident model and GPU memory are read at
scrape time, so they are never stale.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from vlmswap.registry.profiles import Usage
from vlmswap.swap.manager import Manager
from vlmswap.swap.states import Phase

PHASE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)


class _Live(Collector):
    def __init__(self, manager: Manager):
        self.manager = manager
        self.usage: Usage | None = None

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        m = self.manager
        s = m.scheduler
        q = GaugeMetricFamily("vlmswap_queue_depth", "Requests waiting for their model", labels=["model"])
        f = GaugeMetricFamily("vlmswap_requests_in_flight", "Requests being served", labels=["model"])
        r = GaugeMetricFamily("vlmswap_resident_model", "1 for the model whose backend is ready", labels=["model"])
        st = GaugeMetricFamily("vlmswap_model_state", "1 for the model's current state", labels=["model", "state"])
        resident = m.resident()
        for name in m.registry.models:
            q.add_metric([name], s.queued(name))
            f.add_metric([name], s.in_flight(name))
            r.add_metric([name], 1.0 if name == resident else 0.0)
            st.add_metric([name, m.models[name].state], 1.0)
        yield from (q, f, r, st)
        snap = m.gpu_probe()
        avail = GaugeMetricFamily(
            "vlmswap_gpu_available", "1 when a GPU is visible (NVIDIA through NVML, AMD through AMD SMI)"
        )
        avail.add_metric([], 1.0 if snap.available else 0.0)
        yield avail
        if snap.available:
            tot = GaugeMetricFamily("vlmswap_gpu_memory_total_bytes", "GPU memory, total")
            used = GaugeMetricFamily("vlmswap_gpu_memory_used_bytes", "GPU memory in use (all processes)")
            tot.add_metric([], snap.total_bytes)
            used.add_metric([], snap.used_bytes)
            per = GaugeMetricFamily(
                "vlmswap_backend_gpu_memory_bytes", "GPU memory held by a backend's processes", labels=["model"]
            )
            for name in m.lifecycle.backend_names():
                pids = m.lifecycle.pids(name)
                per.add_metric([name], sum(v for p, v in snap.processes.items() if p in pids))
            yield from (tot, used, per)
        p = m.lifecycle.pool_status()
        sleeping = GaugeMetricFamily("vlmswap_sleeping_models", "Models asleep in the sleeping pool")
        sleeping.add_metric([], p["count"])
        ram = GaugeMetricFamily(
            "vlmswap_sleep_pool_ram_bytes", "Host RAM held by sleeping models (measured, else estimated)"
        )
        ram.add_metric([], p["ram_bytes"])
        budget = GaugeMetricFamily("vlmswap_sleep_pool_ram_budget_bytes", "Host RAM the sleeping pool may hold")
        budget.add_metric([], p["ram_budget_bytes"])
        yield from (sleeping, ram, budget)
        counts = m.stager.status()
        for key, help_ in (
            (
                "loads",
                "Models staged while the GPU was idle: weight files read into the page cache, or (fit) "
                "started and put to sleep",
            ),
            ("used", "Staged models that were then asked for before they left the cache or the pool"),
            ("abandoned", "Stagings stopped because a request came"),
        ):
            c = CounterMetricFamily(f"vlmswap_staged_{key}", help_, labels=["kind"])
            for kind, n in counts[key].items():
                c.add_metric([kind], n)
            yield c
        if self.usage is not None:
            reqs = GaugeMetricFamily("vlmswap_profile_requests", "Requests per profile", labels=["profile"])
            toks = GaugeMetricFamily(
                "vlmswap_profile_tokens", "Tokens (prompt + completion) per profile", labels=["profile"]
            )
            secs = GaugeMetricFamily(
                "vlmswap_profile_gpu_seconds", "Seconds a model was held per profile", labels=["profile"]
            )
            for name, u in self.usage.to_dict().items():
                reqs.add_metric([name], u["requests"])
                toks.add_metric([name], u["tokens"])
                secs.add_metric([name], u["gpu_seconds"])
            yield from (reqs, toks, secs)


class GatewayMetrics:
    def __init__(self, manager: Manager):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "vlmswap_requests", "Proxied requests by model and HTTP status", ["model", "status"], registry=self.registry
        )
        self.request_seconds = Histogram(
            "vlmswap_request_duration_seconds",
            "Proxied request time, queueing included",
            ["model"],
            buckets=PHASE_BUCKETS,
            registry=self.registry,
        )
        self.switches = Counter(
            "vlmswap_switches",
            "Switches by target model and result (ready/failed)",
            ["model", "result"],
            registry=self.registry,
        )
        self.phase_seconds = Histogram(
            "vlmswap_switch_phase_duration_seconds",
            "Time spent in each switch phase",
            ["phase"],
            buckets=PHASE_BUCKETS,
            registry=self.registry,
        )
        self.switch_seconds = Histogram(
            "vlmswap_switch_duration_seconds",
            "Whole switches, drain to ready: warm (woken from the sleeping pool) or cold (started)",
            ["kind"],
            buckets=PHASE_BUCKETS,
            registry=self.registry,
        )
        self.crashes = Counter(
            "vlmswap_backend_crashes", "Backends that exited while ready", ["model"], registry=self.registry
        )
        # Child metrics per label set, looked up once: `.labels()` per request (it takes a lock and
        # validates and joins the labels) was ~0.1 ms of a proxied request under the profiler.
        self._request_children: dict[tuple[str, int], tuple[Any, Any]] = {}
        self._live = _Live(manager)
        self.registry.register(self._live)
        manager.add_listener(self._on_event)
        manager.add_phase_listener(lambda _model, phase, seconds: self.phase_seconds.labels(phase).observe(seconds))

    def _on_event(self, ev: dict[str, Any]) -> None:
        if ev["type"] != "phase" or ev["model"] is None:
            return
        if ev.get("crash"):
            self.crashes.labels(ev["model"]).inc()
        elif ev["phase"] in (Phase.READY, Phase.FAILED):
            self.switches.labels(ev["model"], ev["phase"]).inc()
            if ev["phase"] == Phase.READY and ev.get("kind") in ("warm", "cold") and ev.get("elapsed_s") is not None:
                self.switch_seconds.labels(ev["kind"]).observe(ev["elapsed_s"])

    def watch_usage(self, usage: Usage) -> None:
        """Per-profile usage, read at scrape time."""
        self._live.usage = usage

    def observe_request(self, model: str, status: int, seconds: float) -> None:
        children = self._request_children.get((model, status))
        if children is None:
            children = (self.requests.labels(model, str(status)), self.request_seconds.labels(model))
            self._request_children[(model, status)] = children
        children[0].inc()
        children[1].observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
