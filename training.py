"""Train the Seq2Seq SER model of method 1, or the MSCR model of method 2 with --model mscr.

    python training.py -ep 30 -batch 128 -emo Val
    python training.py -emo all --corpus ROOT --features features/ROOT/lld
    python training.py -emo Act --init-from ../Chunk-Level-Emotion-Retrieval --freeze lstm -ep 10 --lr 1e-4
    torchrun --nproc_per_node 4 training.py -ep 30 -batch 128 -emo Act
    python training.py --model mscr --audio-feature lld   (method 2; its flags are the "MSCR" group of --help)
    python training.py --model ssl --upstream DIR -emo all --finetune top:4   (the SSL baseline, docs/ssl.md)

Seq2Seq (docs/method1.md): every utterance is cut into 22 dynamic chunks of one second; a 2-layer LSTM
predicts each chunk, the utterance prediction is the chunk mean. Targets: the annotators' mean and std with
the utterance's ranking sequence (EmoChunkRankSeq/training_<Emo>.json from generate_ranking_seqence.py)
give the target curve. Loss 0.5(1 - CCC(utterance, mu)) + 0.5(1 - CCC(chunks, curve)), Adam lr 1e-3.
The epoch with the best validation CCC is kept in
trained_seq2seq_model/LSTM_epoch{ep}_batch{batch}_EmoRankerSeq_{Emo}.pth.tar (plain state_dict, published
names) with its provenance record .meta.json (see checkpoints.py), .resume.pt (every epoch; --resume
continues it and refuses changed settings), .log.csv and .loss.png.
Features: the LLD feature store (features/<corpus>/lld by default; extract_features.py builds it).
Normalisation: --feature-norm/--label-norm (see norm.py); default 'train', 'published' with --init-from the
authors' release (its NormTerm, which the released weights expect). -batch is the global batch.
"""
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import checkpoints as C
import cli
import identity
import interrupts
import mscr
import norm as N
import ssl_baseline
from dataloader import K_CHUNKS, PadCollate, chunk_frames, make_loader
from errors import ToolkitError
from outputs import OutputClashError, check_not_inside, check_outputs, check_parent
from seq2seq import predict, seq2seq_datasets, seq2seq_step
from utils import ccc, ddp_cleanup, ddp_setup, make_scaler, parse_emos, seed_rank, set_seed, unwrap

RESUME_KEYS = ('batch', 'lr', 'seed', 'freeze', 'init_from', 'feature_norm', 'label_norm', 'limit', 'amp', 'fold', 'emo',
               'layer_sum', 'max_chunks',
               'norm_sha256', 'rankseq_sha256', 'corpus', 'features', 'checkpoint')


def build_parser():
    p = cli.parser(__doc__)
    p.add_argument('--model', default='seq2seq', choices=['seq2seq', 'mscr', 'ssl'],
                   help='seq2seq: method 1 (LLD chunks, ranker curves); mscr: method 2 (audio-text, mscr.py); ssl: the '
                        'utterance-level SSL baseline (ssl_baseline.py, docs/ssl.md)')
    cli.add_run_args(p, 30, 128, emo_required=False)
    cli.add_data_args(p)
    cli.add_norm_args(p)
    p.add_argument('--checkpoint', default=None, help="output checkpoint file (default OUT/<published name>; "
                   "'{emo}' is replaced by the attribute)")
    p.add_argument('--lr', type=cli.positive_float, default=None, help='Adam learning rate (seq2seq default 1e-3)')
    p.add_argument('--resume', action='store_true', help='continue the interrupted run from its .resume.pt '
                   '(with the same settings: every flag that changes the result, the NormTerm, the ranking sequences, '
                   'corpus, features and checkpoint path are compared)')
    p.add_argument('--overwrite', action='store_true', help='replace the files of an earlier run with the same '
                   'checkpoint name (refused without it)')
    s = p.add_argument_group('Seq2Seq (--model seq2seq)')
    s.add_argument('--rankseq', default=str(cli.RANKSEQ_DIR), help='folder of the ranking sequences (training_<Emo>.json)')
    s.add_argument('--out', default=str(C.SEQ2SEQ_DIR), help='output folder for the checkpoint and its logs')
    s.add_argument('--init-from', default=None, help="start from these weights: a Seq2Seq checkpoint file or folder, "
                   "or the authors' repository root (its v1.6 model and NormTerm)")
    s.add_argument('--allow-unfinished', action='store_true', help='--init-from a model whose training run did not '
                   'finish (its record says finished: false; refused without this flag); the new record names it')
    cli.add_layer_sum_arg(s)
    cli.add_max_chunks_arg(s)
    cli.add_patience_arg(s, 'CCC')
    s.add_argument('--freeze', default=None, choices=['lstm'],
                   help='lstm: train only fc1/fc2; the LSTM weights stay bit-identical (and run in eval mode)')
    cli.add_mscr_args(p, train=True)
    ssl_baseline.add_args(p, train=True)
    return p


def settings_of(args, lr, emo=None, corpus=None, store=None, ckpt=None, rankseq=None):
    """The training flags (recorded with the model) and what a resumed run must share with the interrupted one:
    attribute, NormTerm and ranking-sequence contents (SHA-256), corpus, feature store and checkpoint path."""
    return {'epochs': args.epochs, 'batch': args.batch_size, 'lr': lr, 'seed': args.seed, 'freeze': args.freeze,
            'init_from': C.display_path(args.init_from) if args.init_from else None,
            'feature_norm': args.feature_norm, 'label_norm': args.label_norm, 'limit': args.limit, 'amp': args.amp,
            'fold': args.fold, 'emo': emo, 'layer_sum': getattr(args, 'layer_sum', False),
            'max_chunks': getattr(args, 'max_chunks', None), 'norm_sha256': C.sha256_folder(args.norm, C.NORMTERM_FILES) if args.norm else None,
            **({'patience': args.patience} if getattr(args, 'patience', 0) else {}),
            'rankseq_sha256': C.sha256_file(rankseq) if rankseq and Path(rankseq).is_file() else None,
            'corpus': C.display_path(corpus.root) if corpus else None,
            'features': C.display_path(store.path) if store else None, 'checkpoint': C.display_path(ckpt)}


def train_seq2seq(args, emo, corpus, store, rank, world, device, is_main):
    set_seed(args.seed, args.threads)
    lr = args.lr or 1e-3
    m = chunk_frames(store.hop)
    model, init = C.start_model(args, 'seq2seq', emo, store)
    ckpt = Path(args.checkpoint.replace('{emo}', emo)) if args.checkpoint else \
        Path(args.out) / C.seq2seq_name(args.epochs, args.batch_size, emo)
    flag = '--checkpoint' if args.checkpoint else '--out'
    check_parent(ckpt, flag)
    check_not_inside(ckpt.parent, flag, [(store.path, 'the feature store'), (corpus.audio_dir, 'the audio folder of '
                                          'the corpus'), (corpus.labels_dir, 'the labels folder of the corpus')])
    if corpus.root.resolve() == ckpt.parent.resolve():
        raise OutputClashError(f'{flag} {ckpt.parent} is the corpus folder {corpus.root}, which this command reads: '
                               f'choose another {flag}')
    if init is not None:   # fine-tuning must not write over the model it starts from
        check_outputs([(ckpt, '--checkpoint' if args.checkpoint else '--out')],
                      [(init.path, 'the --init-from model'), (C.sibling(init.path, '.meta.json'), 'its record')])
    fnorm, labels, lrec = N.training_norm(args.feature_norm, args.label_norm, store, corpus, args.norm, init, [emo])
    lnorm = labels[emo]
    train, valid, bad = seq2seq_datasets(args, emo, corpus, store, fnorm, lnorm)
    model.to(device)
    seed_rank(args.seed, rank)      # per-rank dropout masks under DDP
    per_rank = max(1, args.batch_size // world)
    collate = PadCollate(m)
    tr_loader, tr_sampler = make_loader(train, per_rank, collate, True, args.workers, device, rank, world, args.seed,
                                        drop_last=len(train) > per_rank * world)
    va_loader, _ = make_loader(valid, per_rank, collate, False, args.workers, device, rank, world, args.seed)
    opt = torch.optim.Adam([p_ for p_ in model.parameters() if p_.requires_grad], lr=lr)
    scaler = make_scaler(device, args.amp)
    settings = settings_of(args, lr, emo, corpus, store, ckpt, Path(args.rankseq) / f'training_{emo}.json')
    run = C.Run(ckpt, ['epoch', 'train_loss', 'val_loss', 'val_ccc'], is_main, args.resume,
                {k: settings[k] for k in RESUME_KEYS}, args.overwrite)
    try:    # the run's files stay locked until it ends
        net, start, best, best_ep = run.start(model, opt, scaler, args.resume, world, device, emo, float('inf'))
        if is_main:
            print(f'{emo}: {len(train)} train / {len(valid)} validation utterances ({len(bad)} Train skipped), '
                  f'm={m} x {K_CHUNKS} chunks, {device}, lr {lr}, feature norm {fnorm.describe()}, label norm '
                  f'{lrec["scope"]} {tuple(round(v, 4) for v in lnorm)}' + (f', init {init.describe()}' if init else '')
                  + (', LSTM frozen' if args.freeze else '') + f' -> {ckpt}')
        record = {**C.make_record('seq2seq', [emo], store, m, K_CHUNKS, fnorm.record(), lrec, corpus,
                                  {'Train': len(train), 'Validation': len(valid)}, init, settings),
                  'ranking_sequences': train.rankseq,      # the sequences the target curves come from
                  'trained_on': identity.trained_on(corpus, store, corpus.files('Train') + corpus.files('Validation'))}
        for ep in range(start, args.epochs):
            t0 = time.time()
            tr_sampler.set_epoch(ep)
            net.train()
            if args.freeze == 'lstm':
                unwrap(net).lstm.eval()
            losses = [seq2seq_step(net, opt, scaler, x, lengths, curve, mu, m, device, args.amp, args.max_chunks)
                      for x, lengths, curve, mu, _ in tqdm(tr_loader, desc=f'{emo} ep{ep}', leave=False,
                                                            disable=not is_main, dynamic_ncols=True)]
            preds = predict(net, va_loader, m, device, args.amp, world, f'{emo} valid', is_main)
            vccc = ccc(np.array([preds[i][0] for i in range(len(valid))]), valid.targets[0])
            vloss, tloss = 1 - vccc, float(np.mean(losses)) if losses else float('nan')
            improved = vloss < best
            with interrupts.deferred():   # the epoch's files (best model, resume state, log) are written together
                if improved:
                    best, best_ep = vloss, ep
                    run.save_best(model, {**record, 'result': {'best_epoch': ep, 'val_ccc': vccc}})
                run.save_state(model, opt, scaler, ep, best, best_ep)
                run.log(epoch=ep, train_loss=tloss, val_loss=vloss, val_ccc=vccc)
            if is_main:
                print(f'{emo} epoch {ep}: train loss {tloss:.4f} | valid CCC {vccc:.4f} (loss {vloss:.4f})'
                      f'{"  * saved" if improved else ""} ({time.time() - t0:.0f} s)')
            if cli.patience_over(args, ep, best_ep, emo, 'CCC', is_main):
                break
        run.finish()        # the record says the run completed (an interrupted one stays finished: false)
        if is_main:
            print(f'{emo}: best validation CCC {1 - best:.4f} at epoch {best_ep}: {ckpt}')
    finally:
        run.close()
    return ckpt


def main(argv=None):
    args = cli.parse_model_args(build_parser(), argv)
    if args.model == 'mscr':
        return mscr.train_mscr(args)
    if args.model == 'ssl':
        rank, world, device, is_main = ddp_setup(args.device)
        try:
            return [ssl_baseline.train(args, cli.open_corpus(args.corpus, args.fold), rank, world, device, is_main)]
        finally:
            ddp_cleanup()
    if not args.emo_attr:
        raise ToolkitError('-emo is required for the Seq2Seq model (Act, Dom, Val or all)')
    emos = parse_emos(args.emo_attr)
    rank, world, device, is_main = ddp_setup(args.device)
    try:
        corpus = cli.open_corpus(args.corpus, args.fold)
        args.fold = corpus.fold   # one spelling ('fold2') in the record and the resume check
        store = cli.open_store(args.features, corpus)
        return [train_seq2seq(args, emo, corpus, store, rank, world, device, is_main) for emo in emos]
    finally:
        ddp_cleanup()


if __name__ == '__main__':
    sys.exit(cli.run_script(main))
