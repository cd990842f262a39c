"""Helpers of bench/scale.sh: drive a `wharf server` through its API over one keep-alive
connection, as a user creating apps one by one would, and time what a user waits for.

    python3 bench/scale.py COMMAND ...   (see the functions named cmd_*)

Environment: WHARF_URL, WHARF_TOKEN (the API), GATEWAY (host:port of the plain HTTP listener),
DEADLINE (Unix time after which every command gives up), TIMEOUT (seconds per request).
Each command prints its result on stdout (one line, space separated) and its progress on stderr.
"""

import http.client
import json
import os
import statistics
import sys
import time
import urllib.parse

TIMEOUT = float(os.environ.get("TIMEOUT", "60"))
DEADLINE = float(os.environ.get("DEADLINE", "0")) or None


def die(msg):
    print(f"bench/scale.sh: {msg}", file=sys.stderr)
    sys.exit(1)


def check_deadline(what):
    if DEADLINE and time.time() > DEADLINE:
        die(f"gave up: the run's time limit (SCALE_MAX_MINUTES) passed during {what}")


class Conn:
    """One keep-alive connection, reopened if the server closes it."""

    def __init__(self, hostport, headers=None):
        self.hostport = hostport
        self.headers = headers or {}
        self.c = None

    def request(self, method, path, body=None, headers=None, refused_ok=False):
        """Returns (status, body, response); with `refused_ok`, (None, b"", None) while the
        server refuses connections (it is starting)."""
        h = dict(self.headers)
        h.update(headers or {})
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            h["content-type"] = "application/json"
        for attempt in (1, 2):
            if self.c is None:
                self.c = http.client.HTTPConnection(self.hostport, timeout=TIMEOUT)
            try:
                self.c.request(method, path, body=body, headers=h)
                r = self.c.getresponse()
                data = r.read()
                if r.getheader("connection", "").lower() == "close":
                    self.c.close()
                    self.c = None
                return r.status, data, r
            except TimeoutError:
                die(f"{method} {path} got no answer within {TIMEOUT:.0f} s (TIMEOUT)")
            except (http.client.HTTPException, ConnectionError, OSError) as e:
                self.c.close()
                self.c = None
                if refused_ok and isinstance(e, ConnectionRefusedError):
                    return None, b"", None
                if attempt == 2:
                    die(f"{method} {path} failed: {e}")


def api():
    url = urllib.parse.urlsplit(os.environ["WHARF_URL"])
    return Conn(url.netloc, {"authorization": "Bearer " + os.environ["WHARF_TOKEN"]})


def gateway():
    return Conn(os.environ["GATEWAY"])


def create(a, name):
    """Creates a static app; returns the seconds the API took (it answers once the route is live)."""
    t0 = time.perf_counter()
    status, body, _ = a.request("POST", "/api/v1/apps", {"name": name, "kind": "static"})
    t = time.perf_counter() - t0
    if status >= 300 or b'"status":"succeeded"' not in body:
        die(f"creating app {name} failed ({status}): {body[:300].decode(errors='replace')}")
    return t


def served(g, name, refused_ok=False):
    status, _, _ = g.request("GET", "/", headers={"host": f"{name}.localhost"}, refused_ok=refused_ok)
    return status


def progress(what, i, n, t0):
    if i % 100 == 0 or i == n:
        rate = i / max(time.time() - t0, 1e-9)
        print(f"  {what}: {i}/{n} ({rate:.0f}/s)", file=sys.stderr, flush=True)


def cmd_fill(prefix, start, end):
    """Creates apps PREFIX{start} .. PREFIX{end-1} one by one."""
    start, end = int(start), int(end)
    a = api()
    t0 = time.time()
    for i in range(start, end):
        check_deadline(f"the fill ({i - start} of {end - start} apps created)")
        create(a, f"{prefix}{i}")
        progress(f"creating apps {prefix}{start}..", i - start + 1, end - start, t0)
    print(f"{time.time() - t0:.1f}")


def cmd_samples(prefix, start, count):
    """Creates COUNT apps, each confirmed served through the gateway; prints median and p99 ms."""
    start, count = int(start), int(count)
    a, g = api(), gateway()
    times = []
    for i in range(start, start + count):
        check_deadline("the route-live samples")
        name = f"{prefix}{i}"
        times.append(create(a, name) * 1000)
        st = served(g, name)
        if st != 200:
            die(f"app {name}: the API answered but the gateway serves it {st}, not 200")
    times.sort()
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    print(f"{statistics.median(times):.1f} {p99:.1f}")


def cmd_delete(prefix, start, end):
    start, end = int(start), int(end)
    a = api()
    t0 = time.time()
    for i in range(start, end):
        check_deadline("the churn's deletes")
        status, body, _ = a.request("DELETE", f"/api/v1/apps/{prefix}{i}?purge=true")
        if status >= 300:
            die(f"deleting app {prefix}{i} failed ({status}): {body[:300].decode(errors='replace')}")
        progress(f"deleting apps {prefix}{start}..", i - start + 1, end - start, t0)
    print(f"{time.time() - t0:.1f}")


def cmd_last_op():
    """The newest operation's id (0 when none)."""
    status, body, _ = api().request("GET", "/api/v1/operations?limit=1")
    ops = json.loads(body) if status == 200 else []
    print(ops[0]["id"] if ops else 0)


def cmd_wait_ready(after_op, names_file):
    """Waits for the boot reconcile (an operation of kind `boot` newer than AFTER_OP) to end,
    then for every app named in NAMES_FILE to answer 200 through the gateway; prints how it
    went."""
    after_op = int(after_op)
    names = open(names_file).read().split()
    a, g = api(), gateway()
    boot = None
    while boot is None:
        check_deadline("the restart (waiting for the boot reconcile)")
        status, body, _ = a.request("GET", "/api/v1/operations?limit=20", refused_ok=True)
        if status == 200:
            for op in json.loads(body):
                if op["kind"] == "boot" and op["id"] > after_op and op["status"] != "running":
                    boot = op
        if boot is None:
            time.sleep(0.02)
    if boot["status"] != "succeeded":
        die(f"the boot reconcile failed: {boot['message']}")
    for name in names:
        while True:
            check_deadline(f"the restart (waiting for {name} to be served)")
            if served(g, name, refused_ok=True) == 200:
                break
            time.sleep(0.02)
    print("ok")


def cmd_dashboard(query, apps):
    """Logs in to the dashboard with the token, then times GET / (the apps page) and GET /?q=QUERY;
    prints two rows of the Markdown table (a page that errs says so, with its message)."""
    import re

    url = urllib.parse.urlsplit(os.environ["WHARF_URL"])
    d = Conn(url.netloc)
    form = urllib.parse.urlencode({"token": os.environ["WHARF_TOKEN"]})
    status, body, r = d.request(
        "POST", "/login", form, {"content-type": "application/x-www-form-urlencoded"}
    )
    cookie = (r.getheader("set-cookie") or "").split(";")[0]
    if not cookie:
        die(f"dashboard login failed ({status}): {body[:300].decode(errors='replace')}")
    pages = (
        ("/", f"dashboard apps page, {apps} apps: GET /"),
        ("/?q=" + urllib.parse.quote(query), f"dashboard search by name, {apps} apps: GET /?q={query}"),
    )
    for path, what in pages:
        t0 = time.perf_counter()
        status, body, _ = d.request("GET", path, headers={"cookie": cookie})
        ms = (time.perf_counter() - t0) * 1000
        if status != 200:
            text = re.sub(r"<[^>]*>", " ", body.decode(errors="replace"))
            text = " ".join(text.split())[:200].replace("|", "/")
            figure = f"**error {status}** after {ms:.0f} ms: {text}"
        elif path != "/" and query.encode() not in body:
            figure = f"{ms:.0f} ms, **but {query} is not on the page**"
        else:
            figure = f"{ms:.0f} ms ({len(body) // 1024} KiB)"
        met = "met" if status == 200 and ms < 200 else "**not met**"
        print(f"| {what} | {figure} | < 200 ms: {met} |")


if __name__ == "__main__":
    globals()["cmd_" + sys.argv[1].replace("-", "_")](*sys.argv[2:])
