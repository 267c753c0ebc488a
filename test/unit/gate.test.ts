import { describe, expect, it } from 'vitest';
import { Gate } from '../../src/middleware/gate.js';

describe('Gate', () => {
  it('never runs more than its limit at once, starts tasks in arrival order and runs them all', async () => {
    const gate = new Gate(2);
    let running = 0;
    let peak = 0;
    const started: number[] = [];
    const tasks = Array.from({ length: 8 }, (_, i) =>
      gate.run(async () => {
        running++;
        peak = Math.max(peak, running);
        started.push(i);
        // Yield a few turns so tasks overlap.
        for (let t = 0; t < 3; t++) await new Promise((r) => setImmediate(r));
        running--;
        return i;
      }),
    );
    expect(await Promise.all(tasks)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(peak).toBe(2);
    expect(started).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
  });

  it('frees the slot when a task fails', async () => {
    const gate = new Gate(1);
    await expect(gate.run(async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(await gate.run(async () => 'next')).toBe('next');
  });
});
