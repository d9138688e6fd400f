"""Test a chunk emotion ranker on preference pairs: chunk-level macro-F1 and accuracy (docs/method1.md, "Rankers").

    python chunk_emotion_rankers/testing_ranker.py -ep 20 -batch 128 -emo Act
    python chunk_emotion_rankers/testing_ranker.py -emo all --pretrained ../Chunk-Level-Emotion-Retrieval

Pairs: preference_labels/testing_<Emo>.csv (-set picks another split), at most --max-pairs of them
(seeded subset). Model: trained_ranker_model/LSTM_epoch{ep}_batch{batch}_{Emo}_ranker.pth.tar (the demo
rankers unless you trained into that folder), --checkpoint FILE|DIR, or --pretrained DIR (the authors'
v1.6 rankers, checked by SHA-256; they need features of the published LLD preset).
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import checkpoints as C  # noqa: E402
import cli  # noqa: E402
import norm as N  # noqa: E402
from dataloader import K_CHUNKS, PadCollate, PairDataset  # noqa: E402
from ranker import load_pairs, macro_f1, run_epoch  # noqa: E402
from utils import parse_emos  # noqa: E402


def get_args(argv=None):
    p = cli.ranker_eval_parser(__doc__, 'pairs')
    p.add_argument('-set', '--split_set', default='Test',
                   help='pairs of Train, Validation, Test (the published test set: Test1 where the release has it), '
                        'all, or a release split name such as Test2 (its pairs file <name>_<Emo>.csv)')
    p.add_argument('--pairs', default=str(cli.PREF_DIR), help='folder of the preference-label CSVs')
    p.add_argument('--max-pairs', type=cli.positive_int, default=100_000, help='evaluate at most this many pairs (seeded subset)')
    return p.parse_args(argv)


def main(argv=None):
    args = get_args(argv)
    device, corpus, store, m = cli.open_eval_inputs(args)
    rows, ckpts, released = [], [], {}
    for emo in parse_emos(args.emo_attr):
        model, ck, fnorm = cli.open_model(args, 'ranker', emo, corpus, store, device)
        ckpts.append(ck)
        sets = cli.parse_sets(args.split_set, corpus)
        N.check_not_under_test(fnorm.computed_on, f'feature statistics ({fnorm.describe()})', corpus, sets)
        for split in sets:
            path = Path(args.pairs) / f'{cli.split_file(split)}_{emo}.csv'
            names, a, b, lab = load_pairs(path, store, args.max_pairs, args.seed)
            ds = PairDataset(store, names, a, b, lab, fnorm)
            loader = torch.utils.data.DataLoader(ds, args.batch_size, num_workers=args.workers,
                                                 collate_fn=PadCollate(m, n_feats=2))
            ce, conf = run_epoch(model, loader, m, device, args.amp, desc=f'{emo} {split}')
            f1, acc = macro_f1(conf)
            rows.append((emo, split, len(ds), f1, acc, ce))
            released[len(rows) - 1] = '+'.join(corpus.release_splits(names=names))
            print(f'{emo} {split}: {len(ds)} pairs x {K_CHUNKS} chunks, macro-F1 {f1:.4f}, accuracy {acc:.4f} '
                  f'(CE {ce:.4f}; {ck.describe()}, feature norm {fnorm.describe()})')
    C.announce(ckpts)
    print(f'\n{"Attr":5s} {"Split":11s} {"release":11s} {"pairs":>7s} {"macro-F1":>9s} {"acc":>7s}')
    for k, (emo, split, n, f1, acc, _) in enumerate(rows):
        print(f'{emo:5s} {split:11s} {released[k]:11s} {n:7d} {f1:9.4f} {acc:7.4f}')
    return rows


if __name__ == '__main__':
    sys.exit(cli.run_script(main))
