"""What the consistency trainers need from TRL and the model: the TRL version check, the
prompt each trainer is given, and the TrainingArguments every run shares."""
from __future__ import annotations

from typing import Any

from attractor.errors import ConfigError
from attractor.tasks.prompts import DEFAULT_CHAT, fill, prompt_text, uses_chat

TRL_NEEDED = "1.16"  # the version these trainers were written and tested against


def require_trl(trainer: str, method: str) -> None:
    """Refuse, in one line, a missing TRL or one older than :data:`TRL_NEEDED`."""
    from packaging.version import Version

    try:
        import trl
    except ImportError:
        raise ConfigError(f"--method {method}: needs trl>={TRL_NEEDED} for its {trainer} "
                          "(pip install 'attractor[train]'); trl is not installed") from None
    if Version(trl.__version__) < Version(TRL_NEEDED) or not hasattr(trl, trainer):
        raise ConfigError(f"--method {method}: needs trl>={TRL_NEEDED} for its {trainer}, "
                          f"found trl {trl.__version__}")


def trl_prompt(problem, tok) -> Any:
    """The prompt as TRL takes it: a user turn for a chat model (TRL applies the template),
    else the plain prompt text the model was trained on (as ``attractor sample`` gives it)."""
    if uses_chat(tok, True):
        return [{"role": "user", "content": fill(DEFAULT_CHAT, problem)}]
    return prompt_text(problem, tok, True)


def completion_text(completion: Any) -> str:
    """A TRL completion's text (conversational completions are lists of messages)."""
    if isinstance(completion, list):
        return "".join(m.get("content", "") for m in completion if isinstance(m, dict))
    return str(completion)


def shared_args(out: str, seed: int, device: str, lr: float) -> dict[str, Any]:
    """TrainingArguments common to both trainers: float32 (CPU bfloat16 autocast is emulated
    and ~10x slower here), no gradient checkpointing (TRL turns it on; small models do not need
    it), constant learning rate, no Trainer checkpoints (they pickle the optimiser: the run
    saves its own state as safetensors), no hub or tracker, no tqdm (rich shows progress)."""
    return dict(output_dir=out, seed=seed, data_seed=seed, use_cpu=not device.startswith("cuda"),
                bf16=False, fp16=False, gradient_checkpointing=False, learning_rate=lr,
                lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
                save_strategy="no", report_to="none", logging_steps=1, disable_tqdm=True,
                push_to_hub=False)


def quiet(trainer) -> None:
    """Drop the Trainer's own printing of every log dict (the run's rich bar and
    train_log.jsonl report the steps)."""
    import datasets
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    datasets.disable_progress_bars()
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
