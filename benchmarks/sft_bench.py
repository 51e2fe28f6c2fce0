"""SFT throughput and peak memory: medvlab's recipe vs a plain TRL SFTTrainer script, in one run.

Both train the same LoRA on the same "tiny but wider" Gemma 3 (hidden 256, 4 layers, random weights, built
offline) with the same records: real DICOM images from pydicom / pydicom-data (a 1955x1841 chest X-ray,
CT and MR slices, a 10-frame MR volume) and answers of varied length. Each variant runs in its own process
so peak RSS is its own. samples/s counts everything a user waits for: reading images, building batches,
training.

* plain TRL: images decoded into a datasets.Dataset, TRL's own vision collator (the documented recipe);
* medvlab: `medvlab train sft` (images decoded and windowed once, batches grouped by length);
* medvlab without the image cache, and without length grouping, to show what each buys.

    python benchmarks/sft_bench.py [--steps 24] [--batch 4]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RECORD_IMAGES = ["RG1_UNCI.dcm", "CT_small.dcm", "MR_small.dcm", "emri_small.dcm", "693_UNCI.dcm"]
ANSWERS = [
    "No acute abnormality.",
    "The lungs are clear. No consolidation, effusion or pneumothorax. Heart size normal.",
    "Axial slice at the level of the liver; a 2 cm hypodense lesion in segment VII, most likely a cyst.",
    "未见异常。",
    "Slices of a brain MRI; no acute infarct, haemorrhage or mass effect; ventricles normal in size.",
]


def data_file(folder: Path, n: int) -> Path:
    import data_store
    import pydicom

    roots = [Path(pydicom.__file__).parent / "data" / "test_files", Path(data_store.__file__).parent / "data"]
    find = {p.name: p for r in roots for p in r.glob("*.dcm")}
    for name in RECORD_IMAGES:
        shutil.copy(find[name], folder / name)
    lines = []
    for i in range(n):
        img, ans = RECORD_IMAGES[i % len(RECORD_IMAGES)], ANSWERS[(i * 3) % len(ANSWERS)]
        lines.append(
            json.dumps(
                {
                    "messages": [
                        {"role": "user", "content": "<image>Describe the findings."},
                        {"role": "assistant", "content": ans},
                    ],
                    "images": [img],
                }
            )
        )
    path = folder / "train.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_variant(variant: str, model: str, data: Path, out: Path, steps: int, batch: int) -> dict[str, float]:
    start = time.perf_counter()
    if variant == "trl":
        from datasets import Dataset
        from peft import LoraConfig
        from transformers import AutoModelForImageTextToText, AutoProcessor
        from trl import SFTConfig, SFTTrainer

        from medvlab.imaging import load, render_slice
        from medvlab.imaging.windows import to_pil

        rows = []
        for line in data.read_text().splitlines():
            rec = json.loads(line)
            image = load(data.parent / rec["images"][0])  # what a plain script must do for DICOM
            pil = to_pil(render_slice(image, image.n_slices // 2))
            rows.append(
                {
                    "messages": [
                        {
                            "role": "user",
                            "content": [
                                {"type": "image"},
                                {"type": "text", "text": "Describe the findings."},
                            ],
                        },
                        {
                            "role": "assistant",
                            "content": [{"type": "text", "text": rec["messages"][1]["content"]}],
                        },
                    ],
                    "images": [pil],
                }
            )
        processor = AutoProcessor.from_pretrained(model)
        net = AutoModelForImageTextToText.from_pretrained(model, attn_implementation="eager")
        args = SFTConfig(
            output_dir=str(out),
            max_steps=steps,
            per_device_train_batch_size=batch,
            learning_rate=2e-4,
            logging_steps=steps,
            save_strategy="no",
            report_to=[],
            use_cpu=True,
            seed=0,
            disable_tqdm=True,
        )
        trainer = SFTTrainer(
            model=net,
            args=args,
            train_dataset=Dataset.from_list(rows),
            processing_class=processor,
            peft_config=LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"),
        )
        trainer.train()
    else:
        from medvlab.train.config import SFTTrainConfig
        from medvlab.train.sft import run_sft

        cfg = SFTTrainConfig(
            model=model,
            data=data,
            output_dir=out,
            max_steps=steps,
            batch_size=batch,
            grad_accum=1,
            learning_rate=2e-4,
            logging_steps=steps,
            save_steps=10**6,
            seed=0,
            max_slices=1,
            cache_images=variant != "medvlab-nocache",
            group_by_length=variant != "medvlab-nogroup",
            completion_only_loss=False,
            resume=False,
        )
        run_sft(cfg)
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, "samples_per_s": steps * batch / seconds, "peak_rss_mb": peak_mb}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--records", type=int, default=40)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:  # child process: one variant, result as JSON on the last line
        result = run_variant(args.variant, args.model, args.data, args.out, args.steps, args.batch)
        print(json.dumps(result))
        return

    from medvlab.vlm.tiny import build_tiny_model

    with tempfile.TemporaryDirectory(prefix="medvlab-sft-bench-") as tmp:
        work = Path(tmp)
        model = build_tiny_model(work / "model", hidden_size=256, layers=4)
        data = data_file(work, args.records)
        results = {}
        for variant in ("trl", "medvlab", "medvlab-nocache", "medvlab-nogroup"):
            cmd = [
                sys.executable,
                __file__,
                "--variant",
                variant,
                "--model",
                str(model),
                "--data",
                str(data),
                "--out",
                str(work / variant),
                "--steps",
                str(args.steps),
                "--batch",
                str(args.batch),
            ]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            results[variant] = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"  {variant}: {results[variant]}", file=sys.stderr)
    base = results["trl"]
    print(
        f"\nSFT, {args.steps} steps x batch {args.batch}, tiny-but-wider Gemma 3 (hidden 256, 4 layers), CPU"
    )
    print(f"{'variant':18s} {'samples/s':>10s} {'vs TRL':>8s} {'peak RSS MB':>12s} {'vs TRL':>8s}")
    for name, r in results.items():
        print(
            f"{name:18s} {r['samples_per_s']:10.2f} {r['samples_per_s'] / base['samples_per_s']:7.2f}x "
            f"{r['peak_rss_mb']:12.0f} {r['peak_rss_mb'] / base['peak_rss_mb']:7.2f}x"
        )


if __name__ == "__main__":
    main()
