"""Every input checked where it is read, no finished run clobbered (issue 21, items 1-5 and 8).

Each test first builds the input a careful user could plausibly pass (statistics of the Test split, a NormTerm with
NaN, labels on another scale, sequences of another attribute, a damaged record, a negative batch, a second run into
the same files) and asserts the clear message (or the warning and the rows left out) instead of the number or
traceback it gave before. Real scripts run in-process on the tiny corpus of tests/fixtures.py and the shipped demo
models; the authors' NormTerm under ../shared is used when present."""
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import checkpoints as C  # noqa: E402
import norm as N  # noqa: E402
from corpus import Corpus  # noqa: E402
from errors import ToolkitError  # noqa: E402
from tests.test_hardening import assert_clear, call  # noqa: E402
from utils import NORM_RECORD, RunLock, load_norm, mat_bytes, save_norm  # noqa: E402

RELEASE = REPO.parent / 'shared' / 'pretrained' / 'Chunk-Level-Emotion-Retrieval'
DEMO_ACT = REPO / 'trained_seq2seq_model' / C.seq2seq_name(30, 128, 'Act')

pytestmark = pytest.mark.usefixtures('one_torch_thread')


@pytest.fixture(scope='module')
def env(tiny_corpus, tmp_path_factory):
    """The tiny corpus (a private copy whose labels tests may edit in variants), its LLD store, a Train NormTerm,
    a Test NormTerm and ranking sequences of Act and Dom written by the demo rankers."""
    tmp = tmp_path_factory.mktemp('inputs')
    root = tmp / 'corpus'
    shutil.copytree(tiny_corpus, root)
    lld = tmp / 'lld'
    rc, out, err = call('extract_features.py', '--corpus', root, '--out', lld, '--workers', 1)
    assert rc == 0, err[-2000:]
    for split in ('Train', 'Test'):
        rc, out, err = call('norm_para.py', '--corpus', root, '--features', lld, '--out', tmp / f'norm_{split}',
                            '--split', split)
        assert rc == 0, err[-2000:]
    rc, out, err = call('chunk_emotion_rankers/generate_ranking_seqence.py', '-emo', 'Act,Dom', '-set', 'Train',
                        '--corpus', root, '--features', lld, '--out', tmp / 'rankseq', '--device', 'cpu',
                        '--workers', 0)
    assert rc == 0, err[-2000:]
    return dict(tmp=tmp, root=root, lld=lld, train_norm=tmp / 'norm_Train', test_norm=tmp / 'norm_Test',
                rankseq=tmp / 'rankseq')


def common(env, root=None):
    return ['--corpus', root or env['root'], '--features', env['lld'], '--workers', 0, '--device', 'cpu']


def train_argv(env, out, *extra, root=None):
    return ['-emo', 'Act', '-ep', 1, '-batch', 4, '--rankseq', env['rankseq'], '--out', out, *common(env, root),
            *extra]


def label_variant(env, name, edit):
    """A copy of the corpus's Labels/ (audio linked) with edit(consensus DataFrame) applied."""
    root = env['tmp'] / name
    if not root.exists():
        root.mkdir()
        for d in ('Audios', 'Transcripts', 'ForceAligned'):
            (root / d).symlink_to(env['root'] / d)
        shutil.copytree(env['root'] / 'Labels', root / 'Labels')
        p = root / 'Labels' / 'labels_consensus.csv'
        edit(pd.read_csv(p, dtype={'EmoAct': object})).to_csv(p, index=False)
    return root


def norm_copy(src, dst, edit=None):
    shutil.copytree(src, dst)
    if edit:
        edit(dst)
    return dst


# ============================================================================ 1. NormTerm
def test_norm_para_writes_a_record_that_readers_check(env):
    rec = json.loads((env['train_norm'] / NORM_RECORD).read_text())
    assert rec['kind'] == 'normterm' and rec['split'] == 'Train' and rec['corpus']['name'] == 'corpus'
    assert rec['features']['preset'] == 'published' and rec['features']['dim'] == 130 and rec['frames'] > 0
    assert set(rec['files']) == set(C.NORMTERM_FILES) and rec['toolkit_revision']
    nd = N.NormDir(env['train_norm'])
    assert nd.features['dim'] == 130 and {k: nd.computed_on[k] for k in ('corpus', 'split')} == \
        {'corpus': 'corpus', 'split': 'Train'}
    assert nd.computed_on['speakers'] and set(nd.computed_on['speakers']) == set(rec['speakers'])  # identity.py
    assert nd.record()['computed_on']['split'] == 'Train'


def test_normterm_with_nan_or_of_one_dimension_is_refused(env, tmp_path):
    def nan60(d):
        m, s = load_norm(d, need=('feat',))['feat']
        m[:60] = np.nan
        (d / 'feat_norm_means.mat').write_bytes(mat_bytes(m.reshape(1, -1)))
        (d / NORM_RECORD).unlink()                     # a hand-made folder: no record
    d = norm_copy(env['train_norm'], tmp_path / 'nan', nan60)
    with pytest.raises(ToolkitError, match=r'60 of 130 values are not finite'):
        N.NormDir(d)
    rc, out, err = call('testing.py', '-emo', 'Act', '--checkpoint', DEMO_ACT, '--norm', d, '--out', tmp_path / 't',
                        *common(env))
    assert_clear(rc, out, err, 'feat_norm_means.mat', 'not finite')

    def one_dim(d):
        save_norm(d, {'feat': (np.zeros(1), np.ones(1))})
        (d / NORM_RECORD).unlink()
    d1 = norm_copy(env['train_norm'], tmp_path / 'one', one_dim)
    rc, out, err = call('testing.py', '-emo', 'Act', '--checkpoint', DEMO_ACT, '--norm', d1, '--out', tmp_path / 't',
                        *common(env))
    assert_clear(rc, out, err, 'holds 1-dim feature statistics', '130 dims')
    # the same folder given to a model without its own record (the predict.py path): no broadcast either
    with pytest.raises(N.NormError, match='holds 1-dim feature statistics'):
        N.model_feat_stats(C.open_checkpoint(DEMO_ACT), None, d1)


def test_normterm_of_another_preset_or_edited_after_writing(env, tmp_path):
    def other_preset(d):
        rec = json.loads((d / NORM_RECORD).read_text())
        rec['features']['preset'] = 'is13'
        (d / NORM_RECORD).write_text(json.dumps(rec))
    d = norm_copy(env['train_norm'], tmp_path / 'preset', other_preset)
    rc, out, err = call('training.py', *train_argv(env, tmp_path / 'run', '--norm', d))
    assert_clear(rc, out, err, "computed on 'is13' features", "'published'")
    assert not (tmp_path / 'run' / C.seq2seq_name(1, 4, 'Act')).exists()

    def edited(d):
        m, s = load_norm(d, need=('feat',))['feat']
        (d / 'feat_norm_stds.mat').write_bytes(mat_bytes((s * 2).reshape(1, -1)))
    d2 = norm_copy(env['train_norm'], tmp_path / 'edited', edited)
    with pytest.raises(ToolkitError, match='differ from what its record normterm.json describes'):
        N.NormDir(d2)


def test_legacy_normterm_without_record_is_read_with_a_note(env, tmp_path, capsys):
    d = norm_copy(env['train_norm'], tmp_path / 'legacy', lambda d: (d / NORM_RECORD).unlink())
    nd = N.NormDir(d)
    assert nd.computed_on is None and nd.features == {} and len(nd.get('feat')[0]) == 130
    assert 'has no record' in capsys.readouterr().err and nd.record()['computed_on'] is None
    nd = N.NormDir(REPO / 'NormTerm')           # the shipped folder (written before records existed) still reads
    assert len(nd.get('feat')[0]) == 130 and not nd.release


@pytest.mark.skipif(not RELEASE.is_dir(), reason='../shared/pretrained is absent')
def test_release_normterm_is_recognised_by_its_checksums(tmp_path):
    nd = N.NormDir(RELEASE / 'NormTerm')
    assert nd.release and nd.scope == 'published' and nd.features['preset'] == 'published'
    assert nd.computed_on == {'corpus': 'MSP-Podcast v1.6', 'split': 'Train'}
    d = norm_copy(RELEASE / 'NormTerm', tmp_path / 'rel')      # one byte changed: no longer the release
    m, s = load_norm(d, need=('Act',))['Act']
    (d / 'act_norm_means.mat').write_bytes(mat_bytes(np.array([[m + 0.5]])))
    assert not N.NormDir(d).release


def test_statistics_of_the_split_under_test_are_refused(env, tmp_path):
    # training with Test statistics: refused (they would travel into the model and its later test)
    rc, out, err = call('training.py', *train_argv(env, tmp_path / 'run', '--norm', env['test_norm']))
    assert_clear(rc, out, err, 'statistics of the Test split of corpus', 'norm_para.py --split Train')
    # testing on Test with a NormTerm computed on Test: refused; on Train with it: allowed
    base = ['-emo', 'Act', '--checkpoint', DEMO_ACT, '--norm', env['test_norm'], '--out', tmp_path / 't', *common(env)]
    rc, out, err = call('testing.py', *base, '-set', 'Test')
    assert_clear(rc, out, err, 'computed on the Test split of corpus, the split under test', '--feature-norm corpus')
    assert not (tmp_path / 't' / 'metrics.csv').exists()
    rc, out, err = call('testing.py', *base, '-set', 'Train')
    assert rc == 0, err[-2000:]
    rc, out, err = call('chunk_emotion_rankers/testing_ranker.py', '-emo', 'Act', '--norm', env['test_norm'],
                        '-set', 'Test', '--pairs', tmp_path / 'none', *common(env))
    assert_clear(rc, out, err, 'computed on the Test split of corpus, the split under test')


# ============================================================================ 2. labels
def test_corpus_reader_checks_labels_for_every_command(env, tmp_path, capsys):
    names = Corpus(env['root']).files('Test')

    def bad(df):
        df.loc[df.FileName == names[0], 'EmoAct'] = '55'
        df.loc[df.FileName == names[1], 'EmoAct'] = 'high'
        return df
    root = label_variant(env, 'bad_labels', bad)
    c = Corpus(root)
    err = capsys.readouterr().err
    assert 'values outside 1-7' in err and names[0] in err and "'55'" in err
    assert 'text that is not a number' in err and names[1] in err and 'left out' in err
    assert np.isnan(c.consensus(names[0], 'Act')) and np.isnan(c.consensus(names[1], 'Act'))
    # testing.py: the two rows are left out (with the warning), not scored as 55
    rc, out, err = call('testing.py', '-emo', 'Act', '--checkpoint', DEMO_ACT, '--out', tmp_path / 't',
                        *common(env, root))
    assert rc == 0 and 'values outside 1-7' in err, err[-2000:]
    m = pd.read_csv(tmp_path / 't' / 'metrics.csv')
    assert int(m.N[0]) == len(names) - 2
    # check_corpus lists them with the value in the file
    import check_corpus
    rep = check_corpus.check(root, text=False, progress=False)
    details = {it['file']: it['detail'] for it in rep['problems']['nan_consensus']['items']}
    assert details[names[0]] == 'EmoAct=55' and details[names[1]] == 'EmoAct=high'


@pytest.mark.parametrize('case,edit,must', [
    ('scale01', lambda df: df.assign(EmoAct=pd.to_numeric(df.EmoAct) / 7), ['outside 1-7', 'another scale']),
    ('swapped', lambda df: df.assign(EmoVal=df.EmoClass), ['column EmoVal holds no numbers', 'swapped']),
    ('dup_conflict', lambda df: pd.concat([df, df.iloc[[2]].assign(EmoDom=1.0)]),
     ['appear in several rows that disagree', 'keep one row per utterance']),
])
def test_labels_that_cannot_be_right_stop_every_command(env, tmp_path, case, edit, must):
    root = label_variant(env, case, edit)
    for script, argv in (('training.py', train_argv(env, tmp_path / 'r', root=root)),
                         ('testing.py', ['-emo', 'Act', '--checkpoint', DEMO_ACT, '--out', tmp_path / 't',
                                         *common(env, root)]),
                         ('norm_para.py', ['--corpus', root, '--features', env['lld'], '--out', tmp_path / 'n'])):
        rc, out, err = call(script, *argv)
        assert_clear(rc, out, err, 'labels_consensus.csv', *must)


def test_annotator_ratings_outside_the_scale(env, tmp_path, capsys):
    root = label_variant(env, 'ratings', lambda df: df)
    p = root / 'Labels' / 'labels_detailed.csv'
    p.unlink()                                        # (a copy, not the shared file)
    det = pd.read_csv(env['root'] / 'Labels' / 'labels_detailed.csv')
    det.loc[0, 'EmoDetail'] = re.sub(r'A:[\d.]+', 'A:55.0', det.loc[0, 'EmoDetail'])       # one rating of 55
    det.to_csv(p, index=False)
    lists = Corpus(root).rating_lists('Act')
    assert 'annotator EmoAct ratings outside 1-7 are dropped' in capsys.readouterr().err
    assert all(v.max() <= 7 for v in lists.values())
    det['EmoDetail'] = det['EmoDetail'].str.replace(r'A:(\d)\.0', r'A:0.\1', regex=True)     # a 0-1 scale
    det.to_csv(p, index=False)
    rc, out, err = call('chunk_emotion_rankers/generate_preference_labels.py', '-emo', 'Act', '--corpus', root,
                        '--out', tmp_path / 'pl')
    assert_clear(rc, out, err, 'labels_detailed.csv', 'annotator EmoAct ratings lie outside 1-7', 'another scale')


def test_identical_repeated_rows_are_dropped_with_a_warning(env, capsys):
    root = label_variant(env, 'dup_same', lambda df: pd.concat([df, df.iloc[[3]]]))
    c = Corpus(root)
    assert len(c) == len(Corpus(env['root'])) and 'repeated identical rows dropped' in capsys.readouterr().err


# ============================================================================ 3. ranking sequences
def test_ranking_sequences_carry_a_record(env):
    rec = json.loads((env['rankseq'] / 'training_Act.meta.json').read_text())
    assert rec['attribute'] == 'Act' and rec['split'] == 'Train' and rec['corpus']['name'] == 'corpus'
    assert rec['ranker']['model_source'] == 'demo' and rec['ranker']['model_sha256']
    assert rec['sha256'] == C.sha256_file(env['rankseq'] / 'training_Act.json')


def test_ranking_sequences_of_another_attribute_truncated_or_malformed(env, tmp_path):
    d = tmp_path / 'rs'
    d.mkdir()
    shutil.copy(env['rankseq'] / 'training_Dom.json', d / 'training_Act.json')        # Dom's, named Act
    shutil.copy(env['rankseq'] / 'training_Dom.meta.json', d / 'training_Act.meta.json')
    argv = train_argv(env, tmp_path / 'run')
    argv[argv.index('--rankseq') + 1] = d
    rc, out, err = call('training.py', *argv)
    assert_clear(rc, out, err, "ranking sequences of attribute 'Dom'", "-emo here is 'Act'")
    text = (env['rankseq'] / 'training_Act.json').read_text()
    (d / 'training_Act.meta.json').unlink()
    (d / 'training_Act.json').write_text(text[:len(text) // 2])                        # truncated
    rc, out, err = call('training.py', *argv)
    assert_clear(rc, out, err, 'training_Act.json: not valid JSON', 'truncated')
    seqs = json.loads(text)
    first = next(iter(seqs))
    seqs[first]['ChunkRankSeq'] = ['3'] * 22                                           # strings
    (d / 'training_Act.json').write_text(json.dumps(seqs))
    rc, out, err = call('training.py', *argv)
    assert_clear(rc, out, err, '1 of', 'whole ranks', first)
    assert not (tmp_path / 'run').exists() or not any((tmp_path / 'run').glob('*.pth.tar'))


# ============================================================================ 4. records and command-line numbers
def _record_copy(tmp, edit):
    d = tmp / 'rec'
    d.mkdir(exist_ok=True)
    shutil.copy(DEMO_ACT, d / DEMO_ACT.name)
    rec = json.loads(C.sibling(DEMO_ACT, '.meta.json').read_text())
    edit(rec)
    C.sibling(d / DEMO_ACT.name, '.meta.json').write_text(json.dumps(rec))
    return d / DEMO_ACT.name


@pytest.mark.parametrize('edit,must', [
    (lambda r: r.pop('version'), "no 'version' key"),
    (lambda r: r.update(weights_sha256=None), 'weights_sha256 is None, not a SHA-256'),
    (lambda r: r.pop('feature_norm'), "lacks ['feature_norm']"),
    (lambda r: r['feature_norm'].update(mean=[float('nan')] * 130), 'invalid feature_norm'),
    (lambda r: r.update(version=7), 'record version 7'),
    (lambda r: r.update(feature_norm=[1, 2]), "['feature_norm'] should be JSON objects"),
])
def test_damaged_records_are_refused_with_their_name(env, tmp_path, edit, must):
    ck = _record_copy(tmp_path, edit)
    rc, out, err = call('testing.py', '-emo', 'Act', '--checkpoint', ck, '--out', tmp_path / 't', *common(env))
    assert_clear(rc, out, err, str(C.sibling(ck, '.meta.json')), must)


def test_mscr_record_with_null_checksum_is_refused(tmp_path):
    from tests.test_predict import make_mscr_checkpoint
    ck = make_mscr_checkpoint(tmp_path / 'm')
    meta = json.loads(C.sibling(ck, '.meta.json').read_text())
    C.sibling(ck, '.meta.json').write_text(json.dumps({**meta, 'weights_sha256': None}))
    import mscr
    with pytest.raises(C.CheckpointError, match='not a SHA-256'):
        mscr.load_mscr(ck)


@pytest.mark.parametrize('script,argv,flag', [
    ('training.py', ['-emo', 'Act', '-batch', '-4'], '-batch'),
    ('training.py', ['-emo', 'Act', '-ep', '0'], '-ep'),
    ('training.py', ['-emo', 'Act', '--lr', 'nan'], '--lr'),
    ('training.py', ['--model', 'mscr', '--dropout', '1'], '--dropout'),
    ('training.py', ['--model', 'mscr', '--iters', '1e3'], '--iters'),
    ('testing.py', ['-emo', 'Act', '--limit', '0'], '--limit'),
    ('testing.py', ['--model', 'mscr', '--missing-audio', '1.5'], '--missing-audio'),
    ('predict.py', ['x.wav', '--window', '-10'], '--window'),
    ('extract_features.py', ['--workers', '0'], '--workers'),
    ('chunk_emotion_rankers/training_ranker.py', ['-emo', 'Act', '--pairs-per-epoch', '-1'], '--pairs-per-epoch'),
    ('chunk_emotion_rankers/generate_preference_labels.py', ['--ratio', '0'], '--ratio'),
    ('chunk_emotion_rankers/testing_ranker.py', ['-emo', 'Act', '--seed', '-1'], '--seed'),
    ('evaluate_retrieval.py', ['--K', '1'], '--K'),
    ('make_demo_corpus.py', ['--n', '-3'], '--n'),
])
def test_numeric_flags_are_range_checked_by_the_parser(script, argv, flag, tmp_path):
    rc, out, err = call(script, *argv, cwd=tmp_path)
    assert rc == 2 and flag in err and 'expected' in err and 'Traceback' not in err, err[-1500:]


def test_mscr_width_not_divisible_by_heads(tmp_path):
    rc, out, err = call('training.py', '--model', 'mscr', '--hidden', 64, '--heads', 5, cwd=tmp_path)
    assert_clear(rc, out, err, '--hidden 64 is not divisible by --heads 5')


# ============================================================================ 5. resume compares every setting
def test_resume_refuses_another_attribute_norm_or_sequences(env, tmp_path):
    ck = tmp_path / 'run' / 'model_{emo}.pth.tar'
    argv = train_argv(env, tmp_path / 'unused', '--checkpoint', ck, '--norm', env['train_norm'])
    rc, out, err = call('training.py', *argv)
    assert rc == 0, err[-2000:]
    done = tmp_path / 'run' / 'model_Act.pth.tar'
    fixed = str(done)          # an explicit file: -emo Dom would write into Act's run
    dom = [a if a != 'Act' else 'Dom' for a in argv]
    dom[dom.index('--checkpoint') + 1] = fixed
    rc, out, err = call('training.py', *dom, '--resume')
    assert_clear(rc, out, err, "emo: was 'Act', now 'Dom'")
    def shifted(d):
        (d / NORM_RECORD).unlink()
        m, s = load_norm(d, need=('feat',))['feat']
        save_norm(d, {'feat': (m + 1, s)})
    other = norm_copy(env['train_norm'], tmp_path / 'other_norm', shifted)
    again = list(argv)
    again[again.index('--norm') + 1] = other
    rc, out, err = call('training.py', *again, '--resume')
    assert_clear(rc, out, err, 'norm_sha256: was')
    assert len(pd.read_csv(C.sibling(done, '.log.csv'))) == 1          # the log of the first run, untouched


def test_resume_state_of_an_earlier_toolkit_is_compared_on_what_it_recorded(tmp_path, capsys):
    from model import LSTMnet
    from utils import make_scaler
    ck = tmp_path / 'm.pth.tar'
    model = LSTMnet(out_dim=1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    old = {'batch': 4, 'lr': 0.001}                              # what an earlier version stored
    with C.Run(ck, ['epoch'], settings=old) as r:
        r.save_state(model, opt, make_scaler(torch.device('cpu'), 'off'), 0, 0.5, 0)
    C.Run(ck, ['epoch'], resume=True, settings={**old, 'emo': 'Act', 'norm_sha256': None}).close()
    assert "did not record ['emo', 'norm_sha256']" in capsys.readouterr().err
    with pytest.raises(C.CheckpointError, match='lr: was 0.001, now 0.01'):
        C.Run(ck, ['epoch'], resume=True, settings={**old, 'lr': 0.01, 'emo': 'Act'})
    with pytest.raises(C.CheckpointError, match='pass one of them'):
        C.Run(ck, ['epoch'], resume=True, overwrite=True, settings=old)
    assert not C.sibling(ck, '.lock').exists()                  # refused runs release their lock


# ============================================================================ 8. outputs locked, finished runs kept
def test_finished_run_is_not_overwritten_without_overwrite(env, tmp_path):
    out = tmp_path / 'run'
    rc, o, err = call('training.py', *train_argv(env, out))
    assert rc == 0, err[-2000:]
    ck = out / C.seq2seq_name(1, 4, 'Act')
    rs = json.loads(C.sibling(ck, '.meta.json').read_text())['ranking_sequences']     # the model names its curves
    seq_rec = json.loads((env['rankseq'] / 'training_Act.meta.json').read_text())
    assert rs['attribute'] == 'Act' and rs['sha256'] == C.sha256_file(env['rankseq'] / 'training_Act.json')
    assert rs['ranker']['model_sha256'] == seq_rec['ranker']['model_sha256']
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    rc, o, err = call('training.py', *train_argv(env, out, '--seed', 5))
    assert_clear(rc, o, err, f'already holds {ck.name}, a finished run (best_epoch=0', '--overwrite', '--resume')
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before       # nothing replaced or truncated
    rc, o, err = call('training.py', *train_argv(env, out, '--seed', 5, '--overwrite'))
    assert rc == 0, err[-2000:]
    assert json.loads(C.sibling(ck, '.meta.json').read_text())['settings']['seed'] == 5
    assert len(pd.read_csv(C.sibling(ck, '.log.csv'))) == 1 and not C.sibling(ck, '.lock').exists()


def test_only_the_shipped_demo_files_unmodified_in_git_are_replaced_without_overwrite(tmp_path):
    shipped = [DEMO_ACT, C.sibling(DEMO_ACT, '.meta.json'), C.sibling(DEMO_ACT, '.log.csv')]
    changed = subprocess.run(['git', '-C', str(REPO), 'diff', '--quiet', 'HEAD', '--', *map(str, shipped)]).returncode
    assert C._shipped_unmodified(shipped) == (changed == 0)      # (a rebuilt, uncommitted demo model: protected)
    copy = tmp_path / DEMO_ACT.name
    shutil.copy(DEMO_ACT, copy)
    assert not C._shipped_unmodified([copy])                    # the same bytes elsewhere: a run of yours
    assert not C._shipped_unmodified([REPO / 'trained_seq2seq_model' / 'not_tracked.pth.tar'])


def test_run_files_locked_while_a_run_writes_them(env, tmp_path, capsys):
    out = tmp_path / 'run'
    out.mkdir()
    lock = C.sibling(out / C.seq2seq_name(1, 4, 'Act'), '.lock')
    holder = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])   # a live run elsewhere
    try:
        from utils import _proc_start
        start = None
        for _ in range(50):
            start = _proc_start(holder.pid)
            if start:
                break
            time.sleep(0.02)
        import socket
        lock.write_text(json.dumps({'pid': holder.pid, 'host': socket.gethostname(), 'start': start,
                                    'command': 'training.py -emo Act', 'time': 'now'}))
        rc, o, err = call('training.py', *train_argv(env, out))
        assert_clear(rc, o, err, 'is being written by another run', f'pid {holder.pid}', str(lock))
        assert not (out / C.seq2seq_name(1, 4, 'Act')).exists() and lock.exists()
    finally:
        holder.kill()
        holder.wait()
    # the holder died without releasing the lock (killed): the next run takes it over with a note
    rc, o, err = call('training.py', *train_argv(env, out))
    assert rc == 0 and 'taking over the lock of a run that ended' in err, err[-2000:]
    assert not lock.exists()


def test_run_lock_two_holders_in_one_process(tmp_path):
    a = RunLock(tmp_path / 'x.lock', 'x').acquire()
    with pytest.raises(Exception, match='being written by another run'):
        RunLock(tmp_path / 'x.lock', 'x').acquire()
    a.release()
    with RunLock(tmp_path / 'x.lock', 'x'):
        assert (tmp_path / 'x.lock').exists()
    assert not (tmp_path / 'x.lock').exists() and os.getpid()
