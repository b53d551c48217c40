"""The cluster's Ray Serve application: Ingress -> ModelHost replicas, and the Board.

- `host.py`, N replicas (one GPU each): vlmswap's gateway app and manager, in process.
- `ingress.py`: the single gateway's routes; requests routed by model to a replica.
- `board.py`, one replica: status, metrics and events gathered from every replica.

Deployments are made by functions because the API key and the number of models a replica
keeps (`max_num_models_per_replica`) are fixed when the classes are made.
"""

from __future__ import annotations

from typing import Any

from vlmswap.cluster.board import Board
from vlmswap.cluster.host import host_deployment
from vlmswap.cluster.ingress import ingress_deployment
from vlmswap.cluster.options import ClusterOptions

APP_NAME = "vlmswap"


def build_app(opts: ClusterOptions) -> Any:
    """The application `serve.run` deploys."""
    board = Board.bind()
    return ingress_deployment(opts).bind(host_deployment(opts).bind(opts.registry, board, opts.state_dir), board)


__all__ = ["APP_NAME", "ClusterOptions", "build_app"]
