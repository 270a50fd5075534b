// The floors of bench/serve.mjs: a minimal node:http server that appends each body to one file
// and answers 202, with an fdatasync per request (`fsync`) or without one (`nosync`). No
// signature, no JSON, no run: what any durable listener pays at least, and what writing costs
// without durability. `node bench/serve-floor.mjs fsync|nosync FILE` prints its URL.
import { open } from 'node:fs/promises';
import { createServer } from 'node:http';

const [mode, file] = process.argv.slice(2);
if ((mode !== 'fsync' && mode !== 'nosync') || !file) throw new Error('usage: serve-floor.mjs fsync|nosync FILE');
const log = await open(file, 'a', 0o600);
const ok = Buffer.from('{"ok":true}');

const server = createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', async () => {
    chunks.push(Buffer.from('\n'));
    try {
      await log.write(Buffer.concat(chunks));
      if (mode === 'fsync') await log.datasync();
      res.writeHead(202, { 'content-type': 'application/json', 'content-length': ok.length }).end(ok);
    } catch (error) {
      res.writeHead(500).end(String(error));
    }
  });
});
server.listen(0, '127.0.0.1', () => console.error(`listening on http://127.0.0.1:${server.address().port}`));
process.on('SIGTERM', () => server.close(() => log.close().then(() => process.exit(0))));
