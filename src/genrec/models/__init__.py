"""Recommender models, one file per model; each file holds its ``XConfig`` dataclass and model.

Non-gradient baselines (``popularity``, ``itemcf``, ``ease``) implement ``fit(train_csr)`` and
``score(users, history_csr) -> (B, n_items + 1)`` with column 0 (PAD) at -inf. Models are looked
up through the explicit table in ``genrec.registry``, never by importing this package.
"""
