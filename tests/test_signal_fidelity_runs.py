"""Signal fidelity on real runs of the embedded tiny model: the decisive position, calibrated
internal consistency (oracle: zhxieml/internal-consistency, extract.py + cal_agreement_accs,
written here with torch), DeepConf confidences and votes as stored by the hf engine, trajectory
columns per chunk size, cross-fitted early stopping, and bad task files."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from attractor.capture.decisive import decisive_token_index
from attractor.cli import main
from attractor.config import RunConfig, SamplingConfig
from attractor.metrics.directions import direction_of
from attractor.metrics.hidden import iter_question_vectors
from attractor.models.load import load
from attractor.pipeline.analyze import run_analyze
from attractor.pipeline.capture import run_capture
from attractor.pipeline.early_stop import run_early_stop
from attractor.pipeline.sample import run_sample
from attractor.store.run_store import RunStore

TASK = "synthetic:prosqa:n=10,seed=31"


@pytest.fixture(scope="module")
def tiny():
    return load("tiny", device="cpu")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """The tiny model on generated ProsQA, 10 questions x 6 samples at T=1, every layer captured
    at two chunk sizes, the decisive and the answer position; analysed."""
    out = tmp_path_factory.mktemp("fidelity") / "run"
    cfg = RunConfig(task=TASK, model="tiny", sampling=SamplingConfig(
        samples=6, temperature=1.0, max_new_tokens=64, seed=0))
    run_sample(cfg, str(out), log=lambda _: None, show_progress=False)
    run_capture(str(out), layers="all", positions="chunk:4,chunk:8,decisive,answer",
                show_progress=False, log=lambda _: None)
    run_analyze(str(out), window=4, tail=6)
    return out


# ---------------------------------------------------------------- the decisive position
@pytest.mark.parametrize("kind,right,wrong", [
    ("prosqa", " lempus rorpus Tom ### Tom is a lempus.", " lempus rorpus Tom ### Tom is a scrompus."),
    ("prontoqa", " Stella is a zumpus. ### True", " Stella is a zumpus. ### False"),
    ("math", " so x = 3. \\boxed{12}", " so x = 3. \\boxed{7}"),
])
def test_decisive_token_is_where_right_and_wrong_answers_first_differ(tiny, kind, right, wrong):
    _, tok = tiny
    a = tok(right, add_special_tokens=False)["input_ids"]
    b = tok(wrong, add_special_tokens=False)["input_ids"]
    first = next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)
    assert decisive_token_index(tok, a, right, kind) == first - 1
    assert decisive_token_index(tok, b, wrong, kind) == first - 1
    assert decisive_token_index(tok, a[:first - 2], tok.decode(a[:first - 2]), kind) is None


def test_captured_decisive_vectors_are_the_hidden_states_there(run_dir, tiny):
    model, tok = tiny
    store = RunStore(run_dir)
    roll = store.rollouts(["question_id", "sample_id", "prompt_token_ids",
                           "completion_token_ids", "text", "answer"])
    r = roll[roll["answer"].notna()].iloc[0]
    ids = list(r.prompt_token_ids) + list(r.completion_token_ids)
    with torch.no_grad():
        hs = model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states
    at = len(r.prompt_token_ids) + decisive_token_index(tok, list(r.completion_token_ids),
                                                        r.text, "prosqa")
    index = store.hidden_store.index().to_pandas()
    mine = index[(index.question_id == r.question_id) & (index.sample_id == r.sample_id)
                 & (index.position == "decisive")]
    assert (mine["token_index"] == at).all() and len(mine) == len(hs)
    for qid, rows, vecs in iter_question_vectors(store.hidden_store, mine):
        for k, layer in enumerate(rows["layer"]):
            assert np.allclose(vecs[k], hs[int(layer)][0, at].numpy(), atol=2e-2, rtol=1e-2)


# ---------------------------------------------------------------- internal consistency
def reference_consistency(norm_probs: torch.Tensor) -> torch.Tensor:
    """cal_agreement_accs of the reference: (samples, layers, labels) -> summed agreement."""
    num_layers, num_labels = norm_probs.shape[1:]
    q = torch.quantile(norm_probs, (num_labels - 1) / num_labels, dim=0, keepdim=True)
    cal = (norm_probs > q).float() + (1 / num_labels) * (norm_probs == q).float()
    final = cal[:, -1].max(-1).indices.unsqueeze(1).unsqueeze(1).repeat(1, num_layers, 1)
    return torch.gather(cal, 2, final).sum(1).squeeze(-1)


def test_consistency_equals_the_reference_calibration(run_dir, tiny):
    model, tok = tiny
    store = RunStore(run_dir)
    problems = {p.id: p for p in store.questions()}
    index = store.hidden_store.index().to_pandas()
    index = index[index.position == "decisive"]
    norm, head = model.model.norm, model.lm_head
    keys, probs = [], []
    for qid, rows, vecs in iter_question_vectors(store.hidden_store, index):
        opts = problems[qid].question.rstrip("?").split(" a ")[-1].split(" or ")
        cand = [tok(" " + w, add_special_tokens=False)["input_ids"][0] for w in opts]
        for sid, g in rows.assign(k=np.arange(len(rows))).groupby("sample_id"):
            g = g.sort_values("layer")
            per_layer = []
            with torch.no_grad():
                for k, layer in zip(g["k"], g["layer"]):
                    h = torch.from_numpy(vecs[k])
                    h = h if layer == model.config.num_hidden_layers else norm(h)
                    per_layer.append(head(h)[cand].softmax(-1))
            keys.append((qid, int(sid)))
            probs.append(torch.stack(per_layer))
    assert len(keys) >= 20
    want = reference_consistency(torch.stack(probs).double())
    smp = store.metric_table("samples").set_index(["question_id", "sample_id"])
    got = smp.loc[keys, "consistency"].to_numpy()
    assert np.allclose(got, want.numpy(), atol=1e-6)
    n_layers = model.config.num_hidden_layers + 1
    assert np.allclose(smp.loc[keys, "consistency_frac"], want.numpy() / n_layers)
    # samples without an answer have no decisive position and no consistency
    no_answer = set(smp.index) - set(keys)
    assert all(np.isnan(smp.loc[k, "consistency"]) for k in no_answer)


def test_consistency_needs_the_final_layer(run_dir, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    shutil.rmtree(copy / "latents")
    m = json.loads((copy / "manifest.json").read_text())
    m["stages"].pop("capture")
    (copy / "manifest.json").write_text(json.dumps(m))
    run_capture(str(copy), layers="0,2", positions="decisive", show_progress=False,
                log=lambda _: None)
    summary = run_analyze(str(copy), window=4)
    assert any("final one (layer 4)" in n for n in summary["notes"])
    assert "consistency" not in store_columns(copy)


def store_columns(run) -> set[str]:
    return set(RunStore(run).metric_table("samples").columns)


# ---------------------------------------------------------------- trajectory columns
def test_two_chunk_sizes_keep_their_own_trajectory_columns(run_dir):
    from test_signal_fidelity import lt_oracle

    store = RunStore(run_dir)
    smp = store.metric_table("samples").set_index(["question_id", "sample_id"])
    for chunk in ("chunk:4", "chunk:8"):
        for sig in ("net_change", "cumulative_change", "aligned_change"):
            assert f"traj_{sig}[{chunk}]" in smp.columns and f"traj_{sig}[{chunk}]@L4" in smp
    assert "traj_net_change" not in smp.columns  # no unnamed column to be overwritten
    index = store.hidden_store.index().to_pandas()
    checked = 0
    for chunk in ("chunk:4", "chunk:8"):
        sub = index[index.position == chunk]
        for qid, rows, vecs in iter_question_vectors(store.hidden_store, sub):
            rows = rows.assign(k=np.arange(len(rows)))
            for sid, g in rows.groupby("sample_id"):
                per_layer = {}
                for layer, gl in g.groupby("layer"):
                    h = vecs[gl.sort_values("occurrence")["k"].to_numpy()]
                    if len(h) >= 2:
                        per_layer[int(layer)] = lt_oracle(h)
                if not per_layer:
                    continue
                for sig in ("net_change", "cumulative_change", "aligned_change"):
                    want = np.mean([per_layer[layer][sig] for layer in per_layer if layer >= 1])
                    got = smp.loc[(qid, int(sid)), f"traj_{sig}[{chunk}]"]
                    assert got == pytest.approx(want, rel=1e-6, abs=1e-9)
                checked += 1
    assert checked >= 40


def test_chunks_cover_the_reasoning_span_as_the_lt_reference_chunks(run_dir, tiny):
    """Chunks formed independently: the LT reference chunks the thinking text only (up to
    ``</think>``); a ProsQA chain has no ``</think>``, so the span ends before the ``###``
    marker the grader reads (whole completion when there is none). Each stored chunk vector
    equals the mean of ``output_hidden_states`` over its W-token slice of that span."""
    model, tok = tiny
    store = RunStore(run_dir)
    cap = store.manifest.stage("capture")
    assert "reasoning" in cap["chunk_span"] and sum(cap["chunk_span_ends"].values()) == 60
    roll = store.rollouts(["question_id", "sample_id", "prompt_token_ids",
                           "completion_token_ids", "text"]).head(12)
    index = store.hidden_store.index().to_pandas()
    marked = 0
    for r in roll.itertuples(index=False):
        p, c = list(r.prompt_token_ids), list(r.completion_token_ids)
        if "###" in r.text:     # the first token whose decoded prefix reaches the marker
            cut = r.text.rindex("###")
            span = next(i for i in range(len(c))
                        if len(tok.decode(c[:i + 1], skip_special_tokens=True)) > cut)
            marked += 1
        else:
            span = len(c)
        with torch.no_grad():
            hs = model(torch.tensor([p + c]), output_hidden_states=True).hidden_states
        for w in (4, 8):
            want = [(a, min(a + w, span)) for a in range(0, span, w)]
            rows = index[(index.question_id == r.question_id) & (index.sample_id == r.sample_id)
                         & (index.position == f"chunk:{w}") & (index.layer == 2)]
            assert sorted(rows.occurrence) == list(range(len(want)))
            for row in rows.itertuples():
                a, b = want[row.occurrence]
                vec = store.hidden_store.read_rows(row.shard, np.array([row.row]))[0]
                np.testing.assert_allclose(vec, hs[2][0, len(p) + a:len(p) + b].mean(0).numpy(),
                                           rtol=2e-3, atol=2e-3)
    assert marked >= 6


def test_every_signal_column_has_a_registered_direction(run_dir):
    smp = RunStore(run_dir).metric_table("samples")
    signals = [c for c in smp.columns if c not in ("question_id", "sample_id", "correct")]
    assert signals and all(direction_of(c) is not None for c in signals)
    sig = RunStore(run_dir).metric_table("signals")
    assert set(sig["interval"]) == {"cluster bootstrap over questions", "bootstrap over questions"}
    assert ((sig["ci_low"] <= sig["auroc"] + 1e-9) & (sig["auroc"] <= sig["ci_high"] + 1e-9)).all()


# ---------------------------------------------------------------- DeepConf in the hf engine
def test_stored_confidences_are_the_raw_top20_under_top_p(tiny, tmp_path):
    from test_signal_fidelity import reference_token_confidence

    model, _ = tiny
    out = tmp_path / "run"
    cfg = RunConfig(task="synthetic:prosqa:n=2,seed=4", model="tiny", sampling=SamplingConfig(
        samples=2, temperature=0.7, top_p=0.5, max_new_tokens=24, seed=3))
    run_sample(cfg, str(out), log=lambda _: None, show_progress=False)
    roll = RunStore(out).rollouts(["prompt_token_ids", "completion_token_ids",
                                   "token_confidences", "finish_reason"])
    eos = tiny[1].eos_token_id
    assert (roll.finish_reason == "stop").any()
    for r in roll.itertuples():
        p, c = list(r.prompt_token_ids), list(r.completion_token_ids)
        returned = c + ([eos] if r.finish_reason == "stop" else [])   # vLLM's token_ids
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([p + returned])).logits[0].double()
        raw = logits.log_softmax(-1).numpy()
        want = [reference_token_confidence(raw[len(p) - 1 + i], t)
                for i, t in enumerate(returned)]
        assert len(r.token_confidences) == len(want)
        assert np.allclose(r.token_confidences, want, atol=1e-4)
    m = json.loads((out / "manifest.json").read_text())
    assert "raw" in m["logprobs"]["confidence"]


def test_online_deepconf_run_cuts_and_votes_as_the_reference(tmp_path):
    """The reference's online procedure run on the *uninterrupted* traces (same seeds, so the
    same tokens up to any cut): where it cuts each final trace, what it spends and how it
    votes. The online run must cut exactly there (not later), spend exactly that, and vote the
    same."""
    from test_signal_fidelity import reference_online_deepconf

    rule = "deepconf:warmup=3,percentile=50,window=4"
    sampling = SamplingConfig(samples=8, temperature=1.0, max_new_tokens=64, seed=0)
    online, full = tmp_path / "online", tmp_path / "full"
    run_sample(RunConfig(task=TASK, model="tiny", early_stop=rule, sampling=sampling),
               str(online), log=lambda _: None, show_progress=False)
    run_sample(RunConfig(task=TASK, model="tiny", sampling=sampling), str(full),
               log=lambda _: None, show_progress=False)
    summary = run_analyze(str(online), window=4)
    assert summary["vote"].startswith("deepconf")
    cols = ["question_id", "sample_id", "answer_class", "correct", "n_tokens",
            "token_confidences", "finish_reason"]
    o_roll = RunStore(online).rollouts(cols)
    f_roll = RunStore(full).rollouts(cols)
    q = RunStore(online).metric_table("questions").set_index("question_id")
    cut_seen = 0
    for qid, sub in f_roll.groupby("question_id"):
        sub = sub.sort_values("sample_id")
        osub = o_roll[o_roll.question_id == qid].sort_values("sample_id")
        traces = [(a if isinstance(a, str) else None, np.asarray(c, float))
                  for a, c in zip(sub.answer_class, sub.token_confidences)]
        tokens, score, stops = reference_online_deepconf(traces, 3, 50, 4, with_stops=True)
        spent = sum(max(int(n), len(c)) for n, c in zip(osub.n_tokens, osub.token_confidences))
        assert spent == tokens, qid          # the EOS counted, as the reference counts it
        for stop, o in zip(stops, osub.itertuples()):
            if stop is None:
                assert o.finish_reason != "early_stop"
            else:
                cut_seen += 1
                assert o.finish_reason == "early_stop" and len(o.token_confidences) == stop
        correct = {a: bool(ok) for a, ok in zip(osub.answer_class, osub.correct)
                   if isinstance(a, str)}
        winner = max(score, key=score.get) if score else None
        assert q.loc[qid, "majority_answer"] == winner
        assert bool(q.loc[qid, "majority_correct"]) == correct.get(winner, False)
    assert cut_seen > 0


# ---------------------------------------------------------------- selection and tables
def test_early_stop_reports_cross_fitted_choices(run_dir):
    t = run_early_stop(str(run_dir), window=4, max_loss=0.05)
    assert set(t["row"]) == {"reference", "grid", "cross-fit"}
    cf = t[t["row"] == "cross-fit"]
    assert set(cf["rule"]) >= {"deepconf", "consensus", "latent"}
    assert cf["selected_on"].str.contains("other half").all()
    assert cf["setting"].str.startswith("half 1 -> ").all()
    grid = t[t["row"] == "grid"]
    assert (grid["selected_on"] == "none: all questions").all()
    with pytest.raises(Exception, match="--max-loss"):
        run_early_stop(str(run_dir), window=4, max_loss=-1)


def test_vote_compares_with_majority_on_the_same_questions(run_dir):
    from attractor.pipeline.vote import run_vote

    t = run_vote(str(run_dir), draws=20)
    assert "n_questions" in t.columns and (t["n_questions"] <= 10).all()
    maj = t[t["method"] == "majority"]
    assert (maj["delta_vs_majority"].abs() < 1e-12).all()
    assert np.allclose(t["accuracy"] - t["majority"], t["delta_vs_majority"])


def test_questions_table_has_answered_share(run_dir):
    q = RunStore(run_dir).metric_table("questions")
    assert ((q["answered_share"] >= 0) & (q["answered_share"] <= 1)).all()
    assert np.allclose(q["answered_share"] + q["null_rate"], 1.0)


# ---------------------------------------------------------------- files that are not UTF-8
@pytest.mark.parametrize("argv", [
    ["sample", "--model", "tiny", "--task", "{f}", "--out", "{out}"],
    ["import", "{f}", "--out", "{out}", "--response-field", "r"],
    ["latent", "eval", "--task", "{f}", "--limit", "2"],
])
def test_non_utf8_task_files_are_one_line_errors(tmp_path, capsys, argv):
    f = tmp_path / "t.jsonl"
    f.write_bytes(b"\xff\xfe\x00garbage\n")
    out = tmp_path / "r"
    with pytest.raises(SystemExit) as exit_:
        main([a.format(f=f, out=out) for a in argv])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and len(err.splitlines()) == 1
    assert str(f) in err and "not UTF-8" in err
    assert not out.exists()
