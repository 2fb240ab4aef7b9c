#!/usr/bin/env python3
"""A real Tryton 8.2 server for erpsync's tests, installed from PyPI and configured once.

    python3 tools/tryton/ensure.py install   # venv, database, business setup, snapshot (idempotent)
    python3 tools/tryton/ensure.py serve     # install if needed, then a server on a copy of the snapshot

`install` does its work once per set of pinned versions: the virtual environment and the
configured database snapshot live under $ERPSYNC_TRYTON_HOME (default
~/.cache/erpsync/tryton/<key>), where <key> is derived from the pins and from this setup's
version. A later call finds the snapshot and returns at once. It prints one JSON line.

`serve` copies the snapshot into a fresh temporary folder, starts trytond on a free port of
127.0.0.1, waits until it answers JSON-RPC, and prints one line `READY <json>` with the URL,
database, login, password file and the ids of the setup. It then waits for its standard input
to close (the test process that started it exited, normally or not) or for SIGTERM, stops
trytond and removes the folder. Every failure ends with exit status 1 and a message on stderr
that says which step failed.

Only the Python standard library is used here; Tryton itself runs in the venv.
"""

import datetime
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

PINS = [
    "trytond==8.2.1",
    "trytond-party==8.2.0",
    "trytond-company==8.2.0",
    "trytond-currency==8.2.0",
    "trytond-product==8.2.0",
    "trytond-stock==8.2.1",
    "trytond-sale==8.2.0",
    "trytond-account==8.2.1",
    "trytond-account-invoice==8.2.0",
    "trytond-sale-price-list==8.2.0",
    "trytond-product-price-list==8.2.0",
    "trytond-web-shop==8.2.0",
]
MODULES = [
    "party", "company", "currency", "product", "stock", "sale", "account_invoice",
    "sale_price_list", "product_price_list", "web_shop",
]
# Bump when the business setup below changes, so that old snapshots are not reused.
SETUP_VERSION = "4"
DATABASE = "erp"
LOGIN = "admin"
PASSWORD = "admin"


class StepFailed(Exception):
    pass


def log(message):
    print(f"[tryton] {message}", file=sys.stderr, flush=True)


def home():
    key = hashlib.sha256(("\n".join(PINS) + "\n" + SETUP_VERSION + "\n" + sys.version.split()[0]).encode()).hexdigest()
    default = os.path.join(os.path.expanduser("~"), ".cache", "erpsync", "tryton", "8.2-" + key[:12])
    return os.environ.get("ERPSYNC_TRYTON_HOME", default)


def run(step, command, **kwargs):
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        tail = (result.stdout + result.stderr)[-3000:]
        raise StepFailed(f"{step} failed (exit status {result.returncode}): {' '.join(command)}\n{tail}")
    return time.monotonic() - started


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_config(path, db_dir, port):
    with open(path, "w") as config:
        config.write(
            "[database]\nuri = sqlite://\npath = %s\nlanguage = en\n\n[web]\nlisten = 127.0.0.1:%d\n" % (db_dir, port)
        )


class Rpc:
    """A minimal JSON-RPC client for the setup (the product's client is the Rust connector)."""

    def __init__(self, url):
        self.url = url
        self.auth = None
        self.counter = 0
        self.context = {}

    def call(self, method, *params):
        self.counter += 1
        body = json.dumps({"id": self.counter, "method": method, "params": list(params)}).encode()
        headers = {"Content-Type": "application/json"}
        if self.auth:
            headers["Authorization"] = self.auth
        request = urllib.request.Request(self.url, data=body, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=300) as response:
                answer = json.loads(response.read())
        except urllib.error.HTTPError as error:
            raise StepFailed(f"setup call {method}: HTTP {error.code}: {error.read()[:500]!r}")
        if answer.get("error"):
            raise StepFailed(f"setup call {method}: {answer['error']}")
        return answer.get("result")

    def login(self, login, password):
        user_id, session = self.call("common.db.login", login, {"password": password}, "en")[:2]
        import base64

        token = base64.b64encode(f"{login}:{user_id}:{session}".encode()).decode()
        self.auth = "Session " + token
        return user_id


def wait_ready(url, process, log_path, deadline_seconds=120):
    started = time.monotonic()
    body = json.dumps({"id": 0, "method": "common.server.version", "params": []}).encode()
    while time.monotonic() - started < deadline_seconds:
        if process.poll() is not None:
            raise StepFailed(f"trytond exited with status {process.returncode} before answering; log:\n{tail(log_path)}")
        try:
            request = urllib.request.Request(url + "/rpc/", data=body, headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=5) as response:
                if json.loads(response.read()).get("result"):
                    return time.monotonic() - started
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.05)
    raise StepFailed(f"trytond did not answer within {deadline_seconds} s; log:\n{tail(log_path)}")


def tail(path, size=3000):
    try:
        with open(path, errors="replace") as handle:
            return handle.read()[-size:]
    except OSError:
        return "(no log)"


def start_trytond(venv, workdir, db_dir):
    port = free_port()
    config = os.path.join(workdir, "trytond.conf")
    write_config(config, db_dir, port)
    log_path = os.path.join(workdir, "trytond.log")
    log_file = open(log_path, "w")
    process = subprocess.Popen(
        [os.path.join(venv, "bin", "trytond"), "-c", config, "-d", DATABASE],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        cwd=workdir,
    )
    url = f"http://127.0.0.1:{port}"
    return process, url, log_path


def stop(process):
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def checkpoint_wal(db_file):
    connection = sqlite3.connect(db_file)
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()


def D(text):
    return {"__class__": "Decimal", "decimal": text}


def date(day):
    return {"__class__": "date", "year": day.year, "month": day.month, "day": day.day}


def business_setup(rpc):
    """The one-time setup of tryton.md §5, plus a second warehouse and a web shop."""
    ids = {}
    user_id = rpc.login(LOGIN, PASSWORD)
    currency = rpc.call(
        "model.currency.currency.create",
        [{"name": "US Dollar", "code": "USD", "symbol": "$", "numeric_code": "840", "rounding": D("0.01"), "digits": 2}],
        {},
    )[0]
    ids["currency"] = currency
    # Euros too, for shops that sell in euros (the Shopify simulator does): a sale in euros is
    # invoiced in euros and posted in dollars, which needs a rate for both from the start of
    # last year on.
    ids["currency_eur"] = rpc.call(
        "model.currency.currency.create",
        [{"name": "Euro", "code": "EUR", "symbol": "€", "numeric_code": "978", "rounding": D("0.01"), "digits": 2}],
        {},
    )[0]
    rates_from = date(datetime.date(datetime.date.today().year - 1, 1, 1))
    rpc.call(
        "model.currency.currency.rate.create",
        [{"currency": currency, "date": rates_from, "rate": D("1")},
         {"currency": ids["currency_eur"], "date": rates_from, "rate": D("0.9")}],
        {},
    )
    ids["country_us"] = rpc.call("model.country.country.create", [{"name": "United States", "code": "US"}], {})[0]
    ids["country_de"] = rpc.call("model.country.country.create", [{"name": "Germany", "code": "DE"}], {})[0]
    # The other countries the shop simulators' customers live in.
    rpc.call(
        "model.country.country.create",
        [{"name": "France", "code": "FR"}, {"name": "Italy", "code": "IT"}, {"name": "Austria", "code": "AT"}],
        {},
    )
    company_party = rpc.call("model.party.party.create", [{"name": "erpsync Test Company"}], {})[0]
    company = rpc.call("model.company.company.create", [{"party": company_party, "currency": currency, "timezone": "UTC"}], {})[0]
    ids["company"] = company
    rpc.call("model.res.user.write", [user_id], {"companies": [["add", [company]]], "company": company}, {})
    ctx = {"company": company, "language": "en"}

    # Chart of accounts from the universal template, then the default receivable/payable.
    session, _, _ = rpc.call("wizard.account.create_chart.create", ctx)
    rpc.call("wizard.account.create_chart.execute", session, {}, "start", ctx)
    rpc.call("wizard.account.create_chart.execute", session, {}, "account", ctx)
    template = rpc.call("model.account.account.template.search", [["parent", "=", None]], 0, 1, None, ctx)[0]
    rpc.call(
        "wizard.account.create_chart.execute",
        session,
        {"account": {"company": company, "account_template": template}},
        "create_account",
        ctx,
    )

    def first_account(domain, what):
        rows = rpc.call(
            "model.account.account.search_read",
            domain + [["closed", "!=", True], ["company", "=", company]],
            0,
            None,
            [["code", "ASC"], ["id", "ASC"]],
            ["code", "name", "childs"],
            ctx,
        )
        leaves = [row for row in rows if not row.get("childs")]
        if not leaves:
            raise StepFailed(f"setup: no open leaf {what} account in the chart")
        return leaves[0]["id"]

    receivable = first_account([["type.receivable", "=", True], ["party_required", "=", True]], "receivable")
    payable = first_account([["type.payable", "=", True], ["party_required", "=", True]], "payable")
    rpc.call(
        "wizard.account.create_chart.execute",
        session,
        {"properties": {"company": company, "account_receivable": receivable, "account_payable": payable}},
        "create_properties",
        ctx,
    )
    rpc.call("wizard.account.create_chart.delete", session, ctx)
    revenue = first_account([["type.revenue", "=", True]], "revenue")
    expense = first_account([["type.expense", "=", True]], "expense")

    # Fiscal years (this one and the next, so a snapshot made in December still posts in
    # January), each with its own strict sequences.
    move_type = rpc.call("model.ir.model.data.get_id", "account", "sequence_type_account_move", ctx)
    invoice_type = rpc.call("model.ir.model.data.get_id", "account_invoice", "sequence_type_account_invoice", ctx)
    this_year = datetime.date.today().year
    for year in (this_year, this_year + 1):
        move_sequence = rpc.call(
            "model.ir.sequence.strict.create",
            [{"name": f"Account Move {year}", "sequence_type": move_type, "company": company}],
            ctx,
        )[0]
        invoice_sequence = rpc.call(
            "model.ir.sequence.strict.create",
            [{"name": f"Customer Invoice {year}", "sequence_type": invoice_type, "company": company,
              "prefix": f"INV/{year}/"}],
            ctx,
        )[0]
        fiscal_year = rpc.call(
            "model.account.fiscalyear.create",
            [{
                "name": str(year),
                "company": company,
                "start_date": date(datetime.date(year, 1, 1)),
                "end_date": date(datetime.date(year, 12, 31)),
                "move_sequence": move_sequence,
                "invoice_sequences": [["create", [{
                    "company": company,
                    "in_invoice_sequence": invoice_sequence,
                    "in_credit_note_sequence": invoice_sequence,
                    "out_invoice_sequence": invoice_sequence,
                    "out_credit_note_sequence": invoice_sequence,
                }]]],
            }],
            ctx,
        )[0]
        rpc.call("model.account.fiscalyear.create_period", [fiscal_year], ctx)

    ids["account_category"] = rpc.call(
        "model.product.category.create",
        [{"name": "Goods", "accounting": True, "account_revenue": revenue, "account_expense": expense}],
        ctx,
    )[0]
    ids["unit"] = rpc.call("model.product.uom.search", [["name", "=", "Unit"]], 0, 1, None, ctx)[0]

    warehouses = rpc.call(
        "model.stock.location.search_read", [["type", "=", "warehouse"]], 0, None, None,
        ["name", "code", "storage_location"], ctx,
    )
    if len(warehouses) != 1:
        raise StepFailed(f"setup: expected the one default warehouse, found {warehouses}")
    ids["warehouse"] = warehouses[0]["id"]
    ids["warehouse_code"] = warehouses[0]["code"]
    ids["storage"] = warehouses[0]["storage_location"]
    zones = rpc.call(
        "model.stock.location.create",
        [{"name": "WH2 Input", "type": "storage"}, {"name": "WH2 Output", "type": "storage"},
         {"name": "WH2 Storage", "type": "storage"}],
        ctx,
    )
    warehouse2 = rpc.call(
        "model.stock.location.create",
        [{"name": "Warehouse 2", "code": "WH2", "type": "warehouse", "input_location": zones[0],
          "output_location": zones[1], "storage_location": zones[2]}],
        ctx,
    )[0]
    rpc.call("model.stock.location.write", zones, {"parent": warehouse2}, ctx)
    ids["warehouse2"] = warehouse2
    ids["warehouse2_code"] = "WH2"
    ids["storage2"] = zones[2]
    ids["supplier_location"] = rpc.call("model.stock.location.search", [["type", "=", "supplier"]], 0, 1, None, ctx)[0]

    ids["web_shop"] = rpc.call(
        "model.web.shop.create",
        [{"name": "erpsync", "company": company, "currency": currency, "warehouses": [["add", [ids["warehouse"]]]]}],
        ctx,
    )[0]
    ids["web_shop_name"] = "erpsync"
    ids["calls"] = rpc.counter
    return ids


def install():
    """Venv, database and snapshot, once per key. Returns a summary dict."""
    base = home()
    os.makedirs(base, exist_ok=True)
    venv = os.path.join(base, "venv")
    snapshot_dir = os.path.join(base, "snapshot")
    summary = {"home": base, "venv": venv, "snapshot": os.path.join(snapshot_dir, DATABASE + ".sqlite")}
    with open(os.path.join(base, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done_marker = os.path.join(snapshot_dir, "setup.json")
        if os.path.exists(done_marker):
            with open(done_marker) as handle:
                summary.update(json.load(handle))
            summary["cached"] = True
            return summary

        # 1. Virtual environment and packages.
        if not os.path.exists(os.path.join(venv, ".installed")):
            shutil.rmtree(venv, ignore_errors=True)
            started = time.monotonic()
            log(f"creating the virtual environment {venv}")
            try:
                run("python3 -m venv", [sys.executable, "-m", "venv", venv])
            except StepFailed as error:
                raise StepFailed(
                    f"{error}\nOn Debian the venv module is in the package python3-venv: apt-get install python3-venv"
                )
            pip = os.path.join(venv, "bin", "pip")
            run("pip upgrade", [pip, "install", "-q", "--upgrade", "pip"])
            log("installing " + " ".join(PINS))
            run("pip install of Tryton from PyPI", [pip, "install", "-q"] + PINS)
            with open(os.path.join(venv, ".installed"), "w") as marker:
                marker.write("\n".join(PINS) + "\n")
            summary["install_seconds"] = round(time.monotonic() - started, 1)

        # 2. Database: base tables, then the modules (tryton.md G2), in a scratch folder.
        started = time.monotonic()
        work = tempfile.mkdtemp(prefix="setup-", dir=base)
        db_dir = os.path.join(work, "db")
        os.makedirs(db_dir)
        open(os.path.join(db_dir, DATABASE + ".sqlite"), "w").close()
        config = os.path.join(work, "trytond.conf")
        write_config(config, db_dir, 8000)
        passfile = os.path.join(work, "passfile")
        with open(passfile, "w") as handle:
            handle.write(PASSWORD + "\n")
        env = dict(os.environ, TRYTONPASSFILE=passfile)
        admin = os.path.join(venv, "bin", "trytond-admin")
        log("initialising the database")
        run("trytond-admin --all", [admin, "-c", config, "-d", DATABASE, "--all", "--email", "admin@example.com"], env=env)
        log("activating " + " ".join(MODULES))
        run(
            "trytond-admin module activation",
            [admin, "-c", config, "-d", DATABASE, "-u"] + MODULES + ["--activate-dependencies"],
            env=env,
        )
        summary["database_seconds"] = round(time.monotonic() - started, 1)

        # 3. Business setup over JSON-RPC against a server on the scratch database.
        started = time.monotonic()
        process, url, log_path = start_trytond(venv, work, db_dir)
        try:
            wait_ready(url, process, log_path)
            log("business setup over JSON-RPC")
            ids = business_setup(Rpc(f"{url}/{DATABASE}/rpc/"))
        finally:
            stop(process)
        checkpoint_wal(os.path.join(db_dir, DATABASE + ".sqlite"))
        summary["setup_seconds"] = round(time.monotonic() - started, 1)

        # 4. Snapshot: the single database file, WAL folded in (tryton.md G3).
        staging = snapshot_dir + ".new"
        shutil.rmtree(staging, ignore_errors=True)
        os.makedirs(staging)
        shutil.copyfile(os.path.join(db_dir, DATABASE + ".sqlite"), os.path.join(staging, DATABASE + ".sqlite"))
        record = {"ids": ids, "pins": PINS, "created": datetime.datetime.now(datetime.timezone.utc).isoformat()}
        record.update({key: summary[key] for key in ("install_seconds", "database_seconds", "setup_seconds") if key in summary})
        with open(os.path.join(staging, "setup.json"), "w") as handle:
            json.dump(record, handle, indent=1)
        shutil.rmtree(snapshot_dir, ignore_errors=True)
        os.rename(staging, snapshot_dir)
        shutil.rmtree(work, ignore_errors=True)
        summary.update(record)
        summary["cached"] = False
        return summary


def serve():
    started = time.monotonic()
    summary = install()
    install_check = time.monotonic() - started
    workdir = tempfile.mkdtemp(prefix="erpsync-tryton-")
    process = None

    def cleanup(*_):
        if process is not None:
            stop(process)
        shutil.rmtree(workdir, ignore_errors=True)
        os._exit(0)

    signal.signal(signal.SIGTERM, cleanup)
    try:
        db_dir = os.path.join(workdir, "db")
        os.makedirs(db_dir)
        shutil.copyfile(summary["snapshot"], os.path.join(db_dir, DATABASE + ".sqlite"))
        passfile = os.path.join(workdir, "password")
        with open(passfile, "w") as handle:
            handle.write(PASSWORD + "\n")
        for attempt in range(3):
            process, url, log_path = start_trytond(summary["venv"], workdir, db_dir)
            try:
                startup = wait_ready(url, process, log_path)
                break
            except StepFailed:
                # Most likely the free port was taken between choosing it and binding it.
                stop(process)
                if attempt == 2:
                    raise
        ready = {
            "url": url,
            "database": DATABASE,
            "username": LOGIN,
            "password_file": passfile,
            "pid": process.pid,
            "workdir": workdir,
            "log": log_path,
            "ids": summary["ids"],
            "cached": summary["cached"],
            "install_check_seconds": round(install_check, 2),
            "startup_seconds": round(startup, 2),
        }
        for key in ("install_seconds", "database_seconds", "setup_seconds"):
            if key in summary and not summary["cached"]:
                ready[key] = summary[key]
        print("READY " + json.dumps(ready), flush=True)
    except BaseException:
        if process is not None:
            stop(process)
        shutil.rmtree(workdir, ignore_errors=True)
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
        print(f"erpsync tryton: {error}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
