"""No silent wrong result (issue 12): every case below gave ordinary-looking numbers before; now each stops
with a message naming the file, or is flagged in the outputs. Tiny generated WAVs, the shipped demo models,
and the authors' release under ../shared/pretrained when it is there."""
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import checkpoints as C  # noqa: E402
import predict  # noqa: E402
from cli import run_script  # noqa: E402
from tests.fixtures import make_tiny_corpus, synth_voice  # noqa: E402

RELEASE = REPO.parent / 'shared' / 'pretrained' / 'Chunk-Level-Emotion-Retrieval'
needs_release = pytest.mark.skipif(not RELEASE.is_dir(), reason='../shared/pretrained is absent')
DEMO = REPO / 'trained_seq2seq_model'
ACT, VAL = (DEMO / C.seq2seq_name(30, 128, e) for e in ('Act', 'Val'))


pytestmark = pytest.mark.usefixtures('one_torch_thread')


def run(main, *argv):
    """A script's main as run from the shell -> exit code; the message goes to stderr."""
    try:
        return run_script(main, [str(a) for a in argv])
    except SystemExit as e:
        return e.code


@pytest.fixture(scope='module')
def wavs(tmp_path_factory):
    d = tmp_path_factory.mktemp('prov_wavs')
    v = synth_voice(3.0, arousal=5, seed=1)
    sf.write(d / 'voice.wav', v, 16000)
    sf.write(d / 'silence.wav', np.zeros(32000, np.float32), 16000)
    sf.write(d / 'noise.wav', (0.3 * np.random.default_rng(0).standard_normal(32000)).astype(np.float32), 16000)
    sf.write(d / 'dead_channel.wav', np.stack([v, np.zeros_like(v)], 1), 16000)
    full = (d / 'voice.wav').read_bytes()
    (d / 'cut.wav').write_bytes(full[:len(full) // 2])          # data chunk shorter than the header says
    return d


def own_copy(tmp, files=(ACT,)):
    """A folder with copies of shipped models and their records."""
    tmp.mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copy(f, tmp / f.name)
        shutil.copy(C.sibling(f, '.meta.json'), C.sibling(tmp / f.name, '.meta.json'))
    return tmp


# ----------------------------------------------------------------------------- 1. wrong attribute
def test_checkpoint_of_another_attribute_is_refused(wavs, tmp_path, capsys):
    rc = run(predict.main, wavs / 'voice.wav', '--checkpoint', ACT, '-emo', 'Dom', '--out', tmp_path / 'r.csv')
    err = capsys.readouterr().err
    assert rc == 2 and ACT.name in err and 'for Act' in err and '-emo Dom' in err
    assert not (tmp_path / 'r.csv').exists()
    with pytest.raises(C.CheckpointError, match='holds a seq2seq model for Val, but -emo Act'):
        C.resolve('seq2seq', 'Act', checkpoint=VAL).check('seq2seq', 'Act')
    with pytest.raises(C.CheckpointError, match='holds a seq2seq model for Act, but a ranker model'):
        C.resolve('ranker', 'Act', checkpoint=ACT).check('ranker', 'Act')


def test_testing_refuses_other_attribute_and_records_provenance(tiny_corpus, tmp_path, capsys):
    import extract_features
    import testing
    feats = tmp_path / 'lld'
    extract_features.main(['--corpus', str(tiny_corpus), '--out', str(feats), '--workers', '1'])
    common = ['--corpus', tiny_corpus, '--features', feats, '--workers', '0', '--device', 'cpu']
    assert run(testing.main, '-emo', 'Act', '--checkpoint', VAL, '--out', tmp_path / 't', *common) == 2
    assert 'for Val, but -emo Act' in capsys.readouterr().err
    assert run(testing.main, '-emo', 'Act', '--out', tmp_path / 't', *common) == 0   # no flag: the demo models
    out = capsys.readouterr()
    assert C.DEMO_NOTE in out.err and 'not clipped' in out.out
    m = pd.read_csv(tmp_path / 't' / 'metrics.csv').iloc[0]
    assert m['model_source'] == 'demo' and m['model_sha256'] == json.loads(C.sibling(ACT, '.meta.json').read_text())[
        'weights_sha256']
    assert m['feature_norm'] == 'train' and m['feature_norm_source'] == 'NormTerm' and 'not clipped' in m['ccc_on']
    assert m['note'] == C.DEMO_NOTE
    assert '/work' not in m['model'] and not Path(m['model']).is_absolute()


# ----------------------------------------------------------------------------- 2. missing record, --pretrained
def test_checkpoint_without_record_needs_norm(wavs, tmp_path, capsys):
    d = tmp_path / 'norecord'
    d.mkdir()
    shutil.copy(ACT, d / ACT.name)                                    # the weights, not the record
    rc = run(predict.main, wavs / 'voice.wav', '--checkpoint', d, '-emo', 'Act', '--out', tmp_path / 'r.csv')
    err = capsys.readouterr().err
    assert rc == 2 and 'no provenance record' in err and '--pretrained' in err and '--norm' in err
    rc = run(predict.main, wavs / 'voice.wav', '--checkpoint', d, '-emo', 'Act', '--norm', REPO / 'NormTerm',
             '--out', tmp_path / 'r.csv')                              # described by its NormTerm: accepted
    assert rc == 0 and 'NormTerm' in pd.read_csv(tmp_path / 'r.csv')['normalisation'][0]


def test_own_folder_without_rankers_does_not_borrow_the_demo_rankers(wavs, tmp_path, capsys):
    d = own_copy(tmp_path / 'run')
    rc = run(predict.main, wavs / 'voice.wav', '--checkpoint', d, '-emo', 'Act', '--rankers', '--out', tmp_path / 'r.csv')
    assert rc == 2 and 'no ranker checkpoint for Act' in capsys.readouterr().err


@needs_release
def test_release_model_folder_passed_as_checkpoint(wavs, tmp_path, capsys):
    rc = run(predict.main, wavs / 'voice.wav', '--checkpoint', RELEASE / 'trained_seq2seq_model_v1.6', '-emo', 'Act',
             '--out', tmp_path / 'r.csv')
    assert rc == 2 and "authors' v1.6 release; load it with --pretrained" in capsys.readouterr().err


def test_pretrained_on_a_folder_that_is_not_the_release(wavs, tmp_path, capsys):
    from tests.test_predict import make_published_dir
    fake = make_published_dir(tmp_path / 'fake')                      # the release layout, other files
    assert run(predict.main, wavs / 'voice.wav', '--pretrained', fake, '--out', tmp_path / 'r.csv') == 2
    assert "not the file of the authors' v1.6 release" in capsys.readouterr().err
    assert run(predict.main, wavs / 'voice.wav', '--pretrained', tmp_path, '--out', tmp_path / 'r.csv') == 2
    assert "not the authors' v1.6 release" in capsys.readouterr().err


# ----------------------------------------------------------------------------- 3. demo models announced
def test_demo_models_are_announced_and_recorded(wavs, tmp_path, capsys):
    rc = run(predict.main, wavs / 'voice.wav', '--out', tmp_path / 'r.csv', '--json', tmp_path / 'r.json')
    assert rc == 0
    assert C.DEMO_NOTE in capsys.readouterr().err
    r = pd.read_csv(tmp_path / 'r.csv').iloc[0]
    assert C.DEMO_NOTE in r['model_source'] and ACT.name in r['models']
    meta = json.loads((tmp_path / 'r.json').read_text())['meta']
    assert C.DEMO_NOTE in meta['model_source'] and meta['records']['seq Act']['model_source'] == 'demo'
    assert json.loads(C.sibling(ACT, '.meta.json').read_text())['weights_sha256'] in r['model_sha256']


# ----------------------------------------------------------------------------- 4. scale
def test_values_outside_the_scale_are_clipped_and_counted(wavs, tmp_path):
    d = own_copy(tmp_path / 'wide')
    meta_path = C.sibling(d / ACT.name, '.meta.json')
    rec = json.loads(meta_path.read_text())
    rec['label_norm']['stats']['Act'] = [4.0, 40.0]                    # outputs spread far beyond 1-7
    rec['record_sha256'] = C.record_checksum(rec)   # as if a training run had written it (an edit is refused)
    meta_path.write_text(json.dumps(rec))
    rc = run(predict.main, wavs / 'voice.wav', wavs / 'noise.wav', '--checkpoint', d, '-emo', 'Act',
             '--out', tmp_path / 'c.csv')
    df = pd.read_csv(tmp_path / 'c.csv')
    assert rc == 0 and (df['n_clipped'] > 0).all()
    for _, r in df.iterrows():
        curve = np.array(json.loads(r['Act_curve']))
        assert 1 <= r['Act'] <= 7 and curve.min() >= 1 and curve.max() <= 7
    assert run(predict.main, wavs / 'voice.wav', '--checkpoint', d, '-emo', 'Act', '--no-clip',
               '--out', tmp_path / 'raw.csv') == 0
    raw = pd.read_csv(tmp_path / 'raw.csv').iloc[0]
    assert raw['n_out_of_scale'] > 0 and np.ptp(json.loads(raw['Act_curve'])) > 0
    assert (np.array(json.loads(raw['Act_curve'])) < 1).any() or (np.array(json.loads(raw['Act_curve'])) > 7).any()


# ----------------------------------------------------------------------------- 5. resume with other settings
def test_resume_with_changed_settings_is_refused(tmp_path):
    from model import LSTMnet
    from utils import make_scaler
    ck = tmp_path / 'run' / 'm.pth.tar'
    model = LSTMnet(out_dim=1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    scaler = make_scaler(torch.device('cpu'), 'off')
    settings = {'batch': 128, 'lr': 0.001, 'seed': 0, 'freeze': None}
    with C.Run(ck, ['epoch'], settings=settings) as run1:
        run1.save_state(model, opt, scaler, 0, 0.5, 0)
    C.Run(ck, ['epoch'], resume=True, settings=dict(settings)).close()       # same settings: fine
    with pytest.raises(C.CheckpointError) as e:
        C.Run(ck, ['epoch'], resume=True, settings={**settings, 'lr': 0.01, 'batch': 64})
    msg = str(e.value)
    assert 'lr: was 0.001, now 0.01' in msg and 'batch: was 128, now 64' in msg and 'seed' not in msg


# ----------------------------------------------------------------------------- 6. corrupted bytes
def _corrupt(path, n=100):
    b = bytearray(path.read_bytes())
    mid = len(b) // 2
    b[mid:mid + n] = bytes((x + 1) % 256 for x in b[mid:mid + n])
    path.write_bytes(bytes(b))


def test_corrupted_own_checkpoint_is_refused(wavs, tmp_path, capsys):
    d = own_copy(tmp_path / 'bad')
    _corrupt(d / ACT.name)
    rc = run(predict.main, wavs / 'voice.wav', '--checkpoint', d, '-emo', 'Act', '--out', tmp_path / 'r.csv')
    err = capsys.readouterr().err
    assert rc == 2 and 'checksum mismatch' in err and ACT.name in err


@needs_release
def test_corrupted_release_file_is_refused(wavs, tmp_path, capsys):
    copy = tmp_path / 'Chunk-Level-Emotion-Retrieval'
    shutil.copytree(RELEASE, copy)
    _corrupt(copy / C.RELEASE_SEQ2SEQ.format(emo='Act'))
    rc = run(predict.main, wavs / 'voice.wav', '--pretrained', copy, '-emo', 'Act', '--out', tmp_path / 'r.csv')
    err = capsys.readouterr().err
    assert rc == 2 and 'checksum mismatch' in err and 'release table' in err


# ----------------------------------------------------------------------------- 7. input checks
def test_input_warnings(wavs, tmp_path, capsys):
    assert run(predict.main, wavs, '-emo', 'Act', '--out', tmp_path / 'w.csv') == 0
    err = capsys.readouterr().err
    df = pd.read_csv(tmp_path / 'w.csv', keep_default_na=False).set_index('file')
    df.index = [Path(f).name for f in df.index]
    assert df.loc['voice.wav', 'warning'] == ''
    assert 'no speech found' in df.loc['silence.wav', 'warning'] and 'digital silence' in df.loc['silence.wav', 'warning']
    assert 'no speech found' in df.loc['noise.wav', 'warning']
    assert 'silent channel 2 of 2' in df.loc['dead_channel.wav', 'warning']
    assert 'shorter than its header claims' in df.loc['cut.wav', 'warning']
    # the active channel alone is used: same prediction as the mono original, not a half-level mix
    assert abs(df.loc['dead_channel.wav', 'Act'] - df.loc['voice.wav', 'Act']) < 1e-3
    assert '4 file(s) with input warnings' in err


def test_low_level_and_clipped_audio(tmp_path):
    from audio import load_audio
    v = synth_voice(2.0, arousal=5, seed=2)
    sf.write(tmp_path / 'quiet.wav', v * 0.002, 16000, subtype='FLOAT')
    sf.write(tmp_path / 'loud.wav', np.clip(v * 30, -1, 1), 16000)
    notes = []
    load_audio(tmp_path / 'quiet.wav', notes=notes)
    assert any('very low level' in n for n in notes)
    notes = []
    load_audio(tmp_path / 'loud.wav', notes=notes)
    assert any('clipped audio' in n for n in notes)


def test_corpus_statistics_from_little_audio_are_flagged(wavs, tmp_path, capsys):
    rc = run(predict.main, wavs / 'voice.wav', '-emo', 'Act', '--feature-norm', 'corpus', '--out', tmp_path / 'r.csv')
    assert rc == 0 and 'come from only 3.0 s of audio' in capsys.readouterr().err


def test_speaker_normalisation_uses_sub_folders(tmp_path):
    for spk, level in (('anna', 0.05), ('ben', 0.4)):
        (tmp_path / 'in' / spk).mkdir(parents=True)
        for k in range(2):
            sf.write(tmp_path / 'in' / spk / f'{k}.wav', synth_voice(2.0, 4, seed=k) * level * 5, 16000)
    assert run(predict.main, tmp_path / 'in', '-emo', 'Act', '--feature-norm', 'speaker', '--out',
               tmp_path / 's.csv') == 0
    df = pd.read_csv(tmp_path / 's.csv').set_index('file')
    a, b = (df.loc[str(tmp_path / 'in' / s / '0.wav'), 'Act'] for s in ('anna', 'ben'))
    assert abs(a - b) < 0.05      # the level difference between speakers is normalised away
    assert 'speaker' in df['normalisation'].iloc[0]


# ----------------------------------------------------------------------------- 8. extraction that fails everywhere
def test_extraction_with_every_file_failing_exits_non_zero(tmp_path, capsys):
    import extract_features
    root = make_tiny_corpus(tmp_path / 'c', n=4, with_text=False)
    for w in (root / 'Audios').glob('*.wav'):
        w.write_bytes(b'RIFF\x10\x00\x00\x00WAVEjunk')
    assert run(extract_features.main, '--corpus', root, '--out', tmp_path / 'lld', '--workers', '1') == 2
    assert 'none of the 4 utterances could be processed' in capsys.readouterr().err


# ----------------------------------------------------------------------------- artefacts
def test_shipped_records_verify_and_hold_no_machine_paths():
    for f in sorted(DEMO.glob('*.pth.tar')) + sorted(C.RANKER_DIR.glob('*.pth.tar')):
        ck = C.open_checkpoint(f)
        ck.verify_bytes()
        assert ck.source == 'demo' and ck.record['version'] == C.RECORD_VERSION
        text = C.sibling(f, '.meta.json').read_text()
        assert '"/' not in text and 'created' not in text


def test_normterm_files_are_deterministic(tmp_path):
    from utils import load_norm, save_norm
    stats = load_norm(REPO / 'NormTerm')
    save_norm(tmp_path / 'a', stats)
    save_norm(tmp_path / 'b', stats)
    for f in (tmp_path / 'a').glob('*.mat'):
        assert f.read_bytes() == (tmp_path / 'b' / f.name).read_bytes() == (REPO / 'NormTerm' / f.name).read_bytes()


def test_record_is_written_by_training_and_an_edited_record_is_refused(wavs, tmp_path, capsys):
    """save_model (the only writer of a record) stamps the revision of the code running now, whatever the
    caller passed, and a checksum of the record; a record edited afterwards (here its toolkit_revision, as
    was once done by hand) is refused by every loader."""
    model = C.load_lstm(ACT, 'seq2seq')
    record = json.loads(C.sibling(ACT, '.meta.json').read_text())
    d = tmp_path / 'own'
    d.mkdir()
    out = C.save_model(model, d / ACT.name, {**record, 'toolkit_revision': 'f' * 40, 'record_sha256': 'x'})
    meta_path = C.sibling(d / ACT.name, '.meta.json')
    written = json.loads(meta_path.read_text())
    assert written == out and written['toolkit_revision'] == C.toolkit_revision() != 'f' * 40
    assert written['record_sha256'] == C.record_checksum(written) and written['weights_sha256'] == C.sha256_file(d / ACT.name)
    C.open_checkpoint(d / ACT.name).check('seq2seq', 'Act')                 # as written: accepted
    meta_path.write_text(json.dumps({**written, 'toolkit_revision': '0' * 40}, indent=1) + '\n')
    with pytest.raises(C.CheckpointError, match='edited after training'):
        C.open_checkpoint(d / ACT.name).check('seq2seq', 'Act')
    rc = run(predict.main, wavs / 'voice.wav', '--checkpoint', d, '-emo', 'Act', '--out', tmp_path / 'r.csv')
    assert rc == 2 and 'edited after training' in capsys.readouterr().err
