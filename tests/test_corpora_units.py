"""The small pieces of the corpus converters on their own, with values chosen so that a planted bug (a swapped
attribute, a changed tie-break, an off-by-one in a fold rotation, a bound moved) changes a result: the vote and
agreement of CREMA-D responses, the value parsers of IEMOCAP and MSP-IMPROV lines with their 1-5 scale, the
category table and 1-5 -> 1-7 mapping, the fold builders, and the audio checks (missing, empty, truncated,
all-zero). Fast: no corpus is converted here (tests/test_prepare_corpus.py and tests/test_accounting.py do)."""
import numpy as np
import pytest
import soundfile as sf

from corpora import common, crema_d, iemocap, msp_improv, ravdess
from corpora.common import Report, pad_avd, rotation_folds, session_folds, sex_balanced_groups


def test_vote_ties_and_agreement():
    assert crema_d.vote(['A', 'A', 'N']) == ('A', 0.6667)
    assert crema_d.vote(['S', 'H']) == ('H:S', 0.5)                      # ties joined, in letter order
    assert crema_d.vote(['N', 'D', 'N', 'D', 'F']) == ('D:N', 0.4)
    assert crema_d.vote(['F']) == ('F', 1.0)


def test_scale_mapping_and_category_table():
    assert [common.five_to_seven(x) for x in (1, 2, 3, 4.5, 5)] == [1.0, 2.5, 4.0, 6.25, 7.0]
    a, v, d = pad_avd('fear')                   # arousal .60, valence -.64, dominance -.43: each in its place
    assert (a, v, d) == (round(4 + 3 * .60, 4), round(4 - 3 * .64, 4), round(4 - 3 * .43, 4))
    assert pad_avd('fear', 0.5) == (round(4 + 1.5 * .60, 4), round(4 - 1.5 * .64, 4), round(4 - 1.5 * .43, 4))
    assert pad_avd('calm') == (round(4 - 3 * .6, 4), round(4 + 3 * .4, 4), round(4 + 3 * .1, 4))


def test_line_value_parsers():
    vals = msp_improv._values(['A:1.5', 'V: 2.25', 'D:NaN', 'N:x', 'Angry'])
    assert vals == {'A': 1.5, 'V': 2.25, 'D': None, 'N': None}
    assert msp_improv._out_of_scale({'A': 0.99, 'V': 1.0, 'D': 5.0, 'N': 5.01}) == ['A', 'N']
    assert msp_improv._out_of_scale({'A': None, 'V': 3}) == []
    assert iemocap.parse_attributes('val 3; act 2.5; dom  4;') == {'val': 3.0, 'act': 2.5, 'dom': 4.0}
    assert iemocap.parse_attributes('val 3; act ; dom x;') == {'val': 3.0, 'act': None, 'dom': None}
    assert iemocap.parse_attributes('dom 1; val 5;') == {'val': 5.0, 'act': None, 'dom': 1.0}
    assert [iemocap._scaled(x) for x in (0.99, 1, 5, 5.01, None)] == [None, 1.0, 7.0, None, None]


def test_rotation_folds_test_validation_train():
    f = rotation_folds([['a'], ['b', 'c'], [], ['d'], ['e']])      # the empty group is dropped
    assert len(f) == 4
    assert f[0] == {'a': 'Test', 'b': 'Validation', 'c': 'Validation', 'd': 'Train', 'e': 'Train'}
    assert f[1] == {'b': 'Test', 'c': 'Test', 'd': 'Validation', 'a': 'Train', 'e': 'Train'}
    assert f[3] == {'e': 'Test', 'a': 'Validation', 'b': 'Train', 'c': 'Train', 'd': 'Train'}   # cyclic
    with pytest.raises(Exception, match='at least 3'):
        rotation_folds([['a'], ['b'], []])


def test_sex_balanced_groups_read_the_sex():
    sex = {'1001': 'Male', '1002': 'Male', '1003': 'Female', '1004': 'Female', '1005': 'Male', '1006': 'Female',
           '1007': 'Female'}
    g = sex_balanced_groups(sex, sex, 3)       # men dealt first, the women continue the count
    assert g == [['1001', '1003', '1007'], ['1002', '1004'], ['1005', '1006']]
    assert [sorted(sex[s] for s in grp) for grp in g] == [['Female', 'Female', 'Male'], ['Female', 'Male'],
                                                          ['Female', 'Male']]


def test_ravdess_groups():
    sex = {f'{a:02d}': 'Male' if a % 2 else 'Female' for a in range(1, 25)}
    g = ravdess.groups_of(sorted(sex), sex)
    assert g[0] == ['01', '03', '02', '04'] and g[5] == ['21', '23', '22', '24'] and len(g) == 6
    sex13 = {k: v for k, v in sex.items() if int(k) <= 13}              # 7 men, 6 women: 3 groups of 2 + 2
    g = ravdess.groups_of(sorted(sex13), sex13)
    assert g == [['01', '03', '02', '04', '13'], ['05', '07', '06', '08'], ['09', '11', '10', '12']]   # the spare joins group 1
    sex8 = {k: v for k, v in sex.items() if int(k) <= 8}               # 4 + 4: groups of 1 man + 1 woman
    assert ravdess.groups_of(sorted(sex8), sex8) == [['01', '02'], ['03', '04'], ['05', '06'], ['07', '08']]
    sex4 = {k: v for k, v in sex.items() if int(k) <= 4}
    assert ravdess.groups_of(sorted(sex4), sex4) == [['01'], ['02'], ['03'], ['04']]


def test_session_folds_and_note():
    class U:
        def __init__(self, spk, sess):
            self.speaker, self.extra = spk, {'Session': sess}
    utts = [U('S1F', 1), U('S1M', 1), U('S2F', 2), U('S3M', 3), U('S3F', 3)]
    f = session_folds(utts, Report())
    assert f[2] == {'S3M': 'Test', 'S3F': 'Test', 'S1F': 'Validation', 'S1M': 'Validation', 'S2F': 'Train'}
    rep = Report()
    assert session_folds(utts[:3], rep) == [] and rep.notes[0][0] == 'folds' and '2 session(s)' in rep.notes[0][1]


def test_audio_checks(tmp_path):
    sr = 16000
    x = np.zeros(sr, np.float32)
    sf.write(tmp_path / 'silent.wav', x, sr, subtype='PCM_16')
    x[-1] = 1 / 32768                                                   # one quantum, in the last sample
    sf.write(tmp_path / 'last.wav', x, sr, subtype='PCM_16')
    long = np.zeros(3 * sr, np.float32)
    long[2 * sr + 5] = 0.5                                              # past the first read block
    sf.write(tmp_path / 'late.wav', long, sr, subtype='PCM_16')
    sf.write(tmp_path / 'ok.wav', np.full(sr // 2, 0.1, np.float32), sr, subtype='PCM_16')
    b = (tmp_path / 'ok.wav').read_bytes()
    (tmp_path / 'cut.wav').write_bytes(b[:len(b) - 400])              # 200 samples (12.5 ms) missing
    (tmp_path / 'nearly.wav').write_bytes(b[:len(b) - 300])           # 150 samples (9.4 ms): within 10 ms
    sf.write(tmp_path / 'empty.wav', np.zeros(0, np.float32), sr)
    (tmp_path / 'bad.wav').write_bytes(b'RIFF\x00\x00garbage')
    rep = Report()
    got = {n: common.audio_seconds(tmp_path / f'{n}.wav', rep, n)
           for n in ('silent', 'last', 'late', 'ok', 'cut', 'nearly', 'empty', 'bad', 'missing')}
    assert got['last'] == 1.0 and got['late'] == 3.0 and got['ok'] == 0.5
    assert got['nearly'] == pytest.approx((sr // 2 - 150) / sr)
    assert {n for n, s in got.items() if s is None} == {'silent', 'cut', 'empty', 'bad', 'missing'}
    why = dict(rep.skipped)
    assert 'digital silence' in why['silent'] and 'shorter than its header' in why['cut']
    assert '0.49 s of 0.50 s' in why['cut'] and 'no samples' in why['empty']
    assert 'unreadable' in why['bad'] and 'missing' in why['missing'] and not rep.notes
    assert common.digital_silence(tmp_path / 'silent.wav') and not common.digital_silence(tmp_path / 'late.wav',
                                                                                          block=1000)
