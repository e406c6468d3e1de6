"""The report's "Inside the network" sections, for runs where ``attractor depth``,
``attention``, ``patch`` or ``probe`` ran."""
from __future__ import annotations

import json
from typing import Callable

from attractor.report import mechanism_figures as mf
from attractor.report.page import simple_table
from attractor.store.run_store import RunStore


def mechanism_sections(store: RunStore, fig: Callable) -> list[tuple[str, str, str]]:
    """(id, heading, html) of each mechanism analysis the run has."""
    from attractor.run_model import CHEAP, stability_labels

    sections = []
    path = store.sub("metrics")
    have = {n: (path / f"{n}.parquet").exists() for n in ("depth", "attention", "patching",
                                                           "probes")}
    if not any(have.values()):
        return sections
    labels = stability_labels(store.rollouts(CHEAP))
    if have["depth"]:
        depth = store.metric_table("depth")
        roll = store.metric_table("depth_rollouts")
        n_layers = int(depth["layer"].max())
        html = fig("depth_profiles", "Depth use at the decisive token",
                   "Relative contribution of each layer (attention + MLP) to the residual "
                   "stream, and how far the logit lens at each layer is from the final "
                   "distribution; stable questions (top-1 share above the median) in green. "
                   "A layer whose KL drops sharply is where the answer forms.",
                   mf.depth_profiles(depth, labels))
        html += fig("commitment", "Commitment layer",
                    "The first layer from which the lens's top token is the final one and stays "
                    "so. Later commitment on unstable questions means the answer is settled "
                    "deeper in the network.", mf.commitment_hist(roll, labels, n_layers))
        if (path / "depth_skip.parquet").exists():
            html += fig("depth_skip", "Skipping one layer",
                        "Left: how much each later layer's contribution changes when one layer "
                        "passes its input through (Csordas et al.'s future effect). Right: how "
                        "often the decisive token flips. Layers whose skip changes little are "
                        "layers the model barely uses.", mf.skip_heatmap(
                            store.metric_table("depth_skip")))
        sections.append(("depth", "Inside the network: depth use", html))
    if have["attention"]:
        att = store.metric_table("attention")
        abl_path = path / "attention_ablation.parquet"
        abl = store.metric_table("attention_ablation") if abl_path.exists() else None
        html = fig("attention_heads", "Attention heads",
                   "Per head: how often its most-attended prompt sentence is a gold one at a "
                   "correct proof step (ProsQA), its attention entropy, and greedy accuracy with "
                   "the head zeroed. A look-up head is bright in the first panel and dark in the "
                   "last.", mf.head_grids(att, abl))
        summ = path / "attention_summary.json"
        if summ.exists():
            s = json.loads(summ.read_text())
            rows = [[f"{r['layer']}.{r['head']}", r["feature"], r["target"], r["auroc"],
                     r["ci_low"], r["ci_high"]] for r in s.get("strongest_auroc", [])]
            if rows:
                html += "<h3>Strongest head AUROCs</h3>" + simple_table(
                    ["head", "feature", "target", "AUROC", "95% low", "95% high"], rows)
        sections.append(("attention", "Inside the network: attention", html))
    patching = store.metric_table("patching") if have["patching"] else None
    if patching is not None and (patching["direction"] != "none").any():
        html = fig("patching", "Activation patching",
                   "Mean effect of replacing the residual stream at one layer and site with the "
                   "source run's (1: the patch alone moves the answer logit difference all the "
                   "way to the source's). c->w: correct into wrong; noise: restoring a clean "
                   "state into a run whose prompt embeddings were corrupted; trace: the "
                   "reference's causal trace (subject corrupted, answer probability restored).",
                   mf.patching_heatmaps(patching))
        sections.append(("patching", "Inside the network: causal patching", html))
    elif patching is not None:   # every question skipped: say why instead of an empty figure
        why = patching["position"].value_counts().to_dict()
        sections.append(("patching", "Inside the network: causal patching",
                         "<p>No question had both a correct and a wrong rollout to patch "
                         f"({', '.join(f'{k}: {v}' for k, v in why.items())}).</p>"))
    if have["probes"]:
        html = fig("probes", "Early-token probes",
                   "Out-of-fold AUROC of a probe on each layer's hidden state after N completion "
                   "tokens (N = 0: before the first), per target; dashed grey: baselines on the "
                   "same prefix and the shuffled-label control (should sit on 0.5).",
                   mf.probe_curves(store.metric_table("probes")))
        sections.append(("probes", "Predicting stability from early tokens", html))
    return sections
