"""Every converter accounts for every item of its source: each audio file and each label block (consensus
line, response row, tabulated row) is converted or listed in skipped.csv with its reason, on miniatures that
hold every kind of defect at once (a repeated block, one name in two places, an out-of-scale value, a
truncated WAV, an all-zero clip, audio without labels and labels without audio, ...). Also the RAVDESS fold
path of the full corpus (groups of 2 male + 2 female actors) on a generated 24-actor layout."""
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.test_prepare_corpus import (  # noqa: E402
    CREMA_RESPONSES,
    CREMA_TABULATED,
    convert,
    iemocap_values,
    make_crema_d,
    make_emodb,
    make_iemocap,
    make_msp_improv,
    make_ravdess,
    msp_values,
    wav,
)


def silent(path, seconds=0.5, sr=16000):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(int(seconds * sr), np.float32), sr, subtype='PCM_16')


def truncate(path):
    """Cut the second half of a WAV's bytes: its header still claims the full length."""
    b = path.read_bytes()
    path.write_bytes(b[:len(b) // 2])


def refers(item, stem):
    """Does a skipped.csv Item name the file or utterance `stem` itself (not one of its raters)?"""
    return re.fullmatch(rf'(?:.*/)?{re.escape(stem)}(?:\.\w+)?', str(item)) is not None


def account(lab, skipped, stems):
    """-> (converted, listed): every stem converted or listed by a `skipped` row of its own, never both, and
    seen = converted + listed."""
    converted = {f[:-4] for f in lab.FileName} & set(stems)
    gone = skipped[skipped.Kind == 'skipped'].Item
    listed = {s for s in stems if any(refers(i, s) for i in gone)}
    assert not converted & listed, converted & listed
    assert set(stems) - converted - listed == set(), set(stems) - converted - listed
    assert len(set(stems)) == len(converted) + len(listed)
    return converted, listed


def reasons(skipped):
    return dict(zip(skipped.Item, skipped.Reason))


# ------------------------------------------------------------------------------------------------- IEMOCAP
def test_iemocap_accounts_for_every_turn_and_file(tmp_path):
    src = make_iemocap(tmp_path / 'IEMOCAP_full_release')
    ev = lambda n, d: src / f'Session{n}' / 'dialog' / 'EmoEvaluation' / f'{d}.txt'   # noqa: E731
    # session 1: its F turn's block twice, identically (read once); its M turn's block twice, differently
    e1 = ev(1, 'Ses01F_impro01')
    blocks = e1.read_text().split('\n\n')
    e1.write_text('\n\n'.join(blocks + [blocks[1], re.sub(r'\t\[[\d.]+', '\t[4.5', blocks[2])]) + '\n')
    # session 2: a repeated rater line, an out-of-scale rating, a consensus value outside 1-5
    e2 = ev(2, 'Ses02M_script01_1')
    t = e2.read_text()
    t = re.sub(r'(A-E3:.*\n)', r'\1A-E3:\tval 1; act 1; dom  1;\t()\n', t, count=1)
    t = re.sub(r'(A-E4:\tval \d; act )\d', r'\g<1>6', t, count=1)
    t = re.sub(r'(_M001\tang\t\[[\d.]+, [\d.]+, )[\d.]+', r'\g<1>5.5000', t)
    e2.write_text(t)
    # session 3: a silent and a truncated turn, an audio file without a block, a truncated consensus line
    d3 = src / 'Session3' / 'sentences' / 'wav' / 'Ses03F_impro01'
    silent(d3 / 'Ses03F_impro01_F000.wav')
    truncate(d3 / 'Ses03F_impro01_M001.wav')
    wav(d3 / 'Ses03F_impro01_F009.wav')
    e3 = ev(3, 'Ses03F_impro01')
    e3.write_text(e3.read_text() + '[9.0000 - 10.2000]\tSes03F_impro01_F010\tneu\t[2.5, 3.\n')
    # session 4: a dialog of session 2 filed here (its audio too); the same turn name as session 5's
    wrong = 'Ses02F_impro02'
    (src / 'Session4' / 'dialog' / 'EmoEvaluation' / f'{wrong}.txt').write_text(
        f'[1.0000 - 2.2000]\t{wrong}_F000\tsad\t[1.5000, 2.0000, 2.5000]\nA-E3:\tval 1; act 2; dom 3;\t()\n')
    wav(src / 'Session4' / 'sentences' / 'wav' / wrong / f'{wrong}_F000.wav')
    e4 = ev(4, 'Ses04M_script01_1')
    e4.write_text(e4.read_text() + '[5.0000 - 6.2000]\tSes05F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]\n')
    # session 5: a block whose audio is missing
    (src / 'Session5' / 'sentences' / 'wav' / 'Ses05F_impro01' / 'Ses05F_impro01_M001.wav').unlink()

    out, lab, det, folds, skipped = convert('iemocap', src, tmp_path / 'out')
    why = reasons(skipped)
    audio = [p.stem for p in src.glob('Session*/sentences/wav/*/*.wav')]
    blocks = {}
    for f in src.glob('Session*/dialog/EmoEvaluation/*.txt'):
        for n, line in enumerate(f.read_text().splitlines(), 1):
            if line.startswith('['):
                blocks[f'{f.name}:{n}'] = line.split('\t')[1]
    converted, listed = account(lab, skipped, set(audio) | {t for w, t in blocks.items() if w not in why})
    for where, turn in blocks.items():                 # every block: its turn converted or listed, or the line
        assert turn in converted or turn in listed or where in why, where
    assert 'Ses01F_impro01_F000' in converted and 'repeated identically' in why['Ses01F_impro01_F000']
    assert 'different consensus blocks' in why['Ses01F_impro01_M001']
    assert any(i.startswith('Ses02M_script01_1.txt:') and 'second A- line of rater E3' in r for i, r in why.items())
    assert 'outside the 1-5 scale' in why['Ses02M_script01_1_F000 rater E4']
    row = lab.set_index('FileName').loc['Ses02M_script01_1_M001.wav']   # D 5.5: empty, not clipped to 7
    (v, a, _), _ = iemocap_values(2, 1)
    assert pd.isna(row.EmoDom) and (row.EmoAct, row.EmoVal) == (1 + (a - 1) * 1.5, 1 + (v - 1) * 1.5)
    assert 'outside the 1-5' in why['Ses02M_script01_1_M001']
    assert 'digital silence' in why['Ses03F_impro01_F000'] and 'shorter than its header' in why['Ses03F_impro01_M001']
    assert 'without a block' in why['Ses03F_impro01_F009']
    assert any(i.startswith('Ses03F_impro01.txt:') and 'truncated' in r for i, r in why.items())
    assert 'filed under Session4' in why[f'{wrong}_F000'] and wrong + '_F000' not in converted
    assert 'in 2 dialog files' in why['Ses05F_impro01_F000'] and 'audio file missing' in why['Ses05F_impro01_M001']
    assert not (set(lab.SpkrID) & {'Ses02F'} and lab[lab.SpkrID == 'Ses02F'].Session.nunique() > 1)


# ------------------------------------------------------------------------------------------------- MSP-IMPROV
def test_msp_improv_accounts_for_every_line_and_file(tmp_path):
    src = make_msp_improv(tmp_path / 'MSP-IMPROV', sessions=4, label_file='Evalution.txt', audio_dir='Audio')
    ev = src / 'Evalution.txt'
    blocks = ev.read_text().strip().split('\n\n')
    blocks[3] = re.sub(r'A:[\d.]+; V:[\d.]+; D:[\d.]+', 'A:NaN; V:NaN; D:NaN', blocks[3], count=1)  # no value
    blocks[4] = re.sub(r'V:[\d.]+', 'V:6.5', blocks[4], count=1)                   # consensus V outside 1-5
    blocks[5] = blocks[5].replace('rater-3b; Neutral; ; A:', 'rater-3b; Neutral; ; A:9', 1)   # rater out of scale
    blocks += [blocks[0], blocks[1].replace('D:', 'D:1', 1)]                       # repeated: same / different
    blocks.append('UTD-IMPROV-S04A-F04-S-FM02.avi; A; A:3.0000; V:2.0000; D:3.0000 ; N:3.0000;')   # no audio
    blocks.append('UTD-IMPROV-S04A-F04-S-FM03.avi; A; A:3.0')                      # truncated line
    ev.write_text('\n\n'.join(blocks) + '\n')
    a = src / 'Audio'
    silent(a / 'session4' / 'S04A' / 'S' / 'MSP-IMPROV-S04A-F04-S-FM01.wav')
    truncate(a / 'session4' / 'S04H' / 'R' / 'MSP-IMPROV-S04H-M04-R-FM01.wav')
    wav(a / 'session1' / 'S01A' / 'P' / 'MSP-IMPROV-S01A-F01-P-FM07.wav')           # audio without a line
    wav(a / 'session3' / 'S02A' / 'S' / 'MSP-IMPROV-S02A-F02-S-FM01.wav')           # 2nd copy, other session
    (a / 'session1' / 'S01A' / 'S' / 'MSP-IMPROV-S01A-F01-S-FM01.avi').write_bytes(b'video')
    out, lab, det, folds, skipped = convert('msp-improv', src, tmp_path / 'out')
    why = reasons(skipped)
    audio = [p.stem for p in a.rglob('*.wav')]
    lines = {}
    for n, line in enumerate(ev.read_text().splitlines(), 1):
        if line.startswith('UTD-IMPROV-'):
            lines[f'{ev.name}:{n}'] = 'MSP-IMPROV-' + line.split('.avi')[0].split(';')[0][len('UTD-IMPROV-'):]
    converted, listed = account(lab, skipped, set(audio) | {s for w, s in lines.items() if w not in why})
    for where, stem in lines.items():
        assert stem in converted or stem in listed or where in why, where
    assert 'repeated identically' in why['MSP-IMPROV-S01A-F01-S-FM01'] and 'MSP-IMPROV-S01A-F01-S-FM01' in converted
    assert 'different consensus blocks' in why['MSP-IMPROV-S01H-M01-R-FM01']
    assert 'no A, V or D' in why['MSP-IMPROV-S02H-M02-R-FM01']
    assert 'outside the 1-5 scale' in why['MSP-IMPROV-S03A-F03-S-FM01'] and 'in 2 places' in why['MSP-IMPROV-S02A-F02-S-FM01']
    f03 = lab.set_index('FileName').loc['MSP-IMPROV-S03A-F03-S-FM01.wav']      # V 6.5 left empty, A and D kept
    (a5, _, d5, _), _ = msp_values(3, 'F')
    assert pd.isna(f03.EmoVal) and (f03.EmoAct, f03.EmoDom) == (1 + (a5 - 1) * 1.5, 1 + (d5 - 1) * 1.5)
    assert 'outside the 1-5 scale' in why['MSP-IMPROV-S03H-M03-R-FM01 rater rater-3b']
    assert 'digital silence' in why['MSP-IMPROV-S04A-F04-S-FM01']
    assert 'shorter than its header' in why['MSP-IMPROV-S04H-M04-R-FM01']
    assert 'without a consensus line in Evalution.txt' in why['MSP-IMPROV-S01A-F01-P-FM07']
    assert 'audio file missing' in why['MSP-IMPROV-S04A-F04-S-FM02']
    assert '1 files that are not WAV' in why['session folders']
    assert any('truncated' in r for r in why.values())


# ------------------------------------------------------------------------------------------------- CREMA-D
def test_crema_d_accounts_for_every_response_row_and_file(tmp_path):
    src = make_crema_d(tmp_path / 'CREMA-D')
    aw = src / 'AudioWAV'
    silent(aw / '1002_TIE_ANG_XX.wav')
    wav(aw / '1003_IWW_NEU_XX.wav')
    truncate(aw / '1003_IWW_NEU_XX.wav')
    wav(aw / '1004_IEO_SAD_HI.wav')
    wav(aw / '1004_IEO_SAD_HI.WAV')                          # one clip name, two files
    (aw / 'notes.txt').write_text('x')
    resp = pd.read_csv(src / 'finishedResponses.csv', index_col=0)
    extra = pd.concat([resp.iloc[[0]].assign(clipName='1004_IEO_SAD_HI', respEmo='S', respLevel=70),
                       resp.iloc[[0]].assign(clipName='1002_TIE_ANG_XX', respEmo='A', respLevel=75)])
    pd.concat([resp, extra], ignore_index=True).to_csv(src / 'finishedResponses.csv')
    out, lab, det, folds, skipped = convert('crema-d', src, tmp_path / 'out')
    why = reasons(skipped)
    converted, listed = account(lab, skipped, {p.stem for p in aw.iterdir()})
    assert {'1002_TIE_ANG_XX', '1003_IWW_NEU_XX', '1004_IEO_SAD_HI', 'notes', '1001_XYZ'} <= listed
    assert 'digital silence' in why['1002_TIE_ANG_XX']
    assert 'shorter than its header' in why['1003_IWW_NEU_XX']
    assert '2 files named 1004_IEO_SAD_HI' in why['AudioWAV/1004_IEO_SAD_HI.WAV']
    # every response row: in category_votes.csv or listed (by its row or as a repeated rater response)
    votes = pd.read_csv(out / 'Labels' / 'category_votes.csv')
    n_rows = len(CREMA_RESPONSES) + 2
    rows = skipped.Item.str.fullmatch(r'finishedResponses\.csv row \d+')
    repeated = skipped.Item.str.contains(' rater ') & skipped.Reason.str.contains('second')
    kept_clips = {f[:-4] for f in lab.FileName}
    in_votes = votes[votes.FileName.str[:-4].isin(kept_clips)]
    with_listed_clip = 1                                     # the silent clip's response: listed with its clip
    assert len(in_votes) + rows.sum() + repeated.sum() + with_listed_clip == n_rows
    assert 'two audio files' in why[f'finishedResponses.csv row {n_rows}']
    # every tabulated row: in a mode column of its clip or listed
    filled = sum(lab[f'{p}Vote'].notna().sum() for p in ('Voice', 'Face', 'AudioVisual'))
    tab_rows = skipped.Item.str.fullmatch(r'tabulatedVotes\.csv row \d+').sum()
    assert filled + tab_rows == len(CREMA_TABULATED)
    assert 'repeated in row 9' in why['tabulatedVotes.csv row 8'] and 'first: row 8' in why['tabulatedVotes.csv row 9']


# ------------------------------------------------------------------------------------------------- RAVDESS
def test_ravdess_accounts_for_every_file(tmp_path):
    src = make_ravdess(tmp_path / 'RAVDESS')
    silent(src / 'Actor_02' / '03-01-03-01-01-01-02.wav', sr=48000)
    wav(src / 'Actor_03' / '03-01-04-01-02-01-03.wav', sr=48000)
    truncate(src / 'Actor_03' / '03-01-04-01-02-01-03.wav')
    wav(src / 'Actor_04' / '03-01-05-02-01-01-02.wav', sr=48000)           # actor 02's file, again in Actor_04
    wav(src / 'Actor_04' / 'take2.wav', sr=48000)
    (src / 'Actor_01' / 'readme.txt').write_text('x')
    out, lab, det, folds, skipped = convert('ravdess', src, tmp_path / 'out')
    why = reasons(skipped)
    files = {p.stem for p in src.glob('Actor_*/*')}
    converted, listed = account(lab, skipped, files)
    assert len(converted) == 7 and 'digital silence' in why['03-01-03-01-01-01-02']
    assert 'shorter than its header' in why['03-01-04-01-02-01-03']
    assert 'in 2 places' in why['Actor_02/03-01-05-02-01-01-02.wav'] and 'Actor_04' in why['Actor_04/03-01-05-02-01-01-02.wav']
    assert 'not a WAV' in why['Actor_01/readme.txt'] and 'MM-VV' in why['Actor_04/take2.wav']


# ------------------------------------------------------------------------------------------------- Emo-DB
def test_emodb_accounts_for_every_file(tmp_path):
    src = make_emodb(tmp_path / 'emodb')
    w = src / 'wav'
    (w / '10a01Na.wav').rename(w / '10a01Na.WAV')                         # read, whatever the case
    data, sr = sf.read(w / '11a01La.wav')
    (w / '11a01La.wav').unlink()
    sf.write(w / '11a01La.flac', data, sr)                                  # read as well
    sf.write(w / '12a01Ea.flac', data, sr)                                  # a second file of one name
    silent(w / '13a01Fa.wav', sr=22050)
    wav(w / '14a01Wa.wav', sr=22050)
    truncate(w / '14a01Wa.wav')
    (w / '15a01Wa.wav').write_bytes(b'RIFF\x00\x00garbage')
    (w / 'list.txt').write_text('x')
    out, lab, det, folds, skipped = convert('emodb', src, tmp_path / 'out')
    why = reasons(skipped)
    converted, listed = account(lab, skipped, {p.stem for p in w.iterdir()})
    assert converted == {'03a01Fa', '08a01Wa', '09a01Ta', '10a01Na', '11a01La'}
    assert '2 files of that name' in why['12a01Ea'] and 'digital silence' in why['13a01Fa.wav']
    assert 'shorter than its header' in why['14a01Wa.wav'] and 'unreadable' in why['15a01Wa.wav']
    assert 'not a .wav or .flac' in why['list.txt']


# ------------------------------------------------------------------------------------------------- folds
def test_ravdess_full_corpus_folds_are_two_men_and_two_women(tmp_path):
    """24 actors (odd male, even female), one tiny file each: 6 folds of actors 1-4, 5-8, ...; fold k tests
    group k, validates on group k + 1; every test group holds 2 men and 2 women."""
    src = tmp_path / 'RAVDESS'
    for a in range(1, 25):
        wav(src / f'Actor_{a:02d}' / f'03-01-01-01-01-01-{a:02d}.wav', seconds=0.12, sr=8000, seed=a)
    out, lab, det, folds, skipped = convert('ravdess', src, tmp_path / 'out')
    fold_cols = [c for c in folds.columns if c.startswith('fold')]
    assert len(fold_cols) == 6 and skipped.empty
    sex = dict(zip(lab.SpkrID, lab.Gender))
    for k, col in enumerate(fold_cols):
        part = folds.groupby(col).SpkrID.apply(lambda s: sorted(set(s)))
        assert part['Test'] == [f'{a:02d}' for a in range(4 * k + 1, 4 * k + 5)]
        nxt = (k + 1) % 6
        assert part['Validation'] == [f'{a:02d}' for a in range(4 * nxt + 1, 4 * nxt + 5)]
        assert sorted(sex[s] for s in part['Test']) == ['Female', 'Female', 'Male', 'Male']
        assert len(part['Train']) == 16
