"""What the corpus converters share (docs/corpora.md): the category -> A/V/D table, the 1-5 -> 1-7 mapping, audio
linking, the skipped-item report, speaker-disjoint folds, and writing a converted corpus in the MSP-Podcast
layout that corpus.Corpus reads.

A converter builds a list of `Utt` (one per utterance) and rater rows, then calls `write_corpus`, which stages
the corpus next to OUT and publishes it only when it is complete (corpus.staged_dir / publish_dir).
"""
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import soundfile as sf

from audio import NOTE_KINDS, wav_claimed_seconds
from corpus import (
    LABEL_COLS,
    emo_detail,
    publish_dir,
    refuse_existing,
    staged_dir,
    write_json,
    write_labels,
    write_textgrid,
)
from errors import ToolkitError

# Category -> (valence, arousal, dominance) on -1..1 (Mehrabian-style PAD points). The first seven are the table
# prepare_emodb.py has always used (Emo-DB's categories); 'calm' and 'surprise' (RAVDESS) are this toolkit's own
# placement, not taken from a published table. Mapped to the 1-7 scale as 4 + 3 * s * x, s the intensity scale.
CATEGORY_PAD = {
    'anger': (-0.51, 0.59, 0.25),
    'boredom': (-0.65, -0.62, -0.33),
    'disgust': (-0.60, 0.35, 0.11),
    'fear': (-0.64, 0.60, -0.43),
    'happiness': (0.76, 0.48, 0.35),
    'sadness': (-0.63, -0.27, -0.33),
    'neutral': (0.0, 0.0, 0.0),
    'calm': (0.40, -0.60, 0.10),        # toolkit's choice: pleasant, low arousal, slightly dominant
    'surprise': (0.20, 0.70, -0.10),    # toolkit's choice: mildly pleasant, high arousal, slightly submissive
}
# unified category name -> MSP-Podcast class name (EmoDetail's primary emotion)
MSP_CLASS = {'anger': 'Angry', 'boredom': 'Other', 'disgust': 'Disgust', 'fear': 'Fear', 'happiness': 'Happy',
             'sadness': 'Sad', 'neutral': 'Neutral', 'calm': 'Other', 'surprise': 'Surprise',
             'frustration': 'Other', 'excitement': 'Happy', 'contempt': 'Contempt', 'other': 'Other',
             'no_agreement': 'Other'}
AUDIO_MODES = ('symlink', 'hardlink', 'copy')
SKIPPED_FILE = 'skipped.csv'
TRUNCATED_SECONDS = 0.01      # as audio.measure_notes: a WAV missing more than this is a truncated copy


class LayoutError(ToolkitError):
    """The source folder is not the corpus named on the command line; the message says what was expected."""


def pad_avd(category, scale=1.0):
    """Category (unified name) and intensity scale 0..1 -> (EmoAct, EmoVal, EmoDom) on 1..7 (4 + 3 * scale * x)."""
    v, a, d = CATEGORY_PAD[category]
    return tuple(round(4 + 3 * scale * x, 4) for x in (a, v, d))


def five_to_seven(x):
    """A rating on the 1-5 scale (IEMOCAP, MSP-IMPROV) -> the 1-7 scale, linearly: 1 + (x - 1) * 1.5."""
    return 1.0 + (float(x) - 1.0) * 1.5


class Report:
    """Every item a converter leaves out (and every note), with its reason; written to OUT/skipped.csv and
    printed, so nothing is dropped silently."""

    def __init__(self):
        self.rows = []

    def skip(self, item, reason):
        self.rows.append(('skipped', str(item), reason))

    def note(self, item, reason):
        self.rows.append(('note', str(item), reason))

    @property
    def skipped(self):
        return [(i, r) for k, i, r in self.rows if k == 'skipped']

    @property
    def notes(self):
        return [(i, r) for k, i, r in self.rows if k == 'note']

    def write(self, folder):
        pd.DataFrame(self.rows, columns=['Kind', 'Item', 'Reason']).to_csv(Path(folder) / SKIPPED_FILE, index=False)

    def print(self, out, max_list=30):
        for kind, rows in (('skipped', self.skipped), ('note', self.notes)):
            for item, reason in rows[:max_list]:
                print(f'{kind}: {item}: {reason}')
            if len(rows) > max_list:
                print(f'... and {len(rows) - max_list} more {kind} items (all in {Path(out) / SKIPPED_FILE})')


@dataclass
class Utt:
    """One converted utterance: its source audio, speaker, labels and (optional) text."""
    name: str                 # FileName stem in the converted corpus
    audio: Path               # source audio file
    speaker: str
    gender: str               # 'Male' | 'Female' | ''
    emo_class: str            # the corpus's own category code (EmoClass)
    category: str             # unified category name (Category)
    act: float
    val: float
    dom: float
    source: str               # 'raters' | 'derived'
    derived_from: str = ''    # '' | 'listener categories' | 'intended category'
    extra: dict = field(default_factory=dict)
    transcript: str = None
    words: list = None        # [(start, end, word)] or None


def link_audio(src, dst, mode):
    """Put the source audio at dst without converting it: an absolute symlink, a hardlink (falls back to a copy
    across file systems) or a copy."""
    src = Path(src).resolve()
    if mode == 'symlink':
        os.symlink(src, dst)
    elif mode == 'hardlink':
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)
    elif mode == 'copy':
        shutil.copy2(src, dst)
    else:
        raise ToolkitError(f'--audio {mode}: use one of {", ".join(AUDIO_MODES)}')


def audio_seconds(path, report, item):
    """Duration from the header, or None (reported) when the file is missing, unreadable, shorter than its WAV
    header claims (a truncated copy: its labels describe audio that is not there) or digitally silent (every
    sample zero: nothing a label could describe). The checks are audio.py's input checks."""
    p = Path(path)
    if not p.is_file():
        report.skip(item, f'audio file missing: {p}')
        return None
    try:
        info = sf.info(str(p))
    except Exception as e:  # noqa: BLE001 - any libsndfile error is reported with the file name
        report.skip(item, f'unreadable audio {p} ({str(e).splitlines()[0][:120]})')
        return None
    if info.frames == 0:
        report.skip(item, f'audio file holds no samples: {p}')
        return None
    claim = wav_claimed_seconds(p)
    if claim and claim[0] - claim[1] > TRUNCATED_SECONDS:
        report.skip(item, f'{NOTE_KINDS["truncated"]} claims: {claim[1]:.2f} s of {claim[0]:.2f} s present '
                          f'(truncated copy): {p}')
        return None
    if digital_silence(p):
        report.skip(item, f'{NOTE_KINDS["digital_silence"]} (all samples zero), not speech: {p}')
        return None
    return info.frames / info.samplerate


def digital_silence(path, block=4096):
    """True when every sample of the file is zero (read block by block; stops at the first non-zero one)."""
    return not any(x.any() for x in sf.blocks(str(path), blocksize=block, dtype='float32', always_2d=True))


# ------------------------------------------------------------------------------------------- folds
def session_folds(utts, report):
    """Leave-one-session-out folds (IEMOCAP, MSP-IMPROV): the speakers of each `Session`, rotated; none (and a
    note in the report) with fewer than 3 sessions."""
    groups = {}
    for u in utts:
        groups.setdefault(u.extra['Session'], set()).add(u.speaker)
    folds = rotation_folds([sorted(groups[s]) for s in sorted(groups)]) if len(groups) >= 3 else []
    if utts and not folds:
        report.note('folds', f'{len(groups)} session(s): too few for leave-one-session-out folds (need 3)')
    return folds


def rotation_folds(groups):
    """Disjoint speaker groups [[spk, ...], ...] (K >= 3) -> [{spk: 'Train'|'Validation'|'Test'}] with K folds:
    fold k tests group k, validates on group k+1 (cyclic, so inside what would otherwise be training) and trains
    on the rest. Every speaker is tested exactly once."""
    groups = [list(g) for g in groups if g]
    if len(groups) < 3:
        raise ToolkitError(f'{len(groups)} speaker group(s): folds need at least 3 (test, validation, train)')
    out = []
    for k in range(len(groups)):
        f = {s: 'Train' for g in groups for s in g}
        f.update({s: 'Validation' for s in groups[(k + 1) % len(groups)]})
        f.update({s: 'Test' for s in groups[k]})
        out.append(f)
    return out


def sex_balanced_groups(speakers, gender, n_groups):
    """Deal speakers into `n_groups` groups: males (sorted) round robin, then females continuing the count, so every
    group has about the same number of each sex."""
    males = sorted(s for s in speakers if gender[s] == 'Male')
    others = sorted(s for s in speakers if gender[s] != 'Male')
    groups = [[] for _ in range(n_groups)]
    for i, s in enumerate(males + others):
        groups[i % n_groups].append(s)
    return groups


# ------------------------------------------------------------------------------------------- writing
def write_corpus(out, name, utts, raters, folds, report, info, audio_mode='symlink', force=False,
                 extra_cols=(), votes=None, readme=''):
    """Write the converted corpus at `out` (staged, published when complete) -> Path.

    utts: [Utt]; raters: [(FileName stem, worker, msp class, [secondary], act, val, dom, source)];
    folds: [{speaker: part}] (fold1 also fills Split_Set); info: dict for Labels/<name>_info.json;
    extra_cols: Utt.extra keys written as consensus columns; votes: optional DataFrame written as
    Labels/category_votes.csv."""
    out = Path(out)
    refuse_existing(out, force)
    if not utts:
        raise ToolkitError(f'{name}: no utterance could be converted ({len(report.skipped)} skipped; first: '
                           f'{report.skipped[:3]})')
    with staged_dir(out, ('Audios', 'Labels')) as tmp:
        keep = []
        for u in utts:
            dur = audio_seconds(u.audio, report, u.name)
            if dur is None:
                continue
            link_audio(u.audio, tmp / 'Audios' / f'{u.name}.wav', audio_mode)
            if u.transcript is not None:
                (tmp / 'Transcripts').mkdir(exist_ok=True)
                (tmp / 'Transcripts' / f'{u.name}.txt').write_text(u.transcript.strip() + '\n', encoding='utf-8')
            if u.words is not None:
                (tmp / 'ForceAligned').mkdir(exist_ok=True)
                write_textgrid(tmp / 'ForceAligned' / f'{u.name}.TextGrid', u.words, dur)
            keep.append((u, dur))
        if not keep:
            raise ToolkitError(f'{name}: none of the {len(utts)} utterances has readable audio '
                               f'(first problem: {report.skipped[:1]})')
        kept = {u.name for u, _ in keep}
        default = folds[0] if folds else {}
        cols = ['Category', 'LabelSource', 'DerivedFrom', 'Duration'] + list(extra_cols)
        cons = [(f'{u.name}.wav', u.emo_class, u.act, u.val, u.dom, u.speaker, u.gender, default.get(u.speaker, ''),
                 u.category, u.source, u.derived_from, round(dur, 4), *[u.extra.get(c, '') for c in extra_cols])
                for u, dur in keep]
        det = [(f'{n}.wav', emo_detail(w, cls, sec, a, v, d), src) for n, w, cls, sec, a, v, d, src in raters
               if n in kept]
        write_labels(tmp, cons, det, extra_cols=cols, detail_extra_cols=['LabelSource'])
        if folds:
            fr = pd.DataFrame({'FileName': [f'{u.name}.wav' for u, _ in keep], 'SpkrID': [u.speaker for u, _ in keep]})
            for k, f in enumerate(folds, 1):
                fr[f'fold{k}'] = fr['SpkrID'].map(f).fillna('')
            fr.to_csv(tmp / 'Labels' / 'folds.csv', index=False)
        if votes is not None:
            votes[votes['FileName'].str[:-4].isin(kept)].to_csv(tmp / 'Labels' / 'category_votes.csv', index=False)
        report.write(tmp)
        n_src = pd.Series([u.source for u, _ in keep]).value_counts().to_dict()
        fold_spk = [{p: sorted({s for s, q in f.items() if q == p}) for p in ('Train', 'Validation', 'Test')}
                    for f in folds]
        write_json(tmp / 'Labels' / f'{name}_info.json',
                   {**info, 'corpus': name, 'utterances': len(keep), 'speakers': len({u.speaker for u, _ in keep}),
                    'label_source_counts': n_src, 'per_rater_rows': len(det), 'audio': audio_mode,
                    'folds': fold_spk, 'skipped': len(report.skipped), 'notes': len(report.notes)})
        (tmp / 'README.md').write_text(f'# {name} in the MSP-Podcast layout\n\nBuilt by `prepare_corpus.py {name}` '
                                       f'(docs/corpora.md).\n\n{readme}\n', encoding='utf-8')
        publish_dir(tmp, out)
    return out


def check_columns(df, path, need):
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise LayoutError(f'{path}: missing column(s) {missing}; columns found: {list(df.columns)}')


__all__ = ['CATEGORY_PAD', 'MSP_CLASS', 'AUDIO_MODES', 'LABEL_COLS', 'LayoutError', 'Report', 'Utt', 'pad_avd',
           'five_to_seven', 'link_audio', 'rotation_folds', 'sex_balanced_groups', 'write_corpus', 'check_columns']


def convert(name, read, info, extra, readme, src, out, report=None, **kw):
    """What every converter's convert() does: read(src, report, **kw) -> (utts, raters, folds[, votes]), then
    write_corpus -> (Path, Report)."""
    report = report or Report()
    utts, raters, folds, *votes = read(src, report, **kw)
    names = pd.Series([u.name for u in utts])
    if names.duplicated().any():   # each converter lists repeated names; this guards against one that does not
        raise ToolkitError(f'{name}: utterance name(s) {sorted(set(names[names.duplicated()]))[:5]} read twice from '
                           f'{src}; nothing written')
    out = write_corpus(out, name, utts, raters, folds, report, info, kw.get('audio', 'symlink'),
                       kw.get('force', False), extra, votes=votes[0] if votes else None, readme=readme)
    return out, report
