import t from 'tap';
import { buildConfig } from './options.js';

t.test('defaults serve chargers out of the box', async (t) => {
  const c = buildConfig({}, {});
  t.equal(c.server.port, 9000);
  t.equal(c.server.path, '/ocpp');
  t.equal(c.security.unknownChargers, 'register');
  t.equal(c.redis.url, undefined);
  t.same(c.plugins, [{ name: 'core' }]);
  t.match(c.nodeId, /-\d+$/);
});

t.test('environment overrides the file, with coercion', async (t) => {
  const c = buildConfig(
    { server: { port: 1 }, redis: { url: 'redis://a:1' } },
    {
      OCR_SERVER_PORT: '9100',
      OCR_SECURITY_REQUIRE_AUTH: 'true',
      OCR_SERVER_PROTOCOLS: 'ocpp1.6,ocpp2.0.1',
      OCR_CLICKHOUSE_URL: 'http://ch:8123',
    },
  );
  t.equal(c.server.port, 9100);
  t.equal(c.security.requireAuth, true);
  t.same(c.server.protocols, ['ocpp1.6', 'ocpp2.0.1']);
  t.equal(c.redis.url, 'redis://a:1');
  t.equal(c.clickhouse.url, 'http://ch:8123');
  t.equal(buildConfig({}, { OCR_REDIS_URL: '' }).redis.url, undefined, 'empty means unset');
  t.throws(() => buildConfig({ processes: 2 }, {}), {
    code: 'OCR_ERR_CONFIG_INVALID',
    message: /processes > 1 needs redis\.url/,
  });
});

t.test('analytics.spoolMaxBytes: 1 GiB by default, set in bytes, bounded below', async (t) => {
  t.equal(buildConfig({}, {}).analytics.spoolMaxBytes, 1024 ** 3);
  t.equal(
    buildConfig({}, { OCR_ANALYTICS_SPOOL_MAX_BYTES: '21474836480' }).analytics.spoolMaxBytes,
    20 * 1024 ** 3,
    'beyond 32 bits, from the environment',
  );
  t.throws(() => buildConfig({ analytics: { spoolMaxBytes: 1000 } }, {}), {
    code: 'OCR_ERR_CONFIG_INVALID',
    message: /analytics\.spoolMaxBytes must be >= 65536/,
  });
  t.throws(() => buildConfig({}, { OCR_ANALYTICS_SPOOL_MAX_BYTES: '1GiB' }), {
    message: /analytics\.spoolMaxBytes must be integer \(from OCR_ANALYTICS_SPOOL_MAX_BYTES\)/,
  });
});

t.test('errors name the key (and the env variable)', async (t) => {
  t.throws(() => buildConfig({ server: { port: 70000 } }, {}), {
    code: 'OCR_ERR_CONFIG_INVALID',
    message: /server\.port must be <= 65535/,
  });
  t.throws(() => buildConfig({ servr: {} }, {}), { message: /servr is not a known key/ });
  t.throws(() => buildConfig({}, { OCR_SECURITY_UNKNOWN_CHARGERS: 'maybe' }), {
    message: /security\.unknownChargers must be one of register, reject \(from OCR_SECURITY_UNKNOWN_CHARGERS\)/,
  });
  t.throws(() => buildConfig({ redis: { url: 'localhost:6379' } }, {}), { message: /redis\.url must match pattern/ });
  t.throws(() => buildConfig({ plugins: [{ options: {} }] }, {}), {
    message: /plugins\.0 must have required property 'name'/,
  });
  t.throws(() => buildConfig({ pool: { inline: { maxLoad: 2 } } }, {}), {
    message: /pool\.inline\.maxLoad must be <= 1/,
  });
  t.throws(() => buildConfig({ pool: { inline: { minOffload: -1 } } }, {}), {
    message: /pool\.inline\.minOffload must be >= 0/,
  });
  t.equal(buildConfig({}, { OCR_POOL_INLINE_MIN_OFFLOAD: '0' }).pool.inline.minOffload, 0, 'from the environment');
  t.throws(() => buildConfig({}, { OCR_POOL_INLINE_MAX_BATCH: '0' }), {
    message: /pool\.inline\.maxBatch must be >= 1 \(from OCR_POOL_INLINE_MAX_BATCH\)/,
  });
  t.equal(
    buildConfig({}, { OCR_POOL_INLINE_ENABLED: 'false' }).pool.inline.enabled,
    false,
    'inline batches can be turned off from the environment',
  );
  t.same(buildConfig({}, {}).pool.inline, { enabled: true, maxBatch: 64, maxLoad: 0.5, minOffload: 32 }, 'defaults');
});
