"""Build the embedded demo corpus: synthetic eSpeak NG speech in the MSP-Podcast layout.

    python make_demo_corpus.py                       # -> data/demo_corpus (420 utterances)
    python make_demo_corpus.py --text-source ../shared/datasets/emobank --out data/emobank_tts

12 voices in speaker-disjoint splits (Train 8, Development 2, Test1 2); valence comes from the text,
arousal and dominance drive the prosody, and arousal moves within each utterance (flat, rising,
falling, peak; the truth per segment and per 1-s window is in ChunkTruth/chunk_truth.json). 5-8
simulated raters per utterance in the v1.11 EmoDetail format. With --text-source the sentences and the
real per-rater reader ratings come from EmoBank. The same arguments give byte-identical files; an
interrupted build leaves no half corpus. The corpus README.md says how it was made (demo_corpus.py).
"""
import argparse
import json
import time

import pandas as pd

from cli import positive_int, run_script, seed_int
from demo_corpus import build


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="data/demo_corpus", help="corpus root to create (default data/demo_corpus)")
    p.add_argument("--n", type=positive_int, default=420, help="number of utterances (default 420)")
    p.add_argument("--seed", type=seed_int, default=0, help="random seed; same seed -> identical files")
    p.add_argument("--text-source", default=None,
                   help="EmoBank folder (e.g. ../shared/datasets/emobank or its corpus/): use its sentences and "
                        "real per-rater reader ratings instead of the built-in sentence bank")
    p.add_argument("--workers", type=positive_int, default=2, help="synthesis processes (default 2)")
    p.add_argument("--overwrite", "--force", dest="force", action="store_true",
                   help="(--force: old spelling) replace an existing corpus at --out")
    a = p.parse_args(argv)
    t = time.time()
    root = build(a.out, a.n, a.seed, a.text_source, a.workers, a.force)
    lab = pd.read_csv(root / "Labels" / "labels_consensus.csv")
    durs = [v["duration"] for v in json.loads((root / "ChunkTruth" / "chunk_truth.json").read_text()).values()]
    print(f"wrote {root}: {len(lab)} utterances, {sum(durs) / 60:.1f} min audio "
          f"({min(durs):.1f}-{max(durs):.1f} s), splits {lab['Split_Set'].value_counts().to_dict()}, "
          f"{time.time() - t:.1f} s")
    return root


if __name__ == "__main__":
    run_script(main)
