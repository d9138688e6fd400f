"""Models: the chunk LSTM of method 1 (ranker and Seq2Seq) and the MSCR co-attention transformer."""
import math

import torch
import torch.nn as nn

from utils import chunk_starts


class LSTMnet(nn.Module):
    """2-layer LSTM over the frames of one chunk; last step -> fc1 -> ReLU -> fc2.

    out_dim=2 is the chunk emotion ranker f (a pair's logits are f(x1) - f(x2)); out_dim=1 is the
    Seq2Seq chunk regressor. Parameter names (lstm.*, fc1.*, fc2.*) and sizes match the authors'
    released v1.6 checkpoints, so those load with strict=True.
    """

    def __init__(self, input_dim=130, hidden=130, out_dim=1, num_layers=2, dropout=0.5):
        super().__init__()
        self.lstm = nn.LSTM(input_dim, hidden, num_layers=num_layers, batch_first=True, dropout=dropout)
        self.fc1 = nn.Linear(hidden, hidden)
        self.fc2 = nn.Linear(hidden, out_dim)

    def forward(self, x):
        """x: (N, m, D) chunks -> (N, out_dim)."""
        h, _ = self.lstm(x)
        return self.fc2(torch.relu(self.fc1(h[:, -1])))

    def chunk_scores(self, x):
        """Ranker only: g = f1 - f0 per chunk. Class 1 wins for the ordered pair (i, j) exactly when
        g_i > g_j, so one forward pass over K chunks replaces the K(K-1) pair passes."""
        out = self.forward(x)
        return out[:, 1] - out[:, 0]


# ================================================================ MSCR (method 2) — below this line
MSCR_SCALES = (0.2, 0.4, 0.6, 0.8, 1.0)
MIN_POOL_FRAMES = 5   # chunks with fewer valid frames use the whole-chunk mean for all 7 slots


def multiscale_crop(length, scales=MSCR_SCALES, u_scale=None, u_pos=None, generator=None):
    """Random multi-scale crop of every chunk (SPEC §5), vectorised over any batch shape.

    length: (...) long, number of valid frames L of each chunk (one second = m frames, fewer only
    for utterances shorter than m). For each chunk independently:
      f   = scales[floor(u_scale * len(scales))]           (a fraction drawn uniformly from `scales`)
      Lc  = clamp(floor(f * L + 0.5), 1, L)                 (crop length: f of the chunk, rounded half up)
      off = floor(u_pos * (L - Lc + 1))                     (crop start, uniform over 0 .. L - Lc)
    so the crop [off, off + Lc) is a window of round(f·L) frames whose centre off + Lc/2 is uniform
    over the positions that keep the whole crop inside the chunk. Fraction 1.0 keeps the chunk whole;
    empty chunks (L = 0) stay empty. u_scale, u_pos: optional uniforms in [0, 1) of the same shape
    (drawn from `generator` when None) -- tests pass them to compare with a per-chunk reference.
    Returns (off, Lc), both long tensors shaped like `length`.
    """
    L = torch.as_tensor(length, dtype=torch.long)
    if u_scale is None:
        u_scale = torch.rand(L.shape, generator=generator, dtype=torch.float64, device=L.device)
    if u_pos is None:
        u_pos = torch.rand(L.shape, generator=generator, dtype=torch.float64, device=L.device)
    sc = torch.as_tensor(list(scales), dtype=torch.float64, device=L.device)
    k = (u_scale.to(torch.float64) * len(sc)).floor().long().clamp(0, len(sc) - 1)
    Lc = torch.minimum(torch.floor(sc[k] * L + 0.5).long().clamp(min=1), L)
    off = (u_pos.to(torch.float64) * (L - Lc + 1)).floor().long()
    off = torch.minimum(off, (L - Lc).clamp(min=0))
    return off, Lc


def pyramid_pool(x, start, length, frame_mask=None, min_frames=MIN_POOL_FRAMES):
    """Temporal pyramid pooling of many chunks of a zero-padded batch at once (SPEC §5).

    x: (B, T, D) frames; start, length: (B, C) long, chunk c of utterance b covers frames
    x[b, start : start + length] (after dynamic chunk split and cropping); length 0 = no chunk.
    Returns (B, C, 7·D): [mean of the chunk, means of its 2 halves, means of its 4 quarters];
    part j of q covers frames [floor(j·L/q), floor((j+1)·L/q)) of the chunk. A chunk with fewer
    than `min_frames` valid frames gets its whole-chunk mean in all 7 slots; an empty chunk zeros.
    frame_mask: optional (B, T) bool, False = missing frame (missing-data evaluation). Missing
    frames are left out of every mean (the parts stay defined by position); a part without valid
    frames takes the whole-chunk mean; `min_frames` counts valid frames.
    One cumulative sum over the frames and a gather of 14 boundaries per chunk: no chunk loop,
    no (B, C, m, D) tensor. Computed in float32 (also under autocast).
    """
    B, T, D = x.shape
    x = x.float()
    w = torch.ones(B, T, 1, device=x.device) if frame_mask is None else frame_mask.float()[..., None]
    cs = torch.cat([x.new_zeros(B, 1, D + 1), torch.cumsum(torch.cat([x * w, w], -1), 1)], 1)  # (B, T+1, D+1)
    start, length = start.to(x.device).long(), length.to(x.device).long()
    L = length[..., None]
    j = torch.tensor([0, 0, 1, 0, 1, 2, 3], device=x.device)          # part index
    q = torch.tensor([1, 2, 2, 4, 4, 4, 4], device=x.device)          # parts at that level
    lo = start[..., None] + torch.div(j * L, q, rounding_mode="floor")  # (B, C, 7)
    hi = start[..., None] + torch.div((j + 1) * L, q, rounding_mode="floor")
    idx = torch.cat([lo, hi], -1).clamp(0, T).reshape(B, -1, 1).expand(-1, -1, D + 1)
    g = torch.gather(cs, 1, idx).reshape(B, start.shape[1], 14, D + 1)
    seg = g[:, :, 7:] - g[:, :, :7]                                    # (B, C, 7, D+1) sums, counts
    s, n = seg[..., :D], seg[..., D:]
    mean = s / n.clamp(min=1)
    whole = mean[:, :, :1]
    few = (n[:, :, :1] < min_frames) | (n < 0.5)                       # (B, C, 7, 1)
    mean = torch.where(few, whole.expand_as(mean), mean)
    return mean.reshape(B, start.shape[1], 7 * D)


def word_chunks(lengths, n_chunks, m):
    """Word-aligned dynamic chunk split (SPEC §3/§5): chunk c of utterance b covers frames
    [start, start + length). lengths: (B,) frame counts; n_chunks: (B,) chunk counts C (clamped
    to >= 2); m: frames per second. Utterances shorter than m give C chunks of all their frames
    (length T); positions past an utterance's C have length 0. Returns (start, length) (B, Cmax)."""
    lengths = torch.as_tensor(lengths, dtype=torch.long)
    start, valid = chunk_starts(lengths, m, n_chunks)
    length = torch.where(valid, lengths.clamp(max=m)[:, None], torch.zeros((), dtype=torch.long))
    return start, length


def audio_chunk_features(x, lengths, n_chunks, m, scales=None, frame_mask=None, generator=None):
    """Frames (B, T, D) -> pooled word-aligned chunks (B, Cmax, 7·D) and their padding mask.

    scales: None (evaluation: chunks whole) or the crop fractions (training). A chunk is padding
    (mask True) when it does not exist or, under a frame_mask, all of its frames are missing.
    """
    start, length = word_chunks(lengths, n_chunks, m)
    start, length = start.to(x.device), length.to(x.device)
    if scales is not None and any(f != 1.0 for f in scales):
        off, length = multiscale_crop(length, scales, generator=generator)
        start = start + off
    pooled = pyramid_pool(x, start, length, frame_mask)
    pad = length == 0
    if frame_mask is not None:
        cs = torch.cat([frame_mask.new_zeros(x.shape[0], 1, dtype=torch.long),
                        frame_mask.long().cumsum(1)], 1)
        n = cs.gather(1, (start + length).clamp(max=x.shape[1])) - cs.gather(1, start.clamp(max=x.shape[1]))
        pad = pad | (n == 0)
    return pooled, pad


class SinusoidalPE(nn.Module):
    """Fixed sine/cosine positional encoding added to (B, L, d), then dropout."""

    def __init__(self, d, max_len=4096, dropout=0.1):
        super().__init__()
        pos = torch.arange(max_len)[:, None].float()
        div = torch.exp(torch.arange(0, d, 2).float() * (-math.log(10000.0) / d))
        pe = torch.zeros(max_len, d)
        pe[:, 0::2] = torch.sin(pos * div)
        pe[:, 1::2] = torch.cos(pos * div[: d // 2])
        self.register_buffer("pe", pe, persistent=False)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        return self.drop(x + self.pe[: x.shape[1]].to(x.dtype))


class CoAttentionLayer(nn.Module):
    """Post-norm cross-attention block: queries from one modality, keys/values from the other."""

    def __init__(self, d=256, heads=4, ff=512, dropout=0.3):
        super().__init__()
        self.attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.ff = nn.Sequential(nn.Linear(d, ff), nn.GELU(), nn.Dropout(dropout), nn.Linear(ff, d))
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.drop1, self.drop2 = nn.Dropout(dropout), nn.Dropout(dropout)

    def forward(self, q, kv, kv_pad):
        h = self.norm1(q + self.drop1(self.attn(q, kv, kv, key_padding_mask=kv_pad, need_weights=False)[0]))
        return self.norm2(h + self.drop2(self.ff(h)))


class TransformerENC_CoAtten(nn.Module):
    """MSCR audio-text model (SPEC §5).

    forward(audio (B, Ca, Da), audio_pad (B, Ca) bool, text (B, Ct, Dt), text_pad (B, Ct) bool)
    -> (B, 3) predictions for Act, Dom, Val. `audio` holds the pooled chunks (Da = 7 x frame dim),
    `text` the token embeddings; *_pad is True at padded (or missing) positions. The model prepends
    each sequence's global token (a vector of ones), so a modality that is entirely absent
    (all positions padded, or Ca = 0) is its global token alone. Sequences are bias-free projected
    to `d`, get sinusoidal positions (dropout 0.1), run `n_self` post-norm self-attention layers
    per modality, then `n_co` co-attention layers per direction: the audio-keyed stream takes its
    queries from the text and keys/values from the audio, the text-keyed stream the reverse. The
    two streams' first positions (the global tokens) are concatenated (2d) and fed to three heads
    Linear(2d, d) -> ReLU -> Linear(d, 1).
    """

    def __init__(self, audio_dim, text_dim, d=256, heads=4, ff=512, n_self=3, n_co=2, dropout=0.3,
                 pe_dropout=0.1, max_len=128):
        super().__init__()
        self.max_len = max_len
        self.proj_a = nn.Linear(audio_dim, d, bias=False)
        self.proj_t = nn.Linear(text_dim, d, bias=False)
        self.pe = SinusoidalPE(d, max(max_len, 512), pe_dropout)

        def self_layers():
            return nn.ModuleList(nn.TransformerEncoderLayer(d, heads, ff, dropout, activation="gelu",
                                                            batch_first=True, norm_first=False)
                                 for _ in range(n_self))
        self.self_a, self.self_t = self_layers(), self_layers()
        self.co_a = nn.ModuleList(CoAttentionLayer(d, heads, ff, dropout) for _ in range(n_co))  # K/V audio
        self.co_t = nn.ModuleList(CoAttentionLayer(d, heads, ff, dropout) for _ in range(n_co))  # K/V text
        self.heads = nn.ModuleList(nn.Sequential(nn.Linear(2 * d, d), nn.ReLU(), nn.Linear(d, 1))
                                   for _ in range(3))

    def _encode(self, x, pad, proj, layers):
        B = x.shape[0]
        x = torch.cat([x.new_ones(B, 1, x.shape[2]), x], 1)
        pad = torch.cat([pad.new_zeros(B, 1), pad], 1)
        if x.shape[1] > self.max_len:
            raise ValueError(f"sequence of {x.shape[1]} positions (with the global token) exceeds max_len "
                             f"{self.max_len}; the data loader must cap chunks/tokens first")
        h = self.pe(proj(x))
        for layer in layers:
            h = layer(h, src_key_padding_mask=pad)
        return h, pad

    def forward(self, audio, audio_pad, text, text_pad):
        ha, pa = self._encode(audio, audio_pad.bool(), self.proj_a, self.self_a)
        ht, pt = self._encode(text, text_pad.bool(), self.proj_t, self.self_t)
        qa, qt = ht, ha       # audio-keyed stream: text queries; text-keyed stream: audio queries
        for la, lt in zip(self.co_a, self.co_t):
            qa, qt = la(qa, ha, pa), lt(qt, ht, pt)
        z = torch.cat([qa[:, 0], qt[:, 0]], -1)
        return torch.cat([h(z) for h in self.heads], -1)
