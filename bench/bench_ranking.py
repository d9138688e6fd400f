"""Bench 1 -- chunk ranking sequences: the batched path vs the all-pairs tournament.

    python bench/bench_ranking.py                          # 500 utterances; tournament on 20 of them
    python bench/bench_ranking.py --naive-utts 500         # the tournament on all 500 too (~10 min on 2 cores)
    python bench/bench_ranking.py --device cuda            # on a GPU
    python bench/bench_ranking.py --n-utts 16 --naive-utts 2 --batch 8    # smoke size

Both sides use the same checkpoint -- a randomly initialised ranker LSTMnet of the published shape
(2-layer LSTM 130->130, fc1 130->130, fc2 130->2), saved as a plain state_dict and loaded back with
checkpoints.load_lstm -- and the same synthetic 130-d LLD feature store (16 ms hop, ~6 s utterances),
z-normalised with Train-style statistics (norm.norm_stats / FeatNorm).
  batched:   the path of chunk_emotion_rankers/generate_ranking_seqence.py -- UtteranceDataset, DataLoader
             with PadCollate, ranker.rank_loader (dataloader.to_chunks, one gather; rank_sequences, one forward
             pass over the 22 chunks of every utterance of a batch, ranks from g = f1 - f0).
  all-pairs: the project's reference `rank_sequence_allpairs`, the tournament as first published: for each
             of the 22 x 21 = 462 ordered chunk pairs one siamese comparison f(c_i) - f(c_j) (two
             single-chunk LSTM passes), wins counted, 'min' ranks.
Both paths use the same torch thread count (--threads, default 1: on a shared 2-core machine more threads
make the single-chunk passes of the tournament slower, not faster). The tournament runs on the first --naive-utts utterances and its utterances/s is extrapolated to all
--n-utts (cost per utterance does not depend on the utterance): labelled "extrapolated". The rank
sequences of those utterances must be identical on both paths (checked; the bench fails otherwise).
"""
import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402


def build_ranker(path, seed):
    """Random-weight ranker of the published shape -> checkpoint file -> loaded back as the scripts do."""
    from checkpoints import load_lstm
    from model import LSTMnet
    from utils import atomic_torch_save
    torch.manual_seed(seed)
    atomic_torch_save(LSTMnet(out_dim=2).state_dict(), path)
    return load_lstm(path, 'ranker')


def batched_ranks(model, store, names, fnorm, m, device, batch, workers):
    """The generate_ranking_seqence.py loop: {name: [22 ranks]} and seconds."""
    import dataloader as D
    from ranker import rank_loader
    ds = D.UtteranceDataset(store, names, fnorm)
    loader = torch.utils.data.DataLoader(ds, batch, num_workers=workers, collate_fn=D.PadCollate(m),
                                         pin_memory=device.type == 'cuda')
    t0 = time.perf_counter()
    out = {n: r['ChunkRankSeq'] for n, r in rank_loader(model, loader, names, m, device).items()}
    common.sync(device)
    return out, time.perf_counter() - t0


def allpairs_ranks(model, store, names, fnorm, m, device):
    """The tournament on each utterance: {name: [22 ranks]} and seconds."""
    import dataloader as D
    from ranker import rank_sequence_allpairs
    from utils import dynamic_chunk_split
    ds = D.UtteranceDataset(store, names, fnorm)
    out = {}
    t0 = time.perf_counter()
    with torch.no_grad():
        for i in range(len(ds)):
            x = torch.as_tensor(ds[i][0])[None].to(device)
            chunks = dynamic_chunk_split(x, torch.tensor([x.shape[1]]), m, D.K_CHUNKS)[0]
            out[names[i]] = [int(r) for r in rank_sequence_allpairs(model, chunks)]
    common.sync(device)
    return out, time.perf_counter() - t0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--n-utts', type=int, default=500, help='utterances ranked by the batched path (published bench: 500)')
    p.add_argument('--naive-utts', type=int, default=20,
                   help='utterances the 462-comparison tournament runs on (extrapolated; = --n-utts for the full run)')
    p.add_argument('--batch', type=int, default=128, help='utterances per forward pass of the batched path (default 128)')
    p.add_argument('--workers', type=int, default=2, help='DataLoader workers of the batched path (script default 2)')
    p.add_argument('--device', default='cpu', help="cpu, cuda, cuda:N or auto (default cpu)")
    p.add_argument('--threads', type=int, default=1,
                   help='torch CPU threads for both paths (default 1: stable on a shared machine; 0 = torch default)')
    p.add_argument('--mean-sec', type=float, default=6.0, help='mean utterance duration of the synthetic store (s)')
    p.add_argument('--seed', type=int, default=0, help='seed of the store and of the ranker weights')
    p.add_argument('--workdir', default=None, help='folder for the store and checkpoint (default: temporary, removed)')
    p.add_argument('--out', default=None, help='folder for the JSON and PNG (default bench/results and images/)')
    p.add_argument('--no-plot', action='store_true', help='do not write images/bench_ranking.png')
    args = p.parse_args(argv)
    common.set_threads(args.threads)
    import checkpoints as C
    import dataloader as D
    import norm as N
    device = common.pick_device(args.device)
    info = common.machine(device)
    print(common.machine_line(info))
    wd, tmp = common.work_dir(args.workdir, 'bench_ranking_')
    try:
        store = common.make_store(wd / 'lld', args.n_utts, 130, 0.016, args.mean_sec, args.seed, progress=False)
        names = store.names
        m = D.chunk_frames(store.hop)
        mean, std = N.norm_stats(store, names)
        fnorm = N.FeatNorm(mean, std, 'train', 'synthetic')
        model = build_ranker(wd / C.ranker_name(20, 128, 'Act'), args.seed).to(device).eval()
        print(f'{len(names)} synthetic utterances (mean {np.mean(list(store.lengths().values())) * store.hop:.1f} s), '
              f'm = {m} frames, K = {D.K_CHUNKS} chunks; random-weight ranker of the published shape on {device}')

        batched, t_b = batched_ranks(model, store, names, fnorm, m, device, args.batch, args.workers)
        n_naive = min(args.naive_utts, len(names))
        naive, t_n = allpairs_ranks(model, store, names[:n_naive], fnorm, m, device)
        same = sum(naive[k] == batched[k] for k in naive)
        rate_b, rate_n = len(names) / t_b, n_naive / t_n
        t_n_all = len(names) / rate_n
        extrap = n_naive < len(names)
        tag = f'extrapolated from {n_naive} utterances' if extrap else 'measured'
        print(f'batched   (1 pass per batch of {args.batch}): {t_b:8.2f} s for {len(names)} utt = {common.fmt_rate(rate_b)} utt/s')
        print(f'all-pairs (462 comparisons per utt):     {t_n_all:8.1f} s for {len(names)} utt ({tag}; {t_n:.1f} s measured) '
              f'= {common.fmt_rate(rate_n)} utt/s')
        print(f'identical rank sequences on the {n_naive} tournament utterances: {same}/{n_naive}')
        speed = rate_b / rate_n
        print(f'RESULT ranking: batched {common.fmt_rate(rate_b)} utt/s vs all-pairs {common.fmt_rate(rate_n)} utt/s '
              f'({"extrapolated" if extrap else "measured"}) on {device} -> {speed:,.0f}x faster; '
              f'ranks agree {same}/{n_naive}')
        res = dict(machine=info, n_utts=len(names), naive_utts=n_naive, extrapolated=extrap, batch=args.batch,
                   workers=args.workers, m=m, K=D.K_CHUNKS,
                   batched=dict(seconds=t_b, utt_per_s=rate_b),
                   allpairs=dict(seconds_measured=t_n, seconds_all=t_n_all, utt_per_s=rate_n,
                                 comparisons_per_utt=D.K_CHUNKS * (D.K_CHUNKS - 1)),
                   speedup=speed, ranks_identical=same, ranks_compared=n_naive)
        common.save_results('ranking', res, args.out)
        if not args.no_plot:
            plt = common.plt_agg()
            fig, ax = plt.subplots(figsize=(6, 2.6))
            labels = [f'batched (batch {args.batch})', 'all-pairs, 462 comparisons' + (' (extrap.)' if extrap else '')]
            ax.barh(labels, [rate_b, rate_n], color=['tab:green', 'tab:gray'])
            ax.set_xscale('log')
            ax.set_xlabel('utterances / s (log)')
            for y, r in enumerate([rate_b, rate_n]):
                ax.text(r, y, f' {common.fmt_rate(r)}', va='center', fontsize=8)
            ax.set_title(f'Ranking sequences, {len(names)} utterances, {device}: {speed:,.0f}x', fontsize=9)
            fig.tight_layout()
            common.save_png(fig, 'ranking', args.out and Path(args.out))
        if same != n_naive:
            raise SystemExit(f'error: batched and all-pairs rank sequences differ on {n_naive - same} utterances')
        return res
    finally:
        if tmp:
            shutil.rmtree(wd, ignore_errors=True)


if __name__ == '__main__':
    main()
