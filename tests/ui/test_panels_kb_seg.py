"""The knowledge-base and segmentation panels' handlers with a real lab (no browser): paged listing, add
without duplicates, remove, clear with confirmation, in both languages; statistics table and preview."""

from __future__ import annotations

import shutil
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from medvlab.config import Settings
from medvlab.imaging.io import load
from medvlab.services import Lab
from medvlab.ui.panels import knowledge, segmentation
from medvlab.ui.uploads import upload_folder

DATA = Path(__file__).parents[1] / "data" / "reports"
COLIN = Path("/usr/share/mricron/templates/ch2.nii.gz")


@pytest.fixture
def kb_lab(tmp_path: Path) -> Lab:
    return Lab(Settings(model="tiny", cache_dir=tmp_path))


def test_kb_panel_add_list_remove_clear(kb_lab: Lab, tmp_path: Path) -> None:
    uploads = upload_folder() / f"kb-test-{tmp_path.name}"  # as Gradio stores uploads
    uploads.mkdir(parents=True, exist_ok=True)
    files = [str(shutil.copy(DATA / n, uploads / n)) for n in ("priors.json", "lungs.csv")]
    assert knowledge.add(kb_lab, files, "English") == "Added 6 new snippet(s), 0 already stored; 6 in all."
    uploads.mkdir(parents=True, exist_ok=True)  # the panel deleted the first upload once read
    again = [str(shutil.copy(DATA / "priors.json", uploads / "again.json"))]
    assert knowledge.add(kb_lab, again, "中文") == "新增 0 条，4 条已存在；共 6 条。"
    rows, page, info = knowledge.listing(kb_lab, 1, "", "English")
    assert page == 1 and info == "Page 1 of 1 · 6 snippet(s)" and rows[0][1] == "Left pleural effusion"
    rows, page, info = knowledge.listing(kb_lab, 9, "囊肿", "中文")  # past the end: the last page
    assert page == 1 and info == "第 1/1 页 · 共 1 条" and rows[0][1] == "肝囊肿"
    assert knowledge.remove(kb_lab, rows[0][0], "English") == f"Removed snippet {rows[0][0]}: 肝囊肿"
    with pytest.raises(gr.Error, match="no snippet"):
        knowledge.remove(kb_lab, rows[0][0], "English")
    with pytest.raises(gr.Error, match="确认"):
        knowledge.clear(kb_lab, False, "中文")
    assert knowledge.clear(kb_lab, True, "English") == (
        "Removed 5 snippet(s); the knowledge base is empty.",
        False,
    )
    assert knowledge.listing(kb_lab, 1, "", "English")[2] == "Page 1 of 1 · 0 snippet(s)"


@pytest.mark.skipif(not COLIN.exists(), reason="Debian mricron-data is not installed")
def test_segmentation_panel_shows_statistics_and_preview(kb_lab: Lab) -> None:
    image = load(COLIN)
    out = segmentation.segment(kb_lab, image, 1, "auto", "English", None, lambda *a, **k: None)
    seg, _, volumes, _, files, stats, picture = out
    assert stats[0][0] == "brain" and stats[0][1] == int((seg.labels == 1).sum())
    assert stats[0][2] == pytest.approx(float(volumes[0][1]), abs=0.06)
    names = sorted(Path(f).name for f in files)
    assert names == ["mask.nii.gz", "preview.png", "statistics.json"]
    png = np.asarray(Image.open(picture).convert("RGB"))
    assert png.shape[0] == 320 and png.std() > 20
