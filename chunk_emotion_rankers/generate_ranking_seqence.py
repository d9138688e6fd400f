"""Chunk emotion ranking sequences from a trained ranker (docs/method1.md, "Ranking sequences").
The spelling of the name is the published one.

    python chunk_emotion_rankers/generate_ranking_seqence.py -ep 20 -batch 128 -emo Act -set Train
    python chunk_emotion_rankers/generate_ranking_seqence.py -emo all -set all --pretrained ../Chunk-Level-Emotion-Retrieval

Chunk c_i's score is the number of other chunks c_j for which the ranker predicts class 1 for the
ordered pair (c_i, c_j); ranks are 'min'-method descending ranks (1 = most emotional chunk), computed
with one batched forward pass over the 22 chunks of every utterance (ranker.py; identical to the
462-pass tournament, see bench/bench_ranking.py). Utterances shorter than m + 21 frames have 22
identical chunks (step 0): all ranks 1. Model: as testing_ranker.py (--checkpoint, --pretrained, or
the repository's trained_ranker_model/).
Output: EmoChunkRankSeq/<training|validation|testing>_<Emo>.json = {FileName: {"ChunkRankSeq": [22 ints]}} (the
published format) and beside it <same name>.meta.json, its record: attribute, split, ranker (source, path,
SHA-256), corpus, features, feature normalisation, toolkit revision and the JSON's SHA-256. training.py checks
it (another attribute, corpus or split, or a changed file, is refused) and names the sequences in its model record.
"""
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import checkpoints as C  # noqa: E402
import cli  # noqa: E402
import identity  # noqa: E402
from dataloader import PadCollate, UtteranceDataset, limit_names  # noqa: E402
from errors import ToolkitError  # noqa: E402
from ranker import rank_loader, write_rank_sequences  # noqa: E402
from utils import parse_emos  # noqa: E402


def get_args(argv=None):
    p = cli.ranker_eval_parser(__doc__, 'utterances')
    p.add_argument('-set', '--split_set', required=True, help='Train, Validation, Test (the published test set: Test1 where the release has it), all, or release split names such as Test2, comma-separated')
    p.set_defaults(amp='off')
    p.add_argument('--out', default=str(cli.RANKSEQ_DIR), help='output folder (default chunk_emotion_rankers/EmoChunkRankSeq)')
    return p.parse_args(argv)


def main(argv=None):
    args = get_args(argv)
    device, corpus, store, m = cli.open_eval_inputs(args)
    corpus_sha = identity.corpus_fp(corpus)['sha256']      # the record names its inputs by content (identity.py)
    written, skipped, ckpts = [], [], []
    for emo in parse_emos(args.emo_attr):
        model, ck, fnorm = cli.open_model(args, 'ranker', emo, corpus, store, device)
        ckpts.append(ck)
        for split in cli.parse_sets(args.split_set, corpus):
            all_names = corpus.files(split)
            names = limit_names([n for n in all_names if n in store], args.limit, args.seed)
            skipped += [(n, f'not in the feature store {store.path}') for n in all_names if n not in store]
            if not names:
                print(f'{emo} {split}: no utterances with features; nothing written')
                continue
            loader = torch.utils.data.DataLoader(UtteranceDataset(store, names, fnorm), args.batch_size,
                                                 num_workers=args.workers, collate_fn=PadCollate(m),
                                                 pin_memory=device.type == 'cuda')
            t0 = time.perf_counter()
            out = rank_loader(model, loader, names, m, device, args.amp, f'{emo} {split}')
            dt = time.perf_counter() - t0
            path = Path(args.out) / f'{cli.split_file(split)}_{emo}.json'
            rel = corpus.release_splits(names=names)
            write_rank_sequences(path, out, {
                'attribute': emo, 'split': split, 'release_splits': rel,
                'ranker': {**{k: v for k, v in ck.provenance().items() if k in ('model_source', 'model',
                                                                                'model_sha256')},
                           'trained_on_speakers': (ck.record.get('trained_on') or {}).get('speakers')},
                'corpus': {'name': corpus.name, 'root': C.display_path(corpus.root), 'sha256': corpus_sha},
                'features': {'preset': store.meta.get('preset'), 'hop': store.hop, 'dim': store.dim,
                             'store': C.display_path(store.path), 'sha256': identity.store_fp(store)['sha256']},
                'feature_norm': {k: v for k, v in fnorm.record().items() if k not in ('mean', 'std')},
                'toolkit_revision': C.toolkit_revision()})
            print(f'{emo} {split}: {len(out)} ranking sequences (release {"+".join(rel)}) in {dt:.1f} s '
                  f'({ck.describe()}) -> {path}')
            written.append(path)
    C.announce(ckpts)
    if skipped:
        print(f'{len(skipped)} utterances skipped (not in the feature store), e.g. {skipped[0][0]}; run extract_features.py')
    if not written:
        raise ToolkitError(f'no ranking sequence written: no utterance of -set {args.split_set} has features in '
                           f'{store.path}')
    return written


if __name__ == '__main__':
    sys.exit(cli.run_script(main))
