"""A model server run as a local process group: started from an argv, stopped as a group.

Why a process *group*: vLLM and friends spawn helpers (engine cores, tokenizer pools) that
hold GPU memory too. Stopping only the parent leaves them behind; signalling the group
(the server is started in a new session, so its pid is its group id) reaches them all.

Why pid files: if the gateway dies hard (SIGKILL, OOM killer), its backends live on and
hold the GPU. Each backend writes `state_dir/pids/<model>.json` with its pid, group and
process start time; the next gateway stops what those files name, and the start time makes
sure a pid the kernel has since handed to an unrelated process is never mistaken for ours.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import psutil

from vlmswap.backends.base import Backend, BackendError, free_port, port_in_use
from vlmswap.registry.config import render_argv

POLL_S = 0.02
PORT_POLL_S = 0.005  # a refused loopback connect costs microseconds: notice the listening moment early
KILL_WAIT_S = 10.0  # after SIGKILL the kernel needs moments, not seconds; beyond this something is wrong
_READ_CHUNK = 65536
_CREATE_TIME_TOLERANCE_S = 0.05


def pid_dir(state_dir: Path) -> Path:
    return state_dir / "pids"


def pid_file(state_dir: Path, model: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model)
    return pid_dir(state_dir) / f"{safe}.json"


def _signame(code: int) -> str:
    try:
        return signal.Signals(code).name
    except ValueError:
        return f"signal {code}"


def describe_returncode(rc: int) -> str:
    return f"killed by {_signame(-rc)}" if rc < 0 else f"exit code {rc}"


def port_holder(port: int) -> str | None:
    """Who listens on `port`, as 'pid 123 (cmdline)', when the OS lets us see it."""
    try:
        conns = psutil.net_connections(kind="inet")
    except (psutil.AccessDenied, OSError):
        return None
    for c in conns:
        if c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN and c.pid:
            try:
                cmd = shlex.join(psutil.Process(c.pid).cmdline()) or psutil.Process(c.pid).name()
            except psutil.Error:
                cmd = "?"
            if len(cmd) > 160:
                cmd = cmd[:157] + "..."
            return f"pid {c.pid} ({cmd})"
    return None


def descendants(pid: int) -> list[int]:
    """Pids of a process's children, grandchildren, ...

    Reads /proc/PID/task/*/children (O(descendants), well under a millisecond) instead of
    psutil's scan of the whole process table (5-10 ms on a busy machine): this runs on every
    stop and every status request. Falls back to psutil where the kernel lacks the file.
    """
    out: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        tasks = Path(f"/proc/{parent}/task")
        try:
            names = os.listdir(tasks)
        except OSError:
            names = []
        if names and not (tasks / names[0] / "children").exists():
            with contextlib.suppress(psutil.Error):
                return [c.pid for c in psutil.Process(pid).children(recursive=True)]
        for tid in names:
            with contextlib.suppress(OSError, ValueError):
                kids = [int(x) for x in (tasks / tid / "children").read_text().split()]
                out += kids
                todo += kids
    return out


def _processes(pids: list[int]) -> list[psutil.Process]:
    out = []
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            out.append(psutil.Process(pid))
    return out


async def _port_accepts(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection(host, port)
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def _alive(p: psutil.Process) -> bool:
    """Running and not a zombie: a zombie holds no memory and only waits for its parent to reap it."""
    try:
        return bool(p.is_running() and p.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def group_members(pgid: int) -> list[psutil.Process]:
    """Live (non-zombie) processes whose process group is `pgid`."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return []  # fast path: no process at all in the group
    except PermissionError:
        pass
    out = []
    for p in psutil.process_iter():
        try:
            if os.getpgid(p.pid) == pgid and _alive(p):
                out.append(p)
        except (ProcessLookupError, psutil.Error, OSError):
            continue
    return out


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _signal_all(procs: list[psutil.Process], sig: int) -> None:
    for p in procs:
        with contextlib.suppress(psutil.Error):
            if _alive(p):
                p.send_signal(sig)


class ProcessBackend(Backend):
    """One model server as a child process group of the gateway."""

    kind = "process"

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._proc: subprocess.Popen[bytes] | None = None
        self._exited: asyncio.Event | None = None  # set once the child has been reaped
        self._exit_watch: _ExitWatch | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pgid: int | None = None
        self._ps: psutil.Process | None = None
        self.argv: list[str] = []

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def pid_path(self) -> Path:
        return pid_file(self.state_dir, self.name)

    async def start(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            raise BackendError(f"{self.name} is already running (pid {self._proc.pid})")
        host = self.spec.host if self.spec.host not in ("0.0.0.0", "::") else "127.0.0.1"
        if self.spec.port is not None:
            if port_in_use(self.spec.port, host):
                holder = port_holder(self.spec.port)
                who = f"by {holder}" if holder else "by a process vlmswap cannot see"
                msg = f"{self.name}: port {self.spec.port} is already in use {who}; stop it or change `port`"
                self.logs.mark(msg)
                raise BackendError(msg)
            self.port = self.spec.port
        else:
            self.port = free_port(host)
        variables = {**self.variables, "PORT": str(self.port), "SERVED_NAME": self.spec.served_name, "MODEL": self.name}
        argv, env = render_argv(list(self.spec.cmd or []), self.spec.env, variables)
        self.argv = argv
        self.logs.mark(f"starting {self.name} on port {self.port}: {shlex.join(argv)}")
        try:
            # Popen, not asyncio's subprocess: it spawns with vfork in about a millisecond (see _ExitWatch).
            proc = subprocess.Popen(  # noqa: ASYNC220
                argv,
                env={**os.environ, **env},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            msg = f"{self.name}: cannot run {argv[0]!r}: {exc.strerror or exc}"
            self.logs.mark(msg)
            raise BackendError(msg) from None
        self._proc = proc
        self._pgid = proc.pid  # start_new_session: the child leads its own session and group
        self.started_at = time.time()
        self._exited = asyncio.Event()
        self._exit_watch = _ExitWatch(proc, self._exited)
        reader = asyncio.StreamReader(limit=_READ_CHUNK * 4)
        pipe, proc.stdout = proc.stdout, None  # the transport alone owns it from here
        assert pipe is not None
        transport, _ = await asyncio.get_running_loop().connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), pipe
        )
        self._reader = asyncio.create_task(self._pump(reader, transport), name=f"logs-{self.name}")
        try:
            self._ps = psutil.Process(proc.pid)
            create_time = self._ps.create_time()
        except psutil.Error:
            self._ps, create_time = None, None  # exited already; exit_status() tells
        self._write_pid_file(create_time)

    def _write_pid_file(self, create_time: float | None) -> None:
        if create_time is None or self._proc is None:
            return
        path = self.pid_path
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            gw_ct = psutil.Process().create_time()
        except psutil.Error:
            gw_ct = None
        data = {
            "model": self.name,
            "pid": self._proc.pid,
            "pgid": self._pgid,
            "create_time": create_time,
            "argv": self.argv,
            "port": self.port,
            "started_at": self.started_at,
            "gateway_pid": os.getpid(),
            "gateway_create_time": gw_ct,
        }
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
        os.replace(tmp, path)

    async def _pump(self, stream: asyncio.StreamReader, transport: asyncio.BaseTransport) -> None:
        """Backend output -> LogBuffer, line by line; a child that never prints a newline is cut at 16 KiB.

        Closes the pipe's transport at the end, always: left to the garbage collector, uvloop
        closes the fd late, when its number may already belong to the next backend's pipe.
        """
        try:
            while True:
                chunk = await stream.read(_READ_CHUNK)
                if not chunk:
                    break
                self.logs.feed(chunk)
        except (asyncio.CancelledError, ConnectionError, OSError):
            pass
        finally:
            transport.close()
            self.logs.flush()

    def exit_status(self) -> str | None:
        if self._proc is None:
            return "not started"
        rc = self._proc.poll()  # reaps it if it has exited: we are its only waiter
        if rc is not None and self._exited is not None:
            self._exited.set()
        return None if rc is None else describe_returncode(rc)

    async def wait_ready(self, timeout_s: float, poll_s: float = 0.05, on_phase: Any = None) -> None:
        """As Backend.wait_ready, after a cheap wait for the port to accept connections.

        A loading server refuses connections (vLLM binds long before it listens). Probing with a
        bare connect every 5 ms, instead of HTTP requests every `poll_s`, notices the moment it
        listens within milliseconds at no cost; then the HTTP checks (health 200 AND the served
        name listed) run as for every backend. On failure the error carries the output up to the
        very end.
        """
        deadline = time.monotonic() + timeout_s
        host = self.base_url.split("//", 1)[1].rsplit(":", 1)[0]
        try:
            if on_phase:
                on_phase("loading", "port not accepting connections yet")
            while self.port is not None and not await _port_accepts(host, self.port):
                self.check_starting(deadline, timeout_s)
                await asyncio.sleep(min(poll_s, PORT_POLL_S))
            await super().wait_ready(max(0.0, deadline - time.monotonic()), poll_s, on_phase)
        except BackendError as exc:
            if self.exit_status() is not None and self._proc is not None:
                # Let the pump read the last lines still in the pipe (it ends when the child's side closes).
                if self._reader is not None:
                    with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                        await asyncio.wait_for(asyncio.shield(self._reader), 1.0)
                if "exited during start" in exc.message:
                    exc.message = f"{self.name} exited during start ({self.exit_status()})"
                    exc.args = (exc.message,)
            exc.log_tail = self.logs.tail(30)
            raise

    async def wait_exit(self) -> str:
        if self._exited is None:
            return self.exit_status() or "not started"
        while self.exit_status() is None:  # set by the pidfd watch; the check also reaps
            await self._exited.wait()
        if self._reader is not None:  # its last lines in the log before anyone hears it ended
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._reader), 1.0)
        return self.exit_status() or "gone"

    def pids(self) -> set[int]:
        if self._ps is None or not _alive(self._ps):
            return set()
        return {self._ps.pid} | {c.pid for c in _processes(descendants(self._ps.pid)) if _alive(c)}

    async def stop(self, grace_s: float) -> None:
        proc, pgid = self._proc, self._pgid
        if proc is None or pgid is None:
            return
        # Remember descendants that may have left the group (setsid); they go too.
        strays = _processes(descendants(proc.pid)) if proc.poll() is None else []
        t0 = time.monotonic()
        running = self.exit_status() is None or bool(group_members(pgid))
        if not running:
            await self._wait_gone(proc, pgid, strays, KILL_WAIT_S)  # exited on its own: reap it
        else:
            self.logs.mark(f"stopping {self.name}: SIGTERM to process group {pgid} (grace {grace_s:g} s)")
            _signal_group(pgid, signal.SIGTERM)
            _signal_all(strays, signal.SIGTERM)
            if not await self._wait_gone(proc, pgid, strays, grace_s):
                self.logs.mark(f"{self.name} still running after {grace_s:g} s: SIGKILL to process group {pgid}")
                _signal_group(pgid, signal.SIGKILL)
                _signal_all(strays, signal.SIGKILL)
                if not await self._wait_gone(proc, pgid, strays, KILL_WAIT_S):
                    left = sorted(p.pid for p in group_members(pgid))
                    raise BackendError(
                        f"{self.name}: processes {left} of group {pgid} survive SIGKILL", self.logs.tail(30)
                    )
        if self._reader is not None:  # ends at the pipe's EOF; cancelled (closing the pipe) if a stray holds it
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._reader, 2.0)
        with contextlib.suppress(FileNotFoundError):
            self.pid_path.unlink()
        status = self.exit_status() or "gone"
        if running:
            self.logs.mark(f"stopped {self.name} ({status}) in {time.monotonic() - t0:.2f} s")
        else:
            self.logs.mark(f"{self.name} had already ended ({status})")

    async def _wait_gone(
        self, proc: subprocess.Popen[bytes], pgid: int, strays: list[psutil.Process], timeout_s: float
    ) -> bool:
        """Until the child is reaped AND no process of its group (or a stray) remains."""
        deadline = time.monotonic() + timeout_s
        exited = self._exited
        while True:
            if self.exit_status() is None and exited is not None:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(exited.wait(), POLL_S)
            if self.exit_status() is not None and not group_members(pgid) and not any(_alive(p) for p in strays):
                if self._exit_watch is not None:
                    self._exit_watch.close()
                return True
            if time.monotonic() >= deadline:
                return False
            if self.exit_status() is not None or exited is None:
                await asyncio.sleep(POLL_S)


class _ExitWatch:
    """Sets `exited` when the child exits: its pidfd in the event loop (Linux 5.3+), else a poller task.

    (Not asyncio's child watchers: the gateway may run on uvloop, whose subprocess spawn forks the
    whole gateway, 40-70 ms for a 300 MB process; Popen spawns with vfork in about a millisecond.)
    """

    def __init__(self, proc: subprocess.Popen[bytes], exited: asyncio.Event):
        self._loop = asyncio.get_running_loop()
        self._fd: int | None = None
        self._task: asyncio.Task[None] | None = None
        try:
            self._fd = os.pidfd_open(proc.pid)
        except (AttributeError, OSError):

            async def poll() -> None:
                # No pidfd on this kernel: nothing to await but time.
                while proc.poll() is None:  # noqa: ASYNC110
                    await asyncio.sleep(POLL_S)
                exited.set()

            self._task = asyncio.create_task(poll())
            return

        def on_exit() -> None:
            if proc.poll() is not None:
                exited.set()
                self.close()

        self._loop.add_reader(self._fd, on_exit)

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(Exception):
                self._loop.remove_reader(fd)
            with contextlib.suppress(OSError):
                os.close(fd)
        if self._task is not None:
            self._task.cancel()
            self._task = None


# --- orphans: backends an earlier gateway left behind --------------------------------------


def _read_pid_file(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("pid"), int) else None


def _same_process(pid: int, create_time: Any) -> psutil.Process | None:
    """The live process `pid`, only if it is the one that was recorded (same start time)."""
    if not isinstance(create_time, (int, float)):
        return None
    try:
        p = psutil.Process(pid)
        if abs(p.create_time() - float(create_time)) <= _CREATE_TIME_TOLERANCE_S and _alive(p):
            return p
    except psutil.Error:
        pass
    return None


def _stop_group_sync(pgid: int, procs: list[psutil.Process], grace_s: float) -> bool:
    """SIGTERM the group, wait `grace_s`, SIGKILL, wait; True when nothing of it is left."""

    def gone() -> bool:
        return not group_members(pgid) and not any(_alive(p) for p in procs)

    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, KILL_WAIT_S)):
        _signal_group(pgid, sig)
        _signal_all(procs, sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if gone():
                return True
            time.sleep(POLL_S)
    return gone()


def cleanup_orphans(state_dir: Path, grace_s: float = 5.0) -> list[str]:
    """Stop backends that an earlier gateway left running; one message per backend stopped.

    A pid file names a process by pid AND start time: a pid the kernel reused for an
    unrelated process is left alone, and its stale file removed. A backend whose gateway is
    still alive (another gateway on the same state dir) is left alone too, and said so.
    """
    messages: list[str] = []
    directory = pid_dir(state_dir)
    if not directory.is_dir():
        return messages
    me = os.getpid()
    for path in sorted(directory.glob("*.json")):
        data = _read_pid_file(path)
        if data is None:
            with contextlib.suppress(OSError):
                path.unlink()
            continue
        model = str(data.get("model") or path.stem)
        pid = int(data["pid"])
        pgid = int(data.get("pgid") or pid)
        gw_pid = data.get("gateway_pid")
        leader = _same_process(pid, data.get("create_time"))
        if leader is None:
            # The leader is gone (or its pid now belongs to someone else). Members of its group
            # may survive it; the group id cannot be reused while they do, but only trust
            # processes started after the leader and only when the pid is not someone else's.
            members: list[psutil.Process] = []
            if not psutil.pid_exists(pid) and isinstance(data.get("create_time"), (int, float)):
                members = [p for p in group_members(pgid) if _create_time(p) >= float(data["create_time"]) - 1]
            if not members:
                with contextlib.suppress(OSError):
                    path.unlink()
                continue
        else:
            members = [leader]
        if isinstance(gw_pid, int) and gw_pid != me and _same_process(gw_pid, data.get("gateway_create_time")):
            messages.append(
                f"left backend {model} (pid {pid}) alone: it belongs to gateway pid {gw_pid}, which is still running"
            )
            continue
        if leader is not None:
            members += _processes(descendants(leader.pid))
        ok = _stop_group_sync(pgid, members, grace_s)
        gw = f" (pid {gw_pid})" if isinstance(gw_pid, int) else ""
        if ok:
            messages.append(f"stopped orphaned backend {model} (pid {pid}) left by an earlier gateway{gw}")
            with contextlib.suppress(OSError):
                path.unlink()
        else:
            messages.append(f"could not stop orphaned backend {model} (pid {pid}) left by an earlier gateway{gw}")
    return messages


def _create_time(p: psutil.Process) -> float:
    try:
        return float(p.create_time())
    except psutil.Error:
        return 0.0
