"""DDP with gloo processes on the CPU (torch.multiprocessing fork), tiny models, one step each:

- the CCC losses of Seq2Seq and MSCR are the CCC of the global batch: N ranks x B/N give the loss and the
  gradients of one process x B (utils.gather_batch), also for shards of unequal size (MSCR's [rank::world]);
  the per-rank CCC the toolkit used before is shown to differ, so the comparison can fail;
- the ranker's loss (mean cross-entropy over pairs, equal shards) needs no gather and matches as well;
- a resume state saved by N ranks resumes on M (each rank its own random streams; checkpoints.Run).
"""
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

M, D = 4, 6              # frames per chunk, LLD dimension of the tiny Seq2Seq / ranker batches
TOL = dict(rtol=1e-4, atol=1e-6)


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def init(rank, world, port):
    torch.distributed.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank, world_size=world)


# ---------------------------------------------------------------- the full batches (same on every rank)
def lld_batch(B, seed):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(10, 60, (B,), generator=g)
    x = torch.randn(B, 60, D, generator=g) * (torch.arange(60)[None, :, None] < lengths[:, None, None])
    return x, lengths


def mscr_batch(B, seed):
    import dataloader as Dl
    rng = np.random.default_rng(seed)
    items = []
    for i in range(B):
        T, N = int(rng.integers(8, 40)), int(rng.integers(2, 6))
        items.append(dict(a=rng.standard_normal((T, 5)).astype(np.float32), spans=Dl.dynamic_spans(T, 3, 6),
                          t=rng.standard_normal((N, 4)).astype(np.float32),
                          y=rng.standard_normal(3).astype(np.float32), idx=i))
    return items


def grads(model):
    from utils import unwrap
    return {k: p.grad.clone() for k, p in unwrap(model).named_parameters() if p.grad is not None}


def wrap(model, world):
    return torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model


def one_step_each(rank, world, B):
    """The toolkit's real training steps (seq2seq_step, mscr_step, ranker.run_epoch) on this rank's shard
    [rank::world] of the same full batches; SGD with lr 0 keeps the weights and leaves the gradients."""
    import dataloader as Dl
    import mscr
    import ranker
    from model import LSTMnet, TransformerENC_CoAtten
    from seq2seq import seq2seq_step
    from utils import ccc_loss, make_scaler
    cpu, out = torch.device('cpu'), {}
    shard = slice(rank, None, world)

    torch.manual_seed(0)     # same initial weights on every rank; dropout 0: no per-rank masks
    net = wrap(LSTMnet(D, 8, 1, dropout=0.0), world)
    x, lengths = lld_batch(B, 1)
    curve, mu = torch.randn(B, Dl.K_CHUNKS), torch.randn(B)
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    out['seq2seq_loss'] = seq2seq_step(net, opt, make_scaler(cpu, 'off'), x[shard], lengths[shard], curve[shard],
                                       mu[shard], M, cpu, 'off')
    out['seq2seq_grads'] = grads(net)
    with torch.no_grad():    # what each rank computed before: the CCC of its own shard, averaged by DDP
        from seq2seq import chunk_predictions
        p = chunk_predictions(net, x[shard], lengths[shard], M, cpu)
        out['seq2seq_shard_loss'] = float(0.5 * ccc_loss(p.mean(1), mu[shard]) + 0.5 * ccc_loss(p, curve[shard]))

    torch.manual_seed(0)
    model = wrap(TransformerENC_CoAtten(35, 4, d=8, heads=2, ff=16, n_self=1, n_co=1, dropout=0.0, pe_dropout=0.0),
                 world)
    batch = Dl.mscr_collate(mscr_batch(B - 1, 2)[shard])        # B - 1: unequal shards when B is even
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    out['mscr_loss'] = mscr.mscr_step(model, opt, make_scaler(cpu, 'off'), batch, cpu, None, 'off')
    out['mscr_grads'] = grads(model)

    torch.manual_seed(0)
    rk = wrap(LSTMnet(D, 8, 2, dropout=0.0), world)
    x1, l1 = lld_batch(B, 3)
    x2, l2 = lld_batch(B, 4)
    y = torch.arange(B) % 2
    pairs = [(torch.cat([x1[shard], x2[shard]]), torch.cat([l1[shard], l2[shard]]), y[shard])]
    opt = torch.optim.SGD(rk.parameters(), lr=0.0)
    out['ranker_loss'] = ranker.run_epoch(rk, pairs, M, cpu, 'off', opt, make_scaler(cpu, 'off'), show=False)[0]
    out['ranker_grads'] = grads(rk)
    return out


def worker(rank, world, port, B, path):
    torch.set_num_threads(1)
    init(rank, world, port)
    try:
        out = one_step_each(rank, world, B)
        shard = torch.tensor([out['seq2seq_shard_loss']])
        torch.distributed.all_reduce(shard)
        out['seq2seq_shard_loss'] = float(shard) / world
        if rank == 0:
            torch.save(out, path)
        torch.distributed.barrier()
    finally:
        torch.distributed.destroy_process_group()


def run_ranks(world, B, tmp_path):
    path = tmp_path / f'world{world}.pt'
    # fork: no child imports torch again (spawn takes ~15 s a process on a loaded 2-core machine)
    torch.multiprocessing.start_processes(worker, args=(world, free_port(), B, path), nprocs=world, join=True,
                                          start_method='fork')
    return torch.load(path, weights_only=False)


@pytest.mark.parametrize('world', [2, 4])
def test_ddp_losses_and_gradients_equal_one_process_on_the_global_batch(world, tmp_path):
    B = 8
    one = one_step_each(0, 1, B)
    many = run_ranks(world, B, tmp_path)
    for kind in ('seq2seq', 'mscr', 'ranker'):
        assert many[f'{kind}_loss'] == pytest.approx(one[f'{kind}_loss'], rel=1e-5), kind
        g1, gn = one[f'{kind}_grads'], many[f'{kind}_grads']
        assert g1.keys() == gn.keys() and len(g1) > 4
        for k in g1:
            torch.testing.assert_close(gn[k], g1[k], **TOL, msg=f'{kind} {k}')
    # the per-rank CCC (what DDP averaged before the gather) is another number, by far more than the
    # tolerance of the equality above: that check can fail
    assert abs(many['seq2seq_shard_loss'] - one['seq2seq_loss']) > 10 * 1e-5 * abs(one['seq2seq_loss'])


# ---------------------------------------------------------------- resume on another number of processes
def draws():
    import random
    return [random.random(), float(np.random.rand()), float(torch.rand(1))]


def resume_worker(rank, world, port, ckpt, mode, path):
    """mode 'save': each rank seeds seed + rank, saves the resume state (checkpoints.Run), and writes the draws
    its generators give next; 'load': each rank seeds seed + rank, resumes and writes its next draws."""
    import checkpoints as C
    from model import LSTMnet
    from utils import make_scaler, set_seed
    torch.set_num_threads(1)
    if world > 1:
        init(rank, world, port)
    try:
        set_seed(7 + rank, 1)
        model = LSTMnet(D, 8, 1)
        opt, scaler = torch.optim.Adam(model.parameters()), make_scaler(torch.device('cpu'), 'off')
        run = C.Run(ckpt, ['epoch'], rank == 0, mode == 'load', {'batch': 8})
        try:
            if mode == 'save':
                torch.rand(5)                              # the ranks' streams have moved on, differently
                run.save_state(model, opt, scaler, 3, 0.5, 2)
            else:
                assert run.load_state(model, opt, scaler) == (4, 0.5, 2)
        finally:
            run.close()
        res = [None] * world
        if world > 1:
            torch.distributed.all_gather_object(res, draws())
        else:
            res = [draws()]
        if rank == 0:
            torch.save(res, path)
    finally:
        if world > 1:
            torch.distributed.destroy_process_group()


def run_resume(world, ckpt, mode, tmp_path):
    path = tmp_path / f'{mode}{world}.pt'
    if world == 1:
        resume_worker(0, 1, None, ckpt, mode, path)
    else:
        torch.multiprocessing.start_processes(resume_worker, args=(world, free_port(), ckpt, mode, path),
                                              nprocs=world, join=True, start_method='fork')
    return torch.load(path, weights_only=False)


@pytest.mark.parametrize('saved, resumed', [(2, 1), (1, 2), (2, 2)])
def test_resume_on_another_number_of_processes(saved, resumed, tmp_path):
    """Saved by N ranks, resumed on M: no crash; each rank the interrupted run had continues its own random
    streams (rank 1's are not rank 0's); a rank it did not have keeps its seeded start."""
    ckpt = tmp_path / 'm.pth.tar'
    after_save = run_resume(saved, ckpt, 'save', tmp_path)
    state = torch.load(ckpt.with_name('m.resume.pt'), weights_only=False)
    assert len(state['rng_by_rank']) == saved
    got = run_resume(resumed, ckpt, 'load', tmp_path)
    for r in range(resumed):
        if r < saved:
            assert got[r] == pytest.approx(after_save[r], abs=0), r
        else:
            from model import LSTMnet
            from utils import set_seed
            set_seed(7 + r, 1)
            LSTMnet(D, 8, 1)                              # as the worker: the weights' draws, then the test's
            assert got[r] == pytest.approx(draws(), abs=0)
    if saved == 2:
        assert after_save[0] != after_save[1]


def test_resume_state_of_the_earlier_format_loads(tmp_path):
    """A .resume.pt of the earlier layout (rank 0's states, the CUDA ones of every device) resumes."""
    import random

    import checkpoints as C
    from model import LSTMnet
    from utils import make_scaler
    model = LSTMnet(D, 8, 1)
    opt, scaler = torch.optim.Adam(model.parameters()), make_scaler(torch.device('cpu'), 'off')
    torch.manual_seed(3)
    rng = {'python': random.getstate(), 'numpy': np.random.get_state(), 'torch': torch.get_rng_state(), 'cuda': []}
    expect = draws()
    ckpt = tmp_path / 'm.pth.tar'
    torch.save({'model': model.state_dict(), 'optimizer': opt.state_dict(), 'scaler': scaler.state_dict(),
                'epoch': 1, 'best': 0.3, 'best_epoch': 1, 'rng': rng}, ckpt.with_name('m.resume.pt'))
    run = C.Run(ckpt, ['epoch'], True, True)
    try:
        assert run.load_state(model, opt, scaler) == (2, 0.3, 1)
    finally:
        run.close()
    assert draws() == expect


def test_torchrun_asking_for_cuda_without_cuda_is_an_error(monkeypatch):
    """--device cuda under torchrun on a machine without CUDA stops with a message, never a silent CPU run."""
    from errors import ToolkitError
    from utils import ddp_setup
    if torch.cuda.is_available():
        pytest.skip('this machine has CUDA')
    monkeypatch.setenv('RANK', '0')
    monkeypatch.setenv('WORLD_SIZE', '2')
    monkeypatch.setenv('LOCAL_RANK', '0')
    for dev in ('cuda', 'cuda:1'):
        with pytest.raises(ToolkitError, match='CUDA is not available'):
            ddp_setup(dev)
    assert not torch.distributed.is_initialized()
