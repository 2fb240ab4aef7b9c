#!/usr/bin/env python3
"""A real Medusa 2.21.2 shop for erpsync's tests, installed from npm and set up once.

    python3 tools/medusa/ensure.py install   # npm project, template database (idempotent)
    python3 tools/medusa/ensure.py serve     # install if needed, then a server on a copy of the template

Medusa's project is built by hand from the files next to this script (package.json with the
pins and `allowScripts`, medusa-config.js, the webhook subscriber): `create-medusa-app` clones
a starter from GitHub, which is not reachable here (shops.md §4).

`install` does its work once:
  * the npm project lives under $ERPSYNC_MEDUSA_HOME (default
    ~/.cache/erpsync/medusa-2.21.2-<key>), where <key> is derived from package.json and the
    versions of node and npm;
  * the template database `medusa_tpl_<setup key>` on the machine's PostgreSQL (127.0.0.1:5432,
    user postgres, trust auth; $ERPSYNC_MEDUSA_PG overrides) holds the migrations, the admin
    user, a secret API key and the one-time store setup (currency, region, stock locations,
    fulfilment, shipping option, publishable key). <setup key> also covers the project files and
    the code of the store setup, so a changed setup never reuses an old template.
A later call finds both and returns at once. It prints one JSON line.

`serve` creates a database from the template (`CREATE DATABASE … TEMPLATE …`, well under a
second), starts `node_modules/.bin/medusa start` on a free port of 127.0.0.1, waits for
/health, and prints one line `READY <json>` with the URL, the secret API key, the publishable
key and the ids of the setup. The subscriber forwards events to $ERPSYNC_WEBHOOK_URL signed with
$ERPSYNC_WEBHOOK_SECRET when the caller sets them. It then waits for its standard input to close
(the test process exited, normally or not) or for SIGTERM, kills the node process group and
drops the database. Every failure ends with exit status 1 and a message on stderr that says
which step failed.

Only the Python standard library is used here; psql must be on PATH.
"""

import base64
import datetime
import fcntl
import hashlib
import inspect
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
MEDUSA_VERSION = "2.21.2"
PROJECT_FILES = ["package.json", "medusa-config.js", os.path.join("src", "subscribers", "webhook.js")]
# Bump when the setup changes in a way the key does not see (the key covers store_setup's code).
SETUP_VERSION = "1"
ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "supersecret"
CURRENCY = "eur"
# A second region in US dollars, for an ERP that keeps its prices in dollars (the Tryton test
# company does): the matrix tests sync Tryton with this region.
SECOND_CURRENCY = "usd"
LOCATIONS = ["Main WH", "Second WH"]


class StepFailed(Exception):
    pass


def log(message):
    print(f"[medusa] {message}", file=sys.stderr, flush=True)


def tool_version(command):
    try:
        return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as error:
        raise StepFailed(f"{' '.join(command)} failed: {error}; Medusa needs node >= 20 and npm on PATH")


def digest(*parts):
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(part if isinstance(part, bytes) else part.encode())
        hasher.update(b"\0")
    return hasher.hexdigest()


def read(path):
    with open(path, "rb") as handle:
        return handle.read()


def keys():
    node = tool_version(["node", "--version"])
    npm = tool_version(["npm", "--version"])
    package_key = digest(read(os.path.join(HERE, "package.json")), node, npm)
    setup_key = digest(package_key, SETUP_VERSION, *[read(os.path.join(HERE, name)) for name in PROJECT_FILES],
                       inspect.getsource(store_setup))
    return package_key, setup_key


def home(package_key):
    default = os.path.join(os.path.expanduser("~"), ".cache", "erpsync", f"medusa-{MEDUSA_VERSION}-{package_key[:12]}")
    return os.environ.get("ERPSYNC_MEDUSA_HOME", default)


def pg_url(database):
    base = os.environ.get("ERPSYNC_MEDUSA_PG", "postgres://postgres@127.0.0.1:5432")
    return f"{base}/{database}"


def psql(step, sql, database="postgres"):
    command = ["psql", pg_url(database), "-v", "ON_ERROR_STOP=1", "-At", "-c", sql]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        raise StepFailed(f"{step}: psql is not installed (apt-get install postgresql-client)")
    if result.returncode != 0:
        raise StepFailed(
            f"{step} failed: {sql}\n{result.stderr.strip()}\n"
            f"Medusa's tests need PostgreSQL on {pg_url('')} with trust auth for user postgres "
            "(or set ERPSYNC_MEDUSA_PG)"
        )
    return result.stdout.strip()


def run(step, command, **kwargs):
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        tail = (result.stdout + result.stderr)[-4000:]
        raise StepFailed(f"{step} failed (exit status {result.returncode}): {' '.join(command)}\n{tail}")
    return time.monotonic() - started


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tail(path, size=4000):
    try:
        with open(path, errors="replace") as handle:
            return handle.read()[-size:]
    except OSError:
        return "(no log)"


def medusa_env(database, port, extra=None):
    env = dict(os.environ)
    env.update({
        "DATABASE_URL": pg_url(database),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "MEDUSA_DISABLE_TELEMETRY": "true",
        "NODE_ENV": "development",
        "JWT_SECRET": "erpsync-test-jwt",
        "COOKIE_SECRET": "erpsync-test-cookie",
    })
    for name in ("ERPSYNC_WEBHOOK_URL", "ERPSYNC_WEBHOOK_SECRET"):
        env.pop(name, None)
    env.update(extra or {})
    return env


def sync_project_files(project):
    """Copies the project files next to this script into the npm project when they differ."""
    for name in PROJECT_FILES:
        source = os.path.join(HERE, name)
        target = os.path.join(project, name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if os.path.exists(target) and read(target) == read(source):
            continue
        staging = f"{target}.{os.getpid()}.new"
        shutil.copyfile(source, staging)
        os.rename(staging, target)


def detach_and_die_with_parent():
    """In the child before exec: a session of its own (so that stopping kills every process
    medusa started), and on Linux a SIGKILL when this script dies, even by SIGKILL."""
    os.setsid()
    try:
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def process_alive(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return b"ensure.py" in handle.read()
    except OSError:
        return False


def sweep_stale(base):
    """Drops the databases and run folders of serve processes that died without cleaning up
    (killed by SIGKILL themselves): their servers died with them."""
    rows = psql("listing test databases", "SELECT datname FROM pg_database WHERE datname LIKE 'erpsync_medusa_%'")
    for name in filter(None, rows.splitlines()):
        parts = name.split("_")
        if len(parts) != 4 or not parts[2].isdigit() or process_alive(int(parts[2])):
            continue
        log(f"dropping {name}, left behind by a serve process that is gone")
        psql("dropping a stale test database", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shutil.rmtree(os.path.join(base, "runs", name), ignore_errors=True)


class Server:
    def __init__(self, project, database, log_path, extra_env=None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.log_file = open(log_path, "w")
        self.process = subprocess.Popen(
            [os.path.join(project, "node_modules", ".bin", "medusa"), "start"],
            cwd=project,
            env=medusa_env(database, self.port, extra_env),
            stdin=subprocess.DEVNULL,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            preexec_fn=detach_and_die_with_parent,
        )

    def wait_ready(self, deadline_seconds=180):
        started = time.monotonic()
        while time.monotonic() - started < deadline_seconds:
            if self.process.poll() is not None:
                raise StepFailed(
                    f"medusa exited with status {self.process.returncode} before /health answered; "
                    f"log:\n{tail(self.log_path)}"
                )
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=5) as response:
                    if response.status == 200:
                        return time.monotonic() - started
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.1)
        raise StepFailed(f"medusa did not answer /health within {deadline_seconds} s; log:\n{tail(self.log_path)}")

    def stop(self):
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.process.wait()
        # Children that outlived the leader (same process group) go too.
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.log_file.close()


class Api:
    """A minimal JSON client for the setup (the product's client is the Rust connector)."""

    def __init__(self, url):
        self.url = url
        self.headers = {}
        self.calls = 0

    def call(self, method, path, body=None):
        self.calls += 1
        data = None if body is None else json.dumps(body).encode()
        headers = dict(self.headers)
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            raise StepFailed(f"setup call {method} {path}: HTTP {error.code}: {error.read()[:800]!r}")
        except (urllib.error.URLError, OSError) as error:
            raise StepFailed(f"setup call {method} {path}: {error}")


def store_setup(api):
    """The one-time store setup of shops.md §4, with a second stock location for the mapping."""
    ids = {}
    token = api.call("POST", "/auth/user/emailpass", {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})["token"]
    api.headers["Authorization"] = "Bearer " + token
    secret = api.call("POST", "/admin/api-keys", {"title": "erpsync", "type": "secret"})["api_key"]
    ids["secret_api_key"] = secret["token"]
    # From here on, the secret key as the connector uses it: checks it works before the template is kept.
    api.headers["Authorization"] = "Basic " + base64.b64encode((secret["token"] + ":").encode()).decode()

    store = api.call("GET", "/admin/stores")["stores"][0]
    ids["store"] = store["id"]
    sales_channel = store.get("default_sales_channel_id")
    if not sales_channel:
        channels = api.call("GET", "/admin/sales-channels")["sales_channels"]
        if not channels:
            raise StepFailed("setup: the store has no sales channel")
        sales_channel = channels[0]["id"]
    ids["sales_channel"] = sales_channel
    ids["sales_channel_name"] = api.call("GET", f"/admin/sales-channels/{sales_channel}")["sales_channel"]["name"]
    api.call("POST", f"/admin/stores/{store['id']}",
             {"supported_currencies": [{"currency_code": CURRENCY, "is_default": True},
                                       {"currency_code": SECOND_CURRENCY}]})
    region = api.call("POST", "/admin/regions", {
        "name": "Europe", "currency_code": CURRENCY, "countries": ["de", "at"],
        "payment_providers": ["pp_system_default"],
    })["region"]
    ids["region"] = region["id"]
    ids["region_name"] = region["name"]
    americas = api.call("POST", "/admin/regions", {
        "name": "Americas", "currency_code": SECOND_CURRENCY, "countries": ["us"],
        "payment_providers": ["pp_system_default"],
    })["region"]
    ids["region_usd"] = americas["id"]
    ids["region_usd_name"] = americas["name"]

    profiles = api.call("GET", "/admin/shipping-profiles")["shipping_profiles"]
    if not profiles:
        raise StepFailed("setup: no shipping profile")
    ids["shipping_profile"] = profiles[0]["id"]

    ids["stock_locations"] = {}
    for index, name in enumerate(LOCATIONS):
        location = api.call("POST", "/admin/stock-locations", {
            "name": name,
            "address": {"address_1": f"Lagerstr. {index + 1}", "city": "Berlin", "postal_code": "10115",
                        "country_code": "DE"},
        })["stock_location"]
        ids["stock_locations"][name] = location["id"]
        api.call("POST", f"/admin/stock-locations/{location['id']}/sales-channels", {"add": [sales_channel]})
        api.call("POST", f"/admin/stock-locations/{location['id']}/fulfillment-providers", {"add": ["manual_manual"]})
        if index > 0:
            continue
        with_set = api.call(
            "POST",
            f"/admin/stock-locations/{location['id']}/fulfillment-sets?fields=*fulfillment_sets",
            {"name": f"{name} shipping", "type": "shipping"},
        )["stock_location"]
        fulfillment_set = with_set["fulfillment_sets"][0]["id"]
        zone_set = api.call("POST", f"/admin/fulfillment-sets/{fulfillment_set}/service-zones?fields=*service_zones", {
            "name": "Europe",
            "geo_zones": [{"type": "country", "country_code": "de"}, {"type": "country", "country_code": "at"},
                          {"type": "country", "country_code": "us"}],
        })["fulfillment_set"]
        service_zone = zone_set["service_zones"][0]["id"]
        option = api.call("POST", "/admin/shipping-options", {
            "name": "Standard", "price_type": "flat", "provider_id": "manual_manual",
            "service_zone_id": service_zone, "shipping_profile_id": ids["shipping_profile"],
            "type": {"label": "Standard", "description": "2-3 days", "code": "standard"},
            "prices": [{"currency_code": CURRENCY, "amount": 5}, {"currency_code": SECOND_CURRENCY, "amount": 5}],
            "rules": [{"attribute": "enabled_in_store", "value": "true", "operator": "eq"},
                      {"attribute": "is_return", "value": "false", "operator": "eq"}],
        })["shipping_option"]
        ids["shipping_option"] = option["id"]

    publishable = api.call("POST", "/admin/api-keys", {"title": "storefront", "type": "publishable"})["api_key"]
    api.call("POST", f"/admin/api-keys/{publishable['id']}/sales-channels", {"add": [sales_channel]})
    ids["publishable_api_key"] = publishable["token"]
    ids["calls"] = api.calls
    return ids


def install():
    """npm project and template database, once per key. Returns a summary dict."""
    package_key, setup_key = keys()
    base = home(package_key)
    os.makedirs(base, exist_ok=True)
    project = os.path.join(base, "project")
    template = f"medusa_tpl_{setup_key[:12]}"
    summary = {"home": base, "project": project, "template": template}
    with open(os.path.join(base, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        installed_marker = os.path.join(project, ".installed")

        # 1. The npm project.
        if not os.path.exists(installed_marker):
            shutil.rmtree(project, ignore_errors=True)
            os.makedirs(project)
            sync_project_files(project)
            started = time.monotonic()
            log(f"npm install of Medusa {MEDUSA_VERSION} into {project} (about a minute with a warm npm cache)")
            run("npm install of Medusa", ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=project)
            if not os.path.exists(os.path.join(project, "node_modules", ".bin", "medusa")):
                raise StepFailed("npm install finished but node_modules/.bin/medusa is missing")
            with open(installed_marker, "w") as marker:
                marker.write(json.dumps({"installed": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                                         "seconds": round(time.monotonic() - started, 1)}))
            summary["install_seconds"] = round(time.monotonic() - started, 1)
        sync_project_files(project)

        # 2. The template database.
        setup_file = os.path.join(base, f"setup-{setup_key[:12]}.json")
        exists = psql("looking for the template database",
                      f"SELECT 1 FROM pg_database WHERE datname = '{template}'")
        if exists == "1" and os.path.exists(setup_file):
            with open(setup_file) as handle:
                summary.update(json.load(handle))
            summary["cached"] = True
            return summary

        started = time.monotonic()
        scratch = f"{template}_setup"
        psql("dropping an unfinished setup database", f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
        psql("dropping an old template database", f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)')
        psql("creating the setup database", f'CREATE DATABASE "{scratch}"')
        env = medusa_env(scratch, 0)
        medusa = os.path.join(project, "node_modules", ".bin", "medusa")
        log("medusa db:migrate")
        migrate_seconds = run("medusa db:migrate", [medusa, "db:migrate"], cwd=project, env=env)
        log("medusa user (the admin)")
        run("medusa user", [medusa, "user", "-e", ADMIN_EMAIL, "-p", ADMIN_PASSWORD], cwd=project, env=env)
        server = Server(project, scratch, os.path.join(base, "setup.log"))
        try:
            server.wait_ready()
            log("one-time store setup over the admin API")
            ids = store_setup(Api(server.url))
        finally:
            server.stop()
        psql("renaming the setup database to the template", f'ALTER DATABASE "{scratch}" RENAME TO "{template}"')
        record = {
            "ids": ids,
            "medusa": MEDUSA_VERSION,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "migrate_seconds": round(migrate_seconds, 1),
            "template_seconds": round(time.monotonic() - started, 1),
        }
        staging = setup_file + ".new"
        with open(staging, "w") as handle:
            json.dump(record, handle, indent=1)
        os.rename(staging, setup_file)
        summary.update(record)
        summary["cached"] = False
        return summary


def serve():
    started = time.monotonic()
    summary = install()
    install_check = time.monotonic() - started
    database = f"erpsync_medusa_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    server = None
    stopped = False

    def cleanup(*_):
        nonlocal stopped
        if stopped:
            return
        stopped = True
        if server is not None:
            server.stop()
        try:
            psql("dropping the test database", f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        except StepFailed as error:
            log(str(error))
        shutil.rmtree(workdir, ignore_errors=True)

    def on_signal(*_):
        cleanup()
        os._exit(0)

    sweep_stale(summary["home"])
    workdir = os.path.join(summary["home"], "runs", database)
    os.makedirs(workdir, exist_ok=True)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    extra_env = {name: os.environ[name] for name in ("ERPSYNC_WEBHOOK_URL", "ERPSYNC_WEBHOOK_SECRET")
                 if name in os.environ}
    try:
        copy_started = time.monotonic()
        psql("creating the test database from the template",
             f'CREATE DATABASE "{database}" TEMPLATE "{summary["template"]}"')
        copy_seconds = time.monotonic() - copy_started
        for attempt in range(3):
            server = Server(summary["project"], database, os.path.join(workdir, "medusa.log"), extra_env)
            try:
                startup = server.wait_ready()
                break
            except StepFailed:
                # Most likely the free port was taken between choosing it and binding it.
                server.stop()
                server = None
                if attempt == 2:
                    raise
        ids = summary["ids"]
        ready = {
            "url": server.url,
            "api_key": ids["secret_api_key"],
            "publishable_api_key": ids["publishable_api_key"],
            "database": database,
            "pid": server.process.pid,
            "log": server.log_path,
            "ids": ids,
            "cached": summary["cached"],
            "install_check_seconds": round(install_check, 2),
            "database_copy_seconds": round(copy_seconds, 2),
            "startup_seconds": round(startup, 2),
        }
        for key in ("install_seconds", "migrate_seconds", "template_seconds"):
            if key in summary and not summary["cached"]:
                ready[key] = summary[key]
        print("READY " + json.dumps(ready), flush=True)
    except BaseException:
        cleanup()
        raise
    # Wait for the parent to go away: its end of our stdin closes when it exits for any reason.
    try:
        while sys.stdin.buffer.read(4096):
            pass
    finally:
        cleanup()


def main():
    command = sys.argv[1] if len(sys.argv) > 1 else "install"
    try:
        if command == "install":
            print(json.dumps(install()), flush=True)
        elif command == "serve":
            serve()
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except StepFailed as error:
        print(f"erpsync medusa: {error}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
