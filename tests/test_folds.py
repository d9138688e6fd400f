"""Folds (Labels/folds.csv): Corpus(root, fold=k), fold_names(), --fold in every script that opens a corpus,
the fold in the model record, and check_corpus's speaker-disjointness check per fold."""
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import check_corpus  # noqa: E402
import checkpoints as C  # noqa: E402
import cli  # noqa: E402
from corpus import Corpus, CorpusError  # noqa: E402


def fold_corpus(tiny, root, folds):
    """A corpus sharing `tiny`'s audio (symlink) with its labels copied and `folds` ({fold: {spk: part}}) written
    as Labels/folds.csv."""
    root.mkdir(parents=True)
    (root / 'Audios').symlink_to(tiny / 'Audios')
    shutil.copytree(tiny / 'Labels', root / 'Labels')
    lab = pd.read_csv(root / 'Labels' / 'labels_consensus.csv')
    f = lab[['FileName', 'SpkrID']].copy()
    for name, parts in folds.items():
        f[name] = f['SpkrID'].map(parts).fillna('')
    f.to_csv(root / 'Labels' / 'folds.csv', index=False)
    return root, lab


# speakers 1..6 in the tiny corpus: every fold tests one pair, validates on another, trains on the rest
FOLDS = {f'fold{k + 1}': {s: ('Test' if (s - 1) // 2 == k else 'Validation' if (s - 1) // 2 == (k + 1) % 3
                              else 'Train') for s in range(1, 7)} for k in range(3)}


@pytest.fixture
def folded(tiny_corpus, tmp_path):
    return fold_corpus(tiny_corpus, tmp_path / 'folded', FOLDS)


def test_fold_splits_come_from_folds_csv(folded):
    root, lab = folded
    plain = Corpus(root)
    assert plain.fold is None and plain.fold_names() == ['fold1', 'fold2', 'fold3']
    assert plain.files('Train') == lab.FileName[lab.Split_Set == 'Train'].tolist()
    for k, spec in ((1, 1), (2, 'fold2'), (3, '3'), (3, 'FOLD3')):
        c = Corpus(root, fold=spec)
        assert c.fold == f'fold{k}' and f'fold{k}' in repr(c)
        for part in ('Train', 'Validation', 'Test'):
            want = lab.FileName[lab.SpkrID.map(FOLDS[f'fold{k}']) == part].tolist()
            assert c.files(part) == want and want
            assert all(c.split_of(n) == part for n in want)
        # the release's own split stays readable
        assert c.labels['Split_Set_default'].tolist() == lab['Split_Set'].tolist()
        # ratings of the fold's Train part only
        assert set(c.rating_lists('Act', 'Train')) == set(c.files('Train'))


def test_empty_fold_cell_leaves_the_utterance_out(folded):
    root, lab = folded
    f = pd.read_csv(root / 'Labels' / 'folds.csv', dtype=str, keep_default_na=False)
    f.loc[f.SpkrID == '5', 'fold1'] = ''
    f.to_csv(root / 'Labels' / 'folds.csv', index=False)
    c = Corpus(root, fold=1)
    unused = set(lab.FileName[lab.SpkrID == 5])
    assert unused and not unused & set(c.files('Train') + c.files('Validation') + c.files('Test'))
    assert len(c.files()) == len(lab)   # still in the corpus, in no split


def test_missing_or_unknown_fold_is_refused(folded, tiny_corpus):
    root, _ = folded
    with pytest.raises(CorpusError) as e:
        Corpus(root, fold=4)
    assert 'folds.csv' in str(e.value) and 'fold1, fold2, fold3' in str(e.value)
    with pytest.raises(CorpusError) as e:
        Corpus(root, fold='x')
    assert 'fold1, fold2, fold3' in str(e.value)
    with pytest.raises(CorpusError) as e:
        Corpus(tiny_corpus, fold=1)
    assert 'folds.csv does not exist' in str(e.value)
    assert Corpus(tiny_corpus).fold_names() == []
    f = pd.read_csv(root / 'Labels' / 'folds.csv', dtype=str, keep_default_na=False)
    f.loc[0, 'fold2'] = 'Tset'
    f.to_csv(root / 'Labels' / 'folds.csv', index=False)
    with pytest.raises(CorpusError) as e:
        Corpus(root, fold=2)
    assert 'Tset' in str(e.value) and 'folds.csv' in str(e.value)
    Corpus(root, fold=1)   # the other folds still read


def test_every_script_that_opens_a_corpus_takes_fold(capsys):
    import importlib
    sys.path.insert(0, str(REPO / 'chunk_emotion_rankers'))
    for mod in ('training', 'testing', 'norm_para', 'chunk_emotion_rankers.training_ranker',
                'chunk_emotion_rankers.testing_ranker', 'chunk_emotion_rankers.generate_ranking_seqence',
                'chunk_emotion_rankers.generate_preference_labels'):
        m = importlib.import_module(mod)
        with pytest.raises(SystemExit):
            m.main(['--help'])
        out = capsys.readouterr().out
        assert '--fold K' in out and 'folds.csv' in out, mod


def test_preference_labels_and_record_name_the_fold(folded, tmp_path, capsys):
    root, lab = folded
    sys.path.insert(0, str(REPO / 'chunk_emotion_rankers'))
    import generate_preference_labels as gpl
    written = gpl.main(['-emo', 'Act', '-set', 'Train', '--corpus', str(root), '--fold', '2', '--out',
                        str(tmp_path / 'pref')])
    pairs = pd.read_csv(written[0])
    used = set(pairs.iloc[:, 0]) | set(pairs.iloc[:, 1])
    train2 = set(lab.FileName[lab.SpkrID.map(FOLDS['fold2']) == 'Train'])
    assert used and used <= train2 and 'splits of fold2' in capsys.readouterr().out
    c = cli.open_corpus(str(root), 2)

    class Store:
        meta, hop, dim, path = {'feature': 'lld', 'preset': 'published'}, 0.016, 130, root
    rec = C.make_record('seq2seq', ['Act'], Store, 62, 22, {}, None, c, {'Train': 1}, None, {})
    assert rec['corpus']['fold'] == 'fold2' and rec['corpus']['name'] == 'folded'
    assert C.make_record('seq2seq', ['Act'], Store, 62, 22, {}, None, Corpus(root), {}, None, {})['corpus'][
        'fold'] is None


def test_check_corpus_verifies_every_fold(folded, capsys):
    root, _ = folded
    rep = check_corpus.check(root, progress=False)
    assert not rep['fatal'] and set(rep['folds']) == {'fold1', 'fold2', 'fold3'}
    assert rep['folds']['fold1']['Test']['speakers'] == ['1', '2']
    check_corpus.print_report(rep)
    assert 'fold1: Train' in capsys.readouterr().out
    f = pd.read_csv(root / 'Labels' / 'folds.csv', dtype=str, keep_default_na=False)
    i = f.index[(f.SpkrID == '3')][0]
    f.loc[i, 'fold3'] = 'Test'          # speaker 3 trains in fold 3 except for this one utterance
    f.loc[len(f)] = ['NOT_A_FILE.wav', '9', 'Train', 'Train', 'Train']
    f.to_csv(root / 'Labels' / 'folds.csv', index=False)
    rep = check_corpus.check(root, progress=False)
    over = rep['problems']['fold_speaker_overlap']['items']
    assert [(x['file'], x['detail']) for x in over] == [('fold3', 'speaker 3 in Train and Test')]
    assert any('fold3: speaker 3 is in Train and Test; ' in m for m in rep['fatal']), rep['fatal']
    assert rep['problems']['fold_unknown_file']['items'][0]['file'] == 'NOT_A_FILE.wav'
    assert check_corpus.main([str(root), '--no-progress', '--no-text']) == 1


def test_check_corpus_sees_overlaps_with_the_validation_part(folded):
    """An overlap that involves the Validation part is as fatal as Train/Test: fold 1 validates on speakers 3
    and 4 and trains on 5 and 6."""
    root, _ = folded
    f = pd.read_csv(root / 'Labels' / 'folds.csv', dtype=str, keep_default_na=False)
    f.loc[f.index[f.SpkrID == '3'][0], 'fold1'] = 'Test'          # a validation speaker also tested
    f.loc[f.index[f.SpkrID == '6'][0], 'fold1'] = 'Validation'    # a training speaker also validated
    f.to_csv(root / 'Labels' / 'folds.csv', index=False)
    rep = check_corpus.check(root, progress=False)
    over = sorted(x['detail'] for x in rep['problems']['fold_speaker_overlap']['items'] if x['file'] == 'fold1')
    assert over == ['speaker 3 in Validation and Test', 'speaker 6 in Train and Validation'], over
    assert sum('fold1: speaker' in m for m in rep['fatal']) == 2
    assert not any('fold2' in m or 'fold3' in m for m in rep['fatal'])
