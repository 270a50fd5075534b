// What a command needs to know whether it uses a backend at all, without loading the Redis
// client: `ferry run` without --backend never loads ioredis or BullMQ.

/** The backend URL a command uses: `--backend`, else FERRY_BACKEND, else none (one process). */
export function backendUrl(flag: string | undefined, env: Record<string, string | undefined>): string | undefined {
  const url = flag ?? env.FERRY_BACKEND;
  return url === undefined || url.trim() === '' ? undefined : url.trim();
}

/** The URL with its password (and user) masked. */
export function maskUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password !== '') parsed.password = '***';
    return parsed.toString();
  } catch {
    return url.replace(/\/\/[^@/]*@/, '//***@');
  }
}
