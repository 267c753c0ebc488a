import { describe, expect, it } from 'vitest';
import { EtcdAuthRequiredError, EtcdUnreachableError, LinkEtcdError } from '../../src/errors.js';
import { classifyReason, cleanGrpcDetail, toLinkError } from '../../src/middleware/connection.js';
import { flattenTree, type TreeInput } from '../../src/middleware/tree.js';

function refusal(value: unknown): LinkEtcdError {
  try {
    flattenTree('/x', value as TreeInput);
  } catch (error) {
    expect(error).toBeInstanceOf(LinkEtcdError);
    return error as LinkEtcdError;
  }
  throw new Error('flattenTree accepted the value');
}

describe('tree codec: nothing is lost or refused without saying so', () => {
  it('refuses an empty dict or list, at the top or nested, naming the key', () => {
    expect(refusal({}).code).toBe('BAD_VALUE');
    expect(refusal({}).message).toMatch(/empty dict at `\/x`.*no directories/);
    expect(refusal([]).message).toMatch(/empty list at `\/x`/);
    expect(refusal({ a: '1', b: { c: {} } }).message).toMatch(/empty dict at `\/x\/b\/c`/);
    expect(refusal({ a: [[]] }).message).toMatch(/empty list at `\/x\/a\/1`/);
  });

  it('refuses null and undefined as a BAD_VALUE LinkEtcdError, not a TypeError', () => {
    expect(refusal(null).code).toBe('BAD_VALUE');
    expect(refusal(null).message).toMatch(/null at `\/x`/);
    expect(refusal({ a: undefined }).code).toBe('BAD_VALUE');
    expect(refusal({ a: undefined }).message).toMatch(/undefined at `\/x\/a`/);
  });

  it('still writes ordinary trees', () => {
    expect([...flattenTree('/x', { a: ['1', 2], b: true })]).toEqual([
      ['/x/a/1', '1'],
      ['/x/a/2', '2'],
      ['/x/b', 'true'],
    ]);
  });
});

describe('etcd messages', () => {
  it('maps "user name is empty" (auth on, no credentials) to ETCD_AUTH with what to set', () => {
    const error = toLinkError(new Error('etcdserver: user name is empty'), ['localhost:2379']);
    expect(error).toBeInstanceOf(EtcdAuthRequiredError);
    expect(error.code).toBe('ETCD_AUTH');
    expect(error.message).toMatch(/set username and password in middleware\.conf/);
    expect(classifyReason('etcdserver: user name is empty').code).toBe('ETCD_AUTH');
  });

  it('drops gRPC noise from an unreachable etcd', () => {
    const raw =
      '14 UNAVAILABLE: No connection established. Last error: connect ECONNREFUSED 127.0.0.1:4001 (2026-11-30T01:00:00.000Z). Resolution note: ';
    expect(cleanGrpcDetail(raw)).toBe('connect ECONNREFUSED 127.0.0.1:4001');
    expect(cleanGrpcDetail('14 UNAVAILABLE: x (Resolution note: )')).toBe('x');
  });

  it("names the middleware.conf read, or says none was found, and etcd's own port 2379", () => {
    const none = new EtcdUnreachableError(
      ['localhost:4001'],
      'connect ECONNREFUSED',
      'defaults (no /h/etc/link/etcd/middleware.conf)',
    );
    expect(none.code).toBe('ETCD_UNAVAILABLE');
    expect(none.message).toContain('etcd at localhost:4001 is unreachable (connect ECONNREFUSED)');
    expect(none.message).toContain(
      'no middleware.conf at /h/etc/link/etcd/middleware.conf: using the defaults, port 4001',
    );
    expect(none.message).toContain('2379');
    const file = new EtcdUnreachableError(['h:1'], 'x', '/h/etc/link/etcd/middleware.conf');
    expect(file.message).toContain('settings from /h/etc/link/etcd/middleware.conf');
    expect(file.message).not.toContain('Resolution note');
  });
});
