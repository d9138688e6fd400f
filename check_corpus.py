"""Check an MSP-Podcast corpus: what it holds per split, and every problem by file name.

    python check_corpus.py /data/MSP-Podcast --workers 4 --json report.json

Reads WAV headers only (soundfile.info), so 100k files take a minute or two. Exit status 1 only for
problems that stop training (no label file, missing required columns, labels on another scale or in
disagreeing repeated rows, no Train split, no readable Train audio) or break a protocol (a speaker in two
parts of one fold of Labels/folds.csv); everything else is a warning and the exit status is 0. Every fold of
Labels/folds.csv is listed with its speakers.
"""
import argparse
import functools
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
from tqdm import tqdm

from cli import nonneg_float, nonneg_int, positive_int, run_script
from corpus import (
    DEFAULT_CORPUS,
    EMO_COLS,
    RATING_RANGE,
    USER_SPLITS,
    Corpus,
    CorpusError,
    csv_error,
    textgrid_words,
    user_split,
)
from demo_corpus import ensure_demo_corpus
from outputs import check_outputs
from utils import atomic_write_text, ensure_dir

PROBLEMS = {   # key -> what it means / what to do (printed above the file list)
    'missing_audio': 'label row without audio file (skipped by training; remove the row or add the WAV)',
    'unreadable_audio': 'unreadable WAV (skipped; re-export as 16-bit PCM WAV or remove it)',
    'wrong_format': 'not 16 kHz mono (resampled / mixed down at load time; convert for speed)',
    'short_audio': 'clip shorter than the minimum (padded to one chunk; very little signal)',
    'missing_transcript': 'no Transcripts/<name>.txt (needed by the audio-text method)',
    'empty_transcript': 'transcript without any word (only spaces or punctuation)',
    'missing_textgrid': 'no ForceAligned/<name>.TextGrid (word chunks of the audio-text method)',
    'unreadable_textgrid': 'TextGrid that cannot be parsed',
    'textgrid_no_words': 'TextGrid whose first tier holds no words (only silence)',
    'nan_consensus': 'consensus label missing (NaN), not a number, or outside 1..7 (left out for that attribute)',
    'nan_rating': 'annotator rating missing (NaN); dropped for that attribute',
    'out_of_range_rating': 'annotator rating outside 1..7; dropped for that attribute',
    'no_ratings': 'no valid annotator rating (left out of preference labels / emotion curves)',
    'single_rater': 'only one valid annotator rating (emotion-curve std is 0: constant curve)',
    'empty_split': 'split with zero utterances',
    'unmapped_split': 'Split_Set value outside Train/Validation/Test (e.g. Test2: scripts use it only when named, '
                      '-set Test2)',
    'corpus_warning': 'warning while reading the label files',
    'fold_speaker_overlap': 'speaker in two parts (Train/Validation/Test) of one fold of Labels/folds.csv (fatal: '
                            'the fold is not speaker-independent; rebuild the folds)',
    'fold_speaker_mismatch': 'Labels/folds.csv row whose SpkrID differs from the labels file (the labels file '
                             'is used)',
    'fold_unknown_file': 'Labels/folds.csv row whose FileName has no consensus label row (ignored)',
    'fold_no_speaker': 'Labels/folds.csv row without a speaker (its fold parts cannot be checked)',
    'fold_bad_cell': 'Labels/folds.csv cell that is not Train, Validation, Test or empty',
    'fold_empty_part': 'fold without Train or without Test utterances',
}


def probe(job):
    """Header-only checks of one utterance: (wav, transcript|None, textgrid|None) -> dict."""
    wav, txt, tg = job
    out = {}
    if wav:
        try:
            if os.path.getsize(wav) == 0:
                raise OSError('empty file (0 bytes)')
            info = sf.info(wav)
            out.update(sr=info.samplerate, ch=info.channels, sec=info.frames / max(info.samplerate, 1))
            if info.frames == 0:
                out['audio_error'] = 'the file holds no samples'
        except Exception as e:   # LibsndfileError, RuntimeError, OSError
            out['audio_error'] = str(e).splitlines()[0][:200] or type(e).__name__
    if txt:
        try:
            t = Path(txt).read_text(encoding='utf-8', errors='replace')
            out['text_empty'] = not any(ch.isalnum() for ch in t)
        except OSError:
            out['text_empty'] = True
    if tg:
        try:
            out['n_words'] = len(textgrid_words(tg))
        except CorpusError as e:
            out['tg_error'] = str(e)
    return out


def _listdir(d):
    try:
        return set(os.listdir(d))
    except OSError:
        return None


def _add(problems, key, file, detail=''):
    p = problems.setdefault(key, {'description': PROBLEMS[key], 'items': []})
    p['items'].append({'file': file, 'detail': detail})


def _check_ratings(c, names, rep, add):
    """Annotator ratings (vectorised): NaN / out-of-range ratings, files with 0 or 1 valid rating.
    -> annotators per file (Series over `names`), or None when there are no readable per-annotator labels."""
    try:
        rep['detailed_format'] = c.detailed_format
        r = c.ratings()
    except CorpusError as e:
        if c.detailed_path is None:
            add('corpus_warning', '', str(e))
        else:   # present but malformed: the user meant to use it
            rep['fatal'].append(str(e))
        return None
    r = r[r['FileName'].isin(set(names))]
    nval = {}
    for col in EMO_COLS:
        v = r[col].values
        for i in np.flatnonzero(np.isnan(v)):
            add('nan_rating', r['FileName'].iat[i], f"{r['Worker'].iat[i]} {col}")
        bad = ~np.isnan(v) & ((v < RATING_RANGE[0]) | (v > RATING_RANGE[1]))
        for i in np.flatnonzero(bad):
            add('out_of_range_rating', r['FileName'].iat[i], f"{r['Worker'].iat[i]} {col}={v[i]:g}")
        ok = ~np.isnan(v) & ~bad
        nval[col] = r['FileName'][ok].value_counts().reindex(names, fill_value=0)
    low = np.minimum.reduce([nval[col].values for col in EMO_COLS])
    for i in np.flatnonzero(low <= 1):
        which = ', '.join(col for col in EMO_COLS if nval[col].iat[i] == low[i])
        add('no_ratings' if low[i] == 0 else 'single_rater', names[i], f"{int(low[i])} valid rating(s) for {which}")
    return r.groupby('FileName').size().reindex(names, fill_value=0)


def _file_jobs(c, names, text, rep, add):
    """Which files exist (one directory listing per folder, no stat per file) -> probe jobs per utterance."""
    audio = _listdir(c.audio_dir)
    txts = _listdir(c.transcript_dir) if text else None
    tgs = _listdir(c.textgrid_dir) if text else None
    if text and txts is None:
        add('corpus_warning', '', f"{c.root}: no Transcripts/ folder (needed only by the audio-text method)")
    if text and tgs is None:
        add('corpus_warning', '', f"{c.root}: no ForceAligned/ folder (needed only by the audio-text method)")
    jobs = []
    for n in names:
        stem = n[:-4]
        have = audio is not None and n in audio
        if not have:
            add('missing_audio', n, str(c.audio_path(n)))
        t = txts is not None and (stem + '.txt') in txts
        g = tgs is not None and (stem + '.TextGrid') in tgs
        if txts is not None and not t:
            add('missing_transcript', n)
        if tgs is not None and not g:
            add('missing_textgrid', n)
        jobs.append((str(c.audio_path(n)) if have else None, str(c.transcript_path(n)) if t else None,
                     str(c.textgrid_path(n)) if g else None))
    if audio is not None:
        rep['info']['audio_without_label_row'] = len({f for f in audio if f.lower().endswith('.wav')} - set(names))
    return jobs


def _probe_files(jobs, names, workers, min_seconds, progress, add):
    """Read WAV headers, transcripts and TextGrids (in `workers` processes) -> seconds per file (NaN: no audio)."""
    bar = dict(total=len(jobs), desc='checking files', unit='file', disable=not progress, mininterval=0.5)
    if workers > 1 and len(jobs) > 200:
        with ProcessPoolExecutor(workers) as ex:
            res = list(tqdm(ex.map(probe, jobs, chunksize=max(1, min(256, len(jobs) // (workers * 8)))), **bar))
    else:
        res = [probe(j) for j in tqdm(jobs, **bar)]
    sec = np.full(len(names), np.nan)
    for i, (n, o) in enumerate(zip(names, res)):
        if 'audio_error' in o:
            add('unreadable_audio', n, o['audio_error'])
        elif 'sr' in o:
            sec[i] = o['sec']
            if o['sr'] != 16000 or o['ch'] != 1:
                add('wrong_format', n, f"{o['sr']} Hz, {o['ch']} channel(s)")
            if o['sec'] < min_seconds:
                add('short_audio', n, f"{o['sec']:.2f} s")
        if o.get('text_empty'):
            add('empty_transcript', n)
        if 'tg_error' in o:
            add('unreadable_textgrid', n, o['tg_error'])
        elif o.get('n_words') == 0:
            add('textgrid_no_words', n)
    return sec


def _label_range(v):
    ok = np.isfinite(v).any()
    return [float(np.nanmin(v)) if ok else None, float(np.nanmax(v)) if ok else None]


def _split_summary(c, names, sec, n_ann, rep, add):
    """Per user split (and per release split where several map to one): utterances, readable audio, hours,
    annotators, label ranges."""
    lab, found = c.labels, c.splits_found()
    groups = [(u, u) for u in USER_SPLITS]
    groups += [(f"  {u}/{s}", s) for u in USER_SPLITS if len(found[u]) > 1 for s in found[u]]
    for label, split in groups:
        m = np.isin(names, c.files(split)) if len(names) else np.zeros(0, bool)
        st = {'release_names': found.get(split, [split]), 'utterances': int(m.sum()),
              'readable_audio': int(np.isfinite(sec[m]).sum()), 'hours': float(np.nansum(sec[m]) / 3600)}
        if n_ann is not None and m.any():
            a = n_ann.values[m]
            st['annotators'] = {'min': int(a.min()), 'median': float(np.median(a)), 'max': int(a.max())}
        if m.any():
            st['labels'] = {col: _label_range(lab[col].values[m]) for col in EMO_COLS}
        rep['splits'][label.strip()] = st
        if split in USER_SPLITS and st['utterances'] == 0:
            add('empty_split', split, f"no Split_Set value maps to {split} (found {sorted(set(lab['Split_Set'].dropna()))})")


def _check_folds(c, rep, add):
    """Labels/folds.csv, when present: per fold the utterances and speakers of each part; a speaker in two parts
    of one fold is fatal."""
    names = c.fold_names()
    if not names:
        return
    try:
        f = pd.read_csv(c.folds_path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except Exception as e:   # noqa: BLE001 - any parser error is reported with the file name
        rep['fatal'].append(csv_error(c.folds_path, e))
        return
    f.columns = [str(x).strip() for x in f.columns]
    if 'FileName' not in f.columns:
        rep['fatal'].append(f"{c.folds_path}: no FileName column (columns: {list(f.columns)})")
        return
    fn = f['FileName'].str.strip()
    fn = fn.where(fn.str.lower().str.endswith('.wav'), fn + '.wav')
    lab_spk = c.labels.set_index('FileName')['SpkrID']
    lab_spk = lab_spk[~lab_spk.index.duplicated()]
    known = fn.isin(lab_spk.index)
    # the speakers of the labels file decide (a speaker column of folds.csv that disagrees is reported, not used)
    spk = pd.Series(lab_spk.reindex(fn.values).astype('string').fillna('').str.strip().values, index=f.index)
    spk = spk.where(~spk.str.lower().isin(['unknown', 'nan']), '').str.replace(r'\.0$', '', regex=True)
    if 'SpkrID' in f.columns:
        theirs = f['SpkrID'].str.strip().str.replace(r'\.0$', '', regex=True)
        for i in np.flatnonzero((known & (theirs != '') & (spk != '') & (theirs != spk)).values):
            add('fold_speaker_mismatch', fn.iat[i], f"folds.csv says {theirs.iat[i]}, the labels file {spk.iat[i]}")
    for n in fn[~known]:
        add('fold_unknown_file', n)
    for n in fn[known & (spk == '')]:
        add('fold_no_speaker', n)
    ok = known & (spk != '')
    rep['folds'] = {}
    for name in names:
        cell = f[name].str.strip()
        part = cell.map(user_split)
        for i in np.flatnonzero((cell != '').values & part.isna().values):
            add('fold_bad_cell', fn.iat[i], f"{name}={cell.iat[i]!r}")
        st = {}
        for u in USER_SPLITS:
            m = ok & (part == u)
            st[u] = {'utterances': int((known & (part == u)).sum()), 'speakers': sorted(set(spk[m]), key=_spk_key)}
        rep['folds'][name] = st
        for u in ('Train', 'Test'):
            if st[u]['utterances'] == 0:
                add('fold_empty_part', name, f"no {u} utterances")
        where = {}
        for u in USER_SPLITS:
            for s in st[u]['speakers']:
                where.setdefault(s, []).append(u)
        for s, parts in where.items():
            if len(parts) > 1:
                add('fold_speaker_overlap', name, f"speaker {s} in {' and '.join(parts)}")
                rep['fatal'].append(f"{c.folds_path}: {name}: speaker {s} is in {' and '.join(parts)}; every fold "
                                    f"must be speaker-disjoint")


def _spk_key(s):
    return (0, int(s), s) if s.isdigit() else (1, 0, s)


def check(root, workers=1, min_seconds=1.0, text=True, progress=True):
    """Return the report dict (see --json). Never raises for bad corpora: fatal problems are listed."""
    rep = {'root': str(root), 'fatal': [], 'splits': {}, 'problems': {}, 'info': {}}
    add = functools.partial(_add, rep['problems'])
    try:
        c = Corpus(root, echo=False)      # its label warnings are listed in the report
    except CorpusError as e:
        rep['fatal'].append(str(e))
        return rep
    rep.update(consensus_file=str(c.consensus_path), detailed_file=c.detailed_path and str(c.detailed_path),
               audio_dir=str(c.audio_dir), splits_found=c.splits_found())
    for w in c.warnings:
        add('corpus_warning', '', w)
    for s in c.unmapped_splits():
        add('unmapped_split', '', f"{s} ({int((c.labels['Split_Set'] == s).sum())} utterances)")
    lab = c.labels
    names = lab['FileName'].tolist()
    n_ann = _check_ratings(c, names, rep, add)
    for col in EMO_COLS:
        v = lab[col].values
        for i in np.flatnonzero(~((v >= RATING_RANGE[0]) & (v <= RATING_RANGE[1]))):
            add('nan_consensus', names[i], f"{col}={c.bad_labels.get((col, names[i]), 'nan')}")
    jobs = _file_jobs(c, names, text, rep, add)
    sec = _probe_files(jobs, names, workers, min_seconds, progress, add)
    _split_summary(c, names, sec, n_ann, rep, add)
    _check_folds(c, rep, add)
    train = rep['splits']['Train']
    if train['utterances'] == 0:
        rep['fatal'].append(f"{c.consensus_path}: no Train utterances (Split_Set values: "
                            f"{sorted(set(lab['Split_Set'].dropna()))}); training needs a Train split")
    elif train['readable_audio'] == 0:
        rep['fatal'].append(f"{c.audio_dir}: none of the {train['utterances']} Train "
                            f"utterances has readable audio; check the Audio/ or Audios/ folder")
    for p in rep['problems'].values():
        p['count'] = len(p['items'])
    return rep


def print_report(rep, max_list=20, out=None):
    out = sys.stdout if out is None else out

    def pr(*a):
        print(*a, file=out)
    pr(f"corpus: {rep['root']}")
    if 'consensus_file' in rep:
        pr(f"labels: {rep['consensus_file']}; per-annotator: {rep.get('detailed_file')} "
           f"({rep.get('detailed_format')}); audio: {rep['audio_dir']}")
        pr('splits found: ' + ', '.join(f"{u} <- {'|'.join(v) or 'none'}" for u, v in rep['splits_found'].items()))
        pr(f"\n{'split':<18}{'utts':>7}{'audio ok':>9}{'hours':>8}  {'annot. min/med/max':<20}labels (min..max)")
        for name, st in rep['splits'].items():
            a = st.get('annotators')
            a = f"{a['min']}/{a['median']:g}/{a['max']}" if a else '-'
            lb = ' '.join(f"{k[3:]} {v[0]:.2f}..{v[1]:.2f}" if v[0] is not None else f"{k[3:]} -"
                          for k, v in st.get('labels', {}).items()) or '-'
            pr(f"{name:<18}{st['utterances']:>7}{st['readable_audio']:>9}{st['hours']:>8.3f}  {a:<20}{lb}")
        for name, st in rep.get('folds', {}).items():
            pr(f"{name}: " + '; '.join(f"{u} {v['utterances']} utts, speakers {' '.join(v['speakers']) or '-'}"
                                      for u, v in st.items()))
        if rep['info'].get('audio_without_label_row'):
            pr(f"({rep['info']['audio_without_label_row']} WAV files have no label row; ignored)")
    n_warn = sum(p['count'] for p in rep['problems'].values())
    if rep['problems']:
        pr(f"\nwarnings ({n_warn}):")
    for key, p in rep['problems'].items():
        pr(f"[{key}] {p['count']} x {p['description']}")
        items = p['items'] if max_list <= 0 else p['items'][:max_list]
        for it in items:
            pr('   ' + ': '.join(x for x in (it['file'], it['detail']) if x))
        if len(items) < p['count']:
            pr(f"   ... and {p['count'] - len(items)} more (--max-list 0 or --json OUT lists all)")
    for f in rep['fatal']:
        pr(f"\nFATAL: {f}")
    pr('\n' + ('FAILED: fix the fatal problems above before training' if rep['fatal'] else
               f"OK: usable for training ({n_warn} warnings)"))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('root', nargs='?', default=DEFAULT_CORPUS,
                    help=f'corpus root holding Audio(s)/ and Labels/ (default: the demo corpus {DEFAULT_CORPUS})')
    ap.add_argument('--workers', type=positive_int, default=min(4, os.cpu_count() or 1),
                    help='processes reading WAV headers and TextGrids (default: min(4, CPUs))')
    ap.add_argument('--json', metavar='OUT', help='also save the full report (every file) as JSON here')
    ap.add_argument('--max-list', type=nonneg_int, default=20,
                    help='file names printed per problem kind; 0 prints all (default 20)')
    ap.add_argument('--min-seconds', type=nonneg_float, default=1.0,
                    help='clips shorter than this are reported (default 1.0 s, one chunk)')
    ap.add_argument('--no-text', action='store_true', help='skip the transcript and TextGrid checks')
    ap.add_argument('--no-progress', action='store_true', help='hide the progress bar')
    args = ap.parse_args(argv)
    try:
        root = ensure_demo_corpus(args.root)
    except CorpusError as e:
        print(f"FATAL: {e}", file=sys.stderr)
        return 1
    if args.json:   # the report may not replace a file of the corpus it checks (e.g. its label file)
        js = Path(args.json).resolve()
        check_outputs([(args.json, '--json')], [(js, 'a file of the corpus')] if js.is_file() and
                      Path(root).resolve() in js.parents else [])
        ensure_dir(Path(args.json).parent, flag='--json')
    rep = check(root, workers=args.workers, min_seconds=args.min_seconds, text=not args.no_text,
                progress=not args.no_progress)
    print_report(rep, args.max_list)
    if args.json:
        out = Path(args.json)
        atomic_write_text(out, json.dumps(rep, indent=1, default=str))
        print(f"report saved to {out}")
    return 1 if rep['fatal'] else 0


if __name__ == '__main__':
    sys.exit(run_script(main))
