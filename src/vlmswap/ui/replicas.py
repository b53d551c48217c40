"""A cluster's replicas as the sidebar shows them (pure: no Streamlit here).

`vlmswap cluster serve` answers `/api/status` with the single gateway's fields plus
`cluster: true` and one entry per replica; one gateway has neither, and shows nothing here.
"""

from __future__ import annotations

from typing import Any


def replicas_caption(status: dict[str, Any]) -> str | None:
    """One line per replica (its id, node, GPU, resident model, queue); None for one gateway."""
    if not status.get("cluster"):
        return None
    replicas = status.get("replicas") or []
    lines = [f"Cluster of **{len(replicas)}** replica{'s' if len(replicas) != 1 else ''}"]
    for r in replicas:
        gpu = f"GPU {','.join(r['gpu_ids'])}" if r.get("gpu_ids") else "no GPU"
        node = str(r.get("node") or "?").split(" ")[0]
        held = f"**{r['resident']}**" if r.get("resident") else "nothing resident"
        lines.append(f"`{r.get('replica')}` on {node} · {gpu} · {held} · queued {r.get('queue_length', 0)}")
    return "  \n".join(lines)
