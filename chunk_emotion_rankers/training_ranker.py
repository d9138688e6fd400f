"""Train the chunk emotion ranker of one attribute (docs/method1.md, "Rankers").

    python chunk_emotion_rankers/training_ranker.py -ep 20 -batch 128 -emo Act
    python chunk_emotion_rankers/training_ranker.py -ep 5 -emo all --init-from ../Chunk-Level-Emotion-Retrieval
    torchrun --nproc_per_node 4 chunk_emotion_rankers/training_ranker.py -ep 20 -batch 128 -emo Act

A siamese LSTMnet f (out 2): for a preference pair both utterances are cut into 22 dynamic chunks,
chunk k of one is paired with chunk k of the other, and CE(f(x1_k) - f(x2_k), pair label) is minimised.
Each epoch draws --pairs-per-epoch (100k) pairs of preference_labels/training_<Emo>.csv; validation
uses a fixed seeded subset of as many pairs of validation_<Emo>.csv; the epoch with the best
validation macro-F1 (chunk level) is kept. Adam lr 1e-4. Output:
trained_ranker_model/LSTM_epoch{ep}_batch{batch}_{Emo}_ranker.pth.tar (plain state_dict, published
names) + its provenance record .meta.json (checkpoints.py) + .resume.pt (--resume refuses changed settings)
+ .log.csv + .loss.png.
-batch is the global number of utterance pairs per step (split over DDP processes); at most --max-chunks chunks
go through the LSTM at once (the step's gradients accumulated over parts of the batch), and validation runs each
utterance once per epoch however many pairs it is in.
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
import interrupts  # noqa: E402
import norm as N  # noqa: E402
from dataloader import K_CHUNKS, EpochSubsetSampler, GroupedPairSampler, PadCollate, PairDataset, chunk_frames  # noqa: E402
from outputs import check_outputs  # noqa: E402
from ranker import load_pairs, macro_f1, run_epoch  # noqa: E402
from utils import ddp_cleanup, ddp_setup, make_scaler, parse_emos, seed_rank, set_seed  # noqa: E402


def get_args(argv=None):
    p = cli.parser(__doc__)
    cli.add_run_args(p, 20, 128, batch_help='utterance pairs per step')
    cli.add_data_args(p)
    cli.add_layer_sum_arg(p)
    cli.add_max_chunks_arg(p)
    cli.add_patience_arg(p, 'macro-F1')
    cli.add_norm_args(p, labels=False)
    p.add_argument('--pairs', default=str(cli.PREF_DIR), help='folder of the preference-label CSVs')
    p.add_argument('--out', default=str(C.RANKER_DIR), help='output folder for the checkpoint and its logs')
    p.add_argument('--checkpoint', default=None, help="output checkpoint file (default OUT/<published name>; "
                   "'{emo}' is replaced by the attribute)")
    p.add_argument('--init-from', default=None, help="start from these weights: a ranker checkpoint file or folder, "
                   "or the authors' repository root (its v1.6 ranker and NormTerm)")
    p.add_argument('--freeze', default=None, choices=['lstm'], help='train only fc1/fc2 (LSTM weights stay fixed)')
    p.add_argument('--lr', type=cli.positive_float, default=1e-4, help='Adam learning rate (published: 1e-4)')
    p.add_argument('--pairs-per-epoch', type=cli.positive_int, default=100_000, help='pairs drawn per epoch (and validation pairs)')
    p.add_argument('--pair-sampling', choices=['uniform', 'grouped'], default='uniform',
                   help="how an epoch's training pairs are drawn: uniform = a random subset of the pairs (published); "
                        "grouped = pairs whose two utterances fall into the same random group of utterances (a fresh "
                        "grouping every epoch), so that a step's pairs share utterances and each utterance runs through "
                        "the LSTM once for all its pairs in the step: about 3x less work per pair on the demo "
                        "(docs/method1.md, 'Grouped pair sampling')")
    p.add_argument('--resume', action='store_true', help='continue the interrupted run from its .resume.pt '
                   '(with the same settings: every flag that changes the result, the NormTerm, the preference labels, '
                   'corpus, features and checkpoint path are compared)')
    p.add_argument('--overwrite', action='store_true', help='replace the files of an earlier run with the same '
                   'checkpoint name (refused without it)')
    return p.parse_args(argv)


def train_one(args, emo, corpus, store, rank, world, device, is_main):
    set_seed(args.seed, args.threads)
    m = chunk_frames(store.hop)
    model, init = C.start_model(args, 'ranker', emo, store)
    ckpt = Path(args.checkpoint.replace('{emo}', emo)) if args.checkpoint else \
        Path(args.out) / C.ranker_name(args.epochs, args.batch_size, emo)
    if init is not None:   # fine-tuning must not write over the model it starts from
        check_outputs([(ckpt, '--checkpoint' if args.checkpoint else '--out')],
                      [(init.path, 'the --init-from model'), (C.sibling(init.path, '.meta.json'), 'its record')])
    fnorm, _, _ = N.training_norm(args.feature_norm, None, store, corpus, args.norm, init, ())
    data = {}
    for split in ('Train', 'Validation'):
        names, a, b, lab = load_pairs(Path(args.pairs) / f'{cli.SPLIT_FILE[split]}_{emo}.csv', store, args.limit, args.seed)
        data[split] = PairDataset(store, names, a, b, lab, fnorm)
    per_rank = max(1, args.batch_size // world)
    collate = PadCollate(m, n_feats=2)
    if args.pair_sampling == 'grouped':
        tr = data['Train']
        group = GroupedPairSampler.group_size(len(tr.names), len(tr), args.batch_size, args.max_chunks // K_CHUNKS)
        tr_sampler = GroupedPairSampler(tr.idx1, tr.idx2, len(tr.names), args.pairs_per_epoch, group, rank, world,
                                        args.seed)
    else:
        tr_sampler = EpochSubsetSampler(len(data['Train']), args.pairs_per_epoch, rank, world, args.seed)
    va_sampler = EpochSubsetSampler(len(data['Validation']), args.pairs_per_epoch, rank, world, args.seed + 1)
    mk = lambda ds, s: torch.utils.data.DataLoader(ds, per_rank, sampler=s, num_workers=args.workers,
                                                   collate_fn=collate, pin_memory=device.type == 'cuda',
                                                   persistent_workers=args.workers > 0,
                                                   generator=torch.Generator().manual_seed(args.seed))
    tr_loader, va_loader = mk(data['Train'], tr_sampler), mk(data['Validation'], va_sampler)

    model.to(device)
    seed_rank(args.seed, rank)      # per-rank dropout masks under DDP
    params = [p_ for p_ in model.parameters() if p_.requires_grad]
    opt = torch.optim.Adam(params, lr=args.lr)
    scaler = make_scaler(device, args.amp)
    settings = {'epochs': args.epochs, 'batch': args.batch_size, 'lr': args.lr, 'seed': args.seed, 'freeze': args.freeze,
                'init_from': C.display_path(args.init_from) if args.init_from else None,
                'feature_norm': args.feature_norm, 'limit': args.limit, 'amp': args.amp,
                'pairs_per_epoch': args.pairs_per_epoch, 'fold': args.fold, 'layer_sum': args.layer_sum,
                'max_chunks': args.max_chunks,
                **({'pair_sampling': args.pair_sampling} if args.pair_sampling != 'uniform' else {}),
                **({'patience': args.patience} if args.patience else {})}
    resume = {**{k: v for k, v in settings.items() if k not in ('epochs', 'patience')}, 'emo': emo,
              'pair_sampling': args.pair_sampling,     # compared on --resume even where the record omits 'uniform'
              'norm_sha256': C.sha256_folder(args.norm, C.NORMTERM_FILES) if args.norm else None,
              'pairs_sha256': [C.sha256_file(Path(args.pairs) / f'{cli.SPLIT_FILE[s]}_{emo}.csv')
                               for s in ('Train', 'Validation')],
              'corpus': C.display_path(corpus.root), 'features': C.display_path(store.path),
              'checkpoint': C.display_path(ckpt)}
    run = C.Run(ckpt, ['epoch', 'train_loss', 'val_loss', 'train_f1', 'val_f1', 'val_acc'], is_main,
                args.resume, resume, args.overwrite)
    try:    # the run's files stay locked until it ends
        return train_epochs(args, emo, run, model, opt, scaler, world, device, is_main, m, data, init, fnorm,
                            {**C.make_record('ranker', [emo], store, m, K_CHUNKS, fnorm.record(), None, corpus,
                                             {'Train pairs': len(data['Train']),
                                              'Validation pairs': len(data['Validation'])}, init, settings),
                             'trained_on': identity.trained_on(corpus, store, corpus.files('Train')
                                                               + corpus.files('Validation'))},
                            tr_sampler, tr_loader, va_loader)
    finally:
        run.close()


def train_epochs(args, emo, run, model, opt, scaler, world, device, is_main, m, data, init, fnorm, record, tr_sampler,
                 tr_loader, va_loader):
    ckpt = run.ckpt
    net, start, best, best_ep = run.start(model, opt, scaler, args.resume, world, device, emo, -1.0)
    if is_main:
        print(f'{emo}: {len(data["Train"])} train / {len(data["Validation"])} validation pairs, '
              f'{min(args.pairs_per_epoch, len(data["Train"]))} per epoch, m={m} frames x {K_CHUNKS} chunks, '
              f'{device}, feature norm {fnorm.describe()} -> {ckpt}')
    for ep in range(start, args.epochs):
        t0 = time.time()
        tr_sampler.set_epoch(ep)
        tl, tconf = run_epoch(net, tr_loader, m, device, args.amp, opt, scaler, f'{emo} ep{ep} train', is_main,
                               args.max_chunks)
        vl, vconf = run_epoch(net, va_loader, m, device, args.amp, desc=f'{emo} ep{ep} valid', show=is_main,
                               max_chunks=args.max_chunks)
        (tf1, _), (vf1, vacc) = macro_f1(tconf), macro_f1(vconf)
        improved = vf1 > best
        with interrupts.deferred():   # the epoch's files (best model, resume state, log) are written together
            if improved:
                best, best_ep = vf1, ep
                run.save_best(model, {**record, 'result': {'best_epoch': ep, 'val_macro_f1': vf1, 'val_acc': vacc}})
            run.save_state(model, opt, scaler, ep, best, best_ep)
            run.log(epoch=ep, train_loss=tl, val_loss=vl, train_f1=tf1, val_f1=vf1, val_acc=vacc)
        if is_main:
            print(f'{emo} epoch {ep}: train CE {tl:.4f} F1 {tf1:.4f} | valid CE {vl:.4f} F1 {vf1:.4f} acc {vacc:.4f}'
                  f'{"  * saved" if improved else ""} ({time.time() - t0:.0f} s)')
        if cli.patience_over(args, ep, best_ep, emo, 'macro-F1', is_main):
            break
    run.finish()            # the record says the run completed (an interrupted one stays finished: false)
    if is_main:
        print(f'{emo}: best validation macro-F1 {best:.4f} at epoch {best_ep}: {ckpt}')
    return ckpt


def main(argv=None):
    args = get_args(argv)
    rank, world, device, is_main = ddp_setup(args.device)
    try:
        corpus = cli.open_corpus(args.corpus, args.fold)
        args.fold = corpus.fold   # one spelling ('fold2') in the record and the resume check
        store = cli.open_store(args.features, corpus)
        return [train_one(args, emo, corpus, store, rank, world, device, is_main) for emo in parse_emos(args.emo_attr)]
    finally:
        ddp_cleanup()


if __name__ == '__main__':
    sys.exit(cli.run_script(main))
