"""The tiny model's tokenizer: a byte-level BPE trained on the project's synthetic tasks.

Byte-level, so any text (an AIME problem too) encodes and decodes exactly; trained on the
synthetic corpus with enough merges that every word of the ProsQA / ProntoQA / arithmetic
domains is one token, which keeps sequences short enough to train on a CPU.
"""
from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from attractor.tasks import arith, prontoqa, prosqa

EOS = "<|endoftext|>"
VOCAB_SIZE = 768


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


def training_corpus(seed: int = 0, n_per_task: int = 400) -> list[str]:
    """Texts the BPE merges are learned from: generated problems of every synthetic task, plus
    each domain word many times so that all of them become single tokens."""
    texts = []
    for p in (prosqa.generate_prosqa(n_per_task, seed=seed)
              + prontoqa.generate_prontoqa(n_per_task, seed=seed)
              + arith.generate_arith(n_per_task, seed=seed)):
        texts.append(p.question + "\n" + " ".join(p.steps) + " ### " + p.gold)
    line = " ".join(domain_words())
    texts += [line] * 200
    return texts


def build_tokenizer(seed: int = 0) -> PreTrainedTokenizerFast:
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
    tok.train_from_iterator(training_corpus(seed), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=EOS,
                                   bos_token=EOS, unk_token=None, clean_up_tokenization_spaces=False)
