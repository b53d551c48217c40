"""A model server run as a labelled Docker container, through the Engine API (Docker SDK).

Why the Engine API and not the docker CLI: errors come back as data (image missing, port
taken, no GPU runtime) that we can turn into one clear sentence, and nothing is parsed
from a shell.

Why labels: every container carries `vlmswap.model`, `vlmswap.served_name` and
`vlmswap.gateway` (this gateway's id: host and state dir). If the gateway dies hard, its
containers live on and hold the GPU; the next gateway on the same state dir finds them by
label and stops them (`cleanup_orphans`), while containers of other gateways are left alone.

Threads, not the event loop, talk to the engine for the long-lived calls: one follows the
container's log into the LogBuffer, one blocks in `wait` and records how the container
ended, so `exit_status()` (polled every 50 ms during readiness) is an attribute read.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import os
import re
import shlex
import socket
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from vlmswap.backends.base import Backend, BackendError, free_port, port_in_use
from vlmswap.registry.config import render_argv

DEFAULT_SOCKET = "unix:///var/run/docker.sock"
LABEL_MODEL = "vlmswap.model"
LABEL_SERVED = "vlmswap.served_name"
LABEL_GATEWAY = "vlmswap.gateway"
LABEL_GATEWAY_PID = "vlmswap.gateway_pid"
LABEL_GATEWAY_START = "vlmswap.gateway_start"
GONE_WAIT_S = 30.0
POLL_S = 0.02


# --- the engine -------------------------------------------------------------------------------


def engine_url(docker_host: str | None = None) -> tuple[str, str]:
    """The Engine API address that will be tried, and where it came from."""
    if docker_host:
        return docker_host, "gateway.docker_host"
    env = os.environ.get("DOCKER_HOST")
    if env:
        return env, "DOCKER_HOST"
    return DEFAULT_SOCKET, "default"


def connect(docker_host: str | None = None, version: str | None = None) -> Any:
    """A DockerClient that has answered once; BackendError naming the address otherwise."""
    try:
        import docker
    except ImportError:
        raise BackendError("the docker backend needs the Docker SDK: pip install 'vlmswap[docker]'") from None
    url, source = engine_url(docker_host)
    try:
        if docker_host:
            client = docker.DockerClient(base_url=docker_host, version=version or "auto")
        else:
            client = docker.DockerClient.from_env(version=version or "auto")
        if version is None:
            client.ping()
        return client
    except docker.errors.DockerException as exc:
        raise BackendError(f"Docker engine not reachable at {url} ({source}): {_reason(exc)}") from None
    except Exception as exc:  # requests' connection errors, bad URLs
        raise BackendError(f"Docker engine not reachable at {url} ({source}): {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    """The innermost useful words of a docker/requests exception chain."""
    text = str(exc)
    m = re.search(r"\(\"([^\"]+)\"\)\s*$", text)  # APIError: ... ("the daemon's own words")
    if m:
        return m.group(1)
    for pattern in (r"(\w*Error)\(\d+, '([^']+)'\)", r"\[Errno \d+\] ([^'\")]+)"):
        m = re.search(pattern, text)
        if m:
            return m.group(m.lastindex or 0)
    return text.removeprefix("Error while fetching server API version: ")


def gateway_id(state_dir: Path) -> str:
    """This gateway's identity on the engine: host and state dir (a restart keeps it)."""
    return f"{socket.gethostname()}:{Path(state_dir).resolve()}"


def container_name(model: str, gid: str) -> str:
    safe = re.sub(r"[^a-zA-Z0-9_.-]+", "-", model).strip("-.") or "model"
    return f"vlmswap-{safe}-{hashlib.sha256(gid.encode()).hexdigest()[:8]}"


def _self_start_time() -> str:
    try:
        return f"{psutil.Process().create_time():.3f}"
    except psutil.Error:
        return ""


# ROCm's devices: the compute interface and the render nodes (vLLM's ROCm docs pass both).
KFD = "/dev/kfd"
DRI = "/dev/dri"
ROCM_GROUPS = ("video", "render")


def _gpu_ids(gpus: str | list[str]) -> list[str] | None:
    """None for `all`, else the device ids."""
    if isinstance(gpus, str) and gpus.strip().lower() == "all":
        return None
    ids = gpus.split(",") if isinstance(gpus, str) else [str(g) for g in gpus]
    return [i.strip() for i in ids if i.strip()]


def gpu_options(name: str, gpus: str | list[str] | None, vendor: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The container options (and environment) that give it `gpus` of `vendor`: NVIDIA device
    requests, or for AMD the ROCm devices with the groups that own them (and, for some of the
    GPUs only, ROCR_VISIBLE_DEVICES: every render node is visible, the runtime uses those)."""
    if not gpus:
        return {}, {}
    if vendor != "amd":
        return {"device_requests": device_requests(gpus)}, {}
    missing = [p for p in (KFD, DRI) if not os.path.exists(p)]
    if missing:
        raise BackendError(
            f"{name}: AMD GPU requested (gpus: {gpus}) but {' and '.join(missing)} "
            f"{'does' if len(missing) == 1 else 'do'} not exist here: the ROCm kernel driver (amdgpu) is not loaded"
        )
    env = {}
    ids = _gpu_ids(gpus)
    if ids is not None:
        env["ROCR_VISIBLE_DEVICES"] = ",".join(ids)
    options = {"devices": [f"{KFD}:/dev/kfd:rwm", f"{DRI}:/dev/dri:rwm"], "group_add": rocm_groups()}
    return options, env


def rocm_groups() -> list[str]:
    """Numeric ids of the host groups that own the GPU devices (video, render, and the devices' own).

    Numbers, not names: `group_add: [render]` is looked up in the *image's* /etc/group, where
    the group may be missing or have another id than the host's (AMD's docs say the same).
    """
    import grp

    gids: list[int] = []
    for group in ROCM_GROUPS:
        with contextlib.suppress(KeyError):
            gids.append(grp.getgrnam(group).gr_gid)
    nodes = [Path(KFD), *sorted(Path(DRI).glob("*"))] if Path(DRI).is_dir() else [Path(KFD)]
    for node in nodes:
        with contextlib.suppress(OSError):
            gids.append(node.stat().st_gid)
    return [str(g) for g in dict.fromkeys(gids) if g != 0]


def device_requests(gpus: str | list[str] | None) -> list[Any]:
    """`gpus: all` -> every GPU; `gpus: [0, 2]` or `"0,2"` -> those device ids."""
    if not gpus:
        return []
    from docker.types import DeviceRequest

    ids = _gpu_ids(gpus)
    if ids is None:
        return [DeviceRequest(count=-1, capabilities=[["gpu"]])]
    return [DeviceRequest(device_ids=ids, capabilities=[["gpu"]])]


class DockerBackend(Backend):
    """One model server as a container; the backend's `port` is the host port readiness polls."""

    kind = "docker"

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.gateway = gateway_id(self.state_dir)
        self.container_name = container_name(self.name, self.gateway)
        self.container_id: str | None = None
        self.argv: list[str] = []
        self._client: Any = None
        self._exit: str | None = None
        self._host_pid: int | None = None
        self._threads: list[threading.Thread] = []
        self._log_done = threading.Event()
        self._ended: asyncio.Event | None = None  # set (on the loop) once _watch_exit has seen the end
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def docker_host(self) -> str | None:
        return self.settings.docker_host

    @property
    def gpu_vendor(self) -> str:
        """The registry's `gpu_vendor`, else the vendor of the GPU this gateway sees (NVIDIA without one)."""
        if self.spec.gpu_vendor:
            return self.spec.gpu_vendor
        from vlmswap import gpu

        return gpu.vendor() or "nvidia"

    # --- start ------------------------------------------------------------------------------

    async def start(self) -> None:
        if self.container_id is not None and self._exit is None:
            raise BackendError(f"{self.name} is already running (container {self.container_name})")
        self._loop, self._ended = asyncio.get_running_loop(), asyncio.Event()
        try:
            await asyncio.to_thread(self._start_sync)
        except BackendError as exc:
            self.logs.mark(exc.message)
            raise

    def _port_plan(self) -> tuple[dict[int, int], int, int]:
        """(container port -> host port, readiness host port, its container port)."""
        ports = {int(c): int(h) for c, h in self.spec.ports.items()}
        host = self._bind_host()
        if self.spec.port is not None and not ports:
            ports = {self.spec.port: self.spec.port}
        for c, h in list(ports.items()):
            if h == 0:
                ports[c] = free_port(host)
        if self.spec.port is not None:
            main = [c for c, h in ports.items() if h == self.spec.port]
            if not main:
                raise BackendError(
                    f"{self.name}: `port` {self.spec.port} is not one of the host ports in `ports` "
                    f"({', '.join(f'{c}->{h}' for c, h in ports.items())})"
                )
            return ports, self.spec.port, main[0]
        c, h = next(iter(ports.items()))
        return ports, h, c

    def _bind_host(self) -> str:
        return self.spec.host if self.spec.host not in ("0.0.0.0", "::") else "127.0.0.1"

    def _start_sync(self) -> None:
        import docker

        spec = self.spec
        client = self._client = connect(self.docker_host)
        image = spec.image or ""
        self._ensure_image(client, image)
        self._remove_stale(client)  # before the port check: a stale container of ours may hold the port
        ports, host_port, container_port = self._port_plan()
        bind = self._bind_host()
        for h in ports.values():
            if port_in_use(h, bind):
                raise BackendError(
                    f"{self.name}: host port {bind}:{h} is already in use{self._port_holder(h)}; "
                    f"stop what holds it or change `ports`/`port`"
                )
        self.port = host_port
        variables = {
            **self.variables,
            "PORT": str(container_port),
            "SERVED_NAME": spec.served_name,
            "MODEL": self.name,
            "HOST_PORT": str(host_port),
        }
        argv, env = render_argv(list(spec.command or []), dict(spec.env), variables)
        self.argv = argv
        labels = {
            LABEL_MODEL: self.name,
            LABEL_SERVED: spec.served_name,
            LABEL_GATEWAY: self.gateway,
            LABEL_GATEWAY_PID: str(os.getpid()),
            LABEL_GATEWAY_START: _self_start_time(),
        }
        kwargs: dict[str, Any] = {
            "image": image,
            "name": self.container_name,
            "labels": labels,
            "detach": True,
            "environment": env,
            "ports": {f"{c}/tcp": (bind, h) for c, h in ports.items()},
            "volumes": [f"{_host_path(src)}:{dst}" for src, dst in spec.volumes.items()],
        }
        if spec.command is not None:
            kwargs["command"] = argv
        if spec.gpus:
            options, gpu_env = gpu_options(self.name, spec.gpus, self.gpu_vendor)
            kwargs.update(options)
            env.update({k: v for k, v in gpu_env.items() if k not in env})
            if "devices" in options:
                self.logs.mark(
                    f"AMD GPU: devices {', '.join(options['devices'])}; groups {', '.join(options['group_add']) or '-'}"
                )
        if spec.shm_size:
            kwargs["shm_size"] = spec.shm_size
        if spec.ipc:
            kwargs["ipc_mode"] = spec.ipc
        what = shlex.join(argv) if spec.command is not None else "(image's default command)"
        self.logs.mark(
            f"starting {self.name}: container {self.container_name} from {image}, "
            f"{bind}:{host_port} -> {container_port}: {what}"
        )
        try:
            container = client.containers.create(**kwargs)
        except docker.errors.APIError as exc:
            raise self._start_error(exc, image, ports, bind) from None
        self.container_id = container.id
        self._exit = None
        self._log_done.clear()
        try:
            container.start()
        except docker.errors.APIError as exc:
            with contextlib.suppress(docker.errors.APIError):
                container.remove(force=True)
            self.container_id = None
            raise self._start_error(exc, image, ports, bind) from None
        self.started_at = time.time()
        with contextlib.suppress(docker.errors.APIError):
            container.reload()
            self._host_pid = int(container.attrs.get("State", {}).get("Pid") or 0) or None
        version = client.api.api_version
        self._threads = [
            threading.Thread(target=self._follow_logs, args=(version,), name=f"logs-{self.name}", daemon=True),
            threading.Thread(target=self._watch_exit, args=(version,), name=f"wait-{self.name}", daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _ensure_image(self, client: Any, image: str) -> None:
        import docker

        try:
            client.api.inspect_image(image)
            return
        except docker.errors.ImageNotFound:
            pass
        except docker.errors.APIError as exc:
            raise BackendError(f"{self.name}: cannot inspect image {image}: {_reason(exc)}") from None
        if not self.spec.pull:
            raise BackendError(
                f"{self.name}: image {image} is not present locally; load or pull it yourself "
                f"(docker pull {image}), or set `pull: true` to let vlmswap pull it"
            )
        from docker.utils import parse_repository_tag

        repo, tag = parse_repository_tag(image)
        self.logs.mark(f"pulling {image}")
        last = ""
        try:
            for event in client.api.pull(repo, tag=tag or "latest", stream=True, decode=True):
                if event.get("error"):
                    raise BackendError(f"{self.name}: cannot pull image {image}: {event['error']}")
                status = event.get("status", "")
                if status and status != last and "progress" not in event:
                    self.logs.append(f"pull: {event.get('id', '')} {status}".replace("  ", " "))
                    last = status
            client.api.inspect_image(image)
        except docker.errors.DockerException as exc:
            raise BackendError(f"{self.name}: cannot pull image {image}: {_reason(exc)}") from None

    def _remove_stale(self, client: Any) -> None:
        """A container of ours under this name (left by a crash) goes before we create a new one."""
        import docker

        try:
            old = client.containers.get(self.container_name)
        except docker.errors.NotFound:
            return
        if old.labels.get(LABEL_GATEWAY) != self.gateway:
            raise BackendError(
                f"{self.name}: a container named {self.container_name} exists and is not this "
                f"gateway's; remove it (docker rm -f {self.container_name})"
            )
        self.logs.mark(f"removing stale container {self.container_name} ({old.status}) left by an earlier start")
        with contextlib.suppress(docker.errors.NotFound):
            old.remove(force=True)
        _wait_removed(client, old.id, GONE_WAIT_S)

    def _port_holder(self, port: int) -> str:
        try:
            from vlmswap.backends.process import port_holder
        except ImportError:
            return ""
        holder = port_holder(port)
        return f" by {holder}" if holder else ""

    def _start_error(self, exc: Exception, image: str, ports: dict[int, int], bind: str) -> BackendError:
        reason = _reason(exc)
        low = reason.lower()
        if "could not select device driver" in low or ("nvidia" in low and "runtime" in low):
            return BackendError(
                f"{self.name}: GPU requested (gpus: {self.spec.gpus}) but the Docker engine has no "
                f"GPU runtime (the 'nvidia' runtime / NVIDIA Container Toolkit is missing): {reason}"
            )
        if "custom device" in low or "device information" in low:
            return BackendError(f"{self.name}: the Docker engine could not pass the AMD GPU's devices: {reason}")
        if "port is already allocated" in low or "address already in use" in low:
            taken = ", ".join(f"{bind}:{h}" for h in ports.values())
            return BackendError(f"{self.name}: host port already in use ({taken}): {reason}")
        if "no such image" in low:
            return BackendError(f"{self.name}: image {image} is not present locally: {reason}")
        return BackendError(f"{self.name}: the Docker engine refused to start the container: {reason}")

    # --- threads: logs and exit -----------------------------------------------------------------

    def _follow_logs(self, version: str) -> None:
        """Container stdout+stderr -> LogBuffer, line by line, until the container ends."""
        client = None
        try:
            client = connect(self.docker_host, version=version)
            for chunk in client.api.logs(self.container_id, stream=True, follow=True, stdout=True, stderr=True):
                self.logs.feed(chunk)
        except Exception as exc:  # the engine went away, the container was removed
            self.logs.flush()
            self.logs.mark(f"log stream of {self.container_name} ended: {_reason(exc)}")
        finally:
            self.logs.flush()
            self._log_done.set()
            if client is not None:
                client.close()

    def _watch_exit(self, version: str) -> None:
        """Block in the engine's `wait`; record how the container ended once its log is read."""
        import docker

        status = "container gone"
        client = None
        try:
            client = connect(self.docker_host, version=version)
            result = client.api.wait(self.container_id, timeout=None)
            code = int(result.get("StatusCode", -1))
            status = f"exit code {code}"
            with contextlib.suppress(docker.errors.DockerException):
                state = client.api.inspect_container(self.container_id).get("State", {})
                if state.get("OOMKilled"):
                    status += ", OOM killed"
        except docker.errors.NotFound:
            status = "container removed"
        except Exception as exc:
            status = f"lost track of the container: {_reason(exc)}"
        finally:
            if client is not None:
                client.close()
        self._log_done.wait(2.0)  # its last lines are in the buffer before anyone hears it ended
        self._exit = status
        if self._loop is not None and self._ended is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is waiting
                self._loop.call_soon_threadsafe(self._ended.set)

    # --- contract -----------------------------------------------------------------------------

    def exit_status(self) -> str | None:
        if self.container_id is None and self.started_at is None:
            return "not started"
        return self._exit

    async def wait_exit(self) -> str:
        if self._ended is None:
            return self.exit_status() or "not started"
        await self._ended.wait()
        return self._exit or "gone"

    def host_memory_bytes(self) -> int:
        """The container's memory as the engine counts it (its cgroup), else its processes' RSS."""
        if self._client is not None and self.container_id is not None and self._exit is None:
            with contextlib.suppress(Exception):
                stats = self._client.api.stats(self.container_id, stream=False, one_shot=True)
                usage = int((stats.get("memory_stats") or {}).get("usage") or 0)
                if usage:
                    return usage
        return super().host_memory_bytes()

    def pids(self) -> set[int]:
        """Host pids of the container's processes: State.Pid and its descendants, else `top`."""
        if self._exit is not None or self.container_id is None:
            return set()
        pid = self._host_pid
        if pid and _in_container(pid, self.container_id):
            out = {pid}
            with contextlib.suppress(psutil.Error):
                out |= {c.pid for c in psutil.Process(pid).children(recursive=True)}
            return out
        try:  # another pid namespace (a gateway in a container): ask the engine
            top = self._client.api.top(self.container_id, ps_args="-o pid")
            return {int(row[0]) for row in top.get("Processes") or [] if row and str(row[0]).isdigit()}
        except Exception:
            return set()

    async def stop(self, grace_s: float) -> None:
        if self.container_id is None:
            return
        await asyncio.to_thread(self._stop_sync, grace_s)

    def _stop_sync(self, grace_s: float) -> None:
        import docker

        cid, t0 = self.container_id, time.monotonic()
        assert cid is not None
        client = self._client or connect(self.docker_host)
        running = self._exit is None
        timeout = max(0, math.ceil(grace_s))
        try:
            if running:
                self.logs.mark(f"stopping {self.name}: docker stop {self.container_name} (grace {timeout} s)")
                client.api.stop(cid, timeout=timeout)
            client.api.remove_container(cid, force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if "already in progress" not in str(exc):
                raise BackendError(
                    f"{self.name}: cannot stop container {self.container_name}: {_reason(exc)}", self.logs.tail(30)
                ) from None
        if not _wait_removed(client, cid, GONE_WAIT_S):
            raise BackendError(
                f"{self.name}: container {self.container_name} still exists {GONE_WAIT_S:.0f} s after remove",
                self.logs.tail(30),
            )
        for t in self._threads:
            t.join(5.0)
        client.close()
        self._client = None
        status = self._exit or "removed"
        if running:
            self.logs.mark(f"stopped {self.name} ({status}) in {time.monotonic() - t0:.2f} s")
        else:
            self.logs.mark(f"{self.name} had already ended ({status}); container removed")


def _host_path(src: str) -> str:
    """Volume sources: absolute/home paths are bind mounts, bare names are named volumes."""
    if src.startswith("~"):
        return os.path.expanduser(src)
    if src.startswith(("./", "../")):
        return str(Path(src).resolve())
    return src


def _in_container(pid: int, container_id: str) -> bool:
    """True when `pid` in our pid namespace is a process of that container (its cgroup says so)."""
    try:
        return container_id in Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return False


def _wait_removed(client: Any, cid: str, timeout_s: float) -> bool:
    import docker

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            client.api.inspect_container(cid)
        except docker.errors.NotFound:
            return True
        except docker.errors.DockerException:
            return False
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL_S)


# --- orphans: containers an earlier gateway left behind ----------------------------------------


def _gateway_alive(labels: dict[str, str]) -> bool:
    """The gateway that made the container still runs (same pid AND same start time), and is not us."""
    try:
        pid = int(labels.get(LABEL_GATEWAY_PID, ""))
        start = float(labels.get(LABEL_GATEWAY_START, ""))
    except ValueError:
        return False
    if pid == os.getpid():
        return False
    try:
        return bool(abs(psutil.Process(pid).create_time() - start) < 0.05)
    except psutil.Error:
        return False


def cleanup_orphans(state_dir: Path, docker_host: str | None = None, grace_s: float = 5.0) -> list[str]:
    """Stop and remove containers labelled with this gateway's id; one message each.

    Only this gateway's id (host + state dir) is matched, so other gateways' containers on
    the same engine are never touched; a container whose gateway is still running is left
    alone and said so.
    """
    import docker

    gid = gateway_id(state_dir)
    try:
        client = connect(docker_host)
    except BackendError as exc:
        return [f"could not look for orphaned containers: {exc.message}"]
    messages: list[str] = []
    with contextlib.closing(client):
        try:
            found = client.containers.list(all=True, filters={"label": f"{LABEL_GATEWAY}={gid}"})
        except docker.errors.DockerException as exc:
            return [f"could not look for orphaned containers: {_reason(exc)}"]
        for c in found:
            messages.extend(_remove_orphan(client, c, grace_s))
    return messages


def _remove_orphan(client: Any, c: Any, grace_s: float) -> list[str]:
    """Stop (with grace) and remove one labelled container; what was done, as one message."""
    import docker

    model = c.labels.get(LABEL_MODEL, "?")
    if _gateway_alive(c.labels):
        return [
            f"left container {c.name} (model {model}) alone: its gateway "
            f"(pid {c.labels.get(LABEL_GATEWAY_PID)}) is still running"
        ]
    was = c.status
    running = was in ("running", "restarting", "paused")
    try:
        if running:
            c.stop(timeout=max(0, math.ceil(grace_s)))
        c.remove(force=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        return [f"could not remove orphaned container {c.name} (model {model}): {_reason(exc)}"]
    if not _wait_removed(client, c.id, GONE_WAIT_S):
        return [f"could not remove orphaned container {c.name} (model {model}): still there after remove"]
    verb = "stopped and removed" if running else f"removed ({was})"
    return [f"{verb} orphaned container {c.name} (model {model}) left by an earlier gateway"]
