/* Unit tests for src/http/query.c: query-string parameters. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "core/arena.h"
#include "core/err.h"
#include "http/query.h"

static void want_value(const char *q, const char *name, const char *want)
{
    struct cmx_arena a;
    const char *v = NULL;
    cmx_arena_init(&a);
    int rc = cmx_query_get(q, name, &a, &v);
    if (rc != 0)
        fail_msg("%s in \"%s\": rc %d", name, q, rc);
    if (strcmp(v, want) != 0)
        fail_msg("%s in \"%s\": got \"%s\", want \"%s\"", name, q, v, want);
    cmx_arena_reset(&a);
}

static void want_rc(const char *q, const char *name, int want)
{
    struct cmx_arena a;
    const char *v = NULL;
    cmx_arena_init(&a);
    int rc = cmx_query_get(q, name, &a, &v);
    if (rc != want)
        fail_msg("%s in \"%s\": rc %d, want %d", name, q, rc, want);
    cmx_arena_reset(&a);
}

static void test_values(void **state)
{
    (void)state;
    want_value("at=2026-12-01", "at", "2026-12-01");
    want_value("cloud=aws&at=2026-12-01T00%3A00%3A00Z", "at", "2026-12-01T00:00:00Z");
    want_value("a=1&b=2&a=3", "a", "1");   /* the first wins */
    want_value("q=a+b%20c", "q", "a b c"); /* '+' and %20 are spaces */
    want_value("flag&x=1", "flag", "");    /* no '=' */
    want_value("x=", "x", "");
    want_value("%61t=now", "at", "now");            /* names are decoded too */
    want_value("x=%e2%82%AC", "x", "\xe2\x82\xac"); /* either hex case */
    want_value("atx=1&at=2", "at", "2");            /* no prefix matches */
    want_value("at=1&", "at", "1");
}

static void test_absent_and_bad(void **state)
{
    (void)state;
    want_rc("", "at", CMX_ENOTFOUND);
    want_rc("cloud=aws", "at", CMX_ENOTFOUND);
    want_rc("&&", "at", CMX_ENOTFOUND);
    want_rc("at=%", "at", CMX_EINVAL);
    want_rc("at=%4", "at", CMX_EINVAL);
    want_rc("at=%zz", "at", CMX_EINVAL);
    want_rc("at=a%00b", "at", CMX_EINVAL); /* no NUL inside a C string */
    want_rc("x=%zz&at=1", "at", 0);        /* other parameters are not judged */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_absent_and_bad),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
