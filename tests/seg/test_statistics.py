"""Per-structure statistics and the three-plane preview on Colin27 (a real 1 mm brain MRI), checked against
values computed here directly with nibabel/numpy on the files' own voxel grid and affine."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from medvlab.imaging.io import load
from medvlab.imaging.types import MedImage
from medvlab.seg.overlay import COLORS
from medvlab.seg.preview import write_preview
from medvlab.seg.statistics import statistics_document, structure_statistics, table_rows

COLIN = Path("/usr/share/mricron/templates/ch2.nii.gz")
pytestmark = pytest.mark.skipif(not COLIN.exists(), reason="Debian mricron-data is not installed")


@pytest.fixture(scope="module")
def colin_mask(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, np.ndarray, np.ndarray]:
    """A two-structure mask on Colin27's own grid: bright tissue in one hemisphere (1), a box (2)."""
    img: nib.Nifti1Image = nib.load(COLIN)  # type: ignore[assignment]
    data = np.asarray(img.get_fdata(), np.float64)
    labels = np.zeros(data.shape, np.uint8)
    labels[: data.shape[0] // 2][data[: data.shape[0] // 2] > np.percentile(data, 90)] = 1
    labels[100:120, 60:75, 50:90] = 2
    path = tmp_path_factory.mktemp("colin") / "mask.nii.gz"
    nib.save(nib.Nifti1Image(labels, img.affine), str(path))
    return path, labels, data, img.affine


def test_statistics_match_nibabel(colin_mask: tuple[Path, np.ndarray, np.ndarray, np.ndarray]) -> None:
    path, labels, data, affine = colin_mask
    image = load(COLIN)
    ours = load(path).pixels.astype(np.uint8)  # the mask read the way medvlab reads the image
    stats = structure_statistics(ours, image, ["bright", "box"])
    voxel_ml = abs(np.linalg.det(affine[:3, :3])) / 1000
    for value, name in ((1, "bright"), (2, "box")):
        s, mask = stats[name], labels == value
        ijk = np.argwhere(mask)
        world = nib.affines.apply_affine(affine, ijk)  # RAS mm straight from the file's affine
        assert s["voxels"] == int(mask.sum()) > 1000
        assert s["volume_ml"] == pytest.approx(mask.sum() * voxel_ml, abs=1e-3)
        inside = data[mask]
        for key, want in (
            ("mean", inside.mean()),
            ("std", inside.std()),
            ("min", inside.min()),
            ("max", inside.max()),
        ):
            assert s["intensity"][key] == pytest.approx(want, abs=2e-3), key
        assert s["centroid_mm"] == pytest.approx(world.mean(axis=0).tolist(), abs=0.01)
        assert s["bbox_mm"]["min"] == pytest.approx(world.min(axis=0).tolist(), abs=0.01)
        assert s["bbox_mm"]["max"] == pytest.approx(world.max(axis=0).tolist(), abs=0.01)
        lps = s["centroid_mm_lps"]
        assert lps == pytest.approx(
            [-s["centroid_mm"][0], -s["centroid_mm"][1], s["centroid_mm"][2]], abs=0.01
        )
        # the voxel box is tight around the structure in medvlab's (slice, row, col) order
        lo, hi = np.array(s["bbox_voxel"]["min"]), np.array(s["bbox_voxel"]["max"])
        box = ours[lo[0] : hi[0] + 1, lo[1] : hi[1] + 1, lo[2] : hi[2] + 1]
        assert (box == value).sum() == s["voxels"]
        assert sorted((hi - lo + 1).tolist()) == sorted((ijk.max(0) - ijk.min(0) + 1).tolist())
    # the box's extent in the file is 20 x 15 x 40 voxels (1 mm): its mm box is 19 x 14 x 39 between centres
    size = np.array(stats["box"]["bbox_mm"]["max"]) - np.array(stats["box"]["bbox_mm"]["min"])
    assert sorted(size.round(1).tolist()) == [14.0, 19.0, 39.0]


def test_empty_structure_and_table_rows() -> None:
    image = MedImage(np.arange(27, dtype=np.float32).reshape(3, 3, 3), spacing=(2.0, 1.0, 1.0))
    labels = np.zeros((3, 3, 3), np.uint8)
    labels[1, 1, 1:] = 1
    doc = statistics_document(labels, image, ["a", "b"], "x.nii.gz")
    a, b = doc["structures"]["a"], doc["structures"]["b"]
    assert a["voxels"] == 2 and a["volume_ml"] == 0.004 and a["intensity"]["mean"] == 13.5
    assert a["centroid_voxel"] == [1.0, 1.0, 1.5] and a["bbox_voxel"] == {"min": [1, 1, 1], "max": [1, 1, 2]}
    assert b["voxels"] == 0 and b["intensity"] is None and b["centroid_mm"] is None
    rows = table_rows(doc["structures"])
    assert rows[0][:4] == ["a", 2, 0.0, 13.5] and rows[1][3:] == ["—"] * 5
    json.dumps(doc)  # the document is plain JSON


def test_preview_png_shows_three_planes_with_the_mask(
    colin_mask: tuple[Path, np.ndarray, np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    path, *_ = colin_mask
    image = load(COLIN)
    labels = load(path).pixels.astype(np.uint8)
    shot = write_preview(image, labels, tmp_path / "preview.png")
    png = np.asarray(Image.open(tmp_path / "preview.png").convert("RGB"))
    assert png.shape[0] == 320 and png.shape[1] > 3 * 200  # three planes side by side
    assert png.std() > 20  # not blank
    for value in (1, 2):  # each structure's outline colour is drawn
        colour = COLORS[value - 1].astype(np.uint8)
        assert (png == colour).all(axis=2).sum() > 50, value
    # the planes cut through the structures' centre, numbered as the viewer numbers them
    assert set(shot.indices) == {"axial", "coronal", "sagittal"}
    assert shot.caption(image).startswith(f"axial {shot.indices['axial'] + 1}/181")


@pytest.mark.slow
def test_seg_predict_writes_statistics_and_preview(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from medvlab.cli.main import app

    out = CliRunner().invoke(app, ["seg", "predict", str(COLIN), "-o", str(tmp_path), "--preview", "--json"])
    assert out.exit_code == 0, out.output
    summary = json.loads(out.output)
    stats = json.loads((tmp_path / "ch2_statistics.json").read_text())["structures"]["brain"]
    assert summary["statistics"] == str(tmp_path / "ch2_statistics.json")
    mask = np.asarray(nib.load(tmp_path / "ch2_seg.nii.gz").dataobj) > 0  # type: ignore[attr-defined]
    assert stats["voxels"] == int(mask.sum()) and 1200 < stats["volume_ml"] < 2300
    ijk = np.argwhere(mask)
    affine = nib.load(tmp_path / "ch2_seg.nii.gz").affine  # type: ignore[attr-defined]
    assert stats["centroid_mm"] == pytest.approx(
        nib.affines.apply_affine(affine, ijk).mean(0).tolist(), abs=0.01
    )
    png = np.asarray(Image.open(tmp_path / "ch2_preview.png").convert("RGB"))
    assert png.shape[0] == 320 and (png == COLORS[0].astype(np.uint8)).all(axis=2).sum() > 100
