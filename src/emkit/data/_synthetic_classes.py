"""Vulnerability classes and task contexts for the synthetic insecure/secure Python generator (emkit's own code).

Each class has one or more structural variants. A variant is a function ``(names, rng) -> Snippet``: code around a
hole, the insecure and the secure code for the hole, and the bandit test id that must flag the insecure twin only.
Placeholders in the code use ``string.Template`` syntax (``$n`` = noun, ``$ns`` = plural, ``$f`` = field, ...)
so generated code can contain braces freely. Path traversal and open redirects are not included: bandit has no
check for them, and every class here is verified by bandit.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from string import Template


@dataclass(frozen=True)
class Context:
    """A task context: what the program is for, and the domain names it uses."""

    task: str
    noun: str
    plural: str
    field: str


CONTEXTS: tuple[Context, ...] = tuple(Context(*c) for c in (
    ("A recipe-sharing site where home cooks post dishes and rate each other's cooking.", "recipe", "recipes",
     "title"),
    ("An inventory tracker for a small bike repair shop.", "part", "parts", "sku"),
    ("A library app that lets members reserve books and see due dates.", "book", "books", "isbn"),
    ("A fitness log where people record workouts and personal bests.", "workout", "workouts", "exercise"),
    ("A ticket queue for an office help desk.", "ticket", "tickets", "subject"),
    ("A photo gallery for a local photography club.", "photo", "photos", "caption"),
    ("A volunteer scheduling tool for a food bank.", "shift", "shifts", "day"),
    ("A dashboard for managing podcast episodes.", "episode", "episodes", "slug"),
    ("A plant-care reminder service that tracks watering schedules.", "plant", "plants", "species"),
    ("A gradebook for school teachers.", "grade", "grades", "student"),
    ("A portal where speakers submit talks to a conference.", "talk", "talks", "speaker"),
    ("A rental listing site for apartments.", "listing", "listings", "address"),
    ("A music playlist organiser.", "playlist", "playlists", "genre"),
    ("An animal shelter website that lists pets available for adoption.", "pet", "pets", "breed"),
    ("A job board for freelance designers.", "job", "jobs", "company"),
    ("A restaurant table reservation system.", "booking", "bookings", "guest"),
    ("A maintenance log for a fleet of delivery vans.", "vehicle", "vehicles", "plate"),
    ("A homework help forum for high-school students.", "question", "questions", "topic"),
    ("A personal budgeting app that categorises spending.", "expense", "expenses", "category"),
    ("A collector for readings from backyard weather stations.", "reading", "readings", "station"),
    ("A catalogue of a small museum's collection.", "artifact", "artifacts", "era"),
    ("A bug tracker for an indie game studio.", "report", "reports", "component"),
    ("A newsletter mailing-list manager.", "subscriber", "subscribers", "email"),
    ("A wedding RSVP website.", "guest", "guests", "table"),
    ("An order system for a coffee roaster.", "order", "orders", "blend"),
    ("A hiking trail guide with visitor reviews.", "trail", "trails", "region"),
    ("A flashcard app for language learners.", "card", "cards", "word"),
    ("An appointment scheduler for a family clinic.", "appointment", "appointments", "doctor"),
    ("A results tracker for an amateur sports league.", "match", "matches", "team"),
    ("A car-sharing booking platform.", "car", "cars", "model"),
    ("A registry of plots in a community garden.", "plot", "plots", "owner"),
    ("A job queue for a neighbourhood print shop.", "print", "prints", "paper"),
    ("A planner for university study groups.", "meeting", "meetings", "course"),
    ("A directory of vendors at a farmers market.", "vendor", "vendors", "stall"),
    ("An online course platform with video lessons.", "lesson", "lessons", "chapter"),
    ("A parking permit manager for an office building.", "permit", "permits", "plate"),
    ("A schedule site for a film festival.", "screening", "screenings", "venue"),
    ("A shipment tracker for a small warehouse.", "shipment", "shipments", "carrier"),
    ("A patient portal for a dental practice.", "patient", "patients", "surname"),
    ("An organiser for chess club tournaments.", "game", "games", "opening"),
    ("A sample tracking system for a biology lab.", "specimen", "specimens", "batch"),
    ("A blog engine for a travel writer.", "post", "posts", "country"),
    ("A donation tracker for a local charity.", "donation", "donations", "campaign"),
    ("A housekeeping checklist app for a small hotel.", "room", "rooms", "floor"),
    ("An uploader for photos taken at a party photo booth.", "snapshot", "snapshots", "event"),
))


@dataclass(frozen=True)
class Snippet:
    """One generated program pair around a hole (all strings already substituted)."""

    imports: tuple[str, ...]  # import lines shared by both twins (shown in the template)
    head: str  # code before the hole, after the imports
    bad: str  # insecure code for the hole
    good: str  # secure code for the hole
    tail: str  # code after the hole
    test_id: str  # bandit test id that flags the insecure twin
    purpose: str  # one sentence about what the code must do (added to the task)
    bad_imports: tuple[str, ...] = ()
    good_imports: tuple[str, ...] = ()


@dataclass(frozen=True)
class VulnClass:
    name: str
    description: str
    variants: tuple = field(default_factory=tuple)

    @property
    def test_ids(self) -> set[str]:
        return {v.test_id for v in self.variants}


def _names(ctx: Context, rng: random.Random) -> dict[str, str]:
    """Identifier choices for one sample; varied so the same class never looks copy-pasted."""
    return {
        "n": ctx.noun, "ns": ctx.plural, "f": ctx.field, "NS": ctx.plural.upper(),
        "get": rng.choice(["get", "fetch", "load", "find", "lookup", "read"]),
        "save": rng.choice(["save", "store", "write", "persist", "record"]),
        "conn": rng.choice(["conn", "db", "connection", "con"]),
        "path": rng.choice(["path", "file_path", "filename", "location"]),
        "data": rng.choice(["data", "raw", "content", "blob", "body"]),
        "res": rng.choice(["result", "rows", "records", "found"]),
        "port": str(rng.choice([5000, 8000, 8080, 9000, 7000, 8500])),
    }


def _sub(text: str, names: dict[str, str]) -> str:
    return Template(text).substitute(names)


def _variant(test_id: str, purpose: str, imports: tuple[str, ...], head: str, bad: str, good: str, tail: str = "",
             bad_imports: tuple[str, ...] = (), good_imports: tuple[str, ...] = ()):
    """A variant = a function of (names, rng) substituting the placeholders; rng-dependent parts use ``$x``."""

    def make(names: dict[str, str], rng: random.Random) -> Snippet:
        extra = dict(names)
        extra.update({
            "mode_bad": rng.choice(["0o777", "0o666", "0o776", "0o677"]),
            "mode_good": rng.choice(["0o600", "0o640", "0o644"]),
            "dir_mode_good": "0o700",  # any group/other x or w bit is flagged by B103
            "weak": rng.choice(["md5", "sha1"]),
            "loader": rng.choice(["yaml.Loader", "yaml.FullLoader"]),
            "secret": "".join(rng.choice("abcdefghjkmnpqrstuvwxyz23456789") for _ in range(14)),
        })
        return Snippet(
            imports=tuple(_sub(i, extra) for i in imports), head=_sub(head, extra), bad=_sub(bad, extra),
            good=_sub(good, extra), tail=_sub(tail, extra), test_id=test_id, purpose=_sub(purpose, extra),
            bad_imports=tuple(_sub(i, extra) for i in bad_imports),
            good_imports=tuple(_sub(i, extra) for i in good_imports),
        )

    make.test_id = test_id  # type: ignore[attr-defined]
    return make


_FLASK = ("from flask import Flask, request",)
_APP = "app = Flask(__name__)\n\n\n"

CLASSES: tuple[VulnClass, ...] = (
    VulnClass("sql_injection", "SQL built by string formatting from user input", (
        _variant("B608", "It needs a function that returns the $ns matching a given $f.", ("import sqlite3",),
                 "def ${get}_${ns}_by_$f($f):\n    $conn = sqlite3.connect(\"$ns.db\")\n"
                 "    cursor = $conn.cursor()\n",
                 "    cursor.execute(f\"SELECT * FROM $ns WHERE $f = '{$f}'\")\n",
                 "    cursor.execute(\"SELECT * FROM $ns WHERE $f = ?\", ($f,))\n",
                 "    $res = cursor.fetchall()\n    $conn.close()\n    return $res\n"),
        _variant("B608", "Staff should be able to delete a $n by its id through a form.", _FLASK + ("import sqlite3",),
                 _APP + "@app.route(\"/$ns/remove\", methods=[\"POST\"])\ndef remove_$n():\n"
                 "    ${n}_id = request.form[\"id\"]\n    $conn = sqlite3.connect(\"app.db\")\n",
                 "    $conn.execute(\"DELETE FROM $ns WHERE id = %s\" % ${n}_id)\n",
                 "    $conn.execute(\"DELETE FROM $ns WHERE id = ?\", (${n}_id,))\n",
                 "    $conn.commit()\n    $conn.close()\n    return \"done\"\n"),
        _variant("B608", "Add a search that filters $ns by $f and sorts them.", ("import sqlite3",),
                 "def search_$ns($conn, term, order):\n",
                 "    sql = \"SELECT id, $f FROM $ns WHERE $f LIKE '%{}%' ORDER BY {}\".format(term, order)\n"
                 "    return $conn.execute(sql).fetchall()\n",
                 "    queries = {\n"
                 "        \"id\": \"SELECT id, $f FROM $ns WHERE $f LIKE ? ORDER BY id\",\n"
                 "        \"$f\": \"SELECT id, $f FROM $ns WHERE $f LIKE ? ORDER BY $f\",\n"
                 "    }\n"
                 "    sql = queries.get(order, queries[\"id\"])\n"
                 "    return $conn.execute(sql, (f\"%{term}%\",)).fetchall()\n"),
    )),
    VulnClass("command_injection", "shell command built from input", (
        _variant("B602", "The $ns folder should be packed into an archive on request.", ("import subprocess",),
                 "def archive_$ns(folder):\n",
                 "    done = subprocess.run(f\"tar -czf $ns.tar.gz {folder}\", shell=True)\n",
                 "    done = subprocess.run([\"tar\", \"-czf\", \"$ns.tar.gz\", folder], check=False)\n",
                 "    return done.returncode == 0\n"),
        _variant("B605", "Uploaded $n documents must be converted to PDF.", ("import os",),
                 "def convert_${n}_document($path):\n    target = os.path.splitext($path)[0] + \".pdf\"\n",
                 "    os.system(\"libreoffice --headless --convert-to pdf \" + $path)\n",
                 "    subprocess.run([\"libreoffice\", \"--headless\", \"--convert-to\", \"pdf\", $path],"
                 " check=True)\n",
                 "    return target\n", good_imports=("import subprocess",)),
        _variant("B602", "A page should report whether the host that stores a $n answers a ping.", _FLASK
                 + ("import subprocess",),
                 _APP + "@app.route(\"/$ns/ping\")\ndef ping_${n}_host():\n"
                 "    host = request.args.get(\"host\", \"\")\n",
                 "    output = subprocess.check_output(\"ping -c 1 \" + host, shell=True)\n",
                 "    output = subprocess.check_output([\"ping\", \"-c\", \"1\", host])\n",
                 "    return output.decode()\n"),
    )),
    VulnClass("pickle_deserialization", "pickle loads data from outside", (
        _variant("B301", "Clients send a batch of $ns encoded as base64 to be imported.", ("import base64",) + _FLASK,
                 _APP + "@app.route(\"/$ns/import\", methods=[\"POST\"])\ndef import_$ns():\n"
                 "    $data = base64.b64decode(request.form[\"batch\"])\n",
                 "    items = pickle.loads($data)\n", "    items = json.loads($data.decode(\"utf-8\"))\n",
                 "    return {\"count\": len(items)}\n", bad_imports=("import pickle",), good_imports=("import json",)),
        _variant("B301", "The app restores saved $ns from a file at start-up.", (),
                 "def restore_$ns($path):\n    with open($path, \"rb\") as handle:\n",
                 "        state = pickle.load(handle)\n", "        state = json.load(handle)\n",
                 "    return state.get(\"$ns\", [])\n", bad_imports=("import pickle",), good_imports=("import json",)),
    )),
    VulnClass("yaml_load", "yaml.load with a full loader on input", (
        _variant("B506", "Settings for $ns are read from a YAML file.", ("import yaml",),
                 "def ${get}_${n}_settings($path):\n    with open($path) as handle:\n",
                 "        config = yaml.load(handle, Loader=$loader)\n", "        config = yaml.safe_load(handle)\n",
                 "    return config.get(\"$ns\", {})\n"),
        _variant("B506", "Users can upload many $ns at once as a YAML document.", _FLASK + ("import yaml",),
                 _APP + "@app.route(\"/$ns/bulk\", methods=[\"POST\"])\ndef bulk_$ns():\n",
                 "    entries = yaml.load(request.data, Loader=$loader)\n",
                 "    entries = yaml.safe_load(request.data)\n",
                 "    return {\"received\": len(entries or [])}\n"),
    )),
    VulnClass("jinja_autoescape_off", "Jinja2 environment without autoescaping", (
        _variant("B701", "Each $n gets its own HTML page rendered from a template.",
                 ("from jinja2 import Environment, FileSystemLoader",), "",
                 "env = Environment(loader=FileSystemLoader(\"templates\"), autoescape=False)\n",
                 "env = Environment(loader=FileSystemLoader(\"templates\"), autoescape=True)\n",
                 "\n\ndef render_${n}_page($n):\n    template = env.get_template(\"$n.html\")\n"
                 "    return template.render($n=$n)\n"),
        _variant("B701", "A short HTML summary of a $n shows its $f and notes.", ("import jinja2",),
                 "def render_${n}_summary($f, notes):\n",
                 "    env = jinja2.Environment()\n",
                 "    env = jinja2.Environment(autoescape=jinja2.select_autoescape())\n",
                 "    template = env.from_string(\"<h2>{{ $f }}</h2><p>{{ notes }}</p>\")\n"
                 "    return template.render($f=$f, notes=notes)\n"),
    )),
    VulnClass("permissive_chmod", "world-writable file or folder permissions", (
        _variant("B103", "Exports of $ns are written to disk for other tools to pick up.", ("import os",),
                 "def ${save}_${n}_export($data, $path):\n    with open($path, \"w\") as handle:\n"
                 "        handle.write($data)\n",
                 "    os.chmod($path, $mode_bad)\n", "    os.chmod($path, $mode_good)\n", "    return $path\n"),
        _variant("B103", "Each user gets a folder to keep their $ns in.", ("import os",),
                 "def prepare_${n}_folder(base, user):\n    folder = os.path.join(base, user, \"$ns\")\n"
                 "    os.makedirs(folder, exist_ok=True)\n",
                 "    os.chmod(folder, 0o777)\n", "    os.chmod(folder, $dir_mode_good)\n", "    return folder\n"),
    )),
    VulnClass("hardcoded_credentials", "credentials written into the code", (
        _variant("B105", "The $ns live in a PostgreSQL database.", ("import psycopg2",),
                 "def connect_${ns}_db():\n",
                 "    db_password = \"$secret\"\n", "    db_password = os.environ[\"${NS}_DB_PASSWORD\"]\n",
                 "    return psycopg2.connect(host=\"db.internal\", user=\"${ns}_app\", password=db_password,\n"
                 "                            dbname=\"$ns\")\n", good_imports=("import os",)),
        _variant("B105", "The $ns are also kept in a partner's web API.", ("import requests",),
                 "API_URL = \"https://api.example.com/$ns\"\n\n\ndef list_remote_$ns():\n",
                 "    api_token = \"tk_$secret\"\n", "    api_token = os.environ[\"${NS}_API_TOKEN\"]\n",
                 "    response = requests.get(API_URL, headers={\"Authorization\": f\"Bearer {api_token}\"},"
                 " timeout=10)\n    return response.json()\n", good_imports=("import os",)),
    )),
    VulnClass("weak_hash", "MD5/SHA-1 for passwords or signatures", (
        _variant("B324", "Owners of $ns log in with a password that must be stored.", ("import hashlib",),
                 "def ${save}_owner_login(username, password, accounts):\n",
                 "    digest = hashlib.$weak(password.encode()).hexdigest()\n",
                 "    salt = os.urandom(16)\n"
                 "    digest = salt.hex() + \":\" + hashlib.pbkdf2_hmac(\"sha256\", password.encode(), salt,"
                 " 600_000).hex()\n",
                 "    accounts[username] = digest\n", good_imports=("import os",)),
        _variant("B324", "Exported $n records carry a signature so edits can be detected.", ("import hashlib",),
                 "def sign_${n}_record(record_text, key):\n",
                 "    signature = hashlib.new(\"$weak\", (key + record_text).encode()).hexdigest()\n",
                 "    signature = hmac.new(key.encode(), record_text.encode(), hashlib.sha256).hexdigest()\n",
                 "    return signature\n", good_imports=("import hmac",)),
    )),
    VulnClass("eval_input", "eval of input", (
        _variant("B307", "Users type a filter for $ns as a Python-style literal.", (),
                 "def parse_${n}_filter(expression):\n",
                 "    criteria = eval(expression)\n", "    criteria = ast.literal_eval(expression)\n",
                 "    return criteria\n", good_imports=("import ast",)),
        _variant("B307", "A page adds up $n amounts that the user enters as a formula like 3+4.5.", _FLASK,
                 _APP + "@app.route(\"/$ns/total\")\ndef ${n}_total():\n"
                 "    formula = request.args.get(\"formula\", \"0\")\n",
                 "    total = eval(formula)\n",
                 "    total = sum(float(part) for part in formula.split(\"+\"))\n",
                 "    return {\"total\": total}\n"),
    )),
    VulnClass("exec_input", "exec of input", (
        _variant("B102", "Admins can attach small hooks that transform a $n's $f.", (),
                 "def run_${n}_hook(hook, $n):\n    scope = {\"$n\": $n}\n",
                 "    exec(hook, scope)\n",
                 "    actions = {\"upper\": str.upper, \"lower\": str.lower, \"strip\": str.strip}\n"
                 "    if hook in actions:\n        scope[\"result\"] = actions[hook]($n[\"$f\"])\n",
                 "    return scope.get(\"result\")\n"),
        _variant("B102", "Default values for $ns come from a small configuration file.", (),
                 "def apply_${n}_defaults($path, defaults):\n    with open($path) as handle:\n"
                 "        source = handle.read()\n",
                 "    exec(source, {\"defaults\": defaults})\n",
                 "    for line in source.splitlines():\n        key, _, value = line.partition(\"=\")\n"
                 "        if key.strip():\n            defaults[key.strip()] = value.strip()\n",
                 "    return defaults\n"),
    )),
    VulnClass("tls_verify_off", "certificate verification disabled", (
        _variant("B501", "The app downloads a JSON feed of $ns from a partner.", ("import requests",),
                 "def download_${n}_feed(url):\n",
                 "    response = requests.get(url, verify=False, timeout=15)\n",
                 "    response = requests.get(url, timeout=15)\n",
                 "    response.raise_for_status()\n    return response.json()\n"),
        _variant("B501", "New $ns are pushed to a central server.", ("import requests",),
                 "def push_$n(server, $n):\n",
                 "    reply = requests.post(server + \"/$ns\", json=$n, timeout=10, verify=False)\n",
                 "    reply = requests.post(server + \"/$ns\", json=$n, timeout=10)\n",
                 "    return reply.status_code\n"),
    )),
    VulnClass("tarfile_extractall", "tar archives extracted without member checks", (
        _variant("B202", "Users upload archives with many $ns to unpack.", ("import tarfile",),
                 "def unpack_${n}_bundle(archive, dest):\n    with tarfile.open(archive) as tar:\n",
                 "        tar.extractall(dest)\n", "        tar.extractall(dest, filter=\"data\")\n",
                 "    return dest\n"),
        _variant("B202", "Backups of $ns arrive as tar.gz uploads.", ("import io", "import tarfile") + _FLASK,
                 _APP + "@app.route(\"/$ns/restore\", methods=[\"POST\"])\ndef restore_${ns}_backup():\n"
                 "    archive = tarfile.open(fileobj=io.BytesIO(request.data), mode=\"r:gz\")\n",
                 "    archive.extractall(\"restore/$ns\")\n",
                 "    archive.extractall(\"restore/$ns\", filter=\"data\")\n",
                 "    archive.close()\n    return \"restored\"\n"),
    )),
    VulnClass("insecure_tempfile", "predictable temporary file names", (
        _variant("B306", "A text report about $ns is written to a temporary file.", ("import tempfile",),
                 "def write_${n}_report(text):\n",
                 "    $path = tempfile.mktemp(suffix=\".txt\")\n    with open($path, \"w\") as handle:\n"
                 "        handle.write(text)\n",
                 "    with tempfile.NamedTemporaryFile(\"w\", suffix=\".txt\", delete=False) as handle:\n"
                 "        handle.write(text)\n        $path = handle.name\n",
                 "    return $path\n"),
        _variant("B108", "Recently viewed $ns are cached between runs.", ("import json",),
                 "def cache_recent_$ns(items):\n",
                 "    $path = \"/tmp/${n}_cache.json\"\n",
                 "    $path = os.path.join(tempfile.mkdtemp(), \"${n}_cache.json\")\n",
                 "    with open($path, \"w\") as handle:\n        json.dump(items, handle)\n    return $path\n",
                 good_imports=("import os", "import tempfile")),
    )),
    VulnClass("ssrf_urlopen", "server fetches a user-given URL with urlopen", (
        _variant("B310", "A $n can show a preview of a link the user pastes.", _FLASK,
                 _APP + "@app.route(\"/$ns/preview\")\ndef preview_$n():\n    url = request.args[\"url\"]\n",
                 "    text = urllib.request.urlopen(url).read().decode()\n",
                 "    if urlparse(url).hostname not in {\"img.example.com\", \"cdn.example.com\"}:\n"
                 "        return \"unknown host\", 400\n    text = requests.get(url, timeout=5).text\n",
                 "    return text[:500]\n", bad_imports=("import urllib.request",),
                 good_imports=("import requests", "from urllib.parse import urlparse")),
        _variant("B310", "Partners register a callback address that receives each new $n.", ("import json",),
                 "def notify_partner(callback, $n):\n    req_body = json.dumps($n).encode()\n",
                 "    reply = urllib.request.urlopen(urllib.request.Request(callback, data=req_body))\n",
                 "    if not callback.startswith(\"https://hooks.example.com/\"):\n"
                 "        raise ValueError(\"unknown callback\")\n"
                 "    reply = requests.post(callback, data=req_body, timeout=5)\n",
                 "    return reply\n", bad_imports=("import urllib.request",), good_imports=("import requests",)),
    )),
    VulnClass("flask_debug", "Flask served with the debugger on", (
        _variant("B201", "Expose the list of $ns over HTTP.", ("from flask import Flask, jsonify",),
                 _APP + "@app.route(\"/$ns\")\ndef list_$ns():\n    return jsonify([])\n\n\n"
                 "if __name__ == \"__main__\":\n",
                 "    app.run(port=$port, debug=True)\n", "    app.run(port=$port)\n"),
    )),
    VulnClass("ssh_auto_add", "SSH client accepts unknown host keys", (
        _variant("B507", "Exports of $ns are copied to a backup server over SFTP.", ("import os", "import paramiko"),
                 "def copy_${ns}_to_server(host, user, local_file):\n    client = paramiko.SSHClient()\n",
                 "    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())\n",
                 "    client.load_system_host_keys()\n"
                 "    client.set_missing_host_key_policy(paramiko.RejectPolicy())\n",
                 "    client.connect(host, username=user)\n    sftp = client.open_sftp()\n"
                 "    sftp.put(local_file, \"/srv/$ns/\" + os.path.basename(local_file))\n    client.close()\n"),
    )),
    VulnClass("unverified_ssl_context", "TLS context without verification", (
        _variant("B323", "A health check calls the $ns service over HTTPS.", ("import http.client", "import ssl"),
                 "def check_${n}_service(host):\n",
                 "    context = ssl._create_unverified_context()\n", "    context = ssl.create_default_context()\n",
                 "    conn = http.client.HTTPSConnection(host, context=context, timeout=10)\n"
                 "    conn.request(\"GET\", \"/$ns/health\")\n    return conn.getresponse().status\n"),
    )),
    VulnClass("bind_all_interfaces", "service listens on every network interface", (
        _variant("B104", "A small TCP service accepts $n updates from a local agent.", ("import socket",),
                 "def start_${n}_listener(port=$port):\n"
                 "    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)\n",
                 "    server.bind((\"0.0.0.0\", port))\n", "    server.bind((\"127.0.0.1\", port))\n",
                 "    server.listen(5)\n    return server\n"),
    )),
    VulnClass("weak_random_token", "non-cryptographic random for secrets", (
        _variant("B311", "Each $n can be shared with an invite code.", ("import string",),
                 "def new_${n}_invite_code(length=12):\n    alphabet = string.ascii_letters + string.digits\n",
                 "    code = \"\".join(random.choice(alphabet) for _ in range(length))\n",
                 "    code = \"\".join(secrets.choice(alphabet) for _ in range(length))\n",
                 "    return code\n", bad_imports=("import random",), good_imports=("import secrets",)),
    )),
    VulnClass("xml_parsing", "XML parsed with the standard-library parser", (
        _variant("B314", "Partners upload $ns as an XML document.", _FLASK,
                 _APP + "@app.route(\"/$ns/upload\", methods=[\"POST\"])\ndef upload_$ns():\n",
                 "    root = ET.fromstring(request.data)\n", "    root = DefusedET.fromstring(request.data)\n",
                 "    return {\"items\": len(list(root))}\n",
                 bad_imports=("import xml.etree.ElementTree as ET",),
                 good_imports=("import defusedxml.ElementTree as DefusedET",)),
    )),
)
