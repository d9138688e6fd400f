"""prepare_corpus.py: every corpus from a generated miniature of its distributed layout (file names, line formats
and CSV headers as the distributors document them; short generated WAVs), malformed variants, a folder that is
not the corpus, the real Emo-DB and RAVDESS copies under ../shared, and a converted corpus through the pipeline."""
import os
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import check_corpus  # noqa: E402
import prepare_corpus  # noqa: E402
from cli import run_script  # noqa: E402
from corpora.common import CATEGORY_PAD, five_to_seven, pad_avd, rotation_folds  # noqa: E402
from corpus import Corpus  # noqa: E402
from tests.fixtures import synth_voice  # noqa: E402

DATASETS = REPO.parent / 'shared' / 'datasets'
EMODB, RAVDESS = DATASETS / 'emodb', DATASETS / 'ravdess'


def wav(path, seconds=1.2, sr=16000, seed=0, arousal=4.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, synth_voice(seconds, arousal, sr=sr, seed=seed), sr, subtype='PCM_16')


def run(*argv):
    try:
        return run_script(prepare_corpus.main, [str(a) for a in argv])
    except SystemExit as e:
        return e.code


def convert(name, src, out, *flags):
    out = prepare_corpus.main([name, str(src), str(out), *map(str, flags)])
    lab = pd.read_csv(out / 'Labels' / 'labels_consensus.csv', dtype={'SpkrID': str})
    det = pd.read_csv(out / 'Labels' / 'labels_detailed.csv')
    folds = pd.read_csv(out / 'Labels' / 'folds.csv', dtype=str, keep_default_na=False)
    skipped = pd.read_csv(out / 'skipped.csv')
    return out, lab, det, folds, skipped


def assert_folds_disjoint(out, folds, n):
    assert [c for c in folds.columns if c.startswith('fold')] == [f'fold{k}' for k in range(1, n + 1)]
    for k in range(1, n + 1):
        parts = folds.groupby(f'fold{k}')['SpkrID'].apply(set).to_dict()
        assert {'Train', 'Validation', 'Test'} <= set(parts)
        assert not (parts['Train'] & parts['Test']) and not (parts['Train'] & parts['Validation'])
        assert not (parts['Validation'] & parts['Test'])
    tested = [s for k in range(1, n + 1) for s in set(folds.SpkrID[folds[f'fold{k}'] == 'Test'])]
    assert sorted(tested) == sorted(set(folds.SpkrID))            # every speaker tested exactly once
    rep = check_corpus.check(out, progress=False)
    assert not rep['fatal'] and len(rep['folds']) == n
    c = Corpus(out)
    assert c.fold_names() == [f'fold{k}' for k in range(1, n + 1)]
    assert c.files('Test') == Corpus(out, fold=1).files('Test')      # Split_Set = fold 1


def rating(det):
    r = det['EmoDetail'].str.extract(r'^([^;]*);\s*([^;]*);.*A:([\d.]+); V:([\d.]+); D:([\d.]+);')
    r.columns = ['Worker', 'Class', 'A', 'V', 'D']
    r[['A', 'V', 'D']] = r[['A', 'V', 'D']].astype(float)
    r['FileName'] = det['FileName']
    return r


def test_shared_tables():
    assert five_to_seven(1) == 1 and five_to_seven(5) == 7 and five_to_seven(2.5) == 3.25
    assert pad_avd('anger') == (round(4 + 3 * .59, 4), round(4 - 3 * .51, 4), round(4 + 3 * .25, 4))
    assert pad_avd('anger', 0.5)[0] == round(4 + 1.5 * .59, 4) and pad_avd('neutral', 0.3) == (4, 4, 4)
    import prepare_emodb
    for name, _, _, pad in prepare_emodb.EMOTIONS.values():     # one table: Emo-DB reads the shared one
        assert pad == CATEGORY_PAD[name]
    f = rotation_folds([['a'], ['b'], ['c', 'd']])
    assert f[0] == {'a': 'Test', 'b': 'Validation', 'c': 'Train', 'd': 'Train'}
    assert f[2] == {'c': 'Test', 'd': 'Test', 'a': 'Validation', 'b': 'Train'}


# ------------------------------------------------------------------------------------------------- IEMOCAP
def iemocap_values(n, i):
    """Consensus [V, A, D] and raters E3, E4 (val, act, dom) of turn i of session n on 1-5: every attribute,
    rater and turn has its own value, so a swap of any two changes what the tests read."""
    j = 2 * (n - 1) + i
    return ((1.5 + 0.25 * j, 2.0 + 0.25 * j, 4.75 - 0.25 * j),
            {'E3': (1 + j % 5, 1 + (j + 2) % 5, 1 + (j + 4) % 5), 'E4': (1 + (j + 1) % 5, 1 + (j + 3) % 5, 1 + j % 5)})


def make_iemocap(root, sessions=5):
    """IEMOCAP_full_release miniature: per session one dialog, two turns (F and M speaker)."""
    for n in range(1, sessions + 1):
        s = root / f'Session{n}'
        dialog = f'Ses0{n}F_impro01' if n % 2 else f'Ses0{n}M_script01_1'
        turns = [(f'{dialog}_F000', 'neu', 1.0), (f'{dialog}_M001', 'xxx' if n == 1 else 'ang', 3.0)]
        ev = ['% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]', '']
        tr = []
        for i, (turn, code, t0) in enumerate(turns):
            (v, a, d), r = iemocap_values(n, i)
            ev += [f'[{t0:.4f} - {t0 + 1.2:.4f}]\t{turn}\t{code}\t[{v:.4f}, {a:.4f}, {d:.4f}]',
                   'C-E2:\tNeutral;\t()', 'C-E3:\tAnger; Frustration;\t(annoyed)', 'C-F1:\tNeutral;\t(curious)',
                   'A-E3:\tval {}; act {}; dom  {};\t()'.format(*r['E3']),
                   'A-E4:\tval {}; act {}; dom  {};\t(mildly aggravated)'.format(*r['E4']),
                   f'A-{turn[-4]}1:\tval 3; act 2; dom 1;\t()', '']
            tr.append(f'{turn} [{t0:08.4f}-{t0 + 1.2:08.4f}]: Excuse me, hello.')
            wav(s / 'sentences' / 'wav' / dialog / f'{turn}.wav', seed=10 * n + i)
            wd = s / 'sentences' / 'ForcedAlignment' / dialog / f'{turn}.wdseg'
            wd.parent.mkdir(parents=True, exist_ok=True)
            wd.write_text('\tSFrm  EFrm    SegAScr Word\n\t0     9      -281958 <s>\n\t10    39     -57658  EXCUSE(2)\n'
                          '\t40    59     -77772  ME\n\t60    69     -1000   ++BREATH++\n\t70    99     -77772  HELLO\n'
                          '\t100   119    -12345  </s>\n Total score: -429730\n')
        (s / 'dialog' / 'EmoEvaluation').mkdir(parents=True)
        (s / 'dialog' / 'EmoEvaluation' / f'{dialog}.txt').write_text('\n'.join(ev) + '\n')
        (s / 'dialog' / 'transcriptions').mkdir(parents=True)
        (s / 'dialog' / 'transcriptions' / f'{dialog}.txt').write_text('\n'.join(tr) + '\n')
    return root


def test_iemocap(tmp_path):
    src = make_iemocap(tmp_path / 'IEMOCAP_full_release')
    out, lab, det, folds, skipped = convert('iemocap', src, tmp_path / 'out')
    assert len(lab) == 10 and set(lab.SpkrID) == {f'Ses0{n}{g}' for n in range(1, 6) for g in 'FM'}
    for n in range(1, 6):
        for i, turn in enumerate(sorted(lab.FileName[lab.FileName.str.startswith(f'Ses0{n}')])):
            (v, a, d), _ = iemocap_values(n, i)
            row = lab.set_index('FileName').loc[turn]
            assert (row.EmoAct, row.EmoVal, row.EmoDom) == (five_to_seven(a), five_to_seven(v), five_to_seven(d))
    row = lab.set_index('FileName').loc['Ses01F_impro01_F000.wav']
    assert row.EmoClass == 'neu'
    assert row.Category == 'neutral' and row.LabelSource == 'raters' and row.Mode == 'improvised'
    assert lab.set_index('FileName').loc['Ses01F_impro01_M001.wav', 'EmoClass'] == 'xxx'      # kept as is
    assert lab.set_index('FileName').loc['Ses02M_script01_1_F000.wav', 'Mode'] == 'scripted'
    r = rating(det)
    assert len(r) == 20 and set(r.Worker) == {'E3', 'E4'}          # self-evaluations (F1, M1) left out
    for n in range(1, 6):
        for i, turn in enumerate(sorted(lab.FileName[lab.FileName.str.startswith(f'Ses0{n}')])):
            for rater, (v, a, d) in iemocap_values(n, i)[1].items():
                got = r[(r.FileName == turn) & (r.Worker == rater)].iloc[0]
                assert (five_to_seven(a), five_to_seven(v), five_to_seven(d)) == (got.A, got.V, got.D), (turn, rater)
                assert got.Class == ('Angry' if rater == 'E3' else '')
    assert (det.LabelSource == 'raters').all()
    votes = pd.read_csv(out / 'Labels' / 'category_votes.csv')
    assert len(votes) == 30 and votes.SelfEvaluation.sum() == 10
    c = Corpus(out)
    assert c.transcript('Ses01F_impro01_F000.wav') == 'Excuse me, hello.'
    words = c.words('Ses01F_impro01_F000.wav')
    assert [w for *_, w in words] == ['excuse', 'me', 'hello']
    assert np.allclose([words[0][0], words[0][1], words[2][1]], [0.10, 0.40, 1.00])
    assert os.path.islink(out / 'Audios' / 'Ses01F_impro01_F000.wav')
    assert_folds_disjoint(out, folds, 5)
    f1 = folds.groupby('fold1').SpkrID.apply(set)
    assert f1['Test'] == {'Ses01F', 'Ses01M'} and f1['Validation'] == {'Ses02F', 'Ses02M'}
    assert skipped.empty or (skipped.Kind == 'note').all()
    # --self-evaluations keeps them
    _, _, det2, _, _ = convert('iemocap', src, tmp_path / 'out2', '--self-evaluations')
    assert set(rating(det2).Worker) == {'E3', 'E4', 'self-F1', 'self-M1'}


def test_iemocap_malformed(tmp_path, capsys):
    src = make_iemocap(tmp_path / 'IEMOCAP_full_release', sessions=3)
    ev = src / 'Session3' / 'dialog' / 'EmoEvaluation' / 'Ses03F_impro01.txt'
    text = re.sub(r'(Ses03F_impro01_M001\tang\t\[[\d.]+, [\d.]{3}).*', r'\1', ev.read_text())     # truncated
    text = re.sub(r'(A-E4:\tval \d; act )\d', r'\1', text, count=1)                          # act missing
    ev.write_text(text)
    (src / 'Session2' / 'sentences' / 'wav' / 'Ses02M_script01_1' / 'Ses02M_script01_1_F000.wav').unlink()
    out, lab, det, folds, skipped = convert('iemocap', src, tmp_path / 'out')
    reasons = dict(zip(skipped.Item, skipped.Reason))
    assert 'Ses03F_impro01_M001.wav' not in set(lab.FileName) and 'Ses02M_script01_1_F000.wav' not in set(lab.FileName)
    assert any('truncated' in r and 'Ses03F_impro01.txt' in i for i, r in reasons.items())
    assert 'audio file missing' in reasons['Ses02M_script01_1_F000']
    assert 'without a value for act' in reasons['Ses03F_impro01_F000 rater E4']
    assert len(lab) == 4 and 'skipped: Ses02M_script01_1_F000' in capsys.readouterr().out
    # the turn keeps its other rater
    assert set(rating(det).query("FileName == 'Ses03F_impro01_F000.wav'").Worker) == {'E3'}


# ------------------------------------------------------------------------------------------------- MSP-IMPROV
def msp_values(n, g):
    """Consensus (A, V, D, N) and two raters' (A, V, D) of utterance (session n, gender g) on 1-5: every
    attribute, rater and utterance has its own value, so a swap of any two changes what the tests read."""
    j = 2 * (n - 1) + (g == 'M')
    cons = (1.5 + 0.25 * j, 2.0 + 0.5 * j, 4.75 - 0.25 * j, 3.6667 - 0.1 * j)
    return cons, {f'rater-{n}a': (1.0 + 0.5 * j, 4.5 - 0.5 * j, 1.25 + 0.5 * j),
                  f'rater-{n}b': (2.1 + 0.25 * j, 1.3 + 0.1 * j, 4.9 - 0.4 * j)}


def make_msp_improv(root, sessions=3, label_file='Evaluation.txt', audio_dir=''):
    """MSP-IMPROV miniature: per session an F and an M utterance with a consensus line and two rater lines; the
    label file under either spelling, the session folders at the root or under `audio_dir` (Audio)."""
    lines = []
    for n in range(1, sessions + 1):
        for g, t, code, cat in (('F', 'S', 'A', 'A'), ('M', 'R', 'H', 'X')):
            stem = f'MSP-IMPROV-S0{n}{code}-{g}0{n}-{t}-FM01'
            wav(root / audio_dir / f'session{n}' / f'S0{n}{code}' / t / f'{stem}.wav', seed=n * 7 + len(lines))
            (a, v, d, nat), rs = msp_values(n, g)
            lines.append(f'UTD-IMPROV-{stem[11:]}.avi; {cat}; A:{a:.4f}; V:{v:.4f}; D:{d:.4f} ; N:{nat:.4f};')
            (ra, xa), (rb, xb) = rs.items()
            lines.append(f'{ra}; Angry; Frustrated, Annoyed; A:{xa[0]}; V:{xa[1]}; D:{xa[2]}; N:4.0;')
            lines.append(f'{rb}; Neutral; ; A:{xb[0]}; V:{xb[1]}; D:{xb[2]}; N:3.0;')
            lines.append('')
    (root / label_file).write_text('\n'.join(lines) + '\n')
    return root


@pytest.mark.parametrize('label_file, audio_dir', [('Evaluation.txt', ''), ('Evalution.txt', 'Audio')])
def test_msp_improv(tmp_path, label_file, audio_dir):
    src = make_msp_improv(tmp_path / 'MSP-IMPROV', label_file=label_file, audio_dir=audio_dir)
    out, lab, det, folds, skipped = convert('msp-improv', src, tmp_path / 'out')
    assert len(lab) == 6 and set(lab.SpkrID) == {'F01', 'M01', 'F02', 'M02', 'F03', 'M03'}
    lab = lab.set_index('FileName')
    for n in (1, 2, 3):
        for g, name in (('F', f'MSP-IMPROV-S0{n}A-F0{n}-S-FM01.wav'), ('M', f'MSP-IMPROV-S0{n}H-M0{n}-R-FM01.wav')):
            (a, v, d, nat), _ = msp_values(n, g)
            row = lab.loc[name]
            assert (row.EmoAct, row.EmoVal, row.EmoDom) == (five_to_seven(a), five_to_seven(v), five_to_seven(d))
            assert row.Naturalness == round(nat, 4) and row.Session == n
    row = lab.loc['MSP-IMPROV-S01A-F01-S-FM01.wav']
    assert row.EmoClass == 'A' and row.Category == 'anger' and row.ScenarioCode == 'S'
    assert row.Scenario == 'other improvised' and row.Gender == 'Female' and row.LabelSource == 'raters'
    m = lab.loc['MSP-IMPROV-S01H-M01-R-FM01.wav']
    assert m.EmoClass == 'X' and m.Category == 'no_agreement' and m.IntendedCategory == 'happiness'
    assert m.Scenario == 'target read' and m.Gender == 'Male'
    r = rating(det)
    assert len(r) == 12
    for n in (1, 2, 3):
        for g, name in (('F', f'MSP-IMPROV-S0{n}A-F0{n}-S-FM01.wav'), ('M', f'MSP-IMPROV-S0{n}H-M0{n}-R-FM01.wav')):
            for rater, avd in msp_values(n, g)[1].items():
                got = r[(r.FileName == name) & (r.Worker == rater)].iloc[0]
                assert tuple(round(five_to_seven(x), 1) for x in avd) == (got.A, got.V, got.D), (name, rater)
                assert got.Class == ('Angry' if rater.endswith('a') else 'Neutral')
    assert 'Frustrated, Annoyed' in det.EmoDetail[0]
    assert_folds_disjoint(out, folds, 3)
    assert not len(skipped)


def test_msp_improv_malformed(tmp_path):
    src = make_msp_improv(tmp_path / 'MSP-IMPROV')
    ev = src / 'Evaluation.txt'
    lines = ev.read_text().splitlines()
    lines[1] = 'rater-1a; Angry; Frustrated; A:NaN; V:2.0; D:3.0; N:4.0;'       # a missing value
    lines[2] = lines[2] + '\n' + lines[2]                                          # a repeated rater
    lines[5] = re.sub(r'V:[\d.]+', 'V:7.0', lines[5])                              # a rating outside 1-5
    lines[8] = lines[8][:40]                                                       # truncated consensus line
    lines[12] = re.sub(r'D:[\d.]+', 'D:NaN', lines[12])                           # consensus D NaN
    ev.write_text('\n'.join(lines) + '\n')
    (src / 'session3' / 'S03H' / 'R' / 'MSP-IMPROV-S03H-M03-R-FM01.wav').unlink()
    wav(src / 'session3' / 'S03H' / 'P' / 'MSP-IMPROV-S03H-M03-P-MF09.wav')     # audio without label line
    out, lab, det, folds, skipped = convert('msp-improv', src, tmp_path / 'out')
    why = dict(zip(skipped.Item, skipped.Reason))
    kind = dict(zip(skipped.Item, skipped.Kind))
    assert 'without a value for A' in why['MSP-IMPROV-S01A-F01-S-FM01 rater rater-1a']
    assert 'repeated rater' in why['MSP-IMPROV-S01A-F01-S-FM01 rater rater-1b']
    assert 'outside the 1-5 scale' in why['MSP-IMPROV-S01H-M01-R-FM01 rater rater-1a']
    assert any('truncated' in r for r in why.values())
    assert 'audio file missing' in why['MSP-IMPROV-S03H-M03-R-FM01']
    assert 'without a consensus line' in why['MSP-IMPROV-S03H-M03-P-MF09']
    assert len(lab) == 4 and set(rating(det).query("FileName == 'MSP-IMPROV-S01A-F01-S-FM01.wav'").Worker) == \
        {'rater-1b'}
    # the D = NaN line keeps its A and V; D is empty and the line is a note, not a drop
    nan = lab.set_index('FileName').loc['MSP-IMPROV-S02H-M02-R-FM01.wav']
    (a, v, _, _), _ = msp_values(2, 'M')
    assert (nan.EmoAct, nan.EmoVal) == (five_to_seven(a), five_to_seven(v)) and pd.isna(nan.EmoDom)
    assert kind['MSP-IMPROV-S02H-M02-R-FM01'] == 'note' and 'D NaN' in why['MSP-IMPROV-S02H-M02-R-FM01']
    c = Corpus(out)
    assert np.isnan(c.labels.set_index('FileName').loc['MSP-IMPROV-S02H-M02-R-FM01.wav', 'EmoDom'])


def test_msp_improv_repeats_and_places(tmp_path, capsys):
    """A repeated consensus block, the same recording in two session folders, both spellings at once."""
    src = make_msp_improv(tmp_path / 'MSP-IMPROV', sessions=4)
    ev = src / 'Evaluation.txt'
    blocks = ev.read_text().strip().split('\n\n')
    blocks.append(blocks[0])                                              # repeated identically: read once
    blocks.append(blocks[2].replace('A:2.0000', 'A:2.5000', 1))          # repeated with another value: left out
    ev.write_text('\n\n'.join(blocks) + '\n')
    stem = 'MSP-IMPROV-S02H-M02-R-FM01'
    wav(src / 'session3' / 'S02H' / 'R' / f'{stem}.wav', seed=99)        # the same name in a second folder
    out, lab, det, folds, skipped = convert('msp-improv', src, tmp_path / 'out')
    why = dict(zip(skipped.Item, skipped.Reason))
    assert 'repeated identically' in why['MSP-IMPROV-S01A-F01-S-FM01']
    assert 'MSP-IMPROV-S01A-F01-S-FM01.wav' in set(lab.FileName)
    assert 'different consensus blocks' in why['MSP-IMPROV-S02A-F02-S-FM01']
    assert 'in 2 places' in why[stem] and 'session3' in why[stem]
    assert set(lab.FileName) == {f'{s}.wav' for s in ('MSP-IMPROV-S01A-F01-S-FM01', 'MSP-IMPROV-S01H-M01-R-FM01',
                                                       'MSP-IMPROV-S03A-F03-S-FM01', 'MSP-IMPROV-S03H-M03-R-FM01',
                                                       'MSP-IMPROV-S04A-F04-S-FM01', 'MSP-IMPROV-S04H-M04-R-FM01')}
    (src / 'Evalution.txt').write_text(ev.read_text())
    assert run('msp-improv', src, tmp_path / 'both') == 2 and 'Evalution.txt' in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------- CREMA-D
RESP_COLS = ['localid', 'pos', 'ans', 'ttr', 'queryType', 'numTries', 'clipNum', 'questNum', 'subType', 'clipName',
             'sessionNums', 'respEmo', 'respLevel', 'dispEmo', 'dispVal', 'dispLevel']


# actors of the CREMA-D miniature and their sex as VideoDemographics.csv gives it: dealt round robin by id they
# would pair 1001 with 1006 (two men), so the sex-balance assertion below fails unless the folds read the sex
CREMA_SEX = {'1001': 'Male', '1002': 'Male', '1003': 'Male', '1004': 'Female', '1005': 'Female',
             '1006': 'Male', '1007': 'Female', '1008': 'Male', '1009': 'Female', '1010': 'Female'}
CREMA_CLIPS = ['1001_DFA_ANG_XX', '1002_IEO_HAP_HI', '1003_TIE_SAD_LO', '1004_WSI_NEU_XX', '1005_MTI_FEA_MD',
               '1006_ITH_DIS_HI', '1007_IOM_ANG_LO', '1008_IWW_SAD_MD', '1009_TAI_HAP_XX', '1010_IWL_FEA_HI']
# (clip, rater, queryType 1 voice / 2 face / 3 audio-visual, respEmo, respLevel)
CREMA_RESPONSES = [
    ('1001_DFA_ANG_XX', 'r1', 1, 'A', 80), ('1001_DFA_ANG_XX', 'r2', 1, 'A', 40), ('1001_DFA_ANG_XX', 'r3', 1, 'N', 50),
    ('1001_DFA_ANG_XX', 'r1', 1, 'S', 10),                        # r1 again, voice: listed, first kept
    ('1001_DFA_ANG_XX', 'r4', 2, 'D', 90), ('1001_DFA_ANG_XX', 'r5', 2, 'D', 70), ('1001_DFA_ANG_XX', 'r1', 2, 'F', 30),
    ('1001_DFA_ANG_XX', 'r6', 3, 'H', 60),
    ('1002_IEO_HAP_HI', 'r1', 1, 'H', 100), ('1002_IEO_HAP_HI', 'r7', 1, 'S', 30),     # a voice tie H:S
    ('1002_IEO_HAP_HI', 'r8', 3, 'H', 90), ('1002_IEO_HAP_HI', 'r9', 2, 'S', 90),
    ('1003_TIE_SAD_LO', 'r2', 1, 'S', ''),                        # no level: listed -> no voice response left
    ('1003_TIE_SAD_LO', 'r3', 2, 'S', 20),
    ('1004_WSI_NEU_XX', 'r4', 1, 'N', 150),                       # outside 0-100: listed, not clipped to 100
    ('1004_WSI_NEU_XX', 'r5', 1, 'N', 60),
    ('1005_MTI_FEA_MD', 'r6', 1, 'F', 55), ('1006_ITH_DIS_HI', 'r7', 1, 'D', 70),
    ('1007_IOM_ANG_LO', 'r8', 1, 'A', 35), ('1008_IWW_SAD_MD', 'r9', 1, 'S', 65),
    ('1009_TAI_HAP_XX', 'r1', 1, 'H', 45), ('1010_IWL_FEA_HI', 'r2', 1, 'F', 85),
    ('1010_IWL_FEA_HI', 'r3', 4, 'F', 85),                        # queryType 4: listed
    ('1011_DFA_ANG_XX', 'r3', 1, 'A', 50),                        # no such audio: listed
]
# processedResults/tabulatedVotes.csv rows: (row id = 100000 x mode + clip number, fileName, emoVote, agreement,
# meanEmoResp, numResponses); the distributor's numbers differ from a recount of finishedResponses.csv (they
# leave out slow responses), so a column filled from the wrong source shows
CREMA_TABULATED = [
    ('100001', '1001_DFA_ANG_XX', 'A', 0.7, 61.5, 10), ('200001', '1001_DFA_ANG_XX', 'D', 0.9, 77.7, 10),
    ('300001', '1001_DFA_ANG_XX', 'H', 0.3, 45.5, 10),
    ('100002', '1002_IEO_HAP_HI', 'H:S', 0.4, 52.0, 5), ('300002', '1002_IEO_HAP_HI', 'H', 0.8, 88.0, 5),
    ('200003', '1003_TIE_SAD_LO', 'S', 0.6, 20.5, 5),
    ('100005', '1005_MTI_FEA_MD', 'F', 0.5, 55.0, 4), ('100005', '1005_MTI_FEA_MD', 'N', 0.5, 40.0, 4),  # repeated
    ('107443', 'ANG_HI_practice', 'A', 1.0, 90.0, 3),             # the practice clip: no audio, listed
    ('x', '1006_ITH_DIS_HI', 'D', 1.0, 70.0, 1),                  # no mode in the id: listed
]


def make_crema_d(root, clips=CREMA_CLIPS):
    """CREMA-D miniature in the distributed layout: AudioWAV/, finishedResponses.csv and
    processedResults/tabulatedVotes.csv with R's unnamed row-name column first, VideoDemographics.csv."""
    for i, c in enumerate(clips):
        wav(root / 'AudioWAV' / f'{c}.wav', seed=i)
    wav(root / 'AudioWAV' / '1001_XYZ.wav')                                         # not a CREMA-D name
    rows = [[rater, k, f'{emo}_{lvl}', 1500, q, 0, int(clip[:4]) - 1000, k, 4, clip, 7, emo, lvl, 'x', 50, 50]
            for k, (clip, rater, q, emo, lvl) in enumerate(CREMA_RESPONSES)]
    pd.DataFrame(rows, columns=RESP_COLS, index=range(1, len(rows) + 1)).to_csv(root / 'finishedResponses.csv')
    (root / 'processedResults').mkdir()
    tab = pd.DataFrame([[0] * 6 + [f, n, ag, v, m] for _, f, v, ag, m, n in CREMA_TABULATED],
                       columns=['A', 'D', 'F', 'H', 'N', 'S', 'fileName', 'numResponses', 'agreement', 'emoVote',
                                'meanEmoResp'], index=[r[0] for r in CREMA_TABULATED])
    tab.to_csv(root / 'processedResults' / 'tabulatedVotes.csv')
    pd.DataFrame({'ActorID': list(CREMA_SEX), 'Age': [51, 21, 30, 42, 25, 33, 60, 28, 45, 37],
                  'Sex': list(CREMA_SEX.values()), 'Race': ['Caucasian', 'Asian'] * 5,
                  'Ethnicity': ['Not Hispanic', 'Hispanic'] * 5}).to_csv(root / 'VideoDemographics.csv', index=False)
    return root


def test_crema_d(tmp_path):
    src = make_crema_d(tmp_path / 'CREMA-D')
    out, lab, det, folds, skipped = convert('crema-d', src, tmp_path / 'out', '--audio', 'hardlink')
    lab = lab.set_index('FileName')
    assert len(lab) == 10 and (lab.LabelSource == 'derived').all() and (lab.LabelMode == 'voice').all()
    a = lab.loc['1001_DFA_ANG_XX.wav']            # voice responses only; r1's second voice response left out
    want = np.mean([pad_avd('anger', .8), pad_avd('anger', .4), pad_avd('neutral', .5)], axis=0)
    assert np.allclose((a.EmoAct, a.EmoVal, a.EmoDom), want, atol=1e-4)
    assert a.DerivedFrom == 'listener categories' and a.Category == 'anger'
    assert (a.LabelVote, a.LabelAgreement, a.LabelRaters) == ('A', 0.6667, 3)
    # each mode's tabulated row in its own columns, as distributed
    assert (a.VoiceVote, a.VoiceAgreement, a.VoiceMeanLevel, a.VoiceResponses) == ('A', 0.7, 61.5, 10)
    assert (a.FaceVote, a.FaceAgreement, a.FaceMeanLevel) == ('D', 0.9, 77.7)
    assert (a.AudioVisualVote, a.AudioVisualAgreement, a.AudioVisualMeanLevel) == ('H', 0.3, 45.5)
    assert a.Gender == 'Male' and a.Age == 51
    h = lab.loc['1002_IEO_HAP_HI.wav']            # a voice tie: both letters, half the responses each
    assert (h.LabelVote, h.LabelAgreement, h.VoiceVote, h.AudioVisualVote) == ('H:S', 0.5, 'H:S', 'H')
    assert pd.isna(h.FaceVote)                    # no face row for this clip
    assert np.allclose((h.EmoAct, h.EmoVal, h.EmoDom),
                       np.mean([pad_avd('happiness', 1.0), pad_avd('sadness', .3)], axis=0), atol=1e-4)
    s = lab.loc['1003_TIE_SAD_LO.wav']            # its only voice response lacks a level -> intended emotion
    assert s.DerivedFrom == 'intended category' and np.allclose((s.EmoAct, s.EmoVal, s.EmoDom),
                                                                pad_avd('sadness', .5))
    assert s.LabelRaters == 0 and s.FaceVote == 'S' and pd.isna(s.VoiceVote)
    n = lab.loc['1004_WSI_NEU_XX.wav']            # the level 150 is left out, not clipped into a rating
    assert n.LabelRaters == 1 and (n.EmoAct, n.EmoVal, n.EmoDom) == (4, 4, 4)
    assert pd.isna(lab.loc['1005_MTI_FEA_MD.wav', 'VoiceVote'])     # its voice row is repeated: both out
    r = rating(det)
    r1 = r[r.FileName == '1001_DFA_ANG_XX.wav'].set_index('Worker')
    assert sorted(r1.index) == ['r1', 'r2', 'r3'] and (det.LabelSource == 'derived').all()
    assert tuple(r1.loc['r1', ['A', 'V', 'D']]) == tuple(round(x, 1) for x in pad_avd('anger', .8))
    assert tuple(r1.loc['r3', ['A', 'V', 'D']]) == (4.0, 4.0, 4.0) and r1.loc['r3', 'Class'] == 'Neutral'
    assert r[r.FileName == '1003_TIE_SAD_LO.wav'].Worker.tolist() == ['INTENDED']
    votes = pd.read_csv(out / 'Labels' / 'category_votes.csv')     # every response with its mode
    v1 = votes[votes.FileName == '1001_DFA_ANG_XX.wav']
    assert sorted(zip(v1.Rater, v1.Mode, v1.Response)) == [
        ('r1', 'face', 'F'), ('r1', 'voice', 'A'), ('r2', 'voice', 'A'), ('r3', 'voice', 'N'), ('r4', 'face', 'D'),
        ('r5', 'face', 'D'), ('r6', 'audiovisual', 'H')]
    assert v1.InLabels.tolist() == (v1.Mode == 'voice').tolist()
    assert Corpus(out).transcript('1002_IEO_HAP_HI.wav') == "It's eleven o'clock."
    assert not os.path.islink(out / 'Audios' / '1002_IEO_HAP_HI.wav')
    why = dict(zip(skipped.Item, skipped.Reason))
    row = {(c, q, e, str(lv)): k + 2 for k, (c, _, q, e, lv) in enumerate(CREMA_RESPONSES)}
    assert 'respLevel' in why[f'finishedResponses.csv row {row["1003_TIE_SAD_LO", 1, "S", ""]}']
    assert 'outside the 0-100' in why[f'finishedResponses.csv row {row["1004_WSI_NEU_XX", 1, "N", "150"]}']
    assert 'queryType' in why[f'finishedResponses.csv row {row["1010_IWL_FEA_HI", 4, "F", "85"]}']
    assert 'no audio' in why[f'finishedResponses.csv row {row["1011_DFA_ANG_XX", 1, "A", "50"]}']
    assert 'second voice response' in why['1001_DFA_ANG_XX rater r1'] and 'AudioWAV/1001_XYZ.wav' in why
    assert 'second voice row' in why['tabulatedVotes.csv row 9'] and 'no audio' in why['tabulatedVotes.csv row 10']
    assert 'presentation mode' in why['tabulatedVotes.csv row 11']
    assert_folds_disjoint(out, folds, 5)
    for k in range(1, 6):                          # sex balance: every fold tests one man and one woman
        test = folds[folds[f'fold{k}'] == 'Test'].SpkrID.unique()
        assert sorted(lab.Gender[lab.SpkrID.isin(test)]) == ['Female', 'Male'], (k, test)


def test_crema_d_other_mode_and_demographics(tmp_path):
    src = make_crema_d(tmp_path / 'CREMA-D')
    out, lab, det, folds, skipped = convert('crema-d', src, tmp_path / 'face', '--mode', 'face')
    a = lab.set_index('FileName').loc['1001_DFA_ANG_XX.wav']
    want = np.mean([pad_avd('disgust', .9), pad_avd('disgust', .7), pad_avd('fear', .3)], axis=0)
    assert np.allclose((a.EmoAct, a.EmoVal, a.EmoDom), want, atol=1e-4)
    assert (a.LabelMode, a.LabelVote, a.LabelAgreement, a.LabelRaters) == ('face', 'D', 0.6667, 3)
    assert (a.VoiceVote, a.FaceVote) == ('A', 'D')              # the tabulated columns do not move
    assert set(rating(det).query("FileName == '1001_DFA_ANG_XX.wav'").Worker) == {'r1', 'r4', 'r5'}
    assert run('ravdess', src, tmp_path / 'x', '--mode', 'face') == 2
    demo = pd.read_csv(src / 'VideoDemographics.csv', dtype=str)
    pd.concat([demo, demo.iloc[[2]]]).to_csv(src / 'VideoDemographics.csv', index=False)   # listed twice alike
    *_, skipped = convert('crema-d', src, tmp_path / 'twice')
    assert 'actor 1003 listed twice' in dict(zip(skipped.Item, skipped.Reason))['VideoDemographics.csv row 12']
    other = demo.iloc[[2]].assign(Sex='Female')                  # listed twice, differently: refused
    pd.concat([demo, other]).to_csv(src / 'VideoDemographics.csv', index=False)
    assert run('crema-d', src, tmp_path / 'refused') == 2 and not (tmp_path / 'refused').exists()


# ------------------------------------------------------------------------------------------------- RAVDESS
def make_ravdess(root, actors=(1, 2, 3, 4)):
    for a in actors:
        for emo, inten in (('05', '02'), ('01', '01')):
            wav(root / f'Actor_{a:02d}' / f'03-01-{emo}-{inten}-01-01-{a:02d}.wav', sr=48000, seed=a)
    wav(root / 'Actor_01' / '03-02-03-01-01-01-01.wav', sr=48000)           # song
    wav(root / 'Actor_01' / '01-01-03-01-01-01-01.wav', sr=48000)           # audio-video modality code
    return root


def test_ravdess(tmp_path):
    src = make_ravdess(tmp_path / 'RAVDESS')
    out, lab, det, folds, skipped = convert('ravdess', src, tmp_path / 'out')
    assert len(lab) == 8 and set(lab.Gender[lab.SpkrID == '01']) == {'Male'}
    ang = lab.set_index('FileName').loc['03-01-05-02-01-01-02.wav']
    assert (ang.EmoAct, ang.EmoVal, ang.EmoDom) == pad_avd('anger', 1.0) and ang.Intensity == 'strong'
    assert ang.LabelSource == 'derived' and ang.DerivedFrom == 'intended category' and ang.Category == 'anger'
    assert rating(det).Worker.unique().tolist() == ['INTENDED'] and len(det) == 8
    assert Corpus(out).transcript('03-01-05-02-01-01-02.wav') == 'Kids are talking by the door.'
    why = dict(zip(skipped.Item, skipped.Reason))
    assert '--song' in why['Actor_01/03-02-03-01-01-01-01.wav'] and 'modality 01' in why['Actor_01/01-01-03-01-01-01-01.wav']
    assert_folds_disjoint(out, folds, 4)
    out2, lab2, *_ = convert('ravdess', src, tmp_path / 'song', '--song')
    assert len(lab2) == 9 and set(lab2.VocalChannel) == {'speech', 'song'}


def test_folders_that_are_not_the_corpus_are_refused(tmp_path, capsys):
    rav = make_ravdess(tmp_path / 'RAVDESS', actors=(1,))
    for name, label, expect in (('iemocap', 'IEMOCAP', 'Session1'), ('msp-improv', 'MSP-IMPROV', 'Evaluation.txt'),
                                ('crema-d', 'CREMA-D', 'AudioWAV'), ('emodb', 'Emo-DB', 'wav/SSTTTEV.wav')):
        assert run(name, rav, tmp_path / name) == 2
        err = capsys.readouterr().err
        assert f'is not {label} as distributed' in err and expect in err
        assert not (tmp_path / name).exists()
    assert run('ravdess', tmp_path / 'nothing', tmp_path / 'x') == 2 and 'Actor_NN' in capsys.readouterr().err
    assert run('ravdess', rav, tmp_path / 'x', '--self-evaluations') == 2
    assert 'iemocap only' in capsys.readouterr().err


def test_help_explains_every_flag(capsys):
    with pytest.raises(SystemExit):
        prepare_corpus.main(['--help'])
    out = capsys.readouterr().out
    for flag in ('--audio', '--speakers', '--force', '--max-list', '--self-evaluations', '--song', '--consensus', '--mode',
                 '--seed', 'skipped.csv', 'folds.csv'):
        assert flag in out


# ------------------------------------------------------------------------------------------------- real data
@pytest.mark.skipif(not RAVDESS.is_dir(), reason='../shared/datasets/ravdess absent')
def test_real_ravdess(tmp_path):
    out, lab, det, folds, skipped = convert('ravdess', RAVDESS, tmp_path / 'ravdess')
    assert len(lab) == 240 and lab.groupby('SpkrID').size().tolist() == [60] * 4 and skipped.empty
    assert sf.info(str(out / 'Audios' / lab.FileName[0])).samplerate == 48000      # linked, not resampled
    assert_folds_disjoint(out, folds, 4)
    c = Corpus(out, fold=2)
    assert {c.speaker(n) for n in c.files('Test')} == {'02'}
    assert check_corpus.main([str(out), '--no-progress', '--max-list', '1']) == 0


@pytest.mark.skipif(not (EMODB / 'wav').is_dir(), reason='../shared/datasets/emodb absent')
def test_real_emodb_subset(tmp_path):
    out, lab, det, folds, skipped = convert('emodb', EMODB, tmp_path / 'emodb', '--speakers', '09,11')
    assert len(lab) > 90 and (lab.LabelSource == 'derived').all() and set(lab.Category) == {
        'anger', 'boredom', 'disgust', 'fear', 'happiness', 'sadness', 'neutral'}
    assert (det.LabelSource == 'simulated').all()
    assert sf.info(str(out / 'Audios' / lab.FileName[0])).samplerate == 16000
    f = folds.groupby('fold2').SpkrID.apply(set)
    assert f['Test'] == {'9'} and f['Validation'] == {'11'} and 'Train' not in f
    rep = check_corpus.check(out, progress=False)
    assert not rep['fatal'] and len(rep['folds']) == 5
    c = Corpus(out, fold=3)
    assert {c.speaker(n) for n in c.files('Test')} == {'11'} and c.words(c.files('Test')[0])


# ------------------------------------------------------------------------------------------------- pipeline
@pytest.mark.skipif(not RAVDESS.is_dir(), reason='../shared/datasets/ravdess absent')
def test_converted_corpus_runs_through_the_pipeline(tmp_path, capsys):
    """A RAVDESS subset (3 files per actor) converted, then LLDs, NormTerm and preference labels of fold 2."""
    src = tmp_path / 'src'
    for a in sorted(RAVDESS.glob('Actor_0*')):
        (src / a.name).mkdir(parents=True)
        for f in sorted(a.glob('*.wav'))[::20]:
            (src / a.name / f.name).symlink_to(f)
    out, lab, *_ = convert('ravdess', src, tmp_path / 'rav')
    import extract_features
    import norm_para
    sys.path.insert(0, str(REPO / 'chunk_emotion_rankers'))
    import generate_preference_labels as gpl
    feats = tmp_path / 'lld'
    assert run_script(extract_features.main, ['--corpus', str(out), '--feature', 'lld', '--out', str(feats),
                                              '--workers', '1']) == 0
    assert run_script(norm_para.main, ['--corpus', str(out), '--features', str(feats), '--fold', '2',
                                       '--out', str(tmp_path / 'NormTerm')]) == 0
    printed = capsys.readouterr().out
    assert 'splits of fold2' in printed and 'Train (release Train): 6 utterances' in printed
    written = gpl.main(['--corpus', str(out), '--fold', '2', '-emo', 'Act', '-set', 'Train,Validation', '--ratio',
                        '1', '--out', str(tmp_path / 'pref')])
    pairs = pd.read_csv(written[0])
    train = set(Corpus(out, fold=2).files('Train'))
    assert len(pairs) and set(pairs.iloc[:, 0]) | set(pairs.iloc[:, 1]) <= train
    assert (tmp_path / 'NormTerm' / 'feat_norm_means.mat').exists()
    # a ranker trained on fold 2 records the fold (one epoch, a few pairs)
    import json

    import training_ranker
    ck = training_ranker.main(['-ep', '1', '-batch', '4', '-emo', 'Act', '--corpus', str(out), '--features', str(feats),
                               '--fold', '2', '--pairs', str(tmp_path / 'pref'), '--out', str(tmp_path / 'rk'),
                               '--workers', '0', '--device', 'cpu', '--pairs-per-epoch', '8'])[0]
    meta = json.loads(Path(str(ck).replace('.pth.tar', '.meta.json')).read_text())
    assert meta['corpus']['fold'] == 'fold2' and meta['corpus']['name'] == 'rav' and meta['settings']['fold'] == 'fold2'


def test_speaker_subset_reports_nothing_extra(tmp_path):
    src = make_crema_d(tmp_path / 'CREMA-D')
    out, lab, det, folds, skipped = convert('crema-d', src, tmp_path / 'out', '--speakers', '1001,1002,1003')
    assert set(lab.SpkrID) == {'1001', '1002', '1003'}
    others = skipped.Item.str.contains(r'10(?:0[4-9]|10)_') | skipped.Reason.str.contains(r'10(?:0[4-9]|10)_')
    assert not others.any() and skipped.Reason.str.contains('1011_DFA_ANG_XX').any()   # no audio at all
    assert [c for c in folds.columns if c.startswith('fold')] == ['fold1', 'fold2', 'fold3']


# ------------------------------------------------------------------------------------------------- Emo-DB
def make_emodb(root):
    """Emo-DB miniature: wav/SSTTTEV.wav at 22.05 kHz, silb/<name>.silb, erkennung.txt (latin-1, decimal comma)."""
    names = ['03a01Fa', '08a01Wa', '09a01Ta', '10a01Na', '11a01La', '12a01Ea']
    rec = ['Nr.\tSatz\terkannt\tnatuerlich']
    for i, n in enumerate(names):
        wav(root / 'wav' / f'{n}.wav', seconds=1.6, sr=22050, seed=i)
        (root / 'silb').mkdir(exist_ok=True)
        (root / 'silb' / f'{n}.silb').write_text('0.10\tder\n0.30\tlap\n0.45\tpen\n0.65\tliegt\n0.85\tauf\n'
                                                 '1.00\tdem\n1.10\teis\n1.30\tschrank\n1.50\t.\n', encoding='latin-1')
        rec.append(f'{i + 1}\xa0\t{n}.wav\t{90 - i},00\xa0\t50,00\xa0')
    (root / 'erkennung.txt').write_text('\n'.join(rec) + '\n', encoding='latin-1')
    return root


def test_emodb_miniature_and_malformed(tmp_path):
    src = make_emodb(tmp_path / 'emodb')
    (src / 'wav' / '13a01Fa.wav').write_bytes(b'RIFF\x00\x00garbage')       # unreadable audio
    wav(src / 'wav' / 'readme.wav')                                           # not an Emo-DB name
    (src / 'silb' / '09a01Ta.silb').unlink()                                  # no syllable file
    out, lab, det, folds, skipped = convert('emodb', src, tmp_path / 'out')
    assert len(lab) == 6 and sf.info(str(out / 'Audios' / '03a01Fa.wav')).samplerate == 16000
    row = lab.set_index('FileName').loc['08a01Wa.wav']
    assert (row.EmoAct, row.EmoVal, row.EmoDom) == tuple(round(x, 2) for x in pad_avd('anger'))
    assert row.Category == 'anger' and row.LabelSource == 'derived' and row.DerivedFrom == 'intended category'
    assert len(det) == 60 and (det.LabelSource == 'simulated').all()
    why = dict(zip(skipped.Item, skipped.Reason))
    assert 'unreadable' in why['13a01Fa.wav'] and 'SSTTTEV' in why['readme.wav'] and 'syllable' in why['09a01Ta']
    assert [w for *_, w in Corpus(out).words('03a01Fa.wav')] == ['Der', 'Lappen', 'liegt', 'auf', 'dem',
                                                                  'Eisschrank']
    f1 = folds.groupby('fold1').SpkrID.apply(set)
    assert f1['Test'] == {'3', '8'} and f1['Validation'] == {'9', '10'} and f1['Train'] == {'11', '12'}
    assert not check_corpus.check(out, progress=False)['fatal']
