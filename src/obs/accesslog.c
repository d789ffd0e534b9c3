#include "obs/accesslog.h"
#include "core/json_scan.h"
#include "core/log.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#define FLUSH_AT (32u * 1024)

void cmx_accesslog_init(struct cmx_accesslog *l, int fd, bool enabled)
{
    cmx_buf_init(&l->buf, 4u << 20);
    l->fd = fd;
    l->enabled = enabled;
    l->ts_sec = 0;
}

/* The line is written through a raw pointer into room reserved once (cmx_buf_reserve): the
 * keys are literals without characters to escape; strings are escaped as JSON. */

/* Room a JSON-escaped copy of v can take: quotes included, or "null" for NULL. */
static size_t str_room(const char *v, size_t *len)
{
    *len = v != NULL ? strlen(v) : 0;
    return 6 * *len + 4;
}

#define PUT_LIT(o, lit) (memcpy((o), (lit), sizeof(lit) - 1), (o) + sizeof(lit) - 1)

/* Writes v (len bytes) as a JSON string, or null; a byte that is not UTF-8 (a raw byte in a
 * client's URL) becomes \ufffd, so that every line stays valid JSON. */
static char *put_str(char *o, const char *v, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    if (v == NULL)
        return PUT_LIT(o, "null");
    *o++ = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c >= 0x80) {
            const unsigned char *q = (const unsigned char *)v + i;
            const unsigned char *next = cmx_utf8_seq(q, (const unsigned char *)v + len);
            if (next == NULL) {
                o = PUT_LIT(o, "\\ufffd");
                continue;
            }
            memcpy(o, q, (size_t)(next - q));
            o += next - q;
            i += (size_t)(next - q) - 1;
            continue;
        }
        if (c >= 0x20 && c != '"' && c != '\\') {
            *o++ = (char)c;
            continue;
        }
        *o++ = '\\';
        switch (c) {
        case '"':
        case '\\':
            *o++ = (char)c;
            break;
        case '\n':
            *o++ = 'n';
            break;
        case '\r':
            *o++ = 'r';
            break;
        case '\t':
            *o++ = 't';
            break;
        default:
            o = PUT_LIT(o, "u00");
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        }
    }
    *o++ = '"';
    return o;
}

/* Writes the decimal digits of v; with frac_digits > 0, v is fixed-point with that many
 * decimals (v = 1234, 3 -> "1.234"). */
static char *put_num(char *o, uint64_t v, int frac_digits)
{
    char d[32];
    size_t i = sizeof(d);
    int f = 0;
    do {
        d[--i] = (char)('0' + v % 10);
        v /= 10;
        if (++f == frac_digits)
            d[--i] = '.';
    } while (v != 0 || f < frac_digits + (frac_digits > 0));
    memcpy(o, d + i, sizeof(d) - i);
    return o + (sizeof(d) - i);
}

/* A count, or null when negative. */
static char *put_int(char *o, int64_t v)
{
    return v < 0 ? PUT_LIT(o, "null") : put_num(o, (uint64_t)v, 0);
}

/* Microseconds as milliseconds with three decimals, or null when negative. */
static char *put_ms(char *o, int64_t us)
{
    return us < 0 ? PUT_LIT(o, "null") : put_num(o, (uint64_t)us, 3);
}

void cmx_accesslog_write(struct cmx_accesslog *l, const struct cmx_access_entry *e)
{
    if (!l->enabled)
        return;
    struct cmx_buf *b = &l->buf;
    uint64_t sec = e->time_ms / 1000;
    if (l->ts_sec != sec + 1) { /* formatted once per second per worker */
        char ts[32];
        cmx_time_iso(ts, e->time_ms);
        memcpy(l->ts_text, ts, 19);
        l->ts_sec = sec + 1;
    }
    size_t n_id, n_method, n_path, n_model, n_provider, n_error, n_tenant, n_key;
    size_t room = 640 + str_room(e->request_id, &n_id) + str_room(e->method, &n_method) +
                  str_room(e->path, &n_path) + str_room(e->model, &n_model) +
                  str_room(e->provider, &n_provider) + str_room(e->error, &n_error) +
                  str_room(e->tenant, &n_tenant) + str_room(e->key_id, &n_key);
    char *start = cmx_buf_reserve(b, room), *o = start;
    if (o == NULL)
        return; /* the buffer is at its cap (stdout blocked): drop the line */
    o = PUT_LIT(o, "{\"time\":\"");
    memcpy(o, l->ts_text, 19);
    o += 19;
    *o++ = '.';
    *o++ = (char)('0' + e->time_ms % 1000 / 100);
    *o++ = (char)('0' + e->time_ms % 100 / 10);
    *o++ = (char)('0' + e->time_ms % 10);
    o = PUT_LIT(o, "Z\",\"request_id\":");
    o = put_str(o, e->request_id, n_id);
    o = PUT_LIT(o, ",\"method\":");
    o = put_str(o, e->method, n_method);
    o = PUT_LIT(o, ",\"path\":");
    o = put_str(o, e->path, n_path);
    o = PUT_LIT(o, ",\"model\":");
    o = put_str(o, e->model, n_model);
    o = PUT_LIT(o, ",\"provider\":");
    o = put_str(o, e->provider, n_provider);
#define NUM(key, v, ms)                                                                            \
    {                                                                                              \
        ",\"" key "\":", sizeof(",\"" key "\":") - 1, (v), (ms)                                    \
    }
    const struct {
        const char *key; /* ,"name": */
        size_t key_len;
        int64_t v;
        bool ms; /* microseconds written as milliseconds */
    } nums[] = {
        NUM("status", e->status, false),
        NUM("latency_ms", (int64_t)e->latency_us, true),
        NUM("upstream_latency_ms", e->upstream_latency_us, true),
        NUM("ttfb_ms", e->ttfb_us, true),
        NUM("prompt_tokens", e->prompt_tokens, false),
        NUM("completion_tokens", e->completion_tokens, false),
        NUM("cached_tokens", e->cached_tokens, false),
        NUM("attempts", e->attempts, false),
    };
#undef NUM
    for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
        memcpy(o, nums[i].key, nums[i].key_len);
        o += nums[i].key_len;
        o = nums[i].ms ? put_ms(o, nums[i].v) : put_int(o, nums[i].v);
    }
    o = e->stream ? PUT_LIT(o, ",\"stream\":true") : PUT_LIT(o, ",\"stream\":false");
    o = PUT_LIT(o, ",\"error\":");
    o = put_str(o, e->error, n_error);
    if (e->tenant != NULL) {
        o = PUT_LIT(o, ",\"tenant\":");
        o = put_str(o, e->tenant, n_tenant);
    }
    if (e->key_id != NULL) {
        o = PUT_LIT(o, ",\"key_id\":");
        o = put_str(o, e->key_id, n_key);
    }
    o = PUT_LIT(o, "}\n");
    cmx_buf_commit(b, (size_t)(o - start));
    if (b->len >= FLUSH_AT)
        cmx_accesslog_flush(l);
}

void cmx_accesslog_flush(struct cmx_accesslog *l)
{
    size_t off = 0;
    while (off < l->buf.len) {
        ssize_t w = write(l->fd, l->buf.data + off, l->buf.len - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            break; /* stdout gone: drop rather than block the worker */
        }
        off += (size_t)w;
    }
    cmx_buf_reset(&l->buf);
}

void cmx_accesslog_free(struct cmx_accesslog *l)
{
    cmx_accesslog_flush(l);
    cmx_buf_free(&l->buf);
}
