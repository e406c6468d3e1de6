"""depth, attention and patch: the invariants of the issue, each formula against an independent
computation written here, a hand-built two-layer model whose answers are known, and the
commands end to end (resume, report, bad input)."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from attractor.errors import UserError
from attractor.mechanism.forward import recorded_forward
from attractor.mechanism.modules import decoder_modules
from attractor.store.run_store import RunStore
from helpers import attractor, snapshot


@pytest.fixture(autouse=True)
def _no_grad():
    with torch.no_grad():
        yield


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A ProsQA run of the embedded model (mixed right and wrong answers)."""
    run = tmp_path_factory.mktemp("mech") / "run"
    attractor("sample", "--task", "synthetic:prosqa:n=6,seed=3", "--samples", "4",
              "--out", str(run))
    return run


def _copy(run, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(run, dst)
    return dst


def _ids(model, n=2, t=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, model.config.vocab_size, (n, t), generator=g)


def test_contributions_add_up_and_match_hidden_states(random_model):
    model, _ = random_model
    mods = decoder_modules(model)
    ids = _ids(model)
    rows = torch.tensor([0, 0, 1, 1])
    pos = torch.tensor([3, 20, 7, 23])
    rec = recorded_forward(mods, ids, rows, pos)
    total = rec.resid[0].clone()
    for a, m in zip(rec.attn, rec.mlp):
        total = total + a + m
    torch.testing.assert_close(total, rec.resid[-1], atol=1e-5, rtol=0)
    with torch.no_grad():
        hs = model(ids, output_hidden_states=True).hidden_states
    for layer in range(mods.n_layers):      # hidden_states[L] is after the final norm
        torch.testing.assert_close(rec.resid[layer], hs[layer][rows, pos])
    torch.testing.assert_close(mods.norm(rec.resid[-1]), hs[-1][rows, pos])


def _reference_norm_stats(model, ids):
    """analyze_norms.py written out: layer inputs (the residual stream entering each layer,
    then the final norm's input) and MLP outputs only; a_l = (h_{l+1} - m_l) - h_l."""
    layer_in, mlp_out = [], []
    hooks = [lay.register_forward_pre_hook(lambda m, a, k: layer_in.append(a[0] if a else
                                                                          k["hidden_states"]),
                                           with_kwargs=True) for lay in model.model.layers]
    hooks += [lay.mlp.register_forward_hook(lambda m, a, o: mlp_out.append(o))
              for lay in model.model.layers]
    hooks.append(model.model.norm.register_forward_pre_hook(
        lambda m, a, k: layer_in.append(a[0] if a else k["hidden_states"]), with_kwargs=True))
    try:
        model(ids)
    finally:
        for h in hooks:
            h.remove()
    cols = {k: [] for k in ("attn_rel", "mlp_rel", "layer_rel", "attn_cos", "mlp_cos",
                            "layer_cos")}
    cos = torch.nn.functional.cosine_similarity
    for li in range(len(mlp_out)):
        r_in, r_out, m_out = layer_in[li][0].float(), layer_in[li + 1][0].float(), \
            mlp_out[li][0].float()
        h_after_attn = r_out - m_out
        a_out = h_after_attn - r_in
        layer_diff = r_out - r_in
        cols["attn_rel"].append(a_out.norm(dim=-1) / r_in.norm(dim=-1).clamp(min=1e-6))
        cols["mlp_rel"].append(m_out.norm(dim=-1) / h_after_attn.norm(dim=-1).clamp(min=1e-6))
        cols["layer_rel"].append(layer_diff.norm(dim=-1) / r_in.norm(dim=-1).clamp(min=1e-6))
        cols["attn_cos"].append(cos(a_out, r_in, dim=-1))
        cols["mlp_cos"].append(cos(m_out, h_after_attn, dim=-1))
        cols["layer_cos"].append(cos(layer_diff, r_in, dim=-1))
    return {k: torch.stack(v) for k, v in cols.items()}, layer_in


def test_depth_columns_equal_the_reference_formulas(random_model):
    """analyze_norms.py's six contribution columns and logitlens.py's KL(layer || final) and
    top-5 overlap, each written out from the reference."""
    from attractor.mechanism.depth import DepthItem, commitment_layer, depth_batch

    model, _ = random_model
    mods = decoder_modules(model)
    ids = _ids(model, n=1, t=30)[0].tolist()
    pos = [5, 17, 29]
    item = DepthItem(ids, pos, [("a", 0), ("b", 0), ("decisive", 0)], 2)
    cols, commit, skips = depth_batch(mods, [item], 0, skip=True)
    with torch.no_grad():
        want, layer_in = _reference_norm_stats(model, torch.tensor([ids]))
        final_logits = model(torch.tensor([ids])).logits[0, pos].float()
    for name, ref in want.items():
        np.testing.assert_allclose(cols[name], ref[:, pos].numpy(), rtol=2e-4, atol=2e-5,
                                   err_msg=name)
    final_lp = final_logits.log_softmax(-1)
    for layer in range(mods.n_layers):                  # logitlens.py: head(norm(layer.input))
        layer_lp = model.lm_head(model.model.norm(layer_in[layer][0, pos])).float() \
            .log_softmax(-1)
        kl = (layer_lp.exp() * (layer_lp - final_lp)).sum(-1)          # KL(layer || final)
        np.testing.assert_allclose(cols["lens_kl"][layer], kl.numpy(), rtol=1e-4, atol=1e-5)
        matches = (layer_lp.topk(5, -1).indices[..., :, None]
                   == final_lp.topk(5, -1).indices[..., None, :]).any(-1)
        np.testing.assert_allclose(cols["lens_top5_overlap"][layer],
                                   (matches.float().sum(-1) / 5).numpy())
        rank = (layer_lp > layer_lp.gather(-1, final_lp.argmax(-1, keepdim=True))).sum(-1)
        np.testing.assert_array_equal(cols["final_token_rank"][layer], rank.numpy())
    assert (cols["lens_kl"][-1] == 0).all()          # the last layer's lens is the output
    assert (cols["lens_top5_overlap"][-1] == 1).all()
    assert commit[0] == commitment_layer(cols["final_token_rank"][:, 2])
    assert commitment_layer(np.array([0, 3, 0, 0, 0])) == 2
    assert commitment_layer(np.array([0, 0, 0])) == 0
    assert len(skips) == mods.n_layers


def _reference_skip(model, ids, lskip, t):
    """analyze_future_effects.test_effect for one skipped layer and one t, written out:
    merge_io keeps position 0, takes the layer's input at 1..t-1 (1.. when t is None) and its
    output from t on; residual diffs h_{l+1} - h_l and the softmax output are compared at
    positions >= t (all when t is None), max over positions."""
    def run(intervene):
        layer_in = []
        hooks = [lay.register_forward_pre_hook(lambda m, a, k: layer_in.append(
            a[0] if a else k["hidden_states"]), with_kwargs=True) for lay in model.model.layers]
        hooks.append(model.model.norm.register_forward_pre_hook(
            lambda m, a, k: layer_in.append(a[0] if a else k["hidden_states"]),
            with_kwargs=True))
        if intervene:
            def merge(m, a, k, out):
                inp = a[0] if a else k["hidden_states"]
                o = out[0] if isinstance(out, tuple) else out
                parts = [o[:, :1]] + ([inp[:, 1:t], o[:, t:]] if t is not None else
                                      [inp[:, 1:]])
                new = torch.cat(parts, dim=1)
                return (new, *out[1:]) if isinstance(out, tuple) else new
            hooks.append(model.model.layers[lskip].register_forward_hook(merge,
                                                                         with_kwargs=True))
        try:
            logits = model(ids).logits
        finally:
            for h in hooks:
                h.remove()
        diffs = torch.stack([(layer_in[i + 1] - layer_in[i])[0].float()
                             for i in range(len(layer_in) - 1)])
        return diffs, logits[0].float().softmax(-1)

    res, out = run(False)
    new_res, new_out = run(True)
    fut = slice(t, None) if t is not None else slice(None)
    rel = ((res[:, fut] - new_res[:, fut]).norm(dim=-1)
           / res[:, fut].norm(dim=-1).clamp(min=1e-6)).max(dim=-1).values
    return rel, (new_out[fut] - out[fut]).norm(dim=-1).max(dim=-1).values


@pytest.mark.parametrize("mode", ["current", "future"])
def test_layer_skipping_equals_the_reference_merge_io(random_model, mode):
    from attractor.mechanism.depth import DepthItem, depth_batch, future_starts

    model, _ = random_model
    mods = decoder_modules(model)
    ids = _ids(model, n=1, t=40, seed=5)[0].tolist()
    starts = future_starts(len(ids), "q/0") if mode == "future" else [None]
    if mode == "future":
        assert len(starts) == 4 and set(starts) <= set(range(8, 36, 8))
        assert starts == future_starts(len(ids), "q/0")            # a rerun draws the same
    item = DepthItem(ids, [10, 39], [("frac:0.5", 0), ("decisive", 0)], 1, starts)
    _, _, skips = depth_batch(mods, [item], 0, skip=True)
    x = torch.tensor([ids])
    for s in range(mods.n_layers):
        refs = [_reference_skip(model, x, s, t) for t in starts]
        rel = torch.stack([r[0] for r in refs]).max(dim=0).values     # max over t
        outc = max(float(r[1]) for r in refs)
        got = skips[s]
        assert got["skipped_layer"] == s
        np.testing.assert_allclose(got["effect_by_layer"], rel.numpy(), rtol=1e-4, atol=1e-6)
        assert got["out_change"] == pytest.approx(outc, rel=1e-4, abs=1e-7)
    if mode == "current":        # the skipped layer's own diff is gone except at position 0
        assert all(skips[s]["effect_by_layer"][s] == pytest.approx(1.0) for s in
                   range(mods.n_layers))


def test_a_llama_decomposes_too():
    """Any decoder with self_attn/mlp/o_proj blocks: a Llama built from a config."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from attractor.mechanism.depth import DepthItem, depth_batch

    torch.manual_seed(0)
    llama = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=3, num_attention_heads=4,
                                         num_key_value_heads=2)).eval()
    mods = decoder_modules(llama)
    assert (mods.n_layers, mods.n_heads, mods.head_dim) == (3, 4, 8)
    ids = _ids(llama, n=2, t=12)
    rec = recorded_forward(mods, ids, torch.tensor([0, 1]), torch.tensor([5, 11]))
    total = rec.resid[0] + sum(a + m for a, m in zip(rec.attn, rec.mlp))
    torch.testing.assert_close(total, rec.resid[-1], atol=1e-5, rtol=0)
    cols, _, skips = depth_batch(mods, [DepthItem(ids[0].tolist(), [4, 11], [("a", 0),
                                                                             ("b", 0)], 1)], 0)
    assert (cols["lens_kl"][-1] == 0).all() and len(skips) == 3


def test_skipping_leaves_earlier_layers_bit_identical(random_model):
    model, _ = random_model
    mods = decoder_modules(model)
    ids = _ids(model)
    rows, pos = torch.tensor([0, 1]), torch.tensor([10, 22])
    base = recorded_forward(mods, ids, rows, pos)
    for s in range(mods.n_layers):
        alt = recorded_forward(mods, ids, rows, pos, skip=s)
        for layer in range(s + 1):
            assert torch.equal(alt.resid[layer], base.resid[layer])
        for layer in range(s):
            assert torch.equal(alt.attn[layer], base.attn[layer])
            assert torch.equal(alt.mlp[layer], base.mlp[layer])
        assert torch.equal(alt.resid[s + 1], alt.resid[s])   # the skipped layer passes through
        if s + 1 < mods.n_layers:
            assert not torch.equal(alt.attn[s + 1], base.attn[s + 1])


@pytest.fixture(scope="module")
def two_layer(tmp_path_factory):
    """A two-layer model whose second layer writes nothing (o_proj and down_proj zero) and
    whose head 0 of layer 0 is dead (its o_proj columns zero): the answers are known."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from attractor.models.tiny_tokenizer import build_tokenizer

    tok = build_tokenizer()
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                      num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                      max_position_embeddings=256, tie_word_embeddings=True,
                      attn_implementation="eager")
    torch.manual_seed(1)
    model = Qwen2ForCausalLM(cfg).eval()
    with torch.no_grad():
        model.model.layers[1].self_attn.o_proj.weight.zero_()
        model.model.layers[1].mlp.down_proj.weight.zero_()
        model.model.layers[0].self_attn.o_proj.weight[:, :16] = 0
    return model, tok


def test_hand_built_model_known_answers(two_layer):
    from attractor.mechanism.ablation import ablated_head
    from attractor.mechanism.depth import DepthItem, depth_batch
    from attractor.mechanism.patching import Site, patch_sweep, source_states
    from attractor.mechanism.forward import lens_logits

    model, tok = two_layer
    mods = decoder_modules(model)
    ids = _ids(model, n=1, t=20, seed=3)[0].tolist()
    item = DepthItem(ids, [10, 19], [("frac:0.5", 0), ("decisive", 0)], 1)
    cols, commit, skips = depth_batch(mods, [item], 0)
    assert (cols["layer_rel"][1] == 0).all()            # layer 1 writes nothing
    assert (cols["lens_kl"][1] < 1e-6).all()            # so h_1 already is the output
    assert (cols["final_token_rank"][1] == 0).all()
    assert commit[0] <= 1
    s1 = [s for s in skips if s["skipped_layer"] == 1][0]
    assert s1["out_change"] == 0 and s1["decisive_flip"] is False
    s0 = [s for s in skips if s["skipped_layer"] == 0][0]
    assert s0["out_change"] > 0
    # a dead head: ablating it changes no logit; ablating the live one does
    x = torch.tensor([ids])
    plain = model(x).logits
    with ablated_head(mods, 0, 0):
        dead = model(x).logits
    with ablated_head(mods, 0, 1):
        live = model(x).logits
    assert torch.equal(dead, plain) and not torch.allclose(live, plain)
    # patching: the final residual at the read-out carries everything, the shared prompt nothing
    other = ids[:12] + _ids(model, n=1, t=8, seed=4)[0].tolist()
    sites = [Site("prompt_last", 11, 11), Site("decisive", 19, 19)]
    src = source_states(mods, other, [11, 19, 19])
    logits = lens_logits(mods, src.resid[-1][-1:])[0]
    tc, tw = int(logits.argmax()), int(lens_logits(mods, recorded_forward(
        mods, torch.tensor([ids]), torch.tensor([0]), torch.tensor([19])).resid[-1])[0].argmax())
    if tc == tw:
        tw = (tc + 1) % model.config.vocab_size
    got = pd.DataFrame(patch_sweep(mods, ids, 19, sites, src, logits, tc, tw)["rows"])
    last = got[(got.layer == mods.n_layers) & (got.position == "decisive")]
    assert last["effect"].iloc[0] == pytest.approx(1.0, abs=1e-5)
    assert bool(last["flipped"].iloc[0]) == (got["ld_base"].iloc[0] < 0)
    assert (got[got.position == "prompt_last"]["effect"].abs() < 1e-5).all()   # same prompt


def test_attention_features_equal_the_reference_formulas(two_layer):
    from attractor.mechanism.attention import AttnItem, attention_batch
    from attractor.mechanism.prosqa_steps import Step

    model, tok = two_layer
    mods = decoder_modules(model)
    ids = _ids(model, n=1, t=26, seed=5)[0].tolist()
    p = 14
    header = 3                               # the response header's tokens end the prompt
    item = AttnItem(ids, p, [Step(20, (0,)), Step(23, (1, 2))], [(0, 4), (4, 9), (9, 14)],
                    header)
    short = AttnItem(ids[:18], p)
    feats = attention_batch(mods, [item, short], 0)
    with torch.no_grad():
        att = model(torch.tensor([ids]), output_attentions=True).attentions
    for layer, w in enumerate(att):
        w = w[0]                                         # (H, T, T)
        ent = []
        for q in range(p, len(ids)):
            row = w[:, q, :q + 1]
            ent.append(-(row * torch.log(row.clamp_min(1e-30))).sum(-1))
        np.testing.assert_allclose(feats[0]["entropy"][layer], torch.stack(ent).mean(0),
                                   rtol=1e-5)
        # step01_extract_attns.py: context_length = prompt length - extra_prompt_length (the
        # response header); at generation step i the query is the sequence's last position
        # (attentions[i][l][0, :, -1, :]), whose keys are the prompt and the i tokens so far
        context_length = p - header
        lookback = []
        for i in range(len(ids) - p):
            a = w[:, p - 1 + i, :p + i]
            on_ctx = a[:, :context_length].mean(-1)
            on_new = a[:, context_length:].mean(-1)
            lookback.append(on_ctx / (on_ctx + on_new))
        np.testing.assert_allclose(feats[0]["lookback"][layer], torch.stack(lookback).mean(0),
                                   rtol=1e-5)
        m20 = torch.stack([w[:, 20, a:b].sum(-1) for a, b in item.spans], -1)
        m23 = torch.stack([w[:, 23, a:b].sum(-1) for a, b in item.spans], -1)
        gold_mass = (m20[:, 0] + m23[:, 1] + m23[:, 2]) / 2
        np.testing.assert_allclose(feats[0]["gold_mass"][layer], gold_mass, rtol=1e-5)
        top = ((m20.argmax(-1) == 0).float() + (m23.argmax(-1) >= 1).float()) / 2
        np.testing.assert_allclose(feats[0]["gold_top"][layer], top)
    assert "gold_mass" not in feats[1]
    assert feats[1]["entropy"].shape == (2, 2)


def test_response_header_is_the_chat_templates_generation_prompt():
    from transformers import PreTrainedTokenizerFast

    from attractor.mechanism.attention import response_header_len
    from attractor.models.tiny_tokenizer import build_tokenizer

    tok = build_tokenizer()
    assert response_header_len(tok, True) == 0          # no chat template: a plain prompt
    chat = PreTrainedTokenizerFast(tokenizer_object=tok.backend_tokenizer)
    chat.chat_template = ("{% for m in messages %}user: {{ m['content'] }}\n{% endfor %}"
                          "{% if add_generation_prompt %}Tom is a{% endif %}")
    assert response_header_len(chat, True) == len(chat("Tom is a", add_special_tokens=False)
                                                  ["input_ids"]) == 3
    assert response_header_len(chat, False) == 0


def test_prosqa_steps_and_gold_sentences():
    from attractor.mechanism.prosqa_steps import proof_steps, sentence_spans
    from attractor.models.load import load

    _, tok = load("tiny", device="cpu")
    question = ("Every wumpus is a yumpus. Tom is a wumpus. Every lempus is a yumpus. "
                "Every yumpus is a rorpus. Is Tom a rorpus or zumpus?")
    p_ids = tok(question, add_special_tokens=False)["input_ids"]
    spans, pairs = sentence_spans(tok, p_ids)
    assert pairs == [("wumpus", "yumpus"), ("Tom", "wumpus"), ("lempus", "yumpus"),
                     ("yumpus", "rorpus")]
    assert tok.decode(p_ids[spans[1][0]:spans[1][1]]).strip() == "Tom is a wumpus."
    text = " rorpus yumpus wumpus Tom ### Tom is a rorpus."
    c_ids = tok(text, add_special_tokens=False)["input_ids"]
    steps = proof_steps(tok, len(p_ids), c_ids, text, pairs)
    assert [s.gold for s in steps] == [(3,), (0, 2), (1,)]
    for s, word in zip(steps, ["yumpus", "wumpus", "Tom"]):
        nxt = (p_ids + c_ids)[s.query + 1]
        assert tok.decode([nxt]).strip() == word
    # a step not stated in the question is not a correct step
    bad = " rorpus lempus Tom ### Tom is a rorpus."
    b_ids = tok(bad, add_special_tokens=False)["input_ids"]
    assert len(proof_steps(tok, len(p_ids), b_ids, bad, pairs)) == 0


def test_commands_end_to_end_resume_and_report(tiny_run, tmp_path, monkeypatch):
    run = _copy(tiny_run, tmp_path)
    proc = attractor("depth", str(run))
    assert "Commitment layer" in proc.stdout
    depth = pd.read_parquet(run / "metrics" / "depth.parquet")
    n_layers = int(depth["layer"].max())
    assert set(depth["layer"]) == set(range(n_layers + 1))
    assert depth.groupby(["question_id", "sample_id", "position", "occurrence"]).size().eq(
        n_layers + 1).all()
    skip = pd.read_parquet(run / "metrics" / "depth_skip.parquet")
    assert set(skip["skipped_layer"]) == set(range(n_layers))
    summary = json.loads((run / "metrics" / "depth_summary.json").read_text())
    assert set(summary["commitment_layer"]) == {"stable", "majority_correct"}
    # a killed depth run resumes to the same tables
    run2 = _copy(tiny_run, tmp_path / "b")
    import attractor.pipeline.depth as dp

    calls = {"n": 0}
    real = dp.depth_batch

    def dying(*a, **k):
        calls["n"] += 1
        if calls["n"] > 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(dp, "depth_batch", dying)
    monkeypatch.setattr("attractor.run_model.MechanismRun.questions",
                        _small_chunks(monkeypatch))
    with pytest.raises(KeyboardInterrupt):
        dp.run_depth(str(run2), show_progress=False)
    assert list((run2 / "metrics" / "depth.parts").glob("part-*.parquet"))
    monkeypatch.setattr(dp, "depth_batch", real)
    dp.run_depth(str(run2), show_progress=False)
    again = pd.read_parquet(run2 / "metrics" / "depth.parquet")
    key = ["question_id", "sample_id", "position", "occurrence", "layer"]
    pd.testing.assert_frame_equal(again.sort_values(key).reset_index(drop=True),
                                  depth.sort_values(key).reset_index(drop=True))
    # a second call has nothing to do and leaves the tables as they were
    before = snapshot(run / "metrics")
    attractor("depth", str(run))
    after = snapshot(run / "metrics")
    assert {k: v for k, v in after.items() if k.startswith("depth.")} == \
        {k: v for k, v in before.items() if k.startswith("depth.")}

    proc = attractor("attention", str(run), "--ablate", "0.0,1.1")
    assert "look-up head" in proc.stdout
    att = pd.read_parquet(run / "metrics" / "attention.parquet")
    assert (att["n_steps"] > 0).any() and att["gold_top"].between(0, 1).all()
    assert att["lookback"].between(0, 1).all()
    abl = pd.read_parquet(run / "metrics" / "attention_ablation.parquet")
    assert set(zip(abl["layer"], abl["head"])) == {(-1, -1), (0, 0), (1, 1)}
    m = json.loads((run / "manifest.json").read_text())
    assert m["stages"]["attention"]["attn_implementation"] == "eager"
    au = pd.read_parquet(run / "metrics" / "attention_auroc.parquet")
    assert set(au["target"]) == {"correct", "stable"}

    proc = attractor("patch", str(run), "--trace-draws", "3")
    assert "questions patched" in proc.stdout
    pt = pd.read_parquet(run / "metrics" / "patching.parquet")
    done = pt[pt["direction"] != "none"]
    assert set(done["direction"]) == {"c->w", "w->c", "noise", "trace"}
    final = done[(done["layer"] == n_layers) & (done["position"] == "decisive")
                 & (done["direction"].isin(["c->w", "w->c"]))]
    np.testing.assert_allclose(final["effect"], 1.0, atol=1e-4)
    trace = done[done["direction"] == "trace"]     # the subject is the question's person
    last = trace[(trace["layer"] == n_layers) & (trace["position"] == "decisive")]
    np.testing.assert_allclose(last["p_patched"], last["p_clean"], rtol=1e-4)
    assert {"subject_first", "subject_last"} <= set(trace["position"])
    assert (trace["p_clean"] > trace["p_corrupt"]).mean() > 0.5
    m = json.loads((run / "manifest.json").read_text())
    assert m["stages"]["patch"]["trace_sigma"] > 0
    cw = done[(done["direction"] == "c->w") & (done["position"] == "prompt_last")]
    np.testing.assert_allclose(cw["effect"], 0.0, atol=1e-5)   # the prompt is shared
    skipped = pt[pt["direction"] == "none"]["position"]
    assert set(skipped) <= {"no_correct_or_no_wrong", "same_decisive_token"}

    attractor("analyze", str(run))
    attractor("report", str(run))
    html = (run / "report" / "index.html").read_text()
    for fig_id in ("fig-depth_profiles", "fig-commitment", "fig-depth_skip",
                   "fig-attention_heads", "fig-patching"):
        assert fig_id in html


def _small_chunks(monkeypatch):
    from attractor.run_model import MechanismRun

    real = MechanismRun.questions

    def questions(self, skip, chunk=8):
        return real(self, skip, chunk=2)
    return questions


def test_bad_input_is_refused_and_the_run_untouched(tiny_run, tmp_path):
    run = _copy(tiny_run, tmp_path)
    attractor("depth", str(run), "--skip", "off")
    before = snapshot(run)
    cases = [
        (["depth", str(run), "--positions", "chunk:4"], "single tokens"),
        (["depth", str(run)], "skip=off"),
        (["depth", str(run), "--skip", "sometimes"], "--skip must be one of"),
        (["attention", str(run), "--ablate", "7.0"], "out of range"),
        (["attention", str(run), "--ablate", "x"], "LAYER.HEAD"),
        (["patch", str(run), "--pairs", "0"], "--pairs"),
        (["depth", str(tmp_path / "nowhere")], "not a run directory"),
    ]
    for args, needle in cases:
        proc = attractor(*args, check=False)
        assert proc.returncode == 2, (args, proc.stderr)
        assert needle in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert snapshot(run) == before
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "manifest.json").write_text("{}")
    proc = attractor("patch", str(empty), check=False)
    assert proc.returncode == 2 and "no rollouts" in proc.stderr


def test_imported_run_needs_a_model(tmp_path):
    src = tmp_path / "imp.jsonl"
    src.write_text(json.dumps({"id": "a", "question": "Is Tom a x or y?", "answer": "Tom is a x.",
                               "responses": [" ### Tom is a x.", " ### Tom is a y."]}) + "\n")
    run = tmp_path / "run"
    attractor("import", str(src), "--out", str(run), "--responses-field", "responses",
              "--kind", "prosqa")
    before = snapshot(run)
    proc = attractor("depth", str(run), check=False)
    assert proc.returncode == 2 and "--model" in proc.stderr
    assert snapshot(run) == before
    proc = attractor("depth", str(run), "--model", "tiny", check=False)
    assert proc.returncode == 2 and "not graded" in proc.stderr
    attractor("analyze", str(run))
    attractor("depth", str(run), "--model", "tiny", "--skip", "off")
    roll = RunStore(run).metric_table("depth_rollouts")
    assert len(roll) == 2


def test_architecture_without_separable_blocks_is_named():
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=50))
    with pytest.raises(UserError, match="decoder layers"):
        decoder_modules(gpt2)

    class Odd(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.block = torch.nn.Linear(2, 2)

    from transformers import Qwen2Config, Qwen2ForCausalLM

    m = Qwen2ForCausalLM(Qwen2Config(vocab_size=20, hidden_size=8, intermediate_size=16,
                                     num_hidden_layers=1, num_attention_heads=2,
                                     num_key_value_heads=2))
    m.model.layers[0].mlp = Odd()
    del m.model.layers[0].mlp
    with pytest.raises(UserError, match="self_attn.*mlp"):
        decoder_modules(m)


def _rome_trace_with_patch(model, ids, subject, states_to_patch, answer, noise_rows):
    """ROME's causal_trace.trace_with_patch, written out with hooks: row 0 clean, rows 1..
    corrupted by adding ``noise_rows[k]`` to the subject tokens' embeddings; for each (token,
    layer) in ``states_to_patch`` the layer's output (``"embed"``: the embeddings) at that token
    in the corrupted rows is replaced by row 0's; the answer's probability at the last position,
    averaged over the corrupted rows."""
    x = torch.tensor([ids] * (1 + len(noise_rows)))
    hooks = []

    def embed_hook(m, a, out):
        out = out.clone()
        for k, nz in enumerate(noise_rows, start=1):
            out[k, subject] += nz
        for t, layer in states_to_patch:
            if layer == "embed":
                out[1:, t] = out[0, t]
        return out

    hooks.append(model.model.embed_tokens.register_forward_hook(embed_hook))
    for t, layer in states_to_patch:
        if layer != "embed":
            def patch_rep(m, a, out, t=t):
                h = out[0] if isinstance(out, tuple) else out
                h = h.clone()
                h[1:, t] = h[0, t]
                return (h, *out[1:]) if isinstance(out, tuple) else h
            hooks.append(model.model.layers[layer].register_forward_hook(patch_rep))
    try:
        logits = model(x).logits
    finally:
        for h in hooks:
            h.remove()
    return float(torch.softmax(logits[1:, -1, :], dim=1).mean(dim=0)[answer])


def test_causal_trace_equals_rome_trace_with_patch(random_model):
    from attractor.mechanism.patching import (Site, causal_trace, embedding_sigma,
                                              subject_char_spans)

    model, _ = random_model
    mods = decoder_modules(model)
    ids = _ids(model, n=1, t=16, seed=9)[0].tolist()
    subject, readout, draws, seed = [4, 5], 15, 10, 3
    sigma = embedding_sigma(mods, [ids[i] for i in subject])
    # collect_embedding_std: the std of every element of the subject tokens' embeddings
    want_sigma = model.model.embed_tokens(torch.tensor([ids[i] for i in subject])).std()
    assert sigma == pytest.approx(float(want_sigma), rel=1e-6)
    answer = int(model(torch.tensor([ids])).logits[0, -1].argmax())
    sites = [Site("s", 5, 5), Site("last", 15, 15), Site("other", 9, 9)]
    got = causal_trace(mods, ids, subject, readout, answer, sites, sigma, seed, draws)
    g = torch.Generator().manual_seed(seed)          # the same noise draws, 3 sigma each
    noise = [torch.randn((len(subject), model.config.hidden_size), generator=g) * 3 * sigma
             for _ in range(draws)]
    assert got["p_corrupt"] == pytest.approx(
        _rome_trace_with_patch(model, ids, subject, [], answer, noise), rel=1e-5)
    assert got["p_clean"] == pytest.approx(float(torch.softmax(
        model(torch.tensor([ids])).logits[0, -1], -1)[answer]), rel=1e-5)
    rows = {(r["layer"], r["position"]): r for r in got["rows"]}
    for layer in range(mods.n_layers + 1):
        for site in sites:
            # our layer l is the stream entering block l: ROME's "embed" at 0, else block l-1
            rome_layer = "embed" if layer == 0 else layer - 1
            want = _rome_trace_with_patch(model, ids, subject, [(site.base, rome_layer)],
                                          answer, noise)
            r = rows[(layer, site.label)]
            assert r["p_patched"] == pytest.approx(want, rel=1e-4, abs=1e-7)
            assert r["indirect_effect"] == pytest.approx(want - got["p_corrupt"], abs=1e-6)
    # restoring the last position's last residual restores the clean output exactly
    assert rows[(mods.n_layers, "last")]["p_patched"] == pytest.approx(got["p_clean"], rel=1e-5)
    # the subject of each task
    text = "Every a is b. Tom is a b. Is Tom a wumpus or a rorpus?"
    (a, b), = subject_char_spans(text, "prosqa")
    assert text[a:b] == "Tom" and a == text.rindex("Tom")
    t2 = "Max is hot. True or false: Stella is opaque."
    (a, b), = subject_char_spans(t2, "prontoqa")
    assert t2[a:b] == "Stella"
    t3 = "Start with 5. Multiply by 17. What is the result?"
    assert [t3[a:b] for a, b in subject_char_spans(t3, "arith")] == ["5", "17"]
