/* libFuzzer target for the response side of src/upstream/h1.c: arbitrary bytes as what a
 * server sent back, through the client's real parsing/delivery code (no socket, via the
 * cmx_upstream_h1_feed hook). The first byte picks options (HEAD, EOF at the end, pause on
 * every body piece, cancel or abort from a callback), the second a split point. Fed whole,
 * split in two and byte by byte, a run without cancel/abort must give the same status, body
 * and result every time; nothing may crash or leak. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "core/buf.h"
#include "core/err.h"
#include "upstream/upstream.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Test hook in src/upstream/h1.c. */
int cmx_upstream_h1_feed(struct cmx_upstream *up, const struct cmx_upstream_request *req,
                         struct cmx_upstream_xfer **out, const char *const *pieces,
                         const size_t *lens, size_t n, bool eof);

struct run {
    struct cmx_upstream_xfer *x; /* the transfer, while it runs */
    int cancel_at;               /* cancel inside this on_data call (1-based; 0: never) */
    bool pause;                  /* pause inside every on_data call */
    bool abort_headers;          /* on_headers returns non-zero */
    int status;                  /* from on_headers */
    int headers_calls;           /* must stay <= 1 */
    size_t n_headers;            /* fields passed */
    int data_calls;              /* on_data calls */
    int done_calls;              /* must stay <= 1 */
    int err;                     /* on_done's */
    struct cmx_buf body;         /* bytes delivered */
};

static uv_loop_t loop;
static struct cmx_upstream *client;

static int on_headers(void *ud, int status, const struct cmx_http_header *h, size_t n)
{
    struct run *r = ud;
    if (r->done_calls != 0 || ++r->headers_calls > 1 || status < 200)
        __builtin_trap();
    for (size_t i = 0; i < n; i++)
        if (strlen(h[i].name) != h[i].name_len || strlen(h[i].value) != h[i].value_len)
            __builtin_trap();
    r->status = status;
    r->n_headers = n;
    return r->abort_headers ? 1 : 0;
}

static int on_data(void *ud, const char *data, size_t len)
{
    struct run *r = ud;
    if (r->done_calls != 0 || r->headers_calls != 1 || len == 0)
        __builtin_trap();
    r->data_calls++;
    if (cmx_buf_append(&r->body, data, len) != 0)
        __builtin_trap();
    if (r->data_calls == r->cancel_at) {
        cmx_upstream_h1.cancel(r->x);
        r->x = NULL;
    } else if (r->pause) {
        cmx_upstream_h1.pause(r->x, true);
    }
    return 0;
}

static void on_done(void *ud, int err, bool first_byte)
{
    struct run *r = ud;
    if (++r->done_calls > 1 || (err == 0 && !first_byte))
        __builtin_trap();
    if (err == 0 && r->headers_calls != 1)
        __builtin_trap();
    r->x = NULL;
    r->err = err;
}

/* Feeds s cut at the given points (ascending); results go to r. */
static void run(struct run *r, const char *method, const char *s, size_t len, const size_t *cuts,
                size_t ncuts, bool eof, const char **pieces, size_t *lens)
{
    size_t at = 0, n = 0;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t next = i < ncuts ? cuts[i] : len;
        pieces[n] = s + at;
        lens[n++] = next - at;
        at = next;
    }
    struct cmx_upstream_request req = {
        .method = method,
        .url = "http://fuzz.test:8080/v1/chat/completions",
        .ud = r,
        .on_headers = on_headers,
        .on_data = on_data,
        .on_done = on_done,
    };
    cmx_buf_init(&r->body, SIZE_MAX / 2);
    r->err = 1;
    if (cmx_upstream_h1_feed(client, &req, &r->x, pieces, lens, n, eof) != 0)
        __builtin_trap();
    /* the connection's handles close on this turn */
    uv_run(&loop, UV_RUN_NOWAIT);
}

static bool same(const struct run *a, const struct run *b)
{
    return a->done_calls == b->done_calls && a->err == b->err && a->status == b->status &&
           a->n_headers == b->n_headers && a->body.len == b->body.len &&
           (a->body.len == 0 || memcmp(a->body.data, b->body.data, a->body.len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (client == NULL) {
        if (uv_loop_init(&loop) != 0 || cmx_upstream_global_init() != 0 ||
            cmx_upstream_h1.create(&loop, &client) != 0)
            __builtin_trap();
    }
    if (size < 2)
        return 0;
    uint8_t opt = data[0];
    const char *s = (const char *)data + 2;
    size_t len = size - 2;
    size_t split = data[1] % (len + 1);
    const char *method = opt & 1 ? "HEAD" : "POST";
    bool eof = (opt & 2) != 0;
    struct run proto = {
        .pause = (opt & 4) != 0,
        .cancel_at = (opt >> 3) & 3,
        .abort_headers = (opt & 0x20) != 0,
    };
    bool compare = proto.cancel_at == 0 && !proto.abort_headers;

    size_t *cuts = malloc((len + 2) * sizeof(*cuts));
    const char **pieces = malloc((len + 2) * sizeof(*pieces));
    size_t *lens = malloc((len + 2) * sizeof(*lens));
    if (cuts == NULL || pieces == NULL || lens == NULL)
        goto out_free;
    for (size_t i = 0; i + 1 < len; i++)
        cuts[i] = i + 1;

    /* byte by byte costs a parser call per byte: only for inputs of a sane size */
    bool by_byte = len <= 8192;
    struct run whole = proto, two = proto, bytes = proto;
    run(&whole, method, s, len, NULL, 0, eof, pieces, lens);
    run(&two, method, s, len, &split, 1, eof, pieces, lens);
    if (by_byte)
        run(&bytes, method, s, len, cuts, len ? len - 1 : 0, eof, pieces, lens);
    if (compare && (!same(&whole, &two) || (by_byte && !same(&whole, &bytes))))
        __builtin_trap();
    cmx_buf_free(&whole.body);
    cmx_buf_free(&two.body);
    if (by_byte)
        cmx_buf_free(&bytes.body);

out_free:
    free(cuts);
    free(pieces);
    free(lens);
    return 0;
}
