"""Request traces: JSON Lines of `{"t": seconds, "model": id, "duration_s": seconds}`.

Three uses: `vlmswap simulate --trace` replays one (`read`), `vlmswap trace generate` makes
synthetic ones from a seed (`generate`), and the gateway records its own traffic when
`gateway.trace_path` is set (`Recorder`), so a user can replay their own day against another
pool policy or registry.

A line: `t` (seconds; any origin: epoch seconds from a recording, or 0 = midnight of day one
in a synthetic trace), `model` (an id the registry resolves: served name, alias or registry
name), and optionally `duration_s` (how long the model serves it, default 1 s). Lines may
come in any order (a recording writes each request when it ends); they are replayed in order
of `t`. Other keys are ignored.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlmswap.registry.config import Registry

DEFAULT_DURATION_S = 1.0


@dataclass(frozen=True)
class Request:
    t: float
    model: str  # the registry name
    duration_s: float = DEFAULT_DURATION_S


class TraceError(Exception):
    """One bad line: `str()` is `FILE:LINE: reason`."""

    def __init__(self, path: str, line: int, reason: str):
        self.path, self.line, self.reason = path, line, reason
        super().__init__(f"{path}:{line}: {reason}" if line else f"{path}: {reason}")


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def parse_line(text: str, registry: Registry) -> Request:
    """One line of a trace, or ValueError saying what is wrong with it."""
    try:
        d = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(d, dict):
        raise ValueError('a line must be a JSON object like {"t": 12.5, "model": "qwen3-vl-2b"}')
    t, model, dur = d.get("t"), d.get("model"), d.get("duration_s", DEFAULT_DURATION_S)
    if not isinstance(t, int | float) or not _number(t):
        raise ValueError(f"`t` must be a number of seconds, not {t!r}")
    if not isinstance(model, str) or not model:
        raise ValueError(f"`model` must be a model id, not {model!r}")
    name = registry.resolve(model)
    if name is None:
        raise ValueError(f"unknown model {model!r} (the registry knows {', '.join(registry.known_ids())})")
    if not isinstance(dur, int | float) or not _number(dur) or dur < 0:
        raise ValueError(f"`duration_s` must be a number of seconds >= 0, not {dur!r}")
    return Request(float(t), name, float(dur))


def read(path: Path, registry: Registry) -> list[Request]:
    """Every request of the file at `path`, in order of `t`; TraceError at the first bad line."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TraceError(source, 0, getattr(exc, "strerror", None) or str(exc)) from None
    out = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(parse_line(line, registry))
        except ValueError as exc:
            raise TraceError(source, i, str(exc)) from None
    if not out:
        raise TraceError(source, 0, "no requests in it")
    out.sort(key=lambda r: r.t)
    return out


def dumps(requests: Iterable[Request]) -> str:
    return "".join(
        json.dumps({"t": round(r.t, 3), "model": r.model, "duration_s": round(r.duration_s, 3)}) + "\n"
        for r in requests
    )


# --- the generator --------------------------------------------------------------------------

# Roles in the default registry's names (the GPU models of the first user's 12 GB card);
# `models=` maps them onto another registry in order.
ROLES = ("qwen3-vl-2b", "dots-ocr", "qwen2-vl-2b", "phi-3.5-vision", "dots-mocr")
KINDS = ("bursty-groups", "diurnal", "documents-chat", "sessions")


def _chat_duration(rng: random.Random) -> float:
    """An interactive answer: lognormal around 2 s (a few hundred tokens), within [0.3, 20] s."""
    return min(20.0, max(0.3, rng.lognormvariate(math.log(2.0), 0.6)))


def bursty_groups(rng: random.Random, m: list[str], hours: float = 8.0) -> list[Request]:
    """Models become active in groups (Prism's traces; Aegaeon 3): a burst is one application's
    workflow over a batch of items, each item passing its models in order, 20 s apart (a
    document QA flow: layout with dots-ocr, boxes with qwen2-vl, the answer from qwen3-vl, the
    figures described by phi-3.5-vision; a web page parsed by dots-mocr then discussed with
    qwen3-vl; an image described by phi-3.5-vision then grounded), paced like a person reading
    the answers (an item every 80 s + about 5 min). The next burst is often the same workflow
    again. Beside the bursts, an interactive chat request every 5 min or so."""
    workflows = [([m[1], m[2], m[0], m[3]], 0.5), ([m[4], m[0]], 0.25), ([m[3], m[2], m[0]], 0.25)]
    flows, weights = [w for w, _ in workflows], [p for _, p in workflows]
    out: list[Request] = []
    t, end = 0.0, hours * 3600
    flow = rng.choices(flows, weights)[0]
    while t < end:
        if rng.random() > 0.6:
            flow = rng.choices(flows, weights)[0]
        item = t
        for _ in range(rng.randint(3, 12)):  # the items of one batch
            for step, model in enumerate(flow):  # its models in order
                out.append(Request(item + 20.0 * step, model, _chat_duration(rng)))
            item += 20.0 * len(flow) + rng.expovariate(1 / 300)
        t = item + rng.expovariate(1 / (8 * 60))  # a pause between bursts
    t = rng.expovariate(1 / 300)
    while t < end:  # interactive chat beside the bursts
        out.append(Request(t, rng.choices([m[0], m[4]], [0.7, 0.3])[0], _chat_duration(rng)))
        t += rng.expovariate(1 / 300)
    out.sort(key=lambda r: r.t)
    return out


def sessions(rng: random.Random, m: list[str], hours: float = 8.0) -> list[Request]:
    """Less structure: a session uses one group of three models for a while, one model at a time in
    short runs, in no fixed order, with 10 % stray requests for the two models outside it; the
    next session often returns to the same group."""
    groups = [[m[0], m[1], m[2]], [m[3], m[4], m[0]], [m[1], m[3], m[2]]]
    rng.shuffle(groups)
    out: list[Request] = []
    t, end = 0.0, hours * 3600
    g = 0
    while t < end:
        if rng.random() > 0.5:
            g = rng.randrange(len(groups))
        group = groups[g]
        session_end = t + rng.expovariate(1 / (25 * 60))
        current = rng.choice(group)
        while t < min(session_end, end):
            if rng.random() < 0.1:
                model = rng.choice([x for x in m if x not in group])  # a stray
            else:
                if rng.random() > 0.7:
                    current = rng.choice(group)
                model = current
            out.append(Request(t, model, _chat_duration(rng)))
            t += rng.expovariate(1 / 30)
        t += rng.expovariate(1 / (5 * 60))  # a pause between sessions
    return out


def diurnal(rng: random.Random, m: list[str], days: int = 2) -> list[Request]:
    """A working day's mix by hour: OCR in the morning, chat about images in the afternoon, a few
    requests in the evening, a document batch at night; a 5 % tail over every model. Inside an
    hour's mix a model keeps being asked with chance 1/2, else the next is drawn from the mix."""
    mixes: list[tuple[range, float, dict[str, float]]] = [
        (range(2, 3), 6.0, {m[4]: 1.0}),  # the night's batch, a page every ~6 s
        (range(8, 12), 20.0, {m[1]: 0.5, m[0]: 0.3, m[2]: 0.2}),
        (range(12, 13), 90.0, {m[0]: 0.6, m[3]: 0.4}),
        (range(13, 18), 20.0, {m[3]: 0.4, m[0]: 0.3, m[2]: 0.2, m[1]: 0.1}),
        (range(18, 23), 120.0, {m[0]: 0.6, m[4]: 0.4}),
    ]
    out: list[Request] = []
    for day in range(days):
        for hours, gap, mix in mixes:
            t, end = (day * 24 + hours.start) * 3600.0, (day * 24 + hours.stop) * 3600.0
            names, weights = list(mix), list(mix.values())
            current = rng.choices(names, weights)[0]
            t += rng.expovariate(1 / gap)
            while t < end:
                batch = len(mix) == 1
                if not batch and rng.random() < 0.05:
                    model = rng.choice(m)
                else:
                    if rng.random() > 0.5:
                        current = rng.choices(names, weights)[0]
                    model = current
                dur = min(8.0, max(1.0, rng.gauss(3.0, 0.8))) if batch else _chat_duration(rng)
                out.append(Request(t, model, dur))
                t += rng.expovariate(1 / gap)
    return out


def documents_chat(rng: random.Random, m: list[str], hours: float = 4.0) -> list[Request]:
    """Document jobs (pages for dots-ocr, one every 2 s while a job of 50-200 pages runs) beside
    interactive chat (qwen3-vl mostly, phi-3.5-vision, a little grounding with qwen2-vl)."""
    out: list[Request] = []
    end = hours * 3600
    t = rng.expovariate(1 / 600)
    while t < end:  # the jobs
        for _ in range(rng.randint(50, 200)):
            out.append(Request(t, m[1], min(10.0, max(1.0, rng.gauss(4.0, 1.0)))))
            t += 2.0
        t += rng.expovariate(1 / (40 * 60))
    t = rng.expovariate(1 / 30)
    while t < end:  # the chat
        model = rng.choices([m[0], m[3], m[2]], [0.7, 0.25, 0.05])[0]
        out.append(Request(t, model, _chat_duration(rng)))
        t += rng.expovariate(1 / 30)
    out.sort(key=lambda r: r.t)
    return out


GENERATORS: dict[str, Callable[[random.Random, list[str]], list[Request]]] = {
    "bursty-groups": bursty_groups,
    "diurnal": diurnal,
    "documents-chat": documents_chat,
    "sessions": sessions,
}


def generate(kind: str, seed: int, models: list[str] | None = None) -> list[Request]:
    """A synthetic trace of `kind` (KINDS); the same seed gives the same trace. `models`: five names
    for the roles of ROLES (default: the default registry's)."""
    if kind not in GENERATORS:
        raise ValueError(f"unknown trace kind {kind!r} (one of {', '.join(KINDS)})")
    m = list(models or ROLES)
    if len(m) < len(ROLES):
        raise ValueError(f"{kind} needs {len(ROLES)} models for its roles ({', '.join(ROLES)}), got {len(m)}")
    reqs = GENERATORS[kind](random.Random(f"{kind}:{seed}"), m)
    return [Request(round(r.t, 3), r.model, round(r.duration_s, 3)) for r in reqs]


# --- recording --------------------------------------------------------------------------------


class Recorder:
    """Appends the gateway's requests to a JSON Lines file, off the request path: `add` is a list
    append; `flush` (the manager's background task, in a thread) writes what has gathered."""

    def __init__(self, path: Path):
        self.path = path
        self._lines: list[str] = []
        self.written = 0

    def add(self, t: float, model: str, duration_s: float | None) -> None:
        self._lines.append(
            f'{{"t":{t:.3f},"model":{json.dumps(model)}'
            + (f',"duration_s":{duration_s:.3f}}}\n' if duration_s is not None else "}\n")
        )

    def pending(self) -> int:
        return len(self._lines)

    def take(self) -> str:
        """What has gathered since the last take (the loop's side: swap the list, no lock needed)."""
        lines, self._lines = self._lines, []
        return "".join(lines)

    def write(self, text: str) -> None:
        """Append `text` (from `take`) to the file; in a thread, never on the loop."""
        if not text:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(text)
        self.written += text.count("\n")


__all__ = [
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
]
