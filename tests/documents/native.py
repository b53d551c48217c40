"""Model answers in each family's native format, built from known elements (what real models emit)."""

from __future__ import annotations

import json

from vlmswap.documents.coords import page_to_input

FAMILIES = ("dots_ocr", "rapidocr", "qwen2_vl", "qwen2_5_vl", "qwen3_vl")


def rel(v: float, size: int) -> int:
    return round(v / size * 1000)


def answer(
    family: str, elements: list[tuple[str, list[float], str]], input_size: tuple[int, int], bare: bool = False
) -> str:
    """`elements` are (category, box in model-input pixels, text); the answer as `family` writes it."""
    iw, ih = input_size
    if family in ("dots_ocr", "rapidocr"):
        return json.dumps(
            [{"bbox": [round(v) for v in box], "category": cat, "text": text} for cat, box, text in elements],
            ensure_ascii=False,
        )
    if family == "qwen2_vl":
        parts = []
        for _cat, (x1, y1, x2, y2), text in elements:
            coords = f"({rel(x1, iw)},{rel(y1, ih)}),({rel(x2, iw)},{rel(y2, ih)})"
            parts.append(
                f"{text}{coords}"
                if bare
                else f"<|object_ref_start|>{text}<|object_ref_end|><|box_start|>{coords}<|box_end|>"
            )
        return "\n".join(parts)
    if family == "qwen2_5_vl":
        return json.dumps(
            [{"bbox_2d": [round(v) for v in box], "text_content": text} for _cat, box, text in elements],
            ensure_ascii=False,
            indent=2,
        )
    if family == "qwen3_vl":
        return json.dumps(
            [
                {"bbox_2d": [rel(box[0], iw), rel(box[1], ih), rel(box[2], iw), rel(box[3], ih)], "text_content": text}
                for _cat, box, text in elements
            ],
            ensure_ascii=False,
            indent=2,
        )
    raise ValueError(family)


def page_elements_to_input(
    elements: list[tuple[str, list[float], str]], page_size: tuple[int, int], input_size: tuple[int, int]
) -> list[tuple[str, list[float], str]]:
    return [(c, page_to_input(b, page_size, input_size), t) for c, b, t in elements]
