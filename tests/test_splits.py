"""Split selection: Test is the published test set (Test1 where a release has Test1 and Test2), release names
(Test1, Test2, Development, any case) are accepted wherever a split is taken, and the commands print and record
which release splits they scored. A tiny corpus with Test1 and Test2 (a copy of the session corpus whose
Test1 half is relabelled Test2), LLDs of its test utterances only."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest

import cli
from corpus import Corpus, CorpusError, split_map, user_split
from errors import ToolkitError
from tests.conftest import REPO

pytestmark = pytest.mark.usefixtures('one_torch_thread')
ACT_MODEL = REPO / 'trained_seq2seq_model' / 'LSTM_epoch30_batch128_EmoRankerSeq_Act.pth.tar'


@pytest.fixture(scope='module')
def two_tests(tiny_corpus, tmp_path_factory):
    """(corpus root with Train/Development/Test1/Test2, LLD store of its Test1+Test2 utterances)."""
    import extract_features
    tmp = tmp_path_factory.mktemp('splits')
    root = tmp / 'corpus'
    shutil.copytree(tiny_corpus, root)
    lab = root / 'Labels' / 'labels_consensus.csv'
    df = pd.read_csv(lab)
    test = df.index[df.Split_Set == 'Test1']
    df.loc[test[len(test) // 2:], 'Split_Set'] = 'Test2'
    df.to_csv(lab, index=False)
    extract_features.main(['--corpus', str(root), '--out', str(tmp / 'lld'), '--split', 'test1', '--workers', '1'])
    extract_features.main(['--corpus', str(root), '--out', str(tmp / 'lld'), '--split', 'Test2', '--workers', '1'])
    return root, tmp / 'lld'


def test_test_is_test1_and_release_names_select_their_own_set(two_tests):
    c = Corpus(two_tests[0])
    lab = c.labels.set_index('FileName').Split_Set
    t1, t2 = sorted(lab.index[lab == 'Test1']), sorted(lab.index[lab == 'Test2'])
    assert len(t1) == 3 and len(t2) == 3
    assert c.splits_found() == {'Train': ['Train'], 'Validation': ['Development'], 'Test': ['Test1']}
    assert c.unmapped_splits() == ['Test2']
    assert sorted(c.files('Test')) == t1 == sorted(c.files('test1')) == sorted(c.files('TEST1'))
    assert sorted(c.files('Test2')) == t2 == sorted(c.files('test2'))
    assert c.files('development') == c.files('Validation')
    assert c.release_splits('Test') == ['Test1'] and c.release_splits(names=t1[:1] + t2) == ['Test1', 'Test2']
    assert c.split_of(t2[0]) is None and c.split_of(t1[0]) == 'Test'
    with pytest.raises(CorpusError, match=r"unknown split 'Test3'.*Test2"):
        c.files('Test3')


@pytest.mark.parametrize('names, test', [
    (['Train', 'Development', 'Test1', 'Test2'], ['Test1']),
    (['Train', 'Validation', 'Test'], ['Test']),
    (['Train', 'Development', 'Test', 'Test1'], ['Test1']),   # Test1 wins where a release has it
    (['Train', 'Development', 'test_1', 'Test2'], ['test_1']),
])
def test_split_map_of_release_names(names, test):
    m = split_map(names)
    assert sorted(n for n, u in m.items() if u == 'Test') == test
    assert m['Train'] == 'Train' and user_split('Development') == 'Validation' and user_split('Test2') is None


def test_parse_sets_takes_release_names(two_tests):
    c = Corpus(two_tests[0])
    assert cli.parse_sets('test1,Test2,development,train', c) == ['Test', 'Test2', 'Validation', 'Train']
    assert cli.parse_sets('all', c) == ['Train', 'Validation', 'Test']
    assert cli.split_file('Test2') == 'Test2' and cli.split_file('Test') == 'testing'
    with pytest.raises(ToolkitError, match=r"unknown split 'Test9'.*'Test2'"):
        cli.parse_sets('Test,Test9', c)


def test_testing_scores_test1_by_default_and_records_the_release_splits(two_tests, tmp_path, capsys):
    import testing
    root, lld = two_tests
    base = ['-emo', 'Act', '--corpus', str(root), '--features', str(lld), '--checkpoint', str(ACT_MODEL),
            '--device', 'cpu', '--workers', '0', '--out', str(tmp_path)]
    rows = testing.main(base)
    assert [(r['Split'], r['Release_splits'], r['N']) for r in rows] == [('Test', 'Test1', 3)]
    assert 'Act   Test        Test1' in capsys.readouterr().out
    rows = testing.main(base + ['-set', 'Test2,test1'])
    assert [(r['Split'], r['Release_splits'], r['N']) for r in rows] == [('Test2', 'Test2', 3), ('Test', 'Test1', 3)]
    metrics = pd.read_csv(tmp_path / 'metrics.csv')
    assert metrics[['Split', 'Release_splits']].values.tolist() == [['Test2', 'Test2'], ['Test', 'Test1']]
    pred = pd.read_csv(tmp_path / 'Act_Test2_predictions.csv')
    c = Corpus(root)
    assert sorted(pred.FileName) == sorted(c.files('Test2'))
    assert np.isclose(rows[0]['CCC'], _ccc(pred.Pred, pred.Label), atol=1e-4)


def _ccc(x, y):
    x, y = np.asarray(x, float), np.asarray(y, float)
    return 2 * np.mean((x - x.mean()) * (y - y.mean())) / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)


def test_evaluate_retrieval_records_release_splits(two_tests, tmp_path):
    import evaluate_retrieval
    root = tmp_path / 'c'
    shutil.copytree(two_tests[0], root, ignore=shutil.ignore_patterns('Audios'))
    c = Corpus(root)
    truth = {n: {'duration': 30.0, 'segments': [{'start': 0.0, 'end': 15.0, 'Act': 3.0},
                                                {'start': 15.0, 'end': 30.0, 'Act': 5.0}]} for n in c.files()}
    (root / 'ChunkTruth').mkdir()
    (root / 'ChunkTruth' / 'chunk_truth.json').write_text(json.dumps(truth))
    out = tmp_path / 'r.json'
    evaluate_retrieval.main(['--corpus', str(root), '--split', 'test2', '--baseline', 'random', '--out', str(out)])
    rec = json.loads(out.read_text())
    assert rec['release_splits'] == ['Test2'] and rec['results']['random']['n_utts'] == 3
    evaluate_retrieval.main(['--corpus', str(root), '--split', 'Test', '--baseline', 'random', '--out', str(out)])
    assert json.loads(out.read_text())['release_splits'] == ['Test1']


def test_ranker_scripts_take_a_release_name(two_tests, tmp_path, capsys):
    from chunk_emotion_rankers import generate_preference_labels, testing_ranker
    root, lld = two_tests
    generate_preference_labels.main(['-emo', 'Act', '-set', 'test2,Test', '--corpus', str(root), '--out',
                                     str(tmp_path), '--ratio', '1.0'])
    assert sorted(p.name for p in tmp_path.iterdir()) == ['Test2_Act.csv', 'testing_Act.csv']
    out = capsys.readouterr().out
    assert 'Act Test2: 3 utterances (release Test2)' in out and 'Act Test: 3 utterances (release Test1)' in out
    rk = REPO / 'chunk_emotion_rankers' / 'trained_ranker_model'
    rows = testing_ranker.main(['-emo', 'Act', '-set', 'TEST2', '--corpus', str(root), '--features', str(lld),
                                '--pairs', str(tmp_path), '--checkpoint', str(rk), '--device', 'cpu', '--workers', '0'])
    assert [r[:3] for r in rows] == [('Act', 'Test2', 6)]
    assert 'Act   Test2       Test2' in capsys.readouterr().out
