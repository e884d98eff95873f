"""Data sets: Fashion-MNIST, MNIST, CIFAR and image folders as train / validation / test
splits (cotsearch.data.load), and their shapes without loading them (cotsearch.data.shape)."""
