"""Matplotlib figures of a run's metrics. Each function returns a Figure (Agg backend)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

RIGHT, WRONG = "#2a9d8f", "#e76f51"


def entropy_vs_top1(q: pd.DataFrame):
    """Answer entropy against top-1 share per question, coloured by majority correctness."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for ok, colour, label in ((True, RIGHT, "majority correct"), (False, WRONG, "majority wrong")):
        sub = q[q["majority_correct"] == ok]
        ax.scatter(sub["top1_share"], sub["answer_entropy_nats"], c=colour, label=label, alpha=.8,
                   edgecolors="none")
    ax.set_xlabel("top-1 answer share")
    ax.set_ylabel("answer entropy (nats)")
    ax.set_title("answer stability per question")
    ax.legend(frameon=False)
    fig.tight_layout()
    return fig


def tightness_heatmaps(lat: pd.DataFrame, q: pd.DataFrame):
    """Mean tightness (layer x position) over questions whose majority is right vs wrong."""
    lat = lat[lat["occurrence"] == 0].merge(q[["question_id", "majority_correct"]],
                                            on="question_id")
    positions = sorted(lat["position"].unique())
    layers = sorted(lat["layer"].unique())
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    vmin, vmax = lat["tightness"].min(), lat["tightness"].max()
    for ax, ok, title in ((axes[0], True, "majority correct"), (axes[1], False, "majority wrong")):
        sub = lat[lat["majority_correct"] == ok]
        grid = sub.pivot_table(index="layer", columns="position", values="tightness")
        grid = grid.reindex(index=layers, columns=positions)
        im = ax.imshow(grid.to_numpy(), aspect="auto", origin="lower", vmin=vmin, vmax=vmax,
                       cmap="viridis")
        ax.set_xticks(range(len(positions)), positions, rotation=45, ha="right")
        ax.set_yticks(range(len(layers)), layers)
        ax.set_title(f"{title} ({sub['question_id'].nunique()} questions)")
        ax.set_xlabel("position")
    axes[0].set_ylabel("layer (0 = embeddings)")
    fig.colorbar(im, ax=axes, label="tightness (mean pairwise cosine)")
    return fig


def tightness_by_layer(lat: pd.DataFrame, q: pd.DataFrame):
    """Tightness by layer at each position, right vs wrong majority."""
    lat = lat[lat["occurrence"] == 0].merge(q[["question_id", "majority_correct"]],
                                            on="question_id")
    fig, ax = plt.subplots(figsize=(6, 4))
    for pos, style in zip(sorted(lat["position"].unique()), ["-", "--", ":", "-."] * 4):
        for ok, colour in ((True, RIGHT), (False, WRONG)):
            sub = lat[(lat["position"] == pos) & (lat["majority_correct"] == ok)]
            if sub.empty:
                continue
            m = sub.groupby("layer")["tightness"].mean()
            ax.plot(m.index, m.values, style, color=colour,
                    label=f"{pos}, {'right' if ok else 'wrong'}")
    ax.set_xlabel("layer")
    ax.set_ylabel("tightness")
    ax.set_title("tightness by layer")
    ax.legend(fontsize=7, frameon=False, ncol=2)
    fig.tight_layout()
    return fig


def pca_of_question(x: np.ndarray, answers: list, title: str):
    """PCA (2 components) of one question's latents coloured by answer class."""
    from sklearn.decomposition import PCA

    fig, ax = plt.subplots(figsize=(5.5, 4))
    if len(x) >= 2:
        z = PCA(n_components=2).fit_transform(x)
        labels = [a if a is not None else "(no answer)" for a in answers]
        for lab in dict.fromkeys(labels):
            idx = [i for i, v in enumerate(labels) if v == lab]
            ax.scatter(z[idx, 0], z[idx, 1], label=str(lab)[:30], alpha=.8)
        ax.legend(fontsize=7, frameon=False)
    ax.set_title(title)
    ax.set_xlabel("PC1")
    ax.set_ylabel("PC2")
    fig.tight_layout()
    return fig


def tsne_scatter(z: np.ndarray, correct: np.ndarray, title: str):
    """A 2-D embedding coloured by sample correctness."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for ok, colour, label in ((True, RIGHT, "correct"), (False, WRONG, "wrong")):
        m = correct == ok
        ax.scatter(z[m, 0], z[m, 1], c=colour, s=12, alpha=.7, label=label, edgecolors="none")
    ax.set_title(title)
    ax.legend(frameon=False)
    fig.tight_layout()
    return fig


def auroc_chart(sig: pd.DataFrame, top: int = 15):
    """Horizontal bars of the best signals' AUROCs (each in its fixed direction, so a bar can
    fall below 0.5) with their intervals."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for ax, target in zip(axes, ("sample_correct", "majority_correct")):
        sub = sig[sig["target"] == target].head(top)[::-1]
        if not sub.empty:
            err = np.vstack([sub["auroc"] - sub["ci_low"], sub["ci_high"] - sub["auroc"]])
            ax.barh([f"{s} ({d})" for s, d in zip(sub["signal"], sub["direction"])], sub["auroc"],
                    xerr=np.nan_to_num(err), color="#457b9d")
            ax.axvline(0.5, color="grey", lw=1, ls="--")
            ax.set_xlim(0.0, 1.0)
            ax.tick_params(axis="y", labelsize=7)
        ax.set_title(f"AUROC for {target.replace('_', ' ')}")
    fig.tight_layout()
    return fig
