"""smart_resize as the models compute it, and boxes that survive the trip to the model and back."""

from __future__ import annotations

import itertools

import pytest
from PIL import Image

from tests.documents.native import answer
from vlmswap.documents import prompts
from vlmswap.documents.coords import input_to_page, page_to_input
from vlmswap.documents.inputs import PageImage
from vlmswap.documents.pipeline import make_page
from vlmswap.documents.resize import FAMILY_RULES, input_size, rule_for, smart_resize, to_model_input
from vlmswap.registry.config import ModelSpec


def spec(family: str, **kw) -> ModelSpec:
    return ModelSpec(served_name="m", cmd=["x"], family=family, **kw)


SIZES = [(1754, 1240), (3508, 2480), (100, 60), (28, 28), (5000, 4000), (20, 3000), (999, 1001), (841, 595)]


def test_matches_transformers_qwen2_vl_image_processor():
    hf = pytest.importorskip("transformers.models.qwen2_vl.image_processing_qwen2_vl")
    for (h, w), (factor, lo, hi) in itertools.product(
        SIZES, [(28, 3136, 11_289_600), (28, 3136, 1_003_520), (32, 65_536, 16_777_216)]
    ):
        assert smart_resize(h, w, factor, lo, hi) == hf.smart_resize(h, w, factor, lo, hi), (h, w, factor)


@pytest.mark.parametrize("family", ["dots_ocr", "rapidocr", "qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_input_size_respects_the_family_rule(family):
    rule = FAMILY_RULES[family]
    for h, w in SIZES:
        if max(h, w) / min(h, w) > 200:
            continue
        iw, ih = input_size(w, h, rule)
        assert iw % rule.factor == 0 and ih % rule.factor == 0
        assert rule.min_pixels <= iw * ih <= rule.max_pixels or (iw, ih) == (rule.factor, rule.factor)


def test_qwen3_uses_factor_32_and_the_others_28():
    assert input_size(1240, 1754, rule_for(spec("qwen3_vl"))) == (1248, 1760)
    assert input_size(1240, 1754, rule_for(spec("qwen2_vl"))) == (1232, 1764)
    assert input_size(1240, 1754, rule_for(spec("dots_ocr"))) == (1232, 1764)


def test_dots_max_pixels_caps_a_large_scan():
    w, h = input_size(4960, 7016, rule_for(spec("dots_ocr")))  # A4 at 600 dpi
    assert w * h <= 11_289_600 and w % 28 == 0 and h % 28 == 0
    assert abs(w / h - 4960 / 7016) < 0.01


def test_registry_min_and_max_pixels_override_the_family():
    small = rule_for(spec("qwen2_vl", max_pixels=1_003_520, min_pixels=200_704))
    w, h = input_size(1240, 1754, small)
    assert w * h <= 1_003_520
    w, h = input_size(100, 100, small)
    assert w * h >= 200_704


def test_resized_input_is_a_fixed_point_so_the_server_does_not_resize_again():
    for family in ("dots_ocr", "qwen2_5_vl", "qwen3_vl"):
        rule = FAMILY_RULES[family]
        for h, w in SIZES[:6]:
            iw, ih = input_size(w, h, rule)
            assert input_size(iw, ih, rule) == (iw, ih)


def test_text_only_families_see_the_page_as_it_is():
    im = Image.new("RGB", (1241, 1754))
    assert to_model_input(im, rule_for(spec("phi3_v"))) is im
    assert to_model_input(im, rule_for(spec("dots_ocr"))).size == (1232, 1764)


def test_coords_clamp_order_and_drop():
    assert input_to_page([50, 50, 10, 10], (100, 100), (200, 200)) == [20, 20, 100, 100]
    assert input_to_page([-10, -10, 50, 250], (100, 100), (200, 200)) == [0, 0, 100, 200]
    assert input_to_page([120, 10, 150, 20], (100, 100), (200, 200)) is None
    assert input_to_page([10, 10, 10.2, 50], (100, 100), (200, 200)) is None


# A box at known page coordinates, through each family's input size and native answer, back.
ROUND_TRIP_PAGES = {
    "A4 150 dpi": (1240, 1754),
    "A4 300 dpi": (2480, 3508),
    "letter 72 dpi": (612, 792),
    "A4 600 dpi (over max_pixels)": (4960, 7016),
}


@pytest.mark.parametrize("family", ["dots_ocr", "rapidocr", "qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
@pytest.mark.parametrize("page_name", list(ROUND_TRIP_PAGES))
def test_box_survives_the_round_trip(family, page_name):
    pw, ph = ROUND_TRIP_PAGES[page_name]
    boxes = [
        [0.1 * pw, 0.05 * ph, 0.9 * pw, 0.08 * ph],
        [0.137 * pw, 0.5123 * ph, 0.4567 * pw, 0.6789 * ph],
        [0.0, 0.9 * ph, float(pw), float(ph)],
    ]
    boxes = [[round(v) for v in b] for b in boxes]
    in_size = input_size(pw, ph, rule_for(spec(family)))
    elements = [("Text", page_to_input(b, (pw, ph), in_size), f"line {i}") for i, b in enumerate(boxes)]
    raw = answer(family, elements, in_size)
    page = make_page(PageImage(1, _Sized(pw, ph), (pw, ph)), in_size, prompts.plan(family, "layout"), raw, "m")
    # The model writes integers: pixels of the input, or 1/1000 of it. Half a unit, in page pixels:
    unit = (
        0.5 * max(pw / in_size[0], ph / in_size[1])
        if family in ("dots_ocr", "rapidocr", "qwen2_5_vl")
        else 0.5 * max(pw, ph) / 1000
    )
    # Within 1 px for every family at the usual resolutions; larger pages: within half a model unit.
    tol = 1.0 if page_name in ("A4 150 dpi", "letter 72 dpi") else max(1.0, unit + 0.1)
    assert [b.text for b in page.blocks] == [f"line {i}" for i in range(3)]
    for got, want in zip(page.blocks, boxes):
        assert max(abs(a - b) for a, b in zip(got.bbox, want)) <= tol, (got.bbox, want, tol)


class _Sized:
    """Stands in for a page image where only the size matters (no 35 MP allocation per case)."""

    def __init__(self, w: int, h: int):
        self.size = (w, h)
        self.width, self.height = w, h
