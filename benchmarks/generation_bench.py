"""Generated tokens per second: ``HFBackend`` (one batch, KV cache, finished rows dropped,
log-probs and entropies recorded) vs naive per-sample ``model.generate`` on the same prompts.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/generation_bench.py [--prompts 64]
        [--prompt-len 128] [--new-tokens 32] [--threads 2]

Model: a randomly initialised Qwen2 (hidden 128, 4 layers, 4/2 heads, ffn 512, vocab 2000) and a
local WordLevel tokenizer over the same 2000 ids. Both sides sample at temperature 1 with the same
max new tokens; each side's token count is what it actually generated. Prints the ratio.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from empg.agent.generation import GenerationConfig, HFBackend

VOCAB = 2000


def build(seed: int = 0):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    vocab = {"<pad>": 0, "<eos>": 1} | {f"w{i}": i for i in range(2, VOCAB)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", padding_side="left"
    )
    cfg = Qwen2Config(
        vocab_size=VOCAB,
        hidden_size=128,
        intermediate_size=512,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    return Qwen2ForCausalLM(cfg).eval(), tokenizer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, tokenizer = build()
    gen = torch.Generator().manual_seed(0)
    # prompt lengths vary a little around --prompt-len so left padding is exercised
    prompts = [
        torch.randint(2, VOCAB, (args.prompt_len - (i % 8),), generator=gen).tolist()
        for i in range(args.prompts)
    ]
    cfg = GenerationConfig(max_new_tokens=args.new_tokens, temperature=1.0, seed=0)
    backend = HFBackend(model, tokenizer)
    backend.generate(prompts[:2], cfg)  # warm-up

    t0 = time.perf_counter()
    outs = backend.generate(prompts, cfg)
    t_batch = time.perf_counter() - t0
    n_batch = sum(len(o) for o in outs)

    t0 = time.perf_counter()
    n_naive = 0
    torch.manual_seed(0)
    with torch.inference_mode():
        for p in prompts:
            ids = torch.tensor([p])
            out = model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                do_sample=True,
                temperature=1.0,
                top_p=1.0,
                top_k=0,
                max_new_tokens=args.new_tokens,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
            n_naive += out.shape[1] - ids.shape[1]
    t_naive = time.perf_counter() - t0

    rate_b, rate_n = n_batch / t_batch, n_naive / t_naive
    print(
        f"prompts {args.prompts} x ~{args.prompt_len} tokens, {args.new_tokens} new, "
        f"threads {args.threads}"
    )
    print(f"HFBackend        : {n_batch} tokens in {t_batch:.2f} s = {rate_b:.0f} tokens/s")
    print(f"naive generate   : {n_naive} tokens in {t_naive:.2f} s = {rate_n:.0f} tokens/s")
    print(f"speed-up         : {rate_b / rate_n:.1f}x")


if __name__ == "__main__":
    main()
