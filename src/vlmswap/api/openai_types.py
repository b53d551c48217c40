"""The OpenAI request and response bodies that vlmswap serves, as pydantic models.

One module for both apps: the worker validates requests with these models, and both the
worker and the gateway publish them in their OpenAPI documents. Neither app lets FastAPI
parse these bodies (the gateway answers the two completion routes in its plain-ASGI proxy,
the worker reads them by hand under its size caps), so `completion_route_doc` describes them
and `vlmswap.api.openapi.install` puts the request models into the document's components.

Unknown request fields are accepted and ignored (OpenAI clients send many); responses may
carry more fields than listed (vLLM adds some).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from vlmswap.api.openapi import REF, error_responses

Role = Literal["system", "developer", "user", "assistant", "tool"]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


# --- requests ------------------------------------------------------------------------------


class StreamOptions(_Open):
    include_usage: bool = False


class TextPart(_Open):
    type: Literal["text"]
    text: str


class ImageURL(_Open):
    url: str = Field(description="A `data:image/...;base64,` URL; other URLs are refused, never fetched.")


class ImageURLPart(_Open):
    type: Literal["image_url"]
    image_url: ImageURL | str


ContentPart = Annotated[TextPart | ImageURLPart, Field(discriminator="type")]


class ChatMessage(_Open):
    role: Role
    content: str | list[ContentPart] | None = None


class SamplingParams(_Open):
    model: str = Field(description="An id from GET /v1/models (served name, alias or registry name).")
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stop: str | list[str] | None = None
    stream: bool = Field(False, description="true: the answer comes as Server-Sent Events (text/event-stream).")
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1, le=1, description="only n=1 is served")


class ChatCompletionRequest(SamplingParams):
    messages: list[ChatMessage] = Field(..., min_length=1)


class CompletionRequest(SamplingParams):
    prompt: str | list[str]


# --- responses -----------------------------------------------------------------------------


class Usage(_Open):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(_Open):
    role: Literal["assistant"]
    content: str | None


class ChatChoice(_Open):
    index: int
    message: AssistantMessage
    logprobs: Any = None
    finish_reason: str | None


class ChatCompletion(_Open):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage | None = None


class Delta(_Open):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(_Open):
    index: int
    delta: Delta
    logprobs: Any = None
    finish_reason: str | None


class ChatCompletionChunk(_Open):
    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None


class CompletionChoice(_Open):
    index: int
    text: str
    logprobs: Any = None
    finish_reason: str | None


class Completion(_Open):
    """A text completion; each streamed event is one of these too (`object` stays `text_completion`)."""

    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None


class ModelCard(_Open):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(_Open):
    object: Literal["list"]
    data: list[ModelCard]


# --- the OpenAPI description of the completion routes --------------------------------------

_KINDS: dict[str, tuple[type[BaseModel], type[BaseModel], type[BaseModel]]] = {
    "chat": (ChatCompletionRequest, ChatCompletion, ChatCompletionChunk),
    "completion": (CompletionRequest, Completion, Completion),
}

BODY_MODELS: tuple[type[BaseModel], ...] = (ChatCompletionRequest, CompletionRequest, ChatCompletionChunk)


def completion_route_doc(kind: Literal["chat", "completion"], *, errors: dict[int, str]) -> dict[str, Any]:
    """Keyword arguments for `app.post(...)` describing POST /v1/chat/completions or /v1/completions.

    The body is read by hand, so it is described here (`vlmswap.api.openapi.install` adds the
    components);
    `errors`: the statuses this app answers with, each with why.
    """
    request, answer, chunk = _KINDS[kind]
    event = {  # OpenAPI 3.1: an event stream's `schema` describes one event
        "type": "object",
        "required": ["data"],
        "properties": {
            "data": {
                "anyOf": [
                    {"const": "[DONE]", "description": "the last event"},
                    {
                        "type": "string",
                        "contentMediaType": "application/json",
                        "contentSchema": {
                            "anyOf": [
                                {"$ref": REF.format(model=chunk.__name__)},
                                {"$ref": REF.format(model="ErrorBody")},
                            ]
                        },
                        "description": f"one {chunk.__name__}; an error after the stream began comes as one error body",
                    },
                ]
            }
        },
    }
    return {
        "openapi_extra": {
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": REF.format(model=request.__name__)}}},
            }
        },
        "responses": {
            200: {
                "model": answer,
                "description": f"{answer.__name__}, or with `stream: true` an SSE stream",
                "content": {"text/event-stream": {"schema": event}},
            },
            **error_responses(errors),
        },
        "response_model": None,
    }


__all__ = [
    "BODY_MODELS",
    "AssistantMessage",
    "ChatChoice",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionRequest",
    "ChatMessage",
    "ChunkChoice",
    "Completion",
    "CompletionChoice",
    "CompletionRequest",
    "ContentPart",
    "Delta",
    "ImageURL",
    "ImageURLPart",
    "ModelCard",
    "ModelList",
    "SamplingParams",
    "StreamOptions",
    "TextPart",
    "Usage",
    "completion_route_doc",
]
