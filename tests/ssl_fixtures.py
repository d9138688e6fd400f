"""Tiny self-supervised speech encoders for tests: random weights from transformers config classes, saved to a
folder (nothing downloads). wav2vec2 and WavLM use the layer-norm feature encoder (batched with an attention
mask), HuBERT the group-norm one (equal-length batches only)."""
import torch

SMALL = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=24,
             conv_dim=(8,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, vocab_size=10)


def make_upstream(kind, folder, seed=0, **kw):
    """Save a tiny random `kind` ('wav2vec2' | 'hubert' | 'wavlm' | 'data2vec-audio') encoder into `folder`."""
    from transformers import (
        Data2VecAudioConfig,
        Data2VecAudioModel,
        HubertConfig,
        HubertModel,
        Wav2Vec2Config,
        Wav2Vec2Model,
        WavLMConfig,
        WavLMModel,
    )
    torch.manual_seed(seed)
    cfg = {**SMALL, **kw}
    if kind == 'wav2vec2':
        model = Wav2Vec2Model(Wav2Vec2Config(feat_extract_norm='layer', do_stable_layer_norm=True, **cfg))
    elif kind == 'hubert':
        model = HubertModel(HubertConfig(feat_extract_norm='group', **cfg))
    elif kind == 'wavlm':
        model = WavLMModel(WavLMConfig(feat_extract_norm='layer', do_stable_layer_norm=True, num_buckets=16,
                                       max_bucket_distance=50, **cfg))
    elif kind == 'data2vec-audio':
        cfg.pop('num_conv_pos_embeddings')
        model = Data2VecAudioModel(Data2VecAudioConfig(num_conv_pos_embeddings=2, **cfg))
    else:
        raise ValueError(kind)
    model.save_pretrained(folder)
    return folder
