/* What every provider speaking OpenAI's wire format shares: the body rewrite that touches
 * only "model" and "stream_options", the pass-through SSE decoder, usage and error
 * parsing. */
#include "providers/provider.h"
#include "providers/translate_int.h"
#include "core/fmt.h"
#include "codec/sse.h"
#include "core/err.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_STREAM_EVENT (8u << 20)

char *cmx_url_join(struct cmx_arena *a, const char *base, const char *path)
{
    size_t bl = strlen(base);
    while (bl > 0 && base[bl - 1] == '/')
        bl--;
    while (*path == '/')
        path++;
    size_t pl = strlen(path);
    char *out = cmx_arena_alloc(a, bl + 1 + pl + 1);
    if (out == NULL)
        return NULL;
    memcpy(out, base, bl);
    out[bl] = '/';
    memcpy(out + bl + 1, path, pl + 1);
    return out;
}

int cmx_openai_headers(struct cmx_provider_req *out, const struct cmx_client_req *cr,
                       struct cmx_arena *a, const char *auth_prefix, const char *key,
                       const char *id_header)
{
    out->n_headers = 0;
    out->headers[out->n_headers++] = "Content-Type: application/json";
    if (key != NULL && key[0] != '\0') {
        char *h = cmx_arena_concat(a, auth_prefix, key, (const char *)NULL);
        if (h == NULL)
            return CMX_ENOMEM;
        out->headers[out->n_headers++] = h;
    }
    if (cr->request_id != NULL) {
        char *h = cmx_arena_concat(a, id_header, ": ", cr->request_id, (const char *)NULL);
        if (h == NULL)
            return CMX_ENOMEM;
        out->headers[out->n_headers++] = h;
    }
    return 0;
}

struct splice {
    const char *from; /* replaced range in the original */
    const char *to;
    const char *text; /* replacement */
    size_t len;
};

int cmx_openai_rewrite_body(const struct cmx_client_req *cr, const char *model, struct cmx_arena *a,
                            const char **body, size_t *len)
{
    struct splice sp[2];
    size_t n = 0;
    const struct cmx_json_member *m;
    if (model != NULL && (m = cmx_json_find(cr->members, cr->n_members, "model")) != NULL) {
        struct cmx_buf q;
        cmx_buf_init(&q, 1u << 16);
        if (cmx_buf_puts(&q, "\"") || cmx_buf_json_escape(&q, model, strlen(model)) ||
            cmx_buf_puts(&q, "\"")) {
            cmx_buf_free(&q);
            return CMX_ENOMEM;
        }
        char *t = cmx_arena_strndup(a, q.data, q.len);
        size_t tl = q.len;
        cmx_buf_free(&q);
        if (t == NULL)
            return CMX_ENOMEM;
        sp[n++] = (struct splice){m->val, m->val + m->val_len, t, tl};
    }
    if (cr->ep == CMX_EP_CHAT && cr->stream) {
        static const char add[] = "{\"include_usage\":true}";
        m = cmx_json_find(cr->members, cr->n_members, "stream_options");
        if (m == NULL) {
            /* insert a new member just before the closing brace */
            const char *close = cr->body + cr->body_len;
            while (close > cr->body && close[-1] != '}')
                close--;
            close--;
            static const char member[] = ",\"stream_options\":{\"include_usage\":true}";
            const char *txt = cr->n_members > 0 ? member : member + 1;
            sp[n++] = (struct splice){close, close, txt, strlen(txt)};
        } else if (m->type != CMX_JSON_OBJECT) {
            sp[n++] = (struct splice){m->val, m->val + m->val_len, add, sizeof(add) - 1};
        } else {
            /* keep whatever else the client put in stream_options */
            json_object *o = json_tokener_parse(cmx_arena_strndup(a, m->val, m->val_len));
            if (o == NULL)
                return CMX_ENOMEM;
            json_object_object_add(o, "include_usage", json_object_new_boolean(1));
            const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                                  JSON_C_TO_STRING_NOSLASHESCAPE);
            char *t = cmx_arena_strndup(a, s, strlen(s));
            json_object_put(o);
            if (t == NULL)
                return CMX_ENOMEM;
            sp[n++] = (struct splice){m->val, m->val + m->val_len, t, strlen(t)};
        }
    }
    if (n == 0) {
        *body = cr->body;
        *len = cr->body_len;
        return 0;
    }
    if (n == 2 && sp[1].from < sp[0].from) {
        struct splice t = sp[0];
        sp[0] = sp[1];
        sp[1] = t;
    }
    size_t total = cr->body_len;
    for (size_t i = 0; i < n; i++)
        total = total - (size_t)(sp[i].to - sp[i].from) + sp[i].len;
    char *out = cmx_arena_alloc(a, total + 1);
    if (out == NULL)
        return CMX_ENOMEM;
    char *w = out;
    const char *r = cr->body;
    for (size_t i = 0; i < n; i++) {
        memcpy(w, r, (size_t)(sp[i].from - r));
        w += sp[i].from - r;
        memcpy(w, sp[i].text, sp[i].len);
        w += sp[i].len;
        r = sp[i].to;
    }
    memcpy(w, r, (size_t)(cr->body + cr->body_len - r));
    w += cr->body + cr->body_len - r;
    *w = '\0';
    *body = out;
    *len = (size_t)(w - out);
    return 0;
}

/* ---- stream ---------------------------------------------------------------------------- */

struct openai_stream {
    struct cmx_sse_parser sse;
    cmx_chunk_cb cb;
    void *ud;
};

static int on_event(void *ud, const struct cmx_sse_event *ev)
{
    struct openai_stream *st = ud;
    if (ev->data_len == 0)
        return 0;
    return st->cb(st->ud, ev->data, ev->data_len);
}

void *cmx_openai_stream_new(struct cmx_arena *a, const struct cmx_deployment_cfg *d)
{
    struct openai_stream *st = cmx_arena_calloc(a, sizeof(*st));
    if (st != NULL)
        cmx_sse_parser_init(&st->sse, MAX_STREAM_EVENT);
    return st;
}

int cmx_openai_stream_feed(void *p, const char *data, size_t len, cmx_chunk_cb cb, void *ud)
{
    struct openai_stream *st = p;
    st->cb = cb;
    st->ud = ud;
    return cmx_sse_parser_feed(&st->sse, data, len, on_event, st);
}

int cmx_openai_stream_finish(void *p, cmx_chunk_cb cb, void *ud)
{
    struct openai_stream *st = p;
    st->cb = cb;
    st->ud = ud;
    return cmx_sse_parser_finish(&st->sse, on_event, st);
}

void cmx_openai_stream_free(void *p)
{
    struct openai_stream *st = p;
    if (st != NULL)
        cmx_sse_parser_free(&st->sse);
}

/* ---- usage and errors -------------------------------------------------------------------- */

/* The integer value of member name, or -1 when absent, negative or not an integer (JSON
 * number text without sign, fraction or exponent that fits in 18 digits). */
static int64_t member_int(const struct cmx_json_member *m, size_t n, const char *name)
{
    const struct cmx_json_member *v = cmx_json_find(m, n, name);
    if (v == NULL || v->type != CMX_JSON_NUMBER || v->val_len == 0)
        return -1;
    const char *p = v->val, *e = v->val + v->val_len;
    if (e - p > 18) /* a negative count is no count either */
        return -1;
    int64_t x = 0;
    for (; p < e; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        x = x * 10 + (*p - '0');
    }
    return x;
}

/* member_int() of name inside the object member obj, or -1. */
static int64_t nested_int(const struct cmx_json_member *m, size_t n, const char *obj,
                          const char *name)
{
    struct cmx_json_member in[32];
    enum cmx_json_type top;
    size_t k = 0;
    const struct cmx_json_member *o = cmx_json_find(m, n, obj);
    if (o == NULL || o->type != CMX_JSON_OBJECT)
        return -1;
    int rc = cmx_json_scan(o->val, o->val_len, &top, in, 32, &k);
    if (rc != 0 && rc != CMX_ETOOBIG)
        return -1;
    return member_int(in, k, name);
}

int cmx_usage_parse(const char *json, size_t len, struct cmx_usage *u)
{
    struct cmx_json_member m[32];
    enum cmx_json_type top;
    size_t n = 0;

    /* A usage object has a handful of members; with more than 32 the first 32 are read. */
    int rc = cmx_json_scan(json, len, &top, m, 32, &n);
    if ((rc != 0 && rc != CMX_ETOOBIG) || top != CMX_JSON_OBJECT)
        return CMX_EJSON;
    u->prompt_tokens = member_int(m, n, "prompt_tokens");
    u->completion_tokens = member_int(m, n, "completion_tokens");
    u->cached_tokens = nested_int(m, n, "prompt_tokens_details", "cached_tokens");
    u->reasoning_tokens = nested_int(m, n, "completion_tokens_details", "reasoning_tokens");
    u->reported = u->prompt_tokens >= 0 || u->completion_tokens >= 0;
    /* a count no request can reach is a corrupt report, not a bill: the request is then
     * estimated (and flagged) like one without usage */
    if (u->prompt_tokens > CMX_USAGE_MAX_TOKENS || u->completion_tokens > CMX_USAGE_MAX_TOKENS ||
        u->cached_tokens > CMX_USAGE_MAX_TOKENS || u->reasoning_tokens > CMX_USAGE_MAX_TOKENS)
        u->reported = false;
    return 0;
}

static const char *dup_str(struct cmx_arena *a, json_object *v)
{
    if (v == NULL || json_object_is_type(v, json_type_null))
        return NULL;
    const char *s = json_object_is_type(v, json_type_string)
                        ? json_object_get_string(v)
                        : json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN);
    return cmx_arena_strndup(a, s, strlen(s));
}

void cmx_openai_parse_error(int status, const struct cmx_http_header *h, size_t nh,
                            const char *body, size_t len, struct cmx_arena *a,
                            struct cmx_upstream_error *out)
{
    memset(out, 0, sizeof(*out));
    json_object *o = NULL;
    if (len > 0) {
        json_tokener *tok = json_tokener_new();
        if (tok != NULL) {
            o = json_tokener_parse_ex(tok, body, (int)len);
            json_tokener_free(tok);
        }
    }
    json_object *e = NULL, *v;
    if (o != NULL && json_object_is_type(o, json_type_object)) {
        if (json_object_object_get_ex(o, "error", &e) && e != NULL &&
            json_object_is_type(e, json_type_object)) {
            if (json_object_object_get_ex(e, "message", &v))
                out->message = dup_str(a, v);
            if (json_object_object_get_ex(e, "type", &v))
                out->type = dup_str(a, v);
            if (json_object_object_get_ex(e, "code", &v))
                out->code = dup_str(a, v);
            if (json_object_object_get_ex(e, "param", &v))
                out->param = dup_str(a, v);
        } else if (e != NULL && json_object_is_type(e, json_type_string)) {
            out->message = dup_str(a, e); /* {"error": "..."}: llama.cpp, Ollama */
        } else if (json_object_object_get_ex(o, "message", &v)) {
            out->message = dup_str(a, v);
        } else if (json_object_object_get_ex(o, "detail", &v)) {
            out->message = dup_str(a, v); /* FastAPI-based servers (vLLM) */
        }
    }
    json_object_put(o);
    if (out->message == NULL) {
        /* not JSON: keep a short, printable excerpt of what the upstream said */
        size_t n = len < 200 ? len : 200;
        char *m = cmx_arena_alloc(a, n + 64);
        if (m != NULL) {
            int k = snprintf(m, 64, "upstream returned HTTP %d", status);
            if (n > 0) {
                k += snprintf(m + k, 8, ": ");
                for (size_t i = 0; i < n; i++)
                    m[k++] = (body[i] >= 0x20 && body[i] < 0x7f) ? body[i] : ' ';
                m[k] = '\0';
            }
            out->message = m;
        } else {
            out->message = "upstream error";
        }
    }
}

/* ---- chunk filter -------------------------------------------------------------------------- */

/* s starts inside a string (after its opening quote): returns its closing quote, or end
 * when the string is not closed before end. */
static const char *string_end(const char *s, const char *end)
{
    while (s < end && *s != '"') {
        if (*s == '\\' && ++s == end)
            break;
        s++;
    }
    return s;
}

static bool is_text_key(const char *k, size_t n)
{
    switch (n) {
    case 7:
        return memcmp(k, "content", 7) == 0 || memcmp(k, "refusal", 7) == 0;
    case 9:
        return memcmp(k, "arguments", 9) == 0 || memcmp(k, "reasoning", 9) == 0;
    case 17:
        return memcmp(k, "reasoning_content", 17) == 0;
    default:
        return false;
    }
}

size_t cmx_openai_text_bytes(const char *s, size_t len)
{
    /* valid JSON: the first quote after a value or a structural byte opens a string, and
     * whole strings are skipped, so no byte inside one is ever taken for structure */
    const char *end = s + len;
    size_t total = 0;
    while (s < end) {
        const char *q = memchr(s, '"', (size_t)(end - s));
        if (q == NULL)
            break;
        const char *k = q + 1;
        const char *ke = string_end(k, end);
        if (ke == end)
            break;
        const char *c = cmx_json_skip_ws(ke + 1, end);
        s = ke + 1;
        if (c >= end || *c != ':')
            continue; /* a string value */
        c = cmx_json_skip_ws(c + 1, end);
        s = c;
        if (c < end && *c == '"' && is_text_key(k, (size_t)(ke - k))) {
            const char *ve = string_end(c + 1, end);
            total += (size_t)(ve - (c + 1));
            s = ve == end ? end : ve + 1;
        }
    }
    return total;
}

#define MAX_CHUNK_MEMBERS 64

static bool is_empty_array(const struct cmx_json_member *m)
{
    if (m->type != CMX_JSON_ARRAY)
        return false;
    for (size_t i = 1; i + 1 < m->val_len; i++)
        if (m->val[i] != ' ' && m->val[i] != '\t' && m->val[i] != '\n' && m->val[i] != '\r')
            return false;
    return true;
}

int cmx_openai_chunk_filter(const char *json, size_t len, bool keep_usage, const char *object,
                            const char *fallback_id, uint64_t created, struct cmx_usage *u,
                            struct cmx_buf *scratch, struct cmx_chunk_result *res)
{
    memset(res, 0, sizeof(*res));
    res->data = json;
    res->len = len;
    if (len == 6 && memcmp(json, "[DONE]", 6) == 0) {
        res->done = true;
        return 0;
    }
    struct cmx_json_member m[MAX_CHUNK_MEMBERS];
    size_t n = 0;
    enum cmx_json_type top;
    int rc = cmx_json_scan(json, len, &top, m, MAX_CHUNK_MEMBERS, &n);
    if (rc != 0 || top != CMX_JSON_OBJECT) {
        res->invalid = rc == CMX_EJSON || top != CMX_JSON_OBJECT;
        return 0; /* the caller judges: a stream relays it as is */
    }
    /* the members that matter, in one pass (the last of duplicates, as cmx_json_find) */
    const struct cmx_json_member *choices = NULL, *error = NULL;
    bool has_id = false, has_obj = false, has_created = false;
    for (size_t i = 0; i < n; i++) {
        const struct cmx_json_member *k = &m[i];
        const char *key = k->key;
        size_t kl = k->key_len;
        char dec[48]; /* rare: an escaped key is compared decoded (ours are all short) */
        if (k->key_escaped &&
            (kl >= sizeof(dec) || cmx_json_string_decode(key, kl, dec, &kl) != 0 || kl > 7))
            continue;
        if (k->key_escaped)
            key = dec;
        switch (kl) {
        case 2:
            has_id |= memcmp(key, "id", 2) == 0;
            break;
        case 5:
            if (memcmp(key, "error", 5) == 0)
                error = k;
            break;
        case 6:
            has_obj |= memcmp(key, "object", 6) == 0;
            break;
        case 7:
            if (memcmp(key, "choices", 7) == 0)
                choices = k;
            else
                has_created |= memcmp(key, "created", 7) == 0;
            break;
        }
    }
    if (choices != NULL) {
        res->choices = choices->val;
        res->choices_len = choices->val_len;
    }
    if (error != NULL && choices == NULL) {
        res->error = true;
        return 0;
    }
    long drop = -1;
    for (size_t i = 0; i < n; i++) {
        if (m[i].key_len != 5 || memcmp(m[i].key, "usage", 5) != 0)
            continue;
        if (m[i].type == CMX_JSON_OBJECT) {
            struct cmx_usage got;
            if (cmx_usage_parse(m[i].val, m[i].val_len, &got) == 0 && got.reported)
                *u = got;
        }
        if (!keep_usage) {
            if (m[i].type == CMX_JSON_OBJECT && (choices == NULL || is_empty_array(choices))) {
                res->drop = true;
                return 0;
            }
            drop = (long)i;
        }
    }
    if (drop < 0 && has_id && has_obj && has_created)
        return 0;

    struct cmx_buf *b = scratch;
    cmx_buf_reset(b);
    const char *r = json;
    if (!has_id || !has_obj || !has_created) {
        const char *open = memchr(json, '{', len);
        cmx_buf_append(b, json, (size_t)(open + 1 - json));
        const char *sep = "";
        if (!has_id) {
            cmx_buf_puts(b, "\"id\":\"chatcmpl-");
            cmx_buf_json_escape(b, fallback_id, strlen(fallback_id));
            cmx_buf_puts(b, "\"");
            sep = ",";
        }
        /* no printf: this runs for every chunk of the translated providers' streams */
        if (!has_obj) {
            cmx_buf_puts(b, sep);
            cmx_buf_puts(b, "\"object\":\"");
            cmx_buf_puts(b, object);
            cmx_buf_puts(b, "\"");
            sep = ",";
        }
        if (!has_created) {
            char t[CMX_FMT_U64_MAX], *e = t + sizeof(t), *q = cmx_fmt_u64(e, (uint64_t)created);
            cmx_buf_puts(b, sep);
            cmx_buf_puts(b, "\"created\":");
            cmx_buf_append(b, q, (size_t)(e - q));
        }
        if (n > 0 && !(n == 1 && drop == 0))
            cmx_buf_puts(b, ",");
        r = open + 1;
    }
    if (drop >= 0) {
        const char *from, *to;
        if ((size_t)drop + 1 < n) { /* the member and the comma after it */
            from = m[drop].start;
            to = m[drop + 1].start;
        } else if (drop > 0) { /* the last member and the comma before it */
            from = m[drop - 1].end;
            to = m[drop].end;
        } else {
            from = m[drop].start;
            to = m[drop].end;
        }
        if (from < r)
            from = r;
        cmx_buf_append(b, r, (size_t)(from - r));
        r = to;
    }
    if (cmx_buf_append(b, r, (size_t)(json + len - r)) != 0)
        return CMX_ENOMEM;
    res->data = b->data;
    res->len = b->len;
    return 0;
}

/* ---- a whole answer as a stream ------------------------------------------------------------ */

/* A chunk carrying the answer's id, created and model (when present) and no choices yet. */
static json_object *chunk_of(json_object *in)
{
    json_object *o = json_object_new_object();
    static const char *const keep[] = {"id", "created", "model", "system_fingerprint"};
    for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++) {
        json_object *v = cmx_tr_get(in, keep[i]);
        if (v != NULL)
            json_object_object_add(o, keep[i], json_object_get(v));
        if (i == 0)
            json_object_object_add(o, "object", json_object_new_string("chat.completion.chunk"));
    }
    return o;
}

int cmx_openai_completion_as_stream(const char *json, size_t len, cmx_chunk_cb cb, void *ud)
{
    json_object *in = cmx_tr_parse_raw(json, len);
    json_object *choices = cmx_tr_get(in, "choices");
    if (choices == NULL || !json_object_is_type(choices, json_type_array)) {
        json_object_put(in);
        return CMX_EUPSTREAM;
    }
    int r = 0;
    for (size_t i = 0; r == 0 && i < json_object_array_length(choices); i++) {
        json_object *c = json_object_array_get_idx(choices, i);
        json_object *msg = cmx_tr_get(c, "message");
        json_object *delta = json_object_new_object();
        if (msg == NULL || !json_object_is_type(msg, json_type_object))
            msg = delta; /* no message: an empty delta (foreach needs an object) */
        json_object_object_foreach(msg, k, v)
        {
            if (strcmp(k, "tool_calls") != 0 || !json_object_is_type(v, json_type_array)) {
                json_object_object_add(delta, k, json_object_get(v));
                continue;
            }
            /* a delta's tool calls carry their index */
            json_object *tcs = json_object_new_array();
            for (size_t t = 0; t < json_object_array_length(v); t++) {
                json_object *call = json_object_array_get_idx(v, t);
                if (call == NULL || !json_object_is_type(call, json_type_object))
                    continue;
                json_object *tc = json_object_new_object();
                json_object_object_add(tc, "index", json_object_new_int((int)t));
                json_object_object_foreach(call, tk, tv)
                {
                    if (strcmp(tk, "index") != 0)
                        json_object_object_add(tc, tk, json_object_get(tv));
                }
                json_object_array_add(tcs, tc);
            }
            json_object_object_add(delta, k, tcs);
        }
        json_object *ch = json_object_new_object();
        json_object *idx = cmx_tr_get(c, "index");
        json_object_object_add(ch, "index",
                               idx != NULL ? json_object_get(idx) : json_object_new_int((int)i));
        json_object_object_add(ch, "delta", delta);
        json_object *fr = cmx_tr_get(c, "finish_reason");
        json_object_object_add(ch, "finish_reason", fr != NULL ? json_object_get(fr) : NULL);
        json_object *lp = cmx_tr_get(c, "logprobs");
        if (lp != NULL)
            json_object_object_add(ch, "logprobs", json_object_get(lp));
        json_object *o = chunk_of(in);
        json_object *arr = json_object_new_array();
        json_object_array_add(arr, ch);
        json_object_object_add(o, "choices", arr);
        r = cmx_tr_emit(o, cb, ud);
    }
    json_object *usage = cmx_tr_get(in, "usage");
    if (r == 0 && usage != NULL && json_object_is_type(usage, json_type_object)) {
        json_object *o = chunk_of(in);
        json_object_object_add(o, "choices", json_object_new_array());
        json_object_object_add(o, "usage", json_object_get(usage));
        r = cmx_tr_emit(o, cb, ud);
    }
    json_object_put(in);
    return r;
}
