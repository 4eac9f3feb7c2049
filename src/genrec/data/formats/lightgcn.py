"""LightGCN / NGCF fixed splits (protocol P2) and LightGCN-PyTorch's LastFM split.

Gowalla, Yelp2018, Amazon-book (kuandeng/LightGCN, gusye1234/LightGCN-PyTorch ``data/<name>/``)::

    train.txt       one line per user: ``user item item ...`` (0-based remapped ids, space
                    separated; a user line may list no items); the fixed 80% training part
    test.txt        the same layout; the fixed 20% test part
    user_list.txt   ``org_id remap_id`` (header line, then one user per line): raw user ids
    item_list.txt   ``org_id remap_id``: raw item ids (Gowalla location ids, Yelp business ids,
                    Amazon ASINs)
    s_adj_mat.npz   optional, scipy sparse (U+I)x(U+I) symmetric user/item adjacency of the
                    training graph; its user-item block ``adj[:U, U:]`` IS train.txt, so it stands
                    in when train.txt is missing (the Gowalla mirror in ../shared/data)

There are no timestamps. Rows come train first, then test, each in file order (rows rebuilt from
the adjacency matrix come per user in item-id order). ``split`` says "train"/"test". Raw ids are
the ``org_id`` values when the id lists are present, else the remapped ids. With test.txt alone
(no train.txt, no s_adj_mat.npz) the test interactions are still read, without ``split``, and
``info["partial"]`` says why.

LastFM (LightGCN-PyTorch ``data/lastfm/``, from HetRec 2011 hetrec2011-lastfm-2k)::

    data1.txt         train, tab separated ``user<TAB>artist<TAB>weight`` (CRLF line ends), 1-based
                      ids (LightGCN-PyTorch subtracts 1; 1,892 users x 4,489 artists); the third
                      column (LightGCN-PyTorch ignores it) is the listening count, sometimes
                      written in float notation (``3.2466e+05``)
    test1.txt         test, same layout
    trustnetwork.txt  user-user friendships ``user<TAB>user``: a social graph, not interactions,
                      so it is not read here

Example:
    >>> raw = read_lightgcn(Path("../shared/data/lightgcn/gowalla"))      # doctest: +SKIP
    >>> raw.interactions.collect()["split"].value_counts()                 # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import scipy.sparse as sp

from genrec.data.formats import DataError, RawData, require_files

__all__ = ["read_lightgcn", "read_lastfm", "read_id_lines"]

_SOURCE = "LightGCN/NGCF benchmark split (kuandeng/LightGCN, gusye1234/LightGCN-PyTorch)"
PARTIAL_NOTE = ("train.txt missing: only the test interactions (~20%) are present; "
                "the fixed P2 split is unavailable")


def read_id_lines(path: Path) -> pl.LazyFrame:
    """``user item item ...`` lines -> rows (user_id, item_id, position), in file order.

    ``position`` counts 1, 2, ... along each line. Ids stay strings, exactly as written; users
    whose line lists no items (and blank lines) give no rows.
    """
    lines = pl.scan_csv(path, has_header=False, separator="\x1f", quote_char=None,
                        new_columns=["line"], schema={"line": pl.Utf8})
    # \s+ also swallows CRLF line ends and doubled spaces
    tokens = pl.col("line").str.replace_all(r"\s+", " ").str.strip_chars().str.split(" ")
    return (
        lines.filter(pl.col("line").str.strip_chars() != "")
        .select(tokens.list.first().alias("user_id"), tokens.list.slice(1).alias("item_id"))
        .with_columns(pl.int_ranges(1, pl.col("item_id").list.len() + 1).alias("position"))
        .explode(["item_id", "position"])
        .filter(pl.col("item_id").is_not_null())
    )


def _id_list(path: Path) -> pl.DataFrame | None:
    """``org_id remap_id`` file -> frame (remap, org), or None when the file is absent."""
    if not path.is_file():
        return None
    df = pl.read_csv(path, separator=" ", has_header=False, skip_rows=1, quote_char=None,
                     schema={"org": pl.Utf8, "remap": pl.Utf8})
    if df["org"].null_count() or df["remap"].null_count():
        raise DataError(f"{path}: expected two space-separated columns 'org_id remap_id' on "
                        f"every line after the header; some lines have fewer")
    return df


def _to_org_ids(df: pl.DataFrame, ids: pl.DataFrame | None, col: str, path: Path) -> pl.DataFrame:
    """Replace remapped ids in ``col`` by the raw ``org_id`` from its id list."""
    if ids is None:
        return df
    out = df.join(ids.rename({"remap": col}), on=col, how="left", maintain_order="left")
    unknown = out.filter(pl.col("org").is_null())[col].unique()
    if len(unknown):
        raise DataError(f"{len(unknown)} {col} value(s) (e.g. {unknown.head(5).to_list()}) are "
                        f"not in {path}; the id list and the split files come from different "
                        f"versions: use the files of one release")
    return out.with_columns(pl.col("org").alias(col)).drop("org")


def _train_from_adjacency(path: Path, n_users: int | None, n_items: int | None,
                          n_test_users: int) -> pl.DataFrame:
    """Training rows (user_id, item_id: remapped ids) from the adjacency's user-item block."""
    adj = sp.load_npz(path).tocsr()
    size = adj.shape[0]
    if n_users is None:
        # without user_list.txt: what item_list.txt leaves, else the test file's largest user + 1
        # (wrong if the last users have no test items: the block check below catches that,
        # unless those users have no training items either, i.e. are isolated nodes)
        n_users = size - n_items if n_items is not None else n_test_users
    if adj.shape != (size, size) or not 0 < n_users < size:
        raise DataError(f"{path}: expected a square (users+items) adjacency with {n_users} users "
                        f"first, got shape {adj.shape}; rebuild it or supply train.txt")
    if n_items is not None and size - n_users != n_items:
        raise DataError(f"{path}: shape {adj.shape} minus {n_users} users leaves {size - n_users} "
                        f"items, but item_list.txt lists {n_items}; the files come from different "
                        f"releases")
    # a bipartite graph has empty user-user and item-item blocks; else n_users is wrong
    if adj[:n_users, :n_users].count_nonzero() or adj[n_users:, n_users:].count_nonzero():
        raise DataError(f"{path}: with {n_users} users the user-user or item-item block is not "
                        f"empty, so the user count is wrong; add user_list.txt (org_id remap_id)")
    block = adj[:n_users, n_users:].tocsr()
    block.eliminate_zeros()
    block.sort_indices()
    rows = np.repeat(np.arange(n_users), np.diff(block.indptr))
    return pl.DataFrame({"user_id": rows.astype(str), "item_id": block.indices.astype(str)})


def read_lightgcn(raw_dir: Path) -> RawData:
    """Read a LightGCN split folder (train.txt or s_adj_mat.npz, test.txt, id lists)."""
    raw_dir = Path(raw_dir)
    (test_path,) = require_files(raw_dir, "test.txt")
    user_path, item_path = raw_dir / "user_list.txt", raw_dir / "item_list.txt"
    users, items = _id_list(user_path), _id_list(item_path)
    test = read_id_lines(test_path).drop("position").collect()
    info: dict[str, str] = {"format": "lightgcn", "source": _SOURCE, "timestamp": "none"}

    if (raw_dir / "train.txt").is_file():
        train = read_id_lines(raw_dir / "train.txt").drop("position").collect()
        info["train_source"] = "train.txt"
    elif (raw_dir / "s_adj_mat.npz").is_file():
        n_test_users = int(test["user_id"].cast(pl.Int64).max() or 0) + 1
        train = _train_from_adjacency(raw_dir / "s_adj_mat.npz",
                                      users.height if users is not None else None,
                                      items.height if items is not None else None, n_test_users)
        info["train_source"] = ("s_adj_mat.npz, user-item block (train.txt absent); "
                                "within a user, train rows are in item-id order")
    else:
        train = None
        info["partial"] = PARTIAL_NOTE

    if train is None:
        df = test
    else:
        df = pl.concat([train.with_columns(pl.lit("train").alias("split")),
                        test.with_columns(pl.lit("test").alias("split"))])
    df = _to_org_ids(df, users, "user_id", user_path)
    df = _to_org_ids(df, items, "item_id", item_path)
    df = df.with_columns(pl.lit(None, dtype=pl.Int64).alias("timestamp"),
                         pl.lit(None, dtype=pl.Float32).alias("rating"))
    front = ["user_id", "item_id", "timestamp", "rating"]
    return RawData(df.select(front + [c for c in df.columns if c not in front]).lazy(), info=info)


def _read_lastfm_file(path: Path) -> pl.DataFrame:
    df = pl.read_csv(path, separator="\t", has_header=False, quote_char=None, infer_schema=False)
    if df.width != 3:
        raise DataError(f"{path}: expected 3 tab-separated columns (user, artist, weight), "
                        f"found {df.width}; is this LightGCN-PyTorch's lastfm/data1.txt?")
    df.columns = ["user_id", "item_id", "weight"]
    # CRLF line ends leave a \r on the last column; weights may use float notation
    return df.with_columns(pl.col("weight").str.strip_chars().cast(pl.Float64).cast(pl.Float32))


def read_lastfm(raw_dir: Path) -> RawData:
    """Read LightGCN-PyTorch's LastFM split: data1.txt (train) and test1.txt (test)."""
    train_path, test_path = require_files(Path(raw_dir), "data1.txt", "test1.txt")
    df = pl.concat([
        _read_lastfm_file(train_path).with_columns(pl.lit("train").alias("split")),
        _read_lastfm_file(test_path).with_columns(pl.lit("test").alias("split")),
    ]).with_columns(pl.lit(None, dtype=pl.Int64).alias("timestamp"),
                    pl.lit(None, dtype=pl.Float32).alias("rating"))
    info = {
        "format": "lastfm",
        "source": "HetRec 2011 Last.fm (hetrec2011-lastfm-2k), LightGCN-PyTorch split",
        "timestamp": "none",
        "ids": "1-based ids as in data1.txt/test1.txt (LightGCN-PyTorch uses id - 1)",
        "weight": "listening count of the user-artist pair (third column; not a rating)",
        "social_graph": "trustnetwork.txt (user-user friendships) is not read as interactions",
    }
    return RawData(df.select("user_id", "item_id", "timestamp", "rating", "weight", "split").lazy(),
                   info=info)
