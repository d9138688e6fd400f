"""Models: the chunk LSTM of method 1 (ranker and Seq2Seq) and the MSCR co-attention transformer."""
import torch
import torch.nn as nn


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
