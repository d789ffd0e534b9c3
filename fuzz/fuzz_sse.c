/* libFuzzer target for src/codec/sse.c. The first input byte picks the split point and
 * the event size cap; the rest is the stream. Fed whole, split in two at that point, and
 * byte by byte, it must produce the same events and the same result every time. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec/sse.h"
#include "core/buf.h"
#include "core/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void put(struct cmx_buf *b, const char *s, size_t n)
{
    char len[sizeof(size_t)];
    /* The parser promises NUL-terminated fields. */
    if (s[n] != '\0')
        __builtin_trap();
    memcpy(len, &n, sizeof(n));
    if (cmx_buf_append(b, len, sizeof(len)) != 0 || cmx_buf_append(b, s, n) != 0)
        __builtin_trap();
}

static int record_cb(void *ud, const struct cmx_sse_event *ev)
{
    struct cmx_buf *b = ud;
    /* Data and event names may hold NUL bytes; an id never does (WHATWG drops it). */
    if (ev->id_len != strlen(ev->id))
        __builtin_trap();
    put(b, ev->event, ev->event_len);
    put(b, ev->data, ev->data_len);
    put(b, ev->id, ev->id_len);
    return 0;
}

/* Feeds s cut at the given points (ascending), then finishes; events go to out. */
static int run(const char *s, size_t len, const size_t *cuts, size_t ncuts, size_t max,
               struct cmx_buf *out)
{
    struct cmx_sse_parser p;
    size_t at = 0;
    int r = 0;

    cmx_sse_parser_init(&p, max);
    for (size_t i = 0; i <= ncuts && r == 0; i++) {
        size_t next = i < ncuts ? cuts[i] : len;
        r = cmx_sse_parser_feed(&p, s + at, next - at, record_cb, out);
        at = next;
    }
    if (r == 0)
        r = cmx_sse_parser_finish(&p, record_cb, out);
    cmx_sse_parser_free(&p);
    if (r != 0 && r != CMX_ETOOBIG && r != CMX_ENOMEM)
        __builtin_trap();
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cmx_buf whole, split, bytes;
    size_t *cuts;

    if (size == 0)
        return 0;
    const char *s = (const char *)data + 1;
    size_t len = size - 1;
    size_t at = data[0] % (len + 1);
    /* Odd first bytes use a small cap so that CMX_ETOOBIG paths get exercised too. */
    size_t max = data[0] & 1 ? 1 + data[0] % 64 : 1u << 20;

    cuts = malloc((len ? len : 1) * sizeof(*cuts));
    if (cuts == NULL)
        return 0;
    for (size_t i = 0; i + 1 < len; i++)
        cuts[i] = i + 1;

    cmx_buf_init(&whole, SIZE_MAX / 2);
    cmx_buf_init(&split, SIZE_MAX / 2);
    cmx_buf_init(&bytes, SIZE_MAX / 2);
    int rw = run(s, len, NULL, 0, max, &whole);
    int rs = run(s, len, &at, 1, max, &split);
    int rb = run(s, len, cuts, len ? len - 1 : 0, max, &bytes);
    if (rw != rs || rw != rb)
        __builtin_trap();
    if (whole.len != split.len || whole.len != bytes.len)
        __builtin_trap();
    if (whole.len > 0 && (memcmp(whole.data, split.data, whole.len) != 0 ||
                          memcmp(whole.data, bytes.data, whole.len) != 0))
        __builtin_trap();
    cmx_buf_free(&whole);
    cmx_buf_free(&split);
    cmx_buf_free(&bytes);
    free(cuts);
    return 0;
}
