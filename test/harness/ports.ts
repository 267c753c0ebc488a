import { createServer } from 'node:net';

/**
 * A port that was free a moment ago. Racy by nature (someone may grab it before the caller binds),
 * so callers that bind must be ready to retry with a fresh one.
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address
          ? resolve(address.port)
          : reject(new Error('freePort: no address')),
      );
    });
  });
}
