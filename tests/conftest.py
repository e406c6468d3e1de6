"""Shared fixtures: tiny models are built here, never downloaded."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("ATTRACTOR_DATA_DIR", REPO.parent / "shared" / "data"))

# torch is imported only by the tests that need it (numpy-only metric tests run without it);
# OMP_NUM_THREADS caps its threads before it loads
os.environ.setdefault("OMP_NUM_THREADS", str(min(2, os.cpu_count() or 1)))
# commands run in this process (helpers.attractor): tables as wide as a subprocess's with
# COLUMNS=200, so assertions on printed rows do not depend on the terminal
os.environ.setdefault("COLUMNS", "200")


def require_data(name: str) -> Path:
    """Path of a benchmark file; skip the test when the shared data folder is absent, fail it
    where the data is required (CI sets ATTRACTOR_REQUIRE_DATA=1: CI cannot pass by
    skipping)."""
    path = DATA_DIR / name
    if not path.exists():
        if os.environ.get("ATTRACTOR_REQUIRE_DATA"):
            pytest.fail(f"{path} not available (ATTRACTOR_REQUIRE_DATA is set)")
        pytest.skip(f"{path} not available")
    return path


@pytest.fixture(scope="session")
def random_model_dir(tmp_path_factory) -> Path:
    """A randomly initialised model of the tiny model's architecture and tokenizer, saved with
    save_pretrained (loads like any local model)."""
    import torch
    from transformers import Qwen2ForCausalLM

    from attractor.models.tiny_recipe import tiny_config
    from attractor.models.tiny_tokenizer import build_tokenizer

    out = tmp_path_factory.mktemp("random-tiny")
    tok = build_tokenizer()
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(tiny_config(len(tok), tok.eos_token_id))
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def random_model(random_model_dir):
    """(model, tokenizer) of :func:`random_model_dir`, loaded through attractor.models.load."""
    from attractor.models.load import load

    return load(str(random_model_dir), device="cpu")
