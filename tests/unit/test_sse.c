/* Unit tests for src/codec/sse.c: field handling, line ends (also split across chunks),
 * BOM, size cap, finish(), and recorded provider streams fed whole and split anywhere. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "codec/sse.h"
#include "core/buf.h"
#include "core/err.h"

#define BIG (1u << 20)

/* Events are recorded as length-prefixed fields so that any byte compares exactly. */
struct rec {
    struct cmx_buf out; /* serialized events */
    size_t count;       /* events seen */
    size_t stop_after;  /* return 99 from the callback after this many events (0: never) */
};

static void put_field(struct cmx_buf *b, const char *s, size_t n)
{
    assert_int_equal(s[n], '\0');
    assert_int_equal(cmx_buf_printf(b, "%zu:", n), 0);
    assert_int_equal(cmx_buf_append(b, s, n), 0);
    assert_int_equal(cmx_buf_append(b, ";", 1), 0);
}

static int record_cb(void *ud, const struct cmx_sse_event *ev)
{
    struct rec *r = ud;
    put_field(&r->out, ev->event, ev->event_len);
    put_field(&r->out, ev->data, ev->data_len);
    put_field(&r->out, ev->id, ev->id_len);
    assert_int_equal(cmx_buf_append(&r->out, "\n", 1), 0);
    r->count++;
    if (r->stop_after != 0 && r->count == r->stop_after)
        return 99;
    return 0;
}

static const char *buf_str_or_empty(const struct cmx_buf *b)
{
    return b->data != NULL ? b->data : "";
}

static void rec_init(struct rec *r)
{
    cmx_buf_init(&r->out, 64u << 20);
    r->count = 0;
    r->stop_after = 0;
}

/* Feeds s[0..len) cut at the given offsets (ascending), then finishes. Returns the first
 * non-zero result, or the result of finish. */
static int run_cuts(const char *s, size_t len, const size_t *cuts, size_t ncuts, size_t max,
                    struct rec *r)
{
    struct cmx_sse_parser p;
    size_t at = 0;
    int ret = 0;

    cmx_sse_parser_init(&p, max);
    for (size_t i = 0; i <= ncuts && ret == 0; i++) {
        size_t next = i < ncuts ? cuts[i] : len;
        ret = cmx_sse_parser_feed(&p, s + at, next - at, record_cb, r);
        at = next;
    }
    if (ret == 0)
        ret = cmx_sse_parser_finish(&p, record_cb, r);
    cmx_sse_parser_free(&p);
    return ret;
}

static int run_whole(const char *s, size_t len, size_t max, struct rec *r)
{
    return run_cuts(s, len, NULL, 0, max, r);
}

static int run_bytes(const char *s, size_t len, size_t max, struct rec *r)
{
    size_t *cuts = malloc((len ? len : 1) * sizeof(*cuts));
    assert_non_null(cuts);
    for (size_t i = 0; i + 1 < len; i++)
        cuts[i] = i + 1;
    int ret = run_cuts(s, len, cuts, len ? len - 1 : 0, max, r);
    free(cuts);
    return ret;
}

/* Asserts that s fed whole yields `want` (serialized) and the same result when split at
 * every single position, at every pair of positions (short inputs) and byte by byte. */
static void check_splits(const char *s, size_t len, size_t max, int want_ret, const char *want)
{
    struct rec whole, split;
    rec_init(&whole);
    assert_int_equal(run_whole(s, len, max, &whole), want_ret);
    if (want != NULL) {
        if (strcmp(buf_str_or_empty(&whole.out), want) != 0)
            fail_msg("got:\n%s\nwant:\n%s", buf_str_or_empty(&whole.out), want);
    }
    for (size_t k = 0; k <= len; k++) {
        rec_init(&split);
        assert_int_equal(run_cuts(s, len, &k, 1, max, &split), want_ret);
        assert_int_equal(split.out.len, whole.out.len);
        assert_memory_equal(buf_str_or_empty(&split.out), buf_str_or_empty(&whole.out),
                            whole.out.len);
        cmx_buf_free(&split.out);
    }
    if (len <= 64) {
        for (size_t a = 0; a <= len; a++) {
            for (size_t b = a; b <= len; b++) {
                size_t cuts[2] = {a, b};
                rec_init(&split);
                assert_int_equal(run_cuts(s, len, cuts, 2, max, &split), want_ret);
                assert_int_equal(split.out.len, whole.out.len);
                assert_memory_equal(buf_str_or_empty(&split.out), buf_str_or_empty(&whole.out),
                                    whole.out.len);
                cmx_buf_free(&split.out);
            }
        }
    }
    rec_init(&split);
    assert_int_equal(run_bytes(s, len, max, &split), want_ret);
    assert_int_equal(split.out.len, whole.out.len);
    assert_memory_equal(buf_str_or_empty(&split.out), buf_str_or_empty(&whole.out), whole.out.len);
    cmx_buf_free(&split.out);
    cmx_buf_free(&whole.out);
}

static void check(const char *s, const char *want)
{
    check_splits(s, strlen(s), BIG, 0, want);
}

static void test_basic_fields(void **state)
{
    (void)state;
    check("data: hello\n\n", "0:;5:hello;0:;\n");
    check("data:hello\n\n", "0:;5:hello;0:;\n");
    check("data:  hello\n\n", "0:;6: hello;0:;\n");
    check("data: hello \n\n", "0:;6:hello ;0:;\n");
    check("data\n\n", "0:;0:;0:;\n");
    check("data:\n\n", "0:;0:;0:;\n");
    check("data: \n\n", "0:;0:;0:;\n");
    check("data: a:b\n\n", "0:;3:a:b;0:;\n");
    check("data::x\n\n", "0:;2::x;0:;\n");
    check("data: a\ndata: b\ndata\ndata:c\n\n", "0:;6:a\nb\n\nc;0:;\n");
    check("event: message_start\nid: 42\ndata: {}\n\n", "13:message_start;2:{};2:42;\n");
    check("data: x\nevent: e1\nevent: e2\nid: 1\nid: 2\n\n", "2:e2;1:x;1:2;\n");
    /* Field names are case-sensitive; unknown fields and retry are ignored. */
    check("Data: x\n\n", "");
    check("retry: 1000\nfoo: bar\nfoo\ndata: x\n\n", "0:;1:x;0:;\n");
    check("event: e\n\n", "");
    /* An event's name and id do not leak into the next event. */
    check("event: e\nid: 7\n\ndata: x\n\n", "0:;1:x;0:;\n");
    check("event: e\nid: 7\ndata: x\n\ndata: y\n\n", "1:e;1:x;1:7;\n0:;1:y;0:;\n");
    /* Blank lines without data dispatch nothing. */
    check("\n\n\n\r\n\r\rdata: x\n\n\n\n", "0:;1:x;0:;\n");
    check("", "");
}

static void test_comments(void **state)
{
    (void)state;
    check(":ping\n\n", "");
    check(": this is a comment\ndata: x\n: another\n\n", "0:;1:x;0:;\n");
    check(":\n:\n\n", "");
    check("data: a\n:ping\ndata: b\n\n", "0:;3:a\nb;0:;\n");
}

static void test_line_ends(void **state)
{
    (void)state;
    const char *want = "0:;1:a;0:;\n0:;1:b;0:;\n0:;1:c;0:;\n0:;1:d;0:;\n";
    check("data: a\n\ndata: b\n\ndata: c\n\ndata: d\n\n", want);
    check("data: a\r\n\r\ndata: b\r\n\r\ndata: c\r\n\r\ndata: d\r\n\r\n", want);
    check("data: a\r\rdata: b\r\rdata: c\r\rdata: d\r\r", want);
    check("data: a\r\n\ndata: b\r\r\ndata: c\n\r\ndata: d\r\n\r", want);
    /* CRLF is one line end, LFCR two: "a\n\rb" is a line, a blank line, then b. */
    check("data: a\n\rdata: b\n\n", "0:;1:a;0:;\n0:;1:b;0:;\n");
    check("data: a\r\ndata: b\r\n\r\n", "0:;3:a\nb;0:;\n");
    check("data: a\rdata: b\r\r", "0:;3:a\nb;0:;\n");
}

static void test_cr_lf_across_chunks(void **state)
{
    (void)state;
    struct rec r;
    struct cmx_sse_parser p;

    /* CR ends a chunk, LF starts the next: one line end, so a and b are one event. */
    rec_init(&r);
    cmx_sse_parser_init(&p, BIG);
    assert_int_equal(cmx_sse_parser_feed(&p, "data: a\r", 8, record_cb, &r), 0);
    assert_int_equal(cmx_sse_parser_feed(&p, "\ndata: b\r", 9, record_cb, &r), 0);
    assert_int_equal(r.count, 0);
    assert_int_equal(cmx_sse_parser_feed(&p, "\n", 1, record_cb, &r), 0);
    assert_int_equal(r.count, 0);
    assert_int_equal(cmx_sse_parser_feed(&p, "\r", 1, record_cb, &r), 0);
    assert_int_equal(r.count, 1);
    assert_string_equal(r.out.data, "0:;3:a\nb;0:;\n");
    /* The pending LF skip applies to the very next byte only. */
    assert_int_equal(cmx_sse_parser_feed(&p, "\n", 1, record_cb, &r), 0);
    assert_int_equal(cmx_sse_parser_feed(&p, "data: c\r", 8, record_cb, &r), 0);
    assert_int_equal(cmx_sse_parser_feed(&p, "", 0, record_cb, &r), 0);
    assert_int_equal(cmx_sse_parser_feed(&p, "\n\n", 2, record_cb, &r), 0);
    assert_int_equal(r.count, 2);
    assert_string_equal(r.out.data, "0:;3:a\nb;0:;\n0:;1:c;0:;\n");
    assert_int_equal(cmx_sse_parser_finish(&p, record_cb, &r), 0);
    assert_int_equal(r.count, 2);
    cmx_sse_parser_free(&p);
    cmx_buf_free(&r.out);

    /* CR at a chunk end followed by CR: that is a blank line. */
    rec_init(&r);
    cmx_sse_parser_init(&p, BIG);
    assert_int_equal(cmx_sse_parser_feed(&p, "data: a\r", 8, record_cb, &r), 0);
    assert_int_equal(cmx_sse_parser_feed(&p, "\r", 1, record_cb, &r), 0);
    assert_int_equal(r.count, 1);
    cmx_sse_parser_free(&p);
    cmx_buf_free(&r.out);
}

static void test_bom(void **state)
{
    (void)state;
    check("\xef\xbb\xbf"
          "data: x\n\n",
          "0:;1:x;0:;\n");
    check("\xef\xbb\xbf:comment\ndata: x\n\n", "0:;1:x;0:;\n");
    check("\xef\xbb\xbf\n\ndata: x\n\n", "0:;1:x;0:;\n");
    check("\xef\xbb\xbf", "");
    /* Only one BOM, and only at the start; a partial BOM is just bytes of the first line
     * (which then names an unknown field). */
    check("\xef\xbb\xbf\xef\xbb\xbf"
          "data: x\n\ndata: y\n\n",
          "0:;1:y;0:;\n");
    check("data: x\n\n\xef\xbb\xbf"
          "data: y\n\n",
          "0:;1:x;0:;\n");
    check("\xef\xbb"
          "data: x\n\ndata: y\n\n",
          "0:;1:y;0:;\n");
    check("\xef"
          "data: x\n\ndata: y\n\n",
          "0:;1:y;0:;\n");
    check("\xef\n\ndata: y\n\n", "0:;1:y;0:;\n");
    check("\xef\xbb\r\ndata: y\n\n", "0:;1:y;0:;\n");
    check("data: \xef\xbb\xbf\n\n", "0:;3:\xef\xbb\xbf;0:;\n");
}

static void test_finish(void **state)
{
    (void)state;
    /* The last event's blank line, or even its last line end, may never come. */
    check("data: x\n", "0:;1:x;0:;\n");
    check("data: x", "0:;1:x;0:;\n");
    check("data: x\r", "0:;1:x;0:;\n");
    check("data: a\ndata: b", "0:;3:a\nb;0:;\n");
    check("event: e\nid: 1\ndata: x", "1:e;1:x;1:1;\n");
    check("data: x\n\ndata: [DONE]", "0:;1:x;0:;\n0:;6:[DONE];0:;\n");
    check("event: e\n", "");
    check("event: e", "");
    check(":ping", "");
    check("data: x\n\n", "0:;1:x;0:;\n");

    /* finish() leaves the parser ready for a new stream. */
    struct rec r;
    struct cmx_sse_parser p;
    rec_init(&r);
    cmx_sse_parser_init(&p, BIG);
    assert_int_equal(cmx_sse_parser_feed(&p,
                                         "\xef\xbb\xbf"
                                         "data: a\r",
                                         11, record_cb, &r),
                     0);
    assert_int_equal(cmx_sse_parser_finish(&p, record_cb, &r), 0);
    assert_int_equal(cmx_sse_parser_finish(&p, record_cb, &r), 0);
    assert_int_equal(cmx_sse_parser_feed(&p, "\ndata: b\n\n", 10, record_cb, &r), 0);
    assert_int_equal(cmx_sse_parser_feed(&p,
                                         "\xef\xbb\xbf"
                                         "data: c\n\n",
                                         12, record_cb, &r),
                     0);
    assert_int_equal(cmx_sse_parser_finish(&p, record_cb, &r), 0);
    assert_int_equal(r.count, 2);
    assert_string_equal(r.out.data, "0:;1:a;0:;\n0:;1:b;0:;\n");
    cmx_sse_parser_free(&p);
    cmx_sse_parser_free(&p); /* freeing twice is harmless */
    cmx_buf_free(&r.out);
}

static void test_id_with_nul(void **state)
{
    (void)state;
    static const char s[] = "id: 1\nid: a\0b\ndata: x\n\n";
    check_splits(s, sizeof(s) - 1, BIG, 0, "0:;1:x;1:1;\n");
    static const char d[] = "data: a\0b\n\n";
    check_splits(d, sizeof(d) - 1, BIG, 0, NULL);
}

static void test_size_cap(void **state)
{
    (void)state;
    /* Lines up to the cap are fine; one byte more fails, however the input is cut. */
    check_splits("data: 0123456789\n\n", 18, 16, 0, "0:;10:0123456789;0:;\n");
    check_splits("data: 0123456789a\n\n", 19, 16, CMX_ETOOBIG, "");
    check_splits("data: 0123456789a", 17, 16, CMX_ETOOBIG, "");
    check_splits("data: x\n\n:01234567890123456\n\n", 29, 16, CMX_ETOOBIG, "0:;1:x;0:;\n");
    check_splits("event: 0123456789a\ndata: x\n\n", 28, 16, CMX_ETOOBIG, "");
    /* The joined data of one event is capped too. */
    check_splits("data: 01234567\ndata: 01234567\n\n", 32, 17, 0, "0:;17:01234567\n01234567;0:;\n");
    check_splits("data: 01234567\ndata: 012345678\n\n", 33, 17, CMX_ETOOBIG, "");
    check_splits("data: 01234567\ndata: 01234567\ndata\n\n", 37, 17, CMX_ETOOBIG, "");
    /* The cap is per event: many events of cap size are fine. */
    check_splits("data: 0123456789\n\ndata: 0123456789\n\ndata: 0123456789\n\n", 54, 16, 0, NULL);
}

static void test_callback_stop(void **state)
{
    (void)state;
    const char *s = "data: a\n\ndata: b\n\ndata: c\n\n";
    struct rec r;
    struct cmx_sse_parser p;

    rec_init(&r);
    r.stop_after = 2;
    cmx_sse_parser_init(&p, BIG);
    assert_int_equal(cmx_sse_parser_feed(&p, s, strlen(s), record_cb, &r), 99);
    assert_int_equal(r.count, 2);
    cmx_sse_parser_free(&p);
    cmx_buf_free(&r.out);

    /* finish() passes a stop on too. */
    rec_init(&r);
    r.stop_after = 1;
    cmx_sse_parser_init(&p, BIG);
    assert_int_equal(cmx_sse_parser_feed(&p, "data: a", 7, record_cb, &r), 0);
    assert_int_equal(cmx_sse_parser_finish(&p, record_cb, &r), 99);
    assert_int_equal(r.count, 1);
    cmx_sse_parser_free(&p);
    cmx_buf_free(&r.out);
}

/* A stream mixing every feature, checked at every cut and pair of cuts. */
static void test_mixed_stream_all_splits(void **state)
{
    (void)state;
    const char *s = "\xef\xbb\xbf:ok\r\nevent: a\rdata: 1\r\ndata:2\n\r\n"
                    "id: 9\ndata\r\rretry: 5\nx\n\n:ping\r\n\r\ndata: \xe2\x82\xac\r";
    check(s, "1:a;3:1\n2;0:;\n0:;0:;1:9;\n0:;3:\xe2\x82\xac;0:;\n");
}

static char *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (fp == NULL)
        fail_msg("cannot open %s (run from the repository root)", path);
    struct cmx_buf b;
    char tmp[4096];
    size_t got;
    cmx_buf_init(&b, 16u << 20);
    while ((got = fread(tmp, 1, sizeof(tmp), fp)) > 0)
        assert_int_equal(cmx_buf_append(&b, tmp, got), 0);
    fclose(fp);
    *len = b.len;
    return b.data;
}

/* How a recorded sequence of data payloads is put back into SSE framing. */
enum framing {
    FRAME_LF,         /* data: X\n\n */
    FRAME_CRLF_EVENT, /* event: <type>\r\ndata: X\r\n\r\n, as Anthropic names its events */
    FRAME_CR_NOISE,   /* CR line ends, comments, ids, split data lines, no space */
};

/* The value of "type" in a one-line Anthropic payload, or "message". */
static void event_type(const char *line, size_t len, const char **t, size_t *tlen)
{
    const char *k = strstr(line, "\"type\":\"");
    *t = "message";
    *tlen = 7;
    if (k != NULL && k < line + len) {
        const char *v = k + 8, *e = strchr(v, '"');
        if (e != NULL && e < line + len) {
            *t = v;
            *tlen = (size_t)(e - v);
        }
    }
}

/* Reframes the lines of a *.chunks.txt into an SSE stream (into *stream) and builds the
 * serialized events the parser must produce (into *want). */
static void reframe(const char *text, size_t len, enum framing f, struct cmx_buf *stream,
                    struct cmx_buf *want)
{
    const char *s = text, *end = text + len;
    size_t n = 0;
    for (; s < end; s++) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        const char *le = nl ? nl : end;
        size_t l = (size_t)(le - s);
        const char *t = "";
        size_t tl = 0;
        char id[32] = "";

        if (l == 0) {
            s = le;
            continue;
        }
        /* FRAME_CR_NOISE splits the payload into two data lines after its first ',';
         * the parser joins them back with '\n'. */
        const char *comma = memchr(s, ',', l);
        size_t a = comma != NULL ? (size_t)(comma - s) + 1 : l;
        switch (f) {
        case FRAME_LF:
            assert_int_equal(cmx_buf_printf(stream, "data: %.*s\n\n", (int)l, s), 0);
            break;
        case FRAME_CRLF_EVENT:
            event_type(s, l, &t, &tl);
            assert_int_equal(
                cmx_buf_printf(stream, "event: %.*s\r\ndata: %.*s\r\n\r\n", (int)tl, t, (int)l, s),
                0);
            break;
        case FRAME_CR_NOISE:
            snprintf(id, sizeof(id), "%zu", n);
            if (n % 3 == 0)
                assert_int_equal(cmx_buf_puts(stream, ":keep-alive\r"), 0);
            assert_int_equal(cmx_buf_printf(stream, "id:%s\rdata:%.*s\r", id, (int)a, s), 0);
            if (a < l)
                assert_int_equal(cmx_buf_printf(stream, "data:%.*s\r", (int)(l - a), s + a), 0);
            assert_int_equal(cmx_buf_puts(stream, "\r"), 0);
            break;
        }
        bool two = f == FRAME_CR_NOISE && a < l;
        assert_int_equal(cmx_buf_printf(want, "%zu:%.*s;%zu:", tl, (int)tl, t, l + two), 0);
        assert_int_equal(cmx_buf_append(want, s, two ? a : l), 0);
        if (two) {
            assert_int_equal(cmx_buf_append(want, "\n", 1), 0);
            assert_int_equal(cmx_buf_append(want, s + a, l - a), 0);
        }
        assert_int_equal(cmx_buf_printf(want, ";%zu:%s;\n", strlen(id), id), 0);
        n++;
        s = le;
    }
}

/* Splits a stream in every way for small inputs; for large ones, at 300 random points,
 * in random-sized chunks and byte by byte. */
static void check_stream(const char *s, size_t len, const struct cmx_buf *want)
{
    struct rec r;
    rec_init(&r);
    assert_int_equal(run_whole(s, len, BIG, &r), 0);
    if (want != NULL) {
        assert_int_equal(r.out.len, want->len);
        assert_memory_equal(r.out.data, want->data, want->len);
    }
    if (len <= 8192) {
        check_splits(s, len, BIG, 0, r.out.data);
        cmx_buf_free(&r.out);
        return;
    }
    unsigned seed = 12345;
    for (int i = 0; i < 300; i++) {
        struct rec sr;
        seed = seed * 1103515245u + 12345u;
        size_t k = (seed >> 8) % (len + 1);
        rec_init(&sr);
        assert_int_equal(run_cuts(s, len, &k, 1, BIG, &sr), 0);
        assert_int_equal(sr.out.len, r.out.len);
        assert_memory_equal(sr.out.data, r.out.data, r.out.len);
        cmx_buf_free(&sr.out);
    }
    for (int round = 0; round < 5; round++) {
        size_t *cuts = malloc(len * sizeof(*cuts)), nc = 0, at = 0;
        assert_non_null(cuts);
        for (;;) {
            seed = seed * 1103515245u + 12345u;
            at += 1 + (seed >> 8) % (round == 0 ? 4 : 700);
            if (at >= len)
                break;
            cuts[nc++] = at;
        }
        struct rec sr;
        rec_init(&sr);
        assert_int_equal(run_cuts(s, len, cuts, nc, BIG, &sr), 0);
        assert_int_equal(sr.out.len, r.out.len);
        assert_memory_equal(sr.out.data, r.out.data, r.out.len);
        cmx_buf_free(&sr.out);
        free(cuts);
    }
    struct rec br;
    rec_init(&br);
    assert_int_equal(run_bytes(s, len, BIG, &br), 0);
    assert_int_equal(br.out.len, r.out.len);
    assert_memory_equal(br.out.data, r.out.data, r.out.len);
    cmx_buf_free(&br.out);
    cmx_buf_free(&r.out);
}

static const char *const chunk_fixtures[] = {
    "tests/fixtures/sse/openai-text.chunks.txt",
    "tests/fixtures/sse/azure-model-router.1.chunks.txt",
    "tests/fixtures/sse/anthropic-text.chunks.txt",
    "tests/fixtures/sse/anthropic-json-tool.1.chunks.txt",
    "tests/fixtures/sse/google-text.chunks.txt",
    "tests/fixtures/sse/google-stream-tool-call-arguments.chunks.txt",
    "tests/fixtures/sse/xai-tool-call.chunks.txt",
};

static void test_recorded_streams(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(chunk_fixtures) / sizeof(chunk_fixtures[0]); i++) {
        size_t len;
        char *text = slurp(chunk_fixtures[i], &len);
        for (int f = FRAME_LF; f <= FRAME_CR_NOISE; f++) {
            struct cmx_buf stream, want;
            cmx_buf_init(&stream, 16u << 20);
            cmx_buf_init(&want, 16u << 20);
            reframe(text, len, (enum framing)f, &stream, &want);
            assert_true(want.len > 0);
            check_stream(stream.data, stream.len, &want);
            cmx_buf_free(&stream);
            cmx_buf_free(&want);
        }
        free(text);
    }
}

/* A stream recorded with its framing: 9 data events, the last "[DONE]" without the
 * closing blank line. */
static void test_recorded_sse_file(void **state)
{
    (void)state;
    size_t len;
    char *s = slurp("tests/fixtures/sse/anthropic-fallback-tool-call.sse", &len);
    struct rec r;
    rec_init(&r);
    assert_int_equal(run_whole(s, len, BIG, &r), 0);
    assert_int_equal(r.count, 9);
    assert_non_null(strstr(r.out.data, "0:;6:[DONE];0:;\n"));
    assert_non_null(strstr(r.out.data, "\"read_file\""));
    cmx_buf_free(&r.out);
    check_stream(s, len, NULL);
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic_fields),
        cmocka_unit_test(test_comments),
        cmocka_unit_test(test_line_ends),
        cmocka_unit_test(test_cr_lf_across_chunks),
        cmocka_unit_test(test_bom),
        cmocka_unit_test(test_finish),
        cmocka_unit_test(test_id_with_nul),
        cmocka_unit_test(test_size_cap),
        cmocka_unit_test(test_callback_stop),
        cmocka_unit_test(test_mixed_stream_all_splits),
        cmocka_unit_test(test_recorded_streams),
        cmocka_unit_test(test_recorded_sse_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
