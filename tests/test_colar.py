"""CoLaR (compressed latent reasoning): its loss equals the paper's formula written out here
independently, a latent costs one cached pass, and the command trains, evaluates, inspects and
refuses bad input with one line."""
import json
import random

import pandas as pd
import pytest
import torch
from safetensors import safe_open

from attractor.latent.colar.model import CoLaR, ColarConfig, compress
from helpers import attractor

TRAIN = ["--method", "colar", "--task", "synthetic:prosqa:n=8,seed=3", "--batch-size", "4",
         "--compression", "3", "--cot-format", "backward-proof"]


def test_compress_is_the_group_sum_over_the_root_of_its_size():
    x = torch.randn(7, 4)
    got = compress(x, 3)
    # CoLaR's sqrt_mean: pad to a multiple of c, sum each group, divide by sqrt(#real rows)
    padded = torch.cat([x, torch.zeros(2, 4)]).reshape(3, 3, 4)
    count = torch.tensor([3.0, 3.0, 1.0])
    assert torch.allclose(got, padded.sum(1) / count.sqrt()[:, None], atol=1e-6)
    assert torch.allclose(compress(x, 1), x)


def _colar(random_model, seed=0):
    model, tok = random_model
    torch.manual_seed(seed)
    return CoLaR(model, tok, ColarConfig(max_compression=3)).eval()


def test_loss_equals_colar_written_out(random_model):
    """CE over [question + speed + ###][compressed groups][### answer eos] (one random token of
    the next group as each group's label) plus the MSE of a reparameterised draw of the latent
    head against the next input embedding over the embedding std, each example run alone
    through the HF model."""
    colar = _colar(random_model)
    model, tok = random_model
    E = model.get_input_embeddings()
    prompts = [tok("Every wumpus is a rorpus. Is Tom a rorpus or lempus?")["input_ids"],
               tok("Is Alex a yimpus or gerpus?")["input_ids"]]
    chains = [tok(" rorpus wumpus Tom", add_special_tokens=False)["input_ids"],
              tok(" gerpus yimpus dumpus bompus Alex", add_special_tokens=False)["input_ids"]]
    answers = [tok(" ### Tom is a rorpus.", add_special_tokens=False)["input_ids"] + [0],
               tok(" ### Alex is a gerpus.", add_special_tokens=False)["input_ids"] + [0]]
    for c in (1, 2, 3):
        with torch.no_grad():
            torch.manual_seed(c)
            got = colar.loss(prompts, chains, answers, c, random.Random(5))
            torch.manual_seed(c)  # the same reparameterised draws, example by example
            draw = random.Random(5)
            ce_sum, ce_n, sq = 0.0, 0, []
            for p, ch, a in zip(prompts, chains, answers):
                speed = tok(f" (Thinking speed: {c})", add_special_tokens=False)["input_ids"]
                q = p + speed + [colar.marker_id]
                groups = [ch[j:j + c] for j in range(0, len(ch), c)]
                comp = [E(torch.tensor(g)).sum(0) / len(g) ** 0.5 for g in groups]
                seq = torch.cat([E(torch.tensor(q)), torch.stack(comp), E(torch.tensor(a))])
                # HF-style labels aligned to the inputs, shifted by one below
                labels = ([-100] * (len(q) - 1) + [colar.marker_id]
                          + [draw.choice(g) for g in groups] + list(a))
                out = model(inputs_embeds=seq[None], output_hidden_states=True)
                logits, hid = out.logits[0], out.hidden_states[-1][0]
                lab = torch.tensor(labels[1:])
                ce_sum += torch.nn.functional.cross_entropy(logits[:-1], lab, ignore_index=-100,
                                                            reduction="sum")
                ce_n += int((lab != -100).sum())
                # the head at the marker and at each group predicts the next input embedding
                start = len(q) - 1
                n = len(groups) + 1
                target = seq[start + 1:start + 1 + n] / colar.cfg.embeds_std
                head = colar.head
                mean = head.mean(head.fc(hid[start:start + n]))
                std = head.log_std(head.fc(hid[start:start + n])).exp()
                pred = mean + std * torch.randn(mean.shape)  # CoLaR: rsample(), then MSE
                sq.append(((pred - target) ** 2).mean(-1))
            ce = ce_sum / ce_n
            latent = torch.cat(sq).mean()
        assert got["ce"].item() == pytest.approx(ce.item(), rel=1e-4), c
        assert got["latent"].item() == pytest.approx(latent.item(), rel=1e-4), c
        assert got["total"].item() == pytest.approx((ce + latent).item(), rel=1e-4)


def test_a_latent_is_one_cached_pass_equal_to_a_reforward(random_model):
    """Each latent is fed on the KV cache (one single-position pass); the states equal a
    re-forward of the question and the fed latents without a cache, for left-padded rows."""
    colar = _colar(random_model, seed=1)
    model, tok = random_model
    prompts = [tok("Is Tom a rorpus or lempus?")["input_ids"],
               tok("Every wumpus is a rorpus. Every rorpus is a gerpus. Is Alex a yimpus?")
               ["input_ids"]]
    fed = []
    colar.hooks.append(lambda t, x: fed.append(x.clone()) or x)
    colar.cfg.max_latents = 4
    out = colar.generate(prompts, 2, max_new_tokens=3)
    assert len(fed) >= 1
    for i, p in enumerate(prompts):
        n = out.latents[i]
        assert 1 <= n <= 4
        q = colar.question_ids(p, 2)
        seq = torch.cat([model.get_input_embeddings()(torch.tensor(q)),
                         torch.stack([fed[t][i] for t in range(n)])])
        with torch.no_grad():
            hid = model(inputs_embeds=seq[None], output_hidden_states=True).hidden_states[-1][0]
        assert torch.allclose(out.states[i], hid[len(q) - 1:], atol=1e-4)
        # prefill + latents + marker + at most one pass per answer token
        assert 2 + n <= out.forward_passes[i] <= 2 + n + 3


@pytest.fixture(scope="module")
def colar_checkpoint(random_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("colar") / "colar"
    attractor("latent", "train", "--model", str(random_model_dir), *TRAIN, "--out", str(out))
    return out


def test_train_writes_a_float16_checkpoint_with_its_head_and_resumes(colar_checkpoint,
                                                                      random_model_dir):
    meta = json.loads((colar_checkpoint / "loop.json").read_text())
    assert meta["method"] == "colar" and meta["colar"]["max_compression"] == 3
    assert meta["train"]["steps"] == 2 and meta["train"]["tokens_per_s"] > 0
    with safe_open(colar_checkpoint / "model.safetensors", "pt") as f:
        keys = list(f.keys())
        assert any(k.startswith("head.") for k in keys)
        assert all(str(f.get_tensor(k).dtype) == "torch.float16" for k in keys)
    again = attractor("latent", "train", "--model", str(random_model_dir), *TRAIN,
                      "--out", str(colar_checkpoint))
    assert "resumed at epoch 1" in again.stdout
    assert json.loads((colar_checkpoint / "loop.json").read_text()) == meta


def test_eval_and_inspect_give_colar_rows(colar_checkpoint, random_model_dir, tmp_path):
    task = "synthetic:prosqa:n=4,seed=9"
    attractor("latent", "eval", str(colar_checkpoint), "--model", str(random_model_dir),
              "--task", task, "--compression", "1", "--compression", "3", "--soft-thoughts",
              "0", "--max-new-tokens", "4", "--out", str(tmp_path / "eval"))
    df = pd.read_parquet(tmp_path / "eval" / "latent_eval.parquet")
    rows = df.set_index("method")
    assert {"colar@1", "colar@3", "no-cot", "cot"} <= set(rows.index)
    for m in ("colar@1", "colar@3"):
        assert 1 <= rows.loc[m, "iterations"] <= 32 and rows.loc[m, "forward_passes"] >= 3
    attractor("latent", "inspect", str(colar_checkpoint), "--model", str(random_model_dir),
              "--task", task, "--compression", "2", "--out", str(tmp_path / "inspect"))
    table = pd.read_parquet(tmp_path / "inspect" / "random_latents.parquet")
    assert list(table["compression"]) == [2]
    assert {"accuracy", "accuracy_random_latents", "no_cot_accuracy"} <= set(table)


def test_bad_input_is_one_line_and_exit_2(colar_checkpoint, random_model_dir, tmp_path):
    from attractor.errors import UserError
    from attractor.latent.checkpoint import load_colar, load_loop

    cases = [
        (["latent", "train", "--model", str(random_model_dir), *TRAIN[:-4], "--compression",
          "0", "--out", str(tmp_path / "x")], "compression must be >= 1"),
        (["latent", "eval", str(colar_checkpoint), "--compression", "0"],
         "compression factors must be >= 1"),
        (["latent", "seek", str(colar_checkpoint), "--model", str(random_model_dir)],
         "a colar checkpoint"),
    ]
    for argv, needle in cases:
        proc = attractor(*argv, check=False)
        assert proc.returncode == 2 and needle in proc.stderr, (argv, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1
    with pytest.raises(UserError, match="a colar checkpoint"):
        load_loop(colar_checkpoint)
    loop_dir = tmp_path / "loop"
    loop_dir.mkdir()
    (loop_dir / "model.safetensors").write_bytes((colar_checkpoint / "model.safetensors")
                                                 .read_bytes())
    meta = json.loads((colar_checkpoint / "loop.json").read_text())
    (loop_dir / "loop.json").write_text(json.dumps({**meta, "method": "slr"}))
    with pytest.raises(UserError, match="this needs a colar one"):
        load_colar(loop_dir)


def test_rl_log_probs_are_the_heads_normal_and_the_lm_heads_tokens(random_model):
    """The RL stage scores each fed latent by the head's Normal at the state before it (mean
    over dimensions, of latent / std) and each answer token by the LM head, as CoLaR's
    ``get_logprobs``; checked against one HF forward per sample."""
    from attractor.latent.colar.rl import group_advantages, log_probs, rollout

    colar = _colar(random_model, seed=2)
    model, tok = random_model
    colar.cfg.max_latents = 3
    prompts = [tok("Is Tom a rorpus or lempus?")["input_ids"],
               tok("Every wumpus is a rorpus. Is Alex a yimpus or gerpus?")["input_ids"]]
    from attractor.tasks.problem import Problem
    problems = [Problem(id=str(i), question="q", gold="Tom is a rorpus.", kind="prosqa")
                for i in range(2)]
    ro = rollout(colar, problems, prompts, 2, 3, seed=4, max_new_tokens=4)
    assert len(ro.questions) == 6 and all(a[0] == colar.marker_id for a in ro.answers)
    with torch.no_grad():
        lat, lat_mask, ans, ans_mask = log_probs(colar, ro.questions, ro.fed, ro.answers)
        for i, (q, f, a) in enumerate(zip(ro.questions, ro.fed, ro.answers)):
            seq = torch.cat([model.get_input_embeddings()(torch.tensor(q)), f,
                             model.get_input_embeddings()(torch.tensor(a))])
            out = model(inputs_embeds=seq[None], output_hidden_states=True)
            hid, logits = out.hidden_states[-1][0], out.logits[0]
            s = len(q) - 1
            mean = colar.head.mean(colar.head.fc(hid[s:s + len(f)]))
            std = colar.head.log_std(colar.head.fc(hid[s:s + len(f)])).exp()
            want = torch.distributions.Normal(mean, std).log_prob(f / colar.cfg.embeds_std)
            assert torch.allclose(lat[i, :len(f)], want.mean(-1), atol=1e-4)
            assert lat_mask[i].sum() == len(f) and ans_mask[i].sum() == len(a)
            lp = logits[s + len(f):s + len(f) + len(a)].log_softmax(-1)
            assert torch.allclose(ans[i, :len(a)], lp[torch.arange(len(a)), a], atol=1e-4)
    adv = group_advantages(torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0]), 3)
    want = torch.tensor([2 / 3, -1 / 3, -1 / 3]) / torch.tensor([1.0, 0, 0]).std()
    assert torch.allclose(adv[:3], want, atol=1e-5) and torch.all(adv[3:] == 0)


def test_clipped_surrogate_is_ppos_summed_over_32():
    from attractor.latent.colar.rl import clipped_loss

    old = torch.tensor([[-1.0, -2.0, 0.0], [-0.5, -0.5, -0.5]])
    new = (old + torch.tensor([[0.5, -0.1, 0.0], [0.05, 0.3, 0.0]])).requires_grad_()
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    adv = torch.tensor([1.0, -2.0])
    loss = clipped_loss(new, old, mask, adv, clip=0.2)
    ratio = (new - old).exp().detach()
    per = torch.where(adv[:, None] > 0, -torch.minimum(ratio, torch.tensor(1.2)) * adv[:, None],
                      -torch.maximum(ratio, torch.tensor(0.8)) * adv[:, None])
    assert loss.item() == pytest.approx(((per * mask).sum(-1) / 32).mean().item())
    loss.backward()
    # clipped positions (ratio e^0.5 > 1.2 with A > 0) get no gradient; the others -A r / 64
    assert new.grad[0, 0] == 0 and new.grad[0, 2] == 0
    assert new.grad[1, 1].item() == pytest.approx(2.0 * ratio[1, 1].item() / 64)
    assert new.grad[0, 1].item() == pytest.approx(-1.0 * ratio[0, 1].item() / 64)


def test_rl_stage_trains_from_a_colar_checkpoint_only(colar_checkpoint, random_model_dir,
                                                     tmp_path):
    rl = ["latent", "train", "--model", str(random_model_dir), "--method", "colar", "--task",
          "synthetic:prosqa:n=2,seed=3", "--batch-size", "2", "--group-size", "2", "--do-rl"]
    attractor(*rl, "--init", str(colar_checkpoint), "--out", str(tmp_path / "rl"))
    meta = json.loads((tmp_path / "rl" / "loop.json").read_text())
    assert meta["train"]["do_rl"] and 0 <= meta["train"]["final_reward"] <= 1
    assert meta["train"]["cot_format"] == "backward-proof"  # the chain its init was trained on
    for extra, needle in (([], "needs --method colar and --init"),
                          (["--init", str(tmp_path / "rl-none")], "not a latent checkpoint")):
        proc = attractor(*rl, *extra, "--out", str(tmp_path / "x"), check=False)
        assert proc.returncode == 2 and needle in proc.stderr, proc.stderr
