"""Figures of the mechanism tables (``depth``, ``attention``, ``patch``). Each function returns
a Figure (Agg backend); stable questions are drawn in the run report's "right" colour."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from attractor.report.figures import RIGHT, WRONG, plt


def _by_group(df: pd.DataFrame, labels: pd.DataFrame, col: str, split: str) -> dict:
    """{group: Series over layer} of per-question means then the mean over questions."""
    per_q = df.groupby(["question_id", "layer"])[col].mean().reset_index().merge(
        labels[["question_id", split]], on="question_id")
    return {ok: g.groupby("layer")[col].mean() for ok, g in per_q.groupby(split)}


def depth_profiles(depth: pd.DataFrame, labels: pd.DataFrame):
    """Relative contribution and logit-lens KL by layer at the decisive token, stable vs
    unstable questions."""
    dec = depth[depth["position"] == "decisive"]
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    for ax, col, title in ((axes[0], "layer_rel", "||a+m|| / ||h||"),
                           (axes[1], "attn_rel", "||a|| / ||h||  (dashed: MLP ||m||/||h+a||)"),
                           (axes[2], "lens_kl", "logit lens KL(final || layer)")):
        for ok, colour, name in ((True, RIGHT, "stable"), (False, WRONG, "unstable")):
            g = _by_group(dec, labels, col, "stable").get(ok)
            if g is not None:
                ax.plot(g.index, g.to_numpy(), "-o", c=colour, label=name)
            if col == "attn_rel":
                m = _by_group(dec, labels, "mlp_rel", "stable").get(ok)
                if m is not None:
                    ax.plot(m.index, m.to_numpy(), "--o", c=colour, alpha=.7)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("layer")
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    axes[2].set_yscale("symlog", linthresh=0.01)
    axes[0].legend(frameon=False)
    fig.tight_layout()
    return fig


def commitment_hist(roll: pd.DataFrame, labels: pd.DataFrame, n_layers: int):
    """Distribution of the commitment layer, stable vs unstable questions' rollouts."""
    r = roll.dropna(subset=["commitment_layer"]).merge(labels, on="question_id")
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    bins = np.arange(-0.5, n_layers + 1.5)
    for ok, colour, name in ((True, RIGHT, "stable"), (False, WRONG, "unstable")):
        x = r[r["stable"] == ok]["commitment_layer"]
        if len(x):
            ax.hist(x, bins=bins, color=colour, alpha=.55, density=True,
                    label=f"{name} ({len(x)} rollouts)")
    ax.set_xlabel("commitment layer (lens top-1 = final from here on)")
    ax.set_ylabel("share of rollouts")
    ax.legend(frameon=False)
    fig.tight_layout()
    return fig


def skip_heatmap(skip: pd.DataFrame):
    """Mean relative change of each later layer's contribution when one layer is skipped, and
    the decisive-token flip rate per skipped layer."""
    with warnings.catch_warnings():  # layers at or before the skipped one are all NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        mat = np.stack([np.nanmean(np.stack(g["effect_by_layer"].to_numpy()), 0)
                        for _, g in skip.groupby("skipped_layer")])
    flips = skip.groupby("skipped_layer")["decisive_flip"].apply(
        lambda s: s.dropna().astype(float).mean())
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8), gridspec_kw={"width_ratios": [3, 2]})
    im = axes[0].imshow(np.clip(mat, 0, 1), vmin=0, vmax=1, aspect="auto", origin="lower",
                        cmap="magma")
    axes[0].set_xticks(range(mat.shape[1]))
    axes[0].set_yticks(range(mat.shape[0]))
    axes[0].set_xlabel("effect at layer")
    axes[0].set_ylabel("layer skipped")
    fig.colorbar(im, ax=axes[0], label="relative change (clipped at 1)")
    axes[1].bar(flips.index, flips.to_numpy(), color="#555")
    axes[1].set_xlabel("layer skipped")
    axes[1].set_ylabel("decisive-token flip rate")
    axes[1].set_ylim(0, 1)
    fig.tight_layout()
    return fig


def head_grids(att: pd.DataFrame, abl: pd.DataFrame | None):
    """Per-head heat maps: gold-sentence top-1 rate on correct steps (ProsQA), attention
    entropy, and greedy accuracy with the head ablated."""
    panels = []
    steps = att[att["n_steps"] > 0].dropna(subset=["gold_top"])
    if not steps.empty:
        w = steps.assign(x=steps["gold_top"] * steps["n_steps"])
        g = w.groupby(["layer", "head"])[["x", "n_steps"]].sum()
        panels.append(("most-attended sentence is gold", (g["x"] / g["n_steps"]), (0, 1)))
    panels.append(("attention entropy (nats)", att.groupby(["layer", "head"])["entropy"].mean(),
                   None))
    if abl is not None and not abl.empty:
        a = abl[abl["layer"] >= 0].groupby(["layer", "head"])["correct"].mean()
        panels.append(("greedy accuracy, head ablated", a, (0, 1)))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.8))
    axes = np.atleast_1d(axes)
    for ax, (title, series, lim) in zip(axes, panels):
        grid = series.unstack("head")
        im = ax.imshow(grid.to_numpy(float), aspect="auto", origin="lower", cmap="viridis",
                       vmin=lim[0] if lim else None, vmax=lim[1] if lim else None)
        ax.set_xticks(range(grid.shape[1]), grid.columns)
        ax.set_yticks(range(grid.shape[0]), grid.index)
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
        ax.set_title(title, fontsize=10)
        fig.colorbar(im, ax=ax)
    fig.tight_layout()
    return fig


def patching_heatmaps(patch: pd.DataFrame):
    """Mean patching effect by site and layer, one panel per direction."""
    from attractor.mechanism.patching import site_kind

    df = patch[patch["direction"] != "none"].copy()
    df["site"] = df["position"].map(site_kind)
    directions = [d for d in ("c->w", "w->c", "noise", "trace") if d in set(df["direction"])]
    fig, axes = plt.subplots(1, len(directions), figsize=(4.8 * len(directions), 3.4),
                             squeeze=False)
    sites = [s for s in ("subject_first", "subject_last", "prompt_last", "step", "decisive")
             if s in set(df["site"])]
    for k, (ax, d) in enumerate(zip(axes[0], directions)):
        sub = df[df["direction"] == d]
        per_q = sub.groupby(["question_id", "site", "layer"])["effect"].mean().reset_index()
        grid = per_q.groupby(["site", "layer"])["effect"].mean().unstack("layer").reindex(sites)
        im = ax.imshow(grid.to_numpy(float), aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1)
        ax.set_yticks(range(len(sites)), sites if k == 0 else [])
        ax.set_xticks(range(grid.shape[1]), grid.columns)
        ax.set_xlabel("layer patched (L = final norm input)")
        ax.set_title(f"{d} ({sub['question_id'].nunique()} questions)")
    fig.colorbar(im, ax=list(axes[0]), label="effect (1 = carries the source's answer)")
    return fig


def probe_curves(df: pd.DataFrame):
    """Out-of-fold AUROC against the number of completion tokens read, one panel per target:
    each layer's probe, and the baselines dashed."""
    targets = [t for t in ("correct", "majority_correct", "stable") if t in set(df["target"])]
    fig, axes = plt.subplots(1, len(targets), figsize=(5 * len(targets), 3.8), squeeze=False)
    for ax, target in zip(axes[0], targets):
        sub = df[df["target"] == target]
        hid = sub[sub["feature"] == "hidden"]
        for layer, g in hid.groupby("layer"):
            g = g.sort_values("n_tokens")
            ax.plot(g["n_tokens"], g["auroc"], "-o", label=f"layer {int(layer)}")
        for feat, style in (("shuffled labels", ":"), ("confidence", "--"), ("entropy", "-."),
                            ("question_length", (0, (1, 3)))):
            g = sub[sub["feature"] == feat].sort_values("n_tokens")
            if len(g):
                ax.plot(g["n_tokens"], g["auroc"], linestyle=style, c="#777", label=feat)
        ax.axhline(0.5, c="k", lw=.6)
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlabel("completion tokens read (N)")
        ax.set_ylabel("AUROC (out of fold)")
        ax.set_title(target, fontsize=10)
    axes[0][0].legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig
