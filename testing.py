"""Test Seq2Seq SER models: CCC and Pearson r per attribute and split with 95 % bootstrap confidence intervals,
per-utterance CSVs.

    python testing.py -ep 30 -batch 128 -emo Val
    python testing.py -emo all --pretrained ../Chunk-Level-Emotion-Retrieval --corpus ROOT -set all
    python testing.py -emo Act --checkpoint my_run/LSTM_epoch30_batch128_EmoRankerSeq_Act.pth.tar --feature-norm speaker
    python testing.py --model mscr --audio-feature lld --sweep   (method 2; the "MSCR" group of --help)
    python testing.py --model ssl --checkpoint runs/ssl_baseline/FILE.pth.tar -set Test   (the SSL baseline)

Model: --checkpoint FILE|DIR (your own, with its .meta.json record), --pretrained DIR (a clone of the
authors' repository, checked by SHA-256), or neither: trained_seq2seq_model/LSTM_epoch{ep}_batch{batch}_
EmoRankerSeq_{Emo}.pth.tar (the demo models unless you trained into that folder). The model's attribute,
feature preset, hop and checksum are checked against -emo and the features (docs/pretrained.md).
With -emo all, attributes whose model file is missing are reported and skipped.
Normalisation: by default what the model was trained with (its record holds the statistics);
--feature-norm speaker|corpus normalises the evaluated corpus on itself; --norm DIR replaces the statistics.
Predictions are de-normalised with the model's label statistics; CCC is computed on these raw outputs
(no clipping to the 1-7 scale). Labels: consensus; -set Test by default (every split present when the
corpus has no Test split). Test is the published test set: Test1 where the release has Test1 and Test2 (both
published codes score that one set); -set Test2 (any release split name) scores another. Every row names the
release splits it scored (Release_splits).
Intervals (metrics.py, docs/metrics.md): --bootstrap speakers (default) resamples whole speakers (fixed seed),
utterances treats utterances as independent; the interval is Fisher z +- t(k-1) x bootstrap SD, and it is
withheld, with the reason, below metrics.MIN_SPEAKERS test speakers, where no interval measured in
bench/results/coverage.json reached 90 % coverage. --model mscr prints and records the same intervals.
Output (--out, default runs/testing): <Emo>_<Split>_predictions.csv (FileName, Label, Pred, Chunk01..22:
the 22-chunk curve) and metrics.csv (with the intervals, the model source, checksum and normalisation); the table is printed.
"""
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import checkpoints as C
import cli
import identity
import metrics as M
import mscr
import norm as N
import ssl_baseline
from dataloader import PadCollate, UtteranceDataset, chunk_frames, limit_names
from errors import ToolkitError
from outputs import check_parent
from seq2seq import predict
from utils import EMO_COL, atomic_write_text, get_device, parse_emos, set_seed


def build_parser():
    p = cli.parser(__doc__)
    p.add_argument('--model', default='seq2seq', choices=['seq2seq', 'mscr', 'ssl'],
                   help='seq2seq: method 1 (default); mscr: method 2 (audio-text, mscr.py); ssl: the SSL baseline '
                        '(ssl_baseline.py, docs/ssl.md)')
    cli.add_run_args(p, 30, 128, 'epochs in the checkpoint name', 'batch in the checkpoint name; also utterances '
                     'per forward pass', emo_required=False)
    cli.add_data_args(p, amp='off')
    cli.add_norm_args(p, train=False)
    cli.add_model_args(p, 'Seq2Seq model')
    p.set_defaults(workers=0)
    p.add_argument('-set', '--split_set', default=None,
                   help='Train, Validation, Test (the published test set: Test1 where the release has it), all, or '
                        'release split names such as Test2 or Development, comma-separated (default Test)')
    p.add_argument('--out', default=str(cli.REPO / 'runs' / 'testing'),
                   help='output folder for predictions and metrics (default runs/testing)')
    M.add_bootstrap_args(p)
    cli.add_mscr_args(p, train=False)
    ssl_baseline.add_args(p, train=False)
    return p


def test_split(args, emo, split, model, corpus, store, fnorm, lnorm, device, flags=None):
    """(row of metrics, predictions path) or None when the split has no usable utterance."""
    m = chunk_frames(store.hop)
    col = corpus.labels.set_index('FileName')[EMO_COL[emo]]
    names = [n for n in corpus.files(split) if n in store and np.isfinite(col.get(n, np.nan))]
    names = limit_names(names, args.limit, args.seed)
    if not names:
        print(f'{emo} {split}: no utterances with features and labels')
        return None
    ds = UtteranceDataset(store, names, fnorm)
    loader = torch.utils.data.DataLoader(ds, args.batch_size, num_workers=args.workers, collate_fn=PadCollate(m),
                                         pin_memory=device.type == 'cuda')
    out = predict(model, loader, m, device, args.amp, desc=f'{emo} {split}')
    lm, ls = lnorm
    pred = np.array([out[i][0] for i in range(len(ds))]) * ls + lm
    curves = np.stack([out[i][1] for i in range(len(ds))]) * ls + lm
    y = col.loc[names].to_numpy(np.float64)
    df = pd.DataFrame({'FileName': names, 'Label': y, 'Pred': pred.round(5)})
    df = pd.concat([df, pd.DataFrame(curves.round(5), columns=[f'Chunk{k + 1:02d}' for k in range(curves.shape[1])])],
                   axis=1)
    for k, v in (flags or {}).items():     # an unfinished model, seen speakers: every prediction says so
        df[k] = v
    path = Path(args.out) / f'{emo}_{split}_predictions.csv'
    atomic_write_text(path, df.to_csv(index=False))
    r = M.evaluate_on(corpus, names, pred, y, args.bootstrap, args.bootstrap_n)
    return {'Attr': emo, 'Split': split, 'Release_splits': '+'.join(corpus.release_splits(names=names)),
            'N': len(names), **M.interval_columns(r), 'predictions': C.display_path(path)}


def test_emo(args, emo, corpus, store, device, sets):
    model, ck, fnorm = cli.open_model(args, 'seq2seq', emo, corpus, store, device)
    lnorm, lrec = N.model_label_stats(ck, emo, args.norm)
    N.check_not_under_test(fnorm.computed_on, f'feature statistics ({fnorm.describe()})', corpus, sets, True)
    N.check_not_under_test(lrec.get('computed_on'), f'label statistics ({lrec.get("source")})', corpus, sets, True)
    prov = {'model_source': ck.source, 'model': C.display_path(ck.path), 'model_sha256': ck.sha256,
            'feature_norm': fnorm.scope, 'feature_norm_source': fnorm.source, 'label_norm': lrec['scope'],
            'label_norm_source': lrec['source'], 'ccc_on': 'raw model outputs (not clipped to 1-7)',
            'note': C.DEMO_NOTE if ck.source == 'demo' else ''}
    flags = {}               # columns that mark every metrics row and every prediction
    if not ck.finished:      # --allow-unfinished
        prov.update(model_finished=False, note=ck.unfinished_note())
        flags['model_finished'] = False
    seen = identity.check_speaker_leaks(identity.speaker_leaks(corpus, [n for s in sets for n in corpus.files(s)], [
        (f'the model {C.display_path(ck.path)}', (ck.record.get('trained_on') or {}).get('speakers')),
        (f'its feature statistics ({fnorm.describe()})', (fnorm.computed_on or {}).get('speakers')),
        (f'its label statistics ({lrec.get("source")})', (lrec.get('computed_on') or {}).get('speakers')),
        ('the ranker behind its target curves', ((ck.record.get('ranking_sequences') or {}).get('ranker') or {})
         .get('trained_on_speakers'))]),
        args.allow_seen_speakers)
    if seen:                 # --allow-seen-speakers
        prov['seen_speakers'] = flags['seen_speakers'] = seen
    rows = [test_split(args, emo, split, model, corpus, store, fnorm, lnorm, device, flags) for split in sets]
    return [{**r, **prov} for r in rows if r is not None], ck


def main(argv=None):
    args = cli.parse_model_args(build_parser(), argv)
    if args.model == 'mscr':
        return mscr.test_mscr(args)
    if args.model == 'ssl':
        set_seed(args.seed, args.threads)
        return ssl_baseline.test(args, cli.open_corpus(args.corpus, args.fold), get_device(args.device))
    if not args.emo_attr:
        raise ToolkitError('-emo is required for the Seq2Seq model (Act, Dom, Val or all)')
    set_seed(args.seed, args.threads)
    device = get_device(args.device)
    check_parent(args.out, '--out')
    corpus = cli.open_corpus(args.corpus, args.fold)
    cli.check_bootstrap(args.bootstrap_n, len(corpus))
    store = cli.open_store(args.features, corpus)
    if args.split_set:
        sets = cli.parse_sets(args.split_set, corpus)
    else:
        sets = ['Test'] if corpus.files('Test') else [s for s in cli.SPLITS if corpus.files(s)]
    emos, rows, missing, ckpts = parse_emos(args.emo_attr), [], [], []
    for emo in emos:
        try:
            r, ck = test_emo(args, emo, corpus, store, device, sets)
        except C.CheckpointError as e:
            if len(emos) == 1 or 'no seq2seq checkpoint' not in str(e):
                raise
            missing.append((emo, str(e)))
            continue
        rows += r
        ckpts.append(ck)
    C.announce(ckpts)
    if missing:
        print('skipped: ' + '; '.join(f'{e}: {msg}' for e, msg in missing))
    if not rows:
        raise ToolkitError(f'nothing was evaluated: {", ".join(sets)} of {corpus.consensus_path}'
                           f'{" (" + corpus.fold + " of " + str(corpus.folds_path) + ")" if corpus.fold else ""} holds no '
                           f'utterance with {"/".join(emos)} labels and features in {store.path}; check the split '
                           f'(-set) and the features')
    print(f'\nCCC on the raw de-normalised predictions, not clipped ({corpus.name})')
    for ck in ckpts:
        print(f'  {"/".join(ck.attributes)}: {ck.describe()}, SHA-256 {(ck.sha256 or "?")[:12]}')
    M.print_table(rows, 'feature norm', 'feature_norm')
    metrics = Path(args.out) / 'metrics.csv'
    atomic_write_text(metrics, pd.DataFrame(rows).to_csv(index=False))
    print(f'predictions and metrics: {Path(args.out)}')
    return rows


if __name__ == '__main__':
    sys.exit(cli.run_script(main))
