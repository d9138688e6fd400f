"""Convert Emo-DB (Berlin Database of Emotional Speech) to the MSP-Podcast layout: the Emo-DB command of
earlier releases, kept as it was; the converter itself is corpora/emodb.py (also `prepare_corpus.py emodb`).

    python prepare_emodb.py ../shared/datasets/emodb data/emodb
    python prepare_emodb.py ../shared/datasets/emodb data/emodb_loso03 --loso 03
"""
import argparse

import pandas as pd

from cli import run_script, seed_int
from corpora import emodb
from corpora.emodb import (  # noqa: F401 - the names earlier code and tests use from this module
    EMOTIONS,
    N_RATERS,
    NAME_RE,
    POOL,
    SENTENCES,
    SPEAKERS,
    SR,
    group_syllables,
    pad_labels,
    prepare,
    read_recognition,
    read_silb,
    scan,
    splits,
    spread_words,
)
from errors import ToolkitError

__doc__ += emodb.__doc__


def main(argv=None):
    p = argparse.ArgumentParser(description="Convert Emo-DB to the MSP-Podcast layout (16 kHz, transcripts, "
                                "TextGrids, PAD labels, simulated raters, speaker-disjoint splits).",
                                epilog=emodb.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", help="Emo-DB root holding wav/, silb/ and erkennung.txt")
    p.add_argument("out", help="output corpus root (created; must not exist unless --overwrite)")
    p.add_argument("--test-speakers", default="03,08", help="comma list of Test1 speakers (default 03,08)")
    p.add_argument("--dev-speakers", default="09,10", help="comma list of Development speakers (default 09,10)")
    p.add_argument("--loso", default=None, help="leave-one-speaker-out: this speaker is Test1, the next in the "
                                               "list is Development (overrides --test/--dev-speakers)")
    p.add_argument("--speakers", default=None, help="only convert these speakers (comma list; for quick tests)")
    p.add_argument("--consensus", choices=["table", "raters"], default="table",
                   help="consensus A/V/D: the PAD table value (default) or the mean of the simulated raters")
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the simulated raters")
    p.add_argument("--overwrite", "--force", dest="force", action="store_true",
                   help="(--force: old spelling) replace an existing output folder")
    a = p.parse_args(argv)
    try:
        out, problems = prepare(a.src, a.out, a.test_speakers, a.dev_speakers, a.loso, a.speakers, a.consensus,
                                a.seed, a.force)
    except (FileNotFoundError, ValueError) as e:
        raise ToolkitError(str(e)) from None
    lab = pd.read_csv(out / "Labels" / "labels_consensus.csv")
    for pr in problems:
        print("note:", pr)
    print(f"wrote {out}: {len(lab)} utterances; per split "
          f"{ {k: sorted(int(x) for x in v) for k, v in lab.groupby('Split_Set')['SpkrID'].unique().items()} }")
    return out


if __name__ == "__main__":
    run_script(main)
