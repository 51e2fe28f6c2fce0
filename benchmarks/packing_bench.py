"""SFT with multimodal packing vs without, on records of mixed length, in one run.

Same "tiny but wider" Gemma 3 as benchmarks/sft_bench.py (hidden 256, 4 layers, random weights, built
offline), same real DICOM images (pydicom / pydicom-data), but records of very different lengths: one or
two images, answers from a few words to a long structured report. Each variant trains one epoch over the
same records in its own process; samples/s = records / wall seconds (reading images, building batches,
training: everything a user waits for).

* unpacked, batch 1: one record per sequence (the usual VLM setting when image counts vary);
* unpacked, batch B: B records per step, grouped by length (medvlab's default, less padding);
* packed: records packed whole into sequences of up to --pack-length tokens, attention per record.

    python benchmarks/packing_bench.py [--records 48] [--batch 4] [--pack-length 2048]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

IMAGES = ["RG1_UNCI.dcm", "CT_small.dcm", "MR_small.dcm", "693_UNCI.dcm"]
SHORT = ["No.", "Normal study.", "无异常。", "Yes, a small effusion."]
LONG = (
    "Findings: the lungs are clear without focal consolidation, effusion or pneumothorax. "
    "The cardiomediastinal silhouette is within normal limits. No acute osseous abnormality. "
    "Lines and tubes: none. Comparison: the prior study shows no interval change. Impression: "
    "no acute cardiopulmonary process. Recommendation: clinical correlation; follow-up as indicated. "
)


def data_file(folder: Path, n: int) -> Path:
    import data_store
    import pydicom

    roots = [Path(pydicom.__file__).parent / "data" / "test_files", Path(data_store.__file__).parent / "data"]
    find = {p.name: p for r in roots for p in r.glob("*.dcm")}
    for name in IMAGES:
        shutil.copy(find[name], folder / name)
    lines = []
    for i in range(n):
        two = i % 3 == 0
        images = [IMAGES[i % 4], IMAGES[(i + 1) % 4]] if two else [IMAGES[i % 4]]
        answer = SHORT[i % 4] if i % 2 else LONG * (1 + i % 3)
        question = ("Compare <image> with <image>." if two else "<image>Describe the findings.") + (
            " Prior history: chronic cough." * (i % 4)
        )
        lines.append(
            json.dumps(
                {
                    "messages": [
                        {"role": "user", "content": question},
                        {"role": "assistant", "content": answer},
                    ],
                    "images": images,
                },
                ensure_ascii=False,
            )
        )
    path = folder / "train.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run_variant(variant: str, model: str, data: Path, out: Path, batch: int, pack_length: int) -> dict:
    from medvlab.train.config import SFTTrainConfig
    from medvlab.train.sft import run_sft

    n = sum(1 for line in data.read_text().splitlines() if line.strip())
    start = time.perf_counter()
    cfg = SFTTrainConfig(
        model=model,
        data=data,
        output_dir=out,
        epochs=1,
        batch_size=1 if variant != "unpacked-batch" else batch,
        grad_accum=1,
        learning_rate=2e-4,
        logging_steps=1000,
        save_steps=10**6,
        seed=0,
        max_slices=1,
        group_by_length=True,
        completion_only_loss=True,
        packing=variant == "packed",
        max_length=pack_length if variant == "packed" else None,
        resume=False,
    )
    run_sft(cfg)
    seconds = time.perf_counter() - start
    steps = json.loads((out / "run_summary.json").read_text())["global_step"]
    return {"seconds": seconds, "samples_per_s": n / seconds, "steps": steps}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=48)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--pack-length", type=int, default=2048)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:  # child process: one variant, result as JSON on the last line
        print(
            json.dumps(
                run_variant(args.variant, args.model, args.data, args.out, args.batch, args.pack_length)
            )
        )
        return

    from medvlab.vlm.tiny import build_tiny_model

    with tempfile.TemporaryDirectory(prefix="medvlab-packing-bench-") as tmp:
        work = Path(tmp)
        model = build_tiny_model(work / "model", hidden_size=256, layers=4)
        data = data_file(work, args.records)
        lengths = record_lengths(str(model), data)
        results = {}
        for variant in ("unpacked-1", "unpacked-batch", "packed"):
            cmd = [
                sys.executable,
                __file__,
                *("--variant", variant, "--model", str(model), "--data", str(data)),
                *("--out", str(work / variant), "--batch", str(args.batch)),
                *("--pack-length", str(args.pack_length)),
            ]
            done = subprocess.run(cmd, capture_output=True, text=True, check=True)
            results[variant] = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"  {variant}: {results[variant]}", file=sys.stderr)
    print(
        f"\nSFT, 1 epoch over {args.records} records of {min(lengths)}-{max(lengths)} tokens "
        f"(mean {sum(lengths) / len(lengths):.0f}), tiny-but-wider Gemma 3 (hidden 256, 4 layers), CPU"
    )
    print(f"{'variant':28s} {'steps':>6s} {'seconds':>8s} {'samples/s':>10s} {'packed is':>10s}")
    names = {
        "unpacked-1": "unpacked, batch 1",
        "unpacked-batch": f"unpacked, batch {args.batch} grouped",
        "packed": f"packed, {args.pack_length} tokens/seq",
    }
    packed = results["packed"]["samples_per_s"]
    for key, r in results.items():
        ratio = f"{packed / r['samples_per_s']:.2f}x" if key != "packed" else ""
        print(f"{names[key]:28s} {r['steps']:6d} {r['seconds']:8.1f} {r['samples_per_s']:10.2f} {ratio:>10s}")


def record_lengths(model: str, data: Path) -> list[int]:
    """Token length of each record (as the packer sees them)."""
    from transformers import AutoProcessor

    from medvlab.config import PromptOptions
    from medvlab.train.collate import VisionSFTCollator
    from medvlab.train.data import ImageCache, load_sft
    from medvlab.train.packing import encode_records

    records = load_sft(data, ImageCache(PromptOptions(max_slices=1)))
    return [len(e) for e in encode_records(records, VisionSFTCollator(AutoProcessor.from_pretrained(model)))]


if __name__ == "__main__":
    main()
