"""Test a chunk emotion ranker on preference pairs: chunk-level macro-F1 and accuracy (SPEC §4).

    python chunk_emotion_rankers/testing_ranker.py -ep 20 -batch 128 -emo Act
    python chunk_emotion_rankers/testing_ranker.py -emo all --pretrained ../Chunk-Level-Emotion-Retrieval

Pairs: preference_labels/testing_<Emo>.csv (-set picks another split), at most --max-pairs of them
(seeded subset). Checkpoint: trained_ranker_model/LSTM_epoch{ep}_batch{batch}_{Emo}_ranker.pth.tar,
or --checkpoint FILE|DIR, or --pretrained DIR (the authors' v1.6 rankers; needs features extracted with
the published LLD preset and uses DIR/NormTerm).
"""
import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from training_ranker import load_pairs, macro_f1, run_epoch  # noqa: E402

import dataloader as D  # noqa: E402
from utils import get_device, parse_emos, set_seed  # noqa: E402


def get_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('-ep', '--epochs', type=int, default=20, help='epochs in the checkpoint name (published: 20)')
    p.add_argument('-batch', '--batch_size', type=int, default=128, help='batch in the checkpoint name; also pairs per forward pass')
    p.add_argument('-emo', '--emo_attr', required=True, help='Act, Dom, Val or all')
    p.add_argument('-set', '--split_set', default='Test', help='pairs of Train, Validation, Test or all')
    D.add_data_args(p)
    D.add_norm_args(p)
    p.add_argument('--pairs', default=str(D.PREF_DIR), help='folder of the preference-label CSVs')
    p.add_argument('--checkpoint', default=None, help="ranker checkpoint file or folder ('{emo}' is replaced)")
    p.add_argument('--pretrained', default=None, help="the authors' repository root: its v1.6 rankers and NormTerm")
    p.add_argument('--max-pairs', type=int, default=100_000, help='evaluate at most this many pairs (seeded subset)')
    return p.parse_args(argv)


def main(argv=None):
    args = get_args(argv)
    set_seed(args.seed)
    device = get_device(args.device)
    corpus = D.open_corpus(args.corpus)
    store = D.open_store(args.features, corpus)
    m = D.chunk_frames(store.hop)
    rows = []
    for emo in parse_emos(args.emo_attr):
        model, fnorm, ckpt, meta, (fscope, *_) = D.load_for_eval(args, 'ranker', emo, corpus, store, device)
        for split in D.parse_sets(args.split_set):
            path = Path(args.pairs) / f'{D.SPLIT_FILE[split]}_{emo}.csv'
            names, a, b, lab = load_pairs(path, store, args.max_pairs, args.seed)
            ds = D.PairDataset(store, names, a, b, lab, fnorm)
            loader = torch.utils.data.DataLoader(ds, args.batch_size, num_workers=args.workers,
                                                 collate_fn=D.PadCollate(m, n_feats=2))
            ce, conf = run_epoch(model, loader, m, device, args.amp, desc=f'{emo} {split}')
            f1, acc = macro_f1(conf)
            rows.append((emo, split, len(ds), f1, acc, ce))
            print(f'{emo} {split}: {len(ds)} pairs x {D.K_CHUNKS} chunks, macro-F1 {f1:.4f}, accuracy {acc:.4f} '
                  f'(CE {ce:.4f}; {ckpt.name}, feature norm {fscope})')
    print(f'\n{"Attr":5s} {"Split":11s} {"pairs":>7s} {"macro-F1":>9s} {"acc":>7s}')
    for emo, split, n, f1, acc, _ in rows:
        print(f'{emo:5s} {split:11s} {n:7d} {f1:9.4f} {acc:7.4f}')
    return rows


if __name__ == '__main__':
    main()
