/* AWS Bedrock runtime: OpenAI chat completions <-> Converse / ConverseStream, embeddings
 * through InvokeModel (Titan Text Embeddings, Cohere Embed), SigV4 or Bedrock API keys.
 * Shapes: shared/specs/bedrock/bedrock-runtime-2023-09-30.service-2.json (botocore).
 *
 * Request: system/developer -> system; user/assistant text and data: images -> content
 * blocks; assistant tool_calls -> toolUse; tool messages -> toolResult blocks of a user
 * message; consecutive same-role messages merged (Converse wants them alternating);
 * tools/tool_choice -> toolConfig; max(_completion)_tokens/temperature/top_p/stop ->
 * inferenceConfig. Parameters Bedrock cannot honour are rejected (n > 1, logprobs,
 * response_format other than text, audio, legacy functions) or dropped (penalties, seed,
 * logit_bias, user, ...: see README "AWS Bedrock").
 *
 * Streams: application/vnd.amazon.eventstream frames (codec/eventstream.c) whose events
 * become chat.completion.chunk objects; exceptions become an in-band error event.
 *
 * The hot paths (request, answer, stream events) read JSON with core/json_scan.h and splice
 * string values verbatim (no tree, no decode / re-escape); json-c is used only for the
 * embeddings and error bodies. */
#include "auth/sigv4.h"
#include "codec/eventstream.h"
#include "core/clock.h"
#include "core/err.h"
#include "providers/provider.h"

#include <json-c/json.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define COHERE_BATCH 96   /* Cohere Embed's texts per call */
#define MAX_BLOCKS   1024 /* content blocks tracked per streamed message */
#define JSON_OUT     (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

/* cmx_buf_puts for a string literal: the length is known at compile time (no strlen on the
 * hot paths, which append dozens of short literals per request). */
#define PUTL(b, lit) cmx_buf_append((b), "" lit, sizeof(lit) - 1)

/* ---- small helpers ----------------------------------------------------------------------- */

static void put_cb(void *o)
{
    json_object_put(o);
}

/* Parses len bytes of JSON; the tree is released with the arena. NULL when invalid. */
static json_object *parse(struct cmx_arena *a, const char *s, size_t len)
{
    json_tokener *tok = json_tokener_new_ex(64);
    if (tok == NULL)
        return NULL;
    json_object *o = json_tokener_parse_ex(tok, s, (int)len);
    bool ok = o != NULL && json_tokener_get_error(tok) == json_tokener_success;
    size_t used = (size_t)json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    while (ok && used < len &&
           (s[used] == ' ' || s[used] == '\n' || s[used] == '\r' || s[used] == '\t'))
        used++;
    if (!ok || used != len || (a != NULL && cmx_arena_cleanup_add(a, put_cb, o) != 0)) {
        json_object_put(o);
        return NULL;
    }
    return o;
}

static json_object *get(json_object *o, const char *k)
{
    json_object *v = NULL;
    if (o == NULL || !json_object_is_type(o, json_type_object) ||
        !json_object_object_get_ex(o, k, &v))
        return NULL;
    return v != NULL && !json_object_is_type(v, json_type_null) ? v : NULL;
}

static const char *get_str(json_object *o, const char *k)
{
    json_object *v = get(o, k);
    return v != NULL && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

static bool is_num(json_object *v)
{
    return v != NULL &&
           (json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double));
}

static int64_t get_i64(json_object *o, const char *k)
{
    json_object *v = get(o, k);
    return v != NULL && json_object_is_type(v, json_type_int) ? json_object_get_int64(v) : 0;
}

static json_object *obj_add(json_object *o, const char *k, json_object *v)
{
    json_object_object_add(o, k, v);
    return v;
}

static bool is_titan(const char *model)
{
    return strstr(model, "titan-embed") != NULL;
}

static bool is_cohere(const char *model)
{
    return strstr(model, "cohere.embed") != NULL;
}

/* ---- URL, headers, signing ---------------------------------------------------------------- */

/* Completes out for POST base_url + path (path already URI-encoded): Host, Content-Type,
 * Accept, the request id, and either the Bedrock API key or a SigV4 signature. */
static int finish_req(const struct cmx_deployment_cfg *d, const struct cmx_client_req *cr,
                      const char *path, const char *accept, struct cmx_arena *a,
                      struct cmx_provider_req *out, const char **why)
{
    const struct cmx_provider_cfg *p = d->provider;
    const char *base = p->base_url;
    const char *auth = strstr(base, "://");
    auth = auth ? auth + 3 : base;
    size_t alen = strcspn(auth, "/");
    size_t blen = (size_t)(auth - base) + strlen(auth), plen = strlen(path);
    out->method = "POST";
    /* the URL is the base (origin and an endpoint's own path prefix) then our path; the full
     * path as sent, which is signed, is its tail */
    char *url = cmx_arena_alloc(a, blen + plen + 1);
    char *host = cmx_arena_alloc(a, 6 + alen + 1);
    if (url == NULL || host == NULL)
        return CMX_ENOMEM;
    memcpy(url, base, blen);
    memcpy(url + blen, path, plen + 1);
    out->url = url;
    const char *full = url + (size_t)(auth - base) + alen;
    memcpy(host, "Host: ", 6);
    memcpy(host + 6, auth, alen);
    host[6 + alen] = '\0';
    out->n_headers = 0;
    out->headers[out->n_headers++] = host;
    out->headers[out->n_headers++] = "Content-Type: application/json";
    out->headers[out->n_headers++] = accept;
    if (cr->request_id != NULL) {
        char *h = cmx_arena_concat(a, "amz-sdk-invocation-id: ", cr->request_id, NULL);
        if (h == NULL)
            return CMX_ENOMEM;
        out->headers[out->n_headers++] = h;
    }
    if (p->api_key != NULL) {
        char *h = cmx_arena_concat(a, "Authorization: Bearer ", p->api_key, NULL);
        if (h == NULL)
            return CMX_ENOMEM;
        out->headers[out->n_headers++] = h;
        return 0;
    }
    const char *acc = strchr(accept, ':') + 2;
    struct cmx_sigv4_header sh[] = {
        {"host", 4, auth, alen},
        {"content-type", 12, "application/json", 16},
        {"accept", 6, acc, strlen(acc)},
    };
    struct cmx_sigv4_req r = {
        .method = "POST",
        .path = full,
        .path_len = (size_t)(url + blen + plen - full),
        .headers = sh,
        .n_headers = 3,
        .payload = out->body,
        .payload_len = out->body_len,
        .region = p->region,
        .service = "bedrock",
        .now_ms = cmx_clock_now_ms(),
        .normalize_path = true,
    };
    struct cmx_sigv4_creds c = {p->access_key_id, p->secret_access_key, p->session_token};
    struct cmx_sigv4_out so;
    int rc = cmx_sigv4_sign(&r, &c, a, &so);
    if (rc == CMX_EINVAL) {
        *why = "The Bedrock provider has no usable AWS credentials.";
        return CMX_EINTERNAL;
    }
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < so.n_extra; i++)
        out->headers[out->n_headers++] = so.extra[i];
    char *h = cmx_arena_concat(a, "Authorization: ", so.authorization, NULL);
    if (h == NULL)
        return CMX_ENOMEM;
    out->headers[out->n_headers++] = h;
    return 0;
}

/* "/model/{id}/{op}" with the id URI-encoded (':' -> %3A, '/' of an ARN -> %2F). */
static char *model_path(struct cmx_arena *a, const char *model, const char *op)
{
    size_t n = strlen(model);
    char *enc = cmx_arena_alloc(a, n * 3 + 1);
    if (enc == NULL || cmx_sigv4_uri_encode(model, n, false, enc, n * 3 + 1) == (size_t)-1)
        return NULL;
    return cmx_arena_concat(a, "/model/", enc, "/", op, NULL);
}

/* ---- JSON without a tree ------------------------------------------------------------------- */

/* Requests and stream events are read with the project's validating scanner
 * (core/json_scan.h) instead of json-c: no tree, no allocation, and string values are valid
 * JSON text already, so they go out verbatim with no decode / re-escape. The client's body
 * was validated whole by the proxy, so the walkers below only ever see valid JSON. */
#define EV_MEMBERS 32

struct jobj {
    struct cmx_json_member m[EV_MEMBERS];
    size_t n;
};

static bool jscan(const char *s, size_t len, struct jobj *o)
{
    enum cmx_json_type t;
    int r = cmx_json_scan(s, len, &t, o->m, EV_MEMBERS, &o->n);
    return (r == 0 || r == CMX_ETOOBIG) && t == CMX_JSON_OBJECT;
}

static const struct cmx_json_member *jfind(const struct cmx_json_member *m, size_t n, const char *k)
{
    const struct cmx_json_member *x = m ? cmx_json_find(m, n, k) : NULL;
    return x != NULL && x->type != CMX_JSON_NULL ? x : NULL; /* null reads as absent */
}

static const struct cmx_json_member *jget(const struct jobj *o, const char *k, enum cmx_json_type t)
{
    const struct cmx_json_member *m = o ? jfind(o->m, o->n, k) : NULL;
    return m != NULL && m->type == t ? m : NULL;
}

/* An integer number's value; false when the text is not a plain integer that fits. */
static bool raw_int(const struct cmx_json_member *m, int64_t *v)
{
    /* what strtoll accepts of a JSON number's text, without the copy: digits only, an
     * optional '-', clamped to the int64 range on overflow */
    if (m == NULL || m->type != CMX_JSON_NUMBER || m->val_len >= 24)
        return false;
    const char *p = m->val, *e = m->val + m->val_len;
    bool neg = p < e && *p == '-';
    p += neg;
    if (p == e)
        return false;
    const uint64_t lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    uint64_t u = 0;
    bool over = false;
    for (; p < e; p++) {
        if (*p < '0' || *p > '9')
            return false;
        unsigned d = (unsigned)(*p - '0');
        if (over || u > (lim - d) / 10)
            over = true;
        else
            u = u * 10 + d;
    }
    if (over)
        u = lim;
    *v = !neg ? (int64_t)u : u == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)u;
    return true;
}

/* An integer member (0 when absent, not an integer or out of range). */
static int64_t jint(const struct jobj *o, const char *k)
{
    int64_t v = 0;
    return raw_int(jget(o, k, CMX_JSON_NUMBER), &v) ? v : 0;
}

static void put_raw(struct cmx_buf *b, const struct cmx_json_member *m)
{
    cmx_buf_append(b, m->val, m->val_len);
}

/* Appends v in decimal (what %lld prints), without printf. */
static void put_i64(struct cmx_buf *b, int64_t v)
{
    char t[24], *e = t + sizeof(t), *p = e;
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    do
        *--p = (char)('0' + u % 10);
    while ((u /= 10) != 0);
    if (v < 0)
        *--p = '-';
    cmx_buf_append(b, p, (size_t)(e - p));
}

/* True when string member m equals s (compared decoded, so "\u0061" is "a"). */
static bool str_is(const struct cmx_json_member *m, const char *s)
{
    char buf[64];
    size_t n;
    if (m == NULL || m->type != CMX_JSON_STRING || m->val_len - 2 >= sizeof(buf))
        return false;
    if (cmx_json_string_decode(m->val + 1, m->val_len - 2, buf, &n) != 0)
        return false;
    return n == strlen(s) && memcmp(buf, s, n) == 0;
}

/* End of the (valid) JSON value that starts at p. */
static const char *skip_value(const char *p, const char *end)
{
    if (*p == '"') {
        /* the closing quote is the first one not escaped by an odd run of backslashes */
        for (const char *q = p + 1; q < end;) {
            const char *e = memchr(q, '"', (size_t)(end - q));
            if (e == NULL)
                return end;
            size_t bs = 0;
            while (e - bs > p + 1 && e[-1 - (ptrdiff_t)bs] == '\\')
                bs++;
            if (bs % 2 == 0)
                return e + 1;
            q = e + 1;
        }
        return end;
    }
    if (*p == '{' || *p == '[') {
        int depth = 0;
        for (; p < end; p++) {
            if (*p == '"') {
                p = skip_value(p, end) - 1;
            } else if (*p == '{' || *p == '[') {
                depth++;
            } else if (*p == '}' || *p == ']') {
                if (--depth == 0)
                    return p + 1;
            }
        }
        return end;
    }
    while (p < end && *p != ',' && *p != ']' && *p != '}' && *p != ' ' && *p != '\n' &&
           *p != '\r' && *p != '\t')
        p++;
    return p;
}

/* jscan for text already known to be valid JSON (a part of a body that was scanned whole):
 * splits the object's members with memchr-speed skips instead of validating it again. Like
 * jscan, keeps the first EV_MEMBERS members. */
static bool jwalk(const char *s, size_t len, struct jobj *o)
{
    const char *end = s + len, *p = cmx_json_skip_ws(s, end);
    o->n = 0;
    if (p >= end || *p != '{')
        return false;
    for (p = cmx_json_skip_ws(p + 1, end); p < end && *p == '"' && o->n < EV_MEMBERS;) {
        struct cmx_json_member *m = &o->m[o->n];
        m->start = p;
        m->key = p + 1;
        p = skip_value(p, end);
        m->key_len = (size_t)(p - 1 - m->key);
        m->key_escaped = memchr(m->key, '\\', m->key_len) != NULL;
        p = cmx_json_skip_ws(p, end);
        if (p >= end || *p != ':')
            break; /* cannot happen in valid JSON; never read past end */
        m->val = p = cmx_json_skip_ws(p + 1, end);
        if (p >= end)
            break;
        p = skip_value(p, end);
        m->val_len = (size_t)(p - m->val);
        m->type = cmx_json_type_of((unsigned char)*m->val);
        m->end = p;
        o->n++;
        p = cmx_json_skip_ws(p, end);
        if (p < end && *p == ',')
            p = cmx_json_skip_ws(p + 1, end);
    }
    return true;
}

/* The object member k of o (itself from a validated text) split into sub; false when absent
 * or not an object. */
static bool jsub(const struct jobj *o, const char *k, struct jobj *sub)
{
    const struct cmx_json_member *m = jget(o, k, CMX_JSON_OBJECT);
    return m != NULL && jwalk(m->val, m->val_len, sub);
}

/* Iterates the elements of an array member, each as a pseudo-member (val, val_len, type). */
struct jarr {
    const char *p, *end;
};

static bool jarr_init(struct jarr *it, const struct cmx_json_member *m)
{
    if (m == NULL || m->type != CMX_JSON_ARRAY)
        return false;
    it->p = m->val + 1;
    it->end = m->val + m->val_len - 1;
    return true;
}

static bool jarr_next(struct jarr *it, struct cmx_json_member *e)
{
    while (it->p < it->end &&
           (*it->p == ' ' || *it->p == '\n' || *it->p == '\r' || *it->p == '\t' || *it->p == ','))
        it->p++;
    if (it->p >= it->end)
        return false;
    const char *v = it->p;
    it->p = skip_value(v, it->end);
    memset(e, 0, sizeof(*e));
    e->val = v;
    e->val_len = (size_t)(it->p - v);
    e->type = cmx_json_type_of((unsigned char)*v);
    return true;
}

/* ---- request: chat completions -> Converse ------------------------------------------------ */

struct conv {
    struct cmx_buf *b;                /* the messages array being written */
    const char *role;                 /* role of the open message, NULL before the first */
    bool first_block;                 /* the open message has no block yet */
    bool tool_blocks;                 /* the history holds toolUse / toolResult blocks */
    struct cmx_json_member names[64]; /* tool names used in the history (raw strings) */
    size_t n_names;
    struct cmx_arena *a;
    const char **why;
};

/* Starts a block in a message of role: a new message when the role changes (Converse
 * wants them alternating), else the next block of the open one. */
static void begin_block(struct conv *c, const char *role)
{
    if (c->role == NULL || strcmp(c->role, role) != 0) {
        if (c->role != NULL)
            PUTL(c->b, "]},");
        PUTL(c->b, "{\"role\":\"");
        cmx_buf_puts(c->b, role);
        PUTL(c->b, "\",\"content\":[");
        c->role = role;
        c->first_block = true;
    }
    if (!c->first_block)
        cmx_buf_append(c->b, ",", 1);
    c->first_block = false;
}

static void text_block(struct conv *c, const char *role, const struct cmx_json_member *s)
{
    begin_block(c, role);
    PUTL(c->b, "{\"text\":");
    put_raw(c->b, s);
    PUTL(c->b, "}");
}

/* A 400 for message i: *why = fmt with i (a %zu in fmt). */
#define bad(c, fmt, i) (*(c)->why = cmx_arena_printf((c)->a, fmt, (size_t)(i)), CMX_EINVAL)

/* The decoded text of string member m in the arena, or NULL. */
static char *decoded(struct cmx_arena *a, const struct cmx_json_member *m, size_t *len)
{
    char *s = cmx_arena_alloc(a, m->val_len);
    if (s == NULL || cmx_json_string_decode(m->val + 1, m->val_len - 2, s, len) != 0)
        return NULL;
    return s;
}

/* data:image/png;base64,XXXX -> {"image":{"format":"png","source":{"bytes":"XXXX"}}} */
static bool image_block(struct conv *c, const char *url)
{
    static const char *const fmts[][2] = {
        {"png", "png"}, {"jpeg", "jpeg"}, {"jpg", "jpeg"}, {"gif", "gif"}, {"webp", "webp"}};
    if (strncmp(url, "data:image/", 11) != 0)
        return false;
    const char *t = url + 11;
    const char *semi = strchr(t, ';');
    if (semi == NULL || strncmp(semi, ";base64,", 8) != 0)
        return false;
    const char *fmt = NULL;
    for (size_t i = 0; i < sizeof(fmts) / sizeof(fmts[0]); i++)
        if ((size_t)(semi - t) == strlen(fmts[i][0]) &&
            strncasecmp(t, fmts[i][0], strlen(fmts[i][0])) == 0)
            fmt = fmts[i][1];
    const char *data = semi + 8;
    if (fmt == NULL || *data == '\0')
        return false;
    begin_block(c, "user");
    cmx_buf_printf(c->b, "{\"image\":{\"format\":\"%s\",\"source\":{\"bytes\":\"", fmt);
    cmx_buf_json_escape(c->b, data, strlen(data));
    PUTL(c->b, "\"}}}");
    return true;
}

/* Content (string or parts) of message i as blocks for role. */
static int content_blocks(struct conv *c, const char *role, const struct cmx_json_member *content,
                          size_t i, bool images)
{
    if (content == NULL)
        return 0;
    if (content->type == CMX_JSON_STRING) {
        if (content->val_len > 2)
            text_block(c, role, content);
        return 0;
    }
    struct jarr it;
    struct cmx_json_member e;
    if (!jarr_init(&it, content))
        return bad(c, "messages[%zu].content must be a string or an array of parts.", i);
    while (jarr_next(&it, &e)) {
        struct jobj part;
        if (!jwalk(e.val, e.val_len, &part))
            return bad(c, "messages[%zu].content has a part type Bedrock does not support.", i);
        const struct cmx_json_member *type = jget(&part, "type", CMX_JSON_STRING);
        if (str_is(type, "text") || str_is(type, "refusal")) {
            const struct cmx_json_member *t =
                jget(&part, str_is(type, "text") ? "text" : "refusal", CMX_JSON_STRING);
            if (t == NULL)
                return bad(c, "messages[%zu].content has a text part without text.", i);
            if (t->val_len > 2)
                text_block(c, role, t);
        } else if (str_is(type, "image_url") && images) {
            const struct cmx_json_member *iu = jfind(part.m, part.n, "image_url");
            struct jobj io;
            const struct cmx_json_member *um =
                iu && iu->type == CMX_JSON_STRING ? iu
                : iu && iu->type == CMX_JSON_OBJECT && jsub(&part, "image_url", &io)
                    ? jget(&io, "url", CMX_JSON_STRING)
                    : NULL;
            size_t ul;
            const char *url = um ? decoded(c->a, um, &ul) : NULL;
            if (url == NULL || strlen(url) != ul || !image_block(c, url))
                return bad(c,
                           "messages[%zu]: Bedrock takes images only as data: URLs "
                           "(data:image/png|jpeg|gif|webp;base64,...).",
                           i);
        } else {
            return bad(c, "messages[%zu].content has a part type Bedrock does not support.", i);
        }
    }
    return 0;
}

static int system_text(struct conv *c, struct cmx_buf *sys, const struct cmx_json_member *content,
                       size_t i)
{
    if (content == NULL)
        return 0;
    if (content->type == CMX_JSON_STRING) {
        if (content->val_len > 2) {
            cmx_buf_reserve(sys, content->val_len + 12); /* one allocation, no regrowth */
            cmx_buf_puts(sys, sys->len ? ",{\"text\":" : "{\"text\":");
            put_raw(sys, content);
            PUTL(sys, "}");
        }
        return 0;
    }
    struct jarr it;
    struct cmx_json_member e;
    if (!jarr_init(&it, content))
        return bad(c, "messages[%zu].content must be a string or an array of text parts.", i);
    while (jarr_next(&it, &e)) {
        struct jobj part;
        const struct cmx_json_member *t = NULL;
        if (!jwalk(e.val, e.val_len, &part) ||
            !str_is(jget(&part, "type", CMX_JSON_STRING), "text") ||
            (t = jget(&part, "text", CMX_JSON_STRING)) == NULL)
            return bad(c, "messages[%zu]: system messages take only text parts.", i);
        if (t->val_len > 2) {
            cmx_buf_puts(sys, sys->len ? ",{\"text\":" : "{\"text\":");
            put_raw(sys, t);
            PUTL(sys, "}");
        }
    }
    return 0;
}

static int tool_calls(struct conv *c, const struct cmx_json_member *calls, size_t i)
{
    struct jarr it;
    struct cmx_json_member e;
    if (!jarr_init(&it, calls))
        return bad(c, "messages[%zu].tool_calls must be an array.", i);
    while (jarr_next(&it, &e)) {
        struct jobj tc, fn;
        const struct cmx_json_member *id = NULL, *name = NULL, *args = NULL;
        if (jwalk(e.val, e.val_len, &tc) && jsub(&tc, "function", &fn)) {
            id = jget(&tc, "id", CMX_JSON_STRING);
            name = jget(&fn, "name", CMX_JSON_STRING);
            args = jget(&fn, "arguments", CMX_JSON_STRING);
        }
        if (id == NULL || name == NULL)
            return bad(c, "messages[%zu].tool_calls needs id and function.name.", i);
        /* arguments: a string holding a JSON object (Bedrock's toolUse.input) */
        size_t al = 0;
        char *text = args ? decoded(c->a, args, &al) : NULL;
        size_t s = 0;
        while (text && s < al &&
               (text[s] == ' ' || text[s] == '\n' || text[s] == '\t' || text[s] == '\r'))
            s++;
        enum cmx_json_type top = CMX_JSON_INVALID;
        if (text != NULL && s < al &&
            (cmx_json_scan(text, al, &top, NULL, 0, NULL) != 0 || top != CMX_JSON_OBJECT))
            return bad(c,
                       "messages[%zu].tool_calls[].function.arguments must be a JSON "
                       "object (Bedrock's toolUse.input).",
                       i);
        begin_block(c, "assistant");
        PUTL(c->b, "{\"toolUse\":{\"toolUseId\":");
        put_raw(c->b, id);
        PUTL(c->b, ",\"name\":");
        put_raw(c->b, name);
        PUTL(c->b, ",\"input\":");
        if (text != NULL && s < al)
            cmx_buf_append(c->b, text, al);
        else
            PUTL(c->b, "{}");
        PUTL(c->b, "}}");
        if (c->n_names < sizeof(c->names) / sizeof(c->names[0]))
            c->names[c->n_names++] = *name;
        c->tool_blocks = true;
    }
    return 0;
}

static int tool_result(struct conv *c, const struct jobj *m, size_t i)
{
    const struct cmx_json_member *id = jget(m, "tool_call_id", CMX_JSON_STRING);
    if (id == NULL)
        return bad(c, "messages[%zu]: a tool message needs tool_call_id.", i);
    const struct cmx_json_member *content = jfind(m->m, m->n, "content");
    struct cmx_buf blocks;
    cmx_buf_init(&blocks, c->b->max);
    if (content != NULL && content->type == CMX_JSON_STRING) {
        PUTL(&blocks, "{\"text\":");
        put_raw(&blocks, content);
        PUTL(&blocks, "}");
    } else if (content != NULL && content->type == CMX_JSON_ARRAY) {
        struct jarr it;
        struct cmx_json_member e;
        jarr_init(&it, content);
        while (jarr_next(&it, &e)) {
            struct jobj part;
            const struct cmx_json_member *t = NULL;
            if (!jwalk(e.val, e.val_len, &part) ||
                (t = jget(&part, "text", CMX_JSON_STRING)) == NULL) {
                cmx_buf_free(&blocks);
                return bad(c, "messages[%zu]: tool results take only text parts.", i);
            }
            cmx_buf_puts(&blocks, blocks.len ? ",{\"text\":" : "{\"text\":");
            put_raw(&blocks, t);
            PUTL(&blocks, "}");
        }
    }
    begin_block(c, "user");
    PUTL(c->b, "{\"toolResult\":{\"toolUseId\":");
    put_raw(c->b, id);
    PUTL(c->b, ",\"content\":[");
    if (blocks.len > 0)
        cmx_buf_append(c->b, blocks.data, blocks.len);
    else
        PUTL(c->b, "{\"text\":\"\"}");
    PUTL(c->b, "]}}");
    cmx_buf_free(&blocks);
    c->tool_blocks = true;
    return 0;
}

static void tool_spec(struct cmx_buf *b, const struct cmx_json_member *name,
                      const struct cmx_json_member *desc, const struct cmx_json_member *schema)
{
    cmx_buf_puts(b, b->len ? ",{\"toolSpec\":{\"name\":" : "{\"toolSpec\":{\"name\":");
    put_raw(b, name);
    if (desc != NULL && desc->type == CMX_JSON_STRING && desc->val_len > 2) {
        PUTL(b, ",\"description\":");
        put_raw(b, desc);
    }
    PUTL(b, ",\"inputSchema\":{\"json\":");
    if (schema != NULL)
        put_raw(b, schema);
    else
        PUTL(b, "{\"type\":\"object\",\"properties\":{}}");
    PUTL(b, "}}}");
}

static bool same_raw(const struct cmx_json_member *x, const struct cmx_json_member *y)
{
    return x->val_len == y->val_len && memcmp(x->val, y->val, x->val_len) == 0;
}

/* The top-level request members converse_body reads, found in one pass. */
enum {
    RK_N,
    RK_LOGPROBS,
    RK_RESPONSE_FORMAT,
    RK_AUDIO,
    RK_FUNCTIONS,
    RK_FUNCTION_CALL,
    RK_MESSAGES,
    RK_MAX_COMPLETION_TOKENS,
    RK_MAX_TOKENS,
    RK_TEMPERATURE,
    RK_TOP_P,
    RK_STOP,
    RK_TOOLS,
    RK_TOOL_CHOICE,
    RK_COUNT
};

struct key {
    const char *s; /* member name */
    size_t n;      /* its length */
};
#define KEY(s)                                                                                     \
    {                                                                                              \
        s, sizeof(s) - 1                                                                           \
    }

static const struct key req_keys[RK_COUNT] = {
    KEY("n"),          KEY("logprobs"),      KEY("response_format"), KEY("audio"),
    KEY("functions"),  KEY("function_call"), KEY("messages"),        KEY("max_completion_tokens"),
    KEY("max_tokens"), KEY("temperature"),   KEY("top_p"),           KEY("stop"),
    KEY("tools"),      KEY("tool_choice"),
};

/* k[i] = what jfind(m, n, keys[i].s) returns (the last member of that decoded name, NULL
 * when absent or null), for all nk names in one pass. Names are at most 21 bytes. */
static void jindex(const struct cmx_json_member *m, size_t n, const struct key *keys, size_t nk,
                   const struct cmx_json_member **k)
{
    for (size_t j = 0; j < nk; j++)
        k[j] = NULL;
    for (size_t i = 0; i < n; i++) {
        const char *key = m[i].key;
        size_t kl = m[i].key_len;
        char buf[128]; /* an escaped key longer than 6 * 21 bytes cannot name one of ours */
        if (m[i].key_escaped) {
            if (kl >= sizeof(buf) || cmx_json_string_decode(key, kl, buf, &kl) != 0)
                continue;
            key = buf;
        }
        for (size_t j = 0; j < nk; j++) {
            if (kl == keys[j].n && memcmp(key, keys[j].s, kl) == 0) {
                k[j] = &m[i];
                break;
            }
        }
    }
    for (size_t j = 0; j < nk; j++)
        if (k[j] != NULL && k[j]->type == CMX_JSON_NULL)
            k[j] = NULL;
}

#define TOOL_CHOICE_WHY                                                                            \
    "'tool_choice' must be auto, required, none or {type: function, function: {name}}."

/* Builds the Converse body for the client's chat request into *out (arena). */
static int converse_body(const struct cmx_client_req *cr, struct cmx_arena *a, const char **out,
                         size_t *out_len, const char **why)
{
    const struct cmx_json_member *rk[RK_COUNT], *v;
    jindex(cr->members, cr->n_members, req_keys, RK_COUNT, rk);
    int64_t iv;
    /* what Bedrock cannot do: reject rather than silently answer something else */
    if ((v = rk[RK_N]) != NULL && !(raw_int(v, &iv) && iv == 1)) {
        *why = "Bedrock returns one choice: 'n' must be 1.";
        return CMX_EINVAL;
    }
    if ((v = rk[RK_LOGPROBS]) != NULL && v->type == CMX_JSON_TRUE) {
        *why = "Bedrock does not return log probabilities: 'logprobs' is not supported.";
        return CMX_EINVAL;
    }
    struct jobj rf;
    const struct cmx_json_member *rft = NULL;
    if ((v = rk[RK_RESPONSE_FORMAT]) != NULL && v->type == CMX_JSON_OBJECT &&
        jwalk(v->val, v->val_len, &rf) && (rft = jget(&rf, "type", CMX_JSON_STRING)) != NULL &&
        !str_is(rft, "text")) {
        *why = "Bedrock's Converse API has no 'response_format' (json_object / json_schema); "
               "use a tool with the schema instead.";
        return CMX_EINVAL;
    }
    if (rk[RK_AUDIO] != NULL) {
        *why = "Bedrock's Converse API does not produce audio.";
        return CMX_EINVAL;
    }
    if (rk[RK_FUNCTIONS] != NULL || rk[RK_FUNCTION_CALL] != NULL) {
        *why = "Legacy 'functions' / 'function_call' are not supported for Bedrock; use "
               "'tools' / 'tool_choice'.";
        return CMX_EINVAL;
    }
    const struct cmx_json_member *msgs = rk[RK_MESSAGES];
    if (msgs == NULL || msgs->type != CMX_JSON_ARRAY || msgs->val_len <= 2) {
        *why = "'messages' must be a non-empty array.";
        return CMX_EINVAL;
    }

    struct cmx_buf body, sys, specs;
    cmx_buf_init(&body, cr->body_len * 2 + (1u << 20));
    cmx_buf_init(&sys, body.max);
    cmx_buf_init(&specs, body.max);
    /* on the stack, names[] left unset: only names[0..n_names) is ever read */
    struct conv cv, *c = &cv;
    c->b = &body;
    c->role = NULL;
    c->first_block = false;
    c->tool_blocks = false;
    c->n_names = 0;
    c->a = a;
    c->why = why;
    /* room for the whole body at once: Converse's is about the client's size */
    int rc = cmx_buf_reserve(&body, cr->body_len + 256) != NULL ? 0 : CMX_ENOMEM;
    PUTL(&body, "{\"messages\":[");
    struct jarr it;
    struct cmx_json_member e;
    jarr_init(&it, msgs);
    for (size_t i = 0; rc == 0 && jarr_next(&it, &e); i++) {
        struct jobj m;
        char role[16] = "";
        const struct cmx_json_member *r = NULL;
        if (!jwalk(e.val, e.val_len, &m) || (r = jget(&m, "role", CMX_JSON_STRING)) == NULL ||
            r->val_len - 2 >= sizeof(role)) {
            rc = bad(c,
                     r == NULL ? "messages[%zu] has no role."
                               : "messages[%zu]: role not supported by Bedrock.",
                     i);
            break;
        }
        memcpy(role, r->val + 1, r->val_len - 2);
        const struct cmx_json_member *content = jfind(m.m, m.n, "content");
        if (strcmp(role, "system") == 0 || strcmp(role, "developer") == 0) {
            rc = system_text(c, &sys, content, i);
        } else if (strcmp(role, "user") == 0) {
            rc = content_blocks(c, "user", content, i, true);
        } else if (strcmp(role, "assistant") == 0) {
            rc = content_blocks(c, "assistant", content, i, false);
            const struct cmx_json_member *tc = jfind(m.m, m.n, "tool_calls");
            if (rc == 0 && tc != NULL)
                rc = tool_calls(c, tc, i);
        } else if (strcmp(role, "tool") == 0) {
            rc = tool_result(c, &m, i);
        } else {
            rc = bad(c, "messages[%zu]: role not supported by Bedrock.", i);
        }
    }
    if (rc == 0 && c->role == NULL) {
        *why = "Bedrock needs at least one user or assistant message with content.";
        rc = CMX_EINVAL;
    }
    if (rc != 0)
        goto out;
    PUTL(&body, "]}]");
    if (sys.len > 0) {
        PUTL(&body, ",\"system\":[");
        cmx_buf_append(&body, sys.data, sys.len);
        PUTL(&body, "]");
    }

    /* inferenceConfig */
    size_t ic_at = body.len;
    PUTL(&body, ",\"inferenceConfig\":{");
    size_t ic_start = body.len;
    const struct cmx_json_member *mt = rk[RK_MAX_COMPLETION_TOKENS];
    if (mt == NULL)
        mt = rk[RK_MAX_TOKENS];
    if (mt != NULL) {
        if (!raw_int(mt, &iv) || iv < 1) {
            *why = "'max_completion_tokens' / 'max_tokens' must be a positive integer.";
            rc = CMX_EINVAL;
            goto out;
        }
        PUTL(&body, "\"maxTokens\":");
        put_i64(&body, iv);
    }
    static const char *const nums[][2] = {{"temperature", "temperature"}, {"top_p", "topP"}};
    for (size_t k = 0; k < 2; k++) {
        if ((v = rk[RK_TEMPERATURE + k]) != NULL) {
            if (v->type != CMX_JSON_NUMBER) {
                *why = cmx_arena_printf(a, "'%s' must be a number.", nums[k][0]);
                rc = CMX_EINVAL;
                goto out;
            }
            if (body.len > ic_start)
                cmx_buf_append(&body, ",", 1);
            cmx_buf_append(&body, "\"", 1);
            cmx_buf_puts(&body, nums[k][1]);
            cmx_buf_append(&body, "\":", 2);
            put_raw(&body, v);
        }
    }
    if ((v = rk[RK_STOP]) != NULL) {
        cmx_buf_puts(&body, body.len > ic_start ? ",\"stopSequences\":[" : "\"stopSequences\":[");
        if (v->type == CMX_JSON_STRING) {
            put_raw(&body, v);
        } else if (v->type == CMX_JSON_ARRAY) {
            jarr_init(&it, v);
            for (bool first = true; jarr_next(&it, &e); first = false) {
                if (e.type != CMX_JSON_STRING) {
                    *why = "'stop' must be a string or an array of strings.";
                    rc = CMX_EINVAL;
                    goto out;
                }
                if (!first)
                    cmx_buf_append(&body, ",", 1);
                put_raw(&body, &e);
            }
        }
        PUTL(&body, "]");
    }
    if (body.len == ic_start)
        body.len = ic_at; /* nothing to configure */
    else
        PUTL(&body, "}");

    /* toolConfig */
    const struct cmx_json_member *tools = rk[RK_TOOLS];
    const struct cmx_json_member *choice = rk[RK_TOOL_CHOICE];
    if (tools != NULL) {
        if (!jarr_init(&it, tools)) {
            *why = "'tools' must be an array.";
            rc = CMX_EINVAL;
            goto out;
        }
        while (jarr_next(&it, &e)) {
            struct jobj t, fn;
            const struct cmx_json_member *name = NULL;
            if (!jwalk(e.val, e.val_len, &t) ||
                !str_is(jget(&t, "type", CMX_JSON_STRING), "function") ||
                !jsub(&t, "function", &fn) || (name = jget(&fn, "name", CMX_JSON_STRING)) == NULL) {
                *why = "Bedrock supports only tools of type 'function' with a name.";
                rc = CMX_EINVAL;
                goto out;
            }
            tool_spec(&specs, name, jfind(fn.m, fn.n, "description"),
                      jfind(fn.m, fn.n, "parameters"));
        }
    }
    bool none = str_is(choice, "none");
    if (specs.len == 0 && c->tool_blocks) {
        /* Converse refuses toolUse/toolResult history without a toolConfig: declare the
         * tools the history names, schema-less */
        for (size_t k = 0; k < c->n_names; k++) {
            bool dupl = false;
            for (size_t j = 0; j < k; j++)
                dupl |= same_raw(&c->names[k], &c->names[j]);
            if (!dupl)
                tool_spec(&specs, &c->names[k], NULL, NULL);
        }
    }
    if (specs.len > 0 && (!none || c->tool_blocks)) {
        PUTL(&body, ",\"toolConfig\":{\"tools\":[");
        cmx_buf_append(&body, specs.data, specs.len);
        PUTL(&body, "]");
        struct jobj co, cf;
        const struct cmx_json_member *nm = NULL;
        if (str_is(choice, "auto")) {
            PUTL(&body, ",\"toolChoice\":{\"auto\":{}}");
        } else if (str_is(choice, "required")) {
            PUTL(&body, ",\"toolChoice\":{\"any\":{}}");
        } else if (choice != NULL && choice->type == CMX_JSON_OBJECT) {
            if (!jwalk(choice->val, choice->val_len, &co) || !jsub(&co, "function", &cf) ||
                (nm = jget(&cf, "name", CMX_JSON_STRING)) == NULL) {
                *why = TOOL_CHOICE_WHY;
                rc = CMX_EINVAL;
                goto out;
            }
            if (!none) {
                PUTL(&body, ",\"toolChoice\":{\"tool\":{\"name\":");
                put_raw(&body, nm);
                PUTL(&body, "}}");
            }
        } else if (choice != NULL && !none) {
            *why = TOOL_CHOICE_WHY;
            rc = CMX_EINVAL;
            goto out;
        }
        PUTL(&body, "}");
    }
    if (PUTL(&body, "}") != 0) {
        rc = CMX_ENOMEM;
        goto out;
    }
    /* the buffer itself becomes the body, freed with the arena: no copy into it */
    if (cmx_arena_cleanup_add(a, free, body.data) != 0) {
        rc = CMX_ENOMEM;
        goto out;
    }
    *out = body.data;
    *out_len = body.len;
    cmx_buf_init(&body, 0); /* handed over */
out:
    cmx_buf_free(&body);
    cmx_buf_free(&sys);
    cmx_buf_free(&specs);
    return rc;
}

static int build(const struct cmx_deployment_cfg *d, const struct cmx_client_req *cr,
                 struct cmx_arena *a, struct cmx_provider_req *out, const char **why)
{
    if (cr->ep != CMX_EP_CHAT) {
        *why = "This Bedrock model does not serve this endpoint.";
        return CMX_EINVAL;
    }
    int rc = converse_body(cr, a, &out->body, &out->body_len, why);
    if (rc != 0)
        return rc;
    char *path = model_path(a, d->model, cr->stream ? "converse-stream" : "converse");
    if (path == NULL)
        return CMX_ENOMEM;
    return finish_req(d, cr, path,
                      cr->stream ? "Accept: application/vnd.amazon.eventstream"
                                 : "Accept: application/json",
                      a, out, why);
}

/* ---- response: Converse -> chat.completion ------------------------------------------------ */

static const char *finish_reason(const char *stop)
{
    if (stop == NULL)
        return "stop";
    if (strcmp(stop, "max_tokens") == 0 || strcmp(stop, "model_context_window_exceeded") == 0)
        return "length";
    if (strcmp(stop, "tool_use") == 0)
        return "tool_calls";
    if (strcmp(stop, "guardrail_intervened") == 0 || strcmp(stop, "content_filtered") == 0)
        return "content_filter";
    return "stop"; /* end_turn, stop_sequence */
}

static void put_str(struct cmx_buf *b, const char *s, size_t n)
{
    cmx_buf_append(b, "\"", 1);
    cmx_buf_json_escape(b, s, n);
    cmx_buf_append(b, "\"", 1);
}

static void usage_raw(struct cmx_buf *b, const struct jobj *u)
{
    static const struct key names[4] = {KEY("inputTokens"), KEY("outputTokens"),
                                        KEY("cacheReadInputTokens"), KEY("cacheWriteInputTokens")};
    const struct cmx_json_member *k[4];
    int64_t v[4] = {0, 0, 0, 0};
    jindex(u->m, u->n, names, 4, k);
    for (size_t i = 0; i < 4; i++)
        if (!raw_int(k[i], &v[i])) /* 0 when absent, null, not an integer (as jint) */
            v[i] = 0;
    int64_t in = v[0], outt = v[1], cr = v[2], cw = v[3];
    int64_t prompt = in + cr + cw;
    PUTL(b, "{\"prompt_tokens\":");
    put_i64(b, prompt);
    PUTL(b, ",\"completion_tokens\":");
    put_i64(b, outt);
    PUTL(b, ",\"total_tokens\":");
    put_i64(b, prompt + outt);
    PUTL(b, ",\"prompt_tokens_details\":{\"cached_tokens\":");
    put_i64(b, cr);
    PUTL(b, "}}");
}

/* Appends the (valid) JSON text raw, whitespace outside strings removed, as the body of a
 * JSON string: a tool's input object becomes OpenAI's "arguments" string. */
static void put_minified_escaped(struct cmx_buf *b, const char *raw, size_t len)
{
    struct cmx_buf tmp;
    cmx_buf_init(&tmp, b->max);
    bool in = false;
    for (size_t i = 0; i < len; i++) {
        char ch = raw[i];
        if (in) {
            if (ch == '\\' && i + 1 < len) {
                cmx_buf_append(&tmp, raw + i, 2);
                i++;
                continue;
            }
            in = ch != '"';
        } else if (ch == '"') {
            in = true;
        } else if (ch == ' ' || ch == '\n' || ch == '\r' || ch == '\t') {
            continue;
        }
        cmx_buf_append(&tmp, &ch, 1);
    }
    cmx_buf_json_escape(b, tmp.data ? tmp.data : "", tmp.len);
    cmx_buf_free(&tmp);
}

static int translate(const struct cmx_deployment_cfg *d, const struct cmx_client_req *cr,
                     const char *body, size_t len, struct cmx_arena *a, struct cmx_buf *out)
{
    (void)cr;
    (void)a;
    struct jobj jo[4]; /* ~7 KiB of spans: the stack, not the heap */
    struct jobj *o = jo, *output = jo + 1, *msg = jo + 2, *blk = jo + 3;
    const struct cmx_json_member *content = NULL;
    if (!jscan(body, len, o) || !jsub(o, "output", output) || !jsub(output, "message", msg) ||
        (content = jget(msg, "content", CMX_JSON_ARRAY)) == NULL)
        return CMX_EUPSTREAM;
    /* the answer is about the size of the upstream's: one allocation, no regrowth */
    (void)cmx_buf_reserve(out, len + 256); /* a failure shows in the appends below */
    /* text blocks go straight into the answer's content string (already escaped); the rare
     * reasoning and tool blocks are gathered aside, as they come after it */
    PUTL(out, "{\"object\":\"chat.completion\",\"model\":");
    put_str(out, d->model, strlen(d->model));
    PUTL(out, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":");
    size_t content_at = out->len;
    cmx_buf_append(out, "\"", 1);
    size_t text_at = out->len;
    struct cmx_buf reasoning, calls;
    cmx_buf_init(&reasoning, out->max);
    cmx_buf_init(&calls, out->max);
    int n_calls = 0;
    struct jarr it;
    struct cmx_json_member e;
    jarr_init(&it, content);
    while (jarr_next(&it, &e)) {
        struct jobj tu, rc, rt;
        const struct cmx_json_member *t;
        if (!jwalk(e.val, e.val_len, blk))
            continue;
        if ((t = jget(blk, "text", CMX_JSON_STRING)) != NULL) {
            cmx_buf_append(out, t->val + 1, t->val_len - 2); /* already escaped */
        } else if (jsub(blk, "reasoningContent", &rc) && jsub(&rc, "reasoningText", &rt) &&
                   (t = jget(&rt, "text", CMX_JSON_STRING)) != NULL) {
            cmx_buf_append(&reasoning, t->val + 1, t->val_len - 2);
        } else if (jsub(blk, "toolUse", &tu)) {
            const struct cmx_json_member *id = jget(&tu, "toolUseId", CMX_JSON_STRING);
            const struct cmx_json_member *name = jget(&tu, "name", CMX_JSON_STRING);
            const struct cmx_json_member *input = jfind(tu.m, tu.n, "input");
            cmx_buf_puts(&calls, n_calls++ ? ",{\"id\":" : "{\"id\":");
            if (id != NULL)
                put_raw(&calls, id);
            else
                PUTL(&calls, "\"\"");
            PUTL(&calls, ",\"type\":\"function\",\"function\":{\"name\":");
            if (name != NULL)
                put_raw(&calls, name);
            else
                PUTL(&calls, "\"\"");
            PUTL(&calls, ",\"arguments\":\"");
            if (input != NULL)
                put_minified_escaped(&calls, input->val, input->val_len);
            else
                PUTL(&calls, "{}");
            PUTL(&calls, "\"}}");
        }
    }
    if (out->len > text_at || n_calls == 0) {
        cmx_buf_append(out, "\"", 1);
    } else {
        out->len = content_at; /* tool calls only: content is null */
        PUTL(out, "null");
    }
    if (reasoning.len > 0) {
        PUTL(out, ",\"reasoning_content\":\"");
        cmx_buf_append(out, reasoning.data, reasoning.len);
        cmx_buf_append(out, "\"", 1);
    }
    if (n_calls > 0) {
        PUTL(out, ",\"tool_calls\":[");
        cmx_buf_append(out, calls.data, calls.len);
        PUTL(out, "]");
    }
    const struct cmx_json_member *sr = jget(o, "stopReason", CMX_JSON_STRING);
    char reason[64] = "";
    if (sr != NULL && sr->val_len - 2 < sizeof(reason))
        memcpy(reason, sr->val + 1, sr->val_len - 2);
    PUTL(out, "},\"finish_reason\":\"");
    cmx_buf_puts(out, finish_reason(reason));
    PUTL(out, "\"}]");
    struct jobj u;
    if (jsub(o, "usage", &u)) {
        PUTL(out, ",\"usage\":");
        usage_raw(out, &u);
    }
    int rc = PUTL(out, "}");
    cmx_buf_free(&reasoning);
    cmx_buf_free(&calls);
    return rc;
}

/* ---- stream: event stream -> chat.completion.chunk ---------------------------------------- */

struct bstream {
    struct cmx_es_decoder es;
    struct cmx_buf out;         /* chunk being built */
    struct cmx_buf usage;       /* usage object from metadata, sent after the finish chunk */
    const char *model;          /* JSON-escaped upstream model id */
    size_t model_len;           /* its length */
    short tool_of[MAX_BLOCKS];  /* contentBlockIndex -> tool_calls index + 1 (0: not a tool) */
    bool args_sent[MAX_BLOCKS]; /* the tool block got input fragments */
    int n_tools;
    bool role_sent; /* the first chunk (with role) went out */
    bool stopped;   /* messageStop seen */
    bool ended;     /* an exception ended the stream (an error event went out) */
    cmx_chunk_cb cb;
    void *ud;
};

static void begin_chunk(struct bstream *s)
{
    cmx_buf_reset(&s->out);
    PUTL(&s->out, "{\"object\":\"chat.completion.chunk\",\"model\":\"");
    cmx_buf_append(&s->out, s->model, s->model_len);
    PUTL(&s->out, "\",\"choices\":[{\"index\":0,\"delta\":{");
    if (!s->role_sent) {
        PUTL(&s->out, "\"role\":\"assistant\"");
        s->role_sent = true;
    }
}

static int end_chunk(struct bstream *s, const char *finish)
{
    if (finish != NULL)
        cmx_buf_printf(&s->out, "},\"finish_reason\":\"%s\"}]}", finish);
    else
        PUTL(&s->out, "},\"finish_reason\":null}]}");
    if (s->out.data == NULL)
        return CMX_ENOMEM;
    return s->cb(s->ud, s->out.data, s->out.len);
}

/* A comma when the delta object already holds a member. */
static void sep(struct bstream *s)
{
    if (s->out.len > 0 && s->out.data[s->out.len - 1] != '{')
        cmx_buf_append(&s->out, ",", 1);
}

static int tool_index(struct bstream *s, int64_t block)
{
    if (block < 0 || block >= MAX_BLOCKS)
        return -1;
    return s->tool_of[block] - 1;
}

static bool type_is(const char *type, size_t tl, const char *s)
{
    return strlen(s) == tl && memcmp(type, s, tl) == 0;
}

static int on_event(struct bstream *s, const char *type, size_t tl, const struct jobj *o)
{
    if (type_is(type, tl, "contentBlockDelta")) {
        struct jobj delta, sub;
        int64_t blk = jint(o, "contentBlockIndex");
        if (!jsub(o, "delta", &delta))
            return CMX_EUPSTREAM;
        const struct cmx_json_member *t = jget(&delta, "text", CMX_JSON_STRING);
        if (t != NULL) {
            begin_chunk(s);
            sep(s);
            PUTL(&s->out, "\"content\":");
            put_raw(&s->out, t);
            return end_chunk(s, NULL);
        }
        if (jsub(&delta, "toolUse", &sub)) {
            int idx = tool_index(s, blk);
            const struct cmx_json_member *in = jget(&sub, "input", CMX_JSON_STRING);
            if (idx < 0)
                return CMX_EUPSTREAM; /* input for a block that never started as a tool */
            if (in == NULL || in->val_len <= 2)
                return 0;
            s->args_sent[blk] = true;
            begin_chunk(s);
            sep(s);
            cmx_buf_printf(&s->out,
                           "\"tool_calls\":[{\"index\":%d,\"function\":{\"arguments\":", idx);
            put_raw(&s->out, in);
            PUTL(&s->out, "}}]");
            return end_chunk(s, NULL);
        }
        if (jsub(&delta, "reasoningContent", &sub) &&
            (t = jget(&sub, "text", CMX_JSON_STRING)) != NULL) {
            begin_chunk(s);
            sep(s);
            PUTL(&s->out, "\"reasoning_content\":");
            put_raw(&s->out, t);
            return end_chunk(s, NULL);
        }
        return 0; /* signatures, citations: nothing to say in OpenAI's shape */
    }
    if (type_is(type, tl, "messageStart")) {
        begin_chunk(s);
        sep(s);
        PUTL(&s->out, "\"content\":\"\"");
        return end_chunk(s, NULL);
    }
    if (type_is(type, tl, "contentBlockStart")) {
        struct jobj start, tu;
        int64_t blk = jint(o, "contentBlockIndex");
        if (!jsub(o, "start", &start) || !jsub(&start, "toolUse", &tu))
            return 0;
        if (blk < 0 || blk >= MAX_BLOCKS || s->tool_of[blk] != 0)
            return CMX_EUPSTREAM;
        const struct cmx_json_member *id = jget(&tu, "toolUseId", CMX_JSON_STRING);
        const struct cmx_json_member *name = jget(&tu, "name", CMX_JSON_STRING);
        int idx = s->n_tools++;
        s->tool_of[blk] = (short)(idx + 1);
        begin_chunk(s);
        sep(s);
        cmx_buf_printf(&s->out, "\"tool_calls\":[{\"index\":%d,\"id\":", idx);
        if (id != NULL)
            put_raw(&s->out, id);
        else
            PUTL(&s->out, "\"\"");
        PUTL(&s->out, ",\"type\":\"function\",\"function\":{\"name\":");
        if (name != NULL)
            put_raw(&s->out, name);
        else
            PUTL(&s->out, "\"\"");
        PUTL(&s->out, ",\"arguments\":\"\"}}]");
        return end_chunk(s, NULL);
    }
    if (type_is(type, tl, "contentBlockStop")) {
        int64_t blk = jint(o, "contentBlockIndex");
        int idx = tool_index(s, blk);
        if (idx >= 0 && !s->args_sent[blk]) {
            /* a tool without arguments: OpenAI clients expect a JSON object */
            s->args_sent[blk] = true;
            begin_chunk(s);
            sep(s);
            cmx_buf_printf(&s->out,
                           "\"tool_calls\":[{\"index\":%d,\"function\":{\"arguments\":\"{}\"}}]",
                           idx);
            return end_chunk(s, NULL);
        }
        return 0;
    }
    if (type_is(type, tl, "messageStop")) {
        const struct cmx_json_member *r = jget(o, "stopReason", CMX_JSON_STRING);
        char reason[64] = "";
        if (r != NULL && r->val_len - 2 < sizeof(reason)) {
            memcpy(reason, r->val + 1, r->val_len - 2);
            reason[r->val_len - 2] = '\0';
        }
        s->stopped = true;
        begin_chunk(s);
        return end_chunk(s, finish_reason(reason));
    }
    if (type_is(type, tl, "metadata")) {
        struct jobj u;
        if (jsub(o, "usage", &u)) {
            cmx_buf_reset(&s->usage);
            usage_raw(&s->usage, &u);
        }
        return 0;
    }
    return 0; /* unknown events are skipped, as the SDKs do */
}

/* An in-band OpenAI error for an exception / error message; msg is JSON-escaped text. */
static int on_exception(struct bstream *s, const char *type, size_t tlen, const char *msg,
                        size_t mlen)
{
    s->ended = true;
    const char *etype = "server_error";
    if ((tlen >= 10 && strncasecmp(type, "throttling", 10) == 0) ||
        (tlen >= 12 && strncasecmp(type, "serviceQuota", 12) == 0))
        etype = "rate_limit_error";
    else if (tlen >= 10 && strncasecmp(type, "validation", 10) == 0)
        etype = "invalid_request_error";
    cmx_buf_reset(&s->out);
    PUTL(&s->out, "{\"error\":{\"message\":\"Bedrock stream failed (");
    cmx_buf_json_escape(&s->out, type, tlen);
    PUTL(&s->out, "): ");
    cmx_buf_append(&s->out, msg, mlen);
    cmx_buf_printf(&s->out, "\",\"type\":\"%s\",\"code\":\"", etype);
    cmx_buf_json_escape(&s->out, type, tlen);
    PUTL(&s->out, "\",\"param\":null}}");
    if (s->out.data == NULL)
        return CMX_ENOMEM;
    return s->cb(s->ud, s->out.data, s->out.len);
}

static int message_cb(void *ud, const struct cmx_es_message *m)
{
    struct bstream *s = ud;
    if (s->ended)
        return 0;
    const struct cmx_es_header *mt = cmx_es_find(m, ":message-type");
    if (cmx_es_header_is(mt, "exception")) {
        const struct cmx_es_header *et = cmx_es_find(m, ":exception-type");
        struct jobj o;
        const struct cmx_json_member *msg = NULL;
        if (jscan(m->payload, m->payload_len, &o) &&
            (msg = jget(&o, "message", CMX_JSON_STRING)) == NULL)
            msg = jget(&o, "Message", CMX_JSON_STRING);
        bool named = et != NULL && et->type == CMX_ES_STRING;
        return on_exception(s, named ? et->data : "exception", named ? et->len : 9,
                            msg ? msg->val + 1 : "", msg ? msg->val_len - 2 : 0);
    }
    if (cmx_es_header_is(mt, "error")) {
        const struct cmx_es_header *ec = cmx_es_find(m, ":error-code");
        const struct cmx_es_header *em = cmx_es_find(m, ":error-message");
        struct cmx_buf esc;
        cmx_buf_init(&esc, 1u << 16);
        if (em != NULL && em->type == CMX_ES_STRING)
            cmx_buf_json_escape(&esc, em->data, em->len);
        int r = on_exception(s, ec && ec->type == CMX_ES_STRING ? ec->data : "error",
                             ec && ec->type == CMX_ES_STRING ? ec->len : 5,
                             esc.data ? esc.data : "", esc.len);
        cmx_buf_free(&esc);
        return r;
    }
    if (!cmx_es_header_is(mt, "event"))
        return 0;
    const struct cmx_es_header *et = cmx_es_find(m, ":event-type");
    if (et == NULL || et->type != CMX_ES_STRING)
        return 0;
    struct jobj o;
    if (!jscan(m->payload, m->payload_len, &o))
        return CMX_EUPSTREAM;
    return on_event(s, et->data, et->len, &o);
}

static void *stream_new(struct cmx_arena *a, const struct cmx_deployment_cfg *d)
{
    struct bstream *s = cmx_arena_calloc(a, sizeof(*s));
    if (s == NULL)
        return NULL;
    cmx_es_decoder_init(&s->es, 0);
    cmx_buf_init(&s->out, 16u << 20);
    cmx_buf_init(&s->usage, 4096);
    struct cmx_buf m;
    cmx_buf_init(&m, 4096);
    cmx_buf_json_escape(&m, d->model, strlen(d->model));
    s->model = cmx_arena_strndup(a, m.data ? m.data : "", m.len);
    s->model_len = m.len;
    cmx_buf_free(&m);
    return s->model ? s : NULL;
}

static int stream_feed(void *st, const char *data, size_t len, cmx_chunk_cb cb, void *ud)
{
    struct bstream *s = st;
    s->cb = cb;
    s->ud = ud;
    return cmx_es_feed(&s->es, data, len, message_cb, s);
}

static int stream_finish(void *st, cmx_chunk_cb cb, void *ud)
{
    struct bstream *s = st;
    s->cb = cb;
    s->ud = ud;
    if (s->ended)
        return 0; /* the error event was the end */
    int r = cmx_es_finish(&s->es);
    if (r != 0)
        return r;
    if (!s->stopped)
        return CMX_EUPSTREAM; /* cut short: never a silently truncated answer */
    if (s->usage.len > 0) {
        cmx_buf_reset(&s->out);
        PUTL(&s->out, "{\"object\":\"chat.completion.chunk\",\"model\":\"");
        cmx_buf_append(&s->out, s->model, s->model_len);
        PUTL(&s->out, "\",\"choices\":[],\"usage\":");
        cmx_buf_append(&s->out, s->usage.data, s->usage.len);
        PUTL(&s->out, "}");
        if ((r = cb(ud, s->out.data, s->out.len)) != 0)
            return r;
    }
    return cb(ud, "[DONE]", 6);
}

static void stream_free(void *st)
{
    struct bstream *s = st;
    cmx_es_decoder_free(&s->es);
    cmx_buf_free(&s->out);
    cmx_buf_free(&s->usage);
}

/* ---- errors -------------------------------------------------------------------------------- */

static void parse_error(int status, const struct cmx_http_header *h, size_t nh, const char *body,
                        size_t len, struct cmx_arena *a, struct cmx_upstream_error *out)
{
    memset(out, 0, sizeof(*out));
    const char *et = NULL;
    size_t el = 0;
    for (size_t i = 0; i < nh; i++) {
        if (h[i].name_len == 16 && strncasecmp(h[i].name, "x-amzn-errortype", 16) == 0) {
            et = h[i].value;
            const char *colon = memchr(et, ':', h[i].value_len);
            el = colon ? (size_t)(colon - et) : h[i].value_len;
        }
    }
    json_object *o = len > 0 ? parse(a, body, len) : NULL;
    const char *msg = get_str(o, "message");
    if (msg == NULL)
        msg = get_str(o, "Message");
    if (et == NULL && (et = get_str(o, "__type")) != NULL) {
        const char *hash = strrchr(et, '#'); /* "com.amazon...#ValidationException" */
        if (hash != NULL)
            et = hash + 1;
        el = strlen(et);
    }
    if (et != NULL && el > 0) {
        out->code = cmx_arena_strndup(a, et, el);
        if (out->code != NULL) {
            if (strncmp(out->code, "Throttling", 10) == 0 ||
                strncmp(out->code, "ServiceQuotaExceeded", 20) == 0 ||
                strncmp(out->code, "ModelNotReady", 13) == 0) {
                out->type = "rate_limit_error";
                /* a quota is a rate limit whatever status carried it (ServiceQuotaExceeded
                 * comes as 400): 429, so another deployment (region, account) may serve */
                out->status = 429;
            } else if (strncmp(out->code, "ModelError", 10) == 0 ||
                       strncmp(out->code, "ModelTimeout", 12) == 0 ||
                       strncmp(out->code, "ModelStreamError", 16) == 0)
                out->type = "server_error"; /* the model failed, not the request (424, 408) */
            else if (strncmp(out->code, "Validation", 10) == 0)
                out->type = "invalid_request_error";
            else if (strncmp(out->code, "AccessDenied", 12) == 0 ||
                     strncmp(out->code, "UnrecognizedClient", 18) == 0 ||
                     strncmp(out->code, "InvalidSignature", 16) == 0 ||
                     strncmp(out->code, "ExpiredToken", 12) == 0)
                out->type = status == 401 ? "authentication_error" : "permission_error";
            else if (strncmp(out->code, "ResourceNotFound", 16) == 0)
                out->type = "invalid_request_error";
        }
    }
    if (msg != NULL) {
        out->message = cmx_arena_printf(a, "Bedrock: %s", msg);
    } else {
        out->message = cmx_arena_printf(a, "Bedrock returned HTTP %d%s%s", status,
                                        out->code ? " " : "", out->code ? out->code : "");
    }
    if (out->message == NULL)
        out->message = "upstream error";
}

/* ---- embeddings (InvokeModel) -------------------------------------------------------------- */

struct embed {
    json_object *inputs; /* array of strings */
    size_t n_inputs;
    bool titan;
    bool base64;       /* encoding_format: base64 */
    json_object *dims; /* "dimensions", or NULL */
};

static int parts(const struct cmx_deployment_cfg *d, const struct cmx_client_req *cr,
                 struct cmx_arena *a, size_t *n, void **state, const char **why)
{
    *n = 0;
    if (cr->ep != CMX_EP_EMBEDDINGS)
        return 0;
    struct embed *e = cmx_arena_calloc(a, sizeof(*e));
    json_object *req = parse(a, cr->body, cr->body_len);
    if (e == NULL || req == NULL)
        return e == NULL ? CMX_ENOMEM : (*why = "The request body is not JSON.", CMX_EINVAL);
    e->titan = is_titan(d->model);
    if (!e->titan && !is_cohere(d->model)) {
        *why = cmx_arena_printf(a,
                                "Bedrock embeddings support Titan Text Embeddings "
                                "(amazon.titan-embed-text-*) and Cohere Embed (cohere.embed-*), "
                                "not '%s'.",
                                d->model);
        return CMX_EINVAL;
    }
    json_object *in = get(req, "input");
    if (in != NULL && json_object_is_type(in, json_type_string)) {
        e->inputs = json_object_new_array();
        cmx_arena_cleanup_add(a, put_cb, e->inputs);
        json_object_array_add(e->inputs, json_object_get(in));
    } else if (in != NULL && json_object_is_type(in, json_type_array) &&
               json_object_array_length(in) > 0) {
        for (size_t i = 0; i < json_object_array_length(in); i++)
            if (!json_object_is_type(json_object_array_get_idx(in, i), json_type_string)) {
                *why = "Bedrock embeddings take text: 'input' must be a string or an array of "
                       "strings (token arrays are not supported).";
                return CMX_EINVAL;
            }
        e->inputs = in;
    } else {
        *why = "'input' must be a non-empty string or array of strings.";
        return CMX_EINVAL;
    }
    e->n_inputs = json_object_array_length(e->inputs);
    for (size_t i = 0; i < e->n_inputs; i++)
        if (json_object_get_string_len(json_object_array_get_idx(e->inputs, i)) == 0) {
            *why = "Bedrock embeddings do not accept empty strings in 'input'.";
            return CMX_EINVAL;
        }
    const char *fmt = get_str(req, "encoding_format");
    if (fmt != NULL && strcmp(fmt, "float") != 0 && strcmp(fmt, "base64") != 0) {
        *why = "'encoding_format' must be float or base64.";
        return CMX_EINVAL;
    }
    e->base64 = fmt != NULL && strcmp(fmt, "base64") == 0;
    e->dims = get(req, "dimensions");
    if (e->dims != NULL && (!json_object_is_type(e->dims, json_type_int) ||
                            (!e->titan && strstr(d->model, "embed-v4") == NULL) ||
                            (e->titan && strstr(d->model, "-v1") != NULL))) {
        *why = "'dimensions' is supported for Titan Text Embeddings v2 (256, 512, 1024) and "
               "Cohere Embed v4 on Bedrock only.";
        return CMX_EINVAL;
    }
    *n = e->titan ? e->n_inputs : (e->n_inputs + COHERE_BATCH - 1) / COHERE_BATCH;
    *state = e;
    return 0;
}

static int build_part(const struct cmx_deployment_cfg *d, const struct cmx_client_req *cr,
                      void *state, size_t i, struct cmx_arena *a, struct cmx_provider_req *out,
                      const char **why)
{
    struct embed *e = state;
    json_object *b = json_object_new_object();
    if (cmx_arena_cleanup_add(a, put_cb, b) != 0) {
        json_object_put(b);
        return CMX_ENOMEM;
    }
    if (e->titan) {
        json_object_object_add(b, "inputText",
                               json_object_get(json_object_array_get_idx(e->inputs, i)));
        if (e->dims != NULL)
            json_object_object_add(b, "dimensions", json_object_get(e->dims));
        if (strstr(d->model, "-v1") == NULL)
            json_object_object_add(b, "normalize", json_object_new_boolean(1));
    } else {
        json_object *texts = obj_add(b, "texts", json_object_new_array());
        for (size_t k = i * COHERE_BATCH; k < e->n_inputs && k < (i + 1) * COHERE_BATCH; k++)
            json_object_array_add(texts, json_object_get(json_object_array_get_idx(e->inputs, k)));
        json_object_object_add(b, "input_type", json_object_new_string("search_document"));
        json_object *types = obj_add(b, "embedding_types", json_object_new_array());
        json_object_array_add(types, json_object_new_string("float"));
        if (e->dims != NULL)
            json_object_object_add(b, "output_dimension", json_object_get(e->dims));
    }
    size_t len;
    const char *s = json_object_to_json_string_length(b, JSON_OUT, &len);
    out->body = cmx_arena_strndup(a, s, len);
    out->body_len = len;
    char *path = model_path(a, d->model, "invoke");
    if (out->body == NULL || path == NULL)
        return CMX_ENOMEM;
    return finish_req(d, cr, path, "Accept: application/json", a, out, why);
}

/* Appends one embedding (a JSON array of numbers) as OpenAI wants it. */
static int put_embedding(struct cmx_buf *out, json_object *vec, bool base64)
{
    if (vec == NULL || !json_object_is_type(vec, json_type_array))
        return CMX_EUPSTREAM;
    size_t n = json_object_array_length(vec);
    if (!base64) {
        for (size_t i = 0; i < n; i++)
            if (!is_num(json_object_array_get_idx(vec, i)))
                return CMX_EUPSTREAM;
        return cmx_buf_puts(out, json_object_to_json_string_ext(vec, JSON_OUT));
    }
    /* base64 of little-endian float32, as OpenAI sends */
    unsigned char *raw = malloc(n * 4 + 1);
    char *enc = malloc(((n * 4 + 2) / 3) * 4 + 1);
    int rc = raw && enc ? 0 : CMX_ENOMEM;
    for (size_t i = 0; i < n && rc == 0; i++) {
        json_object *x = json_object_array_get_idx(vec, i);
        if (!is_num(x)) {
            rc = CMX_EUPSTREAM;
            break;
        }
        float f = (float)json_object_get_double(x);
        uint32_t u;
        memcpy(&u, &f, 4);
        raw[4 * i] = (unsigned char)u;
        raw[4 * i + 1] = (unsigned char)(u >> 8);
        raw[4 * i + 2] = (unsigned char)(u >> 16);
        raw[4 * i + 3] = (unsigned char)(u >> 24);
    }
    if (rc == 0) {
        int el = EVP_EncodeBlock((unsigned char *)enc, raw, (int)(n * 4));
        cmx_buf_append(out, "\"", 1);
        cmx_buf_append(out, enc, (size_t)el);
        rc = cmx_buf_append(out, "\"", 1);
    }
    free(raw);
    free(enc);
    return rc;
}

static int64_t header_int(const struct cmx_part_answer *p, const char *name)
{
    size_t nl = strlen(name);
    for (size_t i = 0; i < p->n_headers; i++)
        if (p->headers[i].name_len == nl && strncasecmp(p->headers[i].name, name, nl) == 0)
            return strtoll(p->headers[i].value, NULL, 10);
    return -1;
}

static int assemble(const struct cmx_deployment_cfg *d, const struct cmx_client_req *cr,
                    void *state, const struct cmx_part_answer *p, size_t n, struct cmx_arena *a,
                    struct cmx_buf *out)
{
    (void)cr;
    struct embed *e = state;
    int64_t tokens = 0;
    size_t index = 0;
    int rc = PUTL(out, "{\"object\":\"list\",\"data\":[");
    for (size_t i = 0; i < n && rc == 0; i++) {
        json_object *o = parse(a, p[i].body, p[i].len);
        if (o == NULL)
            return CMX_EUPSTREAM;
        int64_t ht = header_int(&p[i], "x-amzn-bedrock-input-token-count");
        if (e->titan) {
            int64_t t = get_i64(o, "inputTextTokenCount");
            tokens += t > 0 ? t : ht > 0 ? ht : 0;
            cmx_buf_printf(out, "%s{\"object\":\"embedding\",\"index\":%zu,\"embedding\":",
                           index ? "," : "", index);
            index++;
            rc = put_embedding(out, get(o, "embedding"), e->base64);
            PUTL(out, "}");
            continue;
        }
        tokens += ht > 0 ? ht : 0;
        json_object *embs = get(o, "embeddings");
        if (embs != NULL && json_object_is_type(embs, json_type_object))
            embs = get(embs, "float");
        size_t want = e->n_inputs - i * COHERE_BATCH;
        if (want > COHERE_BATCH)
            want = COHERE_BATCH;
        if (embs == NULL || !json_object_is_type(embs, json_type_array) ||
            json_object_array_length(embs) != want)
            return CMX_EUPSTREAM;
        for (size_t k = 0; k < want && rc == 0; k++) {
            cmx_buf_printf(out, "%s{\"object\":\"embedding\",\"index\":%zu,\"embedding\":",
                           index ? "," : "", index);
            index++;
            rc = put_embedding(out, json_object_array_get_idx(embs, k), e->base64);
            PUTL(out, "}");
        }
    }
    if (rc != 0)
        return rc;
    PUTL(out, "],\"model\":");
    put_str(out, d->model, strlen(d->model));
    cmx_buf_printf(out, ",\"usage\":{\"prompt_tokens\":%lld,\"total_tokens\":%lld}}",
                   (long long)tokens, (long long)tokens);
    return out->data != NULL ? 0 : CMX_ENOMEM;
}

const struct cmx_provider_ops cmx_provider_bedrock = {
    .name = "bedrock",
    .build = build,
    .stream_new = stream_new,
    .stream_feed = stream_feed,
    .stream_finish = stream_finish,
    .stream_free = stream_free,
    .translate = translate,
    .parse_error = parse_error,
    .parts = parts,
    .build_part = build_part,
    .assemble = assemble,
};
