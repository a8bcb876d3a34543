"""Writes embedding_{train,test}.npz (run from data/): for graphs/embedding.ron.

Each example is a "sentence" of 3 token ids from a vocabulary of 10 (x, int32
[N, 3]); each token has a hidden score in {-3, -1, 1, 3}, and the label (y,
int32 [N]) is 1 when the sentence's scores sum above zero, else 0 (three odd
scores never sum to zero). A bag of learned embeddings separates the classes.

Shipped with the repository so nothing needs NumPy; run again to regenerate
the same bytes (fixed seed).
"""
import numpy as np

SCORES = np.array([3, -1, 1, -3, 1, -1, 3, -3, 1, -1])


def make(rng, n):
    x = rng.integers(0, len(SCORES), size=(n, 3)).astype(np.int32)
    y = (SCORES[x].sum(axis=1) > 0).astype(np.int32)
    return x, y


rng = np.random.default_rng(0)
x_train, y_train = make(rng, 2000)
x_test, y_test = make(rng, 500)
np.savez("embedding_train.npz", x=x_train, y=y_train)
np.savez("embedding_test.npz", x=x_test, y=y_test)
