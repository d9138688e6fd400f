"""Normalisation parameters (NormTerm/) from the Train split, in one streaming pass.

    python norm_para.py --corpus ROOT --features features/<corpus>/lld --out NormTerm/

Writes NormTerm/{feat,act,dom,val}_norm_{means,stds}.mat, key 'normal_para' (the layout of the
authors' release: 1-D arrays, which MATLAB/scipy store as 1 x D; utils.load_norm reads both).
- feat: per-dimension mean and population std (ddof=0, like np.std in the published code) of every
  frame of every Train utterance in the feature store. Computed with float64 per-utterance moments
  merged by Chan et al.'s parallel update (numerically stable; memory independent of corpus size).
  Non-finite values are left out per dimension.
- act/dom/val: mean and population std of the consensus label over the Train utterances of the
  label file (finite values only).
- A std below 1e-8 (a constant dimension) is written as 1e-8 (utils.EPS_STD).
"""
import argparse
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

EMOS = ['Act', 'Dom', 'Val']
EMO_COL = {'Act': 'EmoAct', 'Dom': 'EmoDom', 'Val': 'EmoVal'}


class RunningStats:
    """Per-dimension count, mean and M2 (sum of squared deviations), merged batch by batch (Chan)."""

    def __init__(self, dim):
        self.n = np.zeros(dim, np.float64)
        self.mean = np.zeros(dim, np.float64)
        self.m2 = np.zeros(dim, np.float64)

    def update(self, x, block=65536):
        x = np.asarray(x)
        for b in range(0, len(x), block):  # bounded temporaries even for very long utterances
            xb = x[b:b + block].astype(np.float64)
            ok = np.isfinite(xb)
            nb = ok.sum(0).astype(np.float64)
            xb = np.where(ok, xb, 0.0)
            mb = xb.sum(0) / np.maximum(nb, 1)
            m2b = (np.where(ok, xb - mb, 0.0) ** 2).sum(0)
            n = self.n + nb
            d = mb - self.mean
            w = np.divide(nb, n, out=np.zeros_like(n), where=n > 0)
            self.mean += d * w
            self.m2 += m2b + d ** 2 * self.n * w
            self.n = n

    @property
    def std(self):
        return np.sqrt(np.divide(self.m2, self.n, out=np.zeros_like(self.m2), where=self.n > 0))


def feature_stats(store, names, progress=True):
    """(mean, std, n_frames, used names, missing names) over `names` in a FeatureStore."""
    rs = RunningStats(store.dim)
    used, missing, frames = [], [], 0
    for n in tqdm(names, desc='feature stats', unit='utt', disable=not progress, dynamic_ncols=True):
        if n not in store:
            missing.append(n)
            continue
        x = store.get(n)
        rs.update(x)
        frames += len(x)
        used.append(n)
    return rs.mean, rs.std, frames, used, missing


def label_stats(corpus, split='Train'):
    """{'Act': (mean, std), ...} of the consensus labels over a split (population std)."""
    df = corpus.labels.set_index('FileName').loc[corpus.files(split)]
    out = {}
    for e in EMOS:
        v = df[EMO_COL[e]].to_numpy(np.float64)
        v = v[np.isfinite(v)]
        if len(v) == 0:
            raise ValueError(f'{corpus.consensus_path}: no finite {EMO_COL[e]} label in the {split} split')
        out[e] = (float(v.mean()), float(v.std()))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--corpus', default=None, help='corpus root (default: the demo corpus data/demo_corpus)')
    p.add_argument('--features', default=None, help='feature store folder (default features/<corpus name>/lld)')
    p.add_argument('--out', default='NormTerm', help='output folder for the .mat files (default NormTerm/)')
    p.add_argument('--split', default='Train', choices=['Train', 'Validation', 'Test'],
                   help='split the statistics come from (default Train)')
    args = p.parse_args(argv)

    from corpus import DEFAULT_CORPUS, Corpus, CorpusError, ensure_demo_corpus
    from feature_store import FeatureStore, StoreError
    from utils import EPS_STD, ensure_dir, save_norm
    ensure_dir(args.out)
    try:
        corpus = Corpus(ensure_demo_corpus(args.corpus or DEFAULT_CORPUS))
        store = FeatureStore(args.features or Path('features') / corpus.name / 'lld')
        names = corpus.files(args.split)
        labels = label_stats(corpus, args.split)
    except (CorpusError, StoreError, ValueError) as e:
        sys.exit(f'error: {e}')
    mean, std, frames, used, missing = feature_stats(store, names)
    if not used:
        sys.exit(f'error: none of the {len(names)} {args.split} utterances is in the feature store {store.path}; '
                 f'extract them first (python extract_features.py --corpus {corpus.root} --out {store.path})')
    save_norm(args.out, {'feat': (mean, std), **labels})

    hours = f', {frames * store.hop / 3600:.2f} h' if store.hop else ''
    print(f'{args.split}: {len(used)} utterances, {frames} frames{hours} from {store.path} '
          f'({store.meta.get("feature")}, preset {store.meta.get("preset")}, {store.dim}-d)')
    if missing:
        print(f'  {len(missing)} {args.split} utterances not in the store (skipped at extraction?): '
              f'{", ".join(missing[:5])}{" ..." if len(missing) > 5 else ""}')
    small = int((std < EPS_STD).sum())
    print(f'  feature means in [{mean.min():.4g}, {mean.max():.4g}], stds in [{std.min():.4g}, {std.max():.4g}]'
          f'{f"; {small} constant dims -> std {EPS_STD}" if small else ""}')
    for e, (m, s) in labels.items():
        print(f'  {e}: mean {m:.4f}  std {s:.4f}')
    print(f'wrote {Path(args.out)}/{{feat,act,dom,val}}_norm_{{means,stds}}.mat')


if __name__ == '__main__':
    main()
