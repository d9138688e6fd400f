"""Bench 3 -- data pipeline + training step: utterances/s of the loader alone, the model step alone and
both together, for the Seq2Seq model (method 1) and MSCR (method 2), so a reader sees which one limits.

    python bench/bench_pipeline.py                                  # CPU, small sizes (~2 min on 2 cores)
    python bench/bench_pipeline.py --device cuda --s2s-utts 8192 --mscr-iters 50     # on a GPU
    python bench/bench_pipeline.py --s2s-utts 16 --s2s-batch 8 --mscr-utts 16 --mscr-batch 8 --mscr-iters 1   # smoke

Seq2Seq: a synthetic 130-d LLD store (16 ms hop, ~6 s utterances), random ranking sequences written as
EmoChunkRankSeq JSON, and the project's own pieces: seq2seq.seq2seq_datasets (target curves from
utils.generate_chunk_EmoSeq), dataloader.make_loader (DistributedSampler, PadCollate workers),
dataloader.to_chunks (22 x 62-frame chunks, one gather), seq2seq.chunk_predictions + the Seq2Seq loss,
Adam (lr 1e-3). One epoch of --s2s-utts Train utterances; validation is not timed.
MSCR: a synthetic wav2vec2-shaped audio store (1024-d, 20 ms hop) and a RoBERTa-shaped text token store
(768-d, ~1.3 tokens per word, ~2.5 words per second), dataloader.MSCRDataset + mscr_collate through
mscr.make_loader, mscr.mscr_step (forward with the multi-scale crops, MTL CCC loss, Adam), TransformerENC_CoAtten of the
published size (256-d, 4 heads, 3 self + 2 co-attention layers), Adam (lr 1e-4); --mscr-iters iterations.
For each model three numbers, each from a fresh DataLoader (worker start-up included, as in an epoch):
  loader        iterate the DataLoader and move each batch to the device (Seq2Seq: + the chunk gather)
  model         the training step repeated on one batch already in memory (--model-reps times)
  loader+model  the real training loop
If loader+model is close to model, the model limits; if close to loader, the data pipeline does.
Labels and ratings come from a stand-in corpus object (bench/common.SynthCorpus) so no WAVs are written.
"""
import argparse
import json
import shutil
import sys
import time
from argparse import Namespace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402


def rate(n, sec):
    return n / sec if sec > 0 else float('inf')


# ---------------------------------------------------------------- Seq2Seq
def random_rankseq(names, seed, K=22):
    """{name: {'ChunkRankSeq': [...]}} from random chunk scores (ties impossible)."""
    from utils import rank_desc_min
    g = np.random.default_rng(seed).standard_normal((len(names), K))
    return {n: {'ChunkRankSeq': r.tolist()} for n, r in zip(names, rank_desc_min(g))}


def seq2seq_setup(wd, n_train, seed, emo='Act', rankseq=None, store=None, fnorm=None, progress=False):
    """Synthetic store + corpus + Train dataset through seq2seq.seq2seq_datasets. Returns a dict."""
    import dataloader as D
    import norm as N
    import seq2seq as training
    from utils import atomic_write_text
    n_val = max(2, n_train // 16)
    if store is None:
        store = common.make_store(wd / 'lld', n_train + n_val, 130, 0.016, common.MSP_MEAN_SEC, seed, progress=progress)
    names = store.names
    lens = np.array([store.index[k][1] for k in names])
    corpus = common.SynthCorpus(names, lens, store.hop, splits=(('Train', n_train / len(names)),
                                                                  ('Validation', 1 - n_train / len(names))), seed=seed)
    train_names = corpus.files('Train')
    rs_dir = wd / 'EmoChunkRankSeq'
    if rankseq is None:
        rankseq = random_rankseq(train_names, seed)
    atomic_write_text(rs_dir / f'training_{emo}.json', json.dumps(rankseq))
    if fnorm is None:
        mean, std = N.norm_stats(store, train_names)
        fnorm = N.FeatNorm(mean, std, 'train', 'synthetic:Train')
    lnorm = N.label_stats(corpus, 'Train', (emo,))[emo]
    train, valid, bad = training.seq2seq_datasets(Namespace(rankseq=str(rs_dir), limit=None, seed=seed), emo, corpus,
                                                  store, fnorm, lnorm)
    return dict(store=store, corpus=corpus, train=train, valid=valid, m=D.chunk_frames(store.hop), skipped=bad)


def seq2seq_step_fn(device, amp, seed):
    """The training step of training.train_seq2seq: returns (model, step(x, lengths, curve, mu) -> loss)."""
    import seq2seq as training
    from model import LSTMnet
    from utils import make_scaler
    torch.manual_seed(seed)
    model = LSTMnet(out_dim=1).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    scaler = make_scaler(device, amp)

    def step(x, lengths, curve, mu, m):
        return training.seq2seq_step(model, opt, scaler, x, lengths, curve, mu, m, device, amp)
    return model, step


def seq2seq_loader(train, m, batch, workers, device, seed):
    import dataloader as D
    loader, sampler = D.make_loader(train, batch, D.PadCollate(m), True, workers, device, 0, 1, seed,
                                    drop_last=len(train) > batch)
    sampler.set_epoch(0)
    return loader


def seq2seq_epoch(setup, batch, workers, device, amp, seed, with_model=True):
    """One Train epoch; returns (utterances, seconds, mean loss or None)."""
    import dataloader as D
    m = setup['m']
    loader = seq2seq_loader(setup['train'], m, batch, workers, device, seed)
    _, step = seq2seq_step_fn(device, amp, seed) if with_model else (None, None)
    n, losses = 0, []
    t0 = time.perf_counter()
    for x, lengths, curve, mu, _ in loader:
        if with_model:
            losses.append(step(x, lengths, curve, mu, m))
        else:
            D.to_chunks(x, lengths, m, device)
            curve.to(device), mu.to(device)
        n += len(lengths)
    common.sync(device)
    sec = time.perf_counter() - t0
    del loader
    return n, sec, (float(np.mean(losses)) if losses else None)


def seq2seq_model_only(setup, batch, device, amp, seed, reps):
    loader = seq2seq_loader(setup['train'], setup['m'], batch, 0, device, seed)
    x, lengths, curve, mu, _ = next(iter(loader))
    _, step = seq2seq_step_fn(device, amp, seed)
    step(x, lengths, curve, mu, setup['m'])   # warm-up (allocator, autograd graph)
    common.sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        step(x, lengths, curve, mu, setup['m'])
    common.sync(device)
    return reps * len(lengths), time.perf_counter() - t0


# ---------------------------------------------------------------- MSCR
def mscr_setup(wd, n, seed, audio_dim, audio_hop, text_dim, progress=False):
    from dataloader import MSCRDataset
    from feature_store import FeatureStore, FeatureStoreWriter
    from norm import mscr_norm
    audio = common.make_store(wd / 'wav2vec2', n, audio_dim, audio_hop, common.MSP_MEAN_SEC, seed, feature='wav2vec2',
                              preset=None, model='synthetic', progress=progress)
    names = audio.names
    lens = np.array([audio.index[k][1] for k in names])
    corpus = common.SynthCorpus(names, lens, audio.hop, splits=(('Train', 1.0),), seed=seed)
    text_path = wd / 'text'
    if not (text_path / 'meta.json').exists():
        rng = np.random.default_rng(seed + 1)
        pool = rng.standard_normal((4096, text_dim), dtype=np.float32)
        with FeatureStoreWriter(text_path, 'text', text_dim, None, None, 'synthetic', flush_every=10 ** 9) as w:
            for k in names:
                T = int(round(corpus.n_words[k] * 1.3)) + 2
                o = int(rng.integers(0, len(pool) - T))
                w.add(k, pool[o:o + T])
    text = FeatureStore(text_path)
    norm = mscr_norm(corpus, audio, text, names)
    ds = MSCRDataset(corpus, 'Train', audio, text, norm, 128, seed, verbose=False)
    return dict(audio=audio, text=text, corpus=corpus, ds=ds, norm=norm, m=ds.m)


def mscr_loader(ds, batch, workers, device, seed, iters=10 ** 9):
    import mscr
    sampler = mscr.IterationBatches(len(ds), batch, iters, seed)
    return iter(mscr.make_loader(ds, batch, workers, device, sampler))


def mscr_step_fn(setup, device, amp, seed):
    import mscr
    from utils import make_scaler
    torch.manual_seed(seed)
    cfg = dict(audio_dim=setup['audio'].dim, text_dim=setup['text'].dim, hidden=256, heads=4, ff=512,
               self_layers=3, co_layers=2, dropout=0.3, max_len=128)
    model = mscr.build_model(cfg).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    scaler = make_scaler(device, amp)
    scales = mscr.parse_scales('0.2,0.4,0.6,0.8,1.0')
    return model, lambda batch: mscr.mscr_step(model, opt, scaler, batch, device, scales, amp)


def mscr_iters(setup, batch, workers, device, amp, seed, iters, with_model=True):
    stream = mscr_loader(setup['ds'], batch, workers, device, seed, iters)
    _, step = mscr_step_fn(setup, device, amp, seed) if with_model else (None, None)
    n = 0
    t0 = time.perf_counter()
    for _ in range(iters):
        b = next(stream)
        if with_model:
            step(b)
        else:
            for k in ('a', 't', 't_pad', 'y'):
                b[k].to(device, non_blocking=True)
        n += len(b['y'])
    common.sync(device)
    sec = time.perf_counter() - t0
    del stream
    return n, sec


def mscr_model_only(setup, batch, device, amp, seed, reps):
    b = next(mscr_loader(setup['ds'], batch, 0, device, seed))
    _, step = mscr_step_fn(setup, device, amp, seed)
    step(b)
    common.sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        step(b)
    common.sync(device)
    return reps * len(b['y']), time.perf_counter() - t0


def verdict(r):
    lo, mo, _both = r['loader']['utt_per_s'], r['model']['utt_per_s'], r['loader_model']['utt_per_s']
    return 'model-bound' if lo > 2 * mo else 'loader-bound' if mo > 2 * lo else 'balanced'


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--device', default='cpu', help='cpu, cuda, cuda:N or auto (default cpu)')
    p.add_argument('--amp', default='fp16', choices=['fp16', 'bf16', 'off'],
                   help='mixed precision on CUDA as in the training scripts (ignored on CPU)')
    p.add_argument('--threads', type=int, default=1, help='torch CPU threads (default 1, stable on a shared machine; '
                   '0 = torch default)')
    p.add_argument('--workers', type=int, default=2, help='DataLoader workers (the scripts\' default 2)')
    p.add_argument('--s2s-utts', type=int, default=256, help='Seq2Seq Train utterances = one epoch (default 256; '
                   'an MSP-Podcast v1.11 Train split is ~85k -- see bench_scale.py)')
    p.add_argument('--s2s-batch', type=int, default=128, help='Seq2Seq batch (published 128)')
    p.add_argument('--mscr-utts', type=int, default=None, help='utterances in the MSCR stores (default: enough for '
                   '--mscr-iters batches in one epoch, at most 2048 = ~2.5 GB; more iterations cycle epochs)')
    p.add_argument('--mscr-iters', type=int, default=3, help='MSCR training iterations timed (published run: 5000)')
    p.add_argument('--mscr-batch', type=int, default=128, help='MSCR batch (published 128)')
    p.add_argument('--mscr-audio-dim', type=int, default=1024, help='MSCR audio frame dim (wav2vec2-large: 1024; LLD 130)')
    p.add_argument('--mscr-audio-hop', type=float, default=0.02, help='MSCR audio hop in s (wav2vec2: 0.02; LLD 0.016)')
    p.add_argument('--mscr-text-dim', type=int, default=768, help='text token dim (roberta-base: 768)')
    p.add_argument('--model-reps', type=int, default=2, help='repetitions of the in-memory step for "model" (default 2)')
    p.add_argument('--skip', default='', help='comma list of parts to skip: seq2seq, mscr')
    p.add_argument('--seed', type=int, default=0, help='seed of the data and weights')
    p.add_argument('--workdir', default=None, help='folder for the synthetic stores (default: temporary, removed)')
    p.add_argument('--out', default=None, help='folder for the JSON and PNG (default bench/results and images/)')
    p.add_argument('--no-plot', action='store_true', help='do not write images/bench_pipeline.png')
    args = p.parse_args(argv)
    common.set_threads(args.threads)
    device = common.pick_device(args.device)
    info = common.machine(device)
    print(common.machine_line(info))
    skip = {s.strip() for s in args.skip.split(',') if s.strip()}
    wd, tmp = common.work_dir(args.workdir, 'bench_pipeline_')
    results = {}
    try:
        if 'seq2seq' not in skip:
            s = seq2seq_setup(wd / 's2s', args.s2s_utts, args.seed)
            n_tr = len(s['train'])
            print(f'Seq2Seq: {n_tr} Train utterances (mean {np.mean([len(s["store"].get(k)) for k in s["train"].names]) * 0.016:.1f} s),'
                  f' batch {args.s2s_batch}, {args.workers} workers, {device}')
            n, sec, _ = seq2seq_epoch(s, args.s2s_batch, args.workers, device, args.amp, args.seed, with_model=False)
            r = {'loader': dict(utts=n, seconds=sec, utt_per_s=rate(n, sec))}
            n, sec = seq2seq_model_only(s, args.s2s_batch, device, args.amp, args.seed, args.model_reps)
            r['model'] = dict(utts=n, seconds=sec, utt_per_s=rate(n, sec))
            n, sec, loss = seq2seq_epoch(s, args.s2s_batch, args.workers, device, args.amp, args.seed)
            r['loader_model'] = dict(utts=n, seconds=sec, utt_per_s=rate(n, sec), loss=loss)
            r['verdict'] = verdict(r)
            results['seq2seq'] = r
        if 'mscr' not in skip:
            n_m = args.mscr_utts or min(args.mscr_batch * args.mscr_iters, max(2048, args.mscr_batch))
            s = mscr_setup(wd / 'mscr', n_m, args.seed, args.mscr_audio_dim, args.mscr_audio_hop, args.mscr_text_dim)
            print(f'MSCR: {len(s["ds"])} Train utterances, audio {s["audio"].dim}-d at {s["audio"].hop * 1000:.0f} ms, '
                  f'text {s["text"].dim}-d, batch {args.mscr_batch}, {args.mscr_iters} iterations, {args.workers} workers, {device}')
            bs = min(args.mscr_batch, len(s['ds']))
            n, sec = mscr_iters(s, bs, args.workers, device, args.amp, args.seed, args.mscr_iters, with_model=False)
            r = {'loader': dict(utts=n, seconds=sec, utt_per_s=rate(n, sec))}
            n, sec = mscr_model_only(s, bs, device, args.amp, args.seed, args.model_reps)
            r['model'] = dict(utts=n, seconds=sec, utt_per_s=rate(n, sec))
            n, sec = mscr_iters(s, bs, args.workers, device, args.amp, args.seed, args.mscr_iters)
            r['loader_model'] = dict(utts=n, seconds=sec, utt_per_s=rate(n, sec), iters_per_s=args.mscr_iters / sec)
            r['verdict'] = verdict(r)
            results['mscr'] = r
        for k, r in results.items():
            print(f'{k:8s} utterances/s: loader {common.fmt_rate(r["loader"]["utt_per_s"]):>8} | model step '
                  f'{common.fmt_rate(r["model"]["utt_per_s"]):>8} | loader+model {common.fmt_rate(r["loader_model"]["utt_per_s"]):>8}'
                  f'  -> {r["verdict"]}')
        line = '; '.join(f'{k} loader {common.fmt_rate(r["loader"]["utt_per_s"])} vs loader+model '
                         f'{common.fmt_rate(r["loader_model"]["utt_per_s"])} utt/s '
                         f'(x{r["loader"]["utt_per_s"] / r["loader_model"]["utt_per_s"]:.1f}, {r["verdict"]})'
                         for k, r in results.items())
        print(f'RESULT pipeline: {line} [{device}, {torch.get_num_threads()} threads, {args.workers} workers]')
        res = dict(machine=info, device=str(device), amp=args.amp if device.type == 'cuda' else 'off',
                   workers=args.workers, s2s_batch=args.s2s_batch, mscr_batch=args.mscr_batch,
                   mscr_iters=args.mscr_iters, mscr_audio_dim=args.mscr_audio_dim, **results)
        common.save_results('pipeline', res, args.out)
        if not args.no_plot and results:
            plt = common.plt_agg()
            fig, ax = plt.subplots(figsize=(6.5, 3))
            keys = ['loader', 'model', 'loader_model']
            w = 0.25
            for i, k in enumerate(keys):
                vals = [results[m][k]['utt_per_s'] for m in results]
                ax.bar(np.arange(len(results)) + (i - 1) * w, vals, w, label=k.replace('_', '+'),
                       color=['tab:blue', 'tab:orange', 'tab:green'][i])
            ax.set_xticks(np.arange(len(results)), [f'{m} ({results[m]["verdict"]})' for m in results])
            ax.set_yscale('log')
            ax.set_ylabel('utterances / s (log)')
            ax.set_title(f'Training data path vs step, {device}, {torch.get_num_threads()} thread(s), '
                         f'{args.workers} workers', fontsize=9)
            ax.legend(fontsize=8)
            fig.tight_layout()
            common.save_png(fig, 'pipeline', args.out and Path(args.out))
        return res
    finally:
        if tmp:
            shutil.rmtree(wd, ignore_errors=True)


if __name__ == '__main__':
    main()
