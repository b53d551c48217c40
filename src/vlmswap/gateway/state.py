"""What the gateway's routes share, typed: the objects `create_app` puts on `app.state`, one accessor each.

(The document jobs' service is read in gateway/jobs.py, beside its routes.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import HTTPConnection

if TYPE_CHECKING:
    from vlmswap.gateway.metrics import GatewayMetrics
    from vlmswap.registry.config import Registry
    from vlmswap.registry.preferences import PreferenceStore
    from vlmswap.registry.profiles import Usage
    from vlmswap.swap.admission import Admission
    from vlmswap.swap.manager import Manager


def manager(request: HTTPConnection) -> Manager:
    found: Manager = request.app.state.manager
    return found


def registry(request: HTTPConnection) -> Registry:
    """What may run: the manager's registry on one gateway, the cluster's at its ingress."""
    found: Registry = request.app.state.registry
    return found


def admission(request: HTTPConnection) -> Admission:
    found: Admission = request.app.state.admission
    return found


def usage(request: HTTPConnection) -> Usage:
    found: Usage = request.app.state.usage
    return found


def metrics(request: HTTPConnection) -> GatewayMetrics:
    found: GatewayMetrics = request.app.state.metrics
    return found


def preferences(request: HTTPConnection) -> PreferenceStore:
    found: PreferenceStore = request.app.state.preferences
    return found
