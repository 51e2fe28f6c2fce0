"""Options shared by several commands, declared once."""

from __future__ import annotations

import typer

MODEL = typer.Option(
    None,
    "--model",
    "-m",
    help="Hub id or local folder of an image-text-to-text model; 'tiny' for the offline test model.",
)
DEVICE = typer.Option(
    None, "--device", "-d", help="cuda, cuda:1, npu, mlu, mps, xpu or cpu (default: best found)."
)
DTYPE = typer.Option(None, "--dtype", help="bfloat16, float16 or float32 (default: per device).")
ADAPTER = typer.Option(None, "--adapter", help="PEFT adapter folder to apply on top of the model.")
WINDOW = typer.Option(
    None,
    "--window",
    "-w",
    help="Window: auto, medgemma, lung, mediastinum, bone, brain, abdomen, ... or C,W.",
)
ENGINE = typer.Option(
    None,
    "--engine",
    help="transformers (in this process, the default) or openai (a remote OpenAI-compatible server).",
)
ENGINE_URL = typer.Option(
    None,
    "--engine-url",
    help="The remote engine's API, e.g. http://127.0.0.1:8000/v1 (with --engine openai).",
)
ENGINE_MODEL = typer.Option(
    None, "--engine-model", help="The model name the remote engine serves (default: --model)."
)
ENGINE_KEY_ENV = typer.Option(
    None, "--engine-key-env", help="Environment variable that holds the remote engine's API key."
)
