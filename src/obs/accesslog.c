#include "obs/accesslog.h"
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

/* Appends ,"key": — keys are literals without characters to escape. */
static void put_key(struct cmx_buf *b, const char *key)
{
    char k[48];
    size_t n = strlen(key);
    if (n > sizeof(k) - 4)
        n = sizeof(k) - 4;
    k[0] = ',';
    k[1] = '"';
    memcpy(k + 2, key, n);
    k[n + 2] = '"';
    k[n + 3] = ':';
    cmx_buf_append(b, k, n + 4);
}

/* Appends the decimal digits of v; with frac_digits > 0, v is fixed-point with that many
 * decimals (v = 1234, 3 -> "1.234"). */
static void put_num(struct cmx_buf *b, uint64_t v, int frac_digits)
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
    cmx_buf_append(b, d + i, sizeof(d) - i);
}

static void put_str(struct cmx_buf *b, const char *key, const char *v)
{
    put_key(b, key);
    if (v == NULL) {
        cmx_buf_append(b, "null", 4);
        return;
    }
    cmx_buf_append(b, "\"", 1);
    cmx_buf_json_escape(b, v, strlen(v));
    cmx_buf_append(b, "\"", 1);
}

static void put_int(struct cmx_buf *b, const char *key, int64_t v)
{
    put_key(b, key);
    if (v < 0)
        cmx_buf_append(b, "null", 4);
    else
        put_num(b, (uint64_t)v, 0);
}

static void put_ms(struct cmx_buf *b, const char *key, int64_t us)
{
    put_key(b, key);
    if (us < 0)
        cmx_buf_append(b, "null", 4);
    else
        put_num(b, (uint64_t)us, 3);
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
    char ms[5] = {'.', (char)('0' + e->time_ms % 1000 / 100), (char)('0' + e->time_ms % 100 / 10),
                  (char)('0' + e->time_ms % 10), 'Z'};
    cmx_buf_append(b, "{\"time\":\"", 9);
    cmx_buf_append(b, l->ts_text, 19);
    cmx_buf_append(b, ms, 5);
    cmx_buf_append(b, "\"", 1);
    put_str(b, "request_id", e->request_id);
    put_str(b, "method", e->method);
    put_str(b, "path", e->path);
    put_str(b, "model", e->model);
    put_str(b, "provider", e->provider);
    put_int(b, "status", e->status);
    put_ms(b, "latency_ms", (int64_t)e->latency_us);
    put_ms(b, "upstream_latency_ms", e->upstream_latency_us);
    put_ms(b, "ttfb_ms", e->ttfb_us);
    put_int(b, "prompt_tokens", e->prompt_tokens);
    put_int(b, "completion_tokens", e->completion_tokens);
    put_int(b, "cached_tokens", e->cached_tokens);
    put_int(b, "attempts", e->attempts);
    put_key(b, "stream");
    if (e->stream)
        cmx_buf_append(b, "true", 4);
    else
        cmx_buf_append(b, "false", 5);
    put_str(b, "error", e->error);
    if (e->tenant != NULL)
        put_str(b, "tenant", e->tenant);
    if (e->key_id != NULL)
        put_str(b, "key_id", e->key_id);
    cmx_buf_append(b, "}\n", 2);
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
