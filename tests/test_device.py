"""CPU stand-ins for the GPU path (bench/gpu_check.sh runs the real thing on a GPU):

- the dtype each --amp setting gives the LSTM and the head; the Seq2Seq, ranker and MSCR training steps under
  --amp bf16 on the CPU give finite losses and gradients;
- no tensor is created on a fixed device: model, loss, chunking and pooling run on the `meta` device
  (a tensor made on the CPU inside them would meet a meta tensor and raise), and no core module spells
  `.cuda()` / `device='cuda'` / `torch.device('cuda')`;
- distributed training runs with 2 gloo processes (torchrun --nproc_per_node 2).
"""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from model import LSTMnet, TransformerENC_CoAtten, multiscale_crop, pyramid_pool  # noqa: E402
from utils import amp_context, ccc_loss, dynamic_chunk_split, lstm_forward, make_scaler  # noqa: E402

M, K = 62, 22          # frames per one-second chunk at the 16 ms hop, chunks per utterance


pytestmark = pytest.mark.usefixtures('one_torch_thread')


def padded_batch(device='cpu', B=4, D=130, seed=0):
    """A zero-padded LLD-like batch (B, T, D) and its frame counts (one utterance shorter than a chunk)."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([200, 150, 40, 90][:B])
    x = torch.randn(B, int(lengths.max()), D, generator=g)
    x = x * (torch.arange(x.shape[1])[None, :, None] < lengths[:, None, None])
    return x.to(device), lengths


def step_and_check(model, loss, out):
    """Autocast really ran in bf16, the loss is finite, every gradient is finite and some are non-zero,
    and one Adam step leaves finite weights."""
    assert out.dtype == torch.bfloat16
    assert torch.isfinite(loss), loss
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    opt.step()
    assert all(torch.isfinite(p).all() for p in model.parameters())


# ============================================================================ --amp on CPU
CPU = torch.device('cpu')


def bf16_forward(model, x):
    """The model's forward under --amp bf16 (utils.amp_context): autocast to bfloat16, the LSTM outside it."""
    with amp_context(CPU, 'bf16'):
        return model(x)


@pytest.mark.parametrize('amp, lstm_dtype, head_dtype', [('off', torch.float32, torch.float32),
                                                         ('fp16', torch.float32, torch.float32),   # CUDA only
                                                         ('bf16', torch.float32, torch.bfloat16)])
def test_dtype_reaching_the_lstm_under_each_amp(amp, lstm_dtype, head_dtype):
    """Forward hooks read what the LSTM and the head compute in: under bf16 the LSTM stays float32 (never the
    silent float16 that CUDA autocast gives cuDNN's RNN), the linear layers run in bfloat16; fp16 is CUDA
    only; the loss and the gradients of the float32 weights are float32 and finite."""
    torch.manual_seed(0)
    model = LSTMnet(out_dim=1).train()
    seen = {}
    model.lstm.register_forward_hook(lambda mod, inp, out: seen.update(lstm_in=inp[0].dtype, lstm_out=out[0].dtype))
    model.fc2.register_forward_hook(lambda mod, inp, out: seen.update(head=out.dtype))
    x, lengths = padded_batch(B=2)
    with amp_context(CPU, amp):
        pred = model(dynamic_chunk_split(x, lengths, M, K).flatten(0, 1))
    assert seen == dict(lstm_in=lstm_dtype, lstm_out=lstm_dtype, head=head_dtype)
    loss = ccc_loss(pred.float(), torch.randn(2 * K))
    loss.backward()
    assert loss.dtype == torch.float32 and model.lstm.weight_hh_l0.grad.dtype == torch.float32
    assert torch.isfinite(model.lstm.weight_hh_l0.grad).all() and model.lstm.weight_hh_l0.grad.abs().sum() > 0
    assert make_scaler(CPU, amp).is_enabled() is False      # a scaler only for CUDA float16


def test_lstm_under_raw_bf16_autocast_is_kept_in_float32():
    """The guard is the LSTM's own: a caller's bare torch.autocast(bfloat16) gets the float32 LSTM too (on
    this CPU oneDNN's bf16 LSTM would fail without AVX512-BF16; on CUDA it would run in float16)."""
    model = LSTMnet(out_dim=2)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        h, _ = lstm_forward(model.lstm, torch.randn(3, M, 130))
        out = model(torch.randn(3, M, 130))
    assert h.dtype == torch.float32 and out.dtype == torch.bfloat16


def test_seq2seq_step_under_cpu_bf16_autocast():
    torch.manual_seed(0)
    model = LSTMnet(out_dim=1).train()
    x, lengths = padded_batch()
    curve, mu = torch.randn(4, K), torch.randn(4)
    pred = bf16_forward(model, dynamic_chunk_split(x, lengths, M, K).flatten(0, 1)).view(4, K)
    loss = 0.5 * ccc_loss(pred.float().mean(1), mu) + 0.5 * ccc_loss(pred.float(), curve)
    step_and_check(model, loss, pred)


def test_ranker_step_under_cpu_bf16_autocast():
    torch.manual_seed(0)
    model = LSTMnet(out_dim=2).train()
    x, lengths = padded_batch()                      # pairs: utterances (0, 2) and (1, 3)
    y = torch.tensor([1, 0])
    out = bf16_forward(model, dynamic_chunk_split(x, lengths, M, K).flatten(0, 1)).view(2, 2, K, 2)
    d = out[0] - out[1]                              # f(x1_k) - f(x2_k)
    loss = torch.nn.functional.cross_entropy(d.float().flatten(0, 1), y[:, None].expand(-1, K).flatten())
    step_and_check(model, loss, d)


def even_chunks(lengths, C, m=M):
    """(start, length) of C chunks per utterance, each at most m frames, spread over its frames."""
    T = lengths.clamp(min=1)
    start = (torch.arange(C)[None, :] * (T - T.clamp(max=m))[:, None]) // max(C - 1, 1)
    return start, T.clamp(max=m)[:, None].expand(-1, C).clone()


def test_mscr_step_under_cpu_bf16_autocast():
    torch.manual_seed(0)
    D, Dt, C = 32, 24, 5
    model = TransformerENC_CoAtten(7 * D, Dt, d=32, heads=4, ff=64, n_self=1, n_co=1).train()
    x, lengths = padded_batch(D=D)
    start, length = even_chunks(lengths, C)
    off, crop = multiscale_crop(length, (0.2, 0.6, 1.0), generator=torch.Generator().manual_seed(0))
    assert (crop < length).any()                     # some chunks really are cropped
    text = torch.randn(4, 7, Dt)
    t_pad = torch.zeros(4, 7, dtype=torch.bool)
    t_pad[2, 4:] = True
    y = torch.randn(4, 3)
    with amp_context(CPU, 'bf16'):
        pooled = pyramid_pool(x, start + off, crop)
        pred = model(pooled, crop == 0, text, t_pad)
    loss = sum(ccc_loss(pred[:, k].float(), y[:, k]) for k in range(3)) / 3
    step_and_check(model, loss, pred)


# ============================================================================ no fixed device
def test_models_losses_chunking_and_pooling_follow_the_input_device():
    """Everything runs on `meta` with the batch there (frame counts stay on the CPU, as the collate makes
    them): a tensor created on a fixed device inside would raise a device mismatch."""
    import dataloader as D
    meta = torch.device('meta')
    x_cpu, lengths = padded_batch()
    chunks = D.to_chunks(x_cpu, lengths, M, meta)               # the training scripts' chunk gather
    assert chunks.device == meta and chunks.shape == (4, K, M, 130)
    for out_dim in (1, 2):
        model = LSTMnet(out_dim=out_dim).to(meta)
        out = model(chunks.flatten(0, 1))
        assert out.device == meta and out.shape == (4 * K, out_dim)
        loss = ccc_loss(out[:, 0], torch.empty(4 * K, device=meta))
        loss.backward()
        assert model.fc1.weight.grad.device == meta
    x = torch.empty(4, 200, 32, device=meta)
    start, length = even_chunks(lengths, 5)
    off, crop = multiscale_crop(length.to(meta), (0.2, 1.0))
    pooled = pyramid_pool(x, start.to(meta) + off, crop, frame_mask=torch.ones(4, 200, dtype=torch.bool, device=meta))
    assert pooled.device == meta and pooled.shape == (4, 5, 7 * 32)
    model = TransformerENC_CoAtten(7 * 32, 24, d=32, heads=4, ff=64, n_self=1, n_co=1).to(meta)
    pred = model(pooled, torch.zeros(4, 5, dtype=torch.bool, device=meta), torch.empty(4, 7, 24, device=meta),
                 torch.zeros(4, 7, dtype=torch.bool, device=meta))
    assert pred.device == meta and pred.shape == (4, 3)


def test_a_cpu_tensor_inside_would_be_caught_on_meta():
    """The meta audit above can fail: mixing a CPU tensor into a meta computation raises."""
    with pytest.raises(RuntimeError):
        torch.empty(3, device='meta') + torch.ones(3)


FIXED_DEVICE = re.compile(r"""\.cuda\(\s*\)|device\s*=\s*['"]cuda|torch\.device\(\s*['"]cuda(:\d+)?['"]\s*\)|"""
                          r"""\.to\(\s*['"]cuda""")


def core_sources():
    return sorted(p for p in [*REPO.glob('*.py'), *REPO.glob('chunk_emotion_rankers/*.py')])


def test_no_core_module_hard_codes_cuda():
    srcs = core_sources()
    assert len(srcs) > 10 and any(p.name == 'model.py' for p in srcs)
    hits = [f'{p.relative_to(REPO)}:{i}: {line.strip()}' for p in srcs
            for i, line in enumerate(p.read_text().splitlines(), 1) if FIXED_DEVICE.search(line)]
    assert not hits, 'tensors on a fixed device (use the device the caller passes):\n' + '\n'.join(hits)


@pytest.mark.parametrize('line', ["x = x.cuda()", "torch.zeros(3, device='cuda')", 'torch.device("cuda")',
                                  "h.to('cuda:0')", "torch.ones(2, device = \"cuda:1\")"])
def test_the_fixed_device_pattern_catches(line):
    assert FIXED_DEVICE.search(line)


@pytest.mark.parametrize('line', ["torch.device('cuda' if ok else 'cpu')", "torch.autocast('cuda', dtype=d)",
                                  "p.add_argument('--device', help='cpu, cuda, cuda:1')", "x.to(device)"])
def test_the_fixed_device_pattern_leaves_device_choices_alone(line):
    assert not FIXED_DEVICE.search(line)


# ============================================================================ DDP with 2 gloo processes
@pytest.fixture(scope='module')
def ddp_inputs(tiny_corpus, tmp_path_factory):
    """LLD store and random ranking sequences of the tiny corpus."""
    import extract_features
    from corpus import Corpus
    out = tmp_path_factory.mktemp('ddp')
    extract_features.main(['--corpus', str(tiny_corpus), '--out', str(out / 'lld'), '--workers', '1'])
    rng = np.random.default_rng(0)
    seqs = {n: {'ChunkRankSeq': [int(r) for r in 1 + np.argsort(np.argsort(-rng.standard_normal(K)))]}
            for n in Corpus(tiny_corpus).files('Train')}
    (out / 'rs').mkdir()
    (out / 'rs' / 'training_Act.json').write_text(json.dumps(seqs))
    return tiny_corpus, out


def test_seq2seq_training_with_two_gloo_processes(ddp_inputs, tmp_path):
    """torchrun --nproc_per_node 2 on the CPU: each rank trains on half of every batch and validates half of
    the split; the validation CCC needs every rank's predictions (all_gather), so a broken collective fails."""
    corpus, out = ddp_inputs
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONUNBUFFERED': '1', 'TQDM_DISABLE': '1', 'MPLBACKEND': 'Agg'}
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', 'training.py',
           '-ep', '1', '-batch', '8', '-emo', 'Act', '--corpus', str(corpus), '--features', str(out / 'lld'),
           '--rankseq', str(out / 'rs'), '--out', str(tmp_path), '--device', 'cpu', '--workers', '0', '--amp', 'off']
    p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    ckpt = tmp_path / 'LSTM_epoch1_batch8_EmoRankerSeq_Act.pth.tar'
    assert ckpt.exists()
    sd = torch.load(ckpt, map_location='cpu', weights_only=True)
    assert all(torch.isfinite(v).all() for v in sd.values())
    log = (tmp_path / 'LSTM_epoch1_batch8_EmoRankerSeq_Act.log.csv').read_text().splitlines()
    assert len(log) == 2 and np.isfinite([float(v) for v in log[1].split(',')[1:4]]).all()
    assert p.stdout.count(' epoch 0: train loss') == 1       # only rank 0 reports
