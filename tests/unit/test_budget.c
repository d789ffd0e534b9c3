/* Unit tests for src/budget/budget.c: periods, estimates, reservations under threads. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

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

static int64_t calls;

static int64_t fake_spent(void *ud, const char *who, const char *name, int64_t start, int64_t end)
{
    (void)ud;
    calls++;
    assert_true(end > start);
    if (strcmp(who, "t") == 0 && strcmp(name, "acme") == 0)
        return start == T("2026-11-01") ? 1234 : 5;
    return -7; /* unknown: counts as nothing */
}

static void test_spent_source(void **state)
{
    (void)state;
    assert_int_equal(cmx_budget_spent("t", "acme", 1, 2), 0); /* no source yet */
    cmx_budget_set_spent_source(fake_spent, NULL);
    int64_t s = T("2026-11-01"), e = T("2026-12-01");
    assert_int_equal(cmx_budget_spent("t", "acme", s, e), 1234);
    assert_int_equal(cmx_budget_spent("t", "acme", s, e), 1234);
    assert_int_equal(calls, 1); /* asked once per account and period */
    assert_int_equal(cmx_budget_spent("t", "acme", e, T("2027-01-01")), 5);
    assert_int_equal(cmx_budget_spent("k", "key_1", s, e), 0);
    assert_int_equal(calls, 3);
    cmx_budget_set_spent_source(NULL, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_periods),
        cmocka_unit_test(test_estimates),
        cmocka_unit_test(test_spent_source),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
