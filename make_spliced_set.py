"""Spliced-chunk retrieval set: two Emo-DB utterances of one speaker with clearly different
arousal, joined with a short pause, in the MSP-Podcast layout (docs/corpus.md) plus chunk truth.

    python prepare_emodb.py ../shared/datasets/emodb data/emodb
    python make_spliced_set.py data/emodb data/emodb_spliced
    python evaluate_retrieval.py --corpus data/emodb_spliced --split Test --baseline loudness random

Pairs: anger+sadness (W,T) and boredom+happiness (L,F) by default, both orders, within each
speaker of --from-splits (default all: Train, Development, Test1, each spliced utterance
keeping its speaker's split, so the set can be trained on too); the two parts use different
sentences. Retrieval is scored on the test speakers: evaluate_retrieval.py --split Test.
Labels (the ground truth for chunk-level retrieval):
- consensus EmoAct/EmoVal/EmoDom = duration-weighted mean of the two parts' consensus
  (the pause counts for neither); EmoClass 'X' (a mixture has no single category);
- per-annotator ratings: rater k of the spliced utterance = duration-weighted mean of
  rater k of each part (one decimal; worker id and primary class of the longer part);
- ChunkTruth/chunk_truth.json: {FileName: {"duration", "split_point" (end of part 1),
  "pause": [start, end], "trajectory": "rising"|"falling" (arousal), "segments": [{"start",
  "end", "Act", "Val", "Dom", "file", "emotion"}, {...}], "times", "Act" (per 1-s window)}}.
Speaker, gender and split are those of the source speaker.
"""
import argparse
import re
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
from tqdm import tqdm

import corpus
from cli import nonneg_float, positive_int, run_script, seed_int
from errors import ToolkitError
from outputs import check_replaced_folder

EMO_NAMES = {"W": "anger", "L": "boredom", "E": "disgust", "A": "fear", "F": "happiness", "T": "sadness",
             "N": "neutral"}
DETAIL_RE = re.compile(r"^\s*([^;]*);\s*([^;]*);\s*([^;]*);\s*A:\s*([\d.]+);\s*V:\s*([\d.]+);\s*D:\s*([\d.]+);")


def _detail(lab_dir):
    """labels_detailed.csv (EmoDetail form) -> {FileName: [(worker, class, A, V, D)]}."""
    p = lab_dir / "labels_detailed.csv"
    out = {}
    if not p.exists():
        return out
    for fn, s in pd.read_csv(p)[["FileName", "EmoDetail"]].itertuples(index=False):
        m = DETAIL_RE.match(str(s))
        if m:
            out.setdefault(fn, []).append((m.group(1).strip(), m.group(2).strip(), *map(float, m.group(4, 5, 6))))
    return out


def _source_table(c, from_splits):
    """Consensus table of the Emo-DB utterances (speaker, sentence, emotion parsed from SSTTTEV) of the splits."""
    lab = pd.read_csv(c.consensus_path)
    lab["stem"] = lab["FileName"].str.replace(r"\.wav$", "", regex=True)
    m = lab["stem"].str.extract(r"^(\d\d)([ab]\d\d)([WLEAFTN])[a-z]$")
    lab["spk"], lab["code"], lab["emo"] = m[0], m[1], m[2]
    bad = lab[lab["emo"].isna()]
    if len(bad):
        print(f"note: {len(bad)} files without an Emo-DB name (SSTTTEV) ignored, e.g. {bad['FileName'].iloc[0]}")
    keep = set(s.strip() for s in from_splits.split(","))
    lab = lab[lab["emo"].notna() & lab["Split_Set"].isin(keep)]
    if lab.empty:
        raise ValueError(f"{c.consensus_path}: no Emo-DB utterances in splits {sorted(keep)}")
    return lab, keep


def _draw_jobs(lab, pairs, max_per_pair, seed):
    """(x, y) label rows to splice: per speaker and ordered emotion pair at most max_per_pair, different sentences."""
    pair_list = []
    for p in pairs.split(","):
        p = p.strip().upper()
        if len(p) != 2 or not set(p) <= set(EMO_NAMES):
            raise ValueError(f"--pairs {p}: use two Emo-DB letters, e.g. WT (anger+sadness), LF (boredom+happiness)")
        pair_list += [(p[0], p[1]), (p[1], p[0])]
    rng = np.random.default_rng(seed)
    jobs = []
    for _spk, g in lab.groupby("spk", sort=True):
        for a, b in pair_list:
            ga, gb = g[g["emo"] == a], g[g["emo"] == b]
            cand = [(x, y) for x in ga.itertuples() for y in gb.itertuples() if x.code != y.code]
            idx = rng.permutation(len(cand))[:max_per_pair]
            jobs += [cand[i] for i in sorted(idx)]
    return jobs


def _splice(c, tmp, x, y, pause, detail):
    """Write one spliced utterance (audio, transcript, TextGrid) into `tmp` -> (consensus row, detail rows,
    chunk truth entry), or a problem string when the parts cannot be joined."""
    try:
        (xa, sr1), (ya, sr2) = (sf.read(str(c.audio_path(u.FileName)), dtype="float32") for u in (x, y))
    except Exception as e:  # noqa: BLE001 - report, skip
        return f"{x.FileName}/{y.FileName}: unreadable audio ({e})"
    if sr1 != sr2 or xa.ndim != 1 or ya.ndim != 1:
        return f"{x.FileName}/{y.FileName}: sample rates or channels differ"
    sr = sr1
    gap = np.zeros(int(round(pause * sr)), np.float32)
    sig = np.concatenate([xa, gap, ya])
    d1, p1 = len(xa) / sr, (len(xa) + len(gap)) / sr
    dur = len(sig) / sr
    name = f"{x.stem}_{y.stem}"
    fn = f"{name}.wav"
    sf.write(str(tmp / "Audios" / fn), sig, sr, subtype="PCM_16")
    texts = [c.transcript(u.FileName) or "" for u in (x, y)]
    (tmp / "Transcripts" / f"{name}.txt").write_text(" ".join(t for t in texts if t) + "\n", encoding="utf-8")
    words = []
    for u, off in ((x, 0.0), (y, p1)):
        words += [(s + off, e + off, w) for s, e, w in (c.words(u.FileName) or [])]
    corpus.write_textgrid(tmp / "ForceAligned" / f"{name}.TextGrid", words, dur)
    w1, w2 = d1 / (d1 + dur - p1), (dur - p1) / (d1 + dur - p1)

    def mix(a, b):
        return round(w1 * a + w2 * b, 6)
    cons = (fn, "X", mix(x.EmoAct, y.EmoAct), mix(x.EmoVal, y.EmoVal), mix(x.EmoDom, y.EmoDom), x.SpkrID,
            x.Gender, x.Split_Set)
    det = []
    rx, ry = detail.get(x.FileName, []), detail.get(y.FileName, [])
    for k in range(min(len(rx), len(ry))):
        main = rx[k] if w1 >= w2 else ry[k]
        sec = sorted({rx[k][1], ry[k][1]})
        det.append((fn, corpus.emo_detail(main[0], main[1], sec, *(round(w1 * rx[k][q] + w2 * ry[k][q], 1)
                                                             for q in (2, 3, 4)))))
    segs = [dict(start=0.0, end=round(d1, 4), Act=x.EmoAct, Val=x.EmoVal, Dom=x.EmoDom, file=x.FileName,
                 emotion=EMO_NAMES[x.emo]),
            dict(start=round(p1, 4), end=round(dur, 4), Act=y.EmoAct, Val=y.EmoVal, Dom=y.EmoDom,
                 file=y.FileName, emotion=EMO_NAMES[y.emo])]
    times, act = corpus.window_truth([(s["start"], s["end"], s["Act"]) for s in segs], dur)
    truth = dict(duration=round(dur, 4), split_point=round(d1, 4), pause=[round(d1, 4), round(p1, 4)],
                 trajectory="rising" if y.EmoAct > x.EmoAct else "falling", segments=segs, times=times, Act=act)
    return cons, det, truth


def make(src, out, pairs="WT,LF", from_splits="Train,Development,Test1", max_per_pair=12, pause=0.3, seed=0,
         force=False, progress=True):
    """Build the spliced corpus at `out` (atomically); -> (Path, number of utterances)."""
    src, out = Path(src), Path(out)
    check_replaced_folder(out, 'out', [(src, 'the source corpus')])
    corpus.refuse_existing(out, force)
    c = corpus.Corpus(src)
    lab, keep = _source_table(c, from_splits)
    jobs = _draw_jobs(lab, pairs, max_per_pair, seed)
    if not jobs:
        raise ValueError(f"no pairs {pairs} found for the speakers of {sorted(keep)}")
    detail = _detail(c.labels_dir)
    problems, cons, det, truth = [], [], [], {}
    with corpus.staged_dir(out, ("Audios", "Transcripts", "ForceAligned", "Labels", "ChunkTruth")) as tmp:
        for x, y in tqdm(jobs, desc="splicing", unit="utt", disable=not progress):
            res = _splice(c, tmp, x, y, pause, detail)
            if isinstance(res, str):
                problems.append(res)
                continue
            cons.append(res[0])
            det += res[1]
            truth[res[0][0]] = res[2]
        if not cons:
            raise ValueError(f"no spliced utterance could be made: {problems[:3]}")
        cons.sort()
        det.sort(key=lambda r: r[0])
        corpus.write_labels(tmp, cons, det)
        corpus.write_json(tmp / "ChunkTruth" / "chunk_truth.json", truth)
        corpus.write_json(tmp / "build_info.json", dict(generator="make_spliced_set.py", source=src.name, pairs=pairs,
                                                  from_splits=sorted(keep), max_per_pair=max_per_pair, pause=pause,
                                                  seed=seed, n=len(cons), problems=problems))
        (tmp / "README.md").write_text(f"# Spliced Emo-DB retrieval set\n\nBuilt by `make_spliced_set.py` from "
                                       f"`{src.name}` ({len(cons)} utterances).\n\n```\n{__doc__}```\n",
                                       encoding="utf-8")
        corpus.publish_dir(tmp, out)
    for p in problems:
        print("note:", p)
    return out, len(cons)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", help="Emo-DB corpus made by prepare_emodb.py (MSP layout)")
    p.add_argument("out", help="output corpus root (created; must not exist unless --overwrite)")
    p.add_argument("--pairs", default="WT,LF", help="emotion letter pairs, both orders used (default WT,LF: "
                                                   "anger+sadness, boredom+happiness)")
    p.add_argument("--from-splits", default="Train,Development,Test1",
                   help="Split_Set values whose speakers are used, comma list (default all three; Test1 = only "
                        "the test speakers)")
    p.add_argument("--max-per-pair", type=positive_int, default=12,
                   help="at most this many utterances per speaker and ordered pair (default 12)")
    p.add_argument("--pause", type=nonneg_float, default=0.3, help="silence between the parts in seconds (default 0.3)")
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the pair selection")
    p.add_argument("--overwrite", "--force", dest="force", action="store_true",
                   help="(--force: old spelling) replace an existing output folder")
    a = p.parse_args(argv)
    try:
        out, n = make(a.src, a.out, a.pairs, a.from_splits, a.max_per_pair, a.pause, a.seed, a.force)
    except (FileNotFoundError, ValueError) as e:
        raise ToolkitError(str(e)) from None
    print(f"wrote {out}: {n} spliced utterances")
    return out


if __name__ == "__main__":
    run_script(main)
