"""``attractor import FILE --out RUN``: rollouts made elsewhere (vLLM, another harness) into a run.

Two layouts: one row per sample (``--response-field``; sample ids in order of appearance per
question) or one row per question with a list of responses (``--responses-field``; sample ids in
list order). An optional ``--correct-field`` (a label, or a list of labels) is kept as
``label_correct`` beside our own grading, never instead of it; ``attractor analyze`` grades.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import attractor
from attractor.errors import ConfigError, DataError, UserError
from attractor.pipeline.results import ImportResult, LabelCheck
from attractor.store.environment import command_line, environment, now
from attractor.store.manifest import Manifest
from attractor.store.run_store import RunStore
from attractor.grading.grade import check_grader
from attractor.tasks.loaders import detect_kind, read_records, sha256_file
from attractor.tasks.problem import Problem

IMPORT_SHARD_ROWS = 20000


def _as_bool(value: Any, where: str, field: str) -> bool | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    raise DataError(f"{where}: field '{field}' must be a boolean label, got {value!r}")


FINISH_REASONS = ("stop", "length")


def _finish(value: Any, where: str, field: str | None) -> str | None:
    """A finish reason: 'stop' (the model ended it) or 'length' (the budget did), or null."""
    if value is None:
        return None
    if value not in FINISH_REASONS:
        raise DataError(f"{where}: field '{field}' must be 'stop' or 'length' (or null), "
                        f"got {value!r}")
    return value


def run_import(file: str, out: str, *, response_field: str | None = None,
               responses_field: str | None = None, id_field: str | None = "id",
               question_field: str = "question", answer_field: str = "answer",
               correct_field: str | None = None, finish_reason_field: str | None = None,
               kind: str = "auto", grader: str = "auto") -> ImportResult:
    """Import ``file`` into run directory ``out``; returns counts. Validates every row before
    writing anything."""
    if (response_field is None) == (responses_field is None):
        raise ConfigError("give exactly one of --response-field (a row per sample) or "
                          "--responses-field (a row per question with a list)")
    if kind not in ("auto", "math", "prosqa", "prontoqa", "arith"):
        raise ConfigError(f"--kind: expected auto, math, prosqa, prontoqa or arith, got '{kind}'")
    check_grader(grader)
    store = RunStore(out)
    store.check_writable()
    if store.exists() and "import" not in store.manifest.stages:
        raise UserError(f"--out {out}: holds a run made by `attractor "
                        f"{next(iter(store.manifest.stages), 'sample')}`, not an import; "
                        "import into a new --out")
    path = Path(file)
    rows = read_records(path)
    if not rows:
        raise DataError(f"{path}: no rows")
    task_kind = kind if kind != "auto" else detect_kind(rows[0][1], question_field, answer_field)
    problems: dict[str, Problem] = {}
    samples: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for i, (line, row) in enumerate(rows):
        where = f"{path}:{line}"
        for f in (question_field, answer_field, response_field or responses_field):
            if f not in row:
                raise DataError(f"{where}: missing field '{f}' (fields: {', '.join(sorted(row))})")
        if id_field and id_field not in row:
            raise DataError(f"{where}: missing field '{id_field}' (use --id-field, or "
                            "--id-field '' to number questions by first appearance)")
        qid = str(row[id_field]) if id_field else None
        question = row[question_field]
        if qid is None:
            qid = next((k for k, p in problems.items() if p.question == question), None) \
                or str(len(problems))
        gold = row[answer_field] if isinstance(row[answer_field], str) else str(row[answer_field])
        if qid in problems and (problems[qid].gold != gold or problems[qid].question != question):
            raise DataError(f"{where}: question '{qid}' appears with another question or answer")
        problems.setdefault(qid, Problem(id=qid, question=question, gold=gold, kind=task_kind))
        if responses_field:
            responses = row[responses_field]
            if not isinstance(responses, list) or not all(isinstance(r, str) for r in responses):
                raise DataError(f"{where}: field '{responses_field}' must be a list of strings")
            labels = row.get(correct_field) if correct_field else None
            if correct_field and correct_field not in row:
                raise DataError(f"{where}: missing field '{correct_field}'")
            if isinstance(labels, list):
                if len(labels) != len(responses):
                    raise DataError(f"{where}: '{correct_field}' has {len(labels)} labels for "
                                    f"{len(responses)} responses")
            else:
                labels = [labels] * len(responses)
            finish = row.get(finish_reason_field) if finish_reason_field else None
            finish = finish if isinstance(finish, list) else [finish] * len(responses)
            finish = [_finish(f, where, finish_reason_field) for f in finish]
            for text, lab, fin in zip(responses, labels, finish):
                samples[qid].append({"text": text, "label_correct": _as_bool(lab, where,
                                                                             correct_field or ""),
                                     "finish_reason": fin})
        else:
            text = row[response_field]
            if not isinstance(text, str):
                raise DataError(f"{where}: field '{response_field}' must be a string")
            if correct_field and correct_field not in row:
                raise DataError(f"{where}: missing field '{correct_field}'")
            samples[qid].append({
                "text": text,
                "label_correct": _as_bool(row.get(correct_field), where, correct_field or "")
                if correct_field else None,
                "finish_reason": _finish(row.get(finish_reason_field), where, finish_reason_field)
                if finish_reason_field else None})
    if not any(samples.values()):
        raise UserError(f"{path}: no rollouts read (check --response-field / --responses-field)")
    identity = {"import.file_sha256": sha256_file(path), "import.response_field": response_field,
                "import.responses_field": responses_field, "import.id_field": id_field,
                "import.question_field": question_field, "import.answer_field": answer_field,
                "import.correct_field": correct_field, "import.kind": task_kind,
                "grader": grader}
    if store.path.exists() and not store.exists() and any(store.path.iterdir()):
        raise UserError(f"{store.path}: exists and is not a run directory (no manifest.json)")
    store.check_compatible(identity)
    if store.exists() and store.manifest.stage_done("import"):
        return ImportResult("complete", len(problems), sum(len(v) for v in samples.values()),
                            task_kind, kind == "auto")
    out_rows = []
    for qid, items in samples.items():
        for sid, item in enumerate(items):
            fin = item["finish_reason"]
            out_rows.append({"question_id": qid, "sample_id": sid, "seed": None,
                             "text": item["text"], "finish_reason": str(fin) if fin else None,
                             "engine": "import", "label_correct": item["label_correct"]})
    store.path.mkdir(parents=True, exist_ok=True)
    store.write_questions(list(problems.values()))
    store.write_manifest(Manifest(
        attractor_version=attractor.__version__, command=command_line(), created=now(),
        identity=identity, config={"grader": grader, "engine": "import"},
        task={"spec": str(path), "kind": task_kind, "path": str(path.resolve()),
              "sha256": identity["import.file_sha256"], "n_problems": len(problems)},
        model=None, **environment()))
    for k in range(0, len(out_rows), IMPORT_SHARD_ROWS):
        store.write_rollouts(store.shard_path(k // IMPORT_SHARD_ROWS),
                             out_rows[k:k + IMPORT_SHARD_ROWS])
    store.update_stage("import", status="done", finished=now(), n_rollouts=len(out_rows))
    return ImportResult("done", len(problems), len(out_rows), task_kind, kind == "auto",
                        label_check(problems, samples, task_kind, grader) if correct_field
                        else None)


def label_check(problems: dict[str, Problem], samples: dict[str, list[dict[str, Any]]],
                kind: str, grader: str) -> LabelCheck:
    """Grade the imported texts (without storing the grades: ``analyze`` does) and compare with
    the file's own correctness labels: how many disagree, and the first few (question, sample)."""
    from attractor.grading.grade import grade_question, grader_for
    from attractor.grading.math_equiv import MathVerifier

    n, bad = 0, []
    with MathVerifier(workers=2 if grader_for(kind, grader) == "math" else 0) as verifier:
        for qid, items in samples.items():
            grades = grade_question([it["text"] or "" for it in items], problems[qid].gold, kind,
                                    grader, verifier, flexible=False)
            for sid, (it, g) in enumerate(zip(items, grades)):
                if it["label_correct"] is None:
                    continue
                n += 1
                if bool(it["label_correct"]) != bool(g.correct):
                    bad.append(f"{qid}/{sid}")
    return LabelCheck(n, len(bad), bad[:5])
