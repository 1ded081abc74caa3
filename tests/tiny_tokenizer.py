"""A byte-level BPE tokenizer trained in-process on a few texts, for tests (no hub)."""

from __future__ import annotations

from collections.abc import Iterable

PAD, EOS = "<|pad|>", "<|endoftext|>"


def train_bpe(texts: Iterable[str], vocab_size: int):
    """``PreTrainedTokenizerFast`` (left padding, pad/eos set) trained on ``texts``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=PAD, eos_token=EOS, padding_side="left"
    )
