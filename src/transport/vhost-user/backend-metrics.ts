/**
 * `vcrypto device --metrics-listen HOST:PORT`: Prometheus text exposition at GET /metrics (prom-client),
 * served by the main thread from the statistics blocks the connection workers write into shared
 * memory: a scrape never talks to a worker, so it never blocks or slows a data path.
 *
 * Series:
 *   vcrypto_connection_<stat>{connection="3",pid="4242"}  per live connection (pid: SO_PEERCRED)
 *   vcrypto_<stat>                                       the device since start (closed connections too)
 *   vcrypto_connections, vcrypto_connections_refused_total, and prom-client's process_* metrics
 * <stat> is a device-stats.ts name with '-' as '_' (QEMU's sym-encrypt-ops ->
 * vcrypto_sym_encrypt_ops_total); counters end in _total. Only GET (and HEAD) /metrics answer 200;
 * other paths 404, other methods 405.
 */
import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { STAT_DEFINITIONS, type StatsSnapshot } from '../../device/device-stats.js';
import type { ConnectionInfo } from './backend-server.js';

/** What the metrics endpoint reads. */
export interface MetricsSource {
  connections(): ConnectionInfo[];
  totals(): StatsSnapshot;
  readonly connectionCount: number;
  readonly refusedConnections: number;
}

/** The Prometheus name of a statistic. */
export function metricName(stat: string, perConnection: boolean, type: 'counter' | 'gauge'): string {
  const base = `vcrypto_${perConnection ? 'connection_' : ''}${stat.replace(/-/g, '_')}`;
  return type === 'counter' ? `${base}_total` : base;
}

export function createMetricsRegistry(source: MetricsSource): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  for (const d of STAT_DEFINITIONS) {
    const name = d.name;
    const perConnection = {
      name: metricName(name, true, d.type),
      help: `${d.help} (per live connection)`,
      labelNames: ['connection', 'pid'] as const,
      registers: [registry],
    };
    const device = { name: metricName(name, false, d.type), help: `${d.help} (the device since start)`, registers: [registry] };
    if (d.type === 'counter') {
      new Counter({
        ...perConnection,
        collect() {
          this.reset();
          for (const c of source.connections()) this.inc({ connection: String(c.id), pid: c.pid === undefined ? '' : String(c.pid) }, c.stats[name]);
        },
      });
      new Counter({
        ...device,
        collect() {
          this.reset();
          this.inc(source.totals()[name]);
        },
      });
    } else {
      new Gauge({
        ...perConnection,
        collect() {
          this.reset();
          for (const c of source.connections()) this.set({ connection: String(c.id), pid: c.pid === undefined ? '' : String(c.pid) }, c.stats[name]);
        },
      });
      new Gauge({
        ...device,
        collect() {
          this.set(source.totals()[name]);
        },
      });
    }
  }
  new Gauge({
    name: 'vcrypto_connections',
    help: 'live vhost-user connections',
    registers: [registry],
    collect() {
      this.set(source.connectionCount);
    },
  });
  new Counter({
    name: 'vcrypto_connections_refused_total',
    help: 'connections refused over --max-connections',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(source.refusedConnections);
    },
  });
  return registry;
}

/** HOST:PORT, [v6]:PORT or PORT (host 127.0.0.1). Throws RangeError with the reason. */
export function parseListenAddress(text: string): { host: string; port: number } {
  const m = /^(?:(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):)?(\d{1,5})$/.exec(text);
  const port = m === null ? NaN : Number(m[2]);
  if (m === null || port > 65535) throw new RangeError(`expected HOST:PORT (e.g. 127.0.0.1:9464), got '${text}'`);
  const host = m[1] === undefined ? '127.0.0.1' : m[1].replace(/^\[(.*)\]$/, '$1');
  return { host, port };
}

/** Starts the endpoint; resolves once listening (with the bound port: PORT 0 picks one). */
export async function startMetricsServer(source: MetricsSource, host: string, port: number): Promise<{ server: Server; port: number; close(): Promise<void> }> {
  const registry = createMetricsRegistry(source);
  const server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: only GET /metrics\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { 'content-type': 'text/plain', allow: 'GET, HEAD' }).end('method not allowed: only GET /metrics\n');
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(req.method === 'HEAD' ? undefined : text),
      (err: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics failed: ${(err as Error).message}\n`),
    );
  });
  // A scraper that connects and sends nothing must not hold a socket forever.
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  const bound = typeof address === 'object' && address !== null ? address.port : port;
  return {
    server,
    port: bound,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
