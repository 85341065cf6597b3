/**
 * `vcrypto stats` parsing and layout, on Prometheus text exposition written by hand (format 0.0.4:
 * `name{label="value",...} value [timestamp]`, '#' comments, escaped label values).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parsePrometheusText, statsTable, renderTable } from '../../src/cli/commands/stats.js';

const TEXT = [
  '# HELP vcrypto_hash_ops_total hash requests (the device since start)',
  '# TYPE vcrypto_hash_ops_total counter',
  'vcrypto_hash_ops_total 7',
  'vcrypto_connection_hash_ops_total{connection="12",pid="4242"} 5',
  'vcrypto_connection_hash_ops_total{connection="3",pid="77"} 2 1700000000000',
  'vcrypto_sessions_open 1',
  'vcrypto_connection_sessions_open{connection="3",pid="77"} 1',
  'other_metric{path="a\\"b\\\\c"} +Inf',
  '',
].join('\n');

describe('vcrypto stats', () => {
  it('parses samples, labels (with escapes), timestamps and +Inf', () => {
    const s = parsePrometheusText(TEXT);
    assert.equal(s.length, 6);
    assert.deepEqual(s[2], { name: 'vcrypto_connection_hash_ops_total', labels: { connection: '3', pid: '77' }, value: 2 });
    assert.deepEqual(s[5], { name: 'other_metric', labels: { path: 'a"b\\c' }, value: Infinity });
  });

  it('one row per statistic, device first, connections in id order with their pids', () => {
    const t = statsTable(parsePrometheusText(TEXT));
    assert.deepEqual(t.connections, [
      { id: '3', pid: '77' },
      { id: '12', pid: '4242' },
    ]);
    const hash = t.rows.find((r) => r.stat === 'hash-ops')!;
    assert.deepEqual({ device: hash.device, per: hash.perConnection }, { device: 7, per: [2, 5] });
    const open = t.rows.find((r) => r.stat === 'sessions-open')!;
    assert.deepEqual(open.perConnection, [1, 0]);
    const text = renderTable(t);
    assert.match(text, /^statistic +device +conn 3 pid 77 +conn 12 pid 4242$/m);
    assert.match(text, /^hash-ops +7 +2 +5$/m);
    assert.match(text, /^mac-ops +- +0 +0$/m, 'a series the endpoint does not have');
  });
});
