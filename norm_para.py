"""Normalisation parameters (NormTerm/) from the Train split, in one streaming pass.

    python norm_para.py --corpus ROOT --features features/<corpus>/lld --out NormTerm/

Writes NormTerm/{feat,act,dom,val}_norm_{means,stds}.mat, key 'normal_para' (the layout of the
authors' release: 1-D arrays stored as 1 x D; byte-identical for the same statistics).
- feat: per-dimension mean and population std (ddof=0) of every frame of every Train utterance in the
  feature store, streamed (memory independent of corpus size); non-finite values left out (norm.py).
- act/dom/val: mean and population std of the consensus label over the Train utterances.
- A std below 1e-8 (a constant dimension) is written as 1e-8.
- normterm.json: the record of the folder (feature kind, preset, hop and dimension, corpus, split, utterances,
  frames, toolkit revision, SHA-256 of every .mat file); every command that reads the folder checks it
  (docs/features.md, "NormTerm folders"). The published code reads only the .mat files.
Pass the folder to training and testing with --norm DIR (docs/features.md, "Normalisation scopes").
"""
import sys
from pathlib import Path

import identity
import interrupts
from checkpoints import SSL_FEATURE_KEYS, display_path, toolkit_revision
from cli import add_fold_arg, open_corpus, parser, run_script
from errors import ToolkitError
from feature_store import FeatureStore
from norm import feature_stats, label_stats
from outputs import check_outputs, output_lock, refuse_replace
from utils import EPS_STD, NORM_RECORD, ensure_dir, save_norm, write_norm_record


def main(argv=None):
    p = parser(__doc__)
    p.add_argument('--corpus', default=None, help='corpus root (default: the demo corpus data/demo_corpus)')
    p.add_argument('--features', default=None, help='feature store folder (default features/<corpus name>/lld)')
    add_fold_arg(p)
    p.add_argument('--out', default='NormTerm', help='output folder for the .mat files (default NormTerm/)')
    p.add_argument('--overwrite', action='store_true', help='replace the NormTerm already in --out (refused without '
                   'it, the default NormTerm/ included)')
    p.add_argument('--split', default='Train',
                   help='split the statistics come from: Train (default), Validation, Test or a release split name')
    args = p.parse_args(argv)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ToolkitError(f'--out {out} is a file; the NormTerm is a folder of .mat files: pass a folder')
    corpus = open_corpus(args.corpus, args.fold)
    store = FeatureStore(args.features or identity.default_store(corpus))
    check_outputs([(out, '--out')], [(store.path, 'the feature store'), (corpus.root, 'the corpus')])
    with output_lock(out, f'the NormTerm {out}'):
        refuse_replace(out, 'a NormTerm', args.overwrite, present=sorted(out.glob('*_norm_*.mat')) + [out / NORM_RECORD])
        ensure_dir(out)
        return write(args, corpus, store)


def write(args, corpus, store):
    names = corpus.files(args.split)
    labels = label_stats(corpus, args.split)
    mean, std, frames, used, missing = feature_stats(store, names)
    if not used:
        raise ToolkitError(f'none of the {len(names)} {args.split} utterances is in the feature store {store.path}; '
                           f'extract them first (python extract_features.py --corpus {corpus.root} --out {store.path})')
    with interrupts.deferred():   # all .mat files and their record or none: a Ctrl-C here waits for the last one
        save_norm(args.out, {'feat': (mean, std), **labels})
        write_norm_record(args.out, {
            'kind': 'normterm', 'version': 1,
            'features': {'kind': store.meta.get('feature'), 'preset': store.meta.get('preset'), 'hop': store.hop,
                         'dim': store.dim, 'store': display_path(store.path),
                         **{k: store.meta[k] for k in SSL_FEATURE_KEYS if k in store.meta and 'upstream_sha256' in store.meta}},
            'corpus': {'name': corpus.name, 'root': display_path(corpus.root), 'fold': corpus.fold},
            'split': args.split, 'utterances': len(used), 'missing': len(missing), 'frames': int(frames),
            # identity by content (identity.py): the audio and the speakers the statistics were computed on
            'utterances_sha256': identity.audio_digest(identity.audio_fps(corpus, used)),
            'speakers': identity.speakers_of(corpus, used), 'features_sha256': identity.store_fp(store)['sha256'],
            'labels': {e: [m, s] for e, (m, s) in labels.items()}, 'toolkit_revision': toolkit_revision()})
    hours = f', {frames * store.hop / 3600:.2f} h' if store.hop else ''
    print(f'{args.split} (release {"+".join(corpus.release_splits(args.split))}): {len(used)} utterances, {frames} frames{hours} from {store.path} '
          f'({store.meta.get("feature")}, preset {store.meta.get("preset")}, {store.dim}-d)')
    if missing:
        print(f'  {len(missing)} {args.split} utterances not in the store (skipped at extraction?): '
              f'{", ".join(missing[:5])}{" ..." if len(missing) > 5 else ""}')
    small = int((std < EPS_STD).sum())
    print(f'  feature means in [{mean.min():.4g}, {mean.max():.4g}], stds in [{std.min():.4g}, {std.max():.4g}]'
          f'{f"; {small} constant dims -> std {EPS_STD}" if small else ""}')
    for e, (m, s) in labels.items():
        print(f'  {e}: mean {m:.4f}  std {s:.4f}')
    print(f'wrote {Path(args.out)}/{{feat,act,dom,val}}_norm_{{means,stds}}.mat and its record normterm.json')
    if args.split != 'Train':
        print(f'note: statistics of the {args.split} split: training and testing refuse them on {corpus.name} '
              f'(they would leak the data under evaluation into the model)')


if __name__ == '__main__':
    sys.exit(run_script(main))
