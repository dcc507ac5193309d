#!/usr/bin/python3
"""kbus console in a real browser: headless Chromium, driven by Selenium, against a running system.

Starts a broker (the embedded one, `kbus broker`, or real Kafka from KBUS_TEST_BROKERS_FILE), a
kbus-launcher with the fake encoder, the video-encoding workflow and `kbus console` with a token,
sends videos, then checks what a person would see and do in the page:
  - a running job's bar grows between two looks; it names the launcher's host;
  - a finished job shows its outcome and its result; clip-2 fails twice, then succeeds;
  - a payload carrying <script> is shown as text, never run;
  - actions without the token (or with a wrong one) are refused with the API's words;
  - a dead letter redriven with the button is processed again (its instance starts run 2),
    and "redrive all matching" asks first;
  - Cancel on a running job ends that attempt as cancelled;
  - the banner shows when the broker stops, and when the console itself stops answering.

  console_browser_test.py --broker embedded|kafka --kbus PATH --video-encoding PATH
                          --launcher PATH --fake-encoder PATH --kafka-script PATH
                          [--screenshots DIR]

With --screenshots DIR it saves the main views as PNGs (1280 px wide) into DIR. Every wait polls
with a deadline. Exit 0 when every check passed, 1 otherwise (with the processes' logs).
"""

import argparse
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FAKE_SECONDS = 6  # four progress steps, 1.5 s apart: enough for two looks at a bar


class Failure(Exception):
    pass


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# The processes that must keep running: a wait gives up at once when one of them has exited.
RUNNING = []


def wait_for(what, fn, timeout, interval=0.1):
    """Polls fn() until it returns something truthy; raises Failure naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        for p in RUNNING:
            if p.p.poll() is not None:
                raise Failure(f"{p.name} exited with {p.p.returncode} while waiting for {what}")
        try:
            last = fn()
            if last:
                return last
        except StaleElementReferenceException as e:  # the page redrew meanwhile
            last = e
        if time.monotonic() >= deadline:
            raise Failure(f"timed out after {timeout} s waiting for {what} (last: {last!r})")
        time.sleep(interval)


def die_with_parent():
    """In a child before exec: SIGKILL when this script dies (ctest's timeout included), so no
    broker or worker outlives a killed test."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    """A child process with its output in a log file; this environment without KBUS_* plus `env`."""

    def __init__(self, name, argv, workdir, env=None):
        self.name = name
        self.log_path = os.path.join(workdir, name + ".log")
        self.log_file = open(self.log_path, "wb")
        e = {k: v for k, v in os.environ.items() if not k.startswith("KBUS_")}
        e.update(env or {})
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log_file,
                                  stderr=subprocess.STDOUT, env=e, start_new_session=True,
                                  preexec_fn=die_with_parent)
        RUNNING.append(self)

    def text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self, sig=signal.SIGTERM, timeout=10):
        if self in RUNNING:
            RUNNING.remove(self)
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.log_file.close()


def http_json(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read().decode())


class System:
    """The processes of one run, all on topics and groups of their own."""

    def __init__(self, args, workdir):
        self.args = args
        self.workdir = workdir
        self.procs = []
        sfx = secrets.token_hex(4)
        self.group = f"console-{sfx}"
        self.workflow = f"console-{sfx}.encode"
        self.commands = f"console-{sfx}.commands"
        self.launch = f"console-{sfx}.launch"
        self.control = f"console-{sfx}.control"
        self.events = f"console-{sfx}.events"
        self.dlq = self.group + ".dlq"
        self.token = "t-" + secrets.token_hex(8)
        self.topics = [self.commands, self.launch, self.control, self.events, self.dlq,
                       self.workflow + ".in", self.workflow + ".state"]

    def start(self, name, argv, env=None):
        p = Proc(name, argv, self.workdir, env)
        self.procs.append(p)
        return p

    def start_broker(self):
        if self.args.broker == "embedded":
            self.broker = self.start("broker", [self.args.kbus, "broker", "--port", "0"] +
                                     [a for t in self.topics for a in ("--topic", t + ":4")])
            line = wait_for("the embedded broker's bootstrap line", lambda: next(
                (l for l in self.broker.text().splitlines() if l.startswith("bootstrap ")), None), 30)
            self.brokers = line.split()[1]
        else:
            path = os.environ.get("KBUS_TEST_BROKERS_FILE")
            if not path:
                raise Failure("--broker kafka needs KBUS_TEST_BROKERS_FILE (ctest sets it)")
            with open(path) as f:
                self.brokers = f.read().strip()
            self.run_ok([self.args.kbus, "topics", "create", "--brokers", self.brokers] +
                        [t + ":4" for t in self.topics], "create topics")
        log(f"broker {self.args.broker} at {self.brokers}")

    def run_ok(self, argv, what, stdin=None, timeout=60):
        env = {k: v for k, v in os.environ.items() if not k.startswith("KBUS_")}
        r = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout, env=env)
        if r.returncode != 0:
            raise Failure(f"{what} failed ({r.returncode}): {r.stderr.strip()}")
        return r.stdout

    def start_services(self):
        allow = os.path.join(self.workdir, "launcher.allow")
        with open(allow, "w") as f:
            f.write(f"fake-encoder = {self.args.fake_encoder}\n")
        self.start("launcher", [
            self.args.launcher, "--brokers", self.brokers, "--group", self.group + "-launcher",
            "--allow-list", allow, "--launch-topic", self.launch, "--control-topic", self.control,
            "--reply-topics", self.workflow + ".in", "--heartbeat-ms", "500", "--kill-grace-ms", "500",
            "--session-timeout-ms", "6000"])
        self.start("video-encoding", [
            self.args.video_encoding, "--brokers", self.brokers, "--group", self.group, "--encoder", "fake",
            "--fake-seconds", str(FAKE_SECONDS), "--name", self.workflow, "--command-topic", self.commands,
            "--launcher-topic", self.launch, "--control-topic", self.control, "--events-topic", self.events,
            "--max-attempts", "3", "--retry-initial-ms", "300", "--retry-max-ms", "600", "--heartbeat-ms", "500",
            "--session-timeout-ms", "6000"])
        self.console_port = free_port()
        self.console = self.start_console(self.brokers, self.console_port, "console")
        self.base = f"http://127.0.0.1:{self.console_port}"

    def start_console(self, brokers, port, name):
        argv = [self.args.kbus, "console", "--brokers", brokers, "--port", str(port), "--control-topic", self.control]
        if self.args.broker == "kafka":
            # The shared Kafka holds every other test's topics too: only ours, named. The embedded
            # broker has ours alone, so there the console finds them as a user's would.
            argv += ["--no-discover", "--state-topic", self.workflow + ".state", "--events-topic",
                     self.workflow + ".in", "--dlq-group", self.group]
        p = self.start(name, argv, env={"KBUS_CONSOLE_TOKEN": self.token})

        def up():
            try:
                s = http_json(f"http://127.0.0.1:{port}/api/status")
                return s if s.get("broker", {}).get("ok") else None
            except (OSError, ValueError):
                return None
        wait_for(f"{name} to answer /api/status with the broker ok", up, 60, 0.2)
        return p

    def send(self, video_id, source, payload=None):
        body = payload if payload is not None else json.dumps({"video_id": video_id, "source": source})
        self.run_ok([self.args.kbus, "send", "--brokers", self.brokers, "--type", "video.EncodeVideo",
                     "--topic", self.commands, "--key", video_id, body], f"kbus send {video_id}")

    def dump_logs(self):
        for p in self.procs:
            text = p.text() if os.path.exists(p.log_path) else ""
            tail = "\n".join(text.splitlines()[-40:])
            print(f"----- {p.name} (last 40 lines) -----\n{tail}", flush=True)

    def stop_all(self):
        # All at once: with the broker gone a worker's graceful stop can take its whole grace.
        for p in self.procs:
            if p.p.poll() is None:
                p.p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        for p in reversed(self.procs):
            p.stop(signal.SIGTERM, max(0.1, deadline - time.monotonic()))


class Page:
    def __init__(self, base, shots):
        o = Options()
        o.binary_location = CHROMIUM
        for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--window-size=1280,860", "--hide-scrollbars", "--force-device-scale-factor=1",
                  "--no-first-run", "--disable-extensions", "--disable-background-networking"):
            o.add_argument(a)
        self.d = webdriver.Chrome(service=Service(CHROMEDRIVER, popen_kw={"preexec_fn": die_with_parent}),
                                  options=o)
        self.base = base
        self.shots = shots
        self.d.get(base + "/#/overview")
        wait_for("the page to draw", lambda: self.js("return document.querySelector('#view h1') !== null"), 20)

    def js(self, script, *args):
        return self.d.execute_script(script, *args)

    def go(self, hash_):
        """Shows the view at `hash_`, drawn afresh: a view already shown is refreshed (its button)."""
        drawn = self.js("return document.getElementById('view').dataset.drawn || ''")
        if self.js("return location.hash === arguments[0]", hash_):
            # The jobs and overview views have no button: they redraw themselves every second or so.
            if not self.js("const b = document.getElementById('refresh'); if (b) b.click(); return !!b"):
                drawn = None
        else:
            self.js("location.hash = arguments[0]", hash_)
        wait_for(f"view {hash_}", lambda: self.js(
            "const v = document.getElementById('view');"
            "return location.hash === arguments[0] && v.dataset.drawn !== arguments[1] && v.querySelector('h1') !== null",
            hash_, drawn), 20)

    def find(self, css):
        return self.d.find_elements(By.CSS_SELECTOR, css)

    def text(self, css):
        e = self.find(css)
        return e[0].text if e else None

    def click(self, css):
        """Clicks the first element matching `css` once it is there and enabled (again, when the
        view redrew itself between finding it and clicking it)."""
        def attempt():
            e = self.find(css)
            if not e or not e[0].is_enabled():
                return False
            e[0].click()
            return True
        wait_for(f"{css} to be clicked", attempt, 20)

    def set_token(self, value):
        self.js("const t = document.getElementById('token'); t.value = arguments[0];"
                "t.dispatchEvent(new Event('input'));", value)

    def notice(self):
        return self.js("const n = document.getElementById('notice');"
                       "return n.hidden ? null : {kind: n.dataset.kind, text: n.textContent};")

    def clear_notice(self):
        self.js("document.getElementById('notice').hidden = true;")

    def wait_notice(self, what, timeout=20):
        return wait_for(what, self.notice, timeout)

    def banner(self):
        return self.js("const b = document.getElementById('banner'); return b.hidden ? '' : b.textContent;")

    def shot(self, name):
        if not self.shots:
            return
        path = os.path.join(self.shots, name + ".png")
        self.clear_notice()
        self.js("window.scrollTo(0, 0)")
        time.sleep(0.5)  # let the bars' width transition finish: only the picture needs it
        self.d.save_screenshot(path)
        log(f"screenshot {path} ({os.path.getsize(path) // 1024} KB)")

    def quit(self):
        self.d.quit()


def check_bars(page, system):
    """A running job's bar grows between two looks; the row shows message, elapsed and host."""
    page.go("#/jobs")
    seen = {}  # job row key -> first percent seen

    def grown():
        rows = page.js("""return [...document.querySelectorAll('#running-jobs tr[data-job-id]')].map(r => ({
            key: r.dataset.jobId + '/' + r.dataset.attempt, wf: r.dataset.workflowId,
            percent: Number(r.querySelector('.bar').dataset.percent), width: r.querySelector('.bar').style.width,
            host: r.querySelector('.host').textContent, elapsed: r.querySelector('.elapsed').textContent,
            message: r.querySelector('.message').textContent}))""")
        for r in rows:
            if r["percent"] < 0:
                continue
            if r["width"] != f"{r['percent']}%":
                raise Failure(f"bar width {r['width']} does not match percent {r['percent']}")
            first = seen.setdefault(r["key"], r)
            if r["percent"] > first["percent"]:
                return first, r
        return None
    first, later = wait_for("a running job's bar to grow", grown, 40)
    log(f"bar of {later['key']} grew from {first['width']} to {later['width']}")
    host = socket.gethostname()
    if later["host"] != host:
        raise Failure(f"the job row names host {later['host']!r}, not the launcher's {host!r}")
    if not later["elapsed"] or later["elapsed"] == "—" or not later["message"]:
        raise Failure(f"no elapsed time or message on the running row: {later}")


def finished_rows(page, wf):
    return page.js("""return [...document.querySelectorAll('#finished-jobs tr[data-job-id]')]
        .filter(r => r.dataset.workflowId === arguments[0])
        .map(r => ({attempt: Number(r.dataset.attempt), outcome: r.dataset.outcome,
                    result: r.querySelector('.result-link') !== null}))""", wf)


def check_finished(page, system):
    """clip-1 succeeds and shows its result; clip-2's attempts failed, failed, succeeded."""
    page.go("#/jobs")
    rows = wait_for("clip-1 to finish", lambda: [r for r in finished_rows(page, "clip-1")
                                                  if r["outcome"] == "succeeded"], 40)
    log(f"clip-1 finished: {rows}")
    page.click("#finished-jobs tr[data-workflow-id='clip-1'][data-outcome='succeeded'] td a")
    wait_for("the job view", lambda: page.find("#attempts"), 20)
    result = page.text("#result")
    if rows[0]["result"]:
        if result is None or "clip-1.mp4" not in result:
            raise Failure(f"clip-1 has a result link, but the job view shows {result!r}")
        json.loads(result)
        log(f"clip-1's result: {' '.join(result.split())}")
    else:
        # ProcessExited.result has not reached this build: the outcome is what there is.
        log(f"note: clip-1 finished without a result ({page.text('#result-missing')!r}); outcome checked")

    page.go("#/jobs")
    outcomes = wait_for("clip-2's three attempts", lambda: (lambda r: r if len(r) >= 3 else None)(
        {x["attempt"]: x["outcome"] for x in finished_rows(page, "clip-2")}), 60)
    if [outcomes.get(1), outcomes.get(2), outcomes.get(3)] != ["failed", "failed", "succeeded"]:
        raise Failure(f"clip-2's attempts ended {outcomes}, not failed, failed, succeeded")
    log(f"clip-2's attempts: {outcomes}")
    page.go(f"#/instance?workflow={system.workflow}&id=clip-2")
    wait_for("clip-2's instance to show completed", lambda: (page.text("[data-fact='status']") or "") == "completed", 30)
    page.shot("console-instance")


def dead_letter_rows(page):
    return page.js("""return [...document.querySelectorAll('#dead-letters tr.dead-letter')].map(r => ({
        partition: r.dataset.partition, offset: r.dataset.offset, redriven: r.dataset.redriven,
        type: r.children[2].textContent, reason: r.children[3].textContent, error: r.children[4].textContent}))""")


def open_dead_letter(page, system, pick, what, timeout):
    """Waits on the group's list for a row that `pick` accepts, then opens it; returns the row."""
    hash_ = "#/dead-letters?group=" + system.group

    def find():
        page.go(hash_)
        wait_for("the dead-letter list", lambda: page.find("#dead-letters"), 10)
        return next((r for r in dead_letter_rows(page) if pick(r)), None)
    row = wait_for(what, find, timeout, 1.0)
    page.go(f"#/dead-letter?group={system.group}&partition={row['partition']}&offset={row['offset']}")
    wait_for("the dead letter's payload", lambda: page.find("#payload"), 20)
    return row


def check_script_payload(page, system):
    """A payload carrying <script> and an onerror handler is shown as text, never run."""
    open_dead_letter(page, system, lambda r: r["reason"] == "decode-error", "the <script> dead letter", 40)
    payload = page.text("#payload")
    if "<script>window.kbusPwned=1</script>" not in payload or "onerror=" not in payload:
        raise Failure(f"the payload is not shown as text: {payload!r}")
    inside = page.js("return document.getElementById('payload').children.length")
    pwned = page.js("return window.kbusPwned")
    scripts = page.js("return document.scripts.length")
    if inside or pwned is not None or scripts != 1:
        raise Failure(f"the payload became markup: {inside} elements in #payload, kbusPwned={pwned!r}, "
                      f"{scripts} script elements")
    headers = dict(page.js("""return [...document.querySelectorAll('#headers tr[data-header]')].map(r =>
        [r.dataset.header, r.children[1].textContent])"""))
    if headers.get("kbus-dlq-reason") != "decode-error" or headers.get("kbus-dlq-group") != system.group:
        raise Failure(f"headers: {headers}")
    log("the <script> payload is text; headers shown: " + ", ".join(sorted(headers)))
    page.shot("console-dead-letter")


def check_redrive(page, system):
    """clip-3 always fails and is dead-lettered; without the token its redrive is refused, with it the
    copy starts run 2 of the instance. Then "redrive all matching" asks before it sends."""
    system.send("clip-5", "holiday-3.mp4")  # runs meanwhile: a second bar for the jobs picture
    open_dead_letter(page, system, lambda r: r["reason"] != "decode-error", "clip-3's dead letter", 60)
    page.go("#/dead-letters?group=" + system.group)
    wait_for("the list", lambda: page.find("#dead-letters tr.dead-letter"), 10)
    page.shot("console-dead-letters")
    row = open_dead_letter(page, system, lambda r: r["reason"] != "decode-error", "clip-3's dead letter", 10)
    if page.text("[data-fact='key']") != "clip-3":
        raise Failure(f"the dead letter's key is {page.text('[data-fact=key]')!r}, not clip-3")

    def instance_run():
        return http_json(f"{system.base}/api/instance?workflow={system.workflow}&id=clip-3").get("run")
    if instance_run() != 1:
        raise Failure(f"clip-3 is at run {instance_run()} before any redrive")

    for token in ("", "wrong-" + system.token):
        page.set_token(token)
        page.clear_notice()
        page.click("#redrive")
        n = page.wait_notice("the refusal")
        if n["kind"] != "error" or "401" not in n["text"] or len(n["text"]) < 30:
            raise Failure(f"redrive with token {token!r}: {n}")
        log(f"refused: {n['text']}")
    page.go(f"#/dead-letter?group={system.group}&partition={row['partition']}&offset={row['offset']}")
    if page.text("[data-fact='redriven']") != "no" or instance_run() != 1:
        raise Failure("a refused redrive changed something")
    page.set_token(system.token)
    page.clear_notice()
    page.click("#redrive")
    n = page.wait_notice("the redrive's answer")
    if n["kind"] != "ok":
        raise Failure(f"redrive with the token: {n}")
    log(f"redrive: {n['text']}")
    wait_for("clip-3's run 2 (the redriven copy processed)",
             lambda: (page.go(f"#/instance?workflow={system.workflow}&id=clip-3") or True) and
             page.text("[data-fact='run']") == "2", 30, 1.0)
    log("the redriven copy started run 2 of clip-3")
    page.go(f"#/dead-letter?group={system.group}&partition={row['partition']}&offset={row['offset']}")
    wait_for("the dead letter to show redriven", lambda: (page.go(
        f"#/dead-letter?group={system.group}&partition={row['partition']}&offset={row['offset']}") or True)
        and page.text("[data-fact='redriven']") == "yes", 30, 1.0)

    # Redrive all matching: the decode-error filter, a confirmation, then one sent.
    page.go(f"#/dead-letters?group={system.group}&reason=decode-error")
    wait_for("the filtered list", lambda: page.find("#dead-letters tr.dead-letter"), 20)
    reasons = {r["reason"] for r in dead_letter_rows(page)}
    if reasons != {"decode-error"}:
        raise Failure(f"the reason filter shows {reasons}")
    page.clear_notice()
    page.click("#redrive-all")
    wait_for("the confirmation", lambda: page.js("return !document.getElementById('confirm').hidden"), 10)
    if page.notice() is not None:
        raise Failure("redrive all sent before it was confirmed")
    page.click("#confirm-yes")
    n = page.wait_notice("the redrive-all answer")
    if n["kind"] != "ok" or "Redriven 1" not in n["text"]:
        raise Failure(f"redrive all: {n}")
    log(f"redrive all: {n['text']}")


def check_cancel(page, system):
    """Cancel on a running job: refused without the token, then that attempt ends cancelled."""
    system.send("clip-4", "holiday-2.mp4")
    page.go("#/jobs")
    sel = "#running-jobs tr[data-workflow-id='clip-4'] .cancel"
    wait_for("clip-4 to run", lambda: page.find(sel), 30)
    if page.shots:  # the picture: bars at different points, and finished attempts below
        wait_for("two bars with progress", lambda: page.js(
            "return [...document.querySelectorAll('#running-jobs .bar')].filter(b => b.dataset.percent > 0).length >= 2"), 10)
        page.shot("console-jobs")
    attempt = page.find("#running-jobs tr[data-workflow-id='clip-4']")[0].get_attribute("data-attempt")
    page.set_token("")
    page.clear_notice()
    page.click(sel)
    n = page.wait_notice("the cancel refusal")
    if n["kind"] != "error" or "401" not in n["text"]:
        raise Failure(f"cancel without the token: {n}")
    page.set_token(system.token)
    page.clear_notice()
    page.click(sel)
    n = page.wait_notice("the cancel answer")
    if n["kind"] != "ok":
        raise Failure(f"cancel with the token: {n}")
    rows = wait_for("clip-4's attempt to end", lambda: [r for r in finished_rows(page, "clip-4")
                                                       if str(r["attempt"]) == attempt], 30)
    if rows[0]["outcome"] != "cancelled":
        raise Failure(f"clip-4 attempt {attempt} ended {rows[0]['outcome']}, not cancelled")
    log(f"clip-4 attempt {attempt} cancelled")


def check_banner_on_broker_stop(page, system):
    """The banner shows when the console loses its broker. The shared Kafka of the .kafka run stays
    up for the other tests: a Kafka of this test's own is started and stopped instead."""
    own_dir = None
    if system.args.broker == "embedded":
        port, console, base = system.console_port, system.console, system.base
    else:
        own_dir = os.path.join(system.workdir, "kafka")
        brokers = system.run_ok([system.args.kafka_script, "start", own_dir], "start a Kafka of our own", timeout=120).strip()
        port = free_port()
        console = system.start_console(brokers, port, "console-own-kafka")
        base = f"http://127.0.0.1:{port}"
        page.d.get(base + "/#/overview")
    try:
        wait_for("no banner while the broker runs", lambda: page.banner() == "" and page.find("#broker-state"), 20)
        if system.args.broker == "embedded":
            system.broker.stop()
        else:
            system.run_ok([system.args.kafka_script, "stop", own_dir], "stop our Kafka", timeout=60)
        text = wait_for("the banner", page.banner, 60, 0.5)
        log(f"banner: {text}")
        if "Kafka" not in text and "broker" not in text.lower():
            raise Failure(f"the banner does not say the broker is gone: {text!r}")
        if not page.js("return document.querySelector('#view h1') !== null"):
            raise Failure("the page went blank")
        # And when the console itself stops answering.
        console.stop()
        text = wait_for("the banner for a console that does not answer",
                        lambda: "does not answer" in page.banner() and page.banner(), 20, 0.5)
        log(f"banner: {text}")
    finally:
        if own_dir:
            subprocess.run([system.args.kafka_script, "stop", own_dir], capture_output=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--broker", choices=("embedded", "kafka"), required=True)
    for name in ("kbus", "video-encoding", "launcher", "fake-encoder", "kafka-script"):
        ap.add_argument("--" + name, required=True)
    ap.add_argument("--screenshots", help="save PNGs of the main views here")
    args = ap.parse_args()
    for name in ("kbus", "video_encoding", "launcher", "fake_encoder", "kafka_script"):
        setattr(args, name, os.path.abspath(getattr(args, name)))  # the allow-list wants one
    if args.screenshots:
        os.makedirs(args.screenshots, exist_ok=True)

    started = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="kbus-console-browser-")
    system = System(args, workdir)
    page = None
    ok = False
    try:
        system.start_broker()
        system.start_services()
        log(f"console at {system.base}")
        page = Page(system.base, args.screenshots)
        page.go("#/jobs")
        system.send("clip-1", "holiday.mp4")
        system.send("clip-2", "flaky-2-interview.mp4")
        system.send("clip-3", "broken-upload.mp4")
        system.send("xss", None, json.dumps({
            "video_id": "xss", "source": '<script>window.kbusPwned=1</script><img src=x onerror="window.kbusPwned=1">',
            "height": "tall"}))
        check_bars(page, system)
        check_finished(page, system)
        check_script_payload(page, system)
        check_redrive(page, system)
        check_cancel(page, system)
        page.go("#/overview")
        page.shot("console-overview")
        check_banner_on_broker_stop(page, system)
        ok = True
        log(f"all checks passed in {time.monotonic() - started:.0f} s")
    except (Failure, WebDriverException, subprocess.TimeoutExpired, OSError, ValueError) as e:
        log(f"FAILED: {e}")
        if page:
            try:
                path = os.path.join(workdir, "failure.png")
                page.d.save_screenshot(path)
                log(f"page at failure: {page.d.current_url} (screenshot {path})")
                log("banner: " + repr(page.banner()))
            except WebDriverException:
                pass
        system.dump_logs()
    finally:
        if page:
            page.quit()
        system.stop_all()
        if ok:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
