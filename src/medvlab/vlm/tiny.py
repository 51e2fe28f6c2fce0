"""Build a tiny random Gemma 3 image-text-to-text model + processor, fully offline.

The result is a normal Hugging Face folder (``config.json``, safetensors, ``tokenizer.json``,
``processor_config.json``, chat template) that loads through the *same* code path as
``google/medgemma-4b-it``: ``AutoProcessor`` + ``AutoModelForImageTextToText``. Tests and
``--model tiny`` demos use it; its answers are random text, its plumbing is real.
"""

from __future__ import annotations

import json
import logging
from importlib import resources
from pathlib import Path
from typing import Any

from medvlab.config import TINY_MODEL, default_cache_dir

logger = logging.getLogger(__name__)

TINY_VERSION = "2"
"""Bump when the recipe changes so cached copies are rebuilt."""

IMAGE_SIZE = 64
PATCH_SIZE = 8
TOKENS_PER_IMAGE = 16  # 8x8 patches average-pooled to a 4x4 grid, like MedGemma's 64x64 -> 16x16

SPECIAL_TOKENS = [
    "<pad>",
    "<eos>",
    "<bos>",
    "<unk>",
    "<mask>",
    "<start_of_turn>",
    "<end_of_turn>",
    "<start_of_image>",
    "<end_of_image>",
    "<image_soft_token>",
    "<unused94>",  # MedGemma's thinking-start marker
    "<unused95>",  # MedGemma's thinking-end marker
]

CORPUS = [
    "You are an expert radiologist. Describe the findings in this image.",
    "The chest X-ray shows clear lungs without consolidation, effusion or pneumothorax.",
    "Heart size is within normal limits. The mediastinum is not widened.",
    "Axial CT of the abdomen shows a hypodense lesion in the right lobe of the liver.",
    "MRI of the brain: no acute infarct, haemorrhage or mass effect.",
    "Impression: no acute cardiopulmonary abnormality. Recommendation: clinical correlation.",
    "Findings, location, size, impression, confidence and recommendations.",
    "SLICE 1 SLICE 2 SLICE 3 SLICE 10 SLICE 20 SLICE 32",
    "This answer is for research and teaching only and is not a medical diagnosis.",
    "Is there a fracture? Yes. No. Where is the nodule? In the left upper lobe, 12 mm.",
    "胸部X线片显示双肺清晰，未见实变、胸腔积液或气胸。",
    "心脏大小在正常范围内，纵隔未见增宽。",
    "腹部CT轴位图像显示肝右叶低密度病灶。",
    "脑部磁共振：未见急性梗死、出血或占位效应。",
    "印象：未见急性心肺异常。建议：结合临床。",
    "您是一名放射科专家，请描述这张图像中的发现。",
    "仅供科研与教学使用，不构成医学诊断。",
    "是否有骨折？是。否。结节在哪里？左肺上叶，12毫米。",
]


def chat_template() -> str:
    """Gemma 3's chat template (the same text MedGemma ships)."""
    return resources.files("medvlab.vlm").joinpath("gemma3_chat_template.jinja").read_text(encoding="utf-8")


def train_tokenizer(vocab_size: int = 768) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Train a Gemma-style BPE (spaces as '▁', byte fallback) on a small bilingual corpus.

    Returns (vocab, merges) with the special tokens first and the 256 ``<0xNN>`` byte tokens, so any
    text (any language, emoji) tokenizes without ``<unk>``.
    """
    from tokenizers import Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import BPE
    from tokenizers.trainers import BpeTrainer

    byte_tokens = [f"<0x{i:02X}>" for i in range(256)]
    tok = Tokenizer(BPE(unk_token="<unk>", byte_fallback=True))
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.pre_tokenizer = pre_tokenizers.Split(pattern="▁", behavior="merged_with_next")
    trainer = BpeTrainer(
        vocab_size=vocab_size + len(byte_tokens),
        special_tokens=SPECIAL_TOKENS + byte_tokens,
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    pairs = (m.split(" ", 1) if isinstance(m, str) else m for m in model["merges"])
    merges = [(str(a), str(b)) for a, b in pairs]
    return {str(k): int(v) for k, v in model["vocab"].items()}, merges


MEDGEMMA_4B: dict[str, Any] = {
    "text_config": {
        "vocab_size": 262208,
        "hidden_size": 2560,
        "intermediate_size": 10240,
        "num_hidden_layers": 34,
        "num_attention_heads": 8,
        "num_key_value_heads": 4,
        "head_dim": 256,
        "query_pre_attn_scalar": 256,
        "sliding_window": 1024,
        "max_position_embeddings": 131072,
    },
    "vision_config": {
        "hidden_size": 1152,
        "intermediate_size": 4304,
        "num_hidden_layers": 27,
        "num_attention_heads": 16,
        "image_size": 896,
        "patch_size": 14,
        "vision_use_head": False,
    },
    "mm_tokens_per_image": 256,
}
"""MedGemma-4B's published architecture (``google/medgemma-4b-it``'s config.json: Gemma 3 4B with a SigLIP
tower, 896-pixel images as 256 tokens). ``build_tiny_model(shape=MEDGEMMA_4B)`` gives a model of its size
and shapes with random weights (the vocabulary rows past the small tokenizer are never used), for speed and
memory measurements without downloading weights."""


def gemma3_config(
    ids: dict[str, int],
    vocab_size: int,
    hidden_size: int = 64,
    layers: int = 2,
    shape: dict[str, Any] | None = None,
) -> Any:
    """The Gemma3Config of a tiny model (or of ``shape``) around the tokenizer's special-token ``ids``."""
    from transformers import Gemma3Config

    text_config: dict[str, Any] = {
        "vocab_size": vocab_size,
        "hidden_size": hidden_size,
        "intermediate_size": 2 * hidden_size,
        "num_hidden_layers": layers,
        "num_attention_heads": 4,
        "num_key_value_heads": 1,
        "head_dim": 16,
        "sliding_window": 64,
        "max_position_embeddings": 4096,
        "pad_token_id": ids["<pad>"],
        "bos_token_id": ids["<bos>"],
        "eos_token_id": [ids["<eos>"], ids["<end_of_turn>"]],
    }
    vision_config: dict[str, Any] = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": IMAGE_SIZE,
        "patch_size": PATCH_SIZE,
        "vision_use_head": False,
    }
    if shape:
        text_config.update(shape.get("text_config", {}))
        vision_config.update(shape.get("vision_config", {}))
    return Gemma3Config(
        text_config=text_config,
        vision_config=vision_config,
        mm_tokens_per_image=int((shape or {}).get("mm_tokens_per_image", TOKENS_PER_IMAGE)),
        boi_token_index=ids["<start_of_image>"],
        eoi_token_index=ids["<end_of_image>"],
        image_token_index=ids["<image_soft_token>"],
    )


def build_tiny_model(
    out_dir: str | Path,
    seed: int = 0,
    hidden_size: int = 64,
    layers: int = 2,
    shape: dict[str, Any] | None = None,
) -> Path:
    """Write a tiny random Gemma3ForConditionalGeneration and its Gemma3Processor to ``out_dir``.

    ``hidden_size`` / ``layers`` size the language model (benchmarks use a wider one); ``shape`` (e.g.
    :data:`MEDGEMMA_4B`) replaces the whole architecture, built on a GPU when there is one and saved in
    bfloat16.
    """
    import torch
    from transformers import (
        Gemma3ForConditionalGeneration,
        Gemma3ImageProcessorPil,
        Gemma3Processor,
        GemmaTokenizer,
    )

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    image_size = int((shape or {}).get("vision_config", {}).get("image_size", IMAGE_SIZE))
    image_tokens = int((shape or {}).get("mm_tokens_per_image", TOKENS_PER_IMAGE))
    vocab, merges = train_tokenizer()
    tokenizer = GemmaTokenizer(
        vocab=vocab,
        merges=merges,  # type: ignore[arg-type]  # tokenizers' BPE also takes (left, right) pairs
        extra_special_tokens={
            "boi_token": "<start_of_image>",
            "eoi_token": "<end_of_image>",
            "image_token": "<image_soft_token>",
        },
        model_specific_special_tokens=None,
    )
    tokenizer.add_special_tokens(
        {"additional_special_tokens": ["<start_of_turn>", "<end_of_turn>", "<unused94>", "<unused95>"]},
        replace_extra_special_tokens=False,
    )
    tokenizer.chat_template = chat_template()
    # The PIL flavour: the default one needs torchvision, which medvlab does not depend on.
    image_processor = Gemma3ImageProcessorPil(
        size={"height": image_size, "width": image_size},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
        do_pan_and_scan=False,
    )
    processor = Gemma3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        chat_template=chat_template(),
        image_seq_length=image_tokens,
    )

    ids = {t: int(tokenizer.convert_tokens_to_ids(t)) for t in SPECIAL_TOKENS}  # type: ignore[arg-type]
    config = gemma3_config(ids, len(tokenizer), hidden_size, layers, shape)
    torch.manual_seed(seed)
    device = "cuda" if shape and torch.cuda.is_available() else "cpu"  # 4B random weights: seconds on a GPU
    with torch.device(device):
        model = Gemma3ForConditionalGeneration(config).eval()
    if shape:
        model = model.to(torch.bfloat16)
        # A vocabulary larger than the tokenizer (MedGemma's 262,208 rows against its 768 tokens) keeps the
        # LM head's real cost; zeroed rows (the head is tied to them) score 0, below the best real token's
        # logit, so greedy decoding only emits tokens the tokenizer can decode.
        with torch.no_grad():
            model.get_input_embeddings().weight[len(tokenizer) :].zero_()
    # transformers initialises the multimodal projection to zeros, which would make the random model blind
    # (no image signal reaches the text, no gradient reaches the vision tower): give it small random weights.
    with torch.no_grad():
        model.model.multi_modal_projector.mm_input_projection_weight.normal_(0.0, 0.5)
    model.generation_config.eos_token_id = [ids["<eos>"], ids["<end_of_turn>"]]
    model.generation_config.pad_token_id = ids["<pad>"]
    model.generation_config.bos_token_id = ids["<bos>"]
    model.save_pretrained(out)
    processor.save_pretrained(out)
    (out / "MEDVLAB_TINY").write_text(TINY_VERSION)
    logger.info(
        "built tiny Gemma 3 model in %s (%d parameters)", out, sum(p.numel() for p in model.parameters())
    )
    return out


def tiny_model_dir(cache_dir: Path | None = None) -> Path:
    """Folder of the cached tiny model, built on first use (a second or two on a CPU)."""
    folder = (cache_dir or default_cache_dir()) / f"{TINY_MODEL}-gemma3-v{TINY_VERSION}"
    marker = folder / "MEDVLAB_TINY"
    if not (marker.exists() and marker.read_text() == TINY_VERSION):
        build_tiny_model(folder)
    return folder
