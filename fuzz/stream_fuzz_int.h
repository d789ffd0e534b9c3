/* Shared body of the translating-provider stream fuzz targets (fuzz_anthropic_stream.c,
 * fuzz_vertex_stream.c). The first input byte picks a split point; the rest is the upstream
 * body. Fed whole and split in two, the decoder must produce the same chunks and result;
 * every chunk must be a JSON object (or [DONE], at most once and last); the whole-body
 * translator and the error parser must not crash on the same bytes. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/buf.h"
#include "core/err.h"
#include "core/json_scan.h"
#include "providers/provider.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct rec {
    struct cmx_buf out;
    bool done;
};

static int chunk_cb(void *ud, const char *json, size_t len)
{
    struct rec *r = ud;
    if (r->done)
        __builtin_trap(); /* nothing after [DONE] */
    if (len == 6 && memcmp(json, "[DONE]", 6) == 0) {
        r->done = true;
    } else {
        enum cmx_json_type top;
        if (cmx_json_scan(json, len, &top, NULL, 0, NULL) != 0 || top != CMX_JSON_OBJECT) {
            if (getenv("FUZZ_DEBUG"))
                fprintf(stderr, "bad chunk: %.*s\n", (int)len, json);
            __builtin_trap();
        }
    }
    if (cmx_buf_append(&r->out, json, len) != 0 || cmx_buf_append(&r->out, "\n", 1) != 0)
        __builtin_trap();
    return 0;
}

static int run(const struct cmx_provider_ops *ops, const struct cmx_deployment_cfg *d,
               const char *s, size_t len, size_t cut, struct rec *r)
{
    struct cmx_arena a;
    cmx_arena_init(&a);
    cmx_buf_init(&r->out, 64u << 20);
    r->done = false;
    void *st = ops->stream_new(&a, d);
    if (st == NULL)
        __builtin_trap();
    int rc = ops->stream_feed(st, s, cut, chunk_cb, r);
    if (rc == 0)
        rc = ops->stream_feed(st, s + cut, len - cut, chunk_cb, r);
    if (rc == 0)
        rc = ops->stream_finish(st, chunk_cb, r);
    ops->stream_free(st);
    cmx_arena_reset(&a);
    return rc;
}

static int fuzz_provider(const struct cmx_provider_ops *ops, const struct cmx_deployment_cfg *d,
                         const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *s = (const char *)data + 1;
    size_t len = size - 1;
    size_t cut = len ? data[0] % (len + 1) : 0;
    struct rec whole, split;
    int r1 = run(ops, d, s, len, 0, &whole);
    int r2 = run(ops, d, s, len, cut, &split);
    /* an upstream error or a JSON error may stop the first run earlier than the second only
     * if the results differ: require identical output and result */
    if (r1 != r2 || whole.out.len != split.out.len ||
        (whole.out.len && memcmp(whole.out.data, split.out.data, whole.out.len) != 0))
        __builtin_trap();
    cmx_buf_free(&whole.out);
    cmx_buf_free(&split.out);

    struct cmx_arena a;
    cmx_arena_init(&a);
    struct cmx_client_req cr = {.ep = (data[0] & 1) ? CMX_EP_EMBEDDINGS : CMX_EP_CHAT,
                                .body = "{\"model\":\"m\",\"input\":\"x\"}",
                                .body_len = 25};
    struct cmx_buf out;
    cmx_buf_init(&out, 64u << 20);
    (void)ops->translate(d, &cr, s, len, &a, &out);
    cmx_buf_free(&out);
    struct cmx_upstream_error e;
    ops->parse_error(400 + data[0], NULL, 0, s, len, &a, &e);
    if (e.message == NULL)
        __builtin_trap();
    cmx_arena_reset(&a);
    return 0;
}
