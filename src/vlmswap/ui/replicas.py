"""A cluster's replicas as the sidebar shows them (pure: no Streamlit here).

`vlmswap cluster serve` answers `/api/status` with the single gateway's fields plus
`cluster: true` and one entry per replica; one gateway has neither, and shows nothing here.
"""

from __future__ import annotations

from typing import Any

from vlmswap.i18n import tr, trn


def replicas_caption(status: dict[str, Any]) -> str | None:
    """One line per replica (its id, node, GPU, resident model, queue); None for one gateway."""
    if not status.get("cluster"):
        return None
    replicas = status.get("replicas") or []
    lines = [trn("Cluster of **{n}** replica", "Cluster of **{n}** replicas", len(replicas))]
    for r in replicas:
        gpu = tr("GPU {ids}", ids=",".join(r["gpu_ids"])) if r.get("gpu_ids") else tr("no GPU")
        node = str(r.get("node") or "?").split(" ")[0]
        held = f"**{r['resident']}**" if r.get("resident") else tr("nothing resident")
        line = tr("`{replica}` on {node} · {gpu} · {held} · queued {queued}", replica=r.get("replica"), node=node,
                  gpu=gpu, held=held, queued=r.get("queue_length", 0))  # fmt: skip
        lines.append(line)
    return "  \n".join(lines)
