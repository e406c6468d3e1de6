"""The HTML of a run's report: provenance, the headline numbers, the stability gap, figures with
captions that say what to look for, and a sortable, searchable per-question table. Everything is
inline (CSS, a few lines of script, base64 PNGs): the page opens offline and fetches nothing."""
from __future__ import annotations

import base64
import html
from typing import Any

import pandas as pd

from attractor.store.manifest import Manifest
from attractor.ui import fmt

CSS = """
body{font-family:system-ui,sans-serif;margin:0;color:#1d1d1f;background:#fafafa}
main{max-width:1280px;margin:0 auto;padding:1.2em 2em}
h1{margin:.2em 0}h2{margin-top:1.8em;border-bottom:1px solid #ddd;padding-bottom:.2em}
.banner{background:#fff3cd;border:1px solid #e0c36a;padding:.6em 1em;margin:1em 0}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(320px,1fr));gap:1.2em}
table{border-collapse:collapse;font-size:13px;background:#fff}
td,th{padding:3px 10px;border-bottom:1px solid #e5e5e5;text-align:left;vertical-align:top}
th{background:#f0f0f0}
figure{margin:1.2em 0;background:#fff;padding:.6em;border:1px solid #e5e5e5}
figure img{max-width:100%;height:auto;display:block;margin:0 auto}
figcaption{font-size:13px;color:#444;margin-top:.4em}
#qtable th{cursor:pointer;user-select:none}#qtable th:after{content:" \\2195";color:#aaa}
#qsearch{margin:.6em 0;padding:4px 8px;width:320px;max-width:100%}
details{font-size:12px}details pre{white-space:pre-wrap;margin:.2em 0}
.ok{color:#2a9d8f;font-weight:600}.bad{color:#e76f51;font-weight:600}
"""

SCRIPT = """
const t=document.getElementById('qtable');
if(t){const rows=()=>[...t.tBodies[0].rows];
[...t.tHead.rows[0].cells].forEach((th,i)=>th.onclick=()=>{
 const dir=th.dataset.dir==='asc'?'desc':'asc';th.dataset.dir=dir;
 const key=r=>{const v=r.cells[i].dataset.v??r.cells[i].textContent;const n=parseFloat(v);
  return isNaN(n)?v:n};
 rows().sort((a,b)=>{const x=key(a),y=key(b);return (x>y?1:x<y?-1:0)*(dir==='asc'?1:-1)})
  .forEach(r=>t.tBodies[0].appendChild(r))});
document.getElementById('qsearch').oninput=e=>{const q=e.target.value.toLowerCase();
 rows().forEach(r=>r.style.display=r.textContent.toLowerCase().includes(q)?'':'none')}}
"""


def figure(name: str, title: str, caption: str, png: bytes) -> str:
    """One figure with its id (``fig-NAME``), alt text and a caption."""
    return (f"<figure id='fig-{name}'><img alt='{html.escape(title)}' "
            f"src='data:image/png;base64,{base64.b64encode(png).decode()}'>"
            f"<figcaption><b>{html.escape(title)}.</b> {html.escape(caption)}</figcaption>"
            "</figure>")


def simple_table(headers: list[str], rows: list[list[Any]], table_id: str = "") -> str:
    """A small HTML table of formatted cells."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(fmt(c))}</td>" for c in r) + "</tr>"
                   for r in rows)
    tid = f" id='{table_id}'" if table_id else ""
    return f"<table{tid}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _prompt_rows(m: Manifest) -> list[list[str]]:
    """The run's own prompt template and steering vector, when it has them."""
    p = m.prompt or {}
    rows = []
    if p.get("template"):
        rows.append(["prompt template", p["template"]])
    steer = p.get("steer")
    if steer:
        rows.append(["steering", f"{steer.get('kind')} vector {steer.get('path')} "
                                 f"({str(steer.get('sha256'))[:19]}), alpha {steer.get('alpha')}"])
    return rows


def provenance(m: Manifest, summary: dict[str, Any]) -> str:
    """Model and weight hash, task, N, sampling, command, date."""
    task, s = m.task, m.sampling
    rows = [["model", f"{m.model_spec or 'imported'}  (weights sha256 "
                      f"{str(m.weights_sha256 or '-')[:12]})"],
            ["task", f"{task.get('spec', '?')}  (sha256 {str(task.get('sha256') or '-')[:12]})"],
            ["questions x samples", f"{summary['n_questions']} x "
                                    f"{s.get('samples', round(summary['n_samples'] / max(1, summary['n_questions'])))}"],
            ["sampling", f"T={s.get('temperature', '-')}, top-p={s.get('top_p', '-')}, "
                         f"top-k={s.get('top_k', '-')}, budget {s.get('max_new_tokens', '-')} "
                         f"tokens, seed {s.get('seed', '-')}, engine "
                         f"{m.config.get('engine', '-')}"],
            ["vote", summary.get("vote", "majority")],
            *_prompt_rows(m),
            ["command", " ".join(map(str, m.command))],
            ["created", f"{m.created} (attractor {m.attractor_version})"]]
    return simple_table(["", ""], rows, "provenance-table")


def headline(summary: dict[str, Any]) -> str:
    """The numbers the CLI prints, each with its 95% interval over questions."""
    means = summary["means"]
    keys = ["accuracy", "majority_correct", "answer_entropy_nats", "top1_share",
            "answered_share", "truncation_rate", "mean_tokens"]
    keys += sorted((k for k in means if k.startswith(("pass@", "maj@"))),
                   key=lambda k: (k.split("@")[0], int(k.split("@")[1])))
    rows = [[k, means[k]["mean"], means[k]["ci_low"], means[k]["ci_high"]] for k in keys
            if k in means]
    return simple_table(["metric", "mean", "95% low", "95% high"], rows, "headline-table")


def gap(summary: dict[str, Any]) -> str:
    """Stability gap (with n per class) and accuracy by hops."""
    g = summary["stability_gap"]
    keys = ["n_questions", "accuracy", "answer_entropy_nats", "top1_share", "n_unique_answers",
            "truncation_rate", "mean_tokens"]
    out = simple_table(["", "majority correct", "majority wrong"],
                       [[k, g["majority_correct"].get(k), g["majority_wrong"].get(k)]
                        for k in keys], "gap-table")
    hops = summary.get("by_hops") or {}
    if hops:
        out += "<h3>Accuracy by hops</h3>" + simple_table(
            ["hops", "questions", "sample accuracy", "majority accuracy"],
            [[h, v["n_questions"], v["accuracy"], v["majority_accuracy"]]
             for h, v in hops.items()], "hops-table")
    return out


def question_table(q: pd.DataFrame, gold: dict[str, str], texts: dict[str, list[str]]) -> str:
    """Every question: gold, majority answer, stability, a few sample texts; sortable by any
    column (click its header) and searchable."""
    head = ["question", "gold", "majority answer", "majority", "top-1 share", "entropy (nats)",
            "accuracy", "answered", "samples"]
    rows = []
    for r in q.itertuples():
        ok = bool(r.majority_correct)
        samples = "".join(f"<pre>{html.escape(t[:400])}</pre>" for t in texts.get(r.question_id,
                                                                                 [])[:3])
        cells = [(r.question_id, html.escape(str(r.question_id))),
                 (gold.get(r.question_id, ""), html.escape(str(gold.get(r.question_id, "")))),
                 (str(r.majority_answer), html.escape(str(r.majority_answer))),
                 (int(ok), f"<span class='{'ok' if ok else 'bad'}'>"
                           f"{'right' if ok else 'wrong'}</span>"),
                 (r.top1_share, fmt(r.top1_share)), (r.answer_entropy_nats,
                                                     fmt(r.answer_entropy_nats)),
                 (r.accuracy, fmt(r.accuracy)),
                 (getattr(r, "answered_share", 1.0), fmt(getattr(r, "answered_share", 1.0))),
                 ("", f"<details><summary>{len(texts.get(r.question_id, []))} samples"
                      f"</summary>{samples}</details>")]
        rows.append("<tr>" + "".join(f"<td data-v='{html.escape(str(v))}'>{c}</td>"
                                     for v, c in cells) + "</tr>")
    return ("<input id='qsearch' type='search' placeholder='search questions, answers, texts'>"
            f"<table id='qtable'><thead><tr>{''.join(f'<th>{h}</th>' for h in head)}</tr>"
            f"</thead><tbody>{''.join(rows)}</tbody></table>")


def page(title: str, sections: list[tuple[str, str, str]], partial: bool,
         notes: list[str]) -> str:
    """The whole page; ``sections`` are (id, heading, inner HTML)."""
    banner = ("<div class='banner'>PARTIAL: sampling had not finished when this run was "
              "analysed; every number covers only the questions sampled so far.</div>"
              if partial else "")
    notes_html = ("<ul class='notes'>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes)
                  + "</ul>" if notes else "")
    body = "".join(f"<section id='{sid}'><h2>{html.escape(h)}</h2>{inner}</section>"
                   for sid, h, inner in sections)
    return (f"<!doctype html><html><head><meta charset='utf-8'><meta name='viewport' "
            f"content='width=device-width,initial-scale=1'><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body><main><h1>{html.escape(title)}</h1>{banner}"
            f"{notes_html}{body}</main><script>{SCRIPT}</script></body></html>")
