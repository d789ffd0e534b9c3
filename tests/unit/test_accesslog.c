/* Unit tests for src/obs/accesslog.c: the exact text of access-log lines. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "obs/accesslog.h"

/* Writes e through a log on a temporary file and returns the text (static buffer). */
static const char *line_of(struct cmx_accesslog *l, FILE *f, const struct cmx_access_entry *e)
{
    static char text[1024];
    cmx_accesslog_write(l, e);
    cmx_accesslog_flush(l);
    rewind(f);
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    text[n] = '\0';
    assert_int_equal(ftruncate(fileno(f), 0), 0);
    rewind(f);
    return text;
}

static void test_lines(void **state)
{
    (void)state;
    FILE *f = tmpfile();
    assert_non_null(f);
    struct cmx_accesslog l;
    cmx_accesslog_init(&l, fileno(f), true);

    struct cmx_access_entry e = {
        .time_ms = 1795392000123ULL, /* 2026-11-23T00:00:00.123Z */
        .request_id = "req_\"1\"",
        .method = "POST",
        .path = "/v1/chat/completions",
        .model = "gpt-5",
        .provider = "azure-eastus",
        .status = 200,
        .latency_us = 1234567,
        .upstream_latency_us = 5,
        .ttfb_us = 0,
        .prompt_tokens = 1200,
        .completion_tokens = 0,
        .cached_tokens = -1,
        .attempts = 2,
        .stream = true,
        .error = NULL,
    };
    assert_string_equal(
        line_of(&l, f, &e),
        "{\"time\":\"2026-11-23T00:00:00.123Z\",\"request_id\":\"req_\\\"1\\\"\",\"method\":"
        "\"POST\",\"path\":\"/v1/chat/completions\",\"model\":\"gpt-5\",\"provider\":"
        "\"azure-eastus\",\"status\":200,\"latency_ms\":1234.567,\"upstream_latency_ms\":0.005,"
        "\"ttfb_ms\":0.000,\"prompt_tokens\":1200,\"completion_tokens\":0,\"cached_tokens\":null,"
        "\"attempts\":2,\"stream\":true,\"error\":null}\n");

    /* the same second (cached prefix), then the next second; nulls; an error code */
    e.time_ms = 1795392000999ULL;
    e.model = e.provider = NULL;
    e.upstream_latency_us = e.ttfb_us = e.prompt_tokens = e.completion_tokens = -1;
    e.status = 499;
    e.latency_us = 1000;
    e.attempts = 0;
    e.stream = false;
    e.error = "client_closed";
    assert_string_equal(line_of(&l, f, &e),
                        "{\"time\":\"2026-11-23T00:00:00.999Z\",\"request_id\":\"req_\\\"1\\\"\","
                        "\"method\":\"POST\",\"path\":\"/v1/chat/completions\",\"model\":null,"
                        "\"provider\":null,\"status\":499,\"latency_ms\":1.000,"
                        "\"upstream_latency_ms\":null,\"ttfb_ms\":null,\"prompt_tokens\":null,"
                        "\"completion_tokens\":null,\"cached_tokens\":null,\"attempts\":0,"
                        "\"stream\":false,\"error\":\"client_closed\"}\n");
    e.time_ms = 1795392001000ULL;
    e.tenant = "acme";
    e.key_id = "key_0123456789abcdef";
    const char *t = line_of(&l, f, &e);
    assert_memory_equal(t, "{\"time\":\"2026-11-23T00:00:01.000Z\"", 34);
    assert_non_null(strstr(t, ",\"error\":\"client_closed\",\"tenant\":\"acme\","
                              "\"key_id\":\"key_0123456789abcdef\"}\n"));

    /* a client's raw bytes in the path: valid UTF-8 kept as is, anything else U+FFFD, so the
     * line stays valid JSON (a cut sequence, a stray continuation byte, an overlong, 0xff) */
    e.tenant = e.key_id = NULL;
    e.path = "/v1/models/caf\xc3\xa9-\xe2\x82\xac|\xc3|\x80|\xc0\xaf|\xff\xfe|\xf0\x9f\x98\x80";
    t = line_of(&l, f, &e);
    assert_non_null(strstr(t, "\"path\":\"/v1/models/caf\xc3\xa9-\xe2\x82\xac|\\ufffd|\\ufffd|"
                              "\\ufffd\\ufffd|\\ufffd\\ufffd|\xf0\x9f\x98\x80\","));

    /* disabled: nothing */
    cmx_accesslog_free(&l);
    cmx_accesslog_init(&l, fileno(f), false);
    assert_string_equal(line_of(&l, f, &e), "");
    cmx_accesslog_free(&l);
    fclose(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
