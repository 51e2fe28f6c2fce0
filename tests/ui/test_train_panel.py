"""The Train tab's handlers without a browser: who may see it, the form per method, the status line."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from medvlab.config import Settings
from medvlab.services import Lab
from medvlab.ui.i18n import TEXT
from medvlab.ui.panels import train
from medvlab.ui.texts_train import FORM


def test_only_key_holders_see_the_train_tab(tmp_path: Path) -> None:
    open_lab = Lab(Settings(model="tiny", cache_dir=tmp_path))
    keyed = Lab(Settings(model="tiny", cache_dir=tmp_path, api_keys=["secret-key-1"]))
    anonymous, signed_in = SimpleNamespace(username=None), SimpleNamespace(username="teacher")
    assert train.may_train(open_lab, anonymous) and train.may_train(open_lab, None)
    assert not train.may_train(keyed, anonymous) and not train.may_train(keyed, None)
    assert train.may_train(keyed, signed_in)  # Gradio's login took an API key as the password


def test_the_form_follows_the_method() -> None:
    names = [*FORM, "rewards"]
    sft = dict(zip(names, train.switch_kind("SFT"), strict=True))
    dpo = dict(zip(names, train.switch_kind("DPO"), strict=True))
    grpo = dict(zip(names, train.switch_kind("GRPO"), strict=True))
    assert grpo["rewards"]["visible"] is True and sft["rewards"]["visible"] is False
    assert sft["learning_rate"]["value"] == 2e-4 and dpo["learning_rate"]["value"] == 5e-6
    assert sft["beta"]["visible"] is False and dpo["beta"]["value"] == 0.1 and grpo["beta"]["value"] == 0.04
    assert grpo["num_generations"]["visible"] is True and dpo["num_generations"]["visible"] is False
    values = tuple(range(1, len(FORM) + 1))
    assert "num_generations" not in train._options("sft", values)
    assert train._options("grpo", values, ["length"])["num_generations"] == FORM.index("num_generations") + 1
    assert train._options("grpo", values, ["length"])["rewards"] == ["length"]
    assert "rewards" not in train._options("dpo", values, ["length"])


def test_status_line_in_both_languages(tmp_path: Path) -> None:
    lab = Lab(Settings(model="tiny", cache_dir=tmp_path))
    assert train.status_line(lab, "en") == TEXT["en"]["train_status"]
    assert train.status_line(lab, "zh") == TEXT["zh"]["train_status"]
    st = {"state": "failed", "id": "j1", "kind": "dpo", "steps_done": 3, "max_steps": 10, "exit_code": 2}
    assert train.status_line(lab, "zh", st) == "**失败** · 任务 `j1`（DPO）· 第 3 步，共 10 步 · exit 2"
    assert train.adapter_line(lab, "en") == ""


def test_the_live_plot_shows_training_and_validation_loss() -> None:
    metrics = [
        {"step": 1, "loss": 2.5},
        {"step": 2, "loss": 2.0, "learning_rate": 1e-4},
        {"step": 2, "eval_loss": 2.25},
        {"train_runtime": 3.0},  # the summary row has no step: left out
    ]
    frame = train.loss_frame(metrics)
    assert frame.values.tolist() == [[1, 2.5, "loss"], [2, 2.0, "loss"], [2, 2.25, "eval_loss"]]
    early = train.loss_frame(metrics[:2])  # no validation yet: an empty row keeps its colour in the plot
    assert early["curve"].tolist() == ["loss", "loss", "eval_loss"] and early["loss"].isna().tolist()[-1]
    assert set(train.loss_frame([])["curve"]) == set(train.CURVE_COLORS)
    assert "蓝" in TEXT["zh"]["train_loss"] and "blue" in TEXT["en"]["train_loss"]


def test_the_curves_picture_is_drawn_in_the_pages_language(recwarn: pytest.WarningsRecorder) -> None:
    from medvlab.reports.pdf import cjk_font_files
    from medvlab.train.metrics import curves_figure

    metrics = [
        {"step": 1, "loss": 2.5, "rewards/terms/mean": 0.2},
        {"step": 2, "loss": 2.0, "eval_loss": 2.2, "rewards/terms/mean": 0.4},
    ]
    zh = train.curves_image(metrics, "zh")
    en = train.curves_image(metrics, "en")
    assert zh is not None and en is not None and zh.size == en.size and zh.size[0] > 3 * zh.size[1]
    assert not [w for w in recwarn if "missing from" in str(w.message)]  # no tofu boxes for 训练损失
    fonts = cjk_font_files()
    fig = curves_figure(metrics, ("loss", "eval_loss", "rewards/terms/mean"),
                        {"loss": "训练损失"}, "步数", fonts[0] if fonts else None)  # fmt: skip
    assert [ax.get_title() for ax in fig.axes] == ["训练损失", "eval_loss", "rewards/terms/mean"]
    assert fig.axes[0].get_xlabel() == "步数"
    assert train.curves_image([{"step": 1, "learning_rate": 1e-4}], "en") is None
