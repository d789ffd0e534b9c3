/* libFuzzer: the OpenAI chunk filter, the generated-text count and the request rewrite on
 * arbitrary bytes. The first byte picks options; the rest is the chunk / body. Whatever the
 * filter emits for valid JSON input must still be valid JSON; the choices span it reports
 * lies inside the input; the text count never exceeds what it reads (valid or not); any bytes
 * JSON-escaped make a valid JSON string; a whole answer re-emitted as a stream is made of
 * JSON objects. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/buf.h"
#include "core/json_scan.h"
#include "providers/provider.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Every chunk a whole answer is re-emitted as must be a JSON object. */
static int chunk_is_object(void *ud, const char *json, size_t len)
{
    (void)ud;
    enum cmx_json_type top;
    if (cmx_json_scan(json, len, &top, NULL, 0, NULL) != 0 || top != CMX_JSON_OBJECT)
        __builtin_trap();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t opt = data[0];
    const char *json = (const char *)data + 1;
    size_t len = size - 1;
    enum cmx_json_type top;
    bool valid = cmx_json_scan(json, len, &top, NULL, 0, NULL) == 0;

    struct cmx_buf b;
    cmx_buf_init(&b, 1u << 24);
    struct cmx_usage u;
    memset(&u, 0, sizeof(u));
    struct cmx_chunk_result res;
    if (cmx_openai_chunk_filter(json, len, opt & 1, "chat.completion.chunk", "req_f", 1, &u, &b,
                                &res) == 0 &&
        valid && !res.drop && !res.done) {
        if (cmx_json_scan(res.data, res.len, &top, NULL, 0, NULL) != 0)
            __builtin_trap();
        if (res.choices != NULL) {
            if (res.choices < json || res.choices + res.choices_len > json + len ||
                cmx_openai_text_bytes(res.choices, res.choices_len) > res.choices_len)
                __builtin_trap();
        }
    }
    cmx_buf_free(&b);
    /* any bytes escaped and quoted are a valid JSON string */
    cmx_buf_init(&b, 1u << 24);
    if (cmx_buf_puts(&b, "\"") == 0 && cmx_buf_json_escape(&b, json, len) == 0 &&
        cmx_buf_puts(&b, "\"") == 0 &&
        (cmx_json_scan(b.data, b.len, &top, NULL, 0, NULL) != 0 || top != CMX_JSON_STRING))
        __builtin_trap();
    cmx_buf_free(&b);
    if (cmx_openai_text_bytes(json, len) > len)
        __builtin_trap();
    if (valid)
        (void)cmx_openai_completion_as_stream(json, len, chunk_is_object, NULL);

    /* the request rewrite, for object bodies */
    struct cmx_json_member m[CMX_MAX_MEMBERS];
    size_t n = 0;
    if (valid && cmx_json_scan(json, len, &top, m, CMX_MAX_MEMBERS, &n) == 0 &&
        top == CMX_JSON_OBJECT && cmx_json_count(m, n, "model") <= 1 &&
        cmx_json_count(m, n, "stream_options") <= 1) {
        struct cmx_arena a;
        cmx_arena_init(&a);
        struct cmx_client_req cr;
        memset(&cr, 0, sizeof(cr));
        cr.ep = (opt & 2) ? CMX_EP_EMBEDDINGS : CMX_EP_CHAT;
        cr.body = json;
        cr.body_len = len;
        cr.members = m;
        cr.n_members = n;
        cr.stream = (opt & 4) != 0;
        const char *out;
        size_t ol;
        if (cmx_openai_rewrite_body(&cr, "up\"stream", &a, &out, &ol) == 0 &&
            cmx_json_scan(out, ol, &top, NULL, 0, NULL) != 0)
            __builtin_trap();
        cmx_arena_reset(&a);
    }
    return 0;
}
