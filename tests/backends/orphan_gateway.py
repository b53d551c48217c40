"""A stand-in gateway for the orphan tests: starts one backend, says its pid, then waits to be killed.

Run: python orphan_gateway.py STATE_DIR NAME -- FAULT_FLAGS...
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from tests.servers import fault_cmd
from vlmswap.backends.base import LogBuffer
from vlmswap.backends.process import ProcessBackend
from vlmswap.registry.config import GatewaySettings, ModelSpec


async def main() -> None:
    state_dir, name = Path(sys.argv[1]), sys.argv[2]
    flags = sys.argv[4:] if len(sys.argv) > 3 and sys.argv[3] == "--" else []
    spec = ModelSpec(served_name=name, cmd=fault_cmd(*flags))
    b = ProcessBackend(name, spec, GatewaySettings(), LogBuffer(None), state_dir)
    await b.start()
    await b.wait_ready(30)
    print(json.dumps({"pid": b.pid, "pids": sorted(b.pids()), "port": b.port}), flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
