"""Writes linear_regression_{train,test}.npz (run from data/): the PyTorch autograd text's data,
y = 2x + 3 plus Gaussian noise (std 0.1), x uniform in [0, 1).

Shipped with the repository so nothing needs NumPy; run again to regenerate
the same bytes (fixed seed).
"""
import numpy as np

rng = np.random.default_rng(0)
x_train = rng.random((1000, 1))
y_train = 2 * x_train + 3 + 0.1 * rng.standard_normal((1000, 1))
x_test = rng.random((200, 1))
y_test = 2 * x_test + 3 + 0.1 * rng.standard_normal((200, 1))
np.savez("linear_regression_train.npz", x=x_train, y=y_train)
np.savez("linear_regression_test.npz", x=x_test, y=y_test)
