#!/usr/bin/env node
// A small file-backed OAuth credential pool in Node.js (plain node, no npm packages), with the
// poolcheck-subject/1 protocol loop at the bottom. It reports nothing to poolcheck: no events,
// no pauses. Judge it from the outside:
//
//   poolcheck run --scenario refresh-race --observe syscalls --subject 'node subjects/node/pool.js'
//
// As shipped (the bugs): every change is written in place (truncate, then one write per
// `write_chunk` bytes), reads take no lock, and an expiring token is refreshed blind: whatever
// refresh token this process's snapshot holds is POSTed, so processes that loaded the same
// snapshot all redeem it. `--fixed`: a lock file (created with O_EXCL) held across re-read ->
// adopt a peer's rotation or POST -> write, and writes go to a temp file that is fsynced and
// renamed over the store; and an entry whose source has a credentials file of its own CLI (the
// hello's `external`, e.g. the Codex CLI's auth.json for `source = "codex"`) is kept in step with
// it: a token pair the other CLI rotated to is adopted (clearing the entry's status) before the
// entry is judged, and a pair this pool rotates to is written back to that file. As shipped the
// pool never reads those files, so an entry whose token the other CLI rotated stays dead in the
// store (`seed-8040` reports it as `dead_credential`).
'use strict';

const fs = require('fs');
const path = require('path');
const http = require('http');
const crypto = require('crypto');
const readline = require('readline');

const PROTOCOL = 'poolcheck-subject/1';
const FIXED = process.argv.includes('--fixed');
// Where another CLI keeps its pair: [object, access key, refresh key, expiry key].
const EXTERNAL_KEYS = {
  claude_code: ['claudeAiOauth', 'accessToken', 'refreshToken', 'expiresAt'],
  codex: ['tokens', 'access_token', 'refresh_token', 'expires_at_ms'],
};

function tag(secret) {
  return 't:' + crypto.createHash('sha256').update(secret).digest('hex').slice(0, 8);
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

class Pool {
  constructor(h) {
    this.store = h.store;
    this.provider = h.provider;
    this.issuer = new URL(h.issuer_url);
    this.proc = String(h.proc);
    this.margin = h.refresh_margin_ms;
    this.cooldown = h.cooldown_ms;
    this.chunk = Math.max(1, h.write_chunk || 256);
    this.lockPath = path.join(path.dirname(this.store), '.node-pool.lock');
    this.doc = { version: 1, credential_pool: {} };
    this.external = {}; // source -> path of that CLI's credentials file
    for (const x of h.external || []) this.external[x.source] = x.path;
  }

  // The pair in the credentials file of entry e's own CLI, or null.
  readExternal(e) {
    const p = this.external[e.source];
    const keys = EXTERNAL_KEYS[e.source];
    if (!p || !keys) return null;
    try {
      const o = JSON.parse(fs.readFileSync(p))[keys[0]];
      return o && o[keys[1]] && o[keys[2]]
        ? { access: o[keys[1]], refresh: o[keys[2]], expires: o[keys[3]] || null }
        : null;
    } catch (_) {
      return null;
    }
  }

  // After a rotation, the other CLI's file gets the new pair too (its other fields kept).
  writeExternal(e) {
    const p = this.external[e.source];
    const keys = EXTERNAL_KEYS[e.source];
    if (!p || !keys) return;
    let doc = {};
    try {
      doc = JSON.parse(fs.readFileSync(p));
    } catch (_) {}
    if (!doc || typeof doc !== 'object') doc = {};
    const o = (doc[keys[0]] = Object.assign({}, doc[keys[0]]));
    o[keys[1]] = e.access_token;
    o[keys[2]] = e.refresh_token;
    o[keys[3]] = e.expires_at_ms;
    this.put(p, Buffer.from(JSON.stringify(doc, null, 2) + '\n'));
  }

  // Under the lock: adopt the pairs other CLIs rotated to; true if an entry changed.
  syncExternal() {
    let changed = false;
    for (const e of this.entries()) {
      const c = this.readExternal(e);
      if (c && c.refresh !== e.refresh_token) {
        Object.assign(e, {
          access_token: c.access,
          refresh_token: c.refresh,
          expires_at_ms: c.expires,
          last_status: null,
          last_status_at: null,
          last_error_code: null,
          last_error_reason: null,
          last_error_reset_at: null,
        });
        changed = true;
      }
    }
    return changed;
  }

  // A whole file by temp file, fsync and rename.
  put(p, data) {
    const tmp = p + '.' + process.pid + '.tmp';
    const fd = fs.openSync(tmp, 'w', 0o600);
    fs.writeSync(fd, data);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fs.renameSync(tmp, p);
  }

  entries() {
    const pool = (this.doc.credential_pool = this.doc.credential_pool || {});
    return (pool[this.provider] = pool[this.provider] || []);
  }

  read() {
    return JSON.parse(fs.readFileSync(this.store));
  }

  load() {
    this.doc = this.read();
  }

  write() {
    const data = Buffer.from(JSON.stringify(this.doc, null, 2) + '\n');
    if (FIXED) {
      this.put(this.store, data);
      return;
    }
    const fd = fs.openSync(this.store, 'w', 0o600); // the bug: in place, in chunks
    try {
      for (let i = 0; i < data.length; i += this.chunk) {
        fs.writeSync(fd, data, i, Math.min(this.chunk, data.length - i));
      }
    } finally {
      fs.closeSync(fd);
    }
  }

  async locked(body) {
    if (!FIXED) return body();
    for (;;) {
      try {
        fs.closeSync(fs.openSync(this.lockPath, 'wx', 0o600));
        break;
      } catch (e) {
        if (e.code !== 'EEXIST') throw e;
        await sleep(2);
      }
    }
    try {
      return await body();
    } finally {
      fs.unlinkSync(this.lockPath);
    }
  }

  request(method, p, body, headers) {
    return new Promise((resolve, reject) => {
      const req = http.request(
        {
          host: this.issuer.hostname,
          port: this.issuer.port,
          method,
          path: p,
          agent: false,
          headers: Object.assign({ 'X-Poolcheck-Proc': this.proc }, headers),
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (c) => (text += c));
          res.on('end', () => resolve({ status: res.statusCode, text }));
        }
      );
      req.on('error', reject);
      if (body) req.write(body);
      req.end();
    });
  }

  async redeem(e) {
    const body = 'grant_type=refresh_token&refresh_token=' + encodeURIComponent(e.refresh_token);
    const r = await this.request('POST', '/oauth/token', body, {
      'Content-Type': 'application/x-www-form-urlencoded',
      'Content-Length': Buffer.byteLength(body),
    });
    return r.status === 200 ? JSON.parse(r.text) : null;
  }

  mark(e, status, code, reason) {
    e.last_status = status;
    e.last_status_at = Date.now();
    e.last_error_code = code;
    e.last_error_reason = reason;
  }

  async refresh(e) {
    if (FIXED) {
      // Under the lock: a peer may have rotated it already.
      const disk = this.read().credential_pool[this.provider] || [];
      const d = disk.find((x) => x.id === e.id);
      if (d && d.refresh_token && d.refresh_token !== e.refresh_token) {
        Object.assign(e, {
          access_token: d.access_token,
          refresh_token: d.refresh_token,
          expires_at_ms: d.expires_at_ms,
          last_status: d.last_status,
        });
        if (!this.expiring(e)) return true;
      }
    }
    const grant = await this.redeem(e);
    if (grant) {
      e.access_token = grant.access_token;
      e.refresh_token = grant.refresh_token;
      e.expires_at_ms = Date.now() + grant.expires_in * 1000;
      e.last_status = null;
      if (FIXED) this.writeExternal(e);
    } else {
      this.mark(e, FIXED ? 'dead' : 'exhausted', 400, 'invalid_grant');
    }
    this.write();
    return !!grant;
  }

  expiring(e) {
    return e.auth_type === 'oauth' && (e.expires_at_ms || 0) <= Date.now() + this.margin;
  }

  async select() {
    return this.locked(async () => {
      if (FIXED) {
        this.load();
        if (this.syncExternal()) this.write();
      }
      const now = Date.now();
      const sorted = [...this.entries()].sort((a, b) => (a.priority || 0) - (b.priority || 0));
      for (const e of sorted) {
        if (e.last_status === 'dead') continue;
        if (e.last_status === 'exhausted') {
          const until = e.last_error_reset_at
            ? e.last_error_reset_at
            : (e.last_status_at || 0) + this.cooldown;
          if (until > now) continue;
        }
        if (this.expiring(e) && !(await this.refresh(e))) continue;
        e.request_count = (e.request_count || 0) + 1;
        return e;
      }
      return null;
    });
  }
}

function chosen(e) {
  return e
    ? { ok: true, credential_id: e.id, access: e.access_token ? tag(e.access_token) : null }
    : { ok: true, credential_id: null };
}

async function handle(pool, req) {
  switch (req.op) {
    case 'load_pool':
      try {
        pool.load();
      } catch (e) {
        return { ok: false, read_failed: true, error: String(e.message || e) };
      }
      return { ok: true };
    case 'select':
      return chosen(await pool.select());
    case 'use': {
      const e = pool.entries().find((x) => x.id === req.credential_id);
      const r = await pool.request('GET', '/v1/use', null, {
        Authorization: 'Bearer ' + ((e && e.access_token) || ''),
      });
      const out = { ok: r.status === 200, status: r.status };
      if (r.status === 429) {
        try {
          out.reset_at_ms = JSON.parse(r.text).reset_at_ms;
        } catch (_) {}
      }
      return out;
    }
    case 'mark_exhausted': {
      const e = pool.entries().find((x) => x.id === req.credential_id);
      if (e) {
        pool.mark(e, 'exhausted', req.code, req.reason);
        if (req.reset_at_ms) e.last_error_reset_at = req.reset_at_ms;
        pool.write();
      }
      return chosen(await pool.select());
    }
    case 'add_entry': {
      const id = crypto.randomBytes(3).toString('hex');
      const es = pool.entries();
      es.push({
        id,
        label: req.label,
        auth_type: req.auth_type,
        priority: es.length,
        source: req.source,
        access_token: req.access_token,
        refresh_token: null,
        expires_at_ms: null,
        request_count: 0,
        last_status: null,
      });
      pool.write();
      return { ok: true, credential_id: id };
    }
    default:
      return { ok: false, error: 'unknown op ' + req.op };
  }
}

async function main() {
  const rl = readline.createInterface({ input: process.stdin, terminal: false });
  const send = (m) => process.stdout.write(JSON.stringify(m) + '\n');
  let pool = null;
  for await (const line of rl) {
    if (!line.trim()) continue;
    const msg = JSON.parse(line);
    if (pool === null) {
      if (msg.protocol !== PROTOCOL) {
        send({ protocol: PROTOCOL, ok: false, error: 'unsupported protocol' });
        process.exit(2);
      }
      pool = new Pool(msg.hello);
      send({ protocol: PROTOCOL, ok: true, subject: 'node-pool', mode: FIXED ? 'fixed' : 'in-place' });
      continue;
    }
    let reply;
    try {
      reply = await handle(pool, msg);
    } catch (e) {
      reply = { ok: false, error: String(e.message || e) };
    }
    send(reply);
  }
}

main();
