"""Texts of the Train tab (merged into :data:`medvlab.ui.texts.TEXT`). The English help of each form field
is its attribute docstring in the training configuration (the one source of truth, as the CLI's help is);
the Chinese help is written here."""

from __future__ import annotations

from medvlab.train.config import DPOTrainConfig, SFTTrainConfig
from medvlab.train.grpo_config import GrpoTrainConfig

FORM = (
    "max_steps",
    "epochs",
    "learning_rate",
    "batch_size",
    "grad_accum",
    "lora_rank",
    "lora_alpha",
    "lora_dropout",
    "warmup_ratio",
    "logging_steps",
    "save_steps",
    "seed",
    "freeze_vision",
    "beta",
    "num_generations",
    "max_completion_length",
)
"""The configuration fields the Train tab offers (the others keep their defaults)."""

LABELS = {
    "max_steps": ("Max steps", "最大步数", "停止前的优化步数（-1：按轮数）。"),
    "epochs": ("Epochs", "轮数", "遍历数据的次数（最大步数 > 0 时忽略）。"),
    "learning_rate": ("Learning rate", "学习率", "峰值学习率。"),
    "batch_size": ("Batch size", "批大小", "每个设备每步的记录数。"),
    "grad_accum": ("Gradient accumulation", "梯度累积", "梯度累积步数。"),
    "lora_rank": ("LoRA rank", "LoRA 秩", "LoRA 的秩 r。"),
    "lora_alpha": ("LoRA alpha", "LoRA alpha", "LoRA 缩放系数 alpha。"),
    "lora_dropout": ("LoRA dropout", "LoRA dropout", "LoRA 输入的 dropout。"),
    "warmup_ratio": ("Warm-up ratio", "预热比例", "用于学习率预热的步数比例。"),
    "logging_steps": ("Log every N steps", "每 N 步记录", "每 N 步记录（并写入）指标。"),
    "save_steps": (
        "Checkpoint every N steps",
        "每 N 步保存检查点",
        "每 N 步保存检查点（继续训练从最后一个开始）。",
    ),
    "seed": ("Seed", "随机种子", "随机种子。"),
    "freeze_vision": ("Freeze the vision tower", "冻结视觉编码器", "只在语言模型上加 LoRA。"),
    "beta": ("Beta (KL)", "Beta（KL）", "向参考模型的 KL 惩罚强度。"),
    "num_generations": ("Answers per prompt", "每个问题的回答数", "每个问题采样的回答数（组内比较奖励）。"),
    "max_completion_length": ("Max answer tokens", "回答最大词元数", "每个采样回答的最多新词元数。"),
}


def _docs() -> dict[str, str]:
    from medvlab.fielddocs import field_docs, help_line

    docs: dict[str, str] = {}
    for cls in (GrpoTrainConfig, DPOTrainConfig, SFTTrainConfig):  # SFT's wording wins where shared
        docs.update({k: help_line(v) for k, v in field_docs(cls).items()})
    return docs


_DOCS = _docs()

TRAIN_TEXT: dict[str, dict[str, str]] = {
    "en": {
        "tab_lab": "Lab",
        "tab_train": "Train",
        "train_intro": "Fine-tune the lab's model with LoRA: a separate process, one run at a time.",
        "train_kind": "Method",
        "train_data": "Training records (JSONL; images as absolute paths under the allowed folders)",
        "train_start": "Start",
        "train_stop": "Stop",
        "train_resume": "Resume",
        "train_resume_steps": "Resume up to step",
        "train_feedback": "Start a DPO round from feedback",
        "train_status": "No training job yet.",
        "train_state": "**{state}** · job `{id}` ({kind}) · step {steps} of {max}",
        "train_log": "Log (last lines)",
        "train_curves": "Training curves",
        "train_loss": "Loss (blue: training, orange: validation)",
        "train_loss_axis": "Loss",
        "train_step": "Step",
        "train_no_data": "Upload a JSONL file of training records first.",
        "train_eval": "Evaluate base vs adapter",
        "train_vqa": "VQA records (JSONL; image, question, answer)",
        "train_eval_run": "Evaluate",
        "train_col_model": "model",
        "train_col_closed": "closed accuracy",
        "train_col_f1": "open F1",
        "train_col_recall": "open recall",
        "train_col_n": "closed / open",
        "train_load": "Load the finished adapter into the chat",
        "train_loaded": "The chat now answers with the adapter {path}.",
        "train_no_adapter": "There is no finished adapter yet.",
        "train_rewards": "GRPO rewards",
        "train_i_rewards": "Each sampled answer is scored by these (see docs/training.md).",
        "train_running": "running",
        "train_finished": "finished",
        "train_failed": "failed",
        "train_stopped": "stopped",
        **{f"train_f_{k}": v[0] for k, v in LABELS.items()},
        **{f"train_i_{k}": _DOCS.get(k, v[0]) for k, v in LABELS.items()},
    },
    "zh": {
        "tab_lab": "实验室",
        "tab_train": "训练",
        "train_intro": "用 LoRA 微调本实验室的模型：独立进程运行，同一时间只运行一个。",
        "train_kind": "方法",
        "train_data": "训练记录（JSONL；图像用允许目录下的绝对路径）",
        "train_start": "开始",
        "train_stop": "停止",
        "train_resume": "继续训练",
        "train_resume_steps": "继续训练到第几步",
        "train_feedback": "用反馈开始一轮 DPO",
        "train_status": "还没有训练任务。",
        "train_state": "**{state}** · 任务 `{id}`（{kind}）· 第 {steps} 步，共 {max} 步",
        "train_log": "日志（最后几行）",
        "train_curves": "训练曲线",
        "train_loss": "损失（蓝线：训练；橙线：验证）",
        "train_loss_axis": "损失",
        "train_step": "步数",
        "train_no_data": "请先上传训练记录的 JSONL 文件。",
        "train_eval": "评估基础模型与适配器",
        "train_vqa": "VQA 记录（JSONL；图像、问题、答案）",
        "train_eval_run": "评估",
        "train_col_model": "模型",
        "train_col_closed": "封闭题准确率",
        "train_col_f1": "开放题 F1",
        "train_col_recall": "开放题召回率",
        "train_col_n": "封闭题 / 开放题",
        "train_load": "把训练好的适配器加载到对话中",
        "train_loaded": "对话现在使用适配器 {path} 回答。",
        "train_no_adapter": "还没有训练完成的适配器。",
        "train_rewards": "GRPO 奖励",
        "train_i_rewards": "每个采样回答按这些奖励打分（见 docs/training.md）。",
        "train_running": "运行中",
        "train_finished": "已完成",
        "train_failed": "失败",
        "train_stopped": "已停止",
        **{f"train_f_{k}": v[1] for k, v in LABELS.items()},
        **{f"train_i_{k}": v[2] for k, v in LABELS.items()},
    },
}


CURVE_TITLES = {
    "en": {
        "loss": "training loss",
        "eval_loss": "validation loss",
        "rewards/accuracies": "reward accuracy",
        "rewards/margins": "reward margin",
        "eval_rewards/accuracies": "validation reward accuracy",
        "eval_closed_accuracy": "validation: closed-question accuracy",
        "eval_open_f1": "validation: open-question F1",
        "reward": "reward",
        "kl": "KL divergence",
        "eval_reward": "validation reward",
        "reward_one": "reward: {name}",
    },
    "zh": {
        "loss": "训练损失",
        "eval_loss": "验证损失",
        "rewards/accuracies": "奖励准确率",
        "rewards/margins": "奖励间隔",
        "eval_rewards/accuracies": "验证奖励准确率",
        "eval_closed_accuracy": "验证：封闭题准确率",
        "eval_open_f1": "验证：开放题 F1",
        "reward": "奖励",
        "kl": "KL 散度",
        "eval_reward": "验证奖励",
        "reward_one": "奖励：{name}",
    },
}
"""Titles of the training-curve panels the page draws (``training_curves.png`` keeps the metric names)."""
