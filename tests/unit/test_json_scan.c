/* Unit tests for src/core/json_scan.c: validity tables (JSONTestSuite-style), depth,
 * member spans, key lookup with escapes and duplicates, string decoding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/buf.h"
#include "core/err.h"
#include "core/json_scan.h"

struct bytes {
    const char *s;
    size_t len;
};

#define B(lit)                                                                                     \
    {                                                                                              \
        lit, sizeof(lit) - 1                                                                       \
    }

static int scan(const char *s, size_t len)
{
    return cmx_json_scan(s, len, NULL, NULL, 0, NULL);
}

static int scan_str(const char *s)
{
    return scan(s, strlen(s));
}

static const struct bytes valid[] = {
    B("0"),
    B("-0"),
    B("1"),
    B("-1"),
    B("123"),
    B("0.5"),
    B("-0.0e+0"),
    B("1e5"),
    B("1E5"),
    B("1e-5"),
    B("1E+05"),
    B("1.5e10"),
    B("1e400"),
    B("-1e-400"),
    B("123456789012345678901234567890"),
    B("9223372036854775807"),
    B("-9223372036854775808"),
    B("18446744073709551615"),
    B("18446744073709551616"),
    B("0.00000000000000000000000000000000000001"),
    B("true"),
    B("false"),
    B("null"),
    B("\"\""),
    B("\"abc\""),
    B("[]"),
    B("{}"),
    B("[[]]"),
    B("[{}]"),
    B("{\"a\":{}}"),
    B(" \t\r\n1 \t\r\n"),
    B(" [ 1 , 2 , 3 ] "),
    B("[1,2,3]"),
    B("[null,true,false,\"x\",1.5,[],{}]"),
    B("{\"a\":1,\"b\":[1,{\"c\":null}],\"d\":\"e\"}"),
    B("{ \"a\" : 1 , \"b\" : 2 }"),
    B("{\"\":0}"),
    B("{\"a\":1,\"a\":2}"),
    B("\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t\""),
    B("\"\\u0000\""),
    B("\"\\u00e9\\u00E9\\uFFFF\""),
    B("\"\\ud83d\\ude00\""),
    B("\"\\ud800\""),          /* lone high surrogate: accepted, decoded as U+FFFD */
    B("\"\\udc00\""),          /* lone low surrogate */
    B("\"\\ud800\\u0041\""),   /* mismatched pair */
    B("\"\x7f\""),             /* DEL is not a control character in JSON */
    B("\"\xc2\x80\""),         /* U+0080 */
    B("\"\xdf\xbf\""),         /* U+07FF */
    B("\"\xe0\xa0\x80\""),     /* U+0800 */
    B("\"\xed\x9f\xbf\""),     /* U+D7FF */
    B("\"\xee\x80\x80\""),     /* U+E000 */
    B("\"\xef\xbf\xbf\""),     /* U+FFFF */
    B("\"\xf0\x90\x80\x80\""), /* U+10000 */
    B("\"\xf4\x8f\xbf\xbf\""), /* U+10FFFF */
    B("\"\xe4\xbd\xa0\xe5\xa5\xbd\xef\xbc\x8c\xe4\xb8\x96\xe7\x95\x8c\""),
    B("\"caf\xc3\xa9 \xf0\x9f\x98\x80 na\xc3\xafve\""),
    B("[\"a\"]"),
    B("{\"key\":\"value with \\\"quotes\\\" and \\\\ backslash\"}"),
};

static const struct bytes invalid[] = {
    B(""),
    B(" "),
    B("\t\n"),
    B("-"),
    B("+1"),
    B("1."),
    B(".5"),
    B("-.5"),
    B("01"),
    B("-01"),
    B("00"),
    B("1.e5"),
    B("1e"),
    B("1e+"),
    B("1E-"),
    B("1.5e"),
    B("0x10"),
    B("1_000"),
    B("NaN"),
    B("Infinity"),
    B("-Infinity"),
    B("nul"),
    B("nulll"),
    B("tru"),
    B("True"),
    B("FALSE"),
    B("n"),
    B("[1,]"),
    B("[,1]"),
    B("[,]"),
    B("[1,,2]"),
    B("{\"a\":1,}"),
    B("{,}"),
    B("{\"a\" 1}"),
    B("{\"a\":}"),
    B("{\"a\"}"),
    B("{a:1}"),
    B("{'a':1}"),
    B("{1:1}"),
    B("{\"a\":1 \"b\":2}"),
    B("[1 2]"),
    B("["),
    B("]"),
    B("{"),
    B("}"),
    B("[}"),
    B("{]"),
    B("[1}"),
    B("{\"a\":1]"),
    B("[[]"),
    B("[]]"),
    B("1 2"),
    B("[] []"),
    B("{}x"),
    B("1,"),
    B("\""),
    B("\"abc"),
    B("'abc'"),
    B("\"a\nb\""),
    B("\"a\tb\""),
    B("\"a\rb\""),
    B("\"\x01\""),
    B("\"\x1f\""),
    B("\"a\0b\""),
    B("1\0"),
    B("\0"),
    B("\"\\x\""),
    B("\"\\U0041\""),
    B("\"\\u00\""),
    B("\"\\u00g0\""),
    B("\"\\"),
    B("\"\\\""),
    B("\"\\u12"),
    B("\"\\'\""),
    B("\"\\a\""),
    B("\"\x80\""),             /* stray continuation byte */
    B("\"\xbf\""),             /* stray continuation byte */
    B("\"\xc0\x80\""),         /* overlong NUL */
    B("\"\xc1\xbf\""),         /* overlong */
    B("\"\xe0\x80\x80\""),     /* overlong 3-byte */
    B("\"\xe0\x9f\xbf\""),     /* overlong 3-byte */
    B("\"\xf0\x80\x80\x80\""), /* overlong 4-byte */
    B("\"\xf0\x8f\xbf\xbf\""), /* overlong 4-byte */
    B("\"\xed\xa0\x80\""),     /* UTF-16 surrogate D800 encoded in UTF-8 */
    B("\"\xed\xbf\xbf\""),     /* DFFF */
    B("\"\xf4\x90\x80\x80\""), /* U+110000 */
    B("\"\xf5\x80\x80\x80\""),
    B("\"\xf8\x88\x80\x80\x80\""),
    B("\"\xfe\""),
    B("\"\xff\""),
    B("\"\xc3\""),         /* truncated 2-byte */
    B("\"\xe4\xbd\""),     /* truncated 3-byte */
    B("\"\xf0\x9f\x98\""), /* truncated 4-byte */
    B("\"\xc3\x28\""),     /* bad continuation */
    B("\"\xe4\x28\xa0\""),
    B("\xef\xbb\xbf{}"), /* BOM */
    B("\xef\xbb\xbf\"a\""),
    B("\f1"),
    B("\v1"),
    B("1\f"),
    B("\xc2\xa0"
      "1"), /* NBSP is not JSON whitespace */
    B("/* c */ 1"),
    B("1 // c"),
    B("[1]/"),
    B("\"a\"\"b\""),
    B("{\"a\":1}{\"b\":2}"),
    B("é"),
    B("[\x80]"),
};

static void test_valid_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
        int r = scan(valid[i].s, valid[i].len);
        if (r != 0)
            fail_msg("valid[%zu] rejected: %s", i, valid[i].s);
    }
}

static void test_invalid_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
        int r = scan(invalid[i].s, invalid[i].len);
        if (r != CMX_EJSON)
            fail_msg("invalid[%zu] returned %d: %s", i, r, invalid[i].s);
    }
}

/* Every valid text stays valid in a buffer with no terminator after it (ASan catches any
 * read past len), and every proper prefix of a container or string is invalid. */
static void test_exact_length_and_prefixes(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
        size_t len = valid[i].len;
        char *copy = malloc(len ? len : 1);
        assert_non_null(copy);
        memcpy(copy, valid[i].s, len);
        assert_int_equal(scan(copy, len), 0);
        char c0 = valid[i].s[strspn(valid[i].s, " \t\r\n")];
        if (c0 == '[' || c0 == '{' || c0 == '"') {
            size_t end = len;
            while (end > 0 && strchr(" \t\r\n", valid[i].s[end - 1]) != NULL)
                end--;
            for (size_t k = 0; k < end; k++)
                assert_int_equal(scan(copy, k), CMX_EJSON);
        }
        free(copy);
    }
}

static void test_top_types(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        enum cmx_json_type t;
    } cases[] = {
        {"null", CMX_JSON_NULL},        {" true", CMX_JSON_TRUE},   {"false ", CMX_JSON_FALSE},
        {"-1.5e3", CMX_JSON_NUMBER},    {"\"x\"", CMX_JSON_STRING}, {"[1]", CMX_JSON_ARRAY},
        {"{\"a\":1}", CMX_JSON_OBJECT}, {"{}", CMX_JSON_OBJECT},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enum cmx_json_type t = CMX_JSON_INVALID;
        size_t n = 99;
        assert_int_equal(cmx_json_scan(cases[i].s, strlen(cases[i].s), &t, NULL, 0, &n), 0);
        assert_int_equal(t, cases[i].t);
        assert_int_equal(n, cases[i].t == CMX_JSON_OBJECT && cases[i].s[1] != '}' ? 1 : 0);
    }
    enum cmx_json_type t = CMX_JSON_OBJECT;
    assert_int_equal(cmx_json_scan("[1,]", 4, &t, NULL, 0, NULL), CMX_EJSON);
    assert_int_equal(t, CMX_JSON_INVALID);
    assert_int_equal(cmx_json_scan(NULL, 0, &t, NULL, 0, NULL), CMX_EJSON);
}

/* depth nested containers, alternating arrays and objects ({"k":...}), around inner. */
static char *nest(size_t depth, const char *inner, size_t *len)
{
    size_t cap = depth * 8 + strlen(inner) + 1, k = 0;
    char *s = malloc(cap);
    assert_non_null(s);
    for (size_t i = 0; i < depth; i++) {
        if (i % 2 == 0) {
            s[k++] = '[';
        } else {
            memcpy(s + k, "{\"k\":", 5);
            k += 5;
        }
    }
    memcpy(s + k, inner, strlen(inner));
    k += strlen(inner);
    for (size_t i = depth; i-- > 0;)
        s[k++] = i % 2 == 0 ? ']' : '}';
    *len = k;
    return s;
}

static void test_depth(void **state)
{
    (void)state;
    size_t len;
    char *s;

    s = nest(CMX_JSON_MAX_DEPTH, "1", &len);
    assert_int_equal(scan(s, len), 0);
    free(s);
    s = nest(CMX_JSON_MAX_DEPTH - 1, "[]", &len);
    assert_int_equal(scan(s, len), 0);
    free(s);
    s = nest(CMX_JSON_MAX_DEPTH + 1, "1", &len);
    assert_int_equal(scan(s, len), CMX_EJSON);
    free(s);
    s = nest(CMX_JSON_MAX_DEPTH, "[]", &len);
    assert_int_equal(scan(s, len), CMX_EJSON);
    free(s);

    /* Objects all the way down, the top one being walked by the member loop. */
    char buf[CMX_JSON_MAX_DEPTH * 8 + 8];
    for (size_t d = CMX_JSON_MAX_DEPTH; d <= CMX_JSON_MAX_DEPTH + 1; d++) {
        size_t k = 0;
        for (size_t i = 0; i < d; i++) {
            memcpy(buf + k, "{\"a\":", 5);
            k += 5;
        }
        buf[k++] = '0';
        for (size_t i = 0; i < d; i++)
            buf[k++] = '}';
        assert_int_equal(scan(buf, k), d <= CMX_JSON_MAX_DEPTH ? 0 : CMX_EJSON);
    }

    /* A hostile body must not exhaust the stack. */
    len = 1000000;
    s = malloc(len);
    assert_non_null(s);
    memset(s, '[', len);
    assert_int_equal(scan(s, len), CMX_EJSON);
    free(s);

    /* Depth is about nesting, not about the number of containers. */
    char wide[4096];
    size_t k = 0;
    wide[k++] = '[';
    for (int i = 0; i < 500; i++) {
        memcpy(wide + k, "[[]],", 5);
        k += 5;
    }
    wide[k - 1] = ']';
    assert_int_equal(scan(wide, k), 0);
}

/* Special bytes at every offset around the 8/16-byte blocks of the string fast path. */
static void test_string_block_boundaries(void **state)
{
    (void)state;
    char buf[80];
    for (size_t len = 0; len < 60; len++) {
        for (size_t pos = 0; pos <= len; pos++) {
            memset(buf, 'a', sizeof(buf));
            buf[0] = '"';
            buf[len + 1] = '"';
            assert_int_equal(scan(buf, len + 2), 0);
            if (pos < len) {
                buf[1 + pos] = '\n';
                assert_int_equal(scan(buf, len + 2), CMX_EJSON);
                buf[1 + pos] = '\x80';
                assert_int_equal(scan(buf, len + 2), CMX_EJSON);
                buf[1 + pos] = '"';
                assert_int_equal(scan(buf, len + 2), CMX_EJSON);
                buf[1 + pos] = '\\';
                assert_int_equal(scan(buf, len + 2), CMX_EJSON);
                buf[1 + pos] = '\x7f';
                assert_int_equal(scan(buf, len + 2), 0);
                if (pos + 1 < len) {
                    buf[1 + pos] = '\\';
                    buf[2 + pos] = 'n';
                    assert_int_equal(scan(buf, len + 2), 0);
                    buf[1 + pos] = '\xc3';
                    buf[2 + pos] = '\xa9';
                    assert_int_equal(scan(buf, len + 2), 0);
                }
            }
            /* Unterminated: the closing quote is missing. */
            assert_int_equal(scan(buf, len + 1), CMX_EJSON);
        }
    }
}

static const char chat_request[] =
    "{\n"
    "  \"model\": \"gpt-4o-mini\",\n"
    "  \"messages\": [\n"
    "    {\"role\": \"system\", \"content\": \"You are a helpful assistant.\"},\n"
    "    {\"role\": \"user\", \"content\": \"Caf\\u00e9 \xe2\x98\x95 \\\"quoted\\\"\"}\n"
    "  ],\n"
    "  \"temperature\": 0.7,\n"
    "  \"seed\": 9007199254740993,\n"
    "  \"max_tokens\": 1e400,\n"
    "  \"stream\": true,\n"
    "  \"stop\": null,\n"
    "  \"stream_options\": {\"include_usage\": true},\n"
    "  \"logit_bias\": {},\n"
    "  \"n\": false\n"
    "}\n";

static void test_members_chat_request(void **state)
{
    (void)state;
    struct cmx_json_member m[16];
    size_t n = 0;
    enum cmx_json_type top;
    const char *s = chat_request;
    size_t len = sizeof(chat_request) - 1;

    assert_int_equal(cmx_json_scan(s, len, &top, m, 16, &n), 0);
    assert_int_equal(top, CMX_JSON_OBJECT);
    assert_int_equal(n, 10);

    static const struct {
        const char *key;
        const char *val;
        enum cmx_json_type type;
    } want[] = {
        {"model", "\"gpt-4o-mini\"", CMX_JSON_STRING},
        {"messages", NULL, CMX_JSON_ARRAY},
        {"temperature", "0.7", CMX_JSON_NUMBER},
        {"seed", "9007199254740993", CMX_JSON_NUMBER},
        {"max_tokens", "1e400", CMX_JSON_NUMBER},
        {"stream", "true", CMX_JSON_TRUE},
        {"stop", "null", CMX_JSON_NULL},
        {"stream_options", "{\"include_usage\": true}", CMX_JSON_OBJECT},
        {"logit_bias", "{}", CMX_JSON_OBJECT},
        {"n", "false", CMX_JSON_FALSE},
    };
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(m[i].key_len, strlen(want[i].key));
        assert_memory_equal(m[i].key, want[i].key, m[i].key_len);
        assert_int_equal(m[i].type, want[i].type);
        if (want[i].val != NULL) {
            assert_int_equal(m[i].val_len, strlen(want[i].val));
            assert_memory_equal(m[i].val, want[i].val, m[i].val_len);
        }
        assert_ptr_equal(m[i].start, m[i].key - 1);
        assert_int_equal(m[i].start[0], '"');
        assert_ptr_equal(m[i].end, m[i].val + m[i].val_len);
        assert_true(m[i].start > s && m[i].end < s + len);
        /* Each member's value span is itself valid JSON. */
        assert_int_equal(scan(m[i].val, m[i].val_len), 0);
        if (i > 0)
            assert_true(m[i].start > m[i - 1].end);
    }
    /* The messages array spans from '[' to its ']'. */
    assert_int_equal(m[1].val[0], '[');
    assert_int_equal(m[1].val[m[1].val_len - 1], ']');
    assert_non_null(strstr(m[1].val, "helpful"));

    /* Splicing: drop "seed" by joining the text around its member span. */
    const struct cmx_json_member *seed = cmx_json_find(m, n, "seed");
    assert_ptr_equal(seed, &m[3]);
    const struct cmx_json_member *model = cmx_json_find(m, n, "model");
    assert_ptr_equal(model, &m[0]);
    assert_null(cmx_json_find(m, n, "tools"));
    assert_null(cmx_json_find(m, n, "mode"));
    assert_null(cmx_json_find(m, n, "models"));
    assert_int_equal(cmx_json_count(m, n, "stream"), 1);
    assert_int_equal(cmx_json_count(m, n, "absent"), 0);
}

static void test_members_limits(void **state)
{
    (void)state;
    struct cmx_json_member m[3];
    size_t n = 99;
    const char *s = "{\"a\":1,\"b\":2,\"c\":3,\"d\":4}";

    assert_int_equal(cmx_json_scan(s, strlen(s), NULL, m, 3, &n), CMX_ETOOBIG);
    assert_int_equal(n, 3);
    /* Validation only: no members array, but the count is still reported. */
    assert_int_equal(cmx_json_scan(s, strlen(s), NULL, NULL, 0, &n), 0);
    assert_int_equal(n, 4);
    /* Invalid JSON is reported as such even when it also has too many members. */
    const char *bad = "{\"a\":1,\"b\":2,\"c\":3,\"d\":4,}";
    assert_int_equal(cmx_json_scan(bad, strlen(bad), NULL, m, 3, &n), CMX_EJSON);
    assert_int_equal(n, 0);
    /* Exactly max members fits. */
    const char *three = "{\"a\":1,\"b\":2,\"c\":3}";
    assert_int_equal(cmx_json_scan(three, strlen(three), NULL, m, 3, &n), 0);
    assert_int_equal(n, 3);
    assert_memory_equal(m[2].key, "c", 1);
    /* Non-object tops report no members. */
    assert_int_equal(cmx_json_scan("[1,2]", 5, NULL, m, 3, &n), 0);
    assert_int_equal(n, 0);
}

static void test_duplicates_and_escaped_keys(void **state)
{
    (void)state;
    struct cmx_json_member m[16];
    size_t n;
    const char *s = "{\"stream\":true,\"model\":\"a\",\"str\\u0065am\":false,"
                    "\"mo\\u0064el\":\"b\",\"a\\\\b\":1,\"q\\\"\":2,\"caf\\u00e9\":3,"
                    "\"\\ud83d\\ude00\":4,\"x\\u0000y\":5,\"\":6,\"\\/\":7}";

    assert_int_equal(cmx_json_scan(s, strlen(s), NULL, m, 16, &n), 0);
    assert_int_equal(n, 11);
    assert_int_equal(cmx_json_count(m, n, "stream"), 2);
    assert_int_equal(cmx_json_count(m, n, "model"), 2);
    /* find returns the last duplicate: what most parsers (and the upstream) would use. */
    const struct cmx_json_member *f = cmx_json_find(m, n, "stream");
    assert_ptr_equal(f, &m[2]);
    assert_int_equal(f->type, CMX_JSON_FALSE);
    f = cmx_json_find(m, n, "model");
    assert_ptr_equal(f, &m[3]);
    assert_memory_equal(f->val, "\"b\"", 3);
    assert_ptr_equal(cmx_json_find(m, n, "a\\b"), &m[4]);
    assert_ptr_equal(cmx_json_find(m, n, "q\""), &m[5]);
    assert_ptr_equal(cmx_json_find(m, n, "caf\xc3\xa9"), &m[6]);
    assert_null(cmx_json_find(m, n, "cafe"));
    assert_null(cmx_json_find(m, n, "caf\xc3"));
    assert_ptr_equal(cmx_json_find(m, n, "\xf0\x9f\x98\x80"), &m[7]);
    /* A key with an escaped NUL never equals a C string. */
    assert_null(cmx_json_find(m, n, "x"));
    assert_null(cmx_json_find(m, n, "xy"));
    assert_ptr_equal(cmx_json_find(m, n, ""), &m[9]);
    assert_ptr_equal(cmx_json_find(m, n, "/"), &m[10]);
    assert_int_equal(cmx_json_count(m, n, "streamx"), 0);
    assert_int_equal(cmx_json_count(m, n, "strea"), 0);
    assert_int_equal(cmx_json_count(m, 0, "stream"), 0);
    assert_null(cmx_json_find(NULL, 0, "stream"));
}

static void decode_ok(const char *raw, const char *want, size_t want_len)
{
    size_t len = strlen(raw), out_len = 12345;
    char *out = malloc(len + 1);
    assert_non_null(out);
    assert_int_equal(cmx_json_string_decode(raw, len, out, &out_len), 0);
    assert_int_equal(out_len, want_len);
    assert_memory_equal(out, want, want_len);
    assert_int_equal(out[out_len], '\0');
    free(out);
}

static void test_decode(void **state)
{
    (void)state;
    decode_ok("", "", 0);
    decode_ok("plain text", "plain text", 10);
    decode_ok("\\\"\\\\\\/\\b\\f\\n\\r\\t", "\"\\/\b\f\n\r\t", 8);
    decode_ok("\\u0041\\u00e9\\u20AC", "A\xc3\xa9\xe2\x82\xac", 6);
    decode_ok("a\\u0000b", "a\0b", 3);
    decode_ok("\\ud83d\\ude00", "\xf0\x9f\x98\x80", 4);
    decode_ok("\\uD834\\uDD1E!", "\xf0\x9d\x84\x9e!", 5);
    decode_ok("\\udbff\\udfff", "\xf4\x8f\xbf\xbf", 4);
    /* Lone and mismatched surrogates become U+FFFD, never invalid UTF-8. */
    decode_ok("\\ud800", "\xef\xbf\xbd", 3);
    decode_ok("\\udc00", "\xef\xbf\xbd", 3);
    decode_ok("\\ud800x", "\xef\xbf\xbdx", 4);
    decode_ok("\\ud800\\u0041",
              "\xef\xbf\xbd"
              "A",
              4);
    decode_ok("\\ud800\\ud800", "\xef\xbf\xbd\xef\xbf\xbd", 6);
    decode_ok("\\ud800\\ud800\\udc00", "\xef\xbf\xbd\xf0\x90\x80\x80", 7);
    decode_ok("\\ude00\\ud83d", "\xef\xbf\xbd\xef\xbf\xbd", 6);
    decode_ok("\\ud800\\n", "\xef\xbf\xbd\n", 4);
    decode_ok("caf\xc3\xa9 \xe4\xbd\xa0", "caf\xc3\xa9 \xe4\xbd\xa0", 9);
    decode_ok("0123456789abcdef0123456789abcdef\\n0123456789abcdef",
              "0123456789abcdef0123456789abcdef\n0123456789abcdef", 49);

    char out[32];
    size_t ol;
    static const char *bad[] = {"\\",         "\\x",      "\\u12",    "\\u12g4",
                                "a\"b",       "a\nb",     "\xc0\x80", "\xed\xa0\x80",
                                "\\ud800\\u", "\xe4\xbd", "\\U0041"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(cmx_json_string_decode(bad[i], strlen(bad[i]), out, &ol), CMX_EJSON);
}

/* Decoding the members of a scanned object round-trips through cmx_json_find. */
static void test_decode_members(void **state)
{
    (void)state;
    struct cmx_json_member m[4];
    size_t n;
    const char *s = "{\"k\\u00e9y\":\"v\\ud83d\\ude00\\\"\"}";
    assert_int_equal(cmx_json_scan(s, strlen(s), NULL, m, 4, &n), 0);
    assert_int_equal(n, 1);
    char key[32], val[32];
    size_t kl, vl;
    assert_int_equal(cmx_json_string_decode(m[0].key, m[0].key_len, key, &kl), 0);
    assert_string_equal(key, "k\xc3\xa9y");
    assert_ptr_equal(cmx_json_find(m, n, key), &m[0]);
    assert_int_equal(cmx_json_string_decode(m[0].val + 1, m[0].val_len - 2, val, &vl), 0);
    assert_int_equal(vl, 6);
    assert_string_equal(val, "v\xf0\x9f\x98\x80\"");
}

/* Every recorded provider chunk (one JSON document per line) is valid, and no proper
 * prefix of one is. */
static void test_recorded_documents(void **state)
{
    (void)state;
    static const char *files[] = {
        "tests/fixtures/sse/openai-text.chunks.txt",
        "tests/fixtures/sse/azure-model-router.1.chunks.txt",
        "tests/fixtures/sse/anthropic-text.chunks.txt",
        "tests/fixtures/sse/google-text.chunks.txt",
        "tests/fixtures/sse/xai-tool-call.chunks.txt",
    };
    size_t docs = 0;
    for (size_t f = 0; f < sizeof(files) / sizeof(files[0]); f++) {
        FILE *fp = fopen(files[f], "rb");
        if (fp == NULL)
            fail_msg("cannot open %s (run from the repository root)", files[f]);
        char *line = NULL;
        size_t cap = 0;
        ssize_t got;
        while ((got = getline(&line, &cap, fp)) > 0) {
            size_t len = (size_t)got;
            while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
                len--;
            if (len == 0)
                continue;
            enum cmx_json_type top;
            struct cmx_json_member m[32];
            size_t n;
            assert_int_equal(cmx_json_scan(line, len, &top, m, 32, &n), 0);
            assert_int_equal(top, CMX_JSON_OBJECT);
            assert_true(n > 0);
            for (size_t k = 1; k < len; k += 7)
                assert_int_equal(scan(line, k), CMX_EJSON);
            docs++;
        }
        free(line);
        fclose(fp);
    }
    assert_true(docs > 100);
}

/* cmx_buf_json_escape: whatever the bytes, the result quoted is a valid JSON string, valid
 * UTF-8 kept as is, every byte outside a valid sequence decoded back as U+FFFD. */
static void test_escape_any_bytes(void **state)
{
    (void)state;
    static const struct {
        const char *in, *decoded;
    } cases[] = {
        {"plain \"q\" \\ \n\t\x01", "plain \"q\" \\ \n\t\x01"},
        {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"},
        {"\xff", "\xef\xbf\xbd"},                                 /* never UTF-8 */
        {"a\xc3", "a\xef\xbf\xbd"},                               /* cut at the end */
        {"\xc3(", "\xef\xbf\xbd("},                               /* bad continuation */
        {"\x80\xbf", "\xef\xbf\xbd\xef\xbf\xbd"},                 /* stray continuations */
        {"\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd"},                 /* overlong '/' */
        {"\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* a UTF-16 surrogate */
        {"\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* > U+10FFFF */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct cmx_buf b;
        cmx_buf_init(&b, 1 << 16);
        assert_int_equal(cmx_buf_puts(&b, "\""), 0);
        assert_int_equal(cmx_buf_json_escape(&b, cases[i].in, strlen(cases[i].in)), 0);
        assert_int_equal(cmx_buf_puts(&b, "\""), 0);
        enum cmx_json_type top;
        assert_int_equal(cmx_json_scan(b.data, b.len, &top, NULL, 0, NULL), 0);
        assert_int_equal(top, CMX_JSON_STRING);
        char out[256];
        size_t n;
        assert_int_equal(cmx_json_string_decode(b.data + 1, b.len - 2, out, &n), 0);
        assert_int_equal(n, strlen(cases[i].decoded));
        assert_memory_equal(out, cases[i].decoded, n);
        cmx_buf_free(&b);
    }
}

static void test_scan_str_helper(void **state)
{
    (void)state;
    assert_int_equal(scan_str("{\"a\":[1,2,{\"b\":\"c\"}]}"), 0);
    assert_int_equal(scan_str("{\"a\":[1,2,{\"b\":\"c\"]}"), CMX_EJSON);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_table),
        cmocka_unit_test(test_escape_any_bytes),
        cmocka_unit_test(test_invalid_table),
        cmocka_unit_test(test_exact_length_and_prefixes),
        cmocka_unit_test(test_top_types),
        cmocka_unit_test(test_depth),
        cmocka_unit_test(test_string_block_boundaries),
        cmocka_unit_test(test_members_chat_request),
        cmocka_unit_test(test_members_limits),
        cmocka_unit_test(test_duplicates_and_escaped_keys),
        cmocka_unit_test(test_decode),
        cmocka_unit_test(test_decode_members),
        cmocka_unit_test(test_recorded_documents),
        cmocka_unit_test(test_scan_str_helper),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
