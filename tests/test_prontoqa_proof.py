"""The backward proof on ProntoQA: the chain of thought the tiny model's ProntoQA loops replace."""
import pytest

from attractor.errors import DataError
from attractor.latent.curriculum import cot_steps
from attractor.tasks.loaders import load_task
from attractor.tasks.problem import Problem
from attractor.tasks.prontoqa_proof import prontoqa_backward_proof
from conftest import require_data

RULES = ("Every lorpus is floral. Gorpuses are rompuses. Each rompus is a lorpus. "
         "Dumpuses are not floral. Numpuses are dumpuses. Stella is a gorpus. "
         "Stella is a zumpus. Zumpuses are not cold. ")


def _problem(query: str, gold: str) -> Problem:
    return Problem(id="q1", question=RULES + "True or false: " + query, gold=gold,
                   steps=["unused"], kind="prontoqa")


def test_proof_traces_the_sentence_that_says_what_the_query_says():
    # "floral" is said of lorpus (Stella's chain: plural and "Each" phrasings on the way) and
    # "not floral" of dumpus (a chain Stella is not on)
    assert prontoqa_backward_proof(_problem("Stella is floral.", "True")) == (
        ["floral", "lorpus", "rompus", "gorpus", "Stella"], "True")
    assert prontoqa_backward_proof(_problem("Stella is not floral.", "False")) == (
        ["not floral", "dumpus", "numpus", ".", "floral", "lorpus", "rompus", "gorpus", "Stella"],
        "False")


def test_curriculum_refuses_a_proof_that_contradicts_the_gold_answer():
    with pytest.raises(DataError, match="q1: the backward proof gives True, the gold answer is "
                                        "False"):
        cot_steps([_problem("Stella is floral.", "False")], "backward-proof", 0)


def test_question_without_both_polarities_is_a_clear_error():
    p = Problem(id="q2", question="Every lorpus is floral. Stella is a lorpus. True or false: "
                                  "Stella is floral.", gold="True", steps=["x"], kind="prontoqa")
    with pytest.raises(DataError, match="q2: needs one sentence saying 'floral' each way"):
        prontoqa_backward_proof(p)


@pytest.mark.parametrize("spec", ["synthetic:prontoqa:n=300,seed=5", "prontoqa"])
def test_proof_proves_the_gold_answer_on_generated_and_real_questions(spec):
    data_dir = str(require_data("prontoqa_test.jsonl").parent) if spec == "prontoqa" else None
    problems, _ = load_task(spec, data_dir=data_dir)
    for p in problems:
        steps, answer = prontoqa_backward_proof(p)
        assert answer == p.gold, p.id
        # the proof ends at the person asked about, after one chain (True) or two (False)
        assert steps[-1] == p.question.split("True or false: ")[1].split()[0]
        assert steps.count(".") == (answer == "False")


def test_unreadable_sentence_is_a_clear_error():
    p = Problem(id="q3", question="Every lorpus is. Stella is a lorpus. True or false: Stella is "
                                  "floral.", gold="True", steps=["x"], kind="prontoqa")
    with pytest.raises(DataError, match="q3: cannot read the sentence 'Every lorpus is'"):
        prontoqa_backward_proof(p)
