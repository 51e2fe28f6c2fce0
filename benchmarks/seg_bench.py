"""3-D segmentation speed: three measurements, each against its MONAI peer in the same run.

1. ``infer``: sliding-window inference of a 256x256x160 volume (Colin27, a real head, framed in that
   field of view with air around it) with the shipped brain-mask UNet (patch 64, overlap 0.5, Gaussian
   blending, 4 windows per batch): MONAI's ``sliding_window_inference`` under ``no_grad`` vs
   medvlab's ``window_logits`` plain, then adding foreground cropping, bf16 autocast, channels-last
   and ``torch.compile``.
2. ``data``: training data-pipeline throughput (random 64^3 crops per second, 4 per volume, with flips
   and intensity jitter) over MNI152 + Colin27: a plain MONAI ``Dataset`` + ``DataLoader`` (load NIfTI,
   orient, resample to 2 mm, scale, crop) vs medvlab's cached pipeline (the same work, cached once).
3. ``e2e``: one study, DICOM series in -> DICOM SEG out (Colin27 as a 181-slice MR series): medvlab's
   ``segment_study`` vs a MONAI pipeline (PydicomReader, Orientation, Spacing, percentile scaling,
   sliding_window_inference, resize back) writing the same highdicom SEG.

    python benchmarks/seg_bench.py [--only infer|data|e2e] [--repeats 3]

Needs Debian's mricron-data (Colin27). Prints a table per part with ratios against the peer.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from timing import timed  # benchmarks/timing.py (python puts the script folder on sys.path)

logger = logging.getLogger("seg_bench")
warnings.filterwarnings("ignore")


def table(title: str, rows: list[tuple[str, float, str]], peer: float) -> None:
    print(f"\n{title}")
    print(f"{'':44s} {'seconds':>9s} {'vs peer':>8s}")
    for name, seconds, note in rows:
        print(f"{name:44s} {seconds:9.3f} {peer / seconds:7.2f}x {note}")


def bench_infer(repeats: int) -> None:
    from monai.inferers import sliding_window_inference

    from medvlab.imaging.io import load
    from medvlab.seg.data import normalize, to_ras
    from medvlab.seg.infer import InferenceOptions, Predictor, foreground_box
    from medvlab.seg.model import load_checkpoint
    from medvlab.seg.sample import colin27_paths

    ckpt = load_checkpoint("brain-mask")
    spec = ckpt.spec
    image = load(colin27_paths()[0])
    # Colin27 (181 x 217 x 181 at 1 mm, RAS) in a 256 x 256 x 160 field of view: the central 160 axial
    # slices, centred in x and y with air around the head, as a scanner would frame it.
    ras = torch.from_numpy(to_ras(image.pixels.astype("float32"), image.affine)[0])
    canvas = torch.zeros((256, 256, 160))
    z0 = (ras.shape[2] - 160) // 2
    x0, y0 = (256 - ras.shape[0]) // 2, (256 - ras.shape[1]) // 2
    canvas[x0 : x0 + ras.shape[0], y0 : y0 + ras.shape[1]] = ras[:, :, z0 : z0 + 160]
    x = normalize(canvas[None], spec.intensity)
    net = ckpt.network()
    device = torch.device("cpu")

    def monai() -> torch.Tensor:
        with torch.no_grad():
            out = sliding_window_inference(x[None], spec.patch, 4, net, overlap=0.5, mode="gaussian")
        return out  # type: ignore[return-value]

    def ours(**kw: bool) -> Callable[[], torch.Tensor]:
        # a fresh copy of the network per variant (channels-last conversion changes a module in place)
        predictor = Predictor(ckpt, device, InferenceOptions(overlap=0.5, sw_batch_size=4, **kw))
        return lambda: predictor.logits(x)

    peer = timed(monai, repeats)
    # Agreement of the labels with the run that differs only in the option added: the no-crop run
    # against MONAI, the cropped fp32 run against the no-crop run inside the head box, the rest against
    # the cropped fp32 run (cropping moves the window grid, which shifts the Gaussian blending).
    monai_labels = monai()[0].argmax(0)
    rows = [("MONAI sliding_window_inference (fp32)", peer, "")]
    variants = [
        ("medvlab window_logits, fp32, full volume", dict(crop_foreground=False)),
        ("  + foreground crop", dict()),
        ("  + foreground crop + bf16 autocast", dict(amp=True)),
        ("  + foreground crop + bf16 + channels-last", dict(amp=True, channels_last=True)),
        ("  + foreground crop + torch.compile (fp32)", dict(compile=True)),
    ]
    box = foreground_box(x, margin=max(spec.patch) // 8)
    labels: dict[str, torch.Tensor] = {}
    for name, kw in variants:
        fn = ours(**kw)
        try:
            seconds = timed(fn, repeats)
        except Exception as exc:  # compile needs a C++ toolchain; report rather than abort the bench
            print(f"{name}: failed ({type(exc).__name__}: {exc})")
            continue
        labels[name] = fn().argmax(0)
        if not kw.get("crop_foreground", True):
            note = f"labels = MONAI's on {float((labels[name] == monai_labels).float().mean()):.4%} of voxels"
        elif name == "  + foreground crop":
            full = labels[variants[0][0]]
            same = float((labels[name][box] == full[box]).float().mean()) if box else 1.0
            note = f"= full-volume run on {same:.2%} of the head box"
        else:
            same = float((labels[name] == labels[variants[1][0]]).float().mean())
            note = f"= cropped fp32 run on {same:.4%} of voxels"
        rows.append((name, seconds, note))
    table(
        f"Sliding-window inference, 256x256x160, patch {spec.patch[0]}, {torch.get_num_threads()} threads",
        rows,
        peer,
    )


def bench_data(repeats: int, workdir: Path) -> None:
    from monai.data import CacheDataset, DataLoader, Dataset, list_data_collate
    from monai.transforms import (
        Compose,
        EnsureChannelFirstd,
        LoadImaged,
        Orientationd,
        RandCropByPosNegLabeld,
        RandFlipd,
        RandScaleIntensityd,
        RandShiftIntensityd,
        ScaleIntensityRangePercentilesd,
        Spacingd,
        SpatialPadd,
    )

    from medvlab.seg.data import LoadPreparedd, pad_to_patch, training_transforms
    from medvlab.seg.model import LabelInfo, SegSpec
    from medvlab.seg.sample import write_sample_data

    paths = write_sample_data(workdir / "brain", dicom=False)
    items = [
        {"image": str(paths["train_image"]), "label": str(paths["train_label"])},
        {"image": str(paths["test_image"]), "label": str(paths["test_label"])},
    ]
    spec = SegSpec(labels=[LabelInfo("brain")], patch=(64, 64, 64), spacing=(2.0, 2.0, 2.0))
    samples, passes = 4, 10
    keys = ("image", "label")
    random_part = [
        RandCropByPosNegLabeld(
            keys=keys, label_key="label", spatial_size=spec.patch, pos=1, neg=1, num_samples=samples
        ),
        RandFlipd(keys=keys, prob=0.5, spatial_axis=0),
        RandScaleIntensityd(keys="image", factors=0.15, prob=0.5),
        RandShiftIntensityd(keys="image", offsets=0.1, prob=0.5),
    ]
    plain = Dataset(
        items * passes,
        Compose(
            [
                LoadImaged(keys=keys),
                EnsureChannelFirstd(keys=keys),
                Orientationd(keys=keys, axcodes="RAS"),
                Spacingd(keys=keys, pixdim=spec.spacing, mode=("bilinear", "nearest")),
                ScaleIntensityRangePercentilesd(
                    keys="image", lower=0.5, upper=99.5, b_min=0, b_max=1, clip=True
                ),
                SpatialPadd(keys=keys, spatial_size=spec.patch),
                *random_part,
            ]
        ),
    )
    ours_transform = Compose(
        [
            LoadPreparedd(spec, binarize=True, synth_head=False),
            pad_to_patch(spec),
            *training_transforms(spec, samples, False, augment=False)[:1],
            *random_part[1:],
        ]
    )

    def drain(ds: object) -> int:
        loader = DataLoader(ds, batch_size=1, shuffle=True, num_workers=0, collate_fn=list_data_collate)
        return sum(int(b["image"].shape[0]) for b in loader)

    crops = len(items) * passes * samples
    t0 = time.perf_counter()
    cached = CacheDataset(items, ours_transform, cache_rate=1.0, progress=False)
    cache_s = time.perf_counter() - t0
    repeated = torch.utils.data.Subset(cached, list(range(len(items))) * passes)
    peer = timed(lambda: drain(plain), max(1, repeats - 1)) / crops
    ours = timed(lambda: drain(repeated), repeats) / crops
    rows = [
        ("MONAI Dataset + DataLoader (plain)", peer, f"{1 / peer:8.1f} crops/s"),
        ("medvlab cached pipeline (steady state)", ours, f"{1 / ours:8.1f} crops/s"),
        ("medvlab incl. building the cache once", (cache_s + ours * crops) / crops, f"cache {cache_s:.2f} s"),
    ]
    table(f"Training data pipeline, {crops} crops of 64^3 per pass (seconds per crop)", rows, peer)


def bench_e2e(repeats: int, workdir: Path) -> None:
    import numpy as np
    from monai.inferers import sliding_window_inference
    from monai.transforms import (
        Compose,
        EnsureChannelFirst,
        LoadImage,
        Orientation,
        ScaleIntensityRangePercentiles,
        Spacing,
    )

    from medvlab.imaging.io import load
    from medvlab.seg.infer import Predictor
    from medvlab.seg.outputs import write_dicom_seg
    from medvlab.seg.sample import colin27_paths, write_dicom_series
    from medvlab.seg.study import segment_study

    series = write_dicom_series(load(colin27_paths()[0]), workdir / "colin27_dicom")
    predictor = Predictor.load("brain-mask")
    spec = predictor.spec
    net = predictor.net

    def ours() -> dict[str, float]:
        return segment_study(series, predictor, dicom_seg=workdir / "ours_seg.dcm").timings

    def monai() -> np.ndarray:
        pre = Compose(
            [
                LoadImage(reader="PydicomReader", image_only=True),
                EnsureChannelFirst(),
                Orientation(axcodes="RAS"),
                Spacing(pixdim=spec.spacing),
                ScaleIntensityRangePercentiles(lower=0.5, upper=99.5, b_min=0, b_max=1, clip=True),
            ]
        )
        x = pre(str(series))
        with torch.no_grad():
            logits = sliding_window_inference(x[None], spec.patch, 4, net, overlap=0.5, mode="gaussian")[0]
        labels = pre.inverse(torch.softmax(logits, 0)).argmax(0)  # type: ignore[union-attr]
        image = load(series)  # the SEG writer needs the slice order and UIDs
        arr = np.asarray(labels).astype(np.uint8).transpose(2, 1, 0)  # reader (x, y, z) -> (slice, row, col)
        arr = np.ascontiguousarray(arr[: image.n_slices])
        write_dicom_seg(arr, image, series, spec, workdir / "monai_seg.dcm")
        return arr

    peer = timed(monai, max(1, repeats - 1))
    total = timed(lambda: ours()["total"], repeats)
    parts = ours()
    breakdown = ", ".join(f"{k} {v:.2f}" for k, v in parts.items() if k != "total")
    a, b = monai() > 0, segment_study(series, predictor).segmentation.labels > 0
    dice = 2 * (a & b).sum() / max(a.sum() + b.sum(), 1)
    rows = [
        ("MONAI pipeline + highdicom", peer, f"masks agree: Dice {dice:.4f}"),
        ("medvlab segment_study", total, breakdown),
    ]
    table("End to end: 181-slice MR DICOM series -> DICOM SEG (seconds per study)", rows, peer)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", choices=["infer", "data", "e2e"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="seg-bench-") as tmp:
        work = Path(tmp)
        if args.only in (None, "infer"):
            bench_infer(args.repeats)
        if args.only in (None, "data"):
            bench_data(args.repeats, work)
        if args.only in (None, "e2e"):
            bench_e2e(args.repeats, work)


if __name__ == "__main__":
    main()
