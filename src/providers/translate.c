/* Helpers for translating providers: see translate_int.h. */
#include "providers/translate_int.h"
#include "core/err.h"
#include "core/json_scan.h"

#include <pthread.h>
#include <string.h>

static void put_cb(void *o)
{
    json_object_put(o);
}

int cmx_tr_own(struct cmx_arena *a, json_object *o)
{
    if (cmx_arena_cleanup_add(a, put_cb, o) != 0) {
        json_object_put(o);
        return CMX_ENOMEM;
    }
    return 0;
}

/* One tokener per thread, reset between documents: a new one costs an allocation and a
 * memset of its parse stack per document, which showed in the translated paths' profile. */
static pthread_key_t tok_key;
static pthread_once_t tok_once = PTHREAD_ONCE_INIT;

static void tok_free_cb(void *t)
{
    json_tokener_free(t);
}

static void tok_key_init(void)
{
    (void)pthread_key_create(&tok_key, tok_free_cb);
}

static json_tokener *thread_tokener(void)
{
    pthread_once(&tok_once, tok_key_init);
    json_tokener *tok = pthread_getspecific(tok_key);
    if (tok == NULL) {
        tok = json_tokener_new_ex(128);
        if (tok == NULL || pthread_setspecific(tok_key, tok) != 0) {
            json_tokener_free(tok);
            return NULL;
        }
        /* what we re-serialise must be valid UTF-8: refuse invalid input outright */
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    } else {
        json_tokener_reset(tok);
    }
    return tok;
}

json_object *cmx_tr_parse_raw(const char *text, size_t len)
{
    /* json-c's UTF-8 check lets some invalid sequences through (lead bytes F5-F7); the
     * project's validating scanner decides what is JSON */
    enum cmx_json_type top;
    if (cmx_json_scan(text, len, &top, NULL, 0, NULL) != 0)
        return NULL;
    json_tokener *tok = thread_tokener();
    if (tok == NULL)
        return NULL;
    json_object *o = json_tokener_parse_ex(tok, text, (int)len);
    if (o != NULL && (json_tokener_get_error(tok) != json_tokener_success ||
                      json_tokener_get_parse_end(tok) != len)) {
        /* trailing bytes other than white space make it not JSON */
        size_t end = json_tokener_get_parse_end(tok);
        for (; end < len; end++)
            if (text[end] != ' ' && text[end] != '\n' && text[end] != '\r' && text[end] != '\t')
                break;
        if (end < len) {
            json_object_put(o);
            o = NULL;
        }
    }
    return o;
}

json_object *cmx_tr_parse(struct cmx_arena *a, const char *text, size_t len)
{
    json_object *o = cmx_tr_parse_raw(text, len);
    if (o != NULL && cmx_arena_cleanup_add(a, put_cb, o) != 0) {
        json_object_put(o);
        return NULL;
    }
    return o;
}

json_object *cmx_tr_get(json_object *o, const char *k)
{
    json_object *v;
    if (o == NULL || !json_object_is_type(o, json_type_object) ||
        !json_object_object_get_ex(o, k, &v))
        return NULL;
    return v;
}

const char *cmx_tr_str(json_object *o, const char *k)
{
    json_object *v = cmx_tr_get(o, k);
    return v != NULL && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

char *cmx_tr_dump(json_object *o, struct cmx_arena *a, size_t *len)
{
    size_t n = 0;
    const char *s = json_object_to_json_string_length(
        o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
    if (s == NULL)
        return NULL;
    if (len != NULL)
        *len = n;
    return cmx_arena_strndup(a, s, n);
}

char *cmx_tr_content_text(json_object *content, struct cmx_arena *a, const char *sep)
{
    if (content == NULL)
        return NULL;
    if (json_object_is_type(content, json_type_string))
        return cmx_arena_strndup(a, json_object_get_string(content),
                                 (size_t)json_object_get_string_len(content));
    if (!json_object_is_type(content, json_type_array))
        return NULL;
    struct cmx_buf b;
    cmx_buf_init(&b, 64u << 20);
    bool any = false;
    for (size_t i = 0; i < json_object_array_length(content); i++) {
        json_object *part = json_object_array_get_idx(content, i);
        const char *t = cmx_tr_str(part, "text");
        if (t == NULL)
            continue;
        if (any)
            cmx_buf_puts(&b, sep);
        cmx_buf_puts(&b, t);
        any = true;
    }
    char *out = any ? cmx_arena_strndup(a, b.data ? b.data : "", b.len) : NULL;
    cmx_buf_free(&b);
    return out;
}

bool cmx_tr_data_url(const char *url, struct cmx_arena *a, char **mime, char **data)
{
    if (url == NULL || strncmp(url, "data:", 5) != 0)
        return false;
    const char *semi = strstr(url, ";base64,");
    if (semi == NULL)
        return false;
    *mime = cmx_arena_strndup(a, url + 5, (size_t)(semi - url - 5));
    *data = cmx_arena_strndup(a, semi + 8, strlen(semi + 8));
    return *mime != NULL && *data != NULL;
}

json_object *cmx_tr_strn(const char *s, size_t n)
{
    return json_object_new_string_len(s, (int)n);
}

void cmx_tr_add_usage(json_object *o, const struct cmx_usage *u)
{
    json_object *us = json_object_new_object();
    int64_t pt = u->prompt_tokens > 0 ? u->prompt_tokens : 0;
    int64_t ct = u->completion_tokens > 0 ? u->completion_tokens : 0;
    json_object_object_add(us, "prompt_tokens", json_object_new_int64(pt));
    json_object_object_add(us, "completion_tokens", json_object_new_int64(ct));
    json_object_object_add(us, "total_tokens", json_object_new_int64(pt + ct));
    json_object *pd = json_object_new_object();
    json_object_object_add(pd, "cached_tokens",
                           json_object_new_int64(u->cached_tokens > 0 ? u->cached_tokens : 0));
    json_object_object_add(us, "prompt_tokens_details", pd);
    json_object *cd = json_object_new_object();
    json_object_object_add(
        cd, "reasoning_tokens",
        json_object_new_int64(u->reasoning_tokens > 0 ? u->reasoning_tokens : 0));
    json_object_object_add(us, "completion_tokens_details", cd);
    json_object_object_add(o, "usage", us);
}

int cmx_tr_emit(json_object *o, cmx_chunk_cb cb, void *ud)
{
    size_t n = 0;
    const char *s = json_object_to_json_string_length(
        o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
    int r = s != NULL ? cb(ud, s, n) : CMX_ENOMEM;
    json_object_put(o);
    return r;
}

void cmx_tr_copy(char *dst, size_t cap, const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;
    if (n >= cap) {
        n = cap - 1;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--; /* s[n] starts a character: cut before it */
    }
    if (n > 0)
        memcpy(dst, s, n);
    dst[n] = '\0';
}
