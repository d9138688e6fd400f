"""predict.py on generated recordings with a checkpoint folder of the published shapes (random weights).

The folder mimics the authors' repository (NormTerm/*.mat with key normal_para, trained_seq2seq_model_v1.6/,
chunk_emotion_rankers/trained_ranker_model_v1.6/); its files are not the release, so they are passed as own
models described by their NormTerm (`--checkpoint DIR --norm DIR/NormTerm`).
"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.io
import soundfile as sf
import torch

REPO = Path(__file__).resolve().parents[1]

import inference  # noqa: E402
import predict  # noqa: E402
from checkpoints import load_lstm  # noqa: E402
from model import LSTMnet  # noqa: E402
from tests.fixtures import synth_voice  # noqa: E402

LABEL_STATS = {'act': (4.39, 0.94), 'dom': (4.53, 0.75), 'val': (4.05, 0.88)}


def make_published_dir(root, seed=0, bad=None):
    """Authors'-layout folder with random LSTMnet weights of the released shapes.

    bad: None, or an attribute whose Seq2Seq checkpoint gets a wrong fc1 shape (for error tests)."""
    from features import LLDExtractor
    root = Path(root)
    torch.manual_seed(seed)
    for sub, pattern, out_dim in (('trained_seq2seq_model_v1.6', 'LSTM_epoch30_batch128_EmoRankerSeq_{}.pth.tar', 1),
                                  ('chunk_emotion_rankers/trained_ranker_model_v1.6',
                                   'LSTM_epoch20_batch128_{}_ranker.pth.tar', 2)):
        (root / sub).mkdir(parents=True, exist_ok=True)
        for emo in ('Act', 'Dom', 'Val'):
            sd = LSTMnet(out_dim=out_dim).state_dict()
            if bad == emo and out_dim == 1:
                sd['fc1.weight'] = torch.zeros(64, 130)
            torch.save(sd, root / sub / pattern.format(emo))
    # feature NormTerm: statistics of real LLDs of a voiced signal, shapes (1, 130) like the release
    feats = LLDExtractor('published')(synth_voice(3.0, arousal=4, seed=seed), 16000)
    mean, std = np.nanmean(feats, 0), np.nanstd(feats, 0) + 1e-3
    (root / 'NormTerm').mkdir(exist_ok=True)
    scipy.io.savemat(root / 'NormTerm' / 'feat_norm_means.mat', {'normal_para': mean[None].astype(np.float64)})
    scipy.io.savemat(root / 'NormTerm' / 'feat_norm_stds.mat', {'normal_para': std[None].astype(np.float64)})
    for k, (m, s) in LABEL_STATS.items():
        scipy.io.savemat(root / 'NormTerm' / f'{k}_norm_means.mat', {'normal_para': np.array([[m]])})
        scipy.io.savemat(root / 'NormTerm' / f'{k}_norm_stds.mat', {'normal_para': np.array([[s]])})
    return root


def own(pub):
    """Command-line flags for a folder of models without records, described by its NormTerm."""
    return ['--checkpoint', str(pub), '--norm', str(Path(pub) / 'NormTerm')]


def run_main(argv):
    """predict.py as run from the shell: -> exit code (2 for a setup error)."""
    from cli import run_script
    try:
        return run_script(predict.main, [str(a) for a in argv])
    except SystemExit as e:
        return e.code


def write_inputs(d):
    """Recordings a user brings: stereo 44.1 kHz, 0.3 s, 25 s (long), FLAC, OGG, a corrupt and an empty WAV."""
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    import soxr
    v = synth_voice(3.0, arousal=6, seed=1)
    st = soxr.resample(np.stack([v, 0.5 * v], 1), 16000, 44100)
    sf.write(d / 'stereo44k.wav', st, 44100)
    sf.write(d / 'short.wav', synth_voice(0.3, arousal=3, seed=2), 16000)
    sf.write(d / 'long.wav', soxr.resample(synth_voice(25.0, arousal=5, trend='rise', seed=3), 16000, 22050), 22050)
    sf.write(d / 'clip.flac', soxr.resample(synth_voice(2.0, arousal=2, seed=4), 16000, 8000), 8000)
    sf.write(d / 'clip.ogg', synth_voice(2.5, arousal=4, seed=5), 16000, format='OGG', subtype='VORBIS')
    (d / 'corrupt.wav').write_bytes(b'RIFF\x10\x00\x00\x00WAVEjunk' + bytes(range(256)) * 4)
    sf.write(d / 'empty.wav', np.zeros(0, np.float32), 16000)
    return d


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('predict')
    pub = make_published_dir(tmp / 'authors')
    wavs = write_inputs(tmp / 'wavs')
    out = tmp / 'out'
    cmd = [sys.executable, str(REPO / 'predict.py'), str(wavs), *own(pub), '--rankers',
           '--out', str(out / 'res.csv'), '--json', str(out / 'res.json'), '--plot', str(out / 'plots'), '--batch', '4']
    p = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=300)
    df = pd.read_csv(out / 'res.csv', keep_default_na=False)
    return dict(tmp=tmp, pub=pub, wavs=wavs, out=out, proc=p, df=df.set_index(df.file.map(lambda f: Path(f).name)))


def curve(row, col):
    return np.asarray(json.loads(row[col]), dtype=float)


def test_batch_run_outputs_and_failures(setup):
    p, df = setup['proc'], setup['df']
    assert p.returncode == 0, p.stderr[-2000:]
    assert sorted(df.index) == sorted(['stereo44k.wav', 'short.wav', 'long.wav', 'clip.flac', 'clip.ogg',
                                       'corrupt.wav', 'empty.wav'])
    # failed files: listed with their reason in the CSV and at the end of the run, the rest processed
    for bad, words in (('corrupt.wav', 'unreadable'), ('empty.wav', 'no samples')):
        err = df.loc[bad, 'error']
        assert bad in err and words in err and ('re-export' in err or 'remove' in err), err
        assert bad in p.stderr
        assert df.loc[bad, 'Act'] == ''
    assert '2 file(s) failed' in p.stderr
    ok = df[df.error == '']
    assert len(ok) == 5
    for emo in ('Act', 'Dom', 'Val'):
        vals = ok[emo].astype(float)
        assert np.all(np.isfinite(vals)) and vals.between(1, 7).all(), vals
        for _, r in ok.iterrows():
            c = curve(r, f'{emo}_curve')
            assert len(c) == len(curve(r, 'chunk_times')) and np.all((c > 0) & (c < 8))
            assert abs(c.mean() - float(r[emo])) < 1e-3  # utterance = mean of the chunk curve
            ranks = curve(r, f'{emo}_ranks').astype(int)
            assert len(ranks) == len(c) and ranks.min() == 1 and ranks.max() <= len(c)
    assert abs(float(df.loc['stereo44k.wav', 'duration']) - 3.0) < 0.01
    assert abs(float(df.loc['long.wav', 'duration']) - 25.0) < 0.01
    assert abs(float(df.loc['short.wav', 'duration']) - 0.3) < 0.01


def test_short_clip_padded_and_flat(setup):
    r = setup['df'].loc['short.wav']
    for emo in ('Act', 'Dom', 'Val'):
        c = curve(r, f'{emo}_curve')
        assert len(c) == 22 and np.ptp(c) < 1e-4  # padded to 62 frames: 22 identical chunks
    assert np.all(curve(r, 'chunk_times') <= 0.3)


def test_long_file_windows_stitched(setup):
    r = setup['df'].loc['long.wav']
    assert int(r['n_windows']) >= 3  # 25 s > --max-seconds 20 -> 10 s windows overlapping by >= 5 s
    t = curve(r, 'chunk_times')
    assert len(t) > 22 and np.all(np.diff(t) > 0)
    assert 0.4 < t[0] < 0.6 and 24.0 < t[-1] < 24.6  # covers the whole file (chunk centres; floor step)
    assert np.allclose(np.diff(t)[:-1], 0.5, atol=1e-6)
    for name in ('stereo44k.wav', 'clip.flac', 'clip.ogg'):
        assert int(setup['df'].loc[name, 'n_windows']) == 1 and len(curve(setup['df'].loc[name], 'chunk_times')) == 22


def test_json_and_plots(setup):
    data = json.loads((setup['out'] / 'res.json').read_text())
    assert data['meta']['chunks'] == 22 and data['meta']['chunk_frames'] == 62 and data['meta']['hop'] == 0.016
    res = {Path(r['file']).name: r for r in data['results']}
    assert len(res) == 7 and res['corrupt.wav']['error']
    r = res['stereo44k.wav']
    assert len(r['Act_curve']) == 22 and len(r['chunk_times']) == 22 and isinstance(r['Val'], float)
    assert r['Act_ranks'] == [int(x) for x in json.loads(setup['df'].loc['stereo44k.wav', 'Act_ranks'])]
    pngs = sorted(p.name for p in (setup['out'] / 'plots').glob('*.png'))
    assert pngs == ['clip.png', 'clip_1.png', 'long.png', 'short.png', 'stereo44k.png']
    for p in (setup['out'] / 'plots').glob('*.png'):
        assert p.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n' and p.stat().st_size > 10_000
    assert not list((setup['out'] / 'plots').glob('.*'))  # no temporary files left behind


def reference_prediction(path, pub, emo):
    """The released-model pipeline (docs/pretrained.md) written out independently: LLDs -> z-norm, NaN->0, clip -> pad to 62 -> 22 chunks -> mean."""
    from audio import load_audio
    from features import LLDExtractor
    x = LLDExtractor('published')(load_audio(path), 16000).astype(np.float64)
    mean = scipy.io.loadmat(pub / 'NormTerm' / 'feat_norm_means.mat')['normal_para']
    std = scipy.io.loadmat(pub / 'NormTerm' / 'feat_norm_stds.mat')['normal_para']
    x = np.clip(np.nan_to_num((x - mean) / std, nan=0.0), -3, 3)
    if len(x) < 62:
        x = np.concatenate([x, np.zeros((62 - len(x), 130))])
    step = (len(x) - 62) // 21
    chunks = np.stack([x[k * step:k * step + 62] for k in range(22)])
    net = LSTMnet(out_dim=1)
    net.load_state_dict(torch.load(pub / 'trained_seq2seq_model_v1.6' /
                                   f'LSTM_epoch30_batch128_EmoRankerSeq_{emo}.pth.tar'), strict=True)
    with torch.no_grad():
        pred = net.eval()(torch.tensor(chunks, dtype=torch.float32))[:, 0].numpy()
    m, s = LABEL_STATS[emo.lower()]
    return pred.mean() * s + m, pred * s + m


@pytest.mark.parametrize('name', ['stereo44k.wav', 'short.wav', 'clip.flac'])
def test_matches_reference_pipeline(setup, name):
    for emo in ('Act', 'Val'):
        utt, chunks = reference_prediction(setup['wavs'] / name, setup['pub'], emo)
        r = setup['df'].loc[name]
        assert abs(float(r[emo]) - utt) < 2e-4
        assert np.allclose(curve(r, f'{emo}_curve'), chunks, atol=2e-4)


def _predictor(pub, rankers=True):
    from utils import load_norm
    norm = load_norm(pub / 'NormTerm')
    models = {}
    for emo in ('Act', 'Dom', 'Val'):
        for kind, sub, pat, od in (('seq', 'trained_seq2seq_model_v1.6', 'LSTM_epoch30_batch128_EmoRankerSeq_{}.pth.tar', 1),
                                   ('rank', 'chunk_emotion_rankers/trained_ranker_model_v1.6',
                                    'LSTM_epoch20_batch128_{}_ranker.pth.tar', 2)):
            if kind == 'rank' and not rankers:
                continue
            models[(kind, emo)] = (load_lstm(pub / sub / pat.format(emo), 'seq2seq' if od == 1 else 'ranker').eval(),
                                   norm['feat'])
    return inference.Predictor(models, norm, 0.016, torch.device('cpu'))


def test_batched_equals_single(setup):
    from audio import load_audio
    from features import LLDExtractor
    ext = LLDExtractor('published')
    names = ('stereo44k.wav', 'short.wav', 'long.wav', 'clip.flac')
    feats = [ext(load_audio(setup['wavs'] / n), 16000) for n in names]
    pred = _predictor(setup['pub'])
    together = pred(feats)  # one forward per model for 4 files (1 + 1 + 4 + 1 windows)
    for n, f, t in zip(names, feats, together):
        (one,) = pred([f])
        assert one['n_windows'] == t['n_windows']
        for k in ('Act', 'Dom', 'Val'):
            assert abs(one[k] - t[k]) < 1e-5
            assert np.allclose(one[f'{k}_curve'], t[f'{k}_curve'], atol=1e-5)
            assert np.allclose(one[f'{k}_rank_score'], t[f'{k}_rank_score'], atol=1e-5)
        assert abs(one['Dom'] - float(setup['df'].loc[n, 'Dom'])) < 2e-4  # the CLI (batches of 4) agrees


def test_windows_and_stitching():
    hop = 0.016
    assert inference.make_windows(1000, hop) == [(0, 1000)]  # 16 s <= --max-seconds: one window
    T = int(600 / hop)  # a 10-minute recording
    wins = inference.make_windows(T, hop)
    W = int(round(10 / hop))
    assert wins[0][0] == 0 and wins[-1][1] == T and all(e - s == W for s, e in wins)
    assert all(b[0] - a[0] <= W - int(round(5 / hop)) for a, b in zip(wins, wins[1:]))  # overlap >= 5 s
    # stitching a quantity that is linear in time reproduces it exactly, whatever the window blend
    cents = [inference.chunk_centres(s, e - s, 62, hop) for s, e in wins]
    grid, y = inference.stitch(wins, cents, [2 + 0.01 * c for c in cents], 0.5)
    assert np.allclose(y, 2 + 0.01 * grid) and grid[0] == cents[0][0] and abs(grid[-1] - cents[-1][-1]) < 1e-9


def test_corpus_feature_norm(setup, tmp_path):
    files = [str(setup['wavs'] / n) for n in ('stereo44k.wav', 'clip.flac', 'corrupt.wav')]
    rc = run_main(files + [*own(setup['pub']), '--feature-norm', 'corpus', '--emo', 'Act',
                               '--out', str(tmp_path / 'c.csv')])
    assert rc == 0
    df = pd.read_csv(tmp_path / 'c.csv', keep_default_na=False).set_index('file')
    assert df.loc[files[2], 'error'] and df.loc[files[0], 'error'] == ''
    a = float(df.loc[files[0], 'Act'])
    assert abs(a - float(setup['df'].loc['stereo44k.wav', 'Act'])) > 1e-4  # other statistics, other values


def test_setup_errors_are_clear(setup, tmp_path, capsys, monkeypatch):
    wav = str(setup['wavs'] / 'clip.flac')
    # no demo models shipped and nothing passed
    import checkpoints
    monkeypatch.setattr(checkpoints, 'SEQ2SEQ_DIR', tmp_path / 'trained_seq2seq_model')
    assert run_main([wav, '--out', str(tmp_path / 'r.csv')]) == 2
    err = capsys.readouterr().err
    assert '--pretrained DIR' in err and 'training.py' in err and str(tmp_path / 'trained_seq2seq_model') in err
    # --pretrained folder without the release layout
    assert run_main([wav, '--pretrained', str(tmp_path), '--out', str(tmp_path / 'r.csv')]) == 2
    assert 'NormTerm' in capsys.readouterr().err
    # checkpoint of the wrong shape
    bad = make_published_dir(tmp_path / 'bad', bad='Dom')
    assert run_main([wav, *own(bad), '--out', str(tmp_path / 'r.csv')]) == 2
    err = capsys.readouterr().err
    assert 'LSTM_epoch30_batch128_EmoRankerSeq_Dom.pth.tar' in err and 'fc1.weight' in err
    # unwritable output (a path under a regular file: even root cannot create it), refused before any work
    (tmp_path / 'afile').write_text('x')
    assert run_main([wav, *own(setup['pub']), '--out', str(tmp_path / 'afile' / 'r.csv')]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / 'afile' / 'r.csv') in err and 'afile is a file, not a folder' in err and '--out' in err
    # every file failing -> non-zero exit, reasons listed
    assert run_main([str(setup['wavs'] / 'corrupt.wav'), *own(setup['pub']),
                         '--out', str(tmp_path / 'r.csv')]) == 1
    assert 'corrupt.wav' in capsys.readouterr().err
    assert run_main([str(tmp_path / 'nope.wav'), *own(setup['pub'])]) == 2
    assert 'nope.wav: no such file' in capsys.readouterr().err


def make_mscr_checkpoint(d, text_dim=384):
    """A tiny MSCR checkpoint (random weights) + .meta.json in the layout training.py --model mscr writes."""
    import mscr
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    cfg = dict(audio_dim=130, text_dim=text_dim, hidden=32, heads=2, ff=64, self_layers=1, co_layers=1, dropout=0.1,
               max_len=128)
    torch.manual_seed(0)
    torch.save(mscr.build_model(cfg).state_dict(), d / 'MSCR_tiny.pth.tar')
    meta = dict(model='mscr', name='MSCR_tiny', config=cfg, m=62, hop=0.016, audio_feature='lld',
                audio_preset='published', text_model=None, audio_mean=[0.0] * 130, audio_std=[1.0] * 130,
                text_mean=[0.0] * text_dim, text_std=[1.0] * text_dim,
                label_norm={e: [4.0, 1.0] for e in ('Act', 'Dom', 'Val')})
    (d / 'MSCR_tiny.meta.json').write_text(json.dumps(meta))
    return d / 'MSCR_tiny.pth.tar'


def test_mscr_model_with_and_without_text(setup, tmp_path):
    ck = make_mscr_checkpoint(tmp_path / 'mscr')
    d = tmp_path / 'in'
    d.mkdir()
    for n in ('stereo44k.wav', 'short.wav'):
        (d / n).write_bytes((setup['wavs'] / n).read_bytes())
    (d / 'stereo44k.txt').write_text('I really think we should talk about this tomorrow.')  # sidecar transcript
    rc = run_main([str(d), '--model', 'mscr', '--checkpoint', str(ck), '--out', str(tmp_path / 'm.csv'),
                       '--json', str(tmp_path / 'm.json'), '--plot', str(tmp_path / 'p')])
    assert rc == 0
    df = pd.read_csv(tmp_path / 'm.csv', keep_default_na=False).set_index('file')
    df.index = [Path(f).name for f in df.index]
    assert 'Act_curve' not in df.columns  # utterance-level model: no chunk curve
    assert df.loc['stereo44k.wav', 'transcript'].startswith('I really') and df.loc['short.wav', 'transcript'] == ''
    for e in ('Act', 'Dom', 'Val'):
        assert df[e].astype(float).between(0, 8).all()
    assert json.loads((tmp_path / 'm.json').read_text())['meta']['model'] == 'mscr'
    assert len(list((tmp_path / 'p').glob('*.png'))) == 2
    # --text overrides for a single file; the text changes the prediction
    rc = run_main([str(d / 'short.wav'), '--model', 'mscr', '--checkpoint', str(ck), '--text', 'Wonderful news!',
                       '--out', str(tmp_path / 'm2.csv')])
    assert rc == 0
    r2 = pd.read_csv(tmp_path / 'm2.csv').iloc[0]
    assert r2['transcript'] == 'Wonderful news!' and abs(r2['Act'] - float(df.loc['short.wav', 'Act'])) > 1e-6


def test_own_checkpoint_uses_its_metadata(setup, tmp_path):
    """--checkpoint DIR / --checkpoint FILE of training.py output: statistics come from the .meta.json."""
    d = tmp_path / 'run'
    d.mkdir()
    ck = d / 'LSTM_epoch2_batch2_EmoRankerSeq_Act.pth.tar'
    torch.save(LSTMnet(out_dim=1).state_dict(), ck)
    meta = dict(kind='seq2seq', emo='Act', feature_preset='published', hop=0.016, feature_norm='train',
                feat_mean=[0.0] * 130, feat_std=[1.0] * 130, label_norm='train', label_mean=2.5, label_std=1e-6)
    (d / 'LSTM_epoch2_batch2_EmoRankerSeq_Act.meta.json').write_text(json.dumps(meta))
    wav = str(setup['wavs'] / 'clip.flac')
    for spec in (d, ck):
        assert run_main([wav, '--checkpoint', str(spec), '--emo', 'Act', '--out', str(tmp_path / 'o.csv')]) == 0
        assert abs(pd.read_csv(tmp_path / 'o.csv').Act[0] - 2.5) < 1e-3  # de-normalised with the metadata's labels
    assert run_main([wav, '--checkpoint', str(ck), '--out', str(tmp_path / 'o.csv')]) == 2  # one file, 3 attributes


def test_outputs_never_replace_inputs_or_each_other(setup, tmp_path, capsys):
    """An output path that is an input (recording, transcript, speaker table, model or NormTerm file) or another
    output is refused before any work, naming the flag; nothing is written and every input is left as it was."""
    d = tmp_path / 'in'
    d.mkdir()
    for n in ('clip.flac', 'short.wav'):
        (d / n).write_bytes((setup['wavs'] / n).read_bytes())
    (d / 'short.txt').write_text('a sidecar transcript')
    (tmp_path / 'spk.csv').write_text('file,speaker\nclip.flac,a\nshort.wav,b\n')
    (tmp_path / 'tr.csv').write_text('file,text\nclip.flac,hello there\n')
    pub = setup['pub']
    before = {p: p.read_bytes() for p in [*d.iterdir(), tmp_path / 'spk.csv', tmp_path / 'tr.csv',
                                          *(pub / 'NormTerm').iterdir()]}
    res, js = tmp_path / 'r.csv', tmp_path / 'r.json'
    cases = [
        (['--out', d / 'clip.flac'], '--out', 'an input recording'),
        (['--out', res, '--json', d / 'short.wav'], '--json', 'an input recording'),
        (['--out', tmp_path / '.' / 'in' / '..' / 'in' / 'clip.flac'], '--out', 'an input recording'),
        (['--out', d / 'short.txt'], '--out', 'the transcript of an input'),
        (['--out', res, '--json', res], '--json', 'same path as --out'),
        (['--out', res, '--plot', tmp_path / 'pl', '--json', tmp_path / 'pl' / 'clip.png'], '--json', 'same path'),
        (['--out', tmp_path / 'pl', '--plot', tmp_path / 'pl'], '--plot', 'same path as --out'),
        (['--out', tmp_path / 'spk.csv', '--speakers', tmp_path / 'spk.csv', '--feature-norm', 'speaker'], '--out',
         'the --speakers table'),
        (['--out', tmp_path / 'tr.csv', '--transcript', tmp_path / 'tr.csv'], '--out', 'the --transcript file'),
        (['--out', pub / 'NormTerm' / 'feat_norm_means.mat'], '--out', 'a file of --checkpoint'),
        (['--out', res, '--json', pub / 'trained_seq2seq_model_v1.6' / 'LSTM_epoch30_batch128_EmoRankerSeq_Act.pth.tar'],
         '--json', 'a file of --checkpoint'),
        (['--out', d], '--out', 'is a folder'),
    ]
    for extra, flag, words in cases:
        assert run_main([d, *own(pub), '-emo', 'Act', *extra]) == 2, extra
        err = capsys.readouterr().err
        assert f'error: {flag}' in err and words in err, (extra, err)
    assert all(p.read_bytes() == b for p, b in before.items())
    assert not res.exists() and not js.exists() and not (tmp_path / 'pl').exists()
    # the same outputs apart from each other and from the inputs are fine
    assert run_main([d, *own(pub), '-emo', 'Act', '--out', d / 'r.csv', '--json', d / 'r.json', '--plot', d]) == 0
    assert (d / 'r.csv').exists() and sorted(q.name for q in d.glob('*.png')) == ['clip.png', 'short.png']
    assert all(p.read_bytes() == b for p, b in before.items())


def test_mscr_outputs_name_the_true_model_source(setup, tmp_path, capsys):
    """An MSCR model trained on the demo corpus (as the shipped one) is named 'demo' in every row, with the loud
    note; one trained on another corpus is 'own'."""
    ck = make_mscr_checkpoint(tmp_path / 'mscr')
    meta_path = ck.with_name('MSCR_tiny.meta.json')
    wav = setup['wavs'] / 'short.wav'
    for corpus, source in (('data/demo_corpus', 'demo'), ('/data/MSP-Podcast', 'own')):
        meta_path.write_text(json.dumps({**json.loads(meta_path.read_text()), 'corpus': corpus}))
        out = tmp_path / f'{source}.csv'
        assert run_main([wav, '--model', 'mscr', '--checkpoint', ck, '--out', out, '--json', out.with_suffix('.json')]) == 0
        err = capsys.readouterr().err
        row = pd.read_csv(out).iloc[0]
        assert row['model_source'].split(' ')[0] == source, row['model_source']
        assert json.loads(out.with_suffix('.json').read_text())['meta']['model_source'] == row['model_source']
        assert ('synthetic speech' in err) == (source == 'demo')
    shipped = json.loads(next((REPO / 'trained_mscr_model').glob('*.meta.json')).read_text())
    import mscr
    assert mscr.model_source(shipped) == 'demo'
