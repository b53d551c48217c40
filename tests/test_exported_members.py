"""The public names of vlmswap's public modules, pinned (as httpx pins its own).

A name that appears in or disappears from one of these modules' `__all__` changes what users
may import: this test makes that a deliberate edit, not an accident of a refactoring.
"""

from __future__ import annotations

import importlib
import inspect

import pytest

PUBLIC = {
    "vlmswap": ["Client", "__version__"],
    "vlmswap.client": [
        "Client",
        "Connection",
        "DocumentJob",
        "GatewayError",
        "GatewayUnreachable",
        "SwitchError",
        "image_data_url",
    ],
    "vlmswap.gateway": ["create_app"],
    "vlmswap.backends": ["Backend", "BackendError", "BackendFactory", "LogBuffer", "cleanup_orphans", "create"],
    "vlmswap.documents.layout": ["CATEGORIES", "FURNITURE", "Block", "Document", "Page"],
    "vlmswap.documents.jobs": [
        "PAGE_TRIES",
        "Job",
        "JobSpec",
        "JobState",
        "PageRecord",
        "PageState",
        "final_state",
        "retryable",
    ],
    "vlmswap.registry.config": [
        "ConfigError",
        "GatewaySettings",
        "ModelSpec",
        "ProfileSpec",
        "Registry",
        "json_schema",
        "load_registry",
        "parse_registry",
        "render_argv",
        "substitute",
    ],
    "vlmswap.swap.admission": ["Admission", "Entry", "RequestMetrics"],
    "vlmswap.swap.manager": ["Lease", "Manager", "Model", "Ticket"],
    "vlmswap.swap.policies": ["Candidate", "EvictAll", "Placement", "Policy"],
    "vlmswap.swap.scheduler": [
        "Action",
        "Decisions",
        "Drain",
        "FailInFlight",
        "Grant",
        "ModelPolicy",
        "Reject",
        "Scheduler",
        "SchedulerSettings",
        "StartSwitch",
        "StopResident",
        "Switch",
    ],
    "vlmswap.swap.states": ["Cause", "ModelState", "Phase", "Residency", "SwitchKind", "SwitchStep"],
    "vlmswap.swap.keeping": ["QUEUED", "Lru", "PoolOrder", "PoolPolicy", "Predictive", "order_for"],
    "vlmswap.swap.predictor": ["Prediction", "Predictor", "Weights", "ago", "local_hour", "trace_hour", "write_atomic"],
    "vlmswap.swap.priors": ["Costs", "Learned", "costs", "need_bytes", "sleep_ram_bytes"],
    "vlmswap.swap.simulator": ["Options", "Oracle", "Result", "SimLifecycle", "Simulation", "percentile", "simulate"],
    "vlmswap.swap.staging": ["Stager", "cached_fraction", "evict_from_cache", "read_into_cache", "weight_files"],
    "vlmswap.swap.traces": [
        "KINDS",
        "ROLES",
        "Recorder",
        "Request",
        "TraceError",
        "bursty_groups",
        "diurnal",
        "documents_chat",
        "dumps",
        "generate",
        "parse_line",
        "read",
        "sessions",
    ],
}


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_a_public_module_exports_exactly_its_pinned_names(name: str) -> None:
    module = importlib.import_module(name)
    assert sorted(module.__all__) == sorted(PUBLIC[name])
    for member in module.__all__:
        assert getattr(module, member) is not None, f"{name}.{member} is in __all__ but not importable"


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_every_public_class_and_function_a_module_defines_is_exported(name: str) -> None:
    module = importlib.import_module(name)
    defined = {
        n
        for n, obj in vars(module).items()
        if not n.startswith("_")
        and (inspect.isclass(obj) or inspect.isfunction(obj))
        and getattr(obj, "__module__", None) == name
    }
    unexported = defined - set(module.__all__) - INTERNAL.get(name, set())
    assert not unexported, f"{name} defines {sorted(unexported)} without exporting them (or marking them internal)"


# Defined in a public module for its own use; not part of what users import.
INTERNAL = {
    "vlmswap.swap.scheduler": {"Slot", "Waiting"},
    "vlmswap.swap.policies": {"cheapest_first"},
}
