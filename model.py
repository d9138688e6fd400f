"""Models: the chunk LSTM of method 1 (ranker and Seq2Seq) and the MSCR co-attention transformer."""
import torch
import torch.nn as nn

from utils import chunk_starts, lstm_forward


class LSTMnet(nn.Module):
    """2-layer LSTM over the frames of one chunk; last step -> fc1 -> ReLU -> fc2.

    out_dim=2 is the chunk emotion ranker f (a pair's logits are f(x1) - f(x2)); out_dim=1 is the
    Seq2Seq chunk regressor. Parameter names (lstm.*, fc1.*, fc2.*) and sizes match the authors'
    released v1.6 checkpoints, so those load with strict=True.
    layer_sum=L > 1 (SSL stores holding L layers of input_dim // L values each, concatenated per frame): the frames
    are first reduced to one learnt softmax-weighted sum of the L layers (as in SUPERB), parameter `layer_logits`.
    """

    def __init__(self, input_dim=130, hidden=130, out_dim=1, num_layers=2, dropout=0.5, layer_sum=0):
        super().__init__()
        self.layer_sum = int(layer_sum) if layer_sum and layer_sum > 1 else 0
        if self.layer_sum:
            if input_dim % self.layer_sum:
                raise ValueError(f'{input_dim} input values do not split into {layer_sum} layers')
            self.layer_logits = nn.Parameter(torch.zeros(self.layer_sum))
            input_dim //= self.layer_sum
        self.lstm = nn.LSTM(input_dim, hidden, num_layers=num_layers, batch_first=True, dropout=dropout)
        self.fc1 = nn.Linear(hidden, hidden)
        self.fc2 = nn.Linear(hidden, out_dim)

    def layer_weights(self):
        """The softmax layer weights (list of floats), or None without a layer sum."""
        return torch.softmax(self.layer_logits.detach().float(), 0).tolist() if self.layer_sum else None

    def forward(self, x):
        """x: (N, m, D) chunks -> (N, out_dim). The LSTM's precision under --amp: utils.lstm_forward."""
        if self.layer_sum:
            x = x.unflatten(-1, (self.layer_sum, -1))
            x = (x * torch.softmax(self.layer_logits, 0).to(x.dtype)[:, None]).sum(-2)
        h, _ = lstm_forward(self.lstm, x)
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
    """Random multi-scale crop of every chunk (docs/mscr.md, "Multi-scale crops"), vectorised.

    length: (...) long, number of valid frames L of each chunk. For each chunk independently:
      f   = scales[floor(u_scale * len(scales))]          a fraction drawn uniformly from `scales`
      Lc  = L if f == 1 else clamp(2 * floor(f * L / 2), 1, L)       even crop length, as published
      off = floor(u_pos * max(L - Lc, 1))                 crop start, uniform over 0 .. L - Lc - 1
    i.e. a window of Lc frames around a random centre that keeps it inside the chunk (the published
    centre never lets the crop end on the chunk's last frame; this is kept). Empty chunks stay empty.
    u_scale, u_pos: optional uniforms in [0, 1) shaped like `length` (drawn from `generator` when None).
    Returns (off, Lc), both long tensors shaped like `length`.
    """
    L = torch.as_tensor(length, dtype=torch.long)
    if u_scale is None:
        u_scale = torch.rand(L.shape, generator=generator, dtype=torch.float64, device=L.device)
    if u_pos is None:
        u_pos = torch.rand(L.shape, generator=generator, dtype=torch.float64, device=L.device)
    sc = torch.as_tensor(list(scales), dtype=torch.float64, device=L.device)
    f = sc[(u_scale.to(torch.float64) * len(sc)).floor().long().clamp(0, len(sc) - 1)]
    crop = 2 * torch.div(torch.floor(f * L).long(), 2, rounding_mode="floor")
    Lc = torch.where(f >= 1.0, L, torch.minimum(crop.clamp(min=1), L))
    off = (u_pos.to(torch.float64) * (L - Lc).clamp(min=1)).floor().long()
    off = torch.minimum(off, (L - Lc).clamp(min=0))
    return off, Lc


def pyramid_bounds(start, length):
    """(lo, hi) frame bounds (..., 7) of the 7 pyramid parts of each chunk: the whole chunk, its two
    halves, its four quarters. Part j of q parts covers [j·floor(L/q), (j+1)·floor(L/q)), the last part
    of each level runs to the chunk's end (remainder in the last part, as published)."""
    L = length[..., None]
    j = torch.tensor([0, 0, 1, 0, 1, 2, 3], device=length.device)
    q = torch.tensor([1, 2, 2, 4, 4, 4, 4], device=length.device)
    w = torch.div(L, q, rounding_mode="floor")
    lo = j * w
    hi = torch.where(j == q - 1, L, (j + 1) * w)
    return start[..., None] + lo, start[..., None] + hi


def pyramid_pool(x, start, length, frame_mask=None, min_frames=MIN_POOL_FRAMES):
    """Temporal pyramid pooling of many chunks of a zero-padded batch at once (docs/mscr.md,
    "Pyramid pooling").

    x: (B, T, D) frames; start, length: (B, C) long, chunk c of utterance b covers frames
    x[b, start : start + length]; length 0 = no chunk. Returns (B, C, 7·D): [mean of the chunk,
    means of its 2 halves, means of its 4 quarters] (bounds: `pyramid_bounds`). A chunk with fewer
    than `min_frames` valid frames gets its whole-chunk mean in all 7 slots; an empty chunk zeros.
    frame_mask: optional (B, T) bool, False = missing frame (missing-data evaluation). Missing
    frames are left out of every mean (the parts stay defined by position); a part without valid
    frames takes the whole-chunk mean; `min_frames` counts valid frames.
    One cumulative sum over the frames and a gather of 14 boundaries per chunk. Computed in float32.
    """
    B, T, D = x.shape
    x = x.float()
    w = torch.ones(B, T, 1, device=x.device) if frame_mask is None else frame_mask.float()[..., None]
    cs = torch.cat([x.new_zeros(B, 1, D + 1), torch.cumsum(torch.cat([x * w, w], -1), 1)], 1)  # (B, T+1, D+1)
    lo, hi = pyramid_bounds(start.to(x.device).long(), length.to(x.device).long())
    idx = torch.cat([lo, hi], -1).clamp(0, T).reshape(B, -1, 1).expand(-1, -1, D + 1)
    g = torch.gather(cs, 1, idx).reshape(B, start.shape[1], 14, D + 1)
    seg = g[:, :, 7:] - g[:, :, :7]                                    # (B, C, 7, D+1) sums, counts
    s, n = seg[..., :D], seg[..., D:]
    mean = s / n.clamp(min=1)
    whole = mean[:, :, :1]
    few = (n[:, :, :1] < min_frames) | (n < 0.5)                       # (B, C, 7, 1)
    mean = torch.where(few, whole.expand_as(mean), mean)
    return mean.reshape(B, start.shape[1], 7 * D)


def dynamic_chunks(lengths, n_chunks, m):
    """Dynamic chunk split into C one-second windows (docs/chunking.md, "Dynamic chunk split"): chunk c
    of utterance b covers frames [start, start + length). lengths: (B,) frame counts; n_chunks: (B,)
    chunk counts C (clamped to >= 2); m: frames per second. Utterances shorter than m give C chunks of
    all their frames (length T); positions past an utterance's C have length 0. -> (start, length) (B, Cmax)."""
    lengths = torch.as_tensor(lengths, dtype=torch.long)
    start, valid = chunk_starts(lengths, m, n_chunks)
    length = torch.where(valid, lengths.clamp(max=m)[:, None], torch.zeros((), dtype=torch.long))
    return start, length


def audio_chunk_features(x, start, length, scales=None, frame_mask=None, generator=None):
    """Frames (B, T, D) and chunk spans (B, C) -> pooled chunks (B, C, 7·D) and their padding mask.

    The spans come from either chunking (one-second dynamic windows or exact word boundaries).
    scales: None (evaluation: chunks whole) or the crop fractions (training). A chunk is padding
    (mask True) when it does not exist or, under a frame_mask, all of its frames are missing.
    """
    start, length = start.to(x.device).long(), length.to(x.device).long()
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
    """Fixed sine/cosine positional encoding (angle pos / 10000^(2i/d)) added to (B, L, d), then dropout.
    Not a parameter: it is not part of the state_dict."""

    def __init__(self, d, max_len=128, dropout=0.1):
        super().__init__()
        pos = torch.arange(max_len, dtype=torch.float32)[:, None]
        ang = pos / torch.pow(10000, torch.arange(0, d, 2, dtype=torch.float32) / d)
        pe = torch.zeros(max_len, d)
        pe[:, 0::2] = torch.sin(ang)
        pe[:, 1::2] = torch.cos(ang[:, : d // 2])
        self.register_buffer("pe", pe, persistent=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        return self.dropout(x + self.pe[: x.shape[1]].to(x.dtype))


class MaskedAttentionLayer(nn.Module):
    """Post-norm transformer layer with masked intermediate outputs (docs/mscr.md, "Co-attention model").

    forward(x, x_pad, y=None): a = MHA(query = y (or x), key = x, value = x, key_padding_mask = x_pad),
    no dropout on the attention weights; a is zeroed at x's padded positions; h = LN1(x + dropout(a)),
    zeroed again at x's padded positions; out = LN2(h + dropout(W2 dropout(GELU(W1 h)))) with bias-free
    W1 (d -> ff) and W2 (ff -> d). With y = None this is a self-attention layer; with y the other
    modality's stream (same padded length) it is a co-attention layer whose residual is x.
    """

    def __init__(self, d=256, heads=4, ff=512, dropout=0.3):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d, heads, batch_first=True)   # attention-weight dropout 0
        self.dropout = nn.Dropout(dropout)
        self.linear1 = nn.Linear(d, ff, bias=False)
        self.linear2 = nn.Linear(ff, d, bias=False)
        self.norm1 = nn.LayerNorm(d)
        self.norm2 = nn.LayerNorm(d)
        self.activation = nn.GELU()

    def forward(self, x, x_pad, y=None):
        keep = (~x_pad).to(x.dtype)[..., None]
        a = self.self_attn(x if y is None else y, x, x, key_padding_mask=x_pad, need_weights=False)[0]
        h = self.norm1(x + self.dropout(a * keep)) * keep
        return self.norm2(h + self.dropout(self.linear2(self.dropout(self.activation(self.linear1(h))))))


class CoAttentionStack(nn.Module):
    """n_self self-attention layers per modality, then n_co co-attention layers per direction.

    Layer names follow the published model so its state_dicts load strictly: l1_sph_sph .. l{n_self}_sph_sph
    and l1_txt_txt ..; then l{n_self+1}_sph_txt .. (audio stream, residual audio, queries from the text)
    and l{n_self+1}_txt_sph .. (text stream, residual text, queries from the audio). Co-attention layer 1
    reads the self-attention outputs, each later one the updated streams of the layer before.
    """

    def __init__(self, d, heads, ff, dropout, n_self=3, n_co=2):
        super().__init__()
        self.n_self, self.n_co = n_self, n_co
        for k in range(1, n_self + 1):
            self.add_module(f"l{k}_sph_sph", MaskedAttentionLayer(d, heads, ff, dropout))
            self.add_module(f"l{k}_txt_txt", MaskedAttentionLayer(d, heads, ff, dropout))
        for k in range(n_self + 1, n_self + n_co + 1):
            self.add_module(f"l{k}_sph_txt", MaskedAttentionLayer(d, heads, ff, dropout))
            self.add_module(f"l{k}_txt_sph", MaskedAttentionLayer(d, heads, ff, dropout))

    def layer(self, k, kind):
        return getattr(self, f"l{k}_{kind}")

    def forward(self, xs, xt, xs_pad, xt_pad):
        for k in range(1, self.n_self + 1):
            xs, xt = self.layer(k, "sph_sph")(xs, xs_pad), self.layer(k, "txt_txt")(xt, xt_pad)
        for k in range(self.n_self + 1, self.n_self + self.n_co + 1):
            xs, xt = self.layer(k, "sph_txt")(xs, xs_pad, xt), self.layer(k, "txt_sph")(xt, xt_pad, xs)
        return xs, xt


def _head(d):
    return nn.Sequential(nn.Linear(2 * d, d), nn.ReLU(), nn.Linear(d, 1))


class TransformerENC_CoAtten(nn.Module):
    """MSCR audio-text model (docs/mscr.md, "Co-attention model"; parameter names as published).

    forward(audio (B, Ca, Da), audio_pad (B, Ca) bool, text (B, Ct, Dt), text_pad (B, Ct) bool)
    -> (B, 3) predictions for Act, Dom, Val. `audio` holds the pooled chunks (Da = 7 x frame dim),
    `text` the token embeddings; *_pad is True at padded (or missing) positions. The model prepends
    each sequence's global token (a vector of ones), zero-pads both streams to one common length
    (positions are matched by index across the streams, and padded inputs are zeros, so a padded or
    missing position looks the same whatever the caller put there) and masks the padding. A modality
    that is entirely absent (all positions padded, or Ca = 0) is its global token alone.
    Bias-free projections to d, sinusoidal positions (dropout 0.1), `CoAttentionStack`, then the
    global tokens of both final streams concatenated (2d) -> three heads Linear(2d, d) -> ReLU -> Linear(d, 1).
    """

    def __init__(self, audio_dim, text_dim, d=256, heads=4, ff=None, n_self=3, n_co=2, dropout=0.3,
                 pe_dropout=0.1, max_len=128):
        super().__init__()
        self.max_len = max_len
        self.proj_sph = nn.Linear(audio_dim, d, bias=False)
        self.proj_txt = nn.Linear(text_dim, d, bias=False)
        self.PE = SinusoidalPE(d, max_len, pe_dropout)
        self.trans = CoAttentionStack(d, heads, ff or 2 * d, dropout, n_self, n_co)
        self.top_layer_act, self.top_layer_dom, self.top_layer_val = _head(d), _head(d), _head(d)

    def _with_global_token(self, x, pad, L):
        """Prepend the global token, zero padded positions, pad to L -> (x (B, L, D), pad (B, L))."""
        B, n, D = x.shape
        keep = ~pad.bool()
        x = torch.where(keep[..., None], x, x.new_zeros(()))
        x = torch.cat([x.new_ones(B, 1, D), x, x.new_zeros(B, L - 1 - n, D)], 1)
        pad = torch.cat([keep.new_zeros(B, 1), ~keep, keep.new_ones(B, L - 1 - n)], 1)
        return x, pad

    def forward(self, audio, audio_pad, text, text_pad):
        n_pos = 1 + max(audio.shape[1], text.shape[1])
        if n_pos > self.max_len:
            raise ValueError(f"sequence of {n_pos} positions (with the global token) exceeds max_len "
                             f"{self.max_len}; the data loader must cap chunks/tokens first")
        xs, ps = self._with_global_token(audio, audio_pad, n_pos)
        xt, pt = self._with_global_token(text, text_pad, n_pos)
        hs, ht = self.trans(self.PE(self.proj_sph(xs)), self.PE(self.proj_txt(xt)), ps, pt)
        z = torch.cat([hs[:, 0], ht[:, 0]], -1)
        return torch.cat([self.top_layer_act(z), self.top_layer_dom(z), self.top_layer_val(z)], -1)
