"""The backward proof on ProntoQA: the chain of thought the tiny model's ProntoQA loops replace."""
import pytest

from attractor.errors import DataError
from attractor.latent.slr.curriculum import cot_steps
from attractor.tasks.loaders import load_task
from attractor.tasks.problem import Problem
from attractor.tasks.prontoqa_proof import prontoqa_backward_proof, prontoqa_sentence_proof
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


def test_sentence_proof_quotes_the_premises_one_per_step():
    # the same chains, each step the question's own sentence, the dead end still a "."
    assert prontoqa_sentence_proof(_problem("Stella is floral.", "True")) == (
        ["Every lorpus is floral.", "Each rompus is a lorpus.", "Gorpuses are rompuses.",
         "Stella is a gorpus."], "True")
    assert prontoqa_sentence_proof(_problem("Stella is not floral.", "False")) == (
        ["Dumpuses are not floral.", "Numpuses are dumpuses.", ".", "Every lorpus is floral.",
         "Each rompus is a lorpus.", "Gorpuses are rompuses.", "Stella is a gorpus."], "False")
    # the curriculum uses it under --cot-format backward-sentences (ProsQA: a graph is needed)
    assert cot_steps([_problem("Stella is floral.", "True")], "backward-sentences", 0) == [
        ["Every lorpus is floral.", "Each rompus is a lorpus.", "Gorpuses are rompuses.",
         "Stella is a gorpus."]]
    prosqa = Problem(id="g1", question="Tom is a wumpus. Is Tom a yumpus or a zumpus?",
                     gold="yumpus", steps=["x"], kind="prosqa")
    with pytest.raises(DataError, match="backward-sentences needs ProsQA graphs or ProntoQA "
                                        "questions; g1 is neither"):
        cot_steps([prosqa], "backward-sentences", 0)


def test_prosqa_sentence_proof_is_the_one_name_proof_in_the_question_s_sentences():
    from attractor.tasks.prosqa import generate_prosqa

    for p in generate_prosqa(40, seed=5):
        names = cot_steps([p], "backward-proof", 3)[0]
        sentences = cot_steps([p], "backward-sentences", 3)[0]
        # every sentence is one the question states, and read back they name the same chains
        assert all(s == "." or s in p.question for s in sentences)
        read, last = [], "."
        for s in sentences:
            if s == ".":
                read.append(".")
            else:
                words = s.rstrip(".").split()
                subject, obj = (words[1] if words[0] == "Every" else words[0]), words[-1]
                read += ([obj] if last == "." else []) + [subject]
            last = s
        assert read == names
        assert sentences[-1] == f"{names[-1]} is a {names[-2]}."


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
        # in sentences: one premise per concept, each quoted from the question
        sentences, same = prontoqa_sentence_proof(p)
        assert same == answer
        assert len(sentences) == len(steps) - 1 - (answer == "False")
        assert all(s == "." or s in p.question for s in sentences), p.id
        assert sentences[-1].startswith(steps[-1] + " is ")


def test_unreadable_sentence_is_a_clear_error():
    p = Problem(id="q3", question="Every lorpus is. Stella is a lorpus. True or false: Stella is "
                                  "floral.", gold="True", steps=["x"], kind="prontoqa")
    with pytest.raises(DataError, match="q3: cannot read the sentence 'Every lorpus is'"):
        prontoqa_backward_proof(p)


def test_lens_reading_names_each_sentence_step_by_its_subject(random_model):
    from attractor.latent.inspect import _proof_tokens

    _, tok = random_model

    def tid(word: str) -> int:
        return tok(" " + word, add_special_tokens=False)["input_ids"][0]

    named = _proof_tokens(tok, _problem("Stella is not floral.", "False"), "backward-sentences")
    assert [s for s, _ in named] == [
        "Dumpuses are not floral.", "Numpuses are dumpuses.", ".", "Every lorpus is floral.",
        "Each rompus is a lorpus.", "Gorpuses are rompuses.", "Stella is a gorpus."]
    # a sentence is named by its subject in any form, "." by itself, the person by the name
    assert set(named[0][1]) == {tid("dumpus"), tid("dumpuses"), tid("Dumpuses")}
    assert named[2][1] == [tid(".")] and named[-1][1] == [tid("Stella")]
    # the one-name proof keeps one token per step, the predicate first
    compact = _proof_tokens(tok, _problem("Stella is not floral.", "False"))
    assert compact[0] == ("not floral", [tid("not")]) and compact[1] == ("dumpus", [tid("dumpus")])
