"""Matplotlib figures of a run's metrics. Each function returns a Figure (Agg backend)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def png_bytes(fig, tight: bool = True) -> bytes:
    """A figure as PNG bytes (110 dpi; ``tight``: cropped to its artists), then closed: every
    report's one figure writer."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, **({"bbox_inches": "tight"} if tight else {}))
    plt.close(fig)
    return buf.getvalue()

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
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
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
    fig, ax = plt.subplots(figsize=(12, 4.2))
    for pos, style in zip(sorted(lat["position"].unique()), ["-", "--", ":", "-."] * 4):
        for ok, colour in ((True, RIGHT), (False, WRONG)):
            sub = lat[(lat["position"] == pos) & (lat["majority_correct"] == ok)]
            if sub.empty:
                continue
            m = sub.groupby("layer")["tightness"].mean()
            ax.plot(m.index, m.values, style, color=colour,
                    label=f"{pos}, {'right' if ok else 'wrong'}")
    ax.set_xlabel("layer (0 = embeddings)")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_ylabel("tightness")
    ax.set_title("tightness by layer")
    ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def pca_of_question(x: np.ndarray, answers: list, title: str, gold: str | None = None):
    """PCA (2 components) of one question's latents coloured by answer class (the gold answer's
    class drawn as stars)."""
    from sklearn.decomposition import PCA

    fig, ax = plt.subplots(figsize=(5.5, 4))
    if len(x) >= 2:
        z = PCA(n_components=2).fit_transform(x)
        labels = [a if a is not None else "(no answer)" for a in answers]
        for lab in dict.fromkeys(labels):
            idx = [i for i, v in enumerate(labels) if v == lab]
            is_gold = gold is not None and lab == gold
            ax.scatter(z[idx, 0], z[idx, 1], label=str(lab)[:30] + (" (gold)" if is_gold else ""),
                       alpha=.8, marker="*" if is_gold else "o", s=90 if is_gold else 30)
        ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
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


FAMILY_ORDER = ("answer", "deepconf", "trajectory", "consistency", "tightness", "token", "length")
SMALL_CLASS = 10


def auroc_chart(sig: pd.DataFrame, top: int = 12):
    """AUROC dot plot with 95% intervals, one panel per target, signals grouped by family (each
    in its fixed direction, so a dot can fall below 0.5); a label ends with the class sizes and a
    warning mark where a class has fewer than 10 members."""
    targets = [t for t in ("sample_correct", "majority_correct") if (sig["target"] == t).any()]
    rows = {t: _auroc_rows(sig[sig["target"] == t], top) for t in targets}
    height = max(3.0, 0.28 * max((len(r) for r in rows.values()), default=1) + 1.2)
    fig, axes = plt.subplots(1, max(1, len(targets)), figsize=(13, height), squeeze=False)
    for ax, target in zip(axes[0], targets):
        sub = rows[target]
        y = np.arange(len(sub))[::-1]
        colours = [FAMILY_COLOURS.get(f, "#555555") for f in sub["family"]]
        ax.errorbar(sub["auroc"], y, xerr=np.nan_to_num(np.vstack(
            [sub["auroc"] - sub["ci_low"], sub["ci_high"] - sub["auroc"]]).clip(0)),
            fmt="none", ecolor="#999999", elinewidth=1.2, capsize=2)
        ax.scatter(sub["auroc"], y, c=colours, s=28, zorder=3)
        labels = [f"{s} ({d}; n+={p}, n-={n}){' !' if min(p, n) < SMALL_CLASS else ''}"
                  for s, d, p, n in zip(sub["signal"], sub["direction"], sub["n_positive"],
                                        sub["n_negative"])]
        ax.set_yticks(y, labels, fontsize=7)
        ax.axvline(0.5, color="grey", lw=1, ls="--")
        ax.set_xlim(0.0, 1.0)
        ax.set_xlabel("AUROC (fixed direction)")
        ax.set_title(f"predicting {target.replace('_', ' ')}")
    handles = [plt.Line2D([], [], marker="o", ls="", color=c, label=f)
               for f, c in FAMILY_COLOURS.items() if (sig["family"] == f).any()]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False,
               bbox_to_anchor=(0.5, -0.02))
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


FAMILY_COLOURS = {"answer": "#264653", "deepconf": "#2a9d8f", "trajectory": "#e9c46a",
                  "consistency": "#f4a261", "tightness": "#e76f51", "token": "#6d597a",
                  "length": "#8d99ae"}


def _auroc_rows(sub: pd.DataFrame, top: int) -> pd.DataFrame:
    """Per family, its strongest signals (by distance from 0.5), families in a fixed order."""
    parts = []
    for fam in FAMILY_ORDER:
        f = sub[sub["family"] == fam]
        if not f.empty:
            parts.append(f.assign(_d=(f["auroc"] - 0.5).abs()).sort_values("_d", ascending=False)
                         .head(max(2, top // 4)))
    return pd.concat(parts).drop(columns="_d") if parts else sub


def pass_maj_curves(summary: dict):
    """pass@k and maj@k (mean over questions, 95% interval) against k."""
    means = summary["means"]
    fig, ax = plt.subplots(figsize=(12, 4))
    for prefix, colour, style in (("pass@", RIGHT, "-o"), ("maj@", "#264653", "--s")):
        ks = sorted(int(k.split("@")[1]) for k in means if k.startswith(prefix))
        if not ks:
            continue
        m = [means[f"{prefix}{k}"]["mean"] for k in ks]
        lo = [means[f"{prefix}{k}"]["ci_low"] for k in ks]
        hi = [means[f"{prefix}{k}"]["ci_high"] for k in ks]
        ax.plot(ks, m, style, color=colour, label=prefix[:-1] + "@k")
        ax.fill_between(ks, lo, hi, color=colour, alpha=.15)
    _k_axis(ax, ks)
    ax.set_xlabel("k (samples)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax.legend(frameon=False, loc="lower right")
    fig.tight_layout()
    return fig


def _k_axis(ax, ks) -> None:
    """A log2 axis with the k values as integer ticks."""
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(ks), [str(int(k)) for k in ks])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())


def vote_curves(vote: pd.DataFrame):
    """Accuracy of each voting method against k (the majority drawn thick)."""
    fig, ax = plt.subplots(figsize=(12, 4.8))
    styles = ["-", "--", ":", "-."]
    for i, (method, sub) in enumerate(vote.groupby("method", sort=False)):
        sub = sub.sort_values("k")
        main = method == "majority"
        ax.plot(sub["k"], sub["accuracy"], styles[i % 4], lw=2.5 if main else 1.2,
                color="black" if main else None, label=method)
    _k_axis(ax, sorted(vote["k"].unique()))
    ax.set_xlabel("k (samples voting)")
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def early_stop_scatter(table: pd.DataFrame):
    """Tokens saved against accuracy loss for every setting of every rule; the cross-fitted
    choices drawn as large outlined markers."""
    fig, ax = plt.subplots(figsize=(12, 4.8))
    markers = {"deepconf": "o", "consensus": "s", "latent": "^"}
    for rule, sub in table[table["row"] == "grid"].groupby("rule"):
        ax.scatter(sub["tokens_saved"], sub["accuracy_loss"], marker=markers.get(rule, "x"),
                   alpha=.5, label=f"{rule} (grid)")
    cf = table[table["row"] == "cross-fit"]
    for r in cf.itertuples():
        ax.scatter([r.tokens_saved], [r.accuracy_loss], marker=markers.get(r.rule, "x"), s=160,
                   facecolors="none", edgecolors="black", linewidths=1.5)
    ax.axhline(0, color="grey", lw=1, ls="--")
    ax.set_xlabel("tokens saved (fraction of full budget)")
    ax.set_ylabel("accuracy loss vs majority of all samples")
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig
