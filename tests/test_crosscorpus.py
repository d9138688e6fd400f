"""crosscorpus.py at smoke size: rows 'released' and a trained Emo-DB miniature, columns that miniature and the
synthetic tiny corpus; each cell's metrics, test set and normalisation, the heat-map, and resuming per cell."""
import json

import numpy as np
import pandas as pd
import pytest

from tests.conftest import SHARED

PUB = SHARED / 'pretrained' / 'Chunk-Level-Emotion-Retrieval'
pytestmark = pytest.mark.skipif(not PUB.is_dir(), reason='../shared/pretrained (the released models) absent')


@pytest.fixture(scope='module')
def tiny_lld(tiny_corpus, tmp_path_factory):
    import extract_features
    out = tmp_path_factory.mktemp('tiny_lld') / 'lld'
    extract_features.main(['--corpus', str(tiny_corpus), '--out', str(out), '--workers', '1'])
    return out


def link_features(work, name, lld):
    """crosscorpus.py finds a corpus's store at features/<name>/lld; point it at the fixture's store."""
    p = work / 'features' / name / 'lld'
    p.parent.mkdir(parents=True, exist_ok=True)
    p.symlink_to(lld)


def test_crosscorpus_matrix(emodb_mini, tiny_corpus, tiny_lld, tmp_path, one_torch_thread, capsys, monkeypatch):
    import crosscorpus
    from utils import ccc
    mini = emodb_mini
    work = tmp_path / 'work'
    monkeypatch.chdir(tmp_path)          # cli.default_features also looks under the working directory
    link_features(tmp_path, mini['root'].name, mini['lld'])
    link_features(tmp_path, tiny_corpus.name, tiny_lld)
    argv = ['--train', mini['root'], '--test', f"{mini['root']},{tiny_corpus}", '--pretrained', PUB, '-emo', 'Act',
            '-ep', 1, '-batch', 8, '--device', 'cpu', '--bootstrap-n', 200, '--work', work, '--out', tmp_path / 'res',
            '--note', 'smoke size']
    rec = crosscorpus.main(argv)
    a, t = mini['root'].name, tiny_corpus.name
    assert rec['rows'] == ['released', a] and rec['columns'] == [a, t]
    diag, off, rel = rec['cells'][f'{a}__{a}'], rec['cells'][f'{a}__{t}'], rec['cells'][f'released__{a}']
    # the diagonal tests the training corpus's Test split (speaker 09), the others every utterance
    assert diag['test_set'] == 'Test split' and diag['n'] == (mini['spk'] == '09').sum()
    assert off['test_set'] == 'all utterances' and off['n'] == 24 and rel['n'] == len(mini['labels'])
    assert diag['feature_norm'] == 'train' and rel['feature_norm'] == 'published' and rel['model_source'] == 'release'
    # a cell's CCC is the one of its predictions; the AUC needs high and low arousal categories (Emo-DB has them)
    pred = pd.concat([pd.read_csv(p) for p in (work / 'cells' / f'released__{a}').glob('Act_*_predictions.csv')])
    assert len(pred) == rel['n']
    assert rel['metrics']['Act']['ccc']['value'] == pytest.approx(ccc(pred.Pred, pred.Label), abs=1e-9)
    auc = rel['metrics']['Act']['auc_arousal']
    assert auc['value'] > 0.8 and auc['ci'][0] <= auc['value'] <= auc['ci'][1]      # the release separates arousal
    assert rel['metrics']['Act']['bootstrap']['n_clusters'] == 3
    md = (tmp_path / 'res' / 'crosscorpus.md').read_text()
    assert '**Act CCC** [95 % CI]' in md and 'smoke size' in md and '| released | ' in md and 'Test split' in md
    # the diagonal tests one speaker (09): no interval, marked, and the reason under the table
    assert diag['metrics']['Act']['ccc']['ci'] == [None, None] and '[CI withheld] †' in md
    assert '† interval withheld: fewer than 2 test speakers' in md
    png = (tmp_path / 'res' / 'crosscorpus.png').read_bytes()
    assert png[:8] == b'\x89PNG\r\n\x1a\n' and len(png) > 5000
    saved = json.loads((tmp_path / 'res' / 'crosscorpus.json').read_text())
    assert saved['cells'][f'{a}__{t}']['metrics']['Act']['ccc'] == off['metrics']['Act']['ccc']
    # resumable per cell: a second run trains and tests nothing and gives the same matrix
    capsys.readouterr()
    mtime = {p: p.stat().st_mtime_ns for p in work.rglob('*.pth.tar')}
    rec2 = crosscorpus.main(argv)
    assert 'done earlier with these settings' in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in work.rglob('*.pth.tar')} == mtime
    assert rec2['cells'] == rec['cells']
    # the test-side normalisation is a flag, named in the cell's record
    rec3 = crosscorpus.main(['--test', mini['root'], '--pretrained', PUB, '-emo', 'Act', '--feature-norm', 'speaker',
                             '--device', 'cpu', '--bootstrap-n', 200, '--work', work])
    cell = rec3['cells'][f'released__{a}']
    assert rec3['rows'] == ['released'] and cell['feature_norm'] == 'speaker'
    assert not np.isclose(cell['metrics']['Act']['ccc']['value'], rel['metrics']['Act']['ccc']['value'])


def test_crosscorpus_refuses(emodb_mini, tmp_path):
    import crosscorpus
    from errors import ToolkitError
    root = str(emodb_mini['root'])
    with pytest.raises(ToolkitError, match='needs --pretrained'):
        crosscorpus.main(['--train', root, '--test', root, '--work', tmp_path])
    with pytest.raises(ToolkitError, match='two corpora named'):
        crosscorpus.main(['--test', f'{root},{root}', '--pretrained', PUB, '--work', tmp_path])
    with pytest.raises(ToolkitError, match='no rows'):
        crosscorpus.main(['--test', root, '--pretrained', PUB, '--no-released', '--work', tmp_path])
