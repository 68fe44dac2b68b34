"""A realistic nginx access log (the ``combined`` format) for the ship section, made locally.

The lines look like a busy site's: clients from a pool of addresses, time that moves forward a
few milliseconds a line, mostly GETs of pages, assets and API paths with query strings, the
usual spread of statuses and sizes, real browsers' and bots' user agents, referrers on about
half the lines. The seed is fixed, so every run ships the same bytes; lines average about
220 bytes, as in the issue's figures.
"""

from __future__ import annotations

import random
import time
from itertools import accumulate
from pathlib import Path

# Real user agents of the kinds a public site sees (browsers, a crawler, a CLI, a library).
USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.6367.82 Mobile Safari/537.36",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "curl/8.5.0",
    "python-requests/2.31.0",
    "Prometheus/2.51.1",
)
# Browsers make most of the traffic; the crawler, the CLI and the library the rest.
AGENT_WEIGHTS = (6, 4, 3, 5, 5, 1, 1, 1, 1)
METHODS = ("GET",) * 17 + ("POST",) * 2 + ("HEAD",)
STATUSES = (200,) * 78 + (304,) * 8 + (301, 302) * 2 + (404,) * 5 + (401, 403, 500)
PAGES = ("/", "/index.html", "/products", "/products/{n}", "/cart", "/checkout",
         "/blog/2025/{n}/release-notes", "/search?q=item+{n}&page={p}", "/login", "/account")
ASSETS = ("/static/css/main.{h}.css", "/static/js/app.{h}.js", "/static/img/p{n}.webp",
          "/favicon.ico")
APIS = ("/api/v1/orders/{n}", "/api/v1/orders?status=open&page={p}",
        "/api/v2/users/{n}/preferences", "/api/v1/products/{n}/reviews?limit=20&offset={p}",
        "/healthz", "/metrics")
REFERRERS = ("https://www.example.com/", "https://www.example.com/products/{n}",
             "https://www.google.com/", "https://example.com/search?q=item+{n}")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# 2026-03-02 09:00:00 UTC: the log's first line.
START_EPOCH = 1772442000


def _clf_time(epoch: int) -> str:
    t = time.gmtime(epoch)
    return (f"{t.tm_mday:02d}/{MONTHS[t.tm_mon - 1]}/{t.tm_year}:"
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000")


def _lines(rng: random.Random, count: int, first_ms: int) -> tuple[list[str], int]:
    """``count`` lines from time ``first_ms``; the lines and the time after the last."""
    clients = [f"{rng.randint(1, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}."
               f"{rng.randint(1, 254)}" for _ in range(64)]
    agents = rng.choices(USER_AGENTS, AGENT_WEIGHTS, k=count)
    out = []
    ms = first_ms
    stamp_s, stamp = -1, ""
    for agent in agents:
        ms += rng.randint(0, 8)
        if ms // 1000 != stamp_s:
            stamp_s = ms // 1000
            stamp = _clf_time(stamp_s)
        n, p = rng.randint(1, 99_999), rng.randint(1, 40)
        kind = rng.random()
        pool = PAGES if kind < 0.35 else ASSETS if kind < 0.7 else APIS
        path = rng.choice(pool).format(n=n, p=p, h=f"{n * 7919:08x}")
        status = rng.choice(STATUSES)
        size = 0 if status in (304, 301, 302) else rng.randint(200, 48_000)
        referrer = rng.choice(REFERRERS).format(n=n) if rng.random() < 0.6 else "-"
        out.append(f'{rng.choice(clients)} - - [{stamp}] "{rng.choice(METHODS)} {path} '
                   f'HTTP/1.1" {status} {size} "{referrer}" "{agent}"\n')
    return out, ms


def write_access_log(path: Path, target_bytes: int, seed: int = 17) -> tuple[int, int]:
    """Write at least ``target_bytes`` of whole lines to ``path``; (bytes, lines) written."""
    rng = random.Random(seed)
    written = lines = 0
    ms = START_EPOCH * 1000
    chunk = 10_000
    with open(path, "w", encoding="ascii", newline="") as f:
        for _ in range(target_bytes // 100 // chunk + 2):  # lines are > 100 bytes: bounded
            if written >= target_bytes:
                break
            batch, ms = _lines(rng, chunk, ms)
            totals = accumulate(map(len, batch), initial=written)  # the last batch: enough
            keep = next((i for i, total in enumerate(totals) if total >= target_bytes),
                        len(batch))
            batch = batch[:keep]
            text = "".join(batch)
            f.write(text)
            written += len(text)
            lines += len(batch)
    return written, lines


if __name__ == "__main__":
    import sys

    size, count = write_access_log(Path(sys.argv[1]), int(float(sys.argv[2]) * 1e6))
    print(f"{size:,} bytes, {count:,} lines, {size / count:.0f} bytes a line")
