"""The Lab use cases with the tiny model and real images."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from medvlab.config import Settings
from medvlab.errors import InputRefusedError, RequestError
from medvlab.services import Lab
from medvlab.vlm.prompting import DISCLAIMERS


def test_ask_streams_an_answer_that_ends_with_the_disclaimer(lab: Lab, dicom_files: dict[str, Path]) -> None:
    chunks = list(lab.ask(dicom_files["RG1_UNCI.dcm"], "Is there a pneumothorax?"))
    assert len(chunks) >= 2
    assert chunks[-1].strip() == DISCLAIMERS["en"]
    zh = "".join(lab.ask(dicom_files["CT_small.dcm"], "有没有出血？"))
    assert zh.endswith(DISCLAIMERS["zh"])


def test_empty_question_is_refused(lab: Lab, dicom_files: dict[str, Path]) -> None:
    with pytest.raises(RequestError, match="empty"):
        lab.ask(dicom_files["CT_small.dcm"], "   ")


def test_data_uri_local_path_and_remote_policy(
    lab: Lab, dicom_files: dict[str, Path], tmp_path: Path
) -> None:
    data = base64.b64encode(dicom_files["CT_small.dcm"].read_bytes()).decode()
    assert lab.load_image_reference(f"data:application/dicom;base64,{data}").modality == "CT"
    with pytest.raises(RequestError, match="base64"):
        lab.load_image_reference("data:application/dicom;base64,@@@not-base64@@@")
    with pytest.raises(InputRefusedError, match="Remote image URLs"):
        lab.load_image_reference("https://example.org/cxr.png")
    with pytest.raises(InputRefusedError, match="MEDVLAB_ALLOWED_PATHS"):
        lab.load_image_reference(str(dicom_files["CT_small.dcm"]))


def test_allowed_paths_and_traversal(dicom_files: dict[str, Path], tmp_path: Path) -> None:
    root = tmp_path / "allowed"
    root.mkdir()
    (root / "ct.dcm").write_bytes(dicom_files["CT_small.dcm"].read_bytes())
    (tmp_path / "secret.dcm").write_bytes(dicom_files["CT_small.dcm"].read_bytes())
    lab = Lab(Settings(model="tiny", allowed_paths=[root]))
    assert lab.load_image_reference(f"file://{root / 'ct.dcm'}").modality == "CT"
    with pytest.raises(InputRefusedError):
        lab.load_image_reference(str(root / ".." / "secret.dcm"))


def test_model_load_failure_is_remembered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from medvlab.errors import ModelNotFoundError

    lab = Lab(Settings(model=str(tmp_path / "missing-model")))
    for _ in range(2):
        with pytest.raises(ModelNotFoundError):
            _ = lab.backend
    assert lab.load_error is not None and not lab.backend_loaded


def test_chat_cites_measured_volumes(
    lab: Lab, dicom_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The prompt carries the measurements and the answer lists them, in the user's language."""
    from medvlab.vlm.prompting import Turn

    image = lab.load_image(dicom_files["CT_small.dcm"])
    seen: list[Any] = []
    original = lab.backend.stream

    def spy(messages: Any, *args: Any, **kw: Any) -> Any:
        seen.append(messages)
        return original(messages, *args, **kw)

    monkeypatch.setattr(lab.backend, "stream", spy)
    volumes = {"liver": 1520.4}
    answer = "".join(lab.chat([Turn("user", "How big is the liver?", [image])], measurements=volumes))
    zh = "".join(lab.chat([Turn("user", "肝脏有多大？", [image])], measurements=volumes))
    assert "liver: 1520.4 mL" in answer and "Measurements (brain-mask" in answer
    assert "测量值" in zh and "liver: 1520.4 mL" in zh
    prompt = json.dumps(seen[0], ensure_ascii=False, default=str)
    assert "Volumes measured by the automatic segmentation model" in prompt and "liver 1520.4 mL" in prompt


def test_segment_and_overlay(lab: Lab, brain_data: dict[str, Path]) -> None:
    image = lab.load_image(brain_data["test_image"])
    seg = lab.segment(image)
    assert lab.predictor() is lab.predictor("brain-mask")  # loaded once
    index = int((seg.labels > 0).sum(axis=(1, 2)).argmax())
    plain, drawn = lab.preview(image, index), lab.overlay(image, seg, index)
    assert drawn.shape == plain.shape and drawn.dtype == plain.dtype
    inside = seg.labels[index] > 0
    assert (drawn[inside][:, 0].astype(int) - plain[inside][:, 0]).mean() > 10  # tinted red
    assert (drawn[~inside] == plain[~inside]).all()


def test_an_adapter_that_trained_the_vision_tower_is_merged_for_the_engine(
    sft_adapter: Path, cache_dir: Path
) -> None:
    """vLLM/SGLang put LoRA on the language model only: the default adapter is merged into the model the
    engine serves; another vision adapter is refused with the fix."""
    from medvlab.errors import ConfigError
    from medvlab.services.adapters import for_engine
    from medvlab.vlm.launch import adapter_names

    settings = Settings(model="tiny", cache_dir=cache_dir, adapter=str(sft_adapter.resolve()))
    names = adapter_names([str(sft_adapter)])
    plan = for_engine(settings, names)
    (name,) = names
    assert plan.merged == name and plan.adapters == {}
    assert plan.model == str(cache_dir / "merged" / name)
    config = json.loads((Path(plan.model) / "config.json").read_text())
    assert "vision_config" in config  # a whole image-text-to-text model the engine can serve
    with pytest.raises(ConfigError, match="vision tower.*medvlab train merge"):
        for_engine(settings.model_copy(update={"adapter": None}), {"cxr": str(sft_adapter)})
