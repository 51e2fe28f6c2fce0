"""Attention maps: how much the answer's tokens attend to each image token, drawn over the image.

For Gemma 3 / MedGemma the vision tower's patches are average-pooled to a square grid of soft tokens
(16x16 = 256 for MedGemma, 4x4 for the tiny model), flattened row by row. The processor resizes each
picture to a square without keeping the aspect ratio, so grid cell (r, c) covers rows
[r*H/g, (r+1)*H/g) and columns [c*W/g, (c+1)*W/g) of the original H x W picture.

The map is computed by one extra forward pass over prompt + answer with eager attention (the only kind
that returns weights); forward hooks keep only the rows of the answer tokens, layer by layer, so memory
stays at one layer's attention matrix.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from medvlab.errors import ExplainError

# A perceptual colormap (dark purple -> red -> yellow), sampled at 5 anchors and interpolated: drawing
# a heatmap needs nothing more, and matplotlib is not worth a dependency for it.
_ANCHORS = np.array(
    [[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], dtype=np.float32
)


def colormap(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> uint8 RGB (inferno-like)."""
    x = np.clip(values, 0, 1) * (len(_ANCHORS) - 1)
    lo = np.floor(x).astype(int).clip(0, len(_ANCHORS) - 2)
    frac = (x - lo)[..., None]
    rgb = _ANCHORS[lo] * (1 - frac) + _ANCHORS[lo + 1] * frac
    return np.rint(rgb).astype(np.uint8)


def normalise(grid: np.ndarray) -> np.ndarray:
    """A grid scaled to [0, 1] between its 5th and 95th percentiles (min and max for small or peaked grids).

    Attention often piles onto one or two "sink" cells; scaled by the max alone, every other cell would be
    ~0 and the picture would look as if it had no overlay at all."""
    g = np.asarray(grid, dtype=np.float32)
    lo, hi = (float(v) for v in np.percentile(g, [5, 95]))
    if hi <= lo:
        lo, hi = float(g.min()), float(g.max())
    return np.clip((g - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(g)


def grid_to_heatmap(grid: np.ndarray, height: int, width: int) -> np.ndarray:
    """A g x g attention grid -> an H x W map in [0, 1] over the original picture (bilinear)."""
    g = normalise(grid)
    img = Image.fromarray(g, mode="F").resize((width, height), Image.Resampling.BILINEAR)
    return np.clip(np.asarray(img), 0, 1)


def cell_box(row: int, col: int, grid: int, height: int, width: int) -> tuple[int, int, int, int]:
    """Pixel rectangle (top, left, bottom, right) of grid cell (row, col) on an H x W picture."""
    return (row * height // grid, col * width // grid, (row + 1) * height // grid, (col + 1) * width // grid)


def overlay(rgb: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend a heatmap over a picture; stronger attention is more opaque."""
    colour = colormap(heat).astype(np.float32)
    a = (alpha * heat)[..., None]
    return np.rint(rgb.astype(np.float32) * (1 - a) + colour * a).astype(np.uint8)


def attention_grids(
    backend: Any, messages: list[dict[str, Any]], answer: str, span: tuple[int, int] | None = None
) -> list[np.ndarray]:
    """One g x g grid per image in ``messages``: mean attention from answer tokens to that image's tokens.

    ``span`` = (start, end) character offsets into ``answer`` restricts the rows to the tokens of that part.
    """
    import torch

    model, tokenizer = backend.model, backend.tokenizer
    # The soft-token id that vision features replace (Gemma3Processor.image_token is <start_of_image>).
    image_id = getattr(model.config, "image_token_id", None) or getattr(
        model.config, "image_token_index", None
    )
    if image_id is None:
        image_id = tokenizer.convert_tokens_to_ids(getattr(tokenizer, "image_token", "<image_soft_token>"))
    inputs = backend.prepare(messages)
    prompt_len = int(inputs["input_ids"].shape[-1])
    enc = tokenizer(answer, add_special_tokens=False, return_offsets_mapping=True)
    answer_ids = list(enc["input_ids"])
    if not answer_ids:
        raise ExplainError("The answer is empty, so there is nothing to explain.", "Ask a question first.")
    rows = list(range(len(answer_ids)))
    if span is not None:
        rows = [i for i, (s, e) in enumerate(enc["offset_mapping"]) if e > span[0] and s < span[1]]
        if not rows:
            raise ExplainError(
                f"The span {span} selects no token of the answer.", "Pick characters of the answer."
            )
    device = inputs["input_ids"].device
    ids = torch.cat([inputs["input_ids"], torch.tensor([answer_ids], device=device)], dim=-1)
    full = dict(inputs)
    full["input_ids"] = ids
    full["attention_mask"] = torch.ones_like(ids)
    if "token_type_ids" in full:
        full["token_type_ids"] = torch.cat(
            [
                inputs["token_type_ids"],
                torch.zeros((1, len(answer_ids)), dtype=inputs["token_type_ids"].dtype, device=device),
            ],
            dim=-1,
        )
    query_rows = torch.tensor([prompt_len - 1 + r for r in rows], device=device)  # logits at t predict t+1
    collected: list[torch.Tensor] = []

    def hook(_module: Any, _args: Any, output: Any) -> None:
        weights = output[1] if isinstance(output, tuple) and len(output) > 1 else None
        if weights is not None:
            collected.append(weights[0, :, query_rows, :].float().mean(dim=0).cpu())  # heads averaged

    attn_modules = [m for n, m in model.named_modules() if "language_model" in n and n.endswith("self_attn")]
    if not attn_modules:
        raise ExplainError("This model exposes no language-model attention layers.", "Use a Gemma 3 model.")
    previous = model.config._attn_implementation
    handles = [m.register_forward_hook(hook) for m in attn_modules]
    try:
        model.set_attn_implementation("eager")
        with torch.inference_mode():
            model(**full)
    finally:
        for h in handles:
            h.remove()
        model.set_attn_implementation(previous)
    if not collected:
        raise ExplainError(
            "The model returned no attention weights.", "Use a model with eager attention support."
        )
    attn = torch.stack(collected).mean(dim=0).mean(dim=0).numpy()  # layers, then answer rows -> (seq,)
    positions = np.flatnonzero(ids[0].cpu().numpy() == image_id)
    n_images = sum(
        1 for m in messages for p in m.get("content", []) if isinstance(p, dict) and p.get("type") == "image"
    )
    if n_images == 0 or len(positions) % n_images:
        raise ExplainError("The prompt holds no image tokens to map attention onto.", "Include an image.")
    per_image = len(positions) // n_images
    side = math.isqrt(per_image)
    if side * side != per_image:
        raise ExplainError(
            f"{per_image} image tokens do not form a square grid.", "Use a Gemma 3 family model."
        )
    return [attn[positions[i * per_image : (i + 1) * per_image]].reshape(side, side) for i in range(n_images)]


def heatmap_images(pictures: Sequence[Image.Image], grids: Sequence[np.ndarray]) -> list[Image.Image]:
    """Each picture with its grid drawn over it."""
    out = []
    for pic, grid in zip(pictures, grids, strict=True):
        rgb = np.asarray(pic.convert("RGB"))
        heat = grid_to_heatmap(grid, rgb.shape[0], rgb.shape[1])
        out.append(Image.fromarray(overlay(rgb, heat)))
    return out
