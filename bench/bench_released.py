"""The authors' released v1.6 models on Emo-DB, as the README reports them (zero-shot, no training).

    python bench/bench_released.py --pretrained DIR                   # DIR = a clone of the authors' repository
    python bench/bench_released.py                                    # finds ../Chunk-Level-Emotion-Retrieval or
                                                                      #   ../shared/pretrained/...; Emo-DB in ../shared

Runs the two commands of the README's table through their main(argv) and summarises their outputs:
  python predict.py EMODB/wav --pretrained DIR --out CSV        -> arousal AUC (anger, happiness, fear vs boredom,
                                                                   sadness), mean predicted arousal per category,
                                                                   valence AUC (happiness vs anger, disgust, fear,
                                                                   sadness)
  python prepare_emodb.py EMODB DATA; python extract_features.py --corpus DATA
  python testing.py -emo all --pretrained DIR --corpus DATA -set Test -> Test CCC (speakers 03, 08)
Writes bench/results/released_emodb.json. tests/test_released.py checks the same models on subsets in CI.
"""
import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import accuracy_common as A  # noqa: E402
import common  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

CATS = {'W': 'anger', 'F': 'happiness', 'A': 'fear', 'E': 'disgust', 'N': 'neutral', 'L': 'boredom', 'T': 'sadness'}


def auc(pos, neg):
    pos, neg = np.asarray(pos)[:, None], np.asarray(neg)[None, :]
    return float(((pos > neg) + 0.5 * (pos == neg)).mean())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--pretrained', default=A.default_pretrained(), help="the authors' repository root")
    p.add_argument('--emodb', default=str(common.REPO.parent / 'shared' / 'datasets' / 'emodb'), help='Emo-DB folder')
    p.add_argument('--out', default=None, help='folder for the JSON (default bench/results)')
    args = p.parse_args(argv)
    if not args.pretrained:
        raise SystemExit("error: pass --pretrained DIR (a clone of the authors' Chunk-Level-Emotion-Retrieval)")
    import extract_features
    import predict
    import prepare_emodb
    import testing
    info = common.machine('cpu')
    print(common.machine_line(info))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rc = predict.main([str(Path(args.emodb) / 'wav'), '--pretrained', args.pretrained, '--out', str(tmp / 'p.csv')])
        df = pd.read_csv(tmp / 'p.csv', keep_default_na=False)
        if rc != 0 or (df.error != '').any():
            raise SystemExit(f'error: predict.py failed (exit {rc})')
        cat = df.file.map(lambda f: Path(f).stem[5])
        act, val = df.Act.astype(float), df.Val.astype(float)
        root, _ = prepare_emodb.prepare(args.emodb, tmp / 'emodb', progress=False)
        extract_features.main(['--corpus', str(root), '--out', str(tmp / 'lld'), '--split', 'Test'])
        testing.main(['-emo', 'all', '--pretrained', args.pretrained, '--corpus', str(root), '--features',
                      str(tmp / 'lld'), '-set', 'Test', '--out', str(tmp / 'test')])
        met = pd.read_csv(tmp / 'test' / 'metrics.csv').set_index('Attr')
    res = dict(machine=info, pretrained=str(args.pretrained), files=len(df),
               predict=dict(arousal_auc=auc(act[cat.isin(list('WFA'))], act[cat.isin(list('LT'))]),
                            mean_arousal={CATS[c]: float(act[cat == c].mean()) for c in CATS},
                            valence_auc_happiness_vs_negative=auc(val[cat == 'F'], val[cat.isin(list('WEAT'))])),
               testing=dict(split='Test', n=int(met.N.iloc[0]), ccc={e: float(met.loc[e, 'CCC']) for e in met.index},
                            pearson_r={e: float(met.loc[e, 'Pearson_r']) for e in met.index}))
    pr, te = res['predict'], res['testing']
    print(f"RESULT released: {len(df)} Emo-DB files, arousal AUC {pr['arousal_auc']:.3f}; mean arousal "
          + ', '.join(f'{k} {v:.2f}' for k, v in sorted(pr['mean_arousal'].items(), key=lambda kv: -kv[1]))
          + f"; Test CCC ({te['n']} utt) " + ', '.join(f'{k} {v:.3f}' for k, v in te['ccc'].items()))
    common.save_results('released_emodb', res, args.out)
    return res


if __name__ == '__main__':
    main()
