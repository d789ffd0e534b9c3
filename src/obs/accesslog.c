#include "obs/accesslog.h"
#include "core/log.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <unistd.h>

#define FLUSH_AT (32u * 1024)

void cmx_accesslog_init(struct cmx_accesslog *l, int fd, bool enabled)
{
    cmx_buf_init(&l->buf, 4u << 20);
    l->fd = fd;
    l->enabled = enabled;
}

static void put_str(struct cmx_buf *b, const char *key, const char *v)
{
    cmx_buf_printf(b, ",\"%s\":", key);
    if (v == NULL) {
        cmx_buf_puts(b, "null");
        return;
    }
    cmx_buf_puts(b, "\"");
    cmx_buf_json_escape(b, v, strlen(v));
    cmx_buf_puts(b, "\"");
}

static void put_int(struct cmx_buf *b, const char *key, int64_t v)
{
    if (v < 0)
        cmx_buf_printf(b, ",\"%s\":null", key);
    else
        cmx_buf_printf(b, ",\"%s\":%" PRId64, key, v);
}

static void put_ms(struct cmx_buf *b, const char *key, int64_t us)
{
    if (us < 0)
        cmx_buf_printf(b, ",\"%s\":null", key);
    else
        cmx_buf_printf(b, ",\"%s\":%" PRId64 ".%03d", key, us / 1000, (int)(us % 1000));
}

void cmx_accesslog_write(struct cmx_accesslog *l, const struct cmx_access_entry *e)
{
    if (!l->enabled)
        return;
    struct cmx_buf *b = &l->buf;
    char ts[32];
    cmx_time_iso(ts, e->time_ms);
    cmx_buf_printf(b, "{\"time\":\"%s\"", ts);
    put_str(b, "request_id", e->request_id);
    put_str(b, "method", e->method);
    put_str(b, "path", e->path);
    put_str(b, "model", e->model);
    put_str(b, "provider", e->provider);
    cmx_buf_printf(b, ",\"status\":%d", e->status);
    put_ms(b, "latency_ms", (int64_t)e->latency_us);
    put_ms(b, "upstream_latency_ms", e->upstream_latency_us);
    put_ms(b, "ttfb_ms", e->ttfb_us);
    put_int(b, "prompt_tokens", e->prompt_tokens);
    put_int(b, "completion_tokens", e->completion_tokens);
    put_int(b, "cached_tokens", e->cached_tokens);
    cmx_buf_printf(b, ",\"attempts\":%d,\"stream\":%s", e->attempts, e->stream ? "true" : "false");
    put_str(b, "error", e->error);
    cmx_buf_puts(b, "}\n");
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
