"""``attractor depth|attention|patch RUN``: where stability forms inside the network."""
from __future__ import annotations

from typing import Any, Optional

import typer

from attractor.cli.app import app
from attractor.cli.options import DEVICE, DTYPE, RUN, _seed

MODEL = typer.Option(None, help="Model spec (default: the run's model; needed for imported "
                                "runs).")


def _ci(c: dict[str, Any], key: str) -> str:
    from attractor.ui import fmt

    v, ci = c.get(key), c.get(f"{key}_ci")
    if v is None:
        return "-"
    return f"{fmt(v)} [{fmt(ci[0])}, {fmt(ci[1])}]" if ci else fmt(v)


@app.command("depth")
def depth_cmd(
    run: str = RUN,
    positions: str = typer.Option("decisive,frac:0.25,frac:0.5,frac:0.75", help="Single-token position specs as for capture (frac:F, every:K, last:K, answer, decisive); decisive is always added."),
    skip: str = typer.Option("current", help="Layer skipping, the reference's two variants (first token always kept): current (skip positions 1.., read every position), future (skip 1..t-1, read >= t, four t as the reference draws them), or off."),
    model: Optional[str] = MODEL,
    max_tokens_per_batch: int = typer.Option(8192, help="Memory budget: rows x padded length per forward."),
    device: str = DEVICE,
    dtype: str = DTYPE,
) -> None:
    """Depth use per rollout: attention/MLP contributions, logit lens, commitment layer and
    layer skipping (resumable) -> metrics/depth*.parquet, depth_summary.json."""
    from attractor.pipeline.depth import run_depth
    from attractor.ui import console, table

    res = run_depth(run, positions=positions, skip=skip, model=model,
                    max_tokens_per_batch=max_tokens_per_batch, device=device, dtype=dtype)
    s = res["summary"]
    rows = []
    for split, (yes, no) in (("stable", ("stable", "unstable")),
                             ("majority_correct", ("right majority", "wrong majority"))):
        c = s["commitment_layer"][split]["commitment_layer"]
        rows.append([f"{yes} / {no}", _ci(c, "true"), _ci(c, "false"), _ci(c, "diff")])
    console.print(table(f"Commitment layer at the decisive token (of {res['n_layers']})",
                        ["split", "true", "false", "difference"], rows))
    if "skip_overall" in s:
        console.print(table("Skipping one layer", ["layer", "later change", "output change",
                                                   "decisive flip rate"],
                            [[k, v["later_change"], v["out_change"], v["flip_rate"]]
                             for k, v in s["skip_overall"].items()]))
    console.print(f"{res['counts']['rollouts']} rollouts -> {run}/metrics/depth.parquet")


@app.command("attention")
def attention_cmd(
    run: str = RUN,
    ablate: str = typer.Option("all", help="Heads to ablate (greedy re-decode of every question): all | none | LAYER.HEAD,..."),
    model: Optional[str] = MODEL,
    max_tokens_per_batch: int = typer.Option(4096, help="Memory budget: rows x padded length per forward (eager attention keeps one layer's rows x heads x length^2 weights)."),
    device: str = DEVICE,
    dtype: str = DTYPE,
) -> None:
    """Per-head attention entropy, lookback ratio and (ProsQA) gold-sentence attention, their
    AUROCs, and head ablation (eager attention; resumable) -> metrics/attention*.parquet."""
    from attractor.pipeline.attention import run_attention
    from attractor.ui import console, table

    res = run_attention(run, ablate=ablate, model=model,
                        max_tokens_per_batch=max_tokens_per_batch, device=device, dtype=dtype)
    s = res["summary"]
    if "lookup_head" in s:
        h = s["lookup_head"]
        rows = [["look-up head", f"{h['layer']}.{h['head']}"],
                ["most-attended sentence is gold", h["gold_top_rate"]],
                ["mass on gold sentences", h["gold_mass"]], ["correct steps", h["n_steps"]]]
        if "ablation" in s:
            rows += [["greedy accuracy", s["ablation"]["baseline_accuracy"]],
                     ["... with the look-up head ablated", h.get("ablated_accuracy")],
                     ["... median over other heads ablated",
                      s.get("other_heads_ablated_accuracy_median")]]
        console.print(table("Attention", ["", ""], rows))
    if s.get("strongest_auroc"):
        console.print(table("Strongest head AUROCs", ["head", "feature", "target", "AUROC",
                                                      "95% CI"],
                            [[f"{r['layer']}.{r['head']}", r["feature"], r["target"], r["auroc"],
                              f"[{r['ci_low']:.2f}, {r['ci_high']:.2f}]"]
                             for r in s["strongest_auroc"]]))
    console.print(f"{res['counts']['rollouts']} rollouts -> {run}/metrics/attention.parquet")


@app.command("patch")
def patch_cmd(
    run: str = RUN,
    pairs: int = typer.Option(1, help="Correct/wrong rollout pairs per question."),
    noise: bool = typer.Option(True, help="Also the noise-corruption baseline (every prompt token, one draw, logit difference)."),
    trace_draws: int = typer.Option(0, help="The reference's causal trace of each question's correct rollout (the subject's embeddings at 3 sigma of the subject tokens', this many noise draws, the answer probability read out); 0 skips it; the reference draws 10 (about 10 forwards per question)."),
    seed: int = typer.Option(0, help="Seed of the noise draws.", callback=_seed),
    model: Optional[str] = MODEL,
    device: str = DEVICE,
    dtype: str = DTYPE,
) -> None:
    """Activation patching between correct and wrong rollouts of each question (both ways)
    and a noise baseline (resumable) -> metrics/patching.parquet."""
    from attractor.pipeline.patch import run_patch
    from attractor.ui import console, table

    res = run_patch(run, pairs=pairs, noise=noise, trace_draws=trace_draws, seed=seed,
                    model=model, device=device, dtype=dtype)
    s, c = res["summary"], res["counts"]
    rows = []
    for direction, sites in (s.get("effect") or {}).items():
        for site, layers in sites.items():
            best = max(layers.items(), key=lambda kv: kv[1]["effect"])
            flip = best[1]["flip_rate"]
            rows.append([direction, site, best[0], best[1]["effect"],
                         "-" if flip is None else flip])
    if rows:
        console.print(table("Patching: the layer with the largest mean effect per site",
                            ["direction", "site", "layer", "effect", "flip rate"], rows))
    console.print(f"{c['questions_patched']} questions patched, {c['questions_traced']} "
                  f"causal-traced ({c['no_subject']} without a subject); skipped: "
                  f"{c['no_correct_or_no_wrong']} without both a correct and a wrong rollout, "
                  f"{c['same_decisive_token']} whose answers share the decisive token -> "
                  f"{run}/metrics/patching.parquet")


@app.command("probe")
def probe_cmd(
    run: str = RUN,
    layers: str = typer.Option("all", help="all | every:K | a list like 0,2,4 (0 = embeddings, L = after the final norm)."),
    tokens: str = typer.Option("0,1,2,4,8,16", help="Completion tokens read: N = 0 is the prompt's last token, N the N-th completion token; prefixes that already hold the answer marker, or that a rollout does not reach, are skipped and counted."),
    folds: int = typer.Option(5, help="Grouped cross-validation folds (a question is never in train and test)."),
    seed: int = typer.Option(0, help="Seed of the folds, PCA and the shuffled-label control.",
                             callback=_seed),
    refits: int = typer.Option(20, help="Cluster-bootstrap refits of the whole cross-validation behind each interval."),
    model: Optional[str] = MODEL,
    max_tokens_per_batch: int = typer.Option(16384, help="Memory budget: rows x padded length per forward."),
    device: str = DEVICE,
    dtype: str = DTYPE,
) -> None:
    """Early-token probes of correctness and stability (PCA + logistic regression, grouped CV,
    baselines) -> metrics/probes.parquet and probes/TARGET_nN.safetensors."""
    from attractor.pipeline.probe import run_probe
    from attractor.ui import console, table

    res = run_probe(run, layers=layers, tokens=tokens, folds=folds, seed=seed, refits=refits,
                    model=model,
                    max_tokens_per_batch=max_tokens_per_batch, device=device, dtype=dtype)
    df = res["table"]
    rows = []
    for (target, n), sub in df.groupby(["target", "n_tokens"], sort=False):
        hid = sub[sub["feature"] == "hidden, best layer"]
        if hid.empty:
            continue
        h = hid.iloc[0]
        alt = {r.feature: r.auroc for r in sub.itertuples() if not r.feature.startswith("hidden")}
        rows.append([target, n, int(h["layer"]), h["auroc"], f"{h['ci_low']:.2f}-"
                     f"{h['ci_high']:.2f}", alt.get("shuffled labels"), alt.get("confidence"),
                     alt.get("entropy"), alt.get("question_length")])
    console.print(table("Early-token probes: best layer per target and N (out-of-fold AUROC; "
                        "the interval corrected for choosing the layer)",
                        ["target", "N", "layer", "AUROC", "95% CI", "shuffled", "confidence",
                         "entropy", "q. length"], rows))
    c = res["counts"]
    console.print(f"{c['rows']} (rollout, N) rows; skipped {c['skipped_short']} beyond a "
                  f"rollout's length and {c['skipped_answered']} already answered -> "
                  f"{run}/metrics/probes.parquet, {run}/probes/")


@app.command("compare")
def compare_cmd(
    runs: list[str] = typer.Argument(..., help="Two or more analysed runs on the same questions."),
    out: str = typer.Option("compare", help="Folder for compare.parquet, tightness.parquet and compare.png."),
    position: Optional[str] = typer.Option(None, help="Captured position for latent tightness (default: the first each run captured)."),
) -> None:
    """Runs of different models or checkpoints side by side: accuracy, pass@k, maj@k, entropy,
    top-1 share, stability-gap AUROC and latent tightness by relative depth."""
    from attractor.pipeline.compare import run_compare
    from attractor.ui import console, table

    res = run_compare(runs, out, position)
    k = res["k"]
    cols = ["accuracy", "majority_correct", "answer_entropy_nats", "top1_share"] + (
        [f"pass@{k}", f"maj@{k}"] if k else [])
    rows = [[r["run"], r["model"], r["n_layers"], *[r[c] for c in cols],
             r["stability_gap_auroc"]] for r in res["table"].to_dict("records")]
    heads = ["accuracy", "right maj.", "entropy", "top-1"] + ([f"pass@{k}", f"maj@{k}"] if k
                                                              else [])
    console.print(table("compare (means over questions; intervals in compare.parquet)",
                        ["run", "model", "layers", *heads, "gap AUROC"], rows))
    td = res["tightness"]
    if len(td):
        grid = td.assign(depth=(td["relative_depth"] * 4).round() / 4).groupby(
            ["run", "depth"])["tightness"].mean().unstack("depth")
        console.print(table(f"latent tightness by relative depth ({td['position'].iloc[0]})",
                            ["run", *[f"{d:g}" for d in grid.columns]],
                            [[i, *row] for i, row in zip(grid.index, grid.to_numpy())]))
    console.print(f"-> {out}/compare.parquet, tightness.parquet, compare.png")
