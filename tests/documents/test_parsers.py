"""Every family's parser on real-shaped answers, through to boxes on the original page."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from tests.documents.native import FAMILIES, answer, page_elements_to_input
from vlmswap.documents import prompts
from vlmswap.documents.inputs import PageImage
from vlmswap.documents.layout import Page
from vlmswap.documents.parsers import parse_dots, parse_output, parse_qwen2, parse_qwen_json
from vlmswap.documents.pipeline import make_page
from vlmswap.documents.resize import input_size, rule_for
from vlmswap.registry.config import ModelSpec

PAGE = (1240, 1754)  # A4 at 150 dpi
ELEMENTS = [
    ("Title", [100.0, 80.0, 900.0, 140.0], "Annual report 2025"),
    ("Text", [100.0, 200.0, 1100.0, 260.0], "The quick brown fox jumps over the lazy dog."),
    ("Text", [100.0, 300.0, 1100.0, 360.0], "Zwölf Boxkämpfer jagen Viktor quer über den großen Sylter Deich."),
    ("Text", [100.0, 400.0, 700.0, 460.0], 'He said "hi" and left, {curly} [square].'),
]
JSON_FAMILIES = ("dots_ocr", "rapidocr", "qwen2_5_vl", "qwen3_vl")


def spec(family: str) -> ModelSpec:
    return ModelSpec(served_name=f"m-{family}", cmd=["x"], family=family)


def in_size(family: str, page: tuple[int, int] = PAGE) -> tuple[int, int]:
    return input_size(page[0], page[1], rule_for(spec(family)))


def run(family: str, raw: str, mode: str = "layout", page: tuple[int, int] = PAGE) -> Page:
    plan = prompts.plan(family, mode)
    return make_page(PageImage(1, Image.new("RGB", page, "white"), page), in_size(family, page), plan, raw, "m")


def native(family: str, elements=ELEMENTS, **kw) -> str:
    size = in_size(family)
    return answer(family, page_elements_to_input(elements, PAGE, size), size, **kw)


def assert_blocks(page: Page, family: str, expected=ELEMENTS, tol: float = 1.0) -> None:
    assert [b.text for b in page.blocks] == [t for _, _, t in expected]
    assert [b.index for b in page.blocks] == list(range(len(expected)))
    for block, (cat, box, _text) in zip(page.blocks, expected):
        assert block.bbox is not None
        assert max(abs(a - b) for a, b in zip(block.bbox, box)) <= tol, (block.bbox, box)
        if family in ("dots_ocr", "rapidocr"):
            assert block.category == cat


@pytest.mark.parametrize("family", FAMILIES)
def test_well_formed_answer_maps_onto_the_page(family):
    page = run(family, native(family))
    assert_blocks(page, family)
    assert page.flags == []
    assert (page.input_width, page.input_height) == in_size(family)


@pytest.mark.parametrize("family", FAMILIES)
def test_code_fence_is_stripped(family):
    page = run(family, "```json\n" + native(family) + "\n```")
    assert_blocks(page, family)
    if family in JSON_FAMILIES:
        assert "repair:code_fence" in page.flags


@pytest.mark.parametrize("family", FAMILIES)
def test_prose_around_the_answer_is_ignored(family):
    raw = "Sure! Here is the layout of the page:\n" + native(family) + "\nI hope this helps."
    page = run(family, raw)
    assert_blocks(page, family)
    if family in JSON_FAMILIES:
        assert "repair:text_around_json" in page.flags


@pytest.mark.parametrize("family", JSON_FAMILIES)
def test_elements_joined_without_commas_are_split(family):
    raw = native(family)
    joined = raw.replace("},\n  {", "}{").replace("}, {", "}{")
    assert joined.count("}{") == len(ELEMENTS) - 1
    page = run(family, joined)
    assert_blocks(page, family)
    assert f"repair:joined_elements:{len(ELEMENTS) - 1}" in page.flags


@pytest.mark.parametrize("family", JSON_FAMILIES)
def test_answer_cut_off_mid_element_keeps_what_was_complete(family):
    raw = native(family)
    cut = raw[: raw.rindex("He said") + 7]  # max_tokens hit inside the last text
    page = run(family, cut)
    assert_blocks(page, family, [*ELEMENTS[:3], (ELEMENTS[3][0], ELEMENTS[3][1], "He said")])
    assert "repair:truncated_last_element" in page.flags


@pytest.mark.parametrize("family", JSON_FAMILIES)
def test_answer_cut_off_inside_a_box_drops_only_that_element(family):
    raw = native(family)
    last_box = raw.rindex("[", 0, raw.rindex("He said"))
    page = run(family, raw[: last_box + 4])
    assert_blocks(page, family, ELEMENTS[:3])
    assert "repair:truncated_last_element" in page.flags


def test_qwen2_answer_cut_off_mid_box_keeps_complete_boxes():
    raw = native("qwen2_vl")
    page = run("qwen2_vl", raw[: raw.rindex("),(") + 2])
    assert_blocks(page, "qwen2_vl", ELEMENTS[:3])


@pytest.mark.parametrize("family", FAMILIES)
def test_repeated_elements_are_removed_and_flagged(family):
    looped = ELEMENTS[:2] + [ELEMENTS[1]] * 3 + ELEMENTS[2:]
    page = run(family, native(family, looped))
    assert_blocks(page, family)
    assert "repair:duplicates_removed:3" in page.flags


@pytest.mark.parametrize("family", FAMILIES)
def test_boxes_outside_the_image_are_clamped_or_dropped(family):
    iw, ih = in_size(family)
    size = (iw, ih)
    elements_in = [
        *page_elements_to_input(ELEMENTS[:2], PAGE, size),
        ("Text", [iw - 60.0, 500.0, iw + 300.0, 560.0], "runs off the right edge"),
        ("Picture", [iw + 20.0, ih + 20.0, iw + 200.0, ih + 200.0], ""),
    ]
    page = run(family, answer(family, elements_in, size))
    texts = [b.text for b in page.blocks]
    assert texts[:3] == [ELEMENTS[0][2], ELEMENTS[1][2], "runs off the right edge"]
    edge = page.blocks[2].bbox
    assert edge is not None and edge[2] == PAGE[0] and PAGE[0] - 70 < edge[0] < PAGE[0] - 50
    assert all(
        b.bbox is None or (0 <= b.bbox[0] < b.bbox[2] <= PAGE[0] and 0 <= b.bbox[1] < b.bbox[3] <= PAGE[1])
        for b in page.blocks
    )
    assert len(page.blocks) == 3  # the empty box wholly off the page is gone
    assert "boxes_dropped_outside_page:1" in page.flags


@pytest.mark.parametrize("family", FAMILIES)
def test_empty_answer_gives_no_blocks_and_says_so(family):
    page = run(family, "   \n")
    assert page.blocks == []
    assert "empty_output" in page.flags


@pytest.mark.parametrize("family", FAMILIES)
def test_answer_without_layout_keeps_the_text_and_flags_the_page(family):
    prose = "I cannot see any layout here, but the page says: Annual report 2025."
    page = run(family, prose)
    assert len(page.blocks) == 1 and page.blocks[0].bbox is None
    assert page.blocks[0].text == prose
    assert any(f.startswith("fallback_text") for f in page.flags)


def test_dots_broken_object_in_the_middle_is_salvaged():
    good = json.loads(native("dots_ocr"))
    parts = [json.dumps(o, ensure_ascii=False) for o in good]
    parts.insert(2, '{"bbox": [90, 600, 500, 660], "category": "Formula", "text": "$\\alpha + \\beta = \\gamma$"}')
    result = parse_dots("[" + ", ".join(parts) + "]")
    assert [b.text for b in result.blocks][2] == "$\\alpha + \\beta = \\gamma$"
    assert result.blocks[2].category == "Formula" and result.blocks[2].bbox == [90, 600, 500, 660]
    assert len(result.blocks) == 5
    assert "repair:salvaged_elements:1" in result.flags


def test_dots_broken_object_with_unescaped_quotes_keeps_its_text():
    raw = (
        '[{"bbox": [1, 2, 300, 40], "category": "Text", "text": "He said "yes" twice"}, '
        '{"bbox": [1, 50, 300, 90], "category": "Text", "text": "next"}]'
    )
    result = parse_dots(raw)
    assert [b.text for b in result.blocks] == ['He said "yes" twice', "next"]


def test_dots_layout_only_elements_have_no_text():
    raw = '[{"bbox": [10, 10, 500, 60], "category": "Title"}, {"bbox": [10, 80, 500, 400], "category": "Picture"}]'
    page = run("dots_ocr", raw, mode="layout-only")
    assert [(b.category, b.text) for b in page.blocks] == [("Title", ""), ("Picture", "")]
    assert page.mode == "layout-only"


def test_dots_single_object_instead_of_array_is_accepted():
    result = parse_dots('{"bbox": [1, 2, 30, 40], "category": "Text", "text": "alone"}')
    assert [b.text for b in result.blocks] == ["alone"]


def test_dots_unknown_category_becomes_text_and_synonyms_are_mapped():
    raw = (
        '[{"bbox":[1,2,30,40],"category":"Weird","text":"a"},{"bbox":[1,2,30,41],"category":"figure"},'
        '{"bbox":[1,2,30,42],"category":"section_header","text":"b"}]'
    )
    assert [b.category for b in parse_dots(raw).blocks] == ["Text", "Picture", "Section-header"]


def test_qwen2_bare_boxes_after_vllm_strips_special_tokens():
    raw = native("qwen2_vl", bare=True)
    assert "<|" not in raw
    page = run("qwen2_vl", raw)
    assert_blocks(page, "qwen2_vl")
    assert "qwen2:bare_boxes" in page.flags


def test_qwen2_several_boxes_for_one_reference_share_its_label():
    raw = (
        "<|object_ref_start|>the cat<|object_ref_end|><|box_start|>(100,100),(200,200)<|box_end|>"
        "<|box_start|>(300,300),(400,400)<|box_end|>"
    )
    result = parse_qwen2(raw, (1000, 1000))
    assert [(b.text, b.bbox) for b in result.blocks] == [
        ("the cat", [100, 100, 200, 200]),
        ("the cat", [300, 300, 400, 400]),
    ]


def test_qwen2_category_labels_become_categories_in_layout_only():
    raw = (
        "<|object_ref_start|>Table<|object_ref_end|><|box_start|>(100,100),(900,500)<|box_end|>\n"
        "<|object_ref_start|>Page-footer<|object_ref_end|><|box_start|>(100,950),(900,990)<|box_end|>"
    )
    page = run("qwen2_vl", raw, mode="layout-only")
    assert [(b.category, b.text) for b in page.blocks] == [("Table", ""), ("Page-footer", "")]


def test_qwen25_uses_absolute_and_qwen3_relative_coordinates():
    same = '[{"bbox_2d": [100, 200, 300, 400], "label": "Table"}]'
    abs_box = parse_qwen_json(same, (1232, 1764), relative=False).blocks[0]
    rel_box = parse_qwen_json(same, (1232, 1764), relative=True).blocks[0]
    assert abs_box.bbox == [100, 200, 300, 400] and abs_box.category == "Table"
    assert rel_box.bbox == pytest.approx([123.2, 352.8, 369.6, 705.6])


def test_qwen3_point_is_kept_as_a_point_on_the_page():
    page = run("qwen3_vl", '```json\n[{"point_2d": [500, 250], "label": "signature"}]\n```')
    (block,) = page.blocks
    assert block.text == "signature"
    assert block.bbox == pytest.approx([620, 438.5, 620, 438.5], abs=1)


@pytest.mark.parametrize("family", ["phi3_v", "generic"])
def test_text_only_family_asked_for_layout_falls_back_to_text_and_says_so(family):
    plan = prompts.plan(family, "layout")
    assert plan.mode == "text" and plan.format == "text"
    page = run(family, "# Annual report 2025\n\nThe quick brown fox.\n\nSecond paragraph.")
    assert [b.text for b in page.blocks] == ["# Annual report 2025", "The quick brown fox.", "Second paragraph."]
    assert all(b.bbox is None for b in page.blocks)
    assert page.mode == "text"
    assert any(f.startswith("layout_unsupported") for f in page.flags)


def test_dots_prompts_are_sent_verbatim_behind_the_clients_image_prefix():
    from vlmswap.documents import dots_prompts

    prefix = "<|img|><|imgpad|><|endofimg|>"  # dots_ocr/model/inference.py
    assert prompts.plan("dots_ocr", "layout").prompt == prefix + dots_prompts.layout_all()
    assert prompts.plan("rapidocr", "layout-only").prompt == prefix + dots_prompts.layout_only()
    assert prompts.plan("dots_ocr", "text").prompt == prefix + dots_prompts.ocr()
    assert dots_prompts.classify(prompts.plan("rapidocr", "layout").prompt) == "layout_all"


def test_dots_mocr_modes_send_its_prompts_and_parse_their_answers():
    from vlmswap.documents import dots_prompts

    table = dots_prompts.prompts()
    web, scene = prompts.plan("dots_ocr", "web"), prompts.plan("dots_ocr", "scene-spotting")
    assert web.prompt.endswith(table["prompt_web_parsing"]) and web.format == "dots_json"
    assert scene.prompt.endswith(table["prompt_scene_spotting"]) and scene.format == "dots_json"
    svg = prompts.plan("dots_ocr", "svg", (1232, 1764))
    assert svg.prompt.endswith('Please generate the SVG code based on the image.viewBox="0 0 1232 1764"')
    assert dots_prompts.recognise(svg.prompt) == dots_prompts.Recognised("image_to_svg", size=(1232, 1764))
    raw = 'Here it is:\n```svg\n<svg viewBox="0 0 10 10"><rect width="4" height="4"/></svg>\n```'
    result = parse_output(svg.format, raw, (10, 10))
    assert [(b.category, b.bbox, b.text) for b in result.blocks] == [
        ("Picture", None, '<svg viewBox="0 0 10 10"><rect width="4" height="4"/></svg>')
    ]
    assert result.flags == ["repair:text_around_svg"]
    assert parse_output("svg", "no drawing today", (10, 10)).flags[0].startswith("fallback_text")
    qwen = prompts.plan("qwen3_vl", "svg")
    assert qwen.mode == "text" and qwen.flags[0].startswith("svg_unsupported")
    assert prompts.plan("qwen2_vl", "scene-spotting").format == "qwen2_boxes"


def test_a_grounding_prompt_without_its_box_is_refused_and_placeholders_anywhere_are_ignored():
    from vlmswap.documents import dots_prompts

    with pytest.raises(ValueError, match="without a box"):
        dots_prompts.recognise(dots_prompts.prompts()["prompt_grounding_ocr"])
    assert dots_prompts.classify("<image>\n" + dots_prompts.ocr() + "\n") == "ocr"
    assert (
        dots_prompts.classify("<|vision_start|><|image_pad|><|vision_end|>" + dots_prompts.layout_only())
        == "layout_only"
    )
    assert dots_prompts.classify("What does this say?") is None


def test_qwen_families_get_their_native_grounding_request():
    assert prompts.plan("qwen2_vl", "layout").format == "qwen2_boxes"
    assert prompts.plan("qwen2_5_vl", "layout").format == "qwen25_json"
    assert "JSON" in prompts.plan("qwen3_vl", "layout-only").prompt
    assert prompts.plan("qwen3_vl", "text").format == "text"
    with pytest.raises(ValueError):
        prompts.plan("qwen3_vl", "poetry")


def test_dots_broken_last_object_that_is_complete_is_salvaged_not_called_truncated():
    raw = (
        '[{"bbox": [1, 2, 300, 40], "category": "Text", "text": "ok"}, '
        '{"bbox": [1, 50, 300, 90], "category": "Formula", "text": "\\alpha \\neq \\omega"}]'
    )
    result = parse_dots(raw)
    assert [b.text for b in result.blocks] == ["ok", "\\alpha \\neq \\omega"]
    assert "repair:salvaged_elements:1" in result.flags and "repair:truncated_last_element" not in result.flags
