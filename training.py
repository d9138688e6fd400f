"""Train the Seq2Seq SER model of method 1 (SPEC §4), or the MSCR model of method 2 with --model mscr.

    python training.py -ep 30 -batch 128 -emo Val
    python training.py -emo all --corpus ROOT --features features/ROOT/lld
    python training.py -emo Act --init-from ../Chunk-Level-Emotion-Retrieval --freeze lstm -ep 10 --lr 1e-4
    torchrun --nproc_per_node 4 training.py -ep 30 -batch 128 -emo Act
    python training.py --model mscr --audio-feature lld                   (method 2; flags: the MSCR group)

Seq2Seq: every utterance is cut into 22 dynamic chunks of one second (m = 1 s / hop frames); a 2-layer
LSTM predicts each chunk, the utterance prediction is the chunk mean. Targets: mu and population std of
the utterance's annotator ratings and its ranking sequence (EmoChunkRankSeq/training_<Emo>.json from
generate_ranking_seqence.py) give the target curve (utils.generate_chunk_EmoSeq); both are
z-normalised with the label statistics. Loss 0.5(1 - CCC(utterance, mu)) + 0.5(1 - CCC(chunks, curve)),
Adam lr 1e-3. Validation: utterance CCC loss against the consensus labels; the best epoch is kept in
trained_seq2seq_model/LSTM_epoch{ep}_batch{batch}_EmoRankerSeq_{Emo}.pth.tar (plain state_dict with
the published names, written atomically) + .meta.json (init-from, freeze, feature preset, hop,
normalisation with its statistics) + .resume.pt (each epoch; --resume) + .log.csv + .loss.png.
Features: the LLD FeatureStore (features/<corpus>/lld by default); when it is missing the script stops
and prints the extract_features.py command to run (extraction is a separate, resumable step).
Normalisation: --feature-norm/--label-norm (see dataloader.py); default 'train', or 'published' with
--init-from DIR (the authors' repository: its NormTerm), which the published weights expect.
-batch is the global batch (split over DDP processes).
MSCR (--model mscr): the flags of the "MSCR" group below; a flag that does not apply to the chosen --model
is an error (docs/mscr.md).
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import cli
import dataloader as D
import mscr
from utils import EMO_COL, ccc, ccc_loss, ddp_cleanup, ddp_setup, generate_chunk_EmoSeq, parse_emos, set_seed, unwrap


def build_parser(desc=__doc__, train=True):
    """The shared parser of training.py and testing.py (train=False leaves out the training-only flags)."""
    p = argparse.ArgumentParser(description=desc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--model', default='seq2seq', choices=['seq2seq', 'mscr'],
                   help='seq2seq: method 1 (LLD chunks, ranker curves); mscr: method 2 (audio-text, mscr.py)')
    p.add_argument('-ep', '--epochs', type=int, default=30,
                   help='training epochs (published: 30)' if train else 'epochs in the checkpoint name (published: 30)')
    p.add_argument('-batch', '--batch_size', type=int, default=128,
                   help='utterances per step (published: 128)' if train else
                   'batch in the checkpoint name (published: 128); also utterances per forward pass')
    p.add_argument('-emo', '--emo_attr', default=None, help='Act, Dom, Val or all (required for seq2seq)')
    D.add_data_args(p)
    D.add_norm_args(p)
    if not train:
        p.add_argument('--checkpoint', default=None, help="Seq2Seq checkpoint file or folder ('{emo}' is replaced)")
        return p  # testing.py adds its flags, then cli.add_mscr_args(p, train=False)
    p.add_argument('--checkpoint', default=None, help="output checkpoint file (default OUT/<published name>; "
                   "'{emo}' is replaced by the attribute)")
    p.add_argument('--lr', type=float, default=None, help='Adam learning rate (seq2seq default 1e-3)')
    p.add_argument('--resume', action='store_true', help='continue the interrupted run from its .resume.pt')
    s = p.add_argument_group('Seq2Seq (--model seq2seq)')
    s.add_argument('--rankseq', default=str(D.RANKSEQ_DIR), help='folder of the ranking sequences (training_<Emo>.json)')
    s.add_argument('--out', default=str(D.SEQ2SEQ_DIR), help='output folder for the checkpoint and its logs')
    s.add_argument('--init-from', default=None, help="start from these weights: a Seq2Seq checkpoint file, or a "
                   "folder (the authors' repository root: its v1.6 model and NormTerm)")
    s.add_argument('--freeze', default=None, choices=['lstm'],
                   help='lstm: train only fc1/fc2; the LSTM weights stay bit-identical (and run in eval mode)')
    cli.add_mscr_args(p, train=True)
    return p


def parse(parser, argv=None):
    """Parse the command line; a flag that does not apply to --model is an error.
    -> (args, the mscr module with --model mscr, else None)."""
    args = parser.parse_args(argv)
    cli.check_model_flags(parser, args)
    return args, mscr if args.model == 'mscr' else None


# ============================================================================ Seq2Seq
def seq2seq_datasets(args, emo, corpus, store, fnorm, lnorm):
    """Train: (features, target curve z (22,), mu z); Validation: (features, consensus z)."""
    lm, ls = lnorm
    path = Path(args.rankseq) / f'training_{emo}.json'
    if not path.exists():
        D.die(f'no ranking sequences {path}; make them with\n  python chunk_emotion_rankers/generate_ranking_seqence.py '
              f'-emo {emo} -set Train  (or pass --rankseq DIR)')
    rank = json.loads(path.read_text())
    ratings = corpus.rating_lists(emo, 'Train')
    names, bad = [], []
    for n in corpus.files('Train'):
        why = ('no features' if n not in store else 'no ranking sequence' if n not in rank else
               'no annotator ratings' if n not in ratings else
               'ranking sequence is not 22 long' if len(rank[n]['ChunkRankSeq']) != D.K_CHUNKS else None)
        (bad.append((n, why)) if why else names.append(n))
    names = D.limit_names(names, args.limit, args.seed)
    if not names:
        D.die(f'no usable Train utterance for {emo} ({len(bad)} skipped, e.g. {bad[:1]})')
    mu = np.array([ratings[n].mean() for n in names])
    sd = np.array([ratings[n].std() for n in names])           # population std of the annotators
    curves = np.stack([generate_chunk_EmoSeq(a, b, rank[n]['ChunkRankSeq']) for a, b, n in zip(mu, sd, names)])
    train = D.UtteranceDataset(store, names, fnorm, [(curves - lm) / ls, (mu - lm) / ls])
    col = corpus.labels.set_index('FileName')[EMO_COL[emo]]
    vnames = [n for n in corpus.files('Validation') if n in store and np.isfinite(col.get(n, np.nan))]
    vnames = D.limit_names(vnames, args.limit, args.seed)
    if len(vnames) < 2:
        D.die(f'{corpus.consensus_path}: fewer than 2 Validation utterances with features and {EMO_COL[emo]} labels')
    valid = D.UtteranceDataset(store, vnames, fnorm, [(col.loc[vnames].to_numpy(np.float64) - lm) / ls])
    return train, valid, bad


def chunk_predictions(model, x, lengths, m, device):
    chunks = D.to_chunks(x, lengths, m, device)                  # (B, K, m, D)
    return model(chunks.flatten(0, 1)).view(chunks.shape[0], chunks.shape[1])


@torch.no_grad()
def predict(model, loader, m, device, amp, world=1, desc='', show=True):
    """{dataset index: (utterance prediction, 22 chunk predictions)} in normalised units."""
    model.eval()
    out = {}
    for x, lengths, *_, idx in tqdm(loader, desc=desc, leave=False, disable=not show, dynamic_ncols=True):
        with D.amp_context(device, amp):
            pred = chunk_predictions(model, x, lengths, m, device).float().cpu().numpy()
        out.update({int(i): (p.mean(), p) for i, p in zip(idx, pred)})
    return D.gather_eval(out, world)


def seq2seq_step(net, opt, scaler, x, lengths, curve, mu, m, device, amp):
    """One optimiser step: loss = 0.5 (1 - CCC(utterance means, mu)) + 0.5 (1 - CCC(chunks, curves))."""
    with D.amp_context(device, amp):
        pred = chunk_predictions(net, x, lengths, m, device)
    curve, mu = curve.to(device), mu.to(device)
    loss = 0.5 * ccc_loss(pred.float().mean(1), mu) + 0.5 * ccc_loss(pred.float(), curve)
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    return loss.item()


def train_seq2seq(args, emo, corpus, store, rank, world, device, is_main):
    set_seed(args.seed)
    lr = args.lr or 1e-3
    m = D.chunk_frames(store.hop)
    pub = D.published_dir_of(args.init_from)
    init_meta = {}
    if args.init_from:
        src = D.find_checkpoint(args.init_from, 'seq2seq', emo, args.epochs, args.batch_size)
        init_meta = D.read_meta(src)
        model = D.load_lstm(src, 'seq2seq')
        if pub:
            D.require_preset(store, D.PUBLISHED_PRESET, "the authors' released models (--init-from)")
    else:
        from model import LSTMnet
        model, src = LSTMnet(out_dim=1), None
    fscope, lscope, fdir, ldir = D.default_scopes(args, init_meta if not pub else None, pub)
    fnorm = D.build_feat_norm(fscope, store, corpus, fdir, init_meta if fscope == 'published' else None)
    lnorm = D.label_norm(lscope, emo, corpus, ldir, init_meta if lscope == 'published' else None)
    train, valid, bad = seq2seq_datasets(args, emo, corpus, store, fnorm, lnorm)
    if args.freeze == 'lstm':
        for p_ in model.lstm.parameters():
            p_.requires_grad_(False)
    model.to(device)
    per_rank = max(1, args.batch_size // world)
    collate = D.PadCollate(m)
    tr_loader, tr_sampler = D.make_loader(train, per_rank, collate, True, args.workers, device, rank, world, args.seed,
                                          drop_last=len(train) > per_rank * world)
    va_loader, _ = D.make_loader(valid, per_rank, collate, False, args.workers, device, rank, world, args.seed)
    opt = torch.optim.Adam([p_ for p_ in model.parameters() if p_.requires_grad], lr=lr)
    scaler = D.make_scaler(device, args.amp)
    ckpt = Path(args.checkpoint.replace('{emo}', emo)) if args.checkpoint else \
        Path(args.out) / D.seq2seq_name(args.epochs, args.batch_size, emo)
    run = D.Run(ckpt, ['epoch', 'train_loss', 'val_loss', 'val_ccc', 'seconds'], is_main, args.resume)
    start, best, best_ep = 0, float('inf'), -1
    if args.resume:
        start, best, best_ep = run.load_state(model, opt, scaler)
        print(f'{emo}: resuming at epoch {start} (best validation CCC loss {best:.4f} at epoch {best_ep})')
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == 'cuda' else None)
    if is_main:
        print(f'{emo}: {len(train)} train / {len(valid)} validation utterances ({len(bad)} Train skipped), '
              f'm={m} x {D.K_CHUNKS} chunks, {device}, lr {lr}, feature norm {fscope}, label norm {lscope} '
              f'{tuple(round(v, 4) for v in lnorm)}' + (f', init {src}' if src else '') +
              (', LSTM frozen' if args.freeze else '') + f' -> {ckpt}')
    for ep in range(start, args.epochs):
        t0 = time.time()
        tr_sampler.set_epoch(ep)
        net.train()
        if args.freeze == 'lstm':
            unwrap(net).lstm.eval()
        losses = []
        for x, lengths, curve, mu, _ in tqdm(tr_loader, desc=f'{emo} ep{ep}', leave=False, disable=not is_main,
                                              dynamic_ncols=True):
            losses.append(seq2seq_step(net, opt, scaler, x, lengths, curve, mu, m, device, args.amp))
        preds = predict(net, va_loader, m, device, args.amp, world, f'{emo} valid', is_main)
        vp = np.array([preds[i][0] for i in range(len(valid))])
        vccc = ccc(vp, valid.targets[0])
        vloss, tloss = 1 - vccc, float(np.mean(losses)) if losses else float('nan')
        improved = vloss < best
        if improved:
            best, best_ep = vloss, ep
            meta = {**D.base_meta(args, store, m, emo, 'seq2seq'), 'lr': lr, **fnorm.to_meta(),
                    'label_norm': lscope, 'label_mean': lnorm[0], 'label_std': lnorm[1],
                    'label_norm_source': ldir or f'{corpus.name}:Train consensus',
                    'init_from': str(Path(src).resolve()) if src else None, 'best_epoch': ep, 'val_ccc': vccc,
                    'train_utterances': len(train), 'val_utterances': len(valid)}
            run.save_best(model, meta)
        run.save_state(model, opt, scaler, ep, best, best_ep)
        run.log(epoch=ep, train_loss=tloss, val_loss=vloss, val_ccc=vccc, seconds=round(time.time() - t0, 1))
        if is_main:
            print(f'{emo} epoch {ep}: train loss {tloss:.4f} | valid CCC {vccc:.4f} (loss {vloss:.4f})'
                  f'{"  * saved" if improved else ""} ({time.time() - t0:.0f} s)')
    if is_main:
        print(f'{emo}: best validation CCC {1 - best:.4f} at epoch {best_ep}: {ckpt}')
    return ckpt


def main(argv=None):
    args, mscr = parse(build_parser(), argv)
    if mscr is not None:
        return mscr.train_mscr(args)
    if not args.emo_attr:
        D.die('-emo is required for the Seq2Seq model (Act, Dom, Val or all)')
    emos = parse_emos(args.emo_attr)
    rank, world, device, is_main = ddp_setup(args.device)
    try:
        corpus = D.open_corpus(args.corpus)
        store = D.open_store(args.features, corpus)
        return [train_seq2seq(args, emo, corpus, store, rank, world, device, is_main) for emo in emos]
    finally:
        ddp_cleanup()


if __name__ == '__main__':
    main()
