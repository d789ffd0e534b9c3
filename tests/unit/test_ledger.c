/* Unit tests for src/ledger/: half-even rounding, rate parsing, revenue with cached and
 * reasoning tokens, cap split at exact and crossing boundaries, the until-date boundary
 * and base matching of revenue shares (through cmx_ledger_prepare on a real config), the
 * SQLite store (caps across batches, idempotent replay, statement totals), the spool
 * (store unreachable -> spool -> replay exactly once), and the config keys. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/err.h"
#include "ledger/ledger.h"
#include "ledger/store.h"
#include "providers/provider.h"

static int64_t T(const char *s)
{
    int64_t ms = -1;
    if (cmx_clock_parse_iso(s, strlen(s), &ms, NULL) != 0)
        fail_msg("bad time in test: %s", s);
    return ms;
}

/* ---- arithmetic ------------------------------------------------------------------------ */

static void test_half_even(void **state)
{
    (void)state;
    assert_int_equal(cmx_ledger_div_half_even(5, 10), 0);  /* 0.5 -> 0 (even) */
    assert_int_equal(cmx_ledger_div_half_even(15, 10), 2); /* 1.5 -> 2 */
    assert_int_equal(cmx_ledger_div_half_even(25, 10), 2); /* 2.5 -> 2 */
    assert_int_equal(cmx_ledger_div_half_even(35, 10), 4); /* 3.5 -> 4 */
    assert_int_equal(cmx_ledger_div_half_even(14, 10), 1); /* 1.4 -> 1 */
    assert_int_equal(cmx_ledger_div_half_even(16, 10), 2); /* 1.6 -> 2 */
    assert_int_equal(cmx_ledger_div_half_even(-25, 10), -2);
    assert_int_equal(cmx_ledger_div_half_even(-35, 10), -4);
    assert_int_equal(cmx_ledger_div_half_even(-16, 10), -2);
    assert_int_equal(cmx_ledger_div_half_even(0, 7), 0);
    assert_int_equal(cmx_ledger_div_half_even(500000, 1000000), 0);
    assert_int_equal(cmx_ledger_div_half_even(1500000, 1000000), 2);
    assert_int_equal(cmx_ledger_div_half_even(1500001, 1000000), 2);
    assert_int_equal(cmx_ledger_div_half_even(2500001, 1000000), 3);
    /* beyond int64: saturates */
    assert_int_equal(cmx_ledger_div_half_even((__int128)INT64_MAX * 4, 1), INT64_MAX);
}

static void test_rate_parse(void **state)
{
    (void)state;
    int64_t ppm = -1;
    assert_int_equal(cmx_ledger_parse_rate("0.2", 3, &ppm), 0);
    assert_int_equal(ppm, 200000);
    assert_int_equal(cmx_ledger_parse_rate("0.075", 5, &ppm), 0);
    assert_int_equal(ppm, 75000);
    assert_int_equal(cmx_ledger_parse_rate("1", 1, &ppm), 0);
    assert_int_equal(ppm, 1000000);
    assert_int_equal(cmx_ledger_parse_rate("0.000001", 8, &ppm), 0);
    assert_int_equal(ppm, 1);
    assert_int_equal(cmx_ledger_parse_rate("0.1000000", 9, &ppm), 0); /* trailing zeros ok */
    assert_int_equal(ppm, 100000);
    ppm = 42;
    assert_int_equal(cmx_ledger_parse_rate("0.0000001", 9, &ppm), CMX_EINVAL);
    assert_int_equal(cmx_ledger_parse_rate("1.5", 3, &ppm), CMX_EINVAL);
    assert_int_equal(cmx_ledger_parse_rate("-0.1", 4, &ppm), CMX_EINVAL);
    assert_int_equal(cmx_ledger_parse_rate("0.2e1", 5, &ppm), CMX_EINVAL);
    assert_int_equal(cmx_ledger_parse_rate(".2", 2, &ppm), CMX_EINVAL);
    assert_int_equal(ppm, 42);
}

static void test_revenue(void **state)
{
    (void)state;
    /* $2.50 / 1M in, $10 / 1M out, $1.25 / 1M cached */
    struct cmx_price p = {2500000, 10000000, 1250000};
    /* 1000 prompt of which 400 cached, 300 completion (reasoning included):
     * 600 x 2.5 + 400 x 1.25 + 300 x 10 = 1500 + 500 + 3000 = 5000 micro-units */
    assert_int_equal(cmx_ledger_revenue(&p, 1000, 300, 400), 5000);
    /* no cached price: cached tokens at the input price */
    struct cmx_price q = {2500000, 10000000, -1};
    assert_int_equal(cmx_ledger_revenue(&q, 1000, 300, 400), 5500);
    /* one token at $2.50/1M = 2.5 micro -> 2 (half-even); three tokens = 7.5 -> 8 */
    assert_int_equal(cmx_ledger_revenue(&q, 1, 0, 0), 2);
    assert_int_equal(cmx_ledger_revenue(&q, 3, 0, 0), 8);
    /* rounded once over the sum, not per part */
    struct cmx_price r = {1500000, 1500000, -1};
    assert_int_equal(cmx_ledger_revenue(&r, 1, 1, 0), 3); /* 1.5 + 1.5 = 3.0, not 2 + 2 */
    /* cached above prompt is clamped */
    assert_int_equal(cmx_ledger_revenue(&p, 10, 0, 50), 12); /* 10 x 1.25 = 12.5 -> 12 */
}

static void test_share(void **state)
{
    (void)state;
    assert_int_equal(cmx_ledger_share(5000, 200000), 1000);
    assert_int_equal(cmx_ledger_share(12345678, 200000), 2469136); /* 2469135.6 */
    assert_int_equal(cmx_ledger_share(5, 100000), 0);              /* 0.5 -> 0 */
    assert_int_equal(cmx_ledger_share(15, 100000), 2);             /* 1.5 -> 2 */
    assert_int_equal(cmx_ledger_share(25, 100000), 2);             /* 2.5 -> 2 */
    assert_int_equal(cmx_ledger_share(7, 1000000), 7);
    assert_int_equal(cmx_ledger_share(7, 0), 0);
}

static void test_cap_split(void **state)
{
    (void)state;
    int64_t acc, over;
    /* no cap */
    cmx_ledger_cap_split(500, false, 0, 999999, &acc, &over);
    assert_int_equal(acc, 500);
    assert_int_equal(over, 0);
    /* below */
    cmx_ledger_cap_split(100, true, 1000, 800, &acc, &over);
    assert_int_equal(acc, 100);
    assert_int_equal(over, 0);
    /* reaching the cap exactly */
    cmx_ledger_cap_split(200, true, 1000, 800, &acc, &over);
    assert_int_equal(acc, 200);
    assert_int_equal(over, 0);
    /* crossing: split */
    cmx_ledger_cap_split(300, true, 1000, 800, &acc, &over);
    assert_int_equal(acc, 200);
    assert_int_equal(over, 100);
    /* at the cap: all over */
    cmx_ledger_cap_split(300, true, 1000, 1000, &acc, &over);
    assert_int_equal(acc, 0);
    assert_int_equal(over, 300);
    /* above it (never happens, but never negative) */
    cmx_ledger_cap_split(300, true, 1000, 1200, &acc, &over);
    assert_int_equal(acc, 0);
    assert_int_equal(over, 300);
    /* zero cap */
    cmx_ledger_cap_split(1, true, 0, 0, &acc, &over);
    assert_int_equal(acc, 0);
    assert_int_equal(over, 1);
    /* zero amount at the boundary */
    cmx_ledger_cap_split(0, true, 1000, 1000, &acc, &over);
    assert_int_equal(acc, 0);
    assert_int_equal(over, 0);
    /* a sequence: over-cap total = sum of shares - cap */
    int64_t prev = 0, tot_over = 0, sum = 0;
    for (int i = 0; i < 10; i++) {
        cmx_ledger_cap_split(333, true, 1000, prev, &acc, &over);
        prev += acc;
        tot_over += over;
        sum += 333;
    }
    assert_int_equal(prev, 1000);
    assert_int_equal(tot_over, sum - 1000);
}

/* ---- records from a config ----------------------------------------------------------------- */

static const char yaml[] =
    "providers:\n"
    "  - { name: az, type: openai_compatible, cloud: azure, base_url: 'http://127.0.0.1:1/v1' }\n"
    "  - { name: aws, type: openai_compatible, cloud: aws, region: us-east-1,"
    " base_url: 'http://127.0.0.1:2/v1' }\n"
    "maker: openai\n"
    "products:\n"
    "  - { name: gpt-5, launches: { azure: 2026-01-01, aws: 2026-01-01 } }\n"
    "  - { name: gpt-6, launches: { azure: 2026-01-01, aws: 2026-01-01 } }\n"
    "models:\n"
    "  - name: gpt-5\n"
    "    deployments:\n"
    "      - provider: az\n"
    "        model: gpt-5\n"
    "        price: { input_per_mtok: 2.5, output_per_mtok: 10, cached_input_per_mtok: 1.25 }\n"
    "        cost: { input_per_mtok: 1, output_per_mtok: 4 }\n"
    "      - { provider: aws, model: gpt-5, price: { input_per_mtok: 2.5, output_per_mtok: 10 } }\n"
    "  - name: gpt-6\n"
    "    deployments:\n"
    "      - { provider: aws, model: gpt-6, price: { input_per_mtok: 5, output_per_mtok: 20 } }\n"
    "  - name: llama\n"
    "    deployments:\n"
    "      - { provider: aws, model: llama, price: { input_per_mtok: 1, output_per_mtok: 1 } }\n"
    "agreements:\n"
    "  - id: ms\n"
    "    versions:\n"
    "      - effective: 2026-01-01\n"
    "        licences: [{ licensee: azure, products: '*', until: 2030-12-31 }]\n"
    "        revenue_shares:\n"
    "          - { payee: ms, rate: 0.2, base: all, until: 2026-11-30, cap: '100.00' }\n"
    "  - id: amzn\n"
    "    versions:\n"
    "      - effective: 2026-01-01\n"
    "        licences: [{ licensee: aws, products: '*', until: 2030-12-31 }]\n"
    "        revenue_shares:\n"
    "          - { payee: amazon, rate: 0.05, base: { clouds: [aws] }, until: 2030-12-31 }\n"
    "          - { payee: amazon, rate: 0.01, base: { products: [gpt-6] }, until: 2030-12-31 }\n"
    "ledger: { url: 'sqlite://ledger.db', durability: per_request }\n";

static struct cmx_config *load(const char *text)
{
    struct cmx_config *cfg = NULL;
    struct cmx_config_diag d;
    cmx_config_diag_init(&d);
    int r = cmx_config_load_string(text, strlen(text), "/tmp/x/cmx.yaml", &cfg, &d);
    if (r != 0)
        fail_msg("config: %s", d.text.data ? d.text.data : "?");
    cmx_config_diag_free(&d);
    return cfg;
}

static struct cmx_ledger_rec *prep(const struct cmx_config *cfg, const char *model, size_t dep,
                                   const char *at, struct cmx_usage *u)
{
    const struct cmx_model_cfg *m = cmx_config_find_model(cfg, model, strlen(model));
    assert_non_null(m);
    struct cmx_ledger_input in = {
        .cfg = cfg,
        .request_id = "req-1",
        .model = m,
        .dep = &m->deployments[dep],
        .usage = u,
        .status = 200,
        .latency_us = 12345,
        .request_bytes = 100,
        .output_text_bytes = 41,
        .at_ms = T(at),
    };
    struct cmx_ledger_rec *r = cmx_ledger_prepare(&in);
    assert_non_null(r);
    return r;
}

static void test_config_keys(void **state)
{
    (void)state;
    struct cmx_config *cfg = load(yaml);
    char url[256], spool[256];
    assert_string_equal(cmx_ledger_url(cfg, url, sizeof(url)), "sqlite:///tmp/x/ledger.db");
    assert_string_equal(cmx_ledger_spool_path(cfg, url, spool, sizeof(spool)),
                        "/tmp/x/ledger.db.spool");
    assert_string_equal(cfg->ledger_durability, "per_request");
    assert_true(cfg->models[0].deployments[0].has_cost);
    assert_int_equal(cfg->models[0].deployments[0].cost.output_per_mtok, 4000000);
    assert_int_equal(cfg->models[0].deployments[0].cost.cached_input_per_mtok, -1);
    assert_false(cfg->models[0].deployments[1].has_cost);
    cmx_config_unref(cfg);

    /* default: next to the config; shorthand string; off */
    static const char base[] =
        "providers: [{ name: a, type: openai_compatible, cloud: c, base_url: 'http://h/v1' }]\n"
        "models: [{ name: m, deployments: [{ provider: a, model: m }] }]\n";
    char text[1024];
    cfg = load(base);
    assert_string_equal(cmx_ledger_url(cfg, url, sizeof(url)), "sqlite:///tmp/x/cloudmux.db");
    cmx_config_unref(cfg);
    snprintf(text, sizeof(text), "%sledger: postgres://u@127.0.0.1:5/db\n", base);
    cfg = load(text);
    assert_string_equal(cmx_ledger_url(cfg, url, sizeof(url)), "postgres://u@127.0.0.1:5/db");
    assert_string_equal(cmx_ledger_spool_path(cfg, url, spool, sizeof(spool)),
                        "/tmp/x/cloudmux-ledger.spool");
    cmx_config_unref(cfg);
    snprintf(text, sizeof(text), "%sledger: off\n", base);
    cfg = load(text);
    assert_null(cmx_ledger_url(cfg, url, sizeof(url)));
    cmx_config_unref(cfg);
    /* bad values are config errors */
    const char *bad[] = {"ledger: mysql://x\n", "ledger: { url: 'sqlite://a', durability: sync }\n",
                         "ledger: { durability: batched }\n", "ledger: sqlite://\n"};
    for (size_t i = 0; i < 4; i++) {
        struct cmx_config_diag d;
        cmx_config_diag_init(&d);
        snprintf(text, sizeof(text), "%s%s", base, bad[i]);
        cfg = NULL;
        assert_int_equal(cmx_config_load_string(text, strlen(text), "t.yaml", &cfg, &d),
                         CMX_ECONFIG);
        assert_non_null(strstr(d.text.data, "ledger"));
        cmx_config_diag_free(&d);
    }
}

static void test_prepare_base_matching(void **state)
{
    (void)state;
    struct cmx_config *cfg = load(yaml);
    struct cmx_usage u = {1000, 300, 400, 100, true};
    /* gpt-5 on azure: ms (all) only; revenue 600x2.5 + 400x1.25 + 300x10 = 5000 micro */
    struct cmx_ledger_rec *r = prep(cfg, "gpt-5", 0, "2026-11-05T10:00:00Z", &u);
    assert_int_equal(r->revenue_micros, 5000);
    assert_int_equal(r->cost_micros, 1000 + 1200); /* 1000 x 1 + 300 x 4 */
    assert_string_equal(r->product, "gpt-5");
    assert_string_equal(r->cloud, "azure");
    assert_int_equal(r->cached_tokens, 400);
    assert_int_equal(r->reasoning_tokens, 100);
    assert_false(r->estimated);
    assert_int_equal(r->latency_ms, 12);
    assert_int_equal(r->n_acc, 1);
    assert_string_equal(r->acc[0].payee, "ms");
    assert_string_equal(r->acc[0].agreement, "ms@2026-01-01");
    assert_int_equal(r->acc[0].rate_ppm, 200000);
    assert_int_equal(r->acc[0].amount_micros, 1000);
    assert_true(r->acc[0].has_cap);
    assert_int_equal(r->acc[0].cap_micros, 100000000);
    free(r);
    /* gpt-5 on aws (no cached price: input price): ms (all) + amazon (clouds: aws) */
    r = prep(cfg, "gpt-5", 1, "2026-11-05T10:00:00Z", &u);
    assert_int_equal(r->revenue_micros, 5500);
    assert_int_equal(r->n_acc, 2);
    assert_string_equal(r->acc[0].payee, "ms");
    assert_string_equal(r->acc[1].payee, "amazon");
    assert_int_equal(r->acc[1].amount_micros, 275); /* 5500 x 0.05 */
    assert_int_equal(r->acc[1].term, 0);
    free(r);
    /* gpt-6 on aws: ms + amazon (aws) + amazon (products: gpt-6, term 1) */
    r = prep(cfg, "gpt-6", 0, "2026-11-05T10:00:00Z", &u);
    assert_int_equal(r->n_acc, 3);
    assert_int_equal(r->acc[2].term, 1);
    assert_int_equal(r->acc[2].rate_ppm, 10000);
    free(r);
    /* llama (ungoverned) on aws: a base naming products does not match it */
    r = prep(cfg, "llama", 0, "2026-11-05T10:00:00Z", &u);
    assert_string_equal(r->product, "");
    assert_int_equal(r->n_acc, 2);
    free(r);
    cmx_config_unref(cfg);
}

static void test_prepare_until_boundary(void **state)
{
    (void)state;
    struct cmx_config *cfg = load(yaml);
    struct cmx_usage u = {1000, 300, 0, 0, true};
    /* ms's share runs through the end of 2026-11-30 */
    struct cmx_ledger_rec *r = prep(cfg, "gpt-5", 0, "2026-11-30T23:59:59.999Z", &u);
    assert_int_equal(r->n_acc, 1);
    free(r);
    r = prep(cfg, "gpt-5", 0, "2026-12-01T00:00:00Z", &u);
    assert_int_equal(r->n_acc, 0);
    assert_true(r->revenue_micros > 0); /* revenue still counts */
    free(r);
    /* before the agreement's effective date: nothing */
    r = prep(cfg, "gpt-5", 0, "2025-12-31T23:59:59.999Z", &u);
    assert_int_equal(r->n_acc, 0);
    free(r);
    /* usage without details (cached / reasoning absent: -1) records them as 0, not -1 */
    struct cmx_usage bare = {.prompt_tokens = 10,
                             .completion_tokens = 5,
                             .cached_tokens = -1,
                             .reasoning_tokens = -1,
                             .reported = true};
    r = prep(cfg, "gpt-5", 0, "2026-11-05T00:00:00Z", &bare);
    assert_false(r->estimated);
    assert_int_equal(r->prompt_tokens, 10);
    assert_int_equal(r->completion_tokens, 5);
    assert_int_equal(r->cached_tokens, 0);
    assert_int_equal(r->reasoning_tokens, 0);
    free(r);
    /* no usage reported: estimated from bytes (4 a token), flagged */
    struct cmx_usage none = {0};
    r = prep(cfg, "gpt-5", 0, "2026-11-05T00:00:00Z", &none);
    assert_true(r->estimated);
    assert_int_equal(r->prompt_tokens, 25);
    assert_int_equal(r->completion_tokens, 11);
    free(r);
    cmx_config_unref(cfg);
}

/* ---- the SQLite store ------------------------------------------------------------------- */

static struct cmx_ledger_rec *mkrec_model(const char *id, const char *day, int64_t revenue,
                                          int64_t amount, bool has_cap, int64_t cap,
                                          const char *model)
{
    struct cmx_ledger_rec t = {.request_id = id,
                               .ts_ms = T(day),
                               .model = model,
                               .provider = "az",
                               .cloud = "azure",
                               .prompt_tokens = 10,
                               .completion_tokens = 5,
                               .status = 200,
                               .revenue_micros = revenue};
    snprintf(t.record_id, sizeof(t.record_id), "rec-%s", id);
    struct cmx_ledger_accrual a = {.agreement = "ms@2026-01-01",
                                   .payee = "ms",
                                   .currency = "USD",
                                   .rate_ppm = 200000,
                                   .has_cap = has_cap,
                                   .cap_micros = cap,
                                   .amount_micros = amount};
    struct cmx_ledger_rec *r = cmx_ledger_rec_new(&t, &a, 1);
    assert_non_null(r);
    return r;
}

static struct cmx_ledger_rec *mkrec(const char *id, const char *day, int64_t revenue,
                                    int64_t amount, bool has_cap, int64_t cap)
{
    return mkrec_model(id, day, revenue, amount, has_cap, cap, "gpt-5");
}

/* Removes a temp dir made by a test (its path is ours: /tmp/cmx-...). */
static void rm_rf(const char *dir)
{
    char cmd[512];
    assert_int_equal(strncmp(dir, "/tmp/cmx-", 9), 0);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static char *tmpdb(char *buf, size_t cap)
{
    char dir[] = "/tmp/cmx-ledger-XXXXXX";
    assert_non_null(mkdtemp(dir));
    snprintf(buf, cap, "sqlite://%s/l.db", dir);
    return buf;
}

static void test_sqlite_caps_and_replay(void **state)
{
    (void)state;
    char url[256], err[256];
    struct cmx_ledger_store *s;
    tmpdb(url, sizeof(url));
    assert_int_equal(cmx_ledger_store_open(url, &s, err, sizeof(err)), 0);
    /* cap 1000: 400 + 400 (=800) + 300 (crosses: 200 + 100 over) + 50 (all over) */
    struct cmx_ledger_rec *a[4] = {mkrec("r1", "2026-11-01", 2000, 400, true, 1000),
                                   mkrec("r2", "2026-11-02", 2000, 400, true, 1000),
                                   mkrec("r3", "2026-11-03", 1500, 300, true, 1000),
                                   mkrec("r4", "2026-12-01", 250, 50, true, 1000)};
    assert_int_equal(s->ops->write(s, a, 2, false), 0);
    assert_int_equal(s->ops->write(s, a + 2, 2, true), 0);
    /* a replay of everything: nothing counted twice */
    assert_int_equal(s->ops->write(s, a, 4, false), 0);
    assert_int_equal(s->ops->count(s), 4);
    struct cmx_ledger_rows rows;
    assert_int_equal(s->ops->statement(s, "ms", "2026-11", &rows, err, sizeof(err)), 0);
    assert_int_equal(rows.n, 1);
    struct cmx_ledger_stmt_row *w = rows.rows;
    assert_int_equal(w->requests, 3);
    assert_int_equal(w->base_micros, 5500);
    assert_int_equal(w->amount_micros, 1100);
    assert_int_equal(w->accrued_micros, 1000);
    assert_int_equal(w->over_cap_micros, 100);
    assert_int_equal(w->cap_remaining_micros, 0);
    assert_true(w->has_cap);
    free(rows.rows);
    assert_int_equal(s->ops->statement(s, "ms", "2026-12", &rows, err, sizeof(err)), 0);
    w = rows.rows;
    assert_int_equal(w->accrued_micros, 0);
    assert_int_equal(w->over_cap_micros, 50);
    free(rows.rows);
    /* usage by day */
    assert_int_equal(s->ops->usage(s, "2026-11", "day", &rows, err, sizeof(err)), 0);
    assert_int_equal(rows.n, 3);
    free(rows.rows);
    s->ops->close(s);
    for (int i = 0; i < 4; i++)
        free(a[i]);

    /* the report layer: JSON amounts are exact strings; totals = sum of rows */
    struct cmx_buf b;
    cmx_buf_init(&b, 1 << 20);
    assert_int_equal(
        cmx_ledger_statement(url, "ms", "2026-11", CMX_LEDGER_FORMAT_JSON, &b, err, sizeof(err)),
        0);
    assert_non_null(strstr(b.data, "\"accrued\":\"0.001000\""));
    assert_non_null(strstr(b.data, "\"over_cap\":\"0.000100\""));
    assert_non_null(strstr(b.data, "\"rate\":\"0.2\""));
    assert_non_null(strstr(b.data, "\"totals\":{\"revenue_base\":\"0.005500\""));
    cmx_buf_reset(&b);
    assert_int_equal(
        cmx_ledger_statement(url, "ms", "2026-13", CMX_LEDGER_FORMAT_JSON, &b, err, sizeof(err)),
        CMX_EINVAL);
    assert_int_equal(
        cmx_ledger_usage(url, NULL, "hash", CMX_LEDGER_FORMAT_CSV, &b, err, sizeof(err)),
        CMX_EINVAL);
    assert_int_equal(
        cmx_ledger_usage(url, NULL, "model", CMX_LEDGER_FORMAT_CSV, &b, err, sizeof(err)), 0);
    assert_non_null(strstr(b.data, "gpt-5,4,40,20,0,0,0,0.005750,0.000000"));
    cmx_buf_free(&b);
    char dir[256];
    snprintf(dir, sizeof(dir), "%s", url + 9);
    *strrchr(dir, '/') = '\0';
    rm_rf(dir);
}

/* A cap edited in place (the same agreement version and term) applies from the next request;
 * the statement shows it as the config last stated it, and what it leaves is never negative
 * (lowered below what was already accrued: 0). A rate edited in place is a line of its own. */
static void test_sqlite_cap_edited(void **state)
{
    (void)state;
    char url[256], err[256];
    struct cmx_ledger_store *s;
    tmpdb(url, sizeof(url));
    assert_int_equal(cmx_ledger_store_open(url, &s, err, sizeof(err)), 0);
    struct cmx_ledger_rows rows;
    struct {
        int64_t cap, rate_ppm, accrued, over, shown_cap, left;
    } steps[] = {
        {1000, 200000, 400, 0, 1000, 600},  /* 400 of 1000 */
        {600, 200000, 200, 200, 600, 0},    /* lowered to 600: 200 fit, 200 over */
        {2000, 200000, 400, 0, 2000, 1000}, /* raised: 1000 accrued of 2000 */
        {500, 200000, 0, 400, 500, 0},      /* below what was accrued: all over, 0 left */
    };
    int64_t acc = 0, over = 0;
    for (int i = 0; i < 4; i++) {
        char id[8];
        snprintf(id, sizeof(id), "c%d", i);
        struct cmx_ledger_rec *r = mkrec(id, "2026-11-03", 2000, 400, true, steps[i].cap);
        r->ts_ms += i;
        assert_int_equal(s->ops->write(s, &r, 1, false), 0);
        free(r);
        acc += steps[i].accrued;
        over += steps[i].over;
        assert_int_equal(s->ops->statement(s, "ms", "2026-11", &rows, err, sizeof(err)), 0);
        assert_int_equal(rows.n, 1);
        struct cmx_ledger_stmt_row *w = rows.rows;
        assert_int_equal(w->accrued_micros, acc);
        assert_int_equal(w->over_cap_micros, over);
        assert_true(w->has_cap);
        assert_int_equal(w->cap_micros, steps[i].shown_cap);
        assert_int_equal(w->cap_remaining_micros, steps[i].left);
        free(rows.rows);
    }
    /* the rate edited in place (0.2 -> 0.3, same cap): a second line, same cap */
    struct cmx_ledger_rec *r = mkrec("c4", "2026-11-04", 2000, 600, true, 500);
    r->acc[0].rate_ppm = 300000;
    assert_int_equal(s->ops->write(s, &r, 1, false), 0);
    free(r);
    assert_int_equal(s->ops->statement(s, "ms", "2026-11", &rows, err, sizeof(err)), 0);
    assert_int_equal(rows.n, 2);
    struct cmx_ledger_stmt_row *w = rows.rows;
    assert_int_equal(w[0].rate_ppm, 200000);
    assert_int_equal(w[0].requests, 4);
    assert_int_equal(w[1].rate_ppm, 300000);
    assert_int_equal(w[1].requests, 1);
    assert_int_equal(w[1].amount_micros, 600);
    assert_int_equal(w[1].over_cap_micros, 600);
    assert_int_equal(w[1].cap_remaining_micros, 0);
    free(rows.rows);
    s->ops->close(s);
    char dir[256];
    snprintf(dir, sizeof(dir), "%s", url + 9);
    *strrchr(dir, '/') = '\0';
    rm_rf(dir);
    /* a report on a ledger that is not there is an error, and creates nothing */
    struct cmx_buf b;
    cmx_buf_init(&b, 1 << 20);
    assert_int_equal(
        cmx_ledger_usage(url, NULL, NULL, CMX_LEDGER_FORMAT_JSON, &b, err, sizeof(err)), CMX_EIO);
    assert_non_null(strstr(err, "no ledger at"));
    assert_int_equal(
        cmx_ledger_statement(url, "ms", NULL, CMX_LEDGER_FORMAT_JSON, &b, err, sizeof(err)),
        CMX_EIO);
    assert_int_not_equal(access(dir, F_OK), 0);
    cmx_buf_free(&b);
}

/* Grouped (multi-row) inserts give the same rows as one record per INSERT: a cap crossed in
 * the middle of a group, a group spanning midnight, and a replay whose groups hold records
 * already stored next to new ones (those are written, the others skipped, nothing doubled). */
static void test_sqlite_grouped_equals_single(void **state)
{
    (void)state;
    enum { N = 48 };
    char url1[256], url2[256], err[256];
    struct cmx_ledger_store *g, *one;
    struct cmx_ledger_rec *a[N];
    for (int i = 0; i < N; i++) {
        char id[16];
        snprintf(id, sizeof(id), "g%02d", i);
        /* 30 x 100 = 3000 against a cap of 2550: crossed by record 25 of the 48 */
        a[i] = mkrec(id, i < 20 ? "2026-11-09" : "2026-11-10", 500, 100, true, 2550);
        a[i]->ts_ms += i; /* ordered within each day */
    }
    tmpdb(url1, sizeof(url1));
    tmpdb(url2, sizeof(url2));
    assert_int_equal(cmx_ledger_store_open(url1, &g, err, sizeof(err)), 0);
    assert_int_equal(cmx_ledger_store_open(url2, &one, err, sizeof(err)), 0);
    /* grouped: 0..40 in one batch (two groups + 8), then 8..48: 32 replayed + 8 new */
    assert_int_equal(g->ops->write(g, a, 40, false), 0);
    assert_int_equal(g->ops->write(g, a + 8, 40, false), 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(one->ops->write(one, &a[i], 1, false), 0);
    assert_int_equal(g->ops->count(g), N);
    assert_int_equal(one->ops->count(one), N);
    struct cmx_ledger_rows r1, r2;
    assert_int_equal(g->ops->statement(g, "ms", "2026-11", &r1, err, sizeof(err)), 0);
    assert_int_equal(one->ops->statement(one, "ms", "2026-11", &r2, err, sizeof(err)), 0);
    assert_int_equal(r1.n, 1);
    assert_int_equal(r2.n, 1);
    struct cmx_ledger_stmt_row *w1 = r1.rows, *w2 = r2.rows;
    assert_int_equal(w1->requests, N);
    assert_int_equal(w1->amount_micros, N * 100);
    assert_int_equal(w1->accrued_micros, 2550);
    assert_int_equal(w1->over_cap_micros, N * 100 - 2550);
    assert_int_equal(w1->base_micros, w2->base_micros);
    assert_int_equal(w1->accrued_micros, w2->accrued_micros);
    assert_int_equal(w1->over_cap_micros, w2->over_cap_micros);
    assert_int_equal(w1->cap_remaining_micros, 0);
    free(r1.rows);
    free(r2.rows);
    /* the day column of each row, across the group that spans midnight */
    assert_int_equal(g->ops->usage(g, "2026-11", "day", &r1, err, sizeof(err)), 0);
    struct cmx_ledger_usage_row *u = r1.rows;
    int64_t d9 = -1, d10 = -1;
    for (size_t i = 0; i < r1.n; i++) {
        if (strcmp(u[i].key, "2026-11-09") == 0)
            d9 = u[i].requests;
        if (strcmp(u[i].key, "2026-11-10") == 0)
            d10 = u[i].requests;
    }
    assert_int_equal(d9, 20);
    assert_int_equal(d10, N - 20);
    free(r1.rows);
    g->ops->close(g);
    one->ops->close(one);
    for (int i = 0; i < N; i++)
        free(a[i]);
    const char *urls[2] = {url1, url2};
    for (int i = 0; i < 2; i++) {
        char dir[256];
        snprintf(dir, sizeof(dir), "%s", urls[i] + 9);
        *strrchr(dir, '/') = '\0';
        rm_rf(dir);
    }
}

/* A record's dimensions are its id key as laid out: NUL-ended strings back to back, so
 * values that only move the boundary between two fields ("ab"+"c" vs "a"+"bc") differ, and
 * equal dimensions give equal keys whatever else the records hold. */
static void test_dim_key_span(void **state)
{
    (void)state;
    struct cmx_ledger_rec t = {.request_id = "r1",
                               .model = "ab",
                               .product = "c",
                               .provider = "p",
                               .cloud = "azure",
                               .region = "",
                               .agreements = "ms@2026-01-01",
                               .tenant = "t",
                               .key_id = "k"};
    struct cmx_ledger_rec *a = cmx_ledger_rec_new(&t, NULL, 0);
    t.model = "a", t.product = "bc";
    struct cmx_ledger_rec *b = cmx_ledger_rec_new(&t, NULL, 0);
    t.request_id = "another request", t.tenant = NULL, t.key_id = "other";
    struct cmx_ledger_accrual acc = {
        .agreement = "ms@2026-01-01", .payee = "ms", .currency = "USD"};
    struct cmx_ledger_rec *c = cmx_ledger_rec_new(&t, &acc, 1);
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    size_t la, lb, lc;
    const char *ka = cmx_ledger_dim_key(a, &la), *kb = cmx_ledger_dim_key(b, &lb),
               *kc = cmx_ledger_dim_key(c, &lc);
    static const char want[] = "ab\0c\0p\0azure\0\0ms@2026-01-01";
    assert_int_equal(la, sizeof(want));
    assert_memory_equal(ka, want, sizeof(want));
    assert_int_equal(la, lb);
    assert_memory_not_equal(ka, kb, la);
    assert_int_equal(lb, lc);
    assert_memory_equal(kb, kc, lb);
    free(a);
    free(b);
    free(c);
}

/* Dimension and term rows are made once and then found by id; an id made by a transaction
 * that rolls back is not reused (here: a group holding an already stored record is rolled back
 * and written again row by row, after the group had made a new model's and a new cap's rows). */
static void test_sqlite_ids_after_rollback(void **state)
{
    (void)state;
    enum { N = 16 };
    char url[256], err[256];
    struct cmx_ledger_store *s;
    struct cmx_ledger_rec *old = mkrec_model("old", "2026-11-09", 500, 100, true, 2000, "m-old");
    struct cmx_ledger_rec *b[N];
    b[0] = old;
    for (int i = 1; i < N; i++) {
        char id[16];
        snprintf(id, sizeof(id), "new%02d", i);
        b[i] = mkrec_model(id, "2026-11-10", 500, 100, true, 999, "m-new");
    }
    tmpdb(url, sizeof(url));
    assert_int_equal(cmx_ledger_store_open(url, &s, err, sizeof(err)), 0);
    assert_int_equal(s->ops->write(s, &old, 1, false), 0);
    assert_int_equal(s->ops->write(s, b, N, false), 0);
    assert_int_equal(s->ops->count(s), N);
    /* every row joins its dimensions: by model, m-new's 15 and m-old's 1 */
    struct cmx_ledger_rows rows;
    assert_int_equal(s->ops->usage(s, NULL, "model", &rows, err, sizeof(err)), 0);
    assert_int_equal(rows.n, 2);
    struct cmx_ledger_usage_row *u = rows.rows;
    assert_string_equal(u[0].key, "m-new");
    assert_int_equal(u[0].requests, N - 1);
    assert_string_equal(u[1].key, "m-old");
    assert_int_equal(u[1].requests, 1);
    free(rows.rows);
    /* and every accrual its term: 16 requests on the statement; the term's one running total
     * (100 under the old cap) stops at the new cap, 999 */
    assert_int_equal(s->ops->statement(s, "ms", "2026-11", &rows, err, sizeof(err)), 0);
    assert_int_equal(rows.n, 1);
    struct cmx_ledger_stmt_row *w = rows.rows;
    assert_int_equal(w->requests, N);
    assert_int_equal(w->accrued_micros, 999);
    assert_int_equal(w->over_cap_micros, N * 100 - 999);
    free(rows.rows);
    s->ops->close(s);
    /* reopened: the same model and cap find their rows again instead of making new ones */
    assert_int_equal(cmx_ledger_store_open(url, &s, err, sizeof(err)), 0);
    struct cmx_ledger_rec *again = mkrec_model("again", "2026-11-11", 500, 100, true, 999, "m-new");
    assert_int_equal(s->ops->write(s, &again, 1, false), 0);
    assert_int_equal(s->ops->usage(s, NULL, "model", &rows, err, sizeof(err)), 0);
    assert_int_equal(rows.n, 2);
    assert_int_equal(((struct cmx_ledger_usage_row *)rows.rows)[0].requests, N);
    free(rows.rows);
    s->ops->close(s);
    char q[400], dir[256];
    snprintf(dir, sizeof(dir), "%s", url + 9);
    snprintf(q, sizeof(q),
             "test \"$(sqlite3 '%s' 'SELECT (SELECT COUNT(*) FROM ledger_dims) || \" \" ||"
             " (SELECT COUNT(*) FROM ledger_terms)')\" = '2 2'",
             dir);
    assert_int_equal(system(q), 0);
    for (int i = 0; i < N; i++)
        free(b[i]);
    free(again);
    *strrchr(dir, '/') = '\0';
    rm_rf(dir);
}

/* The store is unreachable: records are spooled, then replayed exactly once when it is
 * back (here: a SQLite file in a directory that does not exist yet). */
static void test_spool_replay(void **state)
{
    (void)state;
    char dir[] = "/tmp/cmx-spool-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char url[256], spool[256], err[256];
    snprintf(url, sizeof(url), "sqlite://%s/later/l.db", dir);
    snprintf(spool, sizeof(spool), "%s/l.spool", dir);
    struct cmx_ledger *l;
    assert_int_equal(cmx_ledger_start(url, CMX_LEDGER_BATCHED, spool, &l, err, sizeof(err)), 0);
    for (int i = 0; i < 50; i++) {
        char id[32];
        snprintf(id, sizeof(id), "s%d", i);
        struct cmx_ledger_rec *r =
            mkrec_model(id, "2026-11-10", 100, 20, true, 500, "tab\there\\x");
        cmx_ledger_submit(l, r);
    }
    cmx_ledger_flush(l);
    assert_int_equal(cmx_ledger_committed(l), 0);
    assert_int_equal(cmx_ledger_spooled(l), 50);
    /* the database becomes reachable: the writer replays within a second or so */
    char later[300];
    snprintf(later, sizeof(later), "%s/later", dir);
    assert_int_equal(mkdir(later, 0700), 0);
    for (int i = 0; i < 100 && access(spool, F_OK) == 0; i++) {
        cmx_ledger_submit(l, mkrec("after", "2026-11-10", 100, 20, true, 500));
        cmx_ledger_flush(l);
        if (cmx_ledger_committed(l) > 0)
            break;
        usleep(50000);
    }
    cmx_ledger_stop(l);
    struct cmx_ledger_store *s;
    assert_int_equal(cmx_ledger_store_open(url, &s, err, sizeof(err)), 0);
    assert_int_equal(s->ops->count(s), 51);
    struct cmx_ledger_rows rows;
    assert_int_equal(s->ops->statement(s, "ms", NULL, &rows, err, sizeof(err)), 0);
    struct cmx_ledger_stmt_row *w = rows.rows;
    assert_int_equal(w->requests, 51);
    assert_int_equal(w->accrued_micros, 500);
    assert_int_equal(w->over_cap_micros, 51 * 20 - 500);
    free(rows.rows);
    assert_int_equal(s->ops->usage(s, NULL, "model", &rows, err, sizeof(err)), 0);
    assert_int_equal(rows.n, 2);
    assert_string_equal(((struct cmx_ledger_usage_row *)rows.rows)[1].key, "tab\there\\x");
    free(rows.rows);
    s->ops->close(s);
    /* the spool was emptied (and removed at stop) */
    assert_int_not_equal(access(spool, F_OK), 0);
    rm_rf(dir);
}

static void test_record_ids(void **state)
{
    (void)state;
    char a[48], b[48];
    cmx_ledger_record_id(T("2026-11-05T00:00:00Z"), a, sizeof(a));
    cmx_ledger_record_id(T("2026-11-05T00:00:00Z"), b, sizeof(b));
    assert_int_equal(strlen(a), 36);
    assert_string_not_equal(a, b); /* same ms: the counter differs */
    assert_memory_equal(a, b, 28); /* same time and process */
    char ts[16];
    snprintf(ts, sizeof(ts), "%012llx", (unsigned long long)T("2026-11-05T00:00:00Z"));
    assert_memory_equal(a, ts, 12); /* the time first, 12 hex digits */
    assert_int_equal(strspn(a, "0123456789abcdef"), 36);
    cmx_ledger_record_id(T("2026-11-05T00:00:00.001Z"), b, sizeof(b));
    assert_true(strcmp(a, b) < 0); /* time-ordered */
    /* the same client request id twice is two records */
    struct cmx_config *cfg = load(yaml);
    struct cmx_usage u = {10, 5, 0, 0, true};
    struct cmx_ledger_rec *r1 = prep(cfg, "gpt-5", 0, "2026-11-05T10:00:00Z", &u);
    struct cmx_ledger_rec *r2 = prep(cfg, "gpt-5", 0, "2026-11-05T10:00:00Z", &u);
    assert_string_equal(r1->request_id, r2->request_id);
    assert_string_not_equal(r1->record_id, r2->record_id);
    /* spool lines round-trip */
    struct cmx_buf line;
    cmx_buf_init(&line, 1 << 20);
    cmx_ledger_spool_line(&line, r1);
    line.data[--line.len] = '\0';
    struct cmx_ledger_rec *back = cmx_ledger_spool_parse(line.data);
    assert_non_null(back);
    assert_string_equal(back->record_id, r1->record_id);
    assert_int_equal(back->n_acc, r1->n_acc);
    assert_int_equal(back->acc[0].amount_micros, r1->acc[0].amount_micros);
    free(back);
    cmx_buf_free(&line);
    free(r1);
    free(r2);
    cmx_config_unref(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_half_even),
        cmocka_unit_test(test_rate_parse),
        cmocka_unit_test(test_revenue),
        cmocka_unit_test(test_share),
        cmocka_unit_test(test_cap_split),
        cmocka_unit_test(test_config_keys),
        cmocka_unit_test(test_prepare_base_matching),
        cmocka_unit_test(test_prepare_until_boundary),
        cmocka_unit_test(test_sqlite_caps_and_replay),
        cmocka_unit_test(test_sqlite_cap_edited),
        cmocka_unit_test(test_sqlite_grouped_equals_single),
        cmocka_unit_test(test_dim_key_span),
        cmocka_unit_test(test_sqlite_ids_after_rollback),
        cmocka_unit_test(test_spool_replay),
        cmocka_unit_test(test_record_ids),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
