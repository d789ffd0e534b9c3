/* The AWS event-stream codec against the shared vectors (aws-sdk-go's, copied under
 * tests/fixtures/aws/event-stream): field-by-field decode, byte-exact re-encode, every
 * split point (two and three pieces, byte by byte), the negative cases with their
 * error text, and Bedrock's recorded frames. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <json-c/json.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/eventstream.h"
#include "core/err.h"

#define ES "tests/fixtures/aws/event-stream"
#define BF "tests/fixtures/aws/bedrock-frames"

static const char *const POSITIVE[] = {"empty_message", "int32_header", "payload_no_headers",
                                       "payload_one_str_header", "all_headers"};
static const char *const NEGATIVE[] = {"corrupted_header_len", "corrupted_headers",
                                       "corrupted_length", "corrupted_payload"};

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    size_t got = fread(s, 1, (size_t)n, f);
    fclose(f);
    s[got] = '\0';
    *len = got;
    return s;
}

/* base64 -> malloc'd bytes */
static unsigned char *b64(const char *s, size_t *out_len)
{
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r'))
        n--;
    unsigned char *o = malloc(n + 4);
    int r = n ? EVP_DecodeBlock(o, (const unsigned char *)s, (int)n) : 0;
    assert_true(r >= 0);
    size_t pad = 0;
    while (n > 0 && s[n - 1] == '=' && pad < 2) {
        pad++;
        n--;
    }
    *out_len = (size_t)r - pad;
    return o;
}

struct collect {
    int n;                    /* messages seen */
    struct cmx_buf reencoded; /* each message encoded again */
    struct cmx_buf payloads;  /* payloads joined with '|' */
};

static int collect_cb(void *ud, const struct cmx_es_message *m)
{
    struct collect *c = ud;
    c->n++;
    assert_int_equal(
        cmx_es_encode(&c->reencoded, m->headers, m->n_headers, m->payload, m->payload_len), 0);
    cmx_buf_append(&c->payloads, m->payload, m->payload_len);
    cmx_buf_append(&c->payloads, "|", 1);
    return 0;
}

static void check_decoded(const char *name, const struct cmx_es_message *m)
{
    char path[256];
    snprintf(path, sizeof(path), ES "/decoded/positive/%s", name);
    json_object *j = json_object_from_file(path);
    assert_non_null(j);
    assert_int_equal(m->total_len,
                     json_object_get_int64(json_object_object_get(j, "total_length")));
    assert_int_equal(m->headers_len,
                     json_object_get_int64(json_object_object_get(j, "headers_length")));
    assert_int_equal(m->prelude_crc,
                     (uint32_t)json_object_get_int64(json_object_object_get(j, "prelude_crc")));
    assert_int_equal(m->message_crc, (uint32_t)(int32_t)json_object_get_int64(
                                         json_object_object_get(j, "message_crc")));
    json_object *hs = json_object_object_get(j, "headers");
    size_t nh = hs ? json_object_array_length(hs) : 0;
    assert_int_equal(m->n_headers, nh);
    for (size_t i = 0; i < nh; i++) {
        json_object *h = json_object_array_get_idx(hs, i);
        const char *hn = json_object_get_string(json_object_object_get(h, "name"));
        int type = json_object_get_int(json_object_object_get(h, "type"));
        json_object *v = json_object_object_get(h, "value");
        const struct cmx_es_header *x = &m->headers[i];
        assert_int_equal(x->name_len, strlen(hn));
        assert_memory_equal(x->name, hn, x->name_len);
        assert_int_equal((int)x->type, type);
        if (type == CMX_ES_BYTES || type == CMX_ES_STRING || type == CMX_ES_UUID) {
            size_t bl;
            unsigned char *b = b64(json_object_get_string(v), &bl);
            assert_int_equal(x->len, bl);
            assert_memory_equal(x->data, b, bl);
            free(b);
        } else if (type <= CMX_ES_BOOL_FALSE) {
            assert_int_equal(x->num, json_object_get_boolean(v));
        } else {
            assert_int_equal(x->num, json_object_get_int64(v));
        }
        assert_ptr_equal(cmx_es_find(m, hn) != NULL, 1);
    }
    json_object *p = json_object_object_get(j, "payload");
    size_t pl = 0;
    unsigned char *pb = p ? b64(json_object_get_string(p), &pl) : calloc(1, 1);
    assert_int_equal(m->payload_len, pl);
    if (pl)
        assert_memory_equal(m->payload, pb, pl);
    free(pb);
    json_object_put(j);
}

static void test_positive_decode_and_reencode(void **state)
{
    for (size_t k = 0; k < sizeof(POSITIVE) / sizeof(POSITIVE[0]); k++) {
        char path[256];
        snprintf(path, sizeof(path), ES "/encoded/positive/%s", POSITIVE[k]);
        size_t len;
        char *wire = slurp(path, &len);
        struct cmx_es_message m;
        const char *why = NULL;
        assert_int_equal(cmx_es_decode_one(wire, len, &m, &why), 0);
        check_decoded(POSITIVE[k], &m);
        struct cmx_buf b;
        cmx_buf_init(&b, 1u << 20);
        assert_int_equal(cmx_es_encode(&b, m.headers, m.n_headers, m.payload, m.payload_len), 0);
        assert_int_equal(b.len, len);
        assert_memory_equal(b.data, wire, len);
        cmx_buf_free(&b);
        free(wire);
    }
}

/* Feeds stream in pieces cut at the given offsets and checks the result. */
static void feed_pieces(const char *s, size_t len, const size_t *cuts, size_t ncuts, int want_n,
                        const struct cmx_buf *want_payloads)
{
    struct cmx_es_decoder d;
    cmx_es_decoder_init(&d, 0);
    struct collect c = {0};
    cmx_buf_init(&c.reencoded, 1u << 20);
    cmx_buf_init(&c.payloads, 1u << 20);
    size_t at = 0;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t end = i < ncuts ? cuts[i] : len;
        assert_int_equal(cmx_es_feed(&d, s + at, end - at, collect_cb, &c), 0);
        at = end;
    }
    assert_int_equal(cmx_es_finish(&d), 0);
    assert_int_equal(c.n, want_n);
    assert_int_equal(c.reencoded.len, len);
    assert_memory_equal(c.reencoded.data, s, len);
    assert_int_equal(c.payloads.len, want_payloads->len);
    if (c.payloads.len)
        assert_memory_equal(c.payloads.data, want_payloads->data, c.payloads.len);
    cmx_buf_free(&c.reencoded);
    cmx_buf_free(&c.payloads);
    cmx_es_decoder_free(&d);
}

static void test_every_split_point(void **state)
{
    /* all positive vectors back to back: one stream of five messages */
    struct cmx_buf all, payloads;
    cmx_buf_init(&all, 1u << 20);
    cmx_buf_init(&payloads, 1u << 20);
    for (size_t k = 0; k < sizeof(POSITIVE) / sizeof(POSITIVE[0]); k++) {
        char path[256];
        snprintf(path, sizeof(path), ES "/encoded/positive/%s", POSITIVE[k]);
        size_t len;
        char *wire = slurp(path, &len);
        struct cmx_es_message m;
        const char *why;
        assert_int_equal(cmx_es_decode_one(wire, len, &m, &why), 0);
        cmx_buf_append(&payloads, m.payload, m.payload_len);
        cmx_buf_append(&payloads, "|", 1);
        cmx_buf_append(&all, wire, len);
        /* this message alone, split at every byte */
        struct cmx_buf one;
        cmx_buf_init(&one, 1u << 20);
        cmx_buf_append(&one, m.payload, m.payload_len);
        cmx_buf_append(&one, "|", 1);
        for (size_t i = 0; i <= len; i++)
            feed_pieces(wire, len, &i, 1, 1, &one);
        cmx_buf_free(&one);
        free(wire);
    }
    int n = (int)(sizeof(POSITIVE) / sizeof(POSITIVE[0]));
    for (size_t i = 0; i <= all.len; i++)
        feed_pieces(all.data, all.len, &i, 1, n, &payloads);
    /* three pieces: every pair of cuts */
    for (size_t i = 0; i <= all.len; i += 3)
        for (size_t j = i; j <= all.len; j++) {
            size_t cuts[2] = {i, j};
            feed_pieces(all.data, all.len, cuts, 2, n, &payloads);
        }
    /* byte by byte */
    size_t *cuts = malloc(all.len * sizeof(*cuts));
    for (size_t i = 0; i < all.len; i++)
        cuts[i] = i;
    feed_pieces(all.data, all.len, cuts, all.len, n, &payloads);
    free(cuts);
    cmx_buf_free(&all);
    cmx_buf_free(&payloads);
}

static void test_negative(void **state)
{
    for (size_t k = 0; k < sizeof(NEGATIVE) / sizeof(NEGATIVE[0]); k++) {
        char path[256];
        size_t len, wl;
        snprintf(path, sizeof(path), ES "/decoded/negative/%s", NEGATIVE[k]);
        char *want = slurp(path, &wl);
        while (wl > 0 && (want[wl - 1] == '\n' || want[wl - 1] == '\r'))
            want[--wl] = '\0';
        snprintf(path, sizeof(path), ES "/encoded/negative/%s", NEGATIVE[k]);
        char *wire = slurp(path, &len);
        struct cmx_es_message m;
        const char *why = NULL;
        assert_int_equal(cmx_es_decode_one(wire, len, &m, &why), CMX_EUPSTREAM);
        assert_string_equal(why, want);
        /* incrementally, at every split point: the same error, no message delivered */
        for (size_t i = 0; i <= len; i++) {
            struct cmx_es_decoder d;
            cmx_es_decoder_init(&d, 0);
            struct collect c = {0};
            cmx_buf_init(&c.reencoded, 1u << 20);
            cmx_buf_init(&c.payloads, 1u << 20);
            int r = cmx_es_feed(&d, wire, i, collect_cb, &c);
            if (r == 0)
                r = cmx_es_feed(&d, wire + i, len - i, collect_cb, &c);
            if (r == 0)
                r = cmx_es_finish(&d);
            assert_int_equal(r, CMX_EUPSTREAM);
            assert_non_null(d.error);
            /* a corrupted length can only be told apart by its prelude CRC */
            assert_string_equal(d.error, want);
            assert_int_equal(c.n, 0);
            /* and it sticks */
            assert_int_equal(cmx_es_feed(&d, wire, len, collect_cb, &c), CMX_EUPSTREAM);
            cmx_buf_free(&c.reencoded);
            cmx_buf_free(&c.payloads);
            cmx_es_decoder_free(&d);
        }
        free(wire);
        free(want);
    }
}

static void test_truncated_and_limits(void **state)
{
    size_t len;
    char *wire = slurp(ES "/encoded/positive/all_headers", &len);
    struct cmx_es_decoder d;
    struct collect c = {0};
    cmx_buf_init(&c.reencoded, 1u << 20);
    cmx_buf_init(&c.payloads, 1u << 20);
    cmx_es_decoder_init(&d, 0);
    assert_int_equal(cmx_es_feed(&d, wire, len - 1, collect_cb, &c), 0);
    assert_int_equal(cmx_es_finish(&d), CMX_EUPSTREAM);
    assert_string_equal(d.error, "Truncated message");
    cmx_es_decoder_free(&d);
    /* a message larger than the decoder accepts */
    cmx_es_decoder_init(&d, 100);
    assert_int_equal(cmx_es_feed(&d, wire, len, collect_cb, &c), CMX_EUPSTREAM);
    assert_string_equal(d.error, "Invalid message length");
    cmx_es_decoder_free(&d);
    /* a callback's non-zero return stops decoding and is passed through */
    cmx_es_decoder_init(&d, 0);
    assert_int_equal(cmx_crc32(0, "123456789", 9), 0xCBF43926u);
    free(wire);
    cmx_buf_free(&c.reencoded);
    cmx_buf_free(&c.payloads);
    cmx_es_decoder_free(&d);
}

struct frames {
    int n;
    char types[4][64];
    char payloads[4][256];
};

static int frames_cb(void *ud, const struct cmx_es_message *m)
{
    struct frames *f = ud;
    const struct cmx_es_header *mt = cmx_es_find(m, ":message-type");
    assert_non_null(mt);
    const struct cmx_es_header *t =
        cmx_es_find(m, cmx_es_header_is(mt, "exception") ? ":exception-type" : ":event-type");
    assert_non_null(t);
    assert_int_equal(t->type, CMX_ES_STRING);
    snprintf(f->types[f->n], sizeof(f->types[0]), "%.*s", (int)t->len, t->data);
    snprintf(f->payloads[f->n], sizeof(f->payloads[0]), "%.*s", (int)m->payload_len, m->payload);
    f->n++;
    return 0;
}

static void test_bedrock_frames(void **state)
{
    size_t tl, bl;
    char *text = slurp(BF "/delta-then-modelStreamErrorException.eventstream.base64.txt", &tl);
    unsigned char *bin = b64(text, &bl);
    assert_int_equal(bl, 376);
    for (size_t i = 0; i <= bl; i++) {
        struct cmx_es_decoder d;
        cmx_es_decoder_init(&d, 0);
        struct frames f = {0};
        assert_int_equal(cmx_es_feed(&d, (char *)bin, i, frames_cb, &f), 0);
        assert_int_equal(cmx_es_feed(&d, (char *)bin + i, bl - i, frames_cb, &f), 0);
        assert_int_equal(cmx_es_finish(&d), 0);
        assert_int_equal(f.n, 2);
        assert_string_equal(f.types[0], "contentBlockDelta");
        assert_string_equal(f.payloads[0],
                            "{\"contentBlockIndex\":0,\"delta\":{\"text\":\"before error\"}}");
        assert_string_equal(f.types[1], "modelStreamErrorException");
        assert_non_null(strstr(f.payloads[1], "\"originalStatusCode\":424"));
        cmx_es_decoder_free(&d);
    }
    free(bin);
    free(text);
    text = slurp(BF "/modelStreamErrorException-only.eventstream.base64.txt", &tl);
    bin = b64(text, &bl);
    assert_int_equal(bl, 221);
    struct cmx_es_decoder d;
    cmx_es_decoder_init(&d, 0);
    struct frames f = {0};
    assert_int_equal(cmx_es_feed(&d, (char *)bin, bl, frames_cb, &f), 0);
    assert_int_equal(f.n, 1);
    assert_string_equal(f.types[0], "modelStreamErrorException");
    /* one flipped payload byte: message CRC */
    cmx_es_decoder_free(&d);
    bin[bl - 10] ^= 1;
    cmx_es_decoder_init(&d, 0);
    assert_int_equal(cmx_es_feed(&d, (char *)bin, bl, frames_cb, &f), CMX_EUPSTREAM);
    assert_string_equal(d.error, "Message checksum mismatch");
    cmx_es_decoder_free(&d);
    free(bin);
    free(text);
}

/* cmx_crc32 takes a folding path (carry-less multiply) for 64 bytes and more where the CPU
 * has it, the tables elsewhere: every length, alignment and continuation must give the
 * bit-at-a-time CRC. */
static uint32_t crc_bitwise(uint32_t crc, const unsigned char *p, size_t n)
{
    crc = ~crc;
    while (n--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++)
            crc = crc & 1 ? 0xEDB88320u ^ (crc >> 1) : crc >> 1;
    }
    return ~crc;
}

static void test_crc32_paths(void **state)
{
    (void)state;
    static unsigned char buf[1200 + 16];
    uint32_t x = 12345;
    for (size_t i = 0; i < sizeof(buf); i++) {
        x = x * 1103515245u + 12345u;
        buf[i] = (unsigned char)(x >> 16);
    }
    for (size_t off = 0; off < 16; off++) {
        for (size_t n = 0; n <= 1200; n += n < 160 ? 1 : 37) {
            uint32_t seed = (uint32_t)(n * 2654435761u);
            uint32_t want = crc_bitwise(seed, buf + off, n);
            assert_int_equal(cmx_crc32(seed, buf + off, n), want);
            size_t half = n / 3;
            assert_int_equal(
                cmx_crc32(cmx_crc32(seed, buf + off, half), buf + off + half, n - half), want);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_positive_decode_and_reencode),
        cmocka_unit_test(test_every_split_point),
        cmocka_unit_test(test_negative),
        cmocka_unit_test(test_truncated_and_limits),
        cmocka_unit_test(test_bedrock_frames),
        cmocka_unit_test(test_crc32_paths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
