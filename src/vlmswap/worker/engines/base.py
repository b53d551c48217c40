"""What a worker engine offers the worker's HTTP server.

The server parses and validates OpenAI requests (messages, data-URL images, caps) and
hands an engine a `GenerationRequest`; the engine answers with a `Generation`, an iterator
of text pieces that the server streams or joins. Engines run in a worker thread, so they
are plain blocking code.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field

from PIL import Image


@dataclass
class Message:
    role: str  # system | user | assistant
    text: str  # the message's text parts joined with "\n"
    images: list[Image.Image] = field(default_factory=list)  # decoded, RGB, capped


@dataclass
class GenerationRequest:
    messages: list[Message]
    max_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)

    @property
    def images(self) -> list[Image.Image]:
        return [im for m in self.messages for im in m.images]

    @property
    def last_user_text(self) -> str:
        for m in reversed(self.messages):
            if m.role == "user":
                return m.text
        return ""


class Generation(ABC):
    """Iterate for text pieces; counts are final once iteration ends."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"  # "stop" | "length"

    @abstractmethod
    def __iter__(self) -> Iterator[str]: ...


class Engine(ABC):
    name: str = "?"

    @abstractmethod
    def load(self) -> None:
        """Blocking; /health answers 200 only after this returns."""

    @abstractmethod
    def generate(self, request: GenerationRequest) -> Generation:
        """Start answering; may raise ValueError for a request the engine cannot serve (-> 400)."""

    # vLLM sleep mode (level 1: weights to host memory, accelerator memory released).
    def sleep(self, level: int = 1) -> None:
        self._sleeping = True

    def wake_up(self) -> None:
        self._sleeping = False

    def reload_weights(self) -> None:
        """Level 2 dropped the weights: load them again from the checkpoint (vLLM's collective_rpc).
        Engines that keep their weights asleep have nothing to do."""
        return None

    @property
    def is_sleeping(self) -> bool:
        return getattr(self, "_sleeping", False)
