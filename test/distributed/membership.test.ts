// The membership state machine: the only place that assigns ranks, with typed refusals.
import { status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { JoinRefusal, Membership } from '../../src/coordinator/membership.js';
import type { JoinRequest } from '../../src/gen/tfjs_ddp/v1/coordinator.js';

const rules = {
  worldSize: 2,
  protocolVersion: 1,
  modelName: 'lenet5',
  architecture: 'arch',
};

function request(fields: Partial<JoinRequest> = {}): JoinRequest {
  return {
    protocolVersion: 1,
    modelName: 'lenet5',
    architectureFingerprint: 'arch',
    peerAddress: 'h:1',
    device: undefined,
    workerId: 'w0',
    requestedRank: undefined,
    data: undefined,
    heldReducedStep: false,
    ...fields,
  };
}

function refusalOf(f: () => unknown): [string, string] {
  try {
    f();
  } catch (error) {
    expect(error).toBeInstanceOf(JoinRefusal);
    return [status[(error as JoinRefusal).code], (error as Error).message];
  }
  throw new Error('expected a refusal');
}

describe('Membership', () => {
  it('hands out the lowest free rank, or the one asked for, and starts once all are attached', () => {
    const m = new Membership(rules);
    const a = m.admit(request({ workerId: 'a', requestedRank: 1 }));
    const b = m.admit(request({ workerId: 'b' }));
    expect([a.rank, b.rank]).toEqual([1, 0]);
    expect(m.complete).toBe(false);
    m.attach(0, b.sessionId);
    m.attach(1, a.sessionId);
    expect(m.complete).toBe(true);
    expect(m.start().map((x) => x.workerId)).toEqual(['b', 'a']);
    expect(m.state).toBe('running');
  });

  it('issues each admission its own credential, valid while it is admitted', () => {
    const m = new Membership(rules);
    const a = m.admit(request({ workerId: 'a' }));
    const b = m.admit(request({ workerId: 'b' }));
    expect(a.credential).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(a.credential).not.toBe(b.credential);
    expect(m.credentials()).toEqual([a.credential, b.credential]);
    m.attach(a.rank, a.sessionId);
    expect(m.leave(a.rank)).toBe('freed');
    expect(m.credentials()).toEqual([b.credential]);
    const c = m.admit(request({ workerId: 'c' }));
    m.attach(b.rank, b.sessionId);
    m.attach(c.rank, c.sessionId);
    m.start();
    expect(m.credentials()).toEqual([c.credential, b.credential]);
    expect(m.leave(b.rank)).toBe('lost');
    expect(m.credentials()).toEqual([c.credential]);
    m.stop();
    expect(m.credentials()).toEqual([]);
  });

  it('refuses with the promised codes', () => {
    const m = new Membership(rules);
    expect(refusalOf(() => m.admit(request({ protocolVersion: 9 })))[0]).toBe(
      'FAILED_PRECONDITION',
    );
    expect(refusalOf(() => m.admit(request({ modelName: 'vgg16' })))[0]).toBe(
      'FAILED_PRECONDITION',
    );
    expect(refusalOf(() => m.admit(request({ architectureFingerprint: 'other' })))[0]).toBe(
      'FAILED_PRECONDITION',
    );
    expect(refusalOf(() => m.admit(request({ requestedRank: 2 })))[0]).toBe('INVALID_ARGUMENT');
    m.admit(request({ workerId: 'a', requestedRank: 0 }));
    expect(refusalOf(() => m.admit(request({ workerId: 'a' })))[0]).toBe('ALREADY_EXISTS');
    expect(refusalOf(() => m.admit(request({ workerId: 'b', requestedRank: 0 })))).toEqual([
      'ALREADY_EXISTS',
      'rank 0 was asked for, but worker a holds it',
    ]);
    m.admit(request({ workerId: 'b' }));
    expect(refusalOf(() => m.admit(request({ workerId: 'c' })))[0]).toBe('RESOURCE_EXHAUSTED');
  });

  it('takes a worker that names no model (it checks the architecture itself)', () => {
    const m = new Membership(rules);
    expect(m.admit(request({ modelName: '', architectureFingerprint: '' })).rank).toBe(0);
  });

  it('frees a rank whose worker leaves before the start, and loses it after', () => {
    const m = new Membership(rules);
    const a = m.admit(request({ workerId: 'a' }));
    m.attach(0, a.sessionId);
    expect(m.leave(0)).toBe('freed');
    const b = m.admit(request({ workerId: 'b' }));
    expect(b.rank).toBe(0);
    const c = m.admit(request({ workerId: 'c' }));
    m.attach(0, b.sessionId);
    m.attach(1, c.sessionId);
    m.start();
    expect(m.leave(1)).toBe('lost');
  });

  it('frees the rank of a join whose control stream never came', () => {
    const m = new Membership(rules);
    const a = m.admit(request({ workerId: 'a' }));
    expect(m.expire(0, 'not-its-session')).toBe(false);
    expect(m.expire(0, a.sessionId)).toBe(true);
    expect(m.admit(request({ workerId: 'b' })).rank).toBe(0);
  });

  it('refuses control streams for unknown ranks, other sessions and second streams', () => {
    const m = new Membership(rules);
    const a = m.admit(request({ workerId: 'a' }));
    expect(refusalOf(() => m.attach(5, a.sessionId))[0]).toBe('INVALID_ARGUMENT');
    expect(refusalOf(() => m.attach(0, 'x'))[0]).toBe('PERMISSION_DENIED');
    m.attach(0, a.sessionId);
    expect(refusalOf(() => m.attach(0, a.sessionId))[0]).toBe('ALREADY_EXISTS');
  });

  it('admits joins into a running job up to maxWorkers, and frees a lost rank for its replacement', () => {
    const m = new Membership({ ...rules, maxWorkers: 3 });
    const a = m.admit(request({ workerId: 'a' }));
    const b = m.admit(request({ workerId: 'b' }));
    // The first world is worldSize: a third waits for the run to start.
    expect(refusalOf(() => m.admit(request({ workerId: 'c' })))[0]).toBe('RESOURCE_EXHAUSTED');
    m.attach(a.rank, a.sessionId);
    m.attach(b.rank, b.sessionId);
    m.start();
    const c = m.admit(request({ workerId: 'c' }));
    expect(c.rank).toBe(2);
    // Admitted into a running job, it may open its Control stream with its credential.
    expect(m.credentials()).toContain(c.credential);
    expect(refusalOf(() => m.admit(request({ workerId: 'd' })))).toEqual([
      'RESOURCE_EXHAUSTED',
      'the world is full: all 3 ranks are taken (--max-workers) and the run has started',
    ]);
    expect(m.leave(b.rank)).toBe('lost');
    expect(m.credentials()).not.toContain(b.credential);
    // A replacement asking for the lost rank (a Kubernetes completion index) gets it.
    expect(m.admit(request({ workerId: 'b2', requestedRank: b.rank })).rank).toBe(b.rank);
  });
});
