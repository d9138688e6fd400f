"""GPU check of the SSL paths at real upstream sizes, with random weights built from transformers config classes
(nothing downloads): extraction batched vs one recording at a time, and SSL-baseline training steps.

    python bench/gpu_ssl_check.py                       # on a CUDA machine; JSON to $OUT or bench/results
    python bench/gpu_ssl_check.py --sizes large --n-utts 32 --steps 10

For each size (base: 768-d x 12 layers, group-norm feature encoder, as wav2vec2-base; large: 1024-d x 24 layers,
layer-norm feature encoder, as wav2vec2-large-robust / WavLM-large): the model is saved to a temporary folder and
loaded by features.SSLExtractor (--layers all), which runs `--n-utts` seeded recordings of 2-10 s with --batch 8
and --batch 1: seconds, real-time factor, largest |batched - one| (fp32), the load-time padding probe, peak GPU
memory. Then the SSL baseline (ssl_baseline.SSLBaseline, attentive pooling, 3 outputs) runs `--steps` training
steps of batch 8 x 6 s under fp16 AMP for --finetune frozen, top:4 and full: seconds per step and peak memory.
Random weights: the speeds and memory are those of the real sizes; no accuracy is measured.
"""
import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SIZES = {
    'base': dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                 feat_extract_norm='group', do_stable_layer_norm=False),
    'large': dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                  feat_extract_norm='layer', do_stable_layer_norm=True, conv_bias=True),
}


def peak_gb():
    return round(torch.cuda.max_memory_allocated() / 1e9, 2)


def extraction(folder, sigs, device):
    import features as F
    out, res = {}, {}
    for bs in (8, 1):
        ext = F.SSLExtractor(folder, 'all', device, batch=bs)
        ext(sigs[:2])
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        out[bs] = ext(sigs)
        torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        res[f'batch{bs}'] = {'seconds': round(dt, 3), 'rtf': round(dt / (sum(map(len, sigs)) / 16000), 5),
                             'peak_gb': peak_gb()}
        res.update(batching='attention_mask' if ext.use_mask else 'equal_length', padding_probe=ext.probe_diff,
                   dim=ext.dim)
        del ext
    res['max_abs_diff'] = float(max(np.abs(a - b).max() for a, b in zip(out[8], out[1])))
    res['max_abs_value'] = float(max(np.abs(a).max() for a in out[1]))
    res['speedup_batched'] = round(res['batch1']['seconds'] / res['batch8']['seconds'], 2)
    return res


def baseline_steps(folder, device, steps):
    import ssl_baseline as S
    from utils import amp_context, ccc_loss, make_scaler
    res = {}
    for finetune in ('frozen', 'top:4', 'full'):
        model, _ = S.build(str(folder), ['Act', 'Dom', 'Val'], 'attentive', finetune)
        model.to(device).train()
        if finetune == 'frozen':
            model.encoder.eval()
        opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-5)
        scaler = make_scaler(device, 'fp16')
        x = torch.randn(8, 6 * 16000, device=device)
        lens = torch.full((8,), 6 * 16000, device=device)
        y = torch.randn(8, 3, device=device)
        torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(steps):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            with amp_context(device, 'fp16'):
                p = model(x, lens)
            loss = sum(ccc_loss(p[:, k].float(), y[:, k]) for k in range(3)) / 3
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        res[finetune] = {'s_per_step_median': round(float(np.median(times[1:] or times)), 4), 'peak_gb': peak_gb(),
                         'loss_finite': bool(np.isfinite(loss.item()))}
        del model, opt
        torch.cuda.empty_cache()
    return res


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--sizes', default='base,large')
    p.add_argument('--n-utts', type=int, default=32)
    p.add_argument('--steps', type=int, default=6)
    p.add_argument('--out', default=os.environ.get('OUT') or str(REPO / 'bench' / 'results'))
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        sys.exit('gpu_ssl_check.py needs a CUDA device')
    from transformers import Wav2Vec2Config, Wav2Vec2Model
    device = 'cuda'
    rng = np.random.default_rng(0)
    sigs = [0.1 * rng.standard_normal(int(rng.uniform(2, 10) * 16000)).astype(np.float32) for _ in range(args.n_utts)]
    res = {'gpu': torch.cuda.get_device_name(0), 'torch': torch.__version__, 'n_utts': args.n_utts,
           'audio_seconds': round(sum(map(len, sigs)) / 16000, 1), 'sizes': {}}
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes.split(','):
            torch.manual_seed(0)
            folder = Path(tmp) / size
            Wav2Vec2Model(Wav2Vec2Config(**SIZES[size])).save_pretrained(folder)
            res['sizes'][size] = {'config': SIZES[size], 'extraction': extraction(folder, sigs, device),
                                  'baseline_fp16': baseline_steps(folder, device, args.steps)}
            print(size, json.dumps(res['sizes'][size]), flush=True)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    path = Path(args.out) / 'gpu_ssl.json'
    path.write_text(json.dumps(res, indent=1) + '\n')
    print(f'wrote {path}')


if __name__ == '__main__':
    main()
