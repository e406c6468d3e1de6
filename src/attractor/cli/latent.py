"""``attractor latent ...``: train, evaluate, inspect and search continuous-thought loops
(Stable Latent Reasoning). Thin wrappers over :mod:`attractor.latent`; every option comes from a
config dataclass (:mod:`attractor.cli.options`); heavy imports happen inside the commands."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from attractor.cli.app import latent_app
from attractor.cli.options import DATA_DIR, config_command
from attractor.latent.command_config import EvalConfig, InspectConfig
from attractor.latent.seek.config import SeekConfig
from attractor.latent.slr.train_config import LatentTrainConfig


@config_command(latent_app, "train", LatentTrainConfig, required=("out",))
def latent_train_cmd(cfg: LatentTrainConfig, data_dir: Optional[str] = DATA_DIR) -> None:
    """Train a latent loop with the Coconut curriculum (resumable: run it again to resume)."""
    from attractor.latent.slr.train import train_latent
    from attractor.ui import console, table

    res = train_latent(cfg, log=console.print, data_dir=data_dir)
    if res.get("stage_curve"):
        cols = ["stage", "thoughts", "loss", "dev_accuracy", "state_norm"]
        console.print(table(f"stage curve on {cfg.dev_task}", cols,
                            [[pt[c] for c in cols] for pt in res["stage_curve"]]))
    if res.get("final_loss") is not None:
        end = f"final loss {res['final_loss']:.3f}"
    else:  # hrpo / grpo: reinforcement only
        end = f"reward {res['first_reward']:.3f} -> {res['final_reward']:.3f} (first/last 20 steps)"
    console.print(f"checkpoint: {res['out']} ({res['steps']} steps, {end})")


@config_command(latent_app, "eval", EvalConfig)
def latent_eval_cmd(
    cfg: EvalConfig,
    checkpoints: Optional[list[str]] = typer.Argument(None, help="Checkpoint directories (default: the released ones)."),
    out: Optional[str] = typer.Option(None, help="Directory for latent_eval.parquet (a row per method) and latent_questions.parquet (a row per method and question: correct, answer, text, passes, iterations)."),
    data_dir: Optional[str] = DATA_DIR,
) -> None:
    """No-CoT, CoT, soft thinking and each checkpoint: accuracy, forward passes, wall time, iterations."""
    from attractor.latent.evaluate import run_eval
    from attractor.ui import console, frame_table, progress_bar

    with progress_bar() as bar:
        job = bar.add_task("latent eval", total=None)
        df, _ = run_eval(cfg, [Path(c) for c in checkpoints] if checkpoints else None,
                         out=Path(out) if out else None, data_dir=data_dir,
                         on_row=lambda t, m: bar.update(job, advance=1,
                                                        description=f"latent eval {t}: {m} done"))
    cols = ["method", "accuracy", "forward_passes", "wall_s", "iterations", "final_change",
            "cot_format"]
    heads = ["method", "accuracy", "passes", "wall_s", "iters", "change", "cot"]  # fits 80 columns
    for name, sub in df.groupby("task", sort=False):
        console.print(frame_table(f"latent eval: {name} ({int(sub['n'].iloc[0])} questions)",
                                  sub[cols], heads))


@config_command(latent_app, "inspect", InspectConfig)
def latent_inspect_cmd(
    cfg: InspectConfig,
    checkpoint: str = typer.Argument(..., help="Checkpoint directory."),
    out: str = typer.Option(..., "--out", help="Directory for thoughts.parquet, robustness.parquet, interventions.parquet, figures and index.html."),
    data_dir: Optional[str] = DATA_DIR,
) -> None:
    """Logit lens, noise flip rate and causal interventions (zero, mean, swap) per thought.

    The lens reads each thought as a graph node on ProsQA (path, chain, frontier) or a proof
    step on ProntoQA."""
    from attractor.latent.inspect import run_inspect
    from attractor.latent.report import per_thought
    from attractor.ui import console, frame_table, progress_bar

    with progress_bar() as bar:
        job = bar.add_task("inspect (loop runs)", total=None)
        res = run_inspect(Path(checkpoint), cfg, Path(out), data_dir=data_dir,
                          on_start=lambda n: bar.update(job, total=n),
                          on_step=lambda: bar.update(job, advance=1))
    if "colar" in res:
        console.print(frame_table("colar: own latents against same-norm random ones",
                                  res["colar"]))
        console.print(f"written: {res['path']}")
        return
    thoughts, robust, causal = res["thoughts"], res["robustness"], res["interventions"]
    if "node" in thoughts or "on_proof_at_t" in thoughts:
        console.print(frame_table("thoughts (logit lens)", per_thought(thoughts)))
    console.print(frame_table("answer flip rate under noise on one thought", robust))
    if causal is not None:
        cols = ["thought", "scope", "intervention", "accuracy", "accuracy_change", "flip_rate"]
        console.print(frame_table(f"interventions on one thought (clean accuracy "
                                  f"{causal['clean_accuracy'].iloc[0]:.3f})", causal[cols]))
    console.print(f"written: {out}/thoughts.parquet, robustness.parquet"
                  f"{', interventions.parquet' if causal is not None else ''}, figures; "
                  f"report {res['page']}")


@config_command(latent_app, "seek", SeekConfig)
def latent_seek_cmd(
    cfg: SeekConfig,
    checkpoint: str = typer.Argument(..., help="Checkpoint directory of a loop (slr, coconut, ...)."),
    task: str = typer.Option("prosqa", help="Task to answer."),
    model: str = typer.Option("tiny", help="Base model spec the checkpoint was trained on."),
    limit: Optional[int] = typer.Option(100, help="Only the first Q questions."),
    out: Optional[str] = typer.Option(None, help="Directory for latentseek.parquet (one row per question); batches are stored as they finish and a rerun resumes."),
    device: str = typer.Option("auto", help="cpu, cuda[:i] or auto (a GPU when one is visible)."),
    data_dir: Optional[str] = DATA_DIR,
) -> None:
    """LatentSeek: test-time policy gradient on a loop's thoughts (weights frozen).

    Prints the loop against LatentSeek; latentseek.parquet has one row per question."""
    from attractor.latent.checkpoint import load_loop, require_loop
    from attractor.latent.seek.search import seek, summary
    from attractor.models.load import load, resolve_device
    from attractor.tasks.loaders import load_task
    from attractor.tasks.prompts import prompt_ids
    from attractor.ui import console, frame_table, progress_bar

    from attractor.checks import check_destination

    if out:
        check_destination(out)
    require_loop(Path(checkpoint))
    problems, _ = load_task(task, data_dir=data_dir, limit=limit)
    device = resolve_device(device)
    base, tok = load(model, dtype="float32", device=device)
    loop, _ = load_loop(Path(checkpoint), base, tok, device=device)
    prompts = [prompt_ids(p, tok, True) for p in problems]
    with progress_bar() as bar:
        job = bar.add_task(f"latentseek ({cfg.reward})", total=len(prompts))
        df = seek(loop, problems, prompts, cfg, on_batch=lambda n: bar.update(job, advance=n),
                  out=Path(out) if out else None,
                  source=f"{Path(checkpoint).resolve()} on {model}, task {task}")
    s = summary(df, cfg.reward)
    console.print(frame_table(f"latentseek: {checkpoint} on {task} ({len(df)} questions)", s))
    if cfg.reward == "oracle":
        console.print("oracle reward reads the gold answer: an upper bound, not a method's accuracy")
