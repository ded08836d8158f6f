"""A Llama-shaped model with random weights and the tiny fixture tokenizer, saved as a folder: the base model of
`benchmarks/gpu_check.sh run`'s pipeline step (no hub needed, nothing to carry).

The tokenizer is `tokclean.fixtures.tiny_tokenizer()` (byte-level BPE, 435 tokens, EOS `<|im_end|>`), so the vocabulary
is tiny and real English text costs about one token per 1.3 characters; the body has the proportions of a small Llama
(head dim 64, 4 query heads per key-value head, MLP 2.75 x hidden).

    python benchmarks/gpu_check_model.py /tmp/gpucheck-model              # 136 M parameters (GPU)
    python benchmarks/gpu_check_model.py /tmp/gpucheck-model --size cpu   # 0.85 M parameters, for a CPU dry run
"""
import argparse, json

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from tokclean.fixtures import tiny_tokenizer
from tokclean.models import save_model

SIZES = {  # LlamaConfig fields
    "gpu": dict(hidden_size=1024, intermediate_size=2816, num_hidden_layers=12, num_attention_heads=16, num_key_value_heads=4),
    "cpu": dict(hidden_size=128, intermediate_size=352, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2),
}


def build(size: str = "gpu", seed: int = 0):
    "`(model, tokenizer)`: a random fp32 `LlamaForCausalLM` of `SIZES[size]` over the tiny tokenizer's vocabulary."
    tok = tiny_tokenizer()
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), max_position_embeddings=2048, tie_word_embeddings=False,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, **SIZES[size])
    return LlamaForCausalLM(cfg).eval(), tok


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="folder to write (replaced if it exists)")
    ap.add_argument("--size", choices=SIZES, default="gpu")
    args = ap.parse_args()
    model, tok = build(args.size)
    path = save_model(model, tok, args.out)
    n = sum(p.numel() for p in model.parameters())
    print(json.dumps({"model": str(path), "size": args.size, "params": n, "vocab": len(tok), "eos": tok.eos_token, **SIZES[args.size]}))


if __name__ == "__main__":
    main()
