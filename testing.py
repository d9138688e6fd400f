"""Test Seq2Seq SER models (SPEC §4, §7): CCC and Pearson r per attribute and split, per-utterance CSVs.

    python testing.py -ep 30 -batch 128 -emo Val
    python testing.py -emo all --pretrained ../Chunk-Level-Emotion-Retrieval --corpus ROOT -set all
    python testing.py -emo Act --checkpoint my_run/LSTM_epoch30_batch128_EmoRankerSeq_Act.pth.tar --feature-norm speaker
    python testing.py --model mscr --audio-feature lld --sweep --missing-mode frames,chunks,modality   (method 2)

Checkpoint: trained_seq2seq_model/LSTM_epoch{ep}_batch{batch}_EmoRankerSeq_{Emo}.pth.tar, --checkpoint
FILE|DIR, or --pretrained DIR = a clone of the authors' repository (DIR/NormTerm and
DIR/trained_seq2seq_model_v1.6/LSTM_epoch30_batch128_EmoRankerSeq_<Emo>.pth.tar); the released models
need features extracted with the published LLD preset, anything else stops with the command to run.
With -emo all, attributes whose model is missing are reported and skipped.
Normalisation: by default what the checkpoint was trained with (its .meta.json holds the statistics),
'published' with --pretrained; --feature-norm speaker|corpus normalises the evaluated corpus on itself.
Predictions are de-normalised with the label statistics. Labels: consensus; -set Test by default
(every split present when the corpus has no Test split).
Output (--out, default runs/testing): <Emo>_<Split>_predictions.csv (FileName, Label, Pred, Chunk01..22:
the 22-chunk curve) and metrics.csv; the table is printed.
MSCR (--model mscr): the flags of the "MSCR" group below (docs/mscr.md, "Missing data").
"""
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import cli
import dataloader as D
from training import build_parser, parse, predict
from utils import EMO_COL, atomic_write_text, ccc, get_device, parse_emos, set_seed

HELP = __doc__


def get_parser():
    p = build_parser(HELP, train=False)
    p.set_defaults(workers=0)
    p.add_argument('-set', '--split_set', default=None, help='Train, Validation, Test or all (default Test)')
    p.add_argument('--pretrained', default=None, help="the authors' repository root (NormTerm + v1.6 models)")
    p.add_argument('--out', default=str(D.REPO / 'runs' / 'testing'),
                   help='output folder for predictions and metrics (default runs/testing)')
    cli.add_mscr_args(p, train=False)
    return p


def pearson(x, y):
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return float(np.corrcoef(x, y)[0, 1]) if len(x) > 1 and x.std() > 0 and y.std() > 0 else float('nan')


def test_emo(args, emo, corpus, store, device, sets):
    model, fnorm, ckpt, meta, (fscope, lscope, _, ldir) = D.load_for_eval(args, 'seq2seq', emo, corpus, store, device)
    lm, ls = D.label_norm(lscope, emo, corpus, ldir, meta)
    m = D.chunk_frames(store.hop)
    col = corpus.labels.set_index('FileName')[EMO_COL[emo]]
    rows = []
    for split in sets:
        names = [n for n in corpus.files(split) if n in store and np.isfinite(col.get(n, np.nan))]
        names = D.limit_names(names, args.limit, args.seed)
        if not names:
            print(f'{emo} {split}: no utterances with features and labels')
            continue
        ds = D.UtteranceDataset(store, names, fnorm)
        loader = torch.utils.data.DataLoader(ds, args.batch_size, num_workers=args.workers, collate_fn=D.PadCollate(m),
                                             pin_memory=device.type == 'cuda')
        out = predict(model, loader, m, device, args.amp, desc=f'{emo} {split}')
        pred = np.array([out[i][0] for i in range(len(ds))]) * ls + lm
        curves = np.stack([out[i][1] for i in range(len(ds))]) * ls + lm
        y = col.loc[names].to_numpy(np.float64)
        c, r = ccc(pred, y), pearson(pred, y)
        df = pd.DataFrame({'FileName': names, 'Label': y, 'Pred': pred.round(5)})
        df = pd.concat([df, pd.DataFrame(curves.round(5), columns=[f'Chunk{k + 1:02d}' for k in range(curves.shape[1])])], axis=1)
        path = Path(args.out) / f'{emo}_{split}_predictions.csv'
        atomic_write_text(path, df.to_csv(index=False))
        rows.append({'Attr': emo, 'Split': split, 'N': len(names), 'CCC': c, 'Pearson_r': r, 'checkpoint': str(ckpt),
                     'feature_norm': fscope, 'label_norm': lscope, 'predictions': str(path)})
    return rows


def main(argv=None):
    args, mscr = parse(get_parser(), argv)
    if mscr is not None:
        return mscr.test_mscr(args)
    if not args.emo_attr:
        D.die('-emo is required for the Seq2Seq model (Act, Dom, Val or all)')
    set_seed(args.seed)
    device = get_device(args.device)
    corpus = D.open_corpus(args.corpus)
    store = D.open_store(args.features, corpus)
    if args.split_set:
        sets = D.parse_sets(args.split_set)
    else:
        sets = ['Test'] if corpus.files('Test') else [s for s in D.SPLITS if corpus.files(s)]
    emos, rows, missing = parse_emos(args.emo_attr), [], []
    for emo in emos:
        try:
            rows += test_emo(args, emo, corpus, store, device, sets)
        except SystemExit as e:
            if len(emos) == 1 or 'checkpoint' not in str(e):
                raise
            missing.append((emo, str(e)))
    if missing:
        print('skipped: ' + '; '.join(f'{e}: {msg.removeprefix("error: ")}' for e, msg in missing))
    if not rows:
        D.die('nothing was evaluated')
    src = 'pretrained ' + args.pretrained if args.pretrained else rows[0]['checkpoint']
    print(f'\nCCC on de-normalised predictions ({corpus.name}; {src})')
    print(f'{"Attr":5s} {"Split":11s} {"N":>6s} {"CCC":>8s} {"r":>8s}')
    for r in rows:
        print(f'{r["Attr"]:5s} {r["Split"]:11s} {r["N"]:6d} {r["CCC"]:8.4f} {r["Pearson_r"]:8.4f}')
    metrics = Path(args.out) / 'metrics.csv'
    atomic_write_text(metrics, pd.DataFrame(rows).to_csv(index=False))
    print(f'predictions and metrics: {Path(args.out)}')
    return rows


if __name__ == '__main__':
    main()
