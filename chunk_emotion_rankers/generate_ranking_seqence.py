"""Chunk emotion ranking sequences from a trained ranker (SPEC §4). Spelling of the name kept.

    python chunk_emotion_rankers/generate_ranking_seqence.py -ep 20 -batch 128 -emo Act -set Train
    python chunk_emotion_rankers/generate_ranking_seqence.py -emo all -set all --pretrained ../Chunk-Level-Emotion-Retrieval
    python chunk_emotion_rankers/generate_ranking_seqence.py -emo Act -set Train --benchmark 32

Chunk c_i's score is the number of other chunks c_j for which the ranker predicts class 1 for the
ordered pair (c_i, c_j); ranks are 'min'-method descending ranks (1 = most emotional chunk).
Class 1 wins exactly when g(c_i) > g(c_j) with g = f1 - f0, so ONE batched forward pass over the 22
chunks of every utterance of a batch gives the same ranks as the 462-pass tournament
(`rank_sequence_allpairs`, kept as the reference; --benchmark times both on the same utterances and
checks they agree). Utterances shorter than m + 21 frames have 22 identical chunks (step 0): all ranks 1.
Output: EmoChunkRankSeq/<training|validation|testing>_<Emo>.json = {FileName: {"ChunkRankSeq": [22 ints]}}.
"""
import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

import dataloader as D  # noqa: E402
from utils import atomic_write_text, chunk_starts, get_device, parse_emos, rank_desc_min, set_seed  # noqa: E402


@torch.no_grad()
def rank_sequences(model, chunks, lengths, m):
    """chunks (B, K, m, D), frame counts (B,) -> (B, K) int ranks from one forward pass of B*K chunks."""
    B, K = chunks.shape[:2]
    g = model.chunk_scores(chunks.flatten(0, 1)).float().view(B, K)
    ranks = rank_desc_min(g.cpu())
    starts, _ = chunk_starts(lengths, m, K)
    ranks[starts[:, -1] == starts[:, 0]] = 1          # identical chunks tie, as in the tournament
    return ranks


@torch.no_grad()
def rank_sequence_allpairs(model, chunks):
    """Reference: the straightforward tournament, 462 siamese passes for K=22 chunks (K, m, D) -> (K,) ranks."""
    from scipy.stats import rankdata
    K = len(chunks)
    wins = np.zeros(K)
    for i in range(K):
        for j in range(K):
            if i != j:
                d = model(chunks[i:i + 1]) - model(chunks[j:j + 1])     # f(c_i) - f(c_j)
                wins[i] += int(d.argmax(1)) == 1
    return rankdata(-wins, method='min').astype(int)


def get_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('-ep', '--epochs', type=int, default=20, help='epochs in the ranker checkpoint name (published: 20)')
    p.add_argument('-batch', '--batch_size', type=int, default=128, help='batch in the checkpoint name; also utterances per forward pass')
    p.add_argument('-emo', '--emo_attr', required=True, help='Act, Dom, Val or all')
    p.add_argument('-set', '--split_set', required=True, help='Train, Validation, Test or all')
    D.add_data_args(p)
    D.add_norm_args(p)
    p.set_defaults(amp='off')
    p.add_argument('--checkpoint', default=None, help="ranker checkpoint file or folder ('{emo}' is replaced)")
    p.add_argument('--pretrained', default=None, help="the authors' repository root: its v1.6 rankers and NormTerm")
    p.add_argument('--out', default=str(D.RANKSEQ_DIR), help='output folder (default chunk_emotion_rankers/EmoChunkRankSeq)')
    p.add_argument('--benchmark', type=int, default=None, metavar='N',
                   help='time the batched and the all-pairs paths on the first N utterances of the split (no output)')
    return p.parse_args(argv)


def main(argv=None):
    args = get_args(argv)
    set_seed(args.seed)
    device = get_device(args.device)
    corpus = D.open_corpus(args.corpus)
    store = D.open_store(args.features, corpus)
    m = D.chunk_frames(store.hop)
    written, skipped = [], []
    for emo in parse_emos(args.emo_attr):
        model, fnorm, ckpt, meta, _ = D.load_for_eval(args, 'ranker', emo, corpus, store, device)
        for split in D.parse_sets(args.split_set):
            all_names = corpus.files(split)
            names = D.limit_names([n for n in all_names if n in store], args.limit, args.seed)
            skipped += [(n, f'not in the feature store {store.path}') for n in all_names if n not in store]
            if not names:
                print(f'{emo} {split}: no utterances with features; nothing written')
                continue
            if args.benchmark:
                names = names[:args.benchmark]
            ds = D.UtteranceDataset(store, names, fnorm)
            loader = torch.utils.data.DataLoader(ds, args.batch_size, num_workers=args.workers, collate_fn=D.PadCollate(m),
                                                 pin_memory=device.type == 'cuda')
            t0 = time.perf_counter()
            out = {}
            for x, lengths, idx in tqdm(loader, desc=f'{emo} {split}', dynamic_ncols=True, leave=False):
                with D.amp_context(device, args.amp):
                    ranks = rank_sequences(model, D.to_chunks(x, lengths, m, device), lengths, m)
                for i, r in zip(idx.tolist(), ranks.tolist()):
                    out[names[i]] = {'ChunkRankSeq': r}
            if device.type == 'cuda':
                torch.cuda.synchronize()
            t_batched = time.perf_counter() - t0
            if args.benchmark:
                benchmark(model, ds, out, m, device, t_batched, emo, split, ckpt)
                continue
            path = Path(args.out) / f'{D.SPLIT_FILE[split]}_{emo}.json'
            atomic_write_text(path, json.dumps(out, indent=4) + '\n')
            print(f'{emo} {split}: {len(out)} ranking sequences in {t_batched:.1f} s '
                  f'({len(out) / max(t_batched, 1e-9):.0f} utterances/s) -> {path}')
            written.append(path)
    if skipped:
        print(f'{len(skipped)} utterances skipped (not in the feature store), e.g. {skipped[0][0]}; run extract_features.py')
    return written


def benchmark(model, ds, batched, m, device, t_batched, emo, split, ckpt):
    from utils import dynamic_chunk_split
    t0, same = time.perf_counter(), 0
    for i in tqdm(range(len(ds)), desc='all-pairs', leave=False):
        x = torch.as_tensor(ds[i][0])[None]
        L = torch.tensor([len(x[0])])
        chunks = dynamic_chunk_split(x.to(device), L, m, D.K_CHUNKS)[0]
        same += list(rank_sequence_allpairs(model, chunks)) == batched[ds.names[i]]['ChunkRankSeq']
    if device.type == 'cuda':
        torch.cuda.synchronize()
    t_all = time.perf_counter() - t0
    n = len(ds)
    print(f'{emo} {split} ({ckpt.name}, {device}, {torch.get_num_threads()} threads): {n} utterances\n'
          f'  batched (1 pass / batch): {t_batched:8.2f} s  {n / t_batched:10.1f} utterances/s\n'
          f'  all-pairs (462 passes):   {t_all:8.2f} s  {n / t_all:10.2f} utterances/s\n'
          f'  speed-up {t_all / t_batched:.0f}x; identical rank sequences: {same}/{n}')


if __name__ == '__main__':
    main()
