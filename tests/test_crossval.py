"""crossval.py on real speech at smoke size: a three-speaker Emo-DB miniature with two speaker-disjoint folds
(Labels/folds.csv), the released rankers' curves, pooled metrics with intervals, and resuming."""
import json

import pandas as pd
import pytest

from tests.conftest import DATASETS, SHARED
from tests.conftest import EMODB_MINI_FOLDS as FOLDS

EMODB = DATASETS / 'emodb'
PUB = SHARED / 'pretrained' / 'Chunk-Level-Emotion-Retrieval'

pytestmark = pytest.mark.skipif(not (EMODB / 'wav').is_dir(), reason='../shared/datasets/emodb absent')


@pytest.fixture
def mini(emodb_mini):
    return emodb_mini


def run_cv(mini, out, *extra):
    import crossval
    return crossval.main(['--corpus', mini['root'], '--features', mini['lld'], '-emo', 'Act', '-ep', 1, '-batch', 8,
                          '--device', 'cpu', '--bootstrap-n', 200, '--out', out, *extra])


@pytest.mark.skipif(not PUB.is_dir(), reason='../shared/pretrained (the released models) absent')
def test_crossval_two_folds_released_curves_and_resume(mini, one_torch_thread, tmp_path, capsys):
    out = tmp_path / 'cv_released'
    rec = run_cv(mini, out, '--pretrained', PUB)
    printed = capsys.readouterr().out
    n = mini['spk'].value_counts()
    assert f"[fold1 1/2] Act: training on {n['12']} utterances, validating on {n['10']}, testing on {n['09']} " \
           f"(speakers 9)" in printed
    # every utterance of the two Test parts is predicted once; the folds' Test speakers are the right ones
    for f, parts in FOLDS.items():
        test_spk = [s for s, p in parts.items() if p == 'Test']
        pred = pd.read_csv(out / f / 'test' / 'Act_Test_predictions.csv')
        want = mini['labels'].FileName[mini['spk'].isin(test_spk)]
        assert sorted(pred.FileName) == sorted(want)
        meta = json.loads(next((out / f / 'model').glob('*.meta.json')).read_text())
        assert f in json.dumps(meta['corpus'])                  # the model record names its fold
        assert (out / f / 'train_Act.log').read_text().startswith('$ python training.py')
    pooled = rec['pooled']['Act']
    assert pooled['n'] == n['09'] + n['10'] and pooled['n_speakers'] == 2
    assert pooled['bootstrap']['resample'] == 'speakers' and pooled['bootstrap']['n_clusters'] == 2
    lo, hi = pooled['ccc']['ci']
    assert lo - 1e-12 <= pooled['ccc']['value'] <= hi + 1e-12
    auc = pooled['auc_arousal']
    test = mini['labels'][mini['spk'].isin(['09', '10'])].FileName.str[5]
    assert auc['n_high'] == test.isin(list('WFA')).sum() and auc['n_low'] == test.isin(list('LT')).sum()
    assert 0 <= auc['value'] <= 1
    assert set(pooled['category_means']) == {'anger', 'happiness', 'fear', 'boredom', 'sadness', 'neutral'}
    # the record's CCC is the one of the pooled predictions
    from utils import ccc
    df = pd.concat([pd.read_csv(out / f / 'test' / 'Act_Test_predictions.csv') for f in FOLDS])
    assert pooled['ccc']['value'] == pytest.approx(ccc(df.Pred, df.Label), abs=1e-9)
    saved = json.loads((out / 'crossval.json').read_text())
    assert saved['pooled']['Act']['ccc'] == pooled['ccc'] and saved['settings']['curves'] == 'released'
    md = (out / 'crossval.md').read_text()
    assert 'resamples of the 2 speakers' in md and 'Arousal AUC' in md and '| boredom |' in md
    # ranking sequences of the released rankers for every utterance
    rs = json.loads((out / 'rankseq_released' / 'training_Act.json').read_text())
    assert set(rs) == set(mini['labels'].FileName)

    # resuming: a run killed during fold 2 (its marker, written last, is missing) redoes fold 2 only
    ck = {f: next((out / f / 'model').glob('*.pth.tar')) for f in FOLDS}
    mtime = {f: p.stat().st_mtime_ns for f, p in ck.items()}
    (out / 'fold2' / '.done_Act.json').unlink()
    rec = run_cv(mini, out, '--pretrained', PUB)
    printed = capsys.readouterr().out
    assert '[fold1 1/2] Act: done earlier with these settings, skipped' in printed
    assert '[fold2 2/2] Act: training on' in printed and 'ranking sequences' in printed
    assert ck['fold1'].stat().st_mtime_ns == mtime['fold1'] and ck['fold2'].stat().st_mtime_ns != mtime['fold2']
    assert rec['pooled']['Act']['ccc']['value'] == pytest.approx(pooled['ccc']['value'], abs=1e-4)  # same seed
    # other settings redo a finished fold: here target curves from a ranker trained on the fold's Train part
    run_cv(mini, out, '--curves', 'fold', '--ranker-epochs', 1, '--ranker-batch', 32, '--ranker-pairs', 64, '--folds', 1)
    printed = capsys.readouterr().out
    assert 'skipped' not in printed and '[fold1 1/1] Act: training on' in printed
    assert ck['fold1'].stat().st_mtime_ns != mtime['fold1']
    ranker = json.loads(next((out / 'fold1' / 'ranker').glob('*_ranker.meta.json')).read_text())
    assert ranker['kind'] == 'ranker' and 'fold1' in json.dumps(ranker['corpus'])
    for part, spk in (('training', '12'), ('validation', '10')):      # fold1: Train 12, Validation 10, Test 09
        pairs = pd.read_csv(out / 'fold1' / 'preference_labels' / f'{part}_Act.csv')
        assert len(pairs) and {n[:2] for n in pairs.Sentence1} | {n[:2] for n in pairs.Sentence2} == {spk}
    assert not (out / 'fold1' / 'preference_labels' / 'testing_Act.csv').exists()
    rs = json.loads((out / 'fold1' / 'rankseq' / 'training_Act.json').read_text())
    assert set(rs) == set(mini['labels'].FileName)


@pytest.fixture(scope='module')
def ravdess_mini(tmp_path_factory):
    """RAVDESS actors 01-04 as distributed, converted by prepare_corpus.py (its four actor folds), cut to one
    utterance per actor of anger, happiness, fear, sadness, calm and neutral (24), and its LLD store."""
    if not (DATASETS / 'ravdess' / 'Actor_01').is_dir():
        pytest.skip('../shared/datasets/ravdess absent')
    import extract_features
    import prepare_corpus
    tmp = tmp_path_factory.mktemp('ravdess')
    root = tmp / 'ravdess'
    prepare_corpus.main(['ravdess', str(DATASETS / 'ravdess'), str(root)])
    path = root / 'Labels' / 'labels_consensus.csv'
    lab = pd.read_csv(path, dtype=str)
    lab = lab[lab.Category.isin(['anger', 'happiness', 'fear', 'sadness', 'calm', 'neutral'])]
    lab = lab.groupby(['SpkrID', 'Category']).head(1)
    lab.to_csv(path, index=False)
    extract_features.main(['--corpus', str(root), '--out', str(tmp / 'lld'), '--workers', '1'])
    return dict(root=root, lld=tmp / 'lld', labels=lab)


def test_crossval_converted_ravdess_constant_curves(ravdess_mini, one_torch_thread, tmp_path):
    """Two of the converter's folds of real RAVDESS (48 kHz, derived labels), utterances resampled."""
    rec = run_cv(ravdess_mini, tmp_path / 'cv', '--curves', 'constant', '--folds', '1,2', '--bootstrap',
                 'utterances')
    folds = pd.read_csv(ravdess_mini['root'] / 'Labels' / 'folds.csv', dtype=str).set_index('FileName')
    lab = ravdess_mini['labels']
    tested = lab.FileName[folds.loc[lab.FileName, ['fold1', 'fold2']].eq('Test').any(axis=1).values]
    pooled = rec['pooled']['Act']
    assert rec['folds'] == ['fold1', 'fold2'] and pooled['n'] == len(tested) == 12
    assert pooled['bootstrap']['resample'] == 'utterances' and pooled['bootstrap']['n_clusters'] == 12
    lo, hi = pooled['ccc']['ci']
    assert lo < pooled['ccc']['value'] < hi
    assert pooled['auc_arousal']['n_high'] == 6 and pooled['auc_arousal']['n_low'] == 2     # calm, neutral left out
    assert 'derived from intended category' in rec['labels']
    seq = json.loads((tmp_path / 'cv' / 'rankseq_constant' / 'training_Act.json').read_text())
    assert {tuple(v['ChunkRankSeq']) for v in seq.values()} == {(1,) * 22}


def test_crossval_refuses_bad_input(mini, tmp_path, capsys):
    import shutil

    import cli
    import crossval
    from errors import ToolkitError
    with pytest.raises(ToolkitError, match='needs --pretrained'):
        crossval.main(['--corpus', str(mini['root']), '--out', str(tmp_path)])
    with pytest.raises(ToolkitError, match='fold3 not in .*folds.csv'):
        crossval.main(['--corpus', str(mini['root']), '--folds', '1,3', '--curves', 'constant', '--out', str(tmp_path)])
    nofolds = tmp_path / 'nofolds'
    shutil.copytree(mini['root'] / 'Labels', nofolds / 'Labels')
    (nofolds / 'Labels' / 'folds.csv').unlink()
    with pytest.raises(SystemExit) as e:
        cli.run_script(crossval.main, ['--corpus', str(nofolds), '--curves', 'constant', '--out', str(tmp_path)])
    assert e.value.code == 2 and 'no folds file' in capsys.readouterr().err
