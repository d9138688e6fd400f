"""CREMA-D (Crowd-sourced Emotional Multimodal Actors Dataset; Cao et al., IEEE TAC 2014) as distributed:
AudioWAV/<actor>_<sentence>_<emotion>_<level>.wav (16 kHz), finishedResponses.csv, processedResults/
tabulatedVotes.csv and VideoDemographics.csv.

- finishedResponses.csv: one row per rater response (localid = rater, clipName, queryType 1 voice only /
  2 face only / 3 audio-visual, respEmo A/D/F/H/N/S, respLevel the rated intensity 0-100). Only voice-only
  responses (queryType 1) are listener ratings of the audio; the others are left out. Each voice-only response
  becomes a per-rater row: A/V/D derived from its category by the category table (corpora/common.py), scaled
  by respLevel / 100 (neutral stays 4), LabelSource = derived. The consensus A/V/D is the mean of those rows
  (DerivedFrom = listener categories); a clip without voice-only responses gets the intended emotion scaled
  by the intended level (LO 0.5, MD 0.75, HI 1.0, XX unspecified 0.75; DerivedFrom = intended category) and
  one INTENDED row. Category = the intended emotion (file name); VoiceVote = the plurality of the voice-only
  responses (ties joined with ':'), VoiceAgreement its share.
- processedResults/tabulatedVotes.csv: emoVote and agreement as distributed (all presentation modes, per the
  corpus documentation) in the columns TabulatedVote / TabulatedAgreement.
- VideoDemographics.csv: ActorID, Age, Sex, Race, Ethnicity -> Gender, Age, Race, Ethnicity columns.
- Transcripts: the twelve sentence codes -> their text. No word alignments are distributed.
- Folds: 5 folds of actors balanced by sex (males dealt round robin, then females); fold k tests group k and
  validates on group k+1.
A response row with an unknown clip, category or a missing level is skipped and listed; an audio file whose
name does not parse, or without demographics, is listed (the latter kept, sex unknown).
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
EXTRA = ['IntendedCategory', 'Level', 'Sentence', 'Age', 'Race', 'Ethnicity', 'VoiceVote', 'VoiceAgreement',
         'VoiceRaters', 'TabulatedVote', 'TabulatedAgreement']
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


def voice_ratings(src, clips, report):
    """finishedResponses.csv -> per-rater rows [(clip, rater, category, level 0..1)] of the voice-only queries."""
    df = _csv(Path(src) / 'finishedResponses.csv', report, ['localid', 'queryType', 'clipName', 'respEmo',
                                                             'respLevel'])
    if df is None:
        return []
    qt = pd.to_numeric(df['queryType'].str.strip(), errors='coerce')
    for i in np.flatnonzero(qt.isna().values):
        report.skip(f'finishedResponses.csv row {i + 2}', f'queryType {df["queryType"].iat[i]!r} is not a number')
    v = df[(qt == 1).values]
    row = v.index.values + 2                     # line number in the file (header = line 1)
    clip, emo, rater = (v[c].str.strip().values for c in ('clipName', 'respEmo', 'localid'))
    lvl = pd.to_numeric(v['respLevel'].str.strip(), errors='coerce').values
    known = np.isin(clip, list(clips))
    cat_ok = np.isin(emo, list(RESP))
    lvl_ok = np.isfinite(lvl)
    for i in np.flatnonzero(~(known & cat_ok & lvl_ok)):
        item = f'finishedResponses.csv row {row[i]}'
        if not known[i]:
            report.skip(item, f'clip {clip[i]!r} has no audio in AudioWAV/')
        elif not cat_ok[i]:
            report.skip(item, f'respEmo {emo[i]!r} is not one of {"/".join(RESP)}')
        else:
            report.skip(item, f'respLevel {v["respLevel"].iat[i]!r} missing or not a number')
    ok = np.flatnonzero(known & cat_ok & lvl_ok)
    out = [(clip[i], rater[i], RESP[emo[i]], float(np.clip(lvl[i] / 100.0, 0.0, 1.0))) for i in ok]
    return out


def read(src, report, speakers=None, **_):
    wav = check_layout(src)
    src = Path(src)
    demo = _csv(src / 'VideoDemographics.csv', report, ['ActorID', 'Age', 'Sex'])
    demo = {} if demo is None else {r['ActorID'].strip(): r for _, r in demo.iterrows()}
    tab = _csv(src / 'processedResults' / 'tabulatedVotes.csv', report, ['fileName', 'emoVote', 'agreement'])
    tab = {} if tab is None else {r['fileName'].strip(): r for _, r in tab.iterrows()}
    files = {}
    for p in sorted(wav.iterdir()):
        m = FILE_RE.match(p.stem) if p.suffix.lower() == '.wav' else None
        if not m:
            report.skip(f'AudioWAV/{p.name}', 'name is not <actor>_<sentence>_<emotion>_<level>.wav')
            continue
        actor, sent, emo, lvl = m.groups()
        if sent not in SENTENCES or emo not in EMOTION or lvl not in LEVEL:
            report.skip(f'AudioWAV/{p.name}', f'unknown sentence/emotion/level code ({sent}, {emo}, {lvl})')
            continue
        files[p.stem] = (p, actor, sent, emo, lvl)
    ratings = voice_ratings(src, files, report)
    if speakers:   # --speakers: only these actors (their responses; the others' are not reported)
        files = {k: v for k, v in files.items() if v[1] in speakers}
    by_clip = {}
    for clip, rater, cat, s in ratings:
        by_clip.setdefault(clip, []).append((rater, cat, s))
    utts, raters = [], []
    for stem, (p, actor, sent, emo, lvl) in files.items():
        d = demo.get(actor)
        if d is None and demo:
            report.note(stem, f'actor {actor} not in VideoDemographics.csv (sex and age unknown)')
        gender = SEX.get(str(d['Sex']).strip().lower(), '') if d is not None else ''
        cat = EMOTION[emo]
        rs = by_clip.get(stem, [])
        seen, rows, cats = set(), [], []
        for rater, rcat, s in rs:
            if rater in seen:
                report.skip(f'{stem} rater {rater}', 'second voice-only response of the same rater (first kept)')
                continue
            seen.add(rater)
            cats.append(rcat)
            a, v, dd = pad_avd(rcat, s)
            rows.append((stem, rater, MSP_CLASS[rcat], [], a, v, dd, 'derived'))
        if rows:
            act, val, dom = (round(float(np.mean([r[k] for r in rows])), 4) for k in (4, 5, 6))
            src_kind = 'listener categories'
            counts = pd.Series(cats).value_counts()
            top = counts[counts == counts.max()].index.tolist()
            vote, agree = ':'.join(sorted(top)), round(float(counts.max() / counts.sum()), 4)
        else:
            act, val, dom = pad_avd(cat, LEVEL[lvl][1])
            src_kind, vote, agree = 'intended category', '', ''
            rows = [(stem, 'INTENDED', MSP_CLASS[cat], [], act, val, dom, 'derived')]
            report.note(stem, 'no voice-only listener response: A/V/D from the intended emotion and level')
        t = tab.get(stem)
        extra = {'IntendedCategory': cat, 'Level': LEVEL[lvl][0], 'Sentence': sent,
                 'Age': d['Age'].strip() if d is not None else '', 'Race': d.get('Race', '') if d is not None else '',
                 'Ethnicity': d.get('Ethnicity', '') if d is not None else '', 'VoiceVote': vote,
                 'VoiceAgreement': agree, 'VoiceRaters': len(seen),
                 'TabulatedVote': t['emoVote'] if t is not None else '',
                 'TabulatedAgreement': t['agreement'] if t is not None else ''}
        utts.append(Utt(name=stem, audio=p, speaker=actor, gender=gender, emo_class=emo, category=cat, act=act,
                        val=val, dom=dom, source='derived', derived_from=src_kind, extra=extra,
                        transcript=SENTENCES[sent]))
        raters += rows
    gender = {u.speaker: u.gender for u in utts}
    n = min(N_FOLDS, len(gender))
    folds = rotation_folds(sex_balanced_groups(gender, gender, n)) if n >= 3 else []
    if utts and not folds:
        report.note('folds', f'{len(gender)} actor(s): too few for folds (need 3)')
    return utts, raters, folds


INFO = {'source': 'CREMA-D (Cao et al. 2014), Open Database License',
        'labels': 'per-rater A/V/D derived from each voice-only response (category x respLevel/100); consensus = '
                  'their mean; intended emotion x level where no voice-only response exists',
        'per_rater': 'voice-only responses of finishedResponses.csv (derived)',
        'folds': '5 folds of actors balanced by sex; test group k, validate k+1'}
README = __doc__


def convert(src, out, report=None, **kw):
    return common.convert(NAME, read, INFO, EXTRA, README, src, out, report, **kw)
