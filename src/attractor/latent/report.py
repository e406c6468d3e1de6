"""The HTML report of ``attractor latent inspect``: what each continuous thought reads as under
the logit lens, how robust the answer is to noise on each thought, and what causal
interventions on each thought (zero, mean ablation, swap) do to accuracy."""
from __future__ import annotations

import base64
import html
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from attractor.report.figures import png_bytes  # noqa: E402
from attractor.store.run_store import atomic_write_bytes  # noqa: E402

READINGS = (("on_chain_at_t", "node t hops above the first option (backward proof)"),
            ("on_path_at_t", "node t hops along the root-to-answer path"),
            ("frontier_mass", "lens mass on all nodes t hops from the root (breadth-first)"),
            ("on_proof_at_t", "top token names step t of the backward proof (ProntoQA)"),
            ("proof_token_prob", "lens probability of the tokens naming that step (ProntoQA)"))


def flip_rate_figure(robust: pd.DataFrame):
    """Answer flip rate against noise scale, one line per perturbed thought."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for t, sub in robust.groupby("thought"):
        ax.plot(sub["sigma"], sub["flip_rate"], marker="o", label=f"thought {t}")
    ax.set_xscale("log")
    ax.set_xlabel("relative noise scale sigma")
    ax.set_ylabel("answer flip rate")
    ax.set_title("latent stability: answer flips under noise")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def intervention_figure(causal: pd.DataFrame):
    """Accuracy after intervening on thought t, one line per intervention (dotted: on every
    thought at once), clean accuracy dashed."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    one = causal[causal["scope"] == "one"]
    for kind, sub in one.groupby("intervention", sort=False):
        line, = ax.plot(sub["thought"], sub["accuracy"], marker="o", label=kind)
        every = causal[(causal["scope"] == "all") & (causal["intervention"] == kind)]
        if len(every):
            ax.axhline(float(every["accuracy"].iloc[0]), color=line.get_color(), ls=":",
                       label=f"{kind}, every thought")
    ax.axhline(float(causal["clean_accuracy"].iloc[0]), color="gray", ls="--", label="clean")
    ax.set_xlabel("thought t intervened on")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.set_title("causal role of each thought")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def lens_figure(per_t: pd.DataFrame):
    """Share of thoughts whose logit lens names the node each reading expects, per thought."""
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for col, label in READINGS:
        if col in per_t:
            ax.plot(per_t["thought"], per_t[col], marker="o", label=label)
    ax.set_xlabel("thought t (state after t thoughts)")
    ax.set_ylabel("share / mass")
    ax.set_ylim(0, 1)
    ax.set_title("what the thoughts point at (logit lens)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def per_thought(thoughts: pd.DataFrame) -> pd.DataFrame:
    """Mean of each lens reading per thought."""
    cols = [c for c, _ in READINGS if c in thoughts] + (["node_prob"] if "node" in thoughts
                                                         else [])
    return thoughts.groupby("thought")[cols].mean().reset_index()


def _png(fig) -> str:
    """The figure as base64 PNG text (the page embeds it)."""
    return base64.b64encode(png_bytes(fig, tight=False)).decode()


def write_latent_report(dest: Path, title: str, thoughts: pd.DataFrame, robust: pd.DataFrame,
                        causal: pd.DataFrame | None = None, examples: int = 3) -> Path:
    """Write ``flip_rate.png``, ``lens.png`` (ProsQA, ProntoQA), ``interventions.png`` (with
    ``causal``) and ``index.html`` into ``dest``."""
    figs: list[tuple[str, str, str]] = []
    f = _png(flip_rate_figure(robust))
    figs.append(("flip_rate", "Answer flip rate under Gaussian noise on one thought", f))
    if causal is not None and len(causal):
        figs.append(("interventions", "Accuracy after zeroing, mean-ablating or swapping one "
                     "thought", _png(intervention_figure(causal))))
    tables = []
    if "node" in thoughts or "on_proof_at_t" in thoughts:
        pt = per_thought(thoughts)
        figs.append(("lens", "What each thought points at", _png(lens_figure(pt))))
        tables.append(("Logit-lens readings per thought", pt))
    qids = list(dict.fromkeys(thoughts["question_id"]))[:examples]
    ex = thoughts[thoughts["question_id"].isin(qids)]
    keep = [c for c in ("question_id", "thought", "top_tokens", "top_probs", "node",
                        "node_hops_from_root", "on_chain_at_t", "proof_step", "on_proof_at_t")
            if c in ex]
    tables.append((f"Top tokens of each thought, first {len(qids)} questions", ex[keep]))
    tables.append(("Answer flip rate", robust))
    if causal is not None and len(causal):
        tables.append(("Interventions on one thought", causal))
    for name, _, data in figs:
        atomic_write_bytes(dest / f"{name}.png", base64.b64decode(data))
    parts = [f"<figure><img alt='{html.escape(t)}' src='data:image/png;base64,{d}'>"
             f"<figcaption>{html.escape(t)}</figcaption></figure>" for _, t, d in figs]
    parts += [f"<h2>{html.escape(t)}</h2>" + df.to_html(index=False, float_format="%.3f", border=0)
              for t, df in tables]
    page = f"""<!doctype html><html><head><meta charset="utf-8">
<title>{html.escape(title)}</title><style>body{{font-family:sans-serif;max-width:1000px;
margin:2em auto;color:#222}} img{{max-width:100%}} table{{border-collapse:collapse;font-size:12px}}
td,th{{padding:2px 8px;border-bottom:1px solid #ddd}}</style></head><body>
<h1>{html.escape(title)}</h1>{''.join(parts)}</body></html>"""
    path = dest / "index.html"
    atomic_write_bytes(path, page.encode())
    return path
