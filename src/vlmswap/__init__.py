"""vlmswap: several vision-language models on one GPU, one resident at a time."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Client", "__version__"]

if TYPE_CHECKING:
    from vlmswap.client import Client


def __getattr__(name: str) -> Any:
    # Lazy, so `import vlmswap` stays cheap for the worker and the CLI.
    if name == "Client":
        from vlmswap.client import Client

        return Client
    raise AttributeError(name)
