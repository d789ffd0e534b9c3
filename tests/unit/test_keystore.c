/* Unit tests for src/keys/keystore.c and refresher.c on SQLite: the store ops of migration 2
 * (create, revoke idempotent / unknown, load, change stamp, tenants put / delete / list,
 * spent per tenant and key), the usage rows' tenant and key, the spool format with and
 * without them, tenant definitions checked with the config's rules, key parameters, and
 * the refresher publishing keys and tenants (stored tenants overriding the config's). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "budget/budget.h"
#include "config/config.h"
#include "core/arena.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/err.h"
#include "keys/keystore.h"
#include "keys/refresher.h"
#include "ledger/ledger.h"
#include "ledger/store.h"

static char tmpdir_[64];

static const char *tmpurl(char *buf, size_t cap)
{
    snprintf(tmpdir_, sizeof(tmpdir_), "/tmp/cmx-keys-XXXXXX");
    assert_non_null(mkdtemp(tmpdir_));
    snprintf(buf, cap, "sqlite://%s/l.db", tmpdir_);
    return buf;
}

static void rmtmp(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir_);
    assert_int_equal(system(cmd), 0);
}

static struct cmx_key_rec mkkey(const char *id, const char *tenant, int64_t budget)
{
    struct cmx_key_rec k;
    char text[CMX_KEY_TEXT_MAX + 1], junk[CMX_KEY_ID_LEN + 1];
    memset(&k, 0, sizeof(k));
    assert_int_equal(cmx_key_generate(text, k.hash, junk), 0);
    snprintf(k.id, sizeof(k.id), "%s", id);
    snprintf(k.name, sizeof(k.name), "n-%s", id);
    snprintf(k.tenant, sizeof(k.tenant), "%s", tenant);
    k.created_ms = 1000;
    k.expires_ms = -1;
    k.revoked_ms = -1;
    k.rpm = 7;
    k.budget_micros = budget;
    return k;
}

static struct cmx_ledger_rec *mkusage(const char *id, int64_t ts, int64_t revenue,
                                      const char *tenant, const char *key)
{
    char req[64];
    snprintf(req, sizeof(req), "req-%s", id);
    struct cmx_ledger_rec t = {.request_id = req,
                               .ts_ms = ts,
                               .model = "gpt-5",
                               .provider = "oa",
                               .cloud = "openai",
                               .revenue_micros = revenue,
                               .status = 200,
                               .tenant = tenant,
                               .key_id = key};
    snprintf(t.record_id, sizeof(t.record_id), "%s", id);
    struct cmx_ledger_rec *r = cmx_ledger_rec_new(&t, NULL, 0);
    assert_non_null(r);
    return r;
}

static void test_keys_ops(void **state)
{
    (void)state;
    char url[128], err[256];
    struct cmx_ledger_store *s;
    assert_int_equal(cmx_ledger_store_open(tmpurl(url, sizeof(url)), &s, err, sizeof(err)), 0);
    int64_t s0 = s->ops->stamp(s);
    assert_true(s0 >= 0);
    struct cmx_key_rec a = mkkey("key_000000000000000a", "acme", -1);
    struct cmx_key_rec b = mkkey("key_000000000000000b", "beta", 5000000);
    b.expires_ms = 99999;
    assert_int_equal(s->ops->key_create(s, &a, 1000), 0);
    int64_t s1 = s->ops->stamp(s);
    assert_true(s1 != s0);
    assert_int_equal(s->ops->key_create(s, &b, 1001), 0);
    /* the same id or hash again: refused, nothing changes */
    int64_t s2 = s->ops->stamp(s);
    assert_int_equal(s->ops->key_create(s, &a, 1002), CMX_EINVAL);
    assert_int_equal(s->ops->stamp(s), s2);

    struct cmx_ledger_rows rows;
    assert_int_equal(s->ops->keys_load(s, &rows), 0);
    assert_int_equal(rows.n, 2);
    const struct cmx_key_rec *k = rows.rows;
    assert_string_equal(k[0].id, a.id);
    assert_string_equal(k[0].hash, a.hash);
    assert_string_equal(k[0].name, "n-key_000000000000000a");
    assert_string_equal(k[0].tenant, "acme");
    assert_int_equal(k[0].expires_ms, -1);
    assert_int_equal(k[0].revoked_ms, -1);
    assert_int_equal(k[0].budget_micros, -1);
    assert_int_equal(k[0].rpm, 7);
    assert_int_equal(k[1].expires_ms, 99999);
    assert_int_equal(k[1].budget_micros, 5000000);
    free(rows.rows);

    bool was = true;
    assert_int_equal(s->ops->key_revoke(s, a.id, 2000, &was), 0);
    assert_false(was);
    int64_t s3 = s->ops->stamp(s);
    assert_true(s3 != s2);
    /* idempotent: the first revocation time stays, the stamp does not move */
    assert_int_equal(s->ops->key_revoke(s, a.id, 3000, &was), 0);
    assert_true(was);
    assert_int_equal(s->ops->stamp(s), s3);
    assert_int_equal(s->ops->key_revoke(s, "key_ffffffffffffffff", 3000, &was), CMX_ENOTFOUND);
    assert_int_equal(s->ops->keys_load(s, &rows), 0);
    k = rows.rows;
    assert_int_equal(k[0].revoked_ms, 2000);
    assert_int_equal(k[1].revoked_ms, -1);
    /* the snapshot built from them says revoked */
    struct cmx_key_set *set = cmx_key_set_new(rows.rows, rows.n);
    assert_non_null(set);
    free(rows.rows);
    assert_int_equal(set->n, 2);
    cmx_key_set_unref(set);

    /* the listing never holds the hash */
    struct cmx_buf out;
    cmx_buf_init(&out, 1 << 20);
    assert_int_equal(cmx_keystore_list(s, true, 2500, &out), 0);
    assert_null(strstr(out.data, a.hash));
    assert_non_null(strstr(out.data, "\"status\":\"revoked\""));
    assert_non_null(strstr(out.data, "\"budget\":\"5.000000\""));
    out.len = 0;
    assert_int_equal(cmx_keystore_list(s, false, 2500, &out), 0);
    assert_null(strstr(out.data, b.hash));
    cmx_buf_free(&out);
    s->ops->close(s);
    rmtmp();
}

static void test_tenants_ops(void **state)
{
    (void)state;
    char url[128], err[256];
    struct cmx_ledger_store *s;
    assert_int_equal(cmx_ledger_store_open(tmpurl(url, sizeof(url)), &s, err, sizeof(err)), 0);
    int64_t s0 = s->ops->stamp(s);
    assert_int_equal(s->ops->tenant_put(s, "zeta", "{\"name\":\"zeta\"}", 10), 0);
    assert_int_equal(s->ops->tenant_put(s, "acme", "{\"name\":\"acme\",\"models\":[\"a\"]}", 11),
                     0);
    assert_int_equal(s->ops->tenant_put(s, "acme", "{\"name\":\"acme\",\"models\":[\"b\"]}", 12),
                     0);
    assert_true(s->ops->stamp(s) != s0);
    struct cmx_ledger_rows rows;
    assert_int_equal(s->ops->tenants_load(s, &rows), 0);
    assert_int_equal(rows.n, 2);
    const struct cmx_ledger_tenant_row *t = rows.rows;
    assert_string_equal(t[0].name, "acme");
    assert_string_equal(t[0].definition, "{\"name\":\"acme\",\"models\":[\"b\"]}");
    assert_int_equal(t[0].updated_ms, 12);
    cmx_ledger_tenant_rows_free(&rows);
    int64_t s1 = s->ops->stamp(s);
    assert_int_equal(s->ops->tenant_delete(s, "acme", 20), 0);
    assert_true(s->ops->stamp(s) != s1);
    assert_int_equal(s->ops->tenant_delete(s, "acme", 21), CMX_ENOTFOUND);
    assert_int_equal(s->ops->tenant_delete(s, "nobody", 21), CMX_ENOTFOUND);
    assert_int_equal(s->ops->tenants_load(s, &rows), 0);
    assert_int_equal(rows.n, 1);
    assert_string_equal(((struct cmx_ledger_tenant_row *)rows.rows)[0].name, "zeta");
    cmx_ledger_tenant_rows_free(&rows);
    /* put again: undeleted */
    assert_int_equal(s->ops->tenant_put(s, "acme", "{\"name\":\"acme\"}", 30), 0);
    assert_int_equal(s->ops->tenants_load(s, &rows), 0);
    assert_int_equal(rows.n, 2);
    cmx_ledger_tenant_rows_free(&rows);
    s->ops->close(s);
    rmtmp();
}

static void test_usage_tenant_key_and_spent(void **state)
{
    (void)state;
    char url[128], err[256];
    struct cmx_ledger_store *s;
    assert_int_equal(cmx_ledger_store_open(tmpurl(url, sizeof(url)), &s, err, sizeof(err)), 0);
    struct cmx_ledger_rec *r[4] = {
        mkusage("u1", 1000, 100, "acme", "key_a"), mkusage("u2", 2000, 200, "acme", "key_b"),
        mkusage("u3", 3000, 400, "beta", "key_c"), mkusage("u4", 2500, 800, NULL, NULL)};
    assert_int_equal(s->ops->write(s, r, 4, false), 0);
    int64_t sum = -1;
    assert_int_equal(s->ops->spent(s, "acme", NULL, 0, 10000, &sum), 0);
    assert_int_equal(sum, 300);
    assert_int_equal(s->ops->spent(s, "acme", NULL, 1500, 10000, &sum), 0);
    assert_int_equal(sum, 200);
    assert_int_equal(s->ops->spent(s, NULL, "key_c", 0, 3000, &sum), 0);
    assert_int_equal(sum, 0); /* to_ms is exclusive */
    assert_int_equal(s->ops->spent(s, NULL, "key_c", 0, 3001, &sum), 0);
    assert_int_equal(sum, 400);
    s->ops->close(s);
    /* the report groups by tenant and key; open mode under "" */
    struct cmx_buf out;
    cmx_buf_init(&out, 1 << 20);
    assert_int_equal(
        cmx_ledger_usage(url, NULL, "tenant", CMX_LEDGER_FORMAT_CSV, &out, err, sizeof(err)), 0);
    assert_non_null(strstr(out.data, "\r\n,1,"));
    assert_non_null(strstr(out.data, "acme,2,"));
    assert_non_null(strstr(out.data, "beta,1,"));
    out.len = 0;
    assert_int_equal(
        cmx_ledger_usage(url, NULL, "key", CMX_LEDGER_FORMAT_CSV, &out, err, sizeof(err)), 0);
    assert_non_null(strstr(out.data, "key_b,1,"));
    assert_int_equal(
        cmx_ledger_usage(url, NULL, "hash", CMX_LEDGER_FORMAT_CSV, &out, err, sizeof(err)),
        CMX_EINVAL);
    cmx_buf_free(&out);
    for (int i = 0; i < 4; i++)
        free(r[i]);
    rmtmp();
}

static void test_spool_tenant_key(void **state)
{
    (void)state;
    struct cmx_ledger_rec *r = mkusage("s1", 1000, 5, "acme", "key_x");
    struct cmx_buf b;
    cmx_buf_init(&b, 1 << 20);
    cmx_ledger_spool_line(&b, r);
    b.data[b.len - 1] = '\0';
    struct cmx_ledger_rec *p = cmx_ledger_spool_parse(b.data);
    assert_non_null(p);
    assert_string_equal(p->tenant, "acme");
    assert_string_equal(p->key_id, "key_x");
    free(p);
    /* a line written before tenant and key were recorded: still a record, open mode */
    b.len = 0;
    cmx_ledger_spool_line(&b, r);
    char *line = b.data;
    line[b.len - 1] = '\0';
    *strrchr(line, '\t') = '\0';
    *strrchr(line, '\t') = '\0';
    p = cmx_ledger_spool_parse(line);
    assert_non_null(p);
    assert_string_equal(p->tenant, "");
    assert_string_equal(p->key_id, "");
    free(p);
    cmx_buf_free(&b);
    free(r);
}

static void test_tenant_check(void **state)
{
    (void)state;
    char *c = NULL, name[64], err[512];
    const char *ok = "{ \"name\": \"acme\", \"preferred_clouds\": [\"aws\"], \"allowed_clouds\": "
                     "[\"aws\", \"azure\"], \"budget\": {\"amount\": \"5000.00\"}, "
                     "\"limits\": {\"rpm\": 600} }\n";
    assert_int_equal(cmx_keystore_tenant_check(ok, strlen(ok), &c, name, err, sizeof(err)), 0);
    assert_string_equal(name, "acme");
    assert_null(strchr(c, ' ')); /* compact */
    free(c);
    /* JSON escapes survive the trip through the config loader */
    const char *esc = "{\"name\":\"e\",\"models\":[\"org/gpt-*\",\"caf\\u00e9\",\"q\\\"t\"]}";
    assert_int_equal(cmx_keystore_tenant_check(esc, strlen(esc), &c, name, err, sizeof(err)), 0);
    struct cmx_ledger_tenant_row row = {.name = "e", .definition = c};
    struct cmx_ledger_rows rows = {.rows = &row, .n = 1};
    struct cmx_tenant_set *ts = cmx_tenant_set_build(&rows);
    assert_non_null(ts);
    assert_int_equal(ts->n, 1);
    const struct cmx_tenant_cfg *t = cmx_tenant_set_find(ts, "e");
    assert_non_null(t);
    assert_int_equal(t->n_models, 3);
    assert_string_equal(t->models[0], "org/gpt-*");
    assert_string_equal(t->models[1], "caf\xc3\xa9");
    assert_string_equal(t->models[2], "q\"t");
    cmx_tenant_set_unref(ts);
    free(c);
    static const char *const bad[] = {
        "{\"name\":\"a\",\"preferred_clouds\":[\"gcp\"],\"allowed_clouds\":[\"aws\"]}",
        "{\"name\":\"a\",\"colour\":\"red\"}",
        "{\"name\":\"a b\"}",
        "{\"models\":[\"x\"]}",
        "{\"name\":\"a\",\"budget\":{\"amount\":\"-1\"}}",
        "{\"name\":\"a\",\"limits\":{\"rpm\":\"many\"}}",
        "{\"name\":\"a\",\"models\":[\"${HOME}\"]}",
        "[1,2]",
        "{\"name\":\"a\"} trailing",
        "{\"name\":",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_equal(
            cmx_keystore_tenant_check(bad[i], strlen(bad[i]), &c, name, err, sizeof(err)),
            CMX_EINVAL);
        assert_null(c);
        assert_true(err[0] != '\0');
    }
    assert_int_equal(cmx_keystore_tenant_check(bad[0], strlen(bad[0]), &c, name, err, sizeof(err)),
                     CMX_EINVAL);
    assert_non_null(strstr(err, "preferred cloud \"gcp\" is not in its allowed_clouds"));
}

static void test_params(void **state)
{
    (void)state;
    struct cmx_key_params p;
    char err[256];
    int64_t now = 1700000000000;
    assert_int_equal(
        cmx_keystore_parse_params("2030-01-01", "10", "2000", "12.5", now, &p, err, sizeof(err)),
        0);
    assert_int_equal(p.rpm, 10);
    assert_int_equal(p.tpm, 2000);
    assert_int_equal(p.budget_micros, 12500000);
    assert_int_equal(p.expires_ms, 1893456000000);
    assert_int_equal(cmx_keystore_parse_params(NULL, NULL, NULL, NULL, now, &p, err, sizeof(err)),
                     0);
    assert_int_equal(p.expires_ms, -1);
    assert_int_equal(p.budget_micros, -1);
    assert_int_equal(
        cmx_keystore_parse_params("2001-01-01", NULL, NULL, NULL, now, &p, err, sizeof(err)),
        CMX_EINVAL);
    assert_int_equal(cmx_keystore_parse_params("soon", NULL, NULL, NULL, now, &p, err, sizeof(err)),
                     CMX_EINVAL);
    assert_int_equal(cmx_keystore_parse_params(NULL, "-1", NULL, NULL, now, &p, err, sizeof(err)),
                     CMX_EINVAL);
    assert_int_equal(cmx_keystore_parse_params(NULL, NULL, "1e3", NULL, now, &p, err, sizeof(err)),
                     CMX_EINVAL);
    assert_int_equal(cmx_keystore_parse_params(NULL, NULL, NULL, "0", now, &p, err, sizeof(err)),
                     CMX_EINVAL);
    assert_int_equal(
        cmx_keystore_parse_params(NULL, NULL, NULL, "1.0000001", now, &p, err, sizeof(err)),
        CMX_EINVAL);
}

static void test_refresher(void **state)
{
    (void)state;
    char url[128], err[256];
    struct cmx_ledger_store *s;
    assert_int_equal(cmx_ledger_store_open(tmpurl(url, sizeof(url)), &s, err, sizeof(err)), 0);
    static const char yaml[] = "tenants:\n"
                               "  - name: acme\n"
                               "    models: [\"gpt-*\"]\n"
                               "    budget: {amount: \"10.00\", period: month}\n";
    struct cmx_config *cfg = NULL;
    assert_int_equal(cmx_config_load_string(yaml, strlen(yaml), NULL, &cfg, NULL), 0);
    int64_t now = (int64_t)cmx_clock_now_ms();
    struct cmx_key_params p = {.tenant = "acme", .expires_ms = -1, .budget_micros = 3000000};
    char key[CMX_KEY_TEXT_MAX + 1];
    struct cmx_key_rec rec;
    assert_int_equal(cmx_keystore_create(s, cfg, &p, now, key, &rec, err, sizeof(err)), 0);
    p.tenant = "ghost";
    struct cmx_key_rec rec2;
    char key2[CMX_KEY_TEXT_MAX + 1];
    assert_int_equal(cmx_keystore_create(s, cfg, &p, now, key2, &rec2, err, sizeof(err)),
                     CMX_EINVAL);
    /* spent in this period, by the tenant and the key */
    struct cmx_ledger_rec *u = mkusage("b1", now, 1250000, "acme", rec.id);
    assert_int_equal(s->ops->write(s, &u, 1, false), 0);
    free(u);

    struct cmx_keys_refresher *r;
    assert_int_equal(cmx_keys_refresher_start(url, cfg, 50, &r, err, sizeof(err)), 0);
    struct cmx_key_set *ks = cmx_keys_acquire();
    const struct cmx_key_rec *hit;
    assert_int_equal(cmx_key_set_check(ks, key, strlen(key), now, &hit), CMX_KEY_OK);
    assert_string_equal(hit->tenant, "acme");
    cmx_key_set_unref(ks);
    /* budgets seeded from the ledger before the keys were published */
    int64_t ps, pe;
    cmx_period_bounds(CMX_PERIOD_MONTH, now, &ps, &pe);
    assert_int_equal(cmx_budget_spent("k", rec.id, ps, pe), 1250000);
    assert_int_equal(cmx_budget_spent("t", "acme", ps, pe), 1250000);

    /* a stored tenant overrides the config's; deleting it restores the config's */
    struct cmx_arena arena;
    cmx_arena_init(&arena);
    assert_ptr_equal(cmx_tenants_resolve(&arena, cfg, "acme"), &cfg->tenants[0]);
    assert_int_equal(s->ops->tenant_put(s, "acme", "{\"name\":\"acme\",\"models\":[\"x\"]}", now),
                     0);
    bool was;
    assert_int_equal(s->ops->key_revoke(s, rec.id, now, &was), 0);
    assert_int_equal(cmx_keys_refresher_poll(r), 0);
    const struct cmx_tenant_cfg *t = cmx_tenants_resolve(&arena, cfg, "acme");
    assert_ptr_not_equal(t, &cfg->tenants[0]);
    assert_int_equal(t->n_models, 1);
    assert_string_equal(t->models[0], "x");
    assert_null(cmx_tenants_resolve(&arena, cfg, "ghost"));
    ks = cmx_keys_acquire();
    assert_int_equal(cmx_key_set_check(ks, key, strlen(key), now, &hit), CMX_KEY_REVOKED);
    cmx_key_set_unref(ks);
    assert_int_equal(s->ops->tenant_delete(s, "acme", now), 0);
    assert_int_equal(cmx_keys_refresher_poll(r), 0);
    assert_ptr_equal(cmx_tenants_resolve(&arena, cfg, "acme"), &cfg->tenants[0]);
    cmx_arena_reset(&arena); /* drops the snapshots it held */
    cmx_keys_refresher_stop(r);
    cmx_keys_publish(NULL);
    cmx_tenants_publish(NULL);
    cmx_config_unref(cfg);
    s->ops->close(s);
    rmtmp();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys_ops),
        cmocka_unit_test(test_tenants_ops),
        cmocka_unit_test(test_usage_tenant_key_and_spent),
        cmocka_unit_test(test_spool_tenant_key),
        cmocka_unit_test(test_tenant_check),
        cmocka_unit_test(test_params),
        cmocka_unit_test(test_refresher),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
