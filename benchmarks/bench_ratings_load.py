"""Rating load: 20 signed-in raters posting 100 ratings each at once through the web app's API
(uvicorn, Bearer tokens, the site's guards), against a baseline measured in the same run: the
same ratings written by 20 threads straight through ``Store.add_rating`` (no HTTP, no
sign-in). Prints throughput and latency percentiles of both, their ratios, and checks that
every rating was stored exactly once with the history kept.

    .venv/bin/python benchmarks/bench_ratings_load.py [--raters 20 --each 100] [--db URL]

Without ``--db`` it runs on a fresh SQLite file; ``--db postgresql://…`` runs on PostgreSQL
(``eval "$(bash .ci/postgres.sh)"`` starts a throwaway one; the URL is then
``$HEADMAPS_TEST_POSTGRES_URL``; the benchmark uses its own schema there and drops it).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, select, text  # noqa: E402

from benchmarks.rating_load import expected_rows, planned, run_load, serving  # noqa: E402
from store import open_store  # noqa: E402
from store import tables as S  # noqa: E402
from store.records import RatingIn  # noqa: E402
from tests._webstore import fill  # noqa: E402


def fresh_store(db: str | None, tmp: Path, tag: str) -> tuple[str, list[int]]:
    if db is None:
        url = f"sqlite:///{tmp / f'{tag}.db'}"
    else:
        schema = f"bench_{tag}_{uuid.uuid4().hex[:8]}"
        with create_engine(db).begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        sep = "&" if "?" in db else "?"
        url = f"{db}{sep}options=-csearch_path%3D{schema}"
    with open_store(url) as store:
        ids = sorted(fill(store).values())
    return url, ids


def check(url: str, names: list[str], ids: list[int], each: int) -> str:
    rows, current = expected_rows(names, ids, {n: each for n in names})
    with open_store(url) as store, store.read() as session:
        stored = session.execute(
            select(
                S.Rating.rater, S.Rating.description_id, S.Rating.label, S.Rating.comment, S.Rating.is_current
            )
        ).all()
    exact = sorted(r[:4] for r in stored) == rows
    currents = {r[:4] for r in stored if r[4]} == current
    return f"{len(stored)} rows, {'each exactly once' if exact else 'MISMATCH'}, " + (
        "one current per rater and description" if currents else "CURRENT ROWS WRONG"
    )


def baseline(url: str, names: list[str], ids: list[int], each: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    with open_store(url) as store:

        def rater(n: int, name: str) -> None:
            for i in range(each):
                p = planned(n, i, ids)
                start = time.perf_counter()
                store.add_rating(RatingIn(rater=name, **p))
                store.ratings_for(p["description_id"])  # the API answers with the stored rating
                latencies.append(time.perf_counter() - start)

        start = time.perf_counter()
        with ThreadPoolExecutor(len(names)) as pool:
            for f in [pool.submit(rater, n, name) for n, name in enumerate(names)]:
                f.result()
        return time.perf_counter() - start, latencies


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--raters", type=int, default=20)
    parser.add_argument("--each", type=int, default=100)
    parser.add_argument("--db", default=None, help="a PostgreSQL URL (default: a fresh SQLite file)")
    args = parser.parse_args()
    names = [f"rater{n:02d}" for n in range(args.raters)]
    total = args.raters * args.each
    with tempfile.TemporaryDirectory() as tmp:
        url, ids = fresh_store(args.db, Path(tmp), "web")
        with open_store(url) as store:
            engine = store.dialect
            tokens = {name: store.add_rater(name).token for name in names}
        with serving(url) as base:
            web = run_load(base, tokens, ids, args.each)
        refused = sum(s != 201 for v in web.statuses.values() for s in v)
        web_check = check(url, names, ids, args.each)

        base_url, base_ids = fresh_store(args.db, Path(tmp), "direct")
        direct_s, direct_lat = baseline(base_url, names, base_ids, args.each)
        direct_check = check(base_url, names, base_ids, args.each)
        if args.db is not None:
            with create_engine(args.db).begin() as conn:
                for used in (url, base_url):
                    conn.execute(text(f'DROP SCHEMA "{used.rsplit("%3D", 1)[1]}" CASCADE'))

    print(f"{engine}: {args.raters} raters x {args.each} ratings = {total}, all at once")
    print(f"{'':28}{'ratings/s':>10}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}")
    for label, seconds, lat in (
        ("web API (HTTP, tokens)", web.seconds, web.latencies),
        ("baseline: Store.add_rating", direct_s, direct_lat),
    ):
        print(
            f"{label:28}{len(lat) / seconds:10.1f}{1000 * statistics.median(lat):9.1f}"
            f"{1000 * pct(lat, 0.95):9.1f}{1000 * pct(lat, 0.99):9.1f}"
        )
    print(
        f"ratios web/baseline: throughput {len(web.latencies) / web.seconds / (len(direct_lat) / direct_s):.2f}x, "
        f"p95 {pct(web.latencies, 0.95) / pct(direct_lat, 0.95):.2f}x"
    )
    print(f"web: {refused} refused; store: {web_check}")
    print(f"baseline store: {direct_check}")


if __name__ == "__main__":
    main()
