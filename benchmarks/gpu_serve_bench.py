"""On a GPU: real vLLM vs the in-process transformers engine on a model of MedGemma-4B's size, and the
lab's overhead in front of vLLM; time per output token against the memory-bandwidth floor.

The model has MedGemma-4B's published architecture (``medvlab.vlm.tiny.MEDGEMMA_4B``: Gemma 3 4B, SigLIP
tower, 896-pixel images as 256 tokens, 4,300,079,472 parameters) with random weights, built offline. Four
servers in turn, each a real process on loopback:

  in-process   ``medvlab serve --model M`` (transformers, the lab's batcher, ≤ 8 per batch)
  vLLM         ``vllm serve M`` started by the lab's launcher (``medvlab.vlm.launch``, the flags
               ``medvlab serve --engine vllm`` uses), called directly
  lab + vLLM   ``medvlab serve --engine openai --engine-url <that vLLM>``

N closed-loop streaming clients (as in ``serve_bench.py``) ask about one 896-pixel picture and get answers
of exactly ``TOKENS`` tokens. Printed: TTFT / TPOT / tokens/s per N, vLLM through the lab ÷ in-process
(the issue's target: ≥ 5× at 16 clients), lab + vLLM ÷ vLLM (≤ 5 % throughput, ≤ 15 ms TTFT), and the
1-client TPOT ÷ the floor: a decode step reads every weight once, so it cannot take less than
(weight bytes ÷ the GPU's measured copy bandwidth).

    pip install -e '.[vllm]'      # on the GPU machine
    python benchmarks/gpu_serve_bench.py
    GPU_BENCH_CLIENTS=1,16 GPU_BENCH_MODEL_DIR=/data/medgemma-4b-random python benchmarks/gpu_serve_bench.py
"""

from __future__ import annotations

import base64
import importlib.util
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import serve_bench as sb
from load_bench import free_port

CLIENTS = tuple(int(n) for n in os.environ.get("GPU_BENCH_CLIENTS", "1,4,16,64").split(","))
TOKENS = int(os.environ.get("GPU_BENCH_TOKENS", "128"))


def picture_uri() -> str:
    """One 896 × 896 picture as a data URI (its content does not change the work done)."""
    import numpy as np
    from PIL import Image

    ramp = np.add.outer(np.arange(896), np.arange(896)) % 256
    buf = io.BytesIO()
    Image.fromarray(ramp.astype("uint8")).convert("RGB").save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def copy_bandwidth_gb_s() -> float:
    """Device memory bandwidth measured as a large device-to-device copy (reads + writes)."""
    import torch

    x = torch.empty(2 * 2**30, dtype=torch.uint8, device="cuda")
    y = torch.empty_like(x)
    y.copy_(x)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(10):
        y.copy_(x)
    torch.cuda.synchronize()
    seconds = (time.perf_counter() - t0) / 10
    del x, y
    torch.cuda.empty_cache()
    return 2 * 2 * 2**30 / seconds / 1e9


def build(folder: Path) -> Path:
    from medvlab.vlm.tiny import MEDGEMMA_4B, build_tiny_model

    if (folder / "MEDVLAB_TINY").exists():
        return folder
    print(f"building a random MedGemma-4B-sized model in {folder} ...", file=sys.stderr)
    return build_tiny_model(folder, shape=MEDGEMMA_4B)


def measure(
    url: str, model: str, pids: list[int], label: str, results: dict[tuple[str, int], sb.Load]
) -> None:
    sb.run(url, model, 2, pids)  # warm-up (CUDA graphs, compiled kernels, the first image)
    for n in CLIENTS:
        results[(label, n)] = sb.run(url, model, n, pids)
        print(sb.row(label, n, results[(label, n)]), file=sys.stderr)


def main() -> None:
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("This benchmark needs a CUDA GPU (it measures vLLM against the in-process engine).")
    if importlib.util.find_spec("vllm") is None:
        raise SystemExit("This benchmark needs vLLM: pip install -e '.[vllm]' on the GPU machine.")
    from medvlab.vlm.launch import EngineSpec, ManagedEngine

    sb.TOKENS, sb.IMAGE_URI = TOKENS, picture_uri()
    with tempfile.TemporaryDirectory(prefix="medvlab-gpu-bench-") as tmp:
        work = Path(tmp)
        model = build(Path(os.environ.get("GPU_BENCH_MODEL_DIR") or work / "medgemma-4b-random"))
        weight_bytes = sum(p.stat().st_size for p in model.glob("*.safetensors"))
        bandwidth = copy_bandwidth_gb_s()
        results: dict[tuple[str, int], sb.Load] = {}

        port = free_port()
        proc = sb.serve(model, port, work / "inproc", wait_s=900)
        try:
            measure(f"http://127.0.0.1:{port}", str(model), [proc.pid], "in-process", results)
        finally:
            proc.terminate()
            proc.wait(60)

        spec = EngineSpec(
            engine="vllm", model=str(model), port=free_port(), max_model_len=4096, dtype="bfloat16"
        )
        engine = ManagedEngine(spec, work / "vllm.log")
        engine.start(timeout_s=1200)
        try:
            assert engine.proc is not None
            engine_root = engine.url.removesuffix("/v1")
            measure(engine_root, str(model), [engine.proc.pid], "vLLM", results)
            front_port = free_port()
            args = ("--engine", "openai", "--engine-url", engine.url)
            front = sb.serve(model, front_port, work / "front", *args, wait_s=300)
            try:
                front_url = f"http://127.0.0.1:{front_port}"
                measure(front_url, str(model), [engine.proc.pid, front.pid], "lab + vLLM", results)
            finally:
                front.terminate()
                front.wait(60)
        finally:
            engine.stop()
    report(results, weight_bytes, bandwidth, torch.cuda.get_device_name())


def report(results: dict[tuple[str, int], sb.Load], weight_bytes: int, bandwidth: float, device: str) -> None:
    print(f"\n{device}: answers of {TOKENS} tokens about one 896-pixel picture (median TTFT / TPOT)")
    print(sb.HEADER.replace("RSS MB", "host MB"))
    for n in CLIENTS:
        for label in ("in-process", "vLLM", "lab + vLLM"):
            print(sb.row(label, n, results[(label, n)]))
        inproc, vllm, front = (results[(k, n)] for k in ("in-process", "vLLM", "lab + vLLM"))
        ttft = (statistics.median(front.ttft) - statistics.median(vllm.ttft)) * 1000
        speedup, kept = front.throughput / inproc.throughput, front.throughput / vllm.throughput
        print(f"{'lab+vLLM / in-process':>22s} {n:4d} {'':>9s} {'':>9s} {speedup:8.2f}x")
        print(f"{'lab+vLLM / vLLM':>22s} {n:4d} {ttft:+7.0f}ms {'':>9s} {kept:8.2f}x")
    floor_ms = weight_bytes / (bandwidth * 1e9) * 1000
    gb = weight_bytes / 1e9
    print(
        f"\nweights {gb:.2f} GB, measured copy bandwidth {bandwidth:.0f} GB/s: floor {floor_ms:.2f} ms/token"
    )
    for label in ("in-process", "vLLM", "lab + vLLM"):
        if (label, 1) in results:
            tpot = statistics.median(results[(label, 1)].tpot) * 1000
            print(f"{label:>22s}    1 client: {tpot:.2f} ms/token = {tpot / floor_ms:.2f}x the floor")


if __name__ == "__main__":
    main()
