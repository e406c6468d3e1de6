"""One definition per option: every config field is a CLI option of the same name with the same
default, and a bad value is refused by the dataclass, named as the flag, before torch loads."""
import dataclasses
import subprocess
import sys

import pytest
import typer

from attractor.cli import app
from attractor.cli.options import default_of, flag, flags_in, leaf_fields
from attractor.config import RunConfig, SamplingConfig
from attractor.errors import ConfigError
from attractor.latent.command_config import EvalConfig, InspectConfig
from attractor.latent.seek.config import SeekConfig
from attractor.latent.slr.train_config import LatentTrainConfig
from attractor.models.train_tiny_config import TinyTrainConfig
from helpers import attractor

# (command path, config, fields the command deliberately leaves out, fields it requires)
COMMANDS = [
    (["sample"], RunConfig, (), ("task",)),
    (["sweep"], RunConfig, ("temperature", "max_new_tokens", "engine", "backend", "early_stop",
                            "allocate", "budget", "first_round", "prompt", "alpha"), ("task",)),
    (["train-tiny"], TinyTrainConfig, (), ()),
    (["latent", "train"], LatentTrainConfig, (), ("out",)),
    (["latent", "eval"], EvalConfig, (), ()),
    (["latent", "inspect"], InspectConfig, (), ()),
    (["latent", "seek"], SeekConfig, (), ()),
]


def _command(path):
    cmd = typer.main.get_command(app)
    for name in path:
        cmd = cmd.commands[name]
    return cmd


@pytest.mark.parametrize("path,config,skip,required", COMMANDS,
                         ids=[" ".join(c[0]) for c in COMMANDS])
def test_every_config_field_is_an_option_with_its_default(path, config, skip, required):
    options = {p.name: p for p in _command(path).params if p.param_type_name == "option"}
    fields = leaf_fields(config)
    assert fields, config
    for f, _ in fields:
        if f.name in skip:  # not an option, or the command's own (sweep's lists of values)
            assert f.name not in options or options[f.name].help != f.metadata["help"], f.name
            continue
        opt = options.get(f.name)
        assert opt is not None, f"{' '.join(path)} lacks {flag(f.name)}"
        assert flag(f.name) in opt.opts, (f.name, opt.opts)
        assert opt.help == f.metadata["help"] and opt.help, f.name
        if f.name in required:
            assert opt.required, f.name
        else:
            want = default_of(f)
            got = opt.default
            assert (list(got) if isinstance(want, list) else got) == want, (f.name, got, want)


def test_config_errors_name_the_field_and_the_cli_names_the_flag():
    with pytest.raises(ConfigError, match="`top_p` must be in"):
        SamplingConfig(top_p=1.5)
    assert flags_in("`top_p` must be in (0, 1], got 1.5") == "--top-p must be in (0, 1], got 1.5"
    proc = attractor("sample", "--task", "synthetic:arith:n=2", "--out", "unused",
                     "--top-p", "1.5", check=False)
    assert proc.returncode == 2 and proc.stderr.strip() == \
        "error: --top-p must be in (0, 1], got 1.5"
    proc = attractor("latent", "eval", "--halting", "sometimes", check=False)
    assert proc.returncode == 2 and "--halting must be state, kl or token" in proc.stderr


def test_cross_field_checks_live_in_the_config():
    with pytest.raises(ConfigError, match="`early_stop` and `budget` run in the hf and vllm"):
        RunConfig(engine="ray", budget=100)
    RunConfig(engine="vllm", budget=100)  # budgets and consensus schedule between vLLM calls
    with pytest.raises(ConfigError, match="`backend` vllm is for --engine ray"):
        RunConfig(engine="hf", backend="vllm")
    RunConfig(engine="vllm", early_stop="deepconf:warmup=4,percentile=90,window=8")
    with pytest.raises(ConfigError, match="--early-stop"):
        RunConfig(early_stop="deepconf:warmup=99,percentile=90,window=8")
    with pytest.raises(ConfigError, match="`engine`"):
        RunConfig(engine="tgi")
    with pytest.raises(ConfigError, match="`dtype`"):
        RunConfig(dtype="int3")


def test_greedy_settings_are_normalised_so_unused_filters_do_not_split_runs():
    a = RunConfig(sampling=SamplingConfig(temperature=0, top_p=0.9, top_k=5))
    b = RunConfig(sampling=SamplingConfig(temperature=0))
    assert (a.sampling.top_p, a.sampling.top_k) == (1.0, 0)
    assert dataclasses.asdict(a) == dataclasses.asdict(b)
    # sampled runs keep their filters
    assert SamplingConfig(temperature=0.7, top_p=0.9).top_p == 0.9


def test_a_bad_option_is_refused_before_torch_is_imported():
    code = ("import sys\nfrom attractor.cli import main\n"
            "try:\n    main(['latent', 'train', '--out', 'x', '--stages', '0'])\n"
            "except SystemExit as e:\n    print(e.code, 'torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.split() == ["2", "False"], out.stdout + out.stderr
    assert "--stages" in out.stderr


def test_the_latent_package_exports_what_the_readme_imports():
    from attractor.latent import LatentLoop, LoopConfig, load_loop
    from attractor.latent.checkpoint import RELEASED

    loop, meta = load_loop(RELEASED / "prosqa" / "slr")
    assert isinstance(loop, LatentLoop) and isinstance(loop.cfg, LoopConfig)
    assert meta["method"] == "slr"


def test_manifests_record_the_attractor_command_even_in_process(tmp_path):
    run = tmp_path / "r"
    attractor("sample", "--task", "synthetic:arith:n=2", "--samples", "2", "--max-new-tokens", "4",
              "--out", str(run))
    from attractor.store.run_store import RunStore

    assert RunStore(run).manifest.command == [
        "attractor", "sample", "--task", "synthetic:arith:n=2", "--samples", "2",
        "--max-new-tokens", "4", "--out", str(run)]
