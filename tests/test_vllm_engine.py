"""The vLLM engine: its conversion against vLLM's own output classes (when vllm imports), and a
clear refusal when it is not installed."""
import importlib.util
import math

import pytest

from helpers import attractor

HAS_VLLM = importlib.util.find_spec("vllm") is not None


@pytest.mark.skipif(not HAS_VLLM, reason="vllm is not installed (GPU machines)")
def test_completion_output_converts_to_our_rollout():
    from vllm.outputs import CompletionOutput
    try:
        from vllm.logprobs import Logprob
    except ImportError:
        from vllm.sequence import Logprob

    from attractor.engines.vllm_engine import rollout_from_completion

    lp = [{5: Logprob(-0.1, 1), 7: Logprob(-2.5, 2)}, {9: Logprob(-0.7, 1), 5: Logprob(-0.9, 2)}]
    out = CompletionOutput(index=0, text="ab", token_ids=[5, 5], cumulative_logprob=-1.0,
                           logprobs=lp, finish_reason="length")
    r = rollout_from_completion("q", 3, 10, [1, 2], out)
    assert r.completion_token_ids == [5, 5] and r.finish_reason == "length" and r.seed == 10
    assert r.token_logprobs == pytest.approx([-0.1, -0.9])
    assert r.token_confidences == pytest.approx([1.3, 0.8])
    p = [math.exp(-0.7), math.exp(-0.9)]
    z = sum(p)
    assert r.token_entropies[1] == pytest.approx(-sum(x / z * math.log(x / z) for x in p))


@pytest.mark.skipif(HAS_VLLM, reason="checks the message shown without vllm")
def test_engine_vllm_without_vllm_is_a_clear_error(tmp_path):
    proc = attractor("sample", "--task", "synthetic:prosqa:n=2", "--engine", "vllm",
                     "--out", str(tmp_path / "r"), check=False)
    assert proc.returncode == 2
    assert "attractor[vllm]" in proc.stderr + proc.stdout


def test_unknown_engine_is_refused(tmp_path):
    proc = attractor("sample", "--task", "synthetic:prosqa:n=2", "--engine", "tgi",
                     "--out", str(tmp_path / "r"), check=False)
    assert proc.returncode == 2 and "--engine" in proc.stderr + proc.stdout
    assert not (tmp_path / "r").exists()
