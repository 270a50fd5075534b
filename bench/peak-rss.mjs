// Preloaded into a measured process (`node --import`): at exit, writes its peak RSS and wall
// time to the file named by FERRY_BENCH_RSS_OUT, so the bench measures the real `ferry` CLI.
import { writeFileSync } from 'node:fs';

const out = process.env.FERRY_BENCH_RSS_OUT;
const t0 = performance.now();
if (out) process.on('exit', () => writeFileSync(out, JSON.stringify({ maxRssMb: process.resourceUsage().maxRSS / 1024, ms: performance.now() - t0 })));
