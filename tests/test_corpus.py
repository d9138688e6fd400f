"""corpus.py, check_corpus.py and the tiny-corpus fixture."""
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

import check_corpus
import corpus
import demo_corpus
from corpus import Corpus, CorpusError, parse_emodetail, read_textgrid, textgrid_words
from demo_corpus import ensure_demo_corpus
from tests.fixtures import make_tiny_corpus, write_textgrid

REPO = corpus.REPO


def _tables(c):
    return c.labels, c.ratings(), c.splits_found(), {s: c.files(s) for s in ('Train', 'Validation', 'Test')}


# ---------------------------------------------------------------------------------------------
# reader: every release layout gives the same tables

VARIANTS = [  # detailed, consensus spelling, audio dir, labels dir
    ('json', 'labels_concensus.csv', 'Audio', 'labels'),
    ('csv', 'labels_consensus.csv', 'Audio', 'label'),
    ('emodetail', 'labels_concensus.csv', 'Audios', 'label'),
    ('csv', 'labels_concensus.csv', 'Audios', 'Labels'),
]


@pytest.mark.parametrize('detailed,cons,audio,labels', VARIANTS)
def test_all_layouts_give_identical_tables(tiny_corpus, tmp_path, detailed, cons, audio, labels):
    ref = Corpus(tiny_corpus)
    assert ref.detailed_format == 'emodetail'
    root = make_tiny_corpus(tmp_path / 'c', detailed=detailed, consensus_name=cons, audio_dir=audio,
                            labels_dir=labels, with_text=False)
    c = Corpus(root)
    assert c.detailed_format == detailed and c.consensus_path.name == cons
    assert c.audio_dir.name == audio and c.labels_dir.name == labels
    a, b = _tables(ref), _tables(c)
    pd.testing.assert_frame_equal(a[0], b[0])
    pd.testing.assert_frame_equal(a[1], b[1])
    assert a[2] == b[2] and a[3] == b[3]
    for emo in ('Act', 'Dom', 'Val'):
        x, y = ref.rating_lists(emo, 'Train'), c.rating_lists(emo, 'Train')
        assert x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x)
    assert all(c.audio_path(n).is_file() for n in c.files())


def test_reader_contents(tiny_corpus):
    c = Corpus(tiny_corpus)
    assert list(c.labels.columns[:8]) == corpus.LABEL_COLS and len(c) == 24 and c.name == 'corpus'
    assert c.splits_found() == {'Train': ['Train'], 'Validation': ['Development'], 'Test': ['Test1']}
    assert len(c.files('Train')) == 12 and len(c.files('Validation')) == 6 and len(c.files()) == 24
    assert c.files('Development') == c.files('Validation') == c.files('validation')
    r = c.ratings()
    assert list(r.columns) == corpus.RATING_COLS and r['Worker'].str.startswith('WORKER').all()
    n_ann = r.groupby('FileName').size()
    assert n_ann.between(3, 6).all() and len(n_ann) == 24
    for emo, _col in (('Act', 'EmoAct'), ('Dom', 'EmoDom'), ('Val', 'EmoVal')):
        rl = c.rating_lists(emo)
        for n in c.files():   # consensus is the mean of integer ratings 1..7
            v = rl[n]
            assert np.all(v == np.round(v)) and v.min() >= 1 and v.max() <= 7
            assert c.consensus(n, emo) == pytest.approx(v.mean(), abs=1e-4)
    n = c.files('Train')[0]
    assert c.speaker(n) == n.split('_')[1][-1] and c.split_of(n) == 'Train'
    assert c.transcript(n)[0].isupper() and c.words(n)[0][2] == c.transcript(n).split()[0].lower()
    w = c.words(n)
    assert all(a < b for a, b, _ in w) and all(t.strip() for _, _, t in w)
    # speaker-disjoint splits
    spk = {s: {c.speaker(x) for x in c.files(s)} for s in ('Train', 'Validation', 'Test')}
    assert not (spk['Train'] & spk['Validation']) and not (spk['Train'] & spk['Test'])
    with pytest.raises(CorpusError, match='not in'):
        c.consensus('nope.wav', 'Act')
    with pytest.raises(CorpusError, match='Act, Dom or Val'):
        c.rating_lists('Happiness')


def test_fixture_audio_follows_arousal_and_trend(tiny_corpus, tmp_path):
    c = Corpus(tiny_corpus)
    rms, act, rise = [], [], []
    for n in c.files():
        x, sr = sf.read(c.audio_path(n))
        info = sf.info(c.audio_path(n))
        assert sr == 16000 and info.channels == 1 and info.subtype == 'PCM_16'
        assert 0.49 <= len(x) / sr <= 4.01
        rms.append(np.sqrt(np.mean(x ** 2)))
        act.append(c.consensus(n, 'Act'))
        t = len(x) // 3
        rise.append(np.sqrt(np.mean(x[-t:] ** 2)) > 1.5 * np.sqrt(np.mean(x[:t] ** 2)))
    assert np.corrcoef(rms, act)[0, 1] > 0.6 and all(rise)
    assert sum(len(sf.read(c.audio_path(n))[0]) == 8000 for n in c.files()) == 2
    fall = Corpus(make_tiny_corpus(tmp_path / 'f', n=6, trend='fall', short=0, with_text=False))
    for n in fall.files():
        x = sf.read(fall.audio_path(n))[0]
        t = len(x) // 3
        assert np.sqrt(np.mean(x[:t] ** 2)) > 1.5 * np.sqrt(np.mean(x[-t:] ** 2))


@pytest.mark.parametrize('names,expect', [
    (('Train', 'Validation', 'Test'), {'Train': ['Train'], 'Validation': ['Validation'], 'Test': ['Test']}),
    (('Train', 'Development', 'Test1', 'Test2'),            # Test is the published test set, Test1
     {'Train': ['Train'], 'Validation': ['Development'], 'Test': ['Test1']}),
    (('Train', 'Dev', 'Test'), {'Train': ['Train'], 'Validation': ['Dev'], 'Test': ['Test']}),
])
def test_split_mapping(tmp_path, names, expect):
    c = Corpus(make_tiny_corpus(tmp_path / 'c', n=16, split_names=names, with_text=False, detailed=None))
    assert c.splits_found() == expect
    assert sorted(c.files('Test')) == sorted(sum((c.files(s) for s in expect['Test']), []))
    assert set(c.files('Train')) | set(c.files('Validation')) | set(c.files('Test')) | \
        set(sum((c.files(s) for s in c.unmapped_splits()), [])) == set(c.files())
    for s in names:   # exact release names work too
        assert len(c.files(s)) > 0
    with pytest.raises(CorpusError, match="unknown split 'Test9'"):
        c.files('Test9')
    with pytest.raises(CorpusError, match='per-annotator labels'):
        c.ratings()


# ---------------------------------------------------------------------------------------------
# label formats in detail

def test_emodetail_parsing_is_robust():
    s = ['WORKER00001; Angry; Frustrated, Annoyed; A:5.0; V:2.0; D:6.0;',
         'WORKER00002; Neutral; ; A:4; V:4.5; D:3;',               # empty secondary emotion
         ' WORKER00003 ;Happy;Amused, Excited, Other-joy;A: 6.0 ;V:7.0;D:5.0',   # spaces, no final ;
         'WORKER00004; Sad; Sad; V:2.0; D:3.0; A:1.0;',            # other key order
         'WORKER00005; Other; ; A:; V:nan; D:6.0;',                 # missing values -> NaN
         'WORKER00006; Angry; ; A:6.0; V:1.0; D:7.0; WORKER00007; Calm; Relaxed, Bored; A:2.0; V:5.0; D:2.0;',
         None]
    out = parse_emodetail(pd.Series(s))
    assert out['Worker'].tolist()[:-1] == [f'WORKER0000{i}' for i in range(1, 8)]
    np.testing.assert_array_equal(out['EmoAct'].values[:7], [5, 4, 6, 1, np.nan, 6, 2])
    np.testing.assert_array_equal(out['EmoVal'].values[:7], [2, 4.5, 7, 2, np.nan, 1, 5])
    np.testing.assert_array_equal(out['EmoDom'].values[:7], [6, 3, 5, 3, 6, 7, 2])
    assert out.index.tolist() == [0, 1, 2, 3, 4, 5, 5, 6] and np.isnan(out['EmoAct'].iat[-1])


def test_long_csv_and_json_variants(tmp_path):
    root = make_tiny_corpus(tmp_path / 'c', n=8, detailed='csv', with_text=False)
    p = root / 'Labels' / 'labels_detailed.csv'
    ref = Corpus(root).ratings()
    d = pd.read_csv(p).rename(columns={'WorkerID': 'Workers'})
    d['EmoAct'] = d['EmoAct'].astype(str) + '.0'
    d.loc[0, 'EmoVal'] = np.nan
    d.to_csv(p, index=False)
    r = Corpus(root).ratings()
    assert np.isnan(r['EmoVal'].iat[0]) and len(r) == len(ref)
    pd.testing.assert_frame_equal(r.drop(columns='EmoVal'), ref.drop(columns='EmoVal'))
    c = Corpus(root)   # NaN dropped per attribute, the other attributes keep the rating
    n = r['FileName'].iat[0]
    assert len(c.rating_lists('Val')[n]) == len(c.rating_lists('Act')[n]) - 1
    # json nested one level deeper ({"file": {"Detailed": {worker: {...}}}}) and numbers as numbers
    js = {n: {'Detailed': {'W1': {'EmoAct': 3, 'EmoDom': '4', 'EmoVal': ' 5 '}}}}
    p.unlink()
    (root / 'Labels' / 'labels_detailed.json').write_text(json.dumps(js))
    r = Corpus(root).ratings()
    assert r.iloc[0].tolist() == [n, 'W1', 3.0, 5.0, 4.0]


def test_missing_columns_name_the_file(tmp_path):
    root = make_tiny_corpus(tmp_path / 'c', n=8, detailed='csv', with_text=False)
    p = root / 'Labels' / 'labels_consensus.csv'
    pd.read_csv(p).drop(columns=['EmoAct']).to_csv(p, index=False)
    with pytest.raises(CorpusError) as e:
        Corpus(root)
    msg = str(e.value)
    assert str(p) in msg and "missing column(s) ['EmoAct']" in msg and 'columns found' in msg and 'EmoDom' in msg
    make_tiny_corpus(root, n=8, detailed='csv', with_text=False)
    d = root / 'Labels' / 'labels_detailed.csv'
    pd.read_csv(d).rename(columns={'WorkerID': 'Who', 'EmoDom': 'Dommm'}).to_csv(d, index=False)
    with pytest.raises(CorpusError) as e:
        Corpus(root).ratings()
    assert str(d) in str(e.value) and 'Workers or WorkerID' in str(e.value) and 'EmoDom' in str(e.value)
    with pytest.raises(CorpusError, match='does not exist'):
        Corpus(tmp_path / 'nothing')
    (tmp_path / 'empty').mkdir()
    with pytest.raises(CorpusError, match='no consensus label file'):
        Corpus(tmp_path / 'empty')


# ---------------------------------------------------------------------------------------------
# TextGrid

IV = [(0.0, 0.3, ''), (0.3, 0.7, 'hello'), (0.7, 0.8, '   '), (0.8, 1.2, 'say "hi" 2'), (1.2, 1.3, 'sil'),
      (1.3, 1.6, 'world'), (1.6, 1.7, 'sp'), (1.7, 2.0, '')]
WORDS = [(0.3, 0.7, 'hello'), (0.8, 1.2, 'say "hi" 2'), (1.3, 1.6, 'world')]


@pytest.mark.parametrize('short', [False, True])
def test_textgrid_long_and_short(tmp_path, short):
    p = tmp_path / 'a.TextGrid'
    write_textgrid(p, IV, short=short)
    tiers = read_textgrid(p)
    assert [t['name'] for t in tiers] == ['words', 'phones'] and tiers[0]['xmax'] == 2.0
    assert tiers[0]['items'] == IV
    assert textgrid_words(p) == WORDS
    p.write_text(p.read_text(), encoding='utf-16')   # Praat's other encoding
    assert textgrid_words(p) == WORDS


def test_textgrid_point_tier_first_and_errors(tmp_path):
    p = tmp_path / 'b.TextGrid'
    p.write_text('File type = "ooTextFile"\nObject class = "TextGrid"\n\n0\n1\n<exists>\n2\n'
                 '"TextTier"\n"events"\n0\n1\n1\n0.5\n"click"\n'
                 '"IntervalTier"\n"words"\n0\n1\n2\n0\n0.5\n"a"\n0.5\n1\n""\n')
    assert read_textgrid(p)[0]['items'] == [(0.5, 0.5, 'click')]
    assert textgrid_words(p) == [(0.0, 0.5, 'a')]
    p.write_text('this is not a textgrid 1 2 3')
    with pytest.raises(CorpusError, match='b.TextGrid: not a readable Praat TextGrid'):
        textgrid_words(p)
    p.write_text('File type = "ooTextFile"\nObject class = "TextGrid"\n\n0\n1\n<exists>\n1\n"IntervalTier"\n"w"\n0\n1\n3\n0\n')
    with pytest.raises(CorpusError, match='not a readable'):   # truncated
        textgrid_words(p)


# ---------------------------------------------------------------------------------------------
# check_corpus

def _run(args):
    r = subprocess.run([sys.executable, str(REPO / 'check_corpus.py'), *map(str, args), '--no-progress'],
                       capture_output=True, text=True, cwd=REPO, timeout=120)
    return r.returncode, r.stdout + r.stderr


def test_check_corpus_reports_each_bad_input(tmp_path):
    root = make_tiny_corpus(tmp_path / 'c', n=24, split_names=('Train', 'Development', 'Test1', 'Test2'))
    c = Corpus(root)
    tr = c.files('Train')
    (root / 'Audios' / tr[0]).write_bytes(b'RIFF\x10\x00\x00\x00WAVEjunkjunk')           # corrupt WAV
    sf.write(root / 'Audios' / tr[1], np.zeros((44100, 2), np.float32), 44100)          # 44.1 kHz stereo
    sf.write(root / 'Audios' / tr[2], np.zeros(4800, np.float32), 16000)                 # 0.3 s
    (root / 'Audios' / tr[3]).unlink()                                                   # label row w/o audio
    c.transcript_path(tr[4]).unlink()                                                    # no transcript
    c.transcript_path(tr[5]).write_text(' ... !\n')                                      # only punctuation
    write_textgrid(c.textgrid_path(tr[6]), [(0, 0.5, ''), (0.5, 1.0, 'sil')])           # no words
    c.textgrid_path(tr[7]).unlink()                                                      # no TextGrid
    d = root / 'Labels' / 'labels_detailed.csv'
    det = pd.read_csv(d)
    det.loc[det.index[det.FileName == tr[8]][0], 'EmoDetail'] = 'WORKER00099; Angry; ; A:nan; V:9; D:;'  # NaN, 9
    det = det[(det.FileName != tr[9]) | ~det.duplicated('FileName')]                    # single rater
    det.to_csv(d, index=False)
    lab = root / 'Labels' / 'labels_consensus.csv'
    pd.read_csv(lab).replace({'Split_Set': {'Test2': 'Test3_unreleased'}}).to_csv(lab, index=False)
    (root / 'Audios' / 'MSP-PODCAST_9999_0001.wav').write_bytes((root / 'Audios' / tr[11]).read_bytes())
    c.transcript_path(tr[10]).write_bytes('Caf\u00e9 cr\u00e8me\n'.encode('latin-1'))       # not UTF-8: read, not empty

    rc, out = _run([root, '--json', tmp_path / 'rep.json', '--workers', '1'])
    assert rc == 0, out
    rep = json.loads((tmp_path / 'rep.json').read_text())
    files = {k: [it['file'] for it in p['items']] for k, p in rep['problems'].items()}
    assert files['unreadable_audio'] == [tr[0]]
    assert files['wrong_format'] == [tr[1]] and '44100 Hz, 2 channel' in out
    assert tr[2] in files['short_audio'] and '0.30 s' in out
    assert files['missing_audio'] == [tr[3]]
    assert files['missing_transcript'] == [tr[4]] and files['empty_transcript'] == [tr[5]]
    assert files['textgrid_no_words'] == [tr[6]] and files['missing_textgrid'] == [tr[7]]
    assert files['nan_rating'] == [tr[8], tr[8]] and files['out_of_range_rating'] == [tr[8]]
    assert 'WORKER00099 EmoAct' in out and 'WORKER00099 EmoVal=9' in out
    assert tr[9] in files['single_rater']
    assert 'empty_split' not in files
    assert 'Test3_unreleased' in out and rep['info']['audio_without_label_row'] == 1
    for f in [tr[0], tr[1], tr[3], tr[6], tr[8], tr[9]]:
        assert f in out                       # every problem is printed with its file name
    tr_stats = rep['splits']['Train']
    assert tr_stats['utterances'] == 12 and tr_stats['readable_audio'] == 10
    assert tr_stats['annotators']['min'] == 1 and 'OK: usable for training' in out
    assert rep['splits']['Test']['utterances'] == 4          # Test1 only; Test3_unreleased is not mapped
    # the parallel path gives the same report
    rep2 = check_corpus.check(root, workers=2, progress=False)
    assert {k: p['items'] for k, p in rep2['problems'].items()} == {k: p['items'] for k, p in rep['problems'].items()}


def test_check_corpus_fatal_and_empty_split(tmp_path):
    root = make_tiny_corpus(tmp_path / 'c', n=12, with_text=False, split_names=('Train', 'Test1'))
    rep = check_corpus.check(root, progress=False)
    assert not rep['fatal'] and [it['file'] for it in rep['problems']['empty_split']['items']] == ['Validation']
    assert [(it['file'], it['detail']) for it in rep['problems']['corpus_warning']['items']] == [
        ('', f'{root}: no Transcripts/ folder (needed only by the audio-text method)'),
        ('', f'{root}: no ForceAligned/ folder (needed only by the audio-text method)')]
    lab = root / 'Labels' / 'labels_consensus.csv'
    df = pd.read_csv(lab)
    df.drop(columns=['Split_Set']).to_csv(lab, index=False)                   # missing required column
    rc, out = _run([root])
    assert rc == 1 and str(lab) in out and "missing column(s) ['Split_Set']" in out and 'FATAL' in out
    df.assign(Split_Set='Test1').to_csv(lab, index=False)                     # no Train split
    rc, out = _run([root])
    assert rc == 1 and 'no Train utterances' in out
    df.to_csv(lab, index=False)
    for n in df.FileName[df.Split_Set == 'Train']:                            # no readable Train audio
        (root / 'Audios' / n).write_bytes(b'not a wav')
    rep = check_corpus.check(root, progress=False)
    assert any('readable audio' in f for f in rep['fatal'])
    assert check_corpus.main([str(tmp_path / 'missing'), '--no-progress']) == 1
    lab.unlink()
    rep = check_corpus.check(root, progress=False)
    assert rep['fatal'] and 'no consensus label file' in rep['fatal'][0]


def test_check_corpus_help_lists_every_flag():
    rc, out = _run(['--help'])
    assert rc == 0
    for flag in ('--workers', '--json', '--max-list', '--min-seconds', '--no-text', '--no-progress'):
        assert flag in out


# ---------------------------------------------------------------------------------------------
# demo corpus + speed

def test_ensure_demo_corpus(tmp_path, monkeypatch, tiny_corpus):
    assert ensure_demo_corpus(tiny_corpus) == tiny_corpus
    with pytest.raises(CorpusError, match='does not exist.*--corpus'):
        ensure_demo_corpus(tmp_path / 'not_there')
    built = []
    monkeypatch.setattr(demo_corpus, 'build', lambda root, seed=0: built.append((root, seed))
                        or make_tiny_corpus(root, n=6, with_text=False))
    monkeypatch.setattr(demo_corpus, 'REPO', tmp_path)
    monkeypatch.chdir(tmp_path)
    p = ensure_demo_corpus()
    assert built == [(tmp_path / corpus.DEFAULT_CORPUS, 0)] and len(Corpus(p)) == 6
    assert ensure_demo_corpus() == p and len(built) == 1


def test_large_tables_load(tmp_path):
    """30k utterances x 5 raters in the v1.11 EmoDetail format: every rating parsed, splits right (speed: bench/)."""
    n = 30000
    names = [f'MSP-PODCAST_{i // 50:04d}_{i:04d}.wav' for i in range(n)]
    (tmp_path / 'Labels').mkdir()
    pd.DataFrame({'FileName': names, 'EmoClass': 'N', 'EmoAct': 4.0, 'EmoVal': 4.0, 'EmoDom': 4.0, 'SpkrID': 1,
                  'Gender': 'Male', 'Split_Set': np.array(['Train', 'Development', 'Test1'])[np.arange(n) % 3]}
                 ).to_csv(tmp_path / 'Labels' / 'labels_consensus.csv', index=False)
    rep = np.repeat(names, 5)
    s = pd.Series([f'WORKER{i % 97:05d}' for i in range(len(rep))]) + '; Angry; Frustrated, Annoyed; A:5.0; V:2.0; D:6.0;'
    pd.DataFrame({'FileName': rep, 'EmoDetail': s}).to_csv(tmp_path / 'Labels' / 'labels_detailed.csv', index=False)
    c = Corpus(tmp_path)
    rl = c.rating_lists('Act', 'Train')
    assert len(c.ratings()) == 5 * n and len(rl) == n // 3 and all(len(v) == 5 for v in rl.values())
    assert all(np.array_equal(v, [5.0] * 5) for v in rl.values())
    assert c.rating_lists('Dom', 'Test')[names[2]].tolist() == [6.0] * 5


def test_check_corpus_report_never_replaces_a_corpus_file(tiny_corpus):
    """--json pointing at the corpus's own label file is refused before the check; the labels stay as they were."""
    from outputs import OutputClashError
    lab = tiny_corpus / 'Labels' / 'labels_consensus.csv'
    before = lab.read_bytes()
    with pytest.raises(OutputClashError, match='--json .* a file of the corpus'):
        check_corpus.main([str(tiny_corpus), '--json', str(lab), '--no-progress'])
    assert lab.read_bytes() == before
