"""Prompt templates: the text a model sees for a problem.

Without a chat template (base models, the tiny model) the prompt is the question and a newline,
the format the tiny model was trained on. With one, the question goes into a user turn with an
instruction that asks for the answer in the form the extractor reads.
"""
from __future__ import annotations

from attractor.tasks.problem import Problem

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


def prompt_text(problem: Problem, tokenizer, chat_template: bool = True) -> str:
    """The prompt string for ``problem``."""
    if uses_chat(tokenizer, chat_template):
        content = f"{problem.question}\n\n{INSTRUCTIONS.get(problem.kind, INSTRUCTIONS['math'])}"
        return tokenizer.apply_chat_template([{"role": "user", "content": content}],
                                             tokenize=False, add_generation_prompt=True)
    return problem.question + "\n"


def prompt_ids(problem: Problem, tokenizer, chat_template: bool = True) -> list[int]:
    """Token ids of the prompt (the chat template brings its own special tokens)."""
    text = prompt_text(problem, tokenizer, chat_template)
    return tokenizer(text, add_special_tokens=not uses_chat(tokenizer, chat_template))["input_ids"]
