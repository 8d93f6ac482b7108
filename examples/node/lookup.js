#!/usr/bin/env node
'use strict';
// lookup.js asks toad for the real client of each connection given as a
// PEER LOCAL pair and prints one JSON line per connection.
//
//   node lookup.js [--addr ADDR] [--wait MS] [--batch] PEER LOCAL [PEER LOCAL...]
//
// With --batch it asks for all of them in one BatchLookup call. A
// connection toad does not know prints {"peer", "local", "error":
// "NOT_FOUND"}; the exit status is 0 when every call completed, 1 otherwise.

const toad = require('./toad');

function usage(msg) {
  console.error(`lookup.js: ${msg}`);
  console.error('usage: node lookup.js [--addr unix:///run/toad/toad.sock] [--wait MS] [--batch] PEER LOCAL [PEER LOCAL...]');
  process.exit(2);
}

function parse(argv) {
  const opts = { addr: 'unix:///run/toad/toad.sock', wait: 0, batch: false, pairs: [] };
  const pos = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--addr') opts.addr = argv[++i];
    else if (a === '--wait') opts.wait = Number(argv[++i]);
    else if (a === '--batch') opts.batch = true;
    else if (a.startsWith('--')) usage(`unknown flag ${a}`);
    else pos.push(a);
  }
  if (!opts.addr) usage('--addr needs a value');
  if (!Number.isInteger(opts.wait) || opts.wait < 0) usage('--wait takes milliseconds');
  if (pos.length === 0 || pos.length % 2 !== 0) usage('want PEER LOCAL pairs');
  for (let i = 0; i < pos.length; i += 2) opts.pairs.push({ peer: pos[i], local: pos[i + 1] });
  return opts;
}

function line(peer, local, conn) {
  return JSON.stringify({
    peer,
    local,
    client: conn.client,
    client_ip: conn.client_ip,
    client_port: conn.client_port,
    dialect: conn.dialect,
    state: conn.state,
  });
}

async function main() {
  const opts = parse(process.argv.slice(2));
  const c = toad.connect(opts.addr);
  let failed = false;
  try {
    if (opts.batch) {
      const results = await c.batchLookup(opts.pairs);
      results.forEach((r, i) => {
        const { peer, local } = opts.pairs[i];
        console.log(r.found ? line(peer, local, r.connection) : JSON.stringify({ peer, local, error: 'NOT_FOUND' }));
      });
    } else {
      for (const { peer, local } of opts.pairs) {
        try {
          console.log(line(peer, local, await c.lookup(peer, local, opts.wait)));
        } catch (err) {
          if (err.code !== toad.status.NOT_FOUND) throw err;
          console.log(JSON.stringify({ peer, local, error: 'NOT_FOUND' }));
        }
      }
    }
  } catch (err) {
    console.error(`lookup.js: ${err.message}`);
    failed = true;
  } finally {
    c.close();
  }
  process.exitCode = failed ? 1 : 0;
}

main();
