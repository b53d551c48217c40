"""Pure functions from every replica's report to one cluster-wide answer.

The single gateway's `/api/status`, `/v1/models` and `/metrics` shapes are kept (the same
clients read both); what differs in a cluster is said in extra fields: `replicas` (one entry
per replica: node, GPU, resident model, queue) and `residents` (one model per replica).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

# When replicas disagree about a model, the most useful state wins: one replica serving it
# makes it "ready" for the cluster.
STATE_RANK = {"ready": 0, "sleeping": 1, "starting": 2, "stopping": 3, "failed": 4, "stopped": 5}
SUMMED = ("in_flight", "queued", "starts")


def replica_summary(report: dict[str, Any], now: float) -> dict[str, Any]:
    st = report["status"]
    return {
        "replica": report["replica"],
        "node": report["node"],
        "pid": report["pid"],
        "slot": report["slot"],
        "gpu_ids": report["gpu_ids"],
        "gpu": st.get("gpu"),
        "resident": st.get("resident"),
        "routed_models": report["routed_models"],
        "queue_length": st.get("queue_length", 0),
        "in_flight": st.get("in_flight", 0),
        "switches": st.get("switches", 0),
        "switch": st.get("switch"),
        "state_dir": report["state_dir"],
        "age_s": round(max(0.0, now - report["time"]), 3),
    }


def _merge_model(name: str, per_replica: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    best = min((m for _, m in per_replica), key=lambda m: STATE_RANK.get(m.get("state", "stopped"), 9))
    out = dict(best)
    out.pop("base_url", None)
    out.pop("pids", None)
    for key in SUMMED:
        out[key] = sum(int(m.get(key) or 0) for _, m in per_replica)
    out["replicas"] = {rid: m.get("state", "stopped") for rid, m in per_replica}
    return out


def cluster_status(reports: Iterable[dict[str, Any]], now: float) -> dict[str, Any]:
    """`/api/status` for the cluster: the single gateway's fields, summed or merged, plus `replicas`."""
    reports = sorted(reports, key=lambda r: (r["node"], r["slot"], r["replica"]))
    summaries = [replica_summary(r, now) for r in reports]
    names: list[str] = []
    for r in reports:
        names += [n for n in r["status"].get("models", {}) if n not in names]
    models = {
        n: _merge_model(
            n, [(r["replica"], r["status"]["models"][n]) for r in reports if n in r["status"].get("models", {})]
        )
        for n in names
    }
    residents = [s["resident"] for s in summaries if s["resident"]]
    switch = next((s["switch"] for s in summaries if s["switch"]), None)
    first = reports[0]["status"] if reports else {}
    return {
        "resident": residents[0] if residents else None,  # the single gateway's field: one of them
        "residents": residents,
        "models": models,
        "queue_length": sum(s["queue_length"] for s in summaries),
        "in_flight": sum(s["in_flight"] for s in summaries),
        "switch": switch,
        "switches": sum(s["switches"] for s in summaries),
        "policy": first.get("policy"),
        "gpu": _cluster_gpu(summaries),
        "host": first.get("host"),
        "gateway_id": "cluster",
        "cluster": True,
        "replicas": summaries,
    }


def cluster_usage(reports: Iterable[dict[str, Any]]) -> dict[str, dict[str, float | int]]:
    """`/api/usage`'s profiles: each replica counts the requests its Admission served; summed here."""
    out: dict[str, dict[str, float | int]] = {}
    for r in reports:
        for name, u in (r.get("usage") or {}).items():
            into = out.setdefault(name, {"requests": 0, "tokens": 0, "gpu_seconds": 0.0})
            into["requests"] += int(u.get("requests", 0))
            into["tokens"] += int(u.get("tokens", 0))
            into["gpu_seconds"] = round(float(into["gpu_seconds"]) + float(u.get("gpu_seconds", 0.0)), 3)
    return dict(sorted(out.items()))


def _cluster_gpu(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    gpus = [s["gpu"] for s in summaries if s.get("gpu") and s["gpu"].get("available")]
    if not gpus:
        reason = next((s["gpu"].get("reason") for s in summaries if s.get("gpu")), None)
        return {"available": False, "reason": reason or "no replica reports a GPU"}
    used = sum(int(g.get("used_bytes") or 0) for g in gpus)
    total = sum(int(g.get("total_bytes") or 0) for g in gpus)
    return {
        "available": True,
        "name": f"{len(gpus)} x {gpus[0].get('name', 'GPU')}",
        "used_bytes": used,
        "total_bytes": total,
        "free_bytes": total - used,
    }


class _Families:
    """A prometheus_client collector over already-built metric families."""

    def __init__(self, families: list[Metric]):
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def replica_families(status: dict[str, Any]) -> list[Metric]:
    """Per replica: where it runs and what it holds (an info gauge), and its queue."""
    info = GaugeMetricFamily(
        "vlmswap_cluster_replica_info",
        "A model host replica: node, slot, GPUs, resident model.",
        labels=["replica", "node", "slot", "gpu_ids", "resident"],
    )
    queue = GaugeMetricFamily(
        "vlmswap_cluster_replica_queue_length", "Requests waiting in a replica's manager.", labels=["replica"]
    )
    for r in status["replicas"]:
        info.add_metric([r["replica"], r["node"], str(r["slot"]), ",".join(r["gpu_ids"]), r["resident"] or ""], 1)
        queue.add_metric([r["replica"]], r["queue_length"])
    count = GaugeMetricFamily(
        "vlmswap_cluster_replicas", "Model host replicas reporting.", value=len(status["replicas"])
    )
    return [count, info, queue]


def cluster_metrics(texts: dict[str, str], extra: Iterable[Metric] = ()) -> bytes:
    """Every replica's `/metrics`, merged: each series gets a `replica` label."""
    merged: dict[str, Metric] = {}
    for replica, text in sorted(texts.items()):
        for fam in text_string_to_metric_families(text):
            into = merged.get(fam.name)
            if into is None:
                into = merged[fam.name] = Metric(fam.name, fam.documentation, fam.type, fam.unit)
            for s in fam.samples:
                into.add_sample(s.name, {**s.labels, "replica": replica}, s.value, s.timestamp, s.exemplar)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families([*merged.values(), *extra]))  # type: ignore[arg-type]
    return generate_latest(registry)
