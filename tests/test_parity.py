"""Parity with the official selection rule (OFFICIAL_CODE.md, generate_token_label.py): per-token losses as Python
floats, score = base - reference, a stable descending sort of (score, sample, position), the first int(N * k) kept,
globally or per sample. The reference rule is written here in its simplest form and compared mask for mask."""
import numpy as np
import pytest

from tokclean.scoring import response_offsets
from tokclean.selection import array_chunks, score_chunks, select, top_k, top_k_stream, top_k_threshold


def official_global(base: list[list[float]], ref: list[list[float]], k: float) -> set:
    tokens = [(b - r, i, j) for i, (bs, rs) in enumerate(zip(base, ref)) for j, (b, r) in enumerate(zip(bs, rs))]
    ranked = sorted(tokens, key=lambda t: t[0], reverse=True)  # stable: equal scores keep (sample, position) order
    return {(i, j) for _, i, j in ranked[: int(len(ranked) * k)]}


def official_sample(base, ref, k) -> set:
    kept = set()
    for i, (bs, rs) in enumerate(zip(base, ref)):
        ranked = sorted([(b - r, j) for j, (b, r) in enumerate(zip(bs, rs))], key=lambda t: t[0], reverse=True)
        kept |= {(i, j) for _, j in ranked[: int(len(ranked) * k)]}
    return kept


def as_pairs(keep, offsets) -> set:
    sid = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    pos = np.arange(len(keep)) - offsets[sid]
    return set(zip(sid[keep].tolist(), pos[keep].tolist()))


def losses(seed: int, n_samples: int, step: float):
    "Per-sample token losses as float32, rounded to `step` (bf16-like coarseness: many exact ties)."
    rng = np.random.default_rng(seed)
    n = rng.integers(0, 40, n_samples)  # some samples have no response token at all
    make = lambda: [np.float32(np.round(rng.gamma(2.0, 1.5, m) / step) * step) for m in n]
    return make(), make()


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("k", [0.05, 0.3, 0.6, 0.7, 0.9, 1.0])
def test_global_and_sample_match_official(seed, k):
    step = [0.5, 0.125, 1 / 64, 1e-6][seed % 4]  # from massive ties to almost none
    base, ref = losses(seed, 60 + seed * 7, step)
    offsets = response_offsets([len(x) for x in base])
    loss_base, loss_ref = np.concatenate(base), np.concatenate(ref)
    base_py, ref_py = [x.tolist() for x in base], [x.tolist() for x in ref]  # the official code's Python floats
    g = select(loss_base, loss_ref, offsets, "global", k=k)
    assert as_pairs(g.keep, offsets) == official_global(base_py, ref_py, k)
    s = select(loss_base, loss_ref, offsets, "sample", k=k)
    assert as_pairs(s.keep, offsets) == official_sample(base_py, ref_py, k)
    streamed = top_k_stream(score_chunks(loss_base, loss_ref, chunk=97), len(loss_base), k)[0]  # the on-disk path, in tiny chunks
    assert (streamed == g.keep).all()


def test_all_scores_equal():
    "The extreme tie: every score the same; the earliest tokens win."
    keep, th = top_k(np.zeros(1000), 0.6)
    assert keep[:600].all() and not keep[600:].any() and th.ties == 600


@pytest.mark.parametrize("seed", range(5))
def test_streaming_threshold_is_exact(seed):
    "Small chunks and a tiny candidate budget force several refinement passes; the answer must not change."
    rng = np.random.default_rng(seed)
    x = np.round(rng.standard_t(3, 200_000) * 64) / 64
    m = int(len(x) * 0.6)
    full = top_k_threshold(array_chunks(x), m)
    tight = top_k_threshold(array_chunks(x, 3000), m, bins=8, max_candidates=100)
    assert (tight.value, tight.ties, tight.rank_error) == (full.value, full.ties, 0) and tight.passes > full.passes
    ref = np.zeros(len(x), dtype=bool)
    ref[np.argsort(-x, kind="stable")[:m]] = True
    assert (top_k(x, 0.6)[0] == ref).all() and (top_k_stream(array_chunks(x, 3000), len(x), 0.6)[0] == ref).all()


def test_random_is_seeded_and_global():
    loss_base = np.ones(10_000, dtype=np.float32)
    offsets = response_offsets([100] * 100)
    a, b = select(loss_base, None, offsets, "random", k=0.6, seed=1), select(loss_base, None, offsets, "random", k=0.6, seed=2)
    assert a.stats.n_kept == b.stats.n_kept == 6000 and (a.keep != b.keep).any()
    assert (select(loss_base, None, offsets, "random", k=0.6, seed=1).keep == a.keep).all()
    assert a.stats.per_sample["min"] < 0.6 < a.stats.per_sample["max"]  # drawn globally, not per sample


def test_global_differs_from_sample():
    "Defect D1: the official RHO script selected globally. Ours must not."
    base, ref = losses(0, 50, 1e-6)
    offsets = response_offsets([len(x) for x in base])
    g = select(np.concatenate(base), np.concatenate(ref), offsets, "global", k=0.6)
    s = select(np.concatenate(base), np.concatenate(ref), offsets, "sample", k=0.6)
    assert (g.keep != s.keep).any()


def test_pool_on_disk_is_streamed(tmp_path):
    "Score files opened as memmaps take the streaming path and select exactly the same tokens."
    base, ref = losses(3, 200, 1 / 64)
    offsets = response_offsets([len(x) for x in base])
    loss_base, loss_ref = np.concatenate(base), np.concatenate(ref)
    np.save(tmp_path / "b.npy", loss_base); np.save(tmp_path / "r.npy", loss_ref)
    mb, mr = np.load(tmp_path / "b.npy", mmap_mode="r"), np.load(tmp_path / "r.npy", mmap_mode="r")
    assert isinstance(mb, np.memmap)
    assert (select(mb, mr, offsets, "global", k=0.6).keep == select(loss_base, loss_ref, offsets, "global", k=0.6).keep).all()
    assert (select(mb, None, offsets, "high-ppl", k=0.3).keep == select(loss_base, None, offsets, "high-ppl", k=0.3).keep).all()
