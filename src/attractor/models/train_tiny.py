"""``attractor train-tiny``: the seeded, resumable recipe that trains the embedded tiny model.

Batches are generated on the fly: batch ``s`` holds generated ProsQA problems
``s*B .. s*B+B-1`` of seed ``seed``, so a run killed at any step and resumed from its last
checkpoint sees exactly the data an uninterrupted run sees. Checkpoints (model and AdamW state)
are safetensors; the finished model is a ``save_pretrained`` directory.
"""
from __future__ import annotations

import json
import math
import random
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_file, save_file
from transformers import PreTrainedTokenizerFast, Qwen2ForCausalLM

from attractor.store.atomic import atomic_write_json, settled, swap_in
from attractor.models.tiny_recipe import (DRILL_MARK, completion_text, lookup_drill,
                                          lookup_sentences, prompt_text, root_question,
                                          tiny_config)
from attractor.models.tiny_tokenizer import build_tokenizer
from attractor.models.train_tiny_config import TinyTrainConfig
from attractor.store.environment import command_line
from attractor.tasks.prosqa import generate_prosqa


ROOT_MARK = "%"
DEV_SEED_OFFSET = 1_000_003  # dev problems come from another seed than training problems


def _drill_row(p, tok: PreTrainedTokenizerFast, rng: random.Random) -> tuple[list, list, list]:
    prompt = tok(prompt_text(p.question) + DRILL_MARK)["input_ids"]
    ids, labels = [], []
    one = {}  # every domain word is one token (tested), so pieces can be joined by id

    def tid(word: str) -> int:
        if word not in one:
            got = tok(" " + word, add_special_tokens=False)["input_ids"]
            if len(got) != 1:
                raise ValueError(f"'{word}' is not one token")
            one[word] = got[0]
        return one[word]

    for node, parent in lookup_drill(p, rng):
        ids += [tid(node), tid(parent), tid(".")]
        labels += [-100, tid(parent), tid(".")]
    return prompt, ids + [tok.eos_token_id], labels + [tok.eos_token_id]


def lookup_batch(step: int, k: int, cfg: "TinyTrainConfig",
                 tok: PreTrainedTokenizerFast) -> dict[str, torch.Tensor]:
    """A warm-up batch: ``cfg.batch_size`` sentence sets of up to ``k`` sentences, each followed
    by its look-up drill (loss on the parents only)."""
    rows = []
    for b in range(cfg.batch_size):
        rng = random.Random(f"lookup:{cfg.seed}:{step}:{b}")
        text, pairs = lookup_sentences(rng, rng.randint(max(2, k // 2), k))
        ids, labels = [], []
        if cfg.root_drill > 0 and rng.random() < cfg.root_drill:  # root drill, small context
            question, people = root_question(rng, text)
            rows.append((tok(prompt_text(question) + ROOT_MARK)["input_ids"],
                         *_labelled_people(tok, people)))
            continue
        prompt = tok(prompt_text(text) + DRILL_MARK)["input_ids"]
        for node, parent in pairs:
            a, b2 = (tok(" " + w, add_special_tokens=False)["input_ids"] for w in (node, parent))
            ids += a + b2
            labels += [-100] * len(a) + b2
        rows.append((prompt, ids, labels))
    return _pad(rows, tok.eos_token_id)


def _pad(rows, pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(a) + len(b) for a, b, _ in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, (a, b, lab) in enumerate(rows):
        ids[i, : len(a) + len(b)] = torch.tensor(a + b)
        labels[i, len(a): len(a) + len(b)] = torch.tensor(lab)
    return {"input_ids": ids, "labels": labels}


def _labelled_people(tok: PreTrainedTokenizerFast, people: list[tuple[str, bool]]
                     ) -> tuple[list[int], list[int]]:
    """Ids and labels of a root drill: each person, then ' ###' if it is the person asked about
    else ' .' (loss on the marks only)."""
    ids, labels = [], []
    for who, is_root in people:
        w = tok(" " + who, add_special_tokens=False)["input_ids"]
        mark = tok(" ###" if is_root else " .", add_special_tokens=False)["input_ids"]
        ids += w + mark
        labels += [-100] * len(w) + mark
    return ids, labels


def _root_drill_row(p, tok: PreTrainedTokenizerFast, rng: random.Random) -> tuple[list, list, list]:
    """The people of ``p``'s graph in random order, each labelled ' ###' when it is the person
    the question asks about and ' .' otherwise: the comparison that ends a backward chain."""
    m = p.meta
    has_parent = {b for _, b in m["edges"]}
    people = [i for i in range(len(m["idx_to_symbol"])) if i not in has_parent]
    rng.shuffle(people)
    prompt = tok(prompt_text(p.question) + ROOT_MARK)["input_ids"]
    ids, labels = _labelled_people(tok, [(m["idx_to_symbol"][i], i == m["root"]) for i in people])
    return prompt, ids + [tok.eos_token_id], labels + [tok.eos_token_id]


def encode_batch(problems, tok: PreTrainedTokenizerFast, seed: int,
                 drill: float = 0.0, root_drill: float = 0.0) -> dict[str, torch.Tensor]:
    """Right-padded input ids and labels (-100 on prompt, padding and drill queries) for a
    training batch; a ``drill`` share of the problems become look-up drills."""
    rows = []
    for p in problems:
        rng = random.Random(f"cot:{seed}:{p.id}")
        u = rng.random()
        if u < drill:
            rows.append(_drill_row(p, tok, rng))
            continue
        if u < drill + root_drill:
            rows.append(_root_drill_row(p, tok, rng))
            continue
        prompt = tok(prompt_text(p.question))["input_ids"]
        comp = tok(completion_text(p, rng))["input_ids"] + [tok.eos_token_id]
        rows.append((prompt, comp, comp))
    return _pad(rows, tok.eos_token_id)


@torch.no_grad()
def greedy_accuracy(model, tok: PreTrainedTokenizerFast, problems, max_new_tokens: int = 96,
                    batch_size: int = 32) -> tuple[float, list[str]]:
    """Greedy CoT accuracy (answer sentence after ``###`` equals gold) and the completions."""
    from attractor.grading.extract import extract_answer  # one extractor for the whole project

    model.eval()
    tok.padding_side = "left"
    texts: list[str] = []
    for i in range(0, len(problems), batch_size):
        chunk = problems[i: i + batch_size]
        enc = tok([prompt_text(p.question) for p in chunk], return_tensors="pt", padding=True)
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tok.eos_token_id)
        texts += tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    model.train()
    correct = [extract_answer(t, "prosqa") == extract_answer(p.gold, "prosqa", gold=True)
               for t, p in zip(texts, problems)]
    return sum(correct) / len(correct), texts


def graph_size_at(step: int, cfg: TinyTrainConfig) -> dict[str, int]:
    """Generator size options at a step: small graphs early in the curriculum, full size after.
    Small graphs make the look-up the model must learn easy to find among few sentences."""
    full = {"min_nodes": 18, "max_nodes": 28, "min_hops": 3, "max_hops": 6}
    step -= cfg.lookup_steps
    if cfg.curriculum <= 0 or step >= cfg.curriculum:
        return full
    frac = step / cfg.curriculum
    lo = int(8 + frac * (full["min_nodes"] - 8))
    hi = max(lo, int(10 + frac * (full["max_nodes"] - 10)))
    return {"min_nodes": lo, "max_nodes": hi, "min_hops": 3, "max_hops": min(6, lo - 4)}


def _lr_at(step: int, cfg: TinyTrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    frac = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))


def _save_checkpoint(path: Path, model, opt, step: int, cfg: TinyTrainConfig,
                     extra: dict | None = None) -> None:
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    # named_parameters lists a tied weight once (safetensors refuses shared storage)
    save_file({k: v.detach().contiguous() for k, v in model.named_parameters()},
              tmp / "model.safetensors")
    names = {id(p): n for n, p in model.named_parameters()}
    opt_tensors: dict[str, torch.Tensor] = {}
    for group in opt.param_groups:
        for p in group["params"]:
            for key, val in opt.state.get(p, {}).items():
                opt_tensors[f"{names[id(p)]}::{key}"] = val.detach().reshape(val.shape).contiguous()
    save_file(opt_tensors, tmp / "optimizer.safetensors")
    (tmp / "state.json").write_text(json.dumps({"step": step, "config": asdict(cfg),
                                                "extra": extra or {},
                                                "rng": torch.get_rng_state().tolist()}))
    swap_in(tmp, path)


def _load_checkpoint(path: Path, model, opt) -> tuple[int, dict]:
    missing, unexpected = model.load_state_dict(load_file(path / "model.safetensors"), strict=False)
    if unexpected or any(k != "lm_head.weight" for k in missing):
        raise RuntimeError(f"{path}: checkpoint does not match the model ({missing}, {unexpected})")
    model.tie_weights()
    tensors = load_file(path / "optimizer.safetensors")
    params = dict(model.named_parameters())
    for key, val in tensors.items():
        name, slot = key.split("::")
        opt.state[params[name]][slot] = val
    state = json.loads((path / "state.json").read_text())
    torch.set_rng_state(torch.tensor(state["rng"], dtype=torch.uint8))
    return int(state["step"]), state.get("extra", {})


def train_tiny(cfg: TinyTrainConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train (or resume) the tiny model; returns the final dev accuracy and timings."""
    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    tok_dir = out / "tokenizer"
    if (tok_dir / "tokenizer.json").exists():  # a resumed run keeps the tokenizer it began with
        tok = PreTrainedTokenizerFast.from_pretrained(tok_dir)
    elif cfg.init_from:
        tok = PreTrainedTokenizerFast.from_pretrained(cfg.init_from)
        tok.save_pretrained(tok_dir)
    else:
        tok = build_tokenizer()
        tok.save_pretrained(tok_dir)
    torch.manual_seed(cfg.seed)
    if cfg.init_from:
        model = Qwen2ForCausalLM.from_pretrained(cfg.init_from, dtype=torch.float32)
    else:
        model = Qwen2ForCausalLM(tiny_config(len(tok), tok.eos_token_id))
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.95),
                            weight_decay=cfg.weight_decay)
    ckpt = out / "checkpoint"
    step, extra = (_load_checkpoint(ckpt, model, opt) if (settled(ckpt) / "state.json").exists()
                   else (0, {}))
    k = int(extra.get("lookup_k", cfg.lookup_start))  # sentences per warm-up problem (grows with accuracy)
    drill_acc = float(extra.get("drill_acc", 0.0))
    if step:
        log(f"resumed from {ckpt} at step {step}")
    n_params = sum(p.numel() for p in model.parameters())
    log(f"tiny model: {n_params/1e6:.2f}M parameters, vocab {len(tok)}; steps {step}..{cfg.steps}")
    dev = generate_prosqa(cfg.eval_size, seed=cfg.seed + DEV_SEED_OFFSET)
    logf = open(out / "train_log.jsonl", "a")
    t0, tokens = time.time(), 0
    loss_avg = None
    last = min(cfg.steps, cfg.stop_after) if cfg.stop_after else cfg.steps
    while step < last:
        warm = step < cfg.lookup_steps
        if warm:
            batch = lookup_batch(step, k, cfg, tok)
        else:
            problems = generate_prosqa(cfg.batch_size, seed=cfg.seed,
                                       start=step * cfg.batch_size, **graph_size_at(step, cfg))
            batch = encode_batch(problems, tok, cfg.seed, cfg.drill, cfg.root_drill)
        for g in opt.param_groups:
            g["lr"] = _lr_at(step, cfg)
        out_ = model(**batch)
        loss = out_.loss
        if warm:
            with torch.no_grad():
                tgt = batch["labels"][:, 1:]
                hit = (out_.logits[:, :-1].argmax(-1) == tgt)[tgt != -100].float().mean().item()
            drill_acc = 0.95 * drill_acc + 0.05 * hit
            if (step + 1) % 50 == 0 and drill_acc > cfg.lookup_gate and k < cfg.lookup_max:
                k += 1
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        tokens += batch["input_ids"].numel()
        loss_avg = loss.item() if loss_avg is None else 0.98 * loss_avg + 0.02 * loss.item()
        record: dict[str, Any] = {}
        if step % 50 == 0:
            rate = tokens / (time.time() - t0)
            record = {"step": step, "loss": round(loss_avg, 4), "lr": _lr_at(step, cfg),
                      "tokens_per_s": round(rate)}
            if warm:
                record.update({"lookup_sentences": k, "drill_accuracy": round(drill_acc, 3)})
        if (step % cfg.eval_every == 0 and step > cfg.lookup_steps) or step == last:
            acc, _ = greedy_accuracy(model, tok, dev)
            record.update({"step": step, "dev_accuracy": acc})
        if record:
            log(json.dumps(record))
            logf.write(json.dumps(record) + "\n")
            logf.flush()
        if step % cfg.ckpt_every == 0 or step == last:
            _save_checkpoint(ckpt, model, opt, step, cfg,
                             {"lookup_k": k, "drill_acc": drill_acc})
    final = out / "model"
    model.save_pretrained(final)
    tok.save_pretrained(final)
    # what made these weights, so a later stage (--init-from) can cite it in its record
    atomic_write_json(final / "training_stage.json", {
        "command": " ".join(command_line()), "config": asdict(cfg),
        "steps": step, "lookup_sentences": k, "lookup_drill_accuracy": round(drill_acc, 4)})
    acc, _ = greedy_accuracy(model, tok, dev)
    return {"dev_accuracy": acc, "steps": step, "params": n_params, "out": str(final)}
