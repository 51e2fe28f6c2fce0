"""The offline model builder: the tiny model tests use, and MedGemma-4B's shape for GPU benchmarks."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoConfig, Gemma3ForConditionalGeneration

from medvlab.vlm.tiny import MEDGEMMA_4B, SPECIAL_TOKENS, TOKENS_PER_IMAGE, gemma3_config


def test_the_medgemma_shape_has_medgemma_4bs_parameters() -> None:
    """Built on the meta device (no memory): the count google/medgemma-4b-it publishes, 4,300,079,472."""
    ids = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    config = gemma3_config(ids, vocab_size=768, shape=MEDGEMMA_4B)
    with torch.device("meta"):
        model = Gemma3ForConditionalGeneration(config)
    assert sum(p.numel() for p in model.parameters()) == 4_300_079_472
    assert (config.mm_tokens_per_image, config.vision_config.image_size) == (256, 896)
    assert config.image_token_index == ids["<image_soft_token>"]


def test_the_tiny_model_keeps_its_small_shape(tiny_dir: Path) -> None:
    config = AutoConfig.from_pretrained(tiny_dir)
    assert config.mm_tokens_per_image == TOKENS_PER_IMAGE and config.text_config.hidden_size == 64
    assert config.text_config.vocab_size < 1000


def test_a_vocabulary_larger_than_the_tokenizer_only_decodes_real_tokens(tmp_path: Path) -> None:
    """As the MedGemma-sized model has it (262,208 rows, a 768-token tokenizer), on a small shape."""
    from transformers import AutoProcessor

    from medvlab.vlm.tiny import build_tiny_model

    folder = build_tiny_model(tmp_path / "m", shape={"text_config": {"vocab_size": 4096}})
    model = Gemma3ForConditionalGeneration.from_pretrained(folder).eval()
    processor = AutoProcessor.from_pretrained(folder)
    assert model.config.text_config.vocab_size == 4096 and model.dtype == torch.bfloat16
    inputs = processor.tokenizer(
        ["Describe the chest X-ray.", "胸部X线片"], return_tensors="pt", padding=True
    )
    out = model.generate(**inputs, max_new_tokens=24, min_new_tokens=24, do_sample=False)
    new = out[:, inputs["input_ids"].shape[1] :]
    assert int(new.max()) < len(processor.tokenizer)
