"""Prompt templates: the text a model sees for a problem.

Without a chat template (base models, the tiny model) the prompt is the question and a newline,
the format the tiny model was trained on. With one, the question goes into a user turn with an
instruction that asks for the answer in the form the extractor reads.

A run may name its own template (``--prompt``): ``{question}`` is replaced by the question and
``{instruction}`` by the task's answer-format line. With a chat template the filled template is
the user turn; without one it is the prompt, followed by a newline as the default ``{question}``
is. Placeholders are replaced literally (not ``str.format``), so LaTeX braces are safe.
"""
from __future__ import annotations

from pathlib import Path

from attractor.errors import ConfigError
from attractor.tasks.problem import Problem

DEFAULT_CHAT = "{question}\n\n{instruction}"
DEFAULT_PLAIN = "{question}"

INSTRUCTIONS = {
    "math": "Please reason step by step, and put your final answer within \\boxed{}.",
    "prosqa": "Reason step by step, then give the answer on a last line as "
              "'### <Name> is a <concept>.'",
    "prontoqa": "Reason step by step, then give the answer on a last line as "
                "'### True' or '### False'.",
    "arith": "Compute step by step, then give the result on a last line as '### <number>'.",
}


def uses_chat(tokenizer, chat_template: bool) -> bool:
    """Whether prompts are rendered with the tokenizer's chat template."""
    return bool(chat_template and getattr(tokenizer, "chat_template", None))


def resolve_template(spec: str, option: str = "--prompt") -> str:
    """A template given inline or as the path of a file holding it, checked."""
    text = spec
    if "{question}" not in spec and Path(spec).is_file():
        try:
            text = Path(spec).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"{option} {spec}: cannot read the template ({err})") from None
    check_template(text, option)
    return text


def check_template(text: str, option: str = "--prompt") -> None:
    """Refuse a template without ``{question}``."""
    if "{question}" not in text:
        raise ConfigError(f"{option} {text[:60]!r}: the template has no {{question}} placeholder")


def fill(template: str, problem: Problem) -> str:
    """The template with its placeholders replaced."""
    instruction = INSTRUCTIONS.get(problem.kind, INSTRUCTIONS["math"])
    return template.replace("{instruction}", instruction).replace("{question}", problem.question)


def prompt_text(problem: Problem, tokenizer, chat_template: bool = True,
                template: str | None = None) -> str:
    """The prompt string for ``problem`` (``template``: the run's ``--prompt``)."""
    if uses_chat(tokenizer, chat_template):
        content = fill(template or DEFAULT_CHAT, problem)
        return tokenizer.apply_chat_template([{"role": "user", "content": content}],
                                             tokenize=False, add_generation_prompt=True)
    return fill(template or DEFAULT_PLAIN, problem) + "\n"


def prompt_ids(problem: Problem, tokenizer, chat_template: bool = True,
               template: str | None = None) -> list[int]:
    """Token ids of the prompt (the chat template brings its own special tokens)."""
    text = prompt_text(problem, tokenizer, chat_template, template)
    return tokenizer(text, add_special_tokens=not uses_chat(tokenizer, chat_template))["input_ids"]
