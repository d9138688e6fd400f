"""RAVDESS (Ryerson Audio-Visual Database of Emotional Speech and Song; Livingstone and Russo, PLoS ONE 2018),
speech part as distributed: Actor_NN/MM-VV-EE-II-SS-RR-AA.wav (48 kHz).

File-name fields: MM modality (01 audio-video, 02 video-only, 03 audio-only), VV vocal channel (01 speech,
02 song), EE emotion (01 neutral, 02 calm, 03 happy, 04 sad, 05 angry, 06 fearful, 07 disgust, 08 surprised),
II intensity (01 normal, 02 strong), SS statement (01 "Kids are talking by the door", 02 "Dogs are sitting by
the door"), RR repetition, AA actor (odd male, even female).

- Labels: the portrayed (intended) emotion; no listener ratings come with the audio. A/V/D are derived from
  the category table (corpora/common.py) scaled by the intensity (normal 0.75, strong 1.0; neutral stays 4),
  LabelSource = derived, DerivedFrom = intended category. labels_detailed.csv holds one row per utterance,
  worker INTENDED, with the same derived values (the toolkit's preference labels need a rating per file).
- Song files (VV = 02) are left out and listed in skipped.csv unless --song; files of another modality than
  audio-only (MM 01/02, video containers) are left out and listed.
- Transcripts: the statement text. No word alignments are distributed.
- Folds: groups of 2 male + 2 female actors (actors 1-4, 5-8, ... in the full corpus: 6 folds); with fewer
  than 3 such groups, groups of 1 male + 1 female; with fewer than 3 of those, one actor per group (the
  shared copy with actors 01-04 gives 4 folds: test one actor, validate on the next, train on the other two).
"""
import re
from pathlib import Path

from corpora import common
from corpora.common import MSP_CLASS, LayoutError, Utt, pad_avd, rotation_folds

NAME = 'ravdess'
FILE_RE = re.compile(r'^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$')
EMOTION = {'01': 'neutral', '02': 'calm', '03': 'happiness', '04': 'sadness', '05': 'anger', '06': 'fear',
           '07': 'disgust', '08': 'surprise'}
INTENSITY = {'01': ('normal', 0.75), '02': ('strong', 1.0)}
STATEMENT = {'01': 'Kids are talking by the door.', '02': 'Dogs are sitting by the door.'}
EXTRA = ['IntendedCategory', 'Intensity', 'Statement', 'Repetition', 'VocalChannel', 'Actor']


def check_layout(src):
    src = Path(src)
    actors = sorted(p for p in src.glob('Actor_*') if p.is_dir()) if src.is_dir() else []
    if not actors or not any(FILE_RE.match(f.stem) for a in actors for f in a.glob('*.wav')):
        raise LayoutError(f'{src} is not RAVDESS as distributed: expected Actor_NN/ folders holding '
                          f'MM-VV-EE-II-SS-RR-AA.wav files (e.g. Actor_01/03-01-05-02-01-01-01.wav)')
    return actors


def groups_of(actors, gender):
    """Speaker groups for the folds (see the module docstring)."""
    males = sorted(a for a in actors if gender[a] == 'Male')
    females = sorted(a for a in actors if gender[a] == 'Female')
    for per in (2, 1):
        n = min(len(males), len(females)) // per
        if n >= 3:
            groups = [males[i * per:(i + 1) * per] + females[i * per:(i + 1) * per] for i in range(n)]
            rest = males[n * per:] + females[n * per:]
            for i, a in enumerate(rest):   # unpaired actors join the groups in turn
                groups[i % n].append(a)
            return groups
    return [[a] for a in sorted(actors)]


def read(src, report, song=False, speakers=None, **_):
    """-> (utts, rater rows, folds)."""
    actors = check_layout(src)
    utts, raters = [], []
    places = {}
    for adir in actors:
        for f in adir.iterdir():
            if f.suffix.lower() == '.wav':
                places.setdefault(f.stem, []).append(f'{adir.name}/{f.name}')
    for adir in actors:
        for f in sorted(adir.iterdir()):
            if len(places.get(f.stem, ())) > 1 and f.suffix.lower() == '.wav':
                report.skip(f'{adir.name}/{f.name}', f'the same recording name in {len(places[f.stem])} places '
                                                     f'({", ".join(sorted(places[f.stem]))}): left out')
                continue
            if f.suffix.lower() != '.wav':
                if f.is_file() and not f.name.startswith('.'):
                    report.skip(f'{adir.name}/{f.name}', 'not a WAV file')
                continue
            m = FILE_RE.match(f.stem)
            if not m:
                report.skip(f'{adir.name}/{f.name}', 'file name is not MM-VV-EE-II-SS-RR-AA')
                continue
            mod, vc, emo, inten, stmt, rep, actor = m.groups()
            item = f'{adir.name}/{f.name}'
            if speakers and actor not in speakers:
                continue
            if mod != '03':
                report.skip(item, f'modality {mod} is not audio-only (03)')
                continue
            if vc == '02' and not song:
                report.skip(item, 'song file (vocal channel 02): pass --song to include the song part')
                continue
            if vc not in ('01', '02') or emo not in EMOTION or inten not in INTENSITY or stmt not in STATEMENT:
                report.skip(item, f'unknown code in the file name (vocal channel {vc}, emotion {emo}, intensity '
                                  f'{inten}, statement {stmt})')
                continue
            if adir.name != f'Actor_{actor}':
                report.note(item, f'actor {actor} of the file name differs from the folder {adir.name}; the file '
                                  f'name is used')
            cat = EMOTION[emo]
            level, scale = INTENSITY[inten]
            a, v, d = pad_avd(cat, scale)
            gender = 'Male' if int(actor) % 2 else 'Female'
            u = Utt(name=f.stem, audio=f, speaker=actor, gender=gender, emo_class=emo, category=cat, act=a, val=v,
                    dom=d, source='derived', derived_from='intended category',
                    extra={'IntendedCategory': cat, 'Intensity': level, 'Statement': stmt, 'Repetition': rep,
                           'VocalChannel': 'song' if vc == '02' else 'speech', 'Actor': actor},
                    transcript=STATEMENT[stmt])
            utts.append(u)
            raters.append((f.stem, 'INTENDED', MSP_CLASS[cat], [], a, v, d, 'derived'))
    gender = {u.speaker: u.gender for u in utts}
    folds = rotation_folds(groups_of(sorted(gender), gender)) if len(gender) >= 3 else []
    if utts and not folds:
        report.note('folds', f'{len(gender)} actor(s): too few for folds (need 3); only Split_Set is written')
    return utts, raters, folds


INFO = {'source': 'RAVDESS speech (Livingstone and Russo 2018), CC BY-NC-SA 4.0',
        'labels': 'intended category; A/V/D derived from the category table x intensity (normal 0.75, strong 1.0)',
        'per_rater': 'none distributed; one INTENDED row per file (derived)',
        'folds': 'actor groups of 2 male + 2 female (else 1 + 1, else single actors); test group k, validate k+1'}
README = __doc__


def convert(src, out, report=None, **kw):
    return common.convert(NAME, read, INFO, EXTRA, README, src, out, report, **kw)
