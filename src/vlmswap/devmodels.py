"""Tiny random-weight checkpoints (Qwen2-VL, Idefics3/SmolVLM), built locally for tests and demos.

Why: the transformers engine must be exercised end to end (tokenizer, processor with image
and video processors, chat template, vision tower, generate) on machines with no GPU and no
network. This builds a checkpoint with Qwen2-VL's real architecture and preprocessing, only
a few hundred thousand parameters big, in seconds and without any download. It is saved
like a hub checkpoint, so it loads through the same Auto classes as a real one.
"""

from __future__ import annotations

from pathlib import Path

# Qwen2-VL's special tokens, in the order of their ids in the real tokenizer (151643...).
SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# Qwen2-VL-2B-Instruct's chat template (chat_template.json on the hub).
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Qwen2's pre-tokenizer split (tokenization_qwen2.py), so words split the same way.
_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

_CORPUS = [
    "You are a helpful assistant.",
    "Describe this image. What is written on the page? Read the text in reading order.",
    "The quick brown fox jumps over the lazy dog. 0123456789",
    "Please output the layout information from the PDF image, including each layout element's "
    "bbox, its category, and the corresponding text content within the bbox.",
    "Title Text Table Picture Caption Footnote Formula List-item Page-header Page-footer Section-header",
    '[{"bbox": [10, 20, 300, 40], "category": "Text", "text": "Hello world"}]',
    "Invoice total amount date name address phone email number page of the and a to in is it",
    "(12,34),(567,890) {x1, y1, x2, y2} <html><table><tr><td>cell</td></tr></table></html>",
    "Bonjour le monde. Hallo Welt. Hola mundo. \u4f60\u597d\uff0c\u4e16\u754c\u3002",
]

# Small enough to run on any CPU in milliseconds, shaped like the real thing: head_dim 16,
# so mrope sections sum to 8; vision hidden_size == text hidden_size, as the merger needs.
_TEXT = {
    "hidden_size": 64,
    "initializer_range": 0.3,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-6,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 3, 3]},
}
_VISION = {
    "depth": 2,
    "embed_dim": 32,
    "hidden_size": 64,
    "num_heads": 2,
    "mlp_ratio": 2,
    "in_channels": 3,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
}
# At most 64 image tokens per picture keeps CPU generation quick.
_MIN_PIXELS = 4 * 28 * 28
_MAX_PIXELS = 64 * 28 * 28
_VOCAB_SIZE = 600


def _train_tokenizer(special_tokens: tuple[str, ...] = SPECIAL_TOKENS):
    """A byte-level BPE with Qwen2's pre-tokenizer, trained on the built-in corpus."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=_VOCAB_SIZE,
        min_frequency=1,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=list(special_tokens),
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    return tok


def _mute_unreadable_tokens(model, tokenizer, end_of_turn: str = "<|im_end|>") -> None:
    """Zero the output rows of tokens that are not printable ASCII (stray UTF-8 bytes,
    control characters, special tokens other than the end of turn), so greedy answers are
    readable words that differ from prompt to prompt instead of byte noise."""
    import torch

    keep = {tokenizer.convert_tokens_to_ids(end_of_turn)}
    with torch.no_grad():
        weight = model.lm_head.weight
        for token_id in range(weight.shape[0]):
            text = tokenizer.decode([token_id])
            if token_id in keep:
                continue
            printable = text.isascii() and (text.isprintable() or text == "\n")
            if token_id in tokenizer.all_special_ids or not text or not printable:
                weight[token_id].zero_()


def _fast_tokenizer(
    special_tokens: tuple[str, ...],
    chat_template: str,
    max_len: int,
    *,
    eos: str,
    pad: str,
    bos: str | None = None,
    unk: str | None = None,
):
    """A trained fast tokenizer with `special_tokens` and a chat template; returns it and the tokens' ids."""
    from transformers import PreTrainedTokenizerFast

    named = {eos, pad, bos, unk} - {None}
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=_train_tokenizer(special_tokens),
        eos_token=eos,
        pad_token=pad,
        bos_token=bos,
        unk_token=unk,
        model_max_length=max_len,
        additional_special_tokens=[t for t in special_tokens if t not in named],
    )
    tokenizer.chat_template = chat_template
    return tokenizer, {t: tokenizer.convert_tokens_to_ids(t) for t in special_tokens}


def _build_and_save(
    model_cls,
    config,
    seed: int,
    tokenizer,
    processor,
    out_dir: Path,
    *,
    bos: int,
    eos: list[int],
    pad: int,
    end_of_turn: str,
) -> Path:
    """Random weights from `seed`, readable greedy answers, the generation ids; the checkpoint saved."""
    import torch

    torch.manual_seed(seed)
    model = model_cls(config).eval()
    _mute_unreadable_tokens(model, tokenizer, end_of_turn=end_of_turn)
    gen = model.generation_config
    gen.bos_token_id, gen.eos_token_id, gen.pad_token_id = bos, eos, pad
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir


def make_tiny_qwen2vl(out_dir: Path, seed: int = 0) -> Path:
    """Build and save a tiny random-weight Qwen2-VL checkpoint into `out_dir`; return it.

    Same seed, same weights. Needs torch, torchvision, transformers and tokenizers; no network.
    """
    from transformers import (
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    tokenizer, ids = _fast_tokenizer(
        SPECIAL_TOKENS, CHAT_TEMPLATE, _TEXT["max_position_embeddings"], eos="<|im_end|>", pad="<|endoftext|>"
    )

    image_processor = Qwen2VLImageProcessor(min_pixels=_MIN_PIXELS, max_pixels=_MAX_PIXELS)
    video_processor = Qwen2VLVideoProcessor(min_pixels=_MIN_PIXELS, max_pixels=_MAX_PIXELS)
    processor = Qwen2VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=CHAT_TEMPLATE,
    )

    config = Qwen2VLConfig(
        text_config=dict(
            _TEXT,
            vocab_size=len(tokenizer),
            bos_token_id=ids["<|endoftext|>"],
            eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"],
        ),
        vision_config=dict(_VISION),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
        initializer_range=0.3,
    )
    return _build_and_save(
        Qwen2VLForConditionalGeneration,
        config,
        seed,
        tokenizer,
        processor,
        out_dir,
        bos=ids["<|endoftext|>"],
        eos=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad=ids["<|endoftext|>"],
        end_of_turn="<|im_end|>",
    )


# --- Idefics3 (SmolVLM) ------------------------------------------------------------------------

# SmolVLM's special tokens: turns end with <end_of_utterance>; an image is <fake_token_around_image>,
# a tile tag (<row_i_col_j>, or <global-img> for the whole picture) and image_seq_len <image> tokens.
SMOLVLM_SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<end_of_utterance>",
    "<fake_token_around_image>",
    "<image>",
    "<global-img>",
    *(f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)),
)

# SmolVLM-Instruct's chat template: "User:<image>text<end_of_utterance>\nAssistant:".
SMOLVLM_CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)

# Tiles of 32 px in 8 px patches, pixel-shuffled by 2: 4 <image> tokens a tile; at most 2x2 tiles
# and the global view, so a picture costs at most 20 tokens.
_SMOL_TILE = 32
_SMOL_VISION = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "image_size": _SMOL_TILE,
    "patch_size": 8,
}
_SMOL_TEXT = {
    "model_type": "llama",
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-5,
    "initializer_range": 0.3,
    "tie_word_embeddings": False,
}


def make_tiny_idefics3(out_dir: Path, seed: int = 0) -> Path:
    """Build and save a tiny random-weight Idefics3 checkpoint shaped like SmolVLM-Instruct (the
    same architecture, processor, image tiling and chat template) into `out_dir`; return it."""
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3ImageProcessor, Idefics3Processor

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer, ids = _fast_tokenizer(
        SMOLVLM_SPECIAL_TOKENS,
        SMOLVLM_CHAT_TEMPLATE,
        _SMOL_TEXT["max_position_embeddings"],
        eos="<end_of_utterance>",
        pad="<|im_end|>",
        bos="<|im_start|>",
        unk="<|endoftext|>",
    )
    scale = 2
    image_seq_len = (_SMOL_TILE // _SMOL_VISION["patch_size"]) ** 2 // scale**2
    image_processor = Idefics3ImageProcessor(
        size={"longest_edge": 2 * _SMOL_TILE}, max_image_size={"longest_edge": _SMOL_TILE}
    )
    processor = Idefics3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_len=image_seq_len,
        chat_template=SMOLVLM_CHAT_TEMPLATE,
    )
    config = Idefics3Config(
        text_config=dict(
            _SMOL_TEXT,
            vocab_size=len(tokenizer),
            bos_token_id=ids["<|im_start|>"],
            eos_token_id=ids["<end_of_utterance>"],
            pad_token_id=ids["<|im_end|>"],
        ),
        vision_config=dict(_SMOL_VISION),
        image_token_id=ids["<image>"],
        scale_factor=scale,
        tie_word_embeddings=False,
    )
    return _build_and_save(
        Idefics3ForConditionalGeneration,
        config,
        seed,
        tokenizer,
        processor,
        out_dir,
        bos=ids["<|im_start|>"],
        eos=[ids["<end_of_utterance>"]],
        pad=ids["<|im_end|>"],
        end_of_turn="<end_of_utterance>",
    )
