"""Seq2Seq SER of method 1 (docs/method1.md, "Target curves" and "Seq2Seq model and loss"): datasets with
target curves, chunk predictions, the training step and batched prediction.

Every utterance is cut into 22 dynamic chunks of one second (m = 1 s / hop frames); the LSTM predicts each
chunk and the utterance prediction is the chunk mean. Train targets: the utterance's annotator mean mu and
population std with its ranking sequence give the target curve (utils.generate_chunk_EmoSeq), both
z-normalised with the label statistics. Loss 0.5 (1 - CCC(utterance, mu)) + 0.5 (1 - CCC(chunks, curve)).
"""
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from checkpoints import display_path, sha256_file
from dataloader import K_CHUNKS, UtteranceDataset, gather_eval, limit_names, to_chunks
from errors import ToolkitError
from ranker import load_rank_sequences
from utils import EMO_COL, MAX_CHUNKS, amp_context, backward_in_parts, ccc_loss, gather_batch, generate_chunk_EmoSeq


def train_names(args, emo, corpus, store, rank):
    """Usable Train utterances (features, ranking sequence of 22, ratings) and the skipped ones with why."""
    ratings = corpus.rating_lists(emo, 'Train')
    names, bad = [], []
    for n in corpus.files('Train'):
        why = ('no features' if n not in store else 'no ranking sequence' if n not in rank else
               'no annotator ratings' if n not in ratings else
               'ranking sequence is not 22 long' if len(rank[n]) != K_CHUNKS else None)
        (bad.append((n, why)) if why else names.append(n))
    return limit_names(names, args.limit, args.seed), bad, ratings


def seq2seq_datasets(args, emo, corpus, store, fnorm, lnorm):
    """Train: (features, target curve z (22,), mu z); Validation: (features, consensus z)."""
    lm, ls = lnorm
    path = Path(args.rankseq) / f'training_{emo}.json'
    if not path.exists():
        raise ToolkitError(f'no ranking sequences {path}; make them with\n  python chunk_emotion_rankers/'
                           f'generate_ranking_seqence.py -emo {emo} -set Train  (or pass --rankseq DIR)')
    rank, rec = load_rank_sequences(path, emo, corpus.name, 'Train')
    names, bad, ratings = train_names(args, emo, corpus, store, rank)
    if not names:
        raise ToolkitError(f'no usable Train utterance for {emo} ({len(bad)} skipped, e.g. {bad[:1]})')
    mu = np.array([ratings[n].mean() for n in names])
    sd = np.array([ratings[n].std() for n in names])           # population std of the annotators
    curves = np.stack([generate_chunk_EmoSeq(a, b, rank[n]) for a, b, n in zip(mu, sd, names)])
    train = UtteranceDataset(store, names, fnorm, [(curves - lm) / ls, (mu - lm) / ls])
    col = corpus.labels.set_index('FileName')[EMO_COL[emo]]
    vnames = [n for n in corpus.files('Validation') if n in store and np.isfinite(col.get(n, np.nan))]
    vnames = limit_names(vnames, args.limit, args.seed)
    if len(vnames) < 2:
        raise ToolkitError(f'{corpus.consensus_path}: fewer than 2 Validation utterances with features and '
                           f'{EMO_COL[emo]} labels')
    valid = UtteranceDataset(store, vnames, fnorm, [(col.loc[vnames].to_numpy(np.float64) - lm) / ls])
    train.rankseq = {'path': display_path(path), 'sha256': sha256_file(path), 'attribute': (rec or {}).get('attribute'),
                     'ranker': (rec or {}).get('ranker'), 'record': rec is not None}
    return train, valid, bad


def chunk_predictions(model, x, lengths, m, device):
    chunks = to_chunks(x, lengths, m, device)                  # (B, K, m, D)
    return model(chunks.flatten(0, 1)).view(chunks.shape[0], chunks.shape[1])


@torch.no_grad()
def predict(model, loader, m, device, amp, world=1, desc='', show=True):
    """{dataset index: (utterance prediction, 22 chunk predictions)} in normalised units."""
    model.eval()
    out = {}
    for x, lengths, *_, idx in tqdm(loader, desc=desc, leave=False, disable=not show, dynamic_ncols=True):
        with amp_context(device, amp):
            pred = chunk_predictions(model, x, lengths, m, device).float().cpu().numpy()
        out.update({int(i): (p.mean(), p) for i, p in zip(idx, pred)})
    return gather_eval(out, world)


def seq2seq_step(net, opt, scaler, x, lengths, curve, mu, m, device, amp, max_chunks=MAX_CHUNKS):
    """One optimiser step: loss = 0.5 (1 - CCC(utterance means, mu)) + 0.5 (1 - CCC(chunks, curves)), the
    CCCs over the global batch (under DDP every rank's predictions and targets, utils.gather_batch). At most
    `max_chunks` chunks go through the LSTM at once (utils.backward_in_parts): the same loss on the same batch,
    with memory that does not grow with the batch; 0 = the whole batch at once (as before issue 28)."""
    curve, mu = curve.to(device), mu.to(device)

    def forward(s):
        with amp_context(device, amp):
            return chunk_predictions(net, x[s], lengths[s], m, device).float()

    losses = []

    def loss_of(pred):
        pred, c, u = gather_batch(pred, curve, mu)
        losses.append(0.5 * ccc_loss(pred.mean(1), u) + 0.5 * ccc_loss(pred, c))
        return scaler.scale(losses[-1])

    opt.zero_grad(set_to_none=True)
    backward_in_parts(net, forward, len(lengths), max_chunks // K_CHUNKS if max_chunks else len(lengths),
                      loss_of, device)
    scaler.step(opt)
    scaler.update()
    return losses[-1].item()
