"""Smoke tests of the accuracy benchmarks (bench_emodb, bench_retrieval, bench_mscr_missing, finetune_emodb) at a
tiny setting: a 5-speaker Emo-DB subset, 36-utterance generated corpora, a few updates, --limit 12 utterances per
split. They check that each bench runs the real scripts end to end and writes its table, JSON and PNG; the numbers
are meaningless at this size. The authors' released models come from ../shared/pretrained (only the unmodified
release passes --pretrained). Skipped when ../shared/datasets is absent."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
DATASETS = Path(__file__).resolve().parents[2] / 'shared' / 'datasets'

RELEASE = DATASETS.parent / 'pretrained' / 'Chunk-Level-Emotion-Retrieval'

pytestmark = pytest.mark.skipif(not (DATASETS / 'emodb' / 'wav').is_dir() or not RELEASE.is_dir(),
                                reason=f'{DATASETS}/emodb or the release absent (shared data are optional)')


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope='module')
def env(tmp_path_factory):
    """Shared --data/--work folders: the benches reuse each other's corpora, features and rankers as they do
    in a real run."""
    tmp = tmp_path_factory.mktemp('bench_acc')
    pub = RELEASE
    common = ['--data', tmp / 'data', '--work', tmp / 'work', '--out', tmp / 'out', '--images', tmp / 'img',
              '--jobs', 1, '--seeds', 0, '--limit', 12]
    emodb = ['--emodb', DATASETS / 'emodb', '--speakers', '03,08,09,10,11']
    return {'tmp': tmp, 'pub': pub, 'common': [str(a) for a in common], 'emodb': [str(a) for a in emodb]}


def check_outputs(env, out, name, png):
    assert f'RESULT {name}:' in out and 'machine:' in out
    saved = json.loads((env['tmp'] / 'out' / f'{name}.json').read_text())
    assert saved['bench'] == name and not saved['failed'], saved['failed']
    assert (env['tmp'] / 'img' / f'bench_{png}.png').stat().st_size > 10_000
    md = (env['tmp'] / 'out' / f'{name}.md').read_text()
    assert '| ' in md and 'Command:' in md
    return saved


def test_finetune_emodb(env, capsys):
    from bench import finetune_emodb
    res = finetune_emodb.main(['--pretrained', str(env['pub']), '--folds', '1', '--norms', 'train', '-ep', '1',
                               '-batch', '4', *env['emodb'], *env['common']])
    out = capsys.readouterr().out
    check_outputs(env, out, 'finetune_emodb', 'finetune_emodb')
    got = {(s['cond'], s['norm']) for s in res['summary']}
    assert got == {('zeroshot', 'published'), ('scratch', 'train'), ('finetune', 'train'), ('freeze', 'train')}
    assert all(np.isfinite(s['ccc_Act'][0]) and 'auc_Act' in s for s in res['summary'])
    assert res['settings']['reduced'] and 'frozen LSTM' in out
    # the fine-tuned and frozen runs really started from the released weights
    meta = next((env['tmp'] / 'work').rglob('freeze/**/LSTM_*_Act.meta.json'))
    m = json.loads(meta.read_text())
    assert m['settings']['freeze'] == 'lstm' and m['init_from']['source'] == 'release'
    assert m['init_from']['path'].endswith('LSTM_epoch30_batch128_EmoRankerSeq_Act.pth.tar')


def test_bench_emodb(env, capsys):
    from bench import bench_emodb
    res = bench_emodb.main(['--emos', 'Act', '--ranker-pairs', '16', '-ep', '1', '-batch', '4', *env['emodb'],
                            *env['common']])
    check_outputs(env, capsys.readouterr().out, 'emodb', 'emodb')
    assert [s['system'] for s in res['summary']] == ['rank', 'const', 'ridge']
    assert all(np.isfinite(s['ccc_Act'][0]) for s in res['summary'])
    # alpha = 1: constant target curves at the utterance mean
    rs = next((env['tmp'] / 'work').rglob('rankseq_constant/training_Act.json'))
    assert {tuple(v['ChunkRankSeq']) for v in json.loads(rs.read_text()).values()} == {(1,) * 22}


def test_bench_retrieval(env, capsys):
    from bench import bench_retrieval
    res = bench_retrieval.main(['--pretrained', str(env['pub']), '--n', '36', '--ranker-pairs', '16', '--pair-ratio', '0.5',
                                *env['emodb'],
                                *env['common']])
    check_outputs(env, capsys.readouterr().out, 'retrieval', 'retrieval')
    systems = {s['system'] for s in res['summary']}
    assert systems == {'emodb', 'demo', 'published', 'loudness', 'random'}
    accs = [v['pair_acc'][0] for s in res['summary'] for k, v in s.items() if k != 'system']
    assert accs and all(0 <= a <= 1 for a in accs if np.isfinite(a))


def test_bench_mscr_missing(env, capsys):
    if not (DATASETS / 'emobank' / 'corpus' / 'emobank.csv').exists():
        pytest.skip('EmoBank absent')
    from bench import bench_mscr_missing
    res = bench_mscr_missing.main(['--n', '36', '--iters', '4', '--val-every', '2', '--fracs', '0,0.5,1', '--hidden',
                                   '16', '--corpora', 'emobank', '--emobank', str(DATASETS / 'emobank'),
                                   *env['common']])
    check_outputs(env, capsys.readouterr().out, 'mscr_missing', 'mscr_missing')
    assert len(res['per_seed']) == 1 * 2 * 3            # corpus x (best, last) x (words, dynamic, crops), one seed
    assert all(np.isfinite(r['clean']) and np.isfinite(r['whole audio']) for r in res['per_seed'])
    gone = [c for c in res['curves'] if c['missing'] == 'both' and c['fraction'] == 1 and c['mode'] == 'modality']
    assert gone and all(abs(c['ccc_mean']) < 1e-6 for c in gone)    # nothing left: constant output


def test_a_step_is_reused_only_with_the_same_code_and_command(tmp_path, monkeypatch):
    """The accuracy benches reuse a finished step only when its marker holds the same code revision and
    command (an earlier run's `.done` file alone is not enough)."""
    import sys

    from bench import accuracy_common as A
    (tmp_path / 'stepmod.py').write_text('from pathlib import Path\n\ndef main(argv):\n'
                                         '    p = Path(argv[0]); p.write_text(p.read_text() + "x" if p.exists() else "x")\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop('stepmod', None)
    out, log, done = tmp_path / 'ran.txt', tmp_path / 'log.txt', tmp_path / '.done'
    assert not A.run_step('stepmod', [out], log, done)['cached']
    assert A.run_step('stepmod', [out], log, done)['cached'] and out.read_text() == 'x'      # same code + command
    assert not A.run_step('stepmod', [out, 'other'], log, done)['cached'] and out.read_text() == 'xx'
    marker = json.loads(done.read_text())
    done.write_text(json.dumps({**marker, 'key': 'computed by other code'}))
    assert not A.run_step('stepmod', [out, 'other'], log, done)['cached'] and out.read_text() == 'xxx'
    done.write_text(json.dumps({'finished': 'earlier', 'seconds': 1.0}))                    # an old marker: no key
    assert not A.run_step('stepmod', [out, 'other'], log, done)['cached'] and out.read_text() == 'xxxx'
