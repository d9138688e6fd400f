"""Cross-corpus evaluation: train the Seq2Seq model on each corpus, test it on each corpus (docs/protocols.md).

    python crosscorpus.py --train data/emodb,data/ravdess --test data/emodb,data/ravdess --pretrained DIR
    python crosscorpus.py --train data/iemocap --test data/iemocap,data/msp-improv,data/crema-d --feature-norm speaker
    python crosscorpus.py --test data/emodb,data/ravdess --pretrained DIR          # the released models only

A matrix: one row per training corpus (plus the row 'released': the authors' MSP-Podcast v1.6 models of
--pretrained, not trained here; --no-released leaves it out), one column per test corpus. Each cell: CCC and
Pearson r per attribute with 95 % bootstrap intervals (speakers of the test corpus resampled by default;
withheld below metrics.MIN_SPEAKERS test speakers, bench/results/coverage.json),
the arousal AUC (predicted Act of anger, happiness, fear vs boredom, sadness) and the per-category means
(metrics.py).

What a row is trained on, exactly: training.py --corpus A on A's Train split (its Split_Set column, the
converter's default split), the epoch with the best CCC on A's Validation split kept; A's Test split is never
seen. What a cell is tested on: testing.py on the test corpus B, all of B's utterances when B is not A, and
A's Test split (speakers not seen in training) on the diagonal; the released row is tested on all of B.
Target curves: ranking sequences of the released rankers (--curves released, default, needs --pretrained) or
constant curves (--curves constant).
Test-side normalisation (--feature-norm, named in every cell's record): 'train' = the statistics the model
was trained with (the training corpus's Train split; for the released row its published NormTerm);
'published' = the release NormTerm for training and testing; 'speaker' = every speaker's own statistics
(training and testing); 'corpus' = the statistics of the corpus processed (training and testing).

Outputs: --work (default runs/crosscorpus): models/<row>/ and cells/<row>__<column>/ with the logs of every
step; --out (default: --work): <name>.json, <name>.md and <name>.png (heat-maps of CCC per attribute and the
arousal AUC, the interval in each cell). Resumable per model and per cell (done markers keyed on the
settings); --fresh redoes everything.
"""
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

import cli
import evalsteps as S
import metrics as M
from corpus import Corpus
from errors import ToolkitError
from outputs import output_lock
from utils import atomic_write_text, parse_emos

RELEASED = 'released'


def build_parser():
    p = cli.parser(__doc__)
    p.add_argument('--train', default='', help='comma list of training corpus roots (MSP layout, e.g. '
                   'prepare_corpus.py outputs); one row each')
    p.add_argument('--test', required=True, help='comma list of test corpus roots; one column each')
    p.add_argument('--pretrained', default=None, metavar='DIR',
                   help="root of the authors' release (checked by SHA-256): the row 'released' and the rankers of "
                        "--curves released")
    p.add_argument('--no-released', action='store_true', help="leave out the row 'released'")
    S.add_train_args(p, 'training epochs')
    p.add_argument('--init-from', default=None, help="start every trained model from these weights (a Seq2Seq "
                   "checkpoint or the authors' release root)")
    p.add_argument('--curves', default='released', choices=['released', 'constant'],
                   help='target curves: ranking sequences of the released rankers (default, needs --pretrained) '
                        'or constant at the utterance label')
    p.add_argument('--store', default='lld', metavar='NAME',
                   help="feature store of every corpus: features/<corpus name>/NAME (default lld, extracted when "
                        "missing); e.g. an SSL store extracted beforehand (docs/ssl.md; use --curves constant or "
                        "your own rankers: the released rankers take LLDs)")
    p.add_argument('--feature-norm', default='train', choices=cli.NORM_SCOPES,
                   help="feature normalisation on the test side (and in training): train (default), published, "
                        "speaker or corpus; see above")
    S.add_step_args(p)
    p.add_argument('--work', default=str(cli.REPO / 'runs' / 'crosscorpus'),
                   help='folder of the models, predictions and logs (default runs/crosscorpus)')
    p.add_argument('--out', default=None, help='folder of <name>.json/.md/.png (default: --work)')
    p.add_argument('--name', type=cli.file_stem, default='crosscorpus', help='stem of the result files (default crosscorpus)')
    p.add_argument('--note', default='', help='a line added to the Markdown and JSON (e.g. why settings are reduced)')
    p.add_argument('--fresh', action='store_true', help='ignore the done markers and redo every model and cell')
    return p


def open_corpora(spec, what):
    roots = [s.strip() for s in spec.split(',') if s.strip()]
    out = {}
    for r in roots:
        c = Corpus(r)
        if c.name in out or c.name == RELEASED:
            raise ToolkitError(f'{what}: two corpora named {c.name!r} ({out.get(c.name, c).root} and {r}); the '
                               f'folder name names a row/column, so rename one')
        out[c.name] = c
    return out


def train_row(args, corpus, feats, rankseq, emo, work, common):
    """training.py on `corpus`'s Train split (best Validation epoch) -> checkpoint path (resumable)."""
    d = work / 'models' / corpus.name
    settings = {'inputs': S.inputs_of(corpus, feats), 'rankseq': S.path_fp(Path(rankseq) / f'training_{emo}.json'),
                'n': len(corpus), 'emo': emo, 'epochs': args.epochs, 'batch': args.batch_size, 'lr': args.lr,
                'seed': args.seed, 'init_from': S.path_fp(args.init_from), 'curves': args.curves,
                'feature_norm': args.feature_norm, 'limit': args.limit}     # contents, not paths (identity.py)
    marker = d / f'.done_{emo}.json'
    if not args.fresh and S.is_done(marker, settings):
        ck = Path(json.loads(marker.read_text())['checkpoint'])
        if ck.is_file() and S.path_fp(ck) == json.loads(marker.read_text()).get('checkpoint_sha256'):
            print(f'  model {corpus.name} {emo}: done earlier with these settings', flush=True)
            return ck
    argv = ['-emo', emo, '-ep', args.epochs, '-batch', args.batch_size, '--corpus', corpus.root, '--features', feats,
            '--rankseq', rankseq, '--out', d, '--seed', args.seed, '--overwrite', *S.step_args(common)]
    # --overwrite: a model without a done marker (an interrupted or stale run) is retrained from scratch
    argv += ['--lr', args.lr] if args.lr else []
    argv += ['--init-from', args.init_from] if args.init_from else []
    argv += ['--feature-norm', args.feature_norm]
    argv += ['--norm', Path(args.pretrained) / 'NormTerm'] if args.feature_norm == 'published' and not args.init_from \
        else []
    print(f'  model {corpus.name} {emo}: training on {len(corpus.files("Train"))} utterances (Train), validating '
          f'on {len(corpus.files("Validation"))} ...', flush=True)
    (ckpt,), sec = S.run_step('training', argv, d / f'train_{emo}.log')
    S.mark_done(marker, settings, checkpoint=str(ckpt), checkpoint_sha256=S.path_fp(ckpt), seconds=round(sec, 1))
    print(f'  model {corpus.name} {emo}: {ckpt} ({sec:.0f} s)', flush=True)
    return ckpt


def test_cell(args, row, ckpt, test, feats, emo, work, common, same):
    """testing.py of one model on one test corpus -> (predictions DataFrame, testing.py's metrics row)."""
    d = work / 'cells' / f'{row}__{test.name}'
    split = 'Test' if same else 'all'
    model = ['--pretrained', args.pretrained] if row == RELEASED else ['--checkpoint', ckpt]
    scope = args.feature_norm
    if row == RELEASED and scope == 'train':
        scope = 'published'            # the release was trained with its published statistics
    settings = {'row': row, 'model': 'release v1.6 (SHA-256 checked)' if row == RELEASED else S.path_fp(ckpt),
                'test': S.inputs_of(test, feats), 'n': len(test), 'emo': emo, 'split': split, 'feature_norm': scope,
                'limit': args.limit, 'bootstrap': args.bootstrap, 'bootstrap_n': args.bootstrap_n}
    marker = d / f'.done_{emo}.json'
    if args.fresh or not S.is_done(marker, settings):
        argv = ['-emo', emo, *model, '--corpus', test.root, '--features', feats, '-set', split, '--out', d,
                '-batch', 64, '--bootstrap', args.bootstrap, '--bootstrap-n', args.bootstrap_n, *S.step_args(common)]
        argv += ['--feature-norm', scope] if scope != 'train' else []
        argv += ['--norm', Path(args.pretrained) / 'NormTerm'] if scope == 'published' and row != RELEASED else []
        rows, _ = S.run_step('testing', argv, d / f'test_{emo}.log')
        S.mark_done(marker, settings, rows=rows)
    rows = json.loads(marker.read_text())['rows']
    df = pd.concat([pd.read_csv(d / f'{emo}_{r["Split"]}_predictions.csv') for r in rows], ignore_index=True)
    return df, rows[0]


def heatmap(record, path):
    """One heat-map per attribute (CCC) and one of the arousal AUC; the value and interval in each cell."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    rows, cols, emos = record['rows'], record['columns'], record['emos']
    panels = [(e, 'ccc', f'{e} CCC') for e in emos] + ([('Act', 'auc_arousal', 'arousal AUC')] if 'Act' in emos
                                                         else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(1.0 + 2.3 * len(cols) * len(panels), 1.2 + 0.75 * len(rows)),
                             squeeze=False)
    for ax, (emo, key, title) in zip(axes[0], panels):
        val = np.full((len(rows), len(cols)), np.nan)
        txt = [['' for _ in cols] for _ in rows]
        for i, r in enumerate(rows):
            for j, c in enumerate(cols):
                cell = record['cells'].get(f'{r}__{c}')
                st = cell and cell['metrics'].get(emo, {}).get(key)
                if st and np.isfinite(st['value']):
                    val[i, j] = st['value']
                    txt[i][j] = f"{st['value']:.2f}\n" + (f"[{st['ci'][0]:.2f}, {st['ci'][1]:.2f}]"
                                                            if st['ci'][0] is not None else '† no CI')
        lo = 0.5 if key == 'auc_arousal' else 0.0
        im = ax.imshow(val, cmap='viridis', vmin=lo, vmax=1.0, aspect='auto')
        for i in range(len(rows)):
            for j in range(len(cols)):
                if txt[i][j]:
                    ax.text(j, i, txt[i][j], ha='center', va='center', fontsize=8,
                            color='white' if val[i, j] < lo + 0.6 * (1 - lo) else 'black')
        ax.set_xticks(range(len(cols)))
        ax.set_xticklabels(cols, fontsize=8)
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels(rows if ax is axes[0][0] else [''] * len(rows), fontsize=8)
        ax.set_xlabel('test corpus', fontsize=8)
        ax.set_title(title, fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    axes[0][0].set_ylabel('trained on', fontsize=8)
    b = record['bootstrap']
    fig.suptitle(f"train → test; feature norm {record['settings']['feature_norm']}; 95 % CI, {b['resample']} "
                 f"resampled ({b['n_boot']} resamples)" + (f'; † fewer than {M.MIN_SPEAKERS} test speakers: '
                                                            f'no interval' if any(withheld(c, emos[0]) for c in
                                                                              record['cells'].values()) else ''),
                 fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def withheld(cell, emo):
    """' †' when a cell's interval is withheld (too few test speakers, metrics.MIN_SPEAKERS)."""
    b = cell and cell['metrics'].get(emo, {}).get('bootstrap')
    return ' †' if b and b.get('withheld') else ''


def markdown(record):
    rows, cols, emos = record['rows'], record['columns'], record['emos']
    cell = lambda r, c: record['cells'].get(f'{r}__{c}')   # noqa: E731
    s = record['settings']
    out = [f"# Cross-corpus evaluation\n\nRows: the corpus trained on (its Train split; best epoch on its "
           f"Validation split){'; released = the authors MSP-Podcast v1.6 models, not trained here' if RELEASED in rows else ''}. "
           f"Columns: the corpus tested (all of its utterances; on the diagonal the Test split only). "
           f"Seq2Seq -ep {s['epochs']} -batch {s['batch']}, curves {s['curves']}, test-side feature "
           f"normalisation **{s['feature_norm']}**" + (f', --limit {s["limit"]} (SMOKE SIZE)' if s['limit'] else '')
           + '.' + (f"\n\n{record['note']}" if record.get('note') else '')
           + f"\n\n95 % CI: {record['bootstrap']['n_boot']} bootstrap resamples of the test corpus's "
             f"{record['bootstrap']['resample']} in each cell (with replacement; the number of speakers per cell is in "
             f"the JSON), seed {record['bootstrap']['seed']}; Fisher z +- t(k-1) x bootstrap SD x sqrt(k/(k-1)) for "
             f"k resampled units (metrics.py), whose coverage bench/bench_coverage.py measured at >= 0.90 from "
             f"{M.MIN_SPEAKERS} test speakers on ({M.COVERAGE_JSON}); with fewer the interval is withheld (†)."
             f"\n\nLabels: "
           + '; '.join(f"{n}: {c['labels']}" for n, c in record['corpora'].items())
           + ' (derived = A/V/D from the category table, not rated; CCC then measures how well the category\'s '
             'point is recovered).\n']
    for emo, key, title in [(e, 'ccc', f'{e} CCC') for e in emos] + [(e, 'pearson_r', f'{e} Pearson r') for e in emos] \
            + ([('Act', 'auc_arousal', 'Arousal AUC (predicted Act; anger, happiness, fear vs boredom, sadness)')]
               if 'Act' in emos else []):
        out += [f'\n**{title}** [95 % CI]\n', '| trained on ↓ / tested on → | ' + ' | '.join(cols) + ' |',
                '|---|' + '---|' * len(cols)]
        for r in rows:
            out.append(f'| {r} | ' + ' | '.join(M.fmt_ci((cell(r, c) or {'metrics': {}})['metrics'].get(emo, {})
                                                          .get(key)) + withheld(cell(r, c), emo) for c in cols) + ' |')
    out += ['\nUtterances per cell (N) and test-side normalisation:\n',
            '| trained on ↓ / tested on → | ' + ' | '.join(cols) + ' |', '|---|' + '---|' * len(cols)]
    for r in rows:
        out.append(f'| {r} | ' + ' | '.join(
            f"{cell(r, c)['n']} ({cell(r, c)['test_set']}), {cell(r, c)['feature_norm']}" if cell(r, c) else '–'
            for c in cols) + ' |')
    if any(withheld(cell(r, c), emos[0]) for r in rows for c in cols):
        out.append(f'\n† interval withheld: fewer than {M.MIN_SPEAKERS} test speakers, where a 95 % interval covered '
                   f'less than 90 % in {M.COVERAGE_JSON} (--bootstrap utterances gives an utterance interval, which '
                   f'assumes independent utterances).')
    out.append(f"\nCommand: `{record['command']}`\n")
    return '\n'.join(out)


def main(argv=None):
    argv = None if argv is None else [str(a) for a in argv]
    args = build_parser().parse_args(argv)
    t0 = time.time()
    emos = parse_emos(args.emo_attr)
    train, test = open_corpora(args.train, '--train'), open_corpora(args.test, '--test')
    if not test:
        raise ToolkitError('--test: name at least one corpus')
    cli.check_bootstrap(args.bootstrap_n, max(len(c) for c in test.values()))    # before any training
    if args.pretrained:
        from checkpoints import require_release
        require_release(args.pretrained)
    elif args.curves == 'released' and train:
        raise ToolkitError("--curves released needs --pretrained DIR (the authors' release, for its rankers); or use "
                           "--curves constant")
    if args.feature_norm == 'published' and not (args.pretrained or args.init_from):
        raise ToolkitError("--feature-norm published needs --pretrained DIR (the release's NormTerm)")
    rows = ([RELEASED] if args.pretrained and not args.no_released else []) + list(train)
    if not rows:
        raise ToolkitError('no rows: give --train corpora and/or --pretrained DIR')
    work = Path(args.work)
    with output_lock(work, f'the cross-corpus run {work}'):   # a second run into --work stops, naming this one
        return run(args, argv, t0, emos, train, test, rows, work)


def run(args, argv, t0, emos, train, test, rows, work):
    common = {'device': args.device, 'workers': args.workers, 'limit': args.limit}
    print(f'crosscorpus: rows {", ".join(rows)}; columns {", ".join(test)}; {"/".join(emos)}; -ep {args.epochs} '
          f'-batch {args.batch_size}; feature norm {args.feature_norm} -> {work}', flush=True)
    feats = {name: S.ensure_features(c, None, work / 'logs' / f'extract_{name}.log', kind=args.store)
             for name, c in {**test, **train}.items()}
    ckpts = {}
    for name, c in train.items():
        rs = (S.released_rankseq(c.root, feats[name], args.pretrained, emos, work / 'rankseq' / name, common)
              if args.curves == 'released' else S.constant_rankseq(c, work / 'rankseq_constant' / name, emos))
        for emo in emos:
            ckpts[name, emo] = train_row(args, c, feats[name], rs, emo, work, common)
    cells = {}
    for r in rows:
        for cname, c in test.items():
            same = r == cname
            preds, info = {}, {}
            for emo in emos:
                df, row = test_cell(args, r, ckpts.get((r, emo)), c, feats[cname], emo, work, common, same)
                preds[emo], info[emo] = df, row
            res = S.pooled_metrics(c, preds, args.bootstrap, args.bootstrap_n)
            first = info[emos[0]]
            cells[f'{r}__{cname}'] = {
                'train': r, 'test': cname, 'test_set': 'Test split' if same else 'all utterances',
                'n': res[emos[0]]['n'], 'feature_norm': first['feature_norm'],
                'feature_norm_source': first['feature_norm_source'], 'label_norm': first['label_norm'],
                'model_source': first['model_source'], 'labels': S.label_source(c), 'metrics': res}
            msg = ', '.join(f"{e} CCC {M.fmt_ci(res[e]['ccc'])}" for e in emos)
            auc = res.get('Act', {}).get('auc_arousal')
            print(f'[{r} -> {cname}] {msg}' + (f', arousal AUC {M.fmt_ci(auc)}' if auc else ''), flush=True)
    b = next(iter(cells.values()))['metrics'][emos[0]]['bootstrap']
    record = {'rows': rows, 'columns': list(test), 'emos': emos, 'cells': cells, 'bootstrap': b, 'note': args.note,
              'protocol': {'train': "training.py on the training corpus's Train split (Split_Set), best epoch on its "
                                    "Validation split; its Test split never seen",
                           'test': 'testing.py on all utterances of the test corpus; on the diagonal its Test split '
                                   'only', 'released': 'the authors MSP-Podcast v1.6 models (--pretrained), not '
                                                       'trained here'},
              'settings': {'epochs': args.epochs, 'batch': args.batch_size, 'lr': args.lr, 'seed': args.seed,
                           'init_from': args.init_from, 'curves': args.curves, 'feature_norm': args.feature_norm,
                           'limit': args.limit},
              'corpora': {n: {'root': str(c.root), 'utterances': len(c), 'labels': S.label_source(c)}
                          for n, c in {**test, **train}.items()},
              'wall_seconds_this_run': round(time.time() - t0, 1),
              'command': 'python crosscorpus.py ' + shlex.join(sys.argv[1:] if argv is None else argv)}
    out = Path(args.out or work)
    atomic_write_text(out / f'{args.name}.json', json.dumps(record, indent=1, default=str))
    md = markdown(record)
    atomic_write_text(out / f'{args.name}.md', md)
    heatmap(record, out / f'{args.name}.png')
    print('\n' + md + f'\nwrote {out / args.name}.json, .md and .png')
    return record


if __name__ == '__main__':
    sys.exit(cli.run_script(main))
