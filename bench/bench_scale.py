"""Bench 5 -- scale: ranking-sequence generation and one Seq2Seq epoch over an MSP-Podcast-sized store.

    python bench/bench_scale.py                                  # 1,000 utterances, extrapolated to 150k (CPU)
    python bench/bench_scale.py --n-utts 10000                   # 10k subset (~2 GB store; ~20 min on 2 CPU cores)
    python bench/bench_scale.py --n-utts 150000 --device cuda    # the full v1.11 size (~29 GB disk) on a GPU box
    python bench/bench_scale.py --n-utts 24 --batch 8 --naive-utts 1    # smoke size

MSP-Podcast v1.11 holds ~150k utterances of ~6 s: at the published 16 ms hop that is ~56M frames of 130-d
LLDs, ~29 GB float32. This bench writes a synthetic store of --n-utts such utterances (log-normal
durations, mean 6 s, 0.5-11 s) with the project's FeatureStoreWriter and times, on --device:
  ranking     chunk ranking sequences of every utterance with the batched path of
              generate_ranking_seqence.py (DataLoader + PadCollate, to_chunks, rank_sequences), a random-weight
              ranker of the published shape; written as EmoChunkRankSeq JSON
  tournament  the all-pairs reference (rank_sequence_allpairs, 462 comparisons per utterance) on
              --naive-utts of them, for the side-by-side line (extrapolated)
  seq2seq     one training epoch of the Seq2Seq model over the store as its Train split (training.seq2seq_datasets
              with those ranking sequences, make_loader, chunk_predictions, the Seq2Seq loss, Adam); set-up
              (target curves, datasets) is timed separately; no validation pass.
Every time is also extrapolated linearly to 150,000 utterances (both steps are one pass over the
utterances, cost ~ number of utterances); numbers at n < 150k are labelled "extrapolated". A real Train
split is about 60 % of the corpus, so the epoch figure for all 150k is an upper bound.
"""
import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402


def hms(sec):
    sec = float(sec)
    if sec < 120:
        return f'{sec:.1f} s'
    if sec < 7200:
        return f'{sec / 60:.1f} min'
    if sec < 3 * 86400:
        return f'{sec / 3600:.1f} h'
    return f'{sec / 86400:.1f} days'


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--n-utts', type=int, default=1000, help='utterances in the synthetic store (full MSP-Podcast '
                   'v1.11 size: 150000, ~29 GB)')
    p.add_argument('--target-utts', type=int, default=common.MSP_V111_UTTS,
                   help='corpus size the times are extrapolated to (default 150000, MSP-Podcast v1.11)')
    p.add_argument('--mean-sec', type=float, default=6.0, help='mean utterance duration in seconds (default 6)')
    p.add_argument('--batch', type=int, default=128, help='utterances per batch for ranking and training (published 128)')
    p.add_argument('--workers', type=int, default=2, help='DataLoader workers (the scripts\' default 2)')
    p.add_argument('--device', default='cpu', help='cpu, cuda, cuda:N or auto (default cpu)')
    p.add_argument('--amp', default='fp16', choices=['fp16', 'bf16', 'off'], help='mixed precision of the Seq2Seq '
                   'step on CUDA, as training.py (ignored on CPU)')
    p.add_argument('--threads', type=int, default=1, help='torch CPU threads (default 1, stable on a shared machine; '
                   '0 = torch default)')
    p.add_argument('--naive-utts', type=int, default=2, help='utterances for the all-pairs tournament line (0 = skip)')
    p.add_argument('--skip-epoch', action='store_true', help='time the ranking only')
    p.add_argument('--seed', type=int, default=0, help='seed of the store and the weights')
    p.add_argument('--workdir', default=None, help='folder for the store, kept and reused by a rerun (default: a '
                   'temporary folder, removed; the full size needs ~29 GB free)')
    p.add_argument('--out', default=None, help='folder for the JSON (default bench/results)')
    args = p.parse_args(argv)
    common.set_threads(args.threads)
    from bench_pipeline import seq2seq_epoch, seq2seq_setup
    from bench_ranking import allpairs_ranks, batched_ranks, build_ranker

    import dataloader as D
    import norm
    device = common.pick_device(args.device)
    info = common.machine(device)
    print(common.machine_line(info))
    N, target = args.n_utts, args.target_utts
    scale = target / N
    wd, tmp = common.work_dir(args.workdir, 'bench_scale_')
    try:
        est = N * args.mean_sec / 0.016 * 130 * 4
        free = shutil.disk_usage(wd).free
        if est * 1.1 > free:
            raise SystemExit(f'error: a store of {N:,} utterances needs ~{common.gb(est):.1f} GB but {wd} has '
                             f'{common.gb(free):.1f} GB free; pass --workdir on a larger disk or lower --n-utts')
        n_val = max(2, N // 200)
        t0 = time.perf_counter()
        store = common.make_store(wd / 'lld', N + n_val, 130, 0.016, args.mean_sec, args.seed, progress=True)
        t_store = time.perf_counter() - t0
        frames = sum(store.lengths().values())
        print(f'store: {len(store):,} utterances, {frames:,} frames ({frames * 0.016 / 3600:.1f} h, '
              f'{common.gb(frames * 130 * 4):.2f} GB) written in {t_store:.1f} s; full size ~{common.gb(frames * 130 * 4 * scale):.0f} GB')
        names = store.names[:N]
        m = D.chunk_frames(store.hop)

        # ranking sequences (the generate_ranking_seqence.py path)
        t0 = time.perf_counter()
        mean, std = norm.norm_stats(store, names)
        t_norm = time.perf_counter() - t0
        print(f'feature statistics (streaming, norm.norm_stats): {t_norm:.1f} s -> {hms(t_norm * scale)} for {target:,}')
        from norm import FeatNorm
        fnorm = FeatNorm(mean, std, 'train', 'synthetic:Train')
        model = build_ranker(wd / 'LSTM_epoch20_batch128_Act_ranker.pth.tar', args.seed).to(device).eval()
        ranks, t_rank = batched_ranks(model, store, names, fnorm, m, device, args.batch, args.workers)
        from utils import atomic_write_text
        atomic_write_text(wd / 'training_Act.json', json.dumps({k: {'ChunkRankSeq': r} for k, r in ranks.items()}))
        rank_rate = N / t_rank
        res = dict(machine=info, n_utts=N, target_utts=target, extrapolated=target > N, frames=int(frames),
                   store_gb=common.gb(frames * 130 * 4), store_seconds=t_store, batch=args.batch, workers=args.workers,
                   norm_stats=dict(seconds=t_norm, seconds_at_target=t_norm * scale),
                   ranking=dict(seconds=t_rank, utt_per_s=rank_rate, seconds_at_target=target / rank_rate))
        print(f'ranking (batched): {N:,} utt in {t_rank:.1f} s = {common.fmt_rate(rank_rate)} utt/s -> '
              f'{hms(target / rank_rate)} for {target:,}')
        if args.naive_utts:
            k = min(args.naive_utts, N)
            naive, t_n = allpairs_ranks(model, store, names[:k], fnorm, m, device)
            agree = sum(naive[x] == ranks[x] for x in naive)
            res['tournament'] = dict(utts=k, seconds=t_n, utt_per_s=k / t_n, seconds_at_target=target * t_n / k,
                                     ranks_identical=agree)
            print(f'ranking (all-pairs tournament, {k} utt): {common.fmt_rate(k / t_n)} utt/s -> '
                  f'{hms(target * t_n / k)} for {target:,} (extrapolated); identical ranks {agree}/{k}')
            if agree != k:
                raise SystemExit('error: batched and all-pairs rank sequences differ')
        del model

        if not args.skip_epoch:
            t0 = time.perf_counter()
            s = seq2seq_setup(wd / 's2s', N, args.seed, rankseq={k: {'ChunkRankSeq': r} for k, r in ranks.items()},
                              store=store, fnorm=fnorm)
            t_setup = time.perf_counter() - t0
            n, t_ep, loss = seq2seq_epoch(s, args.batch, args.workers, device, args.amp, args.seed)
            ep_rate = n / t_ep
            res['seq2seq'] = dict(train_utts=len(s['train']), utts_stepped=n, setup_seconds=t_setup, seconds=t_ep,
                                  utt_per_s=ep_rate, seconds_at_target=target / ep_rate, loss=loss)
            print(f'Seq2Seq epoch: {n:,} utt in {t_ep:.1f} s = {common.fmt_rate(ep_rate)} utt/s (set-up {t_setup:.1f} s) '
                  f'-> {hms(target / ep_rate)} per epoch of {target:,}')
        tag = f'extrapolated from {N:,}' if target > N else 'measured'
        line = f'ranking {hms(target / rank_rate)}'
        if 'tournament' in res:
            line += f' (all-pairs tournament {hms(res["tournament"]["seconds_at_target"])}, ' \
                    f'{res["tournament"]["seconds_at_target"] / (target / rank_rate):,.0f}x longer)'
        if 'seq2seq' in res:
            line += f', one Seq2Seq epoch {hms(res["seq2seq"]["seconds_at_target"])}'
        print(f'RESULT scale: {target:,} utterances ({common.gb(frames * 130 * 4 * scale):.0f} GB) on {device}: {line} '
              f'[{tag}]')
        common.save_results('scale', res, args.out)
        return res
    finally:
        if tmp:
            shutil.rmtree(wd, ignore_errors=True)


if __name__ == '__main__':
    main()
