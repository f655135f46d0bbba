"""Connection attempts made from inside a client host (run via `ip netns exec`).

Reads a JSON list of attempts on stdin (passwords travel there, never in argv) and
prints one JSON result per attempt: whether it connected, and PostgreSQL's reason if not.
"""

import json
import sys

import psycopg


def attempt(a: dict) -> dict:
    try:
        with psycopg.connect(
            host=a["host"], port=a["port"], dbname=a["dbname"], user=a["user"], password=a["password"],
            sslmode=a["sslmode"], connect_timeout=5,
        ) as conn:
            conn.execute("SELECT 1")
        return {"ok": True, "error": ""}
    except psycopg.Error as e:
        return {"ok": False, "error": str(e).strip().splitlines()[-1]}


if __name__ == "__main__":
    print(json.dumps([attempt(a) for a in json.load(sys.stdin)]))
