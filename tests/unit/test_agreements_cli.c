/* Unit tests for `cloudmux agreements` (src/cli/agreements.c), run in-process on
 * examples/partnership.yaml: output and exit codes of check, matrix and timeline in every
 * format, and usage errors. Also the admin API's check JSON. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agreements/agreements.h"
#include "cli/cli.h"
#include "config/config.h"
#include "core/buf.h"
#include "core/err.h"

#define EXAMPLE "examples/partnership.yaml"

static char out_text[1 << 16], err_text[1 << 16];

static void slurp(const char *path, char *dst, size_t cap)
{
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(dst, 1, cap - 1, f) : 0;
    dst[n] = '\0';
    if (f)
        fclose(f);
}

/* Runs `cloudmux agreements ARGS...` (NULL-terminated) with stdout/stderr captured into
 * out_text / err_text; returns the exit code. */
static int run(const char *first, ...)
{
    char *argv[32];
    int argc = 0;
    va_list ap;
    char out_path[] = "/tmp/cmx_agr_out_XXXXXX", err_path[] = "/tmp/cmx_agr_err_XXXXXX";
    int ofd = mkstemp(out_path), efd = mkstemp(err_path);

    argv[argc++] = (char *)"agreements";
    va_start(ap, first);
    for (const char *a = first; a != NULL && argc < 31; a = va_arg(ap, const char *))
        argv[argc++] = (char *)a;
    va_end(ap);
    argv[argc] = NULL;

    fflush(stdout);
    fflush(stderr);
    int so = dup(1), se = dup(2);
    dup2(ofd, 1);
    dup2(efd, 2);
    int rc = cmx_cli_agreements(argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(so, 1);
    dup2(se, 2);
    close(so);
    close(se);
    close(ofd);
    close(efd);
    slurp(out_path, out_text, sizeof(out_text));
    slurp(err_path, err_text, sizeof(err_text));
    unlink(out_path);
    unlink(err_path);
    return rc;
}

static void test_check(void **state)
{
    (void)state;
    assert_int_equal(run("check", "--config", EXAMPLE, "--model", "gpt-6", "--cloud", "aws", "--at",
                         "2026-12-01", NULL),
                     3);
    assert_string_equal(out_text, "denied not_launched: gpt-6 has not launched on aws; aws may "
                                  "serve it from 2026-12-15\n");
    assert_string_equal(err_text, "");

    assert_int_equal(run("check", "--config", EXAMPLE, "--product", "gpt-6", "--cloud", "aws",
                         "--at", "2026-12-15", NULL),
                     0);
    assert_string_equal(out_text, "allowed: aws may serve gpt-6 [microsoft@2026-10-28, "
                                  "amazon@2026-03-01]; next change 2031-03-01\n");

    /* the exclusive licence, at the last millisecond before the amendment */
    assert_int_equal(run("check", "--config=" EXAMPLE, "--product=gpt-5", "--cloud=aws",
                         "--at=2026-10-27T23:59:59.999Z", NULL),
                     3);
    assert_string_equal(out_text, "denied exclusive_to_other: gpt-5 is licensed exclusively to "
                                  "azure through 2030-12-31 (microsoft@2019-07-22); aws may serve "
                                  "it from 2026-10-28\n");

    /* the opted-out product is served by AWS at once, never by Azure */
    assert_int_equal(run("check", "--config", EXAMPLE, "--model", "gpt-realtime", "--cloud", "aws",
                         "--capability", "chat,audio", "--at", "2026-11-01", NULL),
                     0);
    assert_int_equal(run("check", "--config", EXAMPLE, "--product", "gpt-realtime", "--cloud",
                         "azure", "--at", "2026-11-01", NULL),
                     3);
    assert_string_equal(out_text, "denied not_launched: gpt-realtime has not launched on the "
                                  "primary cloud azure; azure may not serve it under the current "
                                  "terms\n");

    /* the licence ends (inclusive) */
    assert_int_equal(run("check", "--config", EXAMPLE, "--model", "gpt-5", "--cloud", "azure",
                         "--at", "2032-12-31T23:59:59.999Z", NULL),
                     0);
    assert_int_equal(run("check", "--config", EXAMPLE, "--model", "gpt-5", "--cloud", "azure",
                         "--at", "2033-01-01", NULL),
                     3);
    assert_string_equal(out_text, "denied licence_expired: azure's licence for gpt-5 ended on "
                                  "2032-12-31 (microsoft@2026-10-28); azure may not serve it "
                                  "under the current terms\n");

    /* the maker's own cloud, and an ungoverned model */
    assert_int_equal(run("check", "--config", EXAMPLE, "--model", "gpt-5", "--cloud", "openai",
                         "--at", "2040-01-01", NULL),
                     0);
    assert_string_equal(out_text, "allowed: openai may serve gpt-5 as the maker's own cloud\n");
    assert_int_equal(
        run("check", "--config", EXAMPLE, "--model", "llama-3.1-8b", "--cloud", "gcp", NULL), 0);
    assert_string_equal(out_text, "allowed: model llama-3.1-8b is not governed by any agreement\n");

    /* a capability opt-out is per capability; embeddings product defaults to embeddings */
    assert_int_equal(run("check", "--config", EXAMPLE, "--model", "embeddings", "--cloud", "aws",
                         "--at", "2026-11-01", NULL),
                     0);

    /* errors: 1 for unknown names, 2 for usage */
    assert_int_equal(run("check", "--config", EXAMPLE, "--model", "gpt-5", "--cloud", "moon", NULL),
                     1);
    assert_string_equal(err_text, "cloudmux agreements check: no cloud named \"moon\" appears in "
                                  "the configuration\n");
    assert_int_equal(
        run("check", "--config", EXAMPLE, "--product", "gpt-9", "--cloud", "aws", NULL), 1);
    assert_string_equal(err_text,
                        "cloudmux agreements check: no product named \"gpt-9\" is defined\n");
    assert_int_equal(run("check", "--config", EXAMPLE, "--model", "gpt-9", "--cloud", "aws", NULL),
                     1);
    assert_int_equal(run("check", "--config", EXAMPLE, "--model", "gpt-5", "--cloud", "aws",
                         "--capability", "smell", NULL),
                     1);
    assert_int_equal(run("check", "--config", EXAMPLE, "--model", "gpt-5", "--cloud", "aws",
                         "--product", "gpt-5", NULL),
                     2);
    assert_int_equal(run("check", "--config", EXAMPLE, "--model", "gpt-5", NULL), 2);
    assert_int_equal(run("check", "--config", EXAMPLE, "--model", "gpt-5", "--cloud", "aws", "--at",
                         "tomorrow", NULL),
                     2);
    assert_non_null(strstr(err_text, "--at must be a UTC date"));
    assert_int_equal(run("check", "--config", EXAMPLE, "--model", "gpt-5", "--cloud", "aws",
                         "--format", "json", NULL),
                     2);
    assert_int_equal(
        run("check", "--config", "/nonexistent.yaml", "--model", "gpt-5", "--cloud", "aws", NULL),
        1);
    assert_non_null(strstr(err_text, "/nonexistent.yaml: error: cannot read"));
}

static void test_matrix(void **state)
{
    (void)state;
    assert_int_equal(run("matrix", "--config", EXAMPLE, "--at", "2026-12-01", NULL), 0);
    assert_string_equal(out_text,
                        "at 2026-12-01T00:00:00Z (maker: openai)\n"
                        "PRODUCT           aws           azure         gcp           openai\n"
                        "gpt-5             allowed       allowed       allowed       allowed\n"
                        "gpt-6             not_launched  not_launched  not_launched  "
                        "not_launched\n"
                        "gpt-realtime      allowed       not_launched  no_licence    allowed\n"
                        "text-embedding-4  allowed       allowed       no_licence    allowed\n");

    assert_int_equal(
        run("matrix", "--config", EXAMPLE, "--at", "2026-09-01", "--format", "csv", NULL), 0);
    assert_string_equal(out_text,
                        "product,aws,azure,gcp,openai\r\n"
                        "gpt-5,exclusive_to_other,allowed,exclusive_to_other,allowed\r\n"
                        "gpt-6,exclusive_to_other,not_launched,exclusive_to_other,not_launched\r\n"
                        "gpt-realtime,exclusive_to_other,not_launched,exclusive_to_other,"
                        "not_launched\r\n"
                        "text-embedding-4,exclusive_to_other,not_launched,exclusive_to_other,"
                        "not_launched\r\n");

    assert_int_equal(
        run("matrix", "--config", EXAMPLE, "--at", "2026-12-01", "--format", "json", NULL), 0);
    struct json_object *o = json_tokener_parse(out_text), *cells, *v;
    assert_non_null(o);
    assert_true(json_object_object_get_ex(o, "cells", &cells));
    assert_int_equal(json_object_array_length(cells), 16);
    /* every cell names its product and cloud */
    for (size_t i = 0; i < 16; i++) {
        struct json_object *cell = json_object_array_get_idx(cells, i);
        assert_true(json_object_object_get_ex(cell, "product", &v));
        assert_true(json_object_object_get_ex(cell, "cloud", &v));
    }
    struct json_object *cell = json_object_array_get_idx(cells, 4); /* gpt-6 on aws */
    json_object_object_get_ex(cell, "product", &v);
    assert_string_equal(json_object_get_string(v), "gpt-6");
    json_object_object_get_ex(cell, "decision", &v);
    assert_string_equal(json_object_get_string(v), "denied");
    json_object_object_get_ex(cell, "reason", &v);
    assert_string_equal(json_object_get_string(v), "not_launched");
    json_object_object_get_ex(cell, "next_change", &v);
    assert_string_equal(json_object_get_string(v), "2026-12-15T00:00:00Z");
    json_object_put(o);

    /* no time given: now */
    assert_int_equal(run("matrix", "--config", EXAMPLE, NULL), 0);
    assert_int_equal(strncmp(out_text, "at 20", 5), 0);

    assert_int_equal(run("matrix", "--config", EXAMPLE, "--format", "xml", NULL), 2);
    assert_int_equal(run("matrix", "--config", EXAMPLE, "--cloud", "aws", NULL), 2);
    assert_int_equal(run("matrix", NULL), 2);
}

static void test_timeline(void **state)
{
    (void)state;
    assert_int_equal(
        run("timeline", "--config", EXAMPLE, "--product", "gpt-6", "--format", "csv", NULL), 0);
    assert_string_equal(
        out_text,
        "date,product,cloud,from,to,reason,agreement\r\n"
        "2019-07-22,gpt-6,aws,no_licence,exclusive_to_other,gpt-6 is licensed exclusively to "
        "azure through 2030-12-31,microsoft@2019-07-22\r\n"
        "2019-07-22,gpt-6,azure,no_licence,not_launched,gpt-6 has not launched on azure,\r\n"
        "2019-07-22,gpt-6,gcp,no_licence,exclusive_to_other,gpt-6 is licensed exclusively to "
        "azure through 2030-12-31,microsoft@2019-07-22\r\n"
        "2026-10-28,gpt-6,aws,exclusive_to_other,not_launched,gpt-6 has not launched on "
        "aws,microsoft@2026-10-28\r\n"
        "2026-10-28,gpt-6,gcp,exclusive_to_other,not_launched,gpt-6 has not launched on "
        "gcp,microsoft@2026-10-28\r\n"
        "2026-12-15,gpt-6,aws,not_launched,allowed,gpt-6 launches on aws,amazon@2026-03-01\r\n"
        "2026-12-15,gpt-6,azure,not_launched,allowed,gpt-6 launches on "
        "azure,microsoft@2026-10-28\r\n"
        "2026-12-15,gpt-6,openai,not_launched,allowed,gpt-6 launches on openai,\r\n"
        "2027-01-15,gpt-6,gcp,not_launched,allowed,gpt-6 launches on gcp,google@2026-06-01\r\n"
        "2028-01-01,gpt-6,gcp,allowed,licence_expired,gcp's licence for gpt-6 ended on "
        "2027-12-31,google@2026-06-01\r\n"
        "2031-03-01,gpt-6,aws,allowed,licence_expired,aws's licence for gpt-6 ended on "
        "2031-02-28,amazon@2026-03-01\r\n"
        "2033-01-01,gpt-6,azure,allowed,licence_expired,azure's licence for gpt-6 ended on "
        "2032-12-31,microsoft@2026-10-28\r\n");

    assert_int_equal(run("timeline", "--config", EXAMPLE, "--format", "json", NULL), 0);
    struct json_object *o = json_tokener_parse(out_text), *changes;
    assert_non_null(o);
    assert_true(json_object_object_get_ex(o, "changes", &changes));
    assert_true(json_object_array_length(changes) > 30);
    json_object_put(o);

    assert_int_equal(run("timeline", "--config", EXAMPLE, NULL), 0);
    assert_int_equal(strncmp(out_text, "DATE        PRODUCT", 19), 0);

    assert_int_equal(run("timeline", "--config", EXAMPLE, "--product", "gpt-9", NULL), 1);
    assert_int_equal(run("timeline", "--config", EXAMPLE, "--at", "2026-01-01", NULL), 2);
}

static void test_usage(void **state)
{
    (void)state;
    assert_int_equal(run(NULL), 2);
    assert_int_equal(run("--help", NULL), 0);
    assert_non_null(strstr(out_text, "usage: cloudmux agreements check"));
    assert_int_equal(run("matrix", "-h", NULL), 0);
    assert_int_equal(run("audit", "--config", EXAMPLE, NULL), 2);
    assert_int_equal(run("matrix", "--config", EXAMPLE, "--bogus", NULL), 2);
    assert_int_equal(run("matrix", "--config", NULL), 2);
}

static void test_check_json(void **state)
{
    struct cmx_config *cfg = NULL;
    struct cmx_buf b;
    char err[256];
    (void)state;

    assert_int_equal(cmx_config_load(EXAMPLE, &cfg, NULL), 0);
    cmx_buf_init(&b, 1 << 20);
    assert_int_equal(cmx_agreements_check_json(cfg, NULL, "gpt-6", "aws", NULL,
                                               UINT64_C(1796083200000) /* 2026-12-01 */, &b, err,
                                               sizeof(err)),
                     0);
    assert_string_equal(b.data,
                        "{\"product\":\"gpt-6\",\"model\":\"gpt-6\",\"cloud\":\"aws\","
                        "\"capabilities\":[\"chat\"],\"at\":\"2026-12-01T00:00:00Z\","
                        "\"governed\":true,\"decision\":\"denied\",\"reason\":\"not_launched\","
                        "\"message\":\"gpt-6 has not launched on aws\",\"agreement\":null,"
                        "\"next_change\":\"2026-12-15T00:00:00Z\",\"applied\":"
                        "\"microsoft@2026-10-28, amazon@2026-03-01\",\"may_serve_from\":"
                        "\"2026-12-15T00:00:00Z\"}\n");
    cmx_buf_reset(&b);
    assert_int_equal(cmx_agreements_check_json(cfg, NULL, "llama-3.1-8b", "gcp", "chat,tools", 0,
                                               &b, err, sizeof(err)),
                     0);
    assert_non_null(strstr(b.data, "\"governed\":false,\"decision\":\"allowed\""));
    struct json_object *o = json_tokener_parse(b.data);
    assert_non_null(o);
    json_object_put(o);
    cmx_buf_reset(&b);
    assert_int_equal(
        cmx_agreements_check_json(cfg, "gpt-5", "gpt-5", "aws", NULL, 0, &b, err, sizeof(err)),
        CMX_EINVAL);
    assert_string_equal(err, "give either a product or a model");
    assert_int_equal(
        cmx_agreements_check_json(cfg, "gpt-5", NULL, NULL, NULL, 0, &b, err, sizeof(err)),
        CMX_EINVAL);
    assert_int_equal(
        cmx_agreements_check_json(cfg, "nope", NULL, "aws", NULL, 0, &b, err, sizeof(err)),
        CMX_ENOTFOUND);
    assert_int_equal(b.len, 0);
    cmx_buf_free(&b);
    cmx_config_unref(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check),      cmocka_unit_test(test_matrix),
        cmocka_unit_test(test_timeline),   cmocka_unit_test(test_usage),
        cmocka_unit_test(test_check_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
