"""The tiny model's tokenizer: a byte-level BPE trained on the project's synthetic tasks.

Byte-level, so any text (an AIME problem too) encodes and decodes exactly; trained on the
synthetic corpus with enough merges that every word of the ProsQA / ProntoQA / arithmetic
domains is one token, which keeps sequences short enough to train on a CPU.
"""
from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from attractor.tasks import prontoqa, prosqa

EOS = "<|endoftext|>"
VOCAB_SIZE = 1024


def domain_words() -> list[str]:
    """Every word of the synthetic domains, in the forms the generators write them."""
    words = set(prosqa.PEOPLE) | set(prosqa.CONCEPTS) | set(prontoqa.PEOPLE)
    for c in prontoqa.CONCEPTS:
        words |= {c, prontoqa.plural(c), prontoqa.plural(c).capitalize()}
    for fam in prontoqa.ADJECTIVES:
        words |= set(fam)
    words |= {"Every", "Each", "is", "a", "an", "are", "not", "Is", "or", "True", "False", "true",
              "false", "Start", "with", "Add", "Subtract", "Multiply", "by", "What", "the",
              "result", "The", "answer"}
    return sorted(words)


def training_corpus() -> list[str]:
    """Texts the BPE merges are learned from: every domain word, many times, in the contexts the
    generators write them (after a space, capitalised at a sentence start), plus the digits and
    punctuation. It depends on the word lists alone, not on generator details, so the
    tokenizer stays the same when a generator changes."""
    words = domain_words()
    line = " ".join(words) + " " + " ".join(w.capitalize() for w in words)
    starts = [w for w in words for _ in range(20)]  # the first word of a text has no space
    return [line + " 0 1 2 3 4 5 6 7 8 9 + - * = . ? : ### ###"] * 200 + starts


def build_tokenizer() -> PreTrainedTokenizerFast:
    """Train the byte-level BPE deterministically and wrap it as a ``PreTrainedTokenizerFast``."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=[EOS], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(training_corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=EOS,
                                   bos_token=EOS, unk_token=None, clean_up_tokenization_spaces=False)
