"""G1: scoring throughput and MFU on a GPU for a 3B-size model built from a config (random weights, no hub needed).

The model has the shape of Llama-3.2-3B (28 layers, hidden 3072, 24 query / 8 key-value heads, MLP 8192, vocabulary
128256), built by transformers from that config in bf16 on the GPU. Samples are synthetic token ids with seeded lengths
(uniform in [--min-len, --max-len]) whose last 60% of positions are the response, as in a typical SFT sample. Two methods
score the same samples, one after the other in this process:
- naive: batches of B consecutive samples padded to their longest, full (B, T, V) logits, fp32 cross-entropy at every
  position, labelled positions picked afterwards (what the official scripts do);
- tokclean: `tokclean.scoring`'s batching by length (capped in padded tokens) and LM head at labelled positions only.
Reported per method: response tokens/s, input tokens/s, peak GPU memory, and MFU = model FLOPs / time / peak FLOP/s. The model
FLOPs are those of a full forward pass (2 x linear parameters per token, causal attention 2 x T^2 x d per layer, the LM head at
every position; `tokclean.costs.forward_flops`), credited equally to both methods, so MFU is comparable between them. The
peak comes from `tokclean.costs.GPUS` for the GPU found, or from --peak-tflops.

    python benchmarks/g1_gpu_scoring.py                           # on a CUDA GPU: 3B config, 256 samples
    python benchmarks/g1_gpu_scoring.py --device cpu --size tiny --n 16   # the same code path on a CPU, in seconds
"""
import argparse, json, platform, time
from pathlib import Path

import numpy as np
import torch

from tokclean.costs import GPUS, forward_flops, gpu_for_device, shape_from_config

SIZES = {  # transformers LlamaConfig fields
    "3b": dict(hidden_size=3072, intermediate_size=8192, num_hidden_layers=28, num_attention_heads=24, num_key_value_heads=8,
               vocab_size=128256, max_position_embeddings=4096, tie_word_embeddings=True),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 vocab_size=1000, max_position_embeddings=2048, tie_word_embeddings=True),
}


def peak_tflops(device: str, override: float | None) -> float | None:
    "Dense bf16 peak of the GPU in use (tokclean.costs.GPUS, vendor data sheets), or `override`."
    if override: return override
    if device != "cuda": return None
    gpu = gpu_for_device(torch.cuda.get_device_name())
    return GPUS[gpu].tflops if gpu else None


def build_model(size: str, device: str, dtype):
    from transformers import AutoModelForCausalLM, LlamaConfig
    torch.manual_seed(0)
    cfg = LlamaConfig(**SIZES[size])
    with torch.device(device): model = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
    return model.eval()


def synthetic_rows(n: int, vocab: int, min_len: int, max_len: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for length in rng.integers(min_len, max_len + 1, n).tolist():
        ids = rng.integers(0, vocab, length).tolist()
        start = int(length * 0.4)  # the prompt: 40%
        labels = [-100] * start + ids[start:]
        rows.append({"input_ids": ids, "labels": labels, "n_response": length - start})
    return rows


def model_flops(model, lengths) -> float:
    "Forward FLOPs over samples of these lengths: linear layers, causal attention, and the LM head at every position."
    return forward_flops(shape_from_config(model.config), np.asarray(lengths))  # both methods credited with the full forward


def naive(model, rows, batch_size: int, device: str):
    from tokclean.scoring import collate
    out = []
    with torch.inference_mode():
        for s in range(0, len(rows), batch_size):
            b = collate(rows[s : s + batch_size], 0, device=device)
            logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits  # (B, T, V)
            labels = b["labels"][:, 1:]
            ce = torch.nn.functional.cross_entropy(logits[:, :-1].float().reshape(-1, logits.size(-1)), labels.reshape(-1), reduction="none")
            out.append(ce.view(labels.shape)[labels != -100].cpu())
    return torch.cat(out).numpy()


def tokclean_scoring(model, rows, batch_size: int, device: str):
    from tokclean.scoring import score_rows
    return score_rows(model, rows, batch_size, 16384)


def measure(fn, model, rows, batch_size: int, device: str) -> tuple[np.ndarray, float, int]:
    fn(model, rows[:2], batch_size, device)  # warm-up: kernels, allocator
    if device == "cuda": torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    losses = fn(model, rows, batch_size, device)
    if device == "cuda": torch.cuda.synchronize()
    return losses, time.perf_counter() - t0, torch.cuda.max_memory_allocated() if device == "cuda" else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=SIZES, default="3b")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--n", type=int, default=256, help="samples")
    ap.add_argument("--min-len", type=int, default=128)
    ap.add_argument("--max-len", type=int, default=1024)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--peak-tflops", type=float, default=None, help="the device's peak bf16 TFLOP/s (default: from the GPU's name)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "g1_gpu_scoring.json"))
    args = ap.parse_args()
    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    model = build_model(args.size, args.device, dtype)
    rows = synthetic_rows(args.n, model.config.vocab_size, args.min_len, min(args.max_len, model.config.max_position_embeddings))
    flops, peak = model_flops(model, [len(r["input_ids"]) for r in rows]), peak_tflops(args.device, args.peak_tflops)
    n_in, n_resp = sum(len(r["input_ids"]) for r in rows), sum(r["n_response"] for r in rows)
    result = {"device": torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or "cpu",
              "size": args.size, "params": sum(p.numel() for p in model.parameters()), "dtype": str(dtype), "samples": len(rows),
              "input_tokens": n_in, "response_tokens": n_resp, "model_flops": flops, "peak_tflops": peak,
              "torch": torch.__version__, "methods": {}}
    losses = {}
    for name, fn in (("naive", naive), ("tokclean", tokclean_scoring)):
        losses[name], seconds, mem = measure(fn, model, rows, args.batch_size, args.device)
        result["methods"][name] = {"seconds": round(seconds, 4), "response_tokens_per_s": round(n_resp / seconds, 1),
                                   "input_tokens_per_s": round(n_in / seconds, 1), "peak_gpu_mem_gib": round(mem / 2**30, 2),
                                   "mfu": float(f"{flops / seconds / (peak * 1e12):.4g}") if peak else None}
        print(name, result["methods"][name], flush=True)
    result["max_abs_loss_diff"] = float(np.abs(losses["naive"] - losses["tokclean"]).max())
    result["speedup"] = round(result["methods"]["naive"]["seconds"] / result["methods"]["tokclean"]["seconds"], 2)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"tokclean / naive speed: {result['speedup']}x; max |loss difference| {result['max_abs_loss_diff']:.3g}; wrote {args.out}")


if __name__ == "__main__":
    main()
