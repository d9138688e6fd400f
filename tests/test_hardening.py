"""Hardening pass (issue 7): every script fed the bad inputs a user will meet.

Each check asserts a clear, specific message (the file or path concerned + what to do), no traceback,
and no lost work (the good items are processed, completed work stays on disk). Scripts run in-process
through their main(argv) (a SystemExit message counts as the script's stderr, an uncaught exception
as a traceback) to keep the module fast. A check that an owner still has to fix is marked
xfail(strict=True) with the exact failure; the assertion stays.
"""
import contextlib
import importlib.util
import io
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

REPO = Path(__file__).resolve().parents[1]

from cli import run_script  # noqa: E402
from tests.fixtures import make_tiny_corpus, synth_voice, write_textgrid  # noqa: E402
from tests.test_predict import make_published_dir  # noqa: E402

NO_CUDA = not torch.cuda.is_available()
_MODULES = {}


def call(script, *argv, cwd=None):
    """Run REPO/script's main(argv) in-process -> (exit code, stdout, stderr)."""
    path = REPO / script
    if path.name == 'check_corpus.py':  # binds sys.stdout as a default argument at import: run it for real
        p = subprocess.run([sys.executable, str(path)] + [str(a) for a in argv], capture_output=True, text=True,
                           timeout=300, cwd=cwd)
        return p.returncode, p.stdout, p.stderr
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))  # sibling imports, as when the script is run directly
    if path not in _MODULES:
        spec = importlib.util.spec_from_file_location('_hard_' + path.stem, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        _MODULES[path] = mod
    out, err = io.StringIO(), io.StringIO()
    old = os.getcwd()
    rc = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            if cwd:
                os.chdir(cwd)
            r = run_script(_MODULES[path].main, [str(a) for a in argv])
            rc = r if isinstance(r, int) else 0
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            if isinstance(e.code, str):
                print(e.code, file=sys.stderr)
        except Exception:
            rc = 1
            traceback.print_exc()
        finally:
            os.chdir(old)
    return rc, out.getvalue(), err.getvalue()


def assert_clear(rc, out, err, *must, ok_rc=False):
    """Failed cleanly (unless ok_rc): no traceback, and every string of `must` in the output."""
    text = out + err
    assert 'Traceback' not in text, text[-3000:]
    if not ok_rc:
        assert rc != 0, text[-2000:]
    for m in must:
        assert str(m) in text, f'{m!r} not in:\n{text[-3000:]}'


# ----------------------------------------------------------------------------- the bad corpus
@pytest.fixture(scope='module')
def bad(tmp_path_factory):
    """Tiny MSP-layout corpus whose Train split holds one of each bad input."""
    import soxr
    tmp = tmp_path_factory.mktemp('hard')
    root = make_tiny_corpus(tmp / 'corpus', n=16, detailed='csv')
    lab = pd.read_csv(root / 'Labels' / 'labels_consensus.csv')
    train = lab[lab.Split_Set == 'Train'].FileName.tolist()
    names = dict(zip(['empty', 'truncated', 'stereo', 'short', 'one_rater', 'punct', 'nowords'], train))
    a = root / 'Audios'
    sf.write(a / names['empty'], np.zeros(0, np.float32), 16000)
    (a / names['truncated']).write_bytes((a / names['truncated']).read_bytes()[:30])
    v = synth_voice(2.0, 5, seed=9)
    sf.write(a / names['stereo'], soxr.resample(np.stack([v, 0.3 * v], 1), 16000, 44100), 44100)
    sf.write(a / names['short'], synth_voice(0.3, 4, seed=10), 16000)
    det = pd.read_csv(root / 'Labels' / 'labels_detailed.csv')
    first = det[det.FileName == names['one_rater']].index[0]
    det[(det.FileName != names['one_rater']) | (det.index == first)].to_csv(root / 'Labels' / 'labels_detailed.csv',
                                                                           index=False)
    (root / 'Transcripts' / (names['punct'][:-4] + '.txt')).write_text('?! ... ,;\n')
    write_textgrid(root / 'ForceAligned' / (names['nowords'][:-4] + '.TextGrid'), [(0.0, 1.0, ''), (1.0, 2.0, '')],
                   xmax=2.0)
    (tmp / 'afile').write_text('a regular file: nothing can be created below it, not even by root\n')
    rc, out, err = call('extract_features.py', '--corpus', root, '--out', tmp / 'feats' / 'lld', '--workers', 1)
    return dict(tmp=tmp, root=root, names=names, lld=tmp / 'feats' / 'lld', unwritable=tmp / 'afile' / 'sub',
                extract=(rc, out, err))


@pytest.fixture(scope='module')
def pub(tmp_path_factory):
    return make_published_dir(tmp_path_factory.mktemp('pub') / 'authors')


@pytest.fixture(scope='module')
def pairs(bad):
    out = bad['tmp'] / 'pairs'
    rc, o, e = call('chunk_emotion_rankers/generate_preference_labels.py', '-emo', 'Act', '--corpus', bad['root'],
                    '--out', out, '--ratio', 0.5)
    assert rc == 0, o + e
    return out


@pytest.fixture(scope='module')
def rankseq(bad):
    """Ranking sequences in the published JSON format (what generate_ranking_seqence.py writes)."""
    from feature_store import FeatureStore
    out, rng = bad['tmp'] / 'rankseq', np.random.default_rng(0)
    out.mkdir(exist_ok=True)
    store = FeatureStore(bad['lld'])
    for split in ('training', 'validation', 'testing'):
        seqs = {n: {'ChunkRankSeq': [int(r) for r in rng.integers(1, 23, 22)]} for n in store.names}
        (out / f'{split}_Act.json').write_text(json.dumps(seqs))
    return out


def variant(bad, name, edit):
    """A copy of the bad corpus's label folder + audio links with `edit(consensus DataFrame)` applied."""
    import shutil
    root = bad['tmp'] / name
    if not root.exists():
        shutil.copytree(bad['root'], root)
        p = root / 'Labels' / 'labels_consensus.csv'
        edit(pd.read_csv(p)).to_csv(p, index=False)
    return root


# ----------------------------------------------------------------------------- bad audio
def test_check_corpus_names_every_bad_input(bad):
    rc, out, err = call('check_corpus.py', bad['root'], '--workers', 1, '--no-progress')
    assert_clear(rc, out, err, *bad['names'].values(), ok_rc=True)
    assert rc == 0  # warnings only: the corpus is still usable
    for kind in ('unreadable', '44100 Hz, 2 channel', '0.30 s', 'one valid annotator', 'punctuation', 'no words'):
        assert kind in out, kind


def test_extract_features_skips_bad_audio_keeps_the_rest(bad):
    from feature_store import FeatureStore
    rc, out, err = bad['extract']
    assert_clear(rc, out, err, bad['names']['empty'], bad['names']['truncated'], 'skipped.csv', ok_rc=True)
    assert rc == 0
    skipped = pd.read_csv(bad['lld'] / 'skipped.csv')
    assert sorted(skipped.FileName) == sorted([bad['names']['empty'], bad['names']['truncated']])
    assert skipped.reason.str.contains('remove it|re-export').all()
    store = FeatureStore(bad['lld'])
    assert len(store) == 14 and bad['names']['stereo'] in store
    assert store.get(bad['names']['stereo']).shape[0] > 100  # 2 s at 62 frames/s after mixing and resampling
    assert 0 < store.get(bad['names']['short']).shape[0] < 62  # 0.3 s: fewer frames than one chunk
    rc, out, err = call('extract_features.py', '--corpus', bad['root'], '--out', bad['lld'], '--workers', 1)
    assert rc == 0 and '14 already in' in out  # a re-run resumes, nothing is redone or lost


def test_predict_bad_audio_listed_rest_processed(bad, pub):
    res = bad['tmp'] / 'pred.csv'
    rc, out, err = call('predict.py', bad['root'] / 'Audios', '--checkpoint', pub, '--norm', pub / 'NormTerm', '--emo', 'Act', '--out', res)
    assert_clear(rc, out, err, bad['names']['empty'], bad['names']['truncated'], ok_rc=True)
    assert rc == 0
    df = pd.read_csv(res, keep_default_na=False).set_index('file')
    df.index = [Path(f).name for f in df.index]
    assert (df.error != '').sum() == 2 and len(df) == 16
    assert 'no samples' in df.loc[bad['names']['empty'], 'error']
    assert 're-export' in df.loc[bad['names']['truncated'], 'error']
    assert 1 <= float(df.loc[bad['names']['stereo'], 'Act']) <= 7 and 1 <= float(df.loc[bad['names']['short'], 'Act']) <= 7


def test_predict_ten_minute_clip_in_windows(pub, tmp_path):
    sf.write(tmp_path / 'ten_min.wav', np.tile(synth_voice(4.0, arousal=5, seed=7), 150), 16000)  # 600 s
    rc, out, err = call('predict.py', tmp_path / 'ten_min.wav', '--checkpoint', pub, '--norm', pub / 'NormTerm', '--emo', 'Act',
                        '--out', tmp_path / 'r.csv')
    assert rc == 0, err
    r = pd.read_csv(tmp_path / 'r.csv').iloc[0]
    assert int(r['n_windows']) >= 119 and abs(r['duration'] - 600) < 0.01  # 10 s windows, >= 5 s overlap
    t = np.asarray(json.loads(r['chunk_times']))
    assert len(t) == len(json.loads(r['Act_curve'])) and t[-1] > 599 and np.all(np.diff(t) > 0)


# ----------------------------------------------------------------------------- NaN features
def test_nan_in_feature_file(bad, tmp_path):
    """Published-format .mat feature files with NaN frames: imported, statistics finite, inputs finite."""
    import scipy.io

    from utils import load_norm, normalize_feats
    rng = np.random.default_rng(0)
    mats = tmp_path / 'mats'
    mats.mkdir()
    names = [n for k, n in bad['names'].items() if k not in ('empty', 'truncated')][:3]
    for i, n in enumerate(names):
        x = rng.normal(size=(80, 130))
        x[5:9, 3] = np.nan
        if i == 0:
            x[:, 7] = np.nan  # a whole dimension missing in one file
        scipy.io.savemat(mats / n.replace('.wav', '.mat'), {'Audio_data': np.hstack([np.arange(80)[:, None] * 0.016, x])})
    rc, out, err = call('extract_features.py', '--import-mat', mats, '--out', tmp_path / 'store', '--corpus', bad['root'])
    assert_clear(rc, out, err, ok_rc=True)
    assert rc == 0
    rc, out, err = call('norm_para.py', '--corpus', bad['root'], '--features', tmp_path / 'store', '--out', tmp_path / 'N')
    assert_clear(rc, out, err, ok_rc=True)
    assert rc == 0
    mean, std = load_norm(tmp_path / 'N')['feat']
    assert np.all(np.isfinite(mean)) and np.all(np.isfinite(std)) and np.all(std > 0)
    z = normalize_feats(np.full((4, 130), np.nan, np.float32), mean, std)
    assert np.all(z == 0)
    # predict's model input: NaN frames become 0 after the z-norm, predictions stay finite
    import inference
    from model import LSTMnet
    nets = {('seq', 'Act'): (LSTMnet(out_dim=1).eval(), (mean, std))}
    f = rng.normal(size=(200, 130)).astype(np.float32)
    f[10:50] = np.nan
    (r,) = inference.Predictor(nets, {'Act': (4.0, 1.0)}, 0.016, torch.device('cpu'))([f])
    assert np.isfinite(r['Act']) and np.all(np.isfinite(r['Act_curve']))


# ----------------------------------------------------------------------------- labels
@pytest.mark.parametrize('script,args', [
    ('check_corpus.py', ['{root}', '--workers', '1', '--no-progress']),
    ('extract_features.py', ['--corpus', '{root}', '--out', '{tmp}/nocol_feats', '--workers', '1']),
    ('norm_para.py', ['--corpus', '{root}', '--features', '{lld}', '--out', '{tmp}/nocol_N']),
    ('chunk_emotion_rankers/generate_preference_labels.py', ['--corpus', '{root}', '--out', '{tmp}/nocol_pl']),
    ('training.py', ['-emo', 'Act', '-ep', '1', '--corpus', '{root}', '--features', '{lld}', '--out', '{tmp}/nocol_s2s',
                     '--workers', '0']),
    ('testing.py', ['-emo', 'Act', '--checkpoint', '{pub}', '--norm', '{pub}/NormTerm', '--corpus', '{root}', '--features', '{lld}',
                    '--out', '{tmp}/nocol_test', '--workers', '0']),
])
def test_label_csv_missing_column(bad, pub, script, args):
    root = variant(bad, 'nocol', lambda d: d.drop(columns=['EmoAct']))
    argv = [a.format(root=root, tmp=bad['tmp'], lld=bad['lld'], pub=pub) for a in args]
    rc, out, err = call(script, *argv)
    assert_clear(rc, out, err, 'labels_consensus.csv', "missing column(s) ['EmoAct']", 'fix the header')


def test_one_rater_utterance(bad, pairs, rankseq):
    """One annotator: compared like any other utterance in the preference labels, and its own population std (0)
    makes its Seq2Seq target curve constant at its one rating, whatever its ranking sequence."""
    import training
    from corpus import Corpus
    from feature_store import FeatureStore
    pl = pd.read_csv(pairs / 'training_Act.csv')
    one = bad['names']['one_rater']
    assert one in set(pl.Sentence1) | set(pl.Sentence2)  # compared like any other utterance
    assert set(pl.PreferLabel) <= {0, 1}
    c = Corpus(bad['root'])
    (rating,) = c.rating_lists('Act', 'Train')[one]
    assert len(set(json.loads((rankseq / 'training_Act.json').read_text())[one]['ChunkRankSeq'])) > 1
    args = training.build_parser().parse_args(['-emo', 'Act', '--rankseq', str(rankseq)])
    train, _, _ = training.seq2seq_datasets(args, 'Act', c, FeatureStore(bad['lld']), lambda n, x: x, (4.0, 2.0))
    k = train.names.index(one)
    assert np.allclose(train.targets[0][k] * 2 + 4, rating) and train.targets[1][k] * 2 + 4 == pytest.approx(rating)
    several = [i for i, n in enumerate(train.names) if n != one]
    assert np.ptp(train.targets[0][several], axis=1).min() > 0.1   # several raters: a real curve


def test_transcript_of_only_punctuation_and_textgrid_without_words(bad):
    from corpus import Corpus
    from feature_store import FeatureStore
    c = Corpus(bad['root'])
    assert c.words(bad['names']['nowords']) == []
    out_dir = bad['tmp'] / 'feats' / 'text'
    rc, out, err = call('extract_features.py', '--corpus', bad['root'], '--feature', 'text', '--out', out_dir,
                        '--device', 'cpu')
    assert_clear(rc, out, err, ok_rc=True)
    assert rc == 0
    store = FeatureStore(out_dir)
    punct = bad['names']['punct']
    skipped = pd.read_csv(out_dir / 'skipped.csv')
    # kept, not skipped: the encoder's special tokens give >= 2 rows for a transcript of punctuation only
    assert punct in store and store.get(punct).shape[0] >= 2 and punct not in set(skipped.get('FileName', []))
    # MSCR: the utterance whose TextGrid has no words still gets the minimum of 2 chunks
    from dataloader import MSCRDataset
    norm = {'audio': (np.zeros(130), np.ones(130)), 'text': (np.zeros(store.dim), np.ones(store.dim)),
            'Act': (4, 1), 'Dom': (4, 1), 'Val': (4, 1)}
    ds = MSCRDataset(c, 'Train', FeatureStore(bad['lld']), store, norm, verbose=False)
    items = {n: len(spans) for n, spans, _ in ds.items}
    assert items[bad['names']['nowords']] == 2
    assert {n for n, _ in ds.skipped} >= {bad['names']['empty'], bad['names']['truncated']}


# ----------------------------------------------------------------------------- empty split
def _nodev(d):
    return d[d.Split_Set != 'Development']


def test_zero_utterance_split_extract_features(bad):
    root = variant(bad, 'nodev', _nodev)
    rc, out, err = call('extract_features.py', '--corpus', root, '--out', bad['tmp'] / 'nodev_feats', '--workers', 1,
                        '--split', 'Validation')
    assert_clear(rc, out, err, 'Validation', 'labels_consensus.csv')


@pytest.mark.parametrize('script,args,must', [
    ('norm_para.py', ['--corpus', '{root}', '--features', '{lld}', '--out', '{tmp}/nodev_N', '--split', 'Validation'],
     ['Validation', 'labels_consensus.csv']),
    ('chunk_emotion_rankers/generate_preference_labels.py', ['--corpus', '{root}', '--out', '{tmp}/nodev_pl', '-set',
                                                             'Validation'], ['Validation', '0 rated utterances']),
    ('training.py', ['-emo', 'Act', '-ep', '1', '-batch', '2', '--corpus', '{root}', '--features', '{lld}', '--rankseq',
                     '{rankseq}', '--out', '{tmp}/nodev_s2s', '--workers', '0'],
     ['labels_consensus.csv', 'fewer than 2 Validation utterances']),
    ('testing.py', ['-emo', 'Act', '--checkpoint', '{pub}', '--norm', '{pub}/NormTerm', '--corpus', '{root}', '--features', '{lld}', '-set',
                    'Validation', '--out', '{tmp}/nodev_test', '--workers', '0'], ['Validation', 'no utterances']),
])
def test_zero_utterance_split(bad, pub, rankseq, script, args, must):
    root = variant(bad, 'nodev', _nodev)
    rc, out, err = call(script, *[a.format(root=root, tmp=bad['tmp'], lld=bad['lld'], pub=pub, rankseq=rankseq)
                                  for a in args])
    assert_clear(rc, out, err, *must)


# ----------------------------------------------------------------------------- checkpoints
def _bad_ranker(tmp):
    from model import LSTMnet
    sd = LSTMnet(out_dim=1).state_dict()  # a Seq2Seq checkpoint where a ranker (2 outputs) is expected
    p = tmp / 'LSTM_epoch20_batch128_Act_ranker.pth.tar'
    torch.save(sd, p)
    return p


def test_wrong_shape_checkpoint_predict(pub, tmp_path):
    bad_dir = make_published_dir(tmp_path / 'badpub', bad='Act')
    sf.write(tmp_path / 'a.wav', synth_voice(1.5, seed=3), 16000)
    rc, out, err = call('predict.py', tmp_path / 'a.wav', '--checkpoint', bad_dir, '--norm', bad_dir / 'NormTerm',
                        '--out', tmp_path / 'r.csv')
    assert_clear(rc, out, err, 'LSTM_epoch30_batch128_EmoRankerSeq_Act.pth.tar', 'fc1.weight is (64, 130)')
    assert not (tmp_path / 'r.csv').exists()


def test_wrong_shape_checkpoint_rankers(bad, pub, pairs, tmp_path):
    p = _bad_ranker(tmp_path)
    rc, out, err = call('chunk_emotion_rankers/testing_ranker.py', '-emo', 'Act', '--corpus', bad['root'],
                        '--features', bad['lld'], '--pairs', pairs, '--checkpoint', p, '--workers', 0,
                        '--norm', pub / 'NormTerm')
    assert_clear(rc, out, err, p.name, 'fc2')
    rc, out, err = call('chunk_emotion_rankers/training_ranker.py', '-emo', 'Act', '-ep', 1, '--corpus', bad['root'],
                        '--features', bad['lld'], '--pairs', pairs, '--init-from', p, '--out', tmp_path / 'o',
                        '--workers', 0, '--norm', pub / 'NormTerm')
    assert_clear(rc, out, err, p.name, 'fc2')


def test_wrong_shape_checkpoint_training_testing(bad, pub, rankseq, tmp_path):
    from model import LSTMnet
    p = tmp_path / 'ranker_as_s2s.pth.tar'
    torch.save(LSTMnet(out_dim=2).state_dict(), p)  # a ranker where a Seq2Seq model (1 output) is expected
    rc, out, err = call('training.py', '-emo', 'Act', '-ep', 1, '-batch', 2, '--corpus', bad['root'], '--features',
                        bad['lld'], '--rankseq', rankseq, '--init-from', p, '--out', tmp_path / 'o', '--workers', 0,
                        '--norm', pub / 'NormTerm')
    assert_clear(rc, out, err, p.name, 'fc2 130->1')
    bad_dir = make_published_dir(tmp_path / 'badpub', bad='Act')
    rc, out, err = call('testing.py', '-emo', 'Act', '--checkpoint', bad_dir, '--norm', bad_dir / 'NormTerm',
                        '--corpus', bad['root'], '--features',
                        bad['lld'], '--out', tmp_path / 't', '--workers', 0)
    assert_clear(rc, out, err, 'LSTM_epoch30_batch128_EmoRankerSeq_Act.pth.tar', 'fc1 130->130')


# ----------------------------------------------------------------------------- unwritable outputs
UNWRITABLE = {
    'predict': ('predict.py', ['{wav}', '--checkpoint', '{pub}', '--norm', '{pub}/NormTerm', '--out', '{bad}/r.csv'], None),
    'extract_features': ('extract_features.py', ['--corpus', '{root}', '--out', '{bad}/lld', '--workers', '1'], None),
    'norm_para': ('norm_para.py', ['--corpus', '{root}', '--features', '{lld}', '--out', '{bad}/NormTerm'], None),
    'preference_labels': ('chunk_emotion_rankers/generate_preference_labels.py',
                          ['-emo', 'Act', '--corpus', '{root}', '--out', '{bad}/pl'], None),
    'check_corpus': ('check_corpus.py', ['{root}', '--workers', '1', '--no-progress', '--json', '{bad}/r.json'], None),
    'training_ranker': ('chunk_emotion_rankers/training_ranker.py',
                        ['-emo', 'Act', '-ep', '1', '--corpus', '{root}', '--features', '{lld}', '--pairs', '{pairs}',
                         '--out', '{bad}/rk', '--workers', '0'], None),
    'training': ('training.py', ['-emo', 'Act', '-ep', '1', '-batch', '2', '--corpus', '{root}', '--features', '{lld}',
                                 '--rankseq', '{rankseq}', '--out', '{bad}/s2s', '--workers', '0'], None),
    'testing': ('testing.py', ['-emo', 'Act', '--checkpoint', '{pub}', '--norm', '{pub}/NormTerm', '--corpus', '{root}', '--features', '{lld}',
                               '--out', '{bad}/test', '--workers', '0'], None),
}


@pytest.mark.parametrize('key', list(UNWRITABLE))
def test_unwritable_output_folder(bad, pub, pairs, rankseq, key, request):
    script, args, xfail = UNWRITABLE[key]
    if xfail:
        request.applymarker(pytest.mark.xfail(strict=True, reason=xfail))
    wav = bad['root'] / 'Audios' / bad['names']['stereo']
    argv = [a.format(wav=wav, pub=pub, bad=bad['unwritable'], root=bad['root'], lld=bad['lld'], pairs=pairs,
                     rankseq=rankseq) for a in args]
    rc, out, err = call(script, *argv)
    assert_clear(rc, out, err, bad['unwritable'])


# ----------------------------------------------------------------------------- CUDA absent
CUDA = {
    'predict': ('predict.py', ['{wav}', '--checkpoint', '{pub}', '--norm', '{pub}/NormTerm', '--device', 'cuda', '--out', '{tmp}/c.csv']),
    'extract_wav2vec2': ('extract_features.py', ['--corpus', '{root}', '--feature', 'wav2vec2', '--device', 'cuda',
                                                 '--out', '{tmp}/w2v']),
    'training_ranker': ('chunk_emotion_rankers/training_ranker.py',
                        ['-emo', 'Act', '-ep', '1', '--corpus', '{root}', '--features', '{lld}', '--pairs', '{pairs}',
                         '--out', '{tmp}/rk_cuda', '--workers', '0', '--device', 'cuda']),
    'training': ('training.py', ['-emo', 'Act', '-ep', '1', '--corpus', '{root}', '--features', '{lld}', '--rankseq',
                                 '{rankseq}', '--out', '{tmp}/s2s_cuda', '--workers', '0', '--device', 'cuda']),
    'testing': ('testing.py', ['-emo', 'Act', '--checkpoint', '{pub}', '--norm', '{pub}/NormTerm', '--corpus', '{root}', '--features', '{lld}',
                               '--out', '{tmp}/t_cuda', '--workers', '0', '--device', 'cuda']),
}


@pytest.mark.skipif(not NO_CUDA, reason='CUDA is present on this machine')
@pytest.mark.parametrize('key', list(CUDA))
def test_cuda_requested_but_absent(bad, pub, pairs, rankseq, key):
    script, args = CUDA[key]
    wav = bad['root'] / 'Audios' / bad['names']['stereo']
    argv = [a.format(wav=wav, pub=pub, tmp=bad['tmp'], root=bad['root'], lld=bad['lld'], pairs=pairs, rankseq=rankseq)
            for a in args]
    rc, out, err = call(script, *argv)
    assert_clear(rc, out, err, 'cuda', '--device cpu')


# ----------------------------------------------------------------------------- kill and resume
RESUME = {
    'training': ('training.py', 'LSTM_epoch2_batch2_EmoRankerSeq_Act', ['--rankseq', '{rankseq}']),
    'ranker': ('chunk_emotion_rankers/training_ranker.py', 'LSTM_epoch2_batch2_Act_ranker',
               ['--pairs', '{pairs}', '--pairs-per-epoch', '6']),
}


# the ranker shares dataloader.Run's resume code with training.py; its run costs ~30 s more, so it is opt-in
@pytest.mark.parametrize('key', ['training'] + (['ranker'] if os.environ.get('SER_SLOW_TESTS') else []))
def test_training_killed_mid_epoch_then_resumed(bad, pairs, rankseq, key):
    """Same final weights as an uninterrupted run with the same seed (state + RNG saved every epoch)."""
    script, name, extra = RESUME[key]
    ref, cut = bad['tmp'] / f'{key}_ref', bad['tmp'] / f'{key}_cut'

    def argv(out):
        return ['-emo', 'Act', '-ep', 2, '-batch', 2, '--corpus', bad['root'], '--features', bad['lld'], '--out', out,
                '--workers', 0, '--seed', 3, '--device', 'cpu'] + [a.format(pairs=pairs, rankseq=rankseq) for a in extra]
    rc, out, err = call(script, *argv(ref))
    assert rc == 0, (out + err)[-2000:]
    state, log = cut / f'{name}.resume.pt', cut / f'{name}.log.csv'
    p = subprocess.Popen([sys.executable, str(REPO / script)] + [str(a) for a in argv(cut)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=bad['tmp'])
    t0 = time.time()
    while p.poll() is None and time.time() - t0 < 120 and not (
            state.exists() and log.exists() and len(log.read_text().splitlines()) >= 2):
        time.sleep(0.01)  # until epoch 1 is complete (state + log row): the run is then in epoch 2
    alive = p.poll() is None
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert alive, 'training finished before it could be killed'
    assert torch.load(state, weights_only=False)['epoch'] == 0
    rc, out, err = call(script, *argv(cut), '--resume')
    assert rc == 0, (out + err)[-2000:]
    assert 'resuming at epoch 1' in out
    a = torch.load(ref / f'{name}.resume.pt', weights_only=False)['model']
    b = torch.load(state, weights_only=False)['model']
    assert all(torch.equal(a[k], b[k]) for k in a)  # bit-identical final weights
    best_a, best_b = torch.load(ref / f'{name}.pth.tar'), torch.load(cut / f'{name}.pth.tar')
    assert all(torch.equal(best_a[k], best_b[k]) for k in best_a)
    assert list(pd.read_csv(log).epoch) == [0, 1]  # the log continues: no epoch lost or repeated
    # the command line with other settings than the interrupted run: refused, with the differences listed
    rc, out, err = call(script, *argv(cut), '--resume', '--lr', '0.5', '--seed', '4')
    assert rc != 0 and 'lr: was' in err and 'now 0.5' in err and 'seed: was 3, now 4' in err, (out + err)[-2000:]
