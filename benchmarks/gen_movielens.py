"""Write a synthetic MovieLens-32M-shaped ``ratings.csv`` + ``movies.csv`` for scale benchmarks.

    .venv/bin/python benchmarks/gen_movielens.py --rows 32000000 --out benchmarks/out/ml-synth-32m

Shape copied from the real ml-32m release (200,948 users, 84,432 movies, 32,000,204 ratings):

    ratings.csv  userId,movieId,rating,timestamp  grouped by user (ids ascending), time-sorted
                 within each user, no repeated (user, movie) pair
    movies.csv   movieId,title,genres  (titles with commas are quoted, genres "|"-joined)

- users and movies scale with rows^0.8 below 32M rows (fewer, denser users for small files);
- every user has >= 20 ratings (as in MovieLens), the rest is a lognormal heavy tail (at 32M
  rows: median 84, mean 159, max ~24k; the real file: mean 159, max ~33k);
- movie popularity is Zipf-like, p(rank) ~ (rank + 80)^-1.6, drawn without repeats per user
  (so the head saturates as in the real data: at 32M rows the top movie has ~110k ratings,
  the real one ~102k; the median movie ~23); movie ids are sparse (like the real
  1..292,757) and unrelated to popularity;
- ratings follow the ml-25m/32m histogram (0.5..5.0 in half stars, mode 4.0, mean ~3.5);
- each user's ratings fall in one activity window between 1995-01-09 and 2023-10-12: start
  dates cluster around 1999 and 2016, window lengths are lognormal (median 6 hours).

Everything is vectorised numpy; the CSV is written in chunks with polars. 32M rows (~890 MB,
the real file is 877 MB) take 25-55 s and 1.8 GB peak RSS on a busy 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import polars as pl

REAL_ROWS, REAL_USERS, REAL_ITEMS = 32_000_204, 200_948, 84_432
MIN_PER_USER = 20
T_START, T_END = 789_652_009, 1_697_164_147  # first and last ml-32m timestamps
RATINGS = np.arange(1, 11, dtype=np.float32) / 2  # 0.5 .. 5.0
# % of each rating value 0.5 .. 5.0 (ml-25m; shared/data/ml-latest-small agrees within 1.5 pts)
RATING_P = np.array([1.6, 3.1, 1.6, 6.6, 5.0, 19.6, 12.6, 26.6, 8.5, 14.5])
GENRES = ("Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary",
          "Drama", "Fantasy", "Film-Noir", "Horror", "IMAX", "Musical", "Mystery", "Romance",
          "Sci-Fi", "Thriller", "War", "Western")
WORDS = ("Night", "Love", "Man", "Girl", "City", "Story", "Dead", "Last", "Time", "World",
         "House", "Day", "Blue", "Dark", "War", "Life", "Home", "Game", "King", "Road")
CHUNK = 4_000_000


def sizes(rows: int) -> tuple[int, int]:
    """(users, items) for a file of ``rows`` ratings: the real counts at 32M, rows^0.8 below."""
    scale = (rows / REAL_ROWS) ** 0.8
    users = min(max(1, round(REAL_USERS * scale)), rows // (2 * MIN_PER_USER))
    items = max(200, round(REAL_ITEMS * scale))
    return users, items


def user_counts(rng: np.random.Generator, rows: int, users: int, cap: int) -> np.ndarray:
    """Ratings per user: MIN_PER_USER each plus a lognormal share of the rest; sums to ``rows``."""
    weight = rng.lognormal(0.0, 1.25, users)
    extra = weight / weight.sum() * (rows - MIN_PER_USER * users)
    counts = MIN_PER_USER + np.floor(extra).astype(np.int64)
    counts[np.argsort(extra - np.floor(extra))[::-1][: rows - counts.sum()]] += 1
    # nobody can rate more movies than exist: move any excess to users with room
    while (over := counts - cap).max() > 0:
        counts = np.minimum(counts, cap)
        room = np.flatnonzero(counts < cap)
        counts += np.bincount(rng.choice(room, int(over[over > 0].sum())), minlength=users)
    return counts


def pick_items(rng: np.random.Generator, owner: np.ndarray, n_items: int) -> np.ndarray:
    """Popularity ranks (0 = most popular) for each row, distinct within each owner (user).

    Draw with replacement from the Zipf law, then redraw only the rows that repeat a movie the
    user already has; after a few rounds, redraw uniformly so heavy users always finish.
    """
    cdf = np.cumsum((np.arange(1, n_items + 1) + 80.0) ** -1.6)
    cdf /= cdf[-1]
    ranks = np.searchsorted(cdf, rng.random(len(owner))).astype(np.int64)
    keys = owner.astype(np.int64) * n_items + ranks
    keys.sort()  # rows are grouped by owner already, so sorting keys keeps owners in place
    repeat = np.flatnonzero(keys[1:] == keys[:-1]) + 1
    pending_owner = keys[repeat] // n_items
    kept = np.delete(keys, repeat)  # sorted, unique
    rounds = 0
    while len(pending_owner):
        rounds += 1
        u = rng.random(len(pending_owner))
        draw = np.searchsorted(cdf, u) if rounds <= 8 else (u * n_items).astype(np.int64)
        new = pending_owner * n_items + draw
        pos = np.searchsorted(kept, new)
        taken = kept[np.minimum(pos, len(kept) - 1)] == new
        first = np.zeros(len(new), dtype=bool)
        first[np.unique(new, return_index=True)[1]] = True
        ok = ~taken & first
        fresh = np.sort(new[ok])  # sorted values at non-decreasing positions keep kept sorted
        kept = np.insert(kept, np.searchsorted(kept, fresh), fresh)
        pending_owner = pending_owner[~ok]
    return kept % n_items  # sorted by (owner, rank): the caller shuffles within owner


def segment_fractions(rng: np.random.Generator, counts: np.ndarray) -> np.ndarray:
    """Per row, a sorted-within-user fraction in [0, 1): uniform order statistics via spacings."""
    gaps = rng.exponential(size=counts.sum() + len(counts))  # one extra gap per user
    ends = np.cumsum(counts + 1)
    csum = np.cumsum(gaps)
    base = np.concatenate([[0.0], csum[ends[:-1] - 1]])
    total = csum[ends - 1] - base
    seg = np.repeat(np.arange(len(counts)), counts + 1)
    frac = (csum - np.repeat(base, counts + 1)) / total[seg]
    drop = ends - 1  # the last spacing of each user only closes the interval
    return np.delete(frac, drop)


def timestamps(rng: np.random.Generator, counts: np.ndarray) -> np.ndarray:
    users = len(counts)
    year = 365.25 * 86400
    late = rng.random(users) < 0.7  # ML sign-ups peak around 1999 and again around 2016
    center = np.where(late, 2016.0, 1999.0) + rng.normal(0, 1, users) * np.where(late, 3.5, 1.5)
    start = T_START + (center - 1995.02) * year
    # starts outside the span are redrawn uniformly inside it (clipping would pile them up)
    outside = (start < T_START) | (start > T_END - 3600)
    start[outside] = rng.uniform(T_START, T_END - 3600, int(outside.sum()))
    span = np.exp(rng.normal(np.log(6 * 3600), 3.0, users))  # median 6 hours, heavy tail
    span = np.minimum(span, T_END - start)
    frac = segment_fractions(rng, counts)
    owner = np.repeat(np.arange(users), counts)
    return (start[owner] + frac * span[owner]).astype(np.int64)


def movies_frame(rng: np.random.Generator, movie_ids: np.ndarray) -> pl.DataFrame:
    n = len(movie_ids)
    a = rng.integers(0, len(WORDS), n)
    b = rng.integers(0, len(WORDS), n)
    year = rng.integers(1920, 2024, n)
    titles = [f"{WORDS[i]} {WORDS[j]} {k}" for i, j, k in zip(a, b, range(n))]
    # ~10% get a comma ("Story, The") so the CSV needs quoting, as in the real movies.csv
    comma = rng.random(n) < 0.1
    titles = [f"{t}, The ({y})" if c else f"{t} ({y})" for t, c, y in zip(titles, comma, year)]
    n_genres = rng.integers(0, 4, n)
    genres = ["|".join(sorted(rng.choice(GENRES, g, replace=False))) if g else "(no genres listed)"
              for g in n_genres]
    return pl.DataFrame({"movieId": movie_ids, "title": titles, "genres": genres})


def generate(rows: int, out: Path, seed: int = 0) -> dict:
    """Write ``out/ratings.csv``, ``out/movies.csv`` and ``out/gen.json`` (the counts used)."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    n_users, n_items = sizes(rows)
    counts = user_counts(rng, rows, n_users, cap=n_items // 2)
    owner = np.repeat(np.arange(n_users, dtype=np.int32), counts)
    ranks = pick_items(rng, owner, n_items)
    # random order within each user (the keys sort by owner first, then by a random fraction)
    order = np.argsort(owner + rng.random(rows) * 0.999, kind="stable")
    ranks = ranks[order]
    del order
    movie_ids = np.sort(rng.choice(np.arange(1, int(n_items * 3.5)), n_items, replace=False))
    popularity_to_id = rng.permutation(movie_ids)
    ts = timestamps(rng, counts)
    rating = rng.choice(RATINGS, size=rows, p=RATING_P / RATING_P.sum())

    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "ratings.csv.part"
    with tmp.open("wb") as fh:
        for lo in range(0, rows, CHUNK):
            hi = min(lo + CHUNK, rows)
            pl.DataFrame({
                "userId": owner[lo:hi] + 1,
                "movieId": popularity_to_id[ranks[lo:hi]],
                "rating": rating[lo:hi],
                "timestamp": ts[lo:hi],
            }).write_csv(fh, include_header=lo == 0, float_precision=1)
    tmp.replace(out / "ratings.csv")
    movies_frame(rng, movie_ids).write_csv(out / "movies.csv")
    info = {"rows": rows, "users": n_users, "items": n_items, "seed": seed,
            "seconds": round(time.perf_counter() - t0, 1)}
    (out / "gen.json").write_text(json.dumps(info))  # lets benchmarks reuse the files
    return info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, required=True, help="number of ratings (>= 10,000)")
    ap.add_argument("--out", type=Path, required=True, help="folder for ratings.csv, movies.csv")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.rows < 10_000:
        ap.error("--rows must be at least 10,000 (every user needs 20 ratings)")
    info = generate(args.rows, args.out, args.seed)
    print(f"wrote {args.out}/ratings.csv: {info['rows']:,} ratings, {info['users']:,} users, "
          f"{info['items']:,} movies in {info['seconds']} s")


if __name__ == "__main__":
    main()
