import copy

from attractor.tasks.problem import Problem
from attractor.tasks.prompts import prompt_ids, prompt_text

CHAT = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def test_plain_prompt_without_chat_template(random_model):
    _, tok = random_model
    p = Problem(id="1", question="Is Tom a a or b?", gold="Tom is a a.", kind="prosqa")
    assert prompt_text(p, tok) == "Is Tom a a or b?\n"
    assert tok.decode(prompt_ids(p, tok)) == "Is Tom a a or b?\n"


def test_chat_template_is_applied_when_present_and_can_be_turned_off(random_model):
    _, tok = random_model
    chat_tok = copy.deepcopy(tok)
    chat_tok.chat_template = CHAT
    p = Problem(id="1", question="What is 1+1?", gold="2", kind="math")
    text = prompt_text(p, chat_tok)
    assert text.startswith("<|im_start|>user\nWhat is 1+1?") and "\\boxed{}" in text
    assert text.endswith("<|im_start|>assistant\n")
    assert prompt_text(p, chat_tok, chat_template=False) == "What is 1+1?\n"
