"""The Train tab (as LLaMA-Factory's LlamaBoard does): pick SFT / DPO / GRPO and a JSONL file (or the
feedback store), set the options of a form generated from the training configuration, start, stop and
resume a run that goes on in its own process, watch its loss curve and log (a timer polls every 2 s while it
runs), evaluate base vs adapter on VQA records, and load the finished adapter into the chat.

Every action calls :mod:`medvlab.services.training`, as the ``/v1/train`` routes do.

Who sees it: everyone when the lab has no API keys (as for the REST routes); with ``MEDVLAB_API_KEYS`` the
page is served behind Gradio's login whose password is an API key, so a signed-in user (``request.username``
set) holds a key and sees the tab (shown when the page loads); a page built without that login (no
signed-in user) never shows it, and every handler checks the same rule again.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd
from PIL import Image

from medvlab.services import Lab, training
from medvlab.ui.i18n import TEXT, Texts, language_of, texts_of
from medvlab.ui.state import shown_errors
from medvlab.ui.texts_train import CURVE_TITLES, FORM
from medvlab.ui.uploads import checked_paths, forget

KINDS = {"SFT": "sft", "DPO": "dpo", "GRPO": "grpo"}
POLL_S = 2.0
EVAL_HEADERS = ["train_col_model", "train_col_closed", "train_col_f1", "train_col_recall", "train_col_n"]


@dataclass(frozen=True)
class TrainPanel:
    tab: gr.Tab
    kind: gr.Radio
    data: gr.File
    rewards: gr.CheckboxGroup
    form: dict[str, gr.components.Component]
    start: gr.Button
    stop: gr.Button
    resume: gr.Button
    resume_steps: gr.Number
    feedback: gr.Button
    status: gr.Markdown
    plot: gr.LinePlot
    curves: gr.Image
    log: gr.Textbox
    timer: gr.Timer
    vqa: gr.File
    evaluate: gr.Button
    eval_table: gr.Dataframe
    load: gr.Button
    loaded: gr.Markdown


def _field_types() -> dict[str, tuple[Any, Any]]:
    """name -> (type, default) over all kinds (SFT's default where they differ)."""
    out: dict[str, tuple[Any, Any]] = {}
    for kind in ("grpo", "dpo", "sft"):
        out.update({n: (t, d) for n, t, d in training.form_fields(kind)})
    return out


def _component(texts: Texts, name: str, typ: Any, default: Any) -> gr.components.Component:
    props = {"label": f"train_f_{name}", "info": f"train_i_{name}"}
    common: dict[str, Any] = {"elem_id": f"train-{name.replace('_', '-')}", "visible": _shown(name, "sft")}
    if typ is bool:
        return texts.add(gr.Checkbox, props, value=default, **common)
    if isinstance(typ, tuple):
        return texts.add(gr.Dropdown, props, choices=list(typ), value=default, **common)
    return texts.add(gr.Number, props, value=default, precision=0 if typ is int else None, **common)


def _shown(name: str, kind: str) -> bool:
    return any(n == name for n, _, _ in training.form_fields(kind))


def build(lab: Lab, texts: Texts) -> TrainPanel:
    types = _field_types()
    # hidden from the start when keys are set: Gradio 6 shows a hidden tab on an update, but does not hide one
    with texts.add(gr.Tab, {"label": "tab_train"}, elem_id="train", visible=not lab.settings.api_keys) as tab:
        texts.add(gr.Markdown, {"value": "train_intro"})
        with gr.Row():
            kind = gr.Radio(list(KINDS), value="SFT", label="SFT / DPO / GRPO", elem_id="train-kind")
            data = texts.add(gr.File, {"label": "train_data"}, file_types=[".jsonl"], type="filepath",
                             elem_id="train-data")  # fmt: skip
        form: dict[str, gr.components.Component] = {}
        with gr.Row(equal_height=True):
            for name in FORM:
                if name in types:
                    form[name] = _component(texts, name, *types[name])
        rewards = texts.add(gr.CheckboxGroup, {"label": "train_rewards", "info": "train_i_rewards"},
                            choices=training.reward_names(), value=["correctness"], visible=False,
                            elem_id="train-rewards")  # fmt: skip
        with gr.Row():
            start = texts.add(gr.Button, {"value": "train_start"}, variant="primary", elem_id="train-start")
            stop = texts.add(gr.Button, {"value": "train_stop"}, variant="stop", elem_id="train-stop")
            resume_steps = texts.add(gr.Number, {"label": "train_resume_steps"}, value=None, precision=0,
                                     elem_id="train-resume-steps")  # fmt: skip
            resume = texts.add(gr.Button, {"value": "train_resume"}, elem_id="train-resume")
            feedback = texts.add(gr.Button, {"value": "train_feedback"}, elem_id="train-feedback")
        status = texts.computed(gr.Markdown(status_line(lab, texts.language), elem_id="train-status"),
                                partial(status_line, lab))  # fmt: skip
        with gr.Row():
            # The series go by colour and the label names them: Gradio 6 keeps a plot legend's first entries
            # (a language switch or a validation curve appearing later would not show in it).
            titles = {"label": "train_loss", "x_title": "train_step", "y_title": "train_loss_axis"}
            plot = texts.add(gr.LinePlot, titles, x="step", y="loss", color="curve", color_map=CURVE_COLORS,
                             colors_in_legend=[], tooltip=["step", "loss"], y_axis_format="~g",
                             elem_id="train-plot", value=loss_frame([]))  # fmt: skip
            curves = texts.add(gr.Image, {"label": "train_curves"}, type="pil", interactive=False,
                               elem_id="train-curves")  # fmt: skip
            texts.computed(curves, partial(curves_now, lab))
        log = texts.add(gr.Textbox, {"label": "train_log"}, lines=10, max_lines=10, interactive=False,
                        elem_id="train-log")  # fmt: skip
        timer = gr.Timer(POLL_S, active=False)
        with texts.add(gr.Accordion, {"label": "train_eval"}, open=True):
            with gr.Row():
                vqa = texts.add(gr.File, {"label": "train_vqa"}, type="filepath", elem_id="train-vqa")
                evaluate = texts.add(gr.Button, {"value": "train_eval_run"}, elem_id="train-eval")
            eval_table = texts.add(gr.Dataframe, {"headers": EVAL_HEADERS}, interactive=False,
                                   elem_id="train-eval-table")  # fmt: skip
        load = texts.add(gr.Button, {"value": "train_load"}, elem_id="train-load")
        loaded = texts.computed(gr.Markdown(elem_id="train-loaded"), partial(adapter_line, lab))
    return TrainPanel(tab, kind, data, rewards, form, start, stop, resume, resume_steps, feedback, status,
                      plot, curves, log, timer, vqa, evaluate, eval_table, load, loaded)  # fmt: skip


# -- handlers ---------------------------------------------------------------------------------------
def may_train(lab: Lab, request: gr.Request | None) -> bool:
    """No API keys, or a user signed in with one (see the module docstring)."""
    return not lab.settings.api_keys or bool(getattr(request, "username", None))


def _guard(lab: Lab, request: gr.Request | None) -> None:
    if not may_train(lab, request):
        raise gr.Error("Training needs an API key: sign in with one.")


def _options(kind: str, values: tuple[Any, ...], rewards: list[str] | None = None) -> dict[str, Any]:
    offered = {n for n, _, _ in training.form_fields(kind)}
    out = {n: v for n, v in zip(FORM, values, strict=False) if n in offered}
    return {**out, "rewards": list(rewards or [])} if kind == "grpo" else out


def status_line(lab: Lab, language: str, st: dict[str, Any] | None = None) -> str:
    """'**finished** · job ... (SFT) · step 2 of 2' in ``language`` (also redrawn on a language change)."""
    t = TEXT[language]
    st = st or training.status(lab)
    if st["state"] == "none":
        return t["train_status"]
    line = t["train_state"].format(
        state=t[f"train_{st['state']}"], id=st["id"], kind=st["kind"].upper(),
        steps=st["steps_done"], max=st["max_steps"],
    )  # fmt: skip
    return line + (f" · exit {st['exit_code']}" if st["exit_code"] not in (None, 0) else "")


def adapter_line(lab: Lab, language: str) -> str:
    """Which adapter the chat answers with, when it is one of the lab's training runs."""
    active = lab.adapter if lab.backend_loaded else None
    inside = active is not None and Path(active).is_relative_to(training.runs_folder(lab.settings).resolve())
    return TEXT[language]["train_loaded"].format(path=active) if inside else ""


CURVE_COLORS = {"loss": "#1f77b4", "eval_loss": "#ff7f0e"}
"""The live plot's series (metrics.jsonl's names) and their colours, which the plot's label names."""


def loss_frame(metrics: list[dict[str, Any]]) -> pd.DataFrame:
    """The live plot's rows: the training loss and, when the run evaluates, the validation loss, by step.
    A series with no value yet has one empty row, so the plot's colours hold from its first drawing."""
    rows = [
        {"step": r["step"], "loss": float(r[curve]), "curve": curve}
        for curve in CURVE_COLORS
        for r in metrics
        if curve in r and "step" in r
    ]
    first = min((r["step"] for r in rows), default=0)
    rows += [
        {"step": first, "loss": None, "curve": c} for c in CURVE_COLORS if all(r["curve"] != c for r in rows)
    ]
    return pd.DataFrame(rows, columns=["step", "loss", "curve"])


def curves_image(metrics: list[dict[str, Any]], language: str) -> Image.Image | None:
    """The run's curves drawn with titles in ``language`` (its ``training_curves.png`` keeps the metric
    names); None before the first values."""
    import io

    import matplotlib.pyplot as plt

    from medvlab.reports.pdf import cjk_font_files
    from medvlab.train.metrics import CURVES, GRPO_CURVES, curves_figure, reward_curves

    t = CURVE_TITLES[language]
    per_reward = reward_curves(metrics)
    titles = {**t, **{k: t["reward_one"].format(name=k.split("/")[1]) for k in per_reward}}
    fonts = cjk_font_files() if language == "zh" else []
    names = tuple(dict.fromkeys((*CURVES, *GRPO_CURVES, *per_reward)))  # the curves of any method, once
    fig = curves_figure(metrics, names, titles, TEXT[language]["train_step"], fonts[0] if fonts else None)
    if fig is None:
        return None
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return Image.open(buf).convert("RGB")


def curves_now(lab: Lab, language: str) -> Image.Image | None:
    """The finished job's curves in ``language`` (redrawn when the page's language changes)."""
    st = training.status(lab)
    return curves_image(st["metrics"], language) if st["state"] != "none" and st["curves"] else None


def refresh(lab: Lab, lang_label: str) -> tuple[Any, ...]:
    """-> (status line, loss plot, curves picture, log tail, timer): what the timer shows every 2 s."""
    st = training.status(lab)
    line = status_line(lab, language_of(lang_label), st)
    if st["state"] == "none":
        return line, gr.skip(), gr.skip(), "", gr.Timer(active=False)
    plot = loss_frame(st["metrics"])
    curves = curves_image(st["metrics"], language_of(lang_label)) if st["curves"] else None
    return line, plot, curves, st["log_tail"], gr.Timer(active=st["state"] == "running")


def start(
    lab: Lab, kind: str, files: Any, rewards: list[str], *rest: Any, request: gr.Request | None = None
) -> tuple[Any, ...]:
    *values, lang_label = rest
    _guard(lab, request)
    with shown_errors():
        paths = checked_paths(files, lab.settings)
    if not paths:
        raise gr.Error(texts_of(lang_label)["train_no_data"])
    try:
        with shown_errors():
            options = _options(KINDS[kind], tuple(values), rewards)
            training.start(lab, KINDS[kind], paths[0], options, uploaded=True)
    finally:
        forget(paths)
    return refresh(lab, lang_label)


def from_feedback(lab: Lab, *rest: Any, request: gr.Request | None = None) -> tuple[Any, ...]:
    *values, lang_label = rest
    _guard(lab, request)
    with shown_errors():
        training.dpo_from_feedback(lab, _options("dpo", tuple(values)))
    return refresh(lab, lang_label)


def stop(lab: Lab, lang_label: str, request: gr.Request | None = None) -> tuple[Any, ...]:
    _guard(lab, request)
    with shown_errors():
        training.stop(lab)
    return refresh(lab, lang_label)


def resume(
    lab: Lab, steps: float | None, lang_label: str, request: gr.Request | None = None
) -> tuple[Any, ...]:
    _guard(lab, request)
    with shown_errors():
        training.resume(lab, int(steps or 0))
    return refresh(lab, lang_label)


def evaluate(lab: Lab, files: Any, lang_label: str, request: gr.Request | None = None) -> list[list[Any]]:
    _guard(lab, request)
    with shown_errors():
        paths = checked_paths(files, lab.settings)
    if not paths:
        raise gr.Error(texts_of(lang_label)["train_vqa"])
    try:
        with shown_errors():
            summary = training.evaluate(lab, paths[0], uploaded=True)
    finally:
        forget(paths)

    def fmt(v: float | None) -> str:
        return "—" if v is None else f"{v:.3f}"

    return [
        [label, fmt(s["closed_accuracy"]), fmt(s["open_f1"]), fmt(s["open_recall"]),
         f"{s['n_closed']} / {s['n_open']}"]
        for label, s in summary.items()
    ]  # fmt: skip


def load_adapter(lab: Lab, lang_label: str, request: gr.Request | None = None) -> str:
    _guard(lab, request)
    t = texts_of(lang_label)
    path = training.status(lab).get("adapter")
    if path is None:
        raise gr.Error(t["train_no_adapter"])
    with shown_errors():
        active = lab.set_adapter(path)
    return t["train_loaded"].format(path=active)


def switch_kind(kind: str) -> list[Any]:
    """Show the fields of the picked method, with its defaults (e.g. DPO's smaller learning rate)."""
    fields = {n: d for n, _, d in training.form_fields(KINDS[kind])}
    return [gr.update(visible=n in fields, value=fields[n]) if n in fields else gr.update(visible=False)
            for n in FORM if n in _field_types()] + [gr.update(visible=kind == "GRPO")]  # fmt: skip


def wire(lab: Lab, panel: TrainPanel, lang: gr.Radio, demo: gr.Blocks) -> None:
    private: dict[str, Any] = {"api_visibility": "private"}
    form = list(panel.form.values())
    shown = [panel.status, panel.plot, panel.curves, panel.log, panel.timer]

    def show_tab(request: gr.Request) -> Any:
        return gr.update(visible=True) if may_train(lab, request) else gr.skip()

    demo.load(show_tab, None, panel.tab, **private)
    panel.kind.change(switch_kind, panel.kind, [*form, panel.rewards], **private)
    inputs = [panel.kind, panel.data, panel.rewards, *form, lang]
    panel.start.click(partial(start, lab), inputs, shown, **private)
    panel.feedback.click(partial(from_feedback, lab), [*form, lang], shown, **private)
    panel.stop.click(partial(stop, lab), lang, shown, **private)
    panel.resume.click(partial(resume, lab), [panel.resume_steps, lang], shown, **private)
    panel.timer.tick(partial(refresh, lab), lang, shown, **private)
    panel.tab.select(partial(refresh, lab), lang, shown, **private)
    panel.evaluate.click(partial(evaluate, lab), [panel.vqa, lang], panel.eval_table, **private)
    panel.load.click(partial(load_adapter, lab), lang, panel.loaded, **private)
