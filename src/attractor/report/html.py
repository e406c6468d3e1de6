"""``attractor report RUN``: a self-contained ``report/index.html`` (figures embedded as
base64 PNG, opens offline) and the same figures as PNG files beside it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from attractor.metrics.questions import rollouts_in_reading
from attractor.report import figures, page
from attractor.report.figures import png_bytes
from attractor.store.run_store import RunStore, atomic_write_bytes, open_run




def _tsne(x: np.ndarray, seed: int = 0) -> np.ndarray:
    from sklearn.manifold import TSNE

    perplexity = max(2.0, min(30.0, (len(x) - 1) / 3))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)


def build_report(run: str, layer: int | None = None, position: str | None = None,
                 on_figure=None) -> Path:
    """Write the report; returns the path of index.html. ``on_figure(name)`` follows each
    figure (progress)."""
    if (Path(run) / "sweep.json").exists():
        from attractor.report.sweep import build_sweep_report

        return build_sweep_report(Path(run))
    store = open_run(run)
    store.check_metrics_fresh()
    layer, position = store.hidden_store.default_choice(layer, position)
    q = store.metric_table("questions")
    summary = store.metric_json("summary")
    roll = rollouts_in_reading(store, ["question_id", "sample_id", "text", "correct",
                                       "answer_class"])
    out_dir = store.sub("report")
    pngs: dict[str, bytes] = {}

    def fig(name: str, title: str, caption: str, figure_obj) -> str:
        pngs[name] = png_bytes(figure_obj)
        if on_figure:
            on_figure(name)
        return page.figure(name, title, caption, pngs[name])

    sections = [("provenance", "Run", page.provenance(store.manifest, summary)),
                ("headline", "Headline (95% intervals over questions)", page.headline(summary))]
    sections.append(("stability-gap", "Stability gap: questions whose majority is right vs wrong",
                     "<div class='grid'><div>" + page.gap(summary) + "</div><div>" + fig(
                         "entropy_vs_top1", "Answer entropy vs top-1 share",
                         "Each dot is a question. Stable questions sit bottom right (one answer "
                         "dominates); if right majorities (green) cluster there and wrong ones "
                         "(red) spread up and left, agreement predicts correctness.",
                         figures.entropy_vs_top1(q)) + "</div></div>"))
    sections.append(("scaling", "pass@k and maj@k", fig(
        "pass_maj", "pass@k and maj@k against k",
        "pass@k rising far above maj@k means the right answer is often sampled but rarely the "
        "most common one: more votes will not find it, a better selector might.",
        figures.pass_maj_curves(summary))))
    sig_path = store.sub("metrics", "signals.parquet")
    if sig_path.exists():
        sig = store.metric_table("signals")
        if not sig.empty:
            small = sig[sig[["n_positive", "n_negative"]].min(axis=1) < figures.SMALL_CLASS]
            warn = (f"<p class='banner'>{len(small)} AUROCs rest on a class with fewer than "
                    f"{figures.SMALL_CLASS} members (marked !): read their intervals, not their "
                    "dots.</p>" if len(small) else "")
            sections.append(("signals", "Which signals predict correctness", warn + fig(
                "auroc", "AUROC of each signal with its 95% interval, by family",
                "Each signal is scored in its fixed direction (registry in docs/concepts.md), so a dot "
                "below the dashed 0.5 line means the signal points the other way on this run. "
                "Sample-level intervals resample questions (cluster bootstrap).",
                figures.auroc_chart(sig))))
    if store.sub("metrics", "vote.parquet").exists():
        vote = store.metric_table("vote")
        sections.append(("votes", "Weighted voting", fig(
            "vote", "Accuracy of each vote against k",
            "The thick black line is plain majority. A weighting helps where its line rises above "
            "majority at the same k (the same subsets are drawn for every method).",
            figures.vote_curves(vote))))
    if store.sub("metrics", "early_stop.parquet").exists():
        es = store.metric_table("early_stop")
        cf = es[es["row"] == "cross-fit"]
        sections.append(("early-stop", "Early stopping (replayed)", fig(
            "early_stop", "Tokens saved against accuracy lost",
            "Small markers: every setting on all questions. Large outlined markers: each rule's "
            "cross-fitted choice (chosen on one half of the questions, scored on the other): the "
            "numbers to quote. Good rules sit far right on the dashed line.",
            figures.early_stop_scatter(es)) + page.simple_table(
                ["rule", "settings chosen", "tokens saved", "accuracy", "accuracy loss"],
                [[r.rule, r.setting, r.tokens_saved, r.accuracy, r.accuracy_loss]
                 for r in cf.itertuples()])))
    latent_html = _latent_figures(store, q, roll, layer, position, fig)
    if latent_html:
        sections.append(("latents", "Latent geometry", latent_html))
    from attractor.report.mechanism import mechanism_sections

    sections += mechanism_sections(store, fig)
    gold = {p.id: p.gold for p in store.questions()}
    texts = {qid: sub.sort_values("sample_id")["text"].fillna("").tolist()
             for qid, sub in roll.groupby("question_id")}
    sections.append(("questions", f"Questions ({len(q)})", page.question_table(q, gold, texts)))
    for name, data in pngs.items():
        atomic_write_bytes(out_dir / f"{name}.png", data)
    html_text = page.page(f"attractor report: {store.path.name}", sections,
                          bool(summary.get("partial")), summary.get("notes") or [])
    path = out_dir / "index.html"
    atomic_write_bytes(path, html_text.encode())
    return path


def _latent_figures(store: RunStore, q: pd.DataFrame, roll: pd.DataFrame, layer, position,
                    fig) -> str:
    """Text and latent embeddings, tightness, and the PCA of the most and least stable
    questions (gold answer marked)."""
    out, tsne = "", ""
    if len(roll) >= 5:
        from sklearn.feature_extraction.text import TfidfVectorizer

        tfidf = TfidfVectorizer(max_features=50).fit_transform(roll["text"].fillna(""))
        z = _tsne(tfidf.toarray())
        tsne += fig("tsne_text", "t-SNE of the CoT texts (TF-IDF, 50 features)",
                   "Do right and wrong samples write different chains? Separate clouds say yes.",
                   figures.tsne_scatter(z, roll["correct"].fillna(False).to_numpy(bool),
                                        "t-SNE of CoT texts (TF-IDF, 50 features)"))
    if not store.sub("metrics", "latent.parquet").exists():
        return f"<div class='grid'>{tsne}</div>"
    lat = store.metric_table("latent")
    out += fig("tightness_heatmaps", "Tightness by layer and position",
               "Mean pairwise cosine of a question's samples. Where the right-majority panel is "
               "brighter than the wrong one, latent agreement tracks correctness.",
               figures.tightness_heatmaps(lat, q))
    out += fig("tightness_by_layer", "Tightness by layer",
               "The layer where right (green) and wrong (red) curves part is where stability "
               "forms.", figures.tightness_by_layer(lat, q))
    layer = int(lat["layer"].max()) if layer is None else layer
    position = position or sorted(lat[lat["occurrence"] == 0]["position"].unique())[0]
    idx = store.hidden_store.index().to_pandas()
    sel = idx[(idx.layer == layer) & (idx.position == position) & (idx.occurrence == 0)]
    answered = q[(q.get("answered_share", 1.0) > 0) & q["question_id"].isin(sel["question_id"])]
    pcas = ""
    if not answered.empty:
        ranked = answered.sort_values(["top1_share", "answer_entropy_nats"],
                                      ascending=[True, False])
        for name, qid, which in (("pca_question", ranked["question_id"].iloc[0], "least stable"),
                                 ("pca_stable", ranked["question_id"].iloc[-1], "most stable")):
            x = store.latents(qid, layer=layer, position=position)
            sids = sorted(sel[sel.question_id == qid]["sample_id"])
            sub = roll[roll.question_id == qid].set_index("sample_id")
            answers = [sub["answer_class"].get(s) if isinstance(sub["answer_class"].get(s), str)
                       else None for s in sids]
            right = sub[sub["correct"].fillna(False).astype(bool)]["answer_class"]
            gold = right.iloc[0] if len(right) else None
            pcas += fig(name, f"PCA of the {which} question ({qid}), layer {layer}, {position}",
                       "Samples coloured by answer, the gold answer as stars. A stable question "
                       "forms one tight cluster; an unstable one splits by answer if the latent "
                       "already encodes it.",
                       figures.pca_of_question(x, answers, f"{qid} ({which}): layer {layer}, "
                                               f"{position}", gold))
    all_x, all_ok = [], []
    ok_of = {(a, int(b)): bool(c) for a, b, c in
             zip(roll["question_id"], roll["sample_id"], roll["correct"].fillna(False))}
    for qq, sub in sel.groupby("question_id", sort=False):
        all_x.append(store.latents(qq, layer=layer, position=position))
        all_ok.append(np.array([ok_of.get((qq, int(s)), False) for s in sorted(sub["sample_id"])]))
    if all_x and sum(len(v) for v in all_x) >= 5:
        z = _tsne(np.concatenate(all_x))
        tsne += fig("tsne_latents", f"t-SNE of the latents (layer {layer}, {position})",
                   "Every sample of every question; colour is correctness.",
                   figures.tsne_scatter(z, np.concatenate(all_ok),
                                        f"t-SNE of latents, layer {layer}"))
    return out + f"<div class='grid'>{pcas}</div><div class='grid'>{tsne}</div>"
