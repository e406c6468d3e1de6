"""``attractor compare RUN RUN...``: runs of different models or checkpoints on the same
questions, side by side: accuracy, pass@k and maj@k at the largest k they share, answer
entropy, top-1 share, the stability-gap AUROC (top-1 share predicting a right majority), and
latent tightness by *relative* depth (layer / L), so models of different depths line up.
Writes ``OUT/compare.parquet``, ``OUT/tightness.parquet`` and ``OUT/compare.png``."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from attractor.checks import check_destination
from attractor.errors import UserError
from attractor.store.atomic import atomic_write_bytes, atomic_write_table
from attractor.store.run_store import RunStore, open_run


def _questions_key(store: RunStore) -> tuple[list[str], str]:
    qs = store.questions()
    h = hashlib.sha256("\n".join(f"{p.id}\t{p.question}" for p in qs).encode()).hexdigest()
    return sorted(p.id for p in qs), h


def _name(store: RunStore, taken: set[str]) -> str:
    name = store.path.name
    k = 2
    while name in taken:
        name = f"{store.path.name}#{k}"
        k += 1
    return name


def run_compare(runs: list[str], out: str, position: str | None = None) -> dict[str, Any]:
    """Compare ``runs`` (each analysed) into ``out``; returns the two tables."""
    if len(runs) < 2:
        raise UserError("compare needs at least two runs")
    check_destination(out)
    stores = []
    for r in runs:
        s = open_run(r, writes=False)
        s.check_metrics_fresh()
        if position is not None:
            s.hidden_store.default_choice(None, position)   # refuses a position not captured
        stores.append(s)
    ids0, key0 = _questions_key(stores[0])
    for s, r in zip(stores[1:], runs[1:]):
        ids, key = _questions_key(s)
        if key != key0:
            extra = len(set(ids) ^ set(ids0))
            raise UserError(f"{r}: its questions differ from {runs[0]}'s ({extra} ids differ"
                            f"{'' if extra else '; same ids, other texts'}); compare runs on "
                            "the same questions")
    summaries = [s.metric_json("summary") for s in stores]
    ks = [sorted(int(k.split("@")[1]) for k in sm["means"] if k.startswith("pass@"))
          for sm in summaries]
    k = max(set.intersection(*(set(x) for x in ks))) if all(ks) else None
    rows, tight, taken = [], [], set()
    for s, sm in zip(stores, summaries):
        name = _name(s, taken)
        taken.add(name)
        m = s.manifest
        n_layers = (m.model or {}).get("num_hidden_layers")
        row: dict[str, Any] = {"run": name, "path": str(s.path), "model": m.model_spec,
                               "weights_sha256": m.weights_sha256, "n_layers": n_layers,
                               "n_questions": sm["n_questions"], "n_samples": sm["n_samples"]}
        for col in ["accuracy", "majority_correct", "answer_entropy_nats", "top1_share"] + (
                [f"pass@{k}", f"maj@{k}"] if k else []):
            v = sm["means"].get(col, {})
            row[col], row[f"{col}_low"], row[f"{col}_high"] = (v.get("mean"), v.get("ci_low"),
                                                               v.get("ci_high"))
        row["stability_gap_auroc"] = sm["auroc_majority_correct"]["top1_share"]
        rows.append(row)
        lat_path = s.sub("metrics", "latent.parquet")
        if lat_path.exists() and n_layers:
            lat = s.metric_table("latent")
            lat = lat[lat["occurrence"] == 0]
            pos = position or sorted(lat["position"].unique())[0]
            sub = lat[lat["position"] == pos]
            for layer, g in sub.groupby("layer"):
                tight.append({"run": name, "position": pos, "layer": int(layer),
                              "relative_depth": int(layer) / n_layers,
                              "tightness": float(g["tightness"].mean()),
                              "n_questions": int(g["question_id"].nunique())})
    df, td = pd.DataFrame(rows), pd.DataFrame(tight)
    out_dir = Path(out)
    atomic_write_table(out_dir / "compare.parquet", pa.Table.from_pandas(df,
                                                                         preserve_index=False))
    atomic_write_table(out_dir / "tightness.parquet", pa.Table.from_pandas(
        td if len(td) else pd.DataFrame({"run": pd.Series(dtype=str)}), preserve_index=False))
    atomic_write_bytes(out_dir / "compare.png", _figure(df, td, k))
    return {"table": df, "tightness": td, "k": k}


def _figure(df: pd.DataFrame, td: pd.DataFrame, k: int | None) -> bytes:
    from attractor.report.figures import plt
    from attractor.report.figures import png_bytes

    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    metrics = ["accuracy", "top1_share"] + ([f"pass@{k}", f"maj@{k}"] if k else [])
    x = np.arange(len(metrics))
    width = 0.8 / len(df)
    for i, d in enumerate(df.to_dict("records")):
        vals = [d[m] for m in metrics]
        err = [[d[m] - d[f"{m}_low"] for m in metrics], [d[f"{m}_high"] - d[m] for m in metrics]]
        axes[0].bar(x + i * width, vals, width, yerr=err, capsize=3, label=d["run"])
    axes[0].set_xticks(x + 0.4 - width / 2, metrics)
    axes[0].set_ylim(0, 1.05)
    axes[0].legend(frameon=False, fontsize=8)
    axes[0].set_title("per run (95% intervals over questions)")
    if len(td):
        for name, g in td.groupby("run", sort=False):
            g = g.sort_values("relative_depth")
            axes[1].plot(g["relative_depth"], g["tightness"], "-o", label=name)
        axes[1].set_xlabel("relative depth (layer / L)")
        axes[1].set_ylabel(f"latent tightness ({td['position'].iloc[0]})")
        axes[1].legend(frameon=False, fontsize=8)
    else:
        axes[1].text(0.5, 0.5, "no captured latents", ha="center", va="center")
        axes[1].set_axis_off()
    fig.tight_layout()
    return png_bytes(fig)
