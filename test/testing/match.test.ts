import { describe, expect, it } from 'vitest';
import { formatPath, matchList, mismatches } from '../../src/testing/match.js';

describe('partial matching', () => {
  it.each([
    ['a mapping ignores keys it does not list', { a: 1 }, { a: 1, b: 2 }, []],
    ['a listed key must be present', { a: 1, c: 3 }, { a: 1 }, [{ path: ['c'], message: 'missing; expected 3' }]],
    ['nested values are compared where they differ', { body: { events: [{ user_id: 'u_2' }] } }, { body: { events: [{ user_id: 'u_1', x: 1 }] } }, [{ path: ['body', 'events', 0, 'user_id'], message: 'expected "u_2", got "u_1"' }]],
    ['lists must have the same length', [1, 2], [1, 2, 3], [{ path: [], message: 'expected a list of 2, got a list of 3: [1,2,3]' }]],
    ['scalars are compared strictly', { count: 3 }, { count: '3' }, [{ path: ['count'], message: 'expected 3, got "3"' }]],
    ['null matches only null', { error: null }, { error: { step: 'a' } }, [{ path: ['error'], message: 'expected null, got {"step":"a"}' }]],
  ])('%s', (_title, expected, actual, found) => {
    expect(mismatches(expected, actual)).toEqual(found);
  });

  it('writes paths the way a reader writes them', () => {
    expect(formatPath(['body', 'events', 0, 'user_id'])).toBe('body.events[0].user_id');
    expect(formatPath([2, 'a'])).toBe('[2].a');
  });
});

describe('matching a list of expectations', () => {
  const received = [{ path: '/identify', status: 429 }, { path: '/identify', status: 200 }, { path: '/2/httpapi', status: 200 }];

  it('in sequence, lets other items come between the expected ones', () => {
    expect(matchList([{ status: 429 }, { path: '/2/httpapi' }], received, 'sequence')).toEqual([]);
  });

  it('in sequence, reports an item that only matches before the previous match', () => {
    expect(matchList([{ path: '/2/httpapi' }, { status: 429 }], received, 'sequence')).toEqual([{ kind: 'order', index: 1, matchedAt: 0, after: 2 }]);
  });

  it('as a set, accepts any order', () => {
    expect(matchList([{ path: '/2/httpapi' }, { status: 429 }], received, 'set')).toEqual([]);
  });

  it('as a set, gives each expectation its own item, moving earlier choices when needed', () => {
    // `{ path: /identify }` could take item 1 or 2; the second expectation fits only item 1.
    expect(matchList([{ path: '/identify' }, { status: 429 }], received, 'set')).toEqual([]);
    expect(matchList([{ path: '/identify' }, { path: '/identify' }, { path: '/identify' }], received, 'set')).toEqual([{ kind: 'taken', index: 2, candidates: [0, 1] }]);
  });

  it('names the closest received item and how it differs when nothing matches', () => {
    const [failure] = matchList([{ path: '/identify', status: 500 }], received, 'set');
    expect(failure).toEqual({ kind: 'missing', index: 0, closest: { at: 0, mismatches: [{ path: ['status'], message: 'expected 500, got 429' }] } });
  });
});
