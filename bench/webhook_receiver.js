// A keep-alive webhook receiver for bench/http_sink.sh: answers 200 at
// once, counts the requests, and for payloads with "t" (the sender's
// clock_timestamp() in epoch milliseconds) records commit-to-request
// latency.  On SIGTERM (or a GET /stats) prints
// "requests N p50_ms X p99_ms Y" and resets the latency samples.
'use strict';
const http = require('http');
const fs = require('fs');

let requests = 0;
let samples = [];

function stats() {
  const s = samples.slice().sort((a, b) => a - b);
  const pct = (p) => (s.length ? s[Math.min(s.length - 1, Math.floor(p * s.length))].toFixed(1) : 'n/a');
  return `requests ${requests} p50_ms ${pct(0.5)} p99_ms ${pct(0.99)} samples ${s.length}`;
}

const server = http.createServer({ keepAliveTimeout: 60000 }, (req, res) => {
  if (req.method === 'GET') {
    res.end(stats() + '\n');
    samples = [];
    return;
  }
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    requests++;
    const body = Buffer.concat(chunks).toString();
    if (body.includes('"t"')) {
      try {
        const t = JSON.parse(body).t;
        if (t) samples.push(Date.now() - t);
      } catch (e) { /* not ours */ }
    }
    res.writeHead(200, { 'Content-Length': 0 });
    res.end();
  });
});
server.listen(0, '127.0.0.1', () => {
  fs.writeFileSync(process.argv[2], String(server.address().port));
});
process.on('SIGTERM', () => { console.log(stats()); process.exit(0); });
