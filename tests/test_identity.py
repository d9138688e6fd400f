"""Identity by content (identity.py, docs/identity.md) and the output policy (outputs.py), probed as a user acts:
each test is a user action with the expected refusal, flag or correct result. Tiny corpora, one 1-epoch model."""
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from tests.fixtures import make_tiny_corpus


@pytest.fixture(scope='module')
def env(tmp_path_factory):
    """A 24-utterance corpus (speakers 1,2 Train; 3,4 Validation; 5,6 Test), its LLD store, constant ranking
    sequences and one Seq2Seq Act model trained 1 epoch on its Train part. Read-only: copy before editing."""
    import extract_features
    import training
    tmp = tmp_path_factory.mktemp('ident')
    os.environ['SER_HASH_CACHE'] = str(tmp / 'hashes.sqlite')
    root = make_tiny_corpus(tmp / 'corpus', n=24)
    extract_features.main(['--corpus', str(root), '--out', str(tmp / 'lld'), '--workers', '1'])
    names = pd.read_csv(root / 'Labels' / 'labels_consensus.csv').FileName
    (tmp / 'rs').mkdir()
    (tmp / 'rs' / 'training_Act.json').write_text(json.dumps({n: {'ChunkRankSeq': [1] * 22} for n in names}))
    (ck,) = training.main(['-emo', 'Act', '-ep', '1', '-batch', '8', '--corpus', str(root), '--features',
                           str(tmp / 'lld'), '--rankseq', str(tmp / 'rs'), '--out', str(tmp / 'model'), '--device',
                           'cpu', '--workers', '0'])
    yield dict(tmp=tmp, root=root, lld=tmp / 'lld', rs=tmp / 'rs', ck=ck)
    os.environ.pop('SER_HASH_CACHE', None)


def copy_corpus(env, dst):
    return shutil.copytree(env['root'], dst)


def test_testing_args(env, out, *extra):
    return ['-emo', 'Act', '--checkpoint', str(env['ck']), '--features', str(env['lld']), '--out', str(out),
            '--device', 'cpu', '--bootstrap-n', '50', '--workers', '0', *map(str, extra)]


test_testing_args.__test__ = False


# ---------------------------------------------------------------- fingerprints
def test_file_hash_cache_reuses_unchanged_and_rehashes_edited(tmp_path, monkeypatch):
    import identity
    monkeypatch.setenv('SER_HASH_CACHE', str(tmp_path / 'c.sqlite'))
    identity._CACHES.clear()
    f = tmp_path / 'a.wav'
    f.write_bytes(b'x' * 100)
    first = identity.file_fp(f)
    assert first == {'name': 'a.wav', 'size': 100, 'sha256': identity._sha256(f)}
    identity._CACHES.clear()                             # a new process: the cache is read from disk
    calls = []
    monkeypatch.setattr(identity, '_sha256', lambda p: calls.append(p) or 'never')
    assert identity.file_fp(f) == first and calls == []  # unchanged: not read again
    time.sleep(0.01)
    f.write_bytes(b'y' * 100)                            # same size, new content and mtime: hashed again
    assert identity.file_fp(f)['sha256'] == 'never' and len(calls) == 1


def test_corpus_fingerprint_follows_content_not_folder_name(env, tmp_path):
    import evalsteps as S
    import identity
    from corpus import Corpus
    a = identity.corpus_fp(Corpus(env['root']))
    moved = copy_corpus(env, tmp_path / 'renamed_copy')
    assert identity.corpus_fp(Corpus(moved))['sha256'] == a['sha256']           # renamed/moved: same identity
    assert S.inputs_of(Corpus(moved), env['lld']) == S.inputs_of(Corpus(env['root']), env['lld'])
    lab = moved / 'Labels' / 'labels_consensus.csv'
    df = pd.read_csv(lab)
    df.loc[0, 'EmoAct'] = 7.0                                                     # one label edited
    df.to_csv(lab, index=False)
    b = identity.corpus_fp(Corpus(moved))
    assert b['labels'] != a['labels'] and b['audio'] == a['audio'] and b['sha256'] != a['sha256']
    wav = sorted((moved / 'Audios').glob('*.wav'))[0]
    y, sr = sf.read(wav)
    sf.write(wav, y * 0.5, sr)                                                    # one recording changed
    assert identity.corpus_fp(Corpus(moved))['audio'] != a['audio']


def test_speaker_fingerprints_same_in_copy_other_in_other_corpus(env, tmp_path):
    import identity
    from corpus import Corpus
    a = identity.speaker_fps(Corpus(env['root']))
    assert set(a) == {'1', '2', '3', '4', '5', '6'}
    assert identity.speaker_fps(Corpus(copy_corpus(env, tmp_path / 'copy'))) == a
    other = make_tiny_corpus(tmp_path / 'other', n=24, seed=3)                     # same speaker IDs, other voices
    assert not set(identity.speaker_fps(Corpus(other)).values()) & set(a.values())


def test_store_fingerprint_covers_settings_generically(env):
    import identity
    from feature_store import FeatureStore
    s = FeatureStore(env['lld'])
    fp = identity.store_fp(s)
    assert (env['lld'] / 'sources.csv').is_file() and fp['sources'] is not None
    s.meta = {**s.meta, 'upstream_sha256': 'abc'}            # a new extraction field joins without code changes
    assert identity.store_fp(s)['sha256'] != fp['sha256']
    s.meta = {**s.meta, 'upstream_sha256': None, 'n_rows': 1}    # state fields do not
    assert identity.store_fp(FeatureStore(env['lld']))['sha256'] == fp['sha256']


# ---------------------------------------------------------------- consumers
def test_store_of_a_same_named_corpus_with_other_audio_is_refused(env, tmp_path):
    import cli
    from corpus import Corpus
    other = make_tiny_corpus(tmp_path / 'x' / env['root'].name, n=24, seed=5)     # same folder name, other audio
    with pytest.raises(Exception, match='extracted from other audio.*differ'):
        cli.open_store(env['lld'], Corpus(other))
    assert cli.open_store(env['lld'], Corpus(copy_corpus(env, tmp_path / 'moved'))).dim == 130   # a copy is fine


def test_default_store_keyed_on_content(env, tmp_path, monkeypatch):
    import feature_store
    import identity
    from corpus import Corpus
    monkeypatch.setattr(feature_store, 'default_features', lambda c, kind='lld': env['lld'])
    assert identity.default_store(Corpus(env['root'])) == env['lld']
    other = make_tiny_corpus(tmp_path / env['root'].name, n=24, seed=5)
    alt = identity.default_store(Corpus(other))
    assert alt != env['lld'] and alt.parent.name.startswith(env['root'].name + '-')


def test_extract_refuses_store_of_other_audio_then_overwrite_rebuilds(env, tmp_path):
    import extract_features
    import identity
    from errors import ToolkitError
    store = tmp_path / 'lld'
    shutil.copytree(env['lld'], store)
    other = make_tiny_corpus(tmp_path / 'o' / env['root'].name, n=24, seed=5)
    with pytest.raises(ToolkitError, match='already holds a feature store extracted from other audio.*--overwrite'):
        extract_features.main(['--corpus', str(other), '--out', str(store), '--workers', '1'])
    extract_features.main(['--corpus', str(other), '--out', str(store), '--workers', '1', '--overwrite'])
    from corpus import Corpus
    from feature_store import FeatureStore
    assert identity.store_mismatch(FeatureStore(store), Corpus(other)) == ([], True)


def test_extract_out_equal_to_corpus_root_refused_keeps_skipped_csv(env, tmp_path):
    import extract_features
    from outputs import OutputClashError
    c = copy_corpus(env, tmp_path / 'c')
    (c / 'skipped.csv').write_text('item,reason\nx.wav,converter said so\n')
    for out in (c, c / 'Audios', c / 'Labels' / 'lld'):
        with pytest.raises(OutputClashError, match='corpus folder'):
            extract_features.main(['--corpus', str(c), '--out', str(out), '--workers', '1'])
    assert (c / 'skipped.csv').read_text().endswith('converter said so\n')


def test_fold_check_uses_labels_speakers_not_folds_column(env, tmp_path):
    import check_corpus
    import cli
    from errors import ToolkitError
    c = copy_corpus(env, tmp_path / 'c')
    lab = pd.read_csv(c / 'Labels' / 'labels_consensus.csv', dtype=str)
    # folds.csv claims speaker 9 for one speaker-1 utterance and puts it in Test: by the labels file, speaker 1
    # is then in Train and Test
    part = lab.SpkrID.map({'1': 'Train', '2': 'Train', '3': 'Validation', '4': 'Validation', '5': 'Test', '6': 'Test'})
    spk = lab.SpkrID.copy()
    i = lab.index[lab.SpkrID == '1'][0]
    part[i], spk[i] = 'Test', '9'
    pd.DataFrame({'FileName': lab.FileName, 'SpkrID': spk, 'fold1': part}).to_csv(c / 'Labels' / 'folds.csv',
                                                                                    index=False)
    with pytest.raises(ToolkitError, match='fold1 is not speaker-disjoint.*speaker 1 in Train and Test'):
        cli.open_corpus(c, 'fold1')
    rep = check_corpus.check(c, progress=False)
    assert any('speaker 1 is in Train and Test' in f for f in rep['fatal'])
    import training
    with pytest.raises(ToolkitError, match='not speaker-disjoint'):
        training.main(['-emo', 'Act', '--corpus', str(c), '--fold', '1', '--features', str(env['lld']), '--rankseq',
                       str(env['rs']), '--out', str(tmp_path / 'm'), '-ep', '1'])
    import crossval
    with pytest.raises(ToolkitError, match='not speaker-disjoint'):
        crossval.main(['--corpus', str(c), '--features', str(env['lld']), '--curves', 'constant', '-ep', '1',
                       '--out', str(tmp_path / 'cv')])


@pytest.mark.parametrize('spec', [',', ' , ', 'fold'])
def test_crossval_folds_without_a_number_refused(env, tmp_path, spec):
    import crossval
    from errors import ToolkitError
    c = copy_corpus(env, tmp_path / 'c')
    lab = pd.read_csv(c / 'Labels' / 'labels_consensus.csv', dtype=str)
    lab[['FileName']].assign(fold1=lab.Split_Set.map({'Train': 'Train', 'Development': 'Validation',
                                                      'Test1': 'Test'})).to_csv(c / 'Labels' / 'folds.csv', index=False)
    with pytest.raises(ToolkitError, match='--folds'):
        crossval.main(['--corpus', str(c), '--features', str(env['lld']), '--curves', 'constant', '--folds', spec])


def test_crossval_redoes_a_fold_whose_inputs_changed_and_keeps_it_when_moved(env, tmp_path, capsys):
    import crossval
    c = copy_corpus(env, tmp_path / 'c')
    lab = pd.read_csv(c / 'Labels' / 'labels_consensus.csv', dtype=str)
    lab[['FileName']].assign(fold1=lab.Split_Set.map({'Train': 'Train', 'Development': 'Validation',
                                                      'Test1': 'Test'})).to_csv(c / 'Labels' / 'folds.csv', index=False)
    run = lambda root, *x: crossval.main(['--corpus', str(root), '--features', str(env['lld']), '--curves',   # noqa
                                          'constant', '-emo', 'Act', '-ep', '1', '-batch', '8', '--device', 'cpu',
                                          '--bootstrap-n', '50', '--out', str(tmp_path / 'cv'), *x])
    first = run(c)
    capsys.readouterr()
    moved = c.rename(tmp_path / 'moved')                     # same content elsewhere: the fold stays done
    run(moved)
    assert 'done earlier with these settings, skipped' in capsys.readouterr().out
    run(moved, '--bootstrap-n', '60')                        # other bootstrap: redone
    assert 'skipped' not in capsys.readouterr().out
    lab_path = moved / 'Labels' / 'labels_consensus.csv'
    df = pd.read_csv(lab_path)
    test = df.Split_Set == 'Test1'
    df.loc[test, 'EmoAct'] = 8 - df.loc[test, 'EmoAct']      # the Test labels edited
    df.to_csv(lab_path, index=False)
    rec = run(moved, '--bootstrap-n', '60')
    assert 'skipped' not in capsys.readouterr().out
    pred = pd.read_csv(tmp_path / 'cv' / 'fold1' / 'test' / 'Act_Test_predictions.csv')
    assert np.allclose(np.sort(pred.Label), np.sort(df.loc[test, 'EmoAct']))   # scored against the new labels
    assert rec['pooled']['Act']['ccc']['value'] != first['pooled']['Act']['ccc']['value']


# ---------------------------------------------------------------- leaks by speaker
def test_model_tested_on_a_copy_of_its_training_speakers_refused_or_flagged(env, tmp_path):
    import testing
    from errors import ToolkitError
    copy = copy_corpus(env, tmp_path / 'renamed')           # other folder name, same speakers' audio
    with pytest.raises(ToolkitError, match=r'saw tested speaker\(s\) 1, 2'):
        testing.main(test_testing_args(env, tmp_path / 't', '--corpus', copy, '-set', 'Train'))
    rows = testing.main(test_testing_args(env, tmp_path / 't', '--corpus', copy, '-set', 'Train',
                                          '--allow-seen-speakers'))
    assert all(r['seen_speakers'].startswith('SEEN SPEAKERS') for r in rows)
    assert pd.read_csv(tmp_path / 't' / 'Act_Train_predictions.csv').seen_speakers.str.startswith('SEEN').all()
    rows = testing.main(test_testing_args(env, tmp_path / 't2', '--corpus', copy))   # Test speakers 5, 6: clean
    assert 'seen_speakers' not in rows[0]


def test_normterm_of_another_corpus_copy_holding_the_tested_speakers_refused(env, tmp_path):
    import norm_para
    import testing
    from errors import ToolkitError
    copy = copy_corpus(env, tmp_path / 'elsewhere')
    norm_para.main(['--corpus', str(copy), '--features', str(env['lld']), '--out', str(tmp_path / 'N'),
                    '--split', 'Test'])                      # statistics of the Test speakers, another corpus name
    rec = json.loads((tmp_path / 'N' / 'normterm.json').read_text())
    assert set(rec['speakers']) == {'5', '6'} and rec['utterances_sha256']
    with pytest.raises(ToolkitError, match=r'feature statistics.*saw tested speaker\(s\) 5, 6'):
        testing.main(test_testing_args(env, tmp_path / 't', '--corpus', env['root'], '--norm', tmp_path / 'N'))


def test_model_record_says_what_it_was_trained_on(env):
    rec = json.loads(env['ck'].with_name(env['ck'].name.replace('.pth.tar', '.meta.json')).read_text())
    assert rec['finished'] is True
    assert set(rec['trained_on']['speakers']) == {'1', '2', '3', '4'}
    assert rec['trained_on']['corpus_sha256'] and rec['trained_on']['features_sha256']


# ---------------------------------------------------------------- finished means finished
def test_unfinished_model_refused_by_testing_and_predict_then_flagged(env, tmp_path):
    import checkpoints as C
    import predict
    import testing
    from errors import ToolkitError
    d = tmp_path / 'm'
    shutil.copytree(env['ck'].parent, d)
    meta = d / env['ck'].name.replace('.pth.tar', '.meta.json')
    rec = json.loads(meta.read_text())
    rec['finished'] = False
    rec['record_sha256'] = C.record_checksum(rec)
    meta.write_text(json.dumps(rec))
    args = test_testing_args(env, tmp_path / 't', '--corpus', env['root'])
    args[args.index('--checkpoint') + 1] = str(d / env['ck'].name)
    with pytest.raises(ToolkitError, match='UNFINISHED.*--allow-unfinished'):
        testing.main(args)
    rows = testing.main(args + ['--allow-unfinished'])
    assert all(r['model_finished'] is False for r in rows)
    wav = str(sorted((env['root'] / 'Audios').glob('*.wav'))[0])
    pargs = [wav, '-emo', 'Act', '--checkpoint', str(d / env['ck'].name), '--out', str(tmp_path / 'r.csv'),
             '--device', 'cpu']
    with pytest.raises(ToolkitError, match='UNFINISHED'):
        predict.main(pargs)
    assert predict.main(pargs + ['--allow-unfinished']) == 0
    got = pd.read_csv(tmp_path / 'r.csv')
    assert (got.model_finished == False).all() and got.model_note.str.startswith('UNFINISHED').all()  # noqa: E712


# ---------------------------------------------------------------- outputs
def test_norm_para_refuses_to_replace_a_normterm_without_overwrite(env, tmp_path):
    import norm_para
    from errors import ToolkitError
    a = ['--corpus', str(env['root']), '--features', str(env['lld']), '--out', str(tmp_path / 'N')]
    norm_para.main(a)
    before = (tmp_path / 'N' / 'feat_norm_means.mat').read_bytes()
    with pytest.raises(ToolkitError, match='already holds a NormTerm.*--overwrite'):
        norm_para.main(a + ['--split', 'Validation'])
    assert (tmp_path / 'N' / 'feat_norm_means.mat').read_bytes() == before
    norm_para.main(a + ['--split', 'Validation', '--overwrite'])
    assert json.loads((tmp_path / 'N' / 'normterm.json').read_text())['split'] == 'Validation'
    with pytest.raises(ToolkitError, match='is the feature store'):
        norm_para.main(['--corpus', str(env['root']), '--features', str(env['lld']), '--out', str(env['lld'])])


@pytest.fixture
def live_other_process():
    p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])
    yield p
    p.kill()
    p.wait()


def hold_lock(path, proc):
    """Write the lock of `path` as a running other process (another user's run) would."""
    import socket

    from outputs import lock_file
    from utils import _proc_start
    lock_file(path).write_text(json.dumps({'pid': proc.pid, 'host': socket.gethostname(),
                                           'start': _proc_start(proc.pid), 'command': 'the first run',
                                           'time': 'now'}))


def test_second_run_on_a_locked_output_stops_naming_the_first(env, tmp_path, live_other_process):
    import norm_para
    import predict
    from errors import ToolkitError
    hold_lock(tmp_path / 'N', live_other_process)
    with pytest.raises(ToolkitError, match=f'pid {live_other_process.pid}.*the first run'):
        norm_para.main(['--corpus', str(env['root']), '--features', str(env['lld']), '--out', str(tmp_path / 'N')])
    hold_lock(tmp_path / 'r.csv', live_other_process)
    wav = str(sorted((env['root'] / 'Audios').glob('*.wav'))[0])
    with pytest.raises(ToolkitError, match='the first run'):
        predict.main([wav, '-emo', 'Act', '--checkpoint', str(env['ck']), '--out', str(tmp_path / 'r.csv')])
    assert not (tmp_path / 'r.csv').exists()


def test_corpus_build_gets_umask_lock_and_does_not_replace_a_newer_corpus(tmp_path, live_other_process):
    import corpus
    from errors import ToolkitError
    old = os.umask(0o022)
    try:
        out = tmp_path / 'built'
        with corpus.staged_dir(out, ('Labels',)) as tmp:
            (tmp / 'Labels' / 'x.csv').write_text('a\n')
            corpus.publish_dir(tmp, out)
        assert (out.stat().st_mode & 0o777) == 0o755          # not drwx------ (mkdtemp's mode)
        out2 = tmp_path / 'raced'
        with pytest.raises(corpus.CorpusExistsError, match='another run'), corpus.staged_dir(out2) as tmp:
            out2.mkdir()                                   # another conversion published meanwhile
            corpus.publish_dir(tmp, out2)
        hold_lock(tmp_path / 'locked', live_other_process)
        with pytest.raises(ToolkitError, match='the first run'), corpus.staged_dir(tmp_path / 'locked'):
            pass
        with pytest.raises(ToolkitError, match='is a file'):
            (tmp_path / 'f').write_text('')
            corpus.refuse_existing(tmp_path / 'f' / 'c')
    finally:
        os.umask(old)


# ---------------------------------------------------------------- no traceback
def test_bootstrap_count_bounded_by_memory_before_any_work(env, tmp_path):
    import cli
    import testing
    from errors import ToolkitError
    with pytest.raises(ToolkitError, match='--bootstrap-n .*GiB.*use at most'):
        testing.main(test_testing_args(env, tmp_path / 't', '--corpus', env['root'], '--bootstrap-n', 10 ** 13))
    assert not (tmp_path / 't').exists()
    cli.check_bootstrap(1000, 100_000)                        # the default at MSP-Podcast size fits


def test_predict_grid_range_checked(env, tmp_path, capsys):
    import predict
    wav = str(sorted((env['root'] / 'Audios').glob('*.wav'))[0])
    for g in ('100', '0', '-1', 'nan'):
        with pytest.raises(SystemExit) as e:
            predict.main([wav, '--grid', g, '--out', str(tmp_path / 'r.csv')])
        assert e.value.code == 2 and '--grid' in capsys.readouterr().err


def test_latin1_labels_named_not_a_traceback(env, tmp_path):
    from corpus import Corpus, CorpusError
    c = copy_corpus(env, tmp_path / 'c')
    lab = c / 'Labels' / 'labels_consensus.csv'
    df = pd.read_csv(lab, dtype=str)
    df.loc[0, 'Gender'] = 'Männlich'
    df.to_csv(lab, index=False, encoding='latin-1')
    with pytest.raises(CorpusError, match='not UTF-8.*iconv'):
        Corpus(c)


def test_output_under_a_file_named_with_its_flag(env, tmp_path):
    import extract_features
    import norm_para
    from errors import ToolkitError
    (tmp_path / 'f').write_text('')
    with pytest.raises(ToolkitError, match='--out .* is a file'):
        norm_para.main(['--corpus', str(env['root']), '--features', str(env['lld']), '--out', str(tmp_path / 'f' / 'N')])
    with pytest.raises(ToolkitError, match='--out .* is a file'):
        extract_features.main(['--corpus', str(env['root']), '--out', str(tmp_path / 'f' / 'lld')])


def test_bench_fingerprint_smoke(tmp_path, capsys):
    """bench/bench_fingerprint.py at a tiny size: its checks hold (the cached digest equals the first, an edited
    file changes it) and it writes its JSON. No timing assertion."""
    import importlib
    sys.path.insert(0, str(__import__('pathlib').Path(__file__).resolve().parents[1] / 'bench'))
    res = importlib.import_module('bench.bench_fingerprint').main(['--n', '30', '--kib', '1', '--out', str(tmp_path)])
    assert 'RESULT fingerprint: 30 files' in capsys.readouterr().out
    saved = json.loads((tmp_path / 'fingerprint.json').read_text())
    assert saved['n_files'] == 30 and saved['first']['digest'] == saved['cached']['digest'] == res['cached']['digest']


def test_model_refuses_store_with_other_extraction_settings(env, tmp_path):
    """A store whose content-defining settings differ from the model's (here a field a new extractor records)
    is refused, naming the field; a copy of the same store is fine."""
    import testing
    from errors import ToolkitError
    s = tmp_path / 'lld'
    shutil.copytree(env['lld'], s)
    meta = json.loads((s / 'meta.json').read_text())
    (s / 'meta.json').write_text(json.dumps({**meta, 'upstream_sha256': 'f' * 64}))
    args = test_testing_args(env, tmp_path / 't', '--corpus', env['root'])
    args[args.index('--features') + 1] = str(s)
    with pytest.raises(ToolkitError, match="other settings .*upstream_sha256: model None, store 'fff"):
        testing.main(args)
    (s / 'meta.json').write_text(json.dumps(meta))
    assert testing.main(args)[0]['N'] > 0
