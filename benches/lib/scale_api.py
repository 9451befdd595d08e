"""Latency of the admin API's list and paging routes on a big store (benches/scale.sh).

scale_api.py API TOKEN ACCOUNT CLIENT_ID_PREFIX DEVICES [--pages N]

One keep-alive HTTP connection, one request at a time; each latency is from sending the request
to having read the whole answer. Kinds (API.md paging, limit 100):
  requests          walk provision-requests pages from the first, following `next`
  requests_status   the same with status=COMPLETED
  requests_client   provision-requests?clientId=X for random enrolled client IDs
  devices           walk the devices list from the first page
  devices_deep      one devices page after a random client ID (a page deep in the list)
  devices_never     walk devices?connection=NEVER_CONNECTED
  devices_connected devices?connection=CONNECTED (no device is connected: a filter that
                    matches nothing), first page only
Prints one JSON object: per kind the samples, p50, p99 and max in milliseconds.
"""

import http.client
import json
import random
import statistics
import sys
import time
import urllib.parse


def main():
    args = sys.argv[1:]
    pages = 300
    if "--pages" in args:
        i = args.index("--pages")
        pages = int(args[i + 1])
        del args[i : i + 2]
    api, token, account, prefix, devices = args[0], args[1], args[2], args[3], int(args[4])
    url = urllib.parse.urlsplit(api)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
    headers = {"Authorization": f"Bearer {token}"}
    rng = random.Random(17)

    def get(path):
        start = time.perf_counter()
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        ms = (time.perf_counter() - start) * 1000
        if resp.status != 200:
            sys.exit(f"GET {path}: HTTP {resp.status}: {body[:200]!r}")
        return ms, json.loads(body)

    base = f"/api/v1/accounts/{account}"
    out = {}

    def walk(kind, path, n):
        times, after = [], None
        for _ in range(n):
            sep = "&" if "?" in path else "?"
            p = path + sep + "limit=100" + (f"&after={urllib.parse.quote(after)}" if after else "")
            ms, page = get(p)
            times.append(ms)
            after = page.get("next")
            if not after:
                break
        out[kind] = times

    def client_id():
        return f"{prefix}{rng.randrange(devices)}"

    walk("requests", f"{base}/provision-requests", pages)
    walk("requests_status", f"{base}/provision-requests?status=COMPLETED", pages)
    out["requests_client"] = [
        get(f"{base}/provision-requests?clientId={urllib.parse.quote(client_id())}")[0]
        for _ in range(pages)
    ]
    walk("devices", f"{base}/devices", pages)
    out["devices_deep"] = [
        get(f"{base}/devices?limit=100&after={urllib.parse.quote(client_id())}")[0]
        for _ in range(pages)
    ]
    walk("devices_never", f"{base}/devices?connection=NEVER_CONNECTED", pages)
    out["devices_connected"] = [
        get(f"{base}/devices?connection=CONNECTED&limit=100")[0] for _ in range(5)
    ]

    def pct(xs, q):
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]

    print(json.dumps({
        kind: {
            "samples": len(xs),
            "p50": round(statistics.median(xs), 2),
            "p99": round(pct(xs, 0.99), 2),
            "max": round(max(xs), 2),
        }
        for kind, xs in out.items()
    }))


if __name__ == "__main__":
    main()
