"""Convert an SER corpus, as its distributor ships it, to the MSP-Podcast layout the toolkit reads, with
speaker-independent folds (Labels/folds.csv; docs/corpora.md).

    python prepare_corpus.py iemocap    /data/IEMOCAP_full_release data/iemocap
    python prepare_corpus.py msp-improv /data/MSP-IMPROV           data/msp-improv
    python prepare_corpus.py crema-d    /data/CREMA-D              data/crema-d
    python prepare_corpus.py ravdess    ../shared/datasets/ravdess data/ravdess
    python prepare_corpus.py emodb      ../shared/datasets/emodb   data/emodb

Writes OUT/Audios (links to the source audio: the toolkit resamples any rate when it reads audio; Emo-DB is
resampled to 16 kHz as prepare_emodb.py does), Labels/labels_consensus.csv (with Category, LabelSource =
raters | derived, DerivedFrom and per-corpus columns), Labels/labels_detailed.csv (v1.11 EmoDetail, one row
per rating, with LabelSource), Labels/folds.csv, Labels/<name>_info.json, Transcripts/ and ForceAligned/
where the corpus has them, and OUT/skipped.csv: every item left out or noted, with its reason (also printed).
Then: python check_corpus.py OUT, and --fold K in training/testing.
"""
import sys
import time

from cli import nonneg_int, run_script, seed_int
from corpora import CONVERTERS, get
from corpora.common import AUDIO_MODES, Report
from errors import ToolkitError
from outputs import check_replaced_folder

ONLY = {'self_evaluations': ('iemocap', '--self-evaluations'), 'song': ('ravdess', '--song'),
        'consensus': ('emodb', '--consensus'), 'seed': ('emodb', '--seed'), 'mode': ('crema-d', '--mode')}


def build_parser():
    import argparse
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('name', choices=list(CONVERTERS), help='which corpus SRC holds')
    p.add_argument('src', help='the corpus folder as distributed (IEMOCAP_full_release, the MSP-IMPROV root with '
                   'Evaluation.txt, the CREMA-D root with AudioWAV/, the RAVDESS folder with Actor_NN/, the Emo-DB '
                   'root with wav/)')
    p.add_argument('out', help='output corpus root (created; must not exist unless --overwrite)')
    p.add_argument('--audio', default='symlink', choices=AUDIO_MODES,
                   help='how OUT/Audios holds the audio: absolute symlinks to SRC (default; keep SRC in place), '
                        'hardlinks (same file system; falls back to copies) or copies. Not for emodb (resampled)')
    p.add_argument('--speakers', default=None, help='only these speakers, comma list (quick runs): IEMOCAP Ses01F, '
                   'MSP-IMPROV F01, CREMA-D 1001, RAVDESS 01, Emo-DB 03')
    p.add_argument('--overwrite', '--force', dest='force', action='store_true',
                   help='replace an existing OUT (when the new one is complete; --force is the old spelling)')
    p.add_argument('--max-list', type=nonneg_int, default=30, help='skipped/noted items printed per kind (all are in '
                   'OUT/skipped.csv)')
    g = p.add_argument_group('corpus-specific')
    g.add_argument('--self-evaluations', action='store_true', help='iemocap: keep the actors\' self-evaluations '
                   '(raters F1, M1, ...) as per-rater rows (workers self-F1, ...); left out by default')
    g.add_argument('--mode', default=None, choices=['voice', 'face', 'audiovisual'], help='crema-d: the '
                   'presentation mode whose listener responses become the labels: voice (default: the raters heard '
                   'the audio only, as an audio model does), face (video without sound) or audiovisual; every '
                   'mode\'s vote, agreement and mean level are kept in their own columns either way')
    g.add_argument('--song', action='store_true', help='ravdess: include the song files (vocal channel 02); '
                   'without it they are left out and listed')
    g.add_argument('--consensus', default=None, choices=['table', 'raters'], help='emodb: consensus A/V/D from '
                   'the category table (default) or the mean of the simulated raters')
    g.add_argument('--seed', type=seed_int, default=None, help='emodb: seed of the simulated raters (default 0)')
    return p


def main(argv=None):
    a = build_parser().parse_args(argv)
    for dest, (corpus, flag) in ONLY.items():
        if getattr(a, dest) not in (None, False) and a.name != corpus:
            raise ToolkitError(f'{flag} is for {corpus} only, not {a.name}')
    if a.name == 'emodb' and a.audio != 'symlink':
        raise ToolkitError('--audio: emodb audio is always resampled to 16 kHz (as prepare_emodb.py does)')
    spk = [s.strip() for s in a.speakers.split(',') if s.strip()] if a.speakers is not None else None
    if spk == []:
        raise ToolkitError(f'--speakers {a.speakers!r} names no speaker; give a comma list (e.g. --speakers 01,02) '
                           f'or leave it out for every speaker')
    opts = dict(audio=a.audio, force=a.force, self_evaluations=a.self_evaluations, song=a.song, speakers=spk)
    if a.name == 'crema-d':
        opts.update(mode=a.mode or 'voice')
    if a.name == 'emodb':
        opts.update(speakers=a.speakers, seed=a.seed or 0, consensus=a.consensus or 'table')
    check_replaced_folder(a.out, 'OUT', [(a.src, f'the {a.name} source')])
    t0 = time.time()
    try:
        out, report = get(a.name).convert(a.src, a.out, **opts)
    except FileNotFoundError as e:
        raise ToolkitError(str(e)) from None
    except ToolkitError as e:
        if spk and 'no utterance could be converted' in str(e):
            raise ToolkitError(f'--speakers {",".join(spk)}: no utterance of these speakers could be converted from '
                               f'{a.src} (check the speaker IDs, as the converter names them in SpkrID); {e}') from None
        raise
    report = report or Report()
    report.print(out, a.max_list)
    import pandas as pd
    lab = pd.read_csv(out / 'Labels' / 'labels_consensus.csv', dtype=str)
    folds = pd.read_csv(out / 'Labels' / 'folds.csv', nrows=0).columns[2:].tolist() \
        if (out / 'Labels' / 'folds.csv').exists() else []
    print(f'wrote {out}: {len(lab)} utterances, {lab["SpkrID"].nunique()} speakers, {len(folds)} folds, '
          f'{len(report.skipped)} items skipped, {len(report.notes)} notes ({out / "skipped.csv"}); '
          f'{time.time() - t0:.1f} s')
    return out


if __name__ == '__main__':
    sys.exit(run_script(main))
