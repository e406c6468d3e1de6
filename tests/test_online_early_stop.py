"""Online early stopping in the hf engine (``sample --early-stop``) against the offline replay."""
import numpy as np
import pytest

from attractor.config import SamplingConfig
from attractor.engines.base import spent_tokens
from attractor.engines.hf import HFEngine
from attractor.errors import ConfigError
from attractor.scaling.early_stop import Trace, deepconf_rule, first_below
from attractor.scaling.online import deepconf_threshold, parse_rule, sample_with_rule
from attractor.store.run_store import RunStore
from attractor.tasks.prompts import prompt_ids
from attractor.tasks.loaders import load_task
from helpers import attractor


def _setup(random_model, n=8):
    model, tok = random_model
    problems, _ = load_task("synthetic:prosqa:n=3,seed=2")
    prompts = [prompt_ids(p, tok, True) for p in problems]
    cfg = SamplingConfig(samples=n, temperature=1.0, max_new_tokens=24, seed=11)
    return HFEngine(model, tok), [p.id for p in problems], prompts, cfg


def test_deepconf_online_cuts_exactly_where_the_offline_replay_does(random_model):
    engine, ids, prompts, cfg = _setup(random_model)
    full = engine.generate(ids, prompts, cfg)
    rule = parse_rule("deepconf:warmup=2,percentile=50,window=8", cfg.samples)
    online = sample_with_rule(engine, ids, prompts, cfg, rule, classify=None)
    cut_any = False
    for f_group, o_group in zip(full, online):
        assert [r.sample_id for r in o_group] == list(range(cfg.samples))
        thr = deepconf_threshold(o_group[:2], 50, 8)
        for f, o in zip(f_group, o_group):
            assert o.seed == f.seed
            # a cut trace is the uninterrupted trace's prefix: same seeds, same tokens
            assert o.completion_token_ids == f.completion_token_ids[:o.n_tokens]
            if o.sample_id < 2:  # warm-up traces run in full (floats differ only by batch shape)
                assert o.finish_reason == f.finish_reason and o.n_tokens == f.n_tokens
                assert np.allclose(o.token_confidences, f.token_confidences, atol=1e-4)
                continue
            stop = first_below(np.asarray(f.token_confidences, float), 8, thr)
            if stop is None:
                assert o.finish_reason == f.finish_reason and o.n_tokens == f.n_tokens
            else:
                cut_any = True
                assert o.finish_reason == "early_stop" and len(o.token_confidences) == stop
    assert cut_any, "percentile 50 must cut some traces"
    # the tokens spent online are the tokens the offline replay predicts
    replay = deepconf_rule(2, 50, 8)
    for f_group, o_group in zip(full, online):
        traces = [Trace("a", spent_tokens(f.n_tokens, f.token_confidences),
                        np.asarray(f.token_confidences, float)) for f in f_group]
        assert replay(traces, {"a": True}).tokens == sum(
            spent_tokens(o.n_tokens, o.token_confidences) for o in o_group)


def test_sample_with_early_stop_records_cut_traces_without_answers(tmp_path):
    common = ["--model", "tiny", "--task", "synthetic:prosqa:n=4,seed=9", "--samples", "6",
              "--max-new-tokens", "48", "--seed", "1"]
    attractor("sample", *common, "--out", str(tmp_path / "full"))
    attractor("sample", *common, "--early-stop", "consensus:min_traces=2,share=0.5",
              "--out", str(tmp_path / "cons"))
    full = RunStore(tmp_path / "full").rollouts().sort_values(["question_id", "sample_id"])
    cons = RunStore(tmp_path / "cons").rollouts().sort_values(["question_id", "sample_id"])
    assert len(cons) == len(full) == 24
    cut = cons[cons["finish_reason"] == "early_stop"]
    assert len(cut) > 0 and (cut["n_tokens"] == 0).all() and cut["answer"].isna().all()
    assert not cut["correct"].any()
    assert cons["n_tokens"].sum() < full["n_tokens"].sum()
    kept = cons[cons["finish_reason"] != "early_stop"].set_index(["question_id", "sample_id"])
    same = full.set_index(["question_id", "sample_id"]).loc[kept.index]
    assert (same["text"] == kept["text"]).all()  # samples made are the full run's samples
    manifest = RunStore(tmp_path / "cons").manifest
    assert manifest["identity"]["early_stop"] == "consensus:min_traces=2,share=0.5"


@pytest.mark.parametrize("spec", ["deepconf:warmup=8,percentile=90,window=16", "magic:x=1",
                                  "deepconf:warmup=2,percentile=90", "consensus:min_traces=2,share=x"])
def test_bad_rules_are_refused(spec):
    with pytest.raises(ConfigError):
        parse_rule(spec, 8)


def test_bad_rule_on_the_command_line_exits_2(tmp_path):
    proc = attractor("sample", "--task", "synthetic:prosqa:n=2", "--early-stop", "magic",
                     "--out", str(tmp_path / "r"), check=False)
    assert proc.returncode == 2 and "--early-stop" in proc.stderr + proc.stdout
    assert not (tmp_path / "r").exists()
