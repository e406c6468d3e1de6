"""``attractor report RUN``: a self-contained ``report/index.html`` (figures embedded as
base64 PNG, opens offline) and the same figures as PNG files beside it."""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np
import pandas as pd

from attractor.errors import UserError
from attractor.report import figures
from attractor.store.run_store import RunStore, atomic_write_bytes


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _tsne(x: np.ndarray, seed: int = 0) -> np.ndarray:
    from sklearn.manifold import TSNE

    perplexity = max(2.0, min(30.0, (len(x) - 1) / 3))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)


def build_report(run: str, layer: int | None = None, position: str | None = None) -> Path:
    """Write the report; returns the path of index.html."""
    if (Path(run) / "sweep.json").exists():
        from attractor.report.sweep import build_sweep_report

        return build_sweep_report(Path(run))
    store = RunStore(run)
    if not store.exists():
        raise UserError(f"{run}: not a run directory (no manifest.json)")
    store.check_metrics_fresh()
    q_path = store.sub("metrics", "questions.parquet")
    if not q_path.exists():
        raise UserError(f"{run}: no metrics yet; run 'attractor analyze {run}' first")
    q = store.metric_table("questions")
    out_dir = store.sub("report")
    figs: list[tuple[str, str, bytes]] = []
    figs.append(("entropy_vs_top1", "Answer entropy vs top-1 share",
                 _png(figures.entropy_vs_top1(q))))
    roll = store.rollouts(["question_id", "sample_id", "text", "correct", "answer_class"])
    if len(roll) >= 5:
        from sklearn.feature_extraction.text import TfidfVectorizer

        tfidf = TfidfVectorizer(max_features=50).fit_transform(roll["text"].fillna(""))
        z = _tsne(tfidf.toarray())
        figs.append(("tsne_text", "t-SNE of TF-IDF vectors (50 features) of the CoT texts",
                     _png(figures.tsne_scatter(z, roll["correct"].fillna(False).to_numpy(bool),
                                               "t-SNE of CoT texts (TF-IDF, 50 features)"))))
    lat_path = store.sub("metrics", "latent.parquet")
    if lat_path.exists():
        lat = store.metric_table("latent")
        figs.append(("tightness_heatmaps", "Tightness by layer and position",
                     _png(figures.tightness_heatmaps(lat, q))))
        figs.append(("tightness_by_layer", "Tightness by layer",
                     _png(figures.tightness_by_layer(lat, q))))
        layer = int(lat["layer"].max()) if layer is None else layer
        position = position or sorted(lat[lat["occurrence"] == 0]["position"].unique())[0]
        qid = q.sort_values("n_unique_answers", ascending=False)["question_id"].iloc[0]
        x = store.latents(qid, layer=layer, position=position)
        idx = store.latent_store.index().to_pandas()
        sids = sorted(idx[(idx.question_id == qid) & (idx.layer == layer)
                          & (idx.position == position) & (idx.occurrence == 0)]["sample_id"])
        ans = roll[roll.question_id == qid].set_index("sample_id")["answer_class"]
        answers = [ans.get(s) if isinstance(ans.get(s), str) else None for s in sids]
        figs.append(("pca_question", f"PCA of question {qid} at layer {layer}, {position}",
                     _png(figures.pca_of_question(x, answers,
                                                  f"{qid}: layer {layer}, {position}"))))
        all_x, all_ok = [], []
        ok_of = {(a, int(b)): bool(c) for a, b, c in
                 zip(roll["question_id"], roll["sample_id"], roll["correct"].fillna(False))}
        sel = idx[(idx.layer == layer) & (idx.position == position) & (idx.occurrence == 0)]
        for qq, sub in sel.groupby("question_id", sort=False):
            all_x.append(store.latents(qq, layer=layer, position=position))
            all_ok.append(np.array([ok_of.get((qq, int(s)), False)
                                    for s in sorted(sub["sample_id"])]))
        if all_x and sum(len(v) for v in all_x) >= 5:
            z = _tsne(np.concatenate(all_x))
            figs.append(("tsne_latents", f"t-SNE of latents (layer {layer}, {position})",
                         _png(figures.tsne_scatter(z, np.concatenate(all_ok),
                                                   f"t-SNE of latents, layer {layer}"))))
    sig_path = store.sub("metrics", "signals.parquet")
    if sig_path.exists():
        sig = store.metric_table("signals")
        if not sig.empty:
            figs.append(("auroc", "Which signals predict correctness (AUROC)",
                         _png(figures.auroc_chart(sig))))
    for name, _, data in figs:
        atomic_write_bytes(out_dir / f"{name}.png", data)
    page = _page(store, q, figs)
    path = out_dir / "index.html"
    atomic_write_bytes(path, page.encode())
    return path


def _page(store: RunStore, q: pd.DataFrame, figs) -> str:
    m = store.manifest
    model = (m.get("model") or {}).get("spec", "imported")
    task = (m.get("task") or {}).get("spec", "?")
    cols = ["question_id", "accuracy", "answer_entropy_nats", "top1_share", "n_unique_answers",
            "majority_answer", "majority_correct", "truncation_rate", "mean_tokens"]
    table = q[[c for c in cols if c in q.columns]].to_html(index=False, float_format="%.3f",
                                                           classes="questions", border=0)
    parts = [f"<figure id='fig-{name}'><img alt='{html.escape(title)}' "
             f"src='data:image/png;base64,{base64.b64encode(data).decode()}'>"
             f"<figcaption>{html.escape(title)}</figcaption></figure>"
             for name, title, data in figs]
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>attractor report: {html.escape(str(store.path.name))}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}}
figure{{margin:1.5em 0}} img{{max-width:100%}} table.questions{{border-collapse:collapse;
font-size:12px}} table.questions td,table.questions th{{padding:2px 8px;
border-bottom:1px solid #ddd}}</style></head><body>
<h1>attractor report</h1>
<p>model <b>{html.escape(str(model))}</b>, task <b>{html.escape(str(task))}</b>,
{len(q)} questions, {int(q['n_samples'].sum())} samples.</p>
{''.join(parts)}
<h2>Questions</h2>{table}
</body></html>"""
