/* Unit tests for src/budget/budget.c: periods, estimates, reservations under threads. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <string.h>

#include "budget/budget.h"
#include "core/clock.h"

static int64_t T(const char *iso)
{
    int64_t ms;
    bool is_date;
    assert_int_equal(cmx_clock_parse_iso(iso, strlen(iso), &ms, &is_date), 0);
    return ms;
}

static void bounds(enum cmx_period p, const char *now, const char *start, const char *end)
{
    int64_t s, e;
    cmx_period_bounds(p, T(now), &s, &e);
    if (s != T(start) || e != T(end))
        fail_msg("period %d at %s: got [%lld, %lld), want [%s, %s)", p, now, (long long)s,
                 (long long)e, start, end);
}

static void test_periods(void **state)
{
    (void)state;
    assert_int_equal(cmx_period_parse("day"), CMX_PERIOD_DAY);
    assert_int_equal(cmx_period_parse("week"), CMX_PERIOD_WEEK);
    assert_int_equal(cmx_period_parse("month"), CMX_PERIOD_MONTH);
    assert_int_equal(cmx_period_parse("year"), -1);
    assert_int_equal(cmx_period_parse(NULL), -1);

    bounds(CMX_PERIOD_DAY, "2026-11-26T23:59:59.999Z", "2026-11-26", "2026-11-27");
    bounds(CMX_PERIOD_DAY, "2026-11-27T00:00:00Z", "2026-11-27", "2026-11-28");
    /* 2026-11-26 is a Thursday; ISO weeks start on Monday */
    bounds(CMX_PERIOD_WEEK, "2026-11-26T12:00:00Z", "2026-11-23", "2026-11-30");
    bounds(CMX_PERIOD_WEEK, "2026-11-23T00:00:00Z", "2026-11-23", "2026-11-30");
    bounds(CMX_PERIOD_WEEK, "2026-11-22T23:59:59.999Z", "2026-11-16", "2026-11-23");
    bounds(CMX_PERIOD_WEEK, "1970-01-05T00:00:00Z", "1970-01-05", "1970-01-12");
    bounds(CMX_PERIOD_MONTH, "2026-11-26T12:00:00Z", "2026-11-01", "2026-12-01");
    bounds(CMX_PERIOD_MONTH, "2026-12-31T23:59:59.999Z", "2026-12-01", "2027-01-01");
    bounds(CMX_PERIOD_MONTH, "2028-02-29T10:00:00Z", "2028-02-01", "2028-03-01");
    bounds(CMX_PERIOD_MONTH, "2027-02-28T10:00:00Z", "2027-02-01", "2027-03-01");
    bounds(CMX_PERIOD_MONTH, "2027-03-01T00:00:00Z", "2027-03-01", "2027-04-01");
}

static void test_estimates(void **state)
{
    (void)state;
    assert_int_equal(cmx_budget_prompt_estimate(0), 0);
    assert_int_equal(cmx_budget_prompt_estimate(1), 1);
    assert_int_equal(cmx_budget_prompt_estimate(3), 1);
    assert_int_equal(cmx_budget_prompt_estimate(4), 2);
    assert_int_equal(cmx_budget_prompt_estimate(3000), 1000);

    /* $2.50 / $10.00 per 1M tokens */
    struct cmx_price p = {
        .input_per_mtok = 2500000, .output_per_mtok = 10000000, .cached_input_per_mtok = -1};
    assert_int_equal(cmx_budget_worst_case(&p, 1000, 500), 2500 + 5000);
    /* one token at $2.50/M is 2.5 micro-units: rounded up, never down */
    assert_int_equal(cmx_budget_worst_case(&p, 1, 0), 3);
    assert_int_equal(cmx_budget_worst_case(&p, 0, 0), 0);
    struct cmx_price huge = {.input_per_mtok = INT64_MAX, .output_per_mtok = INT64_MAX};
    assert_int_equal(cmx_budget_worst_case(&huge, INT64_MAX, INT64_MAX), INT64_MAX);
}

static void test_reserve_settle(void **state)
{
    (void)state;
    struct cmx_budget_book book;
    cmx_budget_book_init(&book);
    int64_t now = T("2026-11-26T10:00:00Z");
    struct cmx_budget_acct key = {.limit_micros = 100, .period = CMX_PERIOD_MONTH};
    struct cmx_budget_acct tenant = {.limit_micros = 1000, .period = CMX_PERIOD_MONTH};
    struct cmx_budget_acct *both[2] = {&key, &tenant};
    struct cmx_budget_hold h1, h2, h3;
    int which = -1;

    assert_true(cmx_budget_reserve(&book, both, 60, now, &h1, &which));
    assert_int_equal(key.reserved_micros, 60);
    assert_int_equal(tenant.reserved_micros, 60);
    /* 60 + 60 > 100 on the key: refused, and nothing was taken from the tenant */
    assert_false(cmx_budget_reserve(&book, both, 60, now, &h2, &which));
    assert_int_equal(which, 0);
    assert_int_equal(tenant.reserved_micros, 60);
    assert_true(cmx_budget_reserve(&book, both, 40, now, &h2, &which)); /* exactly the limit */
    assert_int_equal(cmx_budget_remaining(&book, &key, now), 0);
    cmx_budget_settle(&book, &h1, 25, now); /* metered below the worst case */
    assert_int_equal(key.spent_micros, 25);
    assert_int_equal(key.reserved_micros, 40);
    assert_int_equal(cmx_budget_remaining(&book, &key, now), 35);
    cmx_budget_settle(&book, &h2, 0, now); /* failed upstream: released */
    assert_int_equal(cmx_budget_remaining(&book, &key, now), 75);
    assert_int_equal(cmx_budget_remaining(&book, &tenant, now), 975);

    /* the next month starts from zero; a hold made in November settles into November */
    assert_true(cmx_budget_reserve(&book, both, 70, now, &h3, &which));
    int64_t dec = T("2026-12-01T00:00:00Z");
    assert_int_equal(cmx_budget_remaining(&book, &key, dec), 30); /* 70 still in flight */
    cmx_budget_settle(&book, &h3, 70, dec);
    assert_int_equal(key.spent_micros, 0);
    assert_int_equal(cmx_budget_remaining(&book, &key, dec), 100);

    /* a tenant-only request (no key budget) */
    struct cmx_budget_acct *tonly[2] = {NULL, &tenant};
    assert_false(cmx_budget_reserve(&book, tonly, 1001, dec, &h1, &which));
    assert_int_equal(which, 1);
    assert_true(cmx_budget_reserve(&book, tonly, 1000, dec, &h1, &which));
    cmx_budget_settle(&book, &h1, 1000, dec);
    assert_int_equal(cmx_budget_remaining(&book, &tenant, dec), 0);
}

/* 64 threads reserving and settling against one account: the spent total never passes the
 * limit and equals the sum of what the successful settles charged. */
static struct cmx_budget_book hammer_book;
static struct cmx_budget_acct hammer_acct = {.limit_micros = 1000003, .period = CMX_PERIOD_MONTH};
static int64_t hammer_now;
static atomic_llong charged;

static void *hammer(void *arg)
{
    uintptr_t seed = (uintptr_t)arg;
    struct cmx_budget_acct *accts[2] = {&hammer_acct, NULL};
    for (int i = 0; i < 3000; i++) {
        struct cmx_budget_hold h;
        int which;
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        int64_t worst = 100 + (int64_t)(seed >> 33) % 900;
        if (!cmx_budget_reserve(&hammer_book, accts, worst, hammer_now, &h, &which))
            continue;
        int64_t actual = worst - (int64_t)(seed >> 40) % 50;
        cmx_budget_settle(&hammer_book, &h, actual, hammer_now);
        atomic_fetch_add(&charged, actual);
    }
    return NULL;
}

static void test_concurrent_never_overspends(void **state)
{
    (void)state;
    pthread_t th[64];
    cmx_budget_book_init(&hammer_book);
    hammer_now = T("2026-11-26T10:00:00Z");
    for (uintptr_t i = 0; i < 64; i++)
        pthread_create(&th[i], NULL, hammer, (void *)(i + 1));
    for (int i = 0; i < 64; i++)
        pthread_join(th[i], NULL);
    assert_true(hammer_acct.spent_micros <= hammer_acct.limit_micros);
    assert_int_equal(hammer_acct.spent_micros, atomic_load(&charged));
    assert_int_equal(hammer_acct.reserved_micros, 0);
    /* the budget was exhausted: less than one worst case is left */
    assert_true(hammer_acct.limit_micros - hammer_acct.spent_micros < 1000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_periods),
        cmocka_unit_test(test_estimates),
        cmocka_unit_test(test_reserve_settle),
        cmocka_unit_test(test_concurrent_never_overspends),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
