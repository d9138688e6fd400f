"""Speaker-independent cross-validation of the Seq2Seq model over the folds of a corpus (docs/protocols.md).

    python crossval.py --corpus data/emodb --pretrained ../Chunk-Level-Emotion-Retrieval -emo all
    python crossval.py --corpus data/ravdess --pretrained DIR --init-from DIR -ep 10 --lr 1e-4
    python crossval.py --corpus data/iemocap --curves fold -emo Act       # rankers trained on each fold
    python crossval.py --corpus data/emodb --curves constant --folds 1,2 -ep 1 -batch 8
    python crossval.py --corpus data/emodb --model ssl --upstream models/wavlm-large -ep 10 -batch 32 --out runs/cv_ssl
    python compare.py runs/crossval/emodb runs/cv_ssl --corpus data/emodb     # the paired difference table

For every fold K of the corpus's Labels/folds.csv (written by prepare_corpus.py; speaker-disjoint Train,
Validation and Test parts), for every attribute:
  1. training.py --corpus DIR --fold K (Train part; the epoch with the best Validation CCC is kept),
     from random weights or --init-from a checkpoint or the authors' release;
  2. testing.py --fold K -set Test on that checkpoint (the Test part).
The target curves come from ranking sequences of the authors' released rankers (--curves released, the
default, needs --pretrained), of rankers trained on each fold's Train part from the corpus's per-rater
labels (--curves fold: generate_preference_labels.py, training_ranker.py, generate_ranking_seqence.py, each
with --fold K), or are constant at the utterance label (--curves constant).
The Test predictions of all folds are pooled (each utterance is tested once) and scored: CCC and Pearson r
per attribute with 95 % bootstrap intervals (speakers resampled by default, --bootstrap; the pooled Test parts
hold every speaker once, so the pooled interval rests on all of them; a single fold's testing.py interval is
withheld below metrics.MIN_SPEAKERS test speakers, bench/results/coverage.json), the arousal AUC
(predicted Act of anger, happiness, fear vs boredom, sadness) and the mean label and prediction per category
(metrics.py).

Outputs in --out (default runs/crossval/<corpus name>): fold<K>/ (model/, test/, logs of every step),
crossval.json and crossval.md (or --report DIR/--name NAME). A fold's attribute is done when its marker
fold<K>/.done_<Emo>.json holds the current settings: a killed run started again resumes at the first
unfinished fold (changed settings redo the folds; --fresh redoes everything). Every step's output goes to a
.log file next to its results; the progress is printed.
"""
import json
import shlex
import sys
import time
from pathlib import Path

import pandas as pd

import cli
import evalsteps as S
import metrics as M
from corpus import Corpus
from errors import ToolkitError
from outputs import output_lock
from utils import atomic_write_text, parse_emos

CURVES = ('released', 'fold', 'constant')


def build_parser():
    p = cli.parser(__doc__)
    p.add_argument('--corpus', required=True, help='corpus root with Labels/folds.csv (prepare_corpus.py output)')
    p.add_argument('--folds', default='all', help="folds to run: 'all' (default) or a comma list of numbers, e.g. "
                   "1,2 (the pooled metrics then cover only their Test parts)")
    S.add_train_args(p, 'training epochs per fold')
    p.add_argument('--init-from', default=None, help="start every fold's model from these weights: a Seq2Seq "
                   "checkpoint, or the authors' release root (then its NormTerm is the default normalisation)")
    p.add_argument('--pretrained', default=None, metavar='DIR',
                   help="root of the authors' release (checked by SHA-256): its rankers give the ranking "
                        "sequences of --curves released")
    p.add_argument('--curves', default='released', choices=CURVES,
                   help='target curves: released = ranking sequences of the released rankers (default, needs '
                        '--pretrained); fold = rankers trained on each fold\'s Train part (needs per-rater labels); '
                        'constant = the utterance label on every chunk')
    p.add_argument('--ranker-epochs', type=cli.positive_int, default=20, help='--curves fold: ranker epochs (published: 20)')
    p.add_argument('--ranker-batch', type=cli.positive_int, default=128, help='--curves fold: ranker batch (published: 128)')
    p.add_argument('--ranker-pairs', type=cli.positive_int, default=100_000,
                   help='--curves fold: preference pairs drawn per ranker epoch (published: 100000)')
    p.add_argument('--feature-norm', default=None, choices=cli.NORM_SCOPES,
                   help="feature normalisation of training and testing (training.py's default: 'published' with "
                        "--init-from the release, else 'train' = the fold's Train part; 'speaker' = each speaker's "
                        "own statistics; 'published' without --init-from needs --pretrained)")
    p.add_argument('--label-norm', default=None, choices=['published', 'train'],
                   help="label normalisation of training (training.py's default)")
    p.add_argument('--features', default=None, help='feature store of the corpus (default features/<corpus '
                   'name>/lld; extracted when missing; an SSL store: docs/ssl.md), shared by all folds')
    p.add_argument('--model', default='seq2seq', choices=['seq2seq', 'ssl'],
                   help='seq2seq: method 1 (default); ssl: the utterance-level SSL baseline on raw audio '
                        '(ssl_baseline.py; --upstream, --ssl-args)')
    p.add_argument('--upstream', default=None, help='--model ssl: the SSL encoder (local folder or hub name)')
    p.add_argument('--ssl-args', default='', help="--model ssl: more training.py flags, e.g. '--finetune top:4 "
                   "--pooling attentive'")
    S.add_step_args(p)
    p.add_argument('--out', default=None, help='output folder of the folds (default runs/crossval/<corpus name>)')
    p.add_argument('--report', default=None, help='folder of <name>.json and <name>.md (default: --out)')
    p.add_argument('--name', default='crossval', help='stem of the report files (default crossval)')
    p.add_argument('--fresh', action='store_true', help='ignore the done markers and redo every fold')
    return p


def fold_list(corpus, spec):
    names = corpus.fold_names()
    if not names:
        raise ToolkitError(f'{corpus.folds_path}: no folds file; crossval.py needs Labels/folds.csv (prepare_corpus.py '
                           f'writes it; see docs/protocols.md for its format)')
    if spec == 'all':
        return names
    try:
        want = [f'fold{int(s.strip().lower().removeprefix("fold"))}' for s in spec.split(',') if s.strip()]
    except ValueError:
        raise ToolkitError(f"--folds {spec}: give 'all' or fold numbers, e.g. 1,2") from None
    if not want:
        raise ToolkitError(f"--folds {spec!r}: no fold number in it; give 'all' or fold numbers, e.g. 1,2")
    want = list(dict.fromkeys(want))        # a fold named twice runs once (each utterance is tested once)
    bad = [w for w in want if w not in names]
    if bad:
        raise ToolkitError(f'--folds {spec}: {", ".join(bad)} not in {corpus.folds_path} (it has {", ".join(names)})')
    return want


def settings_of(args, corpus, emos):
    """The flags that change a fold's result (no paths: the data inputs enter the done markers by content)."""
    return {'n_utterances': len(corpus), 'emos': emos, 'epochs': args.epochs,
            'batch': args.batch_size, 'lr': args.lr, 'seed': args.seed, 'curves': args.curves,
            'init_from': S.path_fp(args.init_from), 'pretrained': 'release v1.6 (SHA-256 checked)' if args.pretrained
            else None, 'feature_norm': args.feature_norm, 'label_norm': args.label_norm, 'limit': args.limit,
            'bootstrap': args.bootstrap, 'bootstrap_n': args.bootstrap_n,
            'model': args.model, 'upstream': S.upstream_fp(args.upstream), 'ssl_args': args.ssl_args,
            'ranker': {'epochs': args.ranker_epochs, 'batch': args.ranker_batch, 'pairs': args.ranker_pairs}
            if args.curves == 'fold' else None}


def check_folds(corpus, folds):
    """The fold checks of check_corpus.py on the speakers of the labels file: a fold whose parts share a speaker,
    or that lacks Train or Test utterances, is not run."""
    for fold in folds:
        fc = Corpus(corpus.root, fold=fold, echo=False)
        cli.check_fold(fc)


def norm_args(args):
    a = ['--feature-norm', args.feature_norm] if args.feature_norm else []
    a += ['--label-norm', args.label_norm] if args.label_norm else []
    if args.feature_norm == 'published' and not args.init_from:
        a += ['--norm', Path(args.pretrained) / 'NormTerm']
    return a


def fold_rankseq(args, corpus, feats, fold, emo, d, common):
    """--curves fold: preference labels, a ranker and ranking sequences from fold's Train part -> folder."""
    rs, pairs, rk = d / 'rankseq', d / 'preference_labels', d / 'ranker'
    if corpus.detailed_path is None:
        raise ToolkitError(f'--curves fold: {corpus.root} has no per-rater labels (Labels/labels_detailed.*); use '
                           f'--curves released (with --pretrained) or constant')
    fl = ['--corpus', corpus.root, '--fold', fold]
    S.run_step('generate_preference_labels', ['-emo', emo, '-set', 'Train,Validation', '--out', pairs, *fl]
               + (['--limit', args.limit] if args.limit else []), d / f'preference_{emo}.log')
    S.run_step('training_ranker', ['-emo', emo, '-ep', args.ranker_epochs, '-batch', args.ranker_batch, '--pairs',
                                   pairs, '--pairs-per-epoch', args.ranker_pairs, '--out', rk, '--features', feats,
                                   '--seed', args.seed, '--overwrite', *fl, *S.step_args(common)],
               d / f'ranker_{emo}.log')
    ck = rk / f'LSTM_epoch{args.ranker_epochs}_batch{args.ranker_batch}_{emo}_ranker.pth.tar'
    S.run_step('generate_ranking_seqence', ['-emo', emo, '-set', 'all', '--checkpoint', ck, '-ep', args.ranker_epochs,
                                            '-batch', args.ranker_batch, '--features', feats, '--out', rs / 'raw', *fl,
                                            *S.step_args(common)], d / f'rankseq_{emo}.log')
    S.merge_rankseq([rs / 'raw' / f'{s}_{emo}.json' for s in ('training', 'validation', 'testing')],
                    rs / f'training_{emo}.json')
    return rs


def run_fold_ssl(args, corpus, fold, emo, d, common):
    """--model ssl: the SSL baseline trained and tested on one fold -> the test metrics row of testing.py."""
    ck = d / 'model' / f'ssl_{emo}.pth.tar'
    data = ['--model', 'ssl', '--upstream', args.upstream, '--corpus', corpus.root, '--fold', fold]
    train = [*data, '-emo', emo, '-ep', args.epochs, '-batch', args.batch_size, '--checkpoint', ck, '--seed', args.seed,
             '--overwrite', *shlex.split(args.ssl_args), *S.step_args(common)]
    train += ['--lr', args.lr] if args.lr else []
    _, t_train = S.run_step('training', train, d / f'train_{emo}.log')
    test = [*data, '--checkpoint', ck, '-set', 'Test', '--out', d / 'test', '-batch', 8, '--bootstrap', args.bootstrap,
            '--bootstrap-n', args.bootstrap_n, *S.step_args(common)]
    rows, t_test = S.run_step('testing', test, d / f'test_{emo}.log')
    return {**rows[0], 'seconds_train': round(t_train, 1), 'seconds_test': round(t_test, 1)}


def run_fold(args, corpus, feats, rankseq, fold, emo, out, common):
    """Train and test one attribute on one fold -> the test metrics row of testing.py."""
    d = out / fold
    if args.model == 'ssl':
        return run_fold_ssl(args, corpus, fold, emo, d, common)
    rs = fold_rankseq(args, corpus, feats, fold, emo, d, common) if args.curves == 'fold' else rankseq
    model = d / 'model'
    data = ['--corpus', corpus.root, '--fold', fold, '--features', feats]
    train = ['-emo', emo, '-ep', args.epochs, '-batch', args.batch_size, '--rankseq', rs, '--out', model,
             '--seed', args.seed, '--overwrite', *data, *norm_args(args), *S.step_args(common)]
    # --overwrite: a fold without a done marker (interrupted, or other settings) is retrained from scratch
    train += ['--lr', args.lr] if args.lr else []
    train += ['--init-from', args.init_from] if args.init_from else []
    (ckpt,), t_train = S.run_step('training', train, d / f'train_{emo}.log')
    test = ['-emo', emo, '--checkpoint', ckpt, '-set', 'Test', '--out', d / 'test', '-batch', 64,
            '--bootstrap', args.bootstrap, '--bootstrap-n', args.bootstrap_n, *data, *S.step_args(common)]
    test += ['--feature-norm', args.feature_norm] if args.feature_norm in ('speaker', 'corpus') else []
    rows, t_test = S.run_step('testing', test, d / f'test_{emo}.log')
    return {**rows[0], 'seconds_train': round(t_train, 1), 'seconds_test': round(t_test, 1)}


def main(argv=None):
    argv = None if argv is None else [str(a) for a in argv]
    args = build_parser().parse_args(argv)
    t0 = time.time()
    corpus = Corpus(args.corpus)
    folds, emos = fold_list(corpus, args.folds), parse_emos(args.emo_attr)
    cli.check_bootstrap(args.bootstrap_n, len(corpus))      # before any training, not after it
    if args.curves == 'released' and not args.pretrained and args.model != 'ssl':
        raise ToolkitError("--curves released needs --pretrained DIR (the authors' release, for its rankers); or "
                           "use --curves constant, or --curves fold on a corpus with per-rater labels")
    if args.feature_norm == 'published' and not (args.pretrained or args.init_from):
        raise ToolkitError("--feature-norm published needs --pretrained DIR or --init-from the release (its NormTerm)")
    if args.pretrained:
        from checkpoints import require_release
        require_release(args.pretrained)
    out = Path(args.out or cli.REPO / 'runs' / 'crossval' / corpus.name)
    with output_lock(out, f'the cross-validation run {out}'):   # a second run into --out stops, naming this one
        return run(args, argv, t0, corpus, folds, emos, out)


def run(args, argv, t0, corpus, folds, emos, out):
    common = {'device': args.device, 'workers': args.workers, 'limit': args.limit}
    settings = settings_of(args, corpus, emos)
    check_folds(corpus, folds)
    print(f'crossval: {corpus.name} ({len(corpus)} utterances), {len(folds)} folds ({", ".join(folds)}), '
          f'{"/".join(emos)}, -ep {args.epochs} -batch {args.batch_size}, curves {args.curves}, '
          f'{"init " + args.init_from if args.init_from else "from scratch"} -> {out}', flush=True)
    if args.model == 'ssl' and not args.upstream:
        raise ToolkitError('--model ssl needs --upstream (docs/ssl.md, "Bring your own upstream")')
    feats = None if args.model == 'ssl' else S.ensure_features(corpus, args.features, out / 'extract_features.log')
    inputs = S.inputs_of(corpus, feats)      # a fold is redone when the labels, folds, audio or features change
    rankseq = None
    if args.model == 'ssl':
        pass
    elif args.curves == 'released':
        print('ranking sequences of the released rankers ...', flush=True)
        rankseq = S.released_rankseq(corpus.root, feats, args.pretrained, emos, out / 'rankseq_released', common,
                                     folds)
    elif args.curves == 'constant':
        rankseq = S.constant_rankseq(corpus, out / 'rankseq_constant', emos)
    rows = {}
    for i, fold in enumerate(folds):
        fc = Corpus(corpus.root, fold=fold)
        test_spk = sorted({str(fc.speaker(n)) for n in fc.files('Test')})
        for emo in emos:
            marker = out / fold / f'.done_{emo}.json'
            key = {**settings, 'inputs': inputs, 'fold': fold, 'emo': emo}
            tag = f'[{fold} {i + 1}/{len(folds)}] {emo}'
            if not args.fresh and S.is_done(marker, key):
                rows[fold, emo] = json.loads(marker.read_text())['result']
                print(f'{tag}: done earlier with these settings, skipped (CCC {rows[fold, emo]["CCC"]:.4f})', flush=True)
                continue
            print(f'{tag}: training on {len(fc.files("Train"))} utterances, validating on '
                  f'{len(fc.files("Validation"))}, testing on {len(fc.files("Test"))} (speakers {", ".join(test_spk)})'
                  f' ...', flush=True)
            r = run_fold(args, corpus, feats, rankseq, fold, emo, out, common)
            S.mark_done(marker, key, result=r)
            rows[fold, emo] = r
            print(f'{tag}: test CCC {M.fmt_interval(r["CCC"], r["CCC_lo"], r["CCC_hi"], 4)} on {r["N"]} utterances '
                  f'({r["seconds_train"]:.0f} s training, {r["seconds_test"]:.0f} s testing)', flush=True)
    pooled = {e: pd.concat([pd.read_csv(out / f / 'test' / f'{e}_Test_predictions.csv').assign(fold=f)
                            for f in folds], ignore_index=True) for e in emos}
    res = S.pooled_metrics(corpus, pooled, args.bootstrap, args.bootstrap_n)
    per_fold = {e: [rows[f, e]['CCC'] for f in folds] for e in emos}
    cmd = 'python crossval.py ' + shlex.join(sys.argv[1:] if argv is None else argv)
    from checkpoints import display_path
    shown = {**settings, 'corpus': display_path(corpus.root), 'features': display_path(feats),
             'init_from': display_path(args.init_from), 'pretrained': display_path(args.pretrained),
             'init_from_sha256': settings['init_from'], 'inputs': inputs}      # no machine paths in the record
    record = {'corpus': corpus.name, 'corpus_root': str(corpus.root), 'folds': folds, 'labels': S.label_source(corpus),
              'protocol': 'train on the fold\'s Train part, keep the best Validation epoch, test on its Test part; '
                          'Test predictions of all folds pooled',
              'settings': shown, 'pooled': res,
              'per_fold': {f: {e: {k: rows[f, e][k] for k in ('N', 'CCC', 'CCC_lo', 'CCC_hi', 'Pearson_r',
                                                             'feature_norm', 'seconds_train')} for e in emos}
                           for f in folds},
              'wall_seconds_this_run': round(time.time() - t0, 1), 'command': cmd}
    rep = Path(args.report or out)
    atomic_write_text(rep / f'{args.name}.json', json.dumps(record, indent=1, default=str))
    md = (f'# Cross-validation on {corpus.name}\n\n{len(folds)} speaker-disjoint folds ({", ".join(folds)}); '
          + (f'SSL baseline ({args.upstream} {args.ssl_args}) ' if args.model == 'ssl' else 'Seq2Seq ')
          + f'-ep {args.epochs} -batch {args.batch_size}, curves {args.curves}, '
          f'{"init " + args.init_from if args.init_from else "from scratch"}, feature norm '
          f'{rows[folds[0], emos[0]]["feature_norm"]}' + (f', --limit {args.limit} (SMOKE SIZE)' if args.limit else '')
          + f'.\nLabels: {record["labels"]}.\nCommand: `{cmd}`\n\nPooled Test predictions:\n\n' + M.markdown_tables(res, per_fold) + '\n')
    atomic_write_text(rep / f'{args.name}.md', md)
    print('\n' + md + f'\nwrote {rep / args.name}.json and .md')
    return record


if __name__ == '__main__':
    sys.exit(cli.run_script(main))
