// kbus console: the page. Vanilla JavaScript, no build step, nothing fetched but the console's
// own /api. Every piece of data reaches the DOM as a text node or an attribute value, never as
// markup: payloads, errors and ids come from Kafka and may carry anything, <script> included.
'use strict';
(function () {
  const TOKEN_KEY = 'kbus.console.token';
  const view = document.getElementById('view');
  const banner = document.getElementById('banner');
  const notice = document.getElementById('notice');

  // ---- DOM helpers ------------------------------------------------------------------------
  // h('td', {class: 'num', dataset: {x: 1}}, 'text', node, [more]): strings become text nodes.
  function h(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'dataset') for (const [dk, dv] of Object.entries(v)) e.dataset[dk] = String(dv);
      else if (k === 'style') for (const [sk, sv] of Object.entries(v)) e.style.setProperty(sk, sv);
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    add(e, kids);
    return e;
  }
  function add(parent, ...kids) {
    for (const k of kids.flat(Infinity)) {
      if (k === null || k === undefined || k === false) continue;
      parent.appendChild(k instanceof Node ? k : document.createTextNode(String(k)));
    }
    return parent;
  }
  function setText(e, text) { if (e.textContent !== text) e.textContent = text; }
  function clear(e) { while (e.firstChild) e.removeChild(e.firstChild); return e; }
  // An in-page link; `hash` always starts with '#', so data can never make it a javascript: URL.
  function link(hash, kids, attrs) { return h('a', Object.assign({href: hash}, attrs || {}), kids); }
  function q(params) {
    const p = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') p.set(k, v);
    const s = p.toString();
    return s ? '?' + s : '';
  }
  function badge(status, text) {
    return h('span', {class: 'badge s-' + String(status || 'unknown').replace(/[^A-Za-z0-9_-]/g, '')}, text || status || '—');
  }
  function table(id, heads, rows, emptyText) {
    const body = h('tbody', null, rows);
    // A heading starting with '>' is a numeric column, right-aligned.
    const t = h('table', {id: id}, h('thead', null, h('tr', null, heads.map(x =>
      x.startsWith('>') ? h('th', {class: 'num'}, x.slice(1)) : h('th', null, x)))), body);
    return h('div', {class: 'table-wrap'}, t, rows.length ? null : h('div', {class: 'empty'}, emptyText || 'Nothing here.'));
  }
  const tdNum = (...kids) => h('td', {class: 'num'}, kids);
  function facts(pairs) {
    const slug = k => k.toLowerCase().replace(/[^a-z0-9]+/g, '-');
    return h('dl', {class: 'facts'}, pairs.filter(p => p).map(([k, v]) => [h('dt', null, k), h('dd', {dataset: {fact: slug(k)}}, v)]));
  }
  function jsonBlock(id, value) { return h('pre', {class: 'json', id: id}, JSON.stringify(value, null, 2)); }

  // ---- Formatting --------------------------------------------------------------------------
  let clockSkew = 0;  // server now_ms - local now, from /api/status
  const now = () => Date.now() + clockSkew;
  const pad = n => String(n).padStart(2, '0');
  function fmtTime(ms) {
    if (ms === null || ms === undefined || ms <= 0) return '—';
    const d = new Date(ms), t = new Date(now());
    const hms = pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
    if (d.toDateString() === t.toDateString()) return hms;
    return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + ' ' + hms;
  }
  function time(ms) {
    return h('span', {class: 'num', title: ms > 0 ? new Date(ms).toISOString() : null}, fmtTime(ms));
  }
  function fmtDuration(ms) {
    if (ms === null || ms === undefined || ms < 0 || Number.isNaN(ms)) return '—';
    if (ms < 1000) return Math.round(ms) + ' ms';
    const s = ms / 1000;
    if (s < 60) return s.toFixed(s < 10 ? 1 : 0) + ' s';
    const m = Math.floor(s / 60);
    if (m < 60) return m + ' m ' + pad(Math.floor(s % 60)) + ' s';
    const hr = Math.floor(m / 60);
    if (hr < 48) return hr + ' h ' + pad(m % 60) + ' m';
    return Math.floor(hr / 24) + ' d ' + (hr % 24) + ' h';
  }
  function fmtRelative(ms) {
    if (!ms) return '—';
    const d = ms - now();
    return d >= 0 ? 'in ' + fmtDuration(d) : fmtDuration(-d) + ' ago';
  }
  const fmtNum = n => (n === null || n === undefined) ? '—' : Number(n).toLocaleString('en-US');
  const mono = (text, cls) => h('span', {class: 'mono' + (cls ? ' ' + cls : '')}, text);

  // ---- Banner, notices, API ----------------------------------------------------------------
  // Problems by source; the banner shows them all and hides when none is left.
  const problems = new Map();
  function problem(key, text) {
    if (text) problems.set(key, text); else problems.delete(key);
    const lines = [...problems.values()];
    banner.hidden = lines.length === 0;
    banner.dataset.problems = [...problems.keys()].join(' ');
    setText(banner, lines.join('\n'));
  }
  let noticeTimer = 0;
  function say(text, kind) {
    clearTimeout(noticeTimer);
    notice.dataset.kind = kind || 'ok';
    setText(notice, text);
    notice.hidden = false;
    noticeTimer = setTimeout(() => { notice.hidden = true; }, 20000);
  }

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }
  // GET (or POST with opts) an /api path. A network failure or a 5xx also raises the banner
  // under `source`; 4xx answers (unknown id, bad filter) are the caller's to show.
  async function api(path, opts, source) {
    const key = source || 'view';
    let res;
    try {
      res = await fetch(path, Object.assign({cache: 'no-store'}, opts || {}));
    } catch (e) {
      problem(key, 'The console does not answer (' + (e.message || e) + '). Retrying…');
      throw new ApiError(0, 'the console does not answer');
    }
    const text = await res.text();
    let body = null;
    try { body = text ? JSON.parse(text) : null; } catch (e) { body = null; }
    if (!res.ok) {
      const msg = body && typeof body.error === 'string' ? body.error : res.status + ' ' + res.statusText;
      if (res.status >= 500) problem(key, 'The console failed: ' + msg);
      else problem(key, null);
      throw new ApiError(res.status, msg + (body && body.parameter ? ' (parameter ' + body.parameter + ')' : ''));
    }
    problem(key, null);
    return body;
  }
  function token() { return sessionStorage.getItem(TOKEN_KEY) || ''; }
  // An action: POST with the token; says what happened (the API's own words on 401/403).
  async function act(path, body, done) {
    const headers = {'Content-Type': 'application/json'};
    if (token()) headers.Authorization = 'Bearer ' + token();
    try {
      const r = await api(path, {method: 'POST', headers: headers, body: JSON.stringify(body)}, 'action');
      say(done(r || {}), 'ok');
      return r || {};
    } catch (e) {
      const why = e.status === 401 ? 'Refused (401, check the token): '
        : e.status === 403 ? 'Refused (403): ' : 'Failed' + (e.status ? ' (' + e.status + ')' : '') + ': ';
      say(why + e.message, 'error');
      return null;
    }
  }

  // ---- Status: pills and the broker banner -------------------------------------------------
  let status = null;
  async function pollStatus() {
    try {
      status = await api('/api/status', null, 'status');
      clockSkew = (status.now_ms || Date.now()) - Date.now();
      const broker = status.broker || {};
      problem('broker', broker.ok === false ? 'Kafka is unreachable: ' + (broker.error || 'no answer') +
        '. What you see may be stale.' : null);
    } catch (e) {
      status = null;
      problem('broker', null);  // the 'status' problem says more
    }
    const pills = clear(document.getElementById('pills'));
    if (!status) { add(pills, badge('error', 'console unreachable')); return; }
    const ok = !status.broker || status.broker.ok !== false;
    add(pills, h('span', {id: 'broker-state', class: 'badge s-' + (ok ? 'ok' : 'error'),
      title: ok ? null : (status.broker.error || '')}, ok ? 'broker ok' : 'broker down'));
    if (status.caught_up === false) add(pills, badge('catching-up', 'catching up'));
    if (status.read_only) add(pills, h('span', {class: 'badge', title: 'no KBUS_CONSOLE_TOKEN: actions are refused'}, 'read-only'));
  }

  // ---- Router ------------------------------------------------------------------------------
  // Each render gets a generation number; timers and late answers of an older one are dropped.
  let gen = 0, draws = 0;
  let payloadRaw = false;  // the dead-letter view shows the payload as stored, not pretty-printed
  let timers = [];
  function route() {
    const hash = location.hash || '#/overview';
    const qi = hash.indexOf('?');
    const path = (qi < 0 ? hash : hash.slice(0, qi)).replace(/^#\/?/, '');
    const params = new URLSearchParams(qi < 0 ? '' : hash.slice(qi + 1));
    const parts = path.split('/');
    return {name: parts[0] || 'overview', arg: parts.slice(1).map(decodeURIComponent).join('/'), params: params};
  }
  // Views that redraw themselves every few seconds (jobs and overview poll on their own).
  const refreshMs = {workflows: 3000, workflow: 3000, instance: 3000, 'dead-letters': 3000, 'dead-letter': 5000, schedules: 3000};
  // Someone typing in a field, selecting text or answering a confirmation: a redraw would undo it.
  function userBusy() {
    const a = document.activeElement;
    if (a && view.contains(a) && /^(INPUT|SELECT|TEXTAREA)$/.test(a.tagName)) return true;
    const sel = window.getSelection();
    if (sel && !sel.isCollapsed && view.contains(sel.anchorNode)) return true;
    const c = document.getElementById('confirm');
    return !!(c && !c.hidden);
  }
  // soft === true: a periodic redraw, which keeps the view on screen when it fails (the banner
  // says why) rather than replacing it with the error.
  function render(soft) {
    timers.forEach(clearInterval);
    timers = [];
    const my = ++gen;
    const r = route();
    for (const a of document.querySelectorAll('#nav a')) {
      const owner = {workflow: 'workflows', instance: 'workflows', job: 'jobs', 'dead-letter': 'dead-letters'}[r.name] || r.name;
      a.classList.toggle('active', a.dataset.view === owner);
    }
    const fn = views[r.name] || viewNotFound;
    problem('view', null);
    const live = () => my === gen;
    // Draws `nodes` unless a newer render took over; data-drawn counts the draws (for tests).
    const show = (...nodes) => {
      if (!live()) return false;
      clear(view);
      add(view, nodes);
      view.dataset.drawn = String(++draws);
      return true;
    };
    // A view's periodic refresh; one registered after the view was left is never started.
    const every = (ms, f) => { if (live()) timers.push(setInterval(f, ms)); };
    const again = () => { if (refreshMs[r.name]) every(refreshMs[r.name], () => { if (!userBusy() && !document.hidden) render(true); }); };
    fn(r, show, live, every).then(again, e => {
      if (!live()) return;
      if (soft !== true || !view.querySelector('h1')) {
        show(h('h1', null, titleOf(r)), h('div', {class: 'error-box', id: 'view-error'}, e.message || String(e)));
      }
      again();
    });
  }
  function titleOf(r) { return r.arg ? r.name + ' ' + r.arg : r.name; }
  window.addEventListener('hashchange', () => { notice.hidden = true; render(); });

  const views = {};
  async function viewNotFound(r, show) { show(h('h1', null, 'Not found'), h('p', null, 'No view named ', mono(r.name), '.')); }

  // Pager: "1–50 of 1,234" with newer/older links built by hrefAt(offset).
  function pager(total, offset, limit, count, hrefAt) {
    if (!total && !offset) return null;
    const first = total === 0 ? 0 : offset + 1;
    const last = offset + count;
    return h('nav', {class: 'pager'},
      link(hrefAt(Math.max(0, offset - limit)), '‹ Previous', {class: offset > 0 ? 'prev' : 'prev off'}),
      h('span', {class: 'range'}, fmtNum(first) + '–' + fmtNum(last) + ' of ' + fmtNum(total)),
      link(hrefAt(offset + limit), 'Next ›', {class: last < total ? 'next' : 'next off'}));
  }
  function paging(params, defLimit) {
    const offset = Math.max(0, parseInt(params.get('offset') || '0', 10) || 0);
    const limit = Math.min(500, Math.max(1, parseInt(params.get('limit') || String(defLimit), 10) || defLimit));
    return {offset, limit};
  }
  function refreshButton() { return h('button', {id: 'refresh', type: 'button', onclick: render}, 'Refresh'); }
  // The view's title with its buttons on the same line.
  function head(title, ...tools) { return h('div', {class: 'head'}, title, h('div', {class: 'toolbar'}, tools, refreshButton())); }

  // ---- Overview ----------------------------------------------------------------------------
  views.overview = async function (r, show, live, every) {
    const draw = async () => {
      const [totals, groups] = await Promise.all([api('/api/totals'), api('/api/dead-letter-groups')]);
      const st = status || {};
      const jobs = totals.jobs || {};
      const dlq = (groups.items || []).reduce((n, g) => n + (g.count || 0) - (g.redriven || 0), 0);
      const wfs = totals.workflows || [];
      const sum = k => wfs.reduce((n, w) => n + (w[k] || 0), 0);
      const card = (id, value, label, cls, href) => h(href ? 'a' : 'div', {class: 'card ' + (cls || ''), id: id, href: href},
        h('div', {class: 'value'}, fmtNum(value)), h('div', {class: 'label'}, label));
      show(
        h('h1', null, 'Overview'),
        h('div', {class: 'cards', id: 'totals'},
          card('total-jobs-running', jobs.running, 'jobs running', 'run', '#/jobs'),
          card('total-jobs-succeeded', jobs.succeeded, 'jobs succeeded', 'ok', '#/jobs'),
          card('total-jobs-failed', jobs.failed, 'jobs failed', jobs.failed ? 'bad' : '', '#/jobs'),
          card('total-workflows-running', sum('running'), 'workflows running', 'run', '#/workflows'),
          card('total-workflows-failed', sum('failed'), 'workflows failed', sum('failed') ? 'bad' : '', '#/workflows'),
          card('total-dead-letters', dlq, 'dead letters not redriven', dlq ? 'bad' : '', '#/dead-letters')),
        h('h2', null, 'Workflows'),
        table('totals-workflows', ['Workflow', '>Running', '>Completed',
          '>Failed', '>Dead-lettered', '>Mean', '>p95',
          '>Backlog'], wfs.map(w => h('tr', {dataset: {workflow: w.name}},
          h('td', null, link('#/workflow/' + encodeURIComponent(w.name), mono(w.name))),
          tdNum(fmtNum(w.running)), tdNum(fmtNum(w.completed)),
          tdNum(fmtNum(w.failed)), tdNum(fmtNum(w.dead_lettered)),
          tdNum(fmtDuration(w.mean_ms)), tdNum(fmtDuration(w.p95_ms)),
          tdNum(fmtNum(w.backlog)))), 'No workflow state seen yet.'),
        h('div', {class: 'cols'},
          h('div', null, h('h2', null, 'Message types'),
            table('totals-types', ['Type', '>Done', '>Failed', '>Dead-lettered', '>Mean', '>p95', '>Backlog'],
            (totals.types || []).map(t => h('tr', null, h('td', null, mono(t.type)), tdNum(fmtNum(t.done)),
              tdNum(fmtNum(t.failed)), tdNum(fmtNum(t.dead_lettered)),
              tdNum(fmtDuration(t.mean_ms)), tdNum(fmtDuration(t.p95_ms)),
              tdNum(fmtNum(t.backlog)))))),
          h('div', null, h('h2', null, 'Dead-letter groups'),
            table('totals-dlq', ['Group', '>Dead letters', '>Redriven', '>Lag'],
              (groups.items || []).map(g => {
                const lag = (totals.groups || []).find(x => x.group === g.group);
                return h('tr', null, h('td', null, link('#/dead-letters' + q({group: g.group}), mono(g.group))),
                  tdNum(fmtNum(g.count)), tdNum(fmtNum(g.redriven)),
                  tdNum(lag ? fmtNum(lag.lag) : '—'));
              }), 'No dead-letter topic seen.'))),
        h('h2', null, 'Console'),
        facts([
          ['Broker', st.broker ? (st.broker.ok === false ? badge('error', 'unreachable: ' + st.broker.error) : badge('ok', 'reachable')) : '—'],
          ['Caught up', st.caught_up === undefined ? '—' : st.caught_up ? 'yes' : 'no, still reading the topics'],
          ['Running since', st.started_ms ? [time(st.started_ms), ' (', fmtRelative(st.started_ms), ')'] : '—'],
          ['Actions', st.read_only ? 'read-only: no KBUS_CONSOLE_TOKEN configured' : 'enabled with the token'],
          st.topics ? ['State topics', mono((st.topics.state || []).join(', ') || '—')] : null,
          st.topics ? ['Event topics', mono((st.topics.events || []).join(', ') || '—')] : null,
          st.topics ? ['Dead-letter topics', mono((st.topics.dlq || []).join(', ') || '—')] : null,
          st.topics ? ['Schedules topic', mono(st.topics.schedules || '—')] : null,
        ]),
        (st.readers || []).length ? [h('h2', null, 'Topics read'), table('readers', ['Topic', '>Records', 'Caught up', 'Error'],
          st.readers.map(x => h('tr', null, h('td', null, mono(x.topic)), tdNum(fmtNum(x.records)),
            h('td', null, x.caught_up ? 'yes' : badge('catching-up', 'no')), h('td', {class: 'wrap'}, x.error || ''))))] : null);
    };
    await draw();
    every(3000, () => draw().catch(() => {}));
  };

  // ---- Jobs --------------------------------------------------------------------------------
  function progress(percent) {
    const known = typeof percent === 'number' && percent >= 0;
    const p = known ? Math.min(100, percent) : 0;
    return h('div', {class: 'progress' + (known ? '' : ' indeterminate'), role: 'progressbar',
      'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': known ? p : null},
      h('div', {class: 'bar', dataset: {percent: known ? p : -1}, style: {width: p + '%'}}));
  }
  function updateProgress(cell, percent) {
    const known = typeof percent === 'number' && percent >= 0;
    const p = known ? Math.min(100, percent) : 0;
    const box = cell.querySelector('.progress'), bar = cell.querySelector('.bar');
    box.classList.toggle('indeterminate', !known);
    if (known) box.setAttribute('aria-valuenow', p); else box.removeAttribute('aria-valuenow');
    bar.dataset.percent = known ? p : -1;
    bar.style.width = p + '%';
  }
  function jobKey(j) { return j.job_id + '\u0000' + j.attempt; }
  function jobHref(j) { return '#/job' + q({id: j.job_id, attempt: j.attempt}); }
  function cancelJob(j) {
    const reason = 'cancelled from the console';
    return act('/api/jobs/cancel', {job_id: j.job_id, attempt: j.attempt, reason: reason},
      () => 'Cancel sent for ' + j.job_id + ' attempt ' + j.attempt + '.');
  }
  function runningRow(j) {
    const tr = h('tr', {class: 'job', dataset: {jobId: j.job_id, attempt: j.attempt, workflowId: j.workflow_id || ''}},
      h('td', null, link(jobHref(j), mono(j.job_id, 'id'))),
      tdNum(String(j.attempt)),
      h('td', null, mono(j.program || '')),
      h('td', {class: 'progress-cell'}, progress(j.percent),
        h('div', {class: 'progress-line'}, h('span', {class: 'message'}), h('span', {class: 'percent'}))),
      h('td', {class: 'num elapsed'}),
      h('td', {class: 'host'}, mono(j.host || '')),
      h('td', {class: 'num started'}, time(j.started_ms)),
      h('td', null, h('button', {type: 'button', class: 'cancel danger', onclick: () => cancelJob(j)}, 'Cancel')));
    updateRunningRow(tr, j);
    return tr;
  }
  function updateRunningRow(tr, j) {
    updateProgress(tr, j.percent);
    setText(tr.querySelector('.message'), j.message || '');
    setText(tr.querySelector('.percent'), j.percent >= 0 ? j.percent + '%' : '…');
    setText(tr.querySelector('.elapsed'), fmtDuration(j.elapsed_ms) + (j.silent ? ' · silent' : ''));
    tr.querySelector('.elapsed').title = 'last event ' + fmtRelative(j.updated_ms);
    tr.classList.toggle('silent', !!j.silent);
  }
  function outcomeCell(j) {
    const o = j.outcome || j.state || '';
    return h('td', {class: 'outcome'}, badge(o, o));
  }
  function exitText(j) {
    if (j.signal) return 'signal ' + j.signal;
    if (j.exit_code === null || j.exit_code === undefined) return '—';
    return 'exit ' + j.exit_code;
  }
  function finishedRow(j) {
    return h('tr', {class: 'job', dataset: {jobId: j.job_id, attempt: j.attempt, workflowId: j.workflow_id || '', outcome: j.outcome || ''}},
      h('td', null, link(jobHref(j), mono(j.job_id, 'id'))),
      tdNum(String(j.attempt)),
      h('td', null, mono(j.program || '')),
      outcomeCell(j),
      tdNum(exitText(j)),
      tdNum(fmtDuration(j.duration_ms)),
      h('td', {class: 'host'}, mono(j.host || '')),
      tdNum(time(j.exited_ms || j.updated_ms)),
      h('td', {class: 'result'}, j.has_result ? link(jobHref(j), 'result', {class: 'result-link'}) : h('span', {class: 'muted'}, '—')),
      h('td', {class: 'clip error', title: j.error || null}, j.error || ''));
  }
  views.jobs = async function (r, show, live, every) {
    const pg = paging(r.params, 50);
    // Running jobs are paged too (100 a page): a thousand at once stay one click apart.
    const runningLimit = 100;
    const roffset = Math.max(0, parseInt(r.params.get('roffset') || '0', 10) || 0);
    const runningPager = h('div');
    const runningBody = h('tbody');
    const runningEmpty = h('div', {class: 'empty'}, 'No job is running.');
    const runningCount = h('span', {class: 'muted', id: 'running-count'});
    const finishedBox = h('div');
    const rows = new Map();
    const runningTable = h('div', {class: 'table-wrap'}, h('table', {id: 'running-jobs'},
      h('thead', null, h('tr', null, ['Job', 'Attempt', 'Program', 'Progress', 'Elapsed', 'Host', 'Started', ''].map(t =>
        h('th', {class: t === 'Elapsed' || t === 'Started' || t === 'Attempt' ? 'num' : null}, t)))), runningBody), runningEmpty);
    const drawRunning = async () => {
      const running = await api('/api/jobs' + q({state: 'running', offset: roffset || null, limit: runningLimit}));
      if (!live()) return;
      const seen = new Set();
      let before = null;
      // Keyed update, newest last: a row keeps its element, so its bar glides instead of jumping.
      for (const j of (running.items || []).slice().reverse()) {
        const k = jobKey(j);
        seen.add(k);
        let tr = rows.get(k);
        if (tr) updateRunningRow(tr, j); else { tr = runningRow(j); rows.set(k, tr); }
        if (tr.nextSibling !== before || tr.parentNode !== runningBody) runningBody.insertBefore(tr, before);
        before = tr;
      }
      for (const [k, tr] of rows) if (!seen.has(k)) { tr.remove(); rows.delete(k); }
      runningEmpty.hidden = rows.size > 0;
      setText(runningCount, '(' + fmtNum(running.total || 0) + ')');
      clear(runningPager);
      if ((running.total || 0) > runningLimit || roffset > 0) {
        add(runningPager, pager(running.total || 0, roffset, runningLimit, (running.items || []).length,
          o => '#/jobs' + q({roffset: o || null, offset: pg.offset || null, limit: pg.limit === 50 ? null : pg.limit})));
      }
    };
    const drawFinished = async () => {
      const fin = await api('/api/jobs' + q({state: 'finished', offset: pg.offset, limit: pg.limit}));
      if (!live()) return;
      const items = fin.items || [];
      clear(finishedBox);
      add(finishedBox, table('finished-jobs', ['Job', '>Attempt', 'Program', 'Outcome', '>Exit',
        '>Duration', 'Host', '>Exited', 'Result', 'Error'], items.map(finishedRow),
      'No job has finished yet.'), pager(fin.total || 0, pg.offset, pg.limit, items.length,
        o => '#/jobs' + q({roffset: roffset || null, offset: o || null, limit: pg.limit === 50 ? null : pg.limit})));
    };
    await Promise.all([drawRunning(), drawFinished()]);
    show(h('h1', null, 'Jobs'),
      h('h2', null, 'Running ', runningCount), runningTable, runningPager,
      h('h2', null, 'Finished'), finishedBox);
    // Once a second, as the launcher's progress events come in; a failed poll keeps the rows
    // (the banner says why) and the next one tries again.
    let busy = false;
    every(1000, async () => {
      if (busy) return;
      busy = true;
      try { await Promise.all([drawRunning(), drawFinished()]); } catch (e) { /* banner */ } finally { busy = false; }
    });
  };

  views.job = async function (r, show, live, every) {
    const id = r.params.get('id') || '';
    const attempt = r.params.get('attempt');
    const draw = async () => {
      const [j, wfs] = await Promise.all([api('/api/job' + q({id: id, attempt: attempt})),
        api('/api/workflows').catch(() => ({items: []}))]);
      // The job's events arrive on a workflow's input topic (NAME.in) when a workflow launched it.
      const wf = (wfs.items || []).find(w => j.topic && j.topic === w.name + '.in');
      const running = j.state === 'running';
      show(
        head(h('h1', null, 'Job ', mono(j.job_id, 'id'), ' attempt ' + j.attempt + ' ', running ? badge('running') : badge(j.outcome || j.state)),
          running ? h('button', {type: 'button', id: 'cancel', class: 'cancel danger',
            onclick: () => cancelJob(j).then(x => x && draw())}, 'Cancel this attempt') : null),
        running ? h('div', {id: 'job-progress', dataset: {jobId: j.job_id}}, progress(j.percent),
          h('div', {class: 'progress-line'}, h('span', {class: 'message'}, j.message || ''),
            h('span', {class: 'percent'}, j.percent >= 0 ? j.percent + '%' : '…'))) : null,
        h('h2', null, 'Result'),
        j.result !== null && j.result !== undefined ? jsonBlock('result', j.result)
          : h('p', {class: 'muted', id: 'result-missing'}, running ? 'Still running: no result yet.' : 'This attempt left no result.'),
        h('h2', null, 'Details'),
        facts([
          ['Program', mono(j.program || '—')], ['Host', mono(j.host || '—')], ['PID', mono(String(j.pid || '—'))],
          ['State', j.state || '—'], ['Outcome', j.outcome || '—'], ['Exit', exitText(j)],
          ['Started', [time(j.started_ms), ' (', fmtRelative(j.started_ms), ')']],
          ['Last event', [time(j.updated_ms), ' (', fmtRelative(j.updated_ms), ')']],
          ['Elapsed', fmtDuration(running ? j.elapsed_ms : j.duration_ms)],
          ['Events topic', mono(j.topic || '—')],
          ['Workflow id', j.workflow_id ? (wf ? link('#/instance' + q({workflow: wf.name, id: j.workflow_id}), mono(j.workflow_id), {id: 'instance-link'})
            : mono(j.workflow_id)) : '—'],
          j.error ? ['Error', h('span', {class: 'mono'}, j.error)] : null,
        ]),
        j.stderr_tail ? [h('h2', null, 'Last lines of stderr'), h('pre', {class: 'json', id: 'stderr'}, j.stderr_tail)] : null,
        h('h2', null, 'Attempts'),
        table('attempts', ['Attempt', 'Outcome', 'Exit', 'Duration', 'Host', 'Started', 'Error'], (j.attempts || []).map(a =>
          h('tr', {dataset: {attempt: a.attempt}}, h('td', null, link(jobHref(a), String(a.attempt))),
            h('td', null, badge(a.outcome || a.state, a.outcome || a.state)), h('td', null, exitText(a)),
            h('td', null, fmtDuration(a.state === 'running' ? a.elapsed_ms : a.duration_ms)), h('td', null, mono(a.host || '')),
            h('td', null, time(a.started_ms)), h('td', {class: 'wrap'}, a.error || '')))));
      return running;
    };
    if (await draw()) every(1000, () => draw().catch(() => {}));
  };

  // ---- Workflows ---------------------------------------------------------------------------
  views.workflows = async function (r, show) {
    const wfs = await api('/api/workflows');
    const cnt = (w, s, cls) => tdNum(w[s] ? link('#/workflow/' + encodeURIComponent(w.name) + q({status: s}),
      fmtNum(w[s]), {class: cls}) : '0');
    show(head(h('h1', null, 'Workflows')),
      table('workflows', ['Workflow', '>Running', '>Completed', '>Failed',
        '>Total'], (wfs.items || []).map(w => h('tr', {dataset: {workflow: w.name}},
        h('td', null, link('#/workflow/' + encodeURIComponent(w.name), mono(w.name))),
        cnt(w, 'running'), cnt(w, 'completed'), cnt(w, 'failed'), tdNum(fmtNum(w.total)))),
      'No workflow state topic seen yet.'));
  };

  views.workflow = async function (r, show) {
    const name = r.arg;
    const st = r.params.get('status') || '';
    const pg = paging(r.params, 50);
    const href = (o, s, l) => '#/workflow/' + encodeURIComponent(name) + q({status: s === undefined ? st : s, offset: o || null,
      limit: (l || pg.limit) === 50 ? null : (l || pg.limit)});
    const list = await api('/api/instances' + q({workflow: name, status: st, offset: pg.offset, limit: pg.limit}));
    const items = list.items || [];
    show(h('h1', null, 'Workflow ', mono(name)),
      h('div', {class: 'toolbar'},
        h('div', {class: 'tabs', id: 'status-filter'}, ['', 'running', 'completed', 'failed'].map(s =>
          link(href(0, s), s || 'all', {class: s === st ? 'active' : null, dataset: {status: s}}))),
        h('label', null, 'Per page', h('select', {id: 'limit', onchange: e => { location.hash = href(0, st, +e.target.value); }},
          [50, 100, 500].map(n => h('option', {value: n, selected: n === pg.limit}, String(n))))),
        h('span', {class: 'spacer'}), refreshButton()),
      table('instances', ['Instance', 'Status', 'Phase', '>Attempt', '>Run', '>Version',
        '>Timeouts', '>Created', '>Updated', '>Finished', 'Result'],
      items.map(i => h('tr', {class: 'instance', dataset: {instanceId: i.id, status: i.status}},
        h('td', null, link('#/instance' + q({workflow: name, id: i.id}), mono(i.id, 'id'))),
        h('td', null, badge(i.status)), h('td', null, i.phase || '—'),
        tdNum(i.attempt === null || i.attempt === undefined ? '—' : String(i.attempt)),
        tdNum(fmtNum(i.run)), tdNum(fmtNum(i.version)),
        tdNum(fmtNum(typeof i.timeouts === 'number' ? i.timeouts : (i.timeouts || []).length)),
        tdNum(time(i.created_ms)), tdNum(time(i.updated_ms)),
        tdNum(time(i.finished_ms)),
        h('td', null, i.has_result ? link('#/instance' + q({workflow: name, id: i.id}), 'result', {class: 'result-link'}) : '—'))),
      st ? 'No ' + st + ' instance.' : 'No instance yet.'),
      pager(list.total || 0, pg.offset, pg.limit, items.length, o => href(o)));
  };

  views.instance = async function (r, show, live, every) {
    const wf = r.params.get('workflow') || '', id = r.params.get('id') || '';
    const draw = async () => {
      const i = await api('/api/instance' + q({workflow: wf, id: id}));
      let resultNode;
      if (i.result !== null && i.result !== undefined) {
        resultNode = [jsonBlock('result', i.result), i.result_expires_ms ? h('p', {class: 'muted'}, 'Kept until ', time(i.result_expires_ms), '.') : null];
      } else {
        // The API says why there is none: still running, none left, expired at ...
        const why = await api('/api/result' + q({workflow: wf, id: id})).then(() => 'No result yet.', e => e.message);
        resultNode = h('p', {class: 'muted', id: 'result-missing'}, why);
      }
      const timeouts = Array.isArray(i.timeouts) ? i.timeouts : [];
      show(
        head(h('h1', null, link('#/workflow/' + encodeURIComponent(wf), mono(wf)), ' / ', mono(i.id, 'id'), ' ', badge(i.status))),
        i.record_error ? h('p', {class: 'error-box', id: 'record-error'}, 'The latest state record cannot be read: ' + i.record_error) : null,
        facts([
          ['Status', badge(i.status)], ['Phase', i.phase || '—'],
          ['Attempt', i.attempt === null || i.attempt === undefined ? '—' : String(i.attempt)],
          ['Run', fmtNum(i.run)], ['Version', fmtNum(i.version)],
          ['Created', [time(i.created_ms), ' (', fmtRelative(i.created_ms), ')']],
          ['Updated', [time(i.updated_ms), ' (', fmtRelative(i.updated_ms), ')']],
          ['Finished', i.finished_ms ? [time(i.finished_ms), ' (took ', fmtDuration(i.finished_ms - i.created_ms), ')'] : '—'],
          i.correlation_id ? ['Correlation id', mono(i.correlation_id)] : null,
          i.state_topic ? ['State topic', mono(i.state_topic)] : null,
          ['Started by', i.origin ? mono(i.origin.type + ' from ' + i.origin.topic + '/' + i.origin.partition + '@' + i.origin.offset) : '—'],
        ]),
        h('h2', null, 'Result'), resultNode,
        h('div', {class: 'cols'},
          h('div', null, h('h2', null, 'Pending timeouts'),
            table('timeouts', ['Timeout', 'Due', ''], timeouts.map(t => h('tr', null, h('td', null, mono(t.name)),
              h('td', null, time(t.due_ms)), h('td', {class: 'muted'}, fmtRelative(t.due_ms)))), 'None pending.')),
          h('div', null, h('h2', null, 'History'),
            (i.history || []).length ? h('ol', {class: 'history', id: 'history'}, i.history.map(x => h('li', null, String(x))))
              : h('p', {class: 'muted'}, 'No history in the state.'))),
        h('h2', null, 'State'), jsonBlock('state', i.state === undefined ? null : i.state),
        h('h2', null, 'Steps'),
        table('steps', ['>Version', '>Updated', 'Status', 'Message id', 'Sent'], (i.steps || []).map(s =>
          h('tr', null, tdNum(fmtNum(s.version)), tdNum(time(s.updated_ms)),
            h('td', null, badge(s.status)), h('td', null, mono(s.message_id || '—')),
            h('td', null, h('div', {class: 'chips'}, (s.sent || []).map(t => h('span', {class: 'chip mono'}, t)))))),
        'No step seen by this console.'));
      return i.status === 'running';
    };
    await draw();
  };

  // ---- Dead letters ------------------------------------------------------------------------
  function dlHref(d) { return '#/dead-letter' + q({group: d.group, partition: d.partition, offset: d.offset}); }
  function redriveOne(d) {
    return act('/api/dead-letters/redrive', {group: d.group, partition: Number(d.partition), offset: Number(d.offset)},
      x => x.redriven ? 'Redriven: ' + d.group + '/' + d.partition + '@' + d.offset + ' is back on its topic.'
        : 'Nothing redriven (' + (x.skipped || 0) + ' skipped).');
  }
  views['dead-letters'] = async function (r, show, live, every) {
    const groups = (await api('/api/dead-letter-groups')).items || [];
    let group = r.params.get('group') || '';
    if (!group && groups.length === 1) group = groups[0].group;
    const reason = r.params.get('reason') || '', type = r.params.get('type') || '';
    const pg = paging(r.params, 50);
    const href = (p) => '#/dead-letters' + q(Object.assign({group: group, reason: reason, type: type, offset: null,
      limit: pg.limit === 50 ? null : pg.limit}, p));
    const groupTable = table('dead-letter-groups', ['Group', 'Topic', '>Dead letters', '>Redriven', 'Reasons'],
      groups.map(g => h('tr', {class: g.group === group ? 'selected' : null, dataset: {group: g.group}},
        h('td', null, link('#/dead-letters' + q({group: g.group}), mono(g.group), {class: g.group === group ? 'active' : null})),
        h('td', null, mono(g.topic)), tdNum(fmtNum(g.count)), tdNum(fmtNum(g.redriven)),
        h('td', null, h('div', {class: 'chips'}, Object.entries(g.reasons || {}).map(([k, n]) =>
          link('#/dead-letters' + q({group: g.group, reason: k}), k + ' ' + fmtNum(n), {class: 'chip'})))))),
      'No dead-letter topic seen.');
    if (!group) {
      show(h('h1', null, 'Dead letters'), groupTable, groups.length ? h('p', {class: 'muted'}, 'Choose a group.') : null);
      return;
    }
    const g = groups.find(x => x.group === group) || {reasons: {}};
    const list = await api('/api/dead-letters' + q({group: group, reason: reason, type: type, offset: pg.offset, limit: pg.limit}));
    const items = list.items || [];
    const reasonSel = h('select', {id: 'filter-reason'}, h('option', {value: ''}, 'any reason'),
      [...new Set(Object.keys(g.reasons || {}).concat(reason ? [reason] : []))].map(k =>
        h('option', {value: k, selected: k === reason}, k + (g.reasons && g.reasons[k] !== undefined ? ' (' + fmtNum(g.reasons[k]) + ')' : ''))));
    const typeIn = h('input', {id: 'filter-type', type: 'text', value: type, placeholder: 'any type', list: 'dl-types', spellcheck: 'false'});
    const apply = e => { e.preventDefault(); location.hash = href({reason: reasonSel.value, type: typeIn.value.trim()}); };
    const confirmBox = h('div', {class: 'confirm', id: 'confirm', hidden: true});
    const filterText = [reason ? 'reason ' + reason : null, type ? 'type ' + type : null].filter(x => x).join(' and ');
    const askAll = () => {
      clear(confirmBox);
      add(confirmBox, h('span', null, 'Redrive all ' + fmtNum(list.total) + ' dead letters of ', mono(group),
        filterText ? ' with ' + filterText : '', '? Each goes back to its original topic.'),
      h('button', {type: 'button', id: 'confirm-yes', class: 'danger primary', onclick: async () => {
        confirmBox.hidden = true;
        const body = {group: group, all: true};
        if (reason) body.reason = reason;
        if (type) body.type = type;
        if (await act('/api/dead-letters/redrive', body, x => 'Redriven ' + fmtNum(x.redriven) + ', skipped ' + fmtNum(x.skipped || 0) + '.')) render();
      }}, 'Redrive ' + fmtNum(list.total)),
      h('button', {type: 'button', id: 'confirm-no', onclick: () => { confirmBox.hidden = true; }}, 'Keep them'));
      confirmBox.hidden = false;
    };
    show(h('h1', null, 'Dead letters'), groupTable,
      h('h2', null, 'Group ', mono(group)),
      h('form', {class: 'toolbar', id: 'filters', onsubmit: apply},
        h('label', null, 'Reason', reasonSel), h('label', null, 'Type', typeIn),
        h('datalist', {id: 'dl-types'}, [...new Set(items.map(d => d.type).filter(t => t))].map(t => h('option', {value: t}))),
        h('button', {type: 'submit', id: 'apply-filter'}, 'Filter'),
        reason || type ? link(href({reason: null, type: null}), 'clear', {id: 'clear-filter'}) : null,
        h('label', null, 'Per page', h('select', {id: 'limit', onchange: e => { location.hash = href({limit: +e.target.value === 50 ? null : e.target.value}); }},
          [50, 100, 500].map(n => h('option', {value: n, selected: n === pg.limit}, String(n))))),
        h('span', {class: 'spacer'}),
        h('button', {type: 'button', id: 'redrive-all', class: 'danger', disabled: !list.total, onclick: askAll},
          'Redrive all matching (' + fmtNum(list.total) + ')'),
        refreshButton()),
      confirmBox,
      table('dead-letters', ['>At', 'Position', 'Type', 'Reason', 'Error', 'From topic', '>Attempts', '', ''],
        items.map(d => h('tr', {class: 'dead-letter', dataset: {partition: d.partition, offset: d.offset, id: d.id || '', redriven: !!d.redriven}},
          tdNum(link(dlHref(d), time(d.at_ms), {class: 'open', title: 'message ' + (d.id || '?')})),
          h('td', null, mono(d.partition + '@' + d.offset)),
          h('td', null, mono(d.type || '—')), h('td', null, badge(d.reason === 'rejected' ? 'rejected' : 'warn', d.reason || '—')),
          h('td', {class: 'clip', title: d.error || null}, d.error || ''),
          h('td', null, mono(d.original_topic || '—')), tdNum(fmtNum(d.attempts)),
          h('td', {class: 'state'}, d.redriven ? badge('redriven') : null),
          h('td', null, h('button', {type: 'button', class: 'redrive', onclick: () => redriveOne(d).then(x => x && render())}, 'Redrive')))),
        reason || type ? 'No dead letter matches the filter.' : 'No dead letter in this group.'),
      pager(list.total || 0, pg.offset, pg.limit, items.length, o => href({offset: o || null})));
  };

  views['dead-letter'] = async function (r, show) {
    const group = r.params.get('group') || '', partition = r.params.get('partition') || '', offset = r.params.get('offset') || '';
    const d = await api('/api/dead-letter' + q({group: group, partition: partition, offset: offset}));
    const payload = typeof d.payload === 'string' ? d.payload : JSON.stringify(d.payload);
    let pretty = null;
    try { pretty = JSON.stringify(JSON.parse(payload), null, 2); } catch (e) { pretty = null; }
    const pre = h('pre', {class: 'json', id: 'payload'});
    const toggle = pretty === null ? null : h('button', {type: 'button', id: 'payload-toggle', onclick: () => {
      payloadRaw = !payloadRaw;
      shown();
    }});
    // The choice outlives redraws: pretty-printed when the payload is JSON, unless asked otherwise.
    const shown = () => {
      const raw = payloadRaw || pretty === null;
      pre.dataset.shown = raw ? 'raw' : 'pretty';
      setText(pre, raw ? payload : pretty);
      if (toggle) setText(toggle, raw ? 'Pretty-print' : 'Show as stored');
    };
    shown();
    show(
      head(h('h1', null, 'Dead letter ', mono(d.group + '/' + d.partition + '@' + d.offset, 'id'), ' ', d.redriven ? badge('redriven') : null),
        link('#/dead-letters' + q({group: d.group}), '‹ all of ' + d.group),
        h('button', {type: 'button', id: 'redrive', class: 'primary', onclick: () => redriveOne(d).then(x => x && render())},
          d.redriven ? 'Redrive again' : 'Redrive')),
      facts([
        ['Reason', badge(d.reason === 'rejected' ? 'rejected' : 'warn', d.reason || '—')],
        ['Error', h('span', {class: 'mono', id: 'dl-error'}, d.error || '—')],
        ['Type', mono(d.type || '—')], ['Message id', mono(d.id || '—')], ['Key', mono(d.key === undefined || d.key === null ? '—' : d.key)],
        d.workflow ? ['Workflow', d.key ? link('#/instance' + q({workflow: d.workflow, id: d.key}), mono(d.workflow + ' / ' + d.key),
          {id: 'instance-link'}) : mono(d.workflow)] : null,
        ['From topic', mono(d.original_topic || '—')], ['Attempts', fmtNum(d.attempts)],
        ['Dead-lettered', [time(d.at_ms), ' (', fmtRelative(d.at_ms), ')']],
        ['Redriven', d.redriven ? 'yes' : 'no'],
      ]),
      h('h2', null, 'Payload ', h('span', {class: 'muted'}, '(' + fmtNum(payload.length) + ' characters)'), ' ', toggle), pre,
      h('h2', null, 'Headers'),
      table('headers', ['Header', 'Value'], (d.headers || []).map(([k, v]) =>
        h('tr', {dataset: {header: k}}, h('td', null, mono(k)), h('td', {class: 'wrap'}, mono(v === null ? '(null)' : v)))), 'No headers.'));
  };

  // ---- Schedules ---------------------------------------------------------------------------
  views.schedules = async function (r, show) {
    const list = (await api('/api/schedules')).items || [];
    const flip = s => act('/api/schedules/' + (s.paused ? 'resume' : 'pause'), {name: s.name},
      () => (s.paused ? 'Resumed ' : 'Paused ') + s.name + '.').then(x => x && render());
    show(head(h('h1', null, 'Schedules')),
      table('schedules', ['Schedule', 'State', 'Calendar', 'Sends', '>Next run', '', '>Fired',
        'Last outcome', 'Note', ''], list.map(s =>
        h('tr', {class: 'schedule', dataset: {schedule: s.name, paused: !!s.paused}},
          h('td', null, mono(s.name)), h('td', null, s.paused ? badge('paused') : badge('active')),
          h('td', null, mono(s.calendar || s.description || '—')),
          h('td', null, s.type ? mono(s.type + (s.topic ? ' → ' + s.topic : '')) : '—'),
          tdNum(s.paused ? '—' : time(s.next_ms)), h('td', {class: 'muted'}, s.paused ? '' : fmtRelative(s.next_ms)),
          tdNum(fmtNum(s.fired)),
          h('td', null, s.last_outcome ? badge(s.last_outcome) : '—'),
          h('td', {class: 'wrap'}, s.note || ''),
          h('td', null, h('button', {type: 'button', class: s.paused ? 'resume' : 'pause', onclick: () => flip(s)},
            s.paused ? 'Resume' : 'Pause')))),
      status && status.topics && !status.topics.schedules ? 'No schedules topic.' : 'No schedule.'));
  };

  // ---- Start -------------------------------------------------------------------------------
  const tokenInput = document.getElementById('token');
  tokenInput.value = token();
  tokenInput.addEventListener('input', () => {
    if (tokenInput.value) sessionStorage.setItem(TOKEN_KEY, tokenInput.value); else sessionStorage.removeItem(TOKEN_KEY);
  });
  pollStatus();
  setInterval(pollStatus, 2000);
  if (!location.hash) history.replaceState(null, '', '#/overview');
  render();
})();
