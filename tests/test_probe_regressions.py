"""Regression tests of the defects bench/probe_inputs.py found (each a user action with the expected refusal, flag
or correct result): messages that named the wrong cause, tracebacks on bad input, name-based leak checks that
refused valid runs, outputs written into inputs, and protocol steps reported from edited results."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from tests.fixtures import make_tiny_corpus

FOLD_TEST = {1: ('5', '6'), 2: ('1', '2'), 3: ('3', '4')}
FOLD_VAL = {1: ('3', '4'), 2: ('5', '6'), 3: ('1', '2')}


def write_folds(root):
    lab = pd.read_csv(root / 'Labels' / 'labels_consensus.csv', dtype=str)
    df = lab[['FileName', 'SpkrID']].copy()
    for f in (1, 2, 3):
        df[f'fold{f}'] = ['Test' if s in FOLD_TEST[f] else 'Validation' if s in FOLD_VAL[f] else 'Train'
                          for s in lab.SpkrID]
    df.to_csv(root / 'Labels' / 'folds.csv', index=False)
    return root


@pytest.fixture(scope='module')
def env(tmp_path_factory):
    """The tiny corpus (speakers 1,2 Train; 3,4 Validation; 5,6 Test) with 3 folds, its LLD store, constant ranking
    sequences and a 1-epoch Act model. Read-only: copy before editing."""
    import os

    import extract_features
    import training
    tmp = tmp_path_factory.mktemp('probe')
    old = os.environ.get('SER_HASH_CACHE')
    os.environ['SER_HASH_CACHE'] = str(tmp / 'hashes.sqlite')
    root = write_folds(make_tiny_corpus(tmp / 'corpus' / 'tiny', n=24))
    extract_features.main(['--corpus', str(root), '--out', str(tmp / 'lld'), '--workers', '1'])
    names = pd.read_csv(root / 'Labels' / 'labels_consensus.csv').FileName
    (tmp / 'rs').mkdir()
    (tmp / 'rs' / 'training_Act.json').write_text(json.dumps({n: {'ChunkRankSeq': [1] * 22} for n in names}))
    (ck,) = training.main(train_args(dict(root=root, lld=tmp / 'lld', rs=tmp / 'rs'), tmp / 'model'))
    yield dict(tmp=tmp, root=root, lld=tmp / 'lld', rs=tmp / 'rs', ck=ck)
    if old is None:
        os.environ.pop('SER_HASH_CACHE', None)
    else:
        os.environ['SER_HASH_CACHE'] = old


def train_args(env, out, *extra, corpus=None, features=None):
    return ['-emo', 'Act', '-ep', '1', '-batch', '8', '--corpus', str(corpus or env['root']), '--features',
            str(features or env['lld']), '--rankseq', str(env['rs']), '--out', str(out), '--device', 'cpu',
            '--workers', '0', *map(str, extra)]


def test_args(env, out, *extra, corpus=None, ck=None):
    return ['-emo', 'Act', '--checkpoint', str(ck or env['ck']), '--features', str(env['lld']), '--out', str(out),
            '--corpus', str(corpus or env['root']), '--device', 'cpu', '--bootstrap-n', '50', '--workers', '0',
            *map(str, extra)]


test_args.__test__ = False


def copy(env, dst):
    return shutil.copytree(env['root'], dst / 'tiny')


def labels(root):
    return root / 'Labels' / 'labels_consensus.csv'


# ---------------------------------------------------------------- corpus and folds files
def test_labels_in_utf16_and_without_rows_named(env, tmp_path):
    from corpus import Corpus, CorpusError
    c = copy(env, tmp_path)
    text = labels(c).read_text()
    labels(c).write_text(text, encoding='utf-16')
    with pytest.raises(CorpusError, match='UTF-16.*iconv -f utf-16'):
        Corpus(c)
    labels(c).write_text(text.splitlines()[0] + '\n')
    with pytest.raises(CorpusError, match='no utterances'):
        Corpus(c)


def test_folds_file_in_latin1_is_named_not_a_traceback(env, tmp_path):
    from corpus import Corpus, CorpusError
    c = copy(env, tmp_path)
    f = c / 'Labels' / 'folds.csv'
    f.write_bytes(f.read_bytes().replace(b'FileName', b'FileName\xe9', 1))
    with pytest.raises(CorpusError, match='folds.csv: not UTF-8'):
        Corpus(c, fold=1)


def test_folds_file_with_one_utterance_in_two_parts_refused(env, tmp_path):
    from corpus import Corpus, CorpusError
    c = copy(env, tmp_path)
    f = c / 'Labels' / 'folds.csv'
    df = pd.read_csv(f, dtype=str)
    row = df[df.fold1 == 'Test'].iloc[[0]]
    pd.concat([df, row.assign(fold1='Train')]).to_csv(f, index=False)
    with pytest.raises(CorpusError, match=f"{row.FileName.iloc[0]} \\(Test, Train\\)"):
        Corpus(c, fold=1)
    pd.concat([df, row]).to_csv(f, index=False)                  # repeated identically: read once
    assert len(Corpus(c, fold=1).files('Test')) == 6


def test_fold_without_a_test_part_named(env, tmp_path):
    import testing
    from errors import ToolkitError
    c = copy(env, tmp_path)
    f = c / 'Labels' / 'folds.csv'
    df = pd.read_csv(f, dtype=str)
    df.assign(fold1=df.fold1.replace('Test', 'Validation')).to_csv(f, index=False)
    with pytest.raises(ToolkitError, match=r'nothing was evaluated: Test of .*labels_consensus.csv \(fold1 of .*folds'):
        testing.main(test_args(env, tmp_path / 't', '--fold', '1', '-set', 'Test', corpus=c))


def test_deleted_recording_named_missing_not_other_audio(env, tmp_path):
    import testing
    from errors import ToolkitError
    c = copy(env, tmp_path)
    gone = pd.read_csv(labels(c)).query("Split_Set == 'Test1'").FileName.iloc[0]
    (c / 'Audios' / gone).unlink()
    with pytest.raises(ToolkitError, match=f'missing from .*{gone}'):
        testing.main(test_args(env, tmp_path / 't', corpus=c))


def test_prepare_corpus_speakers_named(tmp_path):
    import prepare_corpus
    from errors import ToolkitError
    from tests.test_prepare_corpus import make_ravdess
    src = make_ravdess(tmp_path / 'RAVDESS')
    with pytest.raises(ToolkitError, match="--speakers ',' names no speaker"):
        prepare_corpus.main(['ravdess', str(src), str(tmp_path / 'o'), '--speakers', ','])
    with pytest.raises(ToolkitError, match='--speakers 99: no utterance of these speakers'):
        prepare_corpus.main(['ravdess', str(src), str(tmp_path / 'o'), '--speakers', '99'])


# ---------------------------------------------------------------- normalisation: by speaker, not by name
def test_normterm_checked_by_speaker_not_by_split_name(env, tmp_path):
    import norm_para
    import testing
    import training
    from errors import ToolkitError
    n = tmp_path / 'N'
    norm_para.main(['--corpus', str(env['root']), '--features', str(env['lld']), '--out', str(n), '--fold', '1',
                    '--split', 'Test'])                          # speakers 5, 6: fold 3's Train part
    training.main(train_args(env, tmp_path / 'm3', '--fold', '3', '--norm', n))   # valid: not refused by name
    with pytest.raises(ToolkitError, match=r'Test split of tiny, with speaker\(s\) 5, 6 of the Test part'):
        training.main(train_args(env, tmp_path / 'm1', '--fold', '1', '--norm', n))
    renamed = shutil.copytree(env['root'], tmp_path / 'renamed')       # other name, same speakers
    with pytest.raises(ToolkitError, match=r'feature statistics.*saw tested speaker\(s\) 5, 6'):
        testing.main(test_args(env, tmp_path / 't', '--norm', n, corpus=renamed))
    other = make_tiny_corpus(tmp_path / 'o' / 'tiny', n=24, seed=5)    # same name, other speakers: no leak
    import norm
    from corpus import Corpus
    on = {'corpus': 'tiny', 'split': 'Test', 'speakers': json.loads((n / 'normterm.json').read_text())['speakers']}
    norm.check_not_under_test(on, 'feature statistics', Corpus(other), ['Test'])
    with pytest.raises(ToolkitError, match='split under test'):
        norm.check_not_under_test(on, 'feature statistics', Corpus(env['root']), ['Test'])


def test_store_without_train_utterances_says_extract(env, tmp_path):
    import extract_features
    import training
    from errors import ToolkitError
    s = tmp_path / 'lld'
    extract_features.main(['--corpus', str(env['root']), '--out', str(s), '--workers', '1', '--split', 'Test'])
    with pytest.raises(ToolkitError, match='none of its 12 Train utterances.*python extract_features.py'):
        training.main(train_args(env, tmp_path / 'm', features=s))


# ---------------------------------------------------------------- outputs
def test_training_out_into_the_store_or_below_a_file_refused(env, tmp_path):
    import training
    from errors import ToolkitError
    s = shutil.copytree(env['lld'], tmp_path / 'lld')
    with pytest.raises(ToolkitError, match='--out .* is the feature store'):
        training.main(train_args(env, s, features=s))
    with pytest.raises(ToolkitError, match='--out .* lies inside the feature store'):
        training.main(train_args(env, s / 'models', features=s))
    assert not list(s.glob('*.pth.tar')) and not (s / 'models').exists()
    (tmp_path / 'f').write_text('')
    with pytest.raises(ToolkitError, match='--out .*f is a file'):
        training.main(train_args(env, tmp_path / 'f' / 'm'))


def test_outputs_below_a_file_named_with_their_flag(env, tmp_path):
    import predict
    import testing
    from errors import ToolkitError
    (tmp_path / 'f').write_text('keep')
    wav = str(sorted((env['root'] / 'Audios').glob('*.wav'))[0])
    base = [wav, '-emo', 'Act', '--checkpoint', str(env['ck']), '--device', 'cpu']
    with pytest.raises(ToolkitError, match='--out .* is a file, not a folder'):
        predict.main(base + ['--out', str(tmp_path / 'f' / 'r.csv')])
    with pytest.raises(ToolkitError, match='--plot .* is a file, not a folder'):
        predict.main(base + ['--out', str(tmp_path / 'r.csv'), '--plot', str(tmp_path / 'f')])
    with pytest.raises(ToolkitError, match='--out .* is a file, not a folder'):
        testing.main(test_args(env, tmp_path / 'f' / 't'))
    assert (tmp_path / 'f').read_text() == 'keep'


def test_predict_speakers_csv_in_latin1_named(env, tmp_path):
    import predict
    from errors import ToolkitError
    wav = str(sorted((env['root'] / 'Audios').glob('*.wav'))[0])
    (tmp_path / 's.csv').write_bytes(b'file,speaker\n' + f'{wav},J\xfcrgen\n'.encode('latin-1'))
    with pytest.raises(ToolkitError, match='--speakers .*s.csv: not UTF-8'):
        predict.main([wav, '-emo', 'Act', '--checkpoint', str(env['ck']), '--device', 'cpu', '--out',
                      str(tmp_path / 'r.csv'), '--feature-norm', 'speaker', '--speakers', str(tmp_path / 's.csv')])


# ---------------------------------------------------------------- finished means finished
def test_init_from_an_unfinished_model_refused_then_recorded(env, tmp_path):
    import checkpoints as C
    import training
    from errors import ToolkitError
    d = shutil.copytree(env['ck'].parent, tmp_path / 'u')
    meta = d / env['ck'].name.replace('.pth.tar', '.meta.json')
    rec = json.loads(meta.read_text())
    rec['finished'] = False
    rec['record_sha256'] = C.record_checksum(rec)
    meta.write_text(json.dumps(rec))
    start = d / env['ck'].name
    with pytest.raises(ToolkitError, match='UNFINISHED.*--allow-unfinished'):
        training.main(train_args(env, tmp_path / 'm', '--init-from', start))
    (ck,) = training.main(train_args(env, tmp_path / 'm', '--init-from', start, '--allow-unfinished'))
    new = json.loads(ck.with_name(ck.name.replace('.pth.tar', '.meta.json')).read_text())
    assert new['init_from']['finished'] is False and new['finished'] is True


# ---------------------------------------------------------------- protocols
def test_crossval_redoes_a_fold_whose_predictions_were_edited(env, tmp_path, capsys):
    import crossval
    out = tmp_path / 'cv'
    run = lambda: crossval.main(['--corpus', str(env['root']), '--features', str(env['lld']), '--curves',  # noqa
                                 'constant', '-emo', 'Act', '-ep', '1', '-batch', '8', '--device', 'cpu',
                                 '--workers', '0', '--bootstrap-n', '50', '--folds', '1', '--out', str(out)])
    first = run()['pooled']['Act']['ccc']['value']
    pred = out / 'fold1' / 'test' / 'Act_Test_predictions.csv'
    df = pd.read_csv(pred)
    df.assign(Pred=df.Label).to_csv(pred, index=False)          # a perfect score typed in
    capsys.readouterr()
    again = run()['pooled']['Act']['ccc']['value']
    assert 'changed after .done_Act.json' in capsys.readouterr().err
    assert np.isclose(again, first) and again < 0.99
    for p in (out / 'fold1').rglob('*.pth.tar'):                 # the model deleted, its predictions kept: skipped
        p.unlink()
    assert np.isclose(run()['pooled']['Act']['ccc']['value'], first)
    assert 'done earlier with these settings' in capsys.readouterr().out


def test_crossval_out_and_name_checked_before_any_work(env, tmp_path):
    import crossval
    from errors import ToolkitError
    c = copy(env, tmp_path)
    (tmp_path / 'f').write_text('')
    a = ['--corpus', str(c), '--features', str(env['lld']), '--curves', 'constant', '-emo', 'Act', '-ep', '1']
    with pytest.raises(ToolkitError, match='--out .* is a file'):
        crossval.main(a + ['--out', str(tmp_path / 'f')])
    with pytest.raises(ToolkitError, match='--out .* is the corpus folder'):
        crossval.main(a + ['--out', str(c)])
    with pytest.raises(SystemExit):
        crossval.main(a + ['--out', str(tmp_path / 'cv'), '--name', '../escaped'])
    assert sorted(p.name for p in c.iterdir()) == sorted(p.name for p in env['root'].iterdir())
