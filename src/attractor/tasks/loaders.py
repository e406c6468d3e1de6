"""Loading tasks: presets for the benchmark files, any JSONL / JSON / Parquet file, Hugging Face
``datasets`` ids, and the synthetic generators -- all into a list of :class:`Problem`.

Task specs:
    ``aime25`` | ``aime24`` | ``math500`` | ``gsm8k`` | ``prosqa`` | ``prontoqa``  presets, looked up in
        ``--data-dir``, else ``$ATTRACTOR_DATA_DIR``, else ``../shared/data`` if it exists;
    ``PATH`` (``.jsonl``, ``.json``, ``.parquet``) with optional field names; ProsQA and ProntoQA files
        are recognised by their fields;
    ``hf:NAME[:CONFIG]:SPLIT`` a Hugging Face dataset (needs network and ``pip install datasets``);
    ``synthetic:prosqa|prontoqa|arith[:key=value,...]`` e.g. ``synthetic:prosqa:n=100,hops=4-6,seed=1``.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from attractor.errors import ConfigError, DataError
from attractor.tasks.problem import Problem

PRESETS: dict[str, dict[str, Any]] = {
    "aime25": {"file": "aime25.jsonl", "id": "id", "question": "problem", "answer": "answer",
               "kind": "math"},
    "aime24": {"file": "aime24.jsonl", "id": "id", "question": "problem", "answer": "answer",
               "kind": "math"},
    "math500": {"file": "math500.jsonl", "id": "unique_id", "question": "problem",
                "answer": "answer", "kind": "math"},
    "gsm8k": {"file": "gsm8k_test.jsonl", "id": None, "question": "question", "answer": "answer",
              "kind": "math"},
    "prosqa": {"file": "prosqa_valid.json", "id": None, "question": "question",
               "answer": "answer", "steps": "steps", "kind": "prosqa"},
    "prontoqa": {"file": "prontoqa_test.jsonl", "id": "id", "question": "question",
                 "answer": "answer", "steps": "steps", "kind": "prontoqa"},
}
SYNTHETIC = ("prosqa", "prontoqa", "arith")


@dataclass
class TaskSource:
    """Where a task came from, for the manifest (path and sha256 of a file, or generator args)."""

    spec: str
    kind: str
    path: str | None = None
    sha256: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    n_problems: int = 0


def default_data_dir() -> Path | None:
    """``$ATTRACTOR_DATA_DIR``, else ``../shared/data`` (relative to the working directory or to
    this checkout) when it exists, else None."""
    env = os.environ.get("ATTRACTOR_DATA_DIR")
    if env:
        return Path(env)
    for base in (Path.cwd(), Path(__file__).resolve().parents[3]):
        cand = base.parent / "shared" / "data"
        if cand.is_dir():
            return cand
    return None


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_utf8(path: Path) -> str:
    """The text of a UTF-8 file; :class:`DataError` naming the file, line and byte otherwise."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not UTF-8 text (byte 0x{data[err.start]:02x} at offset "
                        f"{err.start}); expected a UTF-8 JSON or JSONL file") from None


def read_records(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """Rows of a JSONL, JSON (a list of objects) or Parquet file as ``(line_or_row, dict)``.

    Raises :class:`DataError` naming file and line for malformed JSON or a non-object row.
    """
    if not path.exists():
        raise DataError(f"{path}: file not found")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as err:
            raise DataError(f"{path}: not a readable Parquet file ({err})") from None
        return [(i + 1, row) for i, row in enumerate(table.to_pylist())]
    if suffix not in (".json", ".jsonl", ".ndjson"):
        raise DataError(f"{path}: unsupported file type '{suffix}' (expected .jsonl, .json, .parquet)")
    text = read_utf8(path)
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{err.lineno}: malformed JSON ({err.msg})") from None
        if isinstance(data, dict):
            data = next((v for v in data.values() if isinstance(v, list)), None)
        if not isinstance(data, list):
            raise DataError(f"{path}: expected a JSON list of objects")
        rows = list(enumerate(data, start=1))
    elif suffix in (".jsonl", ".ndjson"):
        rows = []
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append((lineno, json.loads(line)))
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{lineno}: malformed JSON line ({err.msg})") from None
    else:
        raise DataError(f"{path}: unsupported file type '{suffix}' (expected .jsonl, .json, .parquet)")
    for where, row in rows:
        if not isinstance(row, dict):
            raise DataError(f"{path}:{where}: expected a JSON object, got {type(row).__name__}")
    return rows


def detect_format(row: dict[str, Any]) -> str | None:
    """``"prosqa"`` or ``"prontoqa"`` when a row has that format's fields, else None."""
    if {"question", "answer", "steps", "idx_to_symbol", "edges", "root"} <= row.keys():
        return "prosqa"
    if {"question", "answer", "steps"} <= row.keys() and str(row.get("answer")) in ("True", "False") \
            and "True or false:" in str(row.get("question", "")):
        return "prontoqa"
    return None


def detect_kind(row: dict[str, Any], question_field: str = "question",
                answer_field: str = "answer") -> str:
    """The task kind of an imported row: a ProsQA or ProntoQA file's own format, else from the
    question text (ProsQA's "Is X a Y or Z?" with the answer naming one option; ProntoQA's
    "True or false:" with a True/False answer), else ``math``."""
    import re

    fmt = detect_format(row)
    if fmt:
        return fmt
    question, answer = str(row.get(question_field, "")), str(row.get(answer_field, ""))
    if "True or false:" in question and answer.strip() in ("True", "False"):
        return "prontoqa"
    m = re.search(r"Is (\S+) an? (\w+) or (?:an? )?(\w+)\?", question)
    if m and any(o in answer for o in m.groups()[1:]):
        return "prosqa"
    return "math"


def _field(row: dict[str, Any], name: str, where: str) -> Any:
    if name not in row:
        raise DataError(f"{where}: missing field '{name}' (fields: {', '.join(sorted(row))})")
    return row[name]


def problems_from_records(rows: Iterable[tuple[int, dict[str, Any]]], where: str, *, kind: str,
                          id_field: str | None, question_field: str, answer_field: str,
                          steps_field: str | None = None) -> list[Problem]:
    """Map rows to problems with the given field names (``id_field=None``: the row index)."""
    problems = []
    seen: set[str] = set()
    for idx, (line, row) in enumerate(rows):
        loc = f"{where}:{line}"
        pid = str(_field(row, id_field, loc)) if id_field else str(idx)
        if pid in seen:
            raise DataError(f"{loc}: duplicate id '{pid}' in field '{id_field}'")
        seen.add(pid)
        question = _field(row, question_field, loc)
        answer = _field(row, answer_field, loc)
        if not isinstance(question, str) or not question.strip():
            raise DataError(f"{loc}: field '{question_field}' must be a non-empty string")
        steps = []
        if steps_field:
            steps = _field(row, steps_field, loc)
            if not isinstance(steps, list) or not all(isinstance(s, str) for s in steps):
                raise DataError(f"{loc}: field '{steps_field}' must be a list of strings")
        skip = {id_field, question_field, answer_field, steps_field}
        meta = {k: v for k, v in row.items() if k not in skip}
        if kind == "prosqa" and "steps" in row:
            meta["hops"] = len(row["steps"])
        gold = answer if isinstance(answer, str) else json.dumps(answer)
        problems.append(Problem(id=pid, question=question, gold=gold, steps=list(steps),
                                kind=kind, meta=meta))
    return problems


TEXT_OPTIONS = {"style"}   # generator options whose value is a word, not an integer


def parse_synthetic(spec: str) -> tuple[str, dict[str, Any]]:
    """``synthetic:NAME[:k=v,...]`` -> (NAME, options); ranges ``a-b`` become (a, b)."""
    parts = spec.split(":", 2)
    name = parts[1] if len(parts) > 1 else ""
    if name not in SYNTHETIC:
        raise ConfigError(f"--task {spec}: unknown generator '{name}' (expected one of "
                          f"{', '.join('synthetic:' + s for s in SYNTHETIC)})")
    opts: dict[str, Any] = {}
    if len(parts) == 3 and parts[2]:
        for item in parts[2].split(","):
            key, sep, val = item.partition("=")
            if not sep:
                raise ConfigError(f"--task {spec}: option '{item}' is not key=value")
            if key.strip() in TEXT_OPTIONS:
                opts[key.strip()] = val.strip()
                continue
            try:
                opts[key.strip()] = tuple(int(x) for x in val.split("-")) if "-" in val[1:] \
                    else int(val)
            except ValueError:
                raise ConfigError(f"--task {spec}: option '{key}' needs an integer or a-b range") \
                    from None
    return name, opts


def _check_synthetic_keys(name: str, opts: dict[str, Any]) -> None:
    """ConfigError naming an option the generator does not take (before it runs)."""
    import inspect

    from attractor.tasks.arith import generate_arith
    from attractor.tasks.prontoqa import generate_prontoqa
    from attractor.tasks.prosqa import generate_prosqa

    gen = {"prosqa": generate_prosqa, "prontoqa": generate_prontoqa, "arith": generate_arith}[name]
    internal = {"n", "seed", "min_hops", "max_hops", "min_nodes", "max_nodes", "steps"}
    aliases = {"prosqa": {"hops", "nodes"}, "prontoqa": set(), "arith": {"hops", "steps"}}[name]
    valid = ({p for p in inspect.signature(gen).parameters} - internal) | aliases | {"n", "seed"}
    unknown = sorted(set(opts) - valid)
    if unknown:
        raise ConfigError(f"synthetic:{name}: unknown option '{unknown[0]}' (expected one of "
                          f"{', '.join(sorted(valid))})")


def generate_synthetic(name: str, opts: dict[str, Any]) -> list[Problem]:
    """Run a synthetic generator with options from :func:`parse_synthetic`."""
    from attractor.tasks.arith import generate_arith
    from attractor.tasks.prontoqa import generate_prontoqa
    from attractor.tasks.prosqa import generate_prosqa

    opts = dict(opts)
    n = int(opts.pop("n", 100))
    seed = int(opts.pop("seed", 0))
    if n <= 0:
        raise ConfigError(f"synthetic:{name}: n must be positive, got {n}")
    _check_synthetic_keys(name, opts)
    try:
        if name == "prosqa":
            hops = opts.pop("hops", (3, 6))
            lo, hi = hops if isinstance(hops, tuple) else (hops, hops)
            nodes = opts.pop("nodes", (18, 28))
            nlo, nhi = nodes if isinstance(nodes, tuple) else (nodes, nodes)
            kw = dict(min_hops=lo, max_hops=hi, min_nodes=nlo, max_nodes=nhi)
            result = generate_prosqa(n, seed=seed, **kw, **opts)
        elif name == "prontoqa":
            result = generate_prontoqa(n, seed=seed, **opts)
        else:
            steps = opts.pop("hops", opts.pop("steps", 3))
            result = generate_arith(n, seed=seed, steps=int(steps), **opts)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"synthetic:{name}: {err}") from None
    return result


def load_task(spec: str, *, data_dir: str | Path | None = None, id_field: str | None = None,
              question_field: str | None = None, answer_field: str | None = None,
              steps_field: str | None = None, limit: int | None = None, offset: int = 0,
              ) -> tuple[list[Problem], TaskSource]:
    """Resolve a task spec (see module doc) to problems and a :class:`TaskSource`.

    Field options override a preset's or a recognised format's field names.
    """
    if limit is not None and limit <= 0:
        raise ConfigError(f"--limit must be positive, got {limit}")
    if spec.startswith("synthetic:"):
        name, opts = parse_synthetic(spec)
        problems = generate_synthetic(name, opts)
        src = TaskSource(spec=spec, kind=name, fields={"generator": name, **{
            k: list(v) if isinstance(v, tuple) else v for k, v in opts.items()}})
    elif spec.startswith("hf:"):
        problems, src = _load_hf(spec, id_field, question_field, answer_field, steps_field)
    else:
        preset = PRESETS.get(spec)
        if preset is not None:
            base = Path(data_dir) if data_dir else default_data_dir()
            if base is None:
                raise ConfigError(f"--task {spec}: no data directory; pass --data-dir or set "
                                  "ATTRACTOR_DATA_DIR")
            path = base / preset["file"]
            if not path.exists():
                raise DataError(f"--task {spec}: preset file {path} not found (check --data-dir)")
        else:
            path = Path(spec)
            if not path.exists() and path.suffix.lower() not in (".jsonl", ".json", ".parquet",
                                                                 ".ndjson"):
                raise ConfigError(f"--task {spec}: unknown preset (expected one of "
                                  f"{', '.join(PRESETS)}, synthetic:NAME, hf:NAME:SPLIT or a file)")
        rows = read_records(path)
        kind = preset["kind"] if preset else (detect_format(rows[0][1]) if rows else None) or "math"
        defaults = preset or {"id": "id" if rows and "id" in rows[0][1] else None,
                              "question": "question", "answer": "answer",
                              "steps": "steps" if kind in ("prosqa", "prontoqa") else None}
        fields = {"id": id_field if id_field is not None else defaults.get("id"),
                  "question": question_field or defaults["question"],
                  "answer": answer_field or defaults["answer"],
                  "steps": steps_field or defaults.get("steps")}
        problems = problems_from_records(rows, str(path), kind=kind, id_field=fields["id"],
                                         question_field=fields["question"],
                                         answer_field=fields["answer"],
                                         steps_field=fields["steps"])
        if kind == "prosqa":
            from attractor.tasks.prosqa import check_prosqa

            for (line, row) in rows:
                check_prosqa(row, f"{path}:{line}")
        src = TaskSource(spec=spec, kind=kind, path=str(path.resolve()), sha256=sha256_file(path),
                         fields=fields)
    if offset:
        if offset >= len(problems):
            raise ConfigError(f"--offset {offset}: the task has only {len(problems)} questions")
        problems = problems[offset:]
    if limit is not None:
        problems = problems[:limit]
    src.n_problems = len(problems)
    return problems, src


def _load_hf(spec: str, id_field, question_field, answer_field, steps_field):
    parts = spec[3:].split(":")
    if len(parts) not in (2, 3):
        raise ConfigError(f"--task {spec}: expected hf:NAME[:CONFIG]:SPLIT")
    try:
        import datasets
    except ImportError:
        raise ConfigError("--task hf:...: needs the 'datasets' package "
                          "(pip install 'attractor[datasets]')") from None
    name, config, split = (parts[0], None, parts[1]) if len(parts) == 2 else parts
    try:
        ds = datasets.load_dataset(name, config, split=split)
    except (OSError, ValueError) as err:   # offline (ConnectionError), unknown name or split
        first = (str(err).splitlines() or [""])[0][:120]
        raise ConfigError(f"--task {spec}: the dataset did not load ({type(err).__name__}: "
                          f"{first}); offline, pass a local JSONL, JSON or Parquet file") from err
    rows = list(enumerate(ds.to_list(), start=1))
    kind = (detect_format(rows[0][1]) if rows else None) or "math"
    fields = {"id": id_field, "question": question_field or "question",
              "answer": answer_field or "answer", "steps": steps_field}
    problems = problems_from_records(rows, spec, kind=kind, id_field=fields["id"],
                                     question_field=fields["question"],
                                     answer_field=fields["answer"], steps_field=fields["steps"])
    return problems, TaskSource(spec=spec, kind=kind, fields=fields)
