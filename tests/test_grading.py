import pytest

from attractor.grading.extract import extract_answer, last_boxed, raw_answer
from attractor.grading.grade import grade_question
from attractor.grading.math_equiv import MathVerifier


@pytest.mark.parametrize("text,kind,expected", [
    ("so x = \\boxed{\\frac{1}{2}} and then \\boxed{3}", "math", "3"),
    ("nested \\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "math", "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ("work... #### 1,234", "math", "1,234"),
    ("The answer is $42$.", "math", "42"),
    ("Every a is b. Tom is a b. ### Tom is a lempus.", "prosqa", "Tom is a lempus."),
    ("... ### True", "prontoqa", "True"),
    ("reasoning ### false.", "prontoqa", "False"),
    ("3 + 4 = 7. ### 7", "arith", "7"),
])
def test_extraction(text, kind, expected):
    assert extract_answer(text, kind) == expected


def test_no_answer_means_none_and_no_last_number_fallback():
    assert extract_answer("we get 5 and then 7 so", "math") is None
    assert extract_answer("unclosed \\boxed{12", "math") is None
    # a ProsQA chain that was cut before its answer marker has no answer, even though it
    # contains answer-like sentences
    assert extract_answer("Every brimpus is a lempus. Tom is a terpus.", "prosqa") is None
    assert raw_answer("nothing here") == (None, None)


def test_gold_fields_may_be_bare_or_worked():
    assert extract_answer("Janet sells 9 eggs.\n#### 18", "math", gold=True) == "18"
    assert extract_answer("70", "math", gold=True) == "70"
    assert extract_answer("Tom is a lempus.", "prosqa", gold=True) == "Tom is a lempus."
    assert last_boxed("a \\boxed{x^{2}} b") == "x^{2}"


def test_math_answers_written_differently_share_a_class():
    texts = ["\\boxed{\\frac{1}{2}}", "The answer is 0.5", "#### 1/2", "\\boxed{3}",
             "no answer"]
    with MathVerifier(workers=2) as v:
        grades = grade_question(texts, "\\frac12", "math", "auto", v)
    assert [g.correct for g in grades] == [True, True, True, False, False]
    assert grades[0].answer_class == grades[1].answer_class == grades[2].answer_class
    assert grades[3].answer_class == "3" and grades[4].answer_class is None


def test_exact_grader_for_synthetic_and_override():
    grades = grade_question([" ### Tom is a lempus.", " ### tom is a lempus", " ### Tom is a x."],
                            "Tom is a lempus.", "prosqa", "auto")
    assert [g.correct for g in grades] == [True, False, False]  # names are case-sensitive
    # --grader exact on a math task compares normalised strings, no math-verify
    grades = grade_question(["\\boxed{0.5}", "\\boxed{1/2}"], "0.5", "math", "exact")
    assert [g.correct for g in grades] == [True, False]


def test_verifier_pool_matches_in_process_results():
    pairs = [("2", "2.0"), ("\\frac{1}{3}", "0.333"), ("x^2", "x*x"), ("10", "11")]
    with MathVerifier(workers=2, timeout=5) as v:
        pooled = v.equal_many(pairs)
    assert pooled == MathVerifier(workers=0).equal_many(pairs)
    assert pooled[0] and pooled[2] and not pooled[3]


def test_math_verify_failures_are_counted_not_silent(tmp_path):
    """math-verify raises in a non-main thread (its timeouts use signal.alarm): such a failure
    used to grade the answer wrong silently; it is counted and named in the summary."""
    import json
    import threading

    from attractor.pipeline.analyze import run_analyze
    from helpers import attractor

    def in_thread(fn):
        out = []
        t = threading.Thread(target=lambda: out.append(fn()))
        t.start()
        t.join()
        return out[0]

    v = MathVerifier(workers=0)
    assert in_thread(lambda: v.equal_many([("1/2", "0.5")])) == [False]
    assert v.errors == 1 and "ValueError" in v.first_error and "'1/2' vs '0.5'" in v.first_error
    assert MathVerifier(workers=0).equal_many([("1/2", "0.5")]) == [True]   # main thread

    src = tmp_path / "imp.jsonl"
    src.write_text(json.dumps({"id": "q", "question": "Half?", "answer": "0.5",
                               "responses": ["#### 1/2", "#### 0.5", "#### 3"]}) + "\n")
    run = tmp_path / "run"
    attractor("import", str(src), "--out", str(run), "--responses-field", "responses",
              "--kind", "math")
    summary = in_thread(lambda: run_analyze(str(run)))
    assert summary["grading_failures"] > 0
    note = [n for n in summary["notes"] if n.startswith("grading: math-verify raised on")]
    assert note and "first:" in note[0], summary["notes"]
    # graded in the main thread there is nothing to report
    clean = tmp_path / "clean"
    attractor("import", str(src), "--out", str(clean), "--responses-field", "responses",
              "--kind", "math")
    s2 = run_analyze(str(clean))
    assert s2["grading_failures"] == 0
    assert not any(n.startswith("grading:") for n in s2["notes"])


def _lm_eval_flexible_extract(text):
    """lm-evaluation-harness gsm8k ``flexible-extract`` written out: regex
    ``(-?[$0-9.,]{2,})|(-?[0-9]+)``, group_select -1, take_first; then exact_match's
    regexes_to_ignore ``,``, ``\\$``, ``(?s).*#### ``, ``\\.$`` (ignore_case)."""
    import re

    found = re.findall(r"(-?[$0-9.,]{2,})|(-?[0-9]+)", text)
    if not found:
        return None
    m = found[-1]
    m = m[0] if m[0] else m[1]
    for rx in (",", "\\$", "(?s).*#### ", "\\.$"):
        m = re.sub(rx, "", m)
    return m


@pytest.mark.parametrize("text", [
    "The final result is 16.", "9 + 7 = 16.", "It costs $1,200.50 in total", "#### 13\nThe answer is: 13",
    "first 3 then -4", "x = 0.5.", "no digits here", "7", "Step 1: 12 apples. Step 2: 4 more, so 16 apples.",
])
def test_flexible_reading_is_lm_eval_flexible_extract(text):
    from attractor.grading.extract import flexible_span

    assert flexible_span(text, "math") == _lm_eval_flexible_extract(text)


def test_flexible_reading_of_options_and_both_readings_graded():
    from attractor.grading.extract import flexible_answer

    q = "Every a is b. Is Tom a wumpus or a rorpus?"
    assert flexible_answer("Tom is a wumpus, no, a rorpus", "prosqa", q) == "Tom is a rorpus."
    assert flexible_answer("nothing", "prosqa", q) is None
    # the ProsQA file's own form has no second article
    real = "Tom is a dumpus. Every rempus is a rorpus. Is Tom a lempus or scrompus?"
    assert flexible_answer("so scrompus, or lempus. Tom is a rorpus.", "prosqa", real) == \
        "Tom is a lempus."
    assert flexible_answer("It is true... or False", "prontoqa") == "False"
    # strict needs the requested marker; flexible reads the last number
    g = grade_question(["9 + 7 = 16.", "so #### 16", "The answer is 15."], "16", "math",
                       "auto", MathVerifier(workers=0))
    assert [x.answer for x in g] == [None, "16", "15"]
    assert [x.correct for x in g] == [False, True, False]
    assert [x.answer_flexible for x in g] == ["16", "16", "15"]
    assert [x.correct_flexible for x in g] == [True, True, False]
    assert g[0].answer_class_flexible == g[1].answer_class_flexible != g[2].answer_class_flexible


def test_a_run_graded_in_both_readings_and_an_old_run_read_strict(tmp_path):
    import json
    import shutil
    from pathlib import Path

    from attractor.errors import UserError
    from attractor.pipeline.analyze import run_analyze
    from helpers import attractor

    src = tmp_path / "imp.jsonl"
    src.write_text(json.dumps({"id": "q", "question": "Add 9 and 7.", "answer": "16",
                               "responses": ["9 + 7 = 16.", "#### 16", "It is 15"]}) + "\n")
    run = tmp_path / "run"
    attractor("import", str(src), "--out", str(run), "--responses-field", "responses",
              "--kind", "math")
    strict = run_analyze(str(run))
    assert strict["readings"]["used"] == "strict"
    assert strict["readings"]["strict"]["accuracy"] == pytest.approx(1 / 3)
    assert strict["readings"]["flexible"]["accuracy"] == pytest.approx(2 / 3)
    assert strict["means"]["accuracy"]["mean"] == pytest.approx(1 / 3)
    flex = run_analyze(str(run), reading="flexible")
    assert flex["means"]["accuracy"]["mean"] == pytest.approx(2 / 3)
    # a run written before the flexible reading: its shards lack the columns; it reads strict
    old = tmp_path / "v1"
    shutil.copytree(Path(__file__).parent / "data" / "run_v1", old)
    assert run_analyze(str(old))["readings"]["flexible"] is None
    with pytest.raises(UserError, match="before the flexible reading"):
        run_analyze(str(old), reading="flexible")


def test_the_decisive_token_follows_the_runs_reading():
    """Strict: the answer after the requested marker; flexible: the last number, True/False or
    ProsQA option named (where a flexible-read run's answer was decided)."""
    from attractor.capture.decisive import decisive_char

    text = "### 12 was a guess; 7 + 5 = 13"
    assert decisive_char(text, "arith") == text.index("12")
    assert decisive_char(text, "arith", "flexible") == text.rindex("13")
    pq = "Tom is a dumpus. Is Tom a lempus or scrompus?"
    t2 = "### Tom is a scrompus. Wait: lempus, and the dumpus"
    assert decisive_char(t2, "prosqa") == t2.index("scrompus")
    assert decisive_char(t2, "prosqa", "flexible", pq) == t2.index("lempus")
    t3 = "It is True. No, False"
    assert decisive_char(t3, "prontoqa", "flexible") == t3.rindex("False")
    assert decisive_char("nothing here", "arith", "flexible") is None
