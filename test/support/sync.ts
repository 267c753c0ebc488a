import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { EtcdMiddleware } from '../../src/middleware/middleware.js';
import { SyncEngine, type SyncOptions } from '../../src/sync/engine.js';
import type { EtcdServer } from '../harness/etcd.js';
import { captureLogger, clientFor } from './client.js';
import { useEtcd } from './lifecycle.js';

export interface SyncFixture {
  readonly confDir: string;
  readonly stateDir: string;
  readonly prefix: string;
  readonly lines: Array<Record<string, unknown>>;
  /** The client the engine writes with (a test may slow it down). */
  readonly middleware: EtcdMiddleware;
  engine: SyncEngine;
  /** Starts (or starts again, on the same conf dir and base) a daemon in this process. */
  start(options?: Partial<SyncOptions>): Promise<SyncEngine>;
  stop(): Promise<void>;
  cleanup(): Promise<void>;
}

let counter = 0;

/** A conf dir, a state dir and a key prefix of its own, so tests share one etcd safely. */
export async function syncFixture(target: { host: string; port: number }): Promise<SyncFixture> {
  const confDir = await mkdtemp(join(tmpdir(), 'link-etcd-sync-conf-'));
  const stateDir = await mkdtemp(join(tmpdir(), 'link-etcd-sync-state-'));
  const prefix = `/t${process.pid}-${counter++}/`;
  const { logger, lines } = captureLogger('info');
  const middleware = clientFor(target, { logger });
  const fixture: SyncFixture = {
    confDir,
    stateDir,
    prefix,
    lines,
    middleware,
    engine: undefined as unknown as SyncEngine,
    async start(options = {}) {
      fixture.engine = new SyncEngine({
        confDir,
        stateDir,
        prefix,
        middleware,
        logger,
        quietMs: 5,
        ...options,
      });
      await fixture.engine.start();
      return fixture.engine;
    },
    async stop() {
      await fixture.engine?.stop();
    },
    async cleanup() {
      await fixture.engine?.stop();
      await middleware.close();
      await rm(confDir, { recursive: true, force: true });
      await rm(stateDir, { recursive: true, force: true });
    },
  };
  return fixture;
}

/**
 * A test file's etcd plus fresh sync fixtures on it, cleaned up after each
 * test. `etcd()` is valid inside tests.
 */
export function useSyncFixtures(): {
  etcd: () => EtcdServer;
  fixture: () => Promise<SyncFixture>;
  defer: (cleanup: () => unknown) => void;
} {
  const { defer, current } = useEtcd(() => {});
  return {
    etcd: current,
    defer,
    fixture: async () => {
      const f = await syncFixture(current());
      defer(() => f.cleanup());
      return f;
    },
  };
}
