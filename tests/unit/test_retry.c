/* Retry rules: statuses, the three retry-after header forms, x-should-retry, backoff. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "router/retry.h"

static struct cmx_http_header hdr(const char *n, const char *v)
{
    struct cmx_http_header h = {n, strlen(n), v, strlen(v)};
    return h;
}

static void test_statuses(void **state)
{
    int yes[] = {408, 409, 429, 500, 502, 503, 504, 529};
    int no[] = {200, 400, 401, 403, 404, 413, 422, 501, 505};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        assert_true(cmx_retry_status(yes[i]));
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        assert_false(cmx_retry_status(no[i]));
}

static void test_retry_after_ms(void **state)
{
    struct cmx_retry_hint h;
    struct cmx_http_header hs[] = {hdr("retry-after", "30"), hdr("retry-after-ms", "250")};
    cmx_retry_hint_parse(hs, 2, 0, &h);
    assert_int_equal(h.after_ms, 250); /* -ms wins over seconds */
    struct cmx_http_header frac[] = {hdr("retry-after-ms", "12.7")};
    cmx_retry_hint_parse(frac, 1, 0, &h);
    assert_int_equal(h.after_ms, 12);
    struct cmx_http_header bad[] = {hdr("retry-after-ms", "soon"), hdr("retry-after", "2")};
    cmx_retry_hint_parse(bad, 2, 0, &h);
    assert_int_equal(h.after_ms, 2000);
}

static void test_retry_after_seconds(void **state)
{
    struct cmx_retry_hint h;
    struct cmx_http_header s[] = {hdr("retry-after", "7")};
    cmx_retry_hint_parse(s, 1, 0, &h);
    assert_int_equal(h.after_ms, 7000);
    struct cmx_http_header f[] = {hdr("retry-after", "1.5")};
    cmx_retry_hint_parse(f, 1, 0, &h);
    assert_int_equal(h.after_ms, 1500);
    struct cmx_http_header huge[] = {hdr("retry-after", "51001111111100111999999")};
    cmx_retry_hint_parse(huge, 1, 0, &h);
    assert_true(h.after_ms > 0); /* saturates instead of overflowing */
    struct cmx_http_header hugems[] = {hdr("retry-after-ms", "99999999999999999999.5")};
    cmx_retry_hint_parse(hugems, 1, 0, &h);
    assert_true(h.after_ms > 0);
    struct cmx_http_header none[] = {hdr("x-other", "1")};
    cmx_retry_hint_parse(none, 1, 0, &h);
    assert_int_equal(h.after_ms, -1);
    assert_int_equal(h.should, -1);
}

static void test_retry_after_date(void **state)
{
    uint64_t t;
    assert_int_equal(cmx_http_date_parse("Sun, 06 Nov 1994 08:49:37 GMT", &t), 0);
    assert_int_equal(t, 784111777000ull);
    assert_int_equal(cmx_http_date_parse("Sunday, 06-Nov-94 08:49:37 GMT", &t), 0);
    assert_int_equal(t, 784111777000ull);
    assert_int_equal(cmx_http_date_parse("Sun Nov  6 08:49:37 1994", &t), 0);
    assert_int_equal(t, 784111777000ull);
    assert_int_not_equal(cmx_http_date_parse("yesterday", &t), 0);

    struct cmx_retry_hint h;
    struct cmx_http_header d[] = {hdr("retry-after", "Sun, 06 Nov 1994 08:49:40 GMT")};
    cmx_retry_hint_parse(d, 1, 784111777000ull, &h);
    assert_int_equal(h.after_ms, 3000);
    cmx_retry_hint_parse(d, 1, 784111790000ull, &h); /* already past: retry now */
    assert_int_equal(h.after_ms, 0);
}

static void test_should_retry(void **state)
{
    struct cmx_retry_hint h;
    struct cmx_http_header t[] = {hdr("x-should-retry", "true")};
    cmx_retry_hint_parse(t, 1, 0, &h);
    assert_int_equal(h.should, 1);
    struct cmx_http_header f[] = {hdr("x-should-retry", "false")};
    cmx_retry_hint_parse(f, 1, 0, &h);
    assert_int_equal(h.should, 0);
}

static void test_backoff(void **state)
{
    /* full jitter: within [0, min(cap, base*2^(n-1))], and it spans that range */
    for (int attempt = 1; attempt <= 8; attempt++) {
        uint64_t ceil = 100u << (attempt - 1);
        if (ceil > 2000)
            ceil = 2000;
        uint64_t lo = UINT64_MAX, hi = 0;
        for (uint64_t r = 0; r < 5000; r++) {
            uint64_t v = cmx_backoff_ms(attempt, 100, 2000, r * 2654435761u);
            assert_true(v <= ceil);
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
        }
        assert_true(lo < ceil / 10 + 1);
        assert_true(hi > ceil - ceil / 10 - 1);
    }
    assert_int_equal(cmx_backoff_ms(3, 0, 2000, 12345), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_statuses),
        cmocka_unit_test(test_retry_after_ms),
        cmocka_unit_test(test_retry_after_seconds),
        cmocka_unit_test(test_retry_after_date),
        cmocka_unit_test(test_should_retry),
        cmocka_unit_test(test_backoff),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
