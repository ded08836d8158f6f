"""M2: the memory of scoring a pool against a reference kept as a LoRA adapter, beside two merged models, one run.

The reference is SmolLM2-135M-Instruct plus a LoRA adapter of the paper's shape (r=64, alpha=16, all seven projections;
B drawn at random, as a trained B is non-zero; memory does not depend on the values), and, for the merged variants, that
adapter merged in fp32 (`tokclean.models.merge_adapter`). Each variant scores the same pool twice, base then reference,
with `tokclean.scoring.score_rows`, in a fresh process:
- adapter: the base loaded once with the adapter over it; the base scored inside `model.disable_adapter()`, the reference
  outside it (what the pipeline does when the reference is an adapter);
- merged_together: the base and the merged reference, both loaded, then both scored (two models held at once);
- merged_one_at_a_time: the base loaded and scored, freed, then the merged reference loaded and scored (how the pipeline's
  two score stages load a merged reference).
Peak RSS is the kernel's high-water mark of the process (VmHWM), shown whole and above the RSS after the imports and the
data; a 5 ms sampler gives the peak of each phase; on CUDA, `torch.cuda.max_memory_allocated` too. In fp32, transformers
and peft map the safetensors files without copying them, so the growth of the mapped-file RSS after scoring (RssFile) is
the weights the variant holds, and the heap's growth (RssAnon) is what scoring allocated and kept. The expected weights
follow from the parameter counts: two merged models held at once are 2 P weights, the adapter variant P + L (L: the LoRA
parameters, fp32), one merged model at a time P. The reference's losses of the adapter and the merged variants are
compared (fp32: rounding only), and the base's must be bit-identical.

    python benchmarks/m2_adapter_reference.py               # 32 samples of the demo set, fp32 (what model.dtype=auto is on a CPU without bf16)
    python benchmarks/m2_adapter_reference.py --force       # measure every variant again

Each finished variant is written to the results at once and skipped by the next call with the same settings, so an
interrupted benchmark resumes. The machine is shared: the script refuses to start below --min-available-mb of free memory.
"""
import argparse, json, os, platform, resource, subprocess, sys, tempfile, time
from pathlib import Path

import numpy as np

VARIANTS = ("adapter", "merged_together", "merged_one_at_a_time")
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"}


def status_mb() -> dict:
    "The process's resident memory now (VmRSS, RssAnon: heap; RssFile: mapped files) and its high-water mark (VmHWM), in MB."
    keys = ("VmRSS", "RssAnon", "RssFile", "VmHWM")
    return {l.split(":")[0]: int(l.split()[1]) / 1024 for l in open("/proc/self/status") if l.startswith(keys)}


class Phases:
    "The peak RSS of each phase of a child ('load', 'score base', ...), sampled every 5 ms."
    def __init__(self):
        import threading
        self.now, self.peaks, self.done = "start", {}, threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True); self.thread.start()

    def _sample(self):
        while not self.done.is_set():
            self.peaks[self.now] = max(self.peaks.get(self.now, 0), status_mb()["VmRSS"]); time.sleep(0.005)

    def __call__(self, name: str): self.peaks[self.now] = max(self.peaks.get(self.now, 0), status_mb()["VmRSS"]); self.now = name

    def stop(self) -> dict:
        self("end"); self.done.set(); self.thread.join()
        return {k: round(v) for k, v in self.peaks.items() if k not in ("start", "end")}


def setup(work: Path, a) -> dict:
    "Child: save the adapter (seeded) and its fp32 merge into `work`; count the parameters."
    import torch
    from peft import LoraConfig, get_peft_model
    from tokclean.models import load_model, merge_adapter, save_adapter
    base, tok = load_model("smollm2-135m-instruct", dtype="float32", device="cpu")
    n_base = sum(p.numel() for p in base.parameters())  # tied embeddings counted once, as they are stored
    torch.manual_seed(0)
    lora = get_peft_model(base, LoraConfig(r=a.lora_r, lora_alpha=a.lora_alpha, lora_dropout=0.1, target_modules=TARGETS,
                                           task_type="CAUSAL_LM"))
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if "lora_B" in name: p.normal_(0, 0.01)
    n_lora = sum(p.numel() for n, p in lora.named_parameters() if "lora_" in n)
    save_adapter(lora, tok, work / "adapter", base="smollm2-135m-instruct")
    merge_adapter(work / "adapter", work / "merged")
    return {"base_params": n_base, "lora_params": n_lora,
            "adapter_file_mb": (work / "adapter" / "adapter_model.safetensors").stat().st_size / 2**20,
            "merged_file_mb": (work / "merged" / "model.safetensors").stat().st_size / 2**20}


def measure(variant: str, work: Path, a) -> dict:
    "Child: score the pool as `variant` does; write the losses beside the numbers."
    import gc, torch
    from tokclean.data import load_sft
    from tokclean.models import load_adapter, load_model, load_tokenizer
    from tokclean.scoring import score_rows
    cuda = a.device.startswith("cuda")
    sft = load_sft(a.pool, load_tokenizer("smollm2-135m-instruct"), max_len=a.max_len)
    rows = [sft.dataset[i] for i in range(len(sft.dataset))]
    at_start, phase = status_mb(), Phases()  # after the imports and the data
    start = at_start["VmRSS"]
    kw = dict(dtype=a.dtype, device=a.device)
    score = lambda m, name: (phase(name), score_rows(m, rows, a.batch_size, 16384))[1]
    t0 = time.perf_counter()
    phase("load")
    if variant == "adapter":
        model = load_adapter(work / "adapter", "smollm2-135m-instruct", **kw)[0]
        with model.disable_adapter(): base = score(model, "score base")
        ref = score(model, "score reference")
    elif variant == "merged_together":
        base_model, ref_model = load_model("smollm2-135m-instruct", **kw)[0], load_model(str(work / "merged"), **kw)[0]
        base, ref = score(base_model, "score base"), score(ref_model, "score reference")
    else:
        model = load_model("smollm2-135m-instruct", **kw)[0]
        base = score(model, "score base")
        phase("free, load reference")
        del model; gc.collect()
        if cuda: torch.cuda.empty_cache()
        model = load_model(str(work / "merged"), **kw)[0]
        ref = score(model, "score reference")
    held = status_mb()  # what the models still loaded (the reference alone, for one at a time) hold, their weights touched by scoring
    seconds, peaks = time.perf_counter() - t0, phase.stop()
    np.save(work / f"{variant}-base.npy", base); np.save(work / f"{variant}-ref.npy", ref)
    return {"samples": len(rows), "tokens": int(sum(len(r["input_ids"]) for r in rows)), "scored_tokens": int(len(base)),
            "seconds": round(seconds, 2), "rss_after_imports_mb": round(start), "peak_rss_mb": round(held["VmHWM"]),
            "peak_above_imports_mb": round(held["VmHWM"] - start), "peak_rss_mb_per_phase": peaks,
            "held_after_scoring_mb": {"heap": round(held["RssAnon"]), "mapped files": round(held["RssFile"])},
            "grown_since_imports_mb": {"heap": round(held["RssAnon"] - at_start["RssAnon"]),  # the adapter (fp32) and what scoring kept
                                       "mapped files": round(held["RssFile"] - at_start["RssFile"])},  # the weights: safetensors mapped
            "cuda_max_allocated_mb": round(torch.cuda.max_memory_allocated() / 2**20) if cuda else None}


def child(what: str, work: Path, a):
    out = setup(work, a) if what == "setup" else measure(what, work, a)
    (work / f"{what}.json").write_text(json.dumps(out))


def spawn(what: str, work: Path, a) -> dict:
    args = [sys.executable, __file__, "--child", what, "--work", str(work), *sum(([f"--{k.replace('_', '-')}", str(v)] for k, v in
                                                                                  settings(a).items()), [])]
    subprocess.run(args, check=True, env=ENV)
    return json.loads((work / f"{what}.json").read_text())


def settings(a) -> dict:
    return {k: getattr(a, k) for k in ("pool", "max_len", "batch_size", "dtype", "device", "lora_r", "lora_alpha")}


def table(res: dict, a) -> str:
    p = res["params"]
    size = 4 if a.dtype == "float32" else 2  # bytes per base weight
    base_mb, lora_mb = p["base_params"] * size / 2**20, p["lora_params"] * 4 / 2**20  # peft keeps the adapter in fp32
    expect = {"adapter": base_mb + lora_mb, "merged_together": 2 * base_mb, "merged_one_at_a_time": base_mb}
    cuda = any(res["variants"][v].get("cuda_max_allocated_mb") for v in res["variants"])
    head = ("| variant | peak RSS MB | above imports MB | peak per phase MB | weights mapped after scoring MB | heap grown MB "
            "| weights held at once, expected MB |" + (" CUDA max allocated MB |" if cuda else "") + " seconds |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for v in VARIANTS:
        if v not in res["variants"]: continue
        r = res["variants"][v]
        grown = r["grown_since_imports_mb"]
        lines.append(f"| {v} | {r['peak_rss_mb']} | {r['peak_above_imports_mb']} | "
                     + ", ".join(f"{k} {x}" for k, x in r["peak_rss_mb_per_phase"].items())
                     + f" | {grown['mapped files']} | {grown['heap']} | {expect[v]:.0f} |"
                     + (f" {r['cuda_max_allocated_mb']} |" if cuda else "") + f" {r['seconds']} |")
    text = "\n".join(lines)
    text += (f"\n\nparameters: base P = {p['base_params']:,}, LoRA L = {p['lora_params']:,} (r={a.lora_r}, all seven projections: "
             f"{p['lora_params'] / p['base_params']:.1%} of P); files: adapter {p['adapter_file_mb']:.0f} MB, merged model {p['merged_file_mb']:.0f} MB")
    text += (f"\nexpected: adapter / two merged held at once = (P + L) / 2P = {expect['adapter'] / expect['merged_together']:.2f} "
             f"(weights alone); adapter / one merged at a time = {expect['adapter'] / expect['merged_one_at_a_time']:.2f}")
    vs = res["variants"]
    if "adapter" in vs and "merged_together" in vs:
        ad, mt = vs["adapter"], vs["merged_together"]
        w = lambda r: r["grown_since_imports_mb"]["mapped files"]  # fp32 safetensors stay mapped: loaded without a copy, adapter too
        text += (f"\nmeasured: adapter vs two merged held at once: weights {w(ad)} vs {w(mt)} MB mapped = {w(ad) / w(mt):.2f}x; "
                 f"{ad['peak_above_imports_mb'] / mt['peak_above_imports_mb']:.2f}x peak RSS above imports "
                 f"({ad['peak_rss_mb'] / mt['peak_rss_mb']:.2f}x whole)")
        if "merged_one_at_a_time" in vs:
            mo = vs["merged_one_at_a_time"]
            text += (f"; vs one merged model at a time: {ad['peak_above_imports_mb'] / mo['peak_above_imports_mb']:.2f}x "
                     f"({ad['peak_rss_mb'] / mo['peak_rss_mb']:.2f}x whole)")
    text += "\nat paper scale (bf16 base, fp32 adapter, r=64 on all seven projections), weights held while scoring both:"
    for name, (n, l) in res["paper_scale"].items():
        text += f"\n  {name}: two merged {2 * n * 2 / 2**30:.1f} GiB, adapter {(n * 2 + l * 4) / 2**30:.1f} GiB ({(n * 2 + l * 4) / (4 * n):.2f}x)"
    if "losses" in res:
        text += (f"\nlosses: base bit-identical across variants: {res['losses']['base_identical']}; reference, adapter vs merged: "
                 f"max |diff| {res['losses']['ref_max_abs_diff']:.2e} nats over {res['losses']['tokens']} tokens")
    return text


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pool", default="alpaca-gpt4-demo[:32]")
    ap.add_argument("--max-len", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--lora-r", type=int, default=64)
    ap.add_argument("--lora-alpha", type=int, default=16)
    ap.add_argument("--min-available-mb", type=int, default=5000)
    ap.add_argument("--force", action="store_true", help="measure every variant again")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "m2_adapter_reference"))
    ap.add_argument("--child"); ap.add_argument("--work")
    a = ap.parse_args()
    if a.child: return child(a.child, Path(a.work), a)
    import psutil
    free = psutil.virtual_memory().available / 2**20
    if free < a.min_available_mb: sys.exit(f"only {free:.0f} MB of memory is available (--min-available-mb {a.min_available_mb}): try later")
    saved = Path(a.out + ".json")
    res = json.loads(saved.read_text()) if saved.exists() and not a.force else {}
    if res.get("settings") != settings(a): res = {"settings": settings(a), "variants": {}}
    todo = [v for v in VARIANTS if v not in res["variants"]]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if todo: res["params"] = spawn("setup", work, a)  # seeded: the same adapter each time
        for v in todo:
            res["variants"][v] = {**spawn(v, work, a), "load_average": round(os.getloadavg()[0], 2)}
            saved.parent.mkdir(parents=True, exist_ok=True)
            saved.write_text(json.dumps(res, indent=1) + "\n")  # each variant as it finishes: a rerun skips it
            print(v, res["variants"][v], flush=True)
        here = [v for v in VARIANTS if (work / f"{v}-ref.npy").exists()]
        if "adapter" in here and len(here) > 1:  # losses of the variants measured in this call
            load = lambda v, w: np.load(work / f"{v}-{w}.npy")
            res["losses"] = {"base_identical": all(np.array_equal(load(v, "base"), load("adapter", "base")) for v in here),
                             "ref_max_abs_diff": float(max(np.abs(load(v, "ref") - load("adapter", "ref")).max() for v in here if v != "adapter")),
                             "tokens": int(len(load("adapter", "ref")))}
    from tokclean.costs import KNOWN_SHAPES, lora_params, params
    res["paper_scale"] = {k: (params(KNOWN_SHAPES[k]), lora_params(KNOWN_SHAPES[k], a.lora_r, TARGETS)) for k in
                          ("meta-llama/Llama-3.2-3B", "meta-llama/Llama-3.1-8B", "mistralai/Mistral-7B-v0.3", "meta-llama/Llama-2-13b-hf")}
    res["machine"] = {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()}
    saved.write_text(json.dumps(res, indent=1) + "\n")
    head = (f"SmolLM2-135M-Instruct, {a.dtype}, {a.device} ({os.cpu_count()} CPUs), {a.pool}, max_len {a.max_len}, batch {a.batch_size}; "
            f"base and reference scored on it, each variant in a fresh process\n\n")
    text = head + table(res, a)
    Path(a.out + ".txt").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
