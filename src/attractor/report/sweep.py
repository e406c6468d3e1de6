"""The report of a sweep directory: depth (token budget), width (k) and temperature."""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from attractor.errors import UserError  # noqa: E402
from attractor.report.figures import png_bytes  # noqa: E402
from attractor.store.run_store import RunStore, atomic_write_bytes  # noqa: E402


def load_cells(root: Path) -> pd.DataFrame:
    """One row per question per cell: the cell's T and budget and the question metrics."""
    spec = json.loads((root / "sweep.json").read_text())
    frames = []
    for c in spec["cells"]:
        store = RunStore(root / c["path"])
        q = store.metric_table("questions")
        tight = _tightness(store)
        if tight is not None:
            q = q.merge(tight, on="question_id", how="left")
        frames.append(q.assign(temperature=c["temperature"], max_new_tokens=c["max_new_tokens"],
                               prompt=c.get("prompt") or "default",
                               alpha=c.get("alpha") if c.get("alpha") is not None else 0.0))
    if not frames:
        raise UserError(f"{root}: the sweep has no cells")
    return pd.concat(frames, ignore_index=True)


def _tightness(store: RunStore) -> pd.DataFrame | None:
    """Per question: latent tightness at the last captured layer and first captured position
    (None when the cell captured no latents)."""
    path = store.sub("metrics") / "latent.parquet"
    if not path.exists():
        return None
    lat = pd.read_parquet(path)
    if lat.empty or "tightness" not in lat:
        return None
    lat = lat[(lat["occurrence"] == 0) & (lat["layer"] == lat["layer"].max())]
    lat = lat[lat["position"] == sorted(lat["position"].unique())[0]]
    return lat[["question_id", "tightness"]]


def overthinking(df: pd.DataFrame, drop: float = 0.1) -> pd.DataFrame:
    """Questions whose accuracy at the largest budget is below their best smaller budget's
    accuracy by at least ``drop`` (per temperature)."""
    rows = []
    top = df["max_new_tokens"].max()
    for (t, qid), g in df.groupby(["temperature", "question_id"]):
        at_top = g[g["max_new_tokens"] == top]["accuracy"]
        below = g[g["max_new_tokens"] < top]
        if at_top.empty or below.empty:
            continue
        best = below.loc[below["accuracy"].idxmax()]
        if best["accuracy"] - at_top.iloc[0] >= drop:
            rows.append({"temperature": t, "question_id": qid,
                         "best_budget": int(best["max_new_tokens"]),
                         "accuracy_at_best": float(best["accuracy"]), "largest_budget": int(top),
                         "accuracy_at_largest": float(at_top.iloc[0])})
    return pd.DataFrame(rows, columns=["temperature", "question_id", "best_budget",
                                       "accuracy_at_best", "largest_budget",
                                       "accuracy_at_largest"])




def build_sweep_report(root: Path) -> Path:
    """Figures and a self-contained HTML page in ``root/report``."""
    every = load_cells(root)
    # the temperature / budget figures use the first prompt and the first strength
    df = every[(every["prompt"] == every["prompt"].iloc[0])
               & (every["alpha"] == every["alpha"].iloc[0])]
    mean = df.groupby(["temperature", "max_new_tokens"]).mean(numeric_only=True).reset_index()
    figs = []
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for t, g in mean.groupby("temperature"):
        axes[0].plot(g["max_new_tokens"], g["accuracy"], marker="o", label=f"T={t:g}")
        axes[1].plot(g["max_new_tokens"], g["truncation_rate"], marker="o", label=f"T={t:g}")
    for ax, name in zip(axes, ("accuracy", "truncation rate")):
        ax.set_xlabel("max new tokens (depth)")
        ax.set_ylabel(name)
        ax.legend(frameon=False)
    figs.append(("depth", "Accuracy and truncation vs token budget", png_bytes(fig)))
    top = mean[mean["max_new_tokens"] == mean["max_new_tokens"].max()]
    ks = sorted(int(c.split("@")[1]) for c in top.columns if c.startswith("pass@"))
    fig, ax = plt.subplots(figsize=(6, 4))
    for _, r in top.iterrows():
        ax.plot(ks, [r[f"pass@{k}"] for k in ks], marker="o", label=f"pass@k T={r.temperature:g}")
        ax.plot(ks, [r[f"maj@{k}"] for k in ks], ls="--", marker="x",
                label=f"maj@k T={r.temperature:g}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("k (width)")
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=7, frameon=False)
    figs.append(("width", "pass@k and maj@k vs k (largest budget)", png_bytes(fig)))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    axes[0].plot(top["temperature"], top["answer_entropy_nats"], marker="o")
    axes[0].set_ylabel("answer entropy (nats)")
    axes[1].plot(top["temperature"], top["top1_share"], marker="o")
    axes[1].set_ylabel("top-1 share")
    for ax in axes:
        ax.set_xlabel("temperature")
    figs.append(("temperature", "Entropy and top-1 share vs temperature (largest budget)",
                 png_bytes(fig)))
    over = overthinking(df)
    axes_html = ""
    from attractor.report.sweep_axes import axis_figure, axis_table

    base = every[(every["temperature"] == every["temperature"].iloc[0])
                 & (every["max_new_tokens"] == every["max_new_tokens"].max())]
    for axis, title in (("prompt", "Prompts"), ("alpha", "Steering strength")):
        sub = base[base["alpha"] == base["alpha"].iloc[0]] if axis == "prompt" else \
            base[base["prompt"] == base["prompt"].iloc[0]]
        if sub[axis].nunique() < 2:
            continue
        t = axis_table(sub, axis)
        figs.append((axis, f"{title} at T={sub['temperature'].iloc[0]:g}, "
                           f"{int(sub['max_new_tokens'].iloc[0])} tokens (95% intervals)",
                     png_bytes(axis_figure(t, axis))))
        axes_html += (f"<h2 id='axis-{axis}'>{title}</h2>"
                      + t.to_html(index=False, float_format="%.3f", border=0))
    out = root / "report"
    for name, _, data in figs:
        atomic_write_bytes(out / f"{name}.png", data)
    parts = "".join(f"<figure id='fig-{n}'><img alt='{html.escape(t)}' src='data:image/png;base64,"
                    f"{base64.b64encode(d).decode()}'><figcaption>{html.escape(t)}</figcaption>"
                    f"</figure>" for n, t, d in figs)
    keys = [k for k in ("prompt", "alpha") if every[k].nunique() > 1]
    cells = every.groupby(keys + ["temperature", "max_new_tokens"]).mean(
        numeric_only=True).reset_index()
    table = cells[keys + [c for c in ("temperature", "max_new_tokens", "accuracy",
                                      "truncation_rate", "answer_entropy_nats", "top1_share",
                                      "mean_tokens", "tightness") if c in cells]].to_html(
        index=False, float_format="%.3f", border=0)
    over_html = over.to_html(index=False, float_format="%.3f", border=0) if len(over) else \
        "<p>No question loses accuracy as the budget grows.</p>"
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>attractor sweep</title>"
            f"<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}"
            f"img{{max-width:100%}}</style></head><body><h1>attractor sweep</h1>{parts}"
            f"<h2>Cells</h2>{table}{axes_html}<h2 id='overthinking'>Overthinking: accuracy falls as the "
            f"budget grows</h2>{over_html}</body></html>")
    path = out / "index.html"
    atomic_write_bytes(path, page.encode())
    return path
