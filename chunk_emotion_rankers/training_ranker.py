"""Train the chunk emotion ranker of one attribute (SPEC §4).

    python chunk_emotion_rankers/training_ranker.py -ep 20 -batch 128 -emo Act
    python chunk_emotion_rankers/training_ranker.py -ep 5 -emo all --init-from ../Chunk-Level-Emotion-Retrieval
    torchrun --nproc_per_node 4 chunk_emotion_rankers/training_ranker.py -ep 20 -batch 128 -emo Act

A siamese LSTMnet f (out 2): for a preference pair both utterances are cut into 22 dynamic chunks,
chunk k of one is paired with chunk k of the other, and CE(f(x1_k) - f(x2_k), pair label) is minimised.
Each epoch draws --pairs-per-epoch (100k) pairs of preference_labels/training_<Emo>.csv; validation
uses a fixed seeded subset of as many pairs of validation_<Emo>.csv; the epoch with the best
validation macro-F1 (chunk level) is kept. Adam lr 1e-4. Output:
trained_ranker_model/LSTM_epoch{ep}_batch{batch}_{Emo}_ranker.pth.tar (plain state_dict, published
names) + .meta.json (init-from, feature preset, hop, normalisation) + .resume.pt + .log.csv + .loss.png.
-batch is the global number of utterance pairs per step (split over DDP processes).
"""
import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

import dataloader as D  # noqa: E402
from utils import ddp_cleanup, ddp_setup, parse_emos, set_seed  # noqa: E402


def get_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('-ep', '--epochs', type=int, default=20, help='training epochs (published: 20)')
    p.add_argument('-batch', '--batch_size', type=int, default=128, help='utterance pairs per step (published: 128)')
    p.add_argument('-emo', '--emo_attr', required=True, help='Act, Dom, Val or all')
    D.add_data_args(p)
    D.add_norm_args(p)
    p.add_argument('--pairs', default=str(D.PREF_DIR), help='folder of the preference-label CSVs')
    p.add_argument('--out', default=str(D.RANKER_DIR), help='output folder for the checkpoint and its logs')
    p.add_argument('--checkpoint', default=None, help="output checkpoint file (default OUT/<published name>; "
                   "'{emo}' is replaced by the attribute)")
    p.add_argument('--init-from', default=None, help="start from these weights: a ranker checkpoint file, or a folder "
                   "(the authors' repository root: its v1.6 ranker and NormTerm are used)")
    p.add_argument('--freeze', default=None, choices=['lstm'], help='train only fc1/fc2 (LSTM weights stay fixed)')
    p.add_argument('--lr', type=float, default=1e-4, help='Adam learning rate (published: 1e-4)')
    p.add_argument('--pairs-per-epoch', type=int, default=100_000, help='pairs drawn per epoch (and validation pairs)')
    p.add_argument('--resume', action='store_true', help='continue the interrupted run from its .resume.pt')
    return p.parse_args(argv)


def load_pairs(path, store, limit=None, seed=0):
    """Pair CSV -> (names, idx1, idx2, labels) restricted to utterances in the feature store."""
    path = Path(path)
    if not path.exists():
        split = {v: k for k, v in D.SPLIT_FILE.items()}.get(path.stem.split('_')[0], 'Train')
        emo = path.stem.split('_')[-1]
        D.die(f'no preference labels {path}; generate them with\n  python chunk_emotion_rankers/'
              f'generate_preference_labels.py -emo {emo} -set {split}')
    try:
        df = pd.read_csv(path, dtype={'Sentence1': 'category', 'Sentence2': 'category', 'PreferLabel': 'int8'})
    except Exception as e:
        D.die(f'{path}: cannot read the pair table ({e}); expected columns Sentence1,Sentence2,PreferLabel')
    names = sorted(set(df['Sentence1'].cat.categories) | set(df['Sentence2'].cat.categories))
    a = pd.Categorical(df['Sentence1'], categories=names).codes
    b = pd.Categorical(df['Sentence2'], categories=names).codes
    ok = np.array([n in store for n in names], bool)
    keep = ok[a] & ok[b]
    if not keep.all():
        print(f'note: {int((~keep).sum())} of {len(keep)} pairs in {path.name} use utterances missing from the '
              f'feature store {store.path}; skipped')
    a, b, lab = a[keep], b[keep], df['PreferLabel'].to_numpy()[keep]
    if limit and len(lab) > limit:
        sel = np.sort(np.random.default_rng(seed).choice(len(lab), limit, replace=False))
        a, b, lab = a[sel], b[sel], lab[sel]
    if len(lab) == 0:
        D.die(f'{path}: no usable pairs')
    return names, a, b, lab


def pair_logits(model, x, lengths, m, device):
    """Padded (2B, T, D) batch [utterances 1; utterances 2] -> f(x1_k) - f(x2_k): (B, K, 2)."""
    chunks = D.to_chunks(x, lengths, m, device)              # (2B, K, m, D)
    out = model(chunks.flatten(0, 1)).view(2, -1, chunks.shape[1], 2)
    return out[0] - out[1]


def macro_f1(conf):
    """conf[true, pred] (2x2 counts) -> (macro-F1, accuracy)."""
    conf = np.asarray(conf, np.float64)
    f1 = [2 * conf[c, c] / d if (d := conf[c].sum() + conf[:, c].sum()) > 0 else 0.0 for c in range(2)]
    return float(np.mean(f1)), float(np.trace(conf) / max(conf.sum(), 1))


def run_epoch(model, loader, m, device, amp, opt=None, scaler=None, desc='', show=True):
    """One pass; trains when `opt` is given. Returns (mean CE, confusion matrix counts 2x2) over all ranks."""
    train = opt is not None
    model.train(train)
    loss_sum, n, conf = torch.zeros((), device=device), 0, torch.zeros(2, 2, dtype=torch.long, device=device)
    with torch.set_grad_enabled(train):
        for x, lengths, y, in tqdm(loader, desc=desc, leave=False, disable=not show, dynamic_ncols=True):
            with D.amp_context(device, amp):
                d = pair_logits(model, x, lengths, m, device)
            y = y.to(device).long()[:, None].expand(-1, d.shape[1])
            loss = torch.nn.functional.cross_entropy(d.float().flatten(0, 1), y.flatten())
            if train:
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            loss_sum += loss.detach() * y.numel()
            n += y.numel()
            conf += torch.bincount(2 * y.flatten() + d.argmax(-1).flatten(), minlength=4).view(2, 2)
    stats = torch.cat([loss_sum.view(1).double(), torch.tensor([n], device=device, dtype=torch.double),
                       conf.flatten().double()])
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(stats)
    return float(stats[0] / max(stats[1], 1)), stats[2:].view(2, 2).cpu().numpy()


def init_model(args, emo, device):
    if args.init_from:
        src = D.find_checkpoint(args.init_from, 'ranker', emo, args.epochs, args.batch_size)
        model = D.load_lstm(src, 'ranker')
        print(f'{emo}: ranker initialised from {src}')
    else:
        from model import LSTMnet
        model, src = LSTMnet(out_dim=2), None
    if args.freeze == 'lstm':
        for p_ in model.lstm.parameters():
            p_.requires_grad_(False)
    return model.to(device), src


def train_one(args, emo, corpus, store, rank, world, device, is_main):
    set_seed(args.seed)
    m = D.chunk_frames(store.hop)
    pub = D.published_dir_of(args.init_from)
    fscope, _, fdir, _ = D.default_scopes(args, published_dir=pub)
    fnorm = D.build_feat_norm(fscope, store, corpus, fdir)
    data = {}
    for split in ('Train', 'Validation'):
        names, a, b, lab = load_pairs(Path(args.pairs) / f'{D.SPLIT_FILE[split]}_{emo}.csv', store, args.limit, args.seed)
        data[split] = D.PairDataset(store, names, a, b, lab, fnorm)
    per_rank = max(1, args.batch_size // world)
    collate = D.PadCollate(m, n_feats=2)
    tr_sampler = D.EpochSubsetSampler(len(data['Train']), args.pairs_per_epoch, rank, world, args.seed)
    va_sampler = D.EpochSubsetSampler(len(data['Validation']), args.pairs_per_epoch, rank, world, args.seed + 1)
    mk = lambda ds, s: torch.utils.data.DataLoader(ds, per_rank, sampler=s, num_workers=args.workers,
                                                   collate_fn=collate, pin_memory=device.type == 'cuda',
                                                   persistent_workers=args.workers > 0,
                                                   generator=torch.Generator().manual_seed(args.seed))
    tr_loader, va_loader = mk(data['Train'], tr_sampler), mk(data['Validation'], va_sampler)

    model, src = init_model(args, emo, device)
    params = [p_ for p_ in model.parameters() if p_.requires_grad]
    opt = torch.optim.Adam(params, lr=args.lr)
    scaler = D.make_scaler(device, args.amp)
    ckpt = Path(args.checkpoint.replace('{emo}', emo)) if args.checkpoint else \
        Path(args.out) / D.ranker_name(args.epochs, args.batch_size, emo)
    run = D.Run(ckpt, ['epoch', 'train_loss', 'val_loss', 'train_f1', 'val_f1', 'val_acc', 'seconds'], is_main, args.resume)
    start, best, best_ep = 0, -1.0, -1
    if args.resume:
        start, best, best_ep = run.load_state(model, opt, scaler)
        print(f'{emo}: resuming at epoch {start} (best val macro-F1 {best:.4f} at epoch {best_ep})')
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == 'cuda' else None)
    if is_main:
        print(f'{emo}: {len(data["Train"])} train / {len(data["Validation"])} validation pairs, '
              f'{min(args.pairs_per_epoch, len(data["Train"]))} per epoch, m={m} frames x {D.K_CHUNKS} chunks, '
              f'{device}, feature norm {fscope} -> {ckpt}')
    for ep in range(start, args.epochs):
        t0 = time.time()
        tr_sampler.set_epoch(ep)
        tl, tconf = run_epoch(net, tr_loader, m, device, args.amp, opt, scaler, f'{emo} ep{ep} train', is_main)
        vl, vconf = run_epoch(net, va_loader, m, device, args.amp, desc=f'{emo} ep{ep} valid', show=is_main)
        (tf1, _), (vf1, vacc) = macro_f1(tconf), macro_f1(vconf)
        improved = vf1 > best
        if improved:
            best, best_ep = vf1, ep
            meta = {**D.base_meta(args, store, m, emo, 'ranker'), **fnorm.to_meta(), 'init_from': str(src) if src else None,
                    'best_epoch': ep, 'val_macro_f1': vf1, 'val_acc': vacc, 'train_pairs': len(data['Train']),
                    'val_pairs': len(data['Validation'])}
            run.save_best(model, meta)
        run.save_state(model, opt, scaler, ep, best, best_ep)
        run.log(epoch=ep, train_loss=tl, val_loss=vl, train_f1=tf1, val_f1=vf1, val_acc=vacc, seconds=round(time.time() - t0, 1))
        if is_main:
            print(f'{emo} epoch {ep}: train CE {tl:.4f} F1 {tf1:.4f} | valid CE {vl:.4f} F1 {vf1:.4f} acc {vacc:.4f}'
                  f'{"  * saved" if improved else ""} ({time.time() - t0:.0f} s)')
    if is_main:
        print(f'{emo}: best validation macro-F1 {best:.4f} at epoch {best_ep}: {ckpt}')
    return ckpt


def main(argv=None):
    args = get_args(argv)
    rank, world, device, is_main = ddp_setup(args.device)
    try:
        corpus = D.open_corpus(args.corpus)
        store = D.open_store(args.features, corpus)
        return [train_one(args, emo, corpus, store, rank, world, device, is_main) for emo in parse_emos(args.emo_attr)]
    finally:
        ddp_cleanup()


if __name__ == '__main__':
    main()
