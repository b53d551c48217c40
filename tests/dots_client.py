"""dots.ocr's own client, as the tests' judge (rewritten from rednote-hilab/dots.ocr, MIT licence).

What `dots_ocr/model/inference.py` sends through the official openai client, and what
`dots_ocr/utils/layout_utils.py` then does with the answer: `json.loads`, a non-empty list
of dicts, boxes mapped back from the smart_resize of the input size, every box legal. An
answer this accepts is one dots.ocr's parser writes out as layout instead of "filtered" text.
"""

from __future__ import annotations

import base64
import io
import json
import os
from typing import Any

import openai
from PIL import Image

from vlmswap.documents.resize import smart_resize

IMAGE_PREFIX = "<|img|><|imgpad|><|endofimg|>"  # written out here, not imported: the client's own text


def client(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(api_key=os.environ.get("API_KEY", "0"), base_url=base_url, max_retries=0, timeout=300)


def png_data_url(image: Image.Image) -> str:
    """PILimage_to_base64: PNG at Pillow's defaults."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("utf-8")


def ask(api: openai.OpenAI, model: str, image: Image.Image, prompt: str, prefix: str = IMAGE_PREFIX) -> str:
    """inference_with_vllm: one user message, the image then prefix + prompt; its sampling settings.

    fetch_image without min/max pixels only converts to RGB, so the page goes at its own size.
    """
    messages: Any = [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": png_data_url(image.convert("RGB"))}},
                {"type": "text", "text": f"{prefix}{prompt}"},
            ],
        }
    ]
    response = api.chat.completions.create(
        messages=messages, model=model, max_completion_tokens=32768, temperature=0.1, top_p=0.9
    )
    return response.choices[0].message.content or ""


def post_process(response: str, original: tuple[int, int], sent: tuple[int, int]) -> list[dict[str, Any]]:
    """post_process_output + post_process_cells for a layout prompt: raises where dots.ocr falls back."""
    cells = json.loads(response)
    assert isinstance(cells, list) and len(cells) > 0 and isinstance(cells[0], dict), cells
    input_h, input_w = smart_resize(sent[1], sent[0], 28, 3136, 11_289_600)
    sx, sy = input_w / original[0], input_h / original[1]
    out = []
    for cell in cells:
        b = cell["bbox"]
        out.append(
            {
                **cell,
                "bbox": [int(float(b[0]) / sx), int(float(b[1]) / sy), int(float(b[2]) / sx), int(float(b[3]) / sy)],
            }
        )
    assert all(c["bbox"][2] > c["bbox"][0] and c["bbox"][3] > c["bbox"][1] for c in out), out  # is_legal_bbox
    return out


def markdown(cells: list[dict[str, Any]]) -> str:
    """layoutjson2md with no_page_hf=True, for text elements: their texts, blank-line separated."""
    return "\n\n".join(
        str(c.get("text", "")) for c in cells if c["category"] not in ("Page-header", "Page-footer", "Picture")
    )
