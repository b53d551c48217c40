"""A small real server speaking the part of the Hugging Face Hub's HTTP API that downloads use.

The model hub cannot be reached from the test machines, so `vlmswap pull` and the gateway's
pull route are tested against this instead: a real process on 127.0.0.1 that huggingface_hub
talks to through `HF_ENDPOINT`, serving model repos from local folders (the tiny model the
tests build), and misbehaving exactly as asked. Every request is logged as one JSON line, so
tests can assert what was asked for (a Range request on resume, no second GET of a file).

Run: ``python -m tests.servers.hub_server --port P --repo ORG/NAME=DIR [--repo ...] --log FILE [faults]``

Routes (what huggingface_hub 2.x sends; see its hf_api.py and file_download.py):
  GET  /health                                   200
  GET  /api/models/{repo}/revision/{rev}         repo info: id, sha (the commit), siblings
  GET  /api/models/{repo}/tree/{rev}[/{path}]    the file listing (?recursive=true), one page
  HEAD /{repo}/resolve/{rev}/{file}              X-Repo-Commit, ETag, Content-Length, Accept-Ranges
  GET  /{repo}/resolve/{rev}/{file}              the bytes; `Range: bytes=N-` gives 206 from N
  An unknown repo answers 401 with X-Error-Code: RepoNotFound, as the hub does; an unknown
  revision 404 RevisionNotFound; a missing file 404 EntryNotFound.

The commit of a repo is a hash of its files' names and contents, so it changes when a file does.

Flags:
  --cut-once FILE:N      the first GET of FILE sends its headers and N bytes of the body, then
                         closes the connection (a network cut mid-download)
  --fail-get FILE:N      the first N GETs of FILE answer 503 (a download that fails outright)
  --rate BYTES_PER_S     send file bodies at this rate (a slow link, so a pull can be watched)
  --token T              every request must carry `Authorization: Bearer T` (else 401)
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

CHUNK = 64 * 1024
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".onnx")


class Repo:
    """A folder served as a model repo at one commit."""

    def __init__(self, repo_id: str, folder: Path):
        self.id = repo_id
        self.folder = folder
        self.files: dict[str, Path] = {
            p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()
        }
        self.sha256 = {name: hashlib.sha256(p.read_bytes()).hexdigest() for name, p in self.files.items()}
        digest = hashlib.sha1()
        for name in self.files:
            digest.update(f"{name}\0{self.sha256[name]}\n".encode())
        self.commit = digest.hexdigest()

    def git_oid(self, name: str) -> str:
        data = self.files[name].read_bytes()
        return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()

    def is_lfs(self, name: str) -> bool:
        return name.endswith(LFS_SUFFIXES)

    def etag(self, name: str) -> str:
        return self.sha256[name] if self.is_lfs(name) else self.git_oid(name)

    def tree_entry(self, name: str) -> dict[str, Any]:
        size = self.files[name].stat().st_size
        entry: dict[str, Any] = {"type": "file", "oid": self.git_oid(name), "size": size, "path": name}
        if self.is_lfs(name):
            entry["lfs"] = {"oid": self.sha256[name], "size": size, "pointerSize": 134}
        return entry


class State:
    def __init__(self, args: argparse.Namespace):
        self.repos = {}
        for spec in args.repo:
            repo_id, _, folder = spec.partition("=")
            self.repos[repo_id] = Repo(repo_id, Path(folder))
        self.cut_once = dict(_file_count(x) for x in args.cut_once)
        self.fail_get = dict(_file_count(x) for x in args.fail_get)
        self.rate = args.rate
        self.token = args.token
        self.log_path = Path(args.log) if args.log else None
        self.lock = threading.Lock()

    def log(self, record: dict[str, Any]) -> None:
        if self.log_path is None:
            return
        with self.lock, self.log_path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def take(self, table: dict[str, int], name: str) -> int | None:
        """Consume one use of a fault for `name`: its value, or None when none is left."""
        with self.lock:
            left = table.get(name)
            if left is None:
                return None
            if table is self.fail_get:
                if left <= 0:
                    return None
                table[name] = left - 1
                return left
            del table[name]
            return left


def _file_count(text: str) -> tuple[str, int]:
    name, _, n = text.rpartition(":")
    return name, int(n)


RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")
INFO = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/revision/(?P<rev>[^/]+)$")
TREE = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?$")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: HubServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the JSON log is the record
        pass

    # -- helpers ----------------------------------------------------------------------------
    def _send(
        self,
        status: int,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self._record(status, len(body) if self.command != "HEAD" else 0)

    def _json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(data).encode(), headers)

    def _error(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        self._json(status, {"error": message}, {"X-Error-Code": code, "X-Error-Message": message, **(headers or {})})

    def _record(self, status: int, body_bytes: int, **extra: Any) -> None:
        self.server.state.log(
            {
                "method": self.command,
                "path": urlsplit(self.path).path,
                "status": status,
                "range": self.headers.get("Range"),
                "bytes": body_bytes,
                "auth": self.headers.get("Authorization"),
                **extra,
            }
        )

    def _repo(self, repo_id: str, rev: str) -> Repo | None:
        repo = self.server.state.repos.get(unquote(repo_id))
        if repo is None:
            self._error(401, "RepoNotFound", f"Repository Not Found for url: {self.path}.")
            return None
        if unquote(rev) not in ("main", repo.commit):
            self._error(404, "RevisionNotFound", f"Invalid rev id: {unquote(rev)}", {"X-Repo-Commit": repo.commit})
            return None
        return repo

    def _authorised(self) -> bool:
        token = self.server.state.token
        if token and self.headers.get("Authorization") != f"Bearer {token}":
            self._error(401, "RepoNotFound", "Invalid credentials in Authorization header")
            return False
        return True

    # -- routes -----------------------------------------------------------------------------
    def do_GET(self) -> None:
        self._route()

    def do_HEAD(self) -> None:
        self._route()

    def _route(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/health":
            return self._json(200, {"status": "ok"})
        if not self._authorised():
            return None
        if m := RESOLVE.match(url.path):
            return self._resolve(m["repo"], m["rev"], unquote(m["file"]))
        if self.command == "GET" and (m := INFO.match(url.path)):
            repo = self._repo(m["repo"], m["rev"])
            if repo is not None:
                self._json(
                    200,
                    {
                        "id": repo.id,
                        "modelId": repo.id,
                        "sha": repo.commit,
                        "private": False,
                        "siblings": [{"rfilename": n} for n in repo.files],
                    },
                )
            return None
        if self.command == "GET" and (m := TREE.match(url.path)):
            repo = self._repo(m["repo"], m["rev"])
            if repo is None:
                return None
            prefix = unquote(m["path"] or "").strip("/")
            recursive = parse_qs(url.query).get("recursive", ["false"])[0].lower() == "true"
            names = [n for n in repo.files if not prefix or n.startswith(prefix + "/")]
            if not recursive:
                depth = prefix.count("/") + (1 if prefix else 0)
                names = [n for n in names if n.count("/") == depth]
            return self._json(200, [repo.tree_entry(n) for n in names])
        self._error(404, "EntryNotFound", f"no route for {url.path}")
        return None

    def _resolve(self, repo_id: str, rev: str, name: str) -> None:
        repo = self._repo(repo_id, rev)
        if repo is None:
            return
        if name not in repo.files:
            self._error(404, "EntryNotFound", f'{name} does not exist on "{rev}"', {"X-Repo-Commit": repo.commit})
            return
        state = self.server.state
        path = repo.files[name]
        size = path.stat().st_size
        etag = repo.etag(name)
        headers = {"X-Repo-Commit": repo.commit, "ETag": f'"{etag}"', "Accept-Ranges": "bytes"}
        if repo.is_lfs(name):
            headers.update({"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": str(size)})
        if self.command == "HEAD":
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self._record(200, 0)
            return
        if state.take(state.fail_get, name) is not None:
            self._error(503, "ServiceUnavailable", "the hub is having a bad day")
            return
        start = 0
        if rng := self.headers.get("Range"):
            m = re.fullmatch(r"bytes=(\d+)-", rng.strip())
            if m is None or int(m[1]) >= size:
                self._send(416, b"", {"Content-Range": f"bytes */{size}"})
                return
            start = int(m[1])
        status = 206 if start else 200
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size - start))
        if start:
            headers["Content-Range"] = f"bytes {start}-{size - 1}/{size}"
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        cut = state.take(state.cut_once, name)
        limit = size - start if cut is None else min(cut, size - start)
        sent = 0
        with path.open("rb") as f:
            f.seek(start)
            began = time.monotonic()
            while sent < limit:
                chunk = f.read(min(CHUNK, limit - sent))
                if not chunk:
                    break
                try:
                    self.wfile.write(chunk)
                    self.wfile.flush()
                except OSError:  # the client went away (Ctrl-C on a pull)
                    break
                sent += len(chunk)
                if state.rate:
                    time.sleep(max(0.0, began + sent / state.rate - time.monotonic()))
        self._record(status, sent, cut=cut is not None)
        if cut is not None or sent < size - start:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)


class HubServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, addr: tuple[str, int], state: State):
        super().__init__(addr, Handler)
        self.state = state


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Hugging Face Hub-like test server")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--repo", action="append", default=[], metavar="ORG/NAME=DIR")
    p.add_argument("--log", default=None)
    p.add_argument("--cut-once", action="append", default=[], metavar="FILE:N")
    p.add_argument("--fail-get", action="append", default=[], metavar="FILE:N")
    p.add_argument("--rate", type=float, default=0.0)
    p.add_argument("--token", default=None)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    server = HubServer((args.host, args.port), State(args))
    print(f"hub_server[{os.getpid()}] on http://{args.host}:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
