import { connect, createServer, type Socket } from 'node:net';

export interface TcpProxy {
  readonly host: string;
  readonly port: number;
  readonly endpoint: string;
  /** Destroys every open connection (both sides) and every new one on accept, until unblock(). */
  block(): void;
  unblock(): void;
  close(): Promise<void>;
  /** Open client connections. */
  readonly connections: number;
}

/** Loopback TCP forwarder to simulate a client-side network partition by cutting connections. */
export async function startProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  const pairs = new Set<[Socket, Socket]>();
  let blocked = false;

  const server = createServer((client) => {
    client.on('error', () => {});
    if (blocked) {
      client.destroy();
      return;
    }
    const upstream = connect(target.port, target.host);
    upstream.on('error', () => {});
    const pair: [Socket, Socket] = [client, upstream];
    pairs.add(pair);
    // Half-open connections would keep a client hanging instead of seeing the failure.
    const teardown = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('close', teardown);
    upstream.on('close', teardown);
    client.pipe(upstream);
    upstream.pipe(client);
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  if (typeof address !== 'object' || !address) throw new Error('proxy: no address');
  const { port } = address;

  const cutAll = () => {
    for (const [client, upstream] of pairs) {
      client.destroy();
      upstream.destroy();
    }
    pairs.clear();
  };

  return {
    host: '127.0.0.1',
    port,
    endpoint: `127.0.0.1:${port}`,
    block() {
      blocked = true;
      cutAll();
    },
    unblock() {
      blocked = false;
    },
    close() {
      blocked = true;
      cutAll();
      return new Promise((resolve) => server.close(() => resolve()));
    },
    get connections() {
      return pairs.size;
    },
  };
}
