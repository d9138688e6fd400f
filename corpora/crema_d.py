"""CREMA-D (Crowd-sourced Emotional Multimodal Actors Dataset; Cao et al., IEEE TAC 2014) as distributed:
AudioWAV/<actor>_<sentence>_<emotion>_<level>.wav (16 kHz), finishedResponses.csv, processedResults/
tabulatedVotes.csv and VideoDemographics.csv.

Every clip was rated in three presentation modes by different raters: voice only (the audio alone), face only
(the video without sound) and audio-visual. finishedResponses.csv says which in `queryType` (1 voice, 2 face,
3 audio-visual); processedResults/tabulatedVotes.csv holds one row per clip *per mode*, its unnamed first
column the row id 100000 x mode + clip number (the distributor's tabulation script builds it that way).
- Labels (--mode, default voice): the responses of one mode become per-rater rows (localid = rater,
  respEmo A/D/F/H/N/S, respLevel the rated intensity 0-100): A/V/D derived from the category by the category
  table (corpora/common.py), scaled by respLevel / 100 (neutral stays 4), LabelSource = derived. The consensus
  A/V/D is their mean (DerivedFrom = listener categories). Voice only is the default because an audio model
  hears the voice only: raters who saw the face judged something the model never receives. A clip without a
  response of that mode gets its intended emotion scaled by the intended level (LO 0.5, MD 0.75, HI 1.0,
  XX unspecified 0.75; DerivedFrom = intended category) and one INTENDED row. LabelMode, LabelVote (plurality
  of those responses, response letters, ties joined with ':' as the distributor writes them), LabelAgreement
  (its share) and LabelRaters say what the labels come from.
- tabulatedVotes.csv as distributed, one set of columns per mode: VoiceVote, VoiceAgreement, VoiceMeanLevel,
  VoiceResponses, and the same for Face and AudioVisual (the distributor's summary table calls the last mode
  MultiModal). Empty where the file has no row for that clip and mode.
- Labels/category_votes.csv: every accepted response of every mode (FileName, Rater, Mode, Response, Level,
  InLabels).
- VideoDemographics.csv: ActorID, Age, Sex, Race, Ethnicity -> Gender, Age, Race, Ethnicity columns.
- Transcripts: the twelve sentence codes -> their text. No word alignments are distributed.
- Folds: 5 folds of actors balanced by sex (males dealt round robin, then females); fold k tests group k and
  validates on group k+1.
Every response row, tabulated row and audio file is converted or listed in skipped.csv: a response with an
unknown clip, mode or category, a missing level or one outside 0-100 (not clipped), a second response of
one rater to one clip in one mode (the first is kept); a tabulated row without a readable mode, for a clip
without audio, or repeated; an audio file whose name does not parse. An actor listed twice in
VideoDemographics.csv with different entries is refused (the sex decides the folds); listed twice alike,
noted.
"""
import re
from pathlib import Path

import numpy as np
import pandas as pd

from corpora import common
from corpora.common import MSP_CLASS, LayoutError, Utt, pad_avd, rotation_folds, sex_balanced_groups

NAME = 'crema-d'
FILE_RE = re.compile(r'^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$')
SENTENCES = {
    'IEO': "It's eleven o'clock.", 'TIE': 'That is exactly what happened.', 'IOM': "I'm on my way to the meeting.",
    'IWW': 'I wonder what this is about.', 'TAI': 'The airplane is almost full.',
    'MTI': 'Maybe tomorrow it will be cold.', 'IWL': 'I would like a new alarm clock.',
    'ITH': "I think I have a doctor's appointment.", 'DFA': "Don't forget a jacket.",
    'ITS': "I think I've seen this before.", 'TSI': 'The surface is slick.',
    'WSI': "We'll stop in a couple of minutes."}
EMOTION = {'ANG': 'anger', 'DIS': 'disgust', 'FEA': 'fear', 'HAP': 'happiness', 'NEU': 'neutral', 'SAD': 'sadness'}
RESP = {'A': 'anger', 'D': 'disgust', 'F': 'fear', 'H': 'happiness', 'N': 'neutral', 'S': 'sadness'}
LEVEL = {'LO': ('low', 0.5), 'MD': ('medium', 0.75), 'HI': ('high', 1.0), 'XX': ('unspecified', 0.75)}
SEX = {'male': 'Male', 'female': 'Female', 'm': 'Male', 'f': 'Female'}
# queryType / tabulated row id // 100000 -> (--mode name, column prefix)
MODES = {1: ('voice', 'Voice'), 2: ('face', 'Face'), 3: ('audiovisual', 'AudioVisual')}
MODE_NAMES = [m for m, _ in MODES.values()]
MODE_ID = {m: k for k, (m, _) in MODES.items()}
TAB_COLS = ['Vote', 'Agreement', 'MeanLevel', 'Responses']
EXTRA = (['IntendedCategory', 'Level', 'Sentence', 'Age', 'Race', 'Ethnicity', 'LabelMode', 'LabelVote',
          'LabelAgreement', 'LabelRaters'] + [f'{p}{c}' for _, p in MODES.values() for c in TAB_COLS])
N_FOLDS = 5


def check_layout(src):
    src = Path(src)
    wav = src / 'AudioWAV'
    if not wav.is_dir() or not any(FILE_RE.match(p.stem) for p in wav.glob('*.wav')):
        raise LayoutError(f'{src} is not CREMA-D as distributed: expected AudioWAV/<actor>_<sentence>_<emotion>_'
                          f'<level>.wav (e.g. AudioWAV/1001_DFA_ANG_XX.wav) with finishedResponses.csv, '
                          f'processedResults/tabulatedVotes.csv and VideoDemographics.csv beside it')
    return wav


def _csv(path, report, need):
    if not path.is_file():
        report.note(path.name, f'{path} missing')
        return None
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    df.columns = [str(c).strip().strip('"') for c in df.columns]
    common.check_columns(df, path, need)
    return df


def _no_clip(name, clips):
    return f'clip {name!r} left out (two audio files of that name)' if name in clips else \
        f'clip {name!r} has no audio in AudioWAV/'


def vote(letters):
    """Response letters -> (plurality, ties joined with ':' in A D F H N S order; its share of the responses)."""
    counts = pd.Series(letters).value_counts()
    top = sorted(counts[counts == counts.max()].index)
    return ':'.join(top), round(float(counts.max() / counts.sum()), 4)


def demographics(src, report):
    """VideoDemographics.csv -> {actor: row}; an actor listed twice alike is noted, differently refused."""
    df = _csv(Path(src) / 'VideoDemographics.csv', report, ['ActorID', 'Age', 'Sex'])
    if df is None:
        return {}
    df = df.apply(lambda c: c.str.strip())
    out = {}
    for i, r in df.iterrows():
        a = r['ActorID']
        if a in out:
            if dict(out[a]) != dict(r):
                raise LayoutError(f'{Path(src) / "VideoDemographics.csv"}: actor {a} listed twice with different '
                                  f'entries ({dict(out[a])} and, row {i + 2}, {dict(r)}); the sex decides the folds, '
                                  f'so keep the right row and convert again')
            report.note(f'VideoDemographics.csv row {i + 2}', f'actor {a} listed twice (same entries)')
            continue
        out[a] = r
    return out


def responses(src, clips, report):
    """finishedResponses.csv -> [(clip, rater, mode id, letter, level 0..100)], every row kept or listed."""
    df = _csv(Path(src) / 'finishedResponses.csv', report, ['localid', 'queryType', 'clipName', 'respEmo',
                                                             'respLevel'])
    if df is None:
        return []
    qt = pd.to_numeric(df['queryType'].str.strip(), errors='coerce').values
    clip, emo, rater = (df[c].str.strip().values for c in ('clipName', 'respEmo', 'localid'))
    lvl = pd.to_numeric(df['respLevel'].str.strip(), errors='coerce').values
    out = []
    for i in range(len(df)):
        item = f'finishedResponses.csv row {i + 2}'
        if qt[i] not in MODES:
            report.skip(item, f'queryType {df["queryType"].iat[i]!r} is not 1 (voice), 2 (face) or 3 (audio-visual)')
        elif not clips.get(clip[i]):               # None: an actor left out by --speakers
            if clips.get(clip[i], 0) is not None:
                report.skip(item, _no_clip(clip[i], clips))
        elif emo[i] not in RESP:
            report.skip(item, f'respEmo {emo[i]!r} is not one of {"/".join(RESP)}')
        elif not np.isfinite(lvl[i]):
            report.skip(item, f'respLevel {df["respLevel"].iat[i]!r} missing or not a number')
        elif not 0 <= lvl[i] <= 100:
            report.skip(item, f'respLevel {lvl[i]:g} outside the 0-100 scale (left out, not clipped)')
        else:
            out.append((clip[i], rater[i], int(qt[i]), emo[i], float(lvl[i])))
    return out


def tabulated(src, clips, report):
    """processedResults/tabulatedVotes.csv -> {(clip, mode id): {column suffix: value}}: one row per clip per
    presentation mode, the mode read from the row id (100000 x mode + clip number)."""
    path = Path(src) / 'processedResults' / 'tabulatedVotes.csv'
    df = _csv(path, report, ['fileName', 'emoVote', 'agreement'])
    if df is None:
        return {}
    idcol = df.columns[0]
    if idcol not in ('', 'X') and not idcol.startswith('Unnamed'):
        report.note(path.name, f'no row id column (first column {idcol!r}): the presentation mode of its rows '
                               f'cannot be told, so every row is left out')
        idcol = None
    out, seen = {}, {}
    for i, r in df.iterrows():
        item, name = f'tabulatedVotes.csv row {i + 2}', r['fileName'].strip()
        rid = pd.to_numeric(r[idcol].strip(), errors='coerce') if idcol is not None else np.nan
        mode = int(rid // 100000) if np.isfinite(rid) else None
        if mode not in MODES:
            report.skip(item, f'row id {r[idcol] if idcol is not None else ""!r} does not give a presentation mode '
                              f'(100000 x 1 voice / 2 face / 3 audio-visual + clip number)')
        elif not clips.get(name):
            if clips.get(name, 0) is not None:
                report.skip(item, _no_clip(name, clips))
        elif (name, mode) in seen:
            if out.pop((name, mode), None) is not None:
                report.skip(f'tabulatedVotes.csv row {seen[name, mode]}', f'{MODES[mode][0]} row of {name} repeated '
                                                                           f'in row {i + 2}; both left out')
            report.skip(item, f'second {MODES[mode][0]} row of {name} (first: row {seen[name, mode]}); both left '
                              f'out, the columns stay empty')
        else:
            seen[name, mode] = i + 2
            out[name, mode] = {'Vote': r['emoVote'].strip(), 'Agreement': r['agreement'].strip(),
                               'MeanLevel': r.get('meanEmoResp', '').strip(),
                               'Responses': r.get('numResponses', '').strip()}
    return out


def read(src, report, speakers=None, mode='voice', **_):
    wav = check_layout(src)
    src = Path(src)
    if mode not in MODE_ID:
        raise LayoutError(f'--mode {mode}: use one of {", ".join(MODE_NAMES)}')
    label_mode = MODE_ID[mode]
    demo = demographics(src, report)
    files, stems = {}, {}
    for p in wav.iterdir():
        stems.setdefault(p.stem, []).append(p.name)
    for p in sorted(wav.iterdir()):
        if len(stems[p.stem]) > 1:
            report.skip(f'AudioWAV/{p.name}', f'{len(stems[p.stem])} files named {p.stem} '
                                              f'({", ".join(sorted(stems[p.stem]))}): which one is the clip is '
                                              f'unclear, left out')
            files[p.stem] = False
            continue
        m = FILE_RE.match(p.stem) if p.suffix.lower() == '.wav' else None
        if not m:
            report.skip(f'AudioWAV/{p.name}', 'name is not <actor>_<sentence>_<emotion>_<level>.wav')
            continue
        actor, sent, emo, lvl = m.groups()
        if sent not in SENTENCES or emo not in EMOTION or lvl not in LEVEL:
            report.skip(f'AudioWAV/{p.name}', f'unknown sentence/emotion/level code ({sent}, {emo}, {lvl})')
            continue
        files[p.stem] = (p, actor, sent, emo, lvl)
    # --speakers: only these actors; rows of the others are neither converted nor reported (value None)
    known = {k: (v if not v or not speakers or v[1] in speakers else None) for k, v in files.items()}
    files = {k: v for k, v in known.items() if v}
    resp = responses(src, known, report)
    tab = tabulated(src, known, report)
    by_clip, votes = {}, []
    for clip, rater, q, letter, level in resp:
        key = (clip, q, rater)
        if key in by_clip:
            report.skip(f'{clip} rater {rater}', f'second {MODES[q][0]} response of the same rater (first kept)')
            continue
        by_clip[key] = (letter, level)
        votes.append((f'{clip}.wav', rater, MODES[q][0], letter, level, q == label_mode))
    mine = {}
    for (clip, q, rater), (letter, level) in by_clip.items():
        if q == label_mode:
            mine.setdefault(clip, []).append((rater, letter, level))
    utts, raters = [], []
    for stem, (p, actor, sent, emo, lvl) in files.items():
        d = demo.get(actor)
        if d is None and demo:
            report.note(stem, f'actor {actor} not in VideoDemographics.csv (sex and age unknown)')
        gender = SEX.get(str(d['Sex']).lower(), '') if d is not None else ''
        cat = EMOTION[emo]
        rs = mine.get(stem, [])
        rows = []
        for rater, letter, level in rs:
            a, v, dd = pad_avd(RESP[letter], level / 100.0)
            rows.append((stem, rater, MSP_CLASS[RESP[letter]], [], a, v, dd, 'derived'))
        if rows:
            act, val, dom = (round(float(np.mean([r[k] for r in rows])), 4) for k in (4, 5, 6))
            src_kind = 'listener categories'
            lvote, agree = vote([letter for _, letter, _ in rs])
        else:
            act, val, dom = pad_avd(cat, LEVEL[lvl][1])
            src_kind, lvote, agree = 'intended category', '', ''
            rows = [(stem, 'INTENDED', MSP_CLASS[cat], [], act, val, dom, 'derived')]
            report.note(stem, f'no {mode} listener response: A/V/D from the intended emotion and level')
        extra = {'IntendedCategory': cat, 'Level': LEVEL[lvl][0], 'Sentence': sent,
                 'Age': d['Age'] if d is not None else '', 'Race': d.get('Race', '') if d is not None else '',
                 'Ethnicity': d.get('Ethnicity', '') if d is not None else '', 'LabelMode': mode,
                 'LabelVote': lvote, 'LabelAgreement': agree, 'LabelRaters': len(rs)}
        for q, (_, prefix) in MODES.items():
            t = tab.get((stem, q), {})
            extra.update({f'{prefix}{c}': t.get(c, '') for c in TAB_COLS})
        utts.append(Utt(name=stem, audio=p, speaker=actor, gender=gender, emo_class=emo, category=cat, act=act,
                        val=val, dom=dom, source='derived', derived_from=src_kind, extra=extra,
                        transcript=SENTENCES[sent]))
        raters += rows
    gender = {u.speaker: u.gender for u in utts}
    n = min(N_FOLDS, len(gender))
    folds = rotation_folds(sex_balanced_groups(gender, gender, n)) if n >= 3 else []
    if utts and not folds:
        report.note('folds', f'{len(gender)} actor(s): too few for folds (need 3)')
    votes = pd.DataFrame(votes, columns=['FileName', 'Rater', 'Mode', 'Response', 'Level', 'InLabels'])
    return utts, raters, folds, votes


INFO = {'source': 'CREMA-D (Cao et al. 2014), Open Database License',
        'labels': 'per-rater A/V/D derived from each response of the label mode (category x respLevel/100); '
                  'consensus = their mean; intended emotion x level where that mode has no response',
        'per_rater': 'responses of finishedResponses.csv in the label mode (derived); all modes in '
                     'Labels/category_votes.csv',
        'folds': '5 folds of actors balanced by sex; test group k, validate k+1'}
README = __doc__


def convert(src, out, report=None, **kw):
    mode = kw.get('mode') or 'voice'
    return common.convert(NAME, read, {**INFO, 'label_mode': mode}, EXTRA, README, src, out, report,
                          **{**kw, 'mode': mode})
