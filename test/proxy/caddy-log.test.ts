/**
 * Reading Caddy's `tls.obtain` log lines: the latest event per name since a time, the CA's retry
 * time in both wordings (RFC 3339, Let's Encrypt's "UTC"), and classes an operator acts on.
 */
import { describeObtainEvent, latestObtainEvent, retryAfterOf } from '../../src/proxy/caddy-log';

const at = (iso: string) => Date.parse(iso) / 1000;
const line = (iso: string, o: Record<string, unknown>) => JSON.stringify({ level: 'info', ts: at(iso), logger: 'tls.obtain', ...o });

const rateLimited = (iso: string, name: string, until: string) => [
  line(iso, { msg: 'obtaining certificate', identifier: name }),
  line(iso, {
    level: 'error',
    msg: 'could not get certificate from issuer',
    identifier: name,
    issuer: '198.18.0.1-14443-dir',
    error: `HTTP 429 urn:ietf:params:acme:error:rateLimited - too many certificates already issued: retry after ${until}`,
  }),
  line(iso, { level: 'error', msg: 'will retry', error: `[${name}] Obtain: [${name}] HTTP 429 urn:ietf:params:acme:error:rateLimited - retry after ${until}`, attempt: 1, retrying_in: 60 }),
];

test('the retry time in either wording', () => {
  expect(new Date(retryAfterOf('too many certificates: retry after 2026-11-29T18:00:05Z')!).toISOString()).toBe('2026-11-29T18:00:05.000Z');
  expect(new Date(retryAfterOf('too many certificates (5) already issued: retry after 2026-11-29 18:00:05 UTC: see https://letsencrypt.org/docs/rate-limits/')!).toISOString()).toBe(
    '2026-11-29T18:00:05.000Z',
  );
  expect(new Date(retryAfterOf('retry after 2026-11-29T19:00:05+01:00')!).toISOString()).toBe('2026-11-29T18:00:05.000Z');
  expect(retryAfterOf('rateLimited, no time given')).toBeUndefined();
});

test('a rate limit gives the CA retry time; a later success wins; other names and older lines do not count', () => {
  const log = [
    'not json: a truncated first line of the tail',
    ...rateLimited('2026-11-29T17:00:00Z', 'chat.example.test', '2026-11-29T18:00:00Z'),
    ...rateLimited('2026-11-29T17:00:01Z', 'other.example.test', '2026-11-29T19:00:00Z'),
    JSON.stringify({ level: 'info', ts: at('2026-11-29T17:00:02Z'), logger: 'http.log.access', msg: 'handled request' }),
  ].join('\n');
  expect(latestObtainEvent(log, 'chat.example.test')).toMatchObject({ kind: 'rate-limited', retryAt: '2026-11-29T18:00:00.000Z', at: '2026-11-29T17:00:00.000Z' });
  expect(latestObtainEvent(log, 'other.example.test')).toMatchObject({ kind: 'rate-limited', retryAt: '2026-11-29T19:00:00.000Z' });
  // Lines before the last retry Caddy was made to do are stale.
  expect(latestObtainEvent(log, 'chat.example.test', Date.parse('2026-11-29T17:00:00.500Z'))).toBeUndefined();
  const later = `${log}\n${line('2026-11-29T18:00:01Z', { msg: 'obtaining certificate', identifier: 'chat.example.test' })}\n${line('2026-11-29T18:00:02Z', { msg: 'certificate obtained successfully', identifier: 'chat.example.test' })}`;
  expect(latestObtainEvent(later, 'chat.example.test')).toEqual({ kind: 'obtained', at: '2026-11-29T18:00:02.000Z' });
  // A new attempt under way: the older rate limit no longer holds.
  const trying = `${log}\n${line('2026-11-29T18:00:01Z', { msg: 'obtaining certificate', identifier: 'chat.example.test' })}`;
  expect(latestObtainEvent(trying, 'chat.example.test')).toEqual({ kind: 'trying', at: '2026-11-29T18:00:01.000Z' });
});

test("without a time in the CA's message, Caddy's own next attempt is the retry time", () => {
  const log = [
    line('2026-11-29T17:00:00Z', { level: 'error', msg: 'could not get certificate from issuer', identifier: 'a.example.test', error: 'HTTP 429 urn:ietf:params:acme:error:rateLimited - slow down' }),
    line('2026-11-29T17:00:00Z', { level: 'error', msg: 'will retry', error: '[a.example.test] Obtain: HTTP 429 urn:ietf:params:acme:error:rateLimited - slow down', attempt: 2, retrying_in: 120 }),
  ].join('\n');
  expect(latestObtainEvent(log, 'a.example.test')).toMatchObject({ kind: 'rate-limited', retryAt: '2026-11-29T17:02:00.000Z' });
});

test('validation failures (DNS not pointing here) and other ACME errors are told apart', () => {
  const validation = line('2026-11-29T17:00:00Z', {
    level: 'error',
    msg: 'could not get certificate from issuer',
    identifier: 'b.example.test',
    error: 'HTTP 400 urn:ietf:params:acme:error:connection - Connection refused: 198.18.0.1:80',
  });
  const other = line('2026-11-29T17:00:00Z', { level: 'error', msg: 'could not get certificate from issuer', identifier: 'c.example.test', error: 'HTTP 500 urn:ietf:params:acme:error:serverInternal - boom' });
  const v = latestObtainEvent(validation, 'b.example.test');
  expect(v).toMatchObject({ kind: 'validation' });
  expect(describeObtainEvent('b.example.test', v)).toMatch(/DNS not pointing here yet/);
  expect(latestObtainEvent(other, 'c.example.test')).toMatchObject({ kind: 'acme-error', detail: expect.stringContaining('serverInternal') });
  expect(describeObtainEvent('d.example.test', undefined)).toBe('d.example.test: Caddy has logged no attempt yet');
});
