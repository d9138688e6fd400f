"""Chunk-level emotion retrieval against known truth (spliced Emo-DB set, demo trajectories).

    python evaluate_retrieval.py --corpus data/emodb_spliced \\
        --rankseq chunk_emotion_rankers/EmoChunkRankSeq/testing_Act.json --baseline loudness random
    python evaluate_retrieval.py --corpus data/demo_corpus --split Test --baseline loudness random

The corpus holds ChunkTruth/chunk_truth.json (make_spliced_set.py, make_demo_corpus.py):
per utterance, segments with a true arousal each. Chunks follow the dynamic chunk split
(docs/chunking.md): K windows (default 22) of one second (m = int(1/hop) frames, T = int(duration/hop)
frames), window k starting at k * floor((T - m)/(K - 1)) frames. Rank 1 = most emotional.
Metrics per utterance:
- pair accuracy: over all pairs of chunks that lie fully inside two different segments of
  different true value, the fraction ranked in the right order (rank ties count 1/2):
  1.0 = true order, about 0.5 = random, 0.0 = reversed;
- Kendall's tau (tau-b) between -rank and the true per-chunk value (time-weighted mean over
  the chunk, pauses excluded) over all chunks.
Reported: mean over utterances (macro), pooled over all pairs (micro), mean tau, per trajectory.
Baselines: `loudness` ranks chunks by RMS energy, `random` by a seeded random permutation.
"""
import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
from scipy.stats import kendalltau, rankdata

from cli import _number, positive_float, run_script, seed_int
from corpus import AUDIO_DIRS, Corpus
from errors import ToolkitError
from ranker import load_rank_sequences
from utils import atomic_write_text


def chunk_bounds(duration, hop=0.016, K=22, win=1.0):
    """(K, 2) start/end seconds of the dynamic chunk split of an utterance of `duration` s."""
    m = int(win / hop + 1e-9)
    T = max(1, int(duration / hop + 1e-9))
    s = max(0, (T - m) // (K - 1))
    starts = np.arange(K) * s * hop
    return np.stack([starts, np.minimum(starts + m * hop, max(duration, m * hop))], 1)


def chunk_truth(segments, duration, emo="Act", hop=0.016, K=22, win=1.0):
    """-> truth (K,) time-weighted true value per chunk (NaN: no speech segment),
    part (K,) index of the segment holding the whole chunk, -1 if it straddles or lies in a pause."""
    b = chunk_bounds(duration, hop, K, win)
    tol = hop / 2
    truth, part = np.full(K, np.nan), np.full(K, -1)
    for k, (s, e) in enumerate(b):
        w = np.array([max(0.0, min(e, g["end"]) - max(s, g["start"])) for g in segments])
        if w.sum() > 0:
            truth[k] = float(np.dot(w, [g[emo] for g in segments]) / w.sum())
        for i, g in enumerate(segments):
            if s >= g["start"] - tol and e <= g["end"] + tol:
                part[k], truth[k] = i, g[emo]
    return truth, part


def retrieval_scores(ranks, truth_per_chunk, part=None):
    """Score one ranking sequence (rank 1 = most emotional) against true per-chunk values.

    part: segment index per chunk (-1 = chunk not fully inside one segment); None = every
    distinct true value is its own segment. Returns dict(pair_acc, tau, n_pairs, n_correct):
    pair_acc = 1.0 for the true order, ~0.5 for random, 0.0 for reversed (NaN if no pair)."""
    r = np.asarray(ranks, float)
    t = np.asarray(truth_per_chunk, float)
    if r.shape != t.shape:
        raise ValueError(f"ranks {r.shape} and truth {t.shape} differ in length")
    if part is None:
        part = np.where(np.isfinite(t), np.unique(np.nan_to_num(t), return_inverse=True)[1], -1)
    part = np.asarray(part)
    i, j = np.triu_indices(len(t), 1)
    ok = (part[i] >= 0) & (part[j] >= 0) & (part[i] != part[j]) & (np.abs(t[i] - t[j]) > 1e-9)
    i, j = i[ok], j[ok]
    want = np.sign(t[i] - t[j])  # +1: chunk i more emotional -> should have the smaller rank
    got = np.sign(r[j] - r[i])
    correct = float(np.sum(np.where(got == 0, 0.5, got == want)))
    fin = np.isfinite(t)
    tau = np.nan
    if fin.sum() > 1 and np.ptp(t[fin]) > 0 and np.ptp(r[fin]) > 0:
        tau = float(kendalltau(-r[fin], t[fin]).statistic)
    n = len(i)
    return dict(pair_acc=correct / n if n else np.nan, tau=tau, n_pairs=n, n_correct=correct)


def load_truth(root):
    p = Path(root) / "ChunkTruth" / "chunk_truth.json"
    if not p.exists():
        raise FileNotFoundError(f"{p} missing: only corpora made by make_spliced_set.py or make_demo_corpus.py "
                                f"carry chunk truth")
    return {k.removesuffix(".wav"): v for k, v in json.loads(p.read_text()).items()}


def load_rankseq(path):
    seqs, _ = load_rank_sequences(path)      # checked: a truncated file or bad ranks stop with its name
    return {k.removesuffix(".wav"): np.asarray(seq, float) for k, seq in seqs.items()}


def split_files(root, split):
    """Stems of the corpus files in a user split (Train / Validation / Test) or release split name."""
    c = Corpus(root)
    names = c.files(split)
    if not names:
        raise ValueError(f"{c.consensus_path}: no files in split {split} (has {c.splits_found()})")
    return {Path(n).stem for n in names}


def loudness_ranks(root, stem, duration, hop=0.016, K=22, win=1.0):
    """Ranks of the K chunks by RMS energy (rank 1 = loudest): the loudness baseline."""
    audio_dir = next((Path(root) / d for d in AUDIO_DIRS if (Path(root) / d).is_dir()),
                     Path(root) / "Audios")
    x, sr = sf.read(str(audio_dir / f"{stem}.wav"), dtype="float32", always_2d=True)
    x = x.mean(1)
    rms = [np.sqrt(np.mean(x[int(s * sr): max(int(e * sr), int(s * sr) + 1)] ** 2) + 1e-12)
           for s, e in chunk_bounds(duration, hop, K, win)]
    return rankdata(-np.asarray(rms), method="min")


def evaluate(truth, ranks_of, emo="Act", hop=0.016, K=22, win=1.0):
    """truth: {stem: chunk truth entry}; ranks_of: {stem: (K,) ranks}. -> (summary dict, per-utt DataFrame)."""
    rows = []
    for stem, ranks in ranks_of.items():
        g = truth[stem]
        t, part = chunk_truth(g["segments"], g["duration"], emo, hop, K, win)
        if len(ranks) != K:
            raise ValueError(f"{stem}: ranking sequence has {len(ranks)} chunks, expected K={K} (see --K)")
        rows.append(dict(FileName=stem, trajectory=g.get("trajectory", ""), **retrieval_scores(ranks, t, part)))
    df = pd.DataFrame(rows)
    has = df[df["n_pairs"] > 0]
    summary = dict(n_utts=len(df), n_utts_with_pairs=len(has), n_pairs=int(df["n_pairs"].sum()),
                   pair_acc_macro=float(has["pair_acc"].mean()) if len(has) else float("nan"),
                   pair_acc_micro=float(df["n_correct"].sum() / df["n_pairs"].sum()) if df["n_pairs"].sum()
                   else float("nan"), tau_mean=float(df["tau"].mean()) if df["tau"].notna().any() else float("nan"))
    summary["by_trajectory"] = {k: round(float(v), 4) for k, v in has.groupby("trajectory")["pair_acc"].mean().items()}
    return summary, df


def _systems(a):
    """{system name: {stem: ranks}} for --rankseq and the baselines, and the truth they are scored against."""
    truth = load_truth(a.corpus)
    stems = set(truth)
    if a.split:
        stems &= split_files(a.corpus, a.split)
    systems = {}
    if a.rankseq:
        rs = load_rankseq(a.rankseq)
        missing = sorted(set(rs) - set(truth))
        if missing:
            print(f"note: {len(missing)} files of {a.rankseq} have no chunk truth (skipped), e.g. {missing[0]}")
        rs = {k: v for k, v in rs.items() if k in stems}
        if not rs:
            raise ToolkitError(f"no file of {a.rankseq} is in {a.corpus}'s chunk truth"
                               f"{' / split ' + a.split if a.split else ''}")
        systems[Path(a.rankseq).name] = rs
        stems = set(rs)
    stems = sorted(stems)
    rng = np.random.default_rng(a.seed)
    if "loudness" in a.baseline:
        systems["loudness"] = {s: loudness_ranks(a.corpus, s, truth[s]["duration"], a.hop, a.K, a.win) for s in stems}
    if "random" in a.baseline:
        systems["random"] = {s: rng.permutation(a.K) + 1.0 for s in stems}
    return truth, stems, systems


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", required=True, help="corpus root holding ChunkTruth/chunk_truth.json")
    p.add_argument("--rankseq", default=None, help="ranking-sequence JSON {FileName: {'ChunkRankSeq': [K ints]}}")
    p.add_argument("--baseline", nargs="*", default=[], choices=["loudness", "random"],
                   help="also score rank sequences from per-chunk RMS loudness and/or random ranks")
    p.add_argument("--split", default=None, help="restrict to a split: Train / Validation / Test (the published "
                   "test set: Test1 where the release has it) or a release Split_Set name such as Test2, any case; "
                   "default: the files of --rankseq, else all. The release splits scored are printed and written")
    p.add_argument("--emo", default="Act", choices=["Act", "Val", "Dom"], help="attribute to score (default Act)")
    p.add_argument("--hop", type=positive_float, default=0.016, help="feature hop in seconds (default 0.016 = LLDs)")
    p.add_argument("--K", type=_number(int, 2), default=22, help="chunks per utterance (default 22)")
    p.add_argument("--win", type=positive_float, default=1.0, help="chunk length in seconds (default 1.0)")
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the random baseline")
    p.add_argument("--out", default=None, help="write the summaries as JSON here")
    a = p.parse_args(argv)
    if not a.rankseq and not a.baseline:
        p.error("give --rankseq and/or --baseline")
    try:
        truth, stems, systems = _systems(a)
        results = {name: evaluate(truth, ranks, a.emo, a.hop, a.K, a.win)[0] for name, ranks in systems.items()}
    except (FileNotFoundError, ValueError, KeyError) as e:
        raise ToolkitError(str(e)) from None
    released = Corpus(a.corpus).release_splits(names=[f"{s}.wav" for s in stems])
    print(f"{a.corpus}: {len(stems)} utterances of release split(s) {'+'.join(released)}, {a.emo}, K={a.K}, "
          f"hop={a.hop}s")
    print(f"{'system':<28}{'pair acc (macro)':>17}{'pair acc (micro)':>17}{'Kendall tau':>13}{'pairs':>8}")
    for name, r in results.items():
        print(f"{name:<28}{r['pair_acc_macro']:>17.3f}{r['pair_acc_micro']:>17.3f}{r['tau_mean']:>13.3f}"
              f"{r['n_pairs']:>8d}   {r['by_trajectory']}")
    if a.out:
        atomic_write_text(a.out, json.dumps(dict(corpus=str(a.corpus), split=a.split, release_splits=released, emo=a.emo, K=a.K,
                                                 hop=a.hop, results=results),
                                            indent=1))
    return results


if __name__ == "__main__":
    run_script(main)
