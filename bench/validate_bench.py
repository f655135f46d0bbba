#!/usr/bin/env python3
"""Validation and pg_hba benchmark: how long a site with many client networks takes.

    .venv/bin/python bench/validate_bench.py [--sizes 1000 3000 10000] [--runs 3]

For each size N, a pilot site whose five client groups hold N networks each (random /24
to /32 blocks, mostly apart, so that pg_hba cannot collapse them; a tenth of the tenant
services' networks are product services' too, as on a shared host) is:

* validated: ``parse_site`` on the inventory's dict, hard-rule overlap checks included;
* rendered: ``hba.rules`` and ``templates/pg_hba.conf.j2``, as the deploy renders it.

It prints the best of ``--runs`` for each, and the number of pg_hba lines. No root, no
host: the work is pure Python. Target: 10,000 networks per group in 1 s or less, both
together.
"""

from __future__ import annotations

import argparse
import ipaddress
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zeroui_db import contract, hba  # noqa: E402
from zeroui_db.config import parse_site  # noqa: E402
from zeroui_db.templates import render_template  # noqa: E402

# Each group draws from a /8 of its own, so that IDE laptops never share an address with a
# group that may reach the product or shared plane (the config would refuse that).
BASES = {
    contract.IDE_LAPTOPS.key: "10.0.0.0/8",
    contract.TENANT_SERVICES.key: "11.0.0.0/8",
    contract.PRODUCT_SERVICES.key: "12.0.0.0/8",
    contract.SHARED_SERVICES.key: "13.0.0.0/8",
    contract.ADMIN_HOSTS.key: "14.0.0.0/8",
}


def networks(rng: random.Random, base: str, count: int) -> list[str]:
    """``count`` distinct random blocks (/24 to /32) inside ``base``."""
    first = int(ipaddress.ip_network(base).network_address)
    out: dict[str, None] = {}
    while len(out) < count:
        prefix = rng.randint(24, 32)
        size = 1 << (32 - prefix)
        start = first + rng.randrange(0, 1 << 24, size)
        out[str(ipaddress.ip_network((start, prefix)))] = None
    return list(out)


def site_data(count: int, seed: int = 9) -> dict:
    rng = random.Random(seed)
    clients = {key: {"networks": networks(rng, base, count)} for key, base in BASES.items()}
    product = clients[contract.PRODUCT_SERVICES.key]["networks"]
    tenant = clients[contract.TENANT_SERVICES.key]["networks"]
    tenant[: count // 10] = product[: count // 10]  # hosts shared with product services
    clients[contract.ADMIN_HOSTS.key]["networks"][0] = "127.0.0.1/32"  # the deploy's own admin connection
    return {"site": "bench", "cluster": {"listen_addresses": ["127.0.0.1"]}, "clients": clients}


def best_of(runs: int, func) -> tuple[float, object]:
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = func()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 3000, 10000])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"{'networks/group':>14} {'validate':>9} {'render':>9} {'total':>9} {'pg_hba lines':>13}")
    for count in args.sizes:
        data = site_data(count)
        validate, site = best_of(args.runs, lambda: parse_site(data))
        render, text = best_of(args.runs, lambda: render_template("pg_hba.conf.j2", **hba.template_context(site)))
        lines = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
        print(f"{count:>14,} {validate:>8.2f}s {render:>8.2f}s {validate + render:>8.2f}s {lines:>13,}")


if __name__ == "__main__":
    main()
