"""Steering vectors: Fractional Reasoning's direction and injection against independent
implementations of their formulas, alpha 0 bit-identical to an unsteered run, the commands end
to end, prompt templates, and bad input refused with one line."""
import math

import numpy as np
import pytest
import torch

from attractor.steering.build import build_fractional, fractional_direction
from attractor.steering.inject import schedule, steer_last, steered
from attractor.steering.vector import SteeringVector
from attractor.store.run_store import RunStore
from helpers import attractor

COMMON = ["--model", "tiny", "--task", "synthetic:prosqa:n=4,seed=5", "--samples", "4",
          "--max-new-tokens", "32", "--seed", "3"]


def _their_icv(diffs: np.ndarray) -> np.ndarray:
    """obtain_icv as FractionalReason writes it: torch SVD of the centred differences, their
    svd_flip on U, sign of PC1 . mean, PC1 * sign + mean."""
    x = torch.tensor(diffs, dtype=torch.float64)
    mean = x.mean(0, keepdim=True)
    u, _, vt = torch.linalg.svd(x - mean, full_matrices=False)
    cols = torch.argmax(u.abs(), 0)
    signs = torch.sign(u[cols, torch.arange(u.shape[1])])
    vt = vt * signs.view(-1, 1)
    pc = vt[:1]
    sign = torch.sign(pc.sum(0, keepdim=True) @ mean.T)
    return (pc.sum(0, keepdim=True) * sign + mean).mean(0).numpy()


def test_fractional_direction_equals_their_obtain_icv():
    rng = np.random.default_rng(0)
    for seed in range(3):
        diffs = rng.normal(size=(20, 12)) + rng.normal(size=12) * (seed + 1)
        np.testing.assert_allclose(fractional_direction(diffs), _their_icv(diffs), atol=1e-5)


def test_injection_equals_their_icv_layer():
    torch.manual_seed(0)
    x = torch.randn(3, 5, 16)
    v = torch.randn(16)
    lam = 0.15
    for step, rate in ((0, 1.0), (10, 0.5 * (math.cos(math.pi * 10 / 50) + 1)), (25, 0.5),
                       (80, 0.5)):
        assert schedule(step) == pytest.approx(rate)
        got = steer_last(x, v, lam * schedule(step))
        # their ICVLayer.forward, written out
        norm = torch.norm(x, p=2, dim=-1, keepdim=True)
        y = lam * rate * torch.nn.functional.normalize(v, dim=-1).repeat(1, x.shape[1], 1)
        want = x.clone()
        want[:, -1] = (torch.nn.functional.normalize(
            torch.nn.functional.normalize(x, p=2, dim=-1) + y, p=2, dim=-1) * norm)[:, -1]
        torch.testing.assert_close(got, want)
        assert torch.equal(got[:, :-1], x[:, :-1])  # only the last position moves
        torch.testing.assert_close(got.norm(dim=-1), x.norm(dim=-1))  # norm kept


def test_steered_forwards_follow_the_schedule_and_leave_no_hooks(random_model):
    model, _ = random_model
    mods = model.model.layers
    d = model.config.hidden_size
    rng = np.random.default_rng(1)
    vec = SteeringVector(rng.normal(size=(len(mods), d)).astype(np.float32))
    ids = torch.tensor([[5, 6, 7, 8]])

    def run(hooks_on: bool):
        outs = []
        with torch.no_grad(), steered(model, vec if hooks_on else None, 0.3):
            out = model(input_ids=ids, use_cache=True)
            outs.append(out.logits[:, -1])
            cache = out.past_key_values
            for t in (9, 10, 11):
                out = model(input_ids=torch.tensor([[t]]), past_key_values=cache, use_cache=True)
                cache = out.past_key_values
                outs.append(out.logits[:, -1])
        return outs

    plain = run(False)
    steered_out = run(True)
    # the reference: the same forwards with their ICVLayer and cosine ramp-down written out
    # here (no attractor code): x' = normalize(normalize(x) + lam * rate * normalize(v)) * |x|
    # at the last position, rate = max(0.5 (cos(pi min(step, 50) / 50) + 1), 0.5)
    state = {"step": 0}
    nrm = torch.nn.functional.normalize

    def ref_hook(i):
        v = torch.from_numpy(vec.directions[i])

        def hook(_m, _i, out):
            rate = max(0.5 * (math.cos(math.pi * min(state["step"], 50) / 50) + 1), 0.5)
            x = out.clone()
            last = out[:, -1]
            x[:, -1] = nrm(nrm(last, p=2, dim=-1) + 0.3 * rate * nrm(v, dim=-1), p=2, dim=-1) \
                * last.norm(p=2, dim=-1, keepdim=True)
            return x
        return hook
    handles = [layer.mlp.register_forward_hook(ref_hook(i)) for i, layer in enumerate(mods)]
    ref = []
    try:
        with torch.no_grad():
            out = model(input_ids=ids, use_cache=True)
            ref.append(out.logits[:, -1])
            cache = out.past_key_values
            for t in (9, 10, 11):
                out = model(input_ids=torch.tensor([[t]]), past_key_values=cache, use_cache=True)
                state["step"] += 1
                cache = out.past_key_values
                ref.append(out.logits[:, -1])
    finally:
        for h in handles:
            h.remove()
    # decode step k uses schedule(k): the step is counted after each one-token forward
    for a, b in zip(steered_out, ref):
        torch.testing.assert_close(a, b)
    assert not torch.allclose(steered_out[0], plain[0])
    with torch.no_grad():  # hooks are gone after the context
        again = model(input_ids=ids).logits[:, -1]
    torch.testing.assert_close(again, plain[0], rtol=0, atol=0)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("steer")
    run = root / "train"
    attractor("sample", *COMMON, "--limit", "2", "--out", str(run))
    frac, stab = root / "frac.safetensors", root / "stab.safetensors"
    attractor("steer", "build", str(run), "--kind", "fractional", "--out", str(frac))
    attractor("steer", "build", str(run), "--kind", "stability", "--out", str(stab))
    return root, run, frac, stab


def test_vectors_carry_provenance_and_alpha_0_is_bit_identical(built, tmp_path):
    root, run, frac, stab = built
    v = SteeringVector.load(frac)
    assert v.directions.shape == (4, 128) and v.meta["kind"] == "fractional"
    assert v.meta["questions"] == [p.id for p in RunStore(run).questions()]
    assert "step-by-step" in v.meta["positive"] and v.meta["weights_sha256"]
    s = SteeringVector.load(stab)
    assert s.meta["kind"] == "stability" and s.meta["n_stable_correct"] > 0
    held = ["--offset", "2"]
    attractor("sample", *COMMON, *held, "--out", str(tmp_path / "plain"))
    attractor("sample", *COMMON, *held, "--steer", str(stab), "--alpha", "0",
              "--out", str(tmp_path / "a0"))
    attractor("sample", *COMMON, *held, "--steer", str(frac), "--alpha", "0.5",
              "--out", str(tmp_path / "a5"))
    cols = ["question_id", "sample_id", "completion_token_ids", "token_logprobs"]
    plain = RunStore(tmp_path / "plain").rollouts(cols)
    a0 = RunStore(tmp_path / "a0").rollouts(cols)
    a5 = RunStore(tmp_path / "a5").rollouts(cols)
    for c in cols:
        assert all(np.array_equal(x, y) for x, y in zip(plain[c], a0[c])), c
    assert any(not np.array_equal(x, y) for x, y in zip(plain["completion_token_ids"],
                                                        a5["completion_token_ids"]))
    m = RunStore(tmp_path / "a5").manifest
    assert m.prompt["steer"]["alpha"] == 0.5 and m.prompt["steer"]["kind"] == "fractional"
    from attractor.report.page import _prompt_rows

    assert _prompt_rows(m)[0][0] == "steering" and "alpha 0.5" in _prompt_rows(m)[0][1]
    # a resumed steered run needs the same vector bytes
    again = attractor("sample", *COMMON, *held, "--steer", str(stab), "--alpha", "0.5",
                      "--out", str(tmp_path / "a5"), check=False)
    assert again.returncode == 2


def test_fractional_from_prompts_matches_a_manual_build(built, random_model):
    model, tok = random_model
    from attractor.tasks.loaders import load_task

    problems, _ = load_task("synthetic:prosqa:n=3,seed=1")
    d, info = build_fractional(model, tok, problems, chat_template=True,
                               positive="Think hard. {question}", negative="Answer. {question}")
    diffs = []
    for p in problems:
        h = []
        for tpl in ("Answer. {question}", "Think hard. {question}"):
            ids = tok(tpl.replace("{question}", p.question) + "\n")["input_ids"]
            # their ForwardTracer: a forward hook on every decoder layer keeps its output, so
            # the last entry is the last layer's output, before the final norm
            outs = []
            hooks = [lay.register_forward_hook(
                lambda m, i, o: outs.append((o[0] if isinstance(o, tuple) else o).float()))
                for lay in model.model.layers]
            try:
                with torch.no_grad():
                    model(input_ids=torch.tensor([ids]))
            finally:
                for hk in hooks:
                    hk.remove()
            h.append(torch.stack([x[0, -1] for x in outs]).numpy())
        diffs.append((h[1] - h[0]).reshape(-1))
    np.testing.assert_allclose(d.reshape(-1), _their_icv(np.stack(diffs)), atol=2e-4)
    assert info["n_questions"] == 3


def test_bad_steering_input_is_refused(built, random_model_dir, tmp_path):
    root, run, frac, stab = built
    cases = [
        ([*COMMON, "--limit", "2", "--steer", str(stab), "--alpha", "0.1"], "held-out"),
        ([*COMMON, "--alpha", "0.1"], "--steer"),
        ([*COMMON, "--steer", str(frac), "--alpha", "abc"], "--alpha"),
        ([*COMMON, "--prompt", "Solve it."], "{question}"),
        ([*COMMON, "--steer", str(root / "none.safetensors"), "--alpha", "1"], "no such file"),
    ]
    wrong = tmp_path / "wrong.safetensors"
    SteeringVector(np.ones((3, 64), np.float32), {"model": "elsewhere"}).save(wrong)
    cases.append(([*COMMON, "--steer", str(wrong), "--alpha", "1"], "3 layers x 64 dims"))
    for args, words in cases:
        r = attractor("sample", *args, "--out", str(tmp_path / "x"), check=False)
        assert r.returncode == 2, args
        assert words in r.stderr + r.stdout, (args, r.stderr)
        assert not (tmp_path / "x").exists()
    r = attractor("steer", "build", str(run), "--kind", "other", "--out", str(tmp_path / "v.safetensors"),
                  check=False)
    assert r.returncode == 2 and "--kind" in r.stderr
    r = attractor("sweep", *COMMON, "--steer", str(frac), "--alpha", "0,x", "--temperature", "1",
                  "--max-new-tokens", "8", "--out", str(tmp_path / "s"), check=False)
    assert r.returncode == 2 and "--alpha" in r.stderr


def test_prompt_templates_reach_the_model(tmp_path):
    from attractor.pipeline.sweep import parse_prompts
    from attractor.tasks.problem import Problem
    from attractor.tasks.prompts import prompt_text

    p = Problem(id="1", question="Is Tom a wumpus? {x}", gold="yes", kind="prosqa")
    assert prompt_text(p, None, False, "Q: {question} ({instruction})").startswith(
        "Q: Is Tom a wumpus? {x} (Reason step by step")
    f = tmp_path / "t.txt"
    f.write_text("From a file, with a comma: {question}")
    got = parse_prompts(["a={question},b=Think, then answer: {question}", f"c={f}"])
    assert got == {"a": "{question}", "b": "Think, then answer: {question}",
                   "c": "From a file, with a comma: {question}"}
    attractor("sample", *COMMON, "--limit", "1", "--prompt", "Think. {question}",
              "--out", str(tmp_path / "r"))
    from attractor.models.load import load

    _, tok = load("tiny", device="cpu")
    row = RunStore(tmp_path / "r").rollouts(["prompt_token_ids"]).iloc[0]
    assert tok.decode(list(row["prompt_token_ids"])).startswith("Think. ")
    assert RunStore(tmp_path / "r").manifest.prompt["template"] == "Think. {question}"


def test_sweep_over_prompts_and_alpha_reports_each_axis(built, tmp_path):
    import json

    _, _, frac, _ = built
    out = tmp_path / "sweep"
    args = ["sweep", *COMMON, "--offset", "2", "--temperature", "1", "--max-new-tokens", "24",
            "--prompt", "plain={question},think=Think, then answer. {question}",
            "--steer", str(frac), "--alpha", "0,0.5", "--capture-positions", "last:1",
            "--out", str(out)]
    attractor(*args)
    cells = json.loads((out / "sweep.json").read_text())["cells"]
    assert sorted(c["path"] for c in cells) == sorted(
        f"T1_M24_P{p}_A{a}" for p in ("plain", "think") for a in ("0", "0.5"))
    think = RunStore(out / "T1_M24_Pthink_A0").manifest
    assert think.prompt["template"] == "Think, then answer. {question}"
    assert (out / "T1_M24_Pplain_A0" / "metrics" / "latent.parquet").exists()
    again = attractor(*args)  # every cell is done: nothing is sampled again
    assert again.stdout.count("nothing to do") == 4
    attractor("report", str(out))
    page = (out / "report" / "index.html").read_text()
    assert "id='axis-prompt'" in page and "id='axis-alpha'" in page
    assert "maj@4 - unsteered" in page and "tightness" in page
    assert (out / "report" / "alpha.png").exists() and (out / "report" / "prompt.png").exists()
