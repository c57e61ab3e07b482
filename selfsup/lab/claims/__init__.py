"""The claims, a few per file, each registered by importing its module (numbers 1-10 follow
issue #17): contrastive (1, 2, 3, 9), collapse (4, 5), views (6, 7), masked (8), families (10)."""

from selfsup.lab.claims import collapse, contrastive, families, masked, views

__all__ = ["collapse", "contrastive", "families", "masked", "views"]
