"""``attractor latent ...``: train, evaluate, inspect and search continuous-thought loops
(Stable Latent Reasoning). Thin wrappers like :mod:`attractor.cli`; heavy imports happen inside
the commands."""
from __future__ import annotations

from typing import Optional

import typer

from attractor.errors import ConfigError

latent_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                         help="Stable Latent Reasoning: train, evaluate, inspect and search continuous-thought loops.")


@latent_app.command("train")
def latent_train_cmd(
    task: str = typer.Option("synthetic:prosqa:n=2000,seed=11", help="Training task with CoT steps (never a test split)."),
    model: str = typer.Option("tiny", help="Base model spec."),
    method: str = typer.Option("slr", help="coconut, slr, slr-minus-timestep|lora|residual|norm, or the baselines cot, no-cot."),
    out: str = typer.Option(..., "--out", help="Checkpoint directory (resumed if it exists)."),
    init: Optional[str] = typer.Option(None, help="Start from this checkpoint's weights (e.g. a cot checkpoint)."),
    cot_format: str = typer.Option("task", help="CoT steps: the task's (task), the tiny model's backward proof on ProsQA or ProntoQA, one name per step (backward-proof; backward-proof-first takes the parent stated first in the question where the proof would draw one), or that proof in the question's own sentences, one per step (backward-sentences)."),
    stages: int = typer.Option(6, help="Latent stages; the last makes every step latent."),
    first_stage: int = typer.Option(0, help="First stage (1 skips the CoT stage when the base already writes this CoT)."),
    thoughts_per_step: int = typer.Option(1, help="c: thoughts replacing one CoT step."),
    epochs_per_stage: int = typer.Option(1, help="Passes over the data per stage."),
    mix: float = typer.Option(0.0, help="Chance of training an example at an earlier stage."),
    thought_loss: float = typer.Option(0.0, help="Weight of a logit-lens loss pointing each thought at the first token of the CoT step it replaces (0: off, Coconut's recipe)."),
    feedback: str = typer.Option("hidden", help="What a thought feeds back: hidden (the last hidden state, Coconut) or soft (the logit lens's mix of token embeddings, as soft thinking; here trained)."),
    soft_temperature: float = typer.Option(0.3, help="Temperature of the soft feedback."),
    loop: list[str] = typer.Option([], "--loop", help="KEY=VALUE override of the method's loop config (repeatable): lora_rank, lora_alpha, lora_targets (comma-separated), timestep (none|sinusoidal|learned), timestep_mode (add|concat), residual (none|h0|prev), residual_alpha, norm_match (true|false), end_marker."),
    batch_size: int = typer.Option(16, help="Questions per step."),
    lr: float = typer.Option(3e-4, help="AdamW learning rate."),
    halting: str = typer.Option("fixed", help="fixed, state, kl or token."),
    epsilon: float = typer.Option(1e-2, help="Halting threshold (> 0)."),
    seed: int = typer.Option(0, help="Seed of the data order."),
    dev_task: Optional[str] = typer.Option(None, help="Task scored after every stage (the stage curve in loop.json; never a test split)."),
    dev_limit: int = typer.Option(200, help="Questions of --dev-task scored."),
    threads: int = typer.Option(2, help="torch CPU threads."),
    device: str = typer.Option("auto", help="cpu, cuda[:i] or auto (bfloat16 autocast on a GPU)."),
    data_dir: Optional[str] = typer.Option(None, help="Folder of preset data files."),
) -> None:
    """Train a latent loop with the Coconut curriculum (resumable: run it again to resume)."""
    from attractor.latent.train import LatentTrainConfig, train_latent
    from attractor.ui import console, table

    cfg = LatentTrainConfig(task=task, model=model, method=method, out=out, init=init,
                            cot_format=cot_format, first_stage=first_stage, stages=stages,
                            thoughts_per_step=thoughts_per_step, epochs_per_stage=epochs_per_stage,
                            mix=mix, thought_loss=thought_loss, feedback=feedback,
                            soft_temperature=soft_temperature, loop=list(loop),
                            batch_size=batch_size, lr=lr,
                            halting=halting, epsilon=epsilon,
                            seed=seed, dev_task=dev_task, dev_limit=dev_limit, threads=threads,
                            device=device)
    res = train_latent(cfg, log=console.print, data_dir=data_dir)
    if res.get("stage_curve"):
        cols = ["stage", "thoughts", "loss", "dev_accuracy", "state_norm"]
        console.print(table(f"stage curve on {dev_task}", cols,
                            [[pt[c] for c in cols] for pt in res["stage_curve"]]))
    console.print(f"checkpoint: {res['out']} ({res['steps']} steps, final loss {res['final_loss']:.3f})")


@latent_app.command("eval")
def latent_eval_cmd(
    checkpoints: Optional[list[str]] = typer.Argument(None, help="Checkpoint directories (default: the released ones)."),
    task: list[str] = typer.Option(["prosqa"], "--task", help="Task(s) to evaluate on (repeatable)."),
    model: str = typer.Option("tiny", help="Base model spec the checkpoints were trained on."),
    limit: Optional[int] = typer.Option(None, help="Only the first Q questions."),
    out: Optional[str] = typer.Option(None, help="Directory for latent_eval.parquet (a row per method) and latent_questions.parquet (a row per method and question: correct, answer, text, passes, iterations)."),
    epsilon: float = typer.Option(1e-2, help="Threshold of the adaptive-halting rows."),
    halting: list[str] = typer.Option(["state"], "--halting", help="Adaptive halting of the extra row per fixed-T loop (repeatable): state, kl or token (stop where the lens names the answer marker; loops trained with --thought-loss learn it)."),
    soft_thoughts: int = typer.Option(12, help="Most soft thoughts of the training-free soft-thinking row (0: no row)."),
    device: str = typer.Option("auto", help="cpu, cuda[:i] or auto."),
    data_dir: Optional[str] = typer.Option(None, help="Folder of preset data files."),
) -> None:
    """No-CoT, CoT, soft thinking and each checkpoint: accuracy, forward passes, wall time, iterations."""
    from pathlib import Path

    import pandas as pd

    from attractor.latent.evaluate import evaluate
    from attractor.ui import console, frame_table, progress_bar

    if epsilon <= 0:
        raise ConfigError(f"--epsilon must be > 0, got {epsilon}")
    if soft_thoughts < 0:
        raise ConfigError(f"--soft-thoughts must be >= 0, got {soft_thoughts}")
    bad = [h for h in halting if h not in ("state", "kl", "token")]
    if bad:
        raise ConfigError(f"--halting must be state, kl or token, got {bad[0]!r}")
    per_question: list[dict] = []
    with progress_bar() as bar:
        job = bar.add_task("latent eval", total=None)
        frames = [evaluate(t, [Path(c) for c in checkpoints] if checkpoints else None,
                           model_spec=model, limit=limit, data_dir=data_dir, epsilon=epsilon,
                           haltings=tuple(dict.fromkeys(halting)),
                           soft_thoughts=soft_thoughts, device=device, questions=per_question,
                           on_row=lambda m, t=t: bar.update(job, advance=1,
                                                            description=f"latent eval {t}: {m} done"))
                  for t in task]
    df = pd.concat(frames, ignore_index=True)
    if out:
        from attractor.store.run_store import atomic_write_bytes

        Path(out).mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(Path(out) / "latent_eval.parquet", df.to_parquet(index=False))
        atomic_write_bytes(Path(out) / "latent_questions.parquet",
                           pd.DataFrame(per_question).to_parquet(index=False))
    cols = ["method", "accuracy", "forward_passes", "wall_s", "iterations", "final_change",
            "cot_format"]
    heads = ["method", "accuracy", "passes", "wall_s", "iters", "change", "cot"]  # fits 80 columns
    for name, sub in df.groupby("task", sort=False):
        console.print(frame_table(f"latent eval: {name} ({int(sub['n'].iloc[0])} questions)",
                                  sub[cols], heads))


@latent_app.command("inspect")
def latent_inspect_cmd(
    checkpoint: str = typer.Argument(..., help="Checkpoint directory."),
    task: str = typer.Option("prosqa", help="Task to read the thoughts on."),
    model: str = typer.Option("tiny", help="Base model spec the checkpoint was trained on."),
    limit: Optional[int] = typer.Option(100, help="Only the first Q questions."),
    sigma: str = typer.Option("0.1,0.3,1.0", help="Relative noise scales for the flip rate."),
    interventions: str = typer.Option("zero,mean,swap", help="Causal interventions on each thought, comma-separated: zero, mean (mean ablation), swap (another question's thought); empty: none."),
    out: str = typer.Option(..., "--out", help="Directory for thoughts.parquet, robustness.parquet, interventions.parquet, figures and index.html."),
    data_dir: Optional[str] = typer.Option(None, help="Folder of preset data files."),
) -> None:
    """Logit lens, noise flip rate and causal interventions (zero, mean, swap) per thought.

    The lens reads each thought as a graph node on ProsQA (path, chain, frontier) or a proof
    step on ProntoQA."""
    from pathlib import Path

    from attractor.latent.checkpoint import cot_format_of, load_loop, require_loop
    from attractor.latent.inspect import flip_rates, thought_table
    from attractor.latent.interventions import KINDS, intervention_table
    from attractor.models.load import load
    from attractor.report.latent import per_thought, write_latent_report
    from attractor.store.run_store import atomic_write_bytes
    from attractor.tasks.loaders import load_task
    from attractor.tasks.prompts import prompt_ids
    from attractor.ui import console, frame_table, progress_bar

    try:
        sigmas = [float(x) for x in sigma.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--sigma must be comma-separated numbers, got {sigma!r}") from None
    if not sigmas or any(x <= 0 for x in sigmas):
        raise ConfigError(f"--sigma values must be > 0, got {sigma!r}")
    kinds = tuple(dict.fromkeys(k.strip() for k in interventions.split(",") if k.strip()))
    if any(k not in KINDS for k in kinds):
        raise ConfigError(f"--interventions must name {', '.join(KINDS)}, got {interventions!r}")
    require_loop(Path(checkpoint))
    problems, _ = load_task(task, data_dir=data_dir, limit=limit)
    base, tok = load(model, dtype="float32", device="cpu")
    loop, meta = load_loop(Path(checkpoint), base, tok)
    prompts = [prompt_ids(p, tok, True) for p in problems]
    # every row of the tables below is a full run of the loop over all questions: 1 for the
    # lens, 1 + T x sigmas for the noise, 1 + (T + 1) x kinds for the interventions
    T = loop.cfg.max_thoughts
    with progress_bar() as bar:
        job = bar.add_task("inspect (loop runs)",
                           total=1 + (1 + T * len(sigmas)) + (1 + (T + 1) * len(kinds) if kinds else 0))
        step = lambda: bar.update(job, advance=1)  # noqa: E731
        thoughts = thought_table(loop, problems, prompts, cot_format=cot_format_of(meta))
        step()
        robust = flip_rates(loop, problems, prompts, sigmas, on_step=step)
        causal = (intervention_table(loop, problems, prompts, kinds, on_step=step)
                  if kinds else None)
    dest = Path(out)
    dest.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(dest / "thoughts.parquet", thoughts.to_parquet(index=False))
    atomic_write_bytes(dest / "robustness.parquet", robust.to_parquet(index=False))
    if causal is not None:
        atomic_write_bytes(dest / "interventions.parquet", causal.to_parquet(index=False))
    if "node" in thoughts or "on_proof_at_t" in thoughts:
        per_t = per_thought(thoughts)
        console.print(frame_table("thoughts (logit lens)", per_t))
    console.print(frame_table("answer flip rate under noise on one thought", robust))
    if causal is not None:
        cols = ["thought", "scope", "intervention", "accuracy", "accuracy_change", "flip_rate"]
        console.print(frame_table(f"interventions on one thought (clean accuracy "
                                  f"{causal['clean_accuracy'].iloc[0]:.3f})", causal[cols]))
    page = write_latent_report(dest, f"latent thoughts: {checkpoint} on {task}", thoughts, robust,
                               causal)
    console.print(f"written: {dest}/thoughts.parquet, robustness.parquet"
                  f"{', interventions.parquet' if causal is not None else ''}, figures; "
                  f"report {page}")


@latent_app.command("seek")
def latent_seek_cmd(
    checkpoint: str = typer.Argument(..., help="Checkpoint directory of a loop (slr, coconut, ...)."),
    task: str = typer.Option("prosqa", help="Task to answer."),
    model: str = typer.Option("tiny", help="Base model spec the checkpoint was trained on."),
    limit: Optional[int] = typer.Option(100, help="Only the first Q questions."),
    reward: str = typer.Option("vote", help="vote (label-free: agree with the samples' majority) or oracle (reads the gold answer: an upper bound only)."),
    iterations: int = typer.Option(10, help="Most policy-gradient updates per question."),
    samples: int = typer.Option(8, help="Answers sampled per update."),
    lr: float = typer.Option(0.1, help="Adam step in units of each thought's RMS per element."),
    temperature: float = typer.Option(1.0, help="Sampling temperature of the answers."),
    threshold: float = typer.Option(0.9, help="Stop a question once its samples' mean reward reaches this."),
    seed: int = typer.Option(0, help="Sampling seed."),
    out: Optional[str] = typer.Option(None, help="Directory for latentseek.parquet (one row per question); batches are stored as they finish and a rerun resumes."),
    device: str = typer.Option("auto", help="cpu, cuda[:i] or auto (a GPU when one is visible)."),
    data_dir: Optional[str] = typer.Option(None, help="Folder of preset data files."),
) -> None:
    """LatentSeek: test-time policy gradient on a loop's thoughts (weights frozen).

    Prints the loop against LatentSeek; latentseek.parquet has one row per question."""
    from pathlib import Path

    from attractor.latent.checkpoint import load_loop, require_loop
    from attractor.latent.latentseek import SeekConfig, seek, summary
    from attractor.models.load import load, resolve_device
    from attractor.tasks.loaders import load_task
    from attractor.tasks.prompts import prompt_ids
    from attractor.ui import console, frame_table, progress_bar

    cfg = SeekConfig(iterations=iterations, samples=samples, lr=lr, temperature=temperature,
                     reward=reward, threshold=threshold, seed=seed)
    require_loop(Path(checkpoint))
    problems, _ = load_task(task, data_dir=data_dir, limit=limit)
    device = resolve_device(device)
    base, tok = load(model, dtype="float32", device=device)
    loop, _ = load_loop(Path(checkpoint), base, tok, device=device)
    prompts = [prompt_ids(p, tok, True) for p in problems]
    with progress_bar() as bar:
        job = bar.add_task(f"latentseek ({reward})", total=len(prompts))
        df = seek(loop, problems, prompts, cfg, on_batch=lambda n: bar.update(job, advance=n),
                  out=Path(out) if out else None,
                  source=f"{Path(checkpoint).resolve()} on {model}, task {task}")
    s = summary(df, reward)
    console.print(frame_table(f"latentseek: {checkpoint} on {task} ({len(df)} questions)", s))
    if reward == "oracle":
        console.print("oracle reward reads the gold answer: an upper bound, not a method's accuracy")
