/* Unit tests for src/core/decimal.c: exact decimal text <-> scaled int64. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "core/decimal.h"
#include "core/err.h"

static int parse6(const char *s, int64_t *out)
{
    return cmx_decimal_parse(s, strlen(s), 6, out);
}

static void assert_parses(const char *s, int scale, int64_t want)
{
    int64_t v = 0x5a5a;
    int rc = cmx_decimal_parse(s, strlen(s), scale, &v);
    if (rc != 0)
        fail_msg("\"%s\" at scale %d: rc %d", s, scale, rc);
    if (v != want)
        fail_msg("\"%s\" at scale %d: got %lld, want %lld", s, scale, (long long)v,
                 (long long)want);
}

static void assert_rejects(const char *s, int scale)
{
    int64_t v = 777;
    int rc = cmx_decimal_parse(s, strlen(s), scale, &v);
    if (rc != CMX_EINVAL)
        fail_msg("\"%s\" at scale %d: rc %d, want CMX_EINVAL", s, scale, rc);
    assert_int_equal(v, 777); /* untouched on failure */
}

static void test_parse_valid(void **state)
{
    (void)state;
    assert_parses("2.50", 6, 2500000);
    assert_parses("0.075", 6, 75000);
    assert_parses("1000000.00", 6, INT64_C(1000000000000));
    assert_parses("-1.5", 6, -1500000);
    assert_parses("-0.075", 6, -75000);
    assert_parses("10", 6, 10000000);
    assert_parses("0", 6, 0);
    assert_parses("-0", 6, 0);
    assert_parses("0.000001", 6, 1);
    assert_parses("007.5", 6, 7500000);
    assert_parses("1.0000000", 6, 1000000); /* extra fraction digits that are zeros */
    assert_parses("2.5000000000000000000000", 6, 2500000);
    assert_parses("42", 0, 42);
    assert_parses("42.000", 0, 42);
    assert_parses("1.5", 1, 15);
    assert_parses("0.000000000000000001", 18, 1);
}

static void test_parse_invalid(void **state)
{
    (void)state;
    assert_rejects("", 6);
    assert_rejects(".", 6);
    assert_rejects("-", 6);
    assert_rejects("1e3", 6);
    assert_rejects("1E3", 6);
    assert_rejects("1.2.3", 6);
    assert_rejects("1.0000001", 6); /* a non-zero digit beyond the scale */
    assert_rejects("+1", 6);        /* documented: no plus sign */
    assert_rejects(".5", 6);        /* documented: a digit before the point */
    assert_rejects("5.", 6);        /* documented: a digit after the point */
    assert_rejects(" 1", 6);
    assert_rejects("1 ", 6);
    assert_rejects("1,5", 6);
    assert_rejects("--1", 6);
    assert_rejects("1-", 6);
    assert_rejects("0x10", 6);
    assert_rejects("inf", 6);
    assert_rejects("NaN", 6);
    assert_rejects("1.5", 0); /* scale 0: only zeros after the point */
    assert_rejects("1", -1);
    assert_rejects("1", CMX_DECIMAL_MAX_SCALE + 1);
}

static void test_parse_overflow(void **state)
{
    (void)state;
    /* INT64_MAX = 9223372036854775807 */
    assert_parses("9223372036854775807", 0, INT64_MAX);
    assert_parses("-9223372036854775808", 0, INT64_MIN);
    assert_rejects("9223372036854775808", 0);
    assert_rejects("-9223372036854775809", 0);
    assert_rejects("99999999999999999999999", 0);
    assert_parses("9223372036854.775807", 6, INT64_MAX);
    assert_parses("-9223372036854.775808", 6, INT64_MIN);
    assert_rejects("9223372036854.775808", 6);
    assert_rejects("9223372036855", 6); /* overflows only once scaled */
    assert_rejects("10", 18);           /* 10 * 10^18 > INT64_MAX */
    assert_parses("9.223372036854775807", 18, INT64_MAX);
}

static void test_parse_uses_len(void **state)
{
    int64_t v = 0;
    (void)state;
    /* Only len bytes are read: "2.5" out of "2.50xyz" with len 3. */
    assert_int_equal(cmx_decimal_parse("2.50xyz", 3, 6, &v), 0);
    assert_int_equal(v, 2500000);
    /* An embedded NUL inside len is rejected. */
    assert_int_equal(cmx_decimal_parse("1\0"
                                       "5",
                                       3, 6, &v),
                     CMX_EINVAL);
    assert_int_equal(parse6("3", &v), 0);
    assert_int_equal(v, 3000000);
}

static void assert_formats(int64_t v, int scale, const char *want)
{
    char buf[32];
    size_t n = cmx_decimal_format(v, scale, buf, sizeof(buf));
    assert_string_equal(buf, want);
    assert_int_equal(n, strlen(want));
}

static void test_format(void **state)
{
    (void)state;
    assert_formats(2500000, 6, "2.500000");
    assert_formats(12345678, 6, "12.345678");
    assert_formats(75000, 6, "0.075000");
    assert_formats(1, 6, "0.000001");
    assert_formats(0, 6, "0.000000");
    assert_formats(-1500000, 6, "-1.500000");
    assert_formats(-1, 6, "-0.000001");
    assert_formats(42, 0, "42");
    assert_formats(-42, 0, "-42");
    assert_formats(0, 0, "0");
    assert_formats(15, 1, "1.5");
    assert_formats(INT64_MAX, 6, "9223372036854.775807");
    assert_formats(INT64_MIN, 6, "-9223372036854.775808");
    assert_formats(INT64_MAX, 0, "9223372036854775807");
    assert_formats(INT64_MIN, 0, "-9223372036854775808");
    assert_formats(INT64_MIN, 18, "-9.223372036854775808");
    assert_formats(1, 18, "0.000000000000000001");
}

static void test_format_small_buffer(void **state)
{
    char buf[5];
    (void)state;
    /* Truncated but always NUL-terminated. */
    assert_int_equal(cmx_decimal_format(12345678, 6, buf, sizeof(buf)), 4);
    assert_string_equal(buf, "12.3");
    memcpy(buf, "xxxx", 5);
    assert_int_equal(cmx_decimal_format(1, -1, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "");
    assert_int_equal(cmx_decimal_format(1, 6, buf, 0), 0);
}

static void test_round_trip(void **state)
{
    static const int64_t values[] = {
        0,
        1,
        -1,
        9,
        10,
        -10,
        999999,
        1000000,
        -1000000,
        2500000,
        -2500000,
        75000,
        123456789012,
        -123456789012,
        INT64_MAX,
        INT64_MIN,
        INT64_MAX - 1,
        INT64_MIN + 1,
    };
    (void)state;
    for (int scale = 0; scale <= CMX_DECIMAL_MAX_SCALE; scale++) {
        for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
            char buf[32];
            int64_t back = 0;
            size_t n = cmx_decimal_format(values[i], scale, buf, sizeof(buf));
            assert_true(n > 0 && n < sizeof(buf));
            if (cmx_decimal_parse(buf, n, scale, &back) != 0 || back != values[i])
                fail_msg("round trip of %lld at scale %d via \"%s\" failed", (long long)values[i],
                         scale, buf);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_valid),    cmocka_unit_test(test_parse_invalid),
        cmocka_unit_test(test_parse_overflow), cmocka_unit_test(test_parse_uses_len),
        cmocka_unit_test(test_format),         cmocka_unit_test(test_format_small_buffer),
        cmocka_unit_test(test_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
