"""The transformers engine in-process: greedy answers are deterministic and see the image,
streaming is token-true, limits and stop strings end answers with the right reason, sleep
and wake keep the model answering, and a missing model fails clearly without a download."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest

from tests.transformers_engine.conftest import picture
from vlmswap.worker.engines.base import GenerationRequest, Message
from vlmswap.worker.engines.transformers_engine import ModelNotAvailable, TransformersEngine


def ask(text: str = "What is written here?", image=None, **kw) -> GenerationRequest:
    kw.setdefault("max_tokens", 12)
    kw.setdefault("temperature", 0.0)
    images = [image] if image is not None else []
    return GenerationRequest(messages=[Message("user", text, images)], **kw)


def answer(engine, request: GenerationRequest):
    gen = engine.generate(request)
    pieces = list(gen)
    return "".join(pieces), pieces, gen


def test_greedy_answer_is_deterministic_and_counted(engine) -> None:
    req = ask(image=picture("hello"))
    first, _, gen = answer(engine, req)
    second, _, _ = answer(engine, req)
    assert first and first == second
    assert gen.prompt_tokens > 32  # system turn + image tokens + question
    assert gen.completion_tokens == 12 and gen.finish_reason == "length"


def test_answer_depends_on_the_image_and_the_text(engine) -> None:
    base, _, _ = answer(engine, ask("What is written here?", picture("hello")))
    other_image, _, _ = answer(engine, ask("What is written here?", picture("world", "red")))
    other_text, _, _ = answer(engine, ask("Describe the colours.", picture("hello")))
    no_image, _, _ = answer(engine, ask("What is written here?"))
    assert len({base, other_image, other_text, no_image}) == 4


@pytest.mark.parametrize(
    "placeholder", ["<|img|><|imgpad|><|endofimg|>", "<|vision_start|><|image_pad|><|vision_end|>", "<image>"]
)
def test_image_placeholders_a_client_writes_are_dropped_for_the_engines_own(engine, placeholder) -> None:
    # dots.ocr's client writes its placeholder before the prompt for vLLM; here the engine
    # places the image itself, so the client's must not become a second, empty image slot
    plain, _, _ = answer(engine, ask("What is written here?", picture("hello")))
    prefixed, _, _ = answer(engine, ask(placeholder + "What is written here?", picture("hello")))
    assert prefixed == plain
    prompt = engine.build_prompt([Message("user", placeholder + "What is written here?", [picture("hello")])])
    assert prompt.count("<|vision_start|>") == 1 and placeholder not in prompt.replace(
        "<|vision_start|><|image_pad|><|vision_end|>", ""
    )


def test_several_images_across_turns_all_reach_the_prompt(engine) -> None:
    one = engine.generate(ask(image=picture("one")))
    first_text = "".join(one)
    two = engine.generate(
        GenerationRequest(
            messages=[
                Message("system", "Answer briefly."),
                Message("user", "Compare these.", [picture("one"), picture("two", "yellow")]),
                Message("assistant", "They differ."),
                Message("user", "And this one?", [picture("three", "green", (112, 112))]),
            ],
            max_tokens=12,
            temperature=0.0,
        )
    )
    text = "".join(two)
    assert text and text != first_text
    # 224x112 pictures are 32 tokens each, the 112x112 one 16, on top of the turns' text.
    assert two.prompt_tokens >= 32 + 32 + 16 + (one.prompt_tokens - 32)


def test_streamed_pieces_join_to_the_models_own_decoding(engine) -> None:
    """The pieces are the streamer's; joined they equal decoding generate()'s tokens at once."""
    import torch

    req = ask(image=picture("stream"), max_tokens=24)
    text, pieces, gen = answer(engine, req)
    assert len(pieces) > 1
    inputs = engine.processor(text=engine.build_prompt(req.messages), images=req.images, return_tensors="pt")
    with torch.no_grad():
        out = engine.model.generate(**inputs, max_new_tokens=24, do_sample=False)
    new = out[0, inputs["input_ids"].shape[1] :]
    assert text == engine.tokenizer.decode(new, skip_special_tokens=True)
    assert gen.completion_tokens == len(new) == 24


def test_stop_string_cuts_the_answer_and_stops_generating(engine) -> None:
    full, _, _ = answer(engine, ask(image=picture("stop"), max_tokens=30))
    stop = full[10:13]
    assert stop.strip() and full.find(stop) == 10
    cut, _, gen = answer(engine, ask(image=picture("stop"), max_tokens=30, stop=[stop]))
    assert cut == full[:10]
    assert gen.finish_reason == "stop"
    assert gen.completion_tokens < 30


def test_sampling_at_temperature_runs_to_the_limit(engine) -> None:
    text, _, gen = answer(engine, ask(image=picture("warm"), max_tokens=16, temperature=1.0, top_p=0.9))
    assert text and gen.completion_tokens == 16 and gen.finish_reason == "length"


def test_request_over_the_context_is_refused(engine) -> None:
    with pytest.raises(ValueError, match="maximum context length is 4096"):
        engine.generate(ask(max_tokens=5000))


def test_closing_a_stream_early_frees_the_engine(engine) -> None:
    gen = engine.generate(ask(image=picture("early"), max_tokens=2000))
    it = iter(gen)
    assert next(it)
    started = time.monotonic()
    it.close()  # what the server does when the client goes away
    assert gen.completion_tokens < 2000
    assert engine._lock.acquire(timeout=5)
    engine._lock.release()
    assert time.monotonic() - started < 5


def test_concurrent_generations_are_served_one_at_a_time(engine) -> None:
    req = ask(image=picture("twice"))
    expected, _, _ = answer(engine, req)
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(answer(engine, req)[0])) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == [expected] * 3


def test_sleep_and_wake_leave_it_answering_the_same(engine) -> None:
    req = ask(image=picture("sleep"))
    before, _, _ = answer(engine, req)
    engine.sleep(1)
    try:
        assert engine.is_sleeping
        with pytest.raises(RuntimeError, match="sleeping"):
            list(engine.generate(req))
        engine.sleep(1)  # a second sleep is a no-op
        assert engine.is_sleeping
    finally:
        engine.wake_up()
    assert not engine.is_sleeping
    after, _, _ = answer(engine, req)
    assert after == before


def test_level_2_sleep_frees_the_weights_and_a_plain_wake_reloads_them(engine) -> None:
    req = ask(image=picture("drop"))
    before, _, _ = answer(engine, req)
    engine.sleep(2)
    try:
        assert engine.is_sleeping and engine.model is None  # dropped, as vLLM's level 2
    finally:
        engine.wake_up()
    assert engine.model is not None
    after, _, _ = answer(engine, req)
    assert after == before


def test_hub_id_loads_from_the_local_cache_only(tiny_model_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """A hub id resolves to its snapshot in the HF cache; one not cached fails, naming the cache."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    snapshot = cache / "models--vlmswap--tiny-qwen2vl" / "snapshots" / ("0" * 40)
    shutil.copytree(tiny_model_dir, snapshot)
    (cache / "models--vlmswap--tiny-qwen2vl" / "refs").mkdir()
    (cache / "models--vlmswap--tiny-qwen2vl" / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))

    eng = TransformersEngine("vlmswap/tiny-qwen2vl", device="cpu")
    eng.load()
    text, _, gen = answer(eng, ask(max_tokens=4))
    assert text and gen.completion_tokens == 4

    with pytest.raises(ModelNotAvailable, match=r"not in the Hugging Face cache .*never downloads"):
        TransformersEngine("vlmswap/not-downloaded", device="cpu").load()


def test_missing_folder_and_non_checkpoint_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelNotAvailable, match="no such model folder"):
        TransformersEngine(str(tmp_path / "nothing-here"), device="cpu").load()
    with pytest.raises(ModelNotAvailable, match=r"not a transformers checkpoint \(no config.json\)"):
        TransformersEngine(str(tmp_path), device="cpu").load()


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(not _cuda(), reason="needs a CUDA device (the CPU path is covered above)")
def test_sleep_on_cuda_moves_weights_to_pinned_host_memory_and_back(tiny_model_dir: Path) -> None:
    import torch

    eng = TransformersEngine(str(tiny_model_dir), device="cuda")
    eng.load()
    assert eng.dtype == torch.bfloat16
    req = ask(image=picture("gpu"))
    before, _, _ = answer(eng, req)
    weights = sum(t.numel() * t.element_size() for t in eng._tensors())
    allocated = torch.cuda.memory_allocated()
    eng.sleep(1)
    assert all(t.device.type == "cpu" and t.is_pinned() for t in eng._tensors())
    assert torch.cuda.memory_allocated() <= allocated - weights
    eng.wake_up()
    assert all(t.device.type == "cuda" for t in eng._tensors())
    after, _, _ = answer(eng, req)
    assert after == before
