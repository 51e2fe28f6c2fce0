"""Fine-tuning recipes over TRL + PEFT: LoRA/QLoRA SFT, DPO, merge, evaluation."""
